//! Long mixed load against one runner: normal, failing, cancelled, timed-out, disconnected and
//! background-leaving requests, requests whose processes leave their group (`setsid`) and
//! requests naming a FIFO as `output`, with bounded concurrency. Mixed in, commands that do as
//! root what they can to their own cgroup: kill it, freeze it, nest a cgroup with a process in
//! it, change its settings, move the runner into it; and commands with a `memory` limit that
//! check their memory cgroup was handed out clean, then turn its OOM killer off and change a
//! setting of it. At the end no process of any request and no zombie may be left, the runner's
//! open file descriptors must be back where they were after a warm-up (no leaked pipes,
//! sockets or temp dirs; its kept cgroups' files apart), and once it exits, no cgroup of it is
//! left, memory cgroups included. Where request cgroups can be made, the runner runs in a
//! cgroup of the test's own (`support::cgroups`).
//!
//! A second soak runs the runner as PID 1 of its own pid namespace, where background requests
//! also leave orphans in sessions of their own that only the init can reap.
//!
//! Slow on purpose, so ignored by default: `make soak` runs it
//! (`cargo test --release --test soak -- --ignored --nocapture`). `SOAK_REQUESTS` changes the
//! number of requests (default 2000). `bounds` holds the time and memory bounds that only a
//! quiet machine can check.

// The shared harness, of which the soak uses a part (the integration crate uses it whole and
// so catches what nothing uses).
#[allow(dead_code, unused_imports)]
#[path = "../support/mod.rs"]
mod support;

mod bounds;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::cgroups::{self, CgroupSandbox};
use support::procs;
use support::{skip_without, Capability};
use support::{FakeSidecar, Reply, Runner, PATIENCE};
use tokio::io::AsyncWriteExt;

/// Requests in flight at once from the test (below the runner's limit, so none is refused).
const CONCURRENCY: usize = 8;
/// Open descriptors the runner may hold above its warmed-up count (idle pooled connections).
const FD_SLACK: usize = 4;

/// The kinds of request in the mix, chosen round-robin by request number.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Echo,
    Lines,
    Fails,
    Cancelled,
    TimedOut,
    Disconnected,
    Background,
    Escapee,
    FifoOutput,
    CgroupKill,
    CgroupFreeze,
    NestedCgroup,
    CgroupSettings,
    RunnerMovedIn,
    MemoryCgroup,
}

const MIX: [Kind; 18] = [
    Kind::Echo,
    Kind::Lines,
    Kind::Echo,
    Kind::Fails,
    Kind::Cancelled,
    Kind::Echo,
    Kind::TimedOut,
    Kind::Disconnected,
    Kind::Background,
    Kind::Lines,
    Kind::Escapee,
    Kind::FifoOutput,
    Kind::CgroupKill,
    Kind::CgroupFreeze,
    Kind::NestedCgroup,
    Kind::CgroupSettings,
    Kind::RunnerMovedIn,
    Kind::MemoryCgroup,
];

/// A command with a `memory` limit that says what its memory cgroup (v1) was handed out with —
/// its limit and whether its OOM killer is on — then turns the OOM killer off and changes a
/// setting, which must never reach a later command. Where its limit is no v1 memory cgroup (a
/// pod: `RLIMIT_DATA`; cgroup v2) it says what a clean one would.
const MEMORY_CGROUP: &str = "d=$(sed -n 's/^[0-9]*:memory:\\(.*direktiv-cmd-.*-mem-.*\\)$/\\1/p' /proc/self/cgroup)\n\
     [ -n \"$d\" ] || { echo '268435456 0'; exit 0; }\n\
     m=$(grep ' - cgroup ' /proc/self/mountinfo | grep -E '[ ,]memory( |,|$)' | awk '{print $4, $5; exit}')\n\
     root=${m%% *}; [ \"$root\" = / ] && root=\n\
     f=\"${m#* }${d#$root}\"\n\
     echo \"$(cat \"$f/memory.limit_in_bytes\") $(sed -n 's/^oom_kill_disable //p' \"$f/memory.oom_control\")\"\n\
     echo 1 > \"$f/memory.oom_control\"; echo 10 > \"$f/memory.swappiness\"; true\n";

/// A command's own cgroup directory, `$CG` (beneath `$CG_MOUNT`, the cgroup2 mount); the
/// hostile commands do nothing to a cgroup where there is none they may write.
const OWN_CGROUP: &str = "CG=\"$CG_MOUNT$(sed -n 's/^0:://p' /proc/self/cgroup)\"\n\
                          case \"$CG\" in */direktiv-cmd-*) ;; *) CG=/nonexistent ;; esac\n";

/// Shared by all workers.
struct Soak {
    sidecar: FakeSidecar,
    runner: Runner,
    /// Carried by every process of every request, to find leftovers at the end.
    marker: String,
    /// Background requests also leave an orphan in a session of its own, which only an init
    /// can collect (PID 1 setup).
    orphans: bool,
    /// Descriptions of requests that did not behave.
    failures: Mutex<Vec<String>>,
    /// The runner's cgroup, where request cgroups can be made.
    sandbox: Option<CgroupSandbox>,
}

impl Soak {
    fn body(&self, commands: Value) -> Value {
        json!({"env": self.env(&self.marker), "commands": commands})
    }

    /// A request's env: the soak's mark, and where the cgroup2 mount is.
    fn env(&self, own: &str) -> Value {
        let mount = self
            .sandbox
            .as_ref()
            .map(|s| s.mount().display().to_string());
        json!({"SOAK_MARK": &self.marker, "SOAK_OWN": own,
               "CG_MOUNT": mount.unwrap_or_else(|| "/nonexistent".into())})
    }

    /// Runs request number `n`; returns a description of what went wrong, if anything.
    async fn run(&self, n: usize) -> Result<(), String> {
        let aid = format!("soak-{n}");
        match MIX[n % MIX.len()] {
            Kind::Echo => {
                let reply = self
                    .call(&aid, json!([{"command": format!("echo hello {n}")}]))
                    .await;
                expect(&reply, 200, None)?;
                expect_result(&reply, json!(format!("hello {n}")))
            }
            Kind::Lines => {
                let reply = self.call(&aid, json!([{"command": "seq 1 200"}])).await;
                expect(&reply, 200, None)?;
                let lines = self.sidecar.lines(&aid);
                let numbers = lines.iter().filter(|l| l.parse::<u32>().is_ok()).count();
                (numbers == 200)
                    .then_some(())
                    .ok_or_else(|| format!("{aid}: {numbers} of 200 lines logged"))
            }
            Kind::Fails => {
                let script = "echo oops >&2; exit 7";
                let reply = self
                    .call(&aid, json!([{"command": script, "shell": true}]))
                    .await;
                expect(&reply, 500, Some("cmd.exit.7"))
            }
            Kind::Cancelled => self.cancelled(&aid).await,
            Kind::TimedOut => {
                let reply = self
                    .call(&aid, json!([{"command": "sleep 60", "timeout": 1}]))
                    .await;
                expect(&reply, 500, Some("cmd.timeout"))
            }
            Kind::Disconnected => self.disconnected(&aid, n).await,
            Kind::Background => {
                let script = if self.orphans {
                    "setsid sh -c 'sleep 0.5' </dev/null >/dev/null 2>&1 & sleep 60 & echo bg"
                } else {
                    "sleep 60 & echo bg"
                };
                let reply = self
                    .call(&aid, json!([{"command": script, "shell": true}]))
                    .await;
                expect(&reply, 200, None)?;
                expect_result(&reply, json!("bg"))
            }
            Kind::Escapee => self.escapee(&aid, n).await,
            Kind::FifoOutput => self.fifo_output(&aid).await,
            Kind::CgroupKill => {
                let script =
                    "[ -w \"$CG/cgroup.kill\" ] && echo 1 > \"$CG/cgroup.kill\"; echo alive";
                let reply = self.call(&aid, json!([hostile(script)])).await;
                match self.sandbox {
                    Some(_) => expect(&reply, 500, Some("cmd.signal.SIGKILL")),
                    None => expect_result(&reply, json!("alive")),
                }
            }
            Kind::CgroupFreeze => {
                let script =
                    "[ -w \"$CG/cgroup.freeze\" ] && echo 1 > \"$CG/cgroup.freeze\"; sleep 5";
                let mut command = hostile(script);
                command["timeout"] = json!(1);
                let reply = self.call(&aid, json!([command])).await;
                expect(&reply, 500, Some("cmd.timeout"))
            }
            Kind::NestedCgroup => self.nested_cgroup(&aid, n).await,
            Kind::CgroupSettings => {
                // What this request's cgroup was handed out with, then changed for the next.
                let script = "v=$(cat \"$CG/cgroup.max.descendants\" 2>/dev/null || echo max)\n\
                              echo 0 > \"$CG/cgroup.max.descendants\" 2>/dev/null; echo \"$v\"";
                let reply = self.call(&aid, json!([hostile(script)])).await;
                expect(&reply, 200, None)?;
                expect_result(&reply, json!("max"))
            }
            Kind::MemoryCgroup => {
                let command = json!({"command": MEMORY_CGROUP, "shell": true,
                                     "limits": {"memory": "256Mi"}});
                let reply = self.call(&aid, json!([command])).await;
                expect(&reply, 200, None)?;
                expect_result(&reply, json!("268435456 0"))
            }
            Kind::RunnerMovedIn => {
                let script = "echo $PPID > \"$CG/cgroup.procs\" 2>/dev/null; echo moved";
                let reply = self.call(&aid, json!([hostile(script)])).await;
                expect(&reply, 200, None)?;
                expect_result(&reply, json!("moved"))
            }
        }
    }

    /// A command nests a cgroup in its own and moves a process that left its group into it:
    /// it must be gone by the time the response arrives.
    async fn nested_cgroup(&self, aid: &str, n: usize) -> Result<(), String> {
        let own = format!("{}-nested-{n}", self.marker);
        let script = "mkdir \"$CG/sub\" 2>/dev/null\n\
                      setsid sh -c 'echo $$ > \"$1/sub/cgroup.procs\" 2>/dev/null; exec sleep 60' \
                      x \"$CG\" >/dev/null 2>&1 &\n\
                      sleep 0.2; echo nested";
        let body = json!({"env": self.env(&own), "commands": [hostile(script)]});
        self.nothing_left(aid, own, body, "nested").await
    }

    /// Runs `body`, whose commands carry the mark `own`: it must answer `result`, and nothing
    /// carrying the mark may be left running by then.
    async fn nothing_left(
        &self,
        aid: &str,
        own: String,
        body: Value,
        result: &str,
    ) -> Result<(), String> {
        let reply = self.sidecar.call(&self.runner, aid, body).await;
        expect(&reply, 200, None)?;
        expect_result(&reply, json!(result))?;
        let left = tokio::task::spawn_blocking(move || procs::with_marker(&own))
            .await
            .unwrap_or_default();
        left.is_empty()
            .then_some(())
            .ok_or_else(|| format!("{aid}: left running after the response: {left:?}"))
    }

    /// A command leaves a process in a session of its own, outside its process group: it must
    /// be gone by the time the response arrives.
    async fn escapee(&self, aid: &str, n: usize) -> Result<(), String> {
        let own = format!("{}-escapee-{n}", self.marker);
        let body = json!({"env": self.env(&own),
                          "commands": [{"command": "setsid -f sleep 60; echo esc", "shell": true}]});
        self.nothing_left(aid, own, body, "esc").await
    }

    /// A FIFO as `output`: refused at once as `cmd.input`, without blocking the runner.
    async fn fifo_output(&self, aid: &str) -> Result<(), String> {
        let commands = json!([{"command": "mkfifo o"}, {"command": "true", "output": "o"}]);
        let call = self.call(aid, commands);
        let reply = tokio::time::timeout(PATIENCE, call)
            .await
            .map_err(|_| format!("{aid}: a FIFO as output got no answer"))?;
        expect(&reply, 400, Some("cmd.input"))
    }

    async fn call(&self, aid: &str, commands: Value) -> Reply {
        self.sidecar
            .call(&self.runner, aid, self.body(commands))
            .await
    }

    /// A long command cancelled with `DELETE /`; the DELETE is repeated until the request
    /// ends, since a DELETE that arrives before the request is registered cancels nothing.
    async fn cancelled(&self, aid: &str) -> Result<(), String> {
        let call = self.call(aid, json!([{"command": "sleep 60"}]));
        tokio::pin!(call);
        let reply = loop {
            tokio::select! {
                reply = &mut call => break reply,
                _ = tokio::time::sleep(Duration::from_millis(150)) => {
                    self.sidecar.cancel(&self.runner, aid).await;
                }
            }
        };
        expect(&reply, 500, Some("cmd.cancelled"))
    }

    /// A long command whose client goes away mid-request; waits until its processes are gone
    /// so the runner's in-flight count stays bounded.
    async fn disconnected(&self, aid: &str, n: usize) -> Result<(), String> {
        let own = format!("{}-{n}", self.marker);
        let body = json!({"env": {"SOAK_MARK": &self.marker, "SOAK_OWN": &own},
                          "commands": [{"command": "sleep 60"}]})
        .to_string();
        let addr = self.runner.addr();
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("{aid}: connect: {e}"))?;
        let head = format!(
            "POST / HTTP/1.1\r\nHost: {addr}\r\nDirektiv-ActionID: {aid}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream
            .write_all(format!("{head}{body}").as_bytes())
            .await
            .map_err(|e| format!("{aid}: send: {e}"))?;
        let started = tokio::task::spawn_blocking({
            let own = own.clone();
            move || {
                procs::wait_for(PATIENCE, || {
                    (!procs::with_marker(&own).is_empty()).then_some(())
                })
            }
        });
        let started = started.await.ok().flatten().is_some();
        drop(stream);
        let left = tokio::task::spawn_blocking(move || procs::wait_marker_gone(&own, PATIENCE))
            .await
            .unwrap_or_default();
        match (started, left.is_empty()) {
            (true, true) => Ok(()),
            (false, _) => Err(format!("{aid}: the command never started")),
            (true, false) => Err(format!("{aid}: left after disconnect: {left:?}")),
        }
    }
}

/// A shell command that first finds its own cgroup (`$CG`).
fn hostile(script: &str) -> Value {
    json!({"command": format!("{OWN_CGROUP}{script}"), "shell": true})
}

fn expect(reply: &Reply, status: u16, code: Option<&str>) -> Result<(), String> {
    if reply.status == status && reply.error_code().as_deref() == code {
        Ok(())
    } else {
        Err(format!("expected {status} {code:?}, got {reply:?}"))
    }
}

fn expect_result(reply: &Reply, wanted: Value) -> Result<(), String> {
    let got = reply
        .json
        .as_ref()
        .and_then(|body| body.get("commands")?.get(0)?.get("result").cloned());
    (got.as_ref() == Some(&wanted))
        .then_some(())
        .ok_or_else(|| format!("result {got:?}, wanted {wanted}"))
}

/// Runs requests `range` with `CONCURRENCY` workers pulling numbers from a shared counter.
async fn drive(soak: &Arc<Soak>, range: std::ops::Range<usize>) {
    let next = Arc::new(AtomicUsize::new(range.start));
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (soak, next, end) = (soak.clone(), next.clone(), range.end);
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    if n >= end {
                        return;
                    }
                    let ran = tokio::time::timeout(PATIENCE * 2, soak.run(n)).await;
                    let failure = match ran {
                        Ok(Ok(())) => continue,
                        Ok(Err(failure)) => failure,
                        Err(_) => format!("soak-{n}: no answer within {:?}", PATIENCE * 2),
                    };
                    soak.failures.lock().unwrap().push(failure);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("a soak worker panicked");
    }
}

/// Open fds of the runner once idle: waits for the count to stop changing (connections and
/// pipes of the last requests close shortly after their responses). The files of the cgroups
/// it keeps for reuse are left out: how many it keeps depends on the load's peaks, and at
/// exit it must keep none (`soak`).
fn settled_fds(pid: u32) -> usize {
    let open = || {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|fds| {
                fds.flatten()
                    .filter(|fd| {
                        let target = std::fs::read_link(fd.path()).unwrap_or_default();
                        !target.starts_with("/sys/fs/cgroup")
                    })
                    .count()
            })
            .unwrap_or(0)
    };
    let mut last = open();
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(250));
        let now = open();
        if now == last {
            return now;
        }
        last = now;
    }
    last
}

/// How the runner under test is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setup {
    /// As a plain child of the test.
    Plain,
    /// As PID 1 of its own pid namespace, the way a container runs it.
    Pid1,
    /// As an unprivileged pod runs it (`RunnerBuilder::in_a_pod`): no cgroup per request, its
    /// own /proc; strays are found by their mark alone.
    Pod,
}

/// The two soaks share the machine's two cores; one at a time keeps their figures honest.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "long-running; run with `make soak`"]
async fn soak_mixed_requests_leave_nothing_behind() {
    let _serial = ONE_AT_A_TIME.lock().await;
    soak(Setup::Plain).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "long-running; run with `make soak`"]
async fn soak_as_pid1_reaps_every_orphan() {
    let _serial = ONE_AT_A_TIME.lock().await;
    skip_without!(Capability::PidNamespaces);
    soak(Setup::Pid1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "long-running; run with `make soak`"]
async fn soak_in_a_pod_leaves_nothing_behind() {
    let _serial = ONE_AT_A_TIME.lock().await;
    skip_without!(Capability::PidNamespaces);
    soak(Setup::Pod).await;
}

/// A runner started under `unshare` as PID 1 of its namespace, with the pid of the server its
/// init forked and the pid below which no zombie may be left (`unshare`).
fn as_pid1(runner: Runner) -> (Runner, u32, u32) {
    let child_of = |parent: u32| {
        procs::wait_for(PATIENCE, || {
            procs::all()
                .into_iter()
                .find(|p| p.ppid == parent)
                .map(|p| p.pid)
        })
    };
    let init = child_of(runner.pid()).expect("unshare runs the init");
    let server = child_of(init).expect("the init runs the server");
    let root = runner.pid();
    (runner, server, root)
}

/// With a sandbox, the hostile kinds write cgroup files, which a request's Landlock domain (the
/// default isolation) refuses: without isolation they reach the cgroups, and the runner must
/// still end every request clean.
const WRITABLE_CGROUPS: (&str, &str) = ("CMD_ISOLATION", "off");

/// Starts the runner for `setup` (in `sandbox` when given); returns it with the pid that serves
/// (whose fds and RSS are measured) and the pid below which no zombie may be left.
fn start(
    setup: Setup,
    sidecar: &FakeSidecar,
    sandbox: Option<&CgroupSandbox>,
) -> (Runner, u32, u32) {
    let env = [("CMD_KILL_GRACE", "1s"), ("CMD_MAX_INFLIGHT", "32")];
    match setup {
        Setup::Plain => {
            let builder = match sandbox {
                Some(sandbox) => sandbox.runner(None).envs(&[WRITABLE_CGROUPS]),
                None => Runner::builder(),
            };
            let runner = builder.sidecar(sidecar).envs(&env).start();
            let pid = runner.pid();
            (runner, pid, pid)
        }
        Setup::Pid1 => {
            let binary = support::binary();
            let unshare = [
                "--pid",
                "--mount-proc",
                "--kill-child",
                binary.to_str().expect("a UTF-8 binary path"),
            ];
            let builder = match sandbox {
                Some(sandbox) => sandbox
                    .runner(Some(("unshare", &unshare)))
                    .envs(&[WRITABLE_CGROUPS]),
                None => unshare
                    .iter()
                    .fold(Runner::builder().program("unshare"), |b, a| b.arg(a)),
            };
            let runner = builder.sidecar(sidecar).envs(&env).start();
            as_pid1(runner)
        }
        Setup::Pod => {
            let runner = Runner::builder()
                .in_a_pod()
                .sidecar(sidecar)
                .envs(&env)
                .start();
            as_pid1(runner)
        }
    }
}

async fn soak(setup: Setup) {
    let requests: usize = std::env::var("SOAK_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let warm_up = 100.min(requests);
    let sidecar = FakeSidecar::start();
    // Commands that turn on their own cgroup need one the runner made: not in a pod.
    let sandbox = match setup {
        Setup::Pod => None,
        Setup::Plain | Setup::Pid1 => CgroupSandbox::new(),
    };
    let (runner, server, root) = start(setup, &sidecar, sandbox.as_ref());
    let soak = Arc::new(Soak {
        sidecar,
        runner,
        marker: procs::marker("soak"),
        orphans: setup != Setup::Plain,
        failures: Mutex::new(Vec::new()),
        sandbox,
    });

    drive(&soak, 0..warm_up).await;
    let fds_before = settled_fds(server);
    let started = Instant::now();
    let stallers = Stallers::start(soak.runner.addr());
    drive(&soak, warm_up..warm_up + requests).await;
    let took = started.elapsed();
    let (stalled, stall_problems) = stallers.finish().await;
    let leftovers = procs::wait_marker_gone(&soak.marker, PATIENCE);
    let zombies = procs::wait_no_zombies(root, PATIENCE);
    let fds_after = settled_fds(server);
    let peak = procs::peak_rss(server).unwrap_or(0);
    let failures = soak.failures.lock().unwrap().clone();

    let name = match setup {
        Setup::Plain => "soak",
        Setup::Pid1 => "soak (PID 1, with orphans)",
        Setup::Pod => "soak (in a pod: no cgroup, its own /proc)",
    };
    println!(
        "{name}: {requests} requests (+{warm_up} warm-up) in {:.1}s ({:.0} req/s), \
         concurrency {CONCURRENCY}",
        took.as_secs_f64(),
        requests as f64 / took.as_secs_f64()
    );
    println!("{name}: open fds {fds_before} after warm-up, {fds_after} at the end");
    println!("{name}: peak RSS {:.1} MiB", peak as f64 / (1 << 20) as f64);
    println!(
        "{name}: {} misbehaving requests, {} leftover processes, {} zombies",
        failures.len(),
        leftovers.len(),
        zombies.len()
    );

    assert!(
        failures.is_empty(),
        "{} requests misbehaved, first ones: {:#?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    println!("{name}: {stalled} stalled client connections, all cut off by the runner");
    assert!(
        stall_problems.is_empty(),
        "stalled clients: {:#?}",
        &stall_problems[..stall_problems.len().min(10)]
    );
    assert!(leftovers.is_empty(), "processes left behind: {leftovers:?}");
    assert!(zombies.is_empty(), "zombies left behind: {zombies:?}");
    assert!(
        fds_after <= fds_before + FD_SLACK,
        "open fds grew from {fds_before} to {fds_after}: a leak"
    );
    if let Some(sandbox) = &soak.sandbox {
        let text = std::fs::read_to_string(format!("/proc/{server}/cgroup")).unwrap_or_default();
        let path = text
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .unwrap_or("/");
        let now = sandbox.mount().join(path.trim_start_matches('/'));
        assert_eq!(now, sandbox.dir(), "the runner is back in its own cgroup");
    }
    // Stop the runner (as PID 1: through its init, as a container runtime would): no cgroup
    // of it may be left, the ones it kept for reuse included.
    let stopped = match setup {
        Setup::Plain => Some(server),
        Setup::Pid1 | Setup::Pod => procs::stat(server).map(|p| p.ppid),
    };
    if let Some(pid) = stopped {
        let _ = procs::send_signal(pid, procs::Signal::TERM);
    }
    let exited = procs::wait_for(PATIENCE, || (!procs::alive(server)).then_some(()));
    assert!(exited.is_some(), "the runner did not exit on SIGTERM");
    if let Some(sandbox) = &soak.sandbox {
        let left = sandbox.wait_request_cgroups(PATIENCE, |left| left.is_empty());
        println!(
            "{name}: {} cgroups left after the runner exited",
            left.len()
        );
        assert!(left.is_empty(), "cgroups left behind: {left:?}");
    }
    // The memory cgroups it kept for later limited commands go with it too. (As PID 1 its
    // cgroups are named after its pid in its own namespace: any runner's are looked for.)
    if let Some(dir) = cgroups::memory_dir() {
        let left = procs::wait_for(PATIENCE, || {
            cgroups::memory_cgroups_of(None, &dir)
                .is_empty()
                .then_some(())
        });
        let now = cgroups::memory_cgroups_of(None, &dir);
        println!(
            "{name}: {} memory cgroups left after the runner exited",
            now.len()
        );
        assert!(left.is_some(), "memory cgroups left behind: {now:?}");
    }
}

// --- stalled clients beside the load -----------------------------------------------------

/// How a stalled client stops: after a body's first byte (with a length, or chunked), in its
/// headers, before sending anything, or idle after one complete request.
const STALLS: [&str; 5] = ["body", "chunked", "headers", "silent", "idle"];

/// Opens one stalled connection every this often while the load runs.
const STALL_EVERY: Duration = Duration::from_millis(200);

/// The default CMD_READ_TIMEOUT, and how much later than that a stalled connection may be cut.
const STALL_CUT_WITHIN: Duration = Duration::from_secs(30 + 30);

/// Clients that open connections and stall while the soak runs. They must take no slot from
/// the load (which would then see `cmd.busy`), and the runner must cut every one of them off
/// (README "Lifecycle": read timeouts, idle connections).
struct Stallers {
    stop: Arc<std::sync::atomic::AtomicBool>,
    spawner: tokio::task::JoinHandle<Vec<tokio::task::JoinHandle<Result<(), String>>>>,
}

impl Stallers {
    fn start(addr: std::net::SocketAddr) -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let spawner = tokio::spawn(async move {
            let mut clients = Vec::new();
            let mut n = 0;
            while !stopped.load(Ordering::SeqCst) {
                clients.push(tokio::spawn(stall_once(addr, STALLS[n % STALLS.len()], n)));
                n += 1;
                tokio::time::sleep(STALL_EVERY).await;
            }
            clients
        });
        Stallers { stop, spawner }
    }

    /// Stops opening connections and waits until the runner cut off every one opened; returns
    /// how many there were and what went wrong.
    async fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        let clients = self.spawner.await.expect("the staller panicked");
        let count = clients.len();
        let mut problems = Vec::new();
        for client in clients {
            match client.await {
                Ok(Ok(())) => {}
                Ok(Err(problem)) => problems.push(problem),
                Err(panic) => problems.push(format!("a stalled client panicked: {panic}")),
            }
        }
        (count, problems)
    }
}

/// Opens one connection that stalls in the way `kind` says, then waits for the runner to
/// close it.
async fn stall_once(
    addr: std::net::SocketAddr,
    kind: &'static str,
    n: usize,
) -> Result<(), String> {
    use tokio::io::AsyncReadExt;
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("stalled {kind} {n}: cannot connect: {e}"))?;
    let head = |extra: &str| {
        format!("POST / HTTP/1.1\r\nHost: {addr}\r\nDirektiv-ActionID: stall-{n}\r\n{extra}")
    };
    let sent = match kind {
        "body" => head("Content-Length: 100\r\n\r\n{"),
        "chunked" => head("Transfer-Encoding: chunked\r\n\r\n1\r\n{\r\n"),
        "headers" => head("X-Never-Finished: yes\r\n"),
        "idle" => format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
        _ => String::new(),
    };
    stream
        .write_all(sent.as_bytes())
        .await
        .map_err(|e| format!("stalled {kind} {n}: cannot send: {e}"))?;
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(STALL_CUT_WITHIN, stream.read(&mut buf)).await {
            Err(_) => {
                return Err(format!(
                    "stalled {kind} {n}: still open after {STALL_CUT_WITHIN:?}"
                ))
            }
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(()),
            // An answer (the idle client's /healthz, a 408): wait on for the close.
            Ok(Ok(_)) => {}
        }
    }
}
