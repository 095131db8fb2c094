//! The MPS2 AN386 board: UART0, the SysTick time driver, the interrupt vector table, and the
//! log sink. All of the firmware's register-level `unsafe` lives here and in the `lan9118`
//! crate.
//!
//! Memory map used (Arm AN386; QEMU `hw/arm/mps2.c`):
//!
//! | what | address | interrupt |
//! |---|---|---|
//! | code (ZBT SSRAM1) | `0x0000_0000` | |
//! | data (ZBT SSRAM2/3) | `0x2000_0000` | |
//! | CMSDK APB UART0 | `0x4000_4000` | 0 (RX), 1 (TX) |
//! | LAN9118 Ethernet | `0x4020_0000` | 13 |
//!
//! The CPU runs at 25 MHz (`SYSCLK`); SysTick counts processor clocks.

#![allow(unsafe_code)]

use core::cell::{Cell, RefCell};
use core::fmt::Write as _;
use core::task::Waker;

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::exception;
use critical_section::Mutex;
use embassy_time_queue_utils::Queue;

/// Processor clock.
pub const SYSCLK_HZ: u32 = 25_000_000;
/// The LAN9118's register window.
pub const LAN9118_BASE: usize = 0x4020_0000;
/// The LAN9118's interrupt line.
pub const LAN9118_IRQ: u16 = 13;
const UART0_BASE: usize = 0x4000_4000;
/// Flash and RAM as `memory.x` gives them (a real part's, not QEMU's).
pub const FLASH_SIZE: usize = 1024 * 1024;
/// See [`FLASH_SIZE`].
pub const RAM_SIZE: usize = 256 * 1024;

// ---- UART0 (CMSDK APB UART) -------------------------------------------------------------------

mod uart_reg {
    pub(super) const DATA: usize = 0x00;
    pub(super) const STATE: usize = 0x04;
    pub(super) const CTRL: usize = 0x08;
    pub(super) const BAUDDIV: usize = 0x10;
    pub(super) const STATE_TX_FULL: u32 = 1;
    pub(super) const STATE_RX_FULL: u32 = 2;
}

fn uart_read_reg(offset: usize) -> u32 {
    // SAFETY: UART0's register window on this board; aligned 32-bit device read.
    unsafe { core::ptr::read_volatile((UART0_BASE + offset) as *const u32) }
}

fn uart_write_reg(offset: usize, value: u32) {
    // SAFETY: as above; aligned 32-bit device write.
    unsafe { core::ptr::write_volatile((UART0_BASE + offset) as *mut u32, value) }
}

/// UART0: the console and the log.
pub struct Uart;

impl Uart {
    /// Enables the transmitter and receiver at 115200 baud.
    pub fn init() {
        uart_write_reg(uart_reg::BAUDDIV, SYSCLK_HZ / 115_200);
        uart_write_reg(uart_reg::CTRL, 0b11);
    }

    /// Sends one byte, waiting while the transmit buffer is full.
    pub fn write_byte(byte: u8) {
        while uart_read_reg(uart_reg::STATE) & uart_reg::STATE_TX_FULL != 0 {}
        uart_write_reg(uart_reg::DATA, u32::from(byte));
    }

    /// One received byte, if any.
    pub fn read_byte() -> Option<u8> {
        if uart_read_reg(uart_reg::STATE) & uart_reg::STATE_RX_FULL != 0 {
            Some((uart_read_reg(uart_reg::DATA) & 0xFF) as u8)
        } else {
            None
        }
    }

    /// Writes a whole line atomically (no log line can interleave), ending it with `\r\n`.
    pub fn write_line(args: core::fmt::Arguments<'_>) {
        critical_section::with(|_| {
            let _ = Uart.write_fmt(args);
            let _ = Uart.write_str("\r\n");
        });
    }
}

impl core::fmt::Write for Uart {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for byte in s.bytes() {
            Uart::write_byte(byte);
        }
        Ok(())
    }
}

// ---- log sink ---------------------------------------------------------------------------------

struct UartLogger;

impl log::Log for UartLogger {
    fn enabled(&self, _metadata: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        Uart::write_line(format_args!("[{:<5} {}] {}", record.level(), record.target(), record.args()));
    }

    fn flush(&self) {}
}

static LOGGER: UartLogger = UartLogger;

/// Routes `log` records to UART0, one line each.
pub fn init_log(level: log::LevelFilter) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

// ---- SysTick time driver ----------------------------------------------------------------------

/// SysTick interrupts per second: every millisecond. embassy-time counts in microseconds (its
/// default tick, shared with the real-board build), so one interrupt advances time by 1000
/// ticks; timers resolve to the millisecond.
const TICK_HZ: u32 = 1_000;
const TICKS_PER_INTERRUPT: u64 = embassy_time_driver::TICK_HZ / TICK_HZ as u64;

struct SysTickDriver {
    ticks: Mutex<Cell<u64>>,
    alarm: Mutex<Cell<u64>>,
    queue: Mutex<RefCell<Queue>>,
}

impl embassy_time_driver::Driver for SysTickDriver {
    fn now(&self) -> u64 {
        critical_section::with(|cs| self.ticks.borrow(cs).get())
    }

    fn schedule_wake(&self, at: u64, waker: &Waker) {
        critical_section::with(|cs| {
            let mut queue = self.queue.borrow(cs).borrow_mut();
            if queue.schedule_wake(at, waker) {
                let now = self.ticks.borrow(cs).get();
                self.alarm.borrow(cs).set(queue.next_expiration(now));
            }
        });
    }
}

embassy_time_driver::time_driver_impl!(static DRIVER: SysTickDriver = SysTickDriver {
    ticks: Mutex::new(Cell::new(0)),
    alarm: Mutex::new(Cell::new(u64::MAX)),
    queue: Mutex::new(RefCell::new(Queue::new())),
});

/// Starts SysTick at [`TICK_HZ`] from the processor clock.
pub fn init_time(mut syst: cortex_m::peripheral::SYST) {
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(SYSCLK_HZ / TICK_HZ - 1);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();
}

#[exception]
fn SysTick() {
    critical_section::with(|cs| {
        let ticks = DRIVER.ticks.borrow(cs);
        let now = ticks.get() + TICKS_PER_INTERRUPT;
        ticks.set(now);
        let alarm = DRIVER.alarm.borrow(cs);
        if now >= alarm.get() {
            alarm.set(DRIVER.queue.borrow(cs).borrow_mut().next_expiration(now));
        }
    });
}

/// Milliseconds since boot.
pub fn uptime_ms() -> u64 {
    embassy_time::Instant::now().as_millis()
}

// ---- interrupts -------------------------------------------------------------------------------

/// An external interrupt line, for the NVIC.
#[derive(Clone, Copy)]
pub struct Irq(pub u16);

// SAFETY: the number is one of the board's 32 external lines (checked by `unmask`).
unsafe impl cortex_m::interrupt::InterruptNumber for Irq {
    fn number(self) -> u16 {
        self.0
    }
}

/// Unmasks an external interrupt line.
pub fn unmask(irq: Irq) {
    if irq.0 < 32 {
        // SAFETY: the handlers in `__INTERRUPTS` are ready before any line is unmasked, and
        // unmasking does not break a critical section (the firmware's critical sections mask
        // all interrupts with PRIMASK, not per line).
        unsafe { cortex_m::peripheral::NVIC::unmask(irq) };
    }
}

extern "C" fn unused_interrupt() {}

extern "C" fn lan9118_interrupt() {
    lan9118::on_interrupt();
}

/// cortex-m-rt's `device` feature takes the external part of the vector table from the
/// `__INTERRUPTS` symbol (no PAC exists for this board).
#[unsafe(link_section = ".vector_table.interrupts")]
#[unsafe(no_mangle)]
#[used]
static __INTERRUPTS: [extern "C" fn(); 32] = {
    let mut table: [extern "C" fn(); 32] = [unused_interrupt; 32];
    table[LAN9118_IRQ as usize] = lan9118_interrupt;
    table
};

/// Peak stack use so far: the stack is painted at boot ([`paint_stack`]) and the lowest
/// overwritten word is found by scanning up from the stack's limit.
pub fn stack_used() -> usize {
    let (bottom, top) = stack_bounds();
    let mut address = bottom;
    while address < top {
        // SAFETY: `bottom..top` is the stack region of this RAM (linker symbols), word-aligned.
        let word = unsafe { core::ptr::read_volatile(address as *const u32) };
        if word != STACK_PAINT {
            break;
        }
        address += 4;
    }
    top - address
}

/// The stack's size: from the end of static data to the top of RAM.
pub fn stack_size() -> usize {
    let (bottom, top) = stack_bounds();
    top - bottom
}

/// Bytes of static data (`.data` + `.bss`).
pub fn static_ram() -> usize {
    unsafe extern "C" {
        static __sdata: u32;
        static __ebss: u32;
    }
    let start = &raw const __sdata as usize;
    let end = &raw const __ebss as usize;
    end.saturating_sub(start)
}

/// Bytes of flash in use: code and constants, then the initial values of `.data`.
pub fn flash_used() -> usize {
    unsafe extern "C" {
        static __sidata: u32;
        static __sdata: u32;
        static __edata: u32;
    }
    let data = (&raw const __edata as usize).saturating_sub(&raw const __sdata as usize);
    &raw const __sidata as usize + data
}

const STACK_PAINT: u32 = 0xC0DE_5AFE;

fn stack_bounds() -> (usize, usize) {
    unsafe extern "C" {
        static __ebss: u32;
        static _stack_start: u32;
    }
    let bottom = (&raw const __ebss as usize + 3) & !3;
    let top = &raw const _stack_start as usize;
    (bottom, top)
}

/// Paints the unused part of the stack (below the current stack pointer, with a margin) so that
/// [`stack_used`] can find the high-water mark.
pub fn paint_stack() {
    let (bottom, _top) = stack_bounds();
    let sp = cortex_m::register::msp::read() as usize;
    let mut address = bottom;
    while address + 256 < sp {
        // SAFETY: below the live stack (with a 256-byte margin) and above static data: memory
        // nothing uses yet.
        unsafe { core::ptr::write_volatile(address as *mut u32, STACK_PAINT) };
        address += 4;
    }
}

/// Ends the emulation (QEMU semihosting is not enabled by default, so this just stops here).
pub fn halt() -> ! {
    loop {
        cortex_m::asm::wfi();
    }
}

/// Writes a line for the console, with no log prefix.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => { $crate::board::Uart::write_line(format_args!($($arg)*)) };
}
