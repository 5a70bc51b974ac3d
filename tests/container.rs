//! The images against a real Docker engine, run the way Direktiv runs a function pod: the fake
//! sidecar in one container, the runner in a second one sharing its network namespace, logs
//! posted to 127.0.0.1:8889, requests sent to :8080.
//!
//! The binary-only image is built by `docker/build-offline.sh` (what `make image` runs) from a
//! static build of this crate; the busybox image is `FROM` it, as users derive theirs. The tests
//! skip, loudly, only when `docker info` fails. See `tests/support_docker/`.

mod support;
mod support_docker;

use std::time::{Duration, Instant};

use serde_json::json;

use support_docker::{docker_available, docker_ok, images, results, Pod, PATIENCE};

/// Skips the test when no Docker engine answers.
macro_rules! require_docker {
    ($name:expr) => {
        if !docker_available($name) {
            return;
        }
    };
}

#[tokio::test(flavor = "multi_thread")]
async fn scratch_image_holds_only_the_binary_and_its_metadata() {
    require_docker!("scratch_image_holds_only_the_binary_and_its_metadata");
    let images = images();
    let tag = &images.scratch.tag;

    let config = docker_ok(&["inspect", "--format", "{{json .Config}}", tag]);
    let config: serde_json::Value = serde_json::from_str(&config).expect("image config JSON");
    assert_eq!(config["Entrypoint"], json!(["/usr/local/bin/direktiv-cmd"]));
    assert_eq!(config["User"], "65532:65532");
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
        assert!(!value.is_empty(), "label {key} missing: {config}");
    }

    // The image's own files: the export of a created (never started) container is the image's
    // tree plus the mount points and files Docker adds to every container.
    let probe = support_docker::Container {
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
async fn logs_reach_the_sidecar_over_the_pod_loopback() {
    require_docker!("logs_reach_the_sidecar_over_the_pod_loopback");
    let images = images();
    let pod = Pod::start(&images, &images.scratch, &[]).await;

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
    require_docker!("failing_commands_answer_with_direktiv_error_headers");
    let images = images();
    let pod = Pod::start(&images, &images.scratch, &[]).await;

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
    require_docker!("derived_busybox_image_runs_sh_c_commands");
    let images = images();
    let pod = Pod::start(&images, &images.busybox, &[]).await;

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

#[tokio::test(flavor = "multi_thread")]
async fn binary_copied_into_another_image_serves_requests() {
    require_docker!("binary_copied_into_another_image_serves_requests");
    let images = images();
    let pod = Pod::start(&images, &images.copy_from, &[]).await;

    let body =
        json!({"commands": [{"command": "id -u"}, {"command": "echo $((2+3))", "shell": true}]});
    let reply = pod.post("aid-copy", body, &[]).await;
    reply.assert_success();
    assert_eq!(results(&reply), [json!(65532), json!(5)]);
    let lines = pod.log_lines("aid-copy").await;
    assert!(
        lines.contains(&"running command 'id -u'".to_string()),
        "{lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_stop_drains_an_in_flight_request() {
    require_docker!("docker_stop_drains_an_in_flight_request");
    let images = images();
    let pod = Pod::start(&images, &images.busybox, &[]).await;

    let body = json!({"commands": [{"command": "sleep 6"}, {"command": "echo drained"}]});
    let in_flight = {
        let url = pod.runner_url("/");
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let response = client
                .post(url)
                .header("Direktiv-ActionID", "aid-drain")
                .header("Content-Type", "application/json")
                .body(body.to_string())
                .send()
                .await;
            match response {
                Ok(r) => support::Reply::read(r).await,
                Err(e) => support::Reply::transport_error(e),
            }
        })
    };
    assert!(
        pod.wait_log("aid-drain", |l| l == "running command 'sleep 6'")
            .await,
        "the request never started"
    );

    // Docker's default stop timeout (10 s) is below the runner's grace; give it room.
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

#[tokio::test(flavor = "multi_thread")]
async fn read_only_root_with_a_tmpfs_tmp() {
    require_docker!("read_only_root_with_a_tmpfs_tmp");
    let images = images();
    // Docker's --tmpfs defaults to noexec; request files that are scripts need exec.
    let flags = ["--read-only", "--tmpfs", "/tmp:rw,exec,mode=1777"];
    let pod = Pod::start(&images, &images.busybox, &flags).await;

    let body = json!({
        "files": [{"name": "run.sh", "data": "#!/bin/sh\necho from-script\n", "mode": "0755"}],
        "commands": [
            {"command": "./run.sh"},
            {"command": "echo kept > note", "shell": true},
            {"command": "cat note"},
            {"command": "touch /outside-the-temp-dir", "continue": true}
        ]
    });
    let reply = pod.post("aid-ro", body, &[]).await;
    reply.assert_success();
    let commands = reply.commands();
    assert_eq!(commands[0]["result"], "from-script");
    assert_eq!(commands[2]["result"], "kept");
    assert_eq!(
        commands[3]["success"], false,
        "the root filesystem must be read-only"
    );
    let stderr = commands[3]["stderr"].as_str().unwrap_or_default();
    assert!(stderr.contains("Read-only file system"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_as_uid_65532_by_default_and_with_user_flag() {
    require_docker!("runs_as_uid_65532_by_default_and_with_user_flag");
    let images = images();
    let ids = json!({"commands": [{"command": "id -u"}, {"command": "id -g"}]});

    let default_user = Pod::start(&images, &images.busybox, &[]).await;
    let reply = default_user.post("aid-default", ids.clone(), &[]).await;
    reply.assert_success();
    assert_eq!(results(&reply), [json!(65532), json!(65532)]);

    let explicit = Pod::start(&images, &images.busybox, &["--user", "65532"]).await;
    let reply = explicit.post("aid-user", ids, &[]).await;
    reply.assert_success();
    assert_eq!(results(&reply), [json!(65532), json!(65532)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn commands_work_in_the_sidecars_shared_temp_dir() {
    require_docker!("commands_work_in_the_sidecars_shared_temp_dir");
    let images = images();
    let pod = Pod::start(&images, &images.busybox, &[]).await;
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
    require_docker!("another_non_root_uid_cannot_write_the_shared_temp_dir");
    let images = images();
    // Why the images run as 65532: with any other non-root uid the sidecar's 0750 directory
    // is closed to the commands.
    let pod = Pod::start(&images, &images.busybox, &["--user", "1000:1000"]).await;
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
