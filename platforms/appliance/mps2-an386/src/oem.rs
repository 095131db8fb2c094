//! The demo OEM hooks of the emulated appliance: the owner is whoever types on UART0 (the HIL
//! harness, in CI), two small files, three console commands, a few counters.

use core::fmt;
use core::sync::atomic::{AtomicU32, Ordering};

use embassy_net::Stack;
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::channel::Channel;
use heapless::String;
use lifeline_agent::{ConsoleCommand, Oem, OwnerInput, Records, capability_from_key, capability_key};
use lifeline_core::app::diagnostics::Section;
use lifeline_core::consent::Capability;
use lifeline_core::wire::MemberId;

use crate::{FIRMWARE_VERSION, board, say};

/// Longest console line. A CA certificate in hex is the longest thing typed (the harness's is
/// 849 characters); longer lines are refused whole (`@error line longer than ...`), never cut.
pub const LINE_LEN: usize = 1024;
/// A console line.
pub type Line = String<LINE_LEN>;
/// Lines typed on UART0, from the console task to whoever waits (provisioning, then the owner).
/// One slot: the console task holds the next line until this one is taken (RAM: each line is
/// 1 KiB; BENCHMARKS.md "Footprint").
pub static LINES: Channel<CriticalSectionRawMutex, Line, 1> = Channel::new();

static COMMANDS_RUN: AtomicU32 = AtomicU32::new(0);
static PUMP_CYCLES: AtomicU32 = AtomicU32::new(0);

const FILES: &[(&str, &[u8])] = &[
    ("config.toml", include_bytes!("../files/config.toml")),
    ("boot.log", b"boot: lifeline-agent on mps2-an386\nboot: LAN9118 up\nboot: DHCP requested\n"),
];

const COMMANDS: &[ConsoleCommand] = &[
    ConsoleCommand { name: "status", help: "pump state", run: status },
    ConsoleCommand { name: "version", help: "firmware version", run: version },
    ConsoleCommand { name: "echo", help: "echo the arguments", run: echo },
];

fn status(_args: &str, out: &mut dyn fmt::Write) -> i32 {
    COMMANDS_RUN.fetch_add(1, Ordering::Relaxed);
    let cycles = PUMP_CYCLES.fetch_add(1, Ordering::Relaxed) + 1;
    let _ = write!(out, "pump=running flow_ml_min=250 cycles={cycles}");
    0
}

fn version(_args: &str, out: &mut dyn fmt::Write) -> i32 {
    COMMANDS_RUN.fetch_add(1, Ordering::Relaxed);
    let _ = write!(out, "lifeline-agent {FIRMWARE_VERSION} mps2-an386");
    0
}

fn echo(args: &str, out: &mut dyn fmt::Write) -> i32 {
    COMMANDS_RUN.fetch_add(1, Ordering::Relaxed);
    let _ = out.write_str(args);
    0
}

/// The emulated board's OEM.
pub struct DemoOem {
    stack: Stack<'static>,
}

impl DemoOem {
    /// Hooks reporting on `stack`.
    pub fn new(stack: Stack<'static>) -> Self {
        DemoOem { stack }
    }
}

impl Oem for DemoOem {
    fn show(&mut self, line: fmt::Arguments<'_>) {
        board::Uart::write_line(line);
    }

    fn ask_consent(&mut self, from: MemberId, capability: Capability) {
        say!(
            "Member {} asks for {}. Type `allow {}` or `deny {}`.",
            from.0,
            capability,
            capability_key(capability),
            capability_key(capability)
        );
    }

    async fn owner_input(&mut self) -> OwnerInput {
        loop {
            let line = LINES.receive().await;
            let line = line.trim();
            let (verb, key) = line.split_once(' ').unwrap_or((line, ""));
            let capability = capability_from_key(key.trim());
            let input = match (verb, capability) {
                ("allow", Some(capability)) => OwnerInput::Allow(capability),
                ("deny", Some(capability)) => OwnerInput::Deny(capability),
                ("revoke", Some(capability)) => OwnerInput::Revoke(capability),
                ("end", _) => OwnerInput::End,
                _ => {
                    say!("@owner-input unknown (allow|deny|revoke <capability>, end)");
                    continue;
                }
            };
            return input;
        }
    }

    fn diagnostics(&mut self, section: Section, records: &mut Records<'_, '_>) {
        match section {
            Section::System => {
                records.add("board", "mps2-an386");
                records.add("uptime_ms", board::uptime_ms());
            }
            Section::Memory => {
                records.add("ram.total", board::RAM_SIZE);
                records.add("ram.static", board::static_ram());
                records.add("stack.size", board::stack_size());
                records.add("stack.peak", board::stack_used());
                records.add("flash.total", board::FLASH_SIZE);
                records.add("flash.used", board::flash_used());
            }
            Section::Network => {
                records.add("net.link", if self.stack.is_link_up() { "up" } else { "down" });
                match self.stack.config_v4() {
                    Some(config) => records.add("net.address", config.address),
                    None => records.add("net.address", "none"),
                }
                let eth = lan9118::counters();
                records.add("eth.rx_frames", eth.rx_frames);
                records.add("eth.rx_dropped", eth.rx_dropped);
                records.add("eth.tx_frames", eth.tx_frames);
            }
            Section::Counters => {
                records.add("oem.pump_cycles", PUMP_CYCLES.load(Ordering::Relaxed));
                records.add("oem.console_commands", COMMANDS_RUN.load(Ordering::Relaxed));
            }
            _ => {}
        }
    }

    fn commands(&self) -> &[ConsoleCommand] {
        COMMANDS
    }

    fn files(&self) -> &[(&'static str, &'static [u8])] {
        FILES
    }
}

/// Reads UART0 into lines (CR or LF ends one) for [`LINES`]. A line longer than [`LINE_LEN`]
/// is dropped with an error line: a cut line could still parse (a shorter ticket, say).
#[embassy_executor::task]
pub async fn console_task() -> ! {
    let mut line = Line::new();
    let mut too_long = false;
    loop {
        while let Some(byte) = board::Uart::read_byte() {
            match byte {
                b'\r' | b'\n' if too_long => {
                    say!("@error line longer than {LINE_LEN} characters");
                    line.clear();
                    too_long = false;
                }
                b'\r' | b'\n' if !line.is_empty() => LINES.send(core::mem::take(&mut line)).await,
                byte if byte.is_ascii() && !byte.is_ascii_control() => {
                    too_long |= line.push(char::from(byte)).is_err();
                }
                _ => {}
            }
        }
        embassy_time::Timer::after_millis(2).await;
    }
}
