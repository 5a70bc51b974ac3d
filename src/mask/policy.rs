//! What is secret. The request parser records what a request marks itself (`mask`,
//! `secret: true`); which env names make a value secret is configuration (`CMD_MASK_NAMES`),
//! applied here to the request's env and to the container's own.
//!
//! A name is secret when one of its words is: `AWS_SECRET_ACCESS_KEY` has the word `KEY`,
//! `apiKey` the words `api` and `Key`, while `AUTHOR`, `MONKEY_NAME` and `KEYBOARD` are words
//! of their own that merely contain one. A value found secret by its name alone is not masked
//! when no secret can be that value (`true`, `443`): masking it would shred every log line.

use std::collections::HashSet;

use regex_lite::{Regex, RegexBuilder};

use crate::plan::Plan;

/// The default `CMD_MASK_NAMES`: a name with one of these words (any letter case) holds a
/// secret.
pub const DEFAULT_SECRET_NAMES: &str = "KEY|SECRET|TOKEN|PASSWORD|PASSWD|PASSPHRASE|APIKEY|\
                                        CREDENTIALS?|AUTH|PRIVATE|SESSION|COOKIE|SIGNATURE|\
                                        SALT|DSN";

/// Shortest number that can be a secret found by its name: `KEY_SIZE=2048`, `DB_PORT=5432`,
/// `TOKEN_TTL=3600` are settings; a PIN of six digits or more is worth masking.
const MIN_SECRET_DIGITS: usize = 6;

/// Values that are settings whatever the variable is called (compared ignoring case).
const NOT_SECRETS: [&str; 6] = ["true", "false", "yes", "no", "on", "off"];

/// Which values of a request are secret.
#[derive(Debug, Clone)]
pub struct SecretPolicy {
    /// Matched in full against each word of a name, and against the whole name; `None` when
    /// no name is secret (`CMD_MASK_NAMES` empty).
    names: Option<Regex>,
}

impl Default for SecretPolicy {
    fn default() -> Self {
        // The default pattern is a fixed, valid expression.
        SecretPolicy::parse(DEFAULT_SECRET_NAMES).unwrap_or(SecretPolicy { names: None })
    }
}

impl SecretPolicy {
    /// `CMD_MASK_NAMES`: a regular expression that a word of a name, or the whole name, must
    /// match in full, ignoring case (`KEY|TOKEN`, `PIN`, `MY_CERT_.*`). Empty: no name makes a
    /// value secret.
    pub fn parse(names: &str) -> Result<Self, String> {
        let names = names.trim();
        if names.is_empty() {
            return Ok(SecretPolicy { names: None });
        }
        let regex = RegexBuilder::new(&format!("^(?:{names})$"))
            .case_insensitive(true)
            .build()
            .map_err(|error| format!("'{names}' is not a regular expression: {error}"))?;
        Ok(SecretPolicy { names: Some(regex) })
    }

    /// Whether the value of the env variable `name` is secret by its name.
    pub fn is_secret_name(&self, name: &str) -> bool {
        let Some(names) = &self.names else {
            return false;
        };
        names.is_match(name) || words(name).any(|word| names.is_match(word))
    }

    /// Every secret value of a request: what it marks itself, and the values of its env
    /// variables (request and command level) whose names look secret. Once each, in order.
    pub fn secrets_of(&self, plan: &Plan) -> Vec<String> {
        let env = plan
            .env
            .iter()
            .chain(plan.commands.iter().flat_map(|command| command.env.iter()));
        self.secrets(&plan.secrets, env)
    }

    /// The values of `marked`, and those of `env` secret by their names (without values no
    /// secret can be), once each, in order.
    pub fn secrets<'a>(
        &self,
        marked: &'a [String],
        env: impl Iterator<Item = &'a (String, String)>,
    ) -> Vec<String> {
        let by_name = env
            .filter(|(name, value)| self.is_secret_name(name) && can_be_secret(value))
            .map(|(_, value)| value);
        let mut seen = HashSet::new();
        marked
            .iter()
            .chain(by_name)
            .filter(|value| !value.is_empty() && seen.insert(value.as_str()))
            .cloned()
            .collect()
    }
}

/// The words of an env name: split at `_`, `-`, `.`, where a lower-case letter is followed by
/// an upper-case one (`apiKey`), where an upper-case run ends in a capitalised word
/// (`APIKey`: `API`, `Key`), and between letters and digits (`TOKEN2`).
pub fn words(name: &str) -> impl Iterator<Item = &str> {
    name.split(['_', '-', '.']).flat_map(|part| {
        let chars: Vec<(usize, char)> = part.char_indices().collect();
        let mut starts = vec![0];
        for i in 1..chars.len() {
            let (prev, cur) = (chars[i - 1].1, chars[i].1);
            let next = chars.get(i + 1).map(|&(_, c)| c);
            let boundary = (prev.is_lowercase() && cur.is_uppercase())
                || (prev.is_uppercase()
                    && cur.is_uppercase()
                    && next.is_some_and(char::is_lowercase))
                || (prev.is_alphabetic() && cur.is_ascii_digit())
                || (prev.is_ascii_digit() && cur.is_alphabetic());
            if boundary {
                starts.push(chars[i].0);
            }
        }
        let ends: Vec<usize> = starts.iter().skip(1).copied().chain([part.len()]).collect();
        starts
            .into_iter()
            .zip(ends)
            .map(move |(start, end)| &part[start..end])
            .filter(|word| !word.is_empty())
    })
}

/// Whether a value found by its name alone can be a secret: not a yes/no setting, not a
/// number of fewer than `MIN_SECRET_DIGITS` digits.
pub fn can_be_secret(value: &str) -> bool {
    let value = value.trim();
    if NOT_SECRETS
        .iter()
        .any(|word| value.eq_ignore_ascii_case(word))
    {
        return false;
    }
    let number = value.strip_prefix(['-', '+']).unwrap_or(value);
    let is_number = !number.is_empty()
        && number.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && number.bytes().filter(|&b| b == b'.').count() <= 1;
    let digits = number.bytes().filter(u8::is_ascii_digit).count();
    !is_number || digits >= MIN_SECRET_DIGITS
}

#[cfg(test)]
mod tests {
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
        let custom = SecretPolicy::parse("target").unwrap().secrets_of(&plan);
        assert_eq!(custom, ["from-mask", "marked-value", "staging"]);
    }

    #[test]
    fn names_are_secret_by_their_words() {
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
            "apiKey",
            "APIKEY",
            "X-Api-Key",
            "stripe.secret",
            "APIKey",
            "SessionToken",
            "TOKEN2",
            "OAUTH2_TOKEN",
        ] {
            assert!(policy.is_secret_name(name), "{name}");
        }
        for name in [
            "REGION",
            "TARGET",
            "BUCKET",
            "B",
            "ENDPOINT_URL",
            "HOME",
            "AUTHOR",
            "MONKEY_NAME",
            "KEYBOARD",
            "TOKENIZER_PATH",
            "OAUTH_ENABLED_FLAG",
            "Keyboard",
        ] {
            assert!(!policy.is_secret_name(name), "{name}");
        }
    }

    #[test]
    fn a_custom_expression_matches_words_or_the_whole_name() {
        let policy = SecretPolicy::parse("pin|MY_CERT_.*").unwrap();
        assert!(policy.is_secret_name("PIN_CODE"));
        assert!(policy.is_secret_name("deployPin"));
        assert!(policy.is_secret_name("my_cert_pem"));
        assert!(!policy.is_secret_name("SPINNER"));
        assert!(!policy.is_secret_name("GITHUB_TOKEN"));
    }

    #[test]
    fn words_split_at_separators_case_changes_and_digits() {
        let split = |name| words(name).collect::<Vec<_>>();
        assert_eq!(
            split("AWS_SECRET_ACCESS_KEY"),
            ["AWS", "SECRET", "ACCESS", "KEY"]
        );
        assert_eq!(split("apiKey"), ["api", "Key"]);
        assert_eq!(split("APIKey"), ["API", "Key"]);
        assert_eq!(split("x-api.key"), ["x", "api", "key"]);
        assert_eq!(split("OAUTH2_TOKEN"), ["OAUTH", "2", "TOKEN"]);
        assert_eq!(split("__"), Vec::<&str>::new());
    }

    #[test]
    fn values_no_secret_can_be_are_not_secret_by_name() {
        for value in [
            "true", "FALSE", "yes", "No", "on", "off", "2048", "443", "-1", "3.14",
        ] {
            assert!(!can_be_secret(value), "{value}");
        }
        for value in ["123456", "hunter22", "t", "0x1F2E", "1.2.3.4"] {
            assert!(can_be_secret(value), "{value}");
        }
        let policy = SecretPolicy::default();
        let env = [
            ("AUTH_ENABLED".to_owned(), "true".to_owned()),
            ("KEY_SIZE".to_owned(), "2048".to_owned()),
            ("PIN_TOKEN".to_owned(), "918273".to_owned()),
        ];
        let marked = ["yes".to_owned()];
        assert_eq!(policy.secrets(&marked, env.iter()), ["yes", "918273"]);
    }

    #[test]
    fn an_invalid_expression_is_refused() {
        let error = SecretPolicy::parse("TOKEN|(").unwrap_err();
        assert!(error.contains("TOKEN|("), "{error}");
    }
}
