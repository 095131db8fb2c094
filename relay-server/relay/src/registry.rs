//! Sessions and their members: admission (which member id an endpoint gets) and routing (which
//! outboxes a frame goes to).
//!
//! Lock order: the session map, then one session's members, then an outbox. Routing takes only
//! the session's own lock, so sessions never contend with each other.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use lifeline_core::wire::relay::{RefusalReason, RelayRepr};
use lifeline_core::wire::{Destination, MemberId};
use tracing::{debug, info, warn};

use crate::metrics::{DropReason, Metrics};
use crate::outbox::{Close, FrameBytes, Outbox, Pushed, lock};

/// The role a ticket grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// Member id 0.
    Leader,
    /// Any id from 1 to 253.
    Member,
}

/// Every session this relay serves.
#[derive(Debug)]
pub(crate) struct Registry {
    sessions: Mutex<HashMap<u64, Arc<SessionEntry>>>,
    max_sessions: usize,
    max_members: usize,
    metrics: Arc<Metrics>,
}

/// One session: its members and their outboxes.
#[derive(Debug)]
pub(crate) struct SessionEntry {
    /// The session number.
    pub(crate) number: u64,
    members: Mutex<BTreeMap<u8, Slot>>,
}

#[derive(Debug)]
struct Slot {
    conn: u64,
    /// The id of the ticket the slot was taken with: a member resume replaces a live slot only
    /// when it presents the same ticket.
    ticket: [u8; 16],
    outbox: Arc<Outbox>,
}

/// A place in a session's routing, held by one connection (`conn`).
#[derive(Clone, Debug)]
pub(crate) struct Admitted {
    pub(crate) session: Arc<SessionEntry>,
    pub(crate) member: MemberId,
    pub(crate) conn: u64,
}

/// Builds a relay notice (sender `0xFE`).
pub(crate) fn relay_frame(message: RelayRepr<'_>, session: u64, destination: Destination) -> Option<FrameBytes> {
    let mut buf = [0u8; 64];
    let len = message.emit_frame(session, destination, &mut buf).ok()?;
    Some(buf[..len].into())
}

impl Registry {
    pub(crate) fn new(max_sessions: usize, max_members: usize, metrics: Arc<Metrics>) -> Registry {
        Registry { sessions: Mutex::default(), max_sessions, max_members, metrics }
    }

    /// Gives connection `conn` a member id in `session` and queues `Welcome` on its outbox.
    ///
    /// Leader tickets get id 0. If id 0 is held, only a resume (`resume == Some(0)`) takes it,
    /// and the newest connection wins: the old one is closed and the others are told it is
    /// gone. Member tickets get `resume` if it is free, or if it is held by a connection
    /// admitted with the same ticket (a reconnect while the relay has not yet noticed the old
    /// connection died: newest wins again); else the lowest free id from 1.
    pub(crate) fn admit(
        &self,
        session: u64,
        role: Role,
        resume: Option<MemberId>,
        ticket: [u8; 16],
        conn: u64,
        outbox: &Arc<Outbox>,
    ) -> Result<Admitted, RefusalReason> {
        let mut sessions = lock(&self.sessions);
        let existing = sessions.get(&session).cloned();
        if existing.is_none() && sessions.len() >= self.max_sessions {
            return Err(RefusalReason::Full);
        }
        let entry =
            existing.clone().unwrap_or_else(|| Arc::new(SessionEntry { number: session, members: Mutex::default() }));
        let mut members = lock(&entry.members);
        let id = match (role, resume) {
            (Role::Leader, None) if members.contains_key(&0) => return Err(RefusalReason::ResumeRefused),
            (Role::Leader, None | Some(MemberId::LEADER)) => MemberId::LEADER,
            (Role::Leader, Some(_)) | (Role::Member, Some(MemberId::LEADER)) => {
                return Err(RefusalReason::ResumeRefused);
            }
            (Role::Member, Some(id))
                if id.is_endpoint() && members.get(&id.0).is_none_or(|slot| slot.ticket == ticket) =>
            {
                id
            }
            (Role::Member, _) => (1..=MemberId::MAX_ENDPOINT.0)
                .map(MemberId)
                .find(|id| !members.contains_key(&id.0))
                .ok_or(RefusalReason::Full)?,
        };
        let replacing = members.contains_key(&id.0);
        if !replacing && members.len() >= self.max_members {
            return Err(RefusalReason::Full);
        }
        let welcome = relay_frame(RelayRepr::Welcome { member: id }, session, Destination::Member(id))
            .ok_or(RefusalReason::Other)?;
        if outbox.push(welcome, true) != Pushed::Queued {
            return Err(RefusalReason::Other);
        }
        if let Some(old) = members.insert(id.0, Slot { conn, ticket, outbox: outbox.clone() }) {
            info!(session, member = id.0, "newer connection replaces the member's old one");
            old.outbox.close(Close::Now);
            member_gone(&members, session, id, &self.metrics);
        } else {
            self.metrics.members.add(1);
        }
        drop(members);
        if existing.is_none() {
            sessions.insert(session, entry.clone());
            self.metrics.sessions.add(1);
        }
        self.metrics.admissions.add(1);
        Ok(Admitted { session: entry, member: id, conn })
    }

    /// Removes `admitted` from its session if it still holds its place, and tells the other
    /// members it is gone. The session ends with its last member.
    pub(crate) fn leave(&self, admitted: &Admitted) {
        let mut sessions = lock(&self.sessions);
        let mut members = lock(&admitted.session.members);
        if members.get(&admitted.member.0).is_none_or(|slot| slot.conn != admitted.conn) {
            return;
        }
        members.remove(&admitted.member.0);
        self.metrics.members.add(-1);
        let number = admitted.session.number;
        member_gone(&members, number, admitted.member, &self.metrics);
        if members.is_empty() && sessions.get(&number).is_some_and(|entry| Arc::ptr_eq(entry, &admitted.session)) {
            sessions.remove(&number);
            self.metrics.sessions.add(-1);
            debug!(session = number, "session ended: no member left");
        }
    }

    /// Whether this relay serves `session` now.
    pub(crate) fn contains(&self, session: u64) -> bool {
        lock(&self.sessions).contains_key(&session)
    }

    /// Every member's outbox, with its session and id (for `GoAway`).
    pub(crate) fn all_members(&self) -> Vec<(u64, MemberId, Arc<Outbox>)> {
        let sessions = lock(&self.sessions);
        let mut all = Vec::new();
        for entry in sessions.values() {
            for (id, slot) in lock(&entry.members).iter() {
                all.push((entry.number, MemberId(*id), slot.outbox.clone()));
            }
        }
        all
    }
}

impl SessionEntry {
    /// Queues `frame` from `from` (held by connection `conn`) for its destination. The caller
    /// has checked the header's session, sender and kind.
    pub(crate) fn route(
        &self,
        from: MemberId,
        conn: u64,
        destination: Destination,
        frame: &FrameBytes,
        control: bool,
        metrics: &Metrics,
    ) {
        let members = lock(&self.members);
        if members.get(&from.0).is_none_or(|slot| slot.conn != conn) {
            metrics.drop_frame(DropReason::Stale);
            return;
        }
        match destination {
            Destination::AllMembers => {
                for (id, slot) in members.iter().filter(|(id, _)| **id != from.0) {
                    deliver(self.number, MemberId(*id), slot, frame, control, metrics);
                }
            }
            Destination::Member(id) if id == from || !id.is_endpoint() => {
                metrics.drop_frame(DropReason::BadDestination);
            }
            Destination::Member(id) => match members.get(&id.0) {
                Some(slot) => deliver(self.number, id, slot, frame, control, metrics),
                None => metrics.drop_frame(DropReason::NoSuchMember),
            },
        }
    }
}

fn deliver(session: u64, id: MemberId, slot: &Slot, frame: &FrameBytes, control: bool, metrics: &Metrics) {
    match slot.outbox.push(frame.clone(), control) {
        Pushed::Queued => metrics.frames_routed.add(1),
        Pushed::Dropped => metrics.drop_frame(DropReason::SlowConsumer),
        Pushed::Overflow => {
            warn!(session, member = id.0, "control queue full: disconnecting the member (it may resume)");
            metrics.drop_frame(DropReason::ControlOverflow);
        }
        Pushed::Closed => {}
    }
}

/// Tells every member in `members` except `gone` that `gone` left.
fn member_gone(members: &BTreeMap<u8, Slot>, session: u64, gone: MemberId, metrics: &Metrics) {
    let Some(notice) = relay_frame(RelayRepr::MemberGone { member: gone }, session, Destination::AllMembers) else {
        return;
    };
    for (id, slot) in members.iter().filter(|(id, _)| **id != gone.0) {
        deliver(session, MemberId(*id), slot, &notice, true, metrics);
    }
}

#[cfg(test)]
mod tests {
    use lifeline_core::wire::{FrameKind, HEADER_LEN, RoutingHeader};

    use super::*;

    struct Fixture {
        registry: Registry,
        metrics: Arc<Metrics>,
        next_conn: u64,
    }

    impl Fixture {
        fn new(max_sessions: usize, max_members: usize) -> Fixture {
            let metrics = Arc::new(Metrics::default());
            Fixture { registry: Registry::new(max_sessions, max_members, metrics.clone()), metrics, next_conn: 0 }
        }

        fn admit(
            &mut self,
            session: u64,
            role: Role,
            resume: Option<u8>,
        ) -> Result<(Admitted, Arc<Outbox>), RefusalReason> {
            let ticket = [(self.next_conn + 100) as u8; 16];
            self.admit_with(session, role, resume, ticket)
        }

        fn admit_with(
            &mut self,
            session: u64,
            role: Role,
            resume: Option<u8>,
            ticket: [u8; 16],
        ) -> Result<(Admitted, Arc<Outbox>), RefusalReason> {
            self.next_conn += 1;
            let outbox = Outbox::new(8, 10_000, self.metrics.clone());
            let admitted = self.registry.admit(session, role, resume.map(MemberId), ticket, self.next_conn, &outbox)?;
            Ok((admitted, outbox))
        }
    }

    async fn notice(outbox: &Outbox) -> RelayRepr<'static> {
        let frame = outbox.next_frame().await.unwrap();
        let header = RoutingHeader::parse(&frame).unwrap();
        assert_eq!(header.kind, FrameKind::Relay);
        let body: &'static [u8] = Vec::leak(frame[HEADER_LEN..].to_vec());
        RelayRepr::parse(body).unwrap()
    }

    // ---- admission ---------------------------------------------------------------------

    #[tokio::test]
    async fn leader_gets_zero_and_members_count_up() {
        let mut fx = Fixture::new(10, 10);
        let (leader, outbox) = fx.admit(7, Role::Leader, None).unwrap();
        assert_eq!(leader.member, MemberId(0));
        assert_eq!(notice(&outbox).await, RelayRepr::Welcome { member: MemberId(0) });
        assert_eq!(fx.admit(7, Role::Member, None).unwrap().0.member, MemberId(1));
        assert_eq!(fx.admit(7, Role::Member, None).unwrap().0.member, MemberId(2));
        assert_eq!(fx.admit(7, Role::Member, Some(9)).unwrap().0.member, MemberId(9), "free resume id honoured");
        assert_eq!(fx.admit(7, Role::Member, Some(9)).unwrap().0.member, MemberId(3), "taken resume id: lowest free");
        assert_eq!(fx.admit(8, Role::Member, None).unwrap().0.member, MemberId(1), "ids are per session");
        assert_eq!(fx.metrics.sessions.get(), 2);
        assert_eq!(fx.metrics.members.get(), 6);
    }

    #[tokio::test]
    async fn leader_slot_is_taken_back_only_by_a_resume() {
        let mut fx = Fixture::new(10, 10);
        let (_old, old_outbox) = fx.admit(7, Role::Leader, None).unwrap();
        let (_member, member_outbox) = fx.admit(7, Role::Member, None).unwrap();
        assert_eq!(fx.admit(7, Role::Leader, None).unwrap_err(), RefusalReason::ResumeRefused);
        assert_eq!(fx.admit(7, Role::Leader, Some(3)).unwrap_err(), RefusalReason::ResumeRefused);
        assert_eq!(fx.admit(7, Role::Member, Some(0)).unwrap_err(), RefusalReason::ResumeRefused);
        let (new, _) = fx.admit(7, Role::Leader, Some(0)).unwrap();
        assert_eq!(new.member, MemberId(0));
        assert!(old_outbox.is_closed(), "newest wins: the old connection is closed");
        assert_eq!(notice(&member_outbox).await, RelayRepr::Welcome { member: MemberId(1) });
        assert_eq!(notice(&member_outbox).await, RelayRepr::MemberGone { member: MemberId(0) });
        assert_eq!(fx.metrics.members.get(), 2);
    }

    #[tokio::test]
    async fn a_member_takes_its_live_slot_back_only_with_the_same_ticket() {
        let mut fx = Fixture::new(10, 10);
        let (_, leader_outbox) = fx.admit(7, Role::Leader, None).unwrap();
        let (old, old_outbox) = fx.admit_with(7, Role::Member, None, [1; 16]).unwrap();
        assert_eq!(old.member, MemberId(1));
        let (other, _) = fx.admit_with(7, Role::Member, Some(1), [2; 16]).unwrap();
        assert_eq!(other.member, MemberId(2), "another ticket cannot displace member 1");
        assert!(!old_outbox.is_closed());
        let (again, _) = fx.admit_with(7, Role::Member, Some(1), [1; 16]).unwrap();
        assert_eq!(again.member, MemberId(1), "the same ticket resumes its id: newest wins");
        assert!(old_outbox.is_closed());
        fx.registry.leave(&old);
        assert_eq!(fx.metrics.members.get(), 3, "the replaced connection leaving changes nothing");
        assert_eq!(notice(&leader_outbox).await, RelayRepr::Welcome { member: MemberId(0) });
        assert_eq!(notice(&leader_outbox).await, RelayRepr::MemberGone { member: MemberId(1) });
    }

    #[test]
    fn limits_refuse_with_full() {
        let mut fx = Fixture::new(1, 2);
        fx.admit(7, Role::Leader, None).unwrap();
        fx.admit(7, Role::Member, None).unwrap();
        assert_eq!(fx.admit(7, Role::Member, None).unwrap_err(), RefusalReason::Full);
        assert_eq!(fx.admit(8, Role::Leader, None).unwrap_err(), RefusalReason::Full);
    }

    #[tokio::test]
    async fn leaving_tells_the_others_and_the_last_one_ends_the_session() {
        let mut fx = Fixture::new(10, 10);
        let (leader, leader_outbox) = fx.admit(7, Role::Leader, None).unwrap();
        let (member, _) = fx.admit(7, Role::Member, None).unwrap();
        fx.registry.leave(&member);
        notice(&leader_outbox).await;
        assert_eq!(notice(&leader_outbox).await, RelayRepr::MemberGone { member: MemberId(1) });
        fx.registry.leave(&member);
        assert_eq!(fx.metrics.members.get(), 1, "leaving twice is harmless");
        fx.registry.leave(&leader);
        assert!(!fx.registry.contains(7));
        assert_eq!(fx.metrics.sessions.get(), 0);
    }

    // ---- routing -----------------------------------------------------------------------

    #[tokio::test]
    async fn frames_go_where_the_header_says() {
        let mut fx = Fixture::new(10, 10);
        let (leader, leader_outbox) = fx.admit(7, Role::Leader, None).unwrap();
        let (_, one) = fx.admit(7, Role::Member, None).unwrap();
        let (_, two) = fx.admit(7, Role::Member, None).unwrap();
        for outbox in [&leader_outbox, &one, &two] {
            notice(outbox).await;
        }
        let frame: FrameBytes = vec![1u8; 40].into();
        let metrics = &fx.metrics;
        leader.session.route(MemberId(0), leader.conn, Destination::AllMembers, &frame, false, metrics);
        leader.session.route(MemberId(0), leader.conn, Destination::Member(MemberId(2)), &frame, false, metrics);
        leader.session.route(MemberId(0), leader.conn, Destination::Member(MemberId(5)), &frame, false, metrics);
        leader.session.route(MemberId(0), leader.conn, Destination::Member(MemberId(0)), &frame, false, metrics);
        leader.session.route(MemberId(0), leader.conn + 100, Destination::AllMembers, &frame, false, metrics);
        assert_eq!(metrics.frames_routed.get(), 3);
        assert!(metrics.render().contains("reason=\"no_such_member\"} 1"));
        assert!(metrics.render().contains("reason=\"bad_destination\"} 1"));
        assert!(metrics.render().contains("reason=\"stale\"} 1"));
        assert_eq!(one.next_frame().await.unwrap(), frame);
        assert_eq!(two.next_frame().await.unwrap(), frame);
        assert_eq!(two.next_frame().await.unwrap(), frame);
    }
}
