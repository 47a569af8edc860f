//! The plan of a new-key rotation, read fresh from AWS: the key to create, where its material
//! comes from, the aliases to move, the old key's fate and the AWS calls in order.

use std::sync::Arc;

use super::cannot;
use crate::app::requests::ToSource;
use crate::app::support::aws_keys::{Reads, describe, key_aliases};
use crate::app::support::checks::{KEY_NAME_MAX, aws_importable, copy_source, not_rotated};
use crate::app::{Ctx, Keyward};
use crate::domain::{
    AliasMove, GroupKind, Key, KeyId, KeyOp, KeySpec, KeyUsage, OldKeyAction, PlannedKey, PlannedSource, RotationKind,
    RotationPlan, rotated_name,
};
use crate::kms::Kms;
use crate::{Error, Precondition, Result};

/// The operations of a Keyward key a rotation makes to hold the material.
pub(super) const SOURCE_KEY_OPS: [KeyOp; 3] = [KeyOp::Encrypt, KeyOp::Decrypt, KeyOp::Export];

impl Keyward {
    /// Where a rotation of `key` onto Keyward-owned material takes it from: an existing AES-256
    /// Keyward key that permits EXPORT and is ENABLED, or a new one in a REGULAR group (named
    /// after `key`, `~source` appended; made unique with the new key's id if taken).
    pub(super) async fn plan_source(&self, key: &Key, to: ToSource) -> Result<PlannedSource> {
        if key.key_spec != KeySpec::SymmetricDefault {
            return Err(cannot(
                Precondition::KeySpec,
                key,
                &format!(
                    "it is {}; AWS imports Keyward's AES-256 material only into SYMMETRIC_DEFAULT keys",
                    key.key_spec.api_name()
                ),
            ));
        }
        match to {
            ToSource::Key(g, k) => {
                let source = self.store.get_key(g, k).await?;
                copy_source(&source, "to a rotation")?;
                not_rotated(&source)?;
                aws_importable(&source)?;
                self.check_policies(
                    g,
                    &self.store.get_group(g).await?.crypto_policy,
                    source.key_spec,
                    &source.key_ops,
                )?;
                Ok(PlannedSource { group_id: g, key_id: k, create_named: None })
            }
            ToSource::NewKeyIn(g) => {
                let group = self.store.get_group(g).await?;
                if group.kind != GroupKind::Regular {
                    return Err(Error::invalid(
                        "to_source.new_key_in_group",
                        format!("groups/{g} is an AWS_KMS group; Keyward-owned material is held in a REGULAR group"),
                    ));
                }
                self.check_policies(g, &group.crypto_policy, KeySpec::Aes256, &SOURCE_KEY_OPS)?;
                let key_id = KeyId::new();
                let base: String = key.display_name.chars().take(KEY_NAME_MAX - 16).collect();
                let mut name = format!("{base}~source");
                if self.store.key_name_taken(g, &name).await? {
                    let short: String = key_id.to_string().chars().take(8).collect();
                    name = format!("{name}-{short}");
                }
                Ok(PlannedSource { group_id: g, key_id, create_named: Some(name) })
            }
        }
    }

    /// The plan of a new-key rotation, read fresh from AWS; with `source`, the new key is
    /// EXTERNAL and gets that Keyward key's material.
    pub(super) async fn plan_new_key(
        &self,
        ctx: &Ctx,
        kms: &Arc<dyn Kms>,
        key: &Key,
        action: OldKeyAction,
        source: Option<PlannedSource>,
    ) -> Result<RotationPlan> {
        let aws_id = key.aws.as_ref().map(|a| a.aws_key_id.clone()).unwrap_or_default();
        let d = describe(kms, &aws_id, Reads { policy: true, rotation: true }).await?;
        let aliases = key_aliases(kms, &aws_id).await?;
        let key_spec = KeySpec::from_aws(d.meta.key_spec.as_deref().unwrap_or_default());
        let key_usage = match d.meta.key_usage.as_deref().and_then(KeyUsage::from_aws) {
            Some(u) => u,
            None => {
                let usage = d.meta.key_usage.as_deref().unwrap_or("unknown");
                return Err(cannot(
                    Precondition::KeySpec,
                    key,
                    &format!("Keyward does not create keys of usage {usage}"),
                ));
            }
        };
        if key_spec == KeySpec::Other {
            let spec = d.meta.key_spec.as_deref().unwrap_or("unknown");
            return Err(cannot(Precondition::KeySpec, key, &format!("Keyward does not create keys of spec {spec}")));
        }
        let new_key = PlannedKey {
            display_name: key.display_name.clone(),
            key_spec,
            key_usage,
            description: d.meta.description.clone().unwrap_or_default(),
            tags: d.tags.clone(),
            key_policy: d.policy.clone(),
            // AWS has no automatic rotation of imported material.
            rotation_period_days: match source {
                Some(_) => None,
                None => d.rotation.as_ref().filter(|r| r.enabled).map(|r| r.period_days.unwrap_or(365)),
            },
        };
        let mut calls = vec![format!(
            "CreateKey({}KeySpec={}, KeyUsage={}, Tags={}{})",
            if source.is_some() { "Origin=EXTERNAL, " } else { "" },
            key_spec.api_name(),
            key_usage.aws_name(),
            new_key.tags.len(),
            if new_key.key_policy.is_some() { ", Policy=copied" } else { "" }
        )];
        if let Some(s) = &source {
            calls.push("GetParametersForImport(new key, RSAES_OAEP_SHA_256, RSA_2048)".to_owned());
            let material = match &s.create_named {
                Some(name) => format!("the new Keyward key {name:?} in groups/{}", s.group_id),
                None => format!("groups/{}/keys/{}", s.group_id, s.key_id),
            };
            calls.push(format!("ImportKeyMaterial(new key, material of {material}, KEY_MATERIAL_DOES_NOT_EXPIRE)"));
        }
        if let Some(days) = new_key.rotation_period_days {
            calls.push(format!("EnableKeyRotation(new key, RotationPeriodInDays={days})"));
        }
        calls.extend(aliases.iter().map(|a| format!("UpdateAlias({a} → new key)")));
        match action {
            OldKeyAction::KeepEnabled => {}
            OldKeyAction::Disable => calls.push(format!("DisableKey({aws_id})")),
            OldKeyAction::ScheduleDeletion { pending_window_days } => {
                calls.push(format!("ScheduleKeyDeletion({aws_id}, PendingWindowInDays={pending_window_days})"))
            }
        }
        Ok(RotationPlan {
            kind: if source.is_some() { RotationKind::ToSource } else { RotationKind::NewKey },
            group_id: key.group_id,
            key_id: key.id,
            aws_key_id: aws_id.clone(),
            new_key: Some(new_key),
            rename_old_to: Some(rotated_name(&key.display_name, ctx.now, KEY_NAME_MAX)),
            source,
            copies: Vec::new(),
            alias_moves: aliases
                .into_iter()
                .map(|alias| AliasMove { alias, from_aws_key_id: aws_id.clone() })
                .collect(),
            old_key_action: action,
            aws_calls: calls,
        })
    }
}
