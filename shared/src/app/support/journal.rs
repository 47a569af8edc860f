//! Writing the journal of multi-step AWS operations (`domain::Operation`): the intent before
//! the first AWS call, then each step once AWS confirmed it, in the same transaction as the key
//! record it concerns where there is one. The worker's recovery (`jobs::recovery`) finishes or
//! compensates what a crash left open.

use sea_orm::{ConnectionTrait, TransactionTrait};
use time::OffsetDateTime;

use crate::Result;
use crate::domain::Operation;
use crate::kms::{CreateKeyInput, KeyMetadata, Kms};
use crate::store::Store;

/// How long an unfinished operation may stay untouched before the worker compensates it.
pub(crate) const STALE_OPERATION: std::time::Duration = std::time::Duration::from_secs(600);

/// Records a new entry (its intent).
pub(crate) async fn begin<C: ConnectionTrait + TransactionTrait>(store: &Store<C>, op: &Operation) -> Result<()> {
    store.insert_operation(op).await
}

/// Records the entry's current step (or end), inside `store`'s transaction if it is one.
pub(crate) async fn record<C: ConnectionTrait + TransactionTrait>(store: &Store<C>, op: &Operation) -> Result<()> {
    store.update_operation(op).await
}

/// AWS CreateKey as an operation's first AWS step: if AWS refuses, nothing was made, so the
/// entry ends FAILED (recorded) and the AWS error is returned.
pub(crate) async fn create_aws_key(
    store: &Store,
    kms: &dyn Kms,
    op: &mut Operation,
    input: CreateKeyInput,
    now: OffsetDateTime,
) -> Result<KeyMetadata> {
    match kms.create_key(input).await {
        Ok(meta) => Ok(meta),
        Err(e) => {
            op.fail(&format!("CreateKey: {e}"), now);
            record(store, op).await?;
            Err(e.into())
        }
    }
}
