//! Admission: tickets, member ids, resume, refusals, timeouts, garbage, connection limits.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{Client, Notice, Received, SESSION, TestRelay, frame, limits, pki};
use lifeline_core::wire::relay::RefusalReason;
use lifeline_core::wire::{Destination, FrameKind, MemberId};
use lifeline_ticket::{Ticket, TicketRole, TicketSigner};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn relay(overrides: &[(&str, &str)]) -> TestRelay {
    TestRelay::start(pki().config("local", &limits(overrides))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_tickets_get_leader_zero_then_members_in_order() {
    let relay = relay(&[]).await;
    let pki = pki();
    let mut leader = Client::connect(relay.addr).await;
    assert_eq!(leader.admit(SESSION, &pki.leader(SESSION, "local"), None).await, Notice::Welcome(0));
    let mut one = Client::connect(relay.addr).await;
    assert_eq!(one.admit(SESSION, &pki.member(SESSION, "local"), None).await, Notice::Welcome(1));
    let mut two = Client::connect(relay.addr).await;
    assert_eq!(two.admit(SESSION, &pki.member(SESSION, "local"), None).await, Notice::Welcome(2));
    let mut resumed = Client::connect(relay.addr).await;
    assert_eq!(resumed.admit(SESSION, &pki.member(SESSION, "local"), Some(7)).await, Notice::Welcome(7));
    let mut taken = Client::connect(relay.addr).await;
    assert_eq!(taken.admit(SESSION, &pki.member(SESSION, "local"), Some(7)).await, Notice::Welcome(3), "7 is taken");
    let mut other_session = Client::connect(relay.addr).await;
    assert_eq!(other_session.admit(SESSION + 1, &pki.member(SESSION + 1, "local"), None).await, Notice::Welcome(1));
    assert_eq!(relay.metric("lifeline_relay_sessions").await, 2.0);
    assert_eq!(relay.metric("lifeline_relay_members").await, 6.0);
    assert_eq!(relay.metric("lifeline_relay_admissions_total").await, 6.0);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_resumes_its_id_after_a_reconnect() {
    let relay = relay(&[]).await;
    let pki = pki();
    let mut leader = Client::join(relay.addr, SESSION, &pki.leader(SESSION, "local"), None).await;
    let member = Client::join(relay.addr, SESSION, &pki.member(SESSION, "local"), None).await;
    assert_eq!(member.member, 1);
    drop(member);
    assert_eq!(leader.notice(Duration::from_secs(5)).await, Some(Notice::MemberGone(1)));
    let again = Client::join(relay.addr, SESSION, &pki.member(SESSION, "local"), Some(1)).await;
    assert_eq!(again.member, 1);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_reconnecting_before_its_old_connection_is_noticed_gets_its_id_back() {
    let relay = relay(&[]).await;
    let pki = pki();
    let mut leader = Client::join(relay.addr, SESSION, &pki.leader(SESSION, "local"), None).await;
    let ticket = pki.member(SESSION, "local");
    // The old connection stays open (as a half-open TCP connection would, until the idle timeout).
    let mut old = Client::join(relay.addr, SESSION, &ticket, None).await;
    let mut stranger = Client::join(relay.addr, SESSION, &pki.member(SESSION, "local"), Some(1)).await;
    assert_eq!(stranger.member, 2, "another ticket cannot take member 1's place");
    let mut again = Client::join(relay.addr, SESSION, &ticket, Some(1)).await;
    assert_eq!(again.member, 1, "the same ticket resumes its id");
    assert!(old.closed_within(Duration::from_secs(2)).await, "newest wins");
    assert_eq!(leader.notice(Duration::from_secs(2)).await, Some(Notice::MemberGone(1)));
    assert_eq!(stranger.notice(Duration::from_secs(2)).await, Some(Notice::MemberGone(1)));
    leader.send_as_me(FrameKind::Handshake, Destination::Member(MemberId(1)), b"welcome back").await;
    assert_eq!(&again.expect_frame().await[16..], b"welcome back");
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_slot_is_refused_unless_resumed_and_then_the_newest_wins() {
    let relay = relay(&[]).await;
    let pki = pki();
    let mut old_leader = Client::join(relay.addr, SESSION, &pki.leader(SESSION, "local"), None).await;
    let mut member = Client::join(relay.addr, SESSION, &pki.member(SESSION, "local"), None).await;
    let mut second = Client::connect(relay.addr).await;
    let refused = second.admit(SESSION, &pki.leader(SESSION, "local"), None).await;
    assert_eq!(refused, Notice::Refused(RefusalReason::ResumeRefused));
    assert!(second.closed_within(Duration::from_secs(2)).await);
    let mut wrong_role = Client::connect(relay.addr).await;
    let refused = wrong_role.admit(SESSION, &pki.member(SESSION, "local"), Some(0)).await;
    assert_eq!(refused, Notice::Refused(RefusalReason::ResumeRefused));

    let mut new_leader = Client::join(relay.addr, SESSION, &pki.leader(SESSION, "local"), Some(0)).await;
    assert_eq!(new_leader.member, 0);
    assert!(old_leader.closed_within(Duration::from_secs(2)).await, "newest wins: the old leader is closed");
    assert_eq!(member.notice(Duration::from_secs(2)).await, Some(Notice::MemberGone(0)));
    new_leader.send_as_me(FrameKind::Handshake, Destination::Member(MemberId(1)), b"hello").await;
    assert_eq!(&member.expect_frame().await[16..], b"hello");
    assert_eq!(relay.metric("lifeline_relay_handshake_failures_total{reason=\"resume_refused\"}").await, 2.0);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tickets_are_refused_and_closed() {
    let relay = relay(&[]).await;
    let pki = pki();
    let forger = TicketSigner::generate().unwrap();
    let forged = forger.mint(&Ticket::new(SESSION, TicketRole::Leader, "local", common::now_unix() + 600)).unwrap();
    let expired = pki.ticket(SESSION, TicketRole::Leader, "local", -5);
    let other_session = pki.leader(SESSION + 1, "local");
    let mut truncated = pki.leader(SESSION, "local");
    truncated.truncate(40);
    for ticket in [&forged, &expired, &other_session, &truncated] {
        let mut client = Client::connect(relay.addr).await;
        assert_eq!(client.admit(SESSION, ticket, None).await, Notice::Refused(RefusalReason::BadTicket));
        assert!(client.closed_within(Duration::from_secs(2)).await);
    }
    let text = relay.scrape().await;
    assert_eq!(common::sample(&text, "lifeline_relay_handshake_failures_total{reason=\"bad_ticket\"}"), 2.0);
    assert_eq!(common::sample(&text, "lifeline_relay_handshake_failures_total{reason=\"expired\"}"), 1.0);
    assert_eq!(common::sample(&text, "lifeline_relay_handshake_failures_total{reason=\"wrong_session\"}"), 1.0);
    assert_eq!(common::sample(&text, "lifeline_relay_sessions"), 0.0);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_frame_that_is_not_admit_is_refused() {
    let relay = relay(&[]).await;
    let mut client = Client::connect(relay.addr).await;
    client.send(FrameKind::Handshake, SESSION, 0, Destination::AllMembers, b"no ticket").await;
    assert_eq!(client.notice(Duration::from_secs(2)).await, Some(Notice::Refused(RefusalReason::Other)));
    assert!(client.closed_within(Duration::from_secs(2)).await);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_admit_within_the_timeout_closes_the_connection() {
    let relay = relay(&[]).await;
    let started = std::time::Instant::now();
    let mut client = Client::connect(relay.addr).await;
    assert!(client.closed_within(Duration::from_secs(3)).await);
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(800) && waited < Duration::from_millis(2500), "{waited:?}");
    relay.wait_metric("lifeline_relay_handshake_failures_total{reason=\"timeout\"}", |v| v == 1.0).await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_tcp_connections_are_closed_at_the_admission_timeout() {
    let relay = relay(&[]).await;
    let started = std::time::Instant::now();
    let mut idle: Vec<TcpStream> = Vec::new();
    for _ in 0..20 {
        idle.push(TcpStream::connect(relay.addr).await.unwrap());
    }
    // One byte of a TLS record header, then nothing.
    idle[0].write_all(&[0x16]).await.unwrap();
    relay.wait_metric("lifeline_relay_connections", |v| v == 20.0).await;
    for stream in &mut idle {
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(3), stream.read(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(0) | Err(_))), "closed by the relay: {read:?}");
    }
    assert!(started.elapsed() < Duration::from_millis(2500));
    relay.wait_metric("lifeline_relay_connections", |v| v == 0.0).await;
    // The relay still serves.
    Client::join(relay.addr, SESSION, &pki().leader(SESSION, "local"), None).await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_instead_of_tls_is_closed_and_others_are_served() {
    let relay = relay(&[]).await;
    let mut leader = Client::join(relay.addr, SESSION, &pki().leader(SESSION, "local"), None).await;
    let mut member = Client::join(relay.addr, SESSION, &pki().member(SESSION, "local"), None).await;
    let mut garbage = TcpStream::connect(relay.addr).await.unwrap();
    garbage.write_all(b"GET / HTTP/1.1\r\nHost: relay\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 256];
    let closed = async {
        loop {
            match garbage.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {} // a TLS alert
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(2), closed).await.expect("closed");
    leader.send_as_me(FrameKind::Handshake, Destination::AllMembers, b"still here").await;
    assert_eq!(&member.expect_frame().await[16..], b"still here");
    assert_eq!(relay.metric("lifeline_relay_handshake_failures_total{reason=\"tls\"}").await, 1.0);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_header_after_admission_closes_only_that_connection() {
    let relay = relay(&[]).await;
    let mut leader = Client::join(relay.addr, SESSION, &pki().leader(SESSION, "local"), None).await;
    let mut member = Client::join(relay.addr, SESSION, &pki().member(SESSION, "local"), None).await;
    let mut bad = Client::join(relay.addr, SESSION, &pki().member(SESSION, "local"), None).await;
    assert_eq!(leader.notice(Duration::from_secs(1)).await, None, "nothing before the bad frame");
    let mut garbage = frame(FrameKind::SecureData, SESSION, bad.member, Destination::AllMembers, &[0u8; 40]);
    garbage[0] = 9; // unknown version
    bad.send_raw(&garbage).await.unwrap();
    assert!(bad.closed_within(Duration::from_secs(2)).await);
    assert_eq!(leader.notice(Duration::from_secs(2)).await, Some(Notice::MemberGone(2)));
    assert_eq!(member.notice(Duration::from_secs(2)).await, Some(Notice::MemberGone(2)));
    leader.send_as_me(FrameKind::Handshake, Destination::Member(MemberId(1)), b"on").await;
    assert_eq!(&member.expect_frame().await[16..], b"on");
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_over_the_limit_is_refused_at_its_header() {
    let relay = relay(&[("max_frame_len", "2000")]).await;
    let mut leader = Client::join(relay.addr, SESSION, &pki().leader(SESSION, "local"), None).await;
    let mut big = Client::join(relay.addr, SESSION, &pki().member(SESSION, "local"), None).await;
    // Only the header of a 4 016-byte frame: the relay must not wait for (or buffer) the body.
    let frame = frame(FrameKind::SecureData, SESSION, big.member, Destination::AllMembers, &[0u8; 4000]);
    big.send_raw(&frame[..16]).await.unwrap();
    assert!(big.closed_within(Duration::from_secs(2)).await);
    assert_eq!(leader.notice(Duration::from_secs(2)).await, Some(Notice::MemberGone(1)));
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_member_is_closed_at_the_idle_timeout() {
    let relay = relay(&[("idle_timeout_secs", "0.8")]).await;
    let mut leader = Client::join(relay.addr, SESSION, &pki().leader(SESSION, "local"), None).await;
    let mut member = Client::join(relay.addr, SESSION, &pki().member(SESSION, "local"), None).await;
    // The leader keeps sending (keepalives); the member says nothing.
    for _ in 0..14 {
        leader.send_as_me(FrameKind::SecureControl, Destination::Member(MemberId(0x30)), &[0u8; 40]).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(member.closed_within(Duration::from_secs(1)).await, "the silent member is gone");
    let notice = leader.notice(Duration::from_secs(1)).await;
    assert_eq!(notice, Some(Notice::MemberGone(1)));
    assert_eq!(relay.metric("lifeline_relay_members").await, 1.0, "the talking leader stays");
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_and_members_are_limited() {
    let relay = relay(&[("max_sessions", "1"), ("max_members_per_session", "2")]).await;
    let pki = pki();
    let _leader = Client::join(relay.addr, SESSION, &pki.leader(SESSION, "local"), None).await;
    let _member = Client::join(relay.addr, SESSION, &pki.member(SESSION, "local"), None).await;
    let mut third = Client::connect(relay.addr).await;
    assert_eq!(third.admit(SESSION, &pki.member(SESSION, "local"), None).await, Notice::Refused(RefusalReason::Full));
    let mut other = Client::connect(relay.addr).await;
    let refused = other.admit(SESSION + 1, &pki.leader(SESSION + 1, "local"), None).await;
    assert_eq!(refused, Notice::Refused(RefusalReason::Full));
    assert_eq!(relay.metric("lifeline_relay_handshake_failures_total{reason=\"full\"}").await, 2.0);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_connections_per_address_are_rate_limited() {
    let relay = relay(&[("connections_per_ip_per_sec", "0.1"), ("connections_per_ip_burst", "3")]).await;
    let mut accepted = 0;
    for _ in 0..6 {
        if let Ok(mut client) = Client::try_connect(relay.addr).await {
            // A rate-limited connection is closed before TLS: the handshake fails above, or
            // the first read sees the close.
            if !matches!(client.recv(Duration::from_millis(100)).await, Received::Closed) {
                accepted += 1;
            }
        }
    }
    assert_eq!(accepted, 3);
    assert_eq!(relay.metric("lifeline_relay_handshake_failures_total{reason=\"rate_limited\"}").await, 3.0);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_capped() {
    let relay = relay(&[("max_connections", "2")]).await;
    let _one = Client::connect(relay.addr).await;
    let _two = Client::connect(relay.addr).await;
    relay.wait_metric("lifeline_relay_connections", |v| v == 2.0).await;
    let refused = Client::try_connect(relay.addr).await;
    if let Ok(mut client) = refused {
        assert!(matches!(client.recv(Duration::from_millis(500)).await, Received::Closed));
    }
    assert_eq!(relay.metric("lifeline_relay_handshake_failures_total{reason=\"capacity\"}").await, 1.0);
    relay.stop().await;
}
