//! The controller's register file: the only `unsafe` code in the crate (volatile MMIO).

#![allow(unsafe_code)]

/// Offsets of the registers this driver uses (LAN9118 datasheet, section 5: "System Control and
/// Status Registers"; the same offsets are in QEMU's `hw/net/lan9118.c`).
pub(crate) mod offset {
    pub(crate) const RX_DATA_FIFO: usize = 0x00;
    pub(crate) const TX_DATA_FIFO: usize = 0x20;
    pub(crate) const RX_STATUS_FIFO: usize = 0x40;
    pub(crate) const TX_STATUS_FIFO: usize = 0x48;
    pub(crate) const ID_REV: usize = 0x50;
    pub(crate) const IRQ_CFG: usize = 0x54;
    pub(crate) const INT_STS: usize = 0x58;
    pub(crate) const INT_EN: usize = 0x5C;
    pub(crate) const BYTE_TEST: usize = 0x64;
    pub(crate) const FIFO_INT: usize = 0x68;
    pub(crate) const RX_CFG: usize = 0x6C;
    pub(crate) const TX_CFG: usize = 0x70;
    pub(crate) const HW_CFG: usize = 0x74;
    pub(crate) const RX_FIFO_INF: usize = 0x7C;
    pub(crate) const TX_FIFO_INF: usize = 0x80;
    pub(crate) const PMT_CTRL: usize = 0x84;
    pub(crate) const MAC_CSR_CMD: usize = 0xA4;
    pub(crate) const MAC_CSR_DATA: usize = 0xA8;
}

/// The last register offset (inclusive) the driver may touch; the window is 256 bytes.
const WINDOW: usize = 0x100;

/// A LAN9118 register window at a fixed address.
#[derive(Clone, Copy)]
pub(crate) struct Registers {
    base: usize,
}

impl Registers {
    /// # Safety
    ///
    /// `base` must be the address of a LAN9118's 256-byte register window, mapped as device
    /// memory, and nothing else may use it while this value (or a copy) is alive except the
    /// interrupt handler of this crate, which touches only `INT_STS`/`INT_EN` inside critical
    /// sections.
    pub(crate) const unsafe fn new(base: usize) -> Registers {
        Registers { base }
    }

    pub(crate) fn read(self, offset: usize) -> u32 {
        debug_assert!(offset < WINDOW && offset.is_multiple_of(4));
        let offset = (offset % WINDOW) & !3;
        // SAFETY: `new`'s contract: `base .. base + 0x100` is the device's register window, and
        // `offset` is word-aligned and inside it, so this is an aligned 32-bit device read.
        unsafe { core::ptr::read_volatile((self.base + offset) as *const u32) }
    }

    pub(crate) fn write(self, offset: usize, value: u32) {
        debug_assert!(offset < WINDOW && offset.is_multiple_of(4));
        let offset = (offset % WINDOW) & !3;
        // SAFETY: as in `read`: an aligned 32-bit write inside the device's register window.
        unsafe { core::ptr::write_volatile((self.base + offset) as *mut u32, value) }
    }
}
