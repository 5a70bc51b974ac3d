//! Properties of request parsing and input files over generated inputs: parsing never panics,
//! and no request, however its file names are made, writes outside its temp dir, even with
//! symlinks pointing out of it already in place.

use std::collections::BTreeMap;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use direktiv_cmd::error::Failure;
use direktiv_cmd::plan::Program;
use direktiv_cmd::request::parse;
use direktiv_cmd::workspace::write_files;
use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// Field names of both request shapes, so generated objects hit the real code paths.
const FIELDS: &[&str] = &[
    "commands",
    "command",
    "args",
    "shell",
    "env",
    "envs",
    "name",
    "value",
    "stdin",
    "workdir",
    "timeout",
    "silent",
    "print",
    "continue",
    "output",
    "stop",
    "suppress_command",
    "suppress_output",
    "files",
    "data",
    "content",
    "type",
    "mode",
    "permission",
    "mask",
];

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(FIELDS).prop_map(str::to_owned),
        1 => "[a-z_]{0,4}",
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        proptest::sample::select(vec![
            "ls -l",
            "a && b",
            "'x",
            "bash -c 'a | b'",
            "/etc/passwd",
            "../x",
            "0755",
            "755",
            "base64",
            "plain",
            "90s",
            "-1",
            "",
            "aGk=",
            "a=b",
            "\u{0}",
        ])
        .prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ]
}

fn arb_json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((key(), inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A parse result is a plan or an input error; nothing else, and never a panic.
fn assert_input_or_ok(body: &[u8]) -> Result<(), TestCaseError> {
    match parse(body) {
        Ok(_) | Err(Failure::Input(_)) => Ok(()),
        Err(other) => Err(TestCaseError::fail(format!(
            "not an input failure: {other:?}"
        ))),
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn parse_never_panics_on_json(value in arb_json()) {
        assert_input_or_ok(value.to_string().as_bytes())?;
        // The same value as a request's commands and as a whole command.
        assert_input_or_ok(json!({"commands": [value.clone()]}).to_string().as_bytes())?;
        assert_input_or_ok(json!({"data": {"commands": value}}).to_string().as_bytes())?;
    }

    #[test]
    fn command_strings_are_split_or_refused(
        command in prop_oneof!["[a-z0-9 '\"\\\\&|;<>#$-]{0,24}", any::<String>()]
    ) {
        let body = json!({"commands": [{"command": command}]}).to_string();
        match parse(body.as_bytes()) {
            Ok(plan) => {
                let Program::Argv(argv) = &plan.commands[0].program else {
                    return Err(TestCaseError::fail("not argv"));
                };
                prop_assert_eq!(Some(argv.clone()), shell_words::split(&command).ok());
                prop_assert_eq!(&plan.commands[0].display, &command);
            }
            Err(Failure::Input(message)) => prop_assert!(message.starts_with("commands[0].command: ")),
            Err(other) => prop_assert!(false, "not an input failure: {:?}", other),
        }
    }

    #[test]
    fn parse_never_panics_on_bytes(body in proptest::collection::vec(any::<u8>(), 0..200)) {
        assert_input_or_ok(&body)?;
    }
}

/// Path segments mixing ordinary names with every kind of escape attempt.
fn hostile_name() -> impl Strategy<Value = String> {
    let segment = proptest::sample::select(vec![
        "a", "b", "..", ".", "", "x y", "\u{0}", "~", "é", "a\\b", "...", "-", "*",
    ]);
    (any::<bool>(), proptest::collection::vec(segment, 1..5)).prop_map(|(absolute, parts)| {
        let joined = parts.join("/");
        if absolute {
            format!("/{joined}")
        } else {
            joined
        }
    })
}

/// A sandbox: `<root>/tmp` is the request's temp dir, `<root>/outside` must never change.
struct Sandbox {
    _root: tempfile::TempDir,
    tempdir: PathBuf,
    outside: PathBuf,
}

impl Sandbox {
    fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        let tempdir = root.path().join("tmp");
        let outside = root.path().join("outside");
        std::fs::create_dir(&tempdir).unwrap();
        std::fs::create_dir(&outside).unwrap();
        Sandbox {
            _root: root,
            tempdir,
            outside,
        }
    }

    /// Links out of the temp dir: relative and absolute folder symlinks, a symlink to an
    /// existing file, a dangling one, one a level down, and a hard link to a file outside.
    fn plant_symlinks(&self) {
        std::fs::write(self.outside.join("victim"), "original").unwrap();
        symlink("../outside", self.tempdir.join("up")).unwrap();
        symlink(&self.outside, self.tempdir.join("abs")).unwrap();
        symlink(self.outside.join("victim"), self.tempdir.join("f")).unwrap();
        symlink(self.outside.join("new"), self.tempdir.join("dangling")).unwrap();
        std::fs::create_dir(self.tempdir.join("d")).unwrap();
        symlink(&self.outside, self.tempdir.join("d/inner")).unwrap();
        // Not a symlink, but the same kind of trap: writing through it would change `victim`.
        std::fs::hard_link(self.outside.join("victim"), self.tempdir.join("h")).unwrap();
    }

    /// Parses a request with these file names and writes its files. `Ok` when written.
    fn write(&self, names: &[String]) -> Result<Vec<PathBuf>, Failure> {
        let files: Vec<Value> = names
            .iter()
            .map(|name| json!({"name": name, "data": "payload", "mode": "0600"}))
            .collect();
        let plan = parse(
            json!({"commands": [], "files": files})
                .to_string()
                .as_bytes(),
        )?;
        write_files(&self.tempdir, &plan.files)?;
        Ok(plan.files.into_iter().map(|f| f.path).collect())
    }
}

/// Everything under a folder, links not followed: path → (kind, link target or content, mode).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (String, Vec<u8>, u32)> {
    let mut found = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let kind = meta.file_type();
            let (label, body) = if kind.is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                ("link", target.into_os_string().into_encoded_bytes())
            } else if kind.is_dir() {
                pending.push(path.clone());
                ("dir", Vec::new())
            } else {
                ("file", std::fs::read(&path).unwrap())
            };
            let mode = meta.permissions().mode() & 0o7777;
            found.insert(
                path.strip_prefix(dir).unwrap().to_path_buf(),
                (label.to_owned(), body, mode),
            );
        }
    }
    found
}

/// A written file's real location is inside the temp dir.
fn assert_inside(sandbox: &Sandbox, path: &Path) -> Result<(), TestCaseError> {
    let real = std::fs::canonicalize(sandbox.tempdir.join(path)).unwrap();
    let root = std::fs::canonicalize(&sandbox.tempdir).unwrap();
    prop_assert!(
        real.starts_with(&root),
        "{} landed at {}",
        path.display(),
        real.display()
    );
    prop_assert_eq!(std::fs::read(&real).unwrap(), b"payload".to_vec());
    Ok(())
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn file_names_are_refused_or_land_inside(names in proptest::collection::vec(hostile_name(), 1..4)) {
        let sandbox = Sandbox::new();
        match sandbox.write(&names) {
            Ok(paths) => {
                for path in &paths {
                    assert_inside(&sandbox, path)?;
                }
            }
            Err(Failure::Input(_)) => prop_assert!(snapshot(&sandbox.tempdir).is_empty()),
            Err(other) => prop_assert!(false, "unexpected failure {:?}", other),
        }
        prop_assert!(snapshot(&sandbox.outside).is_empty());
    }

    #[test]
    fn planted_symlinks_never_lead_outside(
        names in proptest::collection::vec(
            proptest::collection::vec(
                proptest::sample::select(vec!["up", "abs", "f", "dangling", "d", "inner", "h", "x", "victim", "new"]),
                1..4,
            )
            .prop_map(|parts| parts.join("/")),
            1..4,
        )
    ) {
        let sandbox = Sandbox::new();
        sandbox.plant_symlinks();
        let outside_before = snapshot(&sandbox.outside);
        let before = snapshot(&sandbox.tempdir);
        match sandbox.write(&names) {
            Ok(paths) => {
                for path in &paths {
                    assert_inside(&sandbox, path)?;
                }
            }
            Err(Failure::Input(_)) => prop_assert_eq!(snapshot(&sandbox.tempdir), before),
            Err(other) => prop_assert!(false, "unexpected failure {:?}", other),
        }
        prop_assert_eq!(snapshot(&sandbox.outside), outside_before);
    }
}
