//! End-to-end suites: one test binary, so one emulator process serves them all.

mod smoke;
mod sync;
