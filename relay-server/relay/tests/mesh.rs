//! The relay mesh: forwarding to the home relay over mutual TLS, refusing untrusted peers, and
//! adopting a session when its home relay is gone.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Client, Notice, Pki, SESSION, TestRelay, limits, pki};
use lifeline_core::wire::{Destination, FrameKind, HEADER_LEN, MemberId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn mesh_section(mesh_listen: &str, peers: &[(&str, String)]) -> String {
    let peers: Vec<String> =
        peers.iter().map(|(name, address)| format!("{{ name = \"{name}\", address = \"{address}\" }}")).collect();
    format!(
        "[mesh]\nlisten = \"{mesh_listen}\"\nkeepalive_secs = 1.0\nreconnect_min_secs = 0.1\nreconnect_max_secs = 0.5\npeers = [{}]\n",
        peers.join(", ")
    )
}

/// Relay "b" (listens for its peer "a"), then relay "a" (dials "b").
async fn pair() -> (TestRelay, TestRelay) {
    let pki = pki();
    let b = TestRelay::start(
        pki.config("b", &format!("{}{}", limits(&[]), mesh_section("127.0.0.1:0", &[("a", "127.0.0.1:9".into())]))),
    )
    .await;
    let b_mesh: SocketAddr = b.mesh.unwrap();
    let a = TestRelay::start(
        pki.config("a", &format!("{}{}", limits(&[]), mesh_section("127.0.0.1:0", &[("b", b_mesh.to_string())]))),
    )
    .await;
    a.wait_metric("lifeline_relay_mesh_links_up", |v| v == 1.0).await;
    b.wait_metric("lifeline_relay_mesh_links_up", |v| v == 1.0).await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_on_b_joins_a_session_homed_on_a() {
    let (a, b) = pair().await;
    let pki = pki();
    let mut leader = Client::join(a.addr, SESSION, &pki.leader(SESSION, "a"), None).await;
    let mut remote = Client::join(b.addr, SESSION, &pki.member(SESSION, "a"), None).await;
    assert_eq!(remote.member, 1, "the home relay assigns the id");
    let mut local = Client::join(a.addr, SESSION, &pki.member(SESSION, "a"), None).await;
    assert_eq!(local.member, 2);

    remote.send_as_me(FrameKind::Handshake, Destination::Member(MemberId(0)), b"via b").await;
    assert_eq!(&leader.expect_frame().await[HEADER_LEN..], b"via b");
    let fan_out = common::frame(FrameKind::SecureData, SESSION, 0, Destination::AllMembers, &common::body(1, 5000));
    leader.send_raw(&fan_out).await.unwrap();
    assert_eq!(remote.expect_frame().await, fan_out, "unchanged across the link");
    assert_eq!(local.expect_frame().await, fan_out);
    // The home relay checks the sender of frames that come over the link too.
    remote.send(FrameKind::Handshake, SESSION, 0, Destination::AllMembers, b"spoofed").await;
    remote.send_as_me(FrameKind::Handshake, Destination::Member(MemberId(2)), b"checked").await;
    assert_eq!(&local.expect_frame().await[HEADER_LEN..], b"checked");
    assert_eq!(a.metric("lifeline_relay_drops_total{reason=\"spoofed_sender\"}").await, 1.0);

    assert_eq!(b.metric("lifeline_relay_forwarded_total").await, 1.0);
    assert_eq!(b.metric("lifeline_relay_sessions").await, 0.0, "b holds no session state");
    assert_eq!(a.metric("lifeline_relay_members").await, 3.0);

    drop(remote);
    assert_eq!(leader.notice(Duration::from_secs(3)).await, Some(Notice::MemberGone(1)));
    assert_eq!(local.notice(Duration::from_secs(3)).await, Some(Notice::MemberGone(1)));
    a.wait_metric("lifeline_relay_mesh_circuits", |v| v == 0.0).await;
    b.wait_metric("lifeline_relay_mesh_circuits", |v| v == 0.0).await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_home_relay_refuses_bad_admissions_that_come_over_the_link() {
    let (a, b) = pair().await;
    let pki = pki();
    let _leader = Client::join(a.addr, SESSION, &pki.leader(SESSION, "a"), None).await;
    let mut second_leader = Client::connect(b.addr).await;
    let notice = second_leader.admit(SESSION, &pki.leader(SESSION, "a"), None).await;
    assert_eq!(notice, Notice::Refused(lifeline_core::wire::relay::RefusalReason::ResumeRefused));
    assert!(second_leader.closed_within(Duration::from_secs(2)).await);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_peers_without_a_fleet_certificate_for_their_name_are_refused() {
    let pki = pki();
    let b = TestRelay::start(
        pki.config("b", &format!("{}{}", limits(&[]), mesh_section("127.0.0.1:0", &[("a", "127.0.0.1:9".into())]))),
    )
    .await;
    let b_mesh = b.mesh.unwrap().to_string();

    // A certificate from another CA (the impostor trusts the fleet CA, so the refusal is b's).
    let rogue = Pki::new("rogue");
    let mut config =
        pki.config("a", &format!("{}{}", limits(&[]), mesh_section("127.0.0.1:0", &[("b", b_mesh.clone())])));
    config.tls.cert = rogue.dir.join("relay-a.pem");
    config.tls.key = rogue.dir.join("relay-a.key");
    let impostor = TestRelay::start(config).await;
    b.wait_metric("lifeline_relay_mesh_handshake_failures_total{reason=\"tls\"}", |v| v >= 1.0).await;
    impostor.stop().await;

    // A fleet certificate, but for another name than the one it claims in HELLO: a raw peer,
    // since a relay refuses to start with a certificate that does not name it.
    let mut config = pki.config("a", &format!("{}{}", limits(&[]), mesh_section("127.0.0.1:0", &[("b", b_mesh)])));
    config.tls.cert = pki.dir.join("relay-local.pem");
    let error = lifeline_relay::Relay::bind(config).await.unwrap_err().to_string();
    assert!(error.contains("not valid for the relay name"), "{error}");
    let mut impostor = raw_mesh_peer(b.mesh.unwrap(), "local").await;
    impostor.write_all(&[0x01, 0, 0, 0, 0, 0, 2, 1, b'a']).await.unwrap();
    impostor.flush().await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(3), impostor.read_to_end(&mut answer)).await.unwrap();
    assert!(read.is_err() || answer.is_empty(), "no HELLO for an impostor: {answer:?}");
    b.wait_metric("lifeline_relay_mesh_handshake_failures_total{reason=\"unknown_peer\"}", |v| v >= 1.0).await;
    assert_eq!(b.metric("lifeline_relay_mesh_links_up").await, 0.0);
    b.stop().await;
}

/// A mesh client presenting the fleet certificate of relay `cert_of`.
async fn raw_mesh_peer(addr: SocketAddr, cert_of: &str) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let dir = &pki().dir;
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(dir.join(format!("relay-{cert_of}.pem"))).unwrap().map(Result::unwrap).collect();
    let key = PrivateKeyDer::from_pem_file(dir.join(format!("relay-{cert_of}.key"))).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(pki().roots())
        .with_client_auth_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"lifeline-mesh/1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(ServerName::try_from("b").unwrap(), tcp)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_home_relay_dies_its_members_resume_on_the_other_relay() {
    let (a, b) = pair().await;
    let pki = pki();
    let leader_ticket = pki.leader(SESSION, "a");
    let member_ticket = pki.member(SESSION, "a");
    let mut leader = Client::join(a.addr, SESSION, &leader_ticket, None).await;
    let mut member = Client::join(b.addr, SESSION, &member_ticket, None).await;
    member.send_as_me(FrameKind::Handshake, Destination::Member(MemberId(0)), b"before").await;
    assert_eq!(&leader.expect_frame().await[HEADER_LEN..], b"before");

    // Relay a goes away: everyone hears GoAway and loses the connection.
    a.stop().await;
    assert_eq!(leader.notice(Duration::from_secs(2)).await, Some(Notice::GoAway));
    assert_eq!(member.notice(Duration::from_secs(2)).await, Some(Notice::GoAway), "GoAway crosses the link");
    assert!(leader.closed_within(Duration::from_secs(3)).await);
    assert!(member.closed_within(Duration::from_secs(3)).await);
    b.wait_metric("lifeline_relay_mesh_links_up", |v| v == 0.0).await;

    // Both come back to b with the same tickets, resuming their ids: b adopts the session.
    let mut leader = Client::join(b.addr, SESSION, &leader_ticket, Some(0)).await;
    let mut member = Client::join(b.addr, SESSION, &member_ticket, Some(1)).await;
    assert_eq!((leader.member, member.member), (0, 1));
    member.send_as_me(FrameKind::Handshake, Destination::Member(MemberId(0)), b"after").await;
    assert_eq!(&leader.expect_frame().await[HEADER_LEN..], b"after");
    leader.send_as_me(FrameKind::SecureData, Destination::AllMembers, &common::body(2, 100)).await;
    assert_eq!(&member.expect_frame().await[HEADER_LEN..], &common::body(2, 100)[..]);
    assert_eq!(b.metric("lifeline_relay_adoptions_total").await, 1.0);
    assert_eq!(b.metric("lifeline_relay_sessions").await, 1.0);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_forwarding_relay_sends_go_away_to_the_endpoints_it_carries() {
    let (a, b) = pair().await;
    let pki = pki();
    let mut leader = Client::join(a.addr, SESSION, &pki.leader(SESSION, "a"), None).await;
    let mut member = Client::join(b.addr, SESSION, &pki.member(SESSION, "a"), None).await;
    b.stop().await;
    assert_eq!(member.notice(Duration::from_secs(2)).await, Some(Notice::GoAway));
    assert!(member.closed_within(Duration::from_secs(3)).await);
    assert_eq!(leader.notice(Duration::from_secs(3)).await, Some(Notice::MemberGone(1)));
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_comes_back_when_the_peer_returns() {
    let (a, b) = pair().await;
    let b_mesh = b.mesh.unwrap();
    b.stop().await;
    a.wait_metric("lifeline_relay_mesh_links_up", |v| v == 0.0).await;
    // The same relay comes back on the same mesh address: the dialer finds it again.
    let b =
        TestRelay::start(pki().config(
            "b",
            &format!("{}{}", limits(&[]), mesh_section(&b_mesh.to_string(), &[("a", "127.0.0.1:9".into())])),
        ))
        .await;
    a.wait_metric("lifeline_relay_mesh_links_up", |v| v == 1.0).await;
    b.wait_metric("lifeline_relay_mesh_links_up", |v| v == 1.0).await;
    let mut leader = Client::join(a.addr, SESSION, &pki().leader(SESSION, "a"), None).await;
    let mut member = Client::join(b.addr, SESSION, &pki().member(SESSION, "a"), None).await;
    member.send_as_me(FrameKind::Handshake, Destination::Member(MemberId(0)), b"again").await;
    assert_eq!(&leader.expect_frame().await[HEADER_LEN..], b"again");
    a.stop().await;
    b.stop().await;
}
