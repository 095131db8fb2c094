//! The terminal session: prints what happens, turns typed lines into chat and commands.
//!
//! Output goes to stdout, one line per thing that happened; errors that end the program go to
//! stderr (see [`crate::exit`]). Text that came from the other endpoint is sanitized before it
//! is printed.

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::path::PathBuf;

use lifeline_core::consent::{Capability, CapabilitySet, ConsentError};
use lifeline_core::session::{Event, SendError, SessionEnd};
use lifeline_core::wire::MemberId;
use lifeline_core::wire::control::ContentType;
use lifeline_core::wire::handshake::{RejectReason, Role};
use lifeline_transport_tokio::connect::refusal_text;
use lifeline_transport_tokio::{
    CloseCause, ConnectError, ConnectionState, Received, SessionHandle, TransportEvent, spawn_session,
};
use tokio::sync::mpsc;

use crate::exit::Failure;
use crate::setup::Plan;
use crate::text::{
    capability_list, capability_request, capability_word, capability_words, content_name, group_digits,
    parse_capability, role_name, sanitize,
};

/// Runs the session to its end on a new tokio runtime.
pub(crate) fn run(plan: Plan) -> Result<(), Failure> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::Internal(format!("cannot start the async runtime: {e}")))?;
    let mut plan = plan;
    let broker_login = plan.broker_login.take();
    let result = runtime.block_on(session(plan));
    if let Some(login) = broker_login {
        // Best effort, bounded: the report gets its end time and the token is revoked.
        runtime.block_on(async {
            let done = async {
                let _ = login.client.end_session(&login.token, login.session).await;
                let _ = login.client.logout(&login.token).await;
            };
            let _ = tokio::time::timeout(std::time::Duration::from_secs(3), done).await;
        });
    }
    result
}

async fn session(mut plan: Plan) -> Result<(), Failure> {
    let mut console = Console::new(&plan);
    if let Some(pin) = plan.pin_to_show.take() {
        console.introduce(pin.as_str());
    }
    let mut lines = read_lines();
    let (handle, mut events) = spawn_session(plan.transport, plan.spec);
    let mut input_open = true;
    let mut closing = false;
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(event) => {
                    if let Some(result) = console.on_event(event) {
                        return result;
                    }
                }
                None => return Err(Failure::Internal("the session stopped without saying why".into())),
            },
            line = lines.recv(), if input_open => match line {
                Some(line) => {
                    if console.on_line(&handle, &line).await == Next::Quit && !closing {
                        closing = true;
                        handle.close().await;
                    }
                }
                None => {
                    // End of input (Ctrl-D, or a closed pipe) ends the session.
                    input_open = false;
                    if !closing {
                        closing = true;
                        handle.close().await;
                    }
                }
            },
            _ = tokio::signal::ctrl_c(), if !closing => {
                closing = true;
                println!("Ending the session…");
                handle.close().await;
            }
        }
    }
}

/// Lines typed on the terminal, read on a thread of their own (terminal reads block).
fn read_lines() -> mpsc::Receiver<String> {
    let (sender, receiver) = mpsc::channel(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if sender.blocking_send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

#[derive(Debug, PartialEq, Eq)]
enum Next {
    Continue,
    Quit,
}

struct Member {
    name: Option<String>,
    role: Option<Role>,
    /// Provider: the customer's consent state as last announced (granted, pending).
    consent: (CapabilitySet, CapabilitySet),
}

struct Console {
    role: Role,
    session: u64,
    relay_text: String,
    dev_dir: Option<PathBuf>,
    members: BTreeMap<MemberId, Member>,
    connected_once: bool,
    /// Customer: its own consent state (granted, pending).
    consent: (CapabilitySet, CapabilitySet),
    /// Customer with a broker: consent receipts, posted in order by one task.
    receipts: Option<mpsc::UnboundedSender<Receipt>>,
}

impl Console {
    fn new(plan: &Plan) -> Self {
        Console {
            role: plan.role,
            session: plan.session,
            relay_text: plan.relay_text.clone(),
            dev_dir: plan.dev_dir.clone(),
            members: BTreeMap::new(),
            connected_once: false,
            consent: (CapabilitySet::EMPTY, CapabilitySet::EMPTY),
            receipts: plan.receipts.clone().map(spawn_receipts),
        }
    }

    /// Reports a consent change (or the join) to the broker, for the session report. Receipts
    /// are records: consent is enforced here, by the engine, whatever the broker stores.
    fn receipt(&self, kind: &'static str, capability: &'static str) {
        if let Some(receipts) = &self.receipts {
            let at = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
            let _ = receipts.send(Receipt { kind, capability, at });
        }
    }

    fn session_text(&self) -> String {
        group_digits(&self.session.to_string(), 3)
    }

    /// Provider: the session number and PIN, shown once, to be read to the customer.
    fn introduce(&self, pin: &str) {
        let join = match &self.dev_dir {
            Some(dir) => format!("lifeline join --dev {}", dir.display()),
            None => "lifeline join".to_owned(),
        };
        println!("Lifeline support session created.");
        println!();
        println!("    Session number:  {}", self.session_text());
        println!("    PIN:             {}", group_digits(pin, 4));
        println!();
        println!("Give both to the customer (by phone, say): they run `{join}` and type them in.");
        println!("The PIN stays on this computer and the customer's: no server ever sees it.");
        println!("Type a message and press Enter to chat; /help lists the commands.");
    }

    fn name(&self, member: MemberId) -> String {
        match self.members.get(&member).and_then(|m| m.name.clone()) {
            Some(name) => name,
            None if member == MemberId::LEADER => "the provider".to_owned(),
            None => format!("member {}", member.0),
        }
    }

    fn customers(&self) -> Vec<MemberId> {
        self.members.iter().filter(|(_, m)| m.role == Some(Role::Customer)).map(|(id, _)| *id).collect()
    }

    // ---- events ----------------------------------------------------------------------------

    /// Prints `event`; `Some` when the session is over, with how the program should end.
    fn on_event(&mut self, event: TransportEvent) -> Option<Result<(), Failure>> {
        match event {
            TransportEvent::Connection(state) => return self.on_connection(state),
            TransportEvent::Session(event) => self.on_session_event(event),
            TransportEvent::Data(data) => self.on_data(data),
            _ => {}
        }
        None
    }

    fn on_connection(&mut self, state: ConnectionState) -> Option<Result<(), Failure>> {
        match state {
            ConnectionState::Connecting { relay } if !self.connected_once => {
                println!("Connecting to the relay at {relay}…");
            }
            ConnectionState::Connected { relay, port, resumed, .. } => {
                if resumed {
                    println!("Reconnected to the relay {relay}:{port}; the session goes on.");
                } else {
                    println!("Connected to the relay {relay}:{port} (TLS 1.3).");
                    match self.role {
                        Role::Provider => println!("Waiting for the customer to join…"),
                        _ => println!("Joining session {}…", self.session_text()),
                    }
                }
                self.connected_once = true;
            }
            ConnectionState::Reconnecting { attempt, delay, error } => {
                let wait = format!("{:.1} s", delay.as_secs_f64());
                if self.connected_once && attempt == 1 {
                    println!("Connection to the relay lost ({error}); reconnecting in {wait}.");
                } else if self.connected_once {
                    println!("Still reconnecting ({error}); attempt {attempt} in {wait}.");
                } else {
                    println!("Cannot reach the relay yet ({error}); trying again in {wait}.");
                }
            }
            ConnectionState::Closed { cause } => return Some(self.on_closed(cause)),
            _ => {}
        }
        None
    }

    fn on_closed(&self, cause: CloseCause) -> Result<(), Failure> {
        match cause {
            CloseCause::Session(SessionEnd::Local) => {
                println!("Session ended.");
                Ok(())
            }
            CloseCause::Session(SessionEnd::EndedBy(member)) => {
                println!("Session ended by {}.", self.name(member));
                Ok(())
            }
            CloseCause::Session(end) => Err(session_failure(end)),
            CloseCause::Connection(error) => Err(self.connection_failure(error)),
            _ => Err(Failure::Internal("the session stopped for an unknown reason".into())),
        }
    }

    fn connection_failure(&self, error: ConnectError) -> Failure {
        match error {
            ConnectError::Certificate(detail) => {
                let hint = match &self.dev_dir {
                    Some(dir) => format!(" Is {} the folder the relay's certificates came from?", dir.display()),
                    None => " Check --ca, or that --relay names the right server.".to_owned(),
                };
                Failure::Certificate(format!("the relay's TLS certificate is not trusted ({detail}).{hint}"))
            }
            ConnectError::Refused(reason) => {
                Failure::Refused(format!("the relay refused admission: {}.", refusal_text(reason)))
            }
            error if self.connected_once => Failure::Unreachable(format!("lost the connection to the relay: {error}.")),
            error => {
                let hint = match &self.dev_dir {
                    Some(dir) => format!(" Is it running? Start it with `lifeline-relay dev --dir {}`.", dir.display()),
                    None => String::new(),
                };
                Failure::Unreachable(format!("cannot reach the relay at {}: {error}.{hint}", self.relay_text))
            }
        }
    }

    fn on_session_event(&mut self, event: Event) {
        match event {
            Event::Joined { .. } => {
                println!("Joined session {}: end-to-end encrypted.", self.session_text());
                self.receipt("joined", "");
            }
            Event::MemberJoined { member } => {
                self.members.entry(member).or_insert(Member {
                    name: None,
                    role: None,
                    consent: (CapabilitySet::EMPTY, CapabilitySet::EMPTY),
                });
            }
            Event::MemberAnnounced { member, role, name } => {
                let name = sanitize(&name);
                let entry = self.members.entry(member).or_insert(Member {
                    name: None,
                    role: None,
                    consent: (CapabilitySet::EMPTY, CapabilitySet::EMPTY),
                });
                let first = entry.name.is_none();
                entry.name = Some(name.clone());
                entry.role = Some(role);
                match (first, self.role) {
                    (false, _) => {}
                    (true, Role::Customer) if role == Role::Provider => {
                        println!("Connected to {name} ({}).", role_name(role));
                    }
                    (true, _) => println!("{name} ({}) joined.", role_name(role)),
                }
            }
            Event::MemberLeft { member } => {
                println!("{} left the session.", self.name(member));
                self.members.remove(&member);
            }
            Event::JoinFailed { failures, .. } => {
                println!("Someone tried to join with a wrong PIN (failed attempts: {failures}).");
            }
            Event::PinExpired => {
                println!("Too many wrong PINs: the PIN has expired and nobody else can join this session.");
            }
            Event::ConsentRequested { from, capability } => {
                self.consent.1 = self.consent.1.with(capability);
                let word = capability_word(capability);
                println!(
                    "{} asks to {}: /allow {word} or /deny {word}",
                    self.name(from),
                    capability_request(capability)
                );
            }
            Event::ConsentChanged { granted, pending } => {
                let (old_granted, old_pending) = self.consent;
                self.consent = (granted, pending);
                for capability in Capability::ALL {
                    let word = capability_word(capability);
                    let (was, is) = (old_granted.contains(capability), granted.contains(capability));
                    if !was && is {
                        println!("You allowed: {capability}. /revoke {word} takes it back.");
                        self.receipt("granted", word);
                    } else if was && !is {
                        println!("You took back: {capability}.");
                        self.receipt("revoked", word);
                    } else if old_pending.contains(capability) && !pending.contains(capability) && !is {
                        println!("You declined: {capability}.");
                    }
                }
            }
            Event::PeerConsent { from, granted, pending } => self.on_peer_consent(from, granted, pending),
            Event::DataRefused { from, content, capability } => {
                println!(
                    "Blocked {} from {}: you have not allowed {capability}.",
                    content_name(content),
                    self.name(from)
                );
            }
            // Closed is reported with the connection's final state; rekeys are routine.
            _ => {}
        }
    }

    /// Provider: what changed in a customer's consent.
    fn on_peer_consent(&mut self, from: MemberId, granted: CapabilitySet, pending: CapabilitySet) {
        let name = self.name(from);
        let Some(member) = self.members.get_mut(&from) else { return };
        let (old_granted, old_pending) = member.consent;
        member.consent = (granted, pending);
        for capability in Capability::ALL {
            let (was, is) = (old_granted.contains(capability), granted.contains(capability));
            if !was && is {
                println!("{name} allowed: {capability}.");
            } else if was && !is {
                println!("{name} took back: {capability}.");
            } else if old_pending.contains(capability) && !pending.contains(capability) && !is {
                println!("{name} declined: {capability}.");
            } else if !old_pending.contains(capability) && pending.contains(capability) {
                println!("{name} sees the request for: {capability}.");
            }
        }
        if granted.is_empty() && !old_granted.is_empty() {
            println!("{name} now allows nothing.");
        }
    }

    fn on_data(&self, data: Received) {
        let from = self.name(data.from);
        match data.content {
            ContentType::Chat => println!("{from}: {}", sanitize(&String::from_utf8_lossy(&data.payload))),
            content => println!("[{} from {from}: {} bytes]", content_name(content), data.payload.len()),
        }
    }

    // ---- typed lines -----------------------------------------------------------------------

    async fn on_line(&mut self, handle: &SessionHandle, line: &str) -> Next {
        let line = line.trim();
        if line.is_empty() {
            return Next::Continue;
        }
        let Some(command) = line.strip_prefix('/') else {
            self.chat(handle, line).await;
            return Next::Continue;
        };
        let mut words = command.split_whitespace();
        let verb = words.next().unwrap_or_default().to_ascii_lowercase();
        let argument = words.next();
        match (verb.as_str(), self.role) {
            ("quit" | "end" | "exit", _) => return Next::Quit,
            ("help", _) => self.help(),
            ("who", _) => self.who(),
            ("request", Role::Provider) => self.request(handle, argument).await,
            ("allow" | "deny" | "revoke", Role::Customer) => self.consent(handle, &verb, argument).await,
            _ => println!("Unknown command /{verb}. /help lists the commands."),
        }
        Next::Continue
    }

    async fn chat(&self, handle: &SessionHandle, text: &str) {
        match handle.chat(text).await {
            Ok(()) if self.members.is_empty() => println!("(nobody else is in the session yet)"),
            Ok(()) => {}
            Err(SendError::NotEstablished) => println!("Not joined yet: the message was not sent."),
            Err(SendError::Closed) => {}
            Err(error) => println!("The message was not sent: {error}."),
        }
    }

    async fn request(&self, handle: &SessionHandle, word: Option<&str>) {
        let Some(capability) = word.and_then(parse_capability) else {
            println!("Usage: /request {}", capability_words());
            return;
        };
        let customers = self.customers();
        if customers.is_empty() {
            println!("No customer has joined yet.");
            return;
        }
        for customer in customers {
            match handle.request(customer, capability).await {
                Ok(()) => println!("Asked {} to allow: {capability}.", self.name(customer)),
                Err(error) => println!("Could not ask {}: {error}.", self.name(customer)),
            }
        }
    }

    async fn consent(&self, handle: &SessionHandle, verb: &str, word: Option<&str>) {
        let capability = match word {
            Some(word) => parse_capability(word),
            // A bare /allow or /deny answers the one open prompt, if there is just one.
            None if verb != "revoke" => {
                let mut pending = self.consent.1.iter();
                match (pending.next(), pending.next()) {
                    (Some(only), None) => Some(only),
                    _ => None,
                }
            }
            None => None,
        };
        let Some(capability) = capability else {
            println!("Usage: /{verb} {}", capability_words());
            return;
        };
        let result = match verb {
            "allow" => handle.grant(capability).await,
            "deny" => handle.deny(capability).await,
            _ => handle.revoke(capability).await,
        };
        match result {
            Ok(()) => {}
            Err(ConsentError::NotPending) => println!("Nobody is asking for {capability} right now."),
            Err(ConsentError::NotGranted) => println!("You have not allowed {capability}."),
            Err(ConsentError::Closed) => {}
            Err(error) => println!("{error}."),
        }
    }

    fn help(&self) {
        println!("Type a line and press Enter to send it as chat. Commands:");
        match self.role {
            Role::Provider => {
                println!("  /request {}   ask the customer's permission", capability_words());
                println!("  /who                 who is in the session");
                println!("  /quit                end the session for everyone");
            }
            _ => {
                println!("  /allow WHAT          allow what the provider asked for");
                println!("  /deny WHAT           refuse it");
                println!("  /revoke WHAT         take back something you allowed");
                println!("  /who                 who is in the session, and what you allow");
                println!("  /end                 end the session");
                println!("  WHAT is one of {}", capability_words());
            }
        }
    }

    fn who(&self) {
        if self.members.is_empty() {
            println!("Nobody else is in the session.");
        }
        for (id, member) in &self.members {
            let role = member.role.map_or("joining", role_name);
            let consent = if member.role == Some(Role::Customer) && self.role == Role::Provider {
                format!("; allows {}", capability_list(member.consent.0))
            } else {
                String::new()
            };
            println!("  {} ({role}){consent}", self.name(*id));
        }
        if self.role == Role::Customer {
            println!("You allow {}.", capability_list(self.consent.0));
        }
    }
}

/// One consent receipt, stamped with this computer's clock when the change happened.
struct Receipt {
    kind: &'static str,
    capability: &'static str,
    at: i64,
}

/// The task that posts consent receipts to the broker, one at a time and in order. Best effort:
/// a failure is logged, and receipts still queued when the program exits are lost.
fn spawn_receipts(receipts: crate::setup::Receipts) -> mpsc::UnboundedSender<Receipt> {
    let (sender, mut queue) = mpsc::unbounded_channel::<Receipt>();
    let poster = async move {
        while let Some(Receipt { kind, capability, at }) = queue.recv().await {
            let posted =
                receipts.client.post_receipt(&receipts.ticket, receipts.session, kind, capability, 0, at).await;
            if let Err(error) = posted {
                tracing::warn!(%error, kind, "consent receipt not stored at the broker");
            }
        }
    };
    tokio::spawn(poster);
    sender
}

fn session_failure(end: SessionEnd) -> Failure {
    match end {
        SessionEnd::JoinRejected(RejectReason::BadProof) => Failure::WrongPin,
        SessionEnd::JoinRejected(RejectReason::PinExpired) => Failure::PinExpired,
        SessionEnd::JoinRejected(RejectReason::SessionFull) => Failure::Session("the session is full.".into()),
        SessionEnd::JoinRejected(_) => Failure::Session("the provider's app refused the join.".into()),
        SessionEnd::Removed => Failure::Session("the provider removed you from the session.".into()),
        SessionEnd::LeaderNotAuthentic => Failure::Session(
            "the other side could not prove it knows the PIN: check the session number and PIN.".into(),
        ),
        SessionEnd::HandshakeTimeout => Failure::Session(
            "the join timed out: check the session number, and that the provider's session is still open.".into(),
        ),
        SessionEnd::LeaderLost => Failure::Session("lost contact with the provider.".into()),
        other => Failure::Session(format!("the session ended: {other}.")),
    }
}
