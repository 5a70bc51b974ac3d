//! Secret redaction: what is secret, in which forms, and how text is masked.
//!
//! - What is secret is decided by `SecretPolicy` (README, "Secrets"): the request's `mask`
//!   list, env entries marked `secret: true`, env values whose name has a word matching
//!   `CMD_MASK_NAMES`, the container's own env by the same rule, and values a command declares
//!   with a `::add-mask::VALUE` line while it runs.
//! - Each secret is masked in every form it is likely to take (`forms`): as given, line by line,
//!   base64, JSON-escaped, URL-encoded and shell-quoted; and wherever a reader would decode
//!   it (`views`: terminal escapes, JSON and percent escapes).
//! - Patterns are built into immutable `Segment`s; a `Snapshot` is the list of segments a
//!   request masks at one moment: its own, the container's and every other request's in
//!   flight (`Registry`). A `Masker` is one request's handle on all this.
//! - Output is cut in places (pipe reads, the 4 MiB message cap, the kept head and tail of a
//!   stream); `Snapshot::mask_prefix` and `mask_suffix` make sure no piece of a secret shows
//!   at a cut.
//!
//! Masking is applied where text leaves the runner, never by the code that produces it: the
//! log stream, the response renderer and the runner's own log writer each mask everything they
//! are given.

mod forms;
mod masker;
mod policy;
#[cfg(test)]
mod props;
mod registry;
mod segment;
mod snapshot;
#[cfg(test)]
mod tests;
mod views;

use std::sync::Arc;

pub use masker::Masker;
pub use policy::{SecretPolicy, DEFAULT_SECRET_NAMES};
pub use registry::Registry;
pub use snapshot::Snapshot;

/// What a secret is replaced with.
pub const REDACTED: &str = "***";

/// Secrets shorter than this are not masked: masking `a` or `1` would shred every log line.
pub const MIN_SECRET_LEN: usize = 4;

/// Most bytes of patterns (every form of every secret) one request may have masked: about 12
/// bytes of automaton each. A request whose own secrets need more is refused; declarations
/// past it make the request withhold its output.
pub const MAX_PATTERN_BYTES: usize = 2 * 1024 * 1024;

/// Most bytes of patterns the container's own secrets may take (its whole environment is a
/// few hundred KiB at most).
const MAX_CONTAINER_PATTERN_BYTES: usize = 8 * 1024 * 1024;

/// Makes the process's registry mask the container's own env values that are secret by the
/// name rule (`vars`: the runner's environment), in every request. Called once at start;
/// an environment whose secrets cannot all be masked is refused with the largest names.
pub fn install_container_secrets(
    policy: &SecretPolicy,
    vars: impl Iterator<Item = (String, String)>,
) -> Result<(), String> {
    let vars: Vec<(String, String)> = vars.collect();
    let secrets = policy.secrets(&[], vars.iter());
    let too_large = || {
        let mut secret_vars: Vec<&(String, String)> = vars
            .iter()
            .filter(|(name, value)| policy.is_secret_name(name) && secrets.contains(value))
            .collect();
        secret_vars.sort_by_key(|(_, value)| std::cmp::Reverse(value.len()));
        let names: Vec<&str> = secret_vars
            .iter()
            .take(3)
            .map(|(n, _)| n.as_str())
            .collect();
        format!(
            "the runner's environment holds secrets (by CMD_MASK_NAMES) too large to mask \
             (more than {} KiB in all their forms), largest: {}; pass them as files, or set \
             CMD_MASK_NAMES so that they are not taken for secrets",
            MAX_CONTAINER_PATTERN_BYTES / 1024,
            names.join(", ")
        )
    };
    let patterns =
        masker::patterns_within(&secrets, MAX_CONTAINER_PATTERN_BYTES).map_err(|_| too_large())?;
    let container = masker::segments(patterns).ok_or_else(too_large)?;
    if !Registry::install(Registry::with_container(container)) {
        return Err("the container's secrets were set twice".into());
    }
    Ok(())
}

/// The runner's own log lines, masked with every secret in flight: a `Write` for the log
/// subscriber that masks each line it is given before writing it on.
pub struct LogWriter<W> {
    inner: W,
}

impl<W> LogWriter<W> {
    pub fn new(inner: W) -> Self {
        LogWriter { inner }
    }
}

impl<W: std::io::Write> std::io::Write for LogWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let registry: &Arc<Registry> = Registry::global();
        let masked = registry.everything().mask_bytes(buf).into_owned();
        self.inner.write_all(&masked)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
