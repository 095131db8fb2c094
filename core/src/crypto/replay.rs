//! Replay and reordering protection: per sender and epoch, sequence numbers must increase.
//!
//! Every hop is TCP (TLS 1.3), and a relay forwards one member's frames to another member over a
//! single ordered path, so an honest network delivers each sender's frames in the order they were
//! sealed (with gaps: a sender numbers all its frames, whatever their destination). A frame whose
//! sequence number is not above every one accepted before from that sender, in that epoch, was
//! replayed or reordered by someone on the path: it is refused, never delivered.

/// Remembers the next acceptable sequence number of one sender in one epoch. Checked only after
/// a frame's MAC verified, so forged sequence numbers cannot move it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayWindow {
    /// Highest sequence accepted, plus one (0: nothing accepted yet).
    next: u64,
}

impl ReplayWindow {
    /// A window that has accepted nothing.
    pub const fn new() -> Self {
        ReplayWindow { next: 0 }
    }

    /// Accepts `sequence` if it is above every sequence accepted before; `false` for a repeat
    /// or a frame that arrives after a newer one.
    pub fn accept(&mut self, sequence: u64) -> bool {
        if sequence < self.next {
            return false;
        }
        self.next = sequence.saturating_add(1);
        true
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn in_order_with_gaps_then_repeat() {
        let mut window = ReplayWindow::new();
        for seq in (0..400).step_by(3) {
            assert!(window.accept(seq));
            assert!(!window.accept(seq));
        }
    }

    #[test]
    fn an_overtaken_frame_is_refused() {
        let mut window = ReplayWindow::new();
        assert!(window.accept(10));
        assert!(!window.accept(9), "reordered");
        assert!(window.accept(11));
    }

    #[test]
    fn big_jump_and_the_end_of_the_range() {
        let mut window = ReplayWindow::new();
        assert!(window.accept(0));
        assert!(window.accept(1_000_000));
        assert!(!window.accept(999_999));
        assert!(window.accept(u64::MAX - 1));
        assert!(!window.accept(u64::MAX - 1));
    }

    proptest! {
        #[test]
        fn accepted_sequences_strictly_increase(seqs in proptest::collection::vec(0u64..300, 0..500)) {
            let mut window = ReplayWindow::new();
            let mut last: Option<u64> = None;
            for seq in seqs {
                if window.accept(seq) {
                    prop_assert!(last.is_none_or(|l| seq > l), "sequence {} accepted after {:?}", seq, last);
                    last = Some(seq);
                }
            }
        }
    }
}
