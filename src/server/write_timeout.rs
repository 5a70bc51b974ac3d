//! A connection whose writes give up on a client that stopped reading.
//!
//! hyper has a timeout for reading a request's headers but none for writing a response: a
//! client that sends requests and never reads the answers would keep each connection, and
//! the response buffered in it (megabytes: every command's stdout twice), for as long as the
//! process lives. Wrapped in [`WriteTimeout`], a write that makes no progress for the limit
//! fails with `TimedOut`, which ends the connection.

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// `inner`, with writes that fail after `limit` without progress.
pub(crate) struct WriteTimeout<T> {
    inner: T,
    limit: Duration,
    /// Runs while a write waits; reset by every write that goes through.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<T> WriteTimeout<T> {
    pub(crate) fn new(inner: T, limit: Duration) -> Self {
        WriteTimeout {
            inner,
            limit,
            stalled: None,
        }
    }

    /// Passes a finished write through; for a pending one, fails once the limit is over.
    fn watch<R>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        if poll.is_ready() {
            self.stalled = None;
            return poll;
        }
        let limit = self.limit;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client did not read the response",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteTimeout<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteTimeout<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, poll)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_reader_that_stops_ends_the_writer_after_the_limit() {
        let (near, mut far) = tokio::io::duplex(1024);
        let mut writer = WriteTimeout::new(near, Duration::from_millis(200));
        let started = std::time::Instant::now();
        let error = writer
            .write_all(&[b'x'; 64 << 10])
            .await
            .expect_err("nobody reads");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert!(started.elapsed() < Duration::from_secs(5));
        // What fitted is there to read.
        let mut first = [0u8; 16];
        far.read_exact(&mut first).await.expect("read");
    }

    #[tokio::test]
    async fn a_slow_reader_that_keeps_reading_is_waited_for() {
        let (near, mut far) = tokio::io::duplex(1024);
        let mut writer = WriteTimeout::new(near, Duration::from_millis(200));
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            let mut buf = [0u8; 512];
            while all.len() < 16 << 10 {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let n = far.read(&mut buf).await.expect("read");
                all.extend_from_slice(&buf[..n]);
            }
            all.len()
        });
        // 16 KiB at about 25 KiB/s: well over the limit in all, never stalled for as long.
        writer.write_all(&[b'x'; 16 << 10]).await.expect("written");
        assert_eq!(reader.await.expect("reader"), 16 << 10);
    }
}
