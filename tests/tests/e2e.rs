//! End-to-end: real relays (the relay crate's code, in process) and real engines on the tokio
//! transport, over loopback TLS.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use lifeline_core::consent::Capability;
use lifeline_core::session::Event;
use lifeline_core::wire::control::ContentType;
use lifeline_core::wire::handshake::Role;
use lifeline_core::wire::{Destination, MemberId};
use lifeline_transport_tokio::{ConnectionState, TransportEvent};
use support::{
    Endpoint, HostileProxy, Tamper, TestRelay, contains, meshed_pair, new_pin, provider_and_customer, session_number,
};

/// Provider asks for `capabilities`, the customer's user allows each, the provider sees it.
async fn grant(provider: &mut Endpoint, customer: &mut Endpoint, capabilities: &[Capability]) {
    for &capability in capabilities {
        provider.handle.request(MemberId(1), capability).await.unwrap();
        customer
            .wait("the consent prompt", |event| match event {
                TransportEvent::Session(Event::ConsentRequested { from: MemberId::LEADER, capability: c })
                    if *c == capability =>
                {
                    Some(())
                }
                _ => None,
            })
            .await;
        customer.handle.grant(capability).await.unwrap();
        provider
            .wait("the grant", |event| match event {
                TransportEvent::Session(Event::PeerConsent { from: MemberId(1), granted, .. }) => {
                    granted.contains(capability).then_some(())
                }
                _ => None,
            })
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_sees_no_plaintext() {
    let relay = TestRelay::start("a", "").await;
    let proxy = HostileProxy::start(relay.addr, MemberId::LEADER).await;
    let session = session_number();
    let pin = new_pin();
    let (mut provider, mut customer) =
        provider_and_customer(vec![proxy.address()], vec![proxy.address()], session, "a", &pin).await;

    let provider_chat = "Hello, this is Ada from the helpdesk: ZEBRA-CHAT-4417";
    let customer_chat = "My printer prints only purple: OKAPI-CHAT-9902";
    let provider_file = "FILE-CONTENT provider->customer: fix-printer.sh MARMOT-FILE-3310\n".repeat(40);
    let customer_file = "FILE-CONTENT customer->provider: printer-log.txt NARWHAL-FILE-8826\n".repeat(40);
    let screen = "SCREEN-CONTENT desktop wallpaper pixels PANGOLIN-SCREEN-5521 ".repeat(60);

    provider.handle.chat(provider_chat).await.unwrap();
    assert_eq!(customer.received(provider_chat.as_bytes()).await, MemberId::LEADER);
    customer.handle.chat(customer_chat).await.unwrap();
    assert_eq!(provider.received(customer_chat.as_bytes()).await, MemberId(1));

    grant(&mut provider, &mut customer, &[Capability::FileTransfer, Capability::ViewScreen]).await;
    provider.handle.send(Destination::Member(MemberId(1)), ContentType::File, provider_file.as_bytes()).await.unwrap();
    customer
        .handle
        .send(Destination::Member(MemberId::LEADER), ContentType::File, customer_file.as_bytes())
        .await
        .unwrap();
    customer.handle.send(Destination::Member(MemberId::LEADER), ContentType::Screen, screen.as_bytes()).await.unwrap();
    assert_eq!(customer.received(provider_file.as_bytes()).await, MemberId::LEADER);
    assert_eq!(provider.received(customer_file.as_bytes()).await, MemberId(1));
    assert_eq!(provider.received(screen.as_bytes()).await, MemberId(1));
    let kinds = |endpoint: &Endpoint| endpoint.data().iter().map(|data| data.content).collect::<Vec<_>>();
    assert_eq!(kinds(&customer), [ContentType::Chat, ContentType::File]);
    assert_eq!(kinds(&provider), [ContentType::Chat, ContentType::File, ContentType::Screen]);

    let (upstream, downstream) = proxy.recorded();
    // The recordings are the decrypted TLS streams, i.e. what the relay sees: frames whose
    // routing headers carry the session number in clear.
    let session_bytes = session.to_be_bytes();
    assert!(upstream.len() > 2_000 && downstream.len() > 2_000, "{} / {} bytes", upstream.len(), downstream.len());
    assert!(contains(&upstream, &session_bytes) && contains(&downstream, &session_bytes));
    let secrets: [&[u8]; 12] = [
        b"ZEBRA-CHAT",
        b"Hello, this is Ada",
        b"OKAPI-CHAT",
        b"purple",
        b"MARMOT-FILE",
        b"fix-printer.sh",
        b"NARWHAL-FILE",
        b"printer-log",
        b"PANGOLIN-SCREEN",
        b"wallpaper",
        b"FILE-CONTENT",
        pin.as_str().as_bytes(),
    ];
    for secret in secrets {
        let text = String::from_utf8_lossy(secret);
        assert!(!contains(&upstream, secret), "the relay saw {text:?} (endpoints → relay)");
        assert!(!contains(&downstream, secret), "the relay saw {text:?} (relay → endpoints)");
    }
    drop(proxy);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampering_relay_is_detected() {
    let relay = TestRelay::start("a", "").await;
    // The provider talks to the relay directly; everything the relay sends the customer passes
    // the proxy, which tampers with the provider's SecureData frames as planned.
    let proxy = HostileProxy::start(relay.addr, MemberId::LEADER).await;
    let session = session_number();
    let (mut provider, mut customer) =
        provider_and_customer(vec![relay.address()], vec![proxy.address()], session, "a", &new_pin()).await;

    let plan = [
        Tamper::FlipBit,      // m0: altered → refused (authentication fails)
        Tamper::Pass,         // m1
        Tamper::Replay,       // m2: delivered once, the copy refused (sequence check)
        Tamper::Pass,         // m3
        Tamper::Swap,         // m4 held back, forwarded after m5: m5 delivered, m4 refused
        Tamper::Drop,         // m6: lost
        Tamper::Pass,         // m7
        Tamper::Forge,        // m8, then a forged SecureData frame → refused
        Tamper::Pass,         // m9
        Tamper::ForgeControl, // m10, then a forged SecureControl frame → refused
        Tamper::Pass,         // m11
    ];
    proxy.plan(&plan);
    let messages: Vec<String> = (0..12).map(|i| format!("tamper-test message m{i}")).collect();
    for message in &messages {
        provider.handle.chat(message).await.unwrap();
    }
    provider.handle.chat("clean message after the tampering").await.unwrap();
    customer.received(b"clean message after the tampering").await;
    customer.settle(Duration::from_millis(300)).await;
    assert_eq!(proxy.done(), plan, "every planned change was applied");

    let delivered: Vec<String> = customer
        .data()
        .iter()
        .map(|data| {
            assert_eq!((data.from, data.content), (MemberId::LEADER, ContentType::Chat));
            String::from_utf8(data.payload.clone()).expect("unaltered UTF-8")
        })
        .collect();
    // Exactly the clean payloads, once each, in order: the flipped m0 and the dropped m6 are
    // missing, the replayed m2 is there once, the forged frames delivered nothing, and of the
    // swapped pair only m5 arrives: m4, overtaken by a newer frame of the same sender, was
    // reordered on the way and is refused.
    let expected: Vec<String> = [1, 2, 3, 5, 7, 8, 9, 10, 11]
        .iter()
        .map(|&i| messages[i].clone())
        .chain(["clean message after the tampering".to_owned()])
        .collect();
    assert_eq!(delivered, expected);

    // The session goes on, both ways.
    customer.handle.chat("still with you").await.unwrap();
    assert_eq!(provider.received(b"still with you").await, MemberId(1));
    provider.handle.chat("good").await.unwrap();
    assert_eq!(customer.received(b"good").await, MemberId::LEADER);
    drop(proxy);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_meshed_relays() {
    let (a, b) = meshed_pair().await;
    let session = session_number();
    let (mut provider, mut customer) =
        provider_and_customer(vec![a.address()], vec![b.address()], session, "a", &new_pin()).await;

    provider.handle.chat("from the provider on a").await.unwrap();
    assert_eq!(customer.received(b"from the provider on a").await, MemberId::LEADER);
    customer.handle.chat("from the customer on b").await.unwrap();
    assert_eq!(provider.received(b"from the customer on b").await, MemberId(1));

    assert!(b.metric("lifeline_relay_forwarded_total").await >= 1.0, "b carried the customer to a");
    assert_eq!(b.metric("lifeline_relay_sessions").await, 0.0, "b holds no session state");
    assert_eq!(a.metric("lifeline_relay_sessions").await, 1.0);
    assert_eq!(a.metric("lifeline_relay_members").await, 2.0);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_fan_out() {
    let relay = TestRelay::start("a", "").await;
    let session = session_number();
    let pin = new_pin();
    let (mut leader, mut customer) =
        provider_and_customer(vec![relay.address()], vec![relay.address()], session, "a", &pin).await;
    let mut second = Endpoint::member(vec![relay.address()], session, "a", &pin, Role::Provider, "Bob (2nd line)");
    assert_eq!(second.connected().await.1, MemberId(2));
    second.joined().await;
    leader.announced(MemberId(2)).await;
    customer.announced(MemberId(2)).await;

    let lines = [("leader", MemberId(0)), ("customer", MemberId(1)), ("second provider", MemberId(2))];
    for (name, _) in lines {
        let endpoint = match name {
            "leader" => &leader,
            "customer" => &customer,
            _ => &second,
        };
        endpoint.handle.chat(&format!("broadcast from the {name}")).await.unwrap();
    }
    for (name, from) in lines {
        let text = format!("broadcast from the {name}");
        for (receiver, id) in [(&mut leader, MemberId(0)), (&mut customer, MemberId(1)), (&mut second, MemberId(2))] {
            if id != from {
                assert_eq!(receiver.received(text.as_bytes()).await, from, "{text} at member {}", id.0);
            }
        }
    }
    for endpoint in [&mut leader, &mut customer, &mut second] {
        endpoint.settle(Duration::from_millis(200)).await;
    }
    for (endpoint, own) in [(&leader, "leader"), (&customer, "customer"), (&second, "second provider")] {
        let mut texts: Vec<String> =
            endpoint.data().iter().map(|data| String::from_utf8_lossy(&data.payload).into_owned()).collect();
        texts.sort();
        let mut expected: Vec<String> = lines
            .iter()
            .filter(|(name, _)| *name != own)
            .map(|(name, _)| format!("broadcast from the {name}"))
            .collect();
        expected.sort();
        assert_eq!(texts, expected, "exactly the others' broadcasts, once each, at the {own}");
    }
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_killed_mid_session_reconnects_to_the_other_relay() {
    let (a, b) = meshed_pair().await;
    let session = session_number();
    let relays = vec![a.address(), b.address()];
    let (mut provider, mut customer) = provider_and_customer(relays.clone(), relays, session, "a", &new_pin()).await;
    provider.handle.chat("before the crash").await.unwrap();
    assert_eq!(customer.received(b"before the crash").await, MemberId::LEADER);

    let joins_before = (provider.joins(), customer.joins());
    assert_eq!(joins_before.1, 1);
    let b_port = b.addr.port();
    a.kill();
    for (endpoint, id) in [(&mut provider, MemberId::LEADER), (&mut customer, MemberId(1))] {
        assert_eq!(endpoint.connected().await, (b_port, id, true), "resumed on b with the same id");
    }
    b.wait_metric("lifeline_relay_adoptions_total", |v| v == 1.0).await;
    // A crash, not a planned shutdown: the connection broke, no GoAway came.
    for endpoint in [&provider, &customer] {
        let losses: Vec<String> = endpoint
            .seen
            .iter()
            .filter_map(|event| match event {
                TransportEvent::Connection(ConnectionState::Reconnecting { error, .. }) => Some(error.to_string()),
                _ => None,
            })
            .collect();
        assert!(!losses.is_empty(), "the loss was noticed");
        assert!(losses.iter().all(|error| !error.contains("going away")), "{losses:?}");
    }

    customer.handle.chat("after the crash, from the customer").await.unwrap();
    assert_eq!(provider.received(b"after the crash, from the customer").await, MemberId(1));
    provider.handle.chat("after the crash, from the provider").await.unwrap();
    assert_eq!(customer.received(b"after the crash, from the provider").await, MemberId::LEADER);
    provider.settle(Duration::from_millis(100)).await;
    customer.settle(Duration::from_millis(100)).await;
    assert_eq!((provider.joins(), customer.joins()), joins_before, "no new join");
    b.stop().await;
}
