//! Bytes from commands as text.

use std::borrow::Cow;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_text_is_borrowed_and_invalid_bytes_replaced() {
        assert!(matches!(lossy(b"caf\xc3\xa9"), Cow::Borrowed("café")));
        assert_eq!(lossy(b"a\xffb"), "a\u{fffd}b");
    }
}
