//! File transfer between two real `Transfers` over real files, with the network in between
//! simulated: messages can be dropped, held back or altered, and time is moved by hand.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use lifeline_apps::transfer::{
    Direction, PreparedFile, TransferConfig, TransferError, TransferEvent, Transfers, shared_file,
};
use lifeline_core::app::file::{CancelReason, FileRepr};
use lifeline_core::wire::{MAX_PAYLOAD_LEN, MemberId};
use tempfile::TempDir;

const A: MemberId = MemberId(0);
const B: MemberId = MemberId(1);

struct Pair {
    a: Transfers,
    b: Transfers,
    now: Instant,
    dir: TempDir,
    /// Most file bytes the receiver had not acknowledged at any time (sender's view).
    max_in_flight: u64,
    chunks_sent: usize,
}

impl Pair {
    fn new() -> Pair {
        Pair::with(|config| config)
    }

    fn with(tune: impl Fn(TransferConfig) -> TransferConfig) -> Pair {
        let dir = TempDir::new().unwrap();
        let a = Transfers::new(A, tune(TransferConfig::new(dir.path().join("a-downloads"))));
        let b = Transfers::new(B, tune(TransferConfig::new(dir.path().join("b-downloads"))));
        Pair { a, b, now: Instant::now(), dir, max_in_flight: 0, chunks_sent: 0 }
    }

    fn file(&self, name: &str, len: usize) -> (PathBuf, Vec<u8>) {
        let content: Vec<u8> = (0..len).map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0]).collect();
        let path = self.dir.path().join(name);
        fs::write(&path, &content).unwrap();
        (path, content)
    }

    /// Moves messages both ways until neither side has anything to send; `network` sees every
    /// payload (from, bytes) and says whether it arrives (it may alter it).
    fn pump(&mut self, mut network: impl FnMut(MemberId, &mut Vec<u8>) -> bool) {
        let mut buf = vec![0u8; MAX_PAYLOAD_LEN];
        for _ in 0..1_000_000 {
            let mut moved = false;
            while let Some((to, len)) = self.a.poll_message(&mut buf) {
                assert_eq!(to, B);
                moved = true;
                let mut payload = buf[..len].to_vec();
                if matches!(FileRepr::parse(&payload), Some(FileRepr::Chunk { .. })) {
                    self.chunks_sent += 1;
                }
                if network(A, &mut payload) {
                    assert!(self.b.handle_message(self.now, A, &payload) || payload != buf[..len]);
                }
            }
            while let Some((to, len)) = self.b.poll_message(&mut buf) {
                assert_eq!(to, A);
                moved = true;
                let mut payload = buf[..len].to_vec();
                if network(B, &mut payload) {
                    self.a.handle_message(self.now, B, &payload);
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the transfer never went quiet");
    }

    /// Lets time pass to the next timer and fires it on both sides.
    fn tick(&mut self) -> bool {
        let next = [self.a.poll_timeout(), self.b.poll_timeout()].into_iter().flatten().min();
        let Some(next) = next else { return false };
        self.now = self.now.max(next);
        self.a.handle_timeout(self.now);
        self.b.handle_timeout(self.now);
        true
    }

    fn events(t: &mut Transfers) -> Vec<TransferEvent> {
        std::iter::from_fn(|| t.poll_event()).collect()
    }

    /// Offers `path` from A to B and has B accept it.
    fn push(&mut self, path: &Path) -> u32 {
        let id = self.a.offer(self.now, B, PreparedFile::open(path).unwrap()).unwrap();
        self.pump(|_, _| true);
        let offered = Pair::events(&mut self.b);
        assert!(matches!(offered.as_slice(), [TransferEvent::Offered { peer: A, id: got, .. }] if *got == id));
        self.b.accept(self.now, A, id).unwrap();
        id
    }
}

fn completed(events: &[TransferEvent]) -> Option<(Direction, Option<PathBuf>, u64)> {
    events.iter().find_map(|event| match event {
        TransferEvent::Completed { direction, saved_as, size, .. } => Some((*direction, saved_as.clone(), *size)),
        _ => None,
    })
}

fn failed(events: &[TransferEvent]) -> Option<(CancelReason, bool)> {
    events.iter().find_map(|event| match event {
        TransferEvent::Failed { reason, by_us, .. } => Some((*reason, *by_us)),
        _ => None,
    })
}

fn part_files(dir: &Path) -> usize {
    fs::read_dir(dir).map_or(0, |entries| {
        entries.filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".lifeline-part")).count()
    })
}

#[test]
fn a_file_larger_than_several_background_syncs_arrives_whole() {
    // The receiver starts a background sync of its part file every SYNC_EVERY bytes and
    // collects the last one before its final sync and the move.
    let mut pair = Pair::new();
    let len = 2 * lifeline_apps::transfer::SYNC_EVERY as usize + 12_345;
    let (path, content) = pair.file("disk.img", len);
    pair.push(&path);
    pair.pump(|_, _| true);
    let b_events = Pair::events(&mut pair.b);
    let (direction, saved, size) = completed(&b_events).expect("B completed");
    assert_eq!((direction, size), (Direction::Receiving, len as u64));
    assert!(fs::read(saved.unwrap()).unwrap() == content, "the saved file differs");
    assert_eq!(part_files(&pair.dir.path().join("b-downloads")), 0);
}

#[test]
fn a_pushed_file_arrives_whole_and_both_sides_know() {
    let mut pair = Pair::new();
    let (path, content) = pair.file("report.pdf", 3 * 1024 * 1024 + 123);
    pair.push(&path);
    pair.pump(|_, _| true);
    let b_events = Pair::events(&mut pair.b);
    let (direction, saved, size) = completed(&b_events).expect("B completed");
    assert_eq!((direction, size), (Direction::Receiving, content.len() as u64));
    let saved = saved.unwrap();
    assert_eq!(saved, pair.dir.path().join("b-downloads/report.pdf"));
    assert_eq!(fs::read(&saved).unwrap(), content);
    assert!(b_events.iter().any(|e| matches!(e, TransferEvent::Progress { direction: Direction::Receiving, .. })));
    let a_events = Pair::events(&mut pair.a);
    assert_eq!(completed(&a_events).map(|c| c.0), Some(Direction::Sending));
    assert!(pair.a.is_idle() && pair.b.is_idle());
    assert_eq!(part_files(&pair.dir.path().join("b-downloads")), 0);
}

#[test]
fn the_sender_never_runs_ahead_of_the_receivers_window() {
    let mut pair = Pair::with(|config| TransferConfig { window: 64 * 1024, ..config });
    let (path, content) = pair.file("big.bin", 2 * 1024 * 1024);
    pair.push(&path);
    // Deliver A's chunks one at a time and watch how far A gets ahead of B's acknowledgements.
    let mut buf = vec![0u8; MAX_PAYLOAD_LEN];
    let mut sent_end = 0u64;
    let mut acked = 0u64;
    let mut held: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut quiet = true;
        while let Some((_, len)) = pair.b.poll_message(&mut buf) {
            quiet = false;
            if let Some(FileRepr::Ack { received, .. }) = FileRepr::parse(&buf[..len]) {
                acked = received;
            }
            pair.a.handle_message(pair.now, B, &buf[..len]);
        }
        while let Some((_, len)) = pair.a.poll_message(&mut buf) {
            if let Some(FileRepr::Chunk { offset, data, .. }) = FileRepr::parse(&buf[..len]) {
                sent_end = sent_end.max(offset + data.len() as u64);
                pair.max_in_flight = pair.max_in_flight.max(sent_end - acked);
            }
            held.push(buf[..len].to_vec());
        }
        if held.is_empty() && quiet {
            break;
        }
        for payload in held.drain(..) {
            pair.b.handle_message(pair.now, A, &payload);
        }
    }
    assert!(pair.max_in_flight <= 64 * 1024, "{} bytes in flight", pair.max_in_flight);
    assert_eq!(fs::read(pair.dir.path().join("b-downloads/big.bin")).unwrap(), content);
}

#[test]
fn a_fetch_is_served_from_the_shared_folder_only() {
    let mut pair = Pair::new();
    let share = pair.dir.path().join("shared");
    fs::create_dir(&share).unwrap();
    let content = b"journal line 1\njournal line 2\n".repeat(1000);
    fs::write(share.join("system.log"), &content).unwrap();
    fs::write(pair.dir.path().join("secret.txt"), b"outside the share").unwrap();
    std::os::unix::fs::symlink(pair.dir.path().join("secret.txt"), share.join("link.txt")).unwrap();

    let id = pair.b.fetch(pair.now, A, "system.log").unwrap();
    pair.pump(|_, _| true);
    let events = Pair::events(&mut pair.a);
    let [TransferEvent::FetchRequested { peer: B, id: got, name }] = events.as_slice() else { panic!("{events:?}") };
    assert_eq!((*got, name.as_str()), (id, "system.log"));
    let path = shared_file(&share, name).unwrap();
    pair.a.serve_fetch(pair.now, B, id, PreparedFile::open(&path).unwrap()).unwrap();
    pair.pump(|_, _| true);
    let (_, saved, _) = completed(&Pair::events(&mut pair.b)).expect("fetched");
    assert_eq!(fs::read(saved.unwrap()).unwrap(), content);
    assert_eq!(completed(&Pair::events(&mut pair.a)).map(|c| c.0), Some(Direction::Sending));

    // What a peer cannot reach: a link out of the share, a missing file, a path.
    assert_eq!(shared_file(&share, "link.txt"), Err(CancelReason::NotFound));
    assert_eq!(shared_file(&share, "nothing.txt"), Err(CancelReason::NotFound));
    assert_eq!(shared_file(&share, "../secret.txt"), Err(CancelReason::Protocol));
    assert!(matches!(pair.b.fetch(pair.now, A, "../secret.txt"), Err(TransferError::BadName)));
    assert!(matches!(PreparedFile::open(&share.join("link.txt")), Err(TransferError::BadName)));

    let id = pair.b.fetch(pair.now, A, "nothing.txt").unwrap();
    pair.pump(|_, _| true);
    assert!(matches!(Pair::events(&mut pair.a).as_slice(), [TransferEvent::FetchRequested { .. }]));
    pair.a.refuse_fetch(B, id, CancelReason::NotFound).unwrap();
    pair.pump(|_, _| true);
    assert_eq!(failed(&Pair::events(&mut pair.b)), Some((CancelReason::NotFound, false)));
    assert!(pair.b.is_idle());
}

#[test]
fn an_existing_file_is_never_overwritten() {
    let mut pair = Pair::new();
    let downloads = pair.dir.path().join("b-downloads");
    fs::create_dir_all(&downloads).unwrap();
    fs::write(downloads.join("notes.txt"), b"mine").unwrap();
    fs::write(downloads.join("notes (1).txt"), b"mine too").unwrap();
    let (path, content) = pair.file("notes.txt", 5000);
    pair.push(&path);
    pair.pump(|_, _| true);
    let (_, saved, _) = completed(&Pair::events(&mut pair.b)).unwrap();
    assert_eq!(saved.unwrap(), downloads.join("notes (2).txt"));
    assert_eq!(fs::read(downloads.join("notes (2).txt")).unwrap(), content);
    assert_eq!(fs::read(downloads.join("notes.txt")).unwrap(), b"mine");
    assert_eq!(fs::read(downloads.join("notes (1).txt")).unwrap(), b"mine too");
}

#[test]
fn a_declined_offer_ends_on_both_sides_and_stores_nothing() {
    let mut pair = Pair::new();
    let (path, _) = pair.file("unwanted.exe", 1000);
    let id = pair.a.offer(pair.now, B, PreparedFile::open(&path).unwrap()).unwrap();
    pair.pump(|_, _| true);
    Pair::events(&mut pair.b);
    pair.b.decline(A, id).unwrap();
    pair.pump(|_, _| true);
    assert_eq!(failed(&Pair::events(&mut pair.a)), Some((CancelReason::Declined, false)));
    assert!(!pair.dir.path().join("b-downloads").exists());
    assert_eq!(pair.chunks_sent, 0, "no byte of the file was sent");
}

#[test]
fn lost_chunks_are_sent_again_and_the_file_is_still_exact() {
    let mut pair = Pair::new();
    let (path, content) = pair.file("photo.raw", 2 * 1024 * 1024 + 7);
    pair.push(&path);
    // Every seventh chunk, and every third acknowledgement, is lost (a relay dropping data for
    // a slow member drops both kinds).
    let mut n = 0;
    for _ in 0..200 {
        pair.pump(|_, payload| {
            n += 1;
            match FileRepr::parse(payload) {
                Some(FileRepr::Chunk { .. }) => n % 7 != 0,
                Some(FileRepr::Ack { .. }) => n % 3 != 0,
                _ => true,
            }
        });
        if !pair.b.is_idle() || !pair.a.is_idle() {
            assert!(pair.tick());
        } else {
            break;
        }
    }
    let (_, saved, _) = completed(&Pair::events(&mut pair.b)).expect("completed despite losses");
    assert_eq!(fs::read(saved.unwrap()).unwrap(), content);
    assert!(completed(&Pair::events(&mut pair.a)).is_some());
    assert!(pair.chunks_sent > content.len() / lifeline_core::app::file::MAX_CHUNK_LEN + 1, "some were resent");
}

#[test]
fn a_transfer_resumes_after_a_reconnect() {
    let mut pair = Pair::new();
    let (path, content) = pair.file("backup.tar", 4 * 1024 * 1024);
    pair.push(&path);
    // Halfway, the connection drops: everything in flight is lost.
    let mut delivered = 0usize;
    pair.pump(|from, payload| {
        if from == A && matches!(FileRepr::parse(payload), Some(FileRepr::Chunk { .. })) {
            delivered += payload.len();
        }
        delivered < content.len() / 2
    });
    assert!(completed(&Pair::events(&mut pair.b)).is_none());
    pair.b.handle_reconnected(pair.now);
    pair.a.handle_reconnected(pair.now);
    pair.pump(|_, _| true);
    let (_, saved, _) = completed(&Pair::events(&mut pair.b)).expect("resumed and completed");
    assert_eq!(fs::read(saved.unwrap()).unwrap(), content);
    let resent = pair.chunks_sent * lifeline_core::app::file::MAX_CHUNK_LEN;
    assert!(resent < content.len() * 3 / 2 + 512 * 1024, "resumed, not restarted: {resent} bytes of chunks");
}

#[test]
fn a_lost_complete_is_repeated_when_the_sender_asks_again() {
    let mut pair = Pair::new();
    let (path, _) = pair.file("small.txt", 100);
    pair.push(&path);
    pair.pump(|from, payload| !(from == B && matches!(FileRepr::parse(payload), Some(FileRepr::Complete { .. }))));
    assert!(completed(&Pair::events(&mut pair.b)).is_some());
    assert!(!pair.a.is_idle(), "A is still waiting");
    assert!(pair.tick());
    pair.pump(|_, _| true);
    assert!(completed(&Pair::events(&mut pair.a)).is_some());
    assert!(pair.a.is_idle());
    assert_eq!(fs::read_dir(pair.dir.path().join("b-downloads")).unwrap().count(), 1, "stored once");
}

#[test]
fn bytes_altered_on_the_way_fail_the_integrity_check_and_nothing_is_kept() {
    let mut pair = Pair::new();
    let (path, _) = pair.file("firmware.bin", 300_000);
    pair.push(&path);
    let mut altered = false;
    pair.pump(|_, payload| {
        if !altered && payload[0] == 0x04 && payload.len() > 100 {
            let last = payload.len() - 1;
            payload[last] ^= 0x01;
            altered = true;
        }
        true
    });
    assert_eq!(failed(&Pair::events(&mut pair.b)), Some((CancelReason::Integrity, true)));
    assert_eq!(failed(&Pair::events(&mut pair.a)), Some((CancelReason::Integrity, false)));
    assert_eq!(fs::read_dir(pair.dir.path().join("b-downloads")).unwrap().count(), 0);
}

#[test]
fn revoking_stops_every_transfer_at_once() {
    let mut pair = Pair::new();
    let (path, _) = pair.file("video.mp4", 4 * 1024 * 1024);
    let id = pair.push(&path);
    // Part of it arrives, then the customer (B) takes back the grant.
    let mut budget = 20;
    pair.pump(|_, _| {
        budget -= 1;
        budget > 0
    });
    pair.b.cancel_all(CancelReason::Revoked);
    assert_eq!(failed(&Pair::events(&mut pair.b)), Some((CancelReason::Revoked, true)));
    let before = pair.chunks_sent;
    pair.pump(|_, _| true);
    assert_eq!(failed(&Pair::events(&mut pair.a)), Some((CancelReason::Revoked, false)));
    assert!(pair.chunks_sent - before <= 64, "A stops after what was already on its way");
    assert!(pair.a.is_idle() && pair.b.is_idle());
    assert_eq!(part_files(&pair.dir.path().join("b-downloads")), 0);
    assert!(matches!(pair.b.accept(pair.now, A, id), Err(TransferError::UnknownTransfer)));
}

#[test]
fn limits_and_vanishing_peers() {
    let mut pair = Pair::with(|config| TransferConfig { max_size: 1000, ..config });
    let (path, _) = pair.file("huge.iso", 1001);
    pair.a.offer(pair.now, B, PreparedFile::open(&path).unwrap()).unwrap();
    pair.pump(|_, _| true);
    assert!(Pair::events(&mut pair.b).is_empty(), "B is not even asked");
    assert_eq!(failed(&Pair::events(&mut pair.a)), Some((CancelReason::TooLarge, false)));

    let (path, _) = pair.file("ok.txt", 999);
    pair.push(&path);
    pair.b.peer_gone(A);
    assert_eq!(failed(&Pair::events(&mut pair.b)), Some((CancelReason::Aborted, false)));
    assert!(pair.b.is_idle());
    assert_eq!(part_files(&pair.dir.path().join("b-downloads")), 0);
    // Garbage and hostile payloads are dropped without effect.
    assert!(!pair.b.handle_message(pair.now, A, b"\x01garbage"));
    let mut traversal = vec![0x01, 0, 0, 0, 9];
    traversal.extend_from_slice(&10u64.to_be_bytes());
    traversal.extend_from_slice(&[0; 32]);
    traversal.push(6);
    traversal.extend_from_slice(b"../etc");
    assert!(!pair.b.handle_message(pair.now, A, &traversal));
    assert!(Pair::events(&mut pair.b).is_empty());
}

#[test]
fn ids_from_both_ends_never_collide() {
    let mut pair = Pair::new();
    let (path, _) = pair.file("x.txt", 10);
    let from_a: Vec<u32> =
        (0..3).map(|_| pair.a.offer(pair.now, B, PreparedFile::open(&path).unwrap()).unwrap()).collect();
    let from_b: Vec<u32> =
        (0..3).map(|_| pair.b.offer(pair.now, A, PreparedFile::open(&path).unwrap()).unwrap()).collect();
    assert!(from_a.iter().all(|id| id % 2 == 0) && from_b.iter().all(|id| id % 2 == 1));
    pair.pump(|_, _| true);
    assert_eq!(Pair::events(&mut pair.a).len(), 3);
    assert_eq!(Pair::events(&mut pair.b).len(), 3);
}

#[test]
fn an_empty_file_is_transferred_too() {
    let mut pair = Pair::new();
    let (path, _) = pair.file("empty.cfg", 0);
    pair.push(&path);
    pair.pump(|_, _| true);
    let (_, saved, size) = completed(&Pair::events(&mut pair.b)).expect("completed");
    assert_eq!(size, 0);
    assert_eq!(fs::read(saved.unwrap()).unwrap(), b"");
    assert!(completed(&Pair::events(&mut pair.a)).is_some());
    assert!(pair.a.is_idle() && pair.b.is_idle());
}
