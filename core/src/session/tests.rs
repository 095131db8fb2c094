//! Unit tests of the session endpoint, by state. The multi-endpoint behaviour is in
//! `tests/simulation.rs`.
