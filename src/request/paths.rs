//! The lexical check of every path a request names (file names, `workdir`, `output`).
//! Symlinks cannot be seen here; `crate::files` checks those against the disk.

use std::path::PathBuf;

/// A path relative to the temp dir: not empty, not absolute, no `..` component, no NUL, not
/// ending in `/`. `.` components (`./run.sh`, what a shell user writes) and repeated slashes
/// name nothing and are dropped. The error is a message without a JSON path.
pub(crate) fn relative(raw: &str) -> Result<PathBuf, String> {
    if raw.is_empty() {
        return Err("the path is empty".into());
    }
    if raw.contains('\0') {
        return Err("the path contains a NUL character".into());
    }
    if raw.starts_with('/') {
        return Err(format!(
            "{} is absolute; paths are relative to the request's temp dir",
            quoted(raw)
        ));
    }
    if raw.ends_with('/') {
        return Err(format!("{} ends with '/'; name a file", quoted(raw)));
    }
    let mut path = PathBuf::new();
    for part in raw
        .split('/')
        .filter(|part| !part.is_empty() && *part != ".")
    {
        if part == ".." {
            return Err(format!(
                "{} contains a '..' component; paths must stay inside the temp dir",
                quoted(raw)
            ));
        }
        path.push(part);
    }
    if path.as_os_str().is_empty() {
        return Err(format!(
            "{} names the temp dir itself; name a file or folder inside it",
            quoted(raw)
        ));
    }
    Ok(path)
}

/// A path as a JSON string, for messages.
fn quoted(raw: &str) -> String {
    serde_json::Value::String(raw.to_owned()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_relative_paths_and_drops_repeated_slashes() {
        assert_eq!(relative("a").unwrap(), PathBuf::from("a"));
        assert_eq!(relative("a//b/c").unwrap(), PathBuf::from("a/b/c"));
        assert_eq!(relative("..a/b..").unwrap(), PathBuf::from("..a/b.."));
        assert_eq!(relative(".hidden").unwrap(), PathBuf::from(".hidden"));
    }

    #[test]
    fn dot_components_are_dropped() {
        assert_eq!(relative("./run.sh").unwrap(), PathBuf::from("run.sh"));
        assert_eq!(relative("./sub").unwrap(), PathBuf::from("sub"));
        assert_eq!(relative(".//./a/./b").unwrap(), PathBuf::from("a/b"));
    }

    #[test]
    fn refuses_escapes_and_oddities() {
        for (raw, needle) in [
            ("", "empty"),
            ("/etc/passwd", "absolute"),
            ("..", "'..'"),
            ("./..", "'..'"),
            ("./../x", "'..'"),
            ("a/../../b", "'..'"),
            (".", "the temp dir itself"),
            ("./.", "the temp dir itself"),
            ("a/", "ends with '/'"),
            ("./", "ends with '/'"),
            ("a\0b", "NUL"),
        ] {
            let message = relative(raw).unwrap_err();
            assert!(message.contains(needle), "{raw:?}: {message}");
        }
    }
}
