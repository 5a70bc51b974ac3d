//! `::add-mask::VALUE` as a hostile or careless command uses it: a value declared on one
//! stream and printed right after on the other, declaration lines far longer than 64 KiB, and
//! many large declarations. The value is masked in every line written after the declaration,
//! a declaration line is never logged, and what cannot be masked is not shown at all, while
//! the runner's memory and CPU stay bounded.

use std::time::Duration;

use serde_json::{json, Value};

use super::{assert_hidden, call};
use crate::support::{procs, start_pair, within, PATIENCE};

/// A command that declares the value in `v<i>.txt` on one stream, then prints it on the other.
fn declare_then_print(index: usize, declare_on_stderr: bool) -> Value {
    let (declare, print) = match declare_on_stderr {
        false => ("", " >&2"),
        true => (" >&2", ""),
    };
    json!({
        "command": format!(
            "v=$(cat v{index}.txt); echo \"::add-mask::$v\"{declare}; echo \"value=$v\"{print}"
        ),
        "shell": true,
        "print": false
    })
}

/// Read side by side, the two pipes must still honour the order the command wrote in: each of
/// 60 commands (both ways round) declares before it prints, and no value is ever shown.
#[tokio::test(flavor = "multi_thread")]
async fn a_value_declared_on_one_stream_is_masked_on_the_other() {
    let values: Vec<String> = (0..60)
        .map(|i| format!("cross-stream-{i:03}-v4lue"))
        .collect();
    let files: Vec<Value> = values
        .iter()
        .enumerate()
        .map(|(i, v)| json!({"name": format!("v{i}.txt"), "data": v}))
        .collect();
    let commands: Vec<Value> = (0..values.len())
        .map(|i| declare_then_print(i, i % 2 == 1))
        .collect();
    let (reply, lines) = call("cross", json!({"files": files, "commands": commands})).await;
    reply.assert_success();
    let refs: Vec<&str> = values.iter().map(String::as_str).collect();
    assert_hidden(&lines, &refs);
    assert_hidden([&reply.text], &refs);
    assert_eq!(lines.len(), values.len(), "{lines:?}");
    assert!(lines.iter().all(|line| line == "value=***"), "{lines:?}");
}

/// 32-byte pieces of `value` at every 32nd byte: a log line holding one shows the value.
fn pieces(value: &str) -> Vec<&str> {
    (0..value.len().saturating_sub(32))
        .step_by(32)
        .map(|at| &value[at..at + 32])
        .collect()
}

/// A declaration line longer than 64 KiB is not logged, and its value is masked from then on;
/// one longer than the 4 MiB log message cap is not logged either, not even in pieces.
#[tokio::test(flavor = "multi_thread")]
async fn a_declaration_line_of_any_length_is_never_logged() {
    // 52,500 random bytes are 70,000 characters of base64: a line of 70 KiB.
    let script = "v=$(head -c 52500 /dev/urandom | base64 -w0); echo \"$v\" > v.txt; \
                  echo \"::add-mask::$v\"; echo \"value=$v\"; echo \"$v\" >&2; echo done";
    let body = json!({"commands": [
        {"command": script, "shell": true, "print": false},
        {"command": "cat v.txt", "print": false}
    ]});
    let (sidecar, runner) = start_pair(&[]);
    let reply = within(
        PATIENCE,
        "a long declaration",
        sidecar.call(&runner, "long", body),
    )
    .await;
    reply.assert_success();
    // Lines of the two streams in either order: which pipe is read first is not known.
    let mut lines = sidecar.lines("long");
    lines.sort();
    assert_eq!(lines, ["***", "***", "done", "value=***"]);
    let value = reply.command(1)["stdout"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(value, "***\n");

    // 6 MiB of declaration, past the 4 MiB log message cap: never logged, not even in pieces;
    // and a value too long to mask is shown nowhere after: the rest of the output is withheld.
    let script = "head -c 4718592 /dev/urandom | base64 -w0 > v.txt; printf '::add-mask::'; \
                  cat v.txt; echo; cat v.txt; echo; echo after";
    let body = json!({"commands": [{"command": script, "shell": true, "print": false}]});
    let reply = within(
        PATIENCE,
        "a huge declaration",
        sidecar.call(&runner, "huge", body),
    )
    .await;
    reply.assert_success();
    let lines = sidecar.lines("huge");
    assert!(
        lines.iter().all(|line| line.len() < 1024),
        "a piece of it was logged"
    );
    assert!(!lines.iter().any(|line| line.starts_with("::add-mask::")));
    assert!(!lines.iter().any(|line| line == "after"), "{lines:?}");
    assert!(lines
        .iter()
        .any(|line| line.contains("masking capacity reached")));
    assert_eq!(reply.command(0)["stdout"], json!("***"));
}

/// `count` different values of `len` base64 characters (a fixed-seed xorshift).
fn random_values(count: usize, len: usize) -> Vec<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    (0..count)
        .map(|_| {
            (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    char::from(ALPHABET[(state % 64) as usize])
                })
                .collect()
        })
        .collect()
}

/// 24 declarations of 60 KB (about a million bytes of patterns each, in all their forms): the
/// runner masks what fits, withholds the request's output once more would not, says so once,
/// and stays within bounds of memory and CPU. No value is shown anywhere.
#[tokio::test(flavor = "multi_thread")]
async fn many_large_declarations_cost_bounded_memory_and_cpu() {
    let values = random_values(24, 60_000);
    let files: Vec<Value> = values
        .iter()
        .enumerate()
        .map(|(i, v)| json!({"name": format!("v{i:02}.txt"), "data": v}))
        .collect();
    let script = "for f in v*.txt; do echo \"::add-mask::$(cat $f)\"; done; \
                  cat v*.txt; cat v*.txt >&2";
    let body = json!({"files": files, "commands": [
        {"command": script, "shell": true, "print": false},
        {"command": "cat v00.txt", "print": false}
    ]});
    let (sidecar, runner) = start_pair(&[]);
    let pid = runner.pid();
    let cpu_before = cpu_ms(pid);
    let reply = within(
        PATIENCE,
        "24 large declarations",
        sidecar.call(&runner, "many", body),
    )
    .await;
    reply.assert_success();
    let cpu = cpu_ms(pid) - cpu_before;
    let peak = procs::peak_rss(pid).unwrap_or(0);
    assert!(peak < 256 * 1024 * 1024, "peak RSS {} MiB", peak >> 20);
    assert!(cpu < 10_000, "{cpu} ms of CPU");

    let lines = sidecar.lines("many");
    let notices = lines
        .iter()
        .filter(|l| l.contains("masking capacity"))
        .count();
    assert_eq!(notices, 1, "{lines:?}");
    assert_eq!(
        reply.command(1)["stdout"],
        json!("***"),
        "later commands are withheld too"
    );
    let mut texts: Vec<String> = lines;
    texts.push(reply.text.clone());
    tokio::time::sleep(Duration::from_millis(200)).await;
    texts.extend(runner.stdout_lines());
    texts.extend(runner.stderr_lines());
    for value in &values {
        assert_hidden(&texts, &pieces(value));
    }
}

/// User and system CPU time of a process, in milliseconds (/proc counts in USER_HZ, which
/// is 100 on Linux).
fn cpu_ms(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_name = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime: fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = fields
        .get(11..13)
        .map(|f| f.iter().filter_map(|t| t.parse::<u64>().ok()).sum())
        .unwrap_or(0);
    ticks * 10
}
