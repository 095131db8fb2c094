//! Drives a real leader and a real member with arbitrary inputs: frames (arbitrary, or real
//! ones with bytes changed), local commands and time. The engine must never panic, and a changed
//! frame must never deliver data.
#![no_main]
use libfuzzer_sys::fuzz_target;
use lifeline_core::consent::Capability;
use lifeline_core::session::{Config, Pin, Session};
use lifeline_core::time::{Duration, Instant};
use lifeline_core::wire::control::ContentType;
use lifeline_core::wire::handshake::Role;
use lifeline_core::wire::{Destination, MemberId, MAX_FRAME_LEN, MAX_PAYLOAD_LEN};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

type S = Session<ChaCha20Rng, 4>;

fuzz_target!(|data: &[u8]| {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let pin = Pin::generate(&mut rng);
    let mut now = Instant::from_secs(1);
    let mut leader: S = Session::new_leader(Config::new(99, MemberId::LEADER, Role::Provider, "p"), &pin, rng, now);
    let mut member: S = Session::new_member(Config::new(99, MemberId(1), Role::Customer, "c"), pin.as_str(), ChaCha20Rng::seed_from_u64(8), now);
    let mut out = vec![0u8; MAX_PAYLOAD_LEN];
    let mut buf = vec![0u8; MAX_FRAME_LEN];
    let mut last_frames: Vec<Vec<u8>> = Vec::new();
    let mut input = data;
    while let Some((&op, rest)) = input.split_first() {
        input = rest;
        let target_is_leader = op & 0x80 != 0;
        match op & 0x0F {
            0 | 1 => {
                // Exchange honest traffic both ways.
                for _ in 0..4 {
                    while let Ok(Some(t)) = leader.poll_transmit(now, &mut buf) {
                        let mut frame = buf[..t.len].to_vec();
                        last_frames.push(frame.clone());
                        let _ = member.handle_frame(now, &mut frame, &mut out);
                    }
                    while let Ok(Some(t)) = member.poll_transmit(now, &mut buf) {
                        let mut frame = buf[..t.len].to_vec();
                        last_frames.push(frame.clone());
                        let _ = leader.handle_frame(now, &mut frame, &mut out);
                    }
                }
            }
            2 => {
                // An arbitrary frame.
                let len = usize::from(rest.first().copied().unwrap_or(0)).min(input.len());
                let mut frame = input[..len].to_vec();
                input = &input[len..];
                let target = if target_is_leader { &mut leader } else { &mut member };
                let _ = target.handle_frame(now, &mut frame, &mut out);
            }
            3 => {
                // A real frame with one byte changed: must not deliver.
                let (Some(&pick), Some(&at), Some(&xor)) = (input.first(), input.get(1), input.get(2)) else { break };
                input = &input[3..];
                if last_frames.is_empty() || xor == 0 {
                    continue;
                }
                let mut frame = last_frames[usize::from(pick) % last_frames.len()].clone();
                let index = usize::from(at) % frame.len();
                frame[index] ^= xor;
                for target in [&mut leader, &mut member] {
                    let mut copy = frame.clone();
                    if let Ok(Some(_)) = target.handle_frame(now, &mut copy, &mut out) {
                        // Only a byte of a field outside the MAC could explain this; there is none.
                        panic!("a modified frame delivered data");
                    }
                }
            }
            4 => {
                let capability = Capability::ALL[usize::from(op >> 4) % Capability::ALL.len()];
                let _ = leader.request(MemberId(1), capability);
            }
            5 => {
                let capability = Capability::ALL[usize::from(op >> 4) % Capability::ALL.len()];
                let _ = member.grant(capability);
            }
            6 => {
                let capability = Capability::ALL[usize::from(op >> 4) % Capability::ALL.len()];
                let _ = member.revoke(capability);
                let _ = member.deny(capability);
            }
            7 => {
                let content = ContentType::from_byte(op >> 4).unwrap_or(ContentType::Chat);
                let len = usize::from(rest.first().copied().unwrap_or(0)).min(input.len());
                let target = if target_is_leader { &mut leader } else { &mut member };
                let to = if target_is_leader { Destination::Member(MemberId(1)) } else { Destination::AllMembers };
                let _ = target.send(now, to, content, &input[..len], &mut buf);
                input = &input[len..];
            }
            8 => {
                now = now + Duration::from_millis(u64::from(op >> 4) * 700);
                leader.handle_timeout(now);
                member.handle_timeout(now);
            }
            9 => {
                let target = if target_is_leader { &mut leader } else { &mut member };
                target.close(now);
            }
            10 => leader.handle_peer_disconnected(now, MemberId(op >> 4)),
            11 => {
                let _ = leader.remove_member(now, MemberId(1));
            }
            _ => {}
        }
        while leader.poll_event().is_some() {}
        while member.poll_event().is_some() {}
        let _ = leader.poll_timeout();
        let _ = member.poll_timeout();
    }
});
