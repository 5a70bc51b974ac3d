//! A command's output and input pipes: the pumps that read stdout and stderr into the logs and
//! the response, and the writer that feeds stdin.

use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio_util::sync::CancellationToken;

use super::Capture;
use crate::logs::LogStream;
use crate::mask::{Declarations, Masker};

/// First and largest read size of an output pipe (64 KiB is a Linux pipe's default capacity).
const READ_START: usize = 4 * 1024;
const READ_MAX: usize = 64 * 1024;

/// How long output is still read after a command's main process exited while something else
/// (a background child) holds its stdout/stderr open.
pub(super) const LINGER: Duration = Duration::from_secs(1);

/// Runs `work` (stopping a process group) while the pumps keep reading: a command stopped in
/// the middle of its output must not block on a full pipe instead of exiting.
pub(super) async fn with_pumps<W, P, T, R>(
    work: W,
    pumps: &mut std::pin::Pin<&mut P>,
    drained: &mut Option<T>,
) where
    W: std::future::Future<Output = R>,
    P: std::future::Future<Output = T>,
{
    tokio::pin!(work);
    loop {
        tokio::select! {
            _ = &mut work => return,
            captures = pumps.as_mut(), if drained.is_none() => *drained = Some(captures),
        }
    }
}

/// Gives the pumps LINGER to drain what is left, then stops them.
pub(super) async fn finish_pumps<F, T>(
    pumps: &mut std::pin::Pin<&mut F>,
    stop: &CancellationToken,
) -> T
where
    F: std::future::Future<Output = T>,
{
    if let Ok(done) = tokio::time::timeout(LINGER, pumps.as_mut()).await {
        return done;
    }
    stop.cancel();
    pumps.as_mut().await
}

pub(super) async fn feed_stdin(mut sender: pipe::Sender, data: Vec<u8>) {
    // A command that exits without reading its stdin closes the pipe: that is not an error.
    let _ = sender.write_all(&data).await;
}

/// Reads one output pipe until EOF (or until told to stop), feeding the logs and the captures.
/// Secrets the command declares are added to `secrets` before the read that declares them is
/// logged, also when the command is `silent`.
pub(super) async fn pump(
    fd: std::os::fd::OwnedFd,
    mut capture: Capture,
    logs: Option<&LogStream>,
    secrets: &Masker,
    combined: &Mutex<Capture>,
    stop: &CancellationToken,
) -> Capture {
    let mut framer = logs.map(LogStream::framer);
    let mut declarations = Declarations::default();
    {
        let Ok(mut receiver) = pipe::Receiver::from_owned_fd(fd) else {
            return capture;
        };
        // Most commands print a few lines: start small and grow to a pipe's full 64 KiB only
        // when reads fill the buffer (uninitialised capacity: nothing is zeroed).
        let mut buf = bytes::BytesMut::with_capacity(READ_START);
        loop {
            buf.clear();
            let read = tokio::select! {
                read = receiver.read_buf(&mut buf) => read,
                () = stop.cancelled() => break,
            };
            match read {
                Ok(0) | Err(_) => break,
                Ok(n) if n == buf.capacity() && n < READ_MAX => buf.reserve(n * 4),
                Ok(_) => {}
            }
            let chunk = &buf[..];
            declarations.scan(chunk, secrets);
            capture.push(chunk);
            crate::sync::lock(combined).push(chunk);
            if let Some(framer) = framer.as_mut() {
                framer.write(chunk).await;
            }
        }
        declarations.finish(secrets);
        if let Some(framer) = framer {
            framer.close().await;
        }
        capture
    }
}
