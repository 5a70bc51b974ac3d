//! Bounded copies of a command's output for the response. Logs get every byte; the response
//! keeps the first `limit` bytes of each stream, and error messages want the *last* bytes of
//! stderr, so a small tail is kept beside the head.
//!
//! Both are cut from a longer stream, and a secret may lie across a cut. So each keeps some
//! bytes more than it shows (`OVERLAP`): the masker then sees whether what is at the cut is a
//! secret, and leaves out what might be a piece of one (`mask::Snapshot::mask_prefix`,
//! `mask_suffix`).

use std::borrow::Cow;

use crate::mask::Snapshot;

/// How many trailing stderr bytes error messages show at most.
pub const TAIL_BYTES: usize = 4096;

/// Bytes kept beyond each cut, so that a secret across it is recognised whole.
const OVERLAP: usize = 4096;

/// The first `limit` bytes of a stream, plus whether more was produced.
#[derive(Debug, Clone, Default)]
pub struct Capture {
    /// Up to `limit + OVERLAP` first bytes.
    head: Vec<u8>,
    limit: usize,
    /// Bytes seen in all.
    total: usize,
    /// Whether the stream was longer than `limit`.
    truncated: bool,
    /// Up to `TAIL_BYTES + OVERLAP` last bytes (only with `with_tail`).
    tail: Vec<u8>,
    keep_tail: bool,
}

impl Capture {
    /// Keeps at most `limit` bytes from the start.
    pub fn new(limit: usize) -> Self {
        Capture {
            limit,
            ..Capture::default()
        }
    }

    /// Like `new`, and also remembers the last `TAIL_BYTES` bytes.
    pub fn with_tail(limit: usize) -> Self {
        Capture {
            limit,
            keep_tail: true,
            ..Capture::default()
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.total = self.total.saturating_add(bytes.len());
        self.truncated |= self.total > self.limit;
        let room = self.head_room().saturating_sub(self.head.len());
        self.head.extend_from_slice(&bytes[..bytes.len().min(room)]);
        if self.keep_tail {
            let keep = TAIL_BYTES + OVERLAP;
            let start = bytes.len().saturating_sub(keep);
            self.tail.extend_from_slice(&bytes[start..]);
            let excess = self.tail.len().saturating_sub(keep);
            self.tail.drain(..excess);
        }
    }

    /// The first `limit` bytes, as the command wrote them.
    pub fn bytes(&self) -> &[u8] {
        &self.head[..self.head.len().min(self.limit)]
    }

    /// The first `limit` bytes as the response shows them: masked with `secrets`, or a little
    /// less where the cut would show a piece of a secret; as written without `secrets`.
    pub fn shown(&self, secrets: Option<&Snapshot>) -> Cow<'_, [u8]> {
        match secrets {
            None => Cow::Borrowed(self.bytes()),
            Some(secrets) if self.truncated() => secrets.mask_prefix(&self.head, self.limit).0,
            Some(secrets) => secrets.mask_bytes(&self.head),
        }
    }

    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// The last bytes of the stream as written (only with `with_tail`), and whether the stream
    /// began before them: `masked_tail` shows them.
    pub fn tail(&self) -> (&[u8], bool) {
        (&self.tail, self.total > self.tail.len())
    }

    /// How many bytes of the head are kept: the limit and the overlap beyond it, unless the
    /// limit is 0 (nothing is kept at all).
    fn head_room(&self) -> usize {
        match self.limit {
            0 => 0,
            limit => limit.saturating_add(OVERLAP),
        }
    }
}

/// `tail`, the end of a stream (which began before it when `cut`), masked: without a piece of
/// a secret at its start.
pub fn masked_tail<'a>(tail: &'a [u8], cut: bool, secrets: &Snapshot) -> Cow<'a, [u8]> {
    match cut {
        true => secrets.mask_suffix(tail),
        false => secrets.mask_bytes(tail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::Masker;

    #[test]
    fn keeps_the_head_and_flags_truncation() {
        let mut capture = Capture::new(5);
        capture.push(b"abc");
        assert!(!capture.truncated());
        capture.push(b"defgh");
        assert_eq!(capture.bytes(), b"abcde");
        assert!(capture.truncated());
        assert_eq!(
            &*capture.shown(Some(&Masker::default().snapshot())),
            b"abcde"
        );
    }

    #[test]
    fn tail_follows_the_end() {
        let mut capture = Capture::with_tail(2);
        capture.push(&vec![b'a'; 3 * TAIL_BYTES]);
        capture.push(b"end");
        let nothing = Masker::default().snapshot();
        let tail = {
            let (tail, cut) = capture.tail();
            masked_tail(tail, cut, &nothing)
        };
        assert!(tail.len() >= TAIL_BYTES);
        assert!(tail.ends_with(b"aaend"));
        assert_eq!(capture.bytes(), b"aa");
    }

    #[test]
    fn a_secret_across_the_limit_is_left_out_of_the_masked_head() {
        let secrets = Masker::new(["SUPERSECRET"]).snapshot();
        let mut capture = Capture::new(10);
        capture.push(b"head SUPER");
        capture.push(b"SECRET and more");
        assert_eq!(capture.bytes(), b"head SUPER");
        assert_eq!(&*capture.shown(Some(&secrets)), b"head ");
        assert_eq!(&*capture.shown(None), b"head SUPER");
        assert!(capture.truncated());
        let mut whole = Capture::new(100);
        whole.push(b"head SUPERSECRET");
        assert_eq!(&*whole.shown(Some(&secrets)), b"head ***");
        assert!(!whole.truncated());
    }

    #[test]
    fn a_tail_that_starts_inside_a_secret_does_not_show_its_end() {
        let secrets = Masker::new(["SUPERSECRET"]).snapshot();
        let mut capture = Capture::with_tail(0);
        capture.push(&vec![b'x'; 2 * (TAIL_BYTES + OVERLAP)]);
        capture.push(b"SUPERSECRET");
        // Cut so that the kept tail starts with `ERSECRET`.
        capture.push(&vec![b'.'; TAIL_BYTES + OVERLAP - 8]);
        let tail = {
            let (tail, cut) = capture.tail();
            masked_tail(tail, cut, &secrets)
        };
        assert!(
            tail.iter().all(|&b| b == b'.'),
            "{:?}",
            String::from_utf8_lossy(&tail[..20])
        );
        assert_eq!(tail.len(), TAIL_BYTES + OVERLAP - 8);
    }
}
