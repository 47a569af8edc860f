//! The clock tests give the server: the system's time plus an offset the test moves forward, so
//! a test separates timestamps by advancing the clock instead of sleeping.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use time::OffsetDateTime;

/// System time plus an adjustable offset (nanoseconds). Shared by every `Keyward` of a test.
#[derive(Debug, Default)]
pub struct TestClock {
    offset_nanos: AtomicI64,
}

impl TestClock {
    /// The system's clock, not moved yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward by `by`, for every `Keyward` reading it.
    pub fn advance(&self, by: Duration) {
        let nanos = i64::try_from(by.as_nanos()).expect("an advance that fits in i64 nanoseconds");
        self.offset_nanos.fetch_add(nanos, Ordering::SeqCst);
    }

    /// The time the server sees now (before `Keyward` cuts it to microseconds).
    pub fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + time::Duration::nanoseconds(self.offset_nanos.load(Ordering::SeqCst))
    }
}

impl keyward_shared::Clock for TestClock {
    fn now(&self) -> OffsetDateTime {
        TestClock::now(self)
    }
}
