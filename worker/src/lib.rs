//! keyward-worker as a library: its jobs, each `run_once(keyward, now) -> Report`, live with the
//! use cases (`keyward_shared::jobs`); the binary only schedules them, tests call `run_once`
//! with a chosen `now`.

pub use keyward_shared::jobs::{deletion_check, estate, recovery, scheduled_rotation, scheduled_sync};
