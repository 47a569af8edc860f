//! The master keyring's lifecycle: every stored secret and Keyward key material sealed again
//! under the current master key (`keyward-server reseal`), so that the older keys can then be
//! dropped from the keyring. Servers may keep running meanwhile (their keyring must hold both).

use super::support::records::ok_event;
use super::{Ctx, Keyward};
use crate::Result;
use crate::domain::Action;
use crate::store::ResealReport;

impl Keyward {
    /// Reseals every value not under the current master key (see `Store::reseal`) and audits
    /// the counts. Values that do not open are left as they are and named in the report.
    pub async fn reseal(&self, ctx: &Ctx) -> Result<ResealReport> {
        let report = self.store.reseal().await?;
        let tx = self.store.begin_audited().await?;
        let detail = format!(
            "{} resealed, {} already current, {} do not open",
            report.resealed,
            report.current,
            report.unopened.len()
        );
        ok_event(&tx, &ctx.caller, Action::Reseal, "master keyring".to_owned(), detail, ctx.now).await?;
        tx.commit().await?;
        tracing::info!(
            resealed = report.resealed,
            current = report.current,
            unopened = report.unopened.len(),
            "resealed"
        );
        Ok(report)
    }
}
