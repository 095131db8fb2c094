//! Unit tests of the session endpoint, grouped by the state under test. Behaviour across two and
//! three endpoints (joins, consent, rekeys, a hostile relay) is in `tests/simulation.rs`.

extern crate std;
use std::vec::Vec;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use super::*;
use crate::time::Duration;
use crate::wire::{MAX_FRAME_LEN, MAX_PAYLOAD_LEN};

type TestSession = Session<ChaCha20Rng, 4>;
const SESSION: u64 = 4242;

fn now() -> Instant {
    Instant::from_secs(100)
}

fn leader() -> (TestSession, Pin) {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let pin = Pin::generate(&mut rng);
    let session = Session::new_leader(Config::new(SESSION, MemberId::LEADER, Role::Provider, "Ada"), &pin, rng, now());
    (session, pin)
}

fn member(pin: &str) -> TestSession {
    Session::new_member(
        Config::new(SESSION, MemberId(1), Role::Customer, "Cy"),
        pin,
        ChaCha20Rng::seed_from_u64(2),
        now(),
    )
}

fn drain(session: &mut TestSession) -> Vec<Vec<u8>> {
    let mut buf = [0u8; MAX_FRAME_LEN];
    let mut frames = Vec::new();
    while let Ok(Some(t)) = session.poll_transmit(now(), &mut buf) {
        frames.push(buf[..t.len].to_vec());
    }
    frames
}

/// Delivers every frame from `from` to `to`; returns how many were accepted.
fn deliver(from: &mut TestSession, to: &mut TestSession) -> usize {
    let mut out = [0u8; MAX_PAYLOAD_LEN];
    drain(from).into_iter().filter(|frame| to.handle_frame(now(), &mut frame.clone(), &mut out).is_ok()).count()
}

fn established() -> (TestSession, TestSession) {
    let (mut leader, pin) = leader();
    let mut member = member(pin.as_str());
    for _ in 0..4 {
        deliver(&mut member, &mut leader);
        deliver(&mut leader, &mut member);
    }
    assert!(member.is_established());
    (leader, member)
}

fn events(session: &mut TestSession) -> Vec<Event> {
    core::iter::from_fn(|| session.poll_event()).collect()
}

// ---- member: awaiting the challenge ------------------------------------------------------

#[test]
fn a_member_reset_in_place_is_a_new_member() {
    // Reset from a closed engine and from one that was established (keys, a peer), then closed.
    let config = || Config::new(SESSION, MemberId(1), Role::Customer, "Cy");
    let from_closed: TestSession = Session::closed(config(), ChaCha20Rng::seed_from_u64(9), now());
    assert!(from_closed.end().is_some());
    let (_, mut used) = established();
    used.close(now());
    let _ = drain(&mut used);
    let _ = events(&mut used);
    assert!(used.end().is_some());
    for mut session in [from_closed, used] {
        let (mut leader, pin) = leader();
        session.reset_member(config(), pin.as_str(), ChaCha20Rng::seed_from_u64(2), now());
        assert!(session.end().is_none());
        assert!(!session.is_established());
        assert_eq!(session.stats(), Stats::default());
        assert!(session.poll_event().is_none());
        // The same frames, byte for byte, as a member made with `new_member` sends.
        let hello = drain(&mut session);
        assert_eq!(hello, drain(&mut member(pin.as_str())));
        // And it joins.
        let mut out = [0u8; MAX_PAYLOAD_LEN];
        for mut frame in hello {
            assert!(leader.handle_frame(now(), &mut frame, &mut out).is_ok());
        }
        for _ in 0..4 {
            deliver(&mut leader, &mut session);
            deliver(&mut session, &mut leader);
        }
        assert!(session.is_established());
    }
}

#[test]
fn a_member_starts_with_exactly_one_hello_to_the_leader() {
    let mut member = member("12345678");
    let frames = drain(&mut member);
    assert_eq!(frames.len(), 1);
    let header = RoutingHeader::parse(&frames[0]).unwrap();
    assert_eq!((header.kind, header.destination), (FrameKind::Handshake, Destination::Member(MemberId::LEADER)));
    assert_eq!(HandshakeRepr::parse(&frames[0][HEADER_LEN..], None), Some(HandshakeRepr::hello(Role::Customer)));
    assert_eq!(member.poll_timeout(), Some(now() + HELLO_RETRY), "the hello is repeated until the challenge comes");
}

#[test]
fn nothing_can_be_sent_before_the_join_completes() {
    let mut member = member("12345678");
    let mut out = [0u8; 256];
    assert_eq!(
        member.send(now(), Destination::AllMembers, ContentType::Chat, b"hi", &mut out),
        Err(SendError::NotEstablished)
    );
    assert_eq!(member.request(MemberId::LEADER, Capability::ViewScreen), Err(SendError::NotEstablished));
}

#[test]
fn a_challenge_from_a_non_leader_is_ignored() {
    let (mut leader, pin) = leader();
    let mut member = member(pin.as_str());
    deliver(&mut member, &mut leader);
    let mut challenge = drain(&mut leader).remove(0);
    challenge[12] = 3; // claims to come from member 3
    let mut out = [0u8; MAX_PAYLOAD_LEN];
    assert_eq!(member.handle_frame(now(), &mut challenge, &mut out), Err(FrameError::NotForUs));
}

#[test]
fn a_rejected_member_ends_with_the_reason() {
    let mut member = member("1");
    let mut frame = [0u8; 64];
    let len = emit_handshake(
        SESSION,
        MemberId::LEADER,
        Destination::Member(MemberId(1)),
        &HandshakeRepr::Reject { reason: RejectReason::SessionFull },
        &mut frame,
    )
    .unwrap();
    let mut out = [0u8; MAX_PAYLOAD_LEN];
    member.handle_frame(now(), &mut frame[..len], &mut out).unwrap();
    assert_eq!(member.end(), Some(SessionEnd::JoinRejected(RejectReason::SessionFull)));
    assert_eq!(member.poll_timeout(), None);
}

// ---- member: awaiting keys ----------------------------------------------------------------

#[test]
fn a_key_update_for_another_member_is_refused() {
    let (mut leader, pin) = leader();
    let mut member = member(pin.as_str());
    deliver(&mut member, &mut leader);
    deliver(&mut leader, &mut member);
    deliver(&mut member, &mut leader);
    let frames = drain(&mut leader);
    let mut out = [0u8; MAX_PAYLOAD_LEN];
    let mut key_update = frames.iter().find(|f| f[1] == FrameKind::KeyUpdate.to_byte()).unwrap().clone();
    for frame in frames.iter().filter(|f| f[1] == FrameKind::Handshake.to_byte()) {
        member.handle_frame(now(), &mut frame.clone(), &mut out).unwrap();
    }
    let mut tampered = key_update.clone();
    tampered[HEADER_LEN + 10] ^= 1;
    assert_eq!(member.handle_frame(now(), &mut tampered, &mut out), Err(FrameError::Unauthentic));
    assert!(!member.is_established());
    member.handle_frame(now(), &mut key_update, &mut out).unwrap();
    assert!(member.is_established());
}

#[test]
fn the_join_times_out_after_repeating_its_hello() {
    let mut member = member("12345678");
    assert_eq!(drain(&mut member).len(), 1);
    let deadline = now() + member.config.timers().handshake;
    let mut hellos = Vec::new();
    loop {
        let at = member.poll_timeout().unwrap();
        if at >= deadline {
            break;
        }
        // Early, nothing is due; on time, exactly one hello.
        member.handle_timeout(at - Duration::from_micros(1));
        assert!(drain(&mut member).is_empty());
        member.handle_timeout(at);
        assert_eq!(drain(&mut member).len(), 1, "one hello at {at:?}");
        hellos.push(at);
    }
    // Every HELLO_RETRY until the deadline: 2, 4, ... 18 s after the first.
    let expected: Vec<Instant> = (1..=9).map(|k| now() + Duration::from_secs(2 * k)).collect();
    assert_eq!(hellos, expected);
    member.handle_timeout(deadline - Duration::from_micros(1));
    assert!(member.end().is_none());
    member.handle_timeout(deadline);
    assert_eq!(member.end(), Some(SessionEnd::HandshakeTimeout));
}

#[test]
fn a_hello_dropped_before_the_leader_connected_is_repeated_and_the_join_completes() {
    let (mut leader, pin) = leader();
    let mut member = member(pin.as_str());
    // The relay had no leader yet: the first hello is lost.
    assert_eq!(drain(&mut member).len(), 1);
    member.handle_timeout(now() + HELLO_RETRY);
    for _ in 0..4 {
        deliver(&mut member, &mut leader);
        deliver(&mut leader, &mut member);
    }
    assert!(member.is_established());
    // Established: no more hellos, and the handshake deadline no longer applies.
    member.handle_timeout(now() + Duration::from_secs(4));
    assert!(drain(&mut member).iter().all(|f| f[1] != FrameKind::Handshake.to_byte()));
    assert!(member.end().is_none());
}

// ---- established ----------------------------------------------------------------------------

#[test]
fn send_refuses_while_control_frames_wait() {
    let (_, mut member) = established();
    member.due.ping = true;
    let mut out = [0u8; 256];
    assert_eq!(
        member.send(now(), Destination::AllMembers, ContentType::Chat, b"hi", &mut out),
        Err(SendError::TransmitPending)
    );
    drain(&mut member);
    assert!(member.send(now(), Destination::AllMembers, ContentType::Chat, b"hi", &mut out).is_ok());
}

#[test]
fn send_waits_for_every_kind_of_pending_output() {
    // Regression: `send` once looked at a hand-kept list of pending items that had drifted from
    // what `poll_transmit` sends (the key request after a reconnect was missing).
    let (_, mut member) = established();
    drain(&mut member);
    member.handle_reconnected(now());
    let mut out = [0u8; 256];
    assert_eq!(
        member.send(now(), Destination::AllMembers, ContentType::Chat, b"hi", &mut out),
        Err(SendError::TransmitPending)
    );
    let sent = drain(&mut member);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0][1], FrameKind::Handshake.to_byte(), "the key request goes first");
    assert!(member.send(now(), Destination::AllMembers, ContentType::Chat, b"hi", &mut out).is_ok());
}

#[test]
fn a_short_buffer_is_an_error_and_left_untouched() {
    let (mut leader, mut member) = established();
    drain(&mut leader);
    let mut small = [0xEEu8; 40];
    assert_eq!(
        leader.send(now(), Destination::AllMembers, ContentType::Chat, b"hello there", &mut small),
        Err(SendError::InsufficientSize { required: PLAINTEXT_OFFSET + 2 + 11 + TAG_LEN })
    );
    assert!(small.iter().all(|&b| b == 0xEE));
    leader.due.ping = true;
    assert_eq!(
        leader.poll_transmit(now(), &mut small[..20]),
        Err(InsufficientSize { required: PLAINTEXT_OFFSET + 2 + TAG_LEN })
    );
    assert!(small.iter().all(|&b| b == 0xEE));
    assert_eq!(drain(&mut leader).len(), 1, "the frame stayed queued");
    // Receiving needs room for a whole payload.
    let mut buf = [0u8; 256];
    let len = leader.send(now(), Destination::AllMembers, ContentType::Chat, b"x", &mut buf).unwrap();
    let mut tiny_out = [0u8; 8];
    assert_eq!(
        member.handle_frame(now(), &mut buf[..len], &mut tiny_out),
        Err(FrameError::InsufficientSize { required: MAX_PAYLOAD_LEN })
    );
}

#[test]
fn compressible_content_is_compressed_and_restored() {
    let (mut leader, mut member) = established();
    drain(&mut member);
    member.consent.request(Capability::FileTransfer);
    member.grant(Capability::FileTransfer).unwrap();
    drain(&mut member);
    let payload = b"log line: everything is fine\n".repeat(100);
    let mut buf = [0u8; MAX_FRAME_LEN];
    let len = member.send(now(), Destination::Member(MemberId::LEADER), ContentType::File, &payload, &mut buf).unwrap();
    assert!(len < payload.len() / 4, "compressed to {len} bytes");
    let mut out = [0u8; MAX_PAYLOAD_LEN];
    let delivery = leader.handle_frame(now(), &mut buf[..len], &mut out).unwrap().unwrap();
    assert_eq!(&out[..delivery.len], &payload[..]);
    // A full payload is compressed with no more room than its uncompressed frame needs.
    let full: Vec<u8> = b"chunk of a log file, 2026-12-05 ok\n".iter().copied().cycle().take(MAX_PAYLOAD_LEN).collect();
    let mut tight = std::vec![0u8; full.len() + 50];
    let len = member.send(now(), Destination::Member(MemberId::LEADER), ContentType::File, &full, &mut tight).unwrap();
    assert!(len < full.len() / 4, "a full chunk compressed to {len} bytes");
    let delivery = leader.handle_frame(now(), &mut tight[..len], &mut out).unwrap().unwrap();
    assert_eq!(&out[..delivery.len], &full[..]);
    // Incompressible content goes as it is, in the same buffer.
    let mut noise = std::vec![0u8; MAX_PAYLOAD_LEN];
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    rand_core::Rng::fill_bytes(&mut rng, &mut noise);
    let len = member.send(now(), Destination::Member(MemberId::LEADER), ContentType::File, &noise, &mut tight).unwrap();
    assert_eq!(len, noise.len() + 50);
    let delivery = leader.handle_frame(now(), &mut tight[..len], &mut out).unwrap().unwrap();
    assert_eq!(&out[..delivery.len], &noise[..]);
    // Chat is never compressed, whatever its content.
    let chat = [b'a'; 1000];
    let len = member.send(now(), Destination::Member(MemberId::LEADER), ContentType::Chat, &chat, &mut buf).unwrap();
    assert!(len > chat.len());
}

#[test]
fn oversized_payloads_are_refused() {
    let (mut leader, _) = established();
    drain(&mut leader);
    let big = [0u8; MAX_PAYLOAD_LEN + 1];
    let mut buf = [0u8; MAX_FRAME_LEN + 16];
    assert_eq!(
        leader.send(now(), Destination::AllMembers, ContentType::Chat, &big, &mut buf),
        Err(SendError::PayloadTooLarge)
    );
    let max = [7u8; MAX_PAYLOAD_LEN];
    assert_eq!(leader.send(now(), Destination::AllMembers, ContentType::Chat, &max, &mut buf), Ok(MAX_FRAME_LEN));
}

#[test]
fn own_frames_reflected_back_are_refused() {
    let (mut leader, _) = established();
    drain(&mut leader);
    let mut buf = [0u8; 256];
    let len = leader.send(now(), Destination::AllMembers, ContentType::Chat, b"echo", &mut buf).unwrap();
    let mut out = [0u8; MAX_PAYLOAD_LEN];
    assert_eq!(leader.handle_frame(now(), &mut buf[..len], &mut out), Err(FrameError::NotForUs));
}

#[test]
fn only_a_customer_grants_and_only_a_provider_requests() {
    let (mut leader, mut member) = established();
    assert_eq!(leader.grant(Capability::ViewScreen), Err(ConsentError::NotCustomer));
    assert_eq!(member.request(MemberId::LEADER, Capability::ViewScreen), Err(SendError::NotProvider));
    assert_eq!(member.grant(Capability::ViewScreen), Err(ConsentError::NotPending));
    assert_eq!(leader.request(MemberId::LEADER, Capability::ViewScreen), Err(SendError::InvalidDestination));
}

#[test]
fn the_request_queue_is_bounded() {
    let (mut leader, _) = established();
    for _ in 0..REQUEST_QUEUE_LEN {
        leader.request(MemberId(1), Capability::ViewScreen).unwrap();
    }
    assert_eq!(leader.request(MemberId(1), Capability::ViewScreen), Err(SendError::QueueFull));
}

#[test]
fn undrained_events_are_counted_not_grown() {
    let (mut leader, _) = established();
    for _ in 0..EVENT_QUEUE_LEN + 5 {
        leader.push_event(Event::PinExpired);
    }
    assert!(leader.stats().events_lost >= 5);
    assert_eq!(events(&mut leader).len(), EVENT_QUEUE_LEN);
}

// ---- closing ---------------------------------------------------------------------------------

#[test]
fn close_sends_one_farewell_then_nothing() {
    let (_, mut member) = established();
    drain(&mut member);
    member.close(now());
    assert_eq!(events(&mut member).last(), Some(&Event::Closed { reason: SessionEnd::Local }));
    assert_eq!(drain(&mut member).len(), 1);
    assert!(drain(&mut member).is_empty());
    assert_eq!(member.epoch(), 0, "keys dropped");
    assert_eq!(member.grant(Capability::ViewScreen), Err(ConsentError::Closed));
    let mut buf = [0u8; 64];
    assert_eq!(member.handle_frame(now(), &mut buf, &mut [0u8; 8]), Err(FrameError::Closed));
}

#[test]
fn the_identity_is_the_decimal_session_number() {
    assert_eq!(session_identity(0).as_str(), "0");
    assert_eq!(session_identity(u64::MAX).as_str(), "18446744073709551615");
}

// ---- leader: joins ---------------------------------------------------------------------------

#[test]
fn a_repeated_hello_gets_the_same_challenge() {
    let (mut leader, pin) = leader();
    let mut member = member(pin.as_str());
    let hello = drain(&mut member).remove(0);
    let mut out = [0u8; MAX_PAYLOAD_LEN];
    leader.handle_frame(now(), &mut hello.clone(), &mut out).unwrap();
    let first = drain(&mut leader);
    leader.handle_frame(now(), &mut hello.clone(), &mut out).unwrap();
    let second = drain(&mut leader);
    assert_eq!(first, second, "a replayed hello must not replace the pending handshake");
    for frame in first {
        member.handle_frame(now(), &mut frame.clone(), &mut out).unwrap();
    }
    for _ in 0..3 {
        deliver(&mut member, &mut leader);
        deliver(&mut leader, &mut member);
    }
    assert!(member.is_established());
}

#[test]
fn a_key_request_from_a_stranger_is_ignored() {
    let (mut leader, _) = established();
    drain(&mut leader);
    let mut frame = [0u8; 64];
    let len = emit_handshake(
        SESSION,
        MemberId(3),
        Destination::Member(MemberId::LEADER),
        &HandshakeRepr::KeyRequest,
        &mut frame,
    )
    .unwrap();
    let mut out = [0u8; MAX_PAYLOAD_LEN];
    assert_eq!(leader.handle_frame(now(), &mut frame[..len], &mut out), Err(FrameError::Unexpected));
    assert!(drain(&mut leader).is_empty());
    // From the joined member it is answered with its wrapped keys.
    let len = emit_handshake(
        SESSION,
        MemberId(1),
        Destination::Member(MemberId::LEADER),
        &HandshakeRepr::KeyRequest,
        &mut frame,
    )
    .unwrap();
    leader.handle_frame(now(), &mut frame[..len], &mut out).unwrap();
    let answer = drain(&mut leader);
    assert_eq!(answer.len(), 1);
    assert_eq!(answer[0][1], FrameKind::KeyUpdate.to_byte());
}

// ---- configuration bounds -----------------------------------------------------------------------

#[test]
fn timers_cannot_be_set_to_spin_or_to_forever() {
    let mut config = Config::new(SESSION, MemberId(1), Role::Customer, "Cy");
    config.timeouts = Timeouts {
        handshake: Duration::ZERO,
        keepalive: Duration::ZERO,
        idle: Duration::ZERO,
        epoch_grace: Duration::from_secs(1_000_000),
        reconnect_grace: Duration::from_secs(1_000_000),
    };
    let timers = config.timers();
    assert!(timers.keepalive >= Duration::from_secs(1));
    assert!(timers.idle >= Duration::from_secs(3));
    assert!(timers.handshake >= Duration::from_secs(1));
    assert_eq!(timers.epoch_grace, MAX_EPOCH_GRACE);
    assert!(timers.reconnect_grace <= Duration::from_secs(600));
    config.max_join_failures = 200;
    assert_eq!(config.join_failure_limit(), MAX_JOIN_FAILURES);
    config.rekey_after_frames = u64::MAX;
    assert_eq!(config.rekey_threshold(), DEFAULT_REKEY_AFTER_FRAMES);
}

// ---- footprint ----------------------------------------------------------------------------------

#[test]
fn the_session_state_fits_a_microcontroller() {
    // All state is inline; this bounds what an appliance pays in RAM for one session (the
    // caller's frame and payload buffers come on top).
    let size = core::mem::size_of::<Session<ChaCha20Rng, 8>>();
    std::println!("Session<_, 8>: {size} bytes");
    // Measured: 8,256 bytes on x86_64 with ChaCha20Rng (mostly 8 pending-join slots of 2048/3072-bit
    // SRP state and the AES key schedules).
    assert!(size < 12 * 1024, "Session<_, 8> is {size} bytes");
}

// ---- check code --------------------------------------------------------------------------

fn check_codes(session: &mut TestSession) -> Vec<(MemberId, u32)> {
    events(session)
        .into_iter()
        .filter_map(|event| match event {
            Event::CheckCode { peer, code } => Some((peer, code)),
            _ => None,
        })
        .collect()
}

#[test]
fn both_ends_of_a_join_show_the_same_check_code_and_another_session_differs() {
    let (mut leader, mut member) = established();
    let on_leader = check_codes(&mut leader);
    let on_member = check_codes(&mut member);
    assert_eq!(on_leader.len(), 1);
    assert_eq!(on_member.len(), 1);
    assert_eq!(on_leader[0].0, MemberId(1));
    assert_eq!(on_member[0].0, MemberId::LEADER);
    assert_eq!(on_leader[0].1, on_member[0].1);
    assert!(on_leader[0].1 < 1_000_000);

    // Same PIN and session number, other randomness: other SRP keys, another code.
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let pin = Pin::generate(&mut rng);
    let mut leader2: TestSession =
        Session::new_leader(Config::new(SESSION, MemberId::LEADER, Role::Provider, "Ada"), &pin, rng, now());
    let mut member2: TestSession = Session::new_member(
        Config::new(SESSION, MemberId(1), Role::Customer, "Cy"),
        pin.as_str(),
        ChaCha20Rng::seed_from_u64(8),
        now(),
    );
    for _ in 0..4 {
        deliver(&mut member2, &mut leader2);
        deliver(&mut leader2, &mut member2);
    }
    let other = check_codes(&mut member2);
    assert_eq!(other.len(), 1);
    assert_ne!(other[0].1, on_member[0].1);
}

// ---- established: a constrained member's receive limit -----------------------------------

fn constrained_member(pin: &str, limit: usize) -> TestSession {
    let mut config = Config::new(SESSION, MemberId(1), Role::Customer, "Pump");
    config.receive_limit = limit;
    Session::new_member(config, pin, ChaCha20Rng::seed_from_u64(2), now())
}

/// A leader and a member that announces `limit`, joined and announced.
fn established_with_limit(limit: usize) -> (TestSession, TestSession) {
    let (mut leader, pin) = leader();
    let mut member = constrained_member(pin.as_str(), limit);
    let mut small = std::vec![0u8; member.config.receive_limit()];
    for _ in 0..4 {
        for mut frame in drain(&mut member) {
            let _ = leader.handle_frame(now(), &mut frame, &mut [0u8; MAX_PAYLOAD_LEN]);
        }
        for mut frame in drain(&mut leader) {
            let _ = member.handle_frame(now(), &mut frame, &mut small);
        }
    }
    assert!(member.is_established());
    (leader, member)
}

#[test]
fn senders_honour_an_announced_receive_limit() {
    let (mut leader, mut member) = established_with_limit(2048);
    assert_eq!(leader.max_payload(Destination::Member(MemberId(1))), 2048);
    assert_eq!(leader.max_payload(Destination::AllMembers), 2048, "the smallest limit of the members");
    // The member itself announced no limit to honour from the leader: full size towards it.
    assert_eq!(member.max_payload(Destination::Member(MemberId::LEADER)), MAX_PAYLOAD_LEN);
    let mut out = [0u8; MAX_FRAME_LEN];
    let big = [7u8; 2049];
    for destination in [Destination::Member(MemberId(1)), Destination::AllMembers] {
        assert_eq!(leader.send(now(), destination, ContentType::Chat, &big, &mut out), Err(SendError::PayloadTooLarge));
    }
    // At the limit: sent, and the member takes it with a buffer of just the limit.
    let len = leader.send(now(), Destination::Member(MemberId(1)), ContentType::Chat, &big[..2048], &mut out).unwrap();
    assert!(len <= crate::wire::protected_frame_len(2048));
    let mut data = [0u8; 2048];
    let delivery = member.handle_frame(now(), &mut out[..len], &mut data).unwrap().unwrap();
    assert_eq!(&data[..delivery.len], &big[..2048]);
    // The member's own sends towards the unconstrained leader are not limited.
    let _ = drain(&mut member);
    assert!(member.send(now(), Destination::AllMembers, ContentType::Chat, &[1u8; 10_000], &mut out).is_ok());
}

#[test]
fn a_constrained_member_needs_only_its_limit_for_data() {
    let (mut leader, mut member) = established_with_limit(1024);
    let mut out = [0u8; MAX_FRAME_LEN];
    let len = leader.send(now(), Destination::AllMembers, ContentType::Chat, b"hello", &mut out).unwrap();
    let mut short = [0u8; 1023];
    assert_eq!(
        member.handle_frame(now(), &mut out[..len].to_vec(), &mut short),
        Err(FrameError::InsufficientSize { required: 1024 })
    );
    let mut exact = [0u8; 1024];
    assert!(member.handle_frame(now(), &mut out[..len], &mut exact).unwrap().is_some());
}

#[test]
fn members_without_a_limit_announce_none_and_get_full_size() {
    let (mut leader, _member) = established();
    assert_eq!(Config::new(SESSION, MemberId(1), Role::Customer, "Cy").announced_receive_limit(), None);
    assert_eq!(leader.max_payload(Destination::AllMembers), MAX_PAYLOAD_LEN);
    let mut out = [0u8; MAX_FRAME_LEN];
    assert!(leader.send(now(), Destination::AllMembers, ContentType::Chat, &[1u8; MAX_PAYLOAD_LEN], &mut out).is_ok());
    // Out-of-range settings are clamped, never announced as given.
    let mut config = Config::new(SESSION, MemberId(1), Role::Customer, "Cy");
    config.receive_limit = 10;
    assert_eq!(config.announced_receive_limit(), Some(1024));
    config.receive_limit = 1 << 20;
    assert_eq!(config.announced_receive_limit(), None);
}
