//! The terminal session: prints what happens, turns typed lines (or, in the customer's
//! full-screen UI, keys) into chat, commands and consent answers.
//!
//! Output goes to stdout, one line per thing that happened, or to the log of the full-screen UI
//! ([`crate::tui`]) while it runs; errors that end the program go to stderr (see
//! [`crate::exit`]). Text that came from the other endpoint is sanitized before it is printed.

/// Every line goes through [`crate::tui::say`]: the full-screen UI's log while it runs, else
/// stdout (shadows std's `println!` in this file).
macro_rules! println {
    () => {
        $crate::tui::say(String::new())
    };
    ($($arg:tt)*) => {
        $crate::tui::say(format!($($arg)*))
    };
}

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
use lifeline_web_console as web;
use tokio::sync::mpsc;

use crate::apps::{Apps, Prepared, Show, staged_upload};
use crate::exit::Failure;
use crate::setup::Plan;
use crate::text::{
    capability_list, capability_request, capability_word, capability_words, certificate_problem, content_name,
    group_digits, parse_capability, role_name, sanitize,
};
use crate::tui::{self, Action};

/// Runs the session to its end on a new tokio runtime; the customer's full-screen UI when
/// `full_screen` (else lines in, lines out).
pub(crate) fn run(plan: Plan, full_screen: bool) -> Result<(), Failure> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::Internal(format!("cannot start the async runtime: {e}")))?;
    let mut plan = plan;
    let broker_login = plan.broker_login.take();
    let result = runtime.block_on(session(plan, full_screen));
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

async fn session(mut plan: Plan, full_screen: bool) -> Result<(), Failure> {
    let (apps, mut prepared) = Apps::new(plan.role == Role::Provider, plan.downloads.clone(), plan.share.clone());
    let mut console = Console::new(&plan, apps);
    if let Some(receipts) = plan.receipts.clone() {
        let (sender, task) = spawn_receipts(receipts);
        console.receipts = Some(sender);
        console.receipts_task = Some(task);
    }
    // The provider's web console: loopback only, its URL (with the token) only on this terminal.
    let mut web_commands = None;
    let mut web_console = None;
    if plan.role == Role::Provider && plan.web_console {
        match web::WebConsole::start(web::ConsoleConfig::default()).await {
            Ok((started, commands)) => {
                console.web = Some(started.publisher());
                web_commands = Some(commands);
                web_console = Some(started);
            }
            Err(error) => println!("The web console did not start ({error}); the terminal still works."),
        }
    }
    if let Some(pin) = plan.pin_to_show.take() {
        console.introduce(pin.as_str());
        console.pin = Some(zeroize::Zeroizing::new(pin.as_str().to_owned()));
    }
    if let Some(started) = &web_console {
        println!("Web console (keep this address to yourself: it holds the console's key):");
        println!("    {}", started.url());
    }
    console.publish_session();
    let (mut inputs, ui) = if full_screen {
        let (actions, inputs) = mpsc::channel(16);
        match tui::start(actions) {
            Ok(ui) => (inputs, Some(ui)),
            Err(error) => {
                println!("The full-screen view did not start ({error}); lines it is.");
                (read_lines(), None)
            }
        }
    } else {
        (read_lines(), None)
    };
    console.full_screen = ui.is_some();
    console.sync_status();
    let (handle, mut events) = spawn_session(plan.transport, plan.spec);
    // Screen sharing (crate::screen): the customer shares its display only while it allows it.
    console.screen = Some(match console.role {
        Role::Provider => crate::screen::Screen::provider(
            handle.clone(),
            console.web.clone(),
            web_console.as_ref().and_then(web::WebConsole::take_screen_input),
        ),
        _ => crate::screen::Screen::customer(handle.clone()),
    });
    let mut input_open = true;
    let mut closing = false;
    // Pumped often while file work moves with time alone (retries after a full queue, stall
    // notices), else a few times a second for what other threads change (the status line):
    // an idle session wakes 4 times a second, not 50.
    let mut busy_tick = tokio::time::interval(std::time::Duration::from_millis(20));
    busy_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut idle_tick = tokio::time::interval(std::time::Duration::from_millis(250));
    idle_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let result = loop {
        tokio::select! {
            event = events.next() => match event {
                Some(event) => {
                    if let Some(result) = console.on_event(event) {
                        break result;
                    }
                    console.pump(&handle).await;
                }
                None => break Err(Failure::Internal("the session stopped without saying why".into())),
            },
            Some(done) = prepared.recv() => {
                console.on_prepared(done);
                console.pump(&handle).await;
            }
            _ = busy_tick.tick(), if console.apps.is_busy() => console.pump(&handle).await,
            _ = idle_tick.tick(), if !console.apps.is_busy() => console.pump(&handle).await,
            command = recv_command(&mut web_commands) => match command {
                Some(command) => {
                    if console.on_web_command(&handle, command).await == Next::Quit && !closing {
                        closing = true;
                        handle.close().await;
                    }
                    console.pump(&handle).await;
                }
                None => web_commands = None,
            },
            input = inputs.recv(), if input_open => match input {
                Some(input) => {
                    if console.on_input(&handle, input).await == Next::Quit && !closing {
                        closing = true;
                        handle.close().await;
                    }
                    console.pump(&handle).await;
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
        console.sync_status();
    };
    drop(inputs);
    if let Some(screen) = console.screen.take() {
        screen.finish().await;
    }
    let out = Out { members: &console.members, web: console.web.as_ref() };
    console.apps.finish(&out);
    console.finish_receipts().await;
    if let Some(started) = web_console {
        // Open pages see the end; then the console stops (and its outbox goes).
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        started.shutdown().await;
    }
    if let Some(ui) = ui {
        ui.stop();
    }
    result
}

/// The next command from the web console, or never when there is none.
async fn recv_command(commands: &mut Option<mpsc::Receiver<web::ConsoleCommand>>) -> Option<web::ConsoleCommand> {
    match commands {
        Some(commands) => commands.recv().await,
        None => std::future::pending().await,
    }
}

/// Lines typed on the terminal, read on a thread of their own (terminal reads block).
fn read_lines() -> mpsc::Receiver<Action> {
    let (sender, receiver) = mpsc::channel(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if sender.blocking_send(Action::Line(line)).is_err() {
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
    /// Provider: what the customer answered no to (denied, revoked) and has not been asked
    /// again, so the web console can say so instead of showing nothing.
    refused: (CapabilitySet, CapabilitySet),
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
    /// Customer: capabilities in the order they were asked for (the prompt shows the oldest).
    asked: Vec<Capability>,
    /// Customer with a broker: consent receipts, posted in order by one task.
    receipts: Option<mpsc::UnboundedSender<Receipt>>,
    /// The task posting them (awaited, bounded, when the session ends).
    receipts_task: Option<tokio::task::JoinHandle<()>>,
    /// Application data bytes received (payloads), for the session report.
    received_bytes: u64,
    /// The byte count last reported to the broker.
    reported_bytes: u64,
    /// File transfer and diagnostics.
    apps: Apps,
    /// Provider: the web console's publisher.
    web: Option<web::Publisher>,
    /// Provider: the PIN, for the web console (zeroized when dropped).
    pin: Option<zeroize::Zeroizing<String>>,
    /// This endpoint's name.
    local_name: String,
    /// Check codes by peer.
    check_codes: BTreeMap<MemberId, u32>,
    /// Provider: uploads from the web console staged so far.
    uploads: u32,
    /// Customer: blocked data already reported (sender, content), until consent changes: data in
    /// flight when a grant is taken back is reported once, not per frame.
    blocked_shown: std::collections::BTreeSet<(MemberId, u8)>,
    /// Screen sharing and remote control (`crate::screen`), once the session runs.
    screen: Option<crate::screen::Screen>,
    /// Customer with a broker: the provider as the broker verified the account (sanitized).
    verified_provider: Option<String>,
    /// Customer: the full-screen UI runs (its status line is kept up to date).
    full_screen: bool,
    /// The status line last sent to it.
    shown_status: tui::Status,
}

/// Names and the web console, for [`Apps`] (borrowed apart from the apps themselves).
struct Out<'a> {
    members: &'a BTreeMap<MemberId, Member>,
    web: Option<&'a web::Publisher>,
}

impl Show for Out<'_> {
    fn line(&self, text: &str) {
        println!("{text}");
    }

    fn name_of(&self, member: MemberId) -> String {
        match self.members.get(&member).and_then(|m| m.name.clone()) {
            Some(name) => name,
            None if member == MemberId::LEADER => "the provider".to_owned(),
            None => format!("member {}", member.0),
        }
    }

    fn web(&self) -> Option<&web::Publisher> {
        self.web
    }
}

impl Console {
    fn new(plan: &Plan, apps: Apps) -> Self {
        Console {
            role: plan.role,
            session: plan.session,
            relay_text: plan.relay_text.clone(),
            dev_dir: plan.dev_dir.clone(),
            members: BTreeMap::new(),
            connected_once: false,
            consent: (CapabilitySet::EMPTY, CapabilitySet::EMPTY),
            asked: Vec::new(),
            receipts: None,
            receipts_task: None,
            received_bytes: 0,
            reported_bytes: 0,
            apps,
            web: None,
            pin: None,
            local_name: plan.spec.config.name.as_str().to_owned(),
            check_codes: BTreeMap::new(),
            uploads: 0,
            blocked_shown: std::collections::BTreeSet::new(),
            screen: None,
            verified_provider: plan.verified_provider.as_deref().map(sanitize),
            full_screen: false,
            shown_status: tui::Status::default(),
        }
    }

    /// Reports a consent change (or the join) to the broker, for the session report. Receipts
    /// are records: consent is enforced here, by the engine, whatever the broker stores.
    fn receipt(&self, kind: &'static str, capability: &'static str) {
        self.receipt_with(kind, capability, 0);
    }

    fn receipt_with(&self, kind: &'static str, capability: &'static str, value: i64) {
        if let Some(receipts) = &self.receipts {
            let at = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
            let _ = receipts.send(Receipt { kind, capability, value, at });
        }
    }

    /// Customer with a broker: reports the application bytes this endpoint sent and received
    /// (a running total; the report keeps the largest), each MiB and at the end.
    fn report_bytes(&mut self, force: bool) {
        let total = self.received_bytes + self.apps.sent_bytes();
        if self.receipts.is_some() && total > self.reported_bytes && (force || total - self.reported_bytes >= 1 << 20) {
            self.reported_bytes = total;
            self.receipt_with("bytes", "", i64::try_from(total).unwrap_or(i64::MAX));
        }
    }

    /// Sends the last byte count, then gives the receipts task up to 3 s to post what is queued.
    async fn finish_receipts(&mut self) {
        self.report_bytes(true);
        self.receipts = None;
        if let Some(task) = self.receipts_task.take() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(3), task).await;
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

    fn out(&self) -> Out<'_> {
        Out { members: &self.members, web: self.web.as_ref() }
    }

    fn publish(&self, event: web::ConsoleEvent) {
        if let Some(web) = &self.web {
            web.publish(event);
        }
    }

    fn notice(&self, message: String) {
        self.publish(web::ConsoleEvent::Notice { message, at_ms: now_ms() });
    }

    /// A line for the terminal that the web console's Messages panel shows too.
    fn tell(&self, message: String) {
        println!("{message}");
        self.notice(message);
    }

    /// Provider: the session as the web console shows it.
    fn publish_session(&self) {
        let code = self.check_codes.values().next().map(|code| check_code_text(*code));
        self.publish(web::ConsoleEvent::Session(web::SessionInfo {
            session_number: self.session,
            pin: self.pin.as_ref().map(|pin| pin.to_string()),
            short_auth_string: code,
            provider: Some(self.local_name.clone()),
        }));
    }

    /// Provider: who is in the session and what each customer allows.
    fn publish_members(&self) {
        if self.web.is_none() {
            return;
        }
        let mut members = vec![web::Member {
            id: u32::from(self.apps.local().0),
            name: self.local_name.clone(),
            role: web::Role::Provider,
            organisation: None,
            you: true,
            consent: Vec::new(),
        }];
        for (id, member) in &self.members {
            let role = match member.role {
                Some(Role::Provider) => web::Role::Provider,
                _ => web::Role::Customer,
            };
            let consent = Capability::ALL
                .into_iter()
                .filter_map(|capability| {
                    let state = if member.consent.0.contains(capability) {
                        web::ConsentState::Granted
                    } else if member.consent.1.contains(capability) {
                        web::ConsentState::Pending
                    } else if member.refused.1.contains(capability) {
                        web::ConsentState::Revoked
                    } else if member.refused.0.contains(capability) {
                        web::ConsentState::Denied
                    } else {
                        return None;
                    };
                    Some(web::Consent { capability: web_capability(capability)?, state })
                })
                .collect();
            members.push(web::Member {
                id: u32::from(id.0),
                name: self.name(*id),
                role,
                organisation: None,
                you: false,
                consent,
            });
        }
        self.publish(web::ConsoleEvent::Members { members });
    }

    async fn pump(&mut self, handle: &SessionHandle) {
        let out = Out { members: &self.members, web: self.web.as_ref() };
        self.apps.pump(&out, handle).await;
    }

    fn on_prepared(&mut self, prepared: Prepared) {
        let granted = self.consent.0.contains(Capability::Diagnostics);
        let out = Out { members: &self.members, web: self.web.as_ref() };
        self.apps.on_prepared(&out, prepared, granted);
    }

    /// Something on the status line changed: print it, unless the full-screen view shows it
    /// all the time anyway.
    fn status_changed(&self) {
        if !self.full_screen {
            self.status();
        }
    }

    /// The status line: who is connected, what is granted, the check code.
    fn status(&self) {
        let others: Vec<String> = self
            .members
            .iter()
            .map(|(id, member)| format!("{} ({})", self.name(*id), member.role.map_or("joining", role_name)))
            .collect();
        let who = if others.is_empty() { "nobody yet".to_owned() } else { others.join(", ") };
        let code = match self.check_codes.values().next() {
            Some(code) => format!(" | check code {}", check_code_text(*code)),
            None => String::new(),
        };
        match self.role {
            Role::Provider => {
                // What each customer allows, as its endpoint last announced it.
                let allows: String = self
                    .members
                    .iter()
                    .filter(|(_, member)| member.role == Some(Role::Customer))
                    .map(|(id, member)| format!(" | {} allows: {}", self.name(*id), capability_list(member.consent.0)))
                    .collect();
                println!("[status] connected: {who}{allows}{code}");
            }
            _ => {
                let verified = match &self.verified_provider {
                    Some(provider) => format!(" | verified by the broker: {provider}"),
                    None => String::new(),
                };
                let screen = self.screen.as_ref().map(crate::screen::Screen::status_text).unwrap_or_default();
                println!(
                    "[status] connected: {who} | you allow: {}{code}{verified}{screen}",
                    capability_list(self.consent.0)
                );
            }
        }
    }

    /// Full-screen UI: updates its status line if anything on it changed.
    fn sync_status(&mut self) {
        if !self.full_screen {
            return;
        }
        let status = tui::Status {
            members: self
                .members
                .iter()
                .map(|(id, member)| (self.name(*id), member.role.map_or("joining", role_name).to_owned()))
                .collect(),
            verified: self.verified_provider.clone(),
            check_code: self.check_codes.values().next().map(|code| check_code_text(*code)),
            granted: self.consent.0.iter().map(|c| capability_word(c).to_owned()).collect(),
            pending: in_asked_order(&self.asked, self.consent.1).map(|c| capability_word(c).to_owned()).collect(),
            // The screen's part of the line-mode status (" | screen shared | …"), item by item.
            now: self.screen.as_ref().map_or_else(Vec::new, |screen| {
                screen.status_text().split(" | ").map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
            }),
        };
        if status != self.shown_status {
            self.shown_status = status.clone();
            tui::set_status(status);
        }
    }

    // ---- the web console -------------------------------------------------------------------

    /// Provider: why `capability` cannot be used now (no customer, or not allowed), if so.
    fn not_allowed(&self, capability: Capability) -> Option<String> {
        let customer = self.customers().first().copied()?;
        let granted = self.members.get(&customer).is_some_and(|member| member.consent.0.contains(capability));
        (!granted).then(|| {
            format!(
                "{} has not allowed {capability}: /request {} first.",
                self.name(customer),
                capability_word(capability)
            )
        })
    }

    async fn on_web_command(&mut self, handle: &SessionHandle, command: web::ConsoleCommand) -> Next {
        let customer = self.customers().first().copied();
        let needs = match &command {
            web::ConsoleCommand::SendFile { .. } | web::ConsoleCommand::FetchFile { .. } => {
                Some(Capability::FileTransfer)
            }
            web::ConsoleCommand::QueryDiagnostics { .. } => Some(Capability::Diagnostics),
            _ => None,
        };
        if let Some(message) = needs.and_then(|capability| self.not_allowed(capability)) {
            if let web::ConsoleCommand::SendFile { path, .. } = &command {
                let _ = std::fs::remove_file(path);
            }
            println!("{message}");
            self.publish(web::ConsoleEvent::Error { message, at_ms: now_ms() });
            return Next::Continue;
        }
        match command {
            web::ConsoleCommand::SendChat { text } => {
                self.chat(handle, &text).await;
            }
            web::ConsoleCommand::RequestCapability { capability } => match core_capability(capability) {
                Some(capability) => self.request(handle, Some(capability_word(capability))).await,
                None => self.notice("That capability is not known here.".into()),
            },
            web::ConsoleCommand::SendFile { name, path, size: _ } => {
                let Some(customer) = customer else {
                    let _ = std::fs::remove_file(&path);
                    self.notice("No customer has joined yet.".into());
                    return Next::Continue;
                };
                self.uploads += 1;
                match staged_upload(&path, &name, self.uploads) {
                    Ok(path) => self.apps.send_file(&self.out(), customer, path),
                    Err(error) => self.notice(format!("Cannot prepare {name}: {error}")),
                }
            }
            web::ConsoleCommand::FetchFile { name } => match customer {
                Some(customer) => {
                    let out = Out { members: &self.members, web: self.web.as_ref() };
                    self.apps.fetch(&out, customer, &name);
                }
                None => self.notice("No customer has joined yet.".into()),
            },
            web::ConsoleCommand::AcceptFile { transfer } | web::ConsoleCommand::DeclineFile { transfer } => {
                let accept = matches!(command, web::ConsoleCommand::AcceptFile { .. });
                let out = Out { members: &self.members, web: self.web.as_ref() };
                self.apps.answer(&out, transfer.0, accept);
            }
            web::ConsoleCommand::QueryDiagnostics { sections } => match customer {
                Some(customer) => {
                    let out = Out { members: &self.members, web: self.web.as_ref() };
                    self.apps.query(&out, customer, &sections);
                }
                None => self.notice("No customer has joined yet.".into()),
            },
            web::ConsoleCommand::EndSession => return Next::Quit,
            _ => {}
        }
        Next::Continue
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
            ConnectionState::Connected { relay, port, resumed, member } => {
                self.apps.set_local(member);
                self.publish(web::ConsoleEvent::Connection {
                    state: web::ConnectionState::Connected,
                    detail: Some(format!("{relay}:{port}")),
                });
                if resumed {
                    self.apps.reconnected();
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
                self.publish(web::ConsoleEvent::Connection {
                    state: web::ConnectionState::Reconnecting,
                    detail: Some(error.to_string()),
                });
                let wait = format!("{:.1} s", delay.as_secs_f64());
                if self.connected_once && attempt == 1 {
                    println!("Connection to the relay lost ({error}); reconnecting in {wait}.");
                } else if self.connected_once {
                    println!("Still reconnecting ({error}); attempt {attempt} in {wait}.");
                } else {
                    println!("Cannot reach the relay yet ({error}); trying again in {wait}.");
                }
            }
            ConnectionState::Closed { cause } => {
                let result = self.on_closed(cause);
                let reason = match &result {
                    Ok(()) => "the session ended".to_owned(),
                    Err(failure) => failure.to_string(),
                };
                self.publish(web::ConsoleEvent::Ended { reason });
                return Some(result);
            }
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
                tracing::debug!(%detail, "relay certificate refused");
                let hint = match &self.dev_dir {
                    Some(dir) => format!(" Is {} the folder the relay's certificates came from?", dir.display()),
                    None => " Check --ca (the CA file your provider or administrator uses), or that --relay names \
                             the right server."
                        .to_owned(),
                };
                Failure::Certificate(format!(
                    "the relay's TLS certificate is not trusted: {}.{hint}",
                    certificate_problem(&detail)
                ))
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
                if let Some(provider) = &self.verified_provider {
                    println!(
                        "Provider verified by the broker: {provider} (the account that started this \
                         session; if that is not who you expect, end the session)."
                    );
                }
                self.receipt("joined", "");
            }
            Event::MemberJoined { member } => {
                self.members.entry(member).or_insert(Member {
                    name: None,
                    role: None,
                    consent: (CapabilitySet::EMPTY, CapabilitySet::EMPTY),
                    refused: (CapabilitySet::EMPTY, CapabilitySet::EMPTY),
                });
            }
            Event::MemberAnnounced { member, role, name } => {
                let name = sanitize(&name);
                let entry = self.members.entry(member).or_insert(Member {
                    name: None,
                    role: None,
                    consent: (CapabilitySet::EMPTY, CapabilitySet::EMPTY),
                    refused: (CapabilitySet::EMPTY, CapabilitySet::EMPTY),
                });
                let first = entry.name.is_none();
                entry.name = Some(name.clone());
                entry.role = Some(role);
                match (first, self.role) {
                    (false, _) => {}
                    (true, Role::Customer) if role == Role::Provider => {
                        println!("Connected to {name} ({}).", role_name(role));
                    }
                    (true, _) => self.tell(format!("{name} ({}) joined.", role_name(role))),
                }
                if first {
                    self.publish_members();
                    self.status_changed();
                }
            }
            Event::MemberLeft { member } => {
                self.tell(format!("{} left the session.", self.name(member)));
                self.members.remove(&member);
                self.apps.peer_gone(member);
                if let Some(screen) = &mut self.screen {
                    screen.peer_gone(member);
                }
                self.publish_members();
                self.status_changed();
            }
            Event::JoinFailed { failures, .. } => {
                self.tell(format!("Someone tried to join with a wrong PIN (failed attempts: {failures})."));
            }
            Event::PinExpired => {
                self.tell("Too many wrong PINs: the PIN has expired and nobody else can join this session.".into());
            }
            Event::ConsentRequested { from, capability } => {
                self.consent.1 = self.consent.1.with(capability);
                self.asked.retain(|asked| *asked != capability);
                self.asked.push(capability);
                let word = capability_word(capability);
                // In the full-screen view the keys are the answer (the commands still work).
                let answer = if crate::tui::is_running() {
                    "a = Allow, d = Deny".to_owned()
                } else {
                    format!("/allow {word} or /deny {word}")
                };
                println!("{} asks to {}: {answer}", self.name(from), capability_request(capability));
                if let Some(screen) = &mut self.screen {
                    // An open prompt pauses remote control.
                    screen.on_consent(self.consent.0, self.consent.1);
                }
            }
            Event::ConsentChanged { granted, pending } => {
                self.blocked_shown.clear();
                let (old_granted, old_pending) = self.consent;
                self.consent = (granted, pending);
                self.asked.retain(|asked| pending.contains(*asked));
                if let Some(screen) = &mut self.screen {
                    screen.on_consent(granted, pending);
                }
                for capability in Capability::ALL {
                    let word = capability_word(capability);
                    let (was, is) = (old_granted.contains(capability), granted.contains(capability));
                    if !was && is {
                        println!("You allowed: {capability}. /revoke {word} takes it back.");
                        self.receipt("granted", word);
                    } else if was && !is {
                        println!("You took back: {capability}.");
                        self.receipt("revoked", word);
                        if capability == Capability::FileTransfer {
                            self.apps.revoke_files();
                        }
                        if capability == Capability::Diagnostics {
                            self.apps.revoke_diagnostics();
                        }
                    } else if old_pending.contains(capability) && !pending.contains(capability) && !is {
                        println!("You declined: {capability}.");
                    }
                }
                if granted != old_granted {
                    self.status_changed();
                }
            }
            Event::PeerConsent { from, granted, pending } => {
                self.on_peer_consent(from, granted, pending);
                self.publish_members();
            }
            Event::CheckCode { peer, code } => {
                self.check_codes.insert(peer, code);
                let who = if self.role == Role::Provider { "the customer" } else { "the provider" };
                println!(
                    "Check code: {}. Compare it with {who} by phone: if it differs, end the session at once.",
                    check_code_text(code)
                );
                self.publish_session();
            }
            Event::DataRefused { from, content, capability } => {
                if !self.blocked_shown.insert((from, content.to_byte())) {
                    return;
                }
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
        if let Some(screen) = &mut self.screen {
            screen.on_peer_consent(from, granted, pending);
        }
        let mut told = Vec::new();
        for capability in Capability::ALL {
            let (was, is) = (old_granted.contains(capability), granted.contains(capability));
            let (denied, revoked) = member.refused;
            if is || pending.contains(capability) {
                member.refused = (denied.without(capability), revoked.without(capability));
            }
            if !was && is {
                told.push(format!("{name} allowed: {capability}."));
            } else if was && !is {
                told.push(format!("{name} took back: {capability}."));
                member.refused = (denied.without(capability), revoked.with(capability));
                if capability == Capability::FileTransfer {
                    self.apps.revoke_files();
                }
            } else if old_pending.contains(capability) && !pending.contains(capability) && !is {
                told.push(format!("{name} declined: {capability}."));
                member.refused = (denied.with(capability), revoked.without(capability));
            } else if !old_pending.contains(capability) && pending.contains(capability) {
                told.push(format!("{name} sees the request for: {capability}."));
            }
        }
        if granted.is_empty() && !old_granted.is_empty() {
            told.push(format!("{name} now allows nothing."));
        }
        for line in told {
            self.tell(line);
        }
    }

    fn on_data(&mut self, data: Received) {
        self.received_bytes += data.payload.len() as u64;
        self.report_bytes(false);
        let from = self.name(data.from);
        match data.content {
            ContentType::Chat => {
                let text = sanitize(&String::from_utf8_lossy(&data.payload));
                println!("{from}: {text}");
                self.publish(web::ConsoleEvent::Chat(web::ChatLine {
                    from,
                    member: Some(u32::from(data.from.0)),
                    text,
                    local: false,
                    at_ms: now_ms(),
                }));
            }
            content @ (ContentType::File | ContentType::Diagnostics) => {
                let granted = self.consent.0.contains(Capability::Diagnostics);
                let out = Out { members: &self.members, web: self.web.as_ref() };
                self.apps.on_data(&out, data.from, content, &data.payload, granted);
            }
            content @ (ContentType::Screen | ContentType::Input) if self.screen.is_some() => {
                if let Some(screen) = &mut self.screen {
                    screen.on_data(data.from, content, data.payload);
                }
            }
            content => println!("[{} from {from}: {} bytes]", content_name(content), data.payload.len()),
        }
    }

    // ---- typed lines and keys --------------------------------------------------------------

    /// A line typed, or what a key of the full-screen UI asks for. Only the local user's input
    /// gets here: consent answers never come from the other side.
    async fn on_input(&mut self, handle: &SessionHandle, input: Action) -> Next {
        match input {
            Action::Line(line) => {
                // The full-screen view shows what was typed in its log (a terminal echoes it).
                if self.full_screen && line.trim_start().starts_with('/') {
                    println!("> {}", line.trim());
                }
                return self.on_line(handle, &line).await;
            }
            Action::Allow(word) => self.consent(handle, "allow", Some(&word)).await,
            Action::Deny(word) => self.consent(handle, "deny", Some(&word)).await,
            Action::RevokeAll => self.revoke_all(handle).await,
            Action::End => return Next::Quit,
            Action::None => {}
        }
        Next::Continue
    }

    /// Takes back everything allowed ("take back control").
    async fn revoke_all(&self, handle: &SessionHandle) {
        if self.consent.0.is_empty() {
            println!("You allow nothing: there is nothing to take back.");
            return;
        }
        for capability in self.consent.0.iter() {
            match handle.revoke(capability).await {
                Ok(()) | Err(ConsentError::Closed) => {}
                Err(error) => println!("Could not take back {capability}: {error}."),
            }
        }
    }

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
        // Everything after the verb, for paths with spaces.
        let rest = command.trim_start().get(verb.len()..).unwrap_or_default().trim();
        let peer = match self.role {
            Role::Provider => self.customers().first().copied(),
            _ => Some(MemberId::LEADER),
        };
        let needs = match verb.as_str() {
            "send" | "fetch" => Some(Capability::FileTransfer),
            "diag" | "diagnostics" => Some(Capability::Diagnostics),
            _ => None,
        };
        if let Some(capability) = needs
            && self.role == Role::Provider
            && let Some(message) = self.not_allowed(capability)
        {
            println!("{message}");
            return Next::Continue;
        }
        if verb == "send" && self.role != Role::Provider && !self.consent.0.contains(Capability::FileTransfer) {
            // The engine would refuse it too: nothing of the file leaves this computer.
            println!("Not sent: you have not allowed file transfer (the provider asks for it first).");
            return Next::Continue;
        }
        match (verb.as_str(), self.role) {
            ("quit" | "end" | "exit", _) => return Next::Quit,
            ("help", _) => self.help(),
            ("who", _) => self.who(),
            ("status", _) => self.status(),
            ("send", _) => match (peer, rest.is_empty()) {
                (_, true) => println!("Usage: /send PATH"),
                (None, _) => println!("No customer has joined yet."),
                (Some(peer), false) => self.apps.send_file(&self.out(), peer, PathBuf::from(rest)),
            },
            ("fetch", Role::Provider) => match (peer, argument) {
                (Some(peer), Some(_)) => {
                    let out = Out { members: &self.members, web: self.web.as_ref() };
                    self.apps.fetch(&out, peer, rest);
                }
                (None, _) => println!("No customer has joined yet."),
                (_, None) => println!("Usage: /fetch NAME (a file in the customer's shared folder)"),
            },
            ("accept" | "decline", _) => {
                let number = match argument.map(str::parse::<u32>) {
                    Some(Ok(number)) => Some(number),
                    Some(Err(_)) => None,
                    None => match self.apps.open_offers().as_slice() {
                        [only] => Some(*only),
                        _ => None,
                    },
                };
                match number {
                    Some(number) => {
                        let out = Out { members: &self.members, web: self.web.as_ref() };
                        self.apps.answer(&out, number, verb == "accept");
                    }
                    None => println!("Usage: /{verb} N (the number of the offer)"),
                }
            }
            ("diag" | "diagnostics", Role::Provider) => match peer {
                Some(peer) => {
                    let names: Vec<String> = rest.split_whitespace().map(str::to_owned).collect();
                    let out = Out { members: &self.members, web: self.web.as_ref() };
                    self.apps.query(&out, peer, &names);
                }
                None => println!("No customer has joined yet."),
            },
            ("sent", Role::Customer) => self.apps.show_sent(&self.out()),
            ("request", Role::Provider) => self.request(handle, argument).await,
            ("allow" | "deny" | "revoke", Role::Customer) => self.consent(handle, &verb, argument).await,
            _ => println!("Unknown command /{verb}. /help lists the commands."),
        }
        Next::Continue
    }

    async fn chat(&self, handle: &SessionHandle, text: &str) {
        let result = handle.chat(text).await;
        if result.is_ok() && self.full_screen {
            println!("{} (you): {text}", self.local_name);
        }
        match result {
            Ok(()) if self.members.is_empty() => println!("(nobody else is in the session yet)"),
            Ok(()) => self.publish(web::ConsoleEvent::Chat(web::ChatLine {
                from: self.local_name.clone(),
                member: Some(u32::from(self.apps.local().0)),
                text: text.to_owned(),
                local: true,
                at_ms: now_ms(),
            })),
            Err(SendError::PayloadTooLarge) => {
                println!("The message was not sent: it is too long (at most about 1000 bytes).");
                self.notice("The message was not sent: it is too long.".into());
            }
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
        if verb == "revoke" && word == Some("all") {
            self.revoke_all(handle).await;
            return;
        }
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
                println!("  /send PATH           offer a file to the customer (after they allow files)");
                println!("  /fetch NAME          ask for a file from the customer's shared folder");
                println!("  /accept N, /decline N  answer a file the customer offers");
                println!("  /diag [SECTION…]     ask for diagnostics (after they allow diagnostics)");
                println!("  /who, /status        who is in the session");
                println!("  /quit                end the session for everyone");
            }
            _ => {
                println!("  /allow WHAT          allow what the provider asked for");
                println!("  /deny WHAT           refuse it");
                println!("  /revoke WHAT         take back something you allowed (/revoke all: everything)");
                println!("  /accept N, /decline N  answer a file the provider offers");
                println!("  /send PATH           offer a file to the provider (after you allow files)");
                println!("  /sent                show exactly what diagnostics were sent");
                println!("  /who, /status        who is in the session, and what you allow");
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
    value: i64,
    at: i64,
}

/// The task that posts consent receipts to the broker, one at a time and in order. Best effort:
/// a failure is logged, and receipts still queued when the program exits are lost.
fn spawn_receipts(receipts: crate::setup::Receipts) -> (mpsc::UnboundedSender<Receipt>, tokio::task::JoinHandle<()>) {
    let (sender, mut queue) = mpsc::unbounded_channel::<Receipt>();
    let poster = async move {
        while let Some(Receipt { kind, capability, value, at }) = queue.recv().await {
            let posted =
                receipts.client.post_receipt(&receipts.ticket, receipts.session, kind, capability, value, at).await;
            if let Err(error) = posted {
                tracing::warn!(%error, kind, "consent receipt not stored at the broker");
            }
        }
    };
    (sender, tokio::spawn(poster))
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

/// Milliseconds since the Unix epoch, for the web console.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0))
}

/// Six digits as "123 456".
pub(crate) fn check_code_text(code: u32) -> String {
    let digits = format!("{:06}", code % 1_000_000);
    group_digits(&digits, 3)
}

fn web_capability(capability: Capability) -> Option<web::Capability> {
    Some(match capability {
        Capability::ViewScreen => web::Capability::ViewScreen,
        Capability::RemoteControl => web::Capability::RemoteControl,
        Capability::FileTransfer => web::Capability::FileTransfer,
        Capability::Diagnostics => web::Capability::Diagnostics,
        Capability::Unattended => web::Capability::Unattended,
        Capability::RemoteConsole => web::Capability::RemoteConsole,
        _ => return None,
    })
}

fn core_capability(capability: web::Capability) -> Option<Capability> {
    Capability::ALL.into_iter().find(|c| web_capability(*c) == Some(capability))
}

/// The capabilities of `pending` in the order they were asked for; any not in `asked` after
/// them, in capability order.
fn in_asked_order(asked: &[Capability], pending: CapabilitySet) -> impl Iterator<Item = Capability> + '_ {
    let first = asked.iter().copied().filter(move |c| pending.contains(*c));
    let rest = pending.iter().filter(move |c| !asked.contains(c));
    first.chain(rest)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn the_prompt_shows_the_oldest_request_first() {
        // Asked for diagnostics, then files: in that order, whatever the capability order.
        let asked = [Capability::Diagnostics, Capability::FileTransfer];
        let pending = CapabilitySet::EMPTY.with(Capability::FileTransfer).with(Capability::Diagnostics);
        let order: Vec<Capability> = in_asked_order(&asked, pending).collect();
        assert_eq!(order, [Capability::Diagnostics, Capability::FileTransfer]);
        // An answered one is gone; one pending but never seen asked comes last.
        let pending = CapabilitySet::EMPTY.with(Capability::FileTransfer).with(Capability::ViewScreen);
        let order: Vec<Capability> = in_asked_order(&asked, pending).collect();
        assert_eq!(order, [Capability::FileTransfer, Capability::ViewScreen]);
    }

    #[test]
    fn check_codes_show_six_digits_in_two_groups() {
        assert_eq!(check_code_text(702_661), "702 661");
        assert_eq!(check_code_text(42), "000 042");
    }

    #[test]
    fn capabilities_map_to_the_console_and_back() {
        for capability in Capability::ALL {
            let web = web_capability(capability).unwrap();
            assert_eq!(core_capability(web), Some(capability));
        }
    }
}
