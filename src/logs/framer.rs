//! Turning the raw bytes of one output pipe into log lines.
//!
//! A pipe read ends anywhere: in the middle of a line, of a `\r\n`, of a UTF-8 character or of
//! a secret. The framer keeps the unfinished tail of one pipe and hands complete lines on,
//! masked and converted to text, a whole read at a time. Lines that declare a secret
//! (`::add-mask::`) are not logged, however long; while a request withholds its output (it
//! declared more than can be masked), no line is.

use crate::direktiv::LOG_MESSAGE_CAP;
use crate::mask::{Snapshot, REDACTED};
use crate::workflow_commands::hides_line;

use super::queue::Batch;
use super::LogStream;

/// Splits one pipe's bytes into lines and queues them on the request's log stream.
pub struct LineFramer {
    stream: LogStream,
    line: Unfinished,
}

/// The line whose newline has not arrived yet.
#[derive(Debug, Default)]
struct Unfinished {
    /// Its bytes not logged yet (never much above the cap).
    bytes: Vec<u8>,
    /// Set once a line longer than the cap was cut: whether it is hidden (decided at its
    /// start, which later pieces no longer hold).
    cut: Option<bool>,
}

impl LineFramer {
    pub(crate) fn new(stream: LogStream) -> Self {
        LineFramer {
            stream,
            line: Unfinished::default(),
        }
    }

    /// Takes one read of the pipe. Waits while the request already has too much output queued,
    /// which in turn slows the command down through its pipe instead of growing memory.
    pub async fn write(&mut self, bytes: &[u8]) {
        let mut batch = Batch::with_size_hint(bytes.len());
        // One snapshot for the whole read; secrets declared in it are already added.
        let secrets = self.stream.masker().snapshot();
        frame(&mut self.line, bytes, &secrets, &mut batch);
        self.stream.queue().push(batch).await;
    }

    /// Ends the pipe: a last line without a newline is queued as it is.
    pub async fn close(mut self) {
        if self.line.bytes.is_empty() {
            return;
        }
        let mut batch = Batch::with_size_hint(self.line.bytes.len());
        let secrets = self.stream.masker().snapshot();
        end_line(&mut self.line, &[], &secrets, &mut batch);
        self.stream.queue().push(batch).await;
    }
}

/// Adds the complete lines of the unfinished line + `bytes` to `batch` and leaves the
/// unfinished rest. A line longer than the cap is cut once the cap is reached, so what is kept
/// stays bounded whatever the command writes.
fn frame(line: &mut Unfinished, bytes: &[u8], secrets: &Snapshot, batch: &mut Batch) {
    if secrets.withholds() {
        // Nothing of what cannot be masked is logged, not even its line breaks.
        *line = Unfinished::default();
        return;
    }
    let mut rest = bytes;
    if !line.bytes.is_empty() || line.cut.is_some() {
        match memchr::memchr(b'\n', rest) {
            Some(end) => {
                // Begun in an earlier read: searched whole.
                end_line(line, &rest[..end], secrets, batch);
                rest = &rest[end + 1..];
            }
            None => {
                line.bytes.extend_from_slice(rest);
                cut_overlong(line, secrets, batch);
                return;
            }
        }
    }
    // The complete lines of the read (without their last `\n`), then the start of the next.
    let (lines, unfinished) = match memchr::memrchr(b'\n', rest) {
        Some(end) => (&rest[..end], &rest[end + 1..]),
        None => (&rest[..0], rest),
    };
    if !rest.is_empty() && unfinished.len() < rest.len() {
        // One search of all the lines instead of one per line: most reads hold no secret.
        let occurrences = secrets.occurrences(lines).unwrap_or_default();
        if occurrences.is_empty() {
            push_unmasked_lines(lines, batch);
        } else {
            push_masked_lines(lines, &occurrences, secrets, batch);
        }
    }
    line.bytes.extend_from_slice(unfinished);
    cut_overlong(line, secrets, batch);
}

/// Logs the unfinished line, which ends with `tail`, and starts a new one.
fn end_line(line: &mut Unfinished, tail: &[u8], secrets: &Snapshot, batch: &mut Batch) {
    line.bytes.extend_from_slice(tail);
    let whole = strip_cr(&line.bytes);
    match line.cut {
        // The start of a cut line is gone: whether it is hidden was decided then.
        Some(true) => {}
        Some(false) => push_shown_line(whole, Some(secrets), batch),
        None => push_line(whole, Some(secrets), batch),
    }
    line.bytes.clear();
    line.cut = None;
    if line.bytes.capacity() > LOG_MESSAGE_CAP {
        // Do not keep a huge buffer for the rest of the command's life.
        line.bytes = Vec::new();
    }
}

/// Adds complete lines (joined by `\n`) in which no secret occurs. Where they need nothing of
/// what `push_line` does to a line — the usual case — they are copied into the batch in one go;
/// otherwise line by line.
fn push_unmasked_lines(lines: &[u8], batch: &mut Batch) {
    match line_count_if_plain(lines) {
        Some(count) => batch.push_lines(lines, count),
        None => each_line(lines, |line| push_line(line, None, batch)),
    }
}

/// How many lines `lines` holds if they are logged exactly as they are: valid UTF-8, no `\r`
/// (nothing to strip or redraw), no workflow command line (no `::` at all), no empty line
/// (those are dropped), and together within one message's cap.
fn line_count_if_plain(lines: &[u8]) -> Option<u64> {
    let plain = !lines.is_empty()
        && lines.len() <= LOG_MESSAGE_CAP
        && lines.first() != Some(&b'\n')
        && lines.last() != Some(&b'\n')
        && memchr::memchr(b'\r', lines).is_none()
        && memchr::memmem::find(lines, b"\n\n").is_none()
        && memchr::memmem::find(lines, b"::").is_none()
        && std::str::from_utf8(lines).is_ok();
    plain.then(|| memchr::memchr_iter(b'\n', lines).count() as u64 + 1)
}

/// Adds complete lines (joined by `\n`) of a read in which secrets occur (`occurrences`): the
/// lines a secret touches are masked one by one, the stretches of lines between them go as
/// `push_unmasked_lines` sends them. A line without an occurrence in the whole text has none
/// of its own, so it is logged exactly as masking it alone would log it.
fn push_masked_lines(
    lines: &[u8],
    occurrences: &[(usize, usize)],
    secrets: &Snapshot,
    batch: &mut Batch,
) {
    let mut done = 0;
    for &(start, end) in occurrences {
        if end <= done {
            continue;
        }
        let start = start.max(done);
        // The lines from the one the occurrence starts in to the one it ends in.
        let first = memchr::memrchr(b'\n', &lines[done..start]).map_or(done, |at| done + at + 1);
        let last_end =
            memchr::memchr(b'\n', &lines[end.max(1) - 1..]).map_or(lines.len(), |at| end - 1 + at);
        if first > done {
            push_unmasked_lines(&lines[done..first - 1], batch);
        }
        each_line(&lines[first..last_end], |line| {
            push_line(line, Some(secrets), batch)
        });
        done = last_end + 1;
        if done >= lines.len() {
            return;
        }
    }
    push_unmasked_lines(&lines[done..], batch);
}

/// Calls `each` with every line of `lines` (joined by `\n`), a `\r` of a `\r\n` end removed.
fn each_line(lines: &[u8], mut each: impl FnMut(&[u8])) {
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', lines) {
        each(strip_cr(&lines[start..end]));
        start = end + 1;
    }
    each(strip_cr(&lines[start..]));
}

/// A `\r` right before the `\n` belongs to the newline (`\r\n` line ends).
fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Queues cap-sized pieces of an unfinished line while it is longer than the cap. A piece ends
/// before any secret the cut would split, and before bytes at the end that may begin one:
/// those start the next piece. A hidden line (`::add-mask::` however long) loses its pieces.
fn cut_overlong(line: &mut Unfinished, secrets: &Snapshot, batch: &mut Batch) {
    if line.bytes.len() <= LOG_MESSAGE_CAP {
        return;
    }
    // At the first cut the line's start is still there.
    let hidden = *line
        .cut
        .get_or_insert_with(|| hides_line(&line.bytes, false).unwrap_or(false));
    let partial = &mut line.bytes;
    if hidden {
        partial.clear();
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
    if hides_line(line, true) == Some(true) {
        return;
    }
    push_shown_line(line, secrets, batch);
}

/// `push_line` for a line known to be shown.
fn push_shown_line(line: &[u8], secrets: Option<&Snapshot>, batch: &mut Batch) {
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
        let mut partial = Unfinished::default();
        let mut lines = Vec::new();
        for chunk in chunks {
            let mut batch = Batch::with_size_hint(chunk.len());
            frame(&mut partial, chunk, &masker.snapshot(), &mut batch);
            for message in batch.into_messages() {
                lines.extend(message.body.split(|&b| b == b'\n').map(<[u8]>::to_vec));
            }
        }
        (lines, partial.bytes)
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
        let mut partial = Unfinished::default();
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
        assert_eq!(partial.bytes.len(), 1024 * 1024);
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
        assert_eq!(lines, [b"before".to_vec(), b"after".to_vec()]);
    }

    #[test]
    fn a_declaring_line_longer_than_the_cap_is_not_logged_at_all() {
        let mut stream = b"::add-mask::".to_vec();
        stream.extend(std::iter::repeat_n(b'v', 2 * LOG_MESSAGE_CAP + 77));
        stream.extend_from_slice(b"\nafter\n");
        let chunks: Vec<&[u8]> = stream.chunks(1024 * 1024).collect();
        let (lines, partial) = lines_of(&chunks, &Masker::default());
        assert_eq!(lines, [b"after".to_vec()]);
        assert!(partial.is_empty());
    }

    #[test]
    fn nothing_is_logged_while_output_is_withheld() {
        let masker = Masker::default();
        let snapshot = crate::mask::Snapshot::withholding();
        let mut line = Unfinished::default();
        let mut batch = Batch::with_size_hint(0);
        frame(&mut line, b"one\ntwo\nthr", &snapshot, &mut batch);
        assert!(batch.is_empty());
        let (lines, _) = lines_of(&[b"ee\nfour\n"], &masker);
        assert_eq!(lines, [b"ee".to_vec(), b"four".to_vec()]);
    }

    /// The lines of `stream` framed one at a time, each masked on its own: what `frame` must
    /// produce however the stream is cut into reads.
    fn lines_one_by_one(stream: &[u8], masker: &Masker) -> Vec<Vec<u8>> {
        let mut batch = Batch::with_size_hint(0);
        let complete = match memchr::memrchr(b'\n', stream) {
            Some(end) => &stream[..end],
            None => return Vec::new(),
        };
        for line in complete.split(|&b| b == b'\n') {
            push_line(strip_cr(line), Some(&masker.snapshot()), &mut batch);
        }
        batch
            .into_messages()
            .iter()
            .flat_map(|message| message.body.split(|&b| b == b'\n').map(<[u8]>::to_vec))
            .collect()
    }

    #[test]
    fn plain_reads_are_queued_whole_and_counted_line_by_line() {
        let mut partial = Unfinished::default();
        let mut batch = Batch::with_size_hint(64);
        let snapshot = Masker::default().snapshot();
        frame(&mut partial, b"one\ntwo\nthree\nfo", &snapshot, &mut batch);
        frame(&mut partial, b"ur\nfive\n", &snapshot, &mut batch);
        let messages = batch.into_messages();
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].body, b"one\ntwo\nthree\nfour\nfive");
        assert_eq!(messages[0].lines, 5);
        assert!(partial.bytes.is_empty());
    }

    #[test]
    fn only_the_lines_a_secret_touches_change() {
        let masker = Masker::new(["topsecret", "two\nlines"]);
        let stream = b"a\nb topsecret c\nd\ntwo\nlines\ne\r\n\nf\xff\n::add-mask::x\ng topsecret\n";
        let (lines, _) = lines_of(&[stream], &masker);
        assert_eq!(lines, lines_one_by_one(stream, &masker));
        assert_eq!(
            lines[..3],
            [b"a".to_vec(), b"b *** c".to_vec(), b"d".to_vec()]
        );
    }

    proptest::proptest! {
        #[test]
        fn framing_whole_reads_equals_framing_line_by_line(
            pieces in proptest::collection::vec(
                proptest::sample::select(vec![
                    &b"word"[..], b" ", b"\n", b"\n", b"\r", b"\r\n", "é".as_bytes(), b"\xff",
                    b"::add-mask::", b"::add-mask::v4lue", b"s3cr3t", b"s3c", b"r3t",
                ]),
                0..60,
            ),
            cuts in proptest::collection::vec(0usize..400, 0..6),
            masked in proptest::bool::ANY,
        ) {
            let stream: Vec<u8> = pieces.concat();
            let masker = if masked { Masker::new(["s3cr3t"]) } else { Masker::default() };
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(stream.len())).collect();
            cuts.push(0);
            cuts.push(stream.len());
            cuts.sort_unstable();
            let chunks: Vec<&[u8]> = cuts.windows(2).map(|w| &stream[w[0]..w[1]]).collect();
            let (lines, _) = lines_of(&chunks, &masker);
            proptest::prop_assert_eq!(lines, lines_one_by_one(&stream, &masker));
        }
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
