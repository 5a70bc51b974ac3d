//! Bytes from commands as text.

use std::borrow::Cow;
use std::ops::Range;

/// The bytes as UTF-8, invalid sequences replaced by U+FFFD.
///
/// Same result as `String::from_utf8_lossy`, whose per-character scan showed up as the single
/// largest cost of large outputs; nearly all output is valid UTF-8, and `str::from_utf8`
/// validates that many times faster.
pub fn lossy(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// One line of output as a terminal log viewer shows it. A lone carriage return (a progress
/// bar redrawing itself: `Completed 1 of 2\rupload: ./x`) sends the cursor back, and what
/// follows replaces the line, so only the text after the last `\r` that something follows
/// remains; carriage returns at the end (the `\r` of a `\r\n` line end) erase nothing.
pub(crate) fn as_displayed(line: &[u8]) -> &[u8] {
    &line[displayed_range(line)]
}

/// Every line of `text` as a terminal shows it (see [`as_displayed`]), joined by `\n`.
pub(crate) fn lines_as_displayed(text: &str) -> Cow<'_, str> {
    if !text.contains('\r') {
        return Cow::Borrowed(text);
    }
    let lines: Vec<&str> = text
        .split('\n')
        // The range starts after a `\r` and ends before one, so it cuts no character.
        .map(|line| &line[displayed_range(line.as_bytes())])
        .collect();
    Cow::Owned(lines.join("\n"))
}

/// Where the displayed text of `line` lies.
fn displayed_range(line: &[u8]) -> Range<usize> {
    let end = line
        .iter()
        .rposition(|&b| b != b'\r')
        .map_or(0, |last| last + 1);
    let start = memchr::memrchr(b'\r', &line[..end]).map_or(0, |cr| cr + 1);
    start..end
}

/// Escapes control characters and cuts the text to `max` bytes (on a char boundary).
pub(crate) fn one_line(text: &str, max: usize) -> String {
    cut_end(&escape_controls(text), max)
}

/// Cuts `text` to `max` bytes (on a char boundary), marking the cut.
pub(crate) fn cut_end(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max.saturating_sub(3);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// `\n` → `\\n` and so on: header values cannot carry control characters, and Direktiv shows
/// the message on one line.
pub(crate) fn escape_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_shows_the_text_after_its_last_carriage_return() {
        assert_eq!(as_displayed(b"plain"), b"plain");
        assert_eq!(
            as_displayed(b"Completed 1\rCompleted 2\rupload: x"),
            b"upload: x"
        );
        assert_eq!(as_displayed(b"10%\r100%\r"), b"100%");
        assert_eq!(as_displayed(b"dos\r"), b"dos");
        assert_eq!(as_displayed(b"a\r\r"), b"a");
        assert_eq!(as_displayed(b"\r"), b"");
        assert_eq!(as_displayed(b"\rnew"), b"new");
        assert_eq!(as_displayed(b""), b"");
    }

    #[test]
    fn text_shows_each_line_as_displayed() {
        assert!(matches!(lines_as_displayed("a\nb"), Cow::Borrowed("a\nb")));
        assert_eq!(lines_as_displayed("1%\r99%\ndone\r\n"), "99%\ndone\n");
        assert_eq!(lines_as_displayed("a\r\nb\r\n"), "a\nb\n");
        assert_eq!(lines_as_displayed("é\rü"), "ü");
    }

    #[test]
    fn valid_text_is_borrowed_and_invalid_bytes_replaced() {
        assert!(matches!(lossy(b"caf\xc3\xa9"), Cow::Borrowed("café")));
        assert_eq!(lossy(b"a\xffb"), "a\u{fffd}b");
    }
}
