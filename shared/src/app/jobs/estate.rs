//! The estate pass: counts every key Keyward holds (by group and state, pending deletion,
//! imported material expiring, rotations due) and sets the metrics' gauges from them. Reads only.

use time::OffsetDateTime;

use crate::Result;
use crate::app::Keyward;
use crate::store::Estate;

/// One pass at `now`: the counts, also set as the process's gauges.
pub async fn run_once(keyward: &Keyward, now: OffsetDateTime) -> Result<Estate> {
    let estate = keyward.store.estate(now).await?;
    crate::metrics::record_estate(&estate);
    Ok(estate)
}
