//! Routing: fan-out, unicast, header checks, oversized frames, MemberGone, bytes unchanged.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{Client, Notice, SESSION, TestRelay, body, frame, limits, pki};
use lifeline_core::wire::{Destination, FrameKind, HEADER_LEN, MAX_BODY_LEN, MemberId};

struct Trio {
    relay: TestRelay,
    leader: Client,
    one: Client,
    two: Client,
}

async fn trio(overrides: &[(&str, &str)]) -> Trio {
    let relay = TestRelay::start(pki().config("local", &limits(overrides))).await;
    let leader = Client::join(relay.addr, SESSION, &pki().leader(SESSION, "local"), None).await;
    let one = Client::join(relay.addr, SESSION, &pki().member(SESSION, "local"), None).await;
    let two = Client::join(relay.addr, SESSION, &pki().member(SESSION, "local"), None).await;
    Trio { relay, leader, one, two }
}

const QUIET: Duration = Duration::from_millis(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_members_reaches_everyone_but_the_sender_byte_for_byte() {
    let Trio { relay, mut leader, mut one, mut two } = trio(&[]).await;
    let mut sent = Vec::new();
    let cases = [(FrameKind::Handshake, 0), (FrameKind::KeyUpdate, 1), (FrameKind::SecureControl, 40)];
    let cases = cases.into_iter().chain([(FrameKind::SecureData, 1000), (FrameKind::SecureData, MAX_BODY_LEN)]);
    for (i, (kind, len)) in cases.enumerate() {
        let bytes = frame(kind, SESSION, 0, Destination::AllMembers, &body(i as u32, len)[..len]);
        leader.send_raw(&bytes).await.unwrap();
        sent.push(bytes);
    }
    for expected in &sent {
        assert_eq!(&one.expect_frame().await, expected, "forwarded unchanged");
        assert_eq!(&two.expect_frame().await, expected, "forwarded unchanged");
    }
    assert!(leader.nothing_within(QUIET).await, "never echoed to the sender");
    assert_eq!(relay.metric("lifeline_relay_frames_routed_total").await, 10.0);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unicast_reaches_only_its_destination() {
    let Trio { relay, mut leader, mut one, mut two } = trio(&[]).await;
    one.send_as_me(FrameKind::Handshake, Destination::Member(MemberId(0)), b"to the leader").await;
    two.send_as_me(FrameKind::SecureData, Destination::Member(MemberId(1)), &body(1, 64)).await;
    assert_eq!(&leader.expect_frame().await[HEADER_LEN..], b"to the leader");
    assert_eq!(&one.expect_frame().await[HEADER_LEN..], &body(1, 64)[..]);
    assert!(two.nothing_within(QUIET).await);
    assert!(leader.nothing_within(Duration::from_millis(50)).await);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_wrong_session_relay_kind_and_absent_destinations_are_dropped() {
    let Trio { relay, mut leader, mut one, mut two } = trio(&[]).await;
    // Member 1 pretends to be the leader, or writes into another session.
    one.send(FrameKind::SecureControl, SESSION, 0, Destination::AllMembers, &body(1, 40)).await;
    one.send(FrameKind::SecureControl, SESSION + 1, 1, Destination::AllMembers, &body(2, 40)).await;
    // Relay-kind frames are never forwarded; unknown or impossible destinations are dropped.
    one.send(FrameKind::Relay, SESSION, 1, Destination::AllMembers, &[0x05]).await;
    one.send_as_me(FrameKind::Handshake, Destination::Member(MemberId(9)), b"nobody").await;
    one.send_as_me(FrameKind::Handshake, Destination::Member(MemberId(1)), b"myself").await;
    one.send_as_me(FrameKind::Handshake, Destination::Member(MemberId::RELAY), b"relay").await;
    one.send_as_me(FrameKind::Handshake, Destination::AllMembers, b"legit").await;
    assert_eq!(&leader.expect_frame().await[HEADER_LEN..], b"legit", "only the legitimate frame arrives");
    assert_eq!(&two.expect_frame().await[HEADER_LEN..], b"legit");
    assert!(leader.nothing_within(QUIET).await);
    let text = relay.scrape().await;
    for (reason, count) in [
        ("spoofed_sender", 1.0),
        ("wrong_session", 1.0),
        ("relay_kind", 1.0),
        ("no_such_member", 1.0),
        ("bad_destination", 2.0),
    ] {
        let name = format!("lifeline_relay_drops_total{{reason=\"{reason}\"}}");
        assert_eq!(common::sample(&text, &name), count, "{name}");
    }
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frames_close_the_connection() {
    let Trio { relay, mut leader, mut one, two } = trio(&[]).await;
    // A header announcing more than core's maximum body: the decoder refuses it at once.
    let mut header = frame(FrameKind::SecureData, SESSION, two.member, Destination::AllMembers, &[0u8; 40]);
    header[2..4].copy_from_slice(&u16::MAX.to_be_bytes());
    let mut two = two;
    two.send_raw(&header[..HEADER_LEN]).await.unwrap();
    assert!(two.closed_within(Duration::from_secs(2)).await);
    assert_eq!(leader.notice(Duration::from_secs(2)).await, Some(Notice::MemberGone(2)));
    assert_eq!(one.notice(Duration::from_secs(2)).await, Some(Notice::MemberGone(2)));
    relay.stop().await;

    // A relay configured below core's maximum refuses a frame over its own limit.
    let Trio { relay, mut leader, mut one, two: _two } = trio(&[("max_frame_len", "1000")]).await;
    one.send_as_me(FrameKind::SecureData, Destination::AllMembers, &body(3, 2000)).await;
    assert!(one.closed_within(Duration::from_secs(2)).await);
    assert_eq!(leader.notice(Duration::from_secs(2)).await, Some(Notice::MemberGone(1)));
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_gone_reaches_the_others_when_a_connection_ends() {
    let Trio { relay, mut leader, one, mut two } = trio(&[]).await;
    drop(one);
    assert_eq!(leader.notice(Duration::from_secs(2)).await, Some(Notice::MemberGone(1)));
    assert_eq!(two.notice(Duration::from_secs(2)).await, Some(Notice::MemberGone(1)));
    drop(leader);
    assert_eq!(two.notice(Duration::from_secs(2)).await, Some(Notice::MemberGone(0)));
    relay.wait_metric("lifeline_relay_members", |v| v == 1.0).await;
    drop(two);
    relay.wait_metric("lifeline_relay_sessions", |v| v == 0.0).await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_split_across_writes_and_batched_in_one_write_are_routed() {
    let Trio { relay, mut leader, mut one, two: _two } = trio(&[]).await;
    let frames: Vec<Vec<u8>> = (0..20)
        .map(|i| {
            frame(FrameKind::SecureData, SESSION, 0, Destination::Member(MemberId(1)), &body(i, 40 + i as usize * 37))
        })
        .collect();
    let stream = frames.concat();
    // Odd-sized pieces, then everything at once.
    for piece in stream.chunks(7) {
        leader.send_raw(piece).await.unwrap();
    }
    leader.send_raw(&stream).await.unwrap();
    for expected in frames.iter().chain(frames.iter()) {
        assert_eq!(&one.expect_frame().await, expected);
    }
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_arriving_with_the_admit_are_kept() {
    let relay = TestRelay::start(pki().config("local", &limits(&[]))).await;
    let mut leader = Client::join(relay.addr, SESSION, &pki().leader(SESSION, "local"), None).await;
    // Admit and a first frame in one write: the frame after Admit must not be lost.
    let mut member = Client::connect(relay.addr).await;
    let ticket = pki().member(SESSION, "local");
    let mut admit = vec![0u8; 1024];
    let len = lifeline_core::wire::relay::RelayRepr::Admit { resume: None, ticket: &ticket }
        .emit_frame(SESSION, Destination::Member(MemberId::RELAY), &mut admit)
        .unwrap();
    admit.truncate(len);
    admit.extend_from_slice(&frame(FrameKind::Handshake, SESSION, 1, Destination::Member(MemberId(0)), b"first"));
    member.send_raw(&admit).await.unwrap();
    assert_eq!(member.notice(Duration::from_secs(2)).await, Some(Notice::Welcome(1)));
    assert_eq!(&leader.expect_frame().await[HEADER_LEN..], b"first");
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn constrained_endpoints_get_small_tls_records() {
    let relay = TestRelay::start(pki().config("local", &limits(&[]))).await;
    let mut leader = Client::join(relay.addr, SESSION, &pki().leader(SESSION, "local"), None).await;
    let mut small =
        Client::connect_with(relay.addr, pki().roots(), lifeline_relay::ALPN_ENDPOINT_SMALL_RECORDS).await.unwrap();
    assert_eq!(small.alpn().as_deref(), Some(lifeline_relay::ALPN_ENDPOINT_SMALL_RECORDS));
    assert!(matches!(small.admit(SESSION, &pki().member(SESSION, "local"), None).await, Notice::Welcome(_)));
    let mut desktop = Client::join(relay.addr, SESSION, &pki().member(SESSION, "local"), None).await;
    let bytes =
        frame(FrameKind::SecureData, SESSION, 0, Destination::AllMembers, &body(9, MAX_BODY_LEN)[..MAX_BODY_LEN]);
    leader.send_raw(&bytes).await.unwrap();
    assert_eq!(small.expect_frame().await, bytes, "the whole frame, in small records");
    assert_eq!(desktop.expect_frame().await, bytes);
    // Record plaintext ≤ 2048 bytes: + 5 header + 1 content type + 16 tag on the wire.
    let most = lifeline_relay::SMALL_RECORD_LIMIT + 5 + 1 + 16;
    let records = small.record_lengths();
    assert!(records.iter().all(|&len| len <= most), "{records:?}");
    assert!(records.len() > MAX_BODY_LEN / lifeline_relay::SMALL_RECORD_LIMIT, "{records:?}");
    // Everyone else keeps full-size records (and the plain ALPN).
    assert_eq!(desktop.alpn().as_deref(), Some(lifeline_relay::ALPN_ENDPOINT));
    assert!(desktop.record_lengths().iter().any(|&len| len > most));
    relay.stop().await;
}
