//! What two request features cost, each measured on the runner against the same request
//! without it, taking turns on the same server: masking (the request's `mask` list) and
//! `limits`. And masking at its heaviest: thousands of `mask` entries and megabytes of output
//! that nearly matches them, every line of which must arrive.

use serde::Serialize;

use crate::client::Error;
use crate::delivery::{delivered, same, Delivery, Expected};
use crate::measure::{self, big_output_lines, big_output_script, LoadRun};
use crate::process::Server;
use crate::sidecar::Sidecar;
use crate::target::{Arm, LinesAt};

/// Secrets in the masking runs, and the shortest and longest of them.
const SECRETS: usize = 20;
const SECRET_MIN: usize = 20;
const SECRET_MAX: usize = 60;
/// Runs of each masking request, taking turns; the median is reported. A run takes about 20 ms,
/// so one scheduling hiccup on a small machine is a tenth of it: fifteen runs keep one or two
/// such from deciding the median, for about half a second more.
const MASK_RUNS: usize = 15;
/// Requests of each `limits` arm at c=1.
const LIMITS_REQUESTS: usize = 1_200;
/// `mask` entries of the near-match run, and how often their near-matches are printed:
/// 2,000 lines of 25 bytes, 380 times, are 19 MB.
const NEAR_SECRETS: usize = 2_000;
const NEAR_ROUNDS: usize = 380;

/// The 2 MB output with and without 20 secrets in the request's `mask` list.
#[derive(Debug, Serialize)]
pub struct MaskingReport {
    pub secrets: usize,
    pub without: Delivery,
    pub with: Delivery,
}

/// 2,000 `mask` entries and 19 MB of lines that each nearly match one: how long delivery took,
/// whether every line arrived, and the runner's peak RSS meanwhile.
#[derive(Debug, Serialize)]
pub struct NearMatchReport {
    pub secrets: usize,
    pub output_bytes: usize,
    pub delivery: Delivery,
    pub peak_rss_kib: u64,
}

/// `true` at c=1 with and without `limits` on the command: back to back, and once after a quiet
/// moment (where a memory cgroup is the limit, a command moving into it may wait for the kernel
/// after one).
#[derive(Debug, Serialize)]
pub struct LimitsReport {
    pub limits: serde_json::Value,
    pub without: LoadRun,
    pub with: LoadRun,
    pub idle_without: Delivery,
    pub idle_with: Delivery,
}

/// The runner prints `key=<secret>` for each secret, then 2 MB of output, and logs all of it;
/// once with the secrets in `mask`, once without. Every line must arrive, and with `mask` no
/// secret may.
pub async fn masking(
    runner: &Server,
    sidecar: &Sidecar,
    temp_dir: &str,
) -> Result<MaskingReport, Error> {
    let secrets = secrets();
    let script = format!(
        "printf 'key=%s\\n' {}; {}",
        secrets.join(" "),
        big_output_script()
    );
    let command = serde_json::json!([{"command": script, "shell": true}]);
    let without = serde_json::json!({ "commands": command });
    let with = serde_json::json!({ "commands": command, "mask": secrets });
    let arms = [
        runner_arm("runner-unmasked", runner, &without),
        runner_arm("runner-masked", runner, &with),
    ];
    // With `mask`, a `key=` line must have lost its secret; every other line is as printed.
    let masked = |got: &str, want: &str| match want.strip_prefix("key=") {
        Some(secret) => got.starts_with("key=") && !got.contains(secret),
        None => got == want,
    };
    let expected = |arm: usize| Expected {
        lines: secrets
            .iter()
            .map(|s| format!("key={s}"))
            .chain(big_output_lines()),
        matches: if arm == 0 { &same } else { &masked },
    };
    let mut runs = measure::deliveries(&arms, sidecar, temp_dir, MASK_RUNS, expected).await?;
    let with = runs.pop().ok_or("no masked run")?;
    let without = runs.pop().ok_or("no unmasked run")?;
    Ok(MaskingReport {
        secrets: secrets.len(),
        without,
        with,
    })
}

/// `true` at c=1, with every limit set generously (nothing is hit) and without.
pub async fn limits(
    runner: &Server,
    sidecar: &Sidecar,
    temp_dir: &str,
) -> Result<LimitsReport, Error> {
    let limits =
        serde_json::json!({"memory": "1Gi", "cpu": "60s", "file_size": "1Gi", "open_files": 1024});
    let without = serde_json::json!({"commands": [{"command": "true"}]});
    let with = serde_json::json!({"commands": [{"command": "true", "limits": limits}]});
    let arms = [
        runner_arm("runner-no-limits", runner, &without),
        runner_arm("runner-limits", runner, &with),
    ];
    let mut runs = measure::paired(&arms, sidecar, LIMITS_REQUESTS, temp_dir).await?;
    let with = runs.pop().ok_or("no run with limits")?;
    let without = runs.pop().ok_or("no run without limits")?;
    let mut idle = measure::after_idle(&arms, sidecar, temp_dir).await?;
    let idle_with = idle.pop().ok_or("no quiet run with limits")?;
    let idle_without = idle.pop().ok_or("no quiet run without limits")?;
    Ok(LimitsReport {
        limits,
        without,
        with,
        idle_without,
        idle_with,
    })
}

/// `true` at c=1 on two runners started for it and alike but for one setting: one as
/// configured (requests isolated by a Landlock domain each, where the kernel has Landlock),
/// one with `CMD_ISOLATION=off`.
#[derive(Debug, Serialize)]
pub struct IsolationReport {
    pub without: LoadRun,
    pub with: LoadRun,
}

/// What isolating requests costs: `true` at c=1 on `runner` and on `unisolated`, taking turns.
pub async fn isolation(
    runner: &Server,
    unisolated: &Server,
    sidecar: &Sidecar,
    temp_dir: &str,
) -> Result<IsolationReport, Error> {
    let request = serde_json::json!({"commands": [{"command": "true"}]});
    let arms = [
        runner_arm("runner-isolation-off", unisolated, &request),
        runner_arm("runner-isolated", runner, &request),
    ];
    let mut runs = measure::paired(&arms, sidecar, LIMITS_REQUESTS, temp_dir).await?;
    let with = runs.pop().ok_or("no isolated run")?;
    let without = runs.pop().ok_or("no unisolated run")?;
    Ok(IsolationReport { without, with })
}

/// Prints each of `NEAR_SECRETS` secrets with its last character changed, `NEAR_ROUNDS`
/// times, then one secret as it is: every line must arrive, the last one masked.
pub async fn near_matches(
    runner: &Server,
    sidecar: &Sidecar,
    temp_dir: &str,
) -> Result<NearMatchReport, Error> {
    let secrets: Vec<String> = xorshift_strings(NEAR_SECRETS, |_| 20)
        .into_iter()
        .map(|s| format!("tok-{s}"))
        .collect();
    let near: Vec<String> = secrets
        .iter()
        .map(|s| format!("{}#", &s[..s.len() - 1]))
        .collect();
    let file = near
        .iter()
        .map(|line| format!("{line}\n"))
        .collect::<String>();
    let script = format!(
        "for i in $(seq {NEAR_ROUNDS}); do cat near.txt; done; echo {}",
        secrets[0]
    );
    let body = serde_json::json!({
        "mask": secrets,
        "files": [{"name": "near.txt", "data": file}],
        "commands": [{"command": script, "shell": true, "print": false}]
    });
    let arm = runner_arm("runner-near-matches", runner, &body);
    let last = secrets[0].clone();
    let masked_last = |got: &str, want: &str| match want == last {
        true => got == "***",
        false => got == want,
    };
    let expected = Expected {
        lines: (0..NEAR_ROUNDS)
            .flat_map(|_| near.iter().cloned())
            .chain([last.clone()]),
        matches: &masked_last,
    };
    runner.reset_peak_rss()?;
    let delivery = delivered(&arm, sidecar, temp_dir, expected).await?;
    Ok(NearMatchReport {
        secrets: NEAR_SECRETS,
        output_bytes: file.len() * NEAR_ROUNDS,
        delivery,
        peak_rss_kib: runner.memory_kib("VmHWM")?,
    })
}

fn runner_arm<'a>(name: &'a str, runner: &'a Server, request: &serde_json::Value) -> Arm<'a> {
    Arm {
        name,
        server: runner,
        body: request.to_string().into(),
        lines_at: LinesAt::Sidecar,
    }
}

/// `SECRETS` different alphanumeric secrets, from `SECRET_MIN` to `SECRET_MAX` bytes long, the
/// same in every run (a fixed-seed xorshift; alphanumeric so the shell prints them as they are).
fn secrets() -> Vec<String> {
    xorshift_strings(SECRETS, |i| {
        SECRET_MIN + i * (SECRET_MAX - SECRET_MIN) / (SECRETS - 1)
    })
}

/// `count` alphanumeric strings, the `i`th `len(i)` bytes long, the same in every run.
fn xorshift_strings(count: usize, len: impl Fn(usize) -> usize) -> Vec<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..count)
        .map(|i| {
            (0..len(i))
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    ALPHABET[(state % ALPHABET.len() as u64) as usize] as char
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twenty_distinct_secrets_of_20_to_60_bytes() {
        let secrets = secrets();
        assert_eq!(secrets.len(), 20);
        assert_eq!(secrets.first().map(String::len), Some(20));
        assert_eq!(secrets.last().map(String::len), Some(60));
        assert!(secrets
            .iter()
            .all(|s| s.bytes().all(|b| b.is_ascii_alphanumeric())));
        let distinct: std::collections::HashSet<_> = secrets.iter().collect();
        assert_eq!(distinct.len(), 20);
        assert_eq!(secrets, super::secrets(), "the same secrets in every run");
    }
}
