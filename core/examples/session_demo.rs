//! A complete Lifeline session in one process: a provider (the leader) and a customer join
//! through an in-memory relay with SRP-6a, exchange chat, and the customer grants, uses and
//! revokes screen viewing, then ends the session. Every frame the relay routes is printed as the
//! relay sees it: a cleartext routing header and ciphertext.
//!
//!     cargo run -p lifeline-core --example session_demo
//!
//! Demo only: the random generators are seeded from the clock. Real endpoints use the OS
//! generator or a board's TRNG.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::VecDeque;
use std::time::{SystemTime, UNIX_EPOCH};

use lifeline_core::consent::Capability;
use lifeline_core::session::{Config, Event, Pin, Session};
use lifeline_core::time::{Duration, Instant};
use lifeline_core::wire::control::ContentType;
use lifeline_core::wire::handshake::Role;
use lifeline_core::wire::{Destination, MAX_FRAME_LEN, MAX_PAYLOAD_LEN, MemberId, RoutingHeader};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

type Endpoint = Session<ChaCha20Rng, 8>;

const SESSION: u64 = 482_913_570;

struct Demo {
    now: Instant,
    endpoints: [(&'static str, Endpoint); 2],
    relay: VecDeque<(usize, Vec<u8>)>,
    frames_routed: usize,
}

impl Demo {
    /// Drains every endpoint, routes what they send (printing the relay's view), delivers, and
    /// repeats until quiet.
    fn settle(&mut self) {
        let mut frame_buf = vec![0u8; MAX_FRAME_LEN];
        let mut data_buf = vec![0u8; MAX_PAYLOAD_LEN];
        loop {
            for index in 0..self.endpoints.len() {
                let endpoint = &mut self.endpoints[index].1;
                let mut sent = Vec::new();
                while let Some(transmit) =
                    endpoint.poll_transmit(self.now, &mut frame_buf).expect("a max-size buffer fits")
                {
                    sent.push(frame_buf[..transmit.len].to_vec());
                }
                for frame in sent {
                    self.route(index, frame);
                }
                let (name, endpoint) = &mut self.endpoints[index];
                while let Some(event) = endpoint.poll_event() {
                    println!("  {name:<8} event: {}", describe(&event));
                }
            }
            let Some((to, mut frame)) = self.relay.pop_front() else { break };
            self.now = self.now + Duration::from_millis(15);
            let (name, endpoint) = &mut self.endpoints[to];
            match endpoint.handle_frame(self.now, &mut frame, &mut data_buf) {
                Ok(Some(delivery)) => println!(
                    "  {name:<8} received {:?} from m{}: {:?}",
                    delivery.content,
                    delivery.from.0,
                    String::from_utf8_lossy(&data_buf[..delivery.len])
                ),
                Ok(None) => {}
                Err(error) => println!("  {name:<8} refused a frame: {error}"),
            }
        }
    }

    /// The relay's view of a frame: the routing header, and bytes it cannot read.
    fn route(&mut self, from: usize, frame: Vec<u8>) {
        let header = RoutingHeader::parse(&frame).expect("valid header");
        let to = match header.destination {
            Destination::AllMembers => "all".to_string(),
            Destination::Member(id) => format!("m{}", id.0),
        };
        let kind = format!("{:?}", header.kind);
        // Protected frames: skip epoch and sequence, show the start of the ciphertext.
        let start = if header.kind.is_protected() { 28 } else { 16 };
        let peek: String = frame[start..frame.len().min(start + 10)].iter().map(|b| format!("{b:02x}")).collect();
        println!("  relay    | {kind:<13} {:>5} B  from m{} to {to:<3} [{peek}…]", frame.len(), header.sender.0);
        self.frames_routed += 1;
        self.relay.push_back((1 - from, frame));
    }

    fn send(&mut self, from: usize, content: ContentType, text: &str) {
        self.settle();
        let mut buf = vec![0u8; MAX_FRAME_LEN];
        let (name, endpoint) = &mut self.endpoints[from];
        match endpoint.send(self.now, Destination::AllMembers, content, text.as_bytes(), &mut buf) {
            Ok(len) => self.route(from, buf[..len].to_vec()),
            Err(error) => println!("  {name:<8} could not send {content:?}: {error}"),
        }
        self.settle();
    }
}

fn describe(event: &Event) -> String {
    match event {
        Event::MemberAnnounced { member, role, name } => format!("m{} is {name:?} ({role:?})", member.0),
        Event::ConsentRequested { from, capability } => {
            format!("PROMPT: m{} asks for \"{capability}\" (Allow / Deny?)", from.0)
        }
        Event::PeerConsent { from, granted, pending } => format!(
            "m{} has granted [{}], pending [{}]",
            from.0,
            granted.iter().map(|c| c.name()).collect::<Vec<_>>().join(", "),
            pending.iter().map(|c| c.name()).collect::<Vec<_>>().join(", ")
        ),
        Event::ConsentChanged { granted, pending } => format!(
            "consent now: granted [{}], pending [{}]",
            granted.iter().map(|c| c.name()).collect::<Vec<_>>().join(", "),
            pending.iter().map(|c| c.name()).collect::<Vec<_>>().join(", ")
        ),
        Event::DataRefused { from, content, capability } => {
            format!("REFUSED {content:?} from m{}: \"{capability}\" is not granted", from.0)
        }
        other => format!("{other:?}"),
    }
}

fn main() {
    let seed = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1);
    let now = Instant::from_secs(1);
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let pin = Pin::generate(&mut rng);
    println!("Provider creates session {SESSION}; PIN {} is generated on the provider's machine only.", pin.as_str());
    let provider: Endpoint =
        Session::new_leader(Config::new(SESSION, MemberId::LEADER, Role::Provider, "Ada (Helpdesk)"), &pin, rng, now);
    println!("Customer types the session number and the PIN it was told on the phone.\n");
    let customer: Endpoint = Session::new_member(
        Config::new(SESSION, MemberId(1), Role::Customer, "Customer"),
        pin.as_str(),
        ChaCha20Rng::seed_from_u64(seed ^ 0x5eed),
        now,
    );
    let mut demo = Demo {
        now,
        endpoints: [("provider", provider), ("customer", customer)],
        relay: VecDeque::new(),
        frames_routed: 0,
    };

    println!("== join: hello, SRP-6a challenge and proofs (M1, M2), wrapped group key");
    demo.settle();

    println!("\n== chat");
    demo.send(0, ContentType::Chat, "Hi, I'm Ada from the helpdesk. Can I look at your screen?");
    demo.send(1, ContentType::Chat, "Sure, go ahead.");

    println!("\n== the provider asks to view the screen; the customer's engine refuses to send before consent");
    demo.endpoints[0].1.request(MemberId(1), Capability::ViewScreen).unwrap();
    demo.settle();
    demo.send(1, ContentType::Screen, "<screen tile 1>");

    println!("\n== the customer clicks Allow");
    demo.endpoints[1].1.grant(Capability::ViewScreen).unwrap();
    demo.settle();
    demo.send(1, ContentType::Screen, "<screen tile 2>");

    println!("\n== the provider tries remote input it was never granted");
    demo.send(0, ContentType::Input, "<mouse click at 10,20>");

    println!("\n== the customer revokes screen viewing, then ends the session");
    demo.endpoints[1].1.revoke(Capability::ViewScreen).unwrap();
    demo.settle();
    demo.send(1, ContentType::Screen, "<screen tile 3>");
    demo.endpoints[1].1.close(demo.now);
    demo.settle();

    println!(
        "\nThe relay routed {} frames and never held a key: every payload above crossed it encrypted.",
        demo.frames_routed
    );
}
