//! Key records for the crypto use cases, as read in the last second: an Encrypt, Sign or
//! GenerateMac of a busy key costs no database read. The material stays sealed in the cache
//! (opened per call into a `Zeroizing` buffer, as without it). An entry is believed only while
//! no key write has committed through this process since it was read (`Store::key_writes`), so
//! a change made here counts at once; one made through another server counts here within
//! [`KEY_CACHE_TTL`].

use std::collections::HashMap;
use std::sync::Mutex;

use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::app::Keyward;
use crate::domain::{GroupId, Key, KeyId};
use crate::{Error, Result};

/// How long a key record is believed without reading it again.
pub(crate) const KEY_CACHE_TTL: time::Duration = time::Duration::seconds(1);

/// At most this many keys are kept (the cache is emptied when full).
const KEY_CACHE_MAX: usize = 10_000;

#[derive(Default)]
pub(crate) struct KeyCache(Mutex<HashMap<KeyId, Cached>>);

#[derive(Clone)]
struct Cached {
    read_at: OffsetDateTime,
    /// `Store::key_writes` before the read.
    writes: u64,
    key: Key,
    sealed: Option<Vec<u8>>,
}

impl KeyCache {
    fn get(&self, id: KeyId, now: OffsetDateTime, writes: u64) -> Option<Cached> {
        let map = self.0.lock().ok()?;
        let c = map.get(&id)?;
        (c.writes == writes && now >= c.read_at && now - c.read_at < KEY_CACHE_TTL).then(|| c.clone())
    }

    fn put(&self, c: Cached) {
        if let Ok(mut map) = self.0.lock() {
            if map.len() >= KEY_CACHE_MAX {
                map.clear();
            }
            map.insert(c.key.id, c);
        }
    }
}

impl Keyward {
    /// The key `groups/{group}/keys/{id}` for a crypto call: from the cache when it is fresh,
    /// else read (NOT_FOUND as GetKey).
    pub(crate) async fn key_for_use(&self, group: GroupId, id: KeyId) -> Result<Key> {
        let now = self.now();
        let writes = self.store.key_writes();
        if let Some(c) = self.key_cache.get(id, now, writes)
            && c.key.group_id == group
        {
            return Ok(c.key);
        }
        let key = self.store.get_key(group, id).await?;
        self.key_cache.put(Cached { read_at: now, writes, key: key.clone(), sealed: None });
        Ok(key)
    }

    /// The material of Keyward key `key`, opened: sealed from the cache when it is fresh, else
    /// read.
    pub(crate) async fn material_for_use(&self, key: &Key) -> Result<Zeroizing<Vec<u8>>> {
        let now = self.now();
        let writes = self.store.key_writes();
        let cached = self.key_cache.get(key.id, now, writes);
        if let Some(sealed) = cached.as_ref().and_then(|c| c.sealed.as_ref()) {
            return self.store.open_material(key.group_id, key.id, sealed);
        }
        let (_, sealed) = self.store.sealed_material(key.id).await.map_err(|e| match e {
            Error::NotFound { .. } => Error::internal(format!("Keyward key {} has no material", key.name())),
            other => other,
        })?;
        let material = self.store.open_material(key.group_id, key.id, &sealed)?;
        if let Some(c) = cached {
            self.key_cache.put(Cached { sealed: Some(sealed), ..c });
        }
        Ok(material)
    }
}
