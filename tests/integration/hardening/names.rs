//! A name the file system refuses (too long, through a file, a symlink loop) is the request's
//! fault: `cmd.input` (400) naming the field, never `cmd.internal`.

use serde_json::{json, Value};

use super::{assert_input_error, PROMPT};
use crate::support::{sh, start_pair, within};

/// One component longer than any Linux file system allows (NAME_MAX is 255).
fn long_component(c: char) -> String {
    c.to_string().repeat(300)
}

/// A path of short components, longer in all than PATH_MAX (4096).
fn long_path(c: char) -> String {
    vec![c.to_string().repeat(200); 25].join("/")
}

#[tokio::test(flavor = "multi_thread")]
async fn names_the_file_system_refuses_are_input_errors_naming_the_field() {
    let (sidecar, runner) = start_pair(&[]);
    let file = |name: String| json!({"files": [{"name": name, "data": "x"}], "commands": [{"command": "true"}]});
    let workdir = |dir: String| json!({"commands": [{"command": "pwd", "workdir": dir}]});
    let output = |out: String| json!({"commands": [{"command": "true", "output": out}]});
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "file name of 300 bytes",
            file(long_component('f')),
            "files[0].name",
        ),
        (
            "file in a folder of 300 bytes",
            file(format!("{}/f", long_component('d'))),
            "files[0].name",
        ),
        (
            "file path over PATH_MAX",
            file(long_path('p')),
            "files[0].name",
        ),
        (
            "workdir of 300 bytes",
            workdir(long_component('w')),
            "commands[0].workdir",
        ),
        (
            "workdir over PATH_MAX",
            workdir(long_path('w')),
            "commands[0].workdir",
        ),
        (
            "output of 300 bytes",
            output(long_component('o')),
            "commands[0].output",
        ),
        (
            "output over PATH_MAX",
            output(long_path('o')),
            "commands[0].output",
        ),
    ];
    for (i, (case, body, field)) in cases.into_iter().enumerate() {
        let reply = within(
            PROMPT,
            case,
            sidecar.call(&runner, &format!("long-{i}"), body),
        )
        .await;
        assert_input_error(&reply, &[field], case);
    }
}

/// Paths made impossible by what a previous command left: a file where a folder is needed, a
/// symlink loop.
#[tokio::test(flavor = "multi_thread")]
async fn paths_through_files_and_loops_are_input_errors_naming_the_field() {
    let (sidecar, runner) = start_pair(&[]);
    let cases: Vec<(&str, &str, Value, &str)> = vec![
        (
            "output under a file",
            "touch f",
            json!({"command": "true", "output": "f/x"}),
            "commands[1].output",
        ),
        (
            "output is a symlink loop",
            "ln -s loop loop",
            json!({"command": "true", "output": "loop"}),
            "commands[1].output",
        ),
        (
            "output through a symlink loop",
            "ln -s loop loop",
            json!({"command": "true", "output": "loop/x"}),
            "commands[1].output",
        ),
        (
            "workdir under a file",
            "touch f",
            json!({"command": "pwd", "workdir": "f/x"}),
            "commands[1].workdir",
        ),
        (
            "workdir is a file",
            "touch f",
            json!({"command": "pwd", "workdir": "f"}),
            "commands[1].workdir",
        ),
        (
            "workdir through a symlink loop",
            "ln -s loop loop",
            json!({"command": "pwd", "workdir": "loop/x"}),
            "commands[1].workdir",
        ),
    ];
    for (i, (case, setup, command, field)) in cases.into_iter().enumerate() {
        let body = json!({"commands": [sh(setup), command]});
        let reply = within(
            PROMPT,
            case,
            sidecar.call(&runner, &format!("odd-{i}"), body),
        )
        .await;
        assert_input_error(&reply, &[field], case);
    }
}
