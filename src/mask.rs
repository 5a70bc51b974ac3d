//! Secret redaction. Every string that leaves the runner towards a log or an error message goes
//! through a request's `Masker`.
//!
//! Masking works on whole lines: output is framed into lines before it is masked, so a secret
//! that arrives split across two reads of a pipe is still found. A multi-line secret (a PEM key)
//! is also registered line by line, because each of its lines is logged as its own message.

use std::borrow::Cow;

use aho_corasick::{AhoCorasick, MatchKind};

/// What a secret is replaced with.
pub const REDACTED: &str = "***";

/// Secrets shorter than this are not masked: masking `a` or `1` would shred every log line.
pub const MIN_SECRET_LEN: usize = 4;

/// Replaces every occurrence of a request's secrets with `***`.
#[derive(Debug, Clone, Default)]
pub struct Masker {
    /// `None` when the request has no secret long enough to mask.
    matcher: Option<AhoCorasick>,
}

impl Masker {
    /// Builds a masker for these secret values.
    pub fn new<I, S>(secrets: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut patterns: Vec<String> = Vec::new();
        for secret in secrets {
            let secret = secret.as_ref();
            let mut push = |value: &str| {
                if value.len() >= MIN_SECRET_LEN && !patterns.iter().any(|p| p == value) {
                    patterns.push(value.to_owned());
                }
            };
            push(secret);
            if secret.contains(['\n', '\r']) {
                secret
                    .split(['\n', '\r'])
                    .map(str::trim)
                    .for_each(&mut push);
            }
        }
        if patterns.is_empty() {
            return Masker { matcher: None };
        }
        // Leftmost-longest: when one secret contains another, the longer one is replaced
        // whole instead of leaving a tail of it visible.
        let matcher = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&patterns)
            .ok();
        Masker { matcher }
    }

    /// True when no secret is long enough to mask. Only tests ask: `mask` and `mask_bytes`
    /// already return their input borrowed when there is nothing to mask.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.matcher.is_none()
    }

    /// Masks a string.
    pub fn mask<'a>(&self, text: &'a str) -> Cow<'a, str> {
        match &self.matcher {
            Some(matcher) if matcher.is_match(text) => {
                Cow::Owned(matcher.replace_all(text, &vec![REDACTED; matcher.patterns_len()]))
            }
            _ => Cow::Borrowed(text),
        }
    }

    /// Masks raw bytes (a line of command output, which need not be UTF-8).
    pub fn mask_bytes<'a>(&self, bytes: &'a [u8]) -> Cow<'a, [u8]> {
        match &self.matcher {
            Some(matcher) if matcher.is_match(bytes) => {
                let replacements = vec![REDACTED.as_bytes(); matcher.patterns_len()];
                Cow::Owned(matcher.replace_all_bytes(bytes, &replacements))
            }
            _ => Cow::Borrowed(bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_every_secret() {
        let masker = Masker::new(["hunter22", "s3cr3t-token"]);
        assert_eq!(
            masker.mask("user hunter22 uses s3cr3t-token and hunter22"),
            "user *** uses *** and ***"
        );
        assert_eq!(masker.mask("nothing here"), "nothing here");
    }

    #[test]
    fn short_values_are_not_masked() {
        let masker = Masker::new(["abc", "1"]);
        assert!(masker.is_empty());
        assert_eq!(masker.mask("abc 1"), "abc 1");
    }

    #[test]
    fn longer_secret_wins_over_its_prefix() {
        let masker = Masker::new(["pass", "password123"]);
        assert_eq!(masker.mask("x password123 y pass"), "x *** y ***");
    }

    #[test]
    fn multi_line_secrets_are_masked_line_by_line() {
        let key = "-----BEGIN KEY-----\nAAAABBBBCCCC\n-----END KEY-----";
        let masker = Masker::new([key]);
        assert_eq!(masker.mask("AAAABBBBCCCC"), "***");
        assert_eq!(masker.mask(key), "***");
    }

    #[test]
    fn bytes_that_are_not_utf8_are_masked_too() {
        let masker = Masker::new(["secret"]);
        assert_eq!(
            masker.mask_bytes(b"\xff secret \xfe").as_ref(),
            b"\xff *** \xfe"
        );
    }
}
