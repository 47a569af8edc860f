//! Key use cases: generate (CreateKey), read, list with filters.

use std::collections::BTreeMap;
use std::sync::Arc;

use time::OffsetDateTime;

use crate::audit::ok_event;
use crate::domain::{
    Alias, AwsKeyDetails, FieldViolation, Group, GroupId, GroupKind, Key, KeyId, KeyOp, KeySource, KeySpec, KeyState,
    Tags, validate_display_name,
};
use crate::domain::{Caller, actions};
use crate::kms::{self, CreateKeyInput, Kms, Purpose};
use crate::store::KeyQuery;
use crate::{Error, Keyward, Result};

/// What CreateKey carries once parsed (aliases and tags already proven valid).
#[derive(Debug, Clone)]
pub struct NewKey {
    pub display_name: String,
    pub description: String,
    pub key_spec: KeySpec,
    pub key_ops: Vec<KeyOp>,
    pub tags: Tags,
    pub aliases: Vec<Alias>,
}

/// A parsed ListKeys filter: a conjunction of `field = VALUE` terms over
/// `state`, `virtual`, `key_spec` and `source`, e.g. `state = ENABLED AND virtual = true`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyFilter {
    pub state: Option<KeyState>,
    pub is_virtual: Option<bool>,
    pub key_spec: Option<KeySpec>,
    pub source: Option<KeySource>,
}

impl KeyFilter {
    /// Parses the filter text; errors name the offending term.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let mut f = Self::default();
        let text = text.trim();
        if text.is_empty() {
            return Ok(f);
        }
        for term in text.split(" AND ") {
            let Some((field, value)) = term.split_once('=') else {
                return Err(format!("{term:?} is not `field = VALUE`"));
            };
            let (field, value) = (field.trim(), value.trim().trim_matches('"'));
            let bad = || format!("{value:?} is not a valid {field}");
            match field {
                "state" => f.state = Some(KeyState::from_name(value).ok_or_else(bad)?),
                "virtual" => {
                    f.is_virtual = Some(match value {
                        "true" => true,
                        "false" => false,
                        _ => return Err(bad()),
                    })
                }
                "key_spec" => {
                    f.key_spec = Some(match value {
                        "AES_256" => KeySpec::Aes256,
                        "OTHER" => KeySpec::Other,
                        v => Some(KeySpec::from_aws(v)).filter(|s| *s != KeySpec::Other).ok_or_else(bad)?,
                    })
                }
                "source" => f.source = Some(KeySource::from_name(value).ok_or_else(bad)?),
                _ => return Err(format!("cannot filter on {field:?}; use state, virtual, key_spec or source")),
            }
        }
        Ok(f)
    }
}

/// The deletion window of keys Keyward abandons (AWS's minimum).
pub(crate) const ABANDONED_WINDOW: std::time::Duration = std::time::Duration::from_secs(7 * 86_400);

/// Display names of keys: 1–256 characters, unique in the group.
const KEY_NAME_MAX: usize = 256;

/// AWS CreateKey/UpdateKeyDescription: Description is 0–8192 characters.
pub(crate) const DESCRIPTION_MAX: usize = 8192;

pub(crate) fn new_etag() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

impl Keyward {
    pub async fn get_key(&self, group: GroupId, id: KeyId) -> Result<Key> {
        self.store.get_key(group, id).await
    }

    /// ListKeys: `group` `None` lists every group; ordered by id after `after`.
    pub async fn list_keys(
        &self,
        group: Option<GroupId>,
        filter: &KeyFilter,
        after: Option<String>,
        limit: u64,
    ) -> Result<Vec<Key>> {
        if let Some(g) = group {
            self.store.get_group(g).await?;
        }
        let q = KeyQuery {
            group,
            state: filter.state,
            is_virtual: filter.is_virtual,
            key_spec: filter.key_spec.map(|s| s.api_name().to_owned()),
            source: filter.source.map(|s| s.name().to_owned()),
        };
        self.store.list_keys(&q, after, limit).await
    }

    /// CreateKey. In an AWS_KMS group: checks everything first (no AWS call on bad input),
    /// then AWS CreateKey and CreateAlias per alias. If an alias is refused, the new AWS key is
    /// not left behind: its aliases are removed and it is scheduled for deletion after the
    /// minimum 7 days, and the answer names the alias's current owner (ALREADY_EXISTS).
    pub async fn create_key(
        &self,
        group_id: GroupId,
        new: NewKey,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> Result<Key> {
        let now = crate::domain::to_micros(now);
        let group = self.store.get_group(group_id).await?;
        let mut bad = Vec::new();
        if let Err(e) = validate_display_name(&new.display_name, KEY_NAME_MAX) {
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
                bad.extend(check_keyward_key(new.key_spec, &new.key_ops, &new.aliases));
                None
            }
        };
        if !bad.is_empty() {
            return Err(Error::InvalidArgument(bad));
        }
        crate::lifecycle::check_policies(
            group_id,
            &group.crypto_policy,
            &self.settings.server_policy,
            new.key_spec,
            &new.key_ops,
        )?;
        if self.store.key_name_taken(group_id, &new.display_name).await? {
            return Err(Error::AlreadyExists {
                resource: new.display_name.clone(),
                message: format!("a key named {:?} already exists in groups/{group_id}", new.display_name),
            });
        }
        if group.kind == GroupKind::Regular {
            let material = crate::crypto::keys::random_key(32).map_err(Error::internal)?;
            let key = keyward_key(group_id, &new, KeySource::Keyward, caller, now);
            self.insert_keyward_key(&key, &material, caller, actions::CREATE_KEY, now).await?;
            return Ok(key);
        }
        let (Some(usage), Some(spec_name)) = (usage, new.key_spec.aws_name()) else {
            return Err(Error::invalid("key.key_spec", "not an AWS key spec"));
        };
        let kms = self.connect(&group, Purpose::Work)?;
        self.check_aliases_free(&kms, &new.aliases).await?;
        let meta = kms
            .create_key(CreateKeyInput {
                key_spec: spec_name.to_owned(),
                key_usage: usage.aws_name().to_owned(),
                description: new.description.clone(),
                tags: new.tags.as_map().iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                external: false,
            })
            .await?;
        tracing::info!(group_id = %group_id, aws_key_id = %meta.key_id, "aws key created");
        let mut key = Key {
            id: KeyId::new(),
            group_id,
            display_name: new.display_name,
            description: new.description,
            key_spec: new.key_spec,
            key_ops: new.key_ops,
            state: KeyState::from_aws(meta.key_state.as_deref(), meta.enabled),
            source: KeySource::AwsNative,
            tags: new.tags.into_map(),
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
                enabled: meta.enabled,
                creation_time: meta.creation_date,
                deletion_time: meta.deletion_date,
                valid_to: meta.valid_to,
                rotation_enabled: false,
            }),
            links: Vec::new(),
            created_by: caller.actor.clone(),
            create_time: now,
            update_time: now,
            etag: new_etag(),
        };
        // Recorded at once, before any further AWS call: a sync running meanwhile finds it known.
        if let Err(e) = self.store.insert_key(&key).await {
            // Another request took the display name meanwhile: do not keep an unrecorded AWS key.
            self.abandon_aws_key(&kms, &meta.key_id, &[]).await;
            return Err(e);
        }

        let mut created_aliases = Vec::new();
        for alias in &new.aliases {
            if let Err(e) = kms.create_alias(alias.as_str(), &meta.key_id).await {
                let err = match e {
                    kms::Error::AlreadyExists(_) => self.alias_taken(&kms, alias.as_str()).await,
                    other => Error::from(other),
                };
                let deletion = self.abandon_aws_key(&kms, &meta.key_id, &created_aliases).await;
                self.record_abandoned(&mut key, deletion, now).await;
                return Err(err);
            }
            created_aliases.push(alias.as_str().to_owned());
        }
        if let Some(a) = key.aws.as_mut() {
            a.aliases = created_aliases.clone();
            a.managed_aliases = created_aliases;
            // Read now so that the next sync finds nothing new (best effort).
            a.key_policy = kms.get_key_policy(&meta.key_id).await.ok();
        }
        let detail = format!("{} {}", key.key_spec.api_name(), meta.arn);
        self.commit_key_change(&mut key, caller, actions::CREATE_KEY, detail, now).await?;
        tracing::info!(group_id = %group_id, key_id = %key.id, "key created");
        Ok(key)
    }

    /// Records a key whose creation was undone: PENDING_DELETION when AWS scheduled it (else
    /// as AWS left it), renamed `<name>~abandoned-<id>` so the name is free for a retry.
    pub(crate) async fn record_abandoned(
        &self,
        key: &mut Key,
        deletion: Option<Option<OffsetDateTime>>,
        now: OffsetDateTime,
    ) {
        key.rename_abandoned();
        if let Some(deletion) = deletion {
            key.mark_pending_deletion(deletion, now + ABANDONED_WINDOW);
        }
        key.update_time = now;
        let prev = std::mem::replace(&mut key.etag, new_etag());
        let saved = async {
            self.store.replace_key(key, &prev).await?;
            self.store.set_next_check(key.id, crate::sync::next_check(key, now)).await
        }
        .await;
        if let Err(e) = saved {
            tracing::error!(key_id = %key.id, error = %e, "could not record an abandoned key; the next sync refreshes it");
        }
    }

    /// Inserts a Keyward key with its sealed material and the audit event, in one transaction.
    pub(crate) async fn insert_keyward_key(
        &self,
        key: &Key,
        material: &[u8],
        caller: &Caller,
        action: &str,
        now: OffsetDateTime,
    ) -> Result<()> {
        let tx = self.store.begin_audited().await?;
        tx.insert_key_with_material(key, material).await?;
        for link in &key.links {
            tx.insert_link(key.id, link).await?;
        }
        let name = key.name();
        ok_event(&tx, caller, action, name, format!("{} {}", key.key_spec.api_name(), key.source.name()), now).await?;
        tx.commit().await?;
        tracing::info!(group_id = %key.group_id, key_id = %key.id, "keyward key created");
        Ok(())
    }

    /// Refuses, before any key is made, aliases that already exist in the account and region
    /// (one ListAliases pass). A race after this check is still caught by CreateAlias.
    pub(crate) async fn check_aliases_free(&self, kms: &Arc<dyn Kms>, aliases: &[Alias]) -> Result<()> {
        if aliases.is_empty() {
            return Ok(());
        }
        let mut marker = None;
        for _ in 0..10_000 {
            let page = kms.list_aliases(Some(1000), marker.take()).await?;
            if let Some(taken) = page.items.iter().find(|e| aliases.iter().any(|a| a.as_str() == e.alias_name)) {
                return Err(self.alias_taken(kms, &taken.alias_name).await);
            }
            match page.next_marker {
                Some(m) => marker = Some(m),
                None => return Ok(()),
            }
        }
        Ok(())
    }

    /// Who owns `alias` now, as an ALREADY_EXISTS error.
    pub(crate) async fn alias_taken(&self, kms: &Arc<dyn Kms>, alias: &str) -> Error {
        let mut marker = None;
        let mut owner = None;
        for _ in 0..100 {
            let Ok(page) = kms.list_aliases(Some(100), marker.take()).await else { break };
            if let Some(a) = page.items.into_iter().find(|a| a.alias_name == alias) {
                owner = a.target_key_id;
                break;
            }
            match page.next_marker {
                Some(m) => marker = Some(m),
                None => break,
            }
        }
        let owner_text = match owner {
            Some(id) => match kms.describe_key(&id).await {
                Ok(m) => format!("AWS key {} ({})", m.arn, m.key_state.as_deref().unwrap_or("state unknown")),
                Err(_) => format!("AWS key {id}"),
            },
            None => "another AWS key".to_owned(),
        };
        Error::AlreadyExists { resource: alias.to_owned(), message: format!("{alias} already belongs to {owner_text}") }
    }

    pub(crate) fn connect(&self, group: &Group, purpose: Purpose) -> Result<Arc<dyn Kms>> {
        let Some(cfg) = &group.aws_kms else {
            return Err(Error::precondition(
                "NOT_AWS_KMS_GROUP",
                format!("groups/{}", group.id),
                format!("groups/{} is not an AWS_KMS group", group.id),
            ));
        };
        if purpose == Purpose::Probe {
            return Ok(self.kms.connect(cfg, purpose)?);
        }
        if let Ok(cache) = self.clients.lock()
            && let Some((etag, client)) = cache.get(&group.id)
            && *etag == group.etag
        {
            return Ok(client.clone());
        }
        let client = self.kms.connect(cfg, purpose)?;
        if let Ok(mut cache) = self.clients.lock() {
            cache.insert(group.id, (group.etag.clone(), client.clone()));
        }
        Ok(client)
    }
}

/// What a Keyward key (REGULAR group) may be: AES_256, encryption-family operations and EXPORT,
/// no aliases.
pub(crate) fn check_keyward_key(spec: KeySpec, ops: &[KeyOp], aliases: &[Alias]) -> Vec<FieldViolation> {
    let mut bad = Vec::new();
    if spec != KeySpec::Aes256 {
        bad.push(FieldViolation::new(
            "key.key_spec",
            format!("REGULAR groups hold AES_256 keys, not {}", spec.api_name()),
        ));
    }
    if ops.iter().any(|o| matches!(o, KeyOp::Sign | KeyOp::Verify)) {
        bad.push(FieldViolation::new("key.key_ops", "AES keys cannot SIGN or VERIFY"));
    }
    if !aliases.is_empty() {
        bad.push(FieldViolation::new("key.aws.aliases", "only keys in AWS_KMS groups have AWS aliases"));
    }
    bad
}

/// A new Keyward key (material held by Keyward) from a request.
pub(crate) fn keyward_key(
    group_id: GroupId,
    new: &NewKey,
    source: KeySource,
    caller: &Caller,
    now: OffsetDateTime,
) -> Key {
    Key {
        id: KeyId::new(),
        group_id,
        display_name: new.display_name.clone(),
        description: new.description.clone(),
        key_spec: KeySpec::Aes256,
        key_ops: new.key_ops.clone(),
        state: KeyState::Enabled,
        source,
        tags: new.tags.as_map().clone(),
        aws: None,
        links: Vec::new(),
        created_by: caller.actor.clone(),
        create_time: now,
        update_time: now,
        etag: new_etag(),
    }
}

/// Tags as a sorted map (for comparisons).
pub(crate) fn tag_map(pairs: Vec<(String, String)>) -> BTreeMap<String, String> {
    pairs.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters() {
        assert_eq!(KeyFilter::parse("").unwrap(), KeyFilter::default());
        let f = KeyFilter::parse("state = ENABLED AND virtual = true AND key_spec = RSA_2048").unwrap();
        assert_eq!(f.state, Some(KeyState::Enabled));
        assert_eq!(f.is_virtual, Some(true));
        assert_eq!(f.key_spec, Some(KeySpec::Rsa2048));
        assert!(KeyFilter::parse("state = ON").is_err());
        assert!(KeyFilter::parse("color = red").is_err());
        assert!(KeyFilter::parse("state").is_err());
    }
}
