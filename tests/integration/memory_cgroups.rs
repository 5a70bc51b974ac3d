//! A command's memory cgroup (README "Limits"), as a later command meets it: on cgroup v1 an
//! emptied one is kept and given to the next limited command, with that command's own limit,
//! only while it is as the runner made it; anything a command running as root did to its own
//! (or anyone did to a kept one) makes the next command get a new one; the kept ones are removed
//! when the runner exits. On cgroup v2 every command gets a new one. Against the real binary and
//! real memory cgroups; skipped through `skip_without!` where the machine has none.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::capability::skip_without;
use crate::support::cgroups::{self, expect_memory_dir as memory_dir};
use crate::support::{start_pair, Capability, FakeSidecar, Runner};

/// Prints the command's memory cgroup name, then runs `$THEN` there (`$d`: its folder).
fn in_own() -> String {
    format!(
        "{}echo \"$name\"; eval \"$THEN\"",
        cgroups::FIND_OWN_MEMORY_CGROUP
    )
}

/// Whether the machine's memory cgroups are v1 (where they are kept for reuse).
fn v1(dir: &Path) -> bool {
    dir.join("memory.limit_in_bytes").exists()
}

/// Runs `then` in a command limited to `limit`; its memory cgroup's name and what `then`
/// printed, line by line.
async fn in_own_cgroup(
    sidecar: &FakeSidecar,
    runner: &Runner,
    aid: &str,
    limit: &str,
    then: &str,
) -> Vec<String> {
    let body = json!({
        "env": {"MEMDIR": memory_dir().display().to_string(), "THEN": then},
        "commands": [{"command": in_own(), "shell": true, "limits": {"memory": limit}}]
    });
    let reply = sidecar.call(runner, aid, body).await;
    reply.assert_success();
    let stdout: Value = reply.command(0)["stdout"].clone();
    let lines: Vec<String> = stdout
        .as_str()
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(
        lines
            .first()
            .is_some_and(|name| name.starts_with(&format!("direktiv-cmd-{}-mem-", runner.pid()))),
        "no memory cgroup of this runner: {lines:?}"
    );
    lines
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clean_memory_cgroup_is_kept_for_the_next_limited_command_with_its_own_limit() {
    skip_without!(Capability::MemoryCgroups);
    let dir = memory_dir();
    let (sidecar, runner) = start_pair(&[]);
    let pid = runner.pid();
    // Raised, lowered and raised again: with swap accounted, memsw must follow in the order
    // v1 allows.
    let limits = [
        ("64Mi", 64u64 << 20),
        ("256Mi", 256 << 20),
        ("32Mi", 32 << 20),
    ];
    let show = "cat \"$d/memory.limit_in_bytes\"; \
                cat \"$d/memory.memsw.limit_in_bytes\" 2>/dev/null || echo none";
    let mut names = Vec::new();
    for (i, (limit, bytes)) in limits.iter().enumerate() {
        let seen = in_own_cgroup(&sidecar, &runner, &format!("k{i}"), limit, show).await;
        let bytes = bytes.to_string();
        assert_eq!(seen.get(1), Some(&bytes), "{limit}: {seen:?}");
        let memsw = seen.get(2).map(String::as_str);
        assert!(
            memsw == Some(bytes.as_str()) || memsw == Some("none"),
            "{limit}: {seen:?}"
        );
        names.push(seen[0].clone());
    }
    if v1(&dir) {
        assert!(
            names.iter().all(|name| *name == names[0]),
            "kept and given out again on v1: {names:?}"
        );
    } else {
        assert!(names[0] != names[1] && names[1] != names[2], "{names:?}");
    }
    // The kept ones go with the runner.
    runner.stop();
    let left = cgroups::memory_cgroups_of(pid, &dir);
    assert!(left.is_empty(), "memory cgroups left at exit: {left:?}");
}

/// What a command running as root does to its own memory cgroup, each of which must keep it
/// from the next command (`$d`: the cgroup's folder; `$FILL`: a folder of the test's own).
const CHANGES: [(&str, &str); 11] = [
    // Raised so that the runner's next limit could be written over it: only reading the
    // limits back shows it.
    (
        "its swap limit (or, without swap accounting, its limit) raised",
        "if [ -e \"$d/memory.memsw.limit_in_bytes\" ]; \
         then echo 2147483648 > \"$d/memory.memsw.limit_in_bytes\"; \
         else echo 1073741824 > \"$d/memory.limit_in_bytes\"; fi",
    ),
    (
        "its own limit raised",
        "echo 2147483648 > \"$d/memory.memsw.limit_in_bytes\" 2>/dev/null; \
         echo 1073741824 > \"$d/memory.limit_in_bytes\"",
    ),
    (
        "its OOM killer turned off",
        "echo 1 > \"$d/memory.oom_control\"",
    ),
    ("a setting", "echo 10 > \"$d/memory.swappiness\""),
    (
        "a network memory limit",
        "echo 4096 > \"$d/memory.kmem.tcp.limit_in_bytes\"",
    ),
    (
        "its limit file opened to everyone",
        "chmod 666 \"$d/memory.limit_in_bytes\"",
    ),
    (
        "its thread list opened to everyone",
        "chmod 666 \"$d/tasks\"",
    ),
    (
        "its times set back after a write",
        "t=$(stat -c %Y \"$d/memory.soft_limit_in_bytes\"); \
         echo 1048576 > \"$d/memory.soft_limit_in_bytes\"; \
         touch -m -d \"@$t\" \"$d/memory.soft_limit_in_bytes\"",
    ),
    ("a cgroup nested in it", "mkdir \"$d/nested\""),
    (
        "a tmpfs file charged to it",
        "head -c 2097152 /dev/zero > \"/dev/shm/$SHM\"",
    ),
    (
        "more page cache than an eighth of the next limit",
        "dd if=/dev/zero of=\"$FILL/fill\" bs=1M count=48 2>/dev/null",
    ),
];

#[tokio::test(flavor = "multi_thread")]
async fn a_memory_cgroup_a_command_changed_is_never_given_to_a_later_one() {
    skip_without!(Capability::MemoryCgroups);
    let dir = memory_dir();
    let fill = tempfile::tempdir().expect("a folder for the page cache");
    // A new memory cgroup takes its parent's.
    let swappiness = std::fs::read_to_string(dir.join("memory.swappiness"))
        .map(|text| text.trim().to_owned())
        .unwrap_or_default();
    // Without isolation: in a request's Landlock domain cgroup files are read-only, and none of
    // the changes below could be made.
    let (sidecar, runner) = start_pair(&[("CMD_ISOLATION", "off")]);
    let pid = runner.pid();
    let check = "cat \"$d/memory.limit_in_bytes\" \"$d/memory.swappiness\"; \
                 grep -c '^oom_kill_disable 0' \"$d/memory.oom_control\"; \
                 ls \"$d\" | grep -c nested || true";
    for (i, (change, script)) in CHANGES.iter().enumerate() {
        let shm = format!("direktiv-cmd-test-{}", runner.pid());
        let script = script
            .replace("$FILL", &fill.path().display().to_string())
            .replace("$SHM", &shm);
        let changed = in_own_cgroup(&sidecar, &runner, &format!("c{i}"), "128Mi", &script).await;
        let next = in_own_cgroup(&sidecar, &runner, &format!("n{i}"), "256Mi", check).await;
        assert_ne!(
            changed[0], next[0],
            "{change}: the changed cgroup was given out again"
        );
        if v1(&dir) {
            let clean = [
                (256u64 << 20).to_string(),
                swappiness.clone(),
                "1".into(),
                "0".into(),
            ];
            assert_eq!(
                next[1..],
                clean,
                "{change}: the next command's cgroup: {next:?}"
            );
        }
        let _ = std::fs::remove_file(fill.path().join("fill"));
        let _ = std::fs::remove_file(Path::new("/dev/shm").join(&shm));
    }
    runner.stop();
    let left = cgroups::memory_cgroups_of(pid, &dir);
    assert!(left.is_empty(), "memory cgroups left at exit: {left:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kept_memory_cgroup_changed_while_kept_is_never_given_out() {
    skip_without!(Capability::MemoryCgroups);
    let dir = memory_dir();
    if !v1(&dir) {
        // cgroup v2 keeps no memory cgroup: a command's goes with it (the other tests here
        // show that); nothing is kept to change.
        return;
    }
    let (sidecar, runner) = start_pair(&[]);
    let first = in_own_cgroup(&sidecar, &runner, "w0", "64Mi", "true").await;
    let kept = cgroups::memory_cgroups_of(runner.pid(), &dir);
    assert_eq!(
        kept.len(),
        1,
        "the first command's cgroup is kept: {kept:?}"
    );
    let kept = &kept[0];
    assert!(kept.ends_with(&first[0]), "{kept:?} {first:?}");

    // Someone else (here the test, as root) moves a process in while it is kept.
    let mut stranger = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("spawn sleep");
    std::fs::write(kept.join("cgroup.procs"), stranger.id().to_string())
        .expect("move a process into the kept cgroup");
    let next = in_own_cgroup(&sidecar, &runner, "w1", "64Mi", "true").await;
    assert_ne!(first[0], next[0], "given out with a stranger in it");
    let _ = stranger.kill();
    let _ = stranger.wait();

    // ...or turns its OOM killer off.
    let kept = cgroups::memory_cgroups_of(runner.pid(), &dir);
    let kept = kept
        .iter()
        .find(|path| path.ends_with(&next[0]))
        .expect("kept");
    std::fs::write(kept.join("memory.oom_control"), "1").expect("write oom_control");
    let last = in_own_cgroup(&sidecar, &runner, "w2", "64Mi", "true").await;
    assert_ne!(next[0], last[0], "given out with its OOM killer off");
    assert!(
        !kept.exists() || {
            std::thread::sleep(Duration::from_millis(500));
            !kept.exists()
        },
        "a changed cgroup is removed once found: {kept:?}"
    );
}
