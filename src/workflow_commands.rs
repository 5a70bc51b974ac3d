//! Lines a command prints to tell the runner something: GitHub Actions' workflow commands,
//! `::NAME[ PROPERTIES]::VALUE` at the start of a line (after spaces or tabs), on stdout or
//! stderr.
//!
//! Each kind is one entry in `KINDS`: its name and whether its lines are logged. A
//! `::add-mask::VALUE` line declares `VALUE` secret and is never logged, whatever its length;
//! a `::error code=CODE::MESSAGE` line (GitHub's `::error` with a `code` property) chooses
//! the command's failure code and message, should it fail by its exit status, and is logged as
//! printed.
//!
//! Output arrives in reads cut anywhere, and a line may be far longer than any read, so a
//! `Watcher` per stream follows lines across reads; the log framer asks `hides_line` about the
//! start of a line, which is all it needs to leave a line out, however long it goes on.

/// Longest command line whose value is read: a longer `::add-mask::` value could not be masked
/// anyway (its forms would pass `mask::MAX_PATTERN_BYTES`) and is reported as `TooLong`.
pub const MAX_COMMAND_LINE: usize = 128 * 1024;

/// The kinds of workflow command the runner knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `::add-mask::VALUE`: VALUE is secret from now on.
    AddMask,
    /// `::error[ code=CODE]::MESSAGE`: the command's failure, should it fail.
    Error,
}

/// Each kind's name on the line, and whether its lines are logged.
const KINDS: [(Kind, &str, bool); 2] = [
    (Kind::AddMask, "add-mask", false),
    (Kind::Error, "error", true),
];

/// A command line, read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkflowCommand {
    /// The value of an `::add-mask::` line: trimmed, as printed (GitHub's escapes are decoded
    /// by `declared_values`).
    AddMask(String),
    /// An `::error` line: its `code` property, as printed (checked by the caller), and its
    /// message, GitHub's escapes decoded.
    Error {
        code: Option<String>,
        message: String,
    },
}

/// What a `Watcher` found on a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    Command(WorkflowCommand),
    /// A command line longer than `MAX_COMMAND_LINE`: its value is not known.
    TooLong(Kind),
}

impl WorkflowCommand {
    /// The values an `::add-mask::` line makes secret: the value as printed and, when it
    /// differs, as GitHub decodes it (`%0A`, `%0D`, `%25`), so either way it is masked.
    pub fn declared_values(&self) -> Vec<String> {
        let WorkflowCommand::AddMask(value) = self else {
            return Vec::new();
        };
        let decoded = unescape_data(value);
        match decoded == *value {
            true => vec![value.clone()],
            false => vec![value.clone(), decoded],
        }
    }
}

/// A value as GitHub decodes it (`%0D`, `%0A`, `%25`).
fn unescape_data(value: &str) -> String {
    value
        .replace("%0D", "\r")
        .replace("%0A", "\n")
        .replace("%25", "%")
}

/// A property as GitHub decodes it: a value's escapes and `%3A` (`:`), `%2C` (`,`).
fn unescape_property(value: &str) -> String {
    unescape_data(&value.replace("%3A", ":").replace("%2C", ","))
}

/// The `code` property of `NAME PROPERTIES` (`error code=aws.client,title=x`).
fn code_property(name_and_properties: &str) -> Option<String> {
    let (_, properties) = name_and_properties.split_once(' ')?;
    properties
        .split(',')
        .filter_map(|property| property.split_once('='))
        .filter(|(key, _)| key.trim() == "code")
        .map(|(_, value)| unescape_property(value.trim()))
        .next_back()
}

/// What the start of a line says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// A command line of this kind.
    Command(Kind),
    /// Ordinary output.
    Output,
    /// Too little of the line is known yet.
    Undecided,
}

/// Reads the start of a line (at least what has arrived of it).
fn start_of(line: &[u8]) -> Start {
    let indent = line
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    let rest = &line[indent..];
    if rest.is_empty() {
        return Start::Undecided;
    }
    let Some(after) = rest.strip_prefix(b"::") else {
        return match b"::".starts_with(rest) {
            true => Start::Undecided,
            false => Start::Output,
        };
    };
    let mut undecided = false;
    for (kind, name, _) in KINDS {
        let name = name.as_bytes();
        // The name, then `::` (no properties) or a space (properties follow).
        for end in [b"::".as_slice(), b" "] {
            match after.strip_prefix(name) {
                Some(tail) if tail.starts_with(end) => return Start::Command(kind),
                Some(tail) => undecided |= end.starts_with(tail),
                None => undecided |= name.starts_with(after),
            }
        }
    }
    match undecided {
        true => Start::Undecided,
        false => Start::Output,
    }
}

/// Whether a line starting with `start` is left out of the logs, or `None` while its start does
/// not tell yet. `start` is the whole line when the line has ended: then `None` never comes.
pub fn hides_line(start: &[u8], ended: bool) -> Option<bool> {
    match start_of(start) {
        Start::Command(kind) => Some(!logged(kind)),
        Start::Output => Some(false),
        Start::Undecided if ended => Some(false),
        Start::Undecided => None,
    }
}

fn logged(kind: Kind) -> bool {
    KINDS.iter().any(|&(k, _, logged)| k == kind && logged)
}

/// The command a complete line (without its newline) holds, if any.
pub fn parse(line: &[u8]) -> Option<WorkflowCommand> {
    let Start::Command(kind) = start_of(line) else {
        return None;
    };
    let text = crate::text::lossy(line);
    let text = text.trim_start_matches([' ', '\t']);
    // `::NAME[ PROPERTIES]::VALUE`: the value follows the second `::`.
    let (name, value) = text.get(2..)?.split_once("::")?;
    let value = value.trim();
    match kind {
        Kind::AddMask => (!value.is_empty()).then(|| WorkflowCommand::AddMask(value.to_owned())),
        Kind::Error => Some(WorkflowCommand::Error {
            code: code_property(name),
            message: unescape_data(value),
        }),
    }
}

/// Follows the lines of one stream across reads and reports the command lines in it.
#[derive(Debug)]
pub struct Watcher {
    /// Whether the next byte starts a line.
    at_line_start: bool,
    /// The line so far, while it is, or may turn out to be, a command line.
    line: Vec<u8>,
    /// The current line is not a command line (or is too long to read): skip to its end.
    skipping: Option<Option<Kind>>,
}

impl Default for Watcher {
    fn default() -> Self {
        Watcher {
            at_line_start: true,
            line: Vec::new(),
            skipping: None,
        }
    }
}

impl Watcher {
    /// Takes one read of the stream; command lines that end in it are added to `found`.
    pub fn scan(&mut self, bytes: &[u8], found: &mut Vec<Found>) {
        let mut rest = bytes;
        while !rest.is_empty() {
            let end = memchr::memchr(b'\n', rest);
            let piece = &rest[..end.unwrap_or(rest.len())];
            self.take(piece, end.is_some(), found);
            rest = match end {
                Some(end) => &rest[end + 1..],
                None => &[],
            };
            // Without a `:`, no line of the rest is a command: only an unfinished last one,
            // all indent so far, may still become one.
            if end.is_some() && memchr::memchr(b':', rest).is_none() {
                if let Some(last) = memchr::memrchr(b'\n', rest) {
                    rest = &rest[last + 1..];
                }
            }
        }
    }

    /// Ends the stream: a command on its last line, without a newline, counts too.
    pub fn finish(mut self, found: &mut Vec<Found>) {
        self.take(&[], true, found);
    }

    /// Takes the next piece of the current line; `ended` when its newline followed.
    fn take(&mut self, piece: &[u8], ended: bool, found: &mut Vec<Found>) {
        if self.at_line_start {
            self.at_line_start = false;
            self.line.clear();
            self.skipping = None;
        }
        if self.skipping.is_none() {
            // Most lines are told from their first bytes, without copying them.
            let start = match self.line.is_empty() {
                true => start_of(piece),
                false => {
                    self.line.extend_from_slice(piece);
                    start_of(&self.line)
                }
            };
            let collect = |line: &mut Vec<u8>| {
                if line.is_empty() {
                    line.extend_from_slice(piece);
                }
            };
            match start {
                Start::Output => self.skipping = Some(None),
                Start::Undecided if ended => self.skipping = Some(None),
                Start::Undecided => collect(&mut self.line),
                Start::Command(kind) => {
                    collect(&mut self.line);
                    if self.line.len() > MAX_COMMAND_LINE {
                        self.skipping = Some(Some(kind));
                    }
                }
            }
            if self.skipping.is_some() {
                self.line = Vec::new();
            }
        }
        if ended {
            match self.skipping {
                None => found.extend(parse(&self.line).map(Found::Command)),
                Some(Some(kind)) => found.push(Found::TooLong(kind)),
                Some(None) => {}
            }
            self.line.clear();
            if self.line.capacity() > 64 * 1024 {
                self.line = Vec::new();
            }
            self.at_line_start = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(chunks: &[&[u8]]) -> Vec<Found> {
        let mut watcher = Watcher::default();
        let mut found = Vec::new();
        for chunk in chunks {
            watcher.scan(chunk, &mut found);
        }
        watcher.finish(&mut found);
        found
    }

    fn mask(value: &str) -> Found {
        Found::Command(WorkflowCommand::AddMask(value.into()))
    }

    #[test]
    fn declarations_are_found_however_reads_cut_them() {
        assert_eq!(found(&[b"::add-mask::tok-123456\n"]), [mask("tok-123456")]);
        assert_eq!(
            found(&[b"x\n::add-", b"mask::tok-1", b"23456\r\nrest"]),
            [mask("tok-123456")]
        );
        assert_eq!(
            found(&[b"a\n:", b":add-mask::other-5678"]),
            [mask("other-5678")]
        );
        assert_eq!(
            found(&[b"::add-mask::one-1\n  \t::add-mask::two-2\n"]),
            [mask("one-1"), mask("two-2")]
        );
        assert!(found(&[b"echo ::add-mask::tok-123456\n"]).is_empty());
        assert!(found(&[b"echo ", b"::add-mask::tok-123456\n"]).is_empty());
        assert!(found(&[b"::add-mask::\n::ADD-MASK::x\n::add-masks::x\n"]).is_empty());
    }

    #[test]
    fn a_line_too_long_to_read_is_reported() {
        let long = [
            b"::add-mask::".as_slice(),
            &vec![b'x'; MAX_COMMAND_LINE],
            b"\nok\n",
        ]
        .concat();
        assert_eq!(
            found(&[&long[..40_000], &long[40_000..]]),
            [Found::TooLong(Kind::AddMask)]
        );
        let fits = [b"::add-mask::".as_slice(), &vec![b'y'; 100_000], b"\n"].concat();
        assert_eq!(found(&[&fits]), [mask(&"y".repeat(100_000))]);
    }

    #[test]
    fn add_mask_lines_are_hidden_from_the_start() {
        assert_eq!(hides_line(b"::add-mask::x", false), Some(true));
        assert_eq!(hides_line(b"  ::add-mask", false), None);
        assert_eq!(hides_line(b"  ::add-mask", true), Some(false));
        assert_eq!(hides_line(b"::add-", false), None);
        assert_eq!(hides_line(b"::warning::x", false), Some(false));
        assert_eq!(hides_line(b"plain", false), Some(false));
        assert_eq!(hides_line(b"", false), None);
    }

    fn error(code: Option<&str>, message: &str) -> Found {
        Found::Command(WorkflowCommand::Error {
            code: code.map(str::to_owned),
            message: message.into(),
        })
    }

    #[test]
    fn error_lines_give_their_code_and_message() {
        assert_eq!(
            found(&[b"x\n::error code=aws.client::no such bucket\n"]),
            [error(Some("aws.client"), "no such bucket")]
        );
        assert_eq!(
            found(&[b"::error file=a.sh,line=3,code=my.code,title=T::line 1%0Aline 2"]),
            [error(Some("my.code"), "line 1\nline 2")]
        );
        assert_eq!(
            found(&[b"  ::error::just a message\n"]),
            [error(None, "just a message")]
        );
        assert_eq!(
            found(&[b"::error code=a%2Cb::m\n"]),
            [error(Some("a,b"), "m")]
        );
        assert!(found(&[b"echo ::error::x\n::errors::x\n::warning::x\n"]).is_empty());
        // Logged as printed, unlike a declaration.
        assert_eq!(hides_line(b"::error code=x::y", false), Some(false));
        assert_eq!(hides_line(b"::error::y", true), Some(false));
    }

    #[test]
    fn github_escapes_are_declared_both_ways() {
        let command = WorkflowCommand::AddMask("line-1%0Aline-2%25".into());
        assert_eq!(
            command.declared_values(),
            ["line-1%0Aline-2%25", "line-1\nline-2%"]
        );
    }
}
