//! A small [`embassy_net_driver::Driver`] for the SMSC (Microchip) LAN9118 10/100 Ethernet
//! controller, as found on Arm's MPS2 boards and emulated by QEMU (`mps2-an385`, `mps2-an386`:
//! registers at `0x4020_0000`, interrupt 13).
//!
//! What it does, and no more:
//! - PIO (no DMA): frames are copied word by word through the controller's RX and TX data FIFOs
//!   into one receive and one transmit buffer of [`MTU`] bytes owned by the driver;
//! - one interrupt ([`on_interrupt`], to be called from the board's handler for the controller's
//!   line): it masks the sources that fired and wakes the network stack, which unmasks them
//!   when it polls again (so a level-triggered line cannot storm);
//! - link state from the internal PHY's basic status register, with the PHY's interrupt as waker;
//! - no checksum offload (the LAN9118 has none; the LAN9220 on real MPS2 boards does, unused).
//!
//! The register-level code sits in one private module (`regs`), the only `unsafe` in the crate.
//! Malformed status words from the controller (lengths too long or too short, error flags)
//! drop the frame; nothing here panics on what the wire delivers.
//!
//! ```ignore
//! // SAFETY: 0x4020_0000 is the LAN9118 on this board and nothing else uses it.
//! let mut eth = unsafe { lan9118::Lan9118::new(0x4020_0000, lan9118::Config::default()) }?;
//! // in the board's interrupt handler for line 13: lan9118::on_interrupt();
//! let (stack, runner) = embassy_net::new(&mut eth, config, resources, seed);
//! ```
#![no_std]

mod regs;

use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use core::task::Context;

use embassy_net_driver::{Capabilities, HardwareAddress, LinkState};
use embassy_sync::waitqueue::AtomicWaker;

use regs::{Registers, offset};

/// Largest Ethernet frame (header + payload, no FCS) the driver moves.
pub const MTU: usize = 1514;
/// Driver buffers hold a whole number of FIFO words.
const BUFFER_LEN: usize = 1536;

/// What the controller answers in `BYTE_TEST` when the bus works and is little-endian.
const BYTE_TEST_VALUE: u32 = 0x8765_4321;

/// `INT_STS`/`INT_EN` bits used.
mod int {
    /// RX status FIFO level: at least one frame waits.
    pub(crate) const RSFL: u32 = 1 << 3;
    /// PHY interrupt (link change).
    pub(crate) const PHY: u32 = 1 << 18;
    /// Receiver error, transmitter error.
    pub(crate) const RXE: u32 = 1 << 14;
    pub(crate) const TXE: u32 = 1 << 13;
}

/// MAC CSR indices (reached through `MAC_CSR_CMD`/`MAC_CSR_DATA`).
mod mac {
    pub(crate) const CR: u32 = 1;
    pub(crate) const ADDRH: u32 = 2;
    pub(crate) const ADDRL: u32 = 3;
    pub(crate) const MII_ACC: u32 = 6;
    pub(crate) const MII_DATA: u32 = 7;
    /// `MAC_CR`: receive all multicast, full duplex, transmitter and receiver on.
    pub(crate) const CR_MCPAS: u32 = 1 << 19;
    pub(crate) const CR_FDPX: u32 = 1 << 20;
    pub(crate) const CR_TXEN: u32 = 1 << 3;
    pub(crate) const CR_RXEN: u32 = 1 << 2;
    pub(crate) const CSR_BUSY: u32 = 1 << 31;
    pub(crate) const CSR_READ: u32 = 1 << 30;
}

/// Internal PHY (address 1) registers.
mod phy {
    pub(crate) const ADDRESS: u32 = 1;
    pub(crate) const BASIC_CONTROL: u32 = 0;
    pub(crate) const BASIC_STATUS: u32 = 1;
    pub(crate) const INTERRUPT_SOURCE: u32 = 29;
    pub(crate) const INTERRUPT_MASK: u32 = 30;
    /// Basic control: auto-negotiation enable and restart.
    pub(crate) const AUTONEG: u32 = (1 << 12) | (1 << 9);
    /// Basic status: link up.
    pub(crate) const LINK_UP: u32 = 1 << 2;
    /// Interrupt mask: energy on, auto-negotiation complete, link down.
    pub(crate) const LINK_EVENTS: u32 = 0x80 | 0x40 | 0x10;
}

/// Spins allowed for a busy bit (MAC CSR, MII, soft reset) before giving up.
const BUSY_SPINS: u32 = 100_000;

static BASE: AtomicUsize = AtomicUsize::new(0);
static RX_FRAMES: AtomicU32 = AtomicU32::new(0);
static RX_DROPPED: AtomicU32 = AtomicU32::new(0);
static TX_FRAMES: AtomicU32 = AtomicU32::new(0);
static RX_WAKER: AtomicWaker = AtomicWaker::new();
static LINK_WAKER: AtomicWaker = AtomicWaker::new();

/// Driver settings.
#[derive(Clone, Copy, Debug, Default)]
pub struct Config {
    /// The MAC address to use; `None` keeps the one the controller loaded from its EEPROM
    /// (QEMU: `52:54:00:12:34:56` unless `-nic ...,mac=` says otherwise).
    pub mac: Option<[u8; 6]>,
}

/// Why the controller could not be brought up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InitError {
    /// `BYTE_TEST` did not read back `0x87654321`: no LAN9118 at that address, or a bus problem.
    NotFound,
    /// A busy bit (reset, MAC CSR, MII) never cleared.
    Timeout,
}

impl core::fmt::Display for InitError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            InitError::NotFound => "no LAN9118 answers at that address",
            InitError::Timeout => "the LAN9118 stayed busy",
        })
    }
}

impl core::error::Error for InitError {}

/// Counters for diagnostics.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counters {
    /// Frames handed to the stack.
    pub rx_frames: u32,
    /// Frames dropped: error status, bad length.
    pub rx_dropped: u32,
    /// Frames sent.
    pub tx_frames: u32,
}

/// Frame counters since boot (for diagnostics).
pub fn counters() -> Counters {
    Counters {
        rx_frames: RX_FRAMES.load(Ordering::Relaxed),
        rx_dropped: RX_DROPPED.load(Ordering::Relaxed),
        tx_frames: TX_FRAMES.load(Ordering::Relaxed),
    }
}

/// One LAN9118.
pub struct Lan9118 {
    regs: Registers,
    mac: [u8; 6],
    rx: [u32; BUFFER_LEN / 4],
    tx: [u32; BUFFER_LEN / 4],
}

impl Lan9118 {
    /// Resets and starts the controller at `base`.
    ///
    /// # Safety
    ///
    /// `base` must be the address of a LAN9118's register window, mapped as device memory, used
    /// by nothing but this driver (and [`on_interrupt`]) from now on; at most one `Lan9118`
    /// may exist.
    #[allow(unsafe_code)] // the contract is `Registers::new`'s, passed on to the caller
    pub unsafe fn new(base: usize, config: Config) -> Result<Lan9118, InitError> {
        // SAFETY: the caller's contract is `Registers::new`'s contract.
        let regs = unsafe { Registers::new(base) };
        if regs.read(offset::BYTE_TEST) != BYTE_TEST_VALUE {
            return Err(InitError::NotFound);
        }
        // Soft reset, then wait for the device to say it is ready.
        regs.write(offset::HW_CFG, 1);
        spin_until(|| regs.read(offset::HW_CFG) & 1 == 0)?;
        spin_until(|| regs.read(offset::PMT_CTRL) & 1 == 1)?;
        let mut driver = Lan9118 { regs, mac: [0; 6], rx: [0; BUFFER_LEN / 4], tx: [0; BUFFER_LEN / 4] };
        let _id = regs.read(offset::ID_REV);
        match config.mac {
            Some(mac) => {
                driver.mac_write(mac::ADDRL, u32::from_le_bytes([mac[0], mac[1], mac[2], mac[3]]))?;
                driver.mac_write(mac::ADDRH, u32::from(mac[4]) | (u32::from(mac[5]) << 8))?;
                driver.mac = mac;
            }
            None => {
                let low = driver.mac_read(mac::ADDRL)?.to_le_bytes();
                let high = driver.mac_read(mac::ADDRH)?.to_le_bytes();
                driver.mac = [low[0], low[1], low[2], low[3], high[0], high[1]];
            }
        }
        // The PHY: auto-negotiate, interrupt on link events (read the source to clear it).
        driver.phy_write(phy::BASIC_CONTROL, phy::AUTONEG)?;
        driver.phy_write(phy::INTERRUPT_MASK, phy::LINK_EVENTS)?;
        let _ = driver.phy_read(phy::INTERRUPT_SOURCE)?;
        // Interrupt line: enabled, push-pull, active high. An RX-status interrupt as soon as
        // one frame waits (level 0).
        regs.write(offset::IRQ_CFG, (1 << 8) | (1 << 4) | 1);
        regs.write(offset::FIFO_INT, 0x4800_0000);
        regs.write(offset::INT_STS, u32::MAX);
        regs.write(offset::INT_EN, int::RSFL | int::PHY | int::RXE | int::TXE);
        // No RX offset or end padding; transmitter on; MAC on, full duplex.
        regs.write(offset::RX_CFG, 0);
        regs.write(offset::TX_CFG, 1 << 1);
        driver.mac_write(mac::CR, mac::CR_TXEN | mac::CR_RXEN | mac::CR_FDPX | mac::CR_MCPAS)?;
        BASE.store(base, Ordering::Release);
        Ok(driver)
    }

    /// The MAC address in use.
    pub fn mac_address(&self) -> [u8; 6] {
        self.mac
    }

    /// Unmasks `bits` in `INT_EN` after clearing their status (w1c), so that a source the
    /// interrupt handler masked fires again on its next event.
    fn rearm(&self, bits: u32) {
        critical_section::with(|_| {
            self.regs.write(offset::INT_STS, bits);
            let enabled = self.regs.read(offset::INT_EN);
            self.regs.write(offset::INT_EN, enabled | bits);
        });
    }

    /// Reads the next frame from the RX FIFO into `self.rx`; its length, or `None` if none waits.
    /// Bad frames are read out and dropped.
    fn read_frame(&mut self) -> Option<usize> {
        loop {
            let waiting = (self.regs.read(offset::RX_FIFO_INF) >> 16) & 0xFF;
            if waiting == 0 {
                return None;
            }
            let status = self.regs.read(offset::RX_STATUS_FIFO);
            // Bits 29:16: frame length including the 4-byte FCS. Bit 15: error summary.
            let with_fcs = ((status >> 16) & 0x3FFF) as usize;
            let words = with_fcs.div_ceil(4);
            let error = status & (1 << 15) != 0;
            let usable = with_fcs >= 14 + 4 && with_fcs - 4 <= MTU && words <= self.rx.len();
            for index in 0..words {
                let word = self.regs.read(offset::RX_DATA_FIFO);
                if usable && let Some(slot) = self.rx.get_mut(index) {
                    *slot = word;
                }
            }
            if usable && !error {
                RX_FRAMES.fetch_add(1, Ordering::Relaxed);
                return Some(with_fcs - 4);
            }
            RX_DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Bytes free in the TX data FIFO.
    fn tx_free(&self) -> usize {
        (self.regs.read(offset::TX_FIFO_INF) & 0xFFFF) as usize
    }

    fn mac_wait(&self) -> Result<(), InitError> {
        spin_until(|| self.regs.read(offset::MAC_CSR_CMD) & mac::CSR_BUSY == 0)
    }

    fn mac_read(&self, index: u32) -> Result<u32, InitError> {
        self.mac_wait()?;
        self.regs.write(offset::MAC_CSR_CMD, mac::CSR_BUSY | mac::CSR_READ | index);
        self.mac_wait()?;
        Ok(self.regs.read(offset::MAC_CSR_DATA))
    }

    fn mac_write(&self, index: u32, value: u32) -> Result<(), InitError> {
        self.mac_wait()?;
        self.regs.write(offset::MAC_CSR_DATA, value);
        self.regs.write(offset::MAC_CSR_CMD, mac::CSR_BUSY | index);
        self.mac_wait()
    }

    fn mii_wait(&self) -> Result<(), InitError> {
        let mut spins = 0;
        while self.mac_read(mac::MII_ACC)? & 1 != 0 {
            spins += 1;
            if spins > BUSY_SPINS {
                return Err(InitError::Timeout);
            }
        }
        Ok(())
    }

    fn phy_read(&self, register: u32) -> Result<u32, InitError> {
        self.mii_wait()?;
        self.mac_write(mac::MII_ACC, (phy::ADDRESS << 11) | (register << 6) | 1)?;
        self.mii_wait()?;
        Ok(self.mac_read(mac::MII_DATA)? & 0xFFFF)
    }

    fn phy_write(&self, register: u32, value: u32) -> Result<(), InitError> {
        self.mii_wait()?;
        self.mac_write(mac::MII_DATA, value)?;
        self.mac_write(mac::MII_ACC, (phy::ADDRESS << 11) | (register << 6) | 2 | 1)?;
        self.mii_wait()
    }
}

/// The controller's interrupt: call it from the board's handler for the LAN9118's line.
///
/// It masks every source that fired (the line is level-triggered) and wakes whoever waits for
/// it; the driver clears and unmasks a source when it next polls for it.
pub fn on_interrupt() {
    let base = BASE.load(Ordering::Acquire);
    if base == 0 {
        return;
    }
    // SAFETY: `base` was stored by `Lan9118::new`, whose caller vouched for it; the handler
    // only touches INT_STS/INT_EN, and the driver does so only inside critical sections.
    #[allow(unsafe_code)]
    let regs = unsafe { Registers::new(base) };
    let enabled = regs.read(offset::INT_EN);
    let fired = regs.read(offset::INT_STS) & enabled;
    regs.write(offset::INT_EN, enabled & !fired);
    if fired & (int::RSFL | int::RXE) != 0 {
        RX_WAKER.wake();
    }
    if fired & int::PHY != 0 {
        LINK_WAKER.wake();
    }
    if fired & int::TXE != 0 {
        // A transmit error: nothing waits on it; clear it so it cannot fire again at once.
        regs.write(offset::INT_STS, int::TXE);
    }
}

fn spin_until(mut done: impl FnMut() -> bool) -> Result<(), InitError> {
    for _ in 0..BUSY_SPINS {
        if done() {
            return Ok(());
        }
        core::hint::spin_loop();
    }
    Err(InitError::Timeout)
}

impl embassy_net_driver::Driver for Lan9118 {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, cx: &mut Context<'_>) -> Option<(RxToken<'_>, TxToken<'_>)> {
        RX_WAKER.register(cx.waker());
        self.rearm(int::RSFL | int::RXE);
        if self.tx_free() < BUFFER_LEN + 8 {
            cx.waker().wake_by_ref();
            return None;
        }
        let len = self.read_frame()?;
        let Lan9118 { rx, tx, regs, .. } = self;
        Some((RxToken { buffer: rx, len }, TxToken { buffer: tx, regs: *regs }))
    }

    fn transmit(&mut self, cx: &mut Context<'_>) -> Option<TxToken<'_>> {
        // QEMU sends a frame as soon as its last word is written, so the FIFO never backs up
        // there; a real controller drains it at line rate. The LAN9118's FIFO-level interrupt
        // is not emulated, so when the FIFO is full we ask to be polled again rather than wait
        // for an interrupt.
        if self.tx_free() < BUFFER_LEN + 8 {
            cx.waker().wake_by_ref();
            return None;
        }
        let Lan9118 { tx, regs, .. } = self;
        Some(TxToken { buffer: tx, regs: *regs })
    }

    fn link_state(&mut self, cx: &mut Context<'_>) -> LinkState {
        LINK_WAKER.register(cx.waker());
        // Reading the PHY's interrupt source clears it; then unmask the PHY interrupt.
        let _ = self.phy_read(phy::INTERRUPT_SOURCE);
        self.rearm(int::PHY);
        match self.phy_read(phy::BASIC_STATUS) {
            Ok(status) if status & phy::LINK_UP != 0 => LinkState::Up,
            _ => LinkState::Down,
        }
    }

    fn capabilities(&self) -> Capabilities {
        let mut capabilities = Capabilities::default();
        capabilities.max_transmission_unit = MTU;
        capabilities.max_burst_size = Some(1);
        capabilities
    }

    fn hardware_address(&self) -> HardwareAddress {
        HardwareAddress::Ethernet(self.mac)
    }
}

/// A received frame, borrowed from the driver's receive buffer.
pub struct RxToken<'a> {
    buffer: &'a mut [u32; BUFFER_LEN / 4],
    len: usize,
}

impl embassy_net_driver::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, f: F) -> R {
        let bytes = words_as_bytes(self.buffer);
        f(&mut bytes[..self.len.min(MTU)])
    }
}

/// Room for one frame to send, in the driver's transmit buffer.
pub struct TxToken<'a> {
    buffer: &'a mut [u32; BUFFER_LEN / 4],
    regs: Registers,
}

impl embassy_net_driver::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let len = len.min(MTU);
        let result = f(&mut words_as_bytes(self.buffer)[..len]);
        // Reuse the driver's sender on a temporary view of the same parts.
        let mut sender = Sender { regs: self.regs, tx: self.buffer };
        sender.send(len);
        result
    }
}

/// The transmit half, borrowed from the driver (a token may outlive the `&mut Lan9118` borrow
/// that made it only as these parts).
struct Sender<'a> {
    regs: Registers,
    tx: &'a [u32; BUFFER_LEN / 4],
}

impl Sender<'_> {
    fn send(&mut self, len: usize) {
        let length = len.min(MTU) as u32; // <= MTU < 2^11
        self.regs.write(offset::TX_DATA_FIFO, (1 << 13) | (1 << 12) | length);
        self.regs.write(offset::TX_DATA_FIFO, length);
        for word in &self.tx[..(length as usize).div_ceil(4)] {
            self.regs.write(offset::TX_DATA_FIFO, *word);
        }
        while (self.regs.read(offset::TX_FIFO_INF) >> 16) & 0xFF != 0 {
            let _ = self.regs.read(offset::TX_STATUS_FIFO);
        }
        TX_FRAMES.fetch_add(1, Ordering::Relaxed);
    }
}

/// The FIFOs carry little-endian words; the buffers are words so that FIFO access is aligned,
/// and the stack sees them as bytes (`u32` has no padding and any byte pattern is valid).
fn words_as_bytes(words: &mut [u32; BUFFER_LEN / 4]) -> &mut [u8; BUFFER_LEN] {
    // Cortex-M is little-endian, so byte i of the frame is byte i of the buffer as stored.
    bytemuck_cast(words)
}

fn bytemuck_cast(words: &mut [u32; BUFFER_LEN / 4]) -> &mut [u8; BUFFER_LEN] {
    // SAFETY: [u32; N/4] and [u8; N] have the same size; u8 has alignment 1 and every bit
    // pattern is a valid u8 and u32; the returned borrow replaces the input borrow.
    #[allow(unsafe_code)]
    unsafe {
        &mut *(words as *mut [u32; BUFFER_LEN / 4]).cast::<[u8; BUFFER_LEN]>()
    }
}
