//! The order in which a command's stdout and stderr reach its logs: by when they were written,
//! as far as secrets are concerned.
//!
//! The two pipes are read side by side, so a line a command writes to stderr right after
//! declaring a secret on stdout (`::add-mask::`) may be read before the declaration. Rule: a
//! chunk read from one pipe is released (masked and logged) only once everything that was
//! waiting in the other pipe when the chunk was read has been read too, and its declarations
//! applied. Whatever the command wrote to the other pipe before it wrote the chunk was in that
//! pipe by then, so a value declared on either stream is masked in every line of either stream
//! written after the declaration. (The reader asks the kernel how much the other pipe holds,
//! `FIONREAD`, right after each read; that is the chunk's mark on the other stream.)
//!
//! Chunks leave in the order they were read. What is held is bounded by the pipes' capacity.

use std::borrow::Cow;
use std::collections::VecDeque;

/// One of a command's two output streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    Stdout = 0,
    Stderr = 1,
}

impl Stream {
    pub(crate) fn other(self) -> Stream {
        match self {
            Stream::Stdout => Stream::Stderr,
            Stream::Stderr => Stream::Stdout,
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// Chunks read but not released yet, and how far each stream has been read.
#[derive(Debug, Default)]
pub(crate) struct ReadOrder {
    held: VecDeque<Held>,
    /// Bytes read from each stream so far.
    read: [u64; 2],
    /// Streams that reached their end (or are no longer read).
    ended: [bool; 2],
}

#[derive(Debug)]
struct Held {
    stream: Stream,
    bytes: Vec<u8>,
    /// Released once the other stream has been read up to here.
    until: u64,
}

impl ReadOrder {
    /// Takes a chunk just read from `stream` while `other_waiting` bytes waited in the other
    /// pipe. Returns the chunks that may be released now, in the order they were read.
    pub(crate) fn arrive<'a>(
        &mut self,
        stream: Stream,
        bytes: &'a [u8],
        other_waiting: u64,
    ) -> Vec<(Stream, Cow<'a, [u8]>)> {
        self.read[stream.index()] += bytes.len() as u64;
        let other = stream.other().index();
        let until = self.read[other] + other_waiting;
        let mut released: Vec<(Stream, Cow<'a, [u8]>)> = self.release();
        if self.held.is_empty() && (self.ended[other] || self.read[other] >= until) {
            // The common case, one stream at a time: no copy, no wait.
            released.push((stream, Cow::Borrowed(bytes)));
        } else {
            self.held.push_back(Held {
                stream,
                bytes: bytes.to_vec(),
                until,
            });
            released.extend(self.release());
        }
        released
    }

    /// `stream` has ended: nothing held waits for it any more.
    pub(crate) fn end(&mut self, stream: Stream) -> Vec<(Stream, Cow<'static, [u8]>)> {
        self.ended[stream.index()] = true;
        self.release()
    }

    /// Releases everything still held (reading stopped).
    pub(crate) fn flush(&mut self) -> Vec<(Stream, Cow<'static, [u8]>)> {
        self.held
            .drain(..)
            .map(|held| (held.stream, Cow::Owned(held.bytes)))
            .collect()
    }

    /// The held chunks at the front whose other stream has been read far enough.
    fn release(&mut self) -> Vec<(Stream, Cow<'static, [u8]>)> {
        let mut released = Vec::new();
        while let Some(front) = self.held.front() {
            let other = front.stream.other().index();
            if !self.ended[other] && self.read[other] < front.until {
                break;
            }
            if let Some(held) = self.held.pop_front() {
                released.push((held.stream, Cow::Owned(held.bytes)));
            }
        }
        released
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(released: Vec<(Stream, Cow<'_, [u8]>)>) -> Vec<(Stream, String)> {
        released
            .into_iter()
            .map(|(s, b)| (s, String::from_utf8_lossy(&b).into_owned()))
            .collect()
    }

    #[test]
    fn a_chunk_waits_for_what_the_other_pipe_held_when_it_was_read() {
        let mut order = ReadOrder::default();
        // stderr is read first, while stdout holds a declaration of 20 bytes.
        assert!(order.arrive(Stream::Stderr, b"value=v\n", 19).is_empty());
        // Part of it: still waiting.
        assert!(order.arrive(Stream::Stdout, b"::add-mask", 0).is_empty());
        assert_eq!(
            texts(order.arrive(Stream::Stdout, b"::v4lue\n\n", 0)),
            [
                (Stream::Stderr, "value=v\n".into()),
                (Stream::Stdout, "::add-mask".into()),
                (Stream::Stdout, "::v4lue\n\n".into())
            ]
        );
    }

    #[test]
    fn one_stream_at_a_time_passes_straight_through() {
        let mut order = ReadOrder::default();
        let released = order.arrive(Stream::Stdout, b"a\n", 0);
        assert!(matches!(released[0].1, Cow::Borrowed(_)));
        assert_eq!(texts(order.arrive(Stream::Stderr, b"b\n", 0)).len(), 1);
    }

    #[test]
    fn the_end_of_the_other_stream_releases_what_waits_for_it() {
        let mut order = ReadOrder::default();
        assert!(order.arrive(Stream::Stdout, b"x", 5).is_empty());
        assert_eq!(
            texts(order.end(Stream::Stderr)),
            [(Stream::Stdout, "x".into())]
        );
        assert!(order.arrive(Stream::Stdout, b"y", 9).len() == 1);
    }

    #[test]
    fn flush_releases_everything_in_order() {
        let mut order = ReadOrder::default();
        assert!(order.arrive(Stream::Stdout, b"1", 5).is_empty());
        assert!(order.arrive(Stream::Stdout, b"2", 5).is_empty());
        assert_eq!(
            texts(order.flush()),
            [(Stream::Stdout, "1".into()), (Stream::Stdout, "2".into())]
        );
    }
}
