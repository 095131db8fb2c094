//! A member that never reads must not stall anyone: its data is dropped (and counted), memory
//! stays bounded, and members of the same and of another session keep receiving.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Client, Received, SESSION, TestRelay, body, frame, limits, pki};
use lifeline_core::wire::{Destination, FrameKind, MAX_BODY_LEN, MemberId, RoutingHeader};

const FRAMES: usize = 3000;
const WINDOW: usize = 8;
const DATA_QUEUE: usize = 256 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_never_reads_stalls_nobody() {
    let data_queue = DATA_QUEUE.to_string();
    let relay = TestRelay::start(
        pki().config("local", &limits(&[("data_queue_bytes", &data_queue), ("idle_timeout_secs", "60")])),
    )
    .await;
    let pki = pki();
    let mut leader = Client::join(relay.addr, SESSION, &pki.leader(SESSION, "local"), None).await;
    let mut fast = Client::join(relay.addr, SESSION, &pki.member(SESSION, "local"), None).await;
    let stalled = Client::join(relay.addr, SESSION, &pki.member(SESSION, "local"), None).await;
    let other = SESSION + 1;
    let mut pinger = Client::join(relay.addr, other, &pki.leader(other, "local"), None).await;
    let mut ponger = Client::join(relay.addr, other, &pki.member(other, "local"), None).await;

    // The fast member counts what it gets.
    let received = Arc::new(AtomicUsize::new(0));
    let fast_task = {
        let received = received.clone();
        tokio::spawn(async move {
            while received.load(Ordering::SeqCst) < FRAMES {
                match fast.recv(Duration::from_secs(10)).await {
                    Received::Frame(frame) => {
                        let header = RoutingHeader::parse(&frame).unwrap();
                        if header.kind == FrameKind::SecureData {
                            assert_eq!(frame.len(), 16 + MAX_BODY_LEN);
                            received.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    other => panic!("fast member: {other:?}"),
                }
            }
            fast
        })
    };
    let done = Arc::new(AtomicBool::new(false));
    // Another session pings while the flood goes on; every round trip must stay quick.
    let pings = tokio::spawn({
        let done = done.clone();
        async move {
            let mut worst = Duration::ZERO;
            let mut i = 0u32;
            while !done.load(Ordering::SeqCst) || i < 10 {
                i += 1;
                let started = Instant::now();
                pinger.send_as_me(FrameKind::SecureData, Destination::Member(MemberId(1)), &body(i, 100)).await;
                ponger.expect_frame().await;
                worst = worst.max(started.elapsed());
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (worst, i, pinger, ponger)
        }
    });
    // Watch the queued bytes while it runs.
    let metrics_addr = relay.metrics;
    let watcher = tokio::spawn({
        let done = done.clone();
        async move {
            let mut peak = 0.0f64;
            while !done.load(Ordering::SeqCst) {
                let text = common::scrape(metrics_addr, "/metrics").await.1;
                peak = peak.max(common::sample(&text, "lifeline_relay_queued_bytes"));
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            peak
        }
    });

    let started = Instant::now();
    let payload = body(7, MAX_BODY_LEN);
    let flood = frame(FrameKind::SecureData, SESSION, 0, Destination::AllMembers, &payload);
    for sent in 0..FRAMES {
        while sent >= received.load(Ordering::SeqCst) + WINDOW {
            tokio::task::yield_now().await;
            assert!(started.elapsed() < Duration::from_secs(30), "fast member stalled at {sent}");
        }
        leader.send_raw(&flood).await.unwrap();
    }
    let _fast =
        tokio::time::timeout(Duration::from_secs(30), fast_task).await.expect("fast member got everything").unwrap();
    let flood_time = started.elapsed();
    done.store(true, Ordering::SeqCst);
    let (worst_ping, ping_count, _pinger, _ponger) = pings.await.unwrap();
    let peak = watcher.await.unwrap();

    let drops = relay.metric("lifeline_relay_drops_total{reason=\"slow_consumer\"}").await;
    eprintln!(
        "flood of {FRAMES} x 16 KiB in {flood_time:?}; worst of {ping_count} pings {worst_ping:?}; {drops} drops; peak queue {peak}"
    );
    assert!(drops > 0.0, "the stalled member's frames are dropped");
    assert!(flood_time < Duration::from_secs(30));
    assert!(worst_ping < Duration::from_secs(1), "other sessions are not slowed: {worst_ping:?}");
    // Two members' data queues at most (the fast one's barely fills).
    assert!(peak <= (2 * DATA_QUEUE) as f64, "queued bytes stay bounded: {peak}");
    assert_eq!(relay.metric("lifeline_relay_members").await, 5.0, "nobody was disconnected");
    drop(stalled);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_control_queue_overflows_is_disconnected_and_may_resume() {
    let relay = TestRelay::start(pki().config("local", &limits(&[("control_queue_frames", "4")]))).await;
    let pki = pki();
    let mut leader = Client::join(relay.addr, SESSION, &pki.leader(SESSION, "local"), None).await;
    let ticket = pki.member(SESSION, "local");
    let mut stalled = Client::join(relay.addr, SESSION, &ticket, None).await;
    // Control frames (here: handshake messages) are never dropped silently: once the socket
    // buffers and the control queue are full, the member is disconnected instead.
    let big = frame(FrameKind::Handshake, SESSION, 0, Destination::Member(MemberId(1)), &body(1, MAX_BODY_LEN));
    let started = Instant::now();
    while relay.metric("lifeline_relay_drops_total{reason=\"control_overflow\"}").await == 0.0 {
        for _ in 0..64 {
            leader.send_raw(&big).await.unwrap();
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no overflow");
    }
    assert!(stalled.closed_within(Duration::from_secs(10)).await);
    assert_eq!(leader.notice(Duration::from_secs(2)).await, Some(common::Notice::MemberGone(1)));
    let again = Client::join(relay.addr, SESSION, &ticket, Some(1)).await;
    assert_eq!(again.member, 1, "it resumes its id");
    relay.stop().await;
}
