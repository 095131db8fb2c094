//! Session configuration, with bounds that no setting can cross.

use heapless::String;

use crate::crypto::srp::Group;
use crate::time::Duration;
use crate::wire::control::MAX_NAME_LEN;
use crate::wire::handshake::Role;
use crate::wire::{MAX_PAYLOAD_LEN, MIN_RECEIVE_LIMIT, MemberId};

/// Most failed joins a session ever tolerates before its PIN dies. A configuration may only
/// lower it: each failure is one online guess at the PIN.
pub const MAX_JOIN_FAILURES: u8 = 5;
/// Longest an old epoch's keys are kept for receiving after a rekey.
pub const MAX_EPOCH_GRACE: Duration = Duration::from_secs(30);
/// A member asks for a rekey at this many frames in one epoch unless configured lower.
pub const DEFAULT_REKEY_AFTER_FRAMES: u64 = 1 << 30;

/// The timers of a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Timeouts {
    /// A join (hello to keys) must complete within this.
    pub handshake: Duration,
    /// Send a keepalive to all members after this long without a frame to all members.
    pub keepalive: Duration,
    /// A peer silent for this long is gone (the leader removes it; a member loses the leader).
    pub idle: Duration,
    /// Keep the previous epoch's keys this long after a rekey (capped at [`MAX_EPOCH_GRACE`]).
    pub epoch_grace: Duration,
    /// Leader: how long a member whose connection dropped may take to reconnect and resume
    /// before it is removed and the group rekeyed.
    pub reconnect_grace: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            handshake: Duration::from_secs(20),
            keepalive: Duration::from_secs(10),
            idle: Duration::from_secs(45),
            epoch_grace: Duration::from_secs(5),
            reconnect_grace: Duration::from_secs(30),
        }
    }
}

/// How to run one session endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The session number (never zero).
    pub session: u64,
    /// This endpoint's member id ([`MemberId::LEADER`] for the leader; the relay assigns others).
    pub local_id: MemberId,
    /// Provider or customer. Only a customer's engine grants capabilities, and it enforces them.
    pub role: Role,
    /// Display name announced to the other members.
    pub name: String<MAX_NAME_LEN>,
    /// SRP group the leader uses (ignored by members, which accept 2048 and 3072 bits).
    pub group: Group,
    /// Timers.
    pub timeouts: Timeouts,
    /// Failed joins before the PIN dies (clamped to 1..=[`MAX_JOIN_FAILURES`]).
    pub max_join_failures: u8,
    /// Frames per epoch before a rekey is asked for (clamped to
    /// 1..=[`DEFAULT_REKEY_AFTER_FRAMES`]; lower only ever means more rekeys).
    pub rekey_after_frames: u64,
    /// The largest application payload this endpoint accepts in one frame (clamped to
    /// [`MIN_RECEIVE_LIMIT`]..=[`MAX_PAYLOAD_LEN`]). Below the maximum it is announced, the other
    /// members send this endpoint nothing larger, and [`Session::handle_frame`]'s `out` needs
    /// only this many bytes: a microcontroller's buffers shrink with it.
    ///
    /// [`Session::handle_frame`]: super::Session::handle_frame
    pub receive_limit: usize,
}

impl Config {
    /// A configuration with the defaults: 2048-bit group, default timers and limits.
    pub fn new(session: u64, local_id: MemberId, role: Role, name: &str) -> Self {
        let mut display = String::new();
        for ch in name.chars() {
            if display.push(ch).is_err() {
                break;
            }
        }
        Config {
            session,
            local_id,
            role,
            name: display,
            group: Group::Rfc5054_2048,
            timeouts: Timeouts::default(),
            max_join_failures: MAX_JOIN_FAILURES,
            rekey_after_frames: DEFAULT_REKEY_AFTER_FRAMES,
            receive_limit: MAX_PAYLOAD_LEN,
        }
    }

    /// The receive limit as used (see [`Config::receive_limit`]).
    pub fn receive_limit(&self) -> usize {
        self.receive_limit.clamp(MIN_RECEIVE_LIMIT, MAX_PAYLOAD_LEN)
    }

    /// What `Announce` carries: the limit if it is below the maximum.
    pub(crate) fn announced_receive_limit(&self) -> Option<u16> {
        let limit = self.receive_limit();
        if limit < MAX_PAYLOAD_LEN { u16::try_from(limit).ok() } else { None }
    }

    pub(crate) fn join_failure_limit(&self) -> u8 {
        self.max_join_failures.clamp(1, MAX_JOIN_FAILURES)
    }

    pub(crate) fn rekey_threshold(&self) -> u64 {
        self.rekey_after_frames.clamp(1, DEFAULT_REKEY_AFTER_FRAMES)
    }

    /// The timers as used: each clamped to a sane range, so no setting can make the engine spin
    /// (a zero keepalive) or keep stale state for ever.
    pub(crate) fn timers(&self) -> Timeouts {
        let t = self.timeouts;
        let clamp =
            |value: Duration, low: u64, high: u64| value.max(Duration::from_secs(low)).min(Duration::from_secs(high));
        let keepalive = clamp(t.keepalive, 1, 300);
        Timeouts {
            handshake: clamp(t.handshake, 1, 300),
            keepalive,
            // At least three keepalives fit in the idle timeout, so one lost ping ends nothing.
            idle: clamp(t.idle, 3, 3600).max(Duration::from_micros(keepalive.as_micros().saturating_mul(3))),
            epoch_grace: t.epoch_grace.min(MAX_EPOCH_GRACE),
            reconnect_grace: t.reconnect_grace.min(Duration::from_secs(600)),
        }
    }
}
