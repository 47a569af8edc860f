//! Key use cases: generate (CreateKey), read, list with filters.

use super::requests::NewKey;
use super::support::aws_keys::{aws_details, check_aliases_free, create_aliases, rotation_of};
use super::support::checks::{self, none_bad};
use super::support::records::{new_keyward_key, new_record};
use super::{Ctx, Keyward};
use crate::domain::{
    Action, FieldViolation, GroupId, GroupKind, Key, KeyCursor, KeyFilter, KeyId, KeyOp, KeyOrder, KeySource,
    Permission, RotationPolicy,
};
use crate::kms::{CreateKeyInput, Purpose};
use crate::{Error, Result};

impl Keyward {
    pub async fn get_key(&self, _ctx: &Ctx, group: GroupId, id: KeyId) -> Result<Key> {
        self.store.get_key(group, id).await
    }

    /// ListKeys: `group` `None` lists every group; in `order` after `after`, at most `limit`.
    /// Across groups, only the groups the caller reads.
    pub async fn list_keys(
        &self,
        ctx: &Ctx,
        group: Option<GroupId>,
        filter: &KeyFilter,
        order: KeyOrder,
        after: Option<&KeyCursor>,
        limit: u64,
    ) -> Result<Vec<Key>> {
        let only = match group {
            Some(g) => {
                self.store.get_group(g).await?;
                None
            }
            None => ctx.caller.grants.groups_with(Permission::ReadGroup),
        };
        self.store.list_keys(group, only.as_deref(), filter, order, after, limit).await
    }

    /// LookupKey: the one key matching `filter` (an alias, key ARN or AWS key id term, shown
    /// in errors as `what`), in `group` or in every group the caller reads. None → NOT_FOUND;
    /// keys in several groups (two groups reaching one account) → INVALID_ARGUMENT naming them.
    pub async fn lookup_key(&self, ctx: &Ctx, group: Option<GroupId>, filter: &KeyFilter, what: &str) -> Result<Key> {
        let mut found = self.list_keys(ctx, group, filter, KeyOrder::default(), None, 10).await?;
        match found.len() {
            0 => {
                let scope = group.map_or("any group you read".to_owned(), |g| format!("groups/{g}"));
                Err(Error::not_found(format!("a key {what} in {scope}")))
            }
            1 => Ok(found.remove(0)),
            n => {
                let names: Vec<String> = found.iter().map(Key::name).collect();
                let more = if n == 10 { " and maybe more" } else { "" };
                Err(Error::invalid(
                    "parent",
                    format!("{what} names {n} keys{more}: {}; give one group as parent", names.join(", ")),
                ))
            }
        }
    }

    /// CreateKey. In an AWS_KMS group: checks everything first (no AWS call on bad input),
    /// then AWS CreateKey and CreateAlias per alias. If an alias is refused, the new AWS key is
    /// not left behind: its aliases are removed and it is scheduled for deletion after the
    /// minimum 7 days, and the answer names the alias's current owner (ALREADY_EXISTS).
    /// In a REGULAR group: new material made here (AES bytes; an RSA, ECC or Ed25519 key pair as
    /// PKCS #8; HMAC bytes), sealed at rest.
    pub async fn create_key(&self, ctx: &Ctx, group_id: GroupId, new: NewKey) -> Result<Key> {
        let group = self.store.get_group(group_id).await?;
        let mut bad = checks::key_fields(Some(&new.display_name), Some(&new.description), Some(&new.aliases));
        bad.extend(new.key_policy.as_deref().and_then(checks::key_policy));
        if let Some(sched) = &new.rotation_schedule {
            let rotates = checks::Rotates::of(group.kind == GroupKind::AwsKms, KeySource::AwsNative);
            bad.extend(checks::rotation_schedule(sched, new.key_spec, rotates));
        }
        if let Some(a) = &group.aws_kms
            && let Err(e) = new.key_spec.offered_in(a.region.as_str())
        {
            bad.push(FieldViolation::new("key.key_spec", e));
        }
        let usage = match group.kind {
            GroupKind::AwsKms => match new.key_spec.aws_key_usage(&new.key_ops) {
                Ok(u) => Some(u),
                Err(e) => {
                    let field = if new.key_spec.aws_name().is_none() { "key.key_spec" } else { "key.key_ops" };
                    bad.push(FieldViolation::new(field, e));
                    None
                }
            },
            GroupKind::Regular => {
                bad.extend(checks::new_keyward_key(&new));
                None
            }
        };
        none_bad(bad)?;
        self.check_policies(group_id, &group.crypto_policy, new.key_spec, &new.key_ops)?;
        self.check_name_free(group_id, &new.display_name).await?;
        let Some(usage) = usage else {
            // AES bytes, or a key pair as PKCS #8, or HMAC bytes: sealed at rest all the same.
            let material = crate::crypto::asymmetric::generate(new.key_spec).map_err(Error::internal)?;
            let key = new_keyward_key(ctx, group_id, &new, KeySource::Keyward);
            self.insert_keyward_key(ctx, &key, &material, Action::CreateKey).await?;
            return Ok(key);
        };
        let kms = self.connect(&group, Purpose::Work)?;
        check_aliases_free(&kms, &new.aliases).await?;
        let meta = kms
            .create_key(CreateKeyInput {
                key_spec: new.key_spec,
                key_usage: usage,
                description: new.description.clone(),
                tags: new.tags.as_map().iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                external: false,
                policy: new.key_policy.clone(),
            })
            .await?;
        tracing::info!(group_id = %group_id, aws_key_id = %meta.key_id, "aws key created");
        let mut key = Key {
            display_name: new.display_name,
            description: new.description,
            key_spec: new.key_spec,
            // Empty key_ops: the operations of the usage the key was made with (an HMAC key
            // made without them MACs), as sync records them for keys it finds.
            key_ops: if new.key_ops.is_empty() {
                KeyOp::for_aws_usage(Some(usage.aws_name()))
                    .into_iter()
                    .filter(|o| !matches!(o, KeyOp::WrapKey | KeyOp::UnwrapKey))
                    .collect()
            } else {
                new.key_ops
            },
            state: super::support::aws_keys::aws_state(&meta),
            source: KeySource::AwsNative,
            tags: new.tags.into_map(),
            aws: Some(aws_details(&meta, Vec::new(), None)),
            rotation_policy: new.rotation_schedule.map(|r| RotationPolicy::new(r, ctx.now)),
            ..new_record(group_id, &ctx.caller.actor, ctx.now)
        };
        // Recorded at once, before any further AWS call: a sync running meanwhile finds it known.
        if let Err(e) = self.store.insert_key(&key).await {
            // Another request took the display name meanwhile: do not keep an unrecorded AWS key.
            self.abandon_aws_key(&kms, &meta.key_id, &[]).await;
            return Err(e);
        }
        let (created_aliases, refused) = create_aliases(&kms, &meta.key_id, &new.aliases).await;
        if let Some(err) = refused {
            let deletion = self.abandon_aws_key(&kms, &meta.key_id, &created_aliases).await;
            self.record_abandoned(&mut key, deletion).await;
            return Err(err);
        }
        if let Some(a) = key.aws.as_mut() {
            a.aliases = created_aliases.clone();
            a.managed_aliases = created_aliases;
            // Read now so that the next sync finds nothing new (best effort).
            a.key_policy = kms.get_key_policy(&meta.key_id).await.ok();
            a.rotation = rotation_of(&kms, &meta).await;
        }
        let detail = format!("{} {}", key.key_spec.api_name(), meta.arn);
        self.commit_key_change(ctx, &mut key, Action::CreateKey, detail).await?;
        tracing::info!(group_id = %group_id, key_id = %key.id, "key created");
        Ok(key)
    }
}
