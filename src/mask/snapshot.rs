//! Everything one request masks at one moment: a list of immutable segments, searched as one.
//!
//! Besides masking a whole text, a snapshot knows how to mask a text that is cut: a prefix of a
//! longer stream (the response keeps the first bytes of stdout; a log message is cut at 4 MiB)
//! or a suffix of one (error messages end with the last bytes of stderr). A cut must never
//! leave the beginning or the end of a secret visible, so it is moved to where no pattern
//! straddles it and the bytes that might belong to a secret on the other side of the cut are
//! left out.
//!
//! A snapshot that withholds (a command declared more than can be masked) shows nothing of
//! any text: what cannot be masked is not shown.

use std::borrow::Cow;
use std::sync::Arc;

use super::segment::{merge, Segment};
use super::views;
use super::REDACTED;

/// The segments to search, and whether everything is withheld.
#[derive(Debug, Default)]
pub struct Snapshot {
    segments: Vec<Arc<Segment>>,
    withhold: bool,
}

impl Snapshot {
    pub(super) fn new(segments: Vec<Arc<Segment>>, withhold: bool) -> Self {
        Snapshot { segments, withhold }
    }

    /// A snapshot that shows nothing.
    #[cfg(test)]
    pub fn withholding() -> Self {
        Snapshot::new(Vec::new(), true)
    }

    /// True when nothing is masked at all.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty() && !self.withhold
    }

    /// True when no text may be shown (see the module's comment).
    pub fn withholds(&self) -> bool {
        self.withhold
    }

    /// Masks a string.
    pub fn mask<'a>(&self, text: &'a str) -> Cow<'a, str> {
        match self.mask_bytes(text.as_bytes()) {
            Cow::Borrowed(_) => Cow::Borrowed(text),
            // A match in UTF-8 text may end inside a character only in a view (a decoded
            // escape); `lossy` keeps the result valid text either way.
            Cow::Owned(bytes) => match String::from_utf8(bytes) {
                Ok(text) => Cow::Owned(text),
                Err(error) => Cow::Owned(String::from_utf8_lossy(error.as_bytes()).into_owned()),
            },
        }
    }

    /// Masks raw bytes (command output, which need not be UTF-8): each stretch of text covered
    /// by secrets becomes one `***`. Allocates only when a secret is found.
    pub fn mask_bytes<'a>(&self, bytes: &'a [u8]) -> Cow<'a, [u8]> {
        if self.withhold {
            return Cow::Owned(withheld(bytes));
        }
        // The common case, a text without secrets, costs one scan and no allocation.
        let covered = self.covered(bytes);
        if covered.is_empty() {
            return Cow::Borrowed(bytes);
        }
        Cow::Owned(replace(bytes, 0, &covered))
    }

    /// Where occurrences of secrets lie in `bytes`: the stretches they cover, in order.
    /// `None` when the snapshot withholds (then everything is to be masked).
    pub fn occurrences(&self, bytes: &[u8]) -> Option<Vec<(usize, usize)>> {
        (!self.withhold).then(|| self.covered(bytes))
    }

    /// The stretches of `bytes` covered by occurrences of patterns in any segment, found in
    /// the bytes or in a view of them: in order, overlapping ones merged.
    fn covered(&self, bytes: &[u8]) -> Vec<(usize, usize)> {
        let mut all: Vec<(usize, usize)> = Vec::new();
        for segment in &self.segments {
            all.extend(segment.cover(bytes));
        }
        // One segment's stretches come in order and merged; more must be merged.
        let mut unordered = self.segments.len() > 1;
        if !self.segments.is_empty() && views::may_hide(bytes) {
            for view in views::views_of(bytes) {
                unordered = true;
                for segment in &self.segments {
                    let found = segment.cover(&view.text);
                    all.extend(found.into_iter().map(|(s, e)| view.original(s, e)));
                }
            }
        }
        match unordered {
            true => union(all),
            false => all,
        }
    }

    /// Masks the start of `bytes`, a stream that goes on after them (or was cut there), up to
    /// at most `limit` bytes. Returns the masked text and how many bytes of `bytes` it stands
    /// for: the cut is moved back before any secret it would split, and before any bytes at
    /// the end of `bytes` that may be the beginning of a secret whose rest is not known yet.
    /// Bytes beyond the cut are the caller's: kept for later or dropped. The count is 0 only
    /// when a secret starts at the very beginning and is longer than `limit`.
    pub fn mask_prefix<'a>(&self, bytes: &'a [u8], limit: usize) -> (Cow<'a, [u8]>, usize) {
        let mut cut = limit.min(bytes.len());
        if self.withhold {
            return (Cow::Owned(withheld(&bytes[..cut])), cut);
        }
        let unfinished = self
            .segments
            .iter()
            .filter_map(|segment| segment.unfinished_start(bytes))
            .min();
        if let Some(start) = unfinished {
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
        if self.withhold {
            return Cow::Owned(withheld(bytes));
        }
        let skip = self
            .segments
            .iter()
            .map(|segment| segment.leading_fragment(bytes))
            .max()
            .unwrap_or(0);
        // Secrets are found in all of `bytes`: a whole secret at the start may itself begin
        // with what looks like the end of one, and must not lose its first bytes and with
        // them its match.
        let covered = self.covered(bytes);
        if covered.iter().all(|&(_, end)| end <= skip) {
            return Cow::Borrowed(&bytes[skip..]);
        }
        Cow::Owned(replace(bytes, skip, &covered))
    }

    #[cfg(test)]
    pub(super) fn covered_by_walking(&self, bytes: &[u8]) -> Vec<(usize, usize)> {
        let found = self.segments.iter();
        union(
            found
                .flat_map(|segment| super::segment::walked(segment, bytes))
                .collect(),
        )
    }

    #[cfg(test)]
    pub(super) fn covered_directly(&self, bytes: &[u8]) -> Vec<(usize, usize)> {
        union(
            self.segments
                .iter()
                .flat_map(|segment| segment.cover(bytes))
                .collect(),
        )
    }
}

/// Stretches in any order as one list in order, overlapping ones merged.
fn union(mut all: Vec<(usize, usize)>) -> Vec<(usize, usize)> {
    all.sort_unstable_by_key(|&(start, end)| (end, start));
    let mut merged = Vec::with_capacity(all.len());
    // In the order of their ends, as `merge` takes them.
    for (start, end) in all {
        merge(&mut merged, start, end);
    }
    merged
}

/// What a withholding snapshot shows of a text: `***` for anything, nothing for nothing.
fn withheld(bytes: &[u8]) -> Vec<u8> {
    match bytes.is_empty() {
        true => Vec::new(),
        false => REDACTED.as_bytes().to_vec(),
    }
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
