//! Output as a reader sees it, for finding secrets that the bytes hide.
//!
//! A secret need not appear in output byte for byte to be shown: a terminal or log viewer
//! drops the escape sequence in `Sup3r-s3\e[0mcret`, a JSON reader decodes
//! `p\u0026ss\u003cw0rd` (Go's escaping of `p&ss<w0rd`), a URL parser decodes `%2f` as well
//! as `%2F`. Each view is such a reading of a text, with the place each of its bytes came
//! from; a secret found in a view is masked in the text over all the bytes it came from.
//!
//! Views are only made of text that holds what they decode (an escape character, a backslash,
//! a percent sign), so plain output costs one SIMD scan for the three.

/// A decoded reading of a text.
pub(super) struct View {
    /// The decoded bytes.
    pub(super) text: Vec<u8>,
    /// For each decoded byte, the stretch of the original text it came from.
    sources: Vec<[u32; 2]>,
}

impl View {
    /// The stretch of the original text behind `start..end` of the view.
    pub(super) fn original(&self, start: usize, end: usize) -> (usize, usize) {
        let first = self.sources.get(start).map_or(0, |s| s[0]);
        let last = self
            .sources
            .get(end.saturating_sub(1))
            .map_or(first, |s| s[1]);
        (first as usize, last.max(first) as usize)
    }

    /// This view of `inner`'s text, as a view of the text `inner` reads.
    fn through(self, inner: &View) -> View {
        let sources = self
            .sources
            .iter()
            .map(|&[start, end]| {
                let (start, end) = inner.original(start as usize, end as usize);
                [start as u32, end as u32]
            })
            .collect();
        View {
            text: self.text,
            sources,
        }
    }

    fn with_capacity(len: usize) -> View {
        View {
            text: Vec::with_capacity(len),
            sources: Vec::with_capacity(len),
        }
    }

    fn push(&mut self, byte: u8, from: usize, to: usize) {
        self.text.push(byte);
        // `views_of` makes no view of texts whose offsets do not fit.
        self.sources.push([from as u32, to as u32]);
    }

    fn push_char(&mut self, c: char, from: usize, to: usize) {
        let mut utf8 = [0; 4];
        for &byte in c.encode_utf8(&mut utf8).as_bytes() {
            self.push(byte, from, to);
        }
    }
}

/// Whether `bytes` hold anything a view decodes.
pub(super) fn may_hide(bytes: &[u8]) -> bool {
    memchr::memchr3(ESC, b'\\', b'%', bytes).is_some()
}

/// The readings of `bytes` that differ from the bytes: without terminal escape sequences and
/// control characters, with JSON string escapes decoded, with percent-escapes decoded, and
/// JSON escapes decoded once the terminal's are gone (a JSON line in colour).
pub(super) fn views_of(bytes: &[u8]) -> Vec<View> {
    if u32::try_from(bytes.len()).is_err() {
        return Vec::new();
    }
    let terminal = terminal(bytes);
    let json_in_terminal = terminal
        .as_ref()
        .and_then(|shown| Some(json(&shown.text)?.through(shown)));
    [terminal, json(bytes), percent(bytes), json_in_terminal]
        .into_iter()
        .flatten()
        .collect()
}

const ESC: u8 = 0x1b;
const BEL: u8 = 0x07;

/// As a terminal shows the text: escape sequences (ECMA-48: CSI, OSC, DCS and the like, and
/// two-byte escapes) and control characters other than `\n` removed, as `result` strips them.
fn terminal(bytes: &[u8]) -> Option<View> {
    memchr::memchr(ESC, bytes)?;
    let mut view = View::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        if byte == ESC {
            i = escape_end(bytes, i);
            continue;
        }
        if (byte < 0x20 && byte != b'\n') || byte == 0x7f {
            i += 1;
            continue;
        }
        view.push(byte, i, i + 1);
        i += 1;
    }
    Some(view)
}

/// Where the escape sequence starting at `start` (an ESC) ends.
fn escape_end(bytes: &[u8], start: usize) -> usize {
    let after = |i: usize| bytes.get(i).copied();
    match after(start + 1) {
        // CSI: parameters and intermediates, then one final byte.
        Some(b'[') => {
            let mut i = start + 2;
            while let Some(b) = after(i) {
                i += 1;
                if (0x40..=0x7e).contains(&b) {
                    break;
                }
            }
            i
        }
        // OSC, DCS, SOS, PM, APC: a string up to BEL (OSC) or ESC \ (string terminator).
        Some(b']' | b'P' | b'X' | b'^' | b'_') => {
            let mut i = start + 2;
            while let Some(b) = after(i) {
                if b == BEL {
                    return i + 1;
                }
                if b == ESC {
                    return if after(i + 1) == Some(b'\\') {
                        i + 2
                    } else {
                        i
                    };
                }
                i += 1;
            }
            i
        }
        // Intermediates, then a final byte (or the single byte of a two-byte escape).
        Some(_) => {
            let mut i = start + 1;
            while let Some(b) = after(i) {
                i += 1;
                if !(0x20..=0x2f).contains(&b) {
                    break;
                }
            }
            i
        }
        None => start + 1,
    }
}

/// JSON string escapes decoded: `\"`, `\\`, `\/`, `\b`, `\f`, `\n`, `\r`, `\t` and `\uXXXX`
/// (UTF-16 surrogate pairs joined, a lone surrogate as U+FFFD), wherever they stand.
fn json(bytes: &[u8]) -> Option<View> {
    memchr::memchr(b'\\', bytes)?;
    let mut view = View::with_capacity(bytes.len());
    let mut decoded = false;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            if let Some((c, len)) = json_escape(&bytes[i..]) {
                view.push_char(c, i, i + len);
                decoded = true;
                i += len;
                continue;
            }
        }
        view.push(bytes[i], i, i + 1);
        i += 1;
    }
    decoded.then_some(view)
}

/// The character a JSON escape at the start of `text` stands for, and its length.
fn json_escape(text: &[u8]) -> Option<(char, usize)> {
    let simple = match text.get(1)? {
        b'"' => '"',
        b'\\' => '\\',
        b'/' => '/',
        b'b' => '\u{8}',
        b'f' => '\u{c}',
        b'n' => '\n',
        b'r' => '\r',
        b't' => '\t',
        b'u' => {
            let unit = hex4(text.get(2..6)?)?;
            if (0xd800..0xdc00).contains(&unit) {
                let low = text
                    .get(6..8)
                    .filter(|u| *u == b"\\u")
                    .and_then(|_| hex4(text.get(8..12)?))
                    .filter(|low| (0xdc00..0xe000).contains(low));
                if let Some(low) = low {
                    let code = 0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00);
                    return Some((char::from_u32(code)?, 12));
                }
            }
            return Some((char::from_u32(unit).unwrap_or('\u{fffd}'), 6));
        }
        _ => return None,
    };
    Some((simple, 2))
}

fn hex4(digits: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(digits).ok()?;
    u32::from_str_radix(text, 16).ok()
}

/// Percent-escapes (`%2f`, `%2F`) decoded wherever they stand.
fn percent(bytes: &[u8]) -> Option<View> {
    memchr::memchr(b'%', bytes)?;
    let mut view = View::with_capacity(bytes.len());
    let mut decoded = false;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let byte = bytes
                .get(i + 1..i + 3)
                .and_then(|digits| std::str::from_utf8(digits).ok())
                .filter(|digits| digits.bytes().all(|d| d.is_ascii_hexdigit()))
                .and_then(|digits| u8::from_str_radix(digits, 16).ok());
            if let Some(byte) = byte {
                view.push(byte, i, i + 3);
                decoded = true;
                i += 3;
                continue;
            }
        }
        view.push(bytes[i], i, i + 1);
        i += 1;
    }
    decoded.then_some(view)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(bytes: &[u8]) -> Vec<String> {
        views_of(bytes)
            .into_iter()
            .map(|v| String::from_utf8_lossy(&v.text).into_owned())
            .collect()
    }

    #[test]
    fn terminal_escapes_and_controls_are_dropped() {
        assert_eq!(texts(b"Sup3r-s3\x1b[0mcret"), ["Sup3r-s3cret"]);
        assert_eq!(
            texts(b"a\x1b[38;5;196mb\x1b]0;title\x07c\x1b]8;;x\x1b\\d\x1b(Be\tf\n"),
            ["abcdef\n"]
        );
    }

    #[test]
    fn json_escapes_are_decoded() {
        assert_eq!(
            texts(br#"{"p":"p\u0026ss\u003cw0rd\u003e","u":"a\/b","e":"\ud83d\ude00\"x"}"#),
            [r#"{"p":"p&ss<w0rd>","u":"a/b","e":"😀"x"}"#]
        );
        assert!(texts(br"C:\path\x").is_empty(), "nothing decoded, no view");
    }

    #[test]
    fn json_in_colour_is_decoded_once_the_colour_is_gone() {
        let text = b"\x1b[32m{\"p\":\"p\\u00\x1b[0m26ss\"}\x1b[0m";
        let views = views_of(text);
        let last = views.last().unwrap();
        assert_eq!(String::from_utf8_lossy(&last.text), r#"{"p":"p&ss"}"#);
        // `p&ss` came from `p\u00<esc>[0m26ss`.
        assert_eq!(last.original(6, 10), (11, 24));
    }

    #[test]
    fn percent_escapes_are_decoded_in_either_case() {
        assert_eq!(texts(b"q=a%2fb%2Fc%zz%"), ["q=a/b/c%zz%"]);
    }

    #[test]
    fn a_stretch_of_a_view_maps_to_every_byte_it_came_from() {
        let text = b"x=p\\u0026ss!";
        let view = json(text).unwrap();
        // "p&ss" in the view is bytes 2..6.
        assert_eq!(&view.text[2..6], b"p&ss");
        assert_eq!(view.original(2, 6), (2, 11));
        let text = b"ab\x1b[1mcd\x1b[0m";
        let view = terminal(text).unwrap();
        assert_eq!(view.original(1, 3), (1, 7));
    }
}
