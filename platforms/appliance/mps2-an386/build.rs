//! Puts `memory.x` and `device.x` where the linker (cortex-m-rt's `link.x`) finds them.
// A build script reports failure by panicking.
#![allow(clippy::expect_used)]

use std::env;
use std::fs;
use std::path::PathBuf;

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    for file in ["memory.x", "device.x"] {
        fs::copy(file, out.join(file)).expect("copy linker script");
        println!("cargo:rerun-if-changed={file}");
    }
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rustc-link-arg=-Tlink.x");
}
