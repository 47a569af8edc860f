//! What the use cases share: the AWS client cache (`clients`), key locks (`locks`), the typed
//! journal (`journal`), AWS-key helpers (`aws_keys`), checks of requests (`checks`), record
//! writes with their audit events (`records`) and the journaled import of material into a new
//! AWS key (`imports`). Use-case modules import this room, never each other.

pub(crate) mod aws_keys;
pub(crate) mod checks;
pub(crate) mod clients;
pub(crate) mod imports;
pub(crate) mod journal;
pub(crate) mod key_cache;
pub(crate) mod locks;
pub(crate) mod records;

/// The deletion window of keys Keyward abandons (AWS's minimum).
pub(crate) const ABANDONED_WINDOW: std::time::Duration = std::time::Duration::from_secs(7 * 86_400);

/// A new etag (changes on every write of a resource).
pub(crate) fn new_etag() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}
