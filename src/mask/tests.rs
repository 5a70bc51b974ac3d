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
    let key = "-----BEGIN KEY-----\n  AAAABBBBCCCCDDDD\r\n-----END KEY-----\nshort";
    let masker = Masker::new([key]);
    assert_eq!(masked(&masker, "AAAABBBBCCCCDDDD"), "***");
    assert_eq!(masked(&masker, "  AAAABBBBCCCCDDDD"), "  ***");
    assert_eq!(masked(&masker, &format!("<{key}>")), "<***>");
    assert_eq!(masked(&masker, "x-----END KEY-----"), "x***");
    // Lines shorter than 16 bytes are boilerplate, not patterns of their own.
    assert_eq!(masked(&masker, "short"), "short");
}

#[test]
fn the_boilerplate_lines_of_a_kubeconfig_stay_readable_elsewhere() {
    let kubeconfig = "apiVersion: v1\nkind: Config\nusers:\n- name: admin\n  user:\n    \
                      token: eyJhbGciOiJSUzI1NiIsImtpZCI6IjEyMyJ9.c2VjcmV0\n";
    let masker = Masker::new([kubeconfig]);
    let other = "apiVersion: v1\nkind: Deployment\n- name: admin\n";
    assert_eq!(masked(&masker, other), other);
    assert_eq!(
        masked(
            &masker,
            "    token: eyJhbGciOiJSUzI1NiIsImtpZCI6IjEyMyJ9.c2VjcmV0"
        ),
        "    ***"
    );
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

#[tokio::test]
async fn declared_secrets_are_masked_from_then_on() {
    let masker = Masker::new(["fixed-secret"]);
    let before = masker.snapshot();
    masker.declare(vec!["runtime-value".into()]).await.unwrap();
    masker.declare(vec!["abc".into()]).await.unwrap();
    assert_eq!(
        masked(&masker, "fixed-secret runtime-value abc"),
        "*** *** abc"
    );
    // A snapshot taken before stays as it was: one line is masked with one snapshot.
    assert_eq!(before.mask("runtime-value"), "runtime-value");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declarations_from_many_tasks_are_all_kept() {
    let masker = Arc::new(Masker::new(Vec::<String>::new()));
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let masker = Arc::clone(&masker);
            tokio::spawn(async move {
                for i in 0..10 {
                    masker
                        .declare(vec![format!("secret-{t}-{i}")])
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    for t in 0..8 {
        for i in 0..10 {
            assert_eq!(masked(&masker, &format!("secret-{t}-{i}")), "***");
        }
    }
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
