//! Writes of records with their audit event in one transaction: a changed key (only if nobody
//! changed it since it was read), a new Keyward key with its sealed material, and a key whose
//! creation was undone.

use time::OffsetDateTime;

use super::aws_keys::next_check;
use super::{ABANDONED_WINDOW, new_etag};
use crate::Result;
use crate::app::requests::NewKey;
use crate::app::{Ctx, Keyward};
use crate::domain::{
    Action, Caller, GroupId, Key, KeyId, KeyLink, KeyLinkKind, KeyOp, KeySource, KeySpec, KeyState, NewAuditEvent,
    OUTCOME_OK, RotationPolicy,
};
use crate::store::Store;
use sea_orm::{ConnectionTrait, TransactionTrait};

use super::checks::KEY_NAME_MAX;

/// Longest `detail` kept in an event.
const DETAIL_MAX: usize = 512;

/// `s` cut to [`DETAIL_MAX`] bytes at a character boundary.
pub(crate) fn cap(mut s: String) -> String {
    if s.len() > DETAIL_MAX {
        let mut end = DETAIL_MAX;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// Appends the success event of `action` on `resource` in `tx`, at `now`.
pub(crate) async fn ok_event(
    tx: &Store<sea_orm::DatabaseTransaction>,
    caller: &Caller,
    action: Action,
    resource: String,
    detail: String,
    now: OffsetDateTime,
) -> Result<()> {
    tx.append_event(NewAuditEvent { caller, action, resource, outcome: OUTCOME_OK, detail: cap(detail) }, now).await?;
    Ok(())
}

/// A link of `kind` to `other`, made by the caller now.
pub(crate) fn link(kind: KeyLinkKind, other: &Key, ctx: &Ctx) -> KeyLink {
    KeyLink { kind, group_id: other.group_id, key_id: other.id, actor: ctx.caller.actor.clone(), create_time: ctx.now }
}

/// The name a rotated key gets: `wanted`, or — taken meanwhile (a rotation of the same name
/// within the second) — `wanted` with the key's id appended, which makes it unique.
pub(crate) async fn retired_name<C: ConnectionTrait + TransactionTrait>(
    store: &Store<C>,
    k: &Key,
    wanted: String,
) -> Result<String> {
    if wanted == k.display_name || !store.key_name_taken(k.group_id, &wanted).await? {
        return Ok(wanted);
    }
    let short: String = k.id.to_string().chars().take(8).collect();
    Ok(format!("{}-{short}", wanted.chars().take(KEY_NAME_MAX - 9).collect::<String>()))
}

/// A new key record in `group_id` made by `actor` at `now`: a fresh id and etag, an ENABLED
/// AES-256 Keyward key with no name, tags, AWS details, links or policy. Callers say what the
/// key is with struct update syntax (`Key { display_name, .., ..new_record(..) }`).
pub(crate) fn new_record(group_id: GroupId, actor: &str, now: OffsetDateTime) -> Key {
    Key {
        id: KeyId::new(),
        group_id,
        display_name: String::new(),
        description: String::new(),
        key_spec: KeySpec::Aes256,
        key_ops: Vec::new(),
        state: KeyState::Enabled,
        source: KeySource::Keyward,
        tags: Default::default(),
        aws: None,
        links: Vec::new(),
        rotation_policy: None,
        created_by: actor.to_owned(),
        create_time: now,
        update_time: now,
        etag: new_etag(),
    }
}

/// A new Keyward key (material held by Keyward) from a request.
pub(crate) fn new_keyward_key(ctx: &Ctx, group_id: GroupId, new: &NewKey, source: KeySource) -> Key {
    Key {
        display_name: new.display_name.clone(),
        description: new.description.clone(),
        key_spec: new.key_spec,
        // A key pair or HMAC key made without key_ops: its spec's default usage's operations.
        key_ops: match new.key_spec.aws_key_usage(&new.key_ops) {
            Ok(u) if new.key_ops.is_empty() && new.key_spec.aes_bytes().is_none() => {
                KeyOp::for_aws_usage(Some(u.aws_name()))
                    .into_iter()
                    .filter(|o| !matches!(o, KeyOp::WrapKey | KeyOp::UnwrapKey))
                    .collect()
            }
            _ => new.key_ops.clone(),
        },
        source,
        tags: new.tags.as_map().clone(),
        rotation_policy: new.rotation_schedule.clone().map(|r| RotationPolicy::new(r, ctx.now)),
        ..new_record(group_id, &ctx.caller.actor, ctx.now)
    }
}

impl Keyward {
    /// Stores a changed key — only if nobody changed it since it was read (its etag), else
    /// ABORTED — with its deletion-check time and its audit event, in one transaction. Gives
    /// the key a new etag and update time.
    pub(crate) async fn commit_key_change(&self, ctx: &Ctx, k: &mut Key, action: Action, detail: String) -> Result<()> {
        k.update_time = ctx.now;
        let prev_etag = std::mem::replace(&mut k.etag, new_etag());
        let tx = self.store.begin_audited().await?;
        tx.replace_key(k, &prev_etag).await?;
        tx.set_next_check(k.id, next_check(k, ctx.now)).await?;
        ok_event(&tx, &ctx.caller, action, k.name(), detail, ctx.now).await?;
        tx.commit().await
    }

    /// Inserts a Keyward key with its sealed material, its links and the audit event, in one
    /// transaction.
    pub(crate) async fn insert_keyward_key(&self, ctx: &Ctx, key: &Key, material: &[u8], action: Action) -> Result<()> {
        let tx = self.store.begin_audited().await?;
        tx.insert_key_with_material(key, material).await?;
        for link in &key.links {
            tx.insert_link(key.id, link).await?;
        }
        let detail = format!("{} {}", key.key_spec.api_name(), key.source.name());
        ok_event(&tx, &ctx.caller, action, key.name(), detail, ctx.now).await?;
        tx.commit().await?;
        tracing::info!(group_id = %key.group_id, key_id = %key.id, "keyward key created");
        Ok(())
    }

    /// Records a key whose creation was undone: PENDING_DELETION when AWS scheduled it (else
    /// as AWS left it), renamed `<name>~abandoned-<id>` so the name is free for a retry.
    pub(crate) async fn record_abandoned(&self, key: &mut Key, deletion: Option<Option<OffsetDateTime>>) {
        let now = self.now();
        key.rename_abandoned();
        if let Some(deletion) = deletion {
            key.mark_pending_deletion(deletion, now + ABANDONED_WINDOW);
        }
        key.update_time = now;
        let prev = std::mem::replace(&mut key.etag, new_etag());
        let saved = async {
            self.store.replace_key(key, &prev).await?;
            self.store.set_next_check(key.id, next_check(key, now)).await
        }
        .await;
        if let Err(e) = saved {
            tracing::error!(key_id = %key.id, error = %e, "could not record an abandoned key; the next sync refreshes it");
        }
    }
}
