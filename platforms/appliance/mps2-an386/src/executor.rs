//! A thread-mode executor loop that sleeps with WFI.
//!
//! embassy's own cortex-m thread executor idles on WFE, which QEMU's TCG implements as a yield,
//! not a sleep: an idle emulated board then burns half a host core. WFI sleeps until an
//! interrupt, in QEMU and on silicon. A task woken from thread mode (one task waking another)
//! sets `PENDED`, so the loop polls again instead of sleeping.

#![allow(unsafe_code)]

use core::sync::atomic::{AtomicBool, Ordering};

use embassy_executor::{Spawner, raw};
use static_cell::StaticCell;

static PENDED: AtomicBool = AtomicBool::new(false);

// SAFETY (export_name): the one `__pender` in the image; embassy-executor's own is compiled out
// (no `executor-thread` feature). It only sets a flag, as the raw executor's contract asks.
#[unsafe(export_name = "__pender")]
fn pender(_context: *mut ()) {
    PENDED.store(true, Ordering::Release);
}

/// Runs the executor forever; `init` spawns the first tasks.
pub(crate) fn run(init: impl FnOnce(Spawner)) -> ! {
    static EXECUTOR: StaticCell<raw::Executor> = StaticCell::new();
    let executor: &'static raw::Executor = EXECUTOR.init(raw::Executor::new(core::ptr::null_mut()));
    init(executor.spawner());
    loop {
        // SAFETY: only this loop calls `poll`, never reentrantly (the pender only sets a flag).
        unsafe { executor.poll() };
        cortex_m::interrupt::free(|_| {
            // With interrupts masked, nothing can pend between the check and the WFI; a pending
            // interrupt still ends the WFI, and runs once the mask is lifted.
            if !PENDED.swap(false, Ordering::AcqRel) {
                cortex_m::asm::wfi();
            }
        });
    }
}
