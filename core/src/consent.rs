//! Consent: what the customer has allowed, enforced by the customer's own engine.
//!
//! No server and no peer can change what is granted here. A peer's request only opens a
//! prompt; the answer comes from the local application API ([`Session::grant`],
//! [`Session::deny`], [`Session::revoke`]) and there is no wire message that answers a prompt.
//! While any prompt is open, remote input is not delivered. Nothing is granted by default, and
//! a prompt never times out into a grant.
//!
//! [`Session::grant`]: crate::session::Session::grant
//! [`Session::deny`]: crate::session::Session::deny
//! [`Session::revoke`]: crate::session::Session::revoke

use core::fmt;

/// Something a provider can be allowed to do on the customer's machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Capability {
    /// See the customer's screen.
    ViewScreen,
    /// Send mouse and keyboard input to the customer's machine.
    RemoteControl,
    /// Send files to, and fetch files from, the customer's machine.
    FileTransfer,
    /// Collect diagnostic data from the customer's machine.
    Diagnostics,
    /// Keep privileges for unattended support after this session.
    Unattended,
    /// Run the commands an appliance's maker registered (never a general shell).
    RemoteConsole,
}

impl Capability {
    /// Every capability, in bit order.
    pub const ALL: [Capability; 6] = [
        Capability::ViewScreen,
        Capability::RemoteControl,
        Capability::FileTransfer,
        Capability::Diagnostics,
        Capability::Unattended,
        Capability::RemoteConsole,
    ];

    /// Wire byte (also the bit index in a [`CapabilitySet`]).
    pub const fn to_byte(self) -> u8 {
        match self {
            Capability::ViewScreen => 0,
            Capability::RemoteControl => 1,
            Capability::FileTransfer => 2,
            Capability::Diagnostics => 3,
            Capability::Unattended => 4,
            Capability::RemoteConsole => 5,
        }
    }

    /// Parses the wire byte.
    pub const fn from_byte(byte: u8) -> Option<Capability> {
        match byte {
            0 => Some(Capability::ViewScreen),
            1 => Some(Capability::RemoteControl),
            2 => Some(Capability::FileTransfer),
            3 => Some(Capability::Diagnostics),
            4 => Some(Capability::Unattended),
            5 => Some(Capability::RemoteConsole),
            _ => None,
        }
    }

    const fn bit(self) -> u8 {
        1 << self.to_byte()
    }

    /// A short human name.
    pub const fn name(self) -> &'static str {
        match self {
            Capability::ViewScreen => "view screen",
            Capability::RemoteControl => "remote control",
            Capability::FileTransfer => "file transfer",
            Capability::Diagnostics => "diagnostics",
            Capability::Unattended => "unattended access",
            Capability::RemoteConsole => "remote console",
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of capabilities (one bit each).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct CapabilitySet(u8);

impl CapabilitySet {
    /// Nothing.
    pub const EMPTY: CapabilitySet = CapabilitySet(0);
    const VALID_BITS: u8 = 0b0011_1111;

    /// Parses wire bits; unknown bits are an error.
    pub const fn from_bits(bits: u8) -> Option<CapabilitySet> {
        if bits & !Self::VALID_BITS == 0 { Some(CapabilitySet(bits)) } else { None }
    }

    /// Wire bits.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether `capability` is in the set.
    pub const fn contains(self, capability: Capability) -> bool {
        self.0 & capability.bit() != 0
    }

    /// The set with `capability` added.
    #[must_use]
    pub const fn with(self, capability: Capability) -> CapabilitySet {
        CapabilitySet(self.0 | capability.bit())
    }

    /// The set with `capability` removed.
    #[must_use]
    pub const fn without(self, capability: Capability) -> CapabilitySet {
        CapabilitySet(self.0 & !capability.bit())
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The capabilities in the set.
    pub fn iter(self) -> impl Iterator<Item = Capability> {
        Capability::ALL.into_iter().filter(move |c| self.contains(*c))
    }
}

/// A consent operation that does not apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ConsentError {
    /// Only a customer endpoint grants capabilities.
    NotCustomer,
    /// No prompt is open for that capability.
    NotPending,
    /// The capability is not granted.
    NotGranted,
    /// The session is over.
    Closed,
}

impl fmt::Display for ConsentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConsentError::NotCustomer => "only the customer's endpoint grants capabilities",
            ConsentError::NotPending => "no consent prompt is open for that capability",
            ConsentError::NotGranted => "that capability is not granted",
            ConsentError::Closed => "the session is closed",
        })
    }
}

impl core::error::Error for ConsentError {}

/// The customer's consent state: granted capabilities and open prompts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ConsentGuard {
    granted: CapabilitySet,
    pending: CapabilitySet,
}

/// What a peer's request did to the guard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RequestOutcome {
    /// A new prompt opened: tell the local user.
    Prompt,
    /// Already granted or already asked: nothing new.
    Unchanged,
}

impl ConsentGuard {
    /// Granted capabilities.
    pub const fn granted(&self) -> CapabilitySet {
        self.granted
    }

    /// Capabilities waiting for the local user's answer.
    pub const fn pending(&self) -> CapabilitySet {
        self.pending
    }

    /// Whether `capability` may be used now. Remote control also needs no prompt to be open.
    pub const fn allows(&self, capability: Capability) -> bool {
        match capability {
            Capability::RemoteControl => self.granted.contains(capability) && self.pending.is_empty(),
            _ => self.granted.contains(capability),
        }
    }

    pub(crate) fn request(&mut self, capability: Capability) -> RequestOutcome {
        if self.granted.contains(capability) || self.pending.contains(capability) {
            return RequestOutcome::Unchanged;
        }
        self.pending = self.pending.with(capability);
        RequestOutcome::Prompt
    }

    pub(crate) fn grant(&mut self, capability: Capability) -> Result<(), ConsentError> {
        if !self.pending.contains(capability) {
            return Err(ConsentError::NotPending);
        }
        self.pending = self.pending.without(capability);
        self.granted = self.granted.with(capability);
        Ok(())
    }

    pub(crate) fn deny(&mut self, capability: Capability) -> Result<(), ConsentError> {
        if !self.pending.contains(capability) {
            return Err(ConsentError::NotPending);
        }
        self.pending = self.pending.without(capability);
        Ok(())
    }

    pub(crate) fn revoke(&mut self, capability: Capability) -> Result<(), ConsentError> {
        if !self.granted.contains(capability) {
            return Err(ConsentError::NotGranted);
        }
        self.granted = self.granted.without(capability);
        Ok(())
    }

    /// Everything revoked and every prompt withdrawn (the session ended).
    pub(crate) fn clear(&mut self) {
        *self = ConsentGuard::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // -- nothing asked --

    #[test]
    fn nothing_is_granted_by_default() {
        let guard = ConsentGuard::default();
        for capability in Capability::ALL {
            assert!(!guard.allows(capability));
        }
    }

    #[test]
    fn cannot_grant_what_was_not_asked() {
        let mut guard = ConsentGuard::default();
        assert_eq!(guard.grant(Capability::RemoteControl), Err(ConsentError::NotPending));
        assert!(!guard.allows(Capability::RemoteControl));
    }

    // -- prompt open --

    #[test]
    fn a_request_opens_one_prompt() {
        let mut guard = ConsentGuard::default();
        assert_eq!(guard.request(Capability::ViewScreen), RequestOutcome::Prompt);
        assert_eq!(guard.request(Capability::ViewScreen), RequestOutcome::Unchanged);
        assert!(guard.pending().contains(Capability::ViewScreen));
        assert!(!guard.allows(Capability::ViewScreen));
    }

    #[test]
    fn remote_control_is_held_while_any_prompt_is_open() {
        let mut guard = ConsentGuard::default();
        guard.request(Capability::RemoteControl);
        guard.grant(Capability::RemoteControl).unwrap();
        assert!(guard.allows(Capability::RemoteControl));
        guard.request(Capability::FileTransfer);
        assert!(!guard.allows(Capability::RemoteControl));
        guard.deny(Capability::FileTransfer).unwrap();
        assert!(guard.allows(Capability::RemoteControl));
    }

    // -- granted --

    #[test]
    fn revoke_takes_back_at_once() {
        let mut guard = ConsentGuard::default();
        guard.request(Capability::RemoteControl);
        guard.grant(Capability::RemoteControl).unwrap();
        guard.revoke(Capability::RemoteControl).unwrap();
        assert!(!guard.allows(Capability::RemoteControl));
        assert_eq!(guard.revoke(Capability::RemoteControl), Err(ConsentError::NotGranted));
        assert_eq!(guard.request(Capability::RemoteControl), RequestOutcome::Prompt, "may be asked again");
    }

    #[test]
    fn set_bits_round_trip() {
        let set = CapabilitySet::EMPTY.with(Capability::Diagnostics).with(Capability::RemoteConsole);
        assert_eq!(CapabilitySet::from_bits(set.bits()), Some(set));
        assert_eq!(set.iter().count(), 2);
        assert_eq!(CapabilitySet::from_bits(0x40), None);
    }
}
