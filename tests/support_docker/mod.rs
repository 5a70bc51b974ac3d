//! Docker fixtures for `tests/container.rs`: static binaries, images, and a two-container "pod".
//!
//! A Direktiv function pod is the function container plus the sidecar, sharing one network
//! namespace: the sidecar calls the runner on localhost:8080 and the runner posts logs to
//! 127.0.0.1:8889. [`Pod`] rebuilds that with the fake sidecar from `docker/test-sidecar/` in
//! one container and the runner image in a second one started with
//! `--network container:<sidecar>`.
//!
//! Everything created here (images, containers with their anonymous volumes, networks) carries a
//! name unique to the test process and is removed by a guard's `Drop`, which also runs when a
//! test panics. Containers print their `docker logs` first when the test is failing.

// Each test file compiles this module on its own and uses only part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{Body, Reply};

/// A generous bound for container start-up and short requests on a loaded 2-core machine.
pub const PATIENCE: Duration = Duration::from_secs(90);

/// The label every object made here carries, so that leftovers of a killed run can be found
/// with `docker ps -a --filter label=direktiv-cmd.test`.
const LABEL: &str = "direktiv-cmd.test=1";

/// Runs `docker` with `args`; the trimmed stdout, or stderr as the error.
pub fn docker(args: &[&str]) -> Result<String, String> {
    let output = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("docker {args:?}: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    } else {
        Err(format!(
            "docker {args:?} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// Like [`docker`], panicking with docker's message on failure.
#[track_caller]
pub fn docker_ok(args: &[&str]) -> String {
    match docker(args) {
        Ok(out) => out,
        Err(e) => panic!("{e}"),
    }
}

/// Whether a Docker engine answers. When it does not, the container tests skip, and say so
/// loudly; any other failure fails them.
pub fn docker_available(test: &str) -> bool {
    match docker(&["info", "--format", "{{.ServerVersion}}"]) {
        Ok(_) => true,
        Err(e) => {
            eprintln!();
            eprintln!(
                "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
            );
            eprintln!("!!! SKIPPED {test}: no Docker engine (`docker info` failed)");
            eprintln!("!!! {}", e.split_whitespace().collect::<Vec<_>>().join(" "));
            eprintln!(
                "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
            );
            false
        }
    }
}

/// A name no other test or test run uses.
pub fn unique(kind: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("dcmd-test-{}-{n}-{kind}", std::process::id())
}

/// The repository root.
fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The cargo target directory the tests were built in (shared with the static builds).
fn target_dir() -> PathBuf {
    let exe = Path::new(env!("CARGO_BIN_EXE_direktiv-cmd"));
    // <target>/debug/direktiv-cmd
    exe.ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| repo().join("target"))
}

/// The static (crt-static) binaries the images are made of.
pub struct Binaries {
    pub runner: PathBuf,
    pub sidecar: PathBuf,
}

/// Builds both static binaries once per test process. The runner is, in order of preference:
/// the binary `DIREKTIV_CMD_STATIC_BIN` names (`make container-test` passes the one of
/// `make static`); `target/static/direktiv-cmd` when it is newer than every source file (so
/// `make test` does not build the crate a third time); else a debug build of this crate for
/// the host triple with `crt-static`.
pub fn binaries() -> &'static Binaries {
    static BINARIES: OnceLock<Binaries> = OnceLock::new();
    BINARIES.get_or_init(|| {
        let runner = match std::env::var_os("DIREKTIV_CMD_STATIC_BIN") {
            Some(path) => PathBuf::from(path),
            None => fresh_release_static()
                .unwrap_or_else(|| cargo_static(&repo().join("Cargo.toml"), "direktiv-cmd")),
        };
        eprintln!("container tests use the runner binary {}", runner.display());
        let sidecar = cargo_static(
            &repo().join("docker/test-sidecar/Cargo.toml"),
            "direktiv-cmd-test-sidecar",
        );
        Binaries { runner, sidecar }
    })
}

/// `target/static/direktiv-cmd` (from `make static`) if no source file changed after it was
/// built.
fn fresh_release_static() -> Option<PathBuf> {
    let binary = target_dir().join("static/direktiv-cmd");
    let built = std::fs::metadata(&binary).ok()?.modified().ok()?;
    let mut sources = vec![repo().join("Cargo.toml"), repo().join("Cargo.lock")];
    let mut dirs = vec![repo().join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).ok()? {
            let path = entry.ok()?.path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                sources.push(path);
            }
        }
    }
    for source in sources {
        if std::fs::metadata(&source).ok()?.modified().ok()? > built {
            return None;
        }
    }
    Some(binary)
}

/// `cargo build --target <host> --bin <bin>` with `crt-static`, into the shared target dir.
fn cargo_static(manifest: &Path, bin: &str) -> PathBuf {
    let triple = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
    let target = target_dir();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .arg("build")
        .arg("--manifest-path")
        .arg(manifest)
        .args(["--target", &triple, "--bin", bin])
        .arg("--target-dir")
        .arg(&target)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        // Set by cargo for build scripts and would override RUSTFLAGS.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .stdin(Stdio::null())
        .status()
        .expect("run cargo");
    assert!(status.success(), "static build of {bin} failed: {status}");
    target.join(triple).join("debug").join(bin)
}

/// A tagged image, removed on drop.
pub struct Image {
    pub tag: String,
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = docker(&["rmi", "--force", &self.tag]);
    }
}

/// The three images the pods are made of.
pub struct Images {
    /// The binary-only image, built by `docker/build-offline.sh` as `make image` does.
    pub scratch: Image,
    /// `FROM` the scratch image plus busybox: the path users take.
    pub busybox: Image,
    /// A bare busybox image with the binary added by `COPY --from` the scratch image.
    pub copy_from: Image,
    /// The fake sidecar.
    pub sidecar: Image,
}

/// The images, shared by the tests that run at the same time and removed when the last of them
/// lets go.
pub fn images() -> Arc<Images> {
    static SHARED: Mutex<Weak<Images>> = Mutex::new(Weak::new());
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(images) = shared.upgrade() {
        return images;
    }
    let images = Arc::new(build_images());
    *shared = Arc::downgrade(&images);
    images
}

fn build_images() -> Images {
    let bins = binaries();
    let scratch = Image {
        tag: format!("{}:dev", unique("runner")),
    };
    let output = Command::new(repo().join("docker/build-offline.sh"))
        .arg(&bins.runner)
        .arg(&scratch.tag)
        .current_dir(repo())
        .stdin(Stdio::null())
        .output()
        .expect("run docker/build-offline.sh");
    assert!(
        output.status.success(),
        "docker/build-offline.sh failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let sidecar = build_sidecar_image(&bins.sidecar);
    let busybox = build_with_busybox("busybox.Dockerfile", "BASE", &scratch);
    let copy_from = build_with_busybox("copy-from.Dockerfile", "RUNNER", &scratch);
    Images {
        scratch,
        busybox,
        copy_from,
        sidecar,
    }
}

fn build_sidecar_image(binary: &Path) -> Image {
    let context = tempfile::tempdir().expect("temp dir");
    std::fs::copy(binary, context.path().join("direktiv-cmd-test-sidecar"))
        .expect("stage the sidecar binary");
    std::fs::create_dir(context.path().join("shared")).expect("stage shared/");
    let image = Image {
        tag: format!("{}:dev", unique("sidecar")),
    };
    let dockerfile = repo().join("docker/test-sidecar/Dockerfile");
    build(&image, &dockerfile, context.path(), &[]);
    image
}

/// Builds `tests/support_docker/<dockerfile>` with the host's busybox in its context and the
/// scratch image's tag as build arg `arg`.
fn build_with_busybox(dockerfile: &str, arg: &str, scratch: &Image) -> Image {
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.exists(),
        "/bin/busybox is missing: the derived-image tests need a static busybox on the host \
         (apt-get install -y busybox-static)"
    );
    let context = tempfile::tempdir().expect("temp dir");
    std::fs::copy(busybox, context.path().join("busybox")).expect("stage busybox");
    let image = Image {
        tag: format!("{}:dev", unique("derived")),
    };
    let dockerfile = repo().join("tests/support_docker").join(dockerfile);
    let build_arg = format!("{arg}={}", scratch.tag);
    build(
        &image,
        &dockerfile,
        context.path(),
        &["--build-arg", &build_arg],
    );
    image
}

/// `docker build` with the classic builder (the engine here has no BuildKit plugin).
fn build(image: &Image, dockerfile: &Path, context: &Path, extra: &[&str]) {
    let dockerfile = dockerfile.to_string_lossy();
    let context = context.to_string_lossy();
    let mut args = vec![
        "build",
        "--quiet",
        "--label",
        LABEL,
        "--file",
        &dockerfile,
        "--tag",
        &image.tag,
    ];
    args.extend_from_slice(extra);
    args.push(&context);
    docker_ok(&args);
}

/// A container, removed with its anonymous volumes on drop.
pub struct Container {
    pub name: String,
}

impl Container {
    /// `docker run -d --name <unique> <flags> <image> <args>`.
    #[track_caller]
    pub fn run(kind: &str, flags: &[&str], image: &str, args: &[&str]) -> Container {
        let container = Container { name: unique(kind) };
        let mut cmd = vec!["run", "-d", "--name", &container.name, "--label", LABEL];
        cmd.extend_from_slice(flags);
        cmd.push(image);
        cmd.extend_from_slice(args);
        docker_ok(&cmd);
        container
    }

    /// Whether the container still runs.
    pub fn running(&self) -> bool {
        docker(&["inspect", "--format", "{{.State.Running}}", &self.name]).as_deref() == Ok("true")
    }

    /// The exit code of a stopped container.
    pub fn exit_code(&self) -> i64 {
        let code = docker_ok(&["inspect", "--format", "{{.State.ExitCode}}", &self.name]);
        code.parse().unwrap_or(-1)
    }

    /// Its output so far (stdout and stderr).
    pub fn logs(&self) -> String {
        let output = Command::new("docker")
            .args(["logs", &self.name])
            .stdin(Stdio::null())
            .output();
        match output {
            Ok(o) => format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => format!("docker logs: {e}"),
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- docker logs {} ---\n{}", self.name, self.logs());
        }
        let _ = docker(&["rm", "--force", "--volumes", &self.name]);
    }
}

/// A user-defined bridge network, removed on drop (after the containers on it).
pub struct Network {
    pub name: String,
}

impl Network {
    #[track_caller]
    pub fn create() -> Network {
        let network = Network {
            name: unique("net"),
        };
        docker_ok(&["network", "create", "--label", LABEL, &network.name]);
        network
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let _ = docker(&["network", "rm", &self.name]);
    }
}

/// The runner and the fake sidecar sharing one network namespace, like a Direktiv pod.
/// Fields drop in order: runner, sidecar, network.
pub struct Pod {
    pub runner: Container,
    pub sidecar: Container,
    pub network: Network,
    /// The pod's address on the test network: :8080 is the runner, :8890 the sidecar's control.
    pub ip: String,
    client: reqwest::Client,
}

impl Pod {
    /// Starts the sidecar, then the runner from `image` in the sidecar's network namespace and
    /// with its `/mnt/shared` volume, with extra `docker run` flags, and waits
    /// until the runner's `/readyz` answers 200.
    pub async fn start(images: &Images, image: &Image, runner_flags: &[&str]) -> Pod {
        let network = Network::create();
        let net_flag = format!("--network={}", network.name);
        let sidecar = Container::run("sidecar", &[&net_flag], &images.sidecar.tag, &[]);
        let ip = docker_ok(&[
            "inspect",
            "--format",
            &format!(
                "{{{{(index .NetworkSettings.Networks \"{}\").IPAddress}}}}",
                network.name
            ),
            &sidecar.name,
        ]);
        assert!(!ip.is_empty(), "sidecar has no address on {}", network.name);
        // Both containers of a Direktiv pod mount the shared volume at /mnt/shared.
        let pod_flag = format!("--network=container:{}", sidecar.name);
        let volume_flag = format!("--volumes-from={}", sidecar.name);
        let mut flags = vec![pod_flag.as_str(), volume_flag.as_str()];
        flags.extend_from_slice(runner_flags);
        let runner = Container::run("runner", &flags, &image.tag, &[]);
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(300))
            .build()
            .expect("http client");
        let pod = Pod {
            runner,
            sidecar,
            network,
            ip,
            client,
        };
        pod.wait_ready().await;
        pod
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let sidecar_up = self.get(&self.control("/logs?aid=probe")).await == Some(200);
            let runner_up = self.readyz().await == Some(200);
            if sidecar_up && runner_up {
                return;
            }
            assert!(
                self.runner.running() && self.sidecar.running(),
                "a pod container exited during start-up:\nrunner: {}\nsidecar: {}",
                self.runner.logs(),
                self.sidecar.logs()
            );
            assert!(
                Instant::now() < deadline,
                "pod not ready after {PATIENCE:?} (sidecar {sidecar_up}, runner {runner_up})"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// `http://<pod>:8080<path>`, the runner.
    pub fn runner_url(&self, path: &str) -> String {
        format!("http://{}:8080{path}", self.ip)
    }

    fn control(&self, path: &str) -> String {
        format!("http://{}:8890{path}", self.ip)
    }

    async fn get(&self, url: &str) -> Option<u16> {
        let response = self
            .client
            .get(url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        Some(response.status().as_u16())
    }

    /// The status of the runner's `/readyz`, `None` when nothing answers.
    pub async fn readyz(&self) -> Option<u16> {
        self.get(&self.runner_url("/readyz")).await
    }

    /// `POST /` to the runner with `Direktiv-ActionID: aid` and optional extra headers.
    pub async fn post(&self, aid: &str, body: impl Into<Body>, headers: &[(&str, &str)]) -> Reply {
        let mut request = self
            .client
            .post(self.runner_url("/"))
            .header("Direktiv-ActionID", aid)
            .header("Content-Type", "application/json")
            .body(body.into().0);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        match request.send().await {
            Ok(response) => Reply::read(response).await,
            Err(e) => Reply::transport_error(e),
        }
    }

    /// Every line the runner posted to the sidecar's `/log?aid=<aid>` (posts may carry several
    /// newline-joined lines).
    pub async fn log_lines(&self, aid: &str) -> Vec<String> {
        let url = self.control(&format!("/logs?aid={aid}"));
        let response = self
            .client
            .get(url)
            .send()
            .await
            .expect("query the sidecar");
        let bodies: Vec<String> = response.json().await.expect("sidecar log list");
        bodies
            .iter()
            .flat_map(|body| body.lines().map(str::to_string).collect::<Vec<_>>())
            .collect()
    }

    /// Waits until a line for `aid` satisfies `pred`.
    pub async fn wait_log(&self, aid: &str, pred: impl Fn(&str) -> bool) -> bool {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if self.log_lines(aid).await.iter().any(|l| pred(l)) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// Makes the sidecar create `/mnt/shared/<aid>` as Direktiv's does; returns the path.
    pub async fn prepare(&self, aid: &str) -> String {
        let url = self.control(&format!("/prepare?aid={aid}"));
        let response = self.client.post(url).send().await.expect("ask the sidecar");
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert!(
            status.is_success(),
            "sidecar could not prepare {aid}: {text}"
        );
        text
    }
}

/// The `result` of every command in a native reply.
pub fn results(reply: &Reply) -> Vec<Value> {
    reply
        .commands()
        .iter()
        .map(|c| c.get("result").cloned().unwrap_or(Value::Null))
        .collect()
}
