//! The Lifeline appliance agent on ST's NUCLEO-F429ZI (Cortex-M4F at 168 MHz, 2 MiB flash,
//! 192 KiB main SRAM, Ethernet RMII with a LAN8742A PHY, hardware RNG): the real-board build of
//! the HIL scenarios. Same agent, transport and console protocol as the emulated
//! `mps2-an386` board (docs/firmware.md), so the same host-side scenarios can drive it on the
//! bench (`hil-tests/README.md`). Built in CI, not run there.
//!
//! Differences from the emulated board: entropy comes from the RNG peripheral (the `seed`
//! console line is accepted and ignored, so the same harness lines work); Ethernet is embassy-stm32's driver; the console is
//! USART3 on the ST-LINK's virtual COM port (PD8/PD9, 115200 baud).
#![no_std]
#![no_main]

mod executor;

use core::cell::RefCell;
use core::fmt::{self, Write as _};

use critical_section::Mutex;
use embassy_executor::Spawner;
use embassy_net::{Ipv4Address, Stack, StackResources};
use embassy_stm32::bind_interrupts;
use embassy_stm32::eth::{self, Ethernet, GenericPhy, PacketQueue, Sma};
use embassy_stm32::mode::Blocking;
use embassy_stm32::peripherals::{ETH, ETH_SMA, RNG};
use embassy_stm32::rng::{self, Rng};
use embassy_stm32::time::Hertz;
use embassy_stm32::usart::{self, Uart, UartRx, UartTx};
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::channel::Channel;
use heapless::{String, Vec};
use lifeline_agent::{Agent, ConsoleCommand, Oem, OwnerInput, Records, capability_from_key, capability_key};
use lifeline_core::app::diagnostics::Section;
use lifeline_core::consent::Capability;
use lifeline_core::session::{Config as SessionConfig, Pin};
use lifeline_core::wire::MemberId;
use lifeline_core::wire::handshake::Role;
use lifeline_transport_embassy::{Buffers, CaKey, Drbg, Relay, SessionSpec, TransportConfig};
use static_cell::StaticCell;

/// The firmware's version, reported in diagnostics.
const FIRMWARE_VERSION: &str = env!("CARGO_PKG_VERSION");
/// Longest console line (the CA certificate in hex is the longest); longer lines are refused
/// whole, never cut (as on the emulated board).
const LINE_LEN: usize = 1024;
type Line = String<LINE_LEN>;
type Device = Ethernet<'static, ETH, GenericPhy<Sma<'static, ETH_SMA>>>;

bind_interrupts!(struct Irqs {
    ETH => eth::InterruptHandler;
    HASH_RNG => rng::InterruptHandler<RNG>;
});

static LINES: Channel<CriticalSectionRawMutex, Line, 1> = Channel::new();
static CONSOLE_TX: Mutex<RefCell<Option<UartTx<'static, Blocking>>>> = Mutex::new(RefCell::new(None));

/// Writes one console line (no log line can interleave).
fn write_line(args: fmt::Arguments<'_>) {
    critical_section::with(|cs| {
        if let Some(tx) = CONSOLE_TX.borrow(cs).borrow_mut().as_mut() {
            let mut line: String<512> = String::new();
            let _ = line.write_fmt(args);
            let _ = tx.blocking_write(line.as_bytes());
            let _ = tx.blocking_write(b"\r\n");
        }
    });
}

macro_rules! say {
    ($($arg:tt)*) => { write_line(format_args!($($arg)*)) };
}

struct ConsoleLogger;

impl log::Log for ConsoleLogger {
    fn enabled(&self, _metadata: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        write_line(format_args!("[{:<5} {}] {}", record.level(), record.target(), record.args()));
    }

    fn flush(&self) {}
}

static LOGGER: ConsoleLogger = ConsoleLogger;

#[embassy_executor::task]
async fn net_task(mut runner: embassy_net::Runner<'static, Device>) -> ! {
    runner.run().await
}

#[embassy_executor::task]
async fn console_task(mut rx: UartRx<'static, Blocking>) -> ! {
    let mut line = Line::new();
    let mut too_long = false;
    loop {
        while let Ok(byte) = embedded_hal_nb::serial::Read::read(&mut rx) {
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

fn clocks() -> embassy_stm32::Config {
    use embassy_stm32::rcc::*;
    let mut config = embassy_stm32::Config::default();
    // 8 MHz from the ST-LINK's MCO (bypass) → 168 MHz system clock, 48 MHz for the RNG.
    config.rcc.hse = Some(Hse { freq: Hertz(8_000_000), mode: HseMode::Bypass });
    config.rcc.pll_src = PllSource::HSE;
    config.rcc.pll = Some(Pll {
        prediv: PllPreDiv::DIV4,
        mul: PllMul::MUL168,
        divp: Some(PllPDiv::DIV2),
        divq: Some(PllQDiv::DIV7),
        divr: None,
    });
    config.rcc.ahb_pre = AHBPrescaler::DIV1;
    config.rcc.apb1_pre = APBPrescaler::DIV4;
    config.rcc.apb2_pre = APBPrescaler::DIV2;
    config.rcc.sys = Sysclk::PLL1_P;
    config
}

#[cortex_m_rt::entry]
fn entry() -> ! {
    executor::run(|spawner| spawn(spawner, main_task(spawner)))
}

#[embassy_executor::task]
async fn main_task(spawner: Spawner) {
    let p = embassy_stm32::init(clocks());
    let mut uart_config = usart::Config::default();
    uart_config.baudrate = 115_200;
    let Ok(uart) = Uart::new_blocking(p.USART3, p.PD9, p.PD8, uart_config) else { halt() };
    let (tx, rx) = uart.split();
    critical_section::with(|cs| *CONSOLE_TX.borrow(cs).borrow_mut() = Some(tx));
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Info);
    say!("lifeline-agent {} on nucleo-f429zi", FIRMWARE_VERSION);
    spawn(spawner, console_task(rx));

    // Entropy: the TRNG (health checks are the driver's: seed and clock errors fail the read).
    let mut trng = Rng::new(p.RNG, Irqs);
    let mut seed = [0u8; 32];
    if trng.async_fill_bytes(&mut seed).await.is_err() {
        say!("@error the RNG failed its checks");
        halt()
    }
    let mut rng = Drbg::from_seed(seed);
    seed.fill(0);

    static QUEUE: StaticCell<PacketQueue<4, 4>> = StaticCell::new();
    // A locally administered MAC derived from the chip's unique id would go here; fixed for now.
    let mac = [0x02, 0x4c, 0x49, 0x46, 0x45, 0x01];
    let device = Ethernet::new(
        QUEUE.init(PacketQueue::new()),
        p.ETH,
        Irqs,
        p.PA1,
        p.PA7,
        p.PC4,
        p.PC5,
        p.PG13,
        p.PB13,
        p.PG11,
        mac,
        p.ETH_SMA,
        p.PA2,
        p.PC1,
    );
    static RESOURCES: StaticCell<StackResources<4>> = StaticCell::new();
    let (stack, runner) = embassy_net::new(
        device,
        embassy_net::Config::dhcpv4(Default::default()),
        RESOURCES.init(StackResources::new()),
        rng.below(u64::MAX),
    );
    spawn(spawner, net_task(runner));
    say!("@ready");
    stack.wait_config_up().await;
    if let Some(config) = stack.config_v4() {
        say!("@net up address={}", config.address);
    }

    let buffers = transport_buffers();
    let mut ca: Option<CaKey> = None;
    let mut ticket: Vec<u8, 508> = Vec::new();
    let mut relay: Option<(Ipv4Address, Vec<u16, 4>, String<64>)> = None;
    loop {
        let line = LINES.receive().await;
        let line = line.trim();
        let (verb, rest) = line.split_once(' ').unwrap_or((line, ""));
        match verb {
            // The TRNG seeded the generator; a provisioned seed is accepted and ignored.
            "seed" => say!("@ok seed"),
            "ca" => {
                // Only the key is kept (65 bytes), taken from the certificate if that was given.
                let mut bytes: Vec<u8, { LINE_LEN / 2 }> = Vec::new();
                let decoded = decode_hex_into(rest.trim(), &mut bytes);
                ca = if decoded { CaKey::from_key_or_certificate(&bytes) } else { None };
                match ca {
                    Some(_) => say!("@ok ca bytes={}", bytes.len()),
                    None => say!("@error ca: hex of a P-256 CA certificate (DER, at most 510 bytes) or key"),
                }
            }
            "ticket" => match decode_hex_into(rest.trim(), &mut ticket) {
                true => say!("@ok ticket bytes={}", ticket.len()),
                false => say!("@error ticket: hex, at most 508 bytes"),
            },
            "relay" => match parse_relay(rest) {
                Some(parsed) => {
                    relay = Some(parsed);
                    say!("@ok relay");
                }
                None => say!("@error relay <ipv4> <port,...> <tls name>"),
            },
            "join" => {
                let Some((address, ports, name)) = relay.as_ref() else {
                    say!("@error join: relay first");
                    continue;
                };
                let (number, pin) = rest.trim().split_once(' ').unwrap_or((rest.trim(), ""));
                let pin = Pin::from_str_truncated(pin);
                let (Ok(session), false) = (number.parse::<u64>(), pin.as_str().is_empty()) else {
                    say!("@error join <session number> <PIN>");
                    continue;
                };
                let (Some(ca), false) = (ca, ticket.is_empty()) else {
                    say!("@error join: ca and ticket first");
                    continue;
                };
                let relays = [Relay { address: (*address).into(), ports, tls_name: name }];
                let ca_keys = [ca];
                let config = TransportConfig::new(&relays, &ca_keys);
                let spec = SessionSpec {
                    config: SessionConfig::new(session, MemberId(1), Role::Customer, "Appliance (NUCLEO-F429ZI)"),
                    pin: pin.as_str(),
                    ticket: &ticket,
                };
                let mut agent = Agent::new(BenchOem { stack }, FIRMWARE_VERSION);
                say!("@joining session={session}");
                let cause = lifeline_transport_embassy::run(stack, &config, &spec, buffers, &mut rng, &mut agent).await;
                say!("@closed {cause}");
            }
            "" => {}
            _ => say!("@error unknown command (seed, ca, relay, ticket, join)"),
        }
    }
}

/// The bench board's OEM hooks: the same commands and files as the emulated board's.
struct BenchOem {
    stack: Stack<'static>,
}

const FILES: &[(&str, &[u8])] = &[("config.toml", include_bytes!("../../mps2-an386/files/config.toml"))];

const COMMANDS: &[ConsoleCommand] = &[
    ConsoleCommand { name: "status", help: "pump state", run: status },
    ConsoleCommand { name: "version", help: "firmware version", run: version },
    ConsoleCommand { name: "echo", help: "echo the arguments", run: echo },
];

fn status(_args: &str, out: &mut dyn fmt::Write) -> i32 {
    let _ = out.write_str("pump=running flow_ml_min=250");
    0
}

fn version(_args: &str, out: &mut dyn fmt::Write) -> i32 {
    let _ = write!(out, "lifeline-agent {FIRMWARE_VERSION} nucleo-f429zi");
    0
}

fn echo(args: &str, out: &mut dyn fmt::Write) -> i32 {
    let _ = out.write_str(args);
    0
}

impl Oem for BenchOem {
    fn show(&mut self, line: fmt::Arguments<'_>) {
        write_line(line);
    }

    fn ask_consent(&mut self, from: MemberId, capability: Capability) {
        let key = capability_key(capability);
        say!("Member {} asks for {}. Type `allow {key}` or `deny {key}`.", from.0, capability);
    }

    async fn owner_input(&mut self) -> OwnerInput {
        loop {
            let line = LINES.receive().await;
            let line = line.trim();
            let (verb, key) = line.split_once(' ').unwrap_or((line, ""));
            match (verb, capability_from_key(key.trim())) {
                ("allow", Some(capability)) => return OwnerInput::Allow(capability),
                ("deny", Some(capability)) => return OwnerInput::Deny(capability),
                ("revoke", Some(capability)) => return OwnerInput::Revoke(capability),
                ("end", _) => return OwnerInput::End,
                _ => say!("@owner-input unknown (allow|deny|revoke <capability>, end)"),
            }
        }
    }

    fn diagnostics(&mut self, section: Section, records: &mut Records<'_, '_>) {
        match section {
            Section::System => {
                records.add("board", "nucleo-f429zi");
                records.add("uptime_ms", embassy_time::Instant::now().as_millis());
            }
            Section::Memory => {
                records.add("ram.total", 192 * 1024);
                records.add("flash.total", 2048 * 1024);
            }
            Section::Network => {
                records.add("net.link", if self.stack.is_link_up() { "up" } else { "down" });
                match self.stack.config_v4() {
                    Some(config) => records.add("net.address", config.address),
                    None => records.add("net.address", "none"),
                }
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

fn spawn<S>(spawner: Spawner, token: Result<embassy_executor::SpawnToken<S>, embassy_executor::SpawnError>) {
    match token {
        Ok(token) => spawner.spawn(token),
        Err(_) => halt(),
    }
}

fn parse_relay(text: &str) -> Option<(Ipv4Address, Vec<u16, 4>, String<64>)> {
    let mut words = text.split_whitespace();
    let address: Ipv4Address = words.next()?.parse().ok()?;
    let mut ports = Vec::new();
    for port in words.next()?.split(',') {
        ports.push(port.parse().ok()?).ok()?;
    }
    let name = String::try_from(words.next()?).ok()?;
    Some((address, ports, name))
}

/// Decodes hex into `out` (replacing its contents); false if malformed or too long.
fn decode_hex_into<const N: usize>(text: &str, out: &mut Vec<u8, N>) -> bool {
    out.clear();
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) || bytes.len() / 2 > N {
        return false;
    }
    for pair in bytes.chunks_exact(2) {
        let (Some(high), Some(low)) = (char::from(pair[0]).to_digit(16), char::from(pair[1]).to_digit(16)) else {
            out.clear();
            return false;
        };
        let _ = out.push((high * 16 + low) as u8);
    }
    true
}

fn halt() -> ! {
    loop {
        cortex_m::asm::wfi();
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    say!("@panic {}", info);
    halt()
}

/// The transport's buffers in a static. Not inlined, as on the mps2-an386 board: the temporary
/// LLVM builds the value in must not sit in the main task's frame.
#[inline(never)]
fn transport_buffers() -> &'static mut Buffers {
    static BUFFERS: StaticCell<Buffers> = StaticCell::new();
    BUFFERS.init_with(Buffers::new)
}
