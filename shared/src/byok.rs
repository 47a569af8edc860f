//! Bring your own key: ImportKey, CopyKey, DeleteKeyMaterial, ReimportKeyMaterial, and the
//! worker's recovery of import operations a crash interrupted.
//!
//! Pushing material into AWS is journaled (`operations`): the intent is recorded before AWS
//! CreateKey, the new AWS key is recorded (as a PENDING_IMPORT virtual key) right after it, and
//! the key becomes ENABLED only once AWS confirmed ImportKeyMaterial. On any failure the new AWS
//! key is scheduled for deletion (7 days) and the outcome reported; after a crash the worker
//! does the same for journal entries left unfinished.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::audit::ok_event;
use crate::crypto::keys::{MaterialFormat, decode_material, rsa_oaep_sha256_wrap, unwrap};
use crate::domain::{
    AwsKeyDetails, Caller, Event, FieldViolation, Group, GroupId, GroupKind, Key, KeyId, KeyLink, KeyLinkKind, KeyOp,
    KeySource, KeySpec, KeyState, Tags, actions, transition, validate_display_name,
};
use crate::keys::{ABANDONED_WINDOW, DESCRIPTION_MAX, NewKey, check_keyward_key, keyward_key, new_etag};
use crate::kms::{self, CreateKeyInput, Kms, Purpose};
use crate::lifecycle::check_policies;
use crate::store::Operation;
use crate::sync::next_check;
use crate::{Error, Keyward, Result};

/// AES-256 key material: 32 bytes.
const MATERIAL_LEN: usize = 32;

/// How long an unfinished import may stay untouched before the worker compensates it.
pub const STALE_OPERATION: Duration = Duration::from_secs(600);

/// What ImportKey carries once parsed.
pub struct ImportRequest {
    /// display_name, description, key_ops, tags, aliases; key_spec: AES_256 (REGULAR) or
    /// SYMMETRIC_DEFAULT (AWS_KMS).
    pub key: NewKey,
    pub material: Zeroizing<Vec<u8>>,
    pub format: MaterialFormat,
    pub wrapping_key: Option<(GroupId, KeyId)>,
    pub valid_to: Option<OffsetDateTime>,
}

/// What CopyKey carries once parsed.
#[derive(Debug, Clone)]
pub struct CopyRequest {
    pub source: (GroupId, KeyId),
    pub target_group: GroupId,
    /// Empty: `<source>_copy<N>`.
    pub display_name: String,
    pub aliases: Vec<crate::domain::Alias>,
    /// Empty: ENCRYPT and DECRYPT.
    pub key_ops: Vec<KeyOp>,
}

/// What one recovery pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Interrupted imports whose AWS key was scheduled for deletion.
    pub compensated: Vec<KeyId>,
    /// Interrupted before AWS answered CreateKey: nothing known to clean up (a sync would list it).
    pub failed: Vec<KeyId>,
    /// Compensation failed again; retried on a later pass.
    pub retry: Vec<KeyId>,
}

/// Appends `note` to the message of `e` (keeping its code).
fn with_note(e: Error, note: &str) -> Error {
    match e {
        Error::PermissionDenied(m) => Error::PermissionDenied(format!("{m}; {note}")),
        Error::Unavailable(m) => Error::Unavailable(format!("{m}; {note}")),
        Error::DeadlineExceeded(m) => Error::DeadlineExceeded(format!("{m}; {note}")),
        Error::Aborted(m) => Error::Aborted(format!("{m}; {note}")),
        Error::ResourceExhausted(m) => Error::ResourceExhausted(format!("{m}; {note}")),
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
            kind: "AWS_IMPORT",
            subject: resource.clone(),
            description: format!("{resource}; {note}"),
        },
        other @ Error::Internal(_) => other,
    }
}

impl Keyward {
    /// ImportKey. Everything is checked before any AWS call: the format decodes, the wrapping
    /// key (a Keyward key with UNWRAP_KEY, ENABLED) unwraps it, the result is 32 bytes.
    pub async fn import_key(
        &self,
        group_id: GroupId,
        req: ImportRequest,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> Result<Key> {
        let now = crate::domain::to_micros(now);
        let group = self.store.get_group(group_id).await?;
        let mut new = req.key;
        let mut bad = self.check_new_key_fields(&new);
        match group.kind {
            GroupKind::Regular => {
                if new.key_spec == KeySpec::Other {
                    new.key_spec = KeySpec::Aes256;
                }
                bad.extend(check_keyward_key(new.key_spec, &new.key_ops, &new.aliases));
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
            // AWS ImportKeyMaterial: ValidTo in the future, at most 365 days ahead.
            if t <= now || t > now + Duration::from_secs(365 * 86_400) {
                bad.push(FieldViolation::new(
                    "valid_to",
                    "must be in the future and at most 365 days ahead (AWS limit)",
                ));
            } else if group.kind == GroupKind::Regular {
                bad.push(FieldViolation::new("valid_to", "only keys imported into AWS expire"));
            }
        }
        let decoded = decode_material(&req.material, req.format).map_err(|m| Error::invalid("material", m));
        if !bad.is_empty() {
            return Err(Error::InvalidArgument(bad));
        }
        let decoded = decoded?;
        let material = match req.wrapping_key {
            None => decoded,
            Some((wg, wk)) => {
                let wrapping = self
                    .store
                    .get_key(wg, wk)
                    .await
                    .map_err(|_| Error::invalid("wrapping_key", format!("groups/{wg}/keys/{wk} does not exist")))?;
                if wrapping.is_virtual() || !wrapping.key_ops.contains(&KeyOp::UnwrapKey) {
                    return Err(Error::precondition(
                        "KEY_OPS",
                        wrapping.name(),
                        format!("{} is not a Keyward key permitting UNWRAP_KEY", wrapping.name()),
                    ));
                }
                if wrapping.state != KeyState::Enabled {
                    return Err(Error::precondition(
                        "KEY_STATE",
                        wrapping.name(),
                        format!("{} is {}; it must be ENABLED to unwrap", wrapping.name(), wrapping.state.name()),
                    ));
                }
                let kek = self.store.key_material(wrapping.id).await?;
                unwrap(&kek, &decoded).map_err(|_| Error::invalid("material", "could not unwrap"))?
            }
        };
        if material.len() != MATERIAL_LEN {
            let how = if req.wrapping_key.is_some() { " and unwrapped" } else { "" };
            return Err(Error::invalid(
                "material",
                format!(
                    "{}: decoded{how} to {} bytes; AES-256 key material is {MATERIAL_LEN} bytes",
                    req.format.name(),
                    material.len()
                ),
            ));
        }
        check_policies(group_id, &group.crypto_policy, &self.settings.server_policy, new.key_spec, &new.key_ops)?;
        self.check_name_free(group_id, &new.display_name).await?;
        match group.kind {
            GroupKind::Regular => {
                let key = keyward_key(group_id, &new, KeySource::Imported, caller, now);
                self.insert_keyward_key(&key, &material, caller, actions::IMPORT_KEY, now).await?;
                Ok(key)
            }
            GroupKind::AwsKms => {
                self.push_to_aws(
                    &group,
                    &new,
                    &material,
                    KeySource::Imported,
                    None,
                    req.valid_to,
                    caller,
                    actions::IMPORT_KEY,
                    now,
                )
                .await
            }
        }
    }

    /// CopyKey: the same material in the target group, linked both ways.
    pub async fn copy_key(&self, req: CopyRequest, caller: &Caller, now: OffsetDateTime) -> Result<Key> {
        let now = crate::domain::to_micros(now);
        let (sg, sk) = req.source;
        let source = self.store.get_key(sg, sk).await?;
        if source.is_virtual() || source.key_spec != KeySpec::Aes256 {
            return Err(Error::precondition(
                "COPY_SOURCE",
                source.name(),
                format!("{} is not an AES_256 Keyward key; only those can be copied", source.name()),
            ));
        }
        if !source.key_ops.contains(&KeyOp::Export) {
            return Err(Error::precondition(
                "KEY_OPS",
                source.name(),
                format!("{} does not permit EXPORT; add it to key_ops to copy the key", source.name()),
            ));
        }
        if source.state != KeyState::Enabled {
            return Err(Error::precondition(
                "KEY_STATE",
                source.name(),
                format!("{} is {}; it must be ENABLED to copy", source.name(), source.state.name()),
            ));
        }
        let target = self.store.get_group(req.target_group).await?;
        let key_ops = if req.key_ops.is_empty() { vec![KeyOp::Encrypt, KeyOp::Decrypt] } else { req.key_ops.clone() };
        // Suggested names are handed out one copy at a time per target group, so two
        // concurrent copies never pick the same `_copyN`.
        let _naming = if req.display_name.is_empty() { Some(self.lock_copy_names(target.id).await?) } else { None };
        let display_name = if req.display_name.is_empty() {
            self.copy_name(target.id, &source.display_name).await?
        } else {
            req.display_name.clone()
        };
        let spec = match target.kind {
            GroupKind::Regular => KeySpec::Aes256,
            GroupKind::AwsKms => KeySpec::SymmetricDefault,
        };
        let new = NewKey {
            display_name,
            description: source.description.clone(),
            key_spec: spec,
            key_ops,
            tags: Tags::trusted(source.tags.clone()),
            aliases: req.aliases.clone(),
        };
        let mut bad = self.check_new_key_fields(&new);
        match target.kind {
            GroupKind::Regular => bad.extend(check_keyward_key(spec, &new.key_ops, &new.aliases)),
            GroupKind::AwsKms => {
                if let Err(e) = spec.aws_key_usage(&new.key_ops) {
                    bad.push(FieldViolation::new("key_ops", e));
                }
            }
        }
        if !bad.is_empty() {
            return Err(Error::InvalidArgument(bad));
        }
        check_policies(target.id, &target.crypto_policy, &self.settings.server_policy, spec, &new.key_ops)?;
        self.check_name_free(target.id, &new.display_name).await?;
        let material = self.store.key_material(source.id).await?;
        match target.kind {
            GroupKind::Regular => {
                let mut key = keyward_key(target.id, &new, KeySource::Keyward, caller, now);
                key.links.push(link(KeyLinkKind::CopiedFrom, &source, caller, now));
                let tx = self.store.begin_audited().await?;
                tx.insert_key_with_material(&key, &material).await?;
                tx.insert_link(key.id, &key.links[0]).await?;
                tx.insert_link(source.id, &link(KeyLinkKind::CopiedTo, &key, caller, now)).await?;
                ok_event(&tx, caller, actions::COPY_KEY, key.name(), format!("copy of {}", source.name()), now).await?;
                tx.commit().await?;
                Ok(key)
            }
            GroupKind::AwsKms => {
                self.push_to_aws(
                    &target,
                    &new,
                    &material,
                    KeySource::Keyward,
                    Some(&source),
                    None,
                    caller,
                    actions::COPY_KEY,
                    now,
                )
                .await
            }
        }
    }

    /// The lease on suggesting copy names in `group`; waits up to 60 s for it (copies into AWS
    /// take a few AWS calls each), then ABORTED.
    async fn lock_copy_names(&self, group: GroupId) -> Result<crate::lifecycle::KeyLock> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(lock) = self.try_lock_named(&format!("copy-names/{group}")).await? {
                return Ok(lock);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Aborted(format!("other copies into groups/{group} are being named; try again")));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
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

    fn check_new_key_fields(&self, new: &NewKey) -> Vec<FieldViolation> {
        let mut bad = Vec::new();
        if let Err(e) = validate_display_name(&new.display_name, 256) {
            bad.push(FieldViolation::new("key.display_name", e));
        }
        if new.description.chars().count() > DESCRIPTION_MAX {
            bad.push(FieldViolation::new(
                "key.description",
                format!("at most {DESCRIPTION_MAX} characters (AWS limit)"),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for a in &new.aliases {
            if !seen.insert(a) {
                bad.push(FieldViolation::new("key.aws.aliases", format!("{} is listed twice", a.as_str())));
            }
        }
        bad
    }

    async fn check_name_free(&self, group: GroupId, name: &str) -> Result<()> {
        if self.store.key_name_taken(group, name).await? {
            return Err(Error::AlreadyExists {
                resource: name.to_owned(),
                message: format!("a key named {name:?} already exists in groups/{group}"),
            });
        }
        Ok(())
    }

    /// The journaled import of `material` into a new AWS key (see the module docs).
    #[allow(clippy::too_many_arguments, reason = "one internal step shared by ImportKey and CopyKey")]
    async fn push_to_aws(
        &self,
        group: &Group,
        new: &NewKey,
        material: &[u8],
        source: KeySource,
        copied_from: Option<&Key>,
        valid_to: Option<OffsetDateTime>,
        caller: &Caller,
        action: &str,
        now: OffsetDateTime,
    ) -> Result<Key> {
        let kms = self.connect(group, Purpose::Work)?;
        self.check_aliases_free(&kms, &new.aliases).await?;
        let key_id = KeyId::new();
        let mut op = Operation {
            id: uuid::Uuid::now_v7(),
            kind: "IMPORT".to_owned(),
            group_id: group.id,
            key_id,
            aws_key_id: None,
            state: "STARTED".to_owned(),
            detail: String::new(),
            created_at: now,
            updated_at: now,
        };
        self.store.start_operation(&op).await?;
        let meta = match kms
            .create_key(CreateKeyInput {
                key_spec: "SYMMETRIC_DEFAULT".to_owned(),
                key_usage: "ENCRYPT_DECRYPT".to_owned(),
                description: new.description.clone(),
                tags: new.tags.as_map().iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                external: true,
            })
            .await
        {
            Ok(m) => m,
            Err(e) => {
                op.state = "FAILED".to_owned();
                op.detail = format!("CreateKey: {e}");
                op.updated_at = crate::domain::to_micros(OffsetDateTime::now_utc());
                self.store.update_operation(&op).await?;
                return Err(e.into());
            }
        };
        // Known to Keyward before anything else happens in AWS.
        let mut key = Key {
            id: key_id,
            group_id: group.id,
            display_name: new.display_name.clone(),
            description: new.description.clone(),
            key_spec: KeySpec::SymmetricDefault,
            key_ops: new.key_ops.clone(),
            state: KeyState::PendingImport,
            source,
            tags: new.tags.as_map().clone(),
            aws: Some(AwsKeyDetails {
                key_arn: meta.arn.clone(),
                aws_key_id: meta.key_id.clone(),
                aliases: Vec::new(),
                managed_aliases: Vec::new(),
                key_policy: None,
                aws_key_state: meta.key_state.clone(),
                key_spec: meta.key_spec.clone(),
                origin: meta.origin.clone(),
                key_usage: meta.key_usage.clone(),
                key_manager: meta.key_manager.clone(),
                enabled: false,
                creation_time: meta.creation_date,
                deletion_time: None,
                valid_to: None,
                rotation_enabled: false,
            }),
            links: copied_from.map(|s| vec![link(KeyLinkKind::CopiedFrom, s, caller, now)]).unwrap_or_default(),
            created_by: caller.actor.clone(),
            create_time: now,
            update_time: now,
            etag: new_etag(),
        };
        op.aws_key_id = Some(meta.key_id.clone());
        op.state = "AWS_KEY_CREATED".to_owned();
        op.updated_at = crate::domain::to_micros(OffsetDateTime::now_utc());
        let recorded = async {
            let tx = self.store.begin_audited().await?;
            tx.insert_key(&key).await?;
            tx.update_operation(&op).await?;
            tx.commit().await
        }
        .await;
        if let Err(e) = recorded {
            // Not recorded (e.g. the display name was taken meanwhile): do not leave the AWS key.
            self.abandon_aws_key(&kms, &meta.key_id, &[]).await;
            op.state = "COMPENSATED".to_owned();
            op.detail = format!("not recorded: {e}");
            let _ = self.store.update_operation(&op).await;
            return Err(e);
        }

        let mut created_aliases = Vec::new();
        let mut result = import_material(&kms, &meta.key_id, material, valid_to).await.map_err(Error::from);
        if result.is_ok() {
            for alias in &new.aliases {
                if let Err(e) = kms.create_alias(alias.as_str(), &meta.key_id).await {
                    result = Err(match e {
                        kms::Error::AlreadyExists(_) => self.alias_taken(&kms, alias.as_str()).await,
                        other => other.into(),
                    });
                    break;
                }
                created_aliases.push(alias.as_str().to_owned());
            }
        }
        if let Err(e) = result {
            let note = self.compensate(&kms, &mut key, &mut op, &created_aliases, &e.to_string()).await;
            return Err(with_note(e, &note));
        }

        key.state = transition(KeyState::PendingImport, Event::ImportMaterial).unwrap_or(KeyState::Enabled);
        if let Some(a) = key.aws.as_mut() {
            a.aws_key_state = Some("Enabled".to_owned());
            a.enabled = true;
            a.aliases = created_aliases.clone();
            a.managed_aliases = created_aliases;
            a.valid_to = valid_to;
        }
        key.update_time = crate::domain::to_micros(OffsetDateTime::now_utc()).max(now);
        let prev_etag = std::mem::replace(&mut key.etag, new_etag());
        op.state = "DONE".to_owned();
        op.updated_at = key.update_time;
        let tx = self.store.begin_audited().await?;
        tx.replace_key(&key, &prev_etag).await?;
        tx.update_operation(&op).await?;
        if let Some(s) = copied_from {
            tx.insert_link(key.id, &key.links[0]).await?;
            tx.insert_link(s.id, &link(KeyLinkKind::CopiedTo, &key, caller, now)).await?;
        }
        let detail = match copied_from {
            Some(s) => format!("copy of {} into {}", s.name(), meta.arn),
            None => format!("imported into {}", meta.arn),
        };
        ok_event(&tx, caller, action, key.name(), detail, now).await?;
        tx.commit().await?;
        tracing::info!(group_id = %group.id, key_id = %key.id, aws_key_id = %meta.key_id, "key material imported");
        Ok(key)
    }

    /// Removes the aliases made and schedules the AWS key for deletion (7 days); records the
    /// virtual key PENDING_DELETION and the journal COMPENSATED. Returns a note for the caller.
    async fn compensate(
        &self,
        kms: &Arc<dyn Kms>,
        key: &mut Key,
        op: &mut Operation,
        aliases: &[String],
        why: &str,
    ) -> String {
        let aws_id = key.aws.as_ref().map(|a| a.aws_key_id.clone()).unwrap_or_default();
        let now = crate::domain::to_micros(OffsetDateTime::now_utc());
        key.rename_abandoned();
        match self.abandon_aws_key(kms, &aws_id, aliases).await {
            Some(deletion) => {
                key.mark_pending_deletion(deletion, now + ABANDONED_WINDOW);
                op.state = "COMPENSATED".to_owned();
            }
            None => {
                // Left for the worker's recovery pass; the key stays PENDING_IMPORT, never ENABLED.
                op.state = "AWS_KEY_CREATED".to_owned();
            }
        }
        op.detail = why.chars().take(500).collect();
        op.updated_at = now;
        key.update_time = now;
        let prev_etag = std::mem::replace(&mut key.etag, new_etag());
        let saved = async {
            let tx = self.store.begin_audited().await?;
            tx.replace_key(key, &prev_etag).await?;
            tx.set_next_check(key.id, next_check(key, now)).await?;
            tx.update_operation(op).await?;
            tx.commit().await
        }
        .await;
        if let Err(e) = saved {
            tracing::error!(key_id = %key.id, error = %e, "could not record the compensation of a failed import");
        }
        if op.state == "COMPENSATED" {
            format!(
                "the new AWS key {aws_id} was scheduled for deletion in 7 days and Keyward shows it PENDING_DELETION"
            )
        } else {
            format!("the new AWS key {aws_id} could not be scheduled for deletion yet; the worker retries")
        }
    }

    /// Compensates a half-done creation (CreateKey, ImportKey, CopyKey): deletes `aliases` and
    /// schedules `aws_key_id` for deletion after the minimum window (7 days). `Some(deletion
    /// date)` when scheduled (or already pending), `None` when AWS refused (logged for a person;
    /// the next sync lists the key, the worker retries journaled imports).
    pub(crate) async fn abandon_aws_key(
        &self,
        kms: &Arc<dyn Kms>,
        aws_key_id: &str,
        aliases: &[String],
    ) -> Option<Option<OffsetDateTime>> {
        for a in aliases {
            if let Err(e) = kms.delete_alias(a).await {
                tracing::error!(aws_key_id, alias = %a, error = %e, "could not remove an alias of an abandoned key");
            }
        }
        match kms.schedule_key_deletion(aws_key_id, 7).await {
            Ok(d) => {
                tracing::warn!(aws_key_id, "abandoned aws key scheduled for deletion in 7 days");
                Some(d)
            }
            Err(kms::Error::InvalidState(_)) => Some(None),
            Err(e) => {
                tracing::error!(aws_key_id, error = %e, "could not schedule deletion of an abandoned aws key");
                None
            }
        }
    }

    /// DeleteKeyMaterial (DeleteImportedKeyMaterial) → PENDING_IMPORT.
    pub async fn delete_key_material(
        &self,
        group: GroupId,
        id: KeyId,
        acknowledge_unrecoverable: bool,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> Result<Key> {
        let now = crate::domain::to_micros(now);
        let _lock = self.lock_key(group, id).await?;
        let key = self.store.get_key(group, id).await?;
        if !key.is_virtual() || key.source == KeySource::AwsNative {
            return Err(Error::precondition(
                "KEY_SOURCE",
                key.name(),
                format!(
                    "{}'s material was not imported into AWS (source {}); there is no imported material to delete",
                    key.name(),
                    key.source.name()
                ),
            ));
        }
        if !key.is_mutable() {
            return Err(Error::precondition("AWS_MANAGED_KEY", key.name(), "AWS-managed keys are never changed"));
        }
        if self.live_source(&key).await?.is_none() && !acknowledge_unrecoverable {
            return Err(Error::precondition(
                "UNRECOVERABLE",
                key.name(),
                format!(
                    "Keyward holds no source of {}'s material, so it cannot restore it; set acknowledge_unrecoverable to delete it anyway",
                    key.name()
                ),
            ));
        }
        let state = transition(key.state, Event::DeleteMaterial).map_err(|e| {
            Error::precondition(
                "KEY_STATE",
                key.name(),
                format!("{} is {}: {}", key.name(), key.state.name(), e.reason),
            )
        })?;
        let g = self.store.get_group(group).await?;
        let kms = self.connect(&g, Purpose::Work)?;
        let aws_id = key.aws.as_ref().map(|a| a.aws_key_id.clone()).unwrap_or_default();
        kms.delete_imported_key_material(&aws_id).await?;
        let mut k = key;
        k.state = state;
        if let Some(a) = k.aws.as_mut() {
            a.aws_key_state = Some("PendingImport".to_owned());
            a.enabled = false;
            a.valid_to = None;
        }
        self.commit_key_change(&mut k, caller, actions::DELETE_KEY_MATERIAL, String::new(), now).await?;
        Ok(k)
    }

    /// ReimportKeyMaterial: the same material from the linked Keyward source → ENABLED.
    pub async fn reimport_key_material(
        &self,
        group: GroupId,
        id: KeyId,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> Result<Key> {
        let now = crate::domain::to_micros(now);
        let _lock = self.lock_key(group, id).await?;
        let key = self.store.get_key(group, id).await?;
        let Some(source) = self.live_source(&key).await? else {
            return Err(Error::precondition(
                "NO_SOURCE",
                key.name(),
                format!("{} has no linked Keyward source key to reimport from", key.name()),
            ));
        };
        if source.state != KeyState::Enabled || !source.key_ops.contains(&KeyOp::Export) {
            return Err(Error::precondition(
                "COPY_SOURCE",
                source.name(),
                format!(
                    "the source {} must be ENABLED and permit EXPORT to hand out its material (it is {}{})",
                    source.name(),
                    source.state.name(),
                    if source.key_ops.contains(&KeyOp::Export) { "" } else { ", without EXPORT" }
                ),
            ));
        }
        let state = transition(key.state, Event::ImportMaterial).map_err(|e| {
            Error::precondition(
                "KEY_STATE",
                key.name(),
                format!("{} is {}: {}", key.name(), key.state.name(), e.reason),
            )
        })?;
        let g = self.store.get_group(group).await?;
        let kms = self.connect(&g, Purpose::Work)?;
        let material = self.store.key_material(source.id).await?;
        let aws_id = key.aws.as_ref().map(|a| a.aws_key_id.clone()).unwrap_or_default();
        import_material(&kms, &aws_id, &material, None).await?;
        let mut k = key;
        k.state = state;
        if let Some(a) = k.aws.as_mut() {
            a.aws_key_state = Some(if state == KeyState::Enabled { "Enabled" } else { "Disabled" }.to_owned());
            a.enabled = state == KeyState::Enabled;
        }
        let detail = format!("from {}", source.name());
        self.commit_key_change(&mut k, caller, actions::REIMPORT_KEY_MATERIAL, detail, now).await?;
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

    /// The worker's recovery pass: journal entries unfinished for [`STALE_OPERATION`] (a crash
    /// or a failed compensation) get their AWS key scheduled for deletion.
    pub async fn recover_operations(&self, now: OffsetDateTime) -> Result<RecoveryReport> {
        let now = crate::domain::to_micros(now);
        let mut report = RecoveryReport::default();
        let caller = Caller::worker();
        for mut op in self.store.stale_operations(now - STALE_OPERATION).await? {
            if !self.store.claim_operation(&op, now).await? {
                continue;
            }
            op.updated_at = now;
            let Some(aws_id) = op.aws_key_id.clone() else {
                op.state = "FAILED".to_owned();
                op.detail = "interrupted before AWS CreateKey answered; a sync lists any key it made".to_owned();
                self.store.update_operation(&op).await?;
                report.failed.push(op.key_id);
                continue;
            };
            let group = self.store.get_group(op.group_id).await?;
            let kms = self.connect(&group, Purpose::Work)?;
            let Some(deletion) = self.abandon_aws_key(&kms, &aws_id, &[]).await else {
                report.retry.push(op.key_id);
                continue;
            };
            op.state = "COMPENSATED".to_owned();
            op.detail = "interrupted import; AWS key scheduled for deletion".to_owned();
            let tx = self.store.begin_audited().await?;
            if let Ok(mut key) = tx.get_key(op.group_id, op.key_id).await {
                key.mark_pending_deletion(deletion, now + ABANDONED_WINDOW);
                key.update_time = now;
                let prev_etag = std::mem::replace(&mut key.etag, new_etag());
                tx.replace_key(&key, &prev_etag).await?;
                tx.set_next_check(key.id, next_check(&key, now)).await?;
            }
            tx.update_operation(&op).await?;
            let resource = format!("groups/{}/keys/{}", op.group_id, op.key_id);
            ok_event(&tx, &caller, actions::RECOVER_OPERATION, resource, op.detail.clone(), now).await?;
            tx.commit().await?;
            report.compensated.push(op.key_id);
        }
        Ok(report)
    }
}

fn link(kind: KeyLinkKind, other: &Key, caller: &Caller, now: OffsetDateTime) -> KeyLink {
    KeyLink { kind, group_id: other.group_id, key_id: other.id, actor: caller.actor.clone(), create_time: now }
}

/// GetParametersForImport → RSA-OAEP-SHA-256 wrap → ImportKeyMaterial. The import token and the
/// wrapped material are never logged.
async fn import_material(
    kms: &Arc<dyn Kms>,
    aws_key_id: &str,
    material: &[u8],
    valid_to: Option<OffsetDateTime>,
) -> kms::Result<()> {
    let params = kms.get_parameters_for_import(aws_key_id).await?;
    let wrapped =
        rsa_oaep_sha256_wrap(&params.public_key_der, material).map_err(|e| kms::Error::Other(e.to_string()))?;
    kms.import_key_material(aws_key_id, &params.import_token, &wrapped, valid_to).await
}
