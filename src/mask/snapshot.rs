//! One immutable set of secret patterns and the automaton that finds them.
//!
//! Besides masking a whole text, a snapshot knows how to mask a text that is cut: a prefix of a
//! longer stream (the response keeps the first bytes of stdout; a log message is cut at 4 MiB)
//! or a suffix of one (error messages end with the last bytes of stderr). A cut must never
//! leave the beginning or the end of a secret visible, so it is moved to where no pattern
//! straddles it and the bytes that might belong to a secret on the other side of the cut are
//! left out.

use std::borrow::Cow;
use std::collections::HashSet;

use aho_corasick::{packed, AhoCorasick, AhoCorasickKind, Input, MatchKind};

use super::forms::forms_of;
use super::REDACTED;

/// Most patterns one SIMD searcher takes (the `packed` searcher's limit).
const PACKED_PATTERNS: usize = 64;

/// Long texts (a megabyte of stdout for the response) are searched in blocks of this size, so
/// that the automaton, several times slower than the prefilter, only walks blocks that hold a
/// secret.
const BLOCK: usize = 16 * 1024;

/// The patterns of a set of secrets and their automaton.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Finds every occurrence; `None` when there is nothing to mask.
    matcher: Option<AhoCorasick>,
    /// Answers "is any secret in here?" several times faster than the automaton, which nearly
    /// all output needs to hear and nothing more. `None` where the CPU has no SIMD searcher.
    prefilter: Option<Vec<packed::Searcher>>,
    /// Every pattern, for the checks at cut points.
    patterns: Vec<Vec<u8>>,
    /// Length of the longest pattern.
    longest: usize,
}

impl Snapshot {
    /// The patterns of every form of `secrets`, once each.
    pub(super) fn build(secrets: &[String]) -> Self {
        let mut seen = HashSet::new();
        let mut patterns = Vec::new();
        for secret in secrets {
            forms_of(secret, &mut |form| {
                if !seen.contains(&form) {
                    seen.insert(form.clone());
                    patterns.push(form);
                }
            });
        }
        if patterns.is_empty() {
            return Snapshot::default();
        }
        let matcher = AhoCorasick::builder()
            // Every occurrence of every pattern, overlapping ones included, so that the union
            // of them is masked: with one secret inside another, or two overlapping in the
            // text, leftmost-first or -longest matching would leave the rest of the second one
            // visible.
            .match_kind(MatchKind::Standard)
            // The crate would pick a DFA for few patterns whatever their length: a handful of
            // long secrets (certificates) would cost hundreds of megabytes. The contiguous NFA
            // takes about 20 bytes per pattern byte.
            .kind(Some(AhoCorasickKind::ContiguousNFA))
            .build(&patterns);
        match matcher {
            Ok(matcher) => Snapshot {
                matcher: Some(matcher),
                prefilter: prefilter(&patterns),
                longest: patterns.iter().map(Vec::len).max().unwrap_or(0),
                patterns,
            },
            Err(error) => {
                // Only a pattern set far beyond any request body can overflow the automaton.
                tracing::error!(%error, "cannot build the masking automaton; masking everything");
                Snapshot {
                    matcher: None,
                    prefilter: None,
                    patterns: vec![Vec::new()],
                    longest: 0,
                }
            }
        }
    }

    /// Whether `bytes` hold an occurrence of any pattern. When a whole read of a pipe holds
    /// none, none of its lines needs to be looked at again.
    pub fn finds_any(&self, bytes: &[u8]) -> bool {
        match (&self.prefilter, &self.matcher) {
            (Some(searchers), _) => searchers.iter().any(|s| s.find(bytes).is_some()),
            (None, Some(matcher)) => matcher.is_match(bytes),
            (None, None) => false,
        }
    }

    /// True when there is nothing to mask.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Masks a string.
    pub fn mask<'a>(&self, text: &'a str) -> Cow<'a, str> {
        match self.mask_bytes(text.as_bytes()) {
            Cow::Borrowed(_) => Cow::Borrowed(text),
            // Patterns are whole UTF-8 strings, so a match in UTF-8 text starts and ends on
            // character boundaries and the result stays UTF-8; `lossy` only guards that.
            Cow::Owned(bytes) => match String::from_utf8(bytes) {
                Ok(text) => Cow::Owned(text),
                Err(error) => Cow::Owned(String::from_utf8_lossy(error.as_bytes()).into_owned()),
            },
        }
    }

    /// Masks raw bytes (command output, which need not be UTF-8): each stretch of text covered
    /// by secrets becomes one `***`. Allocates only when a secret is found.
    pub fn mask_bytes<'a>(&self, bytes: &'a [u8]) -> Cow<'a, [u8]> {
        if self.unusable() {
            return Cow::Owned(REDACTED.as_bytes().to_vec());
        }
        // The common case, a line without secrets, costs one scan and no allocation.
        let covered = self.covered(bytes);
        if covered.is_empty() {
            return Cow::Borrowed(bytes);
        }
        Cow::Owned(replace(bytes, 0, &covered))
    }

    /// The stretches of `bytes` covered by occurrences of patterns, overlapping occurrences
    /// merged, in order.
    fn covered(&self, bytes: &[u8]) -> Vec<(usize, usize)> {
        self.covered_in_blocks(bytes, BLOCK)
    }

    /// `covered`, searching blocks of `block` bytes plus an overlap of the longest pattern
    /// less one: an occurrence across a block's end lies whole in the next block.
    pub(super) fn covered_in_blocks(&self, bytes: &[u8], block: usize) -> Vec<(usize, usize)> {
        let mut covered: Vec<(usize, usize)> = Vec::new();
        let Some(matcher) = &self.matcher else {
            return covered;
        };
        let overlap = self.longest.saturating_sub(1);
        let (mut start, mut searched) = (0, 0);
        loop {
            let end = bytes.len().min(start + block.max(1) + overlap);
            if self.finds_any(&bytes[start..end]) {
                let span = Input::new(bytes).span(start..end);
                // Occurrences come in the order of their ends, so a new one can only overlap
                // the last stretches found. Those ending in the previous block were found there.
                for found in matcher.find_overlapping_iter(span) {
                    if found.end() > searched {
                        merge(&mut covered, found.start(), found.end());
                    }
                }
            }
            if end == bytes.len() {
                return covered;
            }
            searched = end;
            start = end - overlap;
        }
    }

    /// Masks the start of `bytes`, a stream that goes on after them (or was cut there), up to
    /// at most `limit` bytes. Returns the masked text and how many bytes of `bytes` it stands
    /// for: the cut is moved back before any secret it would split, and before any bytes at
    /// the end of `bytes` that may be the beginning of a secret whose rest is not known yet.
    /// Bytes beyond the cut are the caller's: kept for later or dropped. The count is 0 only
    /// when a secret starts at the very beginning and is longer than `limit`.
    pub fn mask_prefix<'a>(&self, bytes: &'a [u8], limit: usize) -> (Cow<'a, [u8]>, usize) {
        if self.unusable() {
            return (
                Cow::Owned(REDACTED.as_bytes().to_vec()),
                limit.min(bytes.len()),
            );
        }
        let mut cut = limit.min(bytes.len());
        if let Some(start) = self.unfinished_start(bytes) {
            cut = cut.min(start);
        }
        let mut covered = self.covered(bytes);
        if let Some(&(start, _)) = covered
            .iter()
            .find(|&&(start, end)| start < cut && cut < end)
        {
            cut = start;
        }
        covered.retain(|&(_, end)| end <= cut);
        if covered.is_empty() {
            return (Cow::Borrowed(&bytes[..cut]), cut);
        }
        (Cow::Owned(replace(&bytes[..cut], 0, &covered)), cut)
    }

    /// Masks `bytes`, the end of a longer stream whose beginning was cut off. Bytes at the
    /// start that may be the end of a secret begun before the cut are left out.
    pub fn mask_suffix<'a>(&self, bytes: &'a [u8]) -> Cow<'a, [u8]> {
        if self.unusable() {
            return Cow::Owned(REDACTED.as_bytes().to_vec());
        }
        let skip = self.leading_fragment(bytes);
        // Secrets are found in all of `bytes`: a whole secret at the start may itself begin
        // with what looks like the end of one, and must not lose its first bytes and with
        // them its match.
        let covered = self.covered(bytes);
        if covered.iter().all(|&(_, end)| end <= skip) {
            return Cow::Borrowed(&bytes[skip..]);
        }
        Cow::Owned(replace(bytes, skip, &covered))
    }

    /// The earliest position from which the rest of `bytes` is a proper beginning of a pattern:
    /// a secret that may go on after the end.
    fn unfinished_start(&self, bytes: &[u8]) -> Option<usize> {
        let mut earliest: Option<usize> = None;
        for pattern in &self.patterns {
            let Some(&first) = pattern.first() else {
                continue;
            };
            // Only the last `len - 1` bytes can hold a proper beginning of this pattern.
            let from = bytes.len().saturating_sub(pattern.len() - 1);
            let found = memchr::memchr_iter(first, &bytes[from..])
                .map(|i| from + i)
                .find(|&i| pattern.starts_with(&bytes[i..]));
            if let Some(start) = found {
                earliest = Some(earliest.map_or(start, |e| e.min(start)));
            }
        }
        earliest
    }

    /// How many bytes at the start of `bytes` may be the end of a secret (a proper end of a
    /// pattern, or a middle piece of one when `bytes` is shorter than it).
    fn leading_fragment(&self, bytes: &[u8]) -> usize {
        let Some(&first) = bytes.first() else {
            return 0;
        };
        let mut longest = 0;
        for pattern in &self.patterns {
            // A pattern's end starting at `j` (1.., so it is a proper end); the earliest such
            // `j` that fits is the longest.
            let fits = memchr::memchr_iter(first, pattern.get(1..).unwrap_or_default())
                .map(|j| &pattern[j + 1..])
                .find_map(|end| match end.len() <= bytes.len() {
                    true => bytes.starts_with(end).then_some(end.len()),
                    false => end.starts_with(bytes).then_some(bytes.len()),
                });
            longest = longest.max(fits.unwrap_or(0));
        }
        longest
    }

    /// The automaton could not be built: nothing can be shown safely.
    fn unusable(&self) -> bool {
        self.matcher.is_none() && !self.patterns.is_empty()
    }
}

/// Adds an occurrence that ends no earlier than any before it, merging it with the stretches
/// it overlaps.
fn merge(covered: &mut Vec<(usize, usize)>, mut start: usize, end: usize) {
    while let Some(&(last_start, last_end)) = covered.last() {
        if last_end <= start {
            break;
        }
        start = start.min(last_start);
        covered.pop();
    }
    covered.push((start, end));
}

/// SIMD searchers over all patterns, or `None` where they cannot be built.
fn prefilter(patterns: &[Vec<u8>]) -> Option<Vec<packed::Searcher>> {
    patterns
        .chunks(PACKED_PATTERNS)
        .map(|chunk| {
            let mut builder = packed::Config::new().builder();
            builder.extend(chunk);
            builder.build()
        })
        .collect()
}

/// `bytes` from `from` on, with each stretch of `covered` (in order, disjoint) replaced by
/// `***`; stretches ending before `from` are left out with it.
fn replace(bytes: &[u8], from: usize, covered: &[(usize, usize)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() - from);
    let mut copied = from;
    for &(start, end) in covered.iter().filter(|&&(_, end)| end > from) {
        out.extend_from_slice(&bytes[copied..start.max(from)]);
        out.extend_from_slice(REDACTED.as_bytes());
        copied = end;
    }
    out.extend_from_slice(&bytes[copied..]);
    out
}
