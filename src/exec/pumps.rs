//! A command's output and input pipes: the reader of stdout and stderr, which hands what it
//! reads to the command's output sinks in the order read, and the writer that feeds stdin.

use std::os::fd::OwnedFd;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::unix::pipe;
use tokio_util::sync::CancellationToken;

use super::order::Stream;
use super::output::{Captures, CommandOutput};

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

/// The runner's end of a command's output pipe, made non-blocking and registered with the
/// runtime: one `fcntl`, where `Receiver::from_owned_fd` would first ask the kernel what the
/// descriptor is and how it is open (`spawn` made it: the read end of a pipe, nothing else set).
fn receiver(read_end: OwnedFd) -> Option<pipe::Receiver> {
    rustix::fs::fcntl_setfl(&read_end, rustix::fs::OFlags::NONBLOCK).ok()?;
    pipe::Receiver::from_owned_fd_unchecked(read_end).ok()
}

/// Reads stdout and stderr until both end (or until told to stop), handing each read to
/// `output` with how much was waiting in the other pipe right after it (`order`).
pub(super) async fn pump(
    stdout: OwnedFd,
    stderr: OwnedFd,
    mut output: CommandOutput<'_>,
    stop: &CancellationToken,
) -> Captures {
    let pipes = [receiver(stdout), receiver(stderr)];
    let mut open = [pipes[0].is_some(), pipes[1].is_some()];
    for stream in [Stream::Stdout, Stream::Stderr] {
        if !open[stream.index()] {
            output.end(stream).await;
        }
    }
    // Most commands print a few lines: start small and grow to a pipe's full 64 KiB only
    // when reads fill the buffer (uninitialised capacity: nothing is zeroed).
    let mut buf = bytes::BytesMut::with_capacity(READ_START);
    while open.contains(&true) {
        let (stream, ready) = tokio::select! {
            () = stop.cancelled() => break,
            ready = readable(&pipes, Stream::Stdout), if open[0] => ready,
            ready = readable(&pipes, Stream::Stderr), if open[1] => ready,
        };
        let Some(pipe) = &pipes[stream.index()] else {
            continue;
        };
        buf.clear();
        // A pipe that cannot be waited on is read no more, like one that ended.
        match ready.and_then(|()| pipe.try_read_buf(&mut buf)) {
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => continue,
            Ok(0) | Err(_) => {
                open[stream.index()] = false;
                output.end(stream).await;
                continue;
            }
            Ok(n) if n == buf.capacity() && n < READ_MAX => buf.reserve(n * 4),
            Ok(_) => {}
        }
        let other = stream.other();
        let waiting = match &pipes[other.index()] {
            Some(pipe) if open[other.index()] => rustix::io::ioctl_fionread(pipe).unwrap_or(0),
            _ => 0,
        };
        output.chunk(stream, &buf, waiting).await;
    }
    output.finish().await
}

/// Waits until `stream`'s pipe can be read (or cannot be waited on).
async fn readable(
    pipes: &[Option<pipe::Receiver>; 2],
    stream: Stream,
) -> (Stream, std::io::Result<()>) {
    match &pipes[stream.index()] {
        Some(pipe) => (stream, pipe.readable().await),
        None => std::future::pending().await,
    }
}
