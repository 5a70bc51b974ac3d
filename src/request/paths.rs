//! The lexical check of every path a request names (file names, `workdir`, `output`).
//! Symlinks cannot be seen here; `crate::workspace` checks those against the disk.

use std::path::PathBuf;

/// The longest name of one file or folder Linux file systems take (`NAME_MAX`, in bytes).
const NAME_MAX: usize = 255;

/// The longest path the kernel takes in one call (`PATH_MAX` less its NUL, in bytes); a
/// longer one could be made step by step, but no command could then name it.
const PATH_MAX: usize = 4095;

/// How much of an over-long name a message shows.
const SHOWN_PREFIX: usize = 40;

/// A path relative to the temp dir: not empty, not absolute, no `..` component, no NUL, not
/// ending in `/`, no name longer than the file system takes. `.` components (`./run.sh`, what
/// a shell user writes) and repeated slashes name nothing and are dropped. The error is a
/// message without a JSON path.
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
    if raw.len() > PATH_MAX {
        return Err(format!(
            "{}... is {} bytes long; a path may have at most {PATH_MAX}",
            quoted(prefix(raw)),
            raw.len()
        ));
    }
    let mut path = PathBuf::new();
    for part in raw
        .split('/')
        .filter(|part| !part.is_empty() && *part != ".")
    {
        if part.len() > NAME_MAX {
            return Err(format!(
                "{}... has a name of {} bytes; a file or folder name may have at most \
                 {NAME_MAX}",
                quoted(prefix(raw)),
                part.len()
            ));
        }
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

/// The start of an over-long name, cut at a character boundary.
fn prefix(text: &str) -> &str {
    let mut end = SHOWN_PREFIX.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
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
        let longest = vec!["n".repeat(NAME_MAX); 16].join("/");
        assert_eq!(longest.len(), PATH_MAX);
        assert_eq!(relative(&longest).unwrap().as_os_str().len(), PATH_MAX);
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
            (&*"n".repeat(256), "name of 256 bytes"),
            (&format!("d/{}/f", "é".repeat(128)), "name of 256 bytes"),
            (&vec!["p".repeat(200); 21].join("/"), "is 4220 bytes long"),
        ] {
            let message = relative(raw).unwrap_err();
            assert!(message.contains(needle), "{raw:?}: {message}");
        }
    }
}
