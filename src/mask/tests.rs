use std::sync::Arc;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine;

use super::forms::all_forms;
use super::*;

fn masked(masker: &Masker, text: &str) -> String {
    masker.mask(text).into_owned()
}

#[test]
fn replaces_every_secret_and_leaves_other_text_alone() {
    let masker = Masker::new(["hunter22", "s3cr3t-token"]);
    assert_eq!(
        masked(&masker, "user hunter22 uses s3cr3t-token and hunter22"),
        "user *** uses *** and ***"
    );
    assert!(matches!(
        masker.mask("nothing here"),
        std::borrow::Cow::Borrowed("nothing here")
    ));
}

#[test]
fn short_values_are_not_masked() {
    let masker = Masker::new(["abc", "1", ""]);
    assert!(masker.snapshot().is_empty());
    assert_eq!(masked(&masker, "abc 1"), "abc 1");
}

#[test]
fn a_secret_inside_another_is_masked_with_it() {
    let masker = Masker::new(["pass", "password123"]);
    assert_eq!(masked(&masker, "x password123 y pass"), "x *** y ***");
}

#[test]
fn overlapping_secrets_are_masked_as_one_stretch() {
    // Leftmost matching alone would mask `abcdef` and leave `gh` of the second secret.
    let masker = Masker::new(["abcdef", "defgh1"]);
    assert_eq!(masked(&masker, "[abcdefgh1]"), "[***]");
}

#[test]
fn multi_line_secrets_are_masked_whole_and_line_by_line() {
    let key = "-----BEGIN KEY-----\n  AAAABBBBCCCC\r\n-----END KEY-----";
    let masker = Masker::new([key]);
    assert_eq!(masked(&masker, "AAAABBBBCCCC"), "***");
    assert_eq!(masked(&masker, "  AAAABBBBCCCC"), "  ***");
    assert_eq!(masked(&masker, &format!("<{key}>")), "<***>");
    assert_eq!(masked(&masker, "x-----END KEY-----"), "x***");
}

#[test]
fn bytes_that_are_not_utf8_are_masked_too() {
    let masker = Masker::new(["secret"]);
    assert_eq!(
        masker.snapshot().mask_bytes(b"\xff secret \xfe").as_ref(),
        b"\xff *** \xfe"
    );
}

#[test]
fn base64_is_masked_at_every_alignment_in_both_alphabets() {
    // `?>` and `~` make `+` and `/` appear in the standard encoding.
    let secret = "p4ss?>w~rd-long";
    let masker = Masker::new([secret]);
    for prefix in ["", "u:", "user:", "x", "xy", "xyz"] {
        for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
            let encoded = engine.encode(format!("{prefix}{secret}-and-more"));
            let shown = masked(&masker, &encoded);
            // 15 bytes are 20 characters; at most one on each side mixes in other bits.
            let hidden = encoded.len() - (shown.len() - REDACTED.len());
            assert!(hidden >= 18, "{prefix:?}: {encoded} -> {shown}");
        }
    }
    // Encoded alone, padding included.
    assert_eq!(masked(&masker, &STANDARD.encode(secret)), "***");
    assert_eq!(masked(&Masker::new(["abcd"]), "YWJjZA=="), "***");
}

#[test]
fn base64_fragments_too_short_to_be_safe_are_not_patterns() {
    // "abcd" after 0, 1 and 2 other bytes: 5, 4 and 5 characters of its own.
    let forms = all_forms("abcd");
    for short in ["YWJjZ", "FiY2", "hYmNk"] {
        assert!(!forms.contains(&short.as_bytes().to_vec()), "{short}");
    }
    // One byte more gives 6 characters at each alignment.
    let forms = all_forms("abcde");
    for kept in ["YWJjZG", "FiY2Rl", "hYmNkZ"] {
        assert!(forms.contains(&kept.as_bytes().to_vec()), "{kept}");
    }
}

#[test]
fn json_url_and_quoted_forms_are_masked() {
    let secret = "p4ss'w0rd \"quoted\" back\\slash é\n2nd line";
    let masker = Masker::new([secret]);
    let json = serde_json::to_string(&serde_json::json!({"pw": secret})).unwrap();
    assert_eq!(masked(&masker, &json), r#"{"pw":"***"}"#);
    let ascii = r#"p4ss'w0rd \"quoted\" back\\slash \u00e9\n2nd line"#;
    assert_eq!(masked(&masker, ascii), "***");
    let url = "p4ss%27w0rd%20%22quoted%22%20back%5Cslash%20%C3%A9%0A2nd%20line";
    assert_eq!(masked(&masker, &format!("?pw={url}&x=1")), "?pw=***&x=1");
    let argv = ["curl".to_owned(), format!("--pw={secret}")];
    assert_eq!(
        masked(&masker, &shell_words::join(&argv)),
        "curl '--pw=***'"
    );
    let written = r#"curl -u "user:p4ss'w0rd \"quoted\" back\\slash é"#;
    let in_command = Masker::new(["p4ss'w0rd \"quoted\" back\\slash é"]);
    assert_eq!(masked(&in_command, written), "curl -u \"user:***");
}

#[test]
fn declared_secrets_are_masked_from_then_on() {
    let masker = Masker::new(["fixed-secret"]);
    let before = masker.snapshot();
    assert!(masker.declare("runtime-value"));
    assert!(!masker.declare("runtime-value"), "already known");
    assert!(!masker.declare("abc"), "too short");
    assert_eq!(masked(&masker, "fixed-secret runtime-value"), "*** ***");
    // A snapshot taken before stays as it was: one line is masked with one automaton.
    assert_eq!(before.mask("runtime-value"), "runtime-value");
}

#[test]
fn declarations_from_many_threads_are_all_kept() {
    let masker = Arc::new(Masker::default());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let masker = Arc::clone(&masker);
            std::thread::spawn(move || {
                for i in 0..10 {
                    masker.declare(&format!("secret-{t}-{i}"));
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    for t in 0..8 {
        for i in 0..10 {
            assert_eq!(masked(&masker, &format!("secret-{t}-{i}")), "***");
        }
    }
}

#[test]
fn declarations_beyond_the_limit_are_refused() {
    let masker = Masker::default();
    for i in 0..MAX_DECLARED {
        assert!(masker.declare(&format!("declared-{i}")));
    }
    assert!(!masker.declare("one-too-many"));
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

/// Feeds `chunks` to a scanner and returns what the masker then masks `probe` to.
fn declared_after(chunks: &[&[u8]], probe: &str) -> String {
    let masker = Masker::default();
    let mut declarations = Declarations::default();
    for chunk in chunks {
        declarations.scan(chunk, &masker);
    }
    declarations.finish(&masker);
    masked(&masker, probe)
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
fn a_prefix_cut_never_splits_a_secret() {
    let snapshot = Masker::new(["SECRETVALUE"]).snapshot();
    let text = b"aaaaSECRETVALUEbbbb";
    // The cut at 8 would split the secret: it moves before it.
    let (piece, used) = snapshot.mask_prefix(text, 8);
    assert_eq!((piece.as_ref(), used), (&b"aaaa"[..], 4));
    let (piece, used) = snapshot.mask_prefix(text, 15);
    assert_eq!((piece.as_ref(), used), (&b"aaaa***"[..], 15));
    // The text ends with what may be the start of the secret: not shown yet.
    let (piece, used) = snapshot.mask_prefix(b"aaaaSECR", 100);
    assert_eq!((piece.as_ref(), used), (&b"aaaa"[..], 4));
    // A start that cannot be the secret any more is shown.
    let (piece, used) = snapshot.mask_prefix(b"aaaaSECRxx", 8);
    assert_eq!((piece.as_ref(), used), (&b"aaaaSECR"[..], 8));
}

#[test]
fn a_suffix_never_starts_inside_a_secret() {
    let snapshot = Masker::new(["SECRETVALUE"]).snapshot();
    assert_eq!(snapshot.mask_suffix(b"VALUE: failed").as_ref(), b": failed");
    assert_eq!(snapshot.mask_suffix(b"CRETVAL").as_ref(), b"");
    assert_eq!(
        snapshot.mask_suffix(b"ALUEx SECRETVALUE").as_ref(),
        b"x ***"
    );
    assert_eq!(snapshot.mask_suffix(b"no secret").as_ref(), b"no secret");
    // A whole secret at the start that begins with what could be the end of one (`~`).
    let snapshot = Masker::new(["~%&&0+%0~"]).snapshot();
    assert_eq!(snapshot.mask_suffix(b"~%&&0+%0~;end").as_ref(), b"***;end");
}

mod policy {
    use super::*;
    use crate::request;

    fn plan(body: serde_json::Value) -> crate::plan::Plan {
        request::parse(body.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn env_values_are_secret_by_name_or_by_mark() {
        let plan = plan(serde_json::json!({
            "env": {"AWS_SECRET_ACCESS_KEY": "wJalrXUtn", "AWS_DEFAULT_REGION": "eu-central-1"},
            "envs": [{"name": "PLAIN", "value": "marked-value", "secret": true}],
            "mask": ["from-mask"],
            "commands": [
                {"command": "a", "env": {"TARGET": "staging", "github_token": "ghp_x1"}},
                {"command": "b", "envs": [{"name": "B", "value": "true"},
                                          {"name": "Db_Password", "value": ""}]}
            ]
        }));
        let secrets = SecretPolicy::default().secrets_of(&plan);
        assert_eq!(
            secrets,
            ["from-mask", "marked-value", "wJalrXUtn", "ghp_x1"]
        );
        let none = SecretPolicy::parse("").unwrap().secrets_of(&plan);
        assert_eq!(none, ["from-mask", "marked-value"]);
        let custom = SecretPolicy::parse("^target$").unwrap().secrets_of(&plan);
        assert_eq!(custom, ["from-mask", "marked-value", "staging"]);
    }

    #[test]
    fn default_names() {
        let policy = SecretPolicy::default();
        for name in [
            "AWS_SECRET_ACCESS_KEY",
            "GITHUB_TOKEN",
            "DB_PASSWORD",
            "mysql_passwd",
            "GPG_PASSPHRASE",
            "GOOGLE_APPLICATION_CREDENTIALS",
            "BASIC_AUTH",
            "PRIVATE_PEM",
            "AWS_SESSION_TOKEN",
            "COOKIE",
            "REQUEST_SIGNATURE",
            "HASH_SALT",
            "SENTRY_DSN",
            "api_key",
        ] {
            assert!(policy.is_secret_name(name), "{name}");
        }
        for name in ["REGION", "TARGET", "BUCKET", "B", "ENDPOINT_URL", "HOME"] {
            assert!(!policy.is_secret_name(name), "{name}");
        }
    }

    #[test]
    fn an_invalid_expression_is_refused() {
        let error = SecretPolicy::parse("TOKEN|(").unwrap_err();
        assert!(error.contains("TOKEN|("), "{error}");
    }
}

/// Properties over generated secrets and output: every form of every secret is masked
/// wherever it is embedded and however the output is cut, and text without secrets is left
/// as it is.
mod properties {
    use proptest::prelude::*;

    use super::super::forms::all_forms;
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

        /// Searching long text in blocks finds exactly what one search of all of it finds.
        #[test]
        fn blocks_find_what_a_whole_search_finds(
            (secrets, text) in output(),
            block in 1usize..64,
        ) {
            let snapshot = Masker::new(secrets.iter().cloned()).snapshot();
            let whole = snapshot.covered_in_blocks(text.as_bytes(), usize::MAX / 2);
            prop_assert!(!whole.is_empty());
            prop_assert_eq!(snapshot.covered_in_blocks(text.as_bytes(), block), whole);
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
}
