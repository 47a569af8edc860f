//! Leases as locks: a key's lock (`key/{id}`), held by every writer of the key's row so that two
//! changes never interleave their AWS calls and writes, and named locks for other short
//! critical sections (suggesting copy names). Rows of the `leases` table, so they hold across
//! processes; a holder that dies leaves a lease that expires by itself.

use std::time::Duration;

use crate::app::Keyward;
use crate::domain::{GroupId, KeyId};
use crate::{Error, Result, store};

/// How long a key lock lives if its holder dies without releasing it.
const KEY_LOCK_TTL: Duration = Duration::from_secs(120);

/// How often a waiter asks for a lock again.
const POLL: Duration = Duration::from_millis(20);

/// A held lease; released on drop.
pub(crate) struct KeyLock {
    store: store::Store,
    name: String,
    holder: String,
}

impl KeyLock {
    /// Gives the lease back now (dropping it gives it back soon after, from a spawned task).
    pub(crate) async fn release(mut self) {
        let name = std::mem::take(&mut self.name);
        if let Err(e) = self.store.release_lease(&name, &self.holder).await {
            tracing::warn!(lease = %name, error = %e, "could not release a lease; it expires by itself");
        }
    }
}

impl Drop for KeyLock {
    fn drop(&mut self) {
        if self.name.is_empty() {
            return;
        }
        let (store, name, holder) =
            (self.store.clone(), std::mem::take(&mut self.name), std::mem::take(&mut self.holder));
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = store.release_lease(&name, &holder).await {
                    tracing::warn!(lease = %name, error = %e, "could not release a key lock; it expires by itself");
                }
            });
        }
    }
}

impl Keyward {
    /// The lease named `name` for this operation, waiting up to `wait` for it; `None` if
    /// another holder still has it then.
    pub(crate) async fn lock_named_within(&self, name: &str, wait: Duration) -> Result<Option<KeyLock>> {
        let holder = format!("{}-{}", self.holder, uuid::Uuid::now_v7());
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if self.store.try_lease(name, &holder, KEY_LOCK_TTL, self.now()).await? {
                return Ok(Some(KeyLock { store: self.store.clone(), name: name.to_owned(), holder }));
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The key's lock, waiting up to `wait` for it; `None` if another change still holds it.
    pub(crate) async fn lock_key_within(&self, id: KeyId, wait: Duration) -> Result<Option<KeyLock>> {
        self.lock_named_within(&format!("key/{id}"), wait).await
    }

    /// The key's lock for a change. Waits up to 10 s for another change of the key to finish
    /// (changes of one key queue up), then ABORTED; ABORTED too while an interrupted rotation of
    /// the key (as the rotated key or its successor) waits for the worker to finish it.
    pub(crate) async fn lock_key(&self, group: GroupId, id: KeyId) -> Result<KeyLock> {
        let lock = self.lock_key_within(id, Duration::from_secs(10)).await?.ok_or_else(|| {
            Error::Aborted(format!("another change of groups/{group}/keys/{id} is under way; try again"))
        })?;
        self.refuse_open_rotation(group, id).await?;
        Ok(lock)
    }

    /// ABORTED while a rotation journal entry touching the key is open (not finished, not
    /// compensated): only that rotation (resumed by the worker) may change the key meanwhile.
    pub(crate) async fn refuse_open_rotation(&self, group: GroupId, id: KeyId) -> Result<()> {
        if self.store.open_rotation_touching(id).await? {
            return Err(Error::Aborted(format!(
                "groups/{group}/keys/{id} is part of an interrupted rotation that the worker is finishing; try again once it is done"
            )));
        }
        Ok(())
    }

    /// Keeps `locks` held while a long operation runs (a rotation of many aliases): each lease
    /// is taken again every third of its lifetime until the guard is dropped.
    pub(crate) fn keep_alive(&self, locks: &[&KeyLock]) -> Renewal {
        let leases: Vec<(String, String)> = locks.iter().map(|l| (l.name.clone(), l.holder.clone())).collect();
        let kw = self.clone();
        Renewal(tokio::spawn(async move {
            loop {
                tokio::time::sleep(KEY_LOCK_TTL / 3).await;
                for (name, holder) in &leases {
                    if let Err(e) = kw.store.try_lease(name, holder, KEY_LOCK_TTL, kw.now()).await {
                        tracing::warn!(lease = %name, error = %e, "could not renew a key lock");
                    }
                }
            }
        }))
    }
}

/// Renews leases until dropped (see [`Keyward::keep_alive`]).
pub(crate) struct Renewal(tokio::task::JoinHandle<()>);

impl Drop for Renewal {
    fn drop(&mut self) {
        self.0.abort();
    }
}
