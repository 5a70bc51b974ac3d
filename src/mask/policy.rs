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
