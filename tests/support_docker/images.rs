//! Every image the container tests run, built once per test process.
//!
//! The product images come from `docker/build-images.sh`, the script `make images` runs, with
//! `IMAGE_PREFIX` set so that a test run (possibly with a debug binary) never replaces what
//! `make images` built; with the same binary both share every layer. The tests' own images are
//! the fake sidecar, busybox userlands, images that take the runner by `COPY --from` as the
//! README shows, and an S3 emulator (`docker/test-s3/`).
//!
//! Tags stay after the run so that the next one reuses their layers; an image a rebuild
//! replaces is removed once nothing uses it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use super::{docker, docker_ok};

/// Put before the tags of the images the tests build.
pub const PREFIX: &str = "direktiv-cmd-test/";

/// The images, by tag.
pub struct Images {
    /// `direktiv-cmd:scratch`: the binary only.
    pub scratch: String,
    /// `direktiv-cmd:debian`: the FROM-able base.
    pub debian: String,
    /// `direktiv-cmd-example-<name>` for each folder of `examples/`.
    pub example_aws_cli: String,
    pub example_bash: String,
    pub example_python: String,
    /// The Debian image the Debian base was built `FROM` (the public one or its stand-in).
    pub debian_userland: String,
    /// `FROM` the scratch image plus busybox: a user deriving from the binary-only image.
    pub busybox: String,
    /// The README's `COPY --from` Dockerfile applied to a bare busybox image.
    pub copy_into_busybox: String,
    /// The README's `COPY --from` Dockerfile applied to the plain Debian image.
    pub copy_into_debian: String,
    /// The fake Direktiv sidecar.
    pub sidecar: String,
    /// moto's S3 server.
    pub s3: String,
}

impl Images {
    /// The tag of `examples/<name>`'s image.
    pub fn example(&self, name: &str) -> &str {
        match name {
            "aws-cli" => &self.example_aws_cli,
            "bash" => &self.example_bash,
            "python" => &self.example_python,
            other => panic!("no image for examples/{other}"),
        }
    }
}

/// The images, built by the first test that asks; every test gets the same build error.
pub fn images() -> &'static Images {
    static IMAGES: OnceLock<Result<Images, String>> = OnceLock::new();
    match IMAGES.get_or_init(build_all) {
        Ok(images) => images,
        Err(error) => panic!("building the images failed: {error}"),
    }
}

fn build_all() -> Result<Images, String> {
    let runner = runner_binary()?;
    eprintln!("container tests use the runner binary {}", runner.display());
    script(
        Command::new(repo().join("docker/build-images.sh"))
            .arg(&runner)
            .env("IMAGE_PREFIX", PREFIX),
    )?;
    let tag = |name: &str| format!("{PREFIX}{name}");
    let scratch = tag("direktiv-cmd:scratch");
    let debian_userland = script(Command::new(repo().join("docker/base-image.sh")).arg("debian"))?;

    let sidecar = build_sidecar_image()?;
    let busybox = build_with_host_busybox(
        "busybox.Dockerfile",
        &tag("busybox-derived"),
        &[("BASE", &scratch)],
    )?;
    let bare_busybox = build_with_host_busybox("bare-busybox.Dockerfile", &tag("busybox"), &[])?;
    let copy_into_busybox =
        build_readme_copy_from(&tag("copy-into-busybox"), &bare_busybox, &scratch)?;
    let copy_into_debian =
        build_readme_copy_from(&tag("copy-into-debian"), &debian_userland, &scratch)?;
    let s3 = tag("s3");
    script(Command::new(repo().join("docker/test-s3/build.sh")).arg(&s3))?;

    Ok(Images {
        debian: tag("direktiv-cmd:debian"),
        example_aws_cli: tag("direktiv-cmd-example-aws-cli"),
        example_bash: tag("direktiv-cmd-example-bash"),
        example_python: tag("direktiv-cmd-example-python"),
        scratch,
        debian_userland,
        busybox,
        copy_into_busybox,
        copy_into_debian,
        sidecar,
        s3,
    })
}

/// Runs a build script; its stdout (trimmed), or everything it printed as the error.
fn script(command: &mut Command) -> Result<String, String> {
    let output = command
        .current_dir(repo())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{command:?}: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    } else {
        Err(format!(
            "{command:?} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// The repository root.
pub fn repo() -> &'static Path {
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

/// The static (crt-static) runner the images are made of, in order of preference: the binary
/// `DIREKTIV_CMD_STATIC_BIN` names (`make container-test` passes the one of `make static`);
/// `target/static/direktiv-cmd` when it is newer than every source file (so `make test` does
/// not build the crate a third time); else a debug build of this crate for the host triple
/// with `crt-static`.
fn runner_binary() -> Result<PathBuf, String> {
    match std::env::var_os("DIREKTIV_CMD_STATIC_BIN") {
        Some(path) => Ok(PathBuf::from(path)),
        None => match fresh_release_static() {
            Some(path) => Ok(path),
            None => cargo_static(&repo().join("Cargo.toml"), "direktiv-cmd"),
        },
    }
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
fn cargo_static(manifest: &Path, bin: &str) -> Result<PathBuf, String> {
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
        .map_err(|e| format!("run cargo: {e}"))?;
    if !status.success() {
        return Err(format!("static build of {bin} failed: {status}"));
    }
    Ok(target.join(triple).join("debug").join(bin))
}

/// `docker build --tag <tag> <args> <context>`, then removes the image the tag pointed at
/// before if nothing uses it any more.
fn build(
    tag: &str,
    dockerfile: &Path,
    context: &Path,
    args: &[(&str, &str)],
) -> Result<(), String> {
    let before = docker(&["image", "inspect", "--format", "{{.Id}}", tag]).ok();
    let dockerfile = dockerfile.to_string_lossy();
    let context = context.to_string_lossy();
    let build_args: Vec<String> = args.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut command = vec!["build", "--quiet", "--file", &dockerfile, "--tag", tag];
    for arg in &build_args {
        command.extend_from_slice(&["--build-arg", arg]);
    }
    command.push(&context);
    docker(&command)?;
    if let Some(old) = before {
        let tags = docker(&["image", "inspect", "--format", "{{len .RepoTags}}", &old]);
        if tags.as_deref() == Ok("0") {
            let _ = docker(&["rmi", &old]);
        }
    }
    Ok(())
}

fn build_sidecar_image() -> Result<String, String> {
    let binary = cargo_static(
        &repo().join("docker/test-sidecar/Cargo.toml"),
        "direktiv-cmd-test-sidecar",
    )?;
    let context = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    std::fs::copy(&binary, context.path().join("direktiv-cmd-test-sidecar"))
        .map_err(|e| format!("stage the sidecar binary: {e}"))?;
    std::fs::create_dir(context.path().join("shared"))
        .map_err(|e| format!("stage shared/: {e}"))?;
    let tag = format!("{PREFIX}sidecar");
    let dockerfile = repo().join("docker/test-sidecar/Dockerfile");
    build(&tag, &dockerfile, context.path(), &[])?;
    Ok(tag)
}

/// Builds `tests/support_docker/<dockerfile>` with the host's static busybox in its context.
fn build_with_host_busybox(
    dockerfile: &str,
    tag: &str,
    args: &[(&str, &str)],
) -> Result<String, String> {
    let busybox = Path::new("/bin/busybox");
    if !busybox.exists() {
        return Err(
            "/bin/busybox is missing: the busybox images need a static busybox on \
                    the host (apt-get install -y busybox-static; .ci/run installs it)"
                .to_string(),
        );
    }
    let context = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    std::fs::copy(busybox, context.path().join("busybox"))
        .map_err(|e| format!("stage busybox: {e}"))?;
    let dockerfile = repo().join("tests/support_docker").join(dockerfile);
    build(tag, &dockerfile, context.path(), args)?;
    Ok(tag.to_string())
}

/// The README's Dockerfile that adds the runner to an existing image (the one with
/// `COPY --from=direktiv-cmd:scratch`), with its `FROM` line pointed at `base` and the
/// runner image at `scratch`.
fn build_readme_copy_from(tag: &str, base: &str, scratch: &str) -> Result<String, String> {
    let dockerfile = readme_copy_from_dockerfile()?;
    let mut lines: Vec<String> = dockerfile.lines().map(str::to_string).collect();
    let from = lines
        .iter()
        .position(|l| l.starts_with("FROM "))
        .ok_or("the README's COPY --from Dockerfile has no FROM line")?;
    lines[from] = format!("FROM {base}");
    let text = lines.join("\n").replace("direktiv-cmd:scratch", scratch) + "\n";
    let context = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let path = context.path().join("Dockerfile");
    std::fs::write(&path, text).map_err(|e| format!("write {}: {e}", path.display()))?;
    build(tag, &path, context.path(), &[])?;
    Ok(tag.to_string())
}

/// The README's ```dockerfile block that copies the runner in with `COPY --from`.
pub fn readme_copy_from_dockerfile() -> Result<String, String> {
    let readme =
        std::fs::read_to_string(repo().join("README.md")).map_err(|e| format!("README.md: {e}"))?;
    fenced_blocks(&readme, "dockerfile")
        .into_iter()
        .find(|block| block.contains("COPY --from=direktiv-cmd:scratch"))
        .ok_or_else(|| {
            "README.md has no dockerfile block with COPY --from=direktiv-cmd:scratch".into()
        })
}

/// The bodies of the fenced code blocks of `text` whose info string is `lang`.
pub fn fenced_blocks(text: &str, lang: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in text.lines() {
        match current.as_mut() {
            None if line.trim() == format!("```{lang}") => current = Some(Vec::new()),
            None => {}
            Some(body) if line.trim() == "```" => {
                blocks.push(body.join("\n"));
                current = None;
            }
            Some(body) => body.push(line),
        }
    }
    blocks
}

/// `docker image inspect --format <format> <tag>`.
#[track_caller]
pub fn inspect(tag: &str, format: &str) -> String {
    docker_ok(&["image", "inspect", "--format", format, tag])
}
