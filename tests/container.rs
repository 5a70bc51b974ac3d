//! The images against a real Docker engine, run the way Direktiv runs a function pod: the fake
//! sidecar in one container, the runner in a second one sharing its network namespace, logs
//! posted to 127.0.0.1:8889, requests sent to :8080.
//!
//! Every image `make images` builds is built by the same script (`docker/build-images.sh`),
//! under tags of the tests' own, and each example's workflow input runs in its own image; the
//! aws-cli example against moto's S3 server beside the pod. Without a Docker engine the tests
//! skip and print `SKIPPED`, except under `CI=true`, where they fail unless
//! `CMD_SKIP_DOCKER=1` is set (`support/capability.rs`). See `tests/support_docker/`.

// The shared harness, of which these tests use a part (the integration crate uses it whole and
// so catches what nothing uses).
#[allow(dead_code, unused_imports)]
mod support;
mod support_docker;

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use support::{skip_without, Capability};
use support_docker::images::{fenced_blocks, inspect, readme_copy_from_dockerfile, repo};
use support_docker::workflow::Workflow;
use support_docker::{docker_ok, images, results, results_under, Pod};
use support_docker::{Container, PATIENCE};

/// The flags the README gives for a read-only root as a non-root user.
const READ_ONLY_AS_NON_ROOT: [&str; 5] = [
    "--read-only",
    "--tmpfs",
    "/tmp:rw,exec,mode=1777",
    "--user",
    "65532:65532",
];

// ---------------------------------------------------------------------------------------------
// The two base images.

/// Entrypoint, user, port and the OCI labels of an image.
fn assert_runner_metadata(tag: &str) {
    let config = inspect(tag, "{{json .Config}}");
    let config: Value = serde_json::from_str(&config).expect("image config JSON");
    assert_eq!(config["Entrypoint"], json!(["/usr/local/bin/direktiv-cmd"]));
    assert!(
        config["Cmd"].as_array().is_none_or(Vec::is_empty),
        "no CMD may reach the runner as arguments: {config}"
    );
    assert_eq!(config["User"], "65532:65532", "{tag}");
    assert!(config["ExposedPorts"].get("8080/tcp").is_some(), "{config}");
    for label in [
        "title",
        "description",
        "licenses",
        "source",
        "version",
        "revision",
        "created",
    ] {
        let key = format!("org.opencontainers.image.{label}");
        let value = config["Labels"][&key].as_str().unwrap_or_default();
        assert!(!value.is_empty(), "{tag}: label {key} missing: {config}");
    }
    let version = &config["Labels"]["org.opencontainers.image.version"];
    assert_eq!(version, env!("CARGO_PKG_VERSION"), "{tag}");
}

#[tokio::test(flavor = "multi_thread")]
async fn scratch_image_holds_only_the_binary_and_its_metadata() {
    skip_without!(Capability::Docker);
    let images = images();
    let tag = &images.scratch;
    assert_runner_metadata(tag);

    // The image's own files: the export of a created (never started) container is the image's
    // tree plus the mount points and files Docker adds to every container.
    let probe = Container {
        name: support_docker::unique("export"),
    };
    docker_ok(&["create", "--name", &probe.name, tag]);
    let export = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("docker export {} | tar -tvf -", probe.name))
        .output()
        .expect("docker export");
    assert!(export.status.success(), "docker export: {export:?}");
    let listing = String::from_utf8_lossy(&export.stdout);
    let added_by_docker = |path: &str| {
        ["dev/", "proc/", "sys/"]
            .iter()
            .any(|d| path.starts_with(d))
            || [
                ".dockerenv",
                "etc/",
                "etc/hostname",
                "etc/hosts",
                "etc/mtab",
                "etc/resolv.conf",
            ]
            .contains(&path)
    };
    // (mode, path) of every entry, from `tar -tv` lines: "drwxrwxrwt root/root 0 date time tmp/".
    let files: Vec<(String, String)> = listing
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            Some((fields.first()?.to_string(), fields.get(5)?.to_string()))
        })
        .filter(|(_, path)| !added_by_docker(path))
        .collect();
    let paths: Vec<&str> = files.iter().map(|(_, p)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "etc/group",
            "etc/passwd",
            "tmp/",
            "usr/",
            "usr/local/",
            "usr/local/bin/",
            "usr/local/bin/direktiv-cmd"
        ],
        "unexpected files in the scratch image:\n{listing}"
    );
    let tmp_mode = &files[2].0;
    assert_eq!(
        tmp_mode, "drwxrwxrwt",
        "/tmp must be sticky and world-writable"
    );
    assert_eq!(files[6].0, "-rwxr-xr-x");
}

#[tokio::test(flavor = "multi_thread")]
async fn debian_image_is_a_non_root_base_with_a_sticky_tmp() {
    skip_without!(Capability::Docker);
    let images = images();
    assert_runner_metadata(&images.debian);
    let base = inspect(
        &images.debian,
        "{{index .Config.Labels \"org.opencontainers.image.base.name\"}}",
    );
    assert_eq!(base, images.debian_userland);

    let pod = Pod::start(images, &images.debian, &[]).await;
    let body = json!({"commands": [
        {"command": "id -un"},
        {"command": "id -u"},
        {"command": "stat -c %a /tmp"},
        {"command": "cat /etc/debian_version"},
        // What derived images run as root: apt is there.
        {"command": "apt-get --version", "silent": true}
    ]});
    let reply = pod.call("aid-debian", body).await;
    reply.assert_success();
    let results = results(&reply);
    assert_eq!(results[..3], [json!("nonroot"), json!(65532), json!(1777)]);
    let debian_version = reply.command(3)["stdout"].clone();
    let debian_version = debian_version.as_str().unwrap_or_default();
    assert!(
        debian_version.starts_with("12."),
        "bookworm: {debian_version}"
    );
    assert!(
        results[4].as_str().unwrap_or_default().starts_with("apt "),
        "{results:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn both_base_images_run_read_only_as_non_root() {
    skip_without!(Capability::Docker);
    let images = images();
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    assert!(
        readme.contains(&READ_ONLY_AS_NON_ROOT.join(" ")),
        "the README shows these flags"
    );

    // The scratch image has nothing to run but the runner itself; a request still gets a
    // private temp dir under /tmp, which is all the runner writes.
    let pod = Pod::start(images, &images.scratch, &READ_ONLY_AS_NON_ROOT).await;
    let reply = pod
        .post("aid-ro", json!({"command": "direktiv-cmd --version"}), &[])
        .await;
    reply.assert_success();
    assert_eq!(
        results(&reply),
        [json!(format!("direktiv-cmd {}", env!("CARGO_PKG_VERSION")))]
    );

    let pod = Pod::start(images, &images.debian, &READ_ONLY_AS_NON_ROOT).await;
    let body = json!({
        "files": [{"name": "run.sh", "data": "#!/bin/sh\necho from-script\n", "mode": "0755"}],
        "commands": [
            {"command": "./run.sh"},
            {"command": "echo kept > note && cat note", "shell": true},
            {"command": "pwd"},
            {"command": "id -u"},
            {"command": "touch /usr/local/outside-the-temp-dir", "continue": true}
        ]
    });
    let reply = pod.post("aid-ro", body, &[]).await;
    reply.assert_success();
    let results = results(&reply);
    assert_eq!(results[0], "from-script");
    assert_eq!(results[1], "kept");
    assert!(
        results[2].as_str().unwrap_or_default().starts_with("/tmp/"),
        "{results:?}"
    );
    assert_eq!(results[3], 65532);
    let touch = reply.command(4);
    assert_eq!(touch["success"], false, "the root filesystem is read-only");
    let stderr = touch["stderr"].as_str().unwrap_or_default();
    assert!(stderr.contains("Read-only file system"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn readme_docker_run_example_works_on_the_debian_image() {
    skip_without!(Capability::Docker);
    let images = images();
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let example = fenced_blocks(&readme, "sh")
        .into_iter()
        .find(|b| b.contains("run -") && b.contains("direktiv-cmd:debian"))
        .expect("the README's `docker run -i direktiv-cmd:debian run -` example");
    // The same command line, with the image the tests built.
    let command = example.replace("direktiv-cmd:debian", &images.debian);
    let output = std::process::Command::new("sh")
        .arg("-c")
        .arg(&command)
        .output()
        .expect("run the README example");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{command}\nstdout: {stdout}\nstderr: {stderr}"
    );
    let reply: Value = serde_json::from_str(&stdout).expect("the response on stdout");
    let results: Vec<Value> = reply["commands"]
        .as_array()
        .expect("commands")
        .iter()
        .map(|c| c["result"].clone())
        .collect();
    assert_eq!(results, [json!("Linux"), json!(65532)], "{stdout}");
    assert!(
        stderr.lines().any(|l| l == "running command 'uname -s'"),
        "the commands' output goes to stderr: {stderr}"
    );
}

// ---------------------------------------------------------------------------------------------
// The pod: logs, errors, users, volumes, shutdown.

#[tokio::test(flavor = "multi_thread")]
async fn logs_reach_the_sidecar_over_the_pod_loopback() {
    skip_without!(Capability::Docker);
    let images = images();
    let pod = Pod::start(images, &images.scratch, &[]).await;

    // The scratch image has no userland: the one program in it is the runner itself.
    let reply = pod
        .post(
            "aid-logs",
            json!({"commands": [{"command": "direktiv-cmd --version"}]}),
            &[],
        )
        .await;
    reply.assert_success();
    let version = format!("direktiv-cmd {}", env!("CARGO_PKG_VERSION"));
    assert_eq!(results(&reply), [json!(version)]);

    // All of a request's lines are delivered before its response.
    let lines = pod.log_lines("aid-logs").await;
    assert_eq!(
        lines,
        [
            "running command 'direktiv-cmd --version'".to_string(),
            version
        ],
        "lines recorded by the sidecar (it listens on 127.0.0.1:8889 only)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_commands_answer_with_direktiv_error_headers() {
    skip_without!(Capability::Docker);
    let images = images();
    let pod = Pod::start(images, &images.scratch, &[]).await;

    let reply = pod
        .post(
            "aid-exit",
            json!({"commands": [{"command": "direktiv-cmd --no-such-flag"}]}),
            &[],
        )
        .await;
    reply.assert_error("cmd.exit.2", 500);
    let message = reply.error_message().unwrap_or_default();
    assert!(
        message.starts_with("command 'direktiv-cmd --no-such-flag' exited with status 2: "),
        "{message}"
    );
    assert_eq!(reply.body()["errorCode"], "cmd.exit.2");
    assert_eq!(reply.command(0)["exit_code"], 2);
    let stderr = reply.command(0)["stderr"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(stderr.contains("--no-such-flag"), "{stderr}");
    let lines = pod.log_lines("aid-exit").await;
    let first_stderr_line = stderr.lines().next().unwrap_or_default();
    assert!(
        lines.iter().any(|l| l == first_stderr_line),
        "stderr lines are logged too: {lines:?}"
    );

    // No shell in the binary-only image.
    let reply = pod
        .post("aid-notfound", json!({"command": "sh -c true"}), &[])
        .await;
    reply.assert_error("cmd.notfound", 500);
}

#[tokio::test(flavor = "multi_thread")]
async fn derived_busybox_image_runs_sh_c_commands() {
    skip_without!(Capability::Docker);
    let images = images();
    let pod = Pod::start(images, &images.busybox, &[]).await;

    let body = json!({"commands": [
        // Quoted operators belong to the inner shell: no `shell: true` needed.
        {"command": "sh -c 'echo $((6*7)) | tr 4 X'"},
        // The configured shell (/bin/sh, busybox here) for shell syntax in the command itself.
        {"command": "echo from-shell > f && cat f", "shell": true},
        {"command": "sh -c 'exit 3'", "continue": true}
    ]});
    let reply = pod.post("aid-sh", body, &[]).await;
    reply.assert_success();
    assert_eq!(
        results(&reply),
        [json!("X2"), json!("from-shell"), json!("")]
    );
    assert_eq!(reply.command(2)["exit_code"], 3);
    assert_eq!(reply.command(2)["success"], false);
}

/// `POST /` to the pod's runner in a task of its own, for a test that stops the runner meanwhile.
fn post_in_background(
    pod: &Pod,
    aid: &str,
    body: Value,
) -> tokio::task::JoinHandle<support::Reply> {
    let request = pod
        .client()
        .post(pod.runner_url("/"))
        .header("Direktiv-ActionID", aid)
        .header("Content-Type", "application/json")
        .body(body.to_string());
    tokio::spawn(async move {
        match request.send().await {
            Ok(r) => support::Reply::read(r).await,
            Err(e) => support::Reply::transport_error(e),
        }
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_stop_drains_an_in_flight_request() {
    skip_without!(Capability::Docker);
    let images = images();
    // A grace longer than the images' (3 s), and room for it at `docker stop`.
    let pod = Pod::start(images, &images.busybox, &["--env=CMD_GRACE=30s"]).await;

    let body = json!({"commands": [{"command": "sleep 6"}, {"command": "echo drained"}]});
    let in_flight = post_in_background(&pod, "aid-drain", body);
    assert!(
        pod.wait_log("aid-drain", |l| l == "running command 'sleep 6'")
            .await,
        "the request never started"
    );

    let name = pod.runner.name.clone();
    let stopping = tokio::task::spawn_blocking(move || docker_ok(&["stop", "--time", "60", &name]));

    let deadline = Instant::now() + PATIENCE;
    let mut draining_seen = false;
    while !in_flight.is_finished() && Instant::now() < deadline {
        if pod.readyz().await == Some(503) {
            draining_seen = true;
            let refused = pod
                .post("aid-late", json!({"command": "echo late"}), &[])
                .await;
            refused.assert_error("cmd.busy", 503);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(draining_seen, "/readyz never answered 503 while draining");

    let reply = in_flight.await.expect("request task");
    reply.assert_success();
    assert_eq!(results(&reply), [json!(""), json!("drained")]);
    stopping.await.expect("docker stop");
    assert!(!pod.runner.running());
    assert_eq!(
        pod.runner.exit_code(),
        0,
        "the runner must exit 0 after draining:\n{}",
        pod.runner.logs()
    );
}

/// Plain `docker stop` (SIGKILL after 10 s): with the images' grace, a request that outlasts it
/// is cancelled and answered, and the runner exits 0 before the SIGKILL, even when its command
/// ignores SIGTERM and needs CMD_KILL_GRACE (5 s) more.
#[tokio::test(flavor = "multi_thread")]
async fn plain_docker_stop_answers_in_flight_work_before_its_sigkill() {
    skip_without!(Capability::Docker);
    let images = images();
    let pod = Pod::start(images, &images.busybox, &[]).await;
    let body = json!({"commands": [{"command": "trap '' TERM; sleep 60", "shell": true}]});
    let in_flight = post_in_background(&pod, "aid-stop", body);
    assert!(
        pod.wait_log("aid-stop", |l| l.starts_with("running command"))
            .await,
        "the request never started"
    );
    let name = pod.runner.name.clone();
    let started = Instant::now();
    tokio::task::spawn_blocking(move || docker_ok(&["stop", &name]))
        .await
        .expect("docker stop");
    let took = started.elapsed();
    let reply = in_flight.await.expect("request task");
    reply.assert_error("cmd.cancelled", 500);
    assert_eq!(
        pod.runner.exit_code(),
        0,
        "exit 137 is Docker's SIGKILL, which comes 10 s after the SIGTERM ({took:?}):\n{}",
        pod.runner.logs()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_as_uid_65532_by_default_and_with_user_flag() {
    skip_without!(Capability::Docker);
    let images = images();
    let ids = json!({"commands": [{"command": "id -u"}, {"command": "id -g"}]});

    let default_user = Pod::start(images, &images.busybox, &[]).await;
    let reply = default_user.post("aid-default", ids.clone(), &[]).await;
    reply.assert_success();
    assert_eq!(results(&reply), [json!(65532), json!(65532)]);

    let explicit = Pod::start(images, &images.busybox, &["--user", "65532"]).await;
    let reply = explicit.post("aid-user", ids, &[]).await;
    reply.assert_success();
    assert_eq!(results(&reply), [json!(65532), json!(65532)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn commands_work_in_the_sidecars_shared_temp_dir() {
    skip_without!(Capability::Docker);
    let images = images();
    let pod = Pod::start(images, &images.busybox, &[]).await;
    // The sidecar (uid 65532) makes /mnt/shared/<aid> with mode 0750, as Direktiv's does; only
    // its own uid (or root) can write there.
    let dir = pod.prepare("aid-shared").await;
    assert_eq!(dir, "/mnt/shared/aid-shared");

    let body = json!({
        "files": [{"name": "input.txt", "data": "from the request"}],
        "commands": [
            {"command": "pwd"},
            {"command": "stat -c %u:%a .", "shell": false},
            {"command": "echo -n 42 > out/workflow/answer && cat input.txt", "shell": true},
            {"command": "stat -c %u out/workflow/answer"}
        ]
    });
    let reply = pod
        .post("aid-shared", body, &[("Direktiv-TempDir", dir.as_str())])
        .await;
    reply.assert_success();
    assert_eq!(
        results(&reply),
        [
            json!(dir),
            json!("65532:750"),
            json!("from the request"),
            json!(65532)
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn another_non_root_uid_cannot_write_the_shared_temp_dir() {
    skip_without!(Capability::Docker);
    let images = images();
    // Why the images run as 65532: with any other non-root uid the sidecar's 0750 directory
    // is closed to the commands.
    let pod = Pod::start(images, &images.busybox, &["--user", "1000:1000"]).await;
    let dir = pod.prepare("aid-other-uid").await;

    let body = json!({"commands": [{"command": "touch note"}]});
    let reply = pod
        .post("aid-other-uid", body, &[("Direktiv-TempDir", dir.as_str())])
        .await;
    // The runner cannot even open the directory: an I/O failure on the temp dir.
    reply.assert_error("cmd.internal", 500);
    let message = reply.error_message().unwrap_or_default();
    assert!(message.contains("Permission denied"), "{message}");
}

// ---------------------------------------------------------------------------------------------
// The binary added to images it did not come with, as PID 1.

/// `(pid, state, ppid)` of every process named `comm` in the container.
fn processes_named(container: &Container, comm: &str) -> Vec<(u32, char, u32)> {
    let stats = container
        .exec(&["sh", "-c", "cat /proc/[0-9]*/stat 2>/dev/null; true"])
        .unwrap_or_else(|e| panic!("read /proc in {}: {e}", container.name));
    // "<pid> (<comm>) <state> <ppid> ...": comm may hold spaces, so split at the last ')'.
    stats
        .lines()
        .filter_map(|line| {
            let (head, tail) = line.rsplit_once(") ")?;
            let (pid, name) = head.split_once(" (")?;
            let mut fields = tail.split_whitespace();
            let state = fields.next()?.chars().next()?;
            let ppid = fields.next()?.parse().ok()?;
            (name == comm).then_some((pid.parse().ok()?, state, ppid))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn runner_copied_into_debian_and_busybox_is_pid1() {
    skip_without!(Capability::Docker);
    let images = images();
    let dockerfile = readme_copy_from_dockerfile().expect("the README's COPY --from Dockerfile");
    assert!(
        dockerfile.contains("ENTRYPOINT [\"/usr/local/bin/direktiv-cmd\"]"),
        "{dockerfile}"
    );

    for image in [&images.copy_into_debian, &images.copy_into_busybox] {
        let pod = Pod::start(images, image, &[]).await;
        let reply = pod
            .post(
                "aid-copied",
                json!({"commands": [
                    {"command": "id -u"},
                    {"command": "echo $((2+3))", "shell": true},
                    {"command": "whoami"}
                ]}),
                &[],
            )
            .await;
        reply.assert_success();
        assert_eq!(
            results(&reply),
            [json!(65532), json!(5), json!("nonroot")],
            "{image}"
        );
        let pid1 = pod
            .runner
            .exec(&["cat", "/proc/1/cmdline"])
            .expect("/proc/1");
        assert!(
            pid1.starts_with("/usr/local/bin/direktiv-cmd"),
            "{image}: {pid1:?}"
        );

        // An orphan: the shell exits at once and its background `sleep` is handed to the
        // namespace's init, the runner. When the sleep ends, only PID 1 can reap it.
        pod.runner
            .exec(&["sh", "-c", "sleep 5 >/dev/null 2>&1 & exit 0"])
            .expect("start the orphan");
        let orphans = processes_named(&pod.runner, "sleep");
        assert!(
            orphans.iter().any(|&(_, _, ppid)| ppid == 1),
            "{image}: the orphan was not reparented to PID 1: {orphans:?}"
        );
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = processes_named(&pod.runner, "sleep");
            if left.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{image}: the orphan was never reaped (Z = zombie): {left:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        // SIGTERM with nothing in flight: the runner ends on it, with status 0 (the SIGKILL
        // docker sends after the 30 s would give 137).
        docker_ok(&["stop", "--time", "30", &pod.runner.name]);
        assert_eq!(pod.runner.exit_code(), 0, "{image}: {}", pod.runner.logs());
    }
}

// ---------------------------------------------------------------------------------------------
// The container's memory limit.

#[tokio::test(flavor = "multi_thread")]
async fn command_killed_at_the_memory_limit_is_cmd_oom_and_the_runner_survives() {
    skip_without!(Capability::Docker);
    let images = images();
    let pod = Pod::builder(images, &images.debian)
        .flag("--memory=96m")
        .flag("--memory-swap=96m")
        .start()
        .await;

    // perl (in every Debian) building a 400 MB string in a 96 MB container.
    let hog = json!({"command": "perl -e '$x = q(a) x 400_000_000'"});
    let oom = pod.post("aid-oom", hog, &[]).await;

    // The runner itself is not the kernel's choice: it answers, and serves the next request.
    assert!(pod.runner.running(), "{}", pod.runner.logs());
    assert_eq!(pod.runner.inspect("{{.RestartCount}}").as_deref(), Ok("0"));
    let next = pod
        .post("aid-after-oom", json!({"command": "echo still here"}), &[])
        .await;
    next.assert_success();
    assert_eq!(results(&next), [json!("still here")]);
    assert_eq!(pod.readyz().await, Some(200));

    oom.assert_error("cmd.oom", 500);
    assert_eq!(oom.command(0)["success"], false, "{oom:?}");
}

// ---------------------------------------------------------------------------------------------
// The examples, each in its own image, as Direktiv runs their workflows.

/// Starts a pod for an action's function: its image, its `envs:` on the container.
async fn function_pod(
    example: &str,
    action: &support_docker::workflow::Action,
    extra_env: &[(&str, &str)],
) -> (Pod, &'static str) {
    let images = images();
    let image = images.example(example);
    let published = format!("/direktiv-cmd-example-{example}:");
    assert!(
        action.image.contains(&published),
        "{example}: the function's image should be the example's ({published}): {}",
        action.image
    );
    let mut builder = Pod::builder(images, image);
    for (name, value) in &action.envs {
        builder = builder.env(name, value);
    }
    for (name, value) in extra_env {
        builder = builder.env(name, value);
    }
    (builder.start().await, image)
}

#[tokio::test(flavor = "multi_thread")]
async fn example_bash_workflow_runs_in_its_image() {
    skip_without!(Capability::Docker);
    let workflow = Workflow::load("bash");
    let action = workflow.action("run-script");
    let (pod, _) = function_pod("bash", &action, &[]).await;

    let input = action.input_for(&json!({"target": "staging"}));
    let reply = pod.call("aid-bash", input).await;
    reply.assert_success();
    let key = action.result_key();
    assert_eq!(key, "bash");
    let results = results_under(&reply, &key);
    assert_eq!(results[0]["target"], "staging", "{reply:?}");
    assert_eq!(results[0]["ok"], true);
    assert_eq!(results[1], 1, "one file in out/workflow");
    let commands = reply.results_under(&key);
    assert_eq!(
        commands[2]["success"], false,
        "grep finds nothing: continue"
    );
    assert_eq!(commands[2]["exit_code"], 1);
    assert_eq!(commands[3]["success"], true);

    // What Direktiv stores as the workflow variable `last-target` after the action.
    let variable = pod.read_shared("/mnt/shared/aid-bash/out/workflow/last-target");
    assert_eq!(variable, "staging");
    let lines = pod.log_lines("aid-bash").await;
    for expected in ["running command './report.sh'", "report for staging"] {
        assert!(lines.iter().any(|l| l == expected), "{expected}: {lines:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn example_python_workflow_runs_in_its_image() {
    skip_without!(Capability::Docker);
    let workflow = Workflow::load("python");
    let action = workflow.action("summarise");
    let (pod, _) = function_pod("python", &action, &[]).await;

    let data = json!({"orders": [{"amount": 10}, {"amount": 32.5}]});
    let reply = pod.call("aid-python", action.input_for(&data)).await;
    reply.assert_success();
    let results = results_under(&reply, &action.result_key());
    assert!(
        results[0]
            .as_str()
            .unwrap_or_default()
            .starts_with("Python 3."),
        "{results:?}"
    );
    assert_eq!(
        results[1],
        json!({"count": 2, "total": 42.5, "currency": "EUR"})
    );
    let lines = pod.log_lines("aid-python").await;
    assert!(lines.iter().any(|l| l == "2 orders"), "{lines:?}");

    // Orders without amounts: the script fails, and the workflow's catch takes it.
    let bad = json!({"orders": [{"total": 3}]});
    let reply = pod.call("aid-python-bad", action.input_for(&bad)).await;
    reply.assert_error("cmd.exit.1", 500);
    let message = reply.error_message().unwrap_or_default();
    assert!(message.contains("KeyError: 'amount'"), "{message}");
    assert_eq!(action.transition_for("cmd.exit.1"), Some("script-failed"));
}

/// An object of moto's S3, read through its S3 API. moto checks no signatures, but answers an
/// unauthenticated GET with 403 (the object is not public), so the request names a key id.
async fn s3_object(client: &reqwest::Client, endpoint: &str, path: &str) -> (u16, String) {
    let response = client
        .get(format!("{endpoint}/{path}"))
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=test-reader/20240101/eu-central-1/s3/aws4_request, \
             SignedHeaders=host, Signature=0",
        )
        .send()
        .await
        .expect("query the S3 emulator");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// The README's Direktiv example passes its region in a variable the AWS CLI of the example
/// image (v1) reads: `AWS_REGION` is ignored there.
#[tokio::test(flavor = "multi_thread")]
async fn readme_direktiv_example_sets_a_region_the_shipped_aws_cli_reads() {
    skip_without!(Capability::Docker);
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let yaml = fenced_blocks(&readme, "yaml")
        .into_iter()
        .find(|block| block.contains("aws s3 ls"))
        .expect("the README's Direktiv example");
    let workflow: Value = serde_yaml_ng::from_str(&yaml).expect("the example is YAML");
    let env = &workflow["states"][0]["action"]["input"]["env"];
    let plain: serde_json::Map<String, Value> = env
        .as_object()
        .expect("input.env")
        .iter()
        .filter(|(_, v)| !v.as_str().is_some_and(|v| v.starts_with("jq(")))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let images = images();
    let pod = Pod::start(images, images.example("aws-cli"), &[]).await;
    let reply = pod
        .post(
            "aid-region",
            json!({"env": plain, "commands": [{"command": "aws configure list"}]}),
            &[],
        )
        .await;
    reply.assert_success();
    // `region   eu-central-1   env   AWS_DEFAULT_REGION`, or `<not set>` (the image answers
    // under `aws-cli`, as the direktiv-apps function).
    let listed = results_under(&reply, "aws-cli")[0]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let region: Vec<&str> = listed
        .lines()
        .find(|l| l.trim_start().starts_with("region"))
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    assert_eq!(region.get(1), Some(&"eu-central-1"), "{plain:?}:\n{listed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn example_aws_cli_workflow_against_an_s3_api() {
    skip_without!(Capability::Docker);
    let images = images();
    let workflow = Workflow::load("aws-cli");
    let upload = workflow.action("upload");
    let find_archive = workflow.action("find-archive");
    let image = images.example("aws-cli");

    // The function's envs, plus the one setting the README gives for S3-compatible storage.
    let mut builder =
        Pod::builder(images, image).service("s3", &images.s3, 5000, "AWS_ENDPOINT_URL");
    for (name, value) in &upload.envs {
        builder = builder.env(name, value);
    }
    let pod = builder.start().await;
    let endpoint = pod.service_urls[0].clone();
    pod.wait_service(&endpoint).await;

    let secret = "s3cr3t-direktiv-cmd-test-key";
    let data = json!({"secrets": {"AWS_ACCESS_KEY_ID": "AKIATESTDIREKTIV", "AWS_SECRET_ACCESS_KEY": secret}});
    let key = upload.result_key();
    assert_eq!(key, "aws-cli");

    let reply = pod.call("aid-upload", upload.input_for(&data)).await;
    reply.assert_success();
    let results = results_under(&reply, &key);
    assert!(
        results[0]
            .as_str()
            .unwrap_or_default()
            .starts_with("aws-cli/1."),
        "{results:?}"
    );
    assert_eq!(results[1], "make_bucket: direktiv-cmd-reports");
    assert_eq!(
        results[2],
        "upload: ./report.csv to s3://direktiv-cmd-reports/daily/report.csv"
    );
    let file = upload.input["files"][0]["data"]
        .as_str()
        .expect("report.csv");
    let listed = &results[3]["Contents"];
    assert_eq!(listed[0]["Key"], "daily/report.csv", "{results:?}");
    assert_eq!(listed[0]["Size"], file.len());

    // Through the emulator's own API: the object is there with the file's content.
    let (status, content) = s3_object(
        pod.client(),
        &endpoint,
        "direktiv-cmd-reports/daily/report.csv",
    )
    .await;
    assert_eq!((status, content.as_str()), (200, file));

    // One line per command and per upload, no progress meter; no secret anywhere.
    let lines = pod.log_lines("aid-upload").await;
    let upload_line = "upload: ./report.csv to s3://direktiv-cmd-reports/daily/report.csv";
    assert!(lines.iter().any(|l| l == upload_line), "{lines:?}");
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("remaining") || l.contains('\r')),
        "--no-progress: {lines:?}"
    );
    assert!(!lines.iter().any(|l| l.contains(secret)), "{lines:?}");
    assert!(!reply.text.contains(secret), "{}", reply.text);

    // The next run: the bucket exists, `mb` fails and is allowed to (`continue`).
    let again = pod.call("aid-upload-again", upload.input_for(&data)).await;
    again.assert_success();
    let commands = again.results_under(&key);
    assert_eq!(commands[1]["success"], false, "{commands:?}");
    let stderr = commands[1]["stderr"].as_str().unwrap_or_default();
    assert!(stderr.contains("BucketAlreadyOwnedByYou"), "{stderr}");
    assert_eq!(commands[2]["success"], true);

    // The archive bucket does not exist: cmd.exit.N, which the workflow's catch takes.
    let reply = pod.call("aid-archive", find_archive.input_for(&data)).await;
    let code = reply.error_code().unwrap_or_default();
    assert!(code.starts_with("cmd.exit."), "{reply:?}");
    reply.assert_error(&code, 500);
    let message = reply.error_message().unwrap_or_default();
    assert!(
        message.starts_with("command 'aws s3 ls s3://direktiv-cmd-reports-archive' exited")
            && message.contains("NoSuchBucket"),
        "{message}"
    );
    assert_eq!(find_archive.transition_for(&code), Some("no-archive"));
    let lines = pod.log_lines("aid-archive").await;
    assert!(
        lines.iter().any(|l| l.contains("NoSuchBucket")),
        "the CLI's error reaches the log: {lines:?}"
    );
    let (status, _) = s3_object(pod.client(), &endpoint, "direktiv-cmd-reports-archive").await;
    assert_eq!(status, 404, "the emulator agrees: no such bucket");
}

#[test]
fn catch_patterns_are_read_as_direktiv_reads_them() {
    use support_docker::workflow::regex_finds;
    assert!(regex_finds(r"cmd\.exit\..*", "cmd.exit.255"));
    assert!(regex_finds(r"cmd\..*", "cmd.timeout"));
    // Unanchored, as Direktiv matches them.
    assert!(regex_finds(r"exit", "cmd.exit.1"));
    assert!(!regex_finds(r"cmd\.exit\..*", "cmd.timeout"));
    assert!(!regex_finds(r"cmd\.exit\..*", "cmdXexit.1"));
    assert!(!regex_finds(r"cmd\.timeout", "cmd.exit.1"));
}
