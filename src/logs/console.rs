//! Where lines go when they do not go to the sidecar: the container's stdout.
//!
//! A trait rather than a direct `stdout()` call so the decision to fall back (and what is
//! written) can be checked without capturing the process's own stdout.

/// A sink for whole lines.
pub trait Console: Send + Sync + 'static {
    /// Writes complete lines (each ending in `\n`) in one piece, so that the lines of requests
    /// running at the same time never interleave within a line. Called from a blocking thread;
    /// may wait briefly for a slow reader, never for one that stopped reading.
    fn write_lines(&self, lines: Vec<u8>);
}

/// The container's stdout, which Kubernetes collects as the pod's log. Lines nobody reads are
/// dropped and counted (`crate::stdio`), so a full pipe never holds up a request.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stdout;

impl Console for Stdout {
    fn write_lines(&self, lines: Vec<u8>) {
        crate::stdio::stdout().write_waiting(lines);
    }
}

/// The process's stderr: where `direktiv-cmd run` shows command output, keeping stdout for
/// the response JSON.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stderr;

impl Console for Stderr {
    fn write_lines(&self, lines: Vec<u8>) {
        crate::stdio::stderr().write_waiting(lines);
    }
}
