//! End-to-end suites: one test binary, so one emulator process serves them all.

mod connection;
mod groups;
mod keys;
mod secrets;
mod smoke;
mod sync;
mod worker;
