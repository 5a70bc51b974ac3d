//! The bounded, coalescing queue between a request's output pipes and its log delivery.
//!
//! Lines are stored already joined: the queue is a list of [`Message`]s, each one POST body of
//! newline-joined lines of at most [`LOG_MESSAGE_CAP`] bytes. New lines are appended to the last
//! message while it has room, so whatever piles up while the sender waits on the endpoint leaves
//! in as few POSTs as the cap allows, and appending a line costs a `memcpy`, not an allocation.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::direktiv::LOG_MESSAGE_CAP;

/// How many bytes of one request's lines may wait for the sender before writers are held back.
pub(crate) const QUEUE_BOUND: usize = 2 * LOG_MESSAGE_CAP;

/// One log message: lines joined by `\n`, never longer than [`LOG_MESSAGE_CAP`].
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Message {
    /// The POST body.
    pub(crate) body: Vec<u8>,
    /// How many lines (or pieces of an over-long line) the body carries; at least one.
    pub(crate) lines: u64,
}

impl Message {
    /// Appends `other` after a `\n` when the result stays within the cap; gives it back if not.
    fn absorb(&mut self, other: Message) -> Option<Message> {
        if self.body.len() + 1 + other.body.len() > LOG_MESSAGE_CAP {
            return Some(other);
        }
        self.body.push(b'\n');
        self.body.extend_from_slice(&other.body);
        self.lines += other.lines;
        None
    }

    /// Appends `count` lines (joined by `\n`) after a `\n` when they fit within the cap.
    fn append_lines(&mut self, lines: &[u8], count: u64) -> bool {
        if self.body.len() + 1 + lines.len() > LOG_MESSAGE_CAP {
            return false;
        }
        self.body.push(b'\n');
        self.body.extend_from_slice(lines);
        self.lines += count;
        true
    }
}

/// Lines collected outside the queue's lock (one pipe read, or one runner message), so that they
/// enter the queue under a single lock.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    messages: Vec<Message>,
    /// Capacity for the first message, so a typical pipe read costs one allocation.
    size_hint: usize,
}

impl Batch {
    /// An empty batch expecting about `size_hint` bytes of lines.
    pub(crate) fn with_size_hint(size_hint: usize) -> Self {
        Batch {
            messages: Vec::new(),
            size_hint: size_hint.min(LOG_MESSAGE_CAP),
        }
    }

    /// Adds one line, which must not exceed [`LOG_MESSAGE_CAP`]. An empty line is dropped:
    /// Direktiv logs nothing for it, and every line enters the queue here, so it is dropped
    /// the same way whether it would be posted alone or joined with others.
    pub(crate) fn push_line(&mut self, line: &[u8]) {
        if !line.is_empty() {
            self.push_lines(line, 1);
        }
    }

    /// Adds `count` finished lines at once, joined by `\n` as they are in `lines`: none of them
    /// empty, all of them together no longer than [`LOG_MESSAGE_CAP`]. They stay together in
    /// one message: one copy for a whole pipe read of short lines.
    pub(crate) fn push_lines(&mut self, lines: &[u8], count: u64) {
        debug_assert!(lines.len() <= LOG_MESSAGE_CAP && count > 0);
        if let Some(last) = self.messages.last_mut() {
            if last.append_lines(lines, count) {
                return;
            }
        }
        let mut body = Vec::with_capacity(self.size_hint.max(lines.len()));
        body.extend_from_slice(lines);
        self.messages.push(Message { body, lines: count });
    }

    /// True when no line was added.
    pub(crate) fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// The lines in this batch.
    #[cfg(test)]
    pub(crate) fn into_messages(self) -> Vec<Message> {
        self.messages
    }
}

/// Everything behind the queue's lock.
#[derive(Debug, Default)]
struct State {
    messages: VecDeque<Message>,
    /// Bytes of all queued bodies (the bound applies to this).
    bytes: usize,
    /// Set when the last handle of the request is gone: the sender drains and stops.
    closed: bool,
    /// The sender took a message and has not asked for the next one: it is being delivered.
    in_flight: bool,
    /// The most bytes ever queued at once (lets tests check the bound).
    peak: usize,
}

impl State {
    /// Appends one message, merging it into the last queued one when there is room.
    fn append(&mut self, message: Message) {
        let added = self.added_size(message.body.len());
        let leftover = match self.messages.back_mut() {
            Some(last) => last.absorb(message),
            None => Some(message),
        };
        if let Some(message) = leftover {
            self.messages.push_back(message);
        }
        self.bytes += added;
        self.peak = self.peak.max(self.bytes);
    }

    /// Nothing queued and nothing being delivered.
    fn is_idle(&self) -> bool {
        self.messages.is_empty() && !self.in_flight
    }

    /// How much a body of `len` bytes adds to the queue: one more for the `\n` when it joins the
    /// last queued message.
    fn added_size(&self, len: usize) -> usize {
        match self.messages.back() {
            Some(last) if last.body.len() + 1 + len <= LOG_MESSAGE_CAP => len + 1,
            _ => len,
        }
    }

    /// Whether a body of `len` bytes may enter without passing the bound. An empty queue always
    /// takes a message (at most the cap), so no message can wait forever.
    fn has_room_for(&self, len: usize) -> bool {
        self.bytes == 0 || self.bytes + self.added_size(len) <= QUEUE_BOUND
    }
}

/// The queue of one request, shared by its `LogStream` handles, its framers and its sender.
#[derive(Default)]
pub(crate) struct Queue {
    state: Mutex<State>,
    /// What starts the sender, until the first message is queued (or `start_now`): one
    /// wake-up of the delivery thread then brings the sender with its first message, where
    /// starting it at once took two (its start, then the message). Held while it runs, so
    /// that `start_now` returns only once a start another thread began is done.
    starter: Mutex<Option<Starter>>,
    /// Wakes the sender: lines arrived or the queue closed. Single consumer, so `notify_one`'s
    /// stored permit makes a wake-up between the check and the wait impossible to lose.
    work: Notify,
    /// Wakes writers held back by the bound after the sender took a message.
    space: Notify,
}

/// Starts a request's sender (`Queue::start_with`).
pub(crate) type Starter = Box<dyn FnOnce() + Send>;

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Queue {
    /// Locks the state (a poisoned lock is recovered: `crate::sync`).
    fn lock(&self) -> MutexGuard<'_, State> {
        crate::sync::lock(&self.state)
    }

    /// `starter` starts the sender once the first message is queued, or at `start_now`. The
    /// starter holds the sender, which holds this queue: taking it (or `close` dropping it)
    /// ends that cycle.
    pub(crate) fn start_with(&self, starter: Starter) {
        *crate::sync::lock(&self.starter) = Some(starter);
    }

    /// Starts the sender unless it was started (or was not needed: the queue closed empty);
    /// once this returns, every start is complete.
    pub(crate) fn start_now(&self) {
        let mut starter = crate::sync::lock(&self.starter);
        if let Some(start) = starter.take() {
            start();
        }
    }

    /// Queues a batch at once, ignoring the bound: for the runner's own short messages, which
    /// come from synchronous code that cannot wait.
    pub(crate) fn push_now(&self, batch: Batch) {
        if batch.is_empty() {
            return;
        }
        {
            let mut state = self.lock();
            for message in batch.messages {
                state.append(message);
            }
        }
        self.work.notify_one();
        self.start_now();
    }

    /// Queues a batch, waiting for the sender whenever the next message would take the queue
    /// past [`QUEUE_BOUND`] (backpressure on the command's output pipe).
    pub(crate) async fn push(&self, batch: Batch) {
        let mut pending = batch.messages.into_iter().peekable();
        while pending.peek().is_some() {
            let space = self.space.notified();
            tokio::pin!(space);
            // Registered before the check, so the sender's wake-up cannot slip in between.
            space.as_mut().enable();
            let queued_any = {
                let mut state = self.lock();
                let mut queued_any = false;
                while let Some(message) = pending.next_if(|m| state.has_room_for(m.body.len())) {
                    state.append(message);
                    queued_any = true;
                }
                queued_any
            };
            if queued_any {
                self.work.notify_one();
                self.start_now();
            }
            if pending.peek().is_some() {
                space.await;
            }
        }
    }

    /// Takes the oldest message, waiting for one; `None` once the queue is closed and empty.
    /// Asking for the next message says the one taken before has been dealt with.
    pub(crate) async fn next(&self) -> Option<Message> {
        loop {
            {
                let mut state = self.lock();
                state.in_flight = false;
                if let Some(message) = state.messages.pop_front() {
                    state.bytes -= message.body.len();
                    state.in_flight = true;
                    drop(state);
                    self.space.notify_waiters();
                    return Some(message);
                }
                if state.closed {
                    return None;
                }
            }
            self.work.notified().await;
        }
    }

    /// No more lines will come: the sender stops once the queue is empty.
    pub(crate) fn close(&self) {
        let empty = {
            let mut state = self.lock();
            state.closed = true;
            state.messages.is_empty()
        };
        self.work.notify_one();
        if empty {
            // Nothing was ever queued (a message starts the sender): none is needed.
            drop(crate::sync::lock(&self.starter).take());
        }
    }

    /// Whether every line is out: the queue is closed, empty, and no message is being
    /// delivered. Nothing is left for the sender to do then but notice the close.
    pub(crate) fn is_drained(&self) -> bool {
        let state = self.lock();
        state.closed && state.is_idle()
    }

    /// Nothing queued and nothing being delivered.
    #[cfg(test)]
    pub(crate) fn is_idle(&self) -> bool {
        self.lock().is_idle()
    }

    /// How many messages wait for the sender.
    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        self.lock().messages.len()
    }

    /// The most bytes ever queued at once.
    #[cfg(test)]
    pub(crate) fn peak(&self) -> usize {
        self.lock().peak
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    fn batch_of(lines: &[&[u8]]) -> Batch {
        let mut batch = Batch::with_size_hint(64);
        lines.iter().for_each(|line| batch.push_line(line));
        batch
    }

    #[test]
    fn batch_joins_lines_until_the_cap() {
        let big = vec![b'x'; LOG_MESSAGE_CAP - 2];
        let messages = batch_of(&[b"a", &big, b"b", b"c"]).into_messages();
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0].lines, 2);
        assert_eq!(messages[0].body.len(), LOG_MESSAGE_CAP);
        assert_eq!(messages[1].body, b"b\nc");
        assert_eq!(messages[1].lines, 2);
    }

    #[test]
    fn empty_lines_never_enter_a_batch() {
        assert!(batch_of(&[b"", b""]).is_empty());
        let messages = batch_of(&[b"", b"a", b"", b"", b"b", b""]).into_messages();
        assert_eq!(
            messages,
            [Message {
                body: b"a\nb".to_vec(),
                lines: 2
            }]
        );
    }

    #[tokio::test]
    async fn queued_batches_coalesce_in_order() {
        let queue = Queue::default();
        queue.push(batch_of(&[b"one", b"two"])).await;
        queue.push_now(batch_of(&[b"three"]));
        queue.push(batch_of(&[b"four"])).await;
        queue.close();
        let message = queue.next().await.unwrap();
        assert_eq!(message.body, b"one\ntwo\nthree\nfour");
        assert_eq!(message.lines, 4);
        assert!(queue.next().await.is_none());
    }

    #[tokio::test]
    async fn writers_wait_at_the_bound_and_resume() {
        let queue = Arc::new(Queue::default());
        let line = vec![b'y'; LOG_MESSAGE_CAP];
        let writer = {
            let queue = queue.clone();
            tokio::spawn(async move {
                for _ in 0..6 {
                    queue.push(batch_of(&[&line])).await;
                }
                queue.close();
            })
        };
        // Without a consumer the writer stalls once the bound is reached.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!writer.is_finished());
        assert!(queue.peak() <= QUEUE_BOUND);
        let mut received = 0;
        while let Some(message) = tokio::time::timeout(Duration::from_secs(30), queue.next())
            .await
            .unwrap()
        {
            assert_eq!(message.body.len(), LOG_MESSAGE_CAP);
            received += message.lines;
        }
        assert_eq!(received, 6);
        writer.await.unwrap();
        assert!(queue.peak() <= QUEUE_BOUND);
    }
}
