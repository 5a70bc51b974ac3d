//! One request whose output must arrive complete: how long it took, and whether every line
//! arrived, in order, where the server puts it (at the sidecar before the response, or in the
//! response body for the spawn floor).

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;

use crate::client::{Client, Error};
use crate::load::action_id;
use crate::sidecar::Sidecar;
use crate::target::{Arm, LinesAt};

/// The outcome of one such request.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    /// The `Direktiv-TempDir` the request carried.
    pub direktiv_tempdir: Option<String>,
    pub ms: f64,
    pub status: u16,
    pub ok: bool,
    /// "all N lines in order", or what was wrong.
    pub check: String,
    /// Log posts the sidecar got for the request (how well the server coalesces lines).
    pub sidecar_posts: usize,
}

/// What a run expects: the lines in order, and when a received line counts as the expected one.
pub struct Expected<'a, I> {
    pub lines: I,
    /// Equality, or looser (a masked line differs from the printed one).
    pub matches: &'a dyn Fn(&str, &str) -> bool,
}

/// Exact equality: the line as the command printed it.
pub fn same(got: &str, want: &str) -> bool {
    got == want
}

/// Sends `arm`'s request with `temp_dir` as `Direktiv-TempDir` on a fresh connection, then
/// checks the lines against `expected`.
pub async fn delivered<I: Iterator<Item = String>>(
    arm: &Arm<'_>,
    sidecar: &Sidecar,
    temp_dir: &str,
    expected: Expected<'_, I>,
) -> Result<Delivery, Error> {
    let aid = action_id(&format!("bench-{}-delivery", arm.name));
    let (elapsed, status, reply) = request(arm, &aid, temp_dir).await?;
    let posts = sidecar.posts(&aid);
    let check = match arm.lines_at {
        LinesAt::Sidecar => check_lines(output_lines(&sidecar.lines(&aid)), expected),
        LinesAt::Response => check_lines(String::from_utf8_lossy(&reply).lines(), expected),
    };
    sidecar.clear();
    let ok = status == 200 && check.is_ok();
    Ok(Delivery {
        direktiv_tempdir: Some(temp_dir.to_owned()),
        ms: elapsed.as_secs_f64() * 1e3,
        status,
        ok,
        check: match check {
            Ok(n) => format!("all {n} lines in order"),
            Err(why) => why,
        },
        sidecar_posts: posts,
    })
}

/// One timed `POST /` on a fresh keep-alive connection (connected before the clock starts).
async fn request(
    arm: &Arm<'_>,
    aid: &str,
    temp_dir: &str,
) -> Result<(Duration, u16, Bytes), Error> {
    let mut client = Client::connect(arm.server.addr).await?;
    let started = Instant::now();
    let reply = client.post(aid, Some(temp_dir), arm.body.clone()).await?;
    Ok((started.elapsed(), reply.status.as_u16(), reply.body))
}

/// The median of several runs by time, or the first failed one (so a failure is never hidden).
pub fn median(mut runs: Vec<Delivery>) -> Result<Delivery, Error> {
    if let Some(failed) = runs.iter().position(|d| !d.ok) {
        return Ok(runs.swap_remove(failed));
    }
    runs.sort_by(|a, b| a.ms.total_cmp(&b.ms));
    let middle = runs.len() / 2;
    runs.into_iter()
        .nth(middle)
        .ok_or_else(|| "no delivery runs".into())
}

/// The command's own lines at the sidecar: the `running command '...'` lines removed.
fn output_lines(lines: &[String]) -> impl Iterator<Item = &str> {
    lines
        .iter()
        .map(String::as_str)
        .filter(|l| !l.starts_with("running command"))
}

/// Compares received lines with the expected ones: the count on success, else the first
/// difference.
fn check_lines<'a, I: Iterator<Item = String>>(
    received: impl Iterator<Item = &'a str>,
    expected: Expected<'_, I>,
) -> Result<usize, String> {
    let Expected {
        lines: mut wanted,
        matches,
    } = expected;
    let mut count = 0;
    for got in received {
        match wanted.next() {
            Some(want) if matches(got, &want) => count += 1,
            Some(want) => {
                return Err(format!(
                    "line {count}: got {got:.40?}, expected {want:.40?}"
                ))
            }
            None => {
                return Err(format!(
                    "more lines than expected: extra {got:.40?} after {count}"
                ))
            }
        }
    }
    match wanted.next() {
        None => Ok(count),
        Some(want) => Err(format!(
            "only {count} lines arrived; next expected {want:.40?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbers(n: u32) -> Expected<'static, impl Iterator<Item = String>> {
        Expected {
            lines: (1..=n).map(|i| i.to_string()),
            matches: &same,
        }
    }

    #[test]
    fn line_check_counts_and_finds_differences() {
        assert_eq!(check_lines(["1", "2", "3"].into_iter(), numbers(3)), Ok(3));
        assert!(check_lines(["1", "3", "2"].into_iter(), numbers(3))
            .unwrap_err()
            .starts_with("line 1"));
        assert!(check_lines(["1", "2"].into_iter(), numbers(3))
            .unwrap_err()
            .starts_with("only 2"));
        assert!(check_lines(["1", "2", "3", "4"].into_iter(), numbers(3))
            .unwrap_err()
            .starts_with("more"));
    }

    #[test]
    fn a_looser_match_decides_per_line() {
        let loose = |got: &str, want: &str| got.len() == want.len();
        let expected = Expected {
            lines: ["ab", "cd"].into_iter().map(str::to_owned),
            matches: &loose,
        };
        assert_eq!(check_lines(["xy", "zz"].into_iter(), expected), Ok(2));
    }

    #[test]
    fn the_server_s_own_lines_are_not_output() {
        let lines = vec![
            "running command 'seq 1 2'".to_owned(),
            "1".to_owned(),
            "2".to_owned(),
        ];
        assert_eq!(check_lines(output_lines(&lines), numbers(2)), Ok(2));
    }

    fn run(ms: f64, ok: bool) -> Delivery {
        Delivery {
            direktiv_tempdir: None,
            ms,
            status: 200,
            ok,
            check: String::new(),
            sidecar_posts: 0,
        }
    }

    #[test]
    fn the_median_run_is_reported_unless_one_failed() {
        let runs = vec![run(3.0, true), run(1.0, true), run(2.0, true)];
        assert_eq!(median(runs).unwrap().ms, 2.0);
        let runs = vec![run(3.0, true), run(1.0, false), run(2.0, true)];
        let reported = median(runs).unwrap();
        assert!(!reported.ok && reported.ms == 1.0);
    }
}
