//! The per-connection send queues: a bounded control queue (counted in frames) and a bounded
//! data queue (counted in bytes), drained control first by one writer.
//!
//! Routing pushes into the destination's outbox and never waits: a full data queue drops the
//! frame for that destination (the engine's application layer copes with lost screen updates;
//! DERP drops too), a full control queue closes the destination, which can reconnect and resume
//! (a key update or a consent change must never vanish silently).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use crate::metrics::Metrics;

/// One whole frame, shared by every destination it is queued for.
pub(crate) type FrameBytes = Arc<[u8]>;

/// What happened to a pushed frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Queued for sending.
    Queued,
    /// The data queue was full; the frame was dropped for this destination.
    Dropped,
    /// The control queue was full; the outbox is now closed (the connection ends).
    Overflow,
    /// The outbox is closed; nothing was queued.
    Closed,
}

/// How an outbox closes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Close {
    /// Send what is queued, then end (a `Refused` notice, for example).
    AfterFlush,
    /// Discard what is queued and end now.
    Now,
}

/// Locks a mutex, ignoring poisoning: every critical section in this crate leaves its data
/// consistent before anything that could panic.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A connection's two send queues.
#[derive(Debug)]
pub(crate) struct Outbox {
    queues: Mutex<Queues>,
    ready: Notify,
    control_limit: usize,
    data_limit: usize,
    metrics: Arc<Metrics>,
}

#[derive(Debug, Default)]
struct Queues {
    control: VecDeque<FrameBytes>,
    data: VecDeque<FrameBytes>,
    data_bytes: usize,
    queued_bytes: usize,
    closing: Option<Close>,
}

impl Outbox {
    pub(crate) fn new(control_limit: usize, data_limit: usize, metrics: Arc<Metrics>) -> Arc<Outbox> {
        Arc::new(Outbox { queues: Mutex::default(), ready: Notify::new(), control_limit, data_limit, metrics })
    }

    /// Queues `frame` (control or data by its kind) without waiting.
    pub(crate) fn push(&self, frame: FrameBytes, control: bool) -> Pushed {
        let mut queues = lock(&self.queues);
        if queues.closing.is_some() {
            return Pushed::Closed;
        }
        let len = frame.len();
        if control {
            if queues.control.len() >= self.control_limit {
                self.discard(&mut queues);
                queues.closing = Some(Close::Now);
                drop(queues);
                self.ready.notify_one();
                return Pushed::Overflow;
            }
            queues.control.push_back(frame);
        } else {
            if queues.data_bytes + len > self.data_limit {
                return Pushed::Dropped;
            }
            queues.data_bytes += len;
            queues.data.push_back(frame);
        }
        queues.queued_bytes += len;
        drop(queues);
        self.metrics.queued_bytes.add(len as i64);
        self.ready.notify_one();
        Pushed::Queued
    }

    /// Closes the outbox; the writer ends once it has sent what `how` lets it send.
    pub(crate) fn close(&self, how: Close) {
        let mut queues = lock(&self.queues);
        if how == Close::Now {
            self.discard(&mut queues);
            queues.closing = Some(Close::Now);
        } else {
            queues.closing.get_or_insert(Close::AfterFlush);
        }
        drop(queues);
        self.ready.notify_one();
    }

    /// Whether both queues are empty right now.
    pub(crate) fn is_empty(&self) -> bool {
        lock(&self.queues).queued_bytes == 0
    }

    /// Whether the outbox has been closed (it accepts nothing more).
    #[cfg(test)]
    pub(crate) fn is_closed(&self) -> bool {
        lock(&self.queues).closing.is_some()
    }

    /// Waits for frames and appends them to `out`, control first, until `out` holds at least
    /// `max` bytes or the queues are empty. `false` once the outbox is closed and (for
    /// [`Close::AfterFlush`]) drained.
    pub(crate) async fn next_batch(&self, out: &mut Vec<u8>, max: usize) -> bool {
        loop {
            {
                let mut queues = lock(&self.queues);
                if queues.closing == Some(Close::Now) {
                    return false;
                }
                let mut taken = 0;
                while out.len() < max {
                    let Some(frame) = pop(&mut queues) else { break };
                    out.extend_from_slice(&frame);
                    taken += frame.len();
                }
                if taken > 0 {
                    drop(queues);
                    self.metrics.queued_bytes.add(-(taken as i64));
                    return true;
                }
                if queues.closing == Some(Close::AfterFlush) {
                    return false;
                }
            }
            // A push between the check above and this await leaves a permit: no lost wake-up.
            self.ready.notified().await;
        }
    }

    /// Waits for the next frame, control first; `None` once closed (and drained).
    pub(crate) async fn next_frame(&self) -> Option<FrameBytes> {
        loop {
            {
                let mut queues = lock(&self.queues);
                if queues.closing == Some(Close::Now) {
                    return None;
                }
                if let Some(frame) = pop(&mut queues) {
                    drop(queues);
                    self.metrics.queued_bytes.add(-(frame.len() as i64));
                    return Some(frame);
                }
                if queues.closing == Some(Close::AfterFlush) {
                    return None;
                }
            }
            self.ready.notified().await;
        }
    }

    fn discard(&self, queues: &mut Queues) {
        let queued = queues.queued_bytes;
        queues.control.clear();
        queues.data.clear();
        queues.data_bytes = 0;
        queues.queued_bytes = 0;
        self.metrics.queued_bytes.add(-(queued as i64));
    }
}

fn pop(queues: &mut Queues) -> Option<FrameBytes> {
    let frame = match queues.control.pop_front() {
        Some(frame) => frame,
        None => {
            let frame = queues.data.pop_front()?;
            queues.data_bytes -= frame.len();
            frame
        }
    };
    queues.queued_bytes -= frame.len();
    Some(frame)
}

impl Drop for Outbox {
    fn drop(&mut self) {
        let queued = lock(&self.queues).queued_bytes;
        self.metrics.queued_bytes.add(-(queued as i64));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(byte: u8, len: usize) -> FrameBytes {
        vec![byte; len].into()
    }

    #[tokio::test]
    async fn control_goes_first() {
        let metrics = Arc::new(Metrics::default());
        let outbox = Outbox::new(4, 1000, metrics.clone());
        assert_eq!(outbox.push(frame(1, 10), false), Pushed::Queued);
        assert_eq!(outbox.push(frame(2, 10), true), Pushed::Queued);
        assert_eq!(metrics.queued_bytes.get(), 20);
        assert_eq!(outbox.next_frame().await.unwrap()[0], 2);
        let mut out = Vec::new();
        assert!(outbox.next_batch(&mut out, 100).await);
        assert_eq!(out, vec![1; 10]);
        assert_eq!(metrics.queued_bytes.get(), 0);
    }

    #[tokio::test]
    async fn a_full_data_queue_drops_and_a_full_control_queue_closes() {
        let metrics = Arc::new(Metrics::default());
        let outbox = Outbox::new(2, 25, metrics.clone());
        assert_eq!(outbox.push(frame(1, 10), false), Pushed::Queued);
        assert_eq!(outbox.push(frame(1, 10), false), Pushed::Queued);
        assert_eq!(outbox.push(frame(1, 10), false), Pushed::Dropped);
        assert_eq!(outbox.push(frame(2, 5), false), Pushed::Queued, "a smaller frame still fits");
        assert_eq!(outbox.push(frame(3, 10), true), Pushed::Queued);
        assert_eq!(outbox.push(frame(3, 10), true), Pushed::Queued);
        assert_eq!(outbox.push(frame(3, 10), true), Pushed::Overflow);
        assert_eq!(outbox.push(frame(3, 10), true), Pushed::Closed);
        assert_eq!(metrics.queued_bytes.get(), 0, "an overflow discards the queues");
        assert!(outbox.next_frame().await.is_none());
    }

    #[tokio::test]
    async fn close_after_flush_sends_what_is_queued() {
        let outbox = Outbox::new(2, 100, Arc::new(Metrics::default()));
        outbox.push(frame(7, 3), true);
        outbox.close(Close::AfterFlush);
        assert_eq!(outbox.push(frame(8, 3), true), Pushed::Closed);
        assert_eq!(outbox.next_frame().await.unwrap()[0], 7);
        assert!(outbox.next_frame().await.is_none());
    }

    #[tokio::test]
    async fn a_waiting_writer_wakes_up() {
        let outbox = Outbox::new(2, 100, Arc::new(Metrics::default()));
        let waiter = {
            let outbox = outbox.clone();
            tokio::spawn(async move { outbox.next_frame().await })
        };
        tokio::task::yield_now().await;
        outbox.push(frame(9, 1), false);
        assert_eq!(waiter.await.unwrap().unwrap()[0], 9);
    }
}
