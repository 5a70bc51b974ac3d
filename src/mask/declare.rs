//! Secrets a command declares while it runs: a line `::add-mask::VALUE` on stdout or stderr
//! (GitHub Actions' convention). The value is masked from then on in the whole request, and the
//! line itself is not logged.
//!
//! Declarations are found where output is read, before it is logged or kept, and also for
//! `silent` commands whose output is never logged: a `Declarations` per pipe watches the lines
//! go by, however the reads cut them.

use std::borrow::Cow;

use super::Masker;

/// The start of a declaring line.
const MARKER: &[u8] = b"::add-mask::";

/// Longest declaring line. A longer line starting with the marker is ordinary output.
const MAX_LINE: usize = 64 * 1024;

/// The value a line declares secret, if it is a declaring line. Surrounding whitespace (a `\r`
/// of a CRLF line end) is not part of the value; bytes that are not UTF-8 are replaced, as
/// everywhere output becomes text.
pub fn declared_secret(line: &[u8]) -> Option<Cow<'_, str>> {
    if line.len() > MAX_LINE {
        return None;
    }
    let value = match crate::text::lossy(line.strip_prefix(MARKER)?) {
        Cow::Borrowed(text) => Cow::Borrowed(text.trim()),
        Cow::Owned(text) => Cow::Owned(text.trim().to_owned()),
    };
    (!value.is_empty()).then_some(value)
}

/// Watches one pipe's output for declaring lines and adds their values to the masker.
#[derive(Debug)]
pub struct Declarations {
    /// Whether the next byte starts a line.
    at_line_start: bool,
    /// The start of a line that is, or may turn out to be, a declaration, waiting for its end.
    pending: Vec<u8>,
}

impl Default for Declarations {
    fn default() -> Self {
        Declarations {
            at_line_start: true,
            pending: Vec::new(),
        }
    }
}

impl Declarations {
    /// Takes one read of the pipe. Declarations in it are added before the read is logged.
    pub fn scan(&mut self, bytes: &[u8], masker: &Masker) {
        let mut rest = bytes;
        if !self.pending.is_empty() {
            match memchr::memchr(b'\n', rest) {
                Some(end) => {
                    self.pending.extend_from_slice(&rest[..end]);
                    declare(&self.pending, masker);
                    self.pending = Vec::new();
                    rest = &rest[end + 1..];
                    self.at_line_start = true;
                }
                None => {
                    self.pending.extend_from_slice(rest);
                    if self.pending.len() > MAX_LINE {
                        // Too long to be a declaration: ordinary output after all.
                        self.pending = Vec::new();
                        self.at_line_start = false;
                    }
                    return;
                }
            }
        }
        let at_line_start = self.at_line_start;
        for start in memchr::memmem::find_iter(rest, MARKER) {
            let line_start = match start {
                0 => at_line_start,
                _ => rest[start - 1] == b'\n',
            };
            if !line_start {
                continue;
            }
            match memchr::memchr(b'\n', &rest[start..]) {
                Some(len) => declare(&rest[start..start + len], masker),
                None => {
                    self.pending = rest[start..].to_vec();
                    return;
                }
            }
        }
        // The marker itself may be cut by the end of this read.
        let last_line = match memchr::memrchr(b'\n', rest) {
            Some(end) => &rest[end + 1..],
            None if at_line_start => rest,
            None => &[],
        };
        if !last_line.is_empty() && last_line.len() < MARKER.len() && MARKER.starts_with(last_line)
        {
            self.pending = last_line.to_vec();
        }
        self.at_line_start = match rest.last() {
            Some(&last) => last == b'\n',
            None => at_line_start,
        };
    }

    /// Ends the pipe: a declaration on its last line, without a newline, counts too.
    pub fn finish(self, masker: &Masker) {
        declare(&self.pending, masker);
    }
}

fn declare(line: &[u8], masker: &Masker) {
    if let Some(value) = declared_secret(line) {
        masker.declare(&value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `chunks` to a scanner and returns what the masker then masks `probe` to.
    fn declared_after(chunks: &[&[u8]], probe: &str) -> String {
        let masker = Masker::default();
        let mut declarations = Declarations::default();
        for chunk in chunks {
            declarations.scan(chunk, &masker);
        }
        declarations.finish(&masker);
        masker.mask(probe).into_owned()
    }

    #[test]
    fn declarations_are_found_however_reads_cut_them() {
        let probe = "tok-123456 other-5678";
        assert_eq!(
            declared_after(&[b"::add-mask::tok-123456\n"], probe),
            "*** other-5678"
        );
        assert_eq!(
            declared_after(&[b"x\n::add-", b"mask::tok-1", b"23456\r\nrest"], probe),
            "*** other-5678"
        );
        assert_eq!(
            declared_after(&[b"a\n:", b":add-mask::other-5678"], probe),
            "tok-123456 ***"
        );
        assert_eq!(
            declared_after(
                &[b"::add-mask::tok-123456\n::add-mask::other-5678\n"],
                probe
            ),
            "*** ***"
        );
        // Not at the start of a line: ordinary output.
        assert_eq!(
            declared_after(&[b"echo ::add-mask::tok-123456\n"], probe),
            probe
        );
        assert_eq!(
            declared_after(&[b"echo ", b"::add-mask::tok-123456\n"], probe),
            probe
        );
        // A line far too long to be a declaration.
        let long = [b"::add-mask::".as_slice(), &vec![b'x'; 70_000], b"\n"].concat();
        assert_eq!(
            declared_after(&[&long[..40_000], &long[40_000..]], probe),
            probe
        );
    }

    #[test]
    fn add_mask_lines_are_recognised() {
        assert_eq!(
            declared_secret(b"::add-mask::s3cr3t\r").as_deref(),
            Some("s3cr3t")
        );
        assert_eq!(
            declared_secret(b"::add-mask::  two words ").as_deref(),
            Some("two words")
        );
        assert_eq!(declared_secret(b"::add-mask::"), None);
        assert_eq!(declared_secret(b"echo ::add-mask::x"), None);
        assert_eq!(declared_secret(b"::ADD-MASK::x"), None);
    }
}
