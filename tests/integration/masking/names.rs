//! What is secret by its name, and what stays readable: the words of a name decide (`apiKey`,
//! `AWS_SECRET_ACCESS_KEY`, not `AUTHOR` or `KEYBOARD`), a value no secret can be (`true`,
//! `2048`) is not masked by its name, a multi-line secret's short boilerplate lines stay
//! readable in other output, and the container's own environment is secret by the same rule.

use serde_json::json;

use super::{assert_hidden, call};
use crate::support::{FakeSidecar, Runner};

#[tokio::test(flavor = "multi_thread")]
async fn only_secret_words_make_a_name_secret() {
    let body = json!({
        "env": {
            "AUTHOR": "jane-doe-author", "MONKEY_NAME": "george-the-monkey",
            "KEYBOARD": "qwertz-layout-de", "TOKENIZER": "wordpiece-base",
            "apiKey": "camel-api-k3y-val", "X_API_KEY": "dash-api-k3y-val",
            "OAUTH2_TOKEN": "oauth2-t0ken-val"
        },
        "commands": [{"command": "sh -c 'echo $AUTHOR $MONKEY_NAME $KEYBOARD $TOKENIZER; \
                                  echo $apiKey $X_API_KEY $OAUTH2_TOKEN'", "print": false}]
    });
    let (reply, lines) = call("words", body).await;
    reply.assert_success();
    assert_eq!(
        lines,
        [
            "jane-doe-author george-the-monkey qwertz-layout-de wordpiece-base",
            "*** *** ***"
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn values_no_secret_can_be_are_not_masked_by_name() {
    let body = json!({
        "env": {"AUTH_ENABLED": "true", "KEY_SIZE": "2048", "SESSION_TTL": 3600,
                "COOKIE_SECURE": "yes", "PIN_SECRET": "918273"},
        "commands": [{"command": "sh -c 'echo true 2048 3600 yes; echo pin 918273'",
                      "print": false}]
    });
    let (reply, lines) = call("trivial", body).await;
    reply.assert_success();
    assert_eq!(lines, ["true 2048 3600 yes", "pin ***"]);
    assert_eq!(
        reply.command(0)["stdout"],
        json!("true 2048 3600 yes\npin ***\n")
    );
}

/// A kubeconfig passed as a secret masks its token line wherever it shows, but not the
/// boilerplate lines any YAML has (`apiVersion: v1`, `- name: admin`).
#[tokio::test(flavor = "multi_thread")]
async fn the_short_lines_of_a_multi_line_secret_stay_readable_elsewhere() {
    let token = "eyJhbGciOiJSUzI1NiIsImtpZCI6IjRkMWMifQ.c2VjcmV0LXRva2Vu";
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nusers:\n- name: admin\n  user:\n    token: {token}\n"
    );
    let other = "apiVersion: v1\nkind: Service\nmetadata:\n- name: admin\n";
    let body = json!({
        "envs": [{"name": "KUBECONFIG_DATA", "value": kubeconfig, "secret": true}],
        "commands": [
            {"args": ["printf", "%s", other], "print": false},
            {"args": ["printf", "%s", format!("    token: {token}\n")], "print": false}
        ]
    });
    let (reply, lines) = call("kubeconfig", body).await;
    reply.assert_success();
    assert_eq!(
        lines,
        [
            "apiVersion: v1",
            "kind: Service",
            "metadata:",
            "- name: admin",
            "    ***"
        ]
    );
    assert_eq!(reply.command(0)["stdout"], json!(other));
    assert_hidden([&reply.text], &[token]);
}

/// A secret in the runner's own environment (a Kubernetes secret, a function's `envs:`) is
/// masked wherever a command shows it: logs, response, error messages, the runner's log. The
/// runner's own settings are not secrets, whatever their names (`CMD_RESULT_KEY`).
#[tokio::test(flavor = "multi_thread")]
async fn the_container_s_own_secrets_are_masked() {
    let key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY";
    let sidecar = FakeSidecar::start();
    let runner = Runner::builder()
        .sidecar(&sidecar)
        .env("AWS_SECRET_ACCESS_KEY", key)
        .env("FEATURE_TOKEN_ENABLED", "true")
        .env("CMD_RESULT_KEY", "aws-cli")
        .env("RUST_LOG", "direktiv_cmd=trace")
        .start();
    let body = json!({"commands": [
        {"command": "printenv AWS_SECRET_ACCESS_KEY", "print": false},
        {"command": "echo aws-cli/1.46.3", "print": false},
        {"command": "sh -c 'echo $FEATURE_TOKEN_ENABLED; printenv AWS_SECRET_ACCESS_KEY >&2; \
                     exit 5'", "print": false}
    ]});
    let reply = sidecar.call(&runner, "container", body).await;
    reply.assert_error("cmd.exit.5", 500);
    let results: Vec<_> = reply
        .results_under("aws-cli")
        .iter()
        .map(|c| c["result"].clone())
        .collect();
    assert_eq!(results[..2], [json!("***"), json!("aws-cli/1.46.3")]);
    let lines = sidecar.lines("container");
    assert_eq!(lines[..2], ["***", "aws-cli/1.46.3"]);
    // The third command writes one line to each stream: their order between the streams is
    // not kept (only a declaration orders them).
    let mut third = lines[2..4].to_vec();
    third.sort();
    assert_eq!(third, ["***", "true"]);
    let mut texts = lines.clone();
    texts.push(reply.text.clone());
    texts.push(reply.error_message().unwrap_or_default());
    texts.extend(runner.stderr_lines());
    texts.extend(runner.stdout_lines());
    assert_hidden(&texts, &[key]);
}

/// `CMD_MASK_NAMES` applies to the container's environment as to a request's.
#[tokio::test(flavor = "multi_thread")]
async fn mask_names_decides_for_the_container_too() {
    let sidecar = FakeSidecar::start();
    let runner = Runner::builder()
        .sidecar(&sidecar)
        .env("CMD_MASK_NAMES", "pin")
        .env("DEPLOY_PIN", "7519-3486")
        .env("GITHUB_TOKEN", "ghp_readable_now_1234")
        .start();
    let body = json!({"command": "sh -c 'echo $DEPLOY_PIN $GITHUB_TOKEN'", "print": false});
    let reply = sidecar.call(&runner, "container-names", body).await;
    reply.assert_success();
    assert_eq!(
        sidecar.lines("container-names"),
        ["*** ghp_readable_now_1234"]
    );
}
