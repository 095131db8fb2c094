//! Hardware-in-the-loop tests of the appliance firmware (`tests/`); no library code.
//!
//! `cargo test -p lifeline-hil-tests` builds the firmware (`platforms/appliance`), boots it on
//! QEMU's `mps2-an386`, and drives it through its UART console and a real provider endpoint
//! against a real relay on `127.0.0.1`. See `README.md`.
