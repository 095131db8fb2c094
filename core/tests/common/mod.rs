//! A deterministic in-memory simulation of a session: endpoints, a relay that routes by the
//! cleartext header (as the real relay does, with core's routing parser), virtual time and
//! seeded randomness. Optional hooks let a test play a hostile relay.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;

use lifeline_core::session::{Config, Delivery, Event, Pin, Session};
use lifeline_core::time::{Duration, Instant};
use lifeline_core::wire::control::ContentType;
use lifeline_core::wire::handshake::Role;
use lifeline_core::wire::{Destination, MAX_FRAME_LEN, MAX_PAYLOAD_LEN, MemberId, RoutingHeader};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

pub const SESSION: u64 = 123_456_789;

pub type TestSession = Session<ChaCha20Rng, 8>;

pub struct Node {
    pub session: TestSession,
    pub connected: bool,
    pub delivered: Vec<(MemberId, ContentType, Vec<u8>)>,
    pub events: Vec<Event>,
    pub refused_frames: usize,
}

/// What a hostile relay does to one frame in transit.
pub enum Tamper {
    Pass,
    Drop,
    Replace(Vec<u8>),
    /// Deliver the frame and an extra copy (replay).
    Duplicate,
}

/// A hostile relay's decision for each routed frame.
pub type TamperHook = Box<dyn FnMut(&RoutingHeader, &[u8]) -> Tamper>;

pub struct Sim {
    pub now: Instant,
    pub latency: Duration,
    pub nodes: Vec<Node>,
    in_flight: VecDeque<(Instant, usize, Vec<u8>)>,
    /// Every frame the relay routed, as it saw it.
    pub relayed: Vec<Vec<u8>>,
    pub tamper: Option<TamperHook>,
}

impl Sim {
    pub fn new() -> Self {
        Sim {
            now: Instant::from_secs(1_000),
            latency: Duration::from_millis(20),
            nodes: Vec::new(),
            in_flight: VecDeque::new(),
            relayed: Vec::new(),
            tamper: None,
        }
    }

    /// Adds the leader; returns the PIN it generated.
    pub fn add_leader(&mut self, seed: u64) -> Pin {
        self.add_leader_with(seed, |_| {})
    }

    pub fn add_leader_with(&mut self, seed: u64, tweak: impl FnOnce(&mut Config)) -> Pin {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let pin = Pin::generate(&mut rng);
        let mut config = Config::new(SESSION, MemberId::LEADER, Role::Provider, "Ada (Helpdesk)");
        tweak(&mut config);
        let session = Session::new_leader(config, &pin, rng, self.now);
        self.push(session);
        pin
    }

    pub fn add_member(&mut self, id: u8, role: Role, pin: &str, seed: u64) -> usize {
        self.add_member_with(id, role, pin, seed, |_| {})
    }

    pub fn add_member_with(
        &mut self,
        id: u8,
        role: Role,
        pin: &str,
        seed: u64,
        tweak: impl FnOnce(&mut Config),
    ) -> usize {
        let name = match role {
            Role::Customer => "Customer",
            _ => "Second provider",
        };
        let mut config = Config::new(SESSION, MemberId(id), role, name);
        tweak(&mut config);
        let session = Session::new_member(config, pin, ChaCha20Rng::seed_from_u64(seed), self.now);
        self.push(session)
    }

    fn push(&mut self, session: TestSession) -> usize {
        self.nodes.push(Node {
            session,
            connected: true,
            delivered: Vec::new(),
            events: Vec::new(),
            refused_frames: 0,
        });
        self.nodes.len() - 1
    }

    pub fn node(&self, id: u8) -> &Node {
        self.nodes.iter().find(|n| n.session.local_id() == MemberId(id)).expect("no such node")
    }

    pub fn node_mut(&mut self, id: u8) -> &mut Node {
        self.nodes.iter_mut().find(|n| n.session.local_id() == MemberId(id)).expect("no such node")
    }

    pub fn session(&mut self, id: u8) -> &mut TestSession {
        &mut self.node_mut(id).session
    }

    /// Drains every node's outputs into the relay.
    pub fn flush(&mut self) {
        let mut buf = vec![0u8; MAX_FRAME_LEN];
        for index in 0..self.nodes.len() {
            if !self.nodes[index].connected {
                continue;
            }
            loop {
                let now = self.now;
                match self.nodes[index].session.poll_transmit(now, &mut buf) {
                    Ok(Some(t)) => {
                        let frame = buf[..t.len].to_vec();
                        self.route(index, frame);
                    }
                    Ok(None) => break,
                    Err(e) => panic!("poll_transmit with a max-size buffer failed: {e}"),
                }
            }
            while let Some(event) = self.nodes[index].session.poll_event() {
                self.nodes[index].events.push(event);
            }
        }
    }

    /// Sends application data from node `from` (drains control first, as the contract says).
    pub fn send(
        &mut self,
        from: u8,
        destination: Destination,
        content: ContentType,
        payload: &[u8],
    ) -> Result<(), lifeline_core::session::SendError> {
        self.flush();
        let mut buf = vec![0u8; MAX_FRAME_LEN];
        let now = self.now;
        let index = self.index_of(from);
        let len = self.nodes[index].session.send(now, destination, content, payload, &mut buf)?;
        self.route(index, buf[..len].to_vec());
        Ok(())
    }

    /// Injects raw bytes as if the relay delivered them to node `to`.
    pub fn inject(&mut self, to: u8, frame: Vec<u8>) {
        let index = self.index_of(to);
        self.in_flight.push_back((self.now + self.latency, index, frame));
    }

    pub fn index_of(&self, id: u8) -> usize {
        self.nodes.iter().position(|n| n.session.local_id() == MemberId(id)).expect("no such node")
    }

    fn route(&mut self, from: usize, frame: Vec<u8>) {
        let header = RoutingHeader::parse(&frame).expect("endpoints emit valid headers");
        self.relayed.push(frame.clone());
        let action = match &mut self.tamper {
            Some(hook) => hook(&header, &frame),
            None => Tamper::Pass,
        };
        let copies: Vec<Vec<u8>> = match action {
            Tamper::Pass => vec![frame],
            Tamper::Drop => vec![],
            Tamper::Replace(f) => vec![f],
            Tamper::Duplicate => vec![frame.clone(), frame],
        };
        let deliver_at = self.now + self.latency;
        for (index, node) in self.nodes.iter().enumerate() {
            if index == from || !node.connected {
                continue;
            }
            let id = node.session.local_id();
            let wanted = match header.destination {
                Destination::AllMembers => true,
                Destination::Member(to) => to == id,
            };
            if wanted {
                for copy in &copies {
                    self.in_flight.push_back((deliver_at, index, copy.clone()));
                }
            }
        }
    }

    /// Runs until nothing is in flight and no timer is due before `until`.
    pub fn run_until(&mut self, until: Instant) {
        let mut out = vec![0u8; MAX_PAYLOAD_LEN];
        loop {
            self.flush();
            let next_delivery = self.in_flight.iter().map(|(at, _, _)| *at).min();
            let next_timer = self.nodes.iter().filter(|n| n.connected).filter_map(|n| n.session.poll_timeout()).min();
            let next = match (next_delivery, next_timer) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(t) => t,
                    None => break,
                },
            };
            if next > until {
                self.now = until;
                break;
            }
            self.now = self.now.max(next);
            let now = self.now;
            // Deliver everything due now, in order.
            let mut due = Vec::new();
            self.in_flight.retain(|(at, index, frame)| {
                if *at <= now {
                    due.push((*index, frame.clone()));
                    false
                } else {
                    true
                }
            });
            for (index, mut frame) in due {
                let node = &mut self.nodes[index];
                if !node.connected {
                    continue;
                }
                match node.session.handle_frame(now, &mut frame, &mut out) {
                    Ok(Some(Delivery { from, content, len })) => {
                        node.delivered.push((from, content, out[..len].to_vec()))
                    }
                    Ok(None) => {}
                    Err(_) => node.refused_frames += 1,
                }
            }
            for node in self.nodes.iter_mut().filter(|n| n.connected) {
                if node.session.poll_timeout().is_some_and(|t| t <= now) {
                    node.session.handle_timeout(now);
                }
            }
        }
        self.flush();
    }

    /// Runs for `duration` of virtual time.
    pub fn run_for(&mut self, duration: Duration) {
        let until = self.now + duration;
        self.run_until(until);
    }

    /// The relay reports node `id` gone and stops routing to it.
    pub fn disconnect(&mut self, id: u8) {
        let index = self.index_of(id);
        self.nodes[index].connected = false;
        let now = self.now;
        for node in self.nodes.iter_mut().filter(|n| n.connected) {
            node.session.handle_peer_disconnected(now, MemberId(id));
        }
    }

    pub fn events(&self, id: u8) -> &[Event] {
        &self.node(id).events
    }

    pub fn take_events(&mut self, id: u8) -> Vec<Event> {
        std::mem::take(&mut self.node_mut(id).events)
    }
}
