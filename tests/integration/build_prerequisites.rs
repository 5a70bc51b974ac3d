//! `make images` checks what it needs before the long static build and says what to install
//! (docker/README.md, "Building"). The machine is simulated: a PATH of the host's tools with
//! some taken away, and stand-ins for `docker` (offline, or an engine that does not answer)
//! and `cargo` (which only records that it was started).

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The tools of the host, by name, as a shell finds them in PATH.
const HOST_BIN_DIRS: [&str; 6] = [
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// A simulated machine: a PATH directory and a file that records whether cargo was started.
struct Machine {
    dir: tempfile::TempDir,
}

impl Machine {
    /// The host's tools without `without`, and with `docker` as given (a shell script body;
    /// `None` for no docker at all).
    fn new(without: &[&str], docker: Option<&str>) -> Machine {
        let dir = tempfile::tempdir().expect("temp dir");
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).expect("mkdir bin");
        for host_dir in HOST_BIN_DIRS {
            let Ok(entries) = std::fs::read_dir(host_dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let taken =
                    without.iter().any(|w| name == **w) || name == "docker" || name == "cargo";
                if !taken && !bin.join(&name).exists() {
                    symlink(entry.path(), bin.join(&name)).expect("link a host tool");
                }
            }
        }
        let ran = dir.path().join("cargo-ran");
        write_script(
            &bin.join("cargo"),
            &format!("echo \"$@\" >> {}\nexit 0", ran.display()),
        );
        if let Some(docker) = docker {
            write_script(&bin.join("docker"), docker);
        }
        Machine { dir }
    }

    fn bin(&self) -> PathBuf {
        self.dir.path().join("bin")
    }

    /// Whether `cargo` was started (the static build began).
    fn cargo_ran(&self) -> bool {
        self.dir.path().join("cargo-ran").exists()
    }

    /// Runs `program args` in the repository with this machine's PATH.
    fn run(&self, program: &str, args: &[&str]) -> Output {
        self.run_with_pip(program, args, "python3 -m pip")
    }

    /// `run`, with `pip` as the host's pip command (docker/pip-wheels.sh reads PIP).
    fn run_with_pip(&self, program: &str, args: &[&str], pip: &str) -> Output {
        Command::new(self.bin().join(program))
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("PATH", self.bin())
            // Cargo sets CARGO for its tests; the Makefile would take it over `cargo` in PATH.
            .env_remove("CARGO")
            .env_remove("MAKEFLAGS")
            .env_remove("DEBIAN_IMAGE")
            .env_remove("PYTHON_IMAGE")
            .env("PIP", pip)
            .output()
            .expect("run")
    }
}

fn write_script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).expect("write a stand-in");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// A Docker engine that answers but reaches no registry, and holds none of the base images.
const OFFLINE_DOCKER: &str = r#"case "$1" in
version) echo 20.10.24 ;;
pull) echo "Error response from daemon: Get \"https://registry-1.docker.io/v2/\": dial tcp: lookup registry-1.docker.io: no such host" >&2; exit 1 ;;
*) exit 1 ;;
esac"#;

/// A Docker CLI whose engine is not running.
const DOWN_DOCKER: &str = r#"echo "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?" >&2
exit 1"#;

/// A Docker engine that has every image asked for.
const READY_DOCKER: &str = r#"case "$1" in
version) echo 20.10.24 ;;
image) exit 0 ;;
*) exit 1 ;;
esac"#;

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn make_images_names_what_to_install_before_the_static_build() {
    // Offline, without mmdebstrap and pip: the newcomer's machine.
    let machine = Machine::new(&["mmdebstrap", "python3"], Some(OFFLINE_DOCKER));
    let output = machine.run("make", &["images"]);
    let text = stderr(&output);
    assert!(!output.status.success(), "{text}");
    assert!(
        !machine.cargo_ran(),
        "the static build started first: {text}"
    );
    assert!(
        text.contains("the debian base image cannot be pulled, and making it from Debian's archive needs mmdebstrap"),
        "{text}"
    );
    assert!(text.contains("pip is missing"), "{text}");
    assert!(
        text.contains(
            "install first: apt-get install -y mmdebstrap \
             && apt-get install -y --no-install-recommends python3-pip\n"
        ),
        "{text}"
    );
}

#[test]
fn an_engine_that_does_not_answer_or_no_docker_at_all_is_said_first() {
    let machine = Machine::new(&[], Some(DOWN_DOCKER));
    let output = machine.run("make", &["images"]);
    let text = stderr(&output);
    assert!(!output.status.success(), "{text}");
    assert!(!machine.cargo_ran(), "{text}");
    assert!(
        text.contains("the Docker engine does not answer (Cannot connect to the Docker daemon"),
        "{text}"
    );

    let machine = Machine::new(&[], None);
    let output = machine.run("make", &["container-test"]);
    let text = stderr(&output);
    assert!(!output.status.success(), "{text}");
    assert!(!machine.cargo_ran(), "{text}");
    assert!(text.contains("docker is missing"), "{text}");
    assert!(
        text.contains("apt-get install -y --no-install-recommends docker.io"),
        "{text}"
    );
}

#[test]
fn a_ready_machine_passes_the_check_silently() {
    let machine = Machine::new(&[], Some(READY_DOCKER));
    let output = machine.run_with_pip("sh", &["docker/prerequisites.sh", "images"], "true");
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stderr(&output), "");
    // The container tests also need a static busybox, which only the host can provide.
    let output = machine.run_with_pip("sh", &["docker/prerequisites.sh", "container-test"], "true");
    let static_busybox = Command::new("ldd")
        .arg("/bin/busybox")
        .output()
        .is_ok_and(|o| !o.status.success())
        && Path::new("/bin/busybox").exists();
    match static_busybox {
        true => assert_eq!(stderr(&output), ""),
        false => assert!(
            stderr(&output).contains("busybox-static"),
            "{}",
            stderr(&output)
        ),
    }
}
