//! Bring your own key: ImportKey, CopyKey, DeleteKeyMaterial, ReimportKeyMaterial. Material
//! pushed into AWS goes through the journaled import (`support::imports`).

use std::time::Duration;

use super::requests::{CopyRequest, ImportRequest, NewKey};
use super::support::aws_keys::import_material;
use super::support::checks::{self, aws_importable, copy_source, mutable, none_bad, permits, refused, usable};
use super::support::imports::Import;
use super::support::locks::KeyLock;
use super::support::records::{link, new_keyward_key, ok_event};
use super::{Ctx, Keyward};
use crate::crypto::keys::{decode_material, unwrap};
use crate::domain::{
    Action, Event, FieldViolation, GroupId, GroupKind, Key, KeyLinkKind, KeyOp, KeySource, KeySpec, Tags, transition,
};
use crate::kms::Purpose;
use crate::{Error, Precondition, Result};

/// AES-256 key material: 32 bytes.
const MATERIAL_LEN: usize = 32;

/// AWS ImportKeyMaterial: ValidTo at most 365 days ahead.
const VALID_TO_MAX: Duration = Duration::from_secs(365 * 86_400);

impl Keyward {
    /// ImportKey. Everything is checked before any AWS call: the format decodes, the wrapping
    /// key (a Keyward key with UNWRAP_KEY, ENABLED) unwraps it, the result is 32 bytes.
    pub async fn import_key(&self, ctx: &Ctx, group_id: GroupId, req: ImportRequest) -> Result<Key> {
        let group = self.store.get_group(group_id).await?;
        let mut new = req.key;
        let mut bad = checks::key_fields(Some(&new.display_name), Some(&new.description), Some(&new.aliases));
        bad.extend(new.key_policy.as_deref().and_then(checks::key_policy));
        if let Some(sched) = &new.rotation_schedule {
            let rotates = checks::Rotates::of(group.kind == GroupKind::AwsKms, KeySource::Imported);
            bad.extend(checks::rotation_schedule(sched, new.key_spec, rotates));
        }
        match group.kind {
            GroupKind::Regular => {
                if new.key_spec == KeySpec::Other {
                    new.key_spec = KeySpec::Aes256;
                }
                if new.key_spec.aes_bytes().is_none() {
                    bad.push(FieldViolation::new(
                        "key.key_spec",
                        "ImportKey takes AES material: AES_128, AES_192 or AES_256 in a REGULAR group",
                    ));
                }
                bad.extend(checks::new_keyward_key(&new));
            }
            GroupKind::AwsKms => {
                if new.key_spec == KeySpec::Other {
                    new.key_spec = KeySpec::SymmetricDefault;
                }
                if new.key_spec != KeySpec::SymmetricDefault {
                    bad.push(FieldViolation::new(
                        "key.key_spec",
                        "AWS imports AES-256 material only as SYMMETRIC_DEFAULT",
                    ));
                } else if let Err(e) = new.key_spec.aws_key_usage(&new.key_ops) {
                    bad.push(FieldViolation::new("key.key_ops", e));
                }
            }
        }
        if let Some(t) = req.valid_to {
            if t <= ctx.now || t > ctx.now + VALID_TO_MAX {
                bad.push(FieldViolation::new(
                    "valid_to",
                    "must be in the future and at most 365 days ahead (AWS limit)",
                ));
            } else if group.kind == GroupKind::Regular {
                bad.push(FieldViolation::new("valid_to", "only keys imported into AWS expire"));
            }
        }
        let decoded = decode_material(&req.material, req.format).map_err(|m| Error::invalid("material", m));
        none_bad(bad)?;
        let decoded = decoded?;
        let material = match req.wrapping_key {
            None => decoded,
            Some((wg, wk)) => {
                let wrapping = self
                    .store
                    .get_key(wg, wk)
                    .await
                    .map_err(|_| Error::invalid("wrapping_key", format!("groups/{wg}/keys/{wk} does not exist")))?;
                let why = |name: &str| format!("{name} is not a Keyward key permitting UNWRAP_KEY");
                if wrapping.is_virtual() {
                    return Err(Error::precondition(Precondition::KeyOps, wrapping.name(), why(&wrapping.name())));
                }
                permits(&wrapping, KeyOp::UnwrapKey, why)?;
                usable(&wrapping, "it must be ENABLED to unwrap")?;
                let kek = self.store.key_material(wrapping.id).await?;
                unwrap(&kek, &decoded).map_err(|_| Error::invalid("material", "could not unwrap"))?
            }
        };
        // A Keyward key's spec says its size; AWS imports 256-bit material.
        let (want, spec) = match new.key_spec.aes_bytes() {
            Some(n) => (n, new.key_spec.api_name()),
            None => (MATERIAL_LEN, "AES-256"),
        };
        if material.len() != want {
            let how = if req.wrapping_key.is_some() { " and unwrapped" } else { "" };
            return Err(Error::invalid(
                "material",
                format!(
                    "{}: decoded{how} to {} bytes; {spec} key material is {want} bytes",
                    req.format.name(),
                    material.len()
                ),
            ));
        }
        self.check_policies(group_id, &group.crypto_policy, new.key_spec, &new.key_ops)?;
        self.check_name_free(group_id, &new.display_name).await?;
        match group.kind {
            GroupKind::Regular => {
                let key = new_keyward_key(ctx, group_id, &new, KeySource::Imported);
                self.insert_keyward_key(ctx, &key, &material, Action::ImportKey).await?;
                Ok(key)
            }
            GroupKind::AwsKms => {
                let imp = Import {
                    new: &new,
                    material: &material,
                    source: KeySource::Imported,
                    copied_from: None,
                    valid_to: req.valid_to,
                    action: Action::ImportKey,
                };
                self.import_into_aws(ctx, &group, imp).await
            }
        }
    }

    /// CopyKey: the same material in the target group, linked both ways.
    pub async fn copy_key(&self, ctx: &Ctx, req: CopyRequest) -> Result<Key> {
        let (sg, sk) = req.source;
        // Held to the end: a copy never interleaves with a rotation or a change of its source.
        let source_lock = self.lock_key(sg, sk).await?;
        let source = self.store.get_key(sg, sk).await?;
        copy_source(&source, "to a copy")?;
        let target = self.store.get_group(req.target_group).await?;
        if target.kind == GroupKind::AwsKms {
            aws_importable(&source)?;
        }
        let key_ops = if req.key_ops.is_empty() { vec![KeyOp::Encrypt, KeyOp::Decrypt] } else { req.key_ops.clone() };
        // Suggested names are handed out one copy at a time per target group, so two
        // concurrent copies never pick the same `_copyN`.
        let naming = if req.display_name.is_empty() { Some(self.lock_copy_names(target.id).await?) } else { None };
        let display_name = if req.display_name.is_empty() {
            self.copy_name(target.id, &source.display_name).await?
        } else {
            req.display_name.clone()
        };
        let spec = match target.kind {
            GroupKind::Regular => source.key_spec,
            GroupKind::AwsKms => KeySpec::SymmetricDefault,
        };
        let new = NewKey {
            display_name,
            description: source.description.clone(),
            key_spec: spec,
            key_ops,
            tags: Tags::trusted(source.tags.clone()),
            aliases: req.aliases.clone(),
            key_policy: None,
            rotation_schedule: None,
        };
        let mut bad = checks::key_fields(Some(&new.display_name), Some(&new.description), Some(&new.aliases));
        match target.kind {
            GroupKind::Regular => bad.extend(checks::keyward_key(spec, &new.key_ops, &new.aliases)),
            GroupKind::AwsKms => {
                if let Err(e) = spec.aws_key_usage(&new.key_ops) {
                    bad.push(FieldViolation::new("key_ops", e));
                }
            }
        }
        none_bad(bad)?;
        self.check_policies(target.id, &target.crypto_policy, spec, &new.key_ops)?;
        self.check_name_free(target.id, &new.display_name).await?;
        let material = self.store.key_material(source.id).await?;
        let copy = match target.kind {
            GroupKind::Regular => {
                let mut key = new_keyward_key(ctx, target.id, &new, KeySource::Keyward);
                key.links.push(link(KeyLinkKind::CopiedFrom, &source, ctx));
                let tx = self.store.begin_audited().await?;
                tx.insert_key_with_material(&key, &material).await?;
                tx.insert_link(key.id, &key.links[0]).await?;
                tx.insert_link(source.id, &link(KeyLinkKind::CopiedTo, &key, ctx)).await?;
                let detail = format!("copy of {}", source.name());
                ok_event(&tx, &ctx.caller, Action::CopyKey, key.name(), detail, ctx.now).await?;
                tx.commit().await?;
                key
            }
            GroupKind::AwsKms => {
                let imp = Import {
                    new: &new,
                    material: &material,
                    source: KeySource::Keyward,
                    copied_from: Some(&source),
                    valid_to: None,
                    action: Action::CopyKey,
                };
                self.import_into_aws(ctx, &target, imp).await?
            }
        };
        if let Some(naming) = naming {
            naming.release().await;
        }
        source_lock.release().await;
        Ok(copy)
    }

    /// The lease on suggesting copy names in `group`; waits up to 60 s for it (copies into AWS
    /// take a few AWS calls each), then ABORTED.
    async fn lock_copy_names(&self, group: GroupId) -> Result<KeyLock> {
        self.lock_named_within(&format!("copy-names/{group}"), Duration::from_secs(60))
            .await?
            .ok_or_else(|| Error::Aborted(format!("other copies into groups/{group} are being named; try again")))
    }

    /// `<base>_copy<N>` with the smallest N ≥ 1 not taken in the group.
    async fn copy_name(&self, group: GroupId, base: &str) -> Result<String> {
        for n in 1..10_000 {
            let candidate = format!("{base}_copy{n}");
            if !self.store.key_name_taken(group, &candidate).await? {
                return Ok(candidate);
            }
        }
        Err(Error::invalid("display_name", "no free copy name; give one"))
    }

    /// DeleteKeyMaterial (DeleteImportedKeyMaterial) → PENDING_IMPORT. `validate_only`: every
    /// check, no AWS call, nothing stored; the key as it would be.
    pub async fn delete_key_material(
        &self,
        ctx: &Ctx,
        group: GroupId,
        id: crate::domain::KeyId,
        acknowledge_unrecoverable: bool,
        validate_only: bool,
    ) -> Result<Key> {
        let lock = self.lock_key(group, id).await?;
        let mut k = self.store.get_key(group, id).await?;
        if !k.is_virtual() || k.source == KeySource::AwsNative {
            return Err(Error::precondition(
                Precondition::KeySource,
                k.name(),
                format!(
                    "{}'s material was not imported into AWS (source {}); there is no imported material to delete",
                    k.name(),
                    k.source.name()
                ),
            ));
        }
        mutable(&k)?;
        if self.live_source(&k).await?.is_none() && !acknowledge_unrecoverable {
            return Err(Error::precondition(
                Precondition::Unrecoverable,
                k.name(),
                format!(
                    "Keyward holds no source of {}'s material, so it cannot restore it; set acknowledge_unrecoverable to delete it anyway",
                    k.name()
                ),
            ));
        }
        let state = transition(k.state, Event::DeleteMaterial).map_err(|e| refused(&k, e))?;
        let kms = self.group_client(group).await?;
        let aws_id = k.aws.as_ref().map(|a| a.aws_key_id.clone()).unwrap_or_default();
        if !validate_only {
            kms.delete_imported_key_material(&aws_id).await?;
        }
        k.set_state(state);
        if let Some(a) = k.aws.as_mut() {
            a.valid_to = None;
        }
        if validate_only {
            return Ok(k);
        }
        self.commit_key_change(ctx, &mut k, Action::DeleteKeyMaterial, String::new()).await?;
        lock.release().await;
        Ok(k)
    }

    /// ReimportKeyMaterial: the same material from the linked Keyward source → ENABLED.
    pub async fn reimport_key_material(&self, ctx: &Ctx, group: GroupId, id: crate::domain::KeyId) -> Result<Key> {
        let lock = self.lock_key(group, id).await?;
        let mut k = self.store.get_key(group, id).await?;
        let Some(source) = self.live_source(&k).await? else {
            return Err(Error::precondition(
                Precondition::NoSource,
                k.name(),
                format!("{} has no linked Keyward source key to reimport from", k.name()),
            ));
        };
        let exports = source.key_ops.contains(&KeyOp::Export);
        if transition(source.state, Event::Use).is_err() || !exports {
            return Err(Error::precondition(
                Precondition::CopySource,
                source.name(),
                format!(
                    "the source {} must be ENABLED and permit EXPORT to hand out its material (it is {}{})",
                    source.name(),
                    source.state.name(),
                    if exports { "" } else { ", without EXPORT" }
                ),
            ));
        }
        let state = transition(k.state, Event::ImportMaterial).map_err(|e| refused(&k, e))?;
        let group_row = self.store.get_group(group).await?;
        let kms = self.connect(&group_row, Purpose::Work)?;
        let material = self.store.key_material(source.id).await?;
        let aws_id = k.aws.as_ref().map(|a| a.aws_key_id.clone()).unwrap_or_default();
        import_material(&kms, &aws_id, &material, None).await?;
        k.set_state(state);
        let detail = format!("from {}", source.name());
        self.commit_key_change(ctx, &mut k, Action::ReimportKeyMaterial, detail).await?;
        lock.release().await;
        Ok(k)
    }

    /// The Keyward key this virtual key's material was copied from, if it still exists.
    async fn live_source(&self, key: &Key) -> Result<Option<Key>> {
        if !key.is_virtual() {
            return Ok(None);
        }
        let Some(l) = key.links.iter().find(|l| l.kind == KeyLinkKind::CopiedFrom) else { return Ok(None) };
        match self.store.get_key(l.group_id, l.key_id).await {
            Ok(s) if !s.is_virtual() => Ok(Some(s)),
            Ok(_) | Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
