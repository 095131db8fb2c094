//! Reaching a relay: the port race, certificate checks, HTTP CONNECT proxies and probes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use lifeline_transport_tokio::connect::{connect_tls, probe, rank_by_rtt};
use lifeline_transport_tokio::{ConnectError, HttpProxy, RelayAddress, Timing};
use support::{TestPki, closed_port, http_proxy, silent_server, tls_server};
use tokio::task::JoinSet;

fn timing(connect_timeout: Duration) -> Timing {
    Timing { connect_timeout, stagger: Duration::from_millis(50), ..Timing::default() }
}

fn relay(ports: &[u16]) -> RelayAddress {
    RelayAddress::new("127.0.0.1").with_ports(ports.to_vec())
}

#[tokio::test]
async fn the_first_port_to_finish_tls_wins() {
    let pki = TestPki::new("relay");
    let mut servers = JoinSet::new();
    let closed = closed_port().await;
    let silent = silent_server(&mut servers).await;
    let good = tls_server(&mut servers, pki.server.clone()).await;

    let started = Instant::now();
    let (stream, port) =
        connect_tls(&relay(&[closed, silent, good]), pki.client(), None, &timing(Duration::from_secs(10)))
            .await
            .unwrap();
    assert_eq!(port, good);
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"lifeline/1"[..]));
}

#[tokio::test]
async fn a_port_that_never_finishes_tls_times_out() {
    let pki = TestPki::new("relay");
    let mut servers = JoinSet::new();
    let silent = silent_server(&mut servers).await;
    let started = Instant::now();
    let error =
        connect_tls(&relay(&[silent]), pki.client(), None, &timing(Duration::from_millis(300))).await.unwrap_err();
    assert_eq!(error, ConnectError::TimedOut);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn closed_ports_are_unreachable() {
    let pki = TestPki::new("relay");
    let error =
        connect_tls(&relay(&[closed_port().await, closed_port().await]), pki.client(), None, &Timing::default())
            .await
            .unwrap_err();
    assert!(matches!(error, ConnectError::Unreachable(_)), "{error:?}");
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused() {
    let trusted = TestPki::new("trusted");
    let impostor = TestPki::new("impostor");
    let mut servers = JoinSet::new();
    let port = tls_server(&mut servers, impostor.server.clone()).await;
    let error = connect_tls(&relay(&[port]), trusted.client(), None, &Timing::default()).await.unwrap_err();
    assert!(matches!(error, ConnectError::Certificate(_)), "{error:?}");
    assert!(!error.is_transient());
}

#[tokio::test]
async fn a_certificate_for_another_name_is_refused() {
    let pki = TestPki::new("relay");
    let mut servers = JoinSet::new();
    let port = tls_server(&mut servers, pki.server.clone()).await;
    let mut address = relay(&[port]);
    address.tls_name = Some("relay.lifeline.test".into());
    let error = connect_tls(&address, pki.client(), None, &Timing::default()).await.unwrap_err();
    assert!(matches!(error, ConnectError::Certificate(_)), "{error:?}");
}

#[tokio::test]
async fn the_certificate_error_is_reported_over_other_failures() {
    let trusted = TestPki::new("trusted");
    let impostor = TestPki::new("impostor");
    let mut servers = JoinSet::new();
    let bad = tls_server(&mut servers, impostor.server.clone()).await;
    let error =
        connect_tls(&relay(&[closed_port().await, bad]), trusted.client(), None, &Timing::default()).await.unwrap_err();
    assert!(matches!(error, ConnectError::Certificate(_)), "{error:?}");
}

#[tokio::test]
async fn tls_goes_through_an_http_connect_proxy() {
    let pki = TestPki::new("relay");
    let mut servers = JoinSet::new();
    let good = tls_server(&mut servers, pki.server.clone()).await;
    let proxy = http_proxy(&mut servers, 200).await;
    let config = HttpProxy::parse(&format!("http://alice:s3cret@127.0.0.1:{}", proxy.port)).unwrap();

    let (_stream, port) = connect_tls(&relay(&[good]), pki.client(), Some(&config), &Timing::default()).await.unwrap();
    assert_eq!(port, good);
    let requests = proxy.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 1);
    assert!(requests[0].starts_with(&format!("CONNECT 127.0.0.1:{good} HTTP/1.1\r\n")), "{}", requests[0]);
    assert!(requests[0].contains("Proxy-Authorization: Basic YWxpY2U6czNjcmV0\r\n"), "{}", requests[0]);
}

#[tokio::test]
async fn a_proxy_refusal_is_reported() {
    let pki = TestPki::new("relay");
    let mut servers = JoinSet::new();
    let proxy = http_proxy(&mut servers, 403).await;
    let config = HttpProxy::parse(&format!("127.0.0.1:{}", proxy.port)).unwrap();
    let error = connect_tls(&relay(&[8200]), pki.client(), Some(&config), &Timing::default()).await.unwrap_err();
    assert!(matches!(&error, ConnectError::Proxy(detail) if detail.contains("403")), "{error:?}");
}

#[tokio::test]
async fn no_proxy_hosts_connect_directly() {
    let pki = TestPki::new("relay");
    let mut servers = JoinSet::new();
    let good = tls_server(&mut servers, pki.server.clone()).await;
    let proxy = http_proxy(&mut servers, 200).await;
    let config = HttpProxy::parse(&format!("127.0.0.1:{}", proxy.port)).unwrap().with_no_proxy("127.0.0.1");
    connect_tls(&relay(&[good]), pki.client(), Some(&config), &Timing::default()).await.unwrap();
    assert!(proxy.requests.lock().unwrap().is_empty());
}

#[tokio::test]
async fn probes_measure_and_rank_relays() {
    let pki = TestPki::new("relay");
    let mut servers = JoinSet::new();
    let live = tls_server(&mut servers, pki.server.clone()).await;
    let dead = closed_port().await;
    let limit = Duration::from_secs(1);
    assert!(probe("127.0.0.1", live, limit).await.is_some());
    assert!(probe("127.0.0.1", dead, limit).await.is_none());
    let order = rank_by_rtt(&[relay(&[dead]), relay(&[live]), relay(&[dead])], limit).await;
    assert_eq!(order, vec![1, 0, 2]);
}
