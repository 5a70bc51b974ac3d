//! The runner core against the real binary: request shapes, execution environment, results
//! and the cmd.* error taxonomy (SPEC §2–§6).

mod support;

use serde_json::json;
use support::{FakeSidecar, Runner};

#[tokio::test(flavor = "multi_thread")]
async fn single_command_shorthand_runs_and_returns_its_output() {
    let sidecar = FakeSidecar::start();
    let runner = Runner::start(&sidecar);
    let reply = sidecar
        .call(&runner, "a1", json!({"command": "echo hi"}))
        .await;
    reply.assert_success();
    assert_eq!(reply.command(0)["result"], "hi");
}
