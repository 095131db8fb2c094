//! Whole sessions through a relay stand-in on loopback: join, chat, consent, wrong PIN, the
//! end of a session, reconnection with resumption, `GoAway`, and the retry budget.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use lifeline_core::consent::Capability;
use lifeline_core::session::{Config, Event, Pin, SessionEnd};
use lifeline_core::wire::handshake::{RejectReason, Role};
use lifeline_core::wire::relay::RefusalReason;
use lifeline_core::wire::{Destination, MemberId};
use lifeline_transport_tokio::{
    Backoff, CloseCause, ConnectError, ConnectionState, Join, RelayAddress, SessionEvents, SessionHandle, SessionSpec,
    TransportConfig, TransportEvent, os_rng, spawn_session,
};
use support::{TestPki, TestRelay, closed_port, wait_closed, wait_for};

const SESSION: u64 = 482_913_570;
const LIMIT: Duration = Duration::from_secs(20);

fn transport(pki: &TestPki, ports: &[u16]) -> TransportConfig {
    let relays = ports.iter().map(|&port| RelayAddress::new("127.0.0.1").with_ports(vec![port])).collect();
    let mut config = TransportConfig::new(relays, pki.client());
    config.backoff = Backoff { initial: Duration::from_millis(20), max: Duration::from_millis(200) };
    config
}

fn leader(config: TransportConfig, pin: &Pin) -> (SessionHandle, SessionEvents) {
    let spec = SessionSpec {
        config: Config::new(SESSION, MemberId::LEADER, Role::Provider, "Ada (Helpdesk)"),
        join: Join::Leader(pin.clone()),
        ticket: b"leader".to_vec(),
    };
    spawn_session(config, spec)
}

fn member(config: TransportConfig, pin: &str) -> (SessionHandle, SessionEvents) {
    let spec = SessionSpec {
        config: Config::new(SESSION, MemberId(1), Role::Customer, "Customer"),
        join: Join::Member(Pin::from_str_truncated(pin)),
        ticket: b"member".to_vec(),
    };
    spawn_session(config, spec)
}

async fn connected(events: &mut SessionEvents) -> (u16, MemberId, bool) {
    wait_for(events, LIMIT, "Connected", |event| match event {
        TransportEvent::Connection(ConnectionState::Connected { port, member, resumed, .. }) => {
            Some((*port, *member, *resumed))
        }
        _ => None,
    })
    .await
}

async fn chat_from(events: &mut SessionEvents, text: &str) -> MemberId {
    wait_for(events, LIMIT, text, |event| match event {
        TransportEvent::Data(data) if data.payload == text.as_bytes() => Some(data.from),
        _ => None,
    })
    .await
}

async fn joined(events: &mut SessionEvents) {
    wait_for(events, LIMIT, "Joined", |event| {
        matches!(event, TransportEvent::Session(Event::Joined { .. })).then_some(())
    })
    .await;
}

/// A leader and a joined member on `relay`.
async fn pair(pki: &TestPki, ports: &[u16]) -> (SessionHandle, SessionEvents, SessionHandle, SessionEvents) {
    let pin = Pin::generate(&mut os_rng());
    let (provider, mut provider_events) = leader(transport(pki, ports), &pin);
    assert_eq!(connected(&mut provider_events).await, (ports[0], MemberId::LEADER, false));
    let (customer, mut customer_events) = member(transport(pki, ports), pin.as_str());
    let (_, id, _) = connected(&mut customer_events).await;
    assert_eq!(id, MemberId(1));
    joined(&mut customer_events).await;
    wait_for(&mut provider_events, LIMIT, "the customer's announce", |event| match event {
        TransportEvent::Session(Event::MemberAnnounced { name, role: Role::Customer, .. }) if name == "Customer" => {
            Some(())
        }
        _ => None,
    })
    .await;
    (provider, provider_events, customer, customer_events)
}

#[tokio::test]
async fn provider_and_customer_chat_and_the_customer_ends_the_session() {
    let pki = TestPki::new("relay");
    let relay = TestRelay::start(&pki, 1).await;
    let (provider, mut provider_events, customer, mut customer_events) = pair(&pki, &relay.ports).await;

    provider.chat("Hi, I'm Ada.").await.unwrap();
    assert_eq!(chat_from(&mut customer_events, "Hi, I'm Ada.").await, MemberId::LEADER);
    customer.chat("Hello Ada").await.unwrap();
    assert_eq!(chat_from(&mut provider_events, "Hello Ada").await, MemberId(1));

    // Consent: the provider asks, the customer's user allows, the provider sees it.
    provider.request(MemberId(1), Capability::ViewScreen).await.unwrap();
    wait_for(&mut customer_events, LIMIT, "the prompt", |event| match event {
        TransportEvent::Session(Event::ConsentRequested { from: MemberId::LEADER, capability }) => Some(*capability),
        _ => None,
    })
    .await;
    customer.grant(Capability::ViewScreen).await.unwrap();
    wait_for(&mut provider_events, LIMIT, "the grant", |event| match event {
        TransportEvent::Session(Event::PeerConsent { granted, .. }) => {
            granted.contains(Capability::ViewScreen).then_some(())
        }
        _ => None,
    })
    .await;
    customer
        .send(
            Destination::Member(MemberId::LEADER),
            lifeline_core::wire::control::ContentType::Screen,
            b"tile".to_vec(),
        )
        .await
        .unwrap();
    wait_for(&mut provider_events, LIMIT, "a screen tile", |event| match event {
        TransportEvent::Data(data) if data.payload == b"tile" => Some(()),
        _ => None,
    })
    .await;

    customer.close().await;
    assert_eq!(wait_closed(&mut customer_events, LIMIT).await, CloseCause::Session(SessionEnd::Local));
    assert_eq!(wait_closed(&mut provider_events, LIMIT).await, CloseCause::Session(SessionEnd::EndedBy(MemberId(1))));
    assert_eq!(customer.chat("too late").await, Err(lifeline_core::session::SendError::Closed));
    relay.stop().await;
}

#[tokio::test]
async fn a_batch_arrives_whole_and_in_order_and_a_refused_one_is_handed_back() {
    use lifeline_core::session::SendError;
    use lifeline_core::wire::control::ContentType;

    let pki = TestPki::new("relay");
    let relay = TestRelay::start(&pki, 1).await;
    let (provider, _provider_events, customer, mut customer_events) = pair(&pki, &relay.ports).await;

    // 40 payloads (two of them the largest a frame carries) in one command: each is sealed as
    // its own frame and they arrive as sent.
    let payloads: Vec<Vec<u8>> = (0..40u8)
        .map(|i| if i % 20 == 7 { vec![i; lifeline_core::wire::MAX_PAYLOAD_LEN] } else { vec![i; 1 + usize::from(i)] })
        .collect();
    let result = provider.send_batch(Destination::Member(MemberId(1)), ContentType::Chat, payloads.clone()).await;
    assert_eq!((result.sent, result.error, result.unsent.len()), (40, None, 0));
    for expected in &payloads {
        let got = wait_for(&mut customer_events, LIMIT, "the next payload of the batch", |event| match event {
            TransportEvent::Data(data) => Some(data.payload.clone()),
            _ => None,
        })
        .await;
        assert_eq!(&got, expected);
    }

    // The customer has not granted file transfer: its engine refuses the first payload, and the
    // whole batch comes back unsent, in order.
    let files = vec![b"one".to_vec(), b"two".to_vec()];
    let result = customer.send_batch(Destination::Member(MemberId::LEADER), ContentType::File, files.clone()).await;
    assert_eq!(result.sent, 0);
    assert_eq!(result.error, Some(SendError::NotGranted));
    assert_eq!(result.unsent, files);
    relay.stop().await;
}

#[tokio::test]
async fn a_wrong_pin_is_rejected() {
    let pki = TestPki::new("relay");
    let relay = TestRelay::start(&pki, 1).await;
    let pin = Pin::generate(&mut os_rng());
    let (_provider, mut provider_events) = leader(transport(&pki, &relay.ports), &pin);
    connected(&mut provider_events).await;
    let wrong = if pin.as_str() == "00000000" { "11111111" } else { "00000000" };
    let (_customer, mut customer_events) = member(transport(&pki, &relay.ports), wrong);
    assert_eq!(
        wait_closed(&mut customer_events, LIMIT).await,
        CloseCause::Session(SessionEnd::JoinRejected(RejectReason::BadProof))
    );
    wait_for(&mut provider_events, LIMIT, "JoinFailed", |event| match event {
        TransportEvent::Session(Event::JoinFailed { failures: 1, .. }) => Some(()),
        _ => None,
    })
    .await;
    relay.stop().await;
}

#[tokio::test]
async fn both_sides_reconnect_and_resume_after_the_relay_drops_them() {
    let pki = TestPki::new("relay");
    let relay = TestRelay::start(&pki, 1).await;
    let (provider, mut provider_events, customer, mut customer_events) = pair(&pki, &relay.ports).await;

    relay.drop_all();
    for events in [&mut provider_events, &mut customer_events] {
        wait_for(events, LIMIT, "Reconnecting", |event| {
            matches!(event, TransportEvent::Connection(ConnectionState::Reconnecting { .. })).then_some(())
        })
        .await;
        let (_, _, resumed) = connected(events).await;
        assert!(resumed);
    }
    let resumes: Vec<_> = relay.admits().into_iter().map(|(_, resume)| resume).collect();
    assert!(resumes.contains(&Some(0)) && resumes.contains(&Some(1)), "{resumes:?}");

    // The same keys and member ids: no new join, chat goes on both ways.
    customer.chat("still there?").await.unwrap();
    assert_eq!(chat_from(&mut provider_events, "still there?").await, MemberId(1));
    provider.chat("yes").await.unwrap();
    assert_eq!(chat_from(&mut customer_events, "yes").await, MemberId::LEADER);
    relay.stop().await;
}

#[tokio::test]
async fn go_away_moves_to_the_next_relay() {
    let pki = TestPki::new("relay");
    let relay = TestRelay::start(&pki, 2).await;
    let (provider, _provider_events, _customer, mut customer_events) = pair(&pki, &relay.ports).await;

    relay.go_away(1);
    let (port, member, resumed) = connected(&mut customer_events).await;
    assert_eq!((port, member, resumed), (relay.ports[1], MemberId(1), true));
    provider.chat("after the move").await.unwrap();
    assert_eq!(chat_from(&mut customer_events, "after the move").await, MemberId::LEADER);
    relay.stop().await;
}

#[tokio::test]
async fn an_unreachable_relay_is_given_up_after_the_retry_budget() {
    let pki = TestPki::new("relay");
    let mut config = transport(&pki, &[closed_port().await]);
    config.initial_attempts = 3;
    let (_customer, mut events) = member(config, "12345678");
    let mut retries = 0;
    let cause = wait_for(&mut events, LIMIT, "Closed", |event| match event {
        TransportEvent::Connection(ConnectionState::Reconnecting { .. }) => {
            retries += 1;
            None
        }
        TransportEvent::Connection(ConnectionState::Closed { cause }) => Some(cause.clone()),
        _ => None,
    })
    .await;
    assert_eq!(retries, 2);
    assert!(matches!(cause, CloseCause::Connection(ConnectError::Unreachable(_))), "{cause:?}");
}

#[tokio::test]
async fn a_refused_ticket_is_final() {
    let pki = TestPki::new("relay");
    let relay = TestRelay::start(&pki, 1).await;
    let spec = SessionSpec {
        config: Config::new(SESSION, MemberId(1), Role::Customer, "Customer"),
        join: Join::Member(Pin::from_str_truncated("12345678")),
        ticket: b"bad".to_vec(),
    };
    let (_customer, mut events) = spawn_session(transport(&pki, &relay.ports), spec);
    assert_eq!(
        wait_closed(&mut events, LIMIT).await,
        CloseCause::Connection(ConnectError::Refused(RefusalReason::BadTicket))
    );
    assert_eq!(relay.admits().len(), 1, "no retry after a refused ticket");
    relay.stop().await;
}

#[tokio::test]
async fn commands_before_admission_and_after_the_end_fail_cleanly() {
    let pki = TestPki::new("relay");
    let (customer, mut events) = member(transport(&pki, &[closed_port().await]), "12345678");
    assert_eq!(customer.chat("hi").await, Err(lifeline_core::session::SendError::NotEstablished));
    customer.close().await;
    assert_eq!(wait_closed(&mut events, LIMIT).await, CloseCause::Session(SessionEnd::Local));
    assert_eq!(customer.grant(Capability::ViewScreen).await, Err(lifeline_core::consent::ConsentError::Closed));
    assert!(events.next().await.is_none());
}

#[tokio::test]
async fn a_member_that_missed_a_rekey_while_away_catches_up_after_resuming() {
    let pki = TestPki::new("relay");
    let relay = TestRelay::start(&pki, 1).await;
    let pin = Pin::generate(&mut os_rng());
    let (provider, mut provider_events) = leader(transport(&pki, &relay.ports), &pin);
    connected(&mut provider_events).await;
    // The customer comes back slowly, so that the rekey below happens while it is away.
    let mut slow = transport(&pki, &relay.ports);
    slow.backoff = Backoff { initial: Duration::from_millis(1500), max: Duration::from_millis(1500) };
    let (_customer, mut customer_events) = member(slow, pin.as_str());
    joined(&mut customer_events).await;
    // A second provider (member 2): its leaving makes the leader rekey.
    let spec = SessionSpec {
        config: Config::new(SESSION, MemberId(2), Role::Provider, "Bob"),
        join: Join::Member(pin.clone()),
        ticket: b"member".to_vec(),
    };
    let (bob, mut bob_events) = spawn_session(transport(&pki, &relay.ports), spec);
    joined(&mut bob_events).await;

    relay.drop_member(1);
    wait_for(&mut customer_events, LIMIT, "Reconnecting", |event| {
        matches!(event, TransportEvent::Connection(ConnectionState::Reconnecting { .. })).then_some(())
    })
    .await;
    bob.close().await;
    let epoch = wait_for(&mut provider_events, LIMIT, "the rekey after Bob left", |event| match event {
        TransportEvent::Session(Event::Rekeyed { epoch }) => Some(*epoch),
        _ => None,
    })
    .await;

    let (_, _, resumed) = connected(&mut customer_events).await;
    assert!(resumed);
    // At once, through its key request: not only after its next keepalive (10 s), when the
    // leader would notice it is back.
    wait_for(&mut customer_events, Duration::from_secs(5), "the missed keys", |event| match event {
        TransportEvent::Session(Event::Rekeyed { epoch: caught_up }) => (*caught_up >= epoch).then_some(()),
        _ => None,
    })
    .await;
    provider.chat("under the new keys").await.unwrap();
    assert_eq!(chat_from(&mut customer_events, "under the new keys").await, MemberId::LEADER);
    relay.stop().await;
}
