//! The worker's jobs, each `run_once(keyward, now) -> Report`: the binary only schedules them;
//! tests call `run_once` with a chosen `now`. A job is idempotent, one item's failure is counted
//! and logged and never stops the pass, and with several workers each item is claimed in the
//! database by one of them.

pub mod deletion_check;
pub mod estate;
pub mod recovery;
pub mod scheduled_rotation;
pub mod scheduled_sync;
