//! Turning the raw bytes of one output pipe into log lines.
//!
//! A pipe read ends anywhere: in the middle of a line, of a `\r\n`, of a UTF-8 character or of
//! a secret. The framer keeps the unfinished tail of one pipe and hands complete lines on,
//! masked and converted to text, a whole read at a time. Lines that declare a secret
//! (`::add-mask::`) are not logged.

use crate::direktiv::LOG_MESSAGE_CAP;
use crate::mask::{declared_secret, Snapshot, REDACTED};

use super::queue::Batch;
use super::LogStream;

/// Splits one pipe's bytes into lines and queues them on the request's log stream.
pub struct LineFramer {
    stream: LogStream,
    /// The bytes of a line whose newline has not arrived yet (never much above the cap).
    partial: Vec<u8>,
}

impl LineFramer {
    pub(crate) fn new(stream: LogStream) -> Self {
        LineFramer {
            stream,
            partial: Vec::new(),
        }
    }

    /// Takes one read of the pipe. Waits while the request already has too much output queued,
    /// which in turn slows the command down through its pipe instead of growing memory.
    pub async fn write(&mut self, bytes: &[u8]) {
        let mut batch = Batch::with_size_hint(bytes.len());
        // One automaton for the whole read; secrets declared in it are already added.
        let secrets = self.stream.masker().snapshot();
        frame(&mut self.partial, bytes, &secrets, &mut batch);
        self.stream.queue().push(batch).await;
    }

    /// Ends the pipe: a last line without a newline is queued as it is.
    pub async fn close(mut self) {
        if self.partial.is_empty() {
            return;
        }
        let mut batch = Batch::with_size_hint(self.partial.len());
        push_line(
            &self.partial,
            Some(&self.stream.masker().snapshot()),
            &mut batch,
        );
        self.partial = Vec::new();
        self.stream.queue().push(batch).await;
    }
}

/// Adds the complete lines of `partial` + `bytes` to `batch` and leaves the unfinished rest in
/// `partial`. A line longer than the cap is cut once the cap is reached, so `partial` stays
/// bounded whatever the command writes.
fn frame(partial: &mut Vec<u8>, bytes: &[u8], secrets: &Snapshot, batch: &mut Batch) {
    // One search of the whole read instead of one per line: most reads hold no secret.
    let clean = !secrets.finds_any(bytes);
    let mut rest = bytes;
    if !partial.is_empty() {
        match memchr::memchr(b'\n', rest) {
            Some(end) => {
                partial.extend_from_slice(&rest[..end]);
                // Begun in an earlier read: searched whole.
                push_line(strip_cr(partial), Some(secrets), batch);
                partial.clear();
                if partial.capacity() > LOG_MESSAGE_CAP {
                    // Do not keep a huge buffer for the rest of the command's life.
                    *partial = Vec::new();
                }
                rest = &rest[end + 1..];
            }
            None => {
                partial.extend_from_slice(rest);
                cut_overlong(partial, secrets, batch);
                return;
            }
        }
    }
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', rest) {
        let line = strip_cr(&rest[start..end]);
        push_line(line, (!clean).then_some(secrets), batch);
        start = end + 1;
    }
    partial.extend_from_slice(&rest[start..]);
    cut_overlong(partial, secrets, batch);
}

/// A `\r` right before the `\n` belongs to the newline (`\r\n` line ends).
fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Queues cap-sized pieces of an unfinished line while it is longer than the cap. A piece ends
/// before any secret the cut would split, and before bytes at the end that may begin one:
/// those start the next piece.
fn cut_overlong(partial: &mut Vec<u8>, secrets: &Snapshot, batch: &mut Batch) {
    if partial.len() <= LOG_MESSAGE_CAP {
        return;
    }
    let mut start = 0;
    while partial.len() - start > LOG_MESSAGE_CAP {
        let rest = &partial[start..];
        let limit = utf8_floor(rest, LOG_MESSAGE_CAP);
        match secrets.mask_prefix(rest, limit) {
            (piece, used) if used > 0 => {
                let shown = crate::text::as_displayed(&piece);
                push_pieces(&crate::text::lossy(shown), batch);
                start += used;
            }
            // Only a secret longer than the cap itself starts here: none of it is shown.
            _ => {
                batch.push_line(REDACTED.as_bytes());
                start += limit;
            }
        }
    }
    partial.drain(..start);
}

/// The largest length `<= max` that does not end inside a UTF-8 character of `bytes`. Bytes
/// that are not UTF-8 are cut anywhere (they are replaced anyway).
fn utf8_floor(bytes: &[u8], max: usize) -> usize {
    if bytes.len() <= max {
        return bytes.len();
    }
    // A continuation byte (0b10xx_xxxx) never starts a character; a character has at most three.
    (max.saturating_sub(3)..=max)
        .rev()
        .find(|&end| end > 0 && (bytes[end] & 0b1100_0000) != 0b1000_0000)
        .unwrap_or(max)
}

/// Masks one complete line as a terminal shows it (progress bars: the text after its last
/// `\r`; `secrets` is `None` when the line is known to hold no secret), converts it to text
/// (invalid UTF-8 replaced) and adds it to the batch, cut into cap-sized pieces only if it is
/// longer than the cap. A line declaring a secret is left out.
fn push_line(line: &[u8], secrets: Option<&Snapshot>, batch: &mut Batch) {
    if declared_secret(line).is_some() {
        return;
    }
    let shown = crate::text::as_displayed(line);
    let masked = match secrets {
        Some(secrets) => secrets.mask_bytes(shown),
        None => std::borrow::Cow::Borrowed(shown),
    };
    let text = crate::text::lossy(&masked);
    push_pieces(&text, batch);
}

/// Adds already masked text, cut into cap-sized pieces at character boundaries.
pub(crate) fn push_pieces(text: &str, batch: &mut Batch) {
    let mut rest = text;
    while rest.len() > LOG_MESSAGE_CAP {
        let mut end = LOG_MESSAGE_CAP;
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        batch.push_line(&rest.as_bytes()[..end]);
        rest = &rest[end..];
    }
    batch.push_line(rest.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::Masker;

    fn lines_of(chunks: &[&[u8]], masker: &Masker) -> (Vec<Vec<u8>>, Vec<u8>) {
        let mut partial = Vec::new();
        let mut lines = Vec::new();
        for chunk in chunks {
            let mut batch = Batch::with_size_hint(chunk.len());
            frame(&mut partial, chunk, &masker.snapshot(), &mut batch);
            for message in batch.into_messages() {
                lines.extend(message.body.split(|&b| b == b'\n').map(<[u8]>::to_vec));
            }
        }
        (lines, partial)
    }

    #[test]
    fn lines_split_across_reads_are_joined() {
        let (lines, partial) = lines_of(
            &[b"he", b"llo\nwor", b"ld\r", b"\nrest"],
            &Masker::default(),
        );
        assert_eq!(lines, [b"hello".to_vec(), b"world".to_vec()]);
        assert_eq!(partial, b"rest");
    }

    #[test]
    fn empty_lines_are_dropped_and_progress_lines_show_their_last_state() {
        let (lines, _) = lines_of(&[b"\n\na\rb\r\n\r\n10%\r", b"100%\r\n"], &Masker::default());
        assert_eq!(lines, [b"b".to_vec(), b"100%".to_vec()]);
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        let (lines, _) = lines_of(&[b"ok \xff\xfe end\n"], &Masker::default());
        assert_eq!(lines, ["ok \u{fffd}\u{fffd} end".as_bytes().to_vec()]);
    }

    #[test]
    fn a_secret_split_across_reads_is_masked() {
        let masker = Masker::new(["topsecret"]);
        let (lines, _) = lines_of(&[b"key=top", b"secret!\n"], &masker);
        assert_eq!(lines, [b"key=***!".to_vec()]);
    }

    #[test]
    fn an_overlong_unfinished_line_is_cut_at_the_cap() {
        let mut partial = Vec::new();
        let mut batch = Batch::with_size_hint(0);
        let chunk = vec![b'z'; 1024 * 1024];
        for _ in 0..5 {
            frame(
                &mut partial,
                &chunk,
                &Masker::default().snapshot(),
                &mut batch,
            );
        }
        let messages = batch.into_messages();
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].body.len(), LOG_MESSAGE_CAP);
        assert_eq!(partial.len(), 1024 * 1024);
    }

    #[test]
    fn a_secret_across_the_cap_of_an_unfinished_line_is_masked_whole() {
        let secret = b"Sup3rS3cretV4lue";
        let masker = Masker::new([std::str::from_utf8(secret).unwrap()]);
        let mut line = vec![b'A'; LOG_MESSAGE_CAP - 10];
        line.extend_from_slice(secret);
        line.extend_from_slice(&vec![b'B'; 1024 * 1024]);
        // Read in pieces that end right inside the secret, as a pipe may deliver them.
        let (lines, partial) = lines_of(
            &[&line[..LOG_MESSAGE_CAP - 4], &line[LOG_MESSAGE_CAP - 4..]],
            &masker,
        );
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0], vec![b'A'; LOG_MESSAGE_CAP - 10]);
        assert!(partial.starts_with(secret));
        let mut batch = Batch::with_size_hint(0);
        push_line(&partial, Some(&masker.snapshot()), &mut batch);
        let rest = &batch.into_messages()[0].body;
        assert!(rest.starts_with(b"***BBB"));
    }

    #[test]
    fn declaring_lines_are_not_logged() {
        let (lines, _) = lines_of(
            &[
                b"before
::add-mask::tok",
                b"en-value
::add-mask::
after
",
            ],
            &Masker::default(),
        );
        assert_eq!(
            lines,
            [
                b"before".to_vec(),
                b"::add-mask::".to_vec(),
                b"after".to_vec()
            ]
        );
    }

    #[test]
    fn cuts_never_split_a_character() {
        // 'é' is two bytes; put one across the cap.
        let mut text = "a".repeat(LOG_MESSAGE_CAP - 1);
        text.push('é');
        text.push_str("tail");
        let mut batch = Batch::with_size_hint(0);
        push_pieces(&text, &mut batch);
        let messages = batch.into_messages();
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0].body.len(), LOG_MESSAGE_CAP - 1);
        assert_eq!(messages[1].body, "étail".as_bytes());
        assert_eq!(
            utf8_floor(text.as_bytes(), LOG_MESSAGE_CAP),
            LOG_MESSAGE_CAP - 1
        );
    }
}
