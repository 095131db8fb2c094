//! Links with cortex-m-rt's `link.x`; `memory.x` comes from embassy-stm32 (`memory-x` feature:
//! the STM32F429ZI's 2 MiB flash and 192 KiB main SRAM).
fn main() {
    println!("cargo:rustc-link-arg-bins=-Tlink.x");
}
