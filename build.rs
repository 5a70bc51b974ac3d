//! Link options of the runner's binary.
//!
//! - Packed relocations, for the statically linked binary (`crt-static`, as `make static` and
//!   the images build it). A static glibc binary is a static PIE: at start-up it applies its
//!   own relative relocations, about 5,700 of them. As classic RELA entries that table is
//!   136 KB, read at every start and resident for the process's life; packed (`DT_RELR`,
//!   glibc ≥ 2.36, binutils ≥ 2.38) it is under 2 KB. Idle RSS drops by about 0.4 MiB.
//! - Code layout, for release builds where rustc links with LLD (x86_64 Linux with glibc,
//!   Rust ≥ 1.90, no linker chosen by the builder): the functions `layout/functions.txt` lists,
//!   those that run, are placed first and together. The kernel maps a binary's code 64 KiB
//!   around each page touched, so with the code that runs spread over the whole text, nearly
//!   all of it was resident; placed together, little more than what runs is (docs/performance.md,
//!   "Code layout"). `DIREKTIV_CMD_LAYOUT=off` leaves the order to the linker.

use std::path::Path;

const LAYOUT: &str = "layout/functions.txt";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={LAYOUT}");
    println!("cargo:rerun-if-env-changed=DIREKTIV_CMD_LAYOUT");
    let env = |name: &str| std::env::var(name).unwrap_or_default();
    let features = env("CARGO_CFG_TARGET_FEATURE");
    let glibc = env("CARGO_CFG_TARGET_OS") == "linux" && env("CARGO_CFG_TARGET_ENV") == "gnu";
    if glibc && features.split(',').any(|feature| feature == "crt-static") {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    let layout = Path::new(&env("CARGO_MANIFEST_DIR")).join(LAYOUT);
    if env("DIREKTIV_CMD_LAYOUT") != "off"
        && env("PROFILE") == "release"
        && links_with_lld(&env)
        && layout.is_file()
    {
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            layout.display()
        );
        // Names the binary does not have (another toolchain, changed code) are passed over.
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
        let made_with = std::fs::read_to_string(&layout).ok().and_then(|list| {
            let line = list.lines().find_map(|l| l.strip_prefix("# rustc: "))?;
            Some(line.trim().to_owned())
        });
        let building_with = rustc_version();
        if made_with.is_some() && made_with != building_with {
            println!(
                "cargo:warning={LAYOUT} was made with {}, this is {}: its names will not match, \
                 so the code is laid out as the linker chooses (`make layout` remakes it)",
                made_with.unwrap_or_default(),
                building_with.unwrap_or_default()
            );
        }
    }
}

/// Whether rustc links this build with its own LLD, the only linker here that takes
/// `--symbol-ordering-file`: its default for x86_64 Linux with glibc since Rust 1.90, unless
/// the builder chose a linker (`RUSTC_LINKER`, or a linker flag in the flags).
fn links_with_lld(env: &impl Fn(&str) -> String) -> bool {
    let flags = env("CARGO_ENCODED_RUSTFLAGS");
    let chosen = std::env::var_os("RUSTC_LINKER").is_some()
        || ["linker", "fuse-ld", "link-self-contained"]
            .iter()
            .any(|flag| flags.contains(flag));
    env("TARGET") == "x86_64-unknown-linux-gnu" && !chosen && rustc_minor() >= Some(90)
}

/// The rustc building this, as it names itself (`rustc 1.95.0 (59807616e 2026-04-14)`).
fn rustc_version() -> Option<String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let output = std::process::Command::new(rustc).arg("-V").output().ok()?;
    Some(String::from_utf8(output.stdout).ok()?.trim().to_owned())
}

/// Its minor version.
fn rustc_minor() -> Option<u32> {
    rustc_version()?
        .split_whitespace()
        .nth(1)?
        .split('.')
        .nth(1)?
        .parse()
        .ok()
}
