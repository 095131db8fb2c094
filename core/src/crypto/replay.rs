//! Replay protection: a sliding window of recently seen sequence numbers per sender and epoch.

/// How far behind the highest sequence number a frame may arrive and still be accepted.
pub const REPLAY_WINDOW: u64 = 64;

/// Remembers the highest sequence number seen and which of the [`REPLAY_WINDOW`] before it
/// arrived. Checked only after a frame's MAC verified, so forged sequence numbers cannot move it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayWindow {
    /// Highest sequence seen, plus one (0: nothing seen yet).
    next: u64,
    /// Bit `i` set: sequence `next - 1 - i` was seen.
    seen: u64,
}

impl ReplayWindow {
    /// A window that has seen nothing.
    pub const fn new() -> Self {
        ReplayWindow { next: 0, seen: 0 }
    }

    /// Accepts `sequence` once: `true` the first time it is seen inside the window, `false` for a
    /// repeat or a sequence too old to judge.
    pub fn accept(&mut self, sequence: u64) -> bool {
        if sequence >= self.next {
            let shift = sequence - self.next + 1;
            self.seen = if shift >= REPLAY_WINDOW { 0 } else { self.seen << shift };
            self.seen |= 1;
            self.next = sequence.saturating_add(1);
            return true;
        }
        let age = self.next - 1 - sequence;
        if age >= REPLAY_WINDOW {
            return false;
        }
        let bit = 1u64 << age;
        if self.seen & bit != 0 {
            return false;
        }
        self.seen |= bit;
        true
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn in_order_then_repeat() {
        let mut window = ReplayWindow::new();
        for seq in 0..200 {
            assert!(window.accept(seq));
            assert!(!window.accept(seq));
        }
    }

    #[test]
    fn late_within_window_once() {
        let mut window = ReplayWindow::new();
        assert!(window.accept(100));
        assert!(window.accept(40), "age 60 is inside the window");
        assert!(!window.accept(40));
        assert!(!window.accept(36), "age 64 is outside");
        assert!(window.accept(101));
    }

    #[test]
    fn big_jump_clears_history() {
        let mut window = ReplayWindow::new();
        assert!(window.accept(0));
        assert!(window.accept(1_000_000));
        assert!(!window.accept(0));
        assert!(window.accept(999_999));
        assert!(window.accept(u64::MAX - 1));
        assert!(!window.accept(u64::MAX - 1));
    }

    proptest! {
        #[test]
        fn never_accepts_twice(seqs in proptest::collection::vec(0u64..300, 0..500)) {
            let mut window = ReplayWindow::new();
            let mut accepted = std::collections::HashSet::new();
            for seq in seqs {
                if window.accept(seq) {
                    prop_assert!(accepted.insert(seq), "sequence {} accepted twice", seq);
                }
            }
        }
    }
}
