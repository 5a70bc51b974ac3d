//! Secret redaction. Every string that leaves the runner towards a log, an error message or the
//! response goes through its request's `Masker`.
//!
//! - What is secret is decided by `SecretPolicy` (README, "Secrets"): the request's `mask`
//!   list, env entries marked `secret: true`, env values whose name matches `CMD_MASK_NAMES`,
//!   and values a command declares with a `::add-mask::VALUE` line while it runs.
//! - Each secret is masked in every form it is likely to take (`forms`): as given, line by line,
//!   base64, JSON-escaped, URL-encoded and shell-quoted.
//! - Output is cut in places (pipe reads, the 4 MiB message cap, the kept head and tail of a
//!   stream); `Snapshot::mask_prefix` and `mask_suffix` make sure no piece of a secret shows
//!   at a cut.
//!
//! The secrets of a request can grow while it runs, so a `Masker` hands out `Snapshot`s: each
//! is one consistent automaton, and a line is masked with one snapshot from start to end.

mod declare;
mod forms;
mod policy;
#[cfg(test)]
mod props;
mod snapshot;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex, PoisonError, RwLock};

pub use declare::{declared_secret, Declarations};
pub use policy::{SecretPolicy, DEFAULT_SECRET_NAMES};
pub use snapshot::Snapshot;

/// What a secret is replaced with.
pub const REDACTED: &str = "***";

/// Secrets shorter than this are not masked: masking `a` or `1` would shred every log line.
pub const MIN_SECRET_LEN: usize = 4;

/// Most secrets one request may declare at run time (`::add-mask::`). Each one rebuilds the
/// automaton; a command declaring thousands would spend the request's time on that.
pub const MAX_DECLARED: usize = 256;

/// The secrets of one request: fixed ones from the request, plus any declared while it runs.
/// Shared by every task of the request (`Arc<Masker>`).
#[derive(Debug, Default)]
pub struct Masker {
    /// The secret values so far and how many were declared at run time. Held while a new
    /// snapshot is built, so two declarations at once cannot lose one another.
    values: Mutex<Values>,
    /// The automaton of `values`, replaced whole when a value is added.
    current: RwLock<Arc<Snapshot>>,
}

#[derive(Debug, Default)]
struct Values {
    list: Vec<String>,
    declared: usize,
}

impl Masker {
    /// A masker for these secret values.
    pub fn new<I, S>(secrets: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut list: Vec<String> = Vec::new();
        for secret in secrets {
            let secret = secret.into();
            if !list.contains(&secret) {
                list.push(secret);
            }
        }
        let snapshot = Snapshot::build(&list);
        Masker {
            values: Mutex::new(Values { list, declared: 0 }),
            current: RwLock::new(Arc::new(snapshot)),
        }
    }

    /// Adds a value declared while the request runs; it is masked in everything masked from
    /// now on. Returns false when it was already known, too short to mask, or over the limit.
    pub fn declare(&self, value: &str) -> bool {
        let mut values = self.values.lock().unwrap_or_else(PoisonError::into_inner);
        if value.len() < MIN_SECRET_LEN || values.list.iter().any(|v| v == value) {
            return false;
        }
        if values.declared >= MAX_DECLARED {
            tracing::warn!(
                limit = MAX_DECLARED,
                "a command declared too many secrets with ::add-mask::; ignoring the rest"
            );
            return false;
        }
        values.declared += 1;
        values.list.push(value.to_owned());
        let snapshot = Arc::new(Snapshot::build(&values.list));
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = snapshot;
        true
    }

    /// The automaton as it is now. Mask one piece of text with one snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Masks a string with the current snapshot.
    pub fn mask<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        self.snapshot().mask(text)
    }
}
