//! Request `files` → `request::parse` → `workspace::write_files` into a fresh temp dir that
//! already holds symlinks pointing out of it (as an earlier command or the sidecar may leave
//! them).
//!
//! File names are built from a small alphabet of the names planted there plus `.`, `..`, empty
//! parts, a leading `/` and a trailing `/`, so the fuzzer spends its time on paths that could
//! escape rather than on random bytes. After every run:
//! - nothing appeared outside the temp dir: the sibling `outside/` folder is still empty, the
//!   file `victim` beside the temp dir (the target of a symlink and of a hard link inside it)
//!   still holds its old content, and the common parent holds nothing new;
//! - a refused call (any error) left the temp dir exactly as it was;
//! - an accepted call changed exactly the named files (content and mode) and created only
//!   their missing folders: no staging files left, no symlink written through.

#![no_main]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use arbitrary::Arbitrary;
use base64::Engine;
use direktiv_cmd::workspace::write_files;
use direktiv_cmd::plan::InputFile;
use direktiv_cmd::request;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};

/// More files than this adds nothing the fuzzer cannot find with fewer.
const MAX_FILES: usize = 8;
const VICTIM_CONTENT: &[u8] = b"keep";
const OLD_CONTENT: &[u8] = b"old";

#[derive(Arbitrary, Debug)]
struct Case {
    /// Which of the planted entries exist in the temp dir (see `Fixture`).
    fixtures: u8,
    /// Direktiv's `{"data": {"commands": ...}}` shape instead of the native one.
    direktiv_shape: bool,
    files: Vec<FileEntry>,
}

#[derive(Arbitrary, Debug)]
struct FileEntry {
    name: Name,
    content: Content,
    mode: ModeField,
    /// Direktiv's field names: `content` for `data`, `permission` for `mode`.
    aliases: bool,
}

#[derive(Arbitrary, Debug)]
struct Name {
    absolute: bool,
    parts: Vec<Part>,
    trailing_slash: bool,
}

/// One path component: the planted names, names that do not exist yet, and the tricky ones.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Part {
    A,
    B,
    New,
    D,
    Inner,
    F,
    Link,
    Dangling,
    Victim,
    Hard,
    Up,
    Fifo,
    Outside,
    Dot,
    DotDot,
    Empty,
    DotDotA,
    Hidden,
}

#[derive(Arbitrary, Debug)]
enum Content {
    Absent,
    Plain(String),
    Base64(Vec<u8>),
    /// Whatever text, declared base64: mostly invalid.
    Base64Text(String),
    UnknownType(String),
}

#[derive(Arbitrary, Debug)]
enum ModeField {
    Absent,
    Octal { value: u16, prefix: u8 },
    Number(u16),
}

/// The entries a temp dir may hold before the request, one bit of `Case::fixtures` each.
#[derive(Clone, Copy)]
enum Fixture {
    /// `d/` with `d/inner` → `../../outside` (a relative symlink out).
    Dir = 0,
    /// `f`, a regular file.
    File = 1,
    /// `link` → the outside folder (absolute).
    Link = 2,
    /// `dangling` → `outside/new`, which does not exist.
    Dangling = 3,
    /// `victim` → the victim file outside.
    Victim = 4,
    /// `hard`, a hard link to the victim file.
    Hard = 5,
    /// `up` → `..`, the temp dir's parent.
    Up = 6,
    /// `fifo`, a named pipe.
    Fifo = 7,
}

fuzz_target!(|case: Case| run(&case));

fn run(case: &Case) {
    let base = tempfile::Builder::new()
        .prefix("direktiv-cmd-fuzz-")
        .tempdir()
        .expect("a scratch folder");
    let outside = base.path().join("outside");
    let victim = base.path().join("victim");
    let tempdir = base.path().join("tmp");
    fs::create_dir(&outside).expect("outside folder");
    fs::write(&victim, VICTIM_CONTENT).expect("victim file");
    fs::create_dir(&tempdir).expect("temp dir");
    plant(&tempdir, &outside, &victim, case.fixtures);

    let before = snapshot(&tempdir);
    let body = request_body(case);
    if let Ok(plan) = request::parse(&body) {
        match write_files(&tempdir, &plan.files) {
            Ok(()) => assert_eq!(
                snapshot(&tempdir),
                expected_after(&before, &plan.files),
                "an accepted request changed more or less than its files\nfiles: {:?}",
                plan.files
            ),
            Err(failure) => assert_eq!(
                snapshot(&tempdir),
                before,
                "a refused request ({failure:?}) changed the temp dir\nfiles: {:?}",
                plan.files
            ),
        }
    }

    let escaped: Vec<_> = fs::read_dir(&outside)
        .expect("outside folder")
        .map(|entry| entry.expect("entry").file_name())
        .collect();
    assert!(
        escaped.is_empty(),
        "written outside the temp dir: {escaped:?}"
    );
    assert_eq!(
        fs::read(&victim).expect("victim file"),
        VICTIM_CONTENT,
        "the file outside was written through a link"
    );
    let mut siblings: Vec<_> = fs::read_dir(base.path())
        .expect("scratch folder")
        .map(|entry| entry.expect("entry").file_name())
        .collect();
    siblings.sort();
    assert_eq!(
        siblings,
        ["outside", "tmp", "victim"],
        "written beside the temp dir"
    );
}

fn has(fixtures: u8, fixture: Fixture) -> bool {
    fixtures & (1 << fixture as u8) != 0
}

/// Puts the chosen fixtures into the temp dir.
fn plant(tempdir: &Path, outside: &Path, victim: &Path, fixtures: u8) {
    if has(fixtures, Fixture::Dir) {
        fs::create_dir(tempdir.join("d")).expect("d");
        symlink("../../outside", tempdir.join("d/inner")).expect("d/inner");
    }
    if has(fixtures, Fixture::File) {
        fs::write(tempdir.join("f"), OLD_CONTENT).expect("f");
        fs::set_permissions(tempdir.join("f"), fs::Permissions::from_mode(0o640)).expect("f");
    }
    if has(fixtures, Fixture::Link) {
        symlink(outside, tempdir.join("link")).expect("link");
    }
    if has(fixtures, Fixture::Dangling) {
        symlink(outside.join("new"), tempdir.join("dangling")).expect("dangling");
    }
    if has(fixtures, Fixture::Victim) {
        symlink(victim, tempdir.join("victim")).expect("victim");
    }
    if has(fixtures, Fixture::Hard) {
        fs::hard_link(victim, tempdir.join("hard")).expect("hard");
    }
    if has(fixtures, Fixture::Up) {
        symlink("..", tempdir.join("up")).expect("up");
    }
    if has(fixtures, Fixture::Fifo) {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            tempdir.join("fifo"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .expect("fifo");
    }
}

fn request_body(case: &Case) -> Vec<u8> {
    let files: Vec<Value> = case.files.iter().take(MAX_FILES).map(file_json).collect();
    let commands = json!([{"command": "true"}]);
    let body = if case.direktiv_shape {
        json!({"data": {"commands": commands}, "files": files})
    } else {
        json!({"commands": commands, "files": files})
    };
    serde_json::to_vec(&body).expect("JSON")
}

fn file_json(entry: &FileEntry) -> Value {
    let (data_key, mode_key) = if entry.aliases {
        ("content", "permission")
    } else {
        ("data", "mode")
    };
    let mut file = Map::new();
    file.insert("name".into(), Value::String(entry.name.render()));
    let (data, kind) = match &entry.content {
        Content::Absent => (None, None),
        Content::Plain(text) => (Some(text.clone()), Some("plain".to_owned())),
        Content::Base64(bytes) => (
            Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
            Some("base64".to_owned()),
        ),
        Content::Base64Text(text) => (Some(text.clone()), Some("base64".to_owned())),
        Content::UnknownType(kind) => (Some("x".to_owned()), Some(kind.clone())),
    };
    if let Some(data) = data {
        file.insert(data_key.into(), Value::String(data));
    }
    if let Some(kind) = kind {
        file.insert("type".into(), Value::String(kind));
    }
    match entry.mode {
        ModeField::Absent => {}
        ModeField::Octal { value, prefix } => {
            let prefix = ["", "0", "0o"][usize::from(prefix % 3)];
            file.insert(mode_key.into(), Value::String(format!("{prefix}{value:o}")));
        }
        ModeField::Number(value) => {
            file.insert(mode_key.into(), Value::from(value));
        }
    }
    Value::Object(file)
}

impl Name {
    fn render(&self) -> String {
        let parts: Vec<&str> = self.parts.iter().map(|part| part.name()).collect();
        let mut name = parts.join("/");
        if self.absolute {
            name.insert(0, '/');
        }
        if self.trailing_slash {
            name.push('/');
        }
        name
    }
}

impl Part {
    fn name(self) -> &'static str {
        match self {
            Part::A => "a",
            Part::B => "b",
            Part::New => "new",
            Part::D => "d",
            Part::Inner => "inner",
            Part::F => "f",
            Part::Link => "link",
            Part::Dangling => "dangling",
            Part::Victim => "victim",
            Part::Hard => "hard",
            Part::Up => "up",
            Part::Fifo => "fifo",
            Part::Outside => "outside",
            Part::Dot => ".",
            Part::DotDot => "..",
            Part::Empty => "",
            Part::DotDotA => "..a",
            Part::Hidden => ".a",
        }
    }
}

/// What the walk found at one path (symlinks not followed). Folder modes are left out: new
/// folders get 0755 reduced by the umask.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Dir,
    File { data: Vec<u8>, mode: u32 },
    Symlink(PathBuf),
    Other,
}

/// Every entry under `dir`, by path relative to it.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Entry> {
    let mut found = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in fs::read_dir(&current).expect("read_dir") {
            let path = entry.expect("entry").path();
            let meta = fs::symlink_metadata(&path).expect("metadata");
            let kind = meta.file_type();
            let entry = if kind.is_dir() {
                pending.push(path.clone());
                Entry::Dir
            } else if kind.is_symlink() {
                Entry::Symlink(fs::read_link(&path).expect("read_link"))
            } else if kind.is_file() {
                Entry::File {
                    data: fs::read(&path).expect("read"),
                    mode: meta.permissions().mode() & 0o7777,
                }
            } else {
                Entry::Other
            };
            let relative = path.strip_prefix(dir).expect("under dir").to_path_buf();
            found.insert(relative, entry);
        }
    }
    found
}

/// The temp dir after the files were written: each file with its content and mode, and the
/// folders on its way.
fn expected_after(
    before: &BTreeMap<PathBuf, Entry>,
    files: &[InputFile],
) -> BTreeMap<PathBuf, Entry> {
    let mut after = before.clone();
    for file in files {
        let mut folder = PathBuf::new();
        let parts: Vec<_> = file.path.iter().collect();
        for part in &parts[..parts.len().saturating_sub(1)] {
            folder.push(part);
            after.entry(folder.clone()).or_insert(Entry::Dir);
        }
        after.insert(
            file.path.clone(),
            Entry::File {
                data: file.data.clone(),
                mode: file.mode,
            },
        );
    }
    after
}
