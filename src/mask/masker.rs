//! The secrets of one request, from when it is parsed until its response is rendered.
//!
//! A request's own secrets are built into segments once, when it starts (on the blocking pool
//! when that is real work), and it joins the process's `Registry`, which adds every other
//! request's secrets and the container's to what it masks. Values a command declares
//! (`::add-mask::`) are built in batches into segments of their own, merged as they pile up
//! (each new segment is merged with the ones below it while those are no more than twice its
//! size), so n declarations cost O(n log n) pattern building and O(log n) segments instead of a
//! rebuild of everything for each one.
//!
//! Everything is bounded by `MAX_PATTERN_BYTES`: a request whose own secrets need more is
//! refused before it runs; a command that declares more makes the request withhold its output
//! from then on (logs and response), because what cannot be masked must not be shown.

use std::collections::HashSet;
use std::sync::Arc;

use super::forms::forms_of;
use super::registry::{Member, Registry};
use super::segment::Segment;
use super::snapshot::Snapshot;
use super::{MAX_PATTERN_BYTES, MIN_SECRET_LEN};

/// Largest segment merged from smaller ones: building one takes about four times its size in
/// transient memory per pattern byte above what it keeps (about 12 bytes per pattern byte).
const SEGMENT_BYTES: usize = 1024 * 1024;

/// Patterns up to this size are built where they are asked for; more on the blocking pool, off
/// the async worker threads.
const INLINE_BUILD_BYTES: usize = 16 * 1024;

/// The secrets of a request have forms that take more than `MAX_PATTERN_BYTES`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge {
    /// Pattern bytes counted before giving up (more than the limit).
    pub pattern_bytes: usize,
}

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the secrets to mask take more than {} KiB in the forms they are masked in (each \
             value, its lines, base64, JSON, URL and shell forms), more than one request may \
             have masked ({} KiB); mask fewer or shorter values",
            self.pattern_bytes / 1024,
            MAX_PATTERN_BYTES / 1024
        )
    }
}

/// A command declared more than can be masked; the request now withholds its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflow;

impl std::fmt::Display for Overflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "masking capacity reached: a command declared more secrets with ::add-mask:: than \
             one request may have masked ({} KiB of patterns), or one too long to mask; the \
             rest of this request's output is withheld from the logs and the response",
            MAX_PATTERN_BYTES / 1024
        )
    }
}

/// The secrets of one request. Dropping it takes them out of the registry.
#[derive(Debug)]
pub struct Masker {
    registry: Arc<Registry>,
    place: Place,
    /// Declarations so far; one batch at a time.
    declared: tokio::sync::Mutex<Declared>,
}

#[derive(Debug)]
enum Place {
    /// Running: in the registry, masking what its members mask.
    Member(Arc<Member>),
    /// Refused before it ran: a fixed snapshot, not in the registry.
    Detached(Arc<Snapshot>),
}

/// A member's own segments and what they cost.
#[derive(Debug, Default)]
struct Declared {
    /// The request's own secrets.
    fixed: Vec<Arc<Segment>>,
    /// Declared values, largest segment first.
    stack: Vec<Arc<Segment>>,
    /// Values known (own and declared), so a value printed again costs nothing.
    values: HashSet<String>,
    pattern_bytes: usize,
    withhold: bool,
}

impl Declared {
    /// All the member's own segments.
    fn own(&self) -> Vec<Arc<Segment>> {
        self.fixed.iter().chain(&self.stack).cloned().collect()
    }
}

impl Masker {
    /// The masker of a request that runs: its `secrets` built and registered.
    pub async fn register(registry: &Arc<Registry>, secrets: &[String]) -> Result<Self, TooLarge> {
        let patterns = patterns_within(secrets, MAX_PATTERN_BYTES)?;
        let pattern_bytes = patterns.iter().map(Vec::len).sum();
        let fixed = build(patterns).await.ok_or(TooLarge { pattern_bytes })?;
        let member = registry.join(fixed.clone());
        Ok(Masker {
            registry: Arc::clone(registry),
            place: Place::Member(member),
            declared: tokio::sync::Mutex::new(Declared {
                fixed,
                values: secrets.iter().cloned().collect(),
                pattern_bytes,
                ..Declared::default()
            }),
        })
    }

    /// The masker of a request refused before it ran: every request's secrets and `secrets`
    /// (what could be read of the refused body). When those cannot be built, it shows nothing.
    pub async fn detached(registry: &Arc<Registry>, secrets: &[String]) -> Self {
        let built = match patterns_within(secrets, MAX_PATTERN_BYTES) {
            Ok(patterns) => build(patterns).await,
            Err(_) => None,
        };
        let snapshot = match built {
            Some(own) => registry.everything_and(&own),
            None => Snapshot::new(Vec::new(), true),
        };
        Masker {
            registry: Arc::clone(registry),
            place: Place::Detached(Arc::new(snapshot)),
            declared: tokio::sync::Mutex::default(),
        }
    }

    /// A masker of every request's secrets and no own ones.
    pub fn everyone(registry: &Arc<Registry>) -> Self {
        Masker {
            registry: Arc::clone(registry),
            place: Place::Detached(Arc::new(registry.everything_and(&[]))),
            declared: tokio::sync::Mutex::default(),
        }
    }

    /// What to mask with now. Mask one piece of text with one snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        match &self.place {
            Place::Member(member) => member.snapshot(),
            Place::Detached(snapshot) => Arc::clone(snapshot),
        }
    }

    /// Masks a string with the current snapshot.
    pub fn mask<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        match self.snapshot().mask(text) {
            std::borrow::Cow::Borrowed(_) => std::borrow::Cow::Borrowed(text),
            std::borrow::Cow::Owned(masked) => std::borrow::Cow::Owned(masked),
        }
    }

    /// Adds values a command declared; they are masked in everything masked once this returns.
    /// Past the limit, or for a value that cannot be built, the request withholds its output
    /// from then on and `Overflow` says so (once).
    pub async fn declare(&self, values: Vec<String>) -> Result<(), Overflow> {
        let Place::Member(member) = &self.place else {
            return Ok(());
        };
        let mut declared = self.declared.lock().await;
        if declared.withhold {
            return Ok(());
        }
        let new: Vec<String> = values
            .into_iter()
            .filter(|value| value.len() >= MIN_SECRET_LEN && !declared.values.contains(value))
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        let room = MAX_PATTERN_BYTES.saturating_sub(declared.pattern_bytes);
        let stack = match patterns_within(&new, room) {
            Ok(patterns) => {
                let added: usize = patterns.iter().map(Vec::len).sum();
                let stack = declared.stack.clone();
                let built = build_with(added, move || push_merging(stack, patterns)).await;
                built.map(|stack| (stack, added))
            }
            Err(_) => None,
        };
        let Some((stack, added)) = stack else {
            declared.withhold = true;
            self.registry.update(member, declared.own(), true);
            return Err(Overflow);
        };
        declared.values.extend(new);
        declared.stack = stack;
        declared.pattern_bytes += added;
        self.registry.update(member, declared.own(), false);
        Ok(())
    }

    /// Shows nothing more of this request's output (a declaration that cannot be read whole).
    /// True when it showed output until now.
    pub async fn withhold(&self) -> bool {
        let Place::Member(member) = &self.place else {
            return false;
        };
        let mut declared = self.declared.lock().await;
        if declared.withhold {
            return false;
        }
        declared.withhold = true;
        self.registry.update(member, declared.own(), true);
        true
    }

    /// A masker of `secrets` in a registry of its own (no container, no other requests).
    #[cfg(test)]
    pub fn new<I, S>(secrets: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let secrets: Vec<String> = secrets.into_iter().map(Into::into).collect();
        let patterns = patterns_within(&secrets, usize::MAX).unwrap_or_default();
        let fixed = segments(patterns).unwrap_or_default();
        let registry = Arc::new(Registry::default());
        let member = registry.join(fixed.clone());
        Masker {
            registry,
            place: Place::Member(member),
            declared: tokio::sync::Mutex::new(Declared {
                fixed,
                values: secrets.into_iter().collect(),
                ..Declared::default()
            }),
        }
    }
}

impl Default for Masker {
    /// Masks nothing (a registry of its own, empty).
    fn default() -> Self {
        Masker::everyone(&Arc::new(Registry::default()))
    }
}

impl Drop for Masker {
    fn drop(&mut self) {
        if let Place::Member(member) = &self.place {
            self.registry.leave(member);
        }
    }
}

/// Every form of every secret, once each; `TooLarge` as soon as they take more than `limit`
/// bytes (so a huge list is not turned into patterns first).
pub(super) fn patterns_within(secrets: &[String], limit: usize) -> Result<Vec<Vec<u8>>, TooLarge> {
    let mut seen = HashSet::new();
    let mut patterns = Vec::new();
    let mut bytes = 0usize;
    for secret in secrets {
        forms_of(secret, &mut |form| {
            if bytes <= limit && !seen.contains(&form) {
                bytes += form.len();
                seen.insert(form.clone());
                patterns.push(form);
            }
        });
        if bytes > limit {
            return Err(TooLarge {
                pattern_bytes: bytes,
            });
        }
    }
    Ok(patterns)
}

/// Segments of at most `SEGMENT_BYTES` of patterns each, built where that is cheap, else on
/// the blocking pool. `None` when one cannot be built.
async fn build(patterns: Vec<Vec<u8>>) -> Option<Vec<Arc<Segment>>> {
    let bytes = patterns.iter().map(Vec::len).sum();
    build_with(bytes, move || segments(patterns)).await
}

/// Runs `work` (building patterns of `bytes` bytes) here or on the blocking pool.
async fn build_with<T: Send + 'static>(
    bytes: usize,
    work: impl FnOnce() -> Option<T> + Send + 'static,
) -> Option<T> {
    if bytes <= INLINE_BUILD_BYTES {
        return work();
    }
    tokio::task::spawn_blocking(work).await.ok().flatten()
}

/// `patterns` as segments of at most `SEGMENT_BYTES` each (one pattern alone may be larger).
pub(super) fn segments(patterns: Vec<Vec<u8>>) -> Option<Vec<Arc<Segment>>> {
    let mut segments = Vec::new();
    let mut batch = Vec::new();
    let mut batch_bytes = 0;
    for pattern in patterns {
        if batch_bytes + pattern.len() > SEGMENT_BYTES && !batch.is_empty() {
            segments.push(Arc::new(Segment::build(std::mem::take(&mut batch))?));
            batch_bytes = 0;
        }
        batch_bytes += pattern.len();
        batch.push(pattern);
    }
    if !batch.is_empty() {
        segments.push(Arc::new(Segment::build(batch)?));
    }
    Some(segments)
}

/// Puts a segment of `patterns` on top of `stack`, merging it with the segments below while
/// they are no more than twice its size (and the result within `SEGMENT_BYTES`).
fn push_merging(mut stack: Vec<Arc<Segment>>, patterns: Vec<Vec<u8>>) -> Option<Vec<Arc<Segment>>> {
    let mut top = Segment::build(patterns)?;
    while let Some(below) = stack.last() {
        let (size, below_size) = (top.pattern_bytes(), below.pattern_bytes());
        if below_size > 2 * size || below_size + size > SEGMENT_BYTES {
            break;
        }
        top = Segment::merge(below, &top)?;
        stack.pop();
    }
    stack.push(Arc::new(top));
    Some(stack)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Arc<Registry> {
        Arc::new(Registry::default())
    }

    #[tokio::test]
    async fn declared_values_are_masked_at_once_and_merged_into_few_segments() {
        let registry = registry();
        let masker = Masker::register(&registry, &["fixed-secret".into()])
            .await
            .unwrap();
        for i in 0..300 {
            masker
                .declare(vec![format!("declared-{i:04}")])
                .await
                .unwrap();
            let text = format!("a declared-{i:04} b fixed-secret");
            assert_eq!(masker.mask(&text), "a *** b ***");
        }
        let stack = masker.declared.lock().await.stack.len();
        assert!(stack <= 10, "{stack} segments for 300 declarations");
        assert_eq!(masker.mask("declared-0000 declared-0299"), "*** ***");
    }

    #[tokio::test]
    async fn declarations_past_the_limit_withhold_everything() {
        let registry = registry();
        let masker = Masker::register(&registry, &[]).await.unwrap();
        let big = |c: char| c.to_string().repeat(60_000);
        let mut overflowed = false;
        for c in 'a'..='z' {
            if masker.declare(vec![big(c)]).await.is_err() {
                overflowed = true;
                break;
            }
        }
        assert!(overflowed);
        assert!(masker.snapshot().withholds());
        assert_eq!(masker.mask("anything at all"), "***");
        // Once withheld, further declarations change nothing and say nothing.
        assert_eq!(masker.declare(vec![big('z')]).await, Ok(()));
    }

    #[tokio::test]
    async fn a_request_masks_what_others_in_flight_declare_and_keep_after_they_end() {
        let registry = registry();
        let a = Masker::register(&registry, &["secret-of-a".into()])
            .await
            .unwrap();
        let b = Masker::register(&registry, &["secret-of-b".into()])
            .await
            .unwrap();
        assert_eq!(a.mask("secret-of-b"), "***");
        assert_eq!(b.mask("secret-of-a"), "***");
        b.declare(vec!["declared-by-b".into()]).await.unwrap();
        assert_eq!(a.mask("declared-by-b"), "***");
        assert_eq!(
            registry.everything().mask("declared-by-b secret-of-a"),
            "*** ***"
        );
        drop(b);
        assert_eq!(a.mask("secret-of-b declared-by-b"), "*** ***");
        assert_eq!(registry.everything().mask("secret-of-b"), "secret-of-b");
        let c = Masker::register(&registry, &[]).await.unwrap();
        assert_eq!(c.mask("secret-of-b secret-of-a"), "secret-of-b ***");
    }

    #[tokio::test]
    async fn own_secrets_past_the_limit_are_refused() {
        let registry = registry();
        let huge = vec!["x".repeat(MAX_PATTERN_BYTES)];
        let error = Masker::register(&registry, &huge).await.unwrap_err();
        assert!(error.pattern_bytes > MAX_PATTERN_BYTES);
        let detached = Masker::detached(&registry, &huge).await;
        assert_eq!(detached.mask("something"), "***");
    }
}
