//! Masking under load: thousands of `mask` entries and megabytes of output that nearly match
//! them. Masking work never runs where it can delay answering the sidecar, so every line
//! reaches the sidecar (none falls back to the container's stdout), and the runner's memory
//! stays bounded; a slow masker only slows the command.

use serde_json::json;

use crate::support::{procs, start_pair, within, PATIENCE};

/// `count` different 24-character secrets (a fixed-seed xorshift).
fn secrets(count: usize) -> Vec<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..count)
        .map(|_| {
            let tail: String = (0..20)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    char::from(ALPHABET[(state % 62) as usize])
                })
                .collect();
            format!("tok-{tail}")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_thousand_secrets_and_megabytes_of_near_matches_lose_no_line() {
    const ROUNDS: usize = 120;
    let secrets = secrets(2000);
    // Each secret with its last character changed: every line nearly matches one.
    let near: String = secrets
        .iter()
        .map(|s| format!("{}#\n", &s[..s.len() - 1]))
        .collect();
    let body = json!({
        "mask": secrets,
        "files": [{"name": "near.txt", "data": near}],
        "commands": [{"command": format!("for i in $(seq {ROUNDS}); do cat near.txt; done; \
                                          echo {}", secrets[7]),
                      "shell": true, "print": false}]
    });
    let (sidecar, runner) = start_pair(&[]);
    let reply = within(
        PATIENCE * 4,
        "near matches",
        sidecar.call(&runner, "near", body),
    )
    .await;
    reply.assert_success();
    let lines = sidecar.lines("near");
    assert_eq!(lines.len(), 2000 * ROUNDS + 1, "lines were lost");
    assert_eq!(lines.last().map(String::as_str), Some("***"));
    assert!(lines[..2000].iter().all(|line| line.ends_with('#')));
    let fallback = runner
        .stdout_lines()
        .iter()
        .filter(|l| l.starts_with("[near]"))
        .count();
    assert_eq!(fallback, 0, "lines fell back to stdout");
    let peak = procs::peak_rss(runner.pid()).unwrap_or(0);
    assert!(peak < 256 * 1024 * 1024, "peak RSS {} MiB", peak >> 20);
}
