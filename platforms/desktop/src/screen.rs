//! Screen sharing and remote control in the session, for both commands (`lifeline-screen`).
//!
//! **Customer** (`lifeline join`): a worker thread owns the X11 connections (capture, XTest, the
//! local-input watcher). It captures nothing until the customer grants "view screen" and drops
//! the capturer when the grant goes (revoke, end): [`Screen::on_consent`] starts and stops it.
//! Frames go out as `Screen` data through the session, whose engine refuses `Screen` data the
//! customer has not granted (a second check). Input from the provider arrives as `Input` data
//! (the engine delivers it only while remote control is granted and no prompt is open) and is
//! injected with XTest only while this module's own copy of that rule holds too; the local user's
//! own input wins: any key, click or motion from a real device pauses injection for
//! [`LOCAL_INPUT_PAUSE`] and releases what the provider held. A hotkey on the customer's display
//! ([`HOTKEY_TEXT`]) or `/revoke control` takes control back at once; a red bar at the top of the
//! customer's display (and a banner in its terminal) shows while the provider has control.
//!
//! **Provider** (`lifeline support`): `Screen` payloads are decoded here ([`Viewer`]) and the
//! changed pixels published to the web console (`/api/screen`); the page's mouse and keyboard
//! (`/api/input`) are sent to the customer only while the customer's announced consent says the
//! provider has control.

/// Lines go through [`crate::tui::say`], as in `console.rs` (the full-screen UI's log, or stdout).
macro_rules! println {
    ($($arg:tt)*) => {
        $crate::tui::say(format!($($arg)*))
    };
}

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU16, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, mpsc as std_mpsc};
use std::time::Duration;

use lifeline_core::consent::{Capability, CapabilitySet};
use lifeline_core::session::SendError;
use lifeline_core::time::Instant;
use lifeline_core::wire::control::ContentType;
use lifeline_core::wire::{Destination, MemberId};
use lifeline_screen::backend::Injector as _;
use lifeline_screen::codec::{EncoderConfig, Limits};
use lifeline_screen::input::{InputEvent, MouseButton};
use lifeline_screen::message::ScreenMessage;
use lifeline_screen::rate::RateConfig;
use lifeline_screen::session::{Sharer, Viewer, ViewerEvent};
use lifeline_screen::x11::{Hotkey, Indicator, LocalInputWatcher, X11Capturer, X11Injector};
use lifeline_transport_tokio::SessionHandle;
use lifeline_web_console as web;
use tokio::sync::mpsc;

/// How long the local user's own input pauses remote injection.
pub(crate) const LOCAL_INPUT_PAUSE: Duration = Duration::from_millis(1500);
/// The customer's "take control back" key, on its own display.
pub(crate) const HOTKEY_TEXT: &str = "Ctrl+Alt+Pause";

/// What the customer's status line needs (cheap to clone, read from any thread).
#[derive(Clone, Debug, Default)]
pub(crate) struct ScreenFlags {
    viewing: Arc<AtomicBool>,
    control: Arc<AtomicBool>,
    /// The monitor shared: `(index << 16) | count`, 0 before the first capture.
    monitor: Arc<AtomicU32>,
}

impl ScreenFlags {
    /// The provider sees this screen (frames are being sent).
    pub(crate) fn viewing(&self) -> bool {
        self.viewing.load(Ordering::Relaxed)
    }

    /// The provider has control of the mouse and keyboard.
    pub(crate) fn provider_has_control(&self) -> bool {
        self.control.load(Ordering::Relaxed)
    }

    /// Which monitor is shared, of how many: `(index, count)`.
    pub(crate) fn monitor(&self) -> Option<(usize, usize)> {
        let packed = self.monitor.load(Ordering::Relaxed);
        (packed != 0).then_some(((packed >> 16) as usize, (packed & 0xFFFF) as usize))
    }

    fn set_monitor(&self, index: usize, count: usize) {
        let packed = (index.min(0xFFFF) as u32) << 16 | count.min(0xFFFF) as u32;
        self.monitor.store(packed, Ordering::Relaxed);
    }
}

/// What goes out through the session, from the worker or the provider's input.
enum Out {
    /// `content` to `to`; `generation` (customer screen frames) must still be current.
    Data { to: MemberId, content: ContentType, payload: Vec<u8>, generation: Option<u64> },
    /// A line for the local user.
    Notice(String),
    /// The hotkey was pressed: revoke remote control.
    TakeBack,
}

/// Messages to the customer's worker thread.
enum ToWorker {
    /// Start (with this generation) or stop capturing.
    View(Option<u64>),
    /// Remote control allowed or not (release everything held when not).
    Control(bool),
    /// A `Screen` payload from the provider (Ack, Refresh).
    Screen(Vec<u8>),
    /// An `Input` payload from the provider.
    Input(Vec<u8>),
    Quit,
}

/// Screen sharing for one endpoint.
pub(crate) struct Screen {
    role: Role,
    out: mpsc::UnboundedSender<Out>,
    sender: tokio::task::JoinHandle<()>,
    flags: ScreenFlags,
}

enum Role {
    Customer(Customer),
    Provider(Provider),
}

struct Customer {
    to_worker: std_mpsc::Sender<ToWorker>,
    worker: Option<std::thread::JoinHandle<()>>,
    generation: Arc<AtomicU64>,
    /// Injection allowed right now (granted, no prompt); checked by the worker for every event.
    allowed: Arc<AtomicBool>,
    view: bool,
    control: bool,
}

struct Provider {
    viewer: Viewer,
    web: Option<web::Publisher>,
    /// The customer whose screen is shown.
    customer: Option<MemberId>,
    status: web::ScreenStatus,
    shared: Arc<ProviderShared>,
    input_task: Option<tokio::task::JoinHandle<()>>,
    clock: std::time::Instant,
    /// The monitor index last published to the page with the layout (`None`: none yet).
    published: Option<u8>,
}

/// What the provider's input task reads.
struct ProviderShared {
    /// The customer lets the provider control (granted, no prompt).
    control: AtomicBool,
    /// The customer (member id), 0 for none.
    customer: AtomicU8,
    /// Desktop offset of the shown monitor, `x << 16 | y` as `i16`s.
    offset: AtomicU32,
    /// The customer lets the provider view the screen.
    view: AtomicBool,
    /// The monitor the page asked for ([`NO_MONITOR`]: none).
    wanted: AtomicU16,
}

/// `ProviderShared::wanted` when the page has not chosen a monitor.
const NO_MONITOR: u16 = u16::MAX;

impl Screen {
    /// The customer's side: a worker thread on `$DISPLAY` (connected only when sharing starts).
    pub(crate) fn customer(handle: SessionHandle) -> Screen {
        let (out, outgoing) = mpsc::unbounded_channel();
        let generation = Arc::new(AtomicU64::new(0));
        let allowed = Arc::new(AtomicBool::new(false));
        let flags = ScreenFlags::default();
        let (to_worker, inbox) = std_mpsc::channel();
        let worker = {
            let (out, generation, allowed, flags) = (out.clone(), generation.clone(), allowed.clone(), flags.clone());
            std::thread::Builder::new()
                .name("screen".into())
                .spawn(move || worker(&inbox, &out, &generation, &allowed, &flags))
                .ok()
        };
        let sender = tokio::spawn(send_out(handle, outgoing, Some(generation.clone())));
        Screen {
            role: Role::Customer(Customer { to_worker, worker, generation, allowed, view: false, control: false }),
            out,
            sender,
            flags,
        }
    }

    /// The provider's side: frames to `web` (if the console runs), input from `input`.
    pub(crate) fn provider(
        handle: SessionHandle,
        web: Option<web::Publisher>,
        input: Option<mpsc::Receiver<Vec<web::ScreenInput>>>,
    ) -> Screen {
        let (out, outgoing) = mpsc::unbounded_channel();
        let shared = Arc::new(ProviderShared {
            control: AtomicBool::new(false),
            customer: AtomicU8::new(0),
            offset: AtomicU32::new(0),
            view: AtomicBool::new(false),
            wanted: AtomicU16::new(NO_MONITOR),
        });
        let input_task = input.map(|input| tokio::spawn(forward_input(input, shared.clone(), out.clone())));
        let sender = tokio::spawn(send_out(handle, outgoing, None));
        Screen {
            role: Role::Provider(Provider {
                viewer: Viewer::new(Limits::default()),
                web,
                customer: None,
                status: web::ScreenStatus::default(),
                shared,
                input_task,
                clock: std::time::Instant::now(),
                published: None,
            }),
            out,
            sender,
            flags: ScreenFlags::default(),
        }
    }

    /// For the customer's status line: `""`, `" | screen shared"` or
    /// `" | screen shared | THE PROVIDER HAS CONTROL"` (the full-screen UI can show
    /// [`ScreenFlags`] instead).
    pub(crate) fn status_text(&self) -> String {
        let mut text = String::new();
        if self.flags.viewing() {
            text.push_str(" | screen shared");
            // Which one, when there is a choice (the provider picks).
            if let Some((index, count)) = self.flags.monitor().filter(|&(_, count)| count > 1) {
                text.push_str(&format!(" (monitor {} of {count})", index + 1));
            }
        }
        if self.flags.provider_has_control() {
            text.push_str(" | THE PROVIDER HAS CONTROL");
        }
        text
    }

    /// Customer: its consent changed. Starts or stops capture and injection accordingly.
    pub(crate) fn on_consent(&mut self, granted: CapabilitySet, pending: CapabilitySet) {
        let Role::Customer(customer) = &mut self.role else { return };
        let view = granted.contains(Capability::ViewScreen);
        let control = granted.contains(Capability::RemoteControl) && pending.is_empty();
        // First the flag the worker checks before every injection: a revoke stops it at once.
        customer.allowed.store(control, Ordering::SeqCst);
        if control != customer.control {
            customer.control = control;
            self.flags.control.store(control, Ordering::Relaxed);
            let _ = customer.to_worker.send(ToWorker::Control(control));
            if control {
                println!(
                    "*** The provider now controls your mouse and keyboard. Your own input always wins; \
                     {HOTKEY_TEXT} on your screen or /revoke control takes it back. ***"
                );
            } else if granted.contains(Capability::RemoteControl) {
                println!("Remote control is paused while you answer the request.");
            } else {
                println!("You have control again: the provider's input is no longer accepted.");
            }
        }
        if view != customer.view {
            customer.view = view;
            // Frames of the old generation still queued are dropped, not sent.
            let generation = customer.generation.fetch_add(1, Ordering::SeqCst) + 1;
            let _ = customer.to_worker.send(ToWorker::View(view.then_some(generation)));
            if !view {
                self.flags.viewing.store(false, Ordering::Relaxed);
                println!("Screen sharing stopped: nothing more of your screen is sent.");
            }
        }
    }

    /// Provider: a customer's consent as it announced it.
    pub(crate) fn on_peer_consent(&mut self, from: MemberId, granted: CapabilitySet, pending: CapabilitySet) {
        let Role::Provider(provider) = &mut self.role else { return };
        if provider.customer.is_some_and(|c| c != from) {
            return;
        }
        provider.customer = Some(from);
        provider.shared.customer.store(from.0, Ordering::SeqCst);
        let view = granted.contains(Capability::ViewScreen);
        let control = granted.contains(Capability::RemoteControl) && pending.is_empty();
        provider.shared.control.store(control, Ordering::SeqCst);
        provider.shared.view.store(view, Ordering::SeqCst);
        if !view && provider.status.view {
            // A new grant starts again on the customer's first monitor.
            provider.viewer = Viewer::new(Limits::default());
            provider.shared.wanted.store(NO_MONITOR, Ordering::SeqCst);
            provider.published = None;
            if let Some(web) = &provider.web {
                web.screen_clear();
            }
        }
        provider.status = web::ScreenStatus { view, control, pending: !pending.is_empty() };
        if let Some(web) = &provider.web {
            web.screen_status(provider.status);
        }
    }

    /// A member left: the provider clears its view of that customer.
    pub(crate) fn peer_gone(&mut self, member: MemberId) {
        if let Role::Provider(provider) = &mut self.role
            && provider.customer == Some(member)
        {
            self.on_peer_consent(member, CapabilitySet::EMPTY, CapabilitySet::EMPTY);
            if let Role::Provider(provider) = &mut self.role {
                provider.customer = None;
                provider.shared.customer.store(0, Ordering::SeqCst);
            }
        }
    }

    /// `Screen` or `Input` data from `from` (the engine already checked consent).
    pub(crate) fn on_data(&mut self, from: MemberId, content: ContentType, payload: Vec<u8>) {
        match &mut self.role {
            Role::Customer(customer) => {
                let message = match content {
                    ContentType::Screen => ToWorker::Screen(payload),
                    ContentType::Input if customer.allowed.load(Ordering::SeqCst) => ToWorker::Input(payload),
                    _ => return,
                };
                let _ = customer.to_worker.send(message);
            }
            Role::Provider(provider) if content == ContentType::Screen => {
                if provider.customer != Some(from) || !provider.status.view {
                    return;
                }
                let now = Instant::from_micros(provider.clock.elapsed().as_micros() as u64);
                // The page chose a monitor (the input task already sent the request): from now
                // on the viewer drops what is still in flight from the previous one.
                let wanted = provider.shared.wanted.load(Ordering::SeqCst);
                if let Ok(wanted) = u8::try_from(wanted)
                    && provider.viewer.wanted_monitor() != Some(wanted)
                {
                    let _ = provider.viewer.select_monitor(now, wanted);
                }
                let mut replies = Vec::new();
                let event = provider.viewer.handle_payload(now, &payload, &mut replies);
                for reply in replies {
                    let _ = self.out.send(Out::Data {
                        to: from,
                        content: ContentType::Screen,
                        payload: reply,
                        generation: None,
                    });
                }
                if matches!(event, Ok(ViewerEvent::Layout))
                    || (matches!(event, Ok(ViewerEvent::Frame { .. }))
                        && provider.published != Some(provider.viewer.monitor()))
                {
                    provider.publish_layout();
                }
                let Some(web) = &provider.web else { return };
                match event {
                    Ok(ViewerEvent::Frame { damage, .. }) => {
                        let frame = provider.viewer.frame();
                        let damage =
                            damage.map(|r| web::ScreenRect { x: r.x, y: r.y, width: r.width, height: r.height });
                        if damage.is_some() {
                            web.screen_frame(frame.width(), frame.height(), frame.as_bytes(), damage);
                        }
                    }
                    Ok(ViewerEvent::Cursor) => {
                        let cursor = provider.viewer.cursor();
                        let offset = provider.shared.offset.load(Ordering::SeqCst);
                        let (ox, oy) = ((offset >> 16) as u16 as i16, offset as u16 as i16);
                        web.screen_cursor(cursor.x.saturating_sub(ox), cursor.y.saturating_sub(oy), cursor.visible);
                    }
                    Ok(_) => {}
                    Err(error) => tracing::debug!(%error, "screen payload not applied"),
                }
            }
            Role::Provider(_) => {}
        }
    }

    /// Stops everything: the customer's worker releases what it held and closes its connections.
    pub(crate) async fn finish(mut self) {
        match &mut self.role {
            Role::Customer(customer) => {
                customer.allowed.store(false, Ordering::SeqCst);
                customer.generation.fetch_add(1, Ordering::SeqCst);
                let _ = customer.to_worker.send(ToWorker::Quit);
                if let Some(worker) = customer.worker.take() {
                    let _ = tokio::task::spawn_blocking(move || worker.join()).await;
                }
            }
            Role::Provider(provider) => {
                if let Some(task) = provider.input_task.take() {
                    task.abort();
                }
                if let Some(web) = &provider.web {
                    web.screen_status(web::ScreenStatus::default());
                }
            }
        }
        self.sender.abort();
    }
}

impl Provider {
    /// The shown monitor changed or the layout arrived: input maps to the shown monitor's
    /// place on the customer's desktop, and the page lists the monitors.
    fn publish_layout(&mut self) {
        let index = self.viewer.monitor();
        let Some(monitor) = self.viewer.monitors().get(usize::from(index)) else { return };
        let packed = (u32::from(monitor.x as u16) << 16) | u32::from(monitor.y as u16);
        self.shared.offset.store(packed, Ordering::SeqCst);
        self.published = Some(index);
        if let Some(web) = &self.web {
            let monitors: Vec<_> = self
                .viewer
                .monitors()
                .iter()
                .map(|m| web::ScreenMonitor { width: m.width, height: m.height, primary: m.primary })
                .collect();
            web.screen_layout(&monitors, index);
        }
    }
}

/// Sends what the worker and the input task produce, in order. A full queue is retried shortly
/// (frames are paced by the rate controller, so it drains); anything the engine refuses
/// (consent, closed) is dropped.
async fn send_out(
    handle: SessionHandle,
    mut outgoing: mpsc::UnboundedReceiver<Out>,
    generation: Option<Arc<AtomicU64>>,
) {
    while let Some(out) = outgoing.recv().await {
        match out {
            Out::Data { to, content, payload, generation: frame_generation } => {
                let current = || match (&generation, frame_generation) {
                    (Some(now), Some(frame)) => now.load(Ordering::SeqCst) == frame,
                    _ => true,
                };
                for _ in 0..200 {
                    if !current() {
                        break;
                    }
                    match handle.send(Destination::Member(to), content, payload.clone()).await {
                        Err(SendError::QueueFull) => tokio::time::sleep(Duration::from_millis(5)).await,
                        _ => break,
                    }
                }
            }
            Out::Notice(text) => println!("{text}"),
            Out::TakeBack => match handle.revoke(Capability::RemoteControl).await {
                Ok(()) => println!("{HOTKEY_TEXT}: you took control back."),
                Err(error) => tracing::debug!(%error, "hotkey: remote control not revoked"),
            },
        }
    }
}

/// Provider: the page's input, sent to the customer while it lets the provider control.
async fn forward_input(
    mut input: mpsc::Receiver<Vec<web::ScreenInput>>,
    shared: Arc<ProviderShared>,
    out: mpsc::UnboundedSender<Out>,
) {
    while let Some(mut events) = input.recv().await {
        let customer = shared.customer.load(Ordering::SeqCst);
        if customer == 0 {
            continue;
        }
        // A monitor choice needs only view: `Refresh { monitor }` asks the customer's app for
        // all of that monitor, which switches its capture to it.
        for event in &events {
            if let web::ScreenInput::Monitor { index } = *event
                && shared.view.load(Ordering::SeqCst)
            {
                shared.wanted.store(u16::from(index), Ordering::SeqCst);
                let mut payload = vec![0u8; 8];
                if let Some(len) = (ScreenMessage::Refresh { monitor: index }).emit(&mut payload) {
                    payload.truncate(len);
                    let _ = out.send(Out::Data {
                        to: MemberId(customer),
                        content: ContentType::Screen,
                        payload,
                        generation: None,
                    });
                }
            }
        }
        events.retain(|event| !matches!(event, web::ScreenInput::Monitor { .. }));
        if !shared.control.load(Ordering::SeqCst) || events.is_empty() {
            continue;
        }
        let offset = shared.offset.load(Ordering::SeqCst);
        let (ox, oy) = ((offset >> 16) as u16 as i16, offset as u16 as i16);
        let at = |x: u16, y: u16| {
            (
                u16::try_from(i32::from(x) + i32::from(ox)).unwrap_or(0),
                u16::try_from(i32::from(y) + i32::from(oy)).unwrap_or(0),
            )
        };
        for event in events {
            let Some(event) = input_event(event, at) else { continue };
            let Some((bytes, len)) = event.to_bytes() else { continue };
            let payload = bytes[..len].to_vec();
            let _ =
                out.send(Out::Data { to: MemberId(customer), content: ContentType::Input, payload, generation: None });
        }
    }
}

fn input_event(event: web::ScreenInput, at: impl Fn(u16, u16) -> (u16, u16)) -> Option<InputEvent> {
    Some(match event {
        web::ScreenInput::Move { x, y } => {
            let (x, y) = at(x, y);
            InputEvent::Move { x, y }
        }
        web::ScreenInput::Button { button, pressed, x, y } => {
            let (x, y) = at(x, y);
            InputEvent::Button { button: MouseButton::from_byte(button)?, pressed, x, y }
        }
        web::ScreenInput::Wheel { dx, dy } => InputEvent::Wheel { dx: dx.clamp(-20, 20), dy: dy.clamp(-20, 20) },
        web::ScreenInput::Key { keysym, pressed } => InputEvent::Key { pressed, keysym, code: 0 },
        web::ScreenInput::ReleaseAll => InputEvent::ReleaseAll,
        _ => return None,
    })
}

// ---- the customer's worker thread ----

struct Worker<'a> {
    out: &'a mpsc::UnboundedSender<Out>,
    allowed: &'a AtomicBool,
    flags: &'a ScreenFlags,
    clock: std::time::Instant,
    sharer: Option<(u64, Sharer<X11Capturer>)>,
    injector: Option<X11Injector>,
    watcher: Option<LocalInputWatcher>,
    hotkey: Option<Hotkey>,
    /// The red bar on the customer's display while the provider has control.
    indicator: Option<Indicator>,
    control: bool,
    /// Local input seen: injection paused for a moment.
    local_input: LocalInputGate,
    failed_view: bool,
    failed_control: bool,
}

fn worker(
    inbox: &std_mpsc::Receiver<ToWorker>,
    out: &mpsc::UnboundedSender<Out>,
    generation: &AtomicU64,
    allowed: &AtomicBool,
    flags: &ScreenFlags,
) {
    let mut w = Worker {
        out,
        allowed,
        flags,
        clock: std::time::Instant::now(),
        sharer: None,
        injector: None,
        watcher: None,
        hotkey: None,
        indicator: None,
        control: false,
        local_input: LocalInputGate::default(),
        failed_view: false,
        failed_control: false,
    };
    let mut payloads = Vec::new();
    loop {
        let now = w.now();
        let mut wait = Duration::from_millis(if w.control { 20 } else { 200 });
        if let Some((_, sharer)) = &w.sharer {
            let due = sharer.poll_timeout().saturating_duration_since(now).as_micros();
            wait = wait.min(Duration::from_micros(due));
        }
        let first = match inbox.recv_timeout(wait) {
            Ok(message) => Some(message),
            Err(std_mpsc::RecvTimeoutError::Timeout) => None,
            Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let mut quit = false;
        for message in first.into_iter().chain(std::iter::from_fn(|| inbox.try_recv().ok())) {
            if matches!(message, ToWorker::Quit) {
                quit = true;
                break;
            }
            w.handle(message);
        }
        if quit {
            break;
        }
        w.watch_local_input();
        if let Some((number, sharer)) = &mut w.sharer {
            let number = *number;
            if generation.load(Ordering::SeqCst) != number {
                continue;
            }
            let now = Instant::from_micros(w.clock.elapsed().as_micros() as u64);
            match sharer.poll_transmit(now, &mut payloads) {
                Ok(()) => {
                    for payload in payloads.drain(..) {
                        let _ = w.out.send(Out::Data {
                            to: MemberId::LEADER,
                            content: ContentType::Screen,
                            payload,
                            generation: Some(number),
                        });
                    }
                    w.flags.viewing.store(true, Ordering::Relaxed);
                }
                Err(error) => {
                    payloads.clear();
                    w.sharer = None;
                    w.flags.viewing.store(false, Ordering::Relaxed);
                    let _ = w.out.send(Out::Notice(format!("Screen sharing stopped: {error}.")));
                }
            }
        }
    }
    w.sharer = None;
    w.indicator = None;
    w.flags.viewing.store(false, Ordering::Relaxed);
    if let Some(injector) = &mut w.injector {
        let _ = injector.release_all();
    }
}

impl Worker<'_> {
    fn now(&self) -> Instant {
        Instant::from_micros(self.clock.elapsed().as_micros() as u64)
    }

    fn handle(&mut self, message: ToWorker) {
        match message {
            ToWorker::View(Some(generation)) => {
                self.sharer = None;
                let now = self.now();
                let started = X11Capturer::connect(None)
                    .and_then(|capturer| Sharer::new(capturer, EncoderConfig::default(), RateConfig::default(), now));
                match started {
                    Ok(sharer) => {
                        self.failed_view = false;
                        self.flags.set_monitor(sharer.monitor(), sharer.monitors().len());
                        self.sharer = Some((generation, sharer));
                        let _ = self.out.send(Out::Notice("Your screen is being shared with the provider.".into()));
                    }
                    Err(error) if !self.failed_view => {
                        self.failed_view = true;
                        let _ = self.out.send(Out::Notice(format!("Cannot share this screen: {error}.")));
                    }
                    Err(_) => {}
                }
            }
            ToWorker::View(None) => {
                self.sharer = None;
                self.flags.viewing.store(false, Ordering::Relaxed);
            }
            ToWorker::Control(control) => {
                self.control = control;
                if control {
                    self.start_control();
                } else {
                    self.indicator = None;
                    if let Some(injector) = &mut self.injector {
                        let _ = injector.release_all();
                    }
                }
            }
            ToWorker::Screen(payload) => {
                let now = self.now();
                // Only while view is granted (no sharer otherwise).
                let Some((_, sharer)) = &mut self.sharer else { return };
                let before = sharer.monitor();
                if sharer.handle_message(now, &payload) {
                    let index = sharer.monitor();
                    self.flags.set_monitor(index, sharer.monitors().len());
                    if index != before
                        && let Some(monitor) = sharer.monitors().get(index)
                    {
                        let notice = format!(
                            "The provider now sees monitor {} of {} ({} × {}).",
                            index + 1,
                            sharer.monitors().len(),
                            monitor.width,
                            monitor.height
                        );
                        let _ = self.out.send(Out::Notice(notice));
                    }
                } else if let Some(ScreenMessage::Refresh { monitor }) = ScreenMessage::parse(&payload) {
                    let notice = format!(
                        "The provider asked for monitor {} but this screen has {}: ignored.",
                        usize::from(monitor) + 1,
                        sharer.monitors().len()
                    );
                    let _ = self.out.send(Out::Notice(notice));
                }
            }
            ToWorker::Input(payload) => self.inject(&payload),
            ToWorker::Quit => {}
        }
    }

    fn start_control(&mut self) {
        if self.injector.is_none() {
            match X11Injector::connect(None) {
                Ok(injector) => self.injector = Some(injector),
                Err(error) if !self.failed_control => {
                    self.failed_control = true;
                    let _ = self.out.send(Out::Notice(format!("Remote control is not possible here: {error}.")));
                }
                Err(_) => {}
            }
        }
        if self.watcher.is_none() {
            // Without XInput 2 the local user's input cannot be told apart: say so once.
            match LocalInputWatcher::connect(None) {
                Ok(watcher) => self.watcher = Some(watcher),
                Err(error) => tracing::warn!(%error, "local input cannot be watched"),
            }
        }
        if self.indicator.is_none() {
            let text =
                format!("Remote control: the provider is using your mouse and keyboard. {HOTKEY_TEXT} takes it back.");
            match Indicator::show(None, &text) {
                Ok(indicator) => self.indicator = Some(indicator),
                Err(error) => tracing::debug!(%error, "no on-screen indicator"),
            }
        }
        if self.hotkey.is_none() {
            match Hotkey::grab(None) {
                Ok(hotkey) => self.hotkey = Some(hotkey),
                Err(error) => tracing::warn!(%error, "the take-back hotkey is not available"),
            }
        }
    }

    /// Local input pauses injection; the hotkey takes control back.
    fn watch_local_input(&mut self) {
        if let Some(indicator) = &mut self.indicator {
            let _ = indicator.poll();
        }
        if let Some(hotkey) = &mut self.hotkey
            && hotkey.pressed().unwrap_or(false)
            && self.control
        {
            self.allowed.store(false, Ordering::SeqCst);
            self.indicator = None;
            if let Some(injector) = &mut self.injector {
                let _ = injector.release_all();
            }
            let _ = self.out.send(Out::TakeBack);
        }
        let Some(watcher) = &mut self.watcher else { return };
        let Ok(activity) = watcher.poll() else { return };
        if self.local_input.on_activity(std::time::Instant::now(), activity.local, self.control) {
            if let Some(injector) = &mut self.injector {
                let _ = injector.release_all();
            }
            let _ =
                self.out.send(Out::Notice("You are using your mouse or keyboard: the provider's input waits.".into()));
        }
    }

    fn inject(&mut self, payload: &[u8]) {
        // The rule again, at the last moment: granted, no prompt open, local user idle.
        if !self.control || !self.allowed.load(Ordering::SeqCst) {
            return;
        }
        if !self.local_input.allows(std::time::Instant::now()) {
            return;
        }
        let (Some(injector), Some(event)) = (&mut self.injector, InputEvent::parse(payload)) else { return };
        if let Err(error) = injector.inject(&event) {
            tracing::debug!(%error, "input not injected");
        }
    }
}

/// The customer's own input wins: any key, button or motion from a real device while the
/// provider has control pauses injection for [`LOCAL_INPUT_PAUSE`] after the last of it.
#[derive(Debug, Default)]
struct LocalInputGate {
    paused_until: Option<std::time::Instant>,
}

impl LocalInputGate {
    /// `local` events from real devices seen at `now`. True when this starts a pause (not when
    /// it extends one): the caller releases what the provider held and tells the customer once.
    fn on_activity(&mut self, now: std::time::Instant, local: usize, control: bool) -> bool {
        if local == 0 || !control {
            return false;
        }
        let was_paused = !self.allows(now);
        self.paused_until = Some(now + LOCAL_INPUT_PAUSE);
        !was_paused
    }

    /// Whether the provider's input may be injected at `now`.
    fn allows(&self, now: std::time::Instant) -> bool {
        self.paused_until.is_none_or(|until| until <= now)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn the_customers_own_input_pauses_the_providers_for_a_moment() {
        let start = std::time::Instant::now();
        let ms = |n: u64| start + Duration::from_millis(n);
        let mut gate = LocalInputGate::default();
        assert!(gate.allows(start));
        // Injected input (no local events) and local input without remote control change nothing.
        assert!(!gate.on_activity(ms(10), 0, true));
        assert!(!gate.on_activity(ms(20), 3, false));
        assert!(gate.allows(ms(30)));
        // The customer moves the mouse while the provider has control: paused at once, one notice.
        assert!(gate.on_activity(ms(100), 1, true));
        assert!(!gate.allows(ms(100)));
        // More local input extends the pause without a second notice.
        assert!(!gate.on_activity(ms(1_000), 2, true));
        assert!(!gate.allows(ms(2_499)));
        // 1.5 s after the customer's last event the provider's input goes through again.
        assert!(gate.allows(ms(2_500)));
        // And the next local input is a new pause with a new notice.
        assert!(gate.on_activity(ms(3_000), 1, true));
        assert!(!gate.allows(ms(3_000)));
    }

    #[test]
    fn page_input_maps_to_input_events_on_the_shown_monitor() {
        // The shown monitor starts at (1920, 0) on the customer's desktop.
        let at = |x: u16, y: u16| (x + 1920, y);
        assert_eq!(input_event(web::ScreenInput::Move { x: 5, y: 6 }, at), Some(InputEvent::Move { x: 1925, y: 6 }));
        assert_eq!(
            input_event(web::ScreenInput::Button { button: 3, pressed: true, x: 1, y: 2 }, at),
            Some(InputEvent::Button { button: MouseButton::Right, pressed: true, x: 1921, y: 2 })
        );
        // An unknown button is dropped, a huge wheel clamped.
        assert_eq!(input_event(web::ScreenInput::Button { button: 7, pressed: true, x: 1, y: 2 }, at), None);
        assert_eq!(
            input_event(web::ScreenInput::Wheel { dx: 0, dy: i16::MAX }, at),
            Some(InputEvent::Wheel { dx: 0, dy: 20 })
        );
        assert_eq!(
            input_event(web::ScreenInput::Key { keysym: 0x61, pressed: false }, at),
            Some(InputEvent::Key { pressed: false, keysym: 0x61, code: 0 })
        );
    }
}
