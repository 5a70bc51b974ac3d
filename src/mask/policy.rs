//! What is secret in a request. The request parser records what the request marks itself
//! (`mask`, `secret: true`); which env names look secret is configuration (`CMD_MASK_NAMES`),
//! applied here.

use std::collections::HashSet;

use regex_lite::{Regex, RegexBuilder};

use crate::plan::Plan;

/// The default `CMD_MASK_NAMES`: env names containing any of these words (case-insensitive)
/// hold secrets.
pub const DEFAULT_SECRET_NAMES: &str = "KEY|SECRET|TOKEN|PASSWORD|PASSWD|PASSPHRASE|CREDENTIAL|\
                                        AUTH|PRIVATE|SESSION|COOKIE|SIGNATURE|SALT|DSN";

/// Which values of a request are secret.
#[derive(Debug, Clone)]
pub struct SecretPolicy {
    /// Env names whose values are secret; `None` when no name is (`CMD_MASK_NAMES` empty).
    names: Option<Regex>,
}

impl Default for SecretPolicy {
    fn default() -> Self {
        // The default pattern is a fixed, valid expression.
        SecretPolicy::parse(DEFAULT_SECRET_NAMES).unwrap_or(SecretPolicy { names: None })
    }
}

impl SecretPolicy {
    /// `CMD_MASK_NAMES`: a regular expression, matched case-insensitively anywhere in a name.
    /// Empty means that no name makes a value secret.
    pub fn parse(names: &str) -> Result<Self, String> {
        let names = names.trim();
        if names.is_empty() {
            return Ok(SecretPolicy { names: None });
        }
        let regex = RegexBuilder::new(names)
            .case_insensitive(true)
            .build()
            .map_err(|error| format!("'{names}' is not a regular expression: {error}"))?;
        Ok(SecretPolicy { names: Some(regex) })
    }

    /// Whether the value of the env variable `name` is secret by its name.
    pub fn is_secret_name(&self, name: &str) -> bool {
        self.names
            .as_ref()
            .is_some_and(|names| names.is_match(name))
    }

    /// Every secret value of a request: what it marks itself, and the values of its env
    /// variables (request and command level) whose names look secret. Once each, in order.
    pub fn secrets_of(&self, plan: &Plan) -> Vec<String> {
        let by_name = plan
            .env
            .iter()
            .chain(plan.commands.iter().flat_map(|command| command.env.iter()))
            .filter(|(name, _)| self.is_secret_name(name))
            .map(|(_, value)| value);
        let mut seen = HashSet::new();
        plan.secrets
            .iter()
            .chain(by_name)
            .filter(|value| !value.is_empty() && seen.insert(value.as_str()))
            .cloned()
            .collect()
    }
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
