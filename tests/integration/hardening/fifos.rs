//! Nothing a request names can stall the runner: a FIFO, device, socket or folder where a
//! regular file is expected is refused at once as `cmd.input`, and `/healthz`, `DELETE /` and
//! SIGTERM keep working meanwhile; huge trees are removed off the async worker threads.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{assert_input_error, post_in, PROMPT};
use crate::support::metrics::Metrics;
use crate::support::procs::{self, Signal};
use crate::support::{
    sh, skip_without, start_pair, within, Capability, FakeSidecar, Runner, PATIENCE,
};

/// More FIFO requests at once than the runtime has worker threads on a 2-core machine.
const FIFO_REQUESTS: usize = 3;

/// A request whose second command names a FIFO the first one made as its `output`.
fn fifo_output_request() -> Value {
    json!({"commands": [{"command": "mkfifo o"}, {"command": "true", "output": "o", "timeout": 2}]})
}

fn fifo_aid(i: usize) -> String {
    format!("fifo-{i}")
}

/// Starts `FIFO_REQUESTS` FIFO-output requests and waits until one of them has reached the
/// command whose `output` is the FIFO.
async fn start_fifo_requests(
    sidecar: &Arc<FakeSidecar>,
    runner: &Arc<Runner>,
) -> Vec<tokio::task::JoinHandle<super::Reply>> {
    let calls = (0..FIFO_REQUESTS)
        .map(|i| {
            let (sidecar, runner) = (sidecar.clone(), runner.clone());
            tokio::spawn(async move {
                sidecar
                    .call(&runner, &fifo_aid(i), fifo_output_request())
                    .await
            })
        })
        .collect();
    let deadline = Instant::now() + PATIENCE;
    let reached = |i: usize| {
        sidecar
            .lines(&fifo_aid(i))
            .iter()
            .any(|l| l == "running command 'true'")
    };
    while !(0..FIFO_REQUESTS).any(reached) {
        assert!(Instant::now() < deadline, "no request got to `true`");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    calls
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fifo_as_output_is_refused_at_once_and_the_runner_keeps_answering() {
    let (sidecar, runner) = start_pair(&[("CMD_KILL_GRACE", "1s")]);
    let (sidecar, runner) = (Arc::new(sidecar), Arc::new(runner));
    let victim = {
        let (sidecar, runner) = (sidecar.clone(), runner.clone());
        tokio::spawn(async move {
            sidecar
                .call(&runner, "fifo-victim", json!({"command": "sleep 60"}))
                .await
        })
    };
    let calls = start_fifo_requests(&sidecar, &runner).await;

    let health = within(PROMPT, "/healthz", runner.get("/healthz")).await;
    assert_eq!(health.status, 200, "{health:?}");
    let cancel = within(PROMPT, "DELETE /", sidecar.cancel(&runner, "fifo-victim")).await;
    assert_eq!(cancel, 200);
    let victim = within(PROMPT, "the cancelled request", victim)
        .await
        .unwrap();
    victim.assert_error("cmd.cancelled", 500);

    for (i, call) in calls.into_iter().enumerate() {
        let reply = within(PROMPT, &fifo_aid(i), call).await.unwrap();
        assert_input_error(
            &reply,
            &["commands[1].output", "regular file"],
            &fifo_aid(i),
        );
    }
    assert_eq!(runner.get("/healthz").await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_ends_the_runner_while_fifo_outputs_are_tried() {
    let (sidecar, runner) = start_pair(&[("CMD_KILL_GRACE", "1s"), ("CMD_GRACE", "3s")]);
    let (sidecar, runner) = (Arc::new(sidecar), Arc::new(runner));
    let _calls = start_fifo_requests(&sidecar, &runner).await;
    runner.signal(Signal::TERM);
    let pid = runner.pid();
    let exited = procs::wait_for(PROMPT, || (!procs::alive(pid)).then_some(()));
    assert!(
        exited.is_some(),
        "the runner must exit within {PROMPT:?} of SIGTERM"
    );
}

/// `output` names something other than a regular file: each is refused promptly, by name.
/// (Root: a command makes a character device.)
#[tokio::test(flavor = "multi_thread")]
async fn output_must_be_a_regular_file() {
    skip_without!(Capability::Root);
    let (sidecar, runner) = start_pair(&[("CMD_KILL_GRACE", "1s")]);
    let socket =
        "perl -MIO::Socket::UNIX -e 'IO::Socket::UNIX->new(Local => \"o\", Listen => 1) or die'";
    let cases: [(&str, &str, &str); 7] = [
        ("a folder", "mkdir o", "regular file"),
        (
            "a FIFO in a folder",
            "mkdir d && mkfifo d/o",
            "regular file",
        ),
        (
            "a symlink to a FIFO",
            "mkfifo f && ln -s f o",
            "regular file",
        ),
        ("a socket", socket, "regular file"),
        ("a character device", "mknod o c 1 5", "regular file"),
        ("a symlink to /dev/zero", "ln -s /dev/zero o", "output"),
        ("a symlink to /dev/null", "ln -s /dev/null o", "output"),
    ];
    for (i, (case, setup, needle)) in cases.into_iter().enumerate() {
        let output = if case == "a FIFO in a folder" {
            "d/o"
        } else {
            "o"
        };
        let body = json!({"commands": [sh(setup), {"command": "true", "output": output}]});
        let aid = format!("output-{i}");
        let reply = within(PROMPT, case, sidecar.call(&runner, &aid, body)).await;
        assert_input_error(&reply, &["commands[1].output", needle], case);
    }
    assert_eq!(runner.get("/healthz").await.status, 200);
}

/// A device the runner may not open (a `nodev` mount here; a container's device rules in a
/// pod) is still a device: `output` naming it is the request's mistake (`cmd.input`), not an
/// I/O failure of the runner's, and it is refused before it is opened.
#[tokio::test(flavor = "multi_thread")]
async fn output_naming_a_device_that_cannot_be_opened_is_cmd_input() {
    skip_without!(Capability::Root);
    let base = tempfile::tempdir().expect("temp dir");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "nodev,size=1m", "tmpfs"])
        .arg(base.path())
        .status()
        .expect("mount runs");
    assert!(
        mounted.success(),
        "mounting a nodev tmpfs as root must work"
    );
    struct Unmount<'a>(&'a std::path::Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(self.0).status();
        }
    }
    let _unmount = Unmount(base.path());
    let sidecar = FakeSidecar::start_in(base.path());
    let runner = Runner::start(&sidecar);
    let body = json!({"commands": [sh("mknod o c 1 5"), {"command": "true", "output": "o"}]});
    let reply = within(
        PROMPT,
        "nodev device",
        sidecar.call(&runner, "nodev-output", body),
    )
    .await;
    assert_input_error(
        &reply,
        &["commands[1].output", "a character device", "regular file"],
        "a device on a nodev mount",
    );
    drop(runner);
}

/// An earlier request in a shared temp dir left a FIFO, a device and a FIFO in a folder where a
/// later request's input files go: refused, nothing opened, nothing blocks.
#[tokio::test(flavor = "multi_thread")]
async fn input_files_over_fifos_and_devices_are_refused() {
    skip_without!(Capability::Root);
    let (sidecar, runner) = start_pair(&[]);
    let shared = tempfile::tempdir().unwrap();
    let setup =
        json!({"commands": [sh("mkfifo pipe && mknod dev c 1 5 && mkdir sub && mkfifo sub/pipe")]});
    post_in(&sidecar, &runner, "plant", shared.path(), &setup)
        .await
        .assert_success();
    for (i, name) in ["pipe", "dev", "sub/pipe", "pipe/x"]
        .into_iter()
        .enumerate()
    {
        let body = json!({
            "files": [{"name": "fine.txt", "data": "x"}, {"name": name, "data": "x"}],
            "commands": [{"command": "true"}]
        });
        let aid = format!("over-{i}");
        let reply = within(
            PROMPT,
            name,
            post_in(&sidecar, &runner, &aid, shared.path(), &body),
        )
        .await;
        assert_input_error(&reply, &["files[1].name"], name);
        assert!(
            !shared.path().join("fine.txt").exists(),
            "{name}: nothing is written for a refused request"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fifo_as_workdir_is_refused() {
    let (sidecar, runner) = start_pair(&[]);
    for (i, workdir) in ["w", "w/sub"].into_iter().enumerate() {
        let body = json!({"commands": [
            {"command": "mkfifo w"},
            {"command": "pwd", "workdir": workdir}
        ]});
        let aid = format!("fifo-workdir-{i}");
        let reply = within(PROMPT, workdir, sidecar.call(&runner, &aid, body)).await;
        assert_input_error(&reply, &["commands[1].workdir"], workdir);
    }
}

/// `Direktiv-TempDir` naming a file, a FIFO, or a folder under a file is the request's fault.
#[tokio::test(flavor = "multi_thread")]
async fn a_temp_dir_header_naming_a_file_or_fifo_is_refused() {
    let (sidecar, runner) = start_pair(&[]);
    let base = tempfile::tempdir().unwrap();
    let file = base.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let fifo = base.path().join("fifo");
    super::mkfifo(&fifo);
    let body = json!({"commands": [{"command": "pwd"}]});
    for (i, dir) in [file.clone(), fifo, file.join("sub")]
        .into_iter()
        .enumerate()
    {
        let aid = format!("tempdir-{i}");
        let case = dir.display().to_string();
        let reply = within(PROMPT, &case, post_in(&sidecar, &runner, &aid, &dir, &body)).await;
        assert_input_error(&reply, &["Direktiv-TempDir"], &case);
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "x");
}

/// A request whose temp dir is refused runs nothing and logs nothing, in either request shape
/// (the direktiv-cmd shape's log begins with `running N commands` once anything runs); the
/// same request with a usable temp dir runs, logs and is counted.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_whose_temp_dir_is_refused_runs_and_logs_nothing() {
    const RUNS: &str = "direktiv_cmd_command_duration_seconds_count";
    let (sidecar, runner) = start_pair(&[]);
    let base = tempfile::tempdir().unwrap();
    let file = base.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let good = base.path().join("good");
    let commands = json!([{"command": "echo ran-here"}]);
    let shapes = [
        ("native", json!({ "commands": commands })),
        ("direktiv-cmd", json!({ "data": { "commands": commands } })),
    ];
    for (shape, body) in shapes {
        let runs = Metrics::scrape(&runner).await.sum(RUNS);
        let aid = format!("refused-{shape}");
        let reply = within(
            PROMPT,
            shape,
            post_in(&sidecar, &runner, &aid, &file, &body),
        )
        .await;
        assert_eq!(reply.error_code().as_deref(), Some("cmd.input"), "{shape}");
        assert_eq!(sidecar.lines(&aid), Vec::<String>::new(), "{shape}");
        assert_eq!(Metrics::scrape(&runner).await.sum(RUNS), runs, "{shape}");

        let aid = format!("usable-{shape}");
        let reply = within(
            PROMPT,
            shape,
            post_in(&sidecar, &runner, &aid, &good, &body),
        )
        .await;
        assert_eq!(reply.error_code(), None, "{shape}: {:?}", reply.body());
        let lines = sidecar.lines(&aid);
        assert!(
            lines.iter().any(|l| l.contains("ran-here")),
            "{shape}: {lines:?}"
        );
        assert_eq!(
            Metrics::scrape(&runner).await.sum(RUNS),
            runs + 1.0,
            "{shape}"
        );
    }
}

/// A request without commands still writes its files — a file in `out/` is a result of its own
/// — and a temp dir that cannot be used is refused as for any request.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_without_commands_writes_its_files_or_is_refused() {
    let (sidecar, runner) = start_pair(&[]);
    let base = tempfile::tempdir().unwrap();
    let file = base.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let good = base.path().join("good");
    let body = json!({"commands": [], "files": [{"name": "out/workflow/v", "data": "value"}]});

    let reply = within(
        PROMPT,
        "usable",
        post_in(&sidecar, &runner, "files-only", &good, &body),
    )
    .await;
    assert_eq!(reply.error_code(), None, "{:?}", reply.body());
    let written = std::fs::read_to_string(good.join("out/workflow/v"));
    assert_eq!(written.ok().as_deref(), Some("value"));

    let reply = within(
        PROMPT,
        "refused",
        post_in(&sidecar, &runner, "files-bad", &file, &body),
    )
    .await;
    assert_input_error(&reply, &["Direktiv-TempDir"], "a file as the temp dir");
}
