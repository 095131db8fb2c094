//! End-to-end tests for Lifeline; everything lives in `tests/`.
