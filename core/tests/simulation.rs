//! Deterministic simulations of two and three endpoints through an in-memory relay: virtual
//! time, seeded randomness, real engines on every side.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{SESSION, Sim, Tamper};
use lifeline_core::consent::Capability;
use lifeline_core::session::{Event, SendError, SessionEnd};
use lifeline_core::time::Duration;
use lifeline_core::wire::control::ContentType;
use lifeline_core::wire::handshake::{RejectReason, Role};
use lifeline_core::wire::{Destination, FrameKind, MemberId};

const LEADER: u8 = 0;
const CUSTOMER: u8 = 1;
const PROVIDER2: u8 = 2;
const TO_LEADER: Destination = Destination::Member(MemberId::LEADER);
const TO_CUSTOMER: Destination = Destination::Member(MemberId(CUSTOMER));

fn joined_pair() -> Sim {
    let mut sim = Sim::new();
    let pin = sim.add_leader(1);
    sim.add_member(CUSTOMER, Role::Customer, pin.as_str(), 2);
    sim.run_for(Duration::from_secs(1));
    assert!(sim.node(CUSTOMER).session.is_established(), "customer joined: {:?}", sim.events(CUSTOMER));
    sim
}

fn delivered(sim: &Sim, id: u8) -> Vec<(u8, ContentType, Vec<u8>)> {
    sim.node(id).delivered.iter().map(|(from, content, data)| (from.0, *content, data.clone())).collect()
}

fn granted(sim: &mut Sim, capability: Capability) {
    sim.session(LEADER).request(MemberId(CUSTOMER), capability).unwrap();
    sim.run_for(Duration::from_millis(100));
    sim.session(CUSTOMER).grant(capability).unwrap();
    sim.run_for(Duration::from_millis(100));
}

// ---- joining ------------------------------------------------------------------------------

#[test]
fn two_endpoints_join_and_chat_both_ways() {
    let mut sim = joined_pair();
    // The leader moves to a fresh epoch for each newcomer: epoch 1, then 2 once the customer joined.
    assert!(sim.events(CUSTOMER).contains(&Event::Joined { epoch: 2 }));
    assert!(sim.events(LEADER).contains(&Event::MemberJoined { member: MemberId(CUSTOMER) }));
    assert!(sim.events(CUSTOMER).iter().any(|e| matches!(e, Event::MemberAnnounced { member: MemberId(0), role: Role::Provider, name } if name.as_str() == "Ada (Helpdesk)")));
    assert!(
        sim.events(LEADER)
            .iter()
            .any(|e| matches!(e, Event::MemberAnnounced { member: MemberId(1), role: Role::Customer, .. }))
    );

    sim.send(LEADER, TO_CUSTOMER, ContentType::Chat, b"hello, can you see my messages?").unwrap();
    sim.send(CUSTOMER, Destination::AllMembers, ContentType::Chat, b"yes I can").unwrap();
    sim.run_for(Duration::from_secs(1));
    assert_eq!(delivered(&sim, CUSTOMER), [(0, ContentType::Chat, b"hello, can you see my messages?".to_vec())]);
    assert_eq!(delivered(&sim, LEADER), [(1, ContentType::Chat, b"yes I can".to_vec())]);
}

#[test]
fn the_relay_sees_no_plaintext() {
    let mut sim = joined_pair();
    granted(&mut sim, Capability::FileTransfer);
    let secret = b"the payroll password is hunter2";
    sim.send(LEADER, TO_CUSTOMER, ContentType::Chat, secret).unwrap();
    let file = b"confidential file contents ".repeat(200);
    sim.send(CUSTOMER, TO_LEADER, ContentType::File, &file).unwrap();
    sim.run_for(Duration::from_secs(1));
    assert_eq!(delivered(&sim, LEADER).last().map(|d| d.2.clone()), Some(file.clone()));
    for frame in &sim.relayed {
        assert!(!frame.windows(8).any(|w| w == &secret[4..12]), "chat plaintext on the wire");
        assert!(!frame.windows(12).any(|w| w == &file[..12]), "file plaintext on the wire");
    }
}

#[test]
fn wrong_pin_is_refused() {
    let mut sim = Sim::new();
    let pin = sim.add_leader(1);
    let wrong = if pin.as_str() == "00000000" { "11111111" } else { "00000000" };
    sim.add_member(CUSTOMER, Role::Customer, wrong, 2);
    sim.run_for(Duration::from_secs(1));
    assert!(sim.events(CUSTOMER).contains(&Event::Closed { reason: SessionEnd::JoinRejected(RejectReason::BadProof) }));
    assert!(sim.events(LEADER).contains(&Event::JoinFailed { member: MemberId(CUSTOMER), failures: 1 }));
    assert!(sim.node(LEADER).session.members().next().is_none());
}

#[test]
fn the_attempt_limit_kills_the_pin() {
    let mut sim = Sim::new();
    let pin = sim.add_leader(1);
    for attempt in 0..5u8 {
        sim.add_member(10 + attempt, Role::Customer, "99999999x", 100 + u64::from(attempt));
        sim.run_for(Duration::from_secs(1));
    }
    assert!(sim.events(LEADER).contains(&Event::PinExpired));
    assert!(sim.events(14).contains(&Event::Closed { reason: SessionEnd::JoinRejected(RejectReason::PinExpired) }));
    // Even the right PIN is refused now.
    sim.add_member(CUSTOMER, Role::Customer, pin.as_str(), 2);
    sim.run_for(Duration::from_secs(1));
    assert!(
        sim.events(CUSTOMER).contains(&Event::Closed { reason: SessionEnd::JoinRejected(RejectReason::PinExpired) })
    );
    assert!(!sim.node(CUSTOMER).session.is_established());
}

#[test]
fn a_forged_leader_proof_is_detected() {
    // Whoever answers the member without knowing the PIN cannot produce M2: here a relay swaps
    // bytes of the leader's Accept. The member must stop before any key is accepted.
    let mut sim = Sim::new();
    let pin = sim.add_leader(1);
    sim.add_member(CUSTOMER, Role::Customer, pin.as_str(), 2);
    sim.tamper = Some(Box::new(|header, frame| {
        let is_accept =
            header.kind == FrameKind::Handshake && header.sender == MemberId::LEADER && frame.get(16) == Some(&0x04);
        if !is_accept {
            return Tamper::Pass;
        }
        let mut forged = frame.to_vec();
        forged[20] ^= 0x55;
        Tamper::Replace(forged)
    }));
    sim.run_for(Duration::from_secs(1));
    assert!(sim.events(CUSTOMER).contains(&Event::Closed { reason: SessionEnd::LeaderNotAuthentic }));
    assert!(!sim.events(CUSTOMER).iter().any(|e| matches!(e, Event::Joined { .. })));
}

#[test]
fn handshake_times_out_without_a_leader() {
    let mut sim = Sim::new();
    sim.add_member(CUSTOMER, Role::Customer, "12345678", 2);
    sim.run_for(Duration::from_secs(60));
    assert!(sim.events(CUSTOMER).contains(&Event::Closed { reason: SessionEnd::HandshakeTimeout }));
}

// ---- consent ------------------------------------------------------------------------------

#[test]
fn nothing_flows_before_consent() {
    let mut sim = joined_pair();
    assert_eq!(sim.send(CUSTOMER, TO_LEADER, ContentType::Screen, b"pixels"), Err(SendError::NotGranted));
    assert_eq!(sim.send(CUSTOMER, TO_LEADER, ContentType::Diagnostics, b"cpu"), Err(SendError::NotGranted));
    sim.send(LEADER, TO_CUSTOMER, ContentType::Input, b"click").unwrap();
    sim.send(LEADER, TO_CUSTOMER, ContentType::File, b"malware.exe").unwrap();
    sim.run_for(Duration::from_secs(1));
    assert!(delivered(&sim, CUSTOMER).is_empty());
    let refused: Vec<_> = sim.events(CUSTOMER).iter().filter(|e| matches!(e, Event::DataRefused { .. })).collect();
    assert_eq!(refused.len(), 2);
    assert_eq!(sim.node(CUSTOMER).session.stats().refused_by_consent, 2);
}

#[test]
fn grant_then_revoke_view_screen() {
    let mut sim = joined_pair();
    sim.session(LEADER).request(MemberId(CUSTOMER), Capability::ViewScreen).unwrap();
    sim.run_for(Duration::from_millis(100));
    assert!(
        sim.events(CUSTOMER)
            .contains(&Event::ConsentRequested { from: MemberId(0), capability: Capability::ViewScreen })
    );
    assert!(
        sim.events(LEADER)
            .iter()
            .any(|e| matches!(e, Event::PeerConsent { pending, .. } if pending.contains(Capability::ViewScreen)))
    );
    // A prompt alone grants nothing, however long it stays open.
    sim.run_for(Duration::from_secs(120));
    assert_eq!(sim.send(CUSTOMER, TO_LEADER, ContentType::Screen, b"frame"), Err(SendError::NotGranted));

    sim.session(CUSTOMER).grant(Capability::ViewScreen).unwrap();
    sim.send(CUSTOMER, TO_LEADER, ContentType::Screen, b"frame 1").unwrap();
    sim.run_for(Duration::from_millis(100));
    assert_eq!(delivered(&sim, LEADER).last().map(|d| d.2.clone()), Some(b"frame 1".to_vec()));
    assert!(
        sim.events(LEADER)
            .iter()
            .any(|e| matches!(e, Event::PeerConsent { granted, .. } if granted.contains(Capability::ViewScreen)))
    );

    sim.session(CUSTOMER).revoke(Capability::ViewScreen).unwrap();
    assert_eq!(sim.send(CUSTOMER, TO_LEADER, ContentType::Screen, b"frame 2"), Err(SendError::NotGranted));
}

#[test]
fn deny_leaves_nothing_granted() {
    let mut sim = joined_pair();
    sim.session(LEADER).request(MemberId(CUSTOMER), Capability::Diagnostics).unwrap();
    sim.run_for(Duration::from_millis(100));
    sim.session(CUSTOMER).deny(Capability::Diagnostics).unwrap();
    assert_eq!(sim.send(CUSTOMER, TO_LEADER, ContentType::Diagnostics, b"os"), Err(SendError::NotGranted));
    assert!(sim.session(LEADER).grant(Capability::Diagnostics).is_err(), "a provider grants nothing");
}

#[test]
fn input_is_held_while_a_prompt_is_open_and_stops_on_take_back() {
    let mut sim = joined_pair();
    granted(&mut sim, Capability::RemoteControl);
    sim.send(LEADER, TO_CUSTOMER, ContentType::Input, b"move 1").unwrap();
    sim.run_for(Duration::from_millis(100));
    assert_eq!(delivered(&sim, CUSTOMER).len(), 1);

    // A new prompt opens: input is not applied while the customer decides.
    sim.session(LEADER).request(MemberId(CUSTOMER), Capability::FileTransfer).unwrap();
    sim.run_for(Duration::from_millis(100));
    sim.send(LEADER, TO_CUSTOMER, ContentType::Input, b"click the Allow button").unwrap();
    sim.run_for(Duration::from_millis(100));
    assert_eq!(delivered(&sim, CUSTOMER).len(), 1);
    assert!(sim.events(CUSTOMER).iter().any(|e| matches!(e, Event::DataRefused { content: ContentType::Input, .. })));

    sim.session(CUSTOMER).deny(Capability::FileTransfer).unwrap();
    sim.send(LEADER, TO_CUSTOMER, ContentType::Input, b"move 2").unwrap();
    sim.run_for(Duration::from_millis(100));
    assert_eq!(delivered(&sim, CUSTOMER).len(), 2);

    // Input already in flight when the customer takes control back is not applied.
    sim.send(LEADER, TO_CUSTOMER, ContentType::Input, b"move 3").unwrap();
    sim.session(CUSTOMER).take_back_control().unwrap();
    sim.run_for(Duration::from_millis(100));
    assert_eq!(delivered(&sim, CUSTOMER).len(), 2);
}

#[test]
fn no_wire_message_answers_a_prompt() {
    let mut sim = joined_pair();
    sim.session(LEADER).request(MemberId(CUSTOMER), Capability::RemoteControl).unwrap();
    sim.run_for(Duration::from_millis(100));
    // The provider sends everything it can: more requests, a forged consent state, input.
    sim.session(LEADER).request(MemberId(CUSTOMER), Capability::RemoteControl).unwrap();
    sim.send(LEADER, TO_CUSTOMER, ContentType::Input, b"press Enter").unwrap();
    sim.run_for(Duration::from_secs(1));
    let consent = sim.node(CUSTOMER).session.consent();
    assert!(!consent.allows(Capability::RemoteControl));
    assert!(consent.pending().contains(Capability::RemoteControl));
    assert!(delivered(&sim, CUSTOMER).is_empty());
}

// ---- three members, leave and rekey --------------------------------------------------------

fn joined_three() -> Sim {
    let mut sim = Sim::new();
    let pin = sim.add_leader(1);
    sim.add_member(CUSTOMER, Role::Customer, pin.as_str(), 2);
    sim.add_member(PROVIDER2, Role::Provider, pin.as_str(), 3);
    sim.run_for(Duration::from_secs(1));
    for id in [CUSTOMER, PROVIDER2] {
        assert!(sim.node(id).session.is_established());
    }
    sim
}

#[test]
fn three_endpoints_fan_out() {
    let mut sim = joined_three();
    for (from, text) in [(LEADER, "from leader"), (CUSTOMER, "from customer"), (PROVIDER2, "from provider 2")] {
        sim.send(from, Destination::AllMembers, ContentType::Chat, text.as_bytes()).unwrap();
    }
    sim.run_for(Duration::from_secs(1));
    for id in [LEADER, CUSTOMER, PROVIDER2] {
        let mut got: Vec<_> = delivered(&sim, id).into_iter().map(|d| d.0).collect();
        got.sort();
        let expected: Vec<u8> = [LEADER, CUSTOMER, PROVIDER2].into_iter().filter(|x| *x != id).collect();
        assert_eq!(got, expected, "node {id}");
    }
    let mut members: Vec<_> = sim.node(CUSTOMER).session.members().map(|(id, _)| id.0).collect();
    members.sort();
    assert_eq!(members, [0, 2]);
}

#[test]
fn a_member_leaving_moves_the_group_to_a_new_epoch() {
    let mut sim = joined_three();
    let before = sim.node(LEADER).session.epoch();
    let now = sim.now;
    sim.session(PROVIDER2).close(now);
    sim.run_for(Duration::from_secs(1));
    assert!(sim.events(LEADER).contains(&Event::MemberLeft { member: MemberId(PROVIDER2) }));
    assert!(sim.events(CUSTOMER).contains(&Event::MemberLeft { member: MemberId(PROVIDER2) }));
    assert!(sim.events(CUSTOMER).contains(&Event::Rekeyed { epoch: before + 1 }));
    assert_eq!(sim.node(LEADER).session.epoch(), before + 1);
    assert!(sim.node(CUSTOMER).session.is_established(), "the session goes on");
    sim.send(LEADER, TO_CUSTOMER, ContentType::Chat, b"still here").unwrap();
    sim.run_for(Duration::from_secs(1));
    assert_eq!(delivered(&sim, CUSTOMER).last().map(|d| d.2.clone()), Some(b"still here".to_vec()));
}

#[test]
fn a_removed_member_cannot_read_what_follows() {
    let mut sim = joined_three();
    let now = sim.now;
    assert!(sim.session(LEADER).remove_member(now, MemberId(PROVIDER2)));
    sim.run_for(Duration::from_secs(1));
    let before = sim.node(PROVIDER2).delivered.len();
    sim.send(LEADER, Destination::AllMembers, ContentType::Chat, b"after removal").unwrap();
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.node(PROVIDER2).delivered.len(), before, "the removed member decrypts nothing new");
    assert_eq!(delivered(&sim, CUSTOMER).last().map(|d| d.2.clone()), Some(b"after removal".to_vec()));
    // Without the new keys it hears nothing it can read, and gives up on the leader.
    sim.run_for(Duration::from_secs(120));
    assert!(sim.node(PROVIDER2).session.end().is_some());
}

#[test]
fn a_relay_reported_disconnect_rekeys_after_the_reconnect_grace() {
    let mut sim = joined_three();
    let before = sim.node(CUSTOMER).session.epoch();
    sim.disconnect(PROVIDER2);
    sim.run_for(Duration::from_secs(5));
    assert_eq!(sim.node(CUSTOMER).session.epoch(), before, "still within the reconnect grace");
    sim.run_for(Duration::from_secs(30));
    assert_eq!(sim.node(CUSTOMER).session.epoch(), before + 1);
    assert!(sim.events(CUSTOMER).contains(&Event::MemberLeft { member: MemberId(PROVIDER2) }));
}

#[test]
fn a_member_that_reconnects_in_time_resumes_with_its_keys() {
    let mut sim = Sim::new();
    let pin = sim.add_leader(1);
    sim.add_member(CUSTOMER, Role::Customer, pin.as_str(), 2);
    sim.add_member(PROVIDER2, Role::Provider, pin.as_str(), 3);
    sim.add_member(3, Role::Provider, pin.as_str(), 4);
    sim.run_for(Duration::from_secs(1));
    let before = sim.node(LEADER).session.epoch();
    sim.disconnect(PROVIDER2);
    sim.run_for(Duration::from_secs(3));
    // Meanwhile another provider leaves: the group rekeys while provider 2 is away, and, a
    // member having departed, nobody keeps the old epoch.
    let now = sim.now;
    sim.session(3).close(now);
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.node(LEADER).session.epoch(), before + 1);
    // Provider 2 reconnects (same member id, no new join); its transport reports the reconnect,
    // the engine asks for the current keys, and the session goes on.
    sim.node_mut(PROVIDER2).connected = true;
    let now = sim.now;
    sim.session(PROVIDER2).handle_reconnected(now);
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.node(PROVIDER2).session.epoch(), before + 1);
    sim.send(PROVIDER2, TO_LEADER, ContentType::Chat, b"back again").unwrap();
    sim.run_for(Duration::from_secs(1));
    assert_eq!(delivered(&sim, LEADER).last().map(|d| d.2.clone()), Some(b"back again".to_vec()));
    sim.send(LEADER, Destination::Member(MemberId(PROVIDER2)), ContentType::Chat, b"welcome back").unwrap();
    sim.run_for(Duration::from_secs(60));
    assert_eq!(delivered(&sim, PROVIDER2).last().map(|d| d.2.clone()), Some(b"welcome back".to_vec()));
    assert!(sim.node(LEADER).session.members().any(|(id, _)| id == MemberId(PROVIDER2)), "not removed");
}

#[test]
fn key_usage_limit_triggers_rekeys_without_losing_data() {
    let mut sim = Sim::new();
    let pin = sim.add_leader_with(1, |c| c.rekey_after_frames = 10);
    sim.add_member_with(CUSTOMER, Role::Customer, pin.as_str(), 2, |c| c.rekey_after_frames = 10);
    sim.run_for(Duration::from_secs(1));
    for i in 0..35u32 {
        sim.send(CUSTOMER, TO_LEADER, ContentType::Chat, &i.to_be_bytes()).unwrap();
        sim.send(LEADER, TO_CUSTOMER, ContentType::Chat, &i.to_be_bytes()).unwrap();
        sim.run_for(Duration::from_millis(50));
    }
    assert!(sim.node(LEADER).session.epoch() >= 4, "epoch {}", sim.node(LEADER).session.epoch());
    assert_eq!(delivered(&sim, LEADER).len(), 35);
    assert_eq!(delivered(&sim, CUSTOMER).len(), 35);
}

// ---- ending ---------------------------------------------------------------------------------

#[test]
fn the_customer_ends_the_session_for_everyone() {
    let mut sim = joined_three();
    let now = sim.now;
    sim.session(CUSTOMER).close(now);
    sim.run_for(Duration::from_secs(1));
    for id in [LEADER, PROVIDER2] {
        assert!(
            sim.events(id).contains(&Event::Closed { reason: SessionEnd::EndedBy(MemberId(CUSTOMER)) }),
            "node {id}"
        );
    }
    assert_eq!(sim.send(LEADER, TO_CUSTOMER, ContentType::Chat, b"?"), Err(SendError::Closed));
}

#[test]
fn the_leader_ends_the_session_for_everyone() {
    let mut sim = joined_three();
    let now = sim.now;
    sim.session(LEADER).close(now);
    sim.run_for(Duration::from_secs(1));
    for id in [CUSTOMER, PROVIDER2] {
        assert!(sim.events(id).contains(&Event::Closed { reason: SessionEnd::EndedBy(MemberId::LEADER) }));
    }
}

// ---- timeouts -------------------------------------------------------------------------------

#[test]
fn keepalives_hold_an_idle_session_open() {
    let mut sim = joined_pair();
    sim.run_for(Duration::from_secs(600));
    assert!(sim.node(CUSTOMER).session.is_established());
    assert!(sim.node(LEADER).session.members().any(|(id, _)| id == MemberId(CUSTOMER)));
}

#[test]
fn a_silent_leader_is_lost_and_a_silent_member_removed() {
    let mut sim = joined_pair();
    sim.node_mut(LEADER).connected = false;
    sim.run_for(Duration::from_secs(60));
    assert!(sim.events(CUSTOMER).contains(&Event::Closed { reason: SessionEnd::LeaderLost }));

    let mut sim = joined_pair();
    sim.node_mut(CUSTOMER).connected = false;
    sim.run_for(Duration::from_secs(60));
    assert!(sim.events(LEADER).contains(&Event::MemberLeft { member: MemberId(CUSTOMER) }));
}

// ---- a hostile relay ------------------------------------------------------------------------

#[test]
fn tampered_frames_are_detected_and_never_delivered() {
    let mut sim = joined_pair();
    let refused_before = sim.node(CUSTOMER).refused_frames;
    let mut count = 0u32;
    sim.tamper = Some(Box::new(move |header, frame| {
        if header.kind != FrameKind::SecureData {
            return Tamper::Pass;
        }
        count += 1;
        let mut changed = frame.to_vec();
        match count % 4 {
            0 => changed[frame.len() / 2] ^= 0x01,  // flip a ciphertext bit
            1 => changed[13] = 0xFF,                // redirect to everyone
            2 => changed[frame.len() - 1] ^= 0x80,  // flip a tag bit
            _ => changed.truncate(frame.len() - 1), // cut it short
        }
        Tamper::Replace(changed)
    }));
    for i in 0..8u8 {
        sim.send(LEADER, TO_CUSTOMER, ContentType::Chat, &[i; 40]).unwrap();
    }
    sim.run_for(Duration::from_secs(1));
    assert!(delivered(&sim, CUSTOMER).is_empty());
    assert_eq!(sim.node(CUSTOMER).refused_frames - refused_before, 8);
    assert!(sim.node(CUSTOMER).session.is_established(), "bad frames do not end the session");
}

#[test]
fn replayed_frames_are_delivered_once() {
    let mut sim = joined_pair();
    sim.tamper = Some(Box::new(|_, _| Tamper::Duplicate));
    for i in 0..5u8 {
        sim.send(LEADER, TO_CUSTOMER, ContentType::Chat, &[i]).unwrap();
    }
    sim.run_for(Duration::from_secs(1));
    assert_eq!(delivered(&sim, CUSTOMER).len(), 5);
    assert!(sim.node(CUSTOMER).session.stats().replayed >= 5);
}

#[test]
fn frames_moved_to_another_session_or_sender_are_refused() {
    let mut sim = joined_three();
    let refused_before = sim.node(CUSTOMER).refused_frames;
    let mut captured = Vec::new();
    let mut buf = vec![0u8; 2048];
    let now = sim.now;
    sim.flush();
    let len = sim.session(LEADER).send(now, Destination::AllMembers, ContentType::Chat, b"x", &mut buf).unwrap();
    captured.extend_from_slice(&buf[..len]);
    let mut other_session = captured.clone();
    other_session[4..12].copy_from_slice(&(SESSION + 1).to_be_bytes());
    let mut other_sender = captured.clone();
    other_sender[12] = PROVIDER2;
    sim.inject(CUSTOMER, other_session);
    sim.inject(CUSTOMER, other_sender);
    sim.inject(CUSTOMER, captured.clone());
    sim.inject(CUSTOMER, captured);
    sim.run_for(Duration::from_secs(1));
    assert_eq!(delivered(&sim, CUSTOMER).len(), 1);
    assert_eq!(sim.node(CUSTOMER).refused_frames - refused_before, 3);
}

#[test]
fn old_epoch_frames_are_accepted_only_during_the_grace_period() {
    // A usage-limit rekey (nobody departed): frames sealed under the old epoch still count for
    // the grace period, then no more.
    let mut sim = Sim::new();
    let pin = sim.add_leader_with(1, |c| c.rekey_after_frames = 4);
    sim.add_member(CUSTOMER, Role::Customer, pin.as_str(), 2);
    sim.run_for(Duration::from_secs(1));
    let before = sim.node(LEADER).session.epoch();
    sim.flush();
    let mut buf = vec![0u8; 2048];
    let now = sim.now;
    let len = sim.session(CUSTOMER).send(now, TO_LEADER, ContentType::Chat, b"late but fine", &mut buf).unwrap();
    let early = buf[..len].to_vec();
    let len = sim.session(CUSTOMER).send(now, TO_LEADER, ContentType::Chat, b"too late", &mut buf).unwrap();
    let late = buf[..len].to_vec();
    for i in 0..4u8 {
        sim.send(LEADER, TO_CUSTOMER, ContentType::Chat, &[i]).unwrap();
    }
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.node(LEADER).session.epoch(), before + 1);
    sim.inject(LEADER, early);
    sim.run_for(Duration::from_secs(1));
    sim.run_for(Duration::from_secs(10));
    sim.inject(LEADER, late);
    sim.run_for(Duration::from_secs(1));
    let got: Vec<_> = delivered(&sim, LEADER).into_iter().map(|d| d.2).collect();
    assert_eq!(got, [b"late but fine".to_vec()]);
}

#[test]
fn after_a_departure_the_old_epoch_is_dead_at_once() {
    // A removed member still has the old keys: nothing sealed under them may be accepted, not
    // even inside the grace period, whatever sender id it claims.
    let mut sim = joined_three();
    sim.flush();
    let mut buf = vec![0u8; 2048];
    let now = sim.now;
    let len =
        sim.session(PROVIDER2).send(now, TO_CUSTOMER, ContentType::Chat, b"forged after removal", &mut buf).unwrap();
    let mut forged = buf[..len].to_vec();
    forged[12] = LEADER; // pretend to be the leader (the group MAC cannot tell)
    let stale_mac = forged.clone();
    let now = sim.now;
    assert!(sim.session(LEADER).remove_member(now, MemberId(PROVIDER2)));
    sim.run_for(Duration::from_millis(200));
    assert!(sim.events(PROVIDER2).contains(&Event::Closed { reason: SessionEnd::Removed }), "told it was removed");
    sim.inject(CUSTOMER, stale_mac);
    sim.inject(CUSTOMER, buf[..len].to_vec());
    sim.run_for(Duration::from_secs(1));
    assert!(delivered(&sim, CUSTOMER).iter().all(|d| d.2 != b"forged after removal"));
}

#[test]
fn a_member_that_skipped_a_departure_epoch_keeps_no_grace() {
    let mut sim = Sim::new();
    let pin = sim.add_leader(1);
    sim.add_member(CUSTOMER, Role::Customer, pin.as_str(), 2);
    sim.add_member(PROVIDER2, Role::Provider, pin.as_str(), 3);
    sim.run_for(Duration::from_secs(1));
    // A frame the soon-removed provider seals under the epoch everyone has now.
    sim.flush();
    let mut buf = vec![0u8; 2048];
    let now = sim.now;
    let len = sim.session(PROVIDER2).send(now, TO_CUSTOMER, ContentType::Chat, b"injected", &mut buf).unwrap();
    let injected = buf[..len].to_vec();
    // The customer is away while provider 2 is removed (a departure epoch it never receives),
    // then a newcomer joins (an ordinary epoch), then the customer comes back and asks for keys.
    sim.disconnect(CUSTOMER);
    let now = sim.now;
    sim.session(LEADER).remove_member(now, MemberId(PROVIDER2));
    sim.run_for(Duration::from_secs(1));
    sim.add_member(4, Role::Provider, pin.as_str(), 5);
    sim.run_for(Duration::from_secs(1));
    sim.node_mut(CUSTOMER).connected = true;
    let now = sim.now;
    sim.session(CUSTOMER).handle_reconnected(now);
    sim.run_for(Duration::from_millis(500));
    assert_eq!(sim.node(CUSTOMER).session.epoch(), sim.node(LEADER).session.epoch());
    sim.inject(CUSTOMER, injected);
    sim.run_for(Duration::from_secs(1));
    assert!(delivered(&sim, CUSTOMER).iter().all(|d| d.2 != b"injected"), "the removed member's epoch is dead");
}

#[test]
fn members_removed_back_to_back_are_both_removed() {
    let mut sim = Sim::new();
    let pin = sim.add_leader(1);
    sim.add_member(CUSTOMER, Role::Customer, pin.as_str(), 2);
    sim.add_member(PROVIDER2, Role::Provider, pin.as_str(), 3);
    sim.add_member(3, Role::Provider, pin.as_str(), 4);
    sim.run_for(Duration::from_secs(1));
    let now = sim.now;
    assert!(sim.session(LEADER).remove_member(now, MemberId(PROVIDER2)));
    assert!(sim.session(LEADER).remove_member(now, MemberId(3)));
    sim.run_for(Duration::from_secs(1));
    // The first is told at once; the second was still owed the new epoch's keys, so it learns
    // when the leader falls silent for it (idle timeout).
    assert!(sim.events(PROVIDER2).contains(&Event::Closed { reason: SessionEnd::Removed }));
    sim.run_for(Duration::from_secs(60));
    assert!(sim.node(3).session.end().is_some());
    assert!(sim.node(CUSTOMER).session.is_established());
    let mut members: Vec<_> = sim.node(CUSTOMER).session.members().map(|(id, _)| id.0).collect();
    members.sort();
    assert_eq!(members, [0]);
}

#[test]
fn rekey_requests_inside_the_rate_limit_are_postponed_not_lost() {
    let mut sim = Sim::new();
    let pin = sim.add_leader(1);
    sim.add_member_with(CUSTOMER, Role::Customer, pin.as_str(), 2, |c| c.rekey_after_frames = 4);
    sim.run_for(Duration::from_millis(500));
    let before = sim.node(LEADER).session.epoch();
    for i in 0..40u8 {
        sim.send(CUSTOMER, TO_LEADER, ContentType::Chat, &[i]).unwrap();
        sim.run_for(Duration::from_millis(100));
    }
    assert!(sim.node(LEADER).session.epoch() >= before + 3, "epoch {} from {before}", sim.node(LEADER).session.epoch());
    assert_eq!(delivered(&sim, LEADER).len(), 40);
}
