//! The Lifeline appliance agent for Arm's MPS2 AN386 board (Cortex-M4F), as emulated by QEMU.
//!
//! Boot: UART0 console and log, SysTick time, then the console provisions the device and
//! starts sessions. Lines the firmware prints for the test harness start with `@`.
//!
//! | console line | effect |
//! |---|---|
//! | `seed <64 hex>` | entropy seed (the board has no TRNG; see docs/firmware.md); brings up the network |
//! | `ca <hex>` | the fleet CA key relays' certificates must be signed with: its certificate (DER) or the key (65-byte SEC1) |
//! | `relay <ipv4> <port,port,...> <tls name>` | the relay to reach |
//! | `ticket <hex>` | the admission ticket |
//! | `join <session number> <PIN>` | joins as the customer side and runs the session |
//! | `allow`/`deny`/`revoke <capability>`, `end` | the owner's decisions during a session |
#![no_std]
#![no_main]
// A binary has no public API: `pub` marks what a module offers the others.
#![allow(unreachable_pub)]

#[cfg(feature = "bench")]
mod bench;
mod board;
mod executor;
mod oem;

use embassy_executor::Spawner;
use embassy_net::{Ipv4Address, Stack, StackResources};
use heapless::{String, Vec};
use lifeline_agent::Agent;
use lifeline_core::session::{Config, Pin};
use lifeline_core::wire::MemberId;
use lifeline_core::wire::handshake::Role;
use lifeline_transport_embassy::{Buffers, CaKey, Drbg, EntropySource, Relay, SessionSpec, TransportConfig};
use static_cell::StaticCell;

/// The firmware's version, reported in diagnostics.
pub const FIRMWARE_VERSION: &str = env!("CARGO_PKG_VERSION");

#[embassy_executor::task]
async fn net_task(mut runner: embassy_net::Runner<'static, &'static mut lan9118::Lan9118>) -> ! {
    runner.run().await
}

/// What the console provisioned so far.
#[derive(Default)]
struct Provisioning {
    ca: Option<CaKey>,
    relay: Option<(Ipv4Address, Vec<u16, 4>, String<64>)>,
    ticket: Vec<u8, 508>,
}

/// Entropy provisioned over the console: QEMU's MPS2 has no TRNG (docs/firmware.md).
struct ProvisionedSeed([u8; 32]);

impl EntropySource for ProvisionedSeed {
    fn fill(&mut self, seed: &mut [u8; 32]) {
        *seed = self.0;
        self.0 = [0; 32];
    }
}

#[cortex_m_rt::entry]
fn entry() -> ! {
    executor::run(|spawner| spawn(spawner, main_task(spawner)))
}

#[embassy_executor::task]
async fn main_task(spawner: Spawner) {
    board::paint_stack();
    board::Uart::init();
    board::init_log(log::LevelFilter::Info);
    say!("lifeline-agent {} on mps2-an386", FIRMWARE_VERSION);
    let Some(core) = cortex_m::Peripherals::take() else { board::halt() };
    board::init_time(core.SYST);
    spawn(spawner, oem::console_task());
    say!("@ready");

    let mut provisioning = Provisioning::default();
    let mut rng: Option<Drbg> = None;
    let mut stack: Option<Stack<'static>> = None;
    let buffers = transport_buffers();
    log::info!(
        "sizes: engine session {} B, transport buffers {} B",
        core::mem::size_of::<lifeline_transport_embassy::EngineSession>(),
        core::mem::size_of::<Buffers>()
    );
    loop {
        let line = oem::LINES.receive().await;
        let line = line.trim();
        let (verb, rest) = line.split_once(' ').unwrap_or((line, ""));
        match verb {
            "seed" => {
                let mut seed = [0u8; 32];
                if decode_hex(rest.trim(), &mut seed) != Some(32) {
                    say!("@error seed needs 64 hex digits");
                    continue;
                }
                let mut source = ProvisionedSeed(seed);
                source.fill(&mut seed);
                let mut drbg = Drbg::from_seed(seed);
                if stack.is_none() {
                    stack = Some(start_network(&spawner, drbg.below(u64::MAX)).await);
                }
                rng = Some(drbg);
                say!("@ok seed");
            }
            "ca" => {
                // Only the key is kept (65 bytes), taken from the certificate if that was given.
                // A console line (1 KiB) carries at most ~510 bytes of hex.
                let mut bytes = [0u8; oem::LINE_LEN / 2];
                let len = decode_hex(rest.trim(), &mut bytes);
                provisioning.ca = len.and_then(|len| CaKey::from_key_or_certificate(bytes.get(..len)?));
                match (len, provisioning.ca) {
                    (Some(len), Some(_)) => say!("@ok ca bytes={len}"),
                    _ => say!("@error ca: hex of a P-256 CA certificate (DER, at most 510 bytes) or key"),
                }
            }
            "relay" => match parse_relay(rest) {
                Some(relay) => {
                    provisioning.relay = Some(relay);
                    say!("@ok relay");
                }
                None => say!("@error relay <ipv4> <port,...> <tls name>"),
            },
            "ticket" => {
                provisioning.ticket.clear();
                let _ = provisioning.ticket.resize_default(provisioning.ticket.capacity());
                match decode_hex(rest.trim(), &mut provisioning.ticket) {
                    Some(len) => {
                        provisioning.ticket.truncate(len);
                        say!("@ok ticket bytes={len}");
                    }
                    None => {
                        provisioning.ticket.clear();
                        say!("@error ticket: hex, at most 508 bytes");
                    }
                }
            }
            "join" => {
                let (Some(stack), Some(rng)) = (stack, rng.as_mut()) else {
                    say!("@error join: seed first");
                    continue;
                };
                let Some((address, ports, name)) = provisioning.relay.as_ref() else {
                    say!("@error join: relay first");
                    continue;
                };
                // The PIN as a person types it: spaces and dashes inside are ignored.
                let (number, pin) = rest.trim().split_once(' ').unwrap_or((rest.trim(), ""));
                let pin = Pin::from_str_truncated(pin);
                let (Ok(session), false) = (number.parse::<u64>(), pin.as_str().is_empty()) else {
                    say!("@error join <session number> <PIN>");
                    continue;
                };
                let pin = pin.as_str();
                let (Some(ca), false) = (provisioning.ca, provisioning.ticket.is_empty()) else {
                    say!("@error join: ca and ticket first");
                    continue;
                };
                let relays = [Relay { address: (*address).into(), ports, tls_name: name }];
                let ca_keys = [ca];
                let config = TransportConfig::new(&relays, &ca_keys);
                let spec = SessionSpec {
                    config: Config::new(session, MemberId(1), Role::Customer, "Appliance (MPS2 AN386)"),
                    pin,
                    ticket: &provisioning.ticket,
                };
                let mut agent = Agent::new(oem::DemoOem::new(stack), FIRMWARE_VERSION);
                say!("@joining session={session}");
                let cause = lifeline_transport_embassy::run(stack, &config, &spec, buffers, rng, &mut agent).await;
                say!("@closed {cause}");
                say!("@stack peak={} of {}", board::stack_used(), board::stack_size());
            }
            #[cfg(feature = "bench")]
            "bench" => match rng.as_mut() {
                Some(rng) => bench::run(rng),
                None => say!("@error bench: seed first"),
            },
            "" => {}
            _ => say!("@error unknown command (seed, ca, relay, ticket, join)"),
        }
    }
}

/// The transport's buffers in a static. Not inlined: LLVM builds the value in a temporary on the
/// caller's stack before copying it into the cell, and that temporary (16 KiB) must not sit in
/// the main task's frame, which is live under every session (it was: 20.9 KiB frame, found with
/// `-Z emit-stack-sizes`; BENCHMARKS.md "Footprint").
#[inline(never)]
fn transport_buffers() -> &'static mut Buffers {
    static BUFFERS: StaticCell<Buffers> = StaticCell::new();
    BUFFERS.init_with(Buffers::new)
}

async fn start_network(spawner: &Spawner, seed: u64) -> Stack<'static> {
    static ETH: StaticCell<lan9118::Lan9118> = StaticCell::new();
    // SAFETY: 0x4020_0000 is this board's LAN9118 and nothing else in the firmware touches it.
    #[allow(unsafe_code)]
    let eth = match unsafe { lan9118::Lan9118::new(board::LAN9118_BASE, lan9118::Config::default()) } {
        Ok(eth) => ETH.init(eth),
        Err(error) => {
            say!("@error ethernet: {error}");
            board::halt()
        }
    };
    board::unmask(board::Irq(board::LAN9118_IRQ));
    let mac = eth.mac_address();
    log::info!(
        "ethernet: LAN9118 up, MAC {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        mac[0],
        mac[1],
        mac[2],
        mac[3],
        mac[4],
        mac[5]
    );
    static RESOURCES: StaticCell<StackResources<4>> = StaticCell::new();
    let (stack, runner) = embassy_net::new(
        eth,
        embassy_net::Config::dhcpv4(Default::default()),
        RESOURCES.init(StackResources::new()),
        seed,
    );
    spawn(*spawner, net_task(runner));
    stack.wait_config_up().await;
    if let Some(config) = stack.config_v4() {
        say!("@net up address={}", config.address);
    }
    stack
}

/// Spawns a task; each is spawned once, so its pool always has room.
fn spawn<S>(spawner: Spawner, token: Result<embassy_executor::SpawnToken<S>, embassy_executor::SpawnError>) {
    match token {
        Ok(token) => spawner.spawn(token),
        Err(_) => {
            say!("@error task spawned twice");
            board::halt()
        }
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

/// Decodes hex into `out`; the byte count, or `None` if malformed or too long.
fn decode_hex(text: &str, out: &mut [u8]) -> Option<usize> {
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) || bytes.len() / 2 > out.len() {
        return None;
    }
    for (slot, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        let high = char::from(pair[0]).to_digit(16)?;
        let low = char::from(pair[1]).to_digit(16)?;
        *slot = (high * 16 + low) as u8;
    }
    Some(bytes.len() / 2)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    say!("@panic {}", info);
    board::halt()
}
