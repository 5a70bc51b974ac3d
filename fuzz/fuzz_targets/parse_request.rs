//! Any request body → `request::parse` answers without panicking, and a plan it accepts names
//! only paths that stay inside the temp dir (lexically: relative, no `.` or `..`).
//!
//! Those paths are joined onto the temp dir by `files` (file names) and `job` (`workdir`,
//! `output`), which trust this check; a path that slipped through would be written or read
//! outside the temp dir.

#![no_main]

use std::path::{Component, Path};

use direktiv_cmd::plan::{Plan, Program};
use direktiv_cmd::request;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    if let Ok(plan) = request::parse(body) {
        check_plan(&plan);
    }
});

/// The invariants `Plan` documents for what comes after parsing. (An empty `commands` list is
/// a valid request that runs nothing.)
fn check_plan(plan: &Plan) {
    for (i, file) in plan.files.iter().enumerate() {
        check_relative(&file.path, &format!("files[{i}].name"));
        assert!(
            file.mode <= 0o777,
            "files[{i}].mode {:#o} has more than permission bits",
            file.mode
        );
    }
    for (i, command) in plan.commands.iter().enumerate() {
        if let Some(workdir) = &command.workdir {
            check_relative(&workdir.path, &workdir.field);
        }
        if let Some(output) = &command.output {
            check_relative(&output.path, &output.field);
        }
        if let Program::Argv(argv) = &command.program {
            assert!(!argv.is_empty(), "commands[{i}] has an empty argv");
        }
    }
}

/// Not empty, and every component a plain name: no root, no `.`, no `..`, no NUL.
fn check_relative(path: &Path, field: &str) {
    assert!(
        path.components().next().is_some(),
        "{field}: empty path accepted"
    );
    for component in path.components() {
        assert!(
            matches!(component, Component::Normal(_)),
            "{field}: {path:?} accepted with a {component:?} component"
        );
    }
    assert!(
        !path.as_os_str().as_encoded_bytes().contains(&0),
        "{field}: {path:?} accepted with a NUL byte"
    );
}
