//! Direktiv's wire contract in one place: the header names it sends and reads, the action id
//! of development calls, its log message cap, the folders it collects output variables from,
//! the variables a command sees, and the error code of its own `direktiv-cmd` runner. See the
//! README ("Endpoints", "Logs", "Error codes") and docs/compatibility.md.

/// Request header: the action id; logs are posted under it and `DELETE /` names it.
pub(crate) const HEADER_ACTION_ID: &str = "Direktiv-ActionID";
/// Request header: the folder the sidecar made for this action (the request's temp dir).
pub(crate) const HEADER_TEMP_DIR: &str = "Direktiv-TempDir";
/// Request header: the branch of a foreach/parallel state; log context only.
pub(crate) const HEADER_ITERATOR: &str = "Direktiv-Iterator";
/// Response header: the catchable error code (`cmd.*`).
pub(crate) const HEADER_ERROR_CODE: &str = "Direktiv-ErrorCode";
/// Response header: the one-line error message.
pub(crate) const HEADER_ERROR_MESSAGE: &str = "Direktiv-ErrorMessage";

/// The action id Direktiv's SDKs and local tests use when no sidecar runs.
pub(crate) const DEVELOPMENT_ACTION_ID: &str = "development";

/// Whether `action_id` is the development id. One rule for every use (logs go to stdout, the
/// duplicate rule does not apply): `development` in any letter case, so a hand-typed
/// `Development` is not posted to a sidecar that is not there.
pub(crate) fn is_development(action_id: &str) -> bool {
    action_id.eq_ignore_ascii_case(DEVELOPMENT_ACTION_ID)
}

/// Direktiv's own limit for one log message (the sidecar answers 413 above it).
pub const LOG_MESSAGE_CAP: usize = 4 * 1024 * 1024;

/// The folders Direktiv collects output variables from after an action, relative to the
/// temp dir.
pub(crate) const OUT_DIRS: [&str; 3] = ["out/instance", "out/workflow", "out/namespace"];

/// Command environment: the request's action id.
pub(crate) const ENV_ACTION_ID: &str = "DIREKTIV_ACTION_ID";
/// Command environment: the request's temp dir (also `HOME`).
pub(crate) const ENV_TEMP_DIR: &str = "DIREKTIV_TEMPDIR";
/// Command environment: the empty file a command may leave its `result` in.
pub(crate) const ENV_RESULT: &str = "DIREKTIV_RESULT";
/// Command environment: the instant a command with a timeout will be stopped (RFC 3339, UTC).
pub(crate) const ENV_DEADLINE: &str = "DIREKTIV_DEADLINE";
/// Runner setting: the sidecar's base URL.
pub(crate) const ENV_HTTP_BACKEND: &str = "DIREKTIV_HTTP_BACKEND";
/// Runner setting: development mode for every request.
pub(crate) const ENV_DEV_MODE: &str = "DIREKTIV_DEV_MODE";

/// Error code of a failing `stop` command in the direktiv-cmd shape (what Direktiv's own
/// runner sends).
pub(crate) const DIREKTIV_CMD_ERROR: &str = "io.direktiv.error.execution";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn development_id_ignores_letter_case_only() {
        assert!(is_development("development"));
        assert!(is_development("Development"));
        assert!(!is_development("development "));
        assert!(!is_development("aid-1"));
    }
}
