//! The journaled import of key material into a new AWS key, shared by ImportKey and CopyKey
//! (and, with rotation, by the copies a rotation makes).
//!
//! The intent is journaled before AWS CreateKey, the new AWS key is recorded (as a
//! PENDING_IMPORT virtual key) right after it, and the key becomes ENABLED only once AWS
//! confirmed ImportKeyMaterial. On any failure the new AWS key is scheduled for deletion
//! (7 days) and the outcome reported; after a crash the worker's recovery does the same for
//! journal entries left open.

use std::sync::Arc;

use time::OffsetDateTime;

use super::aws_keys::{aws_details, check_aliases_free, create_aliases, import_material, next_check};
use super::checks::refused;
use super::journal;
use super::records::{link, new_record, ok_event};
use super::{ABANDONED_WINDOW, new_etag};
use crate::app::{Ctx, Keyward};
use crate::domain::{
    Action, Event, Group, Key, KeyId, KeyLinkKind, KeySource, KeySpec, KeyState, KeyUsage, OpKind, OpState, Operation,
    transition,
};
use crate::kms::{CreateKeyInput, Kms, Purpose};
use crate::{Error, Precondition, Result};

/// What to make in AWS: the new key's fields (from ImportKey's or CopyKey's request).
pub(crate) struct Import<'a> {
    pub(crate) new: &'a crate::app::NewKey,
    pub(crate) material: &'a [u8],
    pub(crate) source: KeySource,
    /// The Keyward key the material comes from (CopyKey): linked both ways.
    pub(crate) copied_from: Option<&'a Key>,
    pub(crate) valid_to: Option<OffsetDateTime>,
    pub(crate) action: Action,
}

/// Appends `note` to the message of `e` (keeping its code).
fn with_note(e: Error, note: &str) -> Error {
    match e {
        Error::PermissionDenied(m) => Error::PermissionDenied(format!("{m}; {note}")),
        Error::Unavailable(m) => Error::Unavailable(format!("{m}; {note}")),
        Error::DeadlineExceeded(m) => Error::DeadlineExceeded(format!("{m}; {note}")),
        Error::Aborted(m) => Error::Aborted(format!("{m}; {note}")),
        Error::ResourceExhausted(m) => Error::ResourceExhausted(format!("{m}; {note}")),
        Error::Unimplemented(m) => Error::Unimplemented(format!("{m}; {note}")),
        Error::Unauthenticated(m) => Error::Unauthenticated(format!("{m}; {note}")),
        Error::Forbidden(m) => Error::Forbidden(format!("{m}; {note}")),
        Error::AlreadyExists { resource, message } => {
            Error::AlreadyExists { resource, message: format!("{message}; {note}") }
        }
        Error::FailedPrecondition { kind, subject, description } => {
            Error::FailedPrecondition { kind, subject, description: format!("{description}; {note}") }
        }
        Error::InvalidArgument(mut v) => {
            if let Some(first) = v.first_mut() {
                first.description = format!("{}; {note}", first.description);
            }
            Error::InvalidArgument(v)
        }
        // Mid-operation, "not found" is about AWS's key or import token, not the caller's names.
        Error::NotFound { resource } => Error::FailedPrecondition {
            kind: Precondition::AwsImport,
            subject: resource.clone(),
            description: format!("{resource}; {note}"),
        },
        other @ Error::Internal(_) => other,
    }
}

impl Keyward {
    /// Imports the material into a new EXTERNAL AWS key of `group` (see the module docs).
    pub(crate) async fn import_into_aws(&self, ctx: &Ctx, group: &Group, imp: Import<'_>) -> Result<Key> {
        let new = imp.new;
        let kms = self.connect(group, Purpose::Work)?;
        check_aliases_free(&kms, &new.aliases).await?;
        let mut op = Operation::start(OpKind::Import, group.id, KeyId::new(), ctx.now);
        journal::begin(&self.store, &op).await?;
        let input = CreateKeyInput {
            key_spec: KeySpec::SymmetricDefault,
            key_usage: KeyUsage::EncryptDecrypt,
            description: new.description.clone(),
            tags: new.tags.as_map().iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            external: true,
            policy: new.key_policy.clone(),
        };
        let meta = journal::create_aws_key(&self.store, kms.as_ref(), &mut op, input, self.now()).await?;
        // Known to Keyward before anything else happens in AWS.
        let mut key = Key {
            id: op.key_id,
            display_name: new.display_name.clone(),
            description: new.description.clone(),
            key_spec: KeySpec::SymmetricDefault,
            key_ops: new.key_ops.clone(),
            state: KeyState::PendingImport,
            source: imp.source,
            tags: new.tags.as_map().clone(),
            aws: Some(aws_details(&meta, Vec::new(), None)),
            links: imp.copied_from.map(|s| vec![link(KeyLinkKind::CopiedFrom, s, ctx)]).unwrap_or_default(),
            ..new_record(group.id, &ctx.caller.actor, ctx.now)
        };
        key.set_state(KeyState::PendingImport);
        op.aws_key_id = Some(meta.key_id.clone());
        op.advance(OpState::AwsKeyCreated, self.now());
        let recorded = async {
            let tx = self.store.begin_audited().await?;
            tx.insert_key(&key).await?;
            journal::record(&tx, &op).await?;
            tx.commit().await
        }
        .await;
        if let Err(e) = recorded {
            // Not recorded (e.g. the display name was taken meanwhile): do not leave the AWS key.
            self.abandon_aws_key(&kms, &meta.key_id, &[]).await;
            op.compensate(&format!("not recorded: {e}"), self.now());
            let _ = journal::record(&self.store, &op).await;
            return Err(e);
        }

        let mut created_aliases = Vec::new();
        let mut result = import_material(&kms, &meta.key_id, imp.material, imp.valid_to).await.map_err(Error::from);
        if result.is_ok() {
            let (made, err) = create_aliases(&kms, &meta.key_id, &new.aliases).await;
            created_aliases = made;
            if let Some(e) = err {
                result = Err(e);
            }
        }
        if let Err(e) = result {
            let note = self.compensate_import(&kms, &mut key, &mut op, &created_aliases, &e.to_string()).await;
            return Err(with_note(e, &note));
        }

        let state = transition(key.state, Event::ImportMaterial).map_err(|e| refused(&key, e))?;
        key.set_state(state);
        if let Some(a) = key.aws.as_mut() {
            a.aliases = created_aliases.clone();
            a.managed_aliases = created_aliases;
            a.valid_to = imp.valid_to;
            // Read now so that the next sync finds nothing new (best effort).
            a.key_policy = kms.get_key_policy(&meta.key_id).await.ok();
        }
        key.update_time = self.now().max(ctx.now);
        let prev_etag = std::mem::replace(&mut key.etag, new_etag());
        op.finish(key.update_time);
        let tx = self.store.begin_audited().await?;
        tx.replace_key(&key, &prev_etag).await?;
        journal::record(&tx, &op).await?;
        if let Some(s) = imp.copied_from {
            tx.insert_link(key.id, &key.links[0]).await?;
            tx.insert_link(s.id, &link(KeyLinkKind::CopiedTo, &key, ctx)).await?;
        }
        let detail = match imp.copied_from {
            Some(s) => format!("copy of {} into {}", s.name(), meta.arn),
            None => format!("imported into {}", meta.arn),
        };
        ok_event(&tx, &ctx.caller, imp.action, key.name(), detail, ctx.now).await?;
        tx.commit().await?;
        tracing::info!(group_id = %group.id, key_id = %key.id, aws_key_id = %meta.key_id, "key material imported");
        Ok(key)
    }

    /// Removes the aliases made and schedules the AWS key for deletion (7 days); records the
    /// virtual key PENDING_DELETION and the journal entry COMPENSATED (or left open for the
    /// worker when AWS refused). Returns a note for the caller.
    async fn compensate_import(
        &self,
        kms: &Arc<dyn Kms>,
        key: &mut Key,
        op: &mut Operation,
        aliases: &[String],
        why: &str,
    ) -> String {
        let aws_id = key.aws.as_ref().map(|a| a.aws_key_id.clone()).unwrap_or_default();
        let now = self.now();
        key.rename_abandoned();
        match self.abandon_aws_key(kms, &aws_id, aliases).await {
            Some(deletion) => {
                key.mark_pending_deletion(deletion, now + ABANDONED_WINDOW);
                op.compensate(why, now);
            }
            // Left for the worker's recovery pass; the key stays PENDING_IMPORT, never ENABLED.
            None => op.note(why, now),
        }
        key.update_time = now;
        let prev_etag = std::mem::replace(&mut key.etag, new_etag());
        let saved = async {
            let tx = self.store.begin_audited().await?;
            tx.replace_key(key, &prev_etag).await?;
            tx.set_next_check(key.id, next_check(key, now)).await?;
            journal::record(&tx, op).await?;
            tx.commit().await
        }
        .await;
        if let Err(e) = saved {
            tracing::error!(key_id = %key.id, error = %e, "could not record the compensation of a failed import");
        }
        if op.state == OpState::Compensated {
            format!(
                "the new AWS key {aws_id} was scheduled for deletion in 7 days and Keyward shows it PENDING_DELETION"
            )
        } else {
            format!("the new AWS key {aws_id} could not be scheduled for deletion yet; the worker retries")
        }
    }
}
