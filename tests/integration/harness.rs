//! The harness itself, so that a passing test means what it says: the fake sidecar, /proc
//! inspection, `/metrics` reading, and the rule that every test file under `tests/` is
//! compiled by some test crate.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::procs::{descendants, marker, parse_stat, stat, wait_for, with_marker};
use crate::support::{Capability, FakeSidecar, LOG_CAP, MISSING_AID};

// --- /proc ---

#[test]
fn parses_stat_with_awkward_comm() {
    let line = "1234 (we ird) (x)) S 1 1234 1234 0 -1 4194560 0 0";
    let proc = parse_stat(line).unwrap();
    assert_eq!(proc.pid, 1234);
    assert_eq!(proc.comm, "we ird) (x)");
    assert_eq!((proc.state, proc.ppid, proc.pgid), ('S', 1, 1234));
}

#[test]
fn finds_own_children_and_zombies() {
    let mark = marker("self");
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .env("PROCS_SELFTEST", &mark)
        .spawn()
        .unwrap();
    let pid = child.id();
    assert!(descendants(std::process::id()).iter().any(|p| p.pid == pid));
    assert_eq!(with_marker(&mark).len(), 1);
    child.kill().unwrap();
    // Killed but not waited for: a zombie of ours.
    assert!(wait_for(Duration::from_secs(10), || stat(pid)?
        .is_zombie()
        .then_some(()))
    .is_some());
    assert!(with_marker(&mark).is_empty());
    child.wait().unwrap();
    assert!(stat(pid).is_none());
}

// --- the fake sidecar ---

#[tokio::test(flavor = "multi_thread")]
async fn fake_sidecar_accepts_only_registered_action_ids() {
    let sidecar = FakeSidecar::start();
    let client = reqwest::Client::new();
    let post = |aid: &str, msg: &str| {
        client
            .post(format!("{}/log?aid={aid}", sidecar.url()))
            .body(msg.to_string())
            .send()
    };
    let refused = post("nobody", "early").await.expect("post");
    assert_eq!(refused.status(), 500);
    assert_eq!(refused.text().await.expect("text"), MISSING_AID);
    sidecar.register("a1");
    assert_eq!(post("a1", "one").await.expect("post").status(), 200);
    assert_eq!(post("a1", "two\nthree").await.expect("post").status(), 200);
    sidecar.deregister("a1");
    assert_eq!(post("a1", "late").await.expect("post").status(), 500);
    assert_eq!(sidecar.messages("a1"), ["one", "two\nthree"]);
    assert_eq!(sidecar.lines("a1"), ["one", "two", "three"]);
    assert_eq!(sidecar.post_count("a1"), 3);
    let rejected: Vec<_> = sidecar.rejected().into_iter().map(|r| r.message).collect();
    assert_eq!(rejected, ["early", "late"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn fake_sidecar_can_be_slow_failing_and_down() {
    let sidecar = FakeSidecar::start();
    sidecar.register("a1");
    let client = reqwest::Client::new();
    let url = format!("{}/log?aid=a1", sidecar.url());

    sidecar.fail_next(1);
    assert_eq!(
        client
            .post(&url)
            .body("x")
            .send()
            .await
            .expect("post")
            .status(),
        500
    );
    assert_eq!(
        client
            .post(&url)
            .body("y")
            .send()
            .await
            .expect("post")
            .status(),
        200
    );
    assert_eq!(sidecar.messages("a1"), ["y"]);

    sidecar.set_delay(Duration::from_millis(200));
    let started = Instant::now();
    client.post(&url).body("z").send().await.expect("post");
    assert!(started.elapsed() >= Duration::from_millis(200));
    sidecar.set_delay(Duration::ZERO);

    let too_big = vec![b'x'; LOG_CAP + 1];
    let answer = client.post(&url).body(too_big).send().await.expect("post");
    assert_eq!(answer.status(), 413);
    assert_eq!(sidecar.oversized_posts(), 1);

    sidecar.set_down(true);
    assert!(client.post(&url).body("lost").send().await.is_err());
    sidecar.set_down(false);
    assert_eq!(
        client
            .post(&url)
            .body("back")
            .send()
            .await
            .expect("post")
            .status(),
        200
    );
    assert_eq!(sidecar.messages("a1"), ["y", "z", "back"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn fake_sidecar_serves_variables_for_registered_action_ids() {
    let sidecar = FakeSidecar::start();
    let client = reqwest::Client::new();
    let url = |scope: &str| format!("{}/var?aid=v1&scope={scope}&key=k", sidecar.url());
    assert_eq!(
        client
            .get(url("workflow"))
            .send()
            .await
            .expect("get")
            .status(),
        404
    );
    sidecar.register("v1");
    let posted = client
        .post(url("workflow"))
        .body("value")
        .send()
        .await
        .expect("post");
    assert_eq!(posted.status(), 200);
    let got = client.get(url("workflow")).send().await.expect("get");
    assert_eq!(got.text().await.expect("text"), "value");
    assert_eq!(sidecar.var("workflow", "k").as_deref(), Some(&b"value"[..]));
    // Direktiv v0.10: a missing variable and an unknown scope are 200 with an error text.
    let missing = client.get(url("namespace")).send().await.expect("get");
    assert_eq!(missing.status(), 200);
    assert_eq!(
        missing.text().await.expect("text"),
        "resource with key k not found in scope namespace\n"
    );
    let unknown = client.get(url("thread")).send().await.expect("get");
    assert_eq!(unknown.status(), 200);
    assert_eq!(
        unknown.text().await.expect("text"),
        "unknown scope: thread\n"
    );
}

// --- skips ---

/// A skip must be a person's choice: the README names the variable that skips the tests of
/// each capability on purpose.
#[test]
fn every_skip_variable_is_documented() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("read README.md");
    for capability in Capability::ALL {
        let variable = capability.opt_out();
        assert!(
            readme.contains(&format!("{variable}=1")),
            "README.md must say that {variable}=1 skips the {capability:?} tests"
        );
    }
}

// --- the layout of tests/ ---

/// With `autotests = false`, a file dropped into `tests/` is compiled by nothing and its tests
/// never run. Every `.rs` file under `tests/` must be a `[[test]]` crate of Cargo.toml or a
/// module reached from one through `mod` lines.
#[test]
fn every_test_file_is_compiled() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("read Cargo.toml");
    let crates = test_crates(&manifest);
    assert!(
        crates.contains(&PathBuf::from("tests/integration/main.rs")),
        "Cargo.toml names the integration crate: {crates:?}"
    );
    let mut compiled = BTreeSet::new();
    let mut pending: Vec<PathBuf> = crates.iter().map(|c| root.join(c)).collect();
    while let Some(file) = pending.pop() {
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("{} is named but cannot be read: {e}", file.display()));
        pending.extend(declared_modules(&file, &text));
        compiled.insert(file.canonicalize().unwrap_or(file));
    }
    let mut stray = Vec::new();
    for file in rust_files(&root.join("tests")) {
        if !compiled.contains(&file.canonicalize().unwrap_or(file.clone())) {
            stray.push(
                file.strip_prefix(root)
                    .unwrap_or(&file)
                    .display()
                    .to_string(),
            );
        }
    }
    assert!(
        stray.is_empty(),
        "no test crate compiles {stray:?}: move a test file to tests/integration/<name>.rs and \
         add `mod <name>;` to tests/integration/main.rs (a crate of its own needs a [[test]] \
         entry in Cargo.toml)"
    );
}

/// The `path`s of the `[[test]]` sections of a Cargo.toml.
fn test_crates(manifest: &str) -> Vec<PathBuf> {
    let mut crates = Vec::new();
    let mut in_test = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_test = line == "[[test]]";
        } else if let Some(path) = line.strip_prefix("path = ").filter(|_| in_test) {
            crates.push(PathBuf::from(path.trim_matches('"')));
        }
    }
    crates
}

/// The files of the `mod name;` lines of `file` (honouring a `#[path = "..."]` line before one).
fn declared_modules(file: &Path, text: &str) -> Vec<PathBuf> {
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let dir = file.parent().unwrap_or(Path::new("."));
    // `a/b.rs` keeps its modules in `a/b/`; `main.rs`, `mod.rs` and crate roots beside them.
    let own_dir = if name == "mod.rs" || name == "main.rs" || dir.ends_with("tests") {
        dir.to_path_buf()
    } else {
        dir.join(file.file_stem().unwrap_or_default())
    };
    let mut found = Vec::new();
    let mut path_attribute = None;
    for line in text.lines().map(str::trim) {
        if let Some(path) = line
            .strip_prefix("#[path = \"")
            .and_then(|rest| rest.strip_suffix("\"]"))
        {
            path_attribute = Some(dir.join(path));
            continue;
        }
        let declared = line
            .trim_start_matches("pub ")
            .trim_start_matches("pub(crate) ")
            .strip_prefix("mod ")
            .and_then(|rest| rest.strip_suffix(';'));
        if let Some(module) = declared {
            found.push(path_attribute.take().unwrap_or_else(|| {
                let flat = own_dir.join(format!("{module}.rs"));
                if flat.is_file() {
                    flat
                } else {
                    own_dir.join(module).join("mod.rs")
                }
            }));
        } else if !line.starts_with("#[") {
            path_attribute = None;
        }
    }
    found
}

/// Every `.rs` file below `dir`, as an absolute path.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read tests/").flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}
