//! Properties of the engine over generated secrets and output: every form of every secret is
//! masked wherever it is embedded and however the output is cut, and text without secrets is
//! left as it is.

use proptest::prelude::*;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine;

use super::forms::all_forms;
use super::*;

/// Characters of secrets: letters, digits, quotes, backslashes, base64 and URL specials,
/// multi-byte characters and line breaks.
const SECRET_CHARS: &[char] = &[
    'a', 'b', 'k', 'Z', 'Q', '0', '7', '\'', '"', '\\', '/', '+', '=', '%', '-', '_', '.', '~',
    '$', '&', ' ', 'é', 'ü', '€', '😀', '\n', '\t',
];

/// Characters of the output around secrets: none of them occurs in any form of a secret,
/// so any 8 bytes of a form found in masked output are a leak, never a coincidence.
const FILLER_CHARS: &[char] = &[
    ',', ';', ':', '!', '#', '(', ')', '[', ']', '{', '}', '|', '@', '^', '<', '>', '?',
];

fn secret() -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(SECRET_CHARS), 4..40)
        .prop_map(|chars| chars.into_iter().collect::<String>())
        .prop_filter("at least one line worth masking", |s| {
            s.split(['\n', '\r'])
                .any(|line| line.trim().len() >= MIN_SECRET_LEN)
        })
        // Lines of a multi-line secret are patterns of their own only from 16 bytes on: a
        // shorter one printed alone is shown (`forms::MIN_LINE_LEN`; a test of its own).
        .prop_filter("lines masked on their own", |s| {
            !s.contains(['\n', '\r'])
                || s.split(['\n', '\r']).all(|line| {
                    line.trim().is_empty() || line.trim().len() >= super::forms::MIN_LINE_LEN
                })
        })
}

fn filler() -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(FILLER_CHARS), 0..30)
        .prop_map(|chars| chars.into_iter().collect())
}

/// A way a command may print a secret.
#[derive(Debug, Clone)]
enum Form {
    Plain,
    Json,
    PythonJson,
    Url,
    ShellArg,
    DoubleQuoted,
    /// base64 of the secret between this many bytes before and after.
    Base64 {
        before: usize,
        after: usize,
        url_safe: bool,
        pad: bool,
    },
    /// Each line of the secret, separated by output.
    Lines,
}

fn form() -> impl Strategy<Value = Form> {
    prop_oneof![
        Just(Form::Plain),
        Just(Form::Json),
        Just(Form::PythonJson),
        Just(Form::Url),
        Just(Form::ShellArg),
        Just(Form::DoubleQuoted),
        (0..5usize, 0..5usize, any::<bool>(), any::<bool>()).prop_map(
            |(before, after, url_safe, pad)| Form::Base64 {
                before,
                after,
                url_safe,
                pad
            }
        ),
        Just(Form::Lines),
    ]
}

/// The secret printed in `form` (only characters of forms and filler).
fn render(secret: &str, form: &Form) -> String {
    match form {
        Form::Plain => secret.to_owned(),
        Form::Json => serde_json::to_string(secret).unwrap_or_default(),
        Form::PythonJson => {
            let json = serde_json::to_string(secret).unwrap_or_default();
            json.chars()
                .flat_map(|c| match c.is_ascii() {
                    true => vec![c.to_string()],
                    false => c
                        .encode_utf16(&mut [0; 2])
                        .iter()
                        .map(|u| format!("\\u{u:04x}"))
                        .collect(),
                })
                .collect()
        }
        Form::Url => secret
            .bytes()
            .map(
                |b| match b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    true => char::from(b).to_string(),
                    false => format!("%{b:02X}"),
                },
            )
            .collect(),
        Form::ShellArg => shell_words::join(["cmd", &format!("--pw={secret}")]),
        Form::DoubleQuoted => {
            format!("\"{}\"", secret.replace('\\', "\\\\").replace('"', "\\\""))
        }
        Form::Base64 {
            before,
            after,
            url_safe,
            pad,
        } => {
            let mut bytes = vec![b'Q'; *before];
            bytes.extend_from_slice(secret.as_bytes());
            bytes.extend(std::iter::repeat_n(b'Z', *after));
            match (url_safe, pad) {
                (false, true) => STANDARD.encode(&bytes),
                (false, false) => STANDARD_NO_PAD.encode(&bytes),
                (true, _) => URL_SAFE_NO_PAD.encode(&bytes),
            }
        }
        Form::Lines => secret.split(['\n', '\r']).collect::<Vec<_>>().join("#"),
    }
}

/// Every 8-byte piece of every form of the secrets.
fn fragments(secrets: &[String]) -> Vec<Vec<u8>> {
    let mut fragments = Vec::new();
    for secret in secrets {
        for form in all_forms(secret) {
            fragments.extend(form.windows(8).map(<[u8]>::to_vec));
        }
    }
    fragments
}

#[track_caller]
fn assert_no_fragment(shown: &[u8], fragments: &[Vec<u8>], context: &str) {
    for fragment in fragments {
        assert!(
            !shown
                .windows(fragment.len())
                .any(|w| w == fragment.as_slice()),
            "{:?} leaked in {:?} ({context})",
            String::from_utf8_lossy(fragment),
            String::from_utf8_lossy(shown)
        );
    }
}

/// Output with each secret printed in some form between pieces of filler.
fn output() -> impl Strategy<Value = (Vec<String>, String)> {
    proptest::collection::vec((secret(), form(), filler()), 1..4).prop_flat_map(|items| {
        let secrets: Vec<String> = items.iter().map(|(s, _, _)| s.clone()).collect();
        let text: String = items
            .iter()
            .map(|(secret, form, filler)| format!("{filler}{}", render(secret, form)))
            .collect::<String>()
            + ";end";
        (Just(secrets), Just(text))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn no_form_of_a_secret_survives_masking((secrets, text) in output()) {
        let masker = Masker::new(secrets.iter().cloned());
        let fragments = fragments(&secrets);
        let shown = masker.snapshot().mask_bytes(text.as_bytes());
        assert_no_fragment(&shown, &fragments, "whole text");
    }

    /// A stream cut into pieces of at most `limit` bytes, each masked with `mask_prefix`
    /// (the 4 MiB cap of an unfinished line), then the rest masked at its end.
    #[test]
    fn no_fragment_shows_where_output_is_cut(
        (secrets, text) in output(),
        limits in proptest::collection::vec(0usize..200, 1..20),
    ) {
        let snapshot = Masker::new(secrets.iter().cloned()).snapshot();
        let fragments = fragments(&secrets);
        let longest = secrets.iter().flat_map(|s| all_forms(s)).map(|f| f.len()).max().unwrap_or(0);
        let mut rest = text.as_bytes();
        let mut shown = Vec::new();
        for limit in limits {
            // Pieces at least twice the longest pattern: a cut can always be placed.
            let limit = limit + 2 * longest;
            if rest.len() <= limit {
                break;
            }
            let (piece, used) = snapshot.mask_prefix(rest, limit);
            prop_assert!(used > 0 && used <= limit);
            prop_assert!(piece.len() <= limit);
            assert_no_fragment(&piece, &fragments, "piece");
            shown.extend_from_slice(&piece);
            rest = &rest[used..];
        }
        shown.extend_from_slice(&snapshot.mask_bytes(rest));
        assert_no_fragment(&shown, &fragments, "all pieces");
    }

    /// The head kept for the response and the tail kept for error messages.
    #[test]
    fn no_fragment_shows_at_a_kept_head_or_tail(
        (secrets, text) in output(),
        cut in 0usize..400,
    ) {
        let snapshot = Masker::new(secrets.iter().cloned()).snapshot();
        let fragments = fragments(&secrets);
        let bytes = text.as_bytes();
        let cut = cut.min(bytes.len());
        let (head, used) = snapshot.mask_prefix(bytes, cut);
        prop_assert!(used <= cut);
        assert_no_fragment(&head, &fragments, "head");
        let tail = snapshot.mask_suffix(&bytes[cut..]);
        assert_no_fragment(&tail, &fragments, "tail");
    }

    /// Walking only from where the prefilter finds something finds exactly what one walk of
    /// all of the text finds.
    #[test]
    fn the_prefilter_finds_what_a_whole_walk_finds((secrets, text) in output()) {
        let snapshot = Masker::new(secrets.iter().cloned()).snapshot();
        let whole = snapshot.covered_by_walking(text.as_bytes());
        prop_assert_eq!(snapshot.covered_directly(text.as_bytes()), whole);
    }

    /// Text in which no form of a secret occurs comes back unchanged (and borrowed).
    #[test]
    fn text_without_secrets_is_unchanged(
        secrets in proptest::collection::vec(secret(), 1..4),
        text in proptest::collection::vec(
            proptest::sample::select([SECRET_CHARS, FILLER_CHARS].concat()), 0..200),
    ) {
        let text: String = text.into_iter().collect();
        let masker = Masker::new(secrets.iter().cloned());
        let forms: Vec<Vec<u8>> = secrets.iter().flat_map(|s| all_forms(s)).collect();
        let has_secret = forms
            .iter()
            .any(|f| text.as_bytes().windows(f.len()).any(|w| w == f.as_slice()));
        let shown = masker.mask(&text);
        if has_secret {
            prop_assert!(shown.contains(REDACTED));
        } else {
            prop_assert!(matches!(shown, std::borrow::Cow::Borrowed(_)));
        }
    }
}
