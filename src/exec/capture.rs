//! Bounded copies of a command's output for the response. Logs get every byte; the response
//! keeps the first `limit` bytes of each stream, and error messages want the *last* bytes of
//! stderr, so a small tail is kept beside the head.

/// How many trailing stderr bytes are kept for error messages.
pub const TAIL_BYTES: usize = 4096;

/// The first `limit` bytes of a stream, plus whether more was produced.
#[derive(Debug, Clone, Default)]
pub struct Capture {
    head: Vec<u8>,
    limit: usize,
    truncated: bool,
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
        let room = self.limit.saturating_sub(self.head.len());
        let kept = bytes.len().min(room);
        self.head.extend_from_slice(&bytes[..kept]);
        if kept < bytes.len() {
            self.truncated = true;
        }
        if self.keep_tail {
            let start = bytes.len().saturating_sub(TAIL_BYTES);
            self.tail.extend_from_slice(&bytes[start..]);
            let excess = self.tail.len().saturating_sub(TAIL_BYTES);
            self.tail.drain(..excess);
        }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.head
    }

    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// The last bytes of the stream (only with `with_tail`).
    pub fn tail(&self) -> &[u8] {
        &self.tail
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_head_and_flags_truncation() {
        let mut capture = Capture::new(5);
        capture.push(b"abc");
        capture.push(b"defgh");
        assert_eq!(capture.bytes(), b"abcde");
        assert!(capture.truncated());
    }

    #[test]
    fn tail_follows_the_end() {
        let mut capture = Capture::with_tail(2);
        capture.push(&vec![b'a'; TAIL_BYTES]);
        capture.push(b"end");
        assert_eq!(capture.tail().len(), TAIL_BYTES);
        assert!(capture.tail().ends_with(b"aaend"));
        assert_eq!(capture.bytes(), b"aa");
    }
}
