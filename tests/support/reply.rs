//! What came back from the runner, in a shape tests can assert on directly.

use std::collections::BTreeMap;

use reqwest::header::HeaderMap;
use serde_json::Value;

/// A request body: JSON values, text or raw bytes (invalid JSON included).
#[derive(Debug, Clone)]
pub struct Body(pub Vec<u8>);

impl From<Value> for Body {
    fn from(value: Value) -> Self {
        Body(serde_json::to_vec(&value).expect("serialise the request"))
    }
}

impl From<&Value> for Body {
    fn from(value: &Value) -> Self {
        Body(serde_json::to_vec(value).expect("serialise the request"))
    }
}

impl From<&str> for Body {
    fn from(text: &str) -> Self {
        Body(text.as_bytes().to_vec())
    }
}

impl From<String> for Body {
    fn from(text: String) -> Self {
        Body(text.into_bytes())
    }
}

impl From<Vec<u8>> for Body {
    fn from(bytes: Vec<u8>) -> Self {
        Body(bytes)
    }
}

/// The runner's answer to one HTTP request.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    /// HTTP status; 0 when the request failed at the transport level (see `transport_error`).
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// Body as text (lossy).
    pub text: String,
    /// Body parsed as JSON, when it is JSON.
    pub json: Option<Value>,
    /// `out/<scope>/<name>` files collected after the call, keyed `"<scope>/<name>"`.
    pub vars: BTreeMap<String, Vec<u8>>,
    /// Set when no HTTP answer arrived (connection refused, reset, timeout).
    pub transport_error: Option<String>,
}

impl Reply {
    /// Reads a complete response.
    pub async fn read(response: reqwest::Response) -> Reply {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        match response.bytes().await {
            Ok(bytes) => Reply {
                status,
                headers,
                text: String::from_utf8_lossy(&bytes).into_owned(),
                json: serde_json::from_slice(&bytes).ok(),
                ..Reply::default()
            },
            Err(error) => Reply {
                status,
                headers,
                transport_error: Some(error.to_string()),
                ..Reply::default()
            },
        }
    }

    /// A request that got no HTTP answer.
    pub fn transport_error(error: reqwest::Error) -> Reply {
        Reply {
            transport_error: Some(format!("{error:?}")),
            ..Reply::default()
        }
    }

    /// A header's value as text, if present.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }

    /// `Direktiv-ErrorCode`, if set.
    pub fn error_code(&self) -> Option<String> {
        self.header("Direktiv-ErrorCode")
    }

    /// `Direktiv-ErrorMessage`, if set.
    pub fn error_message(&self) -> Option<String> {
        self.header("Direktiv-ErrorMessage")
    }

    /// The parsed JSON body; panics with the raw reply when the body is not JSON.
    pub fn body(&self) -> &Value {
        match &self.json {
            Some(json) => json,
            None => panic!("reply body is not JSON: {self:?}"),
        }
    }

    /// The per-command results under `key` (`commands` unless `CMD_RESULT_KEY` renamed it).
    pub fn results_under(&self, key: &str) -> Vec<Value> {
        match self.body().get(key) {
            Some(Value::Array(items)) => items.clone(),
            _ => panic!("reply has no `{key}` array: {self:?}"),
        }
    }

    /// The per-command results of a native reply (`commands`).
    pub fn commands(&self) -> Vec<Value> {
        self.results_under("commands")
    }

    /// The `result` of every command of a native reply, in order.
    pub fn results(&self) -> Vec<Value> {
        self.commands()
            .iter()
            .map(|c| c["result"].clone())
            .collect()
    }

    /// The `i`-th command result of a native reply.
    pub fn command(&self, i: usize) -> Value {
        let all = self.commands();
        match all.get(i) {
            Some(result) => result.clone(),
            None => panic!("reply has no command {i}: {self:?}"),
        }
    }

    /// Fails the test when no HTTP answer arrived, saying why.
    #[track_caller]
    fn assert_answered(&self) {
        if let Some(error) = &self.transport_error {
            panic!("no HTTP answer: {error}");
        }
    }

    /// Asserts a native success: exactly 200, JSON content type, no error headers.
    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        self.assert_answered();
        assert_eq!(self.status, 200, "expected success: {self:?}");
        let content_type = self.header("content-type").unwrap_or_default();
        assert!(
            content_type.starts_with("application/json"),
            "success must be application/json: {self:?}"
        );
        assert!(
            self.error_code().is_none(),
            "unexpected error code: {self:?}"
        );
        assert!(
            self.error_message().is_none(),
            "unexpected error message: {self:?}"
        );
        self
    }

    /// Asserts a failure with `code` and `status`, both error headers set.
    #[track_caller]
    pub fn assert_error(&self, code: &str, status: u16) -> &Self {
        self.assert_answered();
        assert_eq!(self.status, status, "status for {code}: {self:?}");
        assert_eq!(self.error_code().as_deref(), Some(code), "{self:?}");
        let message = self.error_message().unwrap_or_default();
        assert!(
            !message.is_empty(),
            "Direktiv-ErrorMessage must be set: {self:?}"
        );
        self
    }
}
