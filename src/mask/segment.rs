//! One immutable set of patterns and the automaton that finds them.
//!
//! The secrets a request masks grow while it runs (declarations, other requests starting), so
//! they are kept as several segments, each built once from a batch of patterns and never
//! changed; a `Snapshot` is a list of them. What a segment answers is where its patterns cover
//! a text, for the union to be masked, and what a cut needs to know (whether the text ends in
//! the beginning of a pattern or starts with the end of one).
//!
//! The search walks the automaton itself rather than listing every match: at each position
//! only the longest pattern ending there matters for the stretch that is covered, so text that
//! ends hundreds of nested patterns at every byte (`aaaa…` against `a…a` secrets of every
//! length) costs one step per byte, not one per match.

use std::collections::HashSet;
use std::sync::OnceLock;

use aho_corasick::automaton::{Automaton, StateID};
use aho_corasick::nfa::contiguous::NFA;
use aho_corasick::{packed, Anchored, MatchKind};

/// Most patterns one SIMD searcher takes (the `packed` searcher's limit).
const PACKED_PATTERNS: usize = 64;

/// Most SIMD searchers run before the automaton: beyond this many patterns, running every
/// searcher over a text costs more than walking the automaton once.
const MAX_PREFILTERS: usize = 4;

/// Patterns of up to this many bytes in all have their automaton built when it is first
/// needed: most requests' secrets never show, and the prefilter alone tells so. Larger
/// segments are built at once, where the caller chose (off the async workers: the same bound
/// as `masker::INLINE_BUILD_BYTES`, so no larger build runs on them later).
const LAZY_BYTES: usize = 16 * 1024;

/// Bytes of each pattern the prefilter looks for: the standard and URL-safe base64 forms of a
/// value mostly begin alike, so the prefilter needs fewer patterns, and fewer passes.
const PREFIX: usize = 8;

/// The patterns of a batch of secrets and their automaton.
pub(super) struct Segment {
    /// Finds the patterns (every occurrence, overlapping ones too); built on first use for a
    /// small segment. `None` inside when it cannot be built: then every text it is asked about
    /// is covered whole.
    nfa: OnceLock<Option<NFA>>,
    /// Answers "is any pattern in here?" several times faster than the automaton, which nearly
    /// all output needs to hear and nothing more. `None` with many patterns, or where the CPU
    /// has no SIMD searcher.
    prefilter: Option<Vec<packed::Searcher>>,
    /// Length of the longest pattern: how far an occurrence reaches from where it begins.
    longest: usize,
    /// Every pattern, for the checks at cut points and to merge segments.
    patterns: Vec<Vec<u8>>,
    /// Bytes of all patterns: what the segment costs (`Budget`).
    pattern_bytes: usize,
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("patterns", &self.patterns.len())
            .field("pattern_bytes", &self.pattern_bytes)
            .finish()
    }
}

impl Segment {
    /// A segment of `patterns` (not empty; duplicates are removed). `None` only when the
    /// automaton cannot be built, which only a pattern set far beyond any budget can cause.
    pub(super) fn build(patterns: Vec<Vec<u8>>) -> Option<Segment> {
        let mut seen = HashSet::with_capacity(patterns.len());
        let patterns: Vec<Vec<u8>> = patterns
            .into_iter()
            .filter(|pattern| !pattern.is_empty() && seen.insert(pattern.clone()))
            .collect();
        let pattern_bytes = patterns.iter().map(Vec::len).sum();
        let nfa = OnceLock::new();
        if pattern_bytes > LAZY_BYTES {
            nfa.set(Some(automaton(&patterns)?)).ok()?;
        }
        Some(Segment {
            nfa,
            prefilter: prefilter(&patterns),
            longest: patterns.iter().map(Vec::len).max().unwrap_or(0),
            pattern_bytes,
            patterns,
        })
    }

    /// One segment of the patterns of both.
    pub(super) fn merge(a: &Segment, b: &Segment) -> Option<Segment> {
        Segment::build(a.patterns.iter().chain(&b.patterns).cloned().collect())
    }

    pub(super) fn pattern_bytes(&self) -> usize {
        self.pattern_bytes
    }

    /// The stretches of `bytes` covered by this segment's patterns: in order, overlapping
    /// occurrences merged.
    ///
    /// With a prefilter, the automaton walks only from each place where the prefilter finds
    /// the beginning of a pattern, as far as the longest pattern reaches; the walk goes on
    /// without a break while the next find lies within it. Without, it walks all of `bytes`.
    pub(super) fn cover(&self, bytes: &[u8]) -> Vec<(usize, usize)> {
        let mut covered = Vec::new();
        let Some(searchers) = &self.prefilter else {
            self.walk(bytes, 0..bytes.len(), &mut None, &mut covered);
            return covered;
        };
        // Each searcher's next find at or after `from` (`Some(None)`: none left), kept until
        // the search passes it, so no searcher scans the same bytes twice.
        let mut next: Vec<Option<Option<usize>>> = vec![None; searchers.len()];
        // Walked up to here, with the automaton's state there.
        let (mut walked_to, mut state) = (0, None);
        let mut from = 0;
        while from < bytes.len() {
            let mut first: Option<usize> = None;
            for (searcher, next) in searchers.iter().zip(&mut next) {
                let found = match *next {
                    Some(Some(at)) if at >= from => Some(at),
                    Some(None) => None,
                    _ => {
                        let span = aho_corasick::Span::from(from..bytes.len());
                        let at = searcher.find_in(bytes, span).map(|m| m.start());
                        *next = Some(at);
                        at
                    }
                };
                first = match (first, found) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            let Some(first) = first else {
                break;
            };
            if first >= walked_to {
                // Nothing begins between the end of the last walk and this find.
                (walked_to, state) = (first, None);
            }
            // Whatever begins here ends within the longest pattern's length.
            let end = bytes.len().min(first + self.longest);
            if end > walked_to {
                self.walk(bytes, walked_to..end, &mut state, &mut covered);
                walked_to = end;
            }
            from = first + 1;
        }
        covered
    }

    /// Walks the automaton over `bytes[range]`, going on from `state` (a fresh start when
    /// `None`), and adds, at each position where patterns end, the stretch of the longest.
    fn walk(
        &self,
        bytes: &[u8],
        range: std::ops::Range<usize>,
        state: &mut Option<StateID>,
        covered: &mut Vec<(usize, usize)>,
    ) {
        let nfa = self.nfa.get_or_init(|| automaton(&self.patterns));
        let start = nfa
            .as_ref()
            .and_then(|nfa| nfa.start_state(Anchored::No).ok());
        let (Some(nfa), Some(start)) = (nfa, start) else {
            // Nothing can be told apart: all of it is covered.
            merge(covered, range.start, range.end);
            return;
        };
        let mut current = state.unwrap_or(start);
        let from = range.start;
        for (offset, &byte) in bytes[range].iter().enumerate() {
            current = nfa.next_state(Anchored::No, current, byte);
            if nfa.is_special(current) && nfa.is_match(current) {
                // A state's own pattern comes first among its matches, then those of its
                // failure state: the first is the longest pattern ending here
                // (`longest_match_comes_first` checks that this holds).
                let length = nfa.pattern_len(nfa.match_pattern(current, 0));
                let end = from + offset + 1;
                merge(covered, end - length, end);
            }
        }
        *state = Some(current);
    }

    /// The earliest position from which the rest of `bytes` is a proper beginning of a pattern:
    /// a secret that may go on after the end.
    pub(super) fn unfinished_start(&self, bytes: &[u8]) -> Option<usize> {
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
    pub(super) fn leading_fragment(&self, bytes: &[u8]) -> usize {
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
}

/// The automaton of `patterns`; `None` (logged) when it cannot be built, which only a
/// pattern set far beyond any budget can cause.
fn automaton(patterns: &[Vec<u8>]) -> Option<NFA> {
    NFA::builder()
        // Every occurrence of every pattern, so that the union of them is masked: with one
        // secret inside another, or two overlapping in the text, leftmost matching would leave
        // the rest of the second one visible.
        .match_kind(MatchKind::Standard)
        // The contiguous NFA takes about 12 bytes per pattern byte; a DFA, which the crate
        // would choose for few patterns whatever their length, hundreds of times that.
        .build(patterns)
        .inspect_err(|error| tracing::error!(%error, "cannot build a masking automaton"))
        .ok()
}

/// Adds an occurrence that ends no earlier than any before it, merging it with the stretches
/// it overlaps.
pub(super) fn merge(covered: &mut Vec<(usize, usize)>, mut start: usize, end: usize) {
    while let Some(&(last_start, last_end)) = covered.last() {
        if last_end <= start {
            break;
        }
        start = start.min(last_start);
        covered.pop();
    }
    covered.push((start, end));
}

/// SIMD searchers for the first `PREFIX` bytes of every pattern (an occurrence of a pattern
/// starts with one), or `None` where they cannot be built or would be too many. The forms of a
/// value share many beginnings (base64 alone or padded begins as its core does; the JSON, URL
/// and shell forms of plain text are the text), so there are far fewer prefixes than patterns.
fn prefilter(patterns: &[Vec<u8>]) -> Option<Vec<packed::Searcher>> {
    let mut prefixes: Vec<&[u8]> = patterns
        .iter()
        .map(|pattern| &pattern[..pattern.len().min(PREFIX)])
        .collect();
    prefixes.sort_unstable();
    prefixes.dedup();
    if prefixes.len() > PACKED_PATTERNS * MAX_PREFILTERS {
        return None;
    }
    prefixes
        .chunks(PACKED_PATTERNS)
        .map(|chunk| {
            let mut builder = packed::Config::new().builder();
            builder.extend(chunk);
            builder.build()
        })
        .collect()
}

/// The stretches a walk of all of `bytes` finds, without the prefilter: what `cover` must find.
#[cfg(test)]
pub(super) fn walked(segment: &Segment, bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut covered = Vec::new();
    segment.walk(bytes, 0..bytes.len(), &mut None, &mut covered);
    covered
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(patterns: &[&str]) -> Segment {
        Segment::build(patterns.iter().map(|p| p.as_bytes().to_vec()).collect()).unwrap()
    }

    /// `cover`, checked against a walk of the whole text.
    fn covered(segment: &Segment, text: &str) -> Vec<(usize, usize)> {
        let covered = segment.cover(text.as_bytes());
        assert_eq!(covered, walked(segment, text.as_bytes()), "{text:?}");
        covered
    }

    #[test]
    fn longest_match_comes_first() {
        // Nested and suffix patterns: each position reports the longest one ending there.
        let s = segment(&["bcde", "abcde", "cdef", "xabcdey", "defg"]);
        assert_eq!(covered(&s, "..abcde.."), [(2, 7)]);
        assert_eq!(covered(&s, "xabcdey"), [(0, 7)]);
        assert_eq!(covered(&s, "bcde cdef"), [(0, 4), (5, 9)]);
    }

    #[test]
    fn overlapping_occurrences_merge() {
        let s = segment(&["abcdef", "defgh1"]);
        assert_eq!(covered(&s, "[abcdefgh1]"), [(1, 10)]);
    }

    #[test]
    fn nested_patterns_of_every_length_cost_one_step_per_byte() {
        let patterns: Vec<String> = (4..400).map(|n| "a".repeat(n)).collect();
        let refs: Vec<&str> = patterns.iter().map(String::as_str).collect();
        let s = segment(&refs);
        let text = "a".repeat(2_000_000);
        let started = std::time::Instant::now();
        assert_eq!(s.cover(text.as_bytes()), [(0, text.len())]);
        // A match list per position would take minutes in a debug build.
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
    }

    #[test]
    fn a_pattern_holding_another_is_found_from_its_start() {
        let s = segment(&["core1234", "xxxxxxxxxxxxxxxx-core1234-yy"]);
        let text = format!(
            "{}xxxxxxxxxxxxxxxx-core1234-yy{}",
            "z".repeat(30),
            "z".repeat(9)
        );
        assert_eq!(covered(&s, &text), [(30, 58)]);
    }

    #[test]
    fn the_prefilter_finds_what_one_walk_finds() {
        let s = segment(&["secret-one", "two-secret", "3333", "secret-one-and-more"]);
        for text in [
            format!(
                "{}secret-one{}two-secret3333{}",
                "x".repeat(37),
                "y".repeat(80),
                "z"
            ),
            "secret-onsecret-one-and-mor3333333".to_owned(),
            "two-secret-one-and-more".to_owned(),
            String::new(),
        ] {
            covered(&s, &text);
        }
    }
}
