//! The local pod of `make dev-pod` (docker/README.md, "Trying a function locally"): the real
//! runner beside the test sidecar in print mode, started by docker/dev-pod.sh. A call through
//! the sidecar gets the runner's answer; the sidecar prints each log post as it arrives, the
//! answer and the variables; `/var` answers as Direktiv v0.10's sidecar does; files left in
//! `out/<scope>/` become variables in the pod's folder; stopping the script stops both.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use crate::support::procs::{self, Signal};
use crate::support::{binary, Runner, PATIENCE};
use serde_json::json;

/// The test sidecar, built once per test process (a package of its own, like `make lint`
/// builds it).
fn sidecar_binary() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let target = repo.join("target/packages");
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .arg("build")
            .arg("--manifest-path")
            .arg(repo.join("docker/test-sidecar/Cargo.toml"))
            .arg("--target-dir")
            .arg(&target)
            .status()
            .expect("run cargo");
        assert!(status.success(), "building the test sidecar failed");
        target.join("debug/direktiv-cmd-test-sidecar")
    })
}

/// A port nobody listens on right now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

/// The pod, started by the script as `make dev-pod` starts it.
struct DevPod {
    script: Runner,
    dir: tempfile::TempDir,
    log_port: u16,
    front_port: u16,
    client: reqwest::Client,
}

impl DevPod {
    fn start() -> DevPod {
        let dir = tempfile::tempdir().expect("temp dir");
        let (log_port, front_port) = (free_port(), free_port());
        let script = Runner::builder()
            .program(Path::new(env!("CARGO_MANIFEST_DIR")).join("docker/dev-pod.sh"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("DEV_POD_DIR", dir.path().to_str().expect("utf-8 path"))
            .env("DEV_POD_RUNNER_BIN", binary().to_str().expect("utf-8 path"))
            .env(
                "DEV_POD_SIDECAR_BIN",
                sidecar_binary().to_str().expect("utf-8 path"),
            )
            .env("DEV_POD_RUNNER_PORT", &free_port().to_string())
            .env("DEV_POD_LOG_PORT", &log_port.to_string())
            .env("DEV_POD_FRONT_PORT", &front_port.to_string())
            .start();
        assert!(
            script.wait_stdout(PATIENCE, |l| l.starts_with("test sidecar listening on")),
            "{:?}",
            script.stdout_lines()
        );
        DevPod {
            script,
            dir,
            log_port,
            front_port,
            client: reqwest::Client::new(),
        }
    }

    /// Calls the function through the sidecar, as Direktiv does.
    async fn call(&self, input: serde_json::Value) -> reqwest::Response {
        self.client
            .post(format!("http://127.0.0.1:{}/", self.front_port))
            .body(input.to_string())
            .send()
            .await
            .expect("call through the sidecar")
    }

    fn var_url(&self, aid: &str, scope: &str, key: &str) -> String {
        format!(
            "http://127.0.0.1:{}/var?aid={aid}&scope={scope}&key={key}",
            self.log_port
        )
    }

    fn printed(&self) -> String {
        self.script.stdout_lines().join("\n")
    }
}

/// A command run by `sh -c`, without the echoed command line in the log.
fn script(text: &str) -> serde_json::Value {
    json!({"args": ["sh", "-c", text], "print": false})
}

/// `curl` printing the status and the body, the way a command reads `/var`.
fn curl(method: &str, scope: &str, key: &str, data: Option<&str>, port: u16) -> String {
    let data = data.map_or(String::new(), |d| format!(" --data-binary '{d}'"));
    format!(
        "curl -s -X {method}{data} -w ' %{{http_code}}' \
         \"http://127.0.0.1:{port}/var?aid=$DIREKTIV_ACTION_ID&scope={scope}&key={key}\"; echo"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_through_the_pod_shows_what_direktiv_would_see() {
    let pod = DevPod::start();
    let port = pod.log_port;
    let input = json!({"commands": [
        {"command": "echo hello"},
        script(&[
            curl("GET", "workflow", "missing", None, port),
            curl("GET", "thread", "x", None, port),
            curl("PUT", "workflow", "x", Some("1"), port),
            curl("POST", "namespace", "greeting", Some("hi there"), port),
            curl("GET", "namespace", "greeting", None, port),
            "echo -n 42 > out/workflow/answer; mkdir out/instance/folder".to_owned(),
        ].join("; ")),
        {"command": "sh -c 'echo oops >&2; exit 3'"}
    ]});
    let response = pod.call(input).await;
    assert_eq!(response.status(), 500);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(header("direktiv-errorcode").as_deref(), Some("cmd.exit.3"));
    let body: serde_json::Value = response.json().await.expect("the runner's JSON");
    let stdout = body["commands"][1]["stdout"].as_str().unwrap_or_default();
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            "resource with key missing not found in scope workflow",
            " 200",
            "unknown scope: thread",
            " 200",
            "Method Not Allowed",
            " 405",
            " 200",
            "hi there 200",
        ],
        "{body}"
    );
    assert_eq!(
        std::fs::read(pod.dir.path().join("vars/namespace/greeting")).ok(),
        Some(b"hi there".to_vec())
    );
    assert_eq!(
        std::fs::read(pod.dir.path().join("vars/workflow/answer")).ok(),
        Some(b"42".to_vec()),
        "out/workflow/answer becomes a variable"
    );

    // What the sidecar printed: each log post under its action id, as it arrived; the
    // answer as Direktiv reads it; the variables.
    assert!(
        pod.script
            .wait_stdout(PATIENCE, |l| l.starts_with("=== out/instance/folder")),
        "{}",
        pod.printed()
    );
    let printed = pod.printed();
    let aid = printed
        .lines()
        .find_map(|l| l.strip_prefix("=== call "))
        .and_then(|rest| rest.split(':').next())
        .expect("the call is printed");
    // A post's lines after its first are indented; how lines are batched into posts is the
    // delivery's choice, their order is not.
    let prefix = format!("[{aid}] ");
    let logged: Vec<&str> = printed
        .lines()
        .map(|line| line.strip_prefix(&prefix).unwrap_or(line.trim_start()))
        .collect();
    for (running, output) in [
        ("running command 'echo hello'", "hello"),
        ("running command \"sh -c 'echo oops >&2; exit 3'\"", "oops"),
    ] {
        let at = logged.iter().position(|line| *line == running);
        assert_eq!(
            at.and_then(|at| logged.get(at + 1)).copied(),
            Some(output),
            "{running}, then its output, in:\n{printed}"
        );
    }
    for expected in [
        "=== var set namespace/greeting: 8 bytes".to_owned(),
        format!("=== answer {aid}: 500 Internal Server Error; a catchable error cmd.exit.3: "),
        "=== out/workflow/answer set, 2 bytes".to_owned(),
        "=== out/instance/folder is a folder: Direktiv stores it as a tar.gz variable".to_owned(),
    ] {
        assert!(printed.contains(&expected), "{expected:?} in:\n{printed}");
    }
    // The call is over: its action id is forgotten and its folder removed.
    let after = pod
        .client
        .get(pod.var_url(aid, "namespace", "greeting"))
        .send()
        .await
        .expect("GET /var");
    assert_eq!(after.status(), 404);
    assert_eq!(
        after.text().await.unwrap_or_default(),
        format!("actionId {aid} not found\n")
    );
    assert!(!pod.dir.path().join("shared").join(aid).exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn stopping_the_pod_stops_the_runner_and_the_sidecar() {
    let mut pod = DevPod::start();
    let script_pid = pod.script.pid();
    let children: Vec<u32> = procs::descendants(script_pid)
        .iter()
        .map(|p| p.pid)
        .collect();
    assert!(children.len() >= 2, "{children:?}");
    pod.script.signal(Signal::TERM);
    assert!(pod.script.wait_exit(Duration::from_secs(10)).is_some());
    let left = procs::wait_for(Duration::from_secs(10), || {
        children.iter().all(|pid| !procs::alive(*pid)).then_some(())
    });
    assert!(left.is_some(), "still running: {children:?}");
}
