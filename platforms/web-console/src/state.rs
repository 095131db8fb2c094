//! What the console remembers for pages opened late: the latest of each part of the state, as
//! ready-made Server-Sent Event frames, and the broadcast that carries live events.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use tokio::sync::broadcast;

use crate::api::{ConsoleEvent, TransferId};

/// The frame that starts every replay: the page clears what it shows, then receives the state.
pub(crate) const RESET_FRAME: &[u8] = b"data: {\"type\":\"reset\"}\n\n";
/// A comment line that keeps idle connections open through anything that times them out.
pub(crate) const KEEPALIVE_FRAME: &[u8] = b": keepalive\n\n";

/// Bounds on what is kept for replay.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ReplayLimits {
    pub(crate) chat_lines: usize,
    pub(crate) transfers: usize,
    pub(crate) diagnostics: usize,
    pub(crate) messages: usize,
}

/// The state, the broadcast of live events, under one lock so that a new subscriber gets every
/// event exactly once: either in its replay or live.
pub(crate) struct EventHub {
    inner: Mutex<Replay>,
    live: broadcast::Sender<Bytes>,
}

#[derive(Default)]
struct Replay {
    limits: Option<ReplayLimits>,
    session: Option<Bytes>,
    connection: Option<Bytes>,
    members: Option<Bytes>,
    chat: VecDeque<Bytes>,
    transfers: Vec<(TransferId, bool, Bytes)>,
    diagnostics: VecDeque<(u32, Bytes)>,
    messages: VecDeque<Bytes>,
    ended: Option<Bytes>,
}

impl EventHub {
    pub(crate) fn new(limits: ReplayLimits, live_capacity: usize) -> Self {
        let (live, _) = broadcast::channel(live_capacity.max(1));
        EventHub { inner: Mutex::new(Replay { limits: Some(limits), ..Replay::default() }), live }
    }

    /// Records the event and sends it to every open page.
    pub(crate) fn publish(&self, event: &ConsoleEvent) {
        let Some(frame) = frame(event) else { return };
        let mut replay = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        replay.record(event, frame.clone());
        // No receiver (no page open) is not an error: the replay has it.
        let _ = self.live.send(frame);
    }

    /// The frames that bring a new page up to date, and the receiver for what follows.
    pub(crate) fn subscribe(&self) -> (Vec<Bytes>, broadcast::Receiver<Bytes>) {
        let replay = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let receiver = self.live.subscribe();
        (replay.frames(), receiver)
    }
}

impl Replay {
    fn record(&mut self, event: &ConsoleEvent, frame: Bytes) {
        let Some(limits) = self.limits else { return };
        match event {
            ConsoleEvent::Session(_) => self.session = Some(frame),
            ConsoleEvent::Members { .. } => self.members = Some(frame),
            ConsoleEvent::Connection { .. } => self.connection = Some(frame),
            ConsoleEvent::Chat(_) => push_bounded(&mut self.chat, frame, limits.chat_lines),
            ConsoleEvent::Transfer(transfer) => {
                let finished = transfer.state.is_finished();
                if let Some(slot) = self.transfers.iter_mut().find(|(id, ..)| *id == transfer.id) {
                    *slot = (transfer.id, finished, frame);
                } else {
                    self.transfers.push((transfer.id, finished, frame));
                    if self.transfers.len() > limits.transfers {
                        // Forget the oldest finished transfer first; an active one only if all are.
                        let victim = self.transfers.iter().position(|(_, finished, _)| *finished).unwrap_or(0);
                        self.transfers.remove(victim);
                    }
                }
            }
            ConsoleEvent::Diagnostics(report) => {
                if let Some(slot) = self.diagnostics.iter_mut().find(|(id, _)| *id == report.id) {
                    *slot = (report.id, frame);
                } else {
                    push_bounded(&mut self.diagnostics, (report.id, frame), limits.diagnostics);
                }
            }
            ConsoleEvent::Notice { .. } | ConsoleEvent::Error { .. } => {
                push_bounded(&mut self.messages, frame, limits.messages);
            }
            ConsoleEvent::Ended { .. } => self.ended = Some(frame),
        }
    }

    fn frames(&self) -> Vec<Bytes> {
        let mut frames = Vec::with_capacity(
            5 + self.chat.len() + self.transfers.len() + self.diagnostics.len() + self.messages.len(),
        );
        frames.push(Bytes::from_static(RESET_FRAME));
        frames.extend(self.session.iter().cloned());
        frames.extend(self.connection.iter().cloned());
        frames.extend(self.members.iter().cloned());
        frames.extend(self.chat.iter().cloned());
        frames.extend(self.transfers.iter().map(|(_, _, frame)| frame.clone()));
        frames.extend(self.diagnostics.iter().map(|(_, frame)| frame.clone()));
        frames.extend(self.messages.iter().cloned());
        frames.extend(self.ended.iter().cloned());
        frames
    }
}

fn push_bounded<T>(queue: &mut VecDeque<T>, item: T, limit: usize) {
    if limit == 0 {
        return;
    }
    while queue.len() >= limit {
        queue.pop_front();
    }
    queue.push_back(item);
}

/// One Server-Sent Event frame: `data: <json>\n\n`. Compact JSON escapes newlines inside strings,
/// so the payload is always one line.
fn frame(event: &ConsoleEvent) -> Option<Bytes> {
    let json = serde_json::to_vec(event).ok()?;
    let mut frame = Vec::with_capacity(json.len() + 8);
    frame.extend_from_slice(b"data: ");
    frame.extend_from_slice(&json);
    frame.extend_from_slice(b"\n\n");
    Some(Bytes::from(frame))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::api::{ChatLine, Direction, Transfer, TransferState};

    fn hub() -> EventHub {
        EventHub::new(ReplayLimits { chat_lines: 3, transfers: 2, diagnostics: 2, messages: 2 }, 16)
    }

    fn chat(text: &str) -> ConsoleEvent {
        ConsoleEvent::Chat(ChatLine { from: "c".into(), member: None, text: text.into(), local: false, at_ms: 0 })
    }

    fn transfer(id: u32, state: TransferState) -> ConsoleEvent {
        ConsoleEvent::Transfer(Transfer {
            id: TransferId(id),
            direction: Direction::ToCustomer,
            name: "f".into(),
            size: None,
            state,
        })
    }

    fn text(frames: &[Bytes]) -> String {
        frames.iter().map(|f| String::from_utf8_lossy(f).into_owned()).collect()
    }

    #[test]
    fn replay_keeps_the_latest_state_and_bounded_history() {
        let hub = hub();
        for i in 0..5 {
            hub.publish(&chat(&format!("line {i}")));
        }
        hub.publish(&transfer(1, TransferState::Waiting));
        hub.publish(&transfer(1, TransferState::InProgress { bytes: 9 }));
        let (frames, _) = hub.subscribe();
        let all = text(&frames);
        assert!(frames[0] == RESET_FRAME);
        assert!(!all.contains("line 1") && all.contains("line 2") && all.contains("line 4"), "{all}");
        assert!(!all.contains("waiting") && all.contains(r#""bytes":9"#), "{all}");
        assert_eq!(frames.len(), 1 + 3 + 1);
    }

    #[test]
    fn finished_transfers_are_forgotten_first() {
        let hub = hub();
        hub.publish(&transfer(1, TransferState::InProgress { bytes: 1 }));
        hub.publish(&transfer(2, TransferState::Declined));
        hub.publish(&transfer(3, TransferState::Waiting));
        let all = text(&hub.subscribe().0);
        assert!(all.contains(r#""id":1"#) && !all.contains(r#""id":2"#) && all.contains(r#""id":3"#), "{all}");
    }

    #[tokio::test]
    async fn a_subscriber_gets_each_event_once() {
        let hub = hub();
        hub.publish(&chat("before"));
        let (frames, mut live) = hub.subscribe();
        hub.publish(&chat("after"));
        assert!(text(&frames).contains("before") && !text(&frames).contains("after"));
        let next = live.recv().await.unwrap();
        assert!(String::from_utf8_lossy(&next).contains("after"));
        assert!(live.try_recv().is_err());
    }
}
