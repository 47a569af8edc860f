//! Reading and handling AWS keys: every page of a listing, a key described (metadata, tags,
//! policy), the one conversion of AWS metadata into [`AwsKeyDetails`], alias checks, the
//! import of material, and abandoning an AWS key whose creation is undone.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use time::OffsetDateTime;

use crate::app::Keyward;
use crate::crypto::keys::rsa_oaep_sha256_wrap;
use crate::domain::{Alias, AwsKeyDetails, AwsRotation, Key, KeyState};
use crate::kms::{self, KeyMetadata, Kms};
use crate::{Error, Result};

/// Upper bound on list pages, so a misbehaving endpoint cannot loop forever
/// (10,000 pages × up to 1,000 items).
const MAX_PAGES: usize = 10_000;

/// Every item of a listing: follows NextMarker until AWS stops sending one. A marker seen
/// before is an error, not a loop.
pub(crate) async fn all_pages<T, F, Fut>(what: &str, mut call: F) -> kms::Result<Vec<T>>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = kms::Result<kms::Page<T>>>,
{
    let mut items = Vec::new();
    let mut seen = HashSet::new();
    let mut marker: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let page = call(marker.take()).await?;
        items.extend(page.items);
        match page.next_marker {
            None => return Ok(items),
            Some(m) if !seen.insert(m.clone()) => {
                return Err(kms::Error::Unavailable(format!(
                    "{what} returned a marker it had returned before; stopped"
                )));
            }
            Some(m) => marker = Some(m),
        }
    }
    Err(kms::Error::Unavailable(format!("{what} did not finish within {MAX_PAGES} pages")))
}

/// What AWS says about one key.
pub(crate) struct Described {
    pub(crate) meta: KeyMetadata,
    pub(crate) tags: BTreeMap<String, String>,
    pub(crate) policy: Option<String>,
    /// AWS's rotation settings, read for keys AWS can rotate itself.
    pub(crate) rotation: Option<AwsRotation>,
}

/// What [`describe`] reads besides DescribeKey and the tags.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reads {
    /// GetKeyPolicy (AWS-managed keys and restrictive policies may deny it: then not shown).
    pub(crate) policy: bool,
    /// GetKeyRotationStatus, for keys AWS can rotate.
    pub(crate) rotation: bool,
}

/// DescribeKey, every tag, and what `reads` asks for.
pub(crate) async fn describe(kms: &Arc<dyn Kms>, key_id: &str, reads: Reads) -> kms::Result<Described> {
    let meta = kms.describe_key(key_id).await?;
    let tags = all_pages("ListResourceTags", |m| kms.list_resource_tags(key_id, m)).await?.into_iter().collect();
    let policy = if reads.policy { kms.get_key_policy(key_id).await.ok() } else { None };
    let rotation = if reads.rotation { rotation_of(kms, &meta).await } else { None };
    Ok(Described { meta, tags, policy, rotation })
}

/// AWS's rotation settings of the key `meta` describes: one GetKeyRotationStatus, only where
/// AWS can rotate the key (symmetric, AWS-made material) and its state allows the call; `None`
/// otherwise, or when AWS refuses (unknown).
pub(crate) async fn rotation_of(kms: &Arc<dyn Kms>, meta: &KeyMetadata) -> Option<AwsRotation> {
    let rotatable = meta.key_spec.as_deref() == Some("SYMMETRIC_DEFAULT")
        && meta.origin.as_deref() == Some("AWS_KMS")
        && matches!(meta.key_state.as_deref(), Some("Enabled" | "Disabled"));
    if rotatable { read_rotation(kms, &meta.key_id).await.ok() } else { None }
}

/// GetKeyRotationStatus as [`AwsRotation`].
pub(crate) async fn read_rotation(kms: &Arc<dyn Kms>, key_id: &str) -> kms::Result<AwsRotation> {
    let s = kms.get_key_rotation_status(key_id).await?;
    // The period and next date mean something only while rotation is on (an emulator may send
    // them for a key whose rotation is off).
    Ok(AwsRotation {
        enabled: s.enabled,
        period_days: s.period_days.filter(|_| s.enabled),
        next_rotation_time: s.next_rotation.filter(|_| s.enabled),
    })
}

/// Every alias of one AWS key, sorted.
pub(crate) async fn key_aliases(kms: &Arc<dyn Kms>, key_id: &str) -> kms::Result<Vec<String>> {
    let mut aliases: Vec<String> = all_pages("ListAliases", |m| kms.list_key_aliases(key_id, m))
        .await?
        .into_iter()
        .map(|a| a.alias_name)
        .collect();
    aliases.sort();
    Ok(aliases)
}

/// The details of a virtual key from AWS's metadata (the one place this is built).
pub(crate) fn aws_details(m: &KeyMetadata, aliases: Vec<String>, policy: Option<String>) -> AwsKeyDetails {
    AwsKeyDetails {
        key_arn: m.arn.clone(),
        aws_key_id: m.key_id.clone(),
        aliases,
        managed_aliases: Vec::new(),
        key_policy: policy,
        aws_key_state: m.key_state.clone(),
        key_spec: m.key_spec.clone(),
        origin: m.origin.clone(),
        key_usage: m.key_usage.clone(),
        key_manager: m.key_manager.clone(),
        enabled: m.enabled,
        creation_time: m.creation_date,
        valid_to: m.valid_to,
        rotation: None,
    }
}

/// The state AWS's metadata says the key is in.
pub(crate) fn aws_state(m: &KeyMetadata) -> KeyState {
    KeyState::from_aws(m.key_state.as_deref(), m.enabled, m.deletion_date)
}

/// `key` as AWS describes it now; Keyward-only fields (display name, key ops, links, the
/// aliases Keyward manages among those still there, rotation) are kept. A policy AWS did
/// not show keeps the one Keyward knew.
pub(crate) fn refreshed(key: &Key, d: &Described, aliases: Vec<String>) -> Key {
    let mut k = key.clone();
    let mut details = aws_details(&d.meta, aliases, d.policy.clone());
    details.rotation = d.rotation.clone();
    if let Some(prev) = &key.aws {
        if details.rotation.is_none() {
            details.rotation = prev.rotation.clone();
        }
        details.managed_aliases =
            prev.managed_aliases.iter().filter(|a| details.aliases.contains(a)).cloned().collect();
        if details.key_policy.is_none() {
            details.key_policy = prev.key_policy.clone();
        }
    }
    k.state = aws_state(&d.meta);
    k.description = d.meta.description.clone().unwrap_or_default();
    k.tags = d.tags.clone();
    k.aws = Some(details);
    k
}

/// When the deletion-window check should look at `k`: at its deletion time while it is
/// pending deletion (now if AWS gave none), never otherwise.
pub(crate) fn next_check(k: &Key, now: OffsetDateTime) -> Option<OffsetDateTime> {
    match k.state {
        KeyState::PendingDeletion { deletion_time } => Some(deletion_time.unwrap_or(now)),
        _ => None,
    }
}

/// GetParametersForImport → RSA-OAEP-SHA-256 wrap → ImportKeyMaterial. The import token and
/// the wrapped material are never logged.
pub(crate) async fn import_material(
    kms: &Arc<dyn Kms>,
    aws_key_id: &str,
    material: &[u8],
    valid_to: Option<OffsetDateTime>,
) -> kms::Result<()> {
    let params = kms.get_parameters_for_import(aws_key_id).await?;
    let wrapped =
        rsa_oaep_sha256_wrap(&params.public_key_der, material).map_err(|e| kms::Error::Other(e.to_string()))?;
    let input =
        kms::ImportKeyMaterialInput { import_token: &params.import_token, encrypted_key_material: &wrapped, valid_to };
    kms.import_key_material(aws_key_id, input).await
}

/// Refuses, before any key is made, aliases that already exist in the account and region
/// (one ListAliases pass). A race after this check is still caught by CreateAlias.
pub(crate) async fn check_aliases_free(kms: &Arc<dyn Kms>, aliases: &[Alias]) -> Result<()> {
    if aliases.is_empty() {
        return Ok(());
    }
    let all = all_pages("ListAliases", |m| kms.list_aliases(Some(1000), m)).await?;
    match all.iter().find(|e| aliases.iter().any(|a| a.as_str() == e.alias_name)) {
        Some(taken) => Err(alias_taken(kms, &taken.alias_name).await),
        None => Ok(()),
    }
}

/// Who owns `alias` now, as an ALREADY_EXISTS error.
pub(crate) async fn alias_taken(kms: &Arc<dyn Kms>, alias: &str) -> Error {
    let owner = match all_pages("ListAliases", |m| kms.list_aliases(Some(100), m)).await {
        Ok(all) => all.into_iter().find(|a| a.alias_name == alias).and_then(|a| a.target_key_id),
        Err(_) => None,
    };
    let owner_text = match owner {
        Some(id) => match kms.describe_key(&id).await {
            Ok(m) => format!("AWS key {} ({})", m.arn, m.key_state.as_deref().unwrap_or("state unknown")),
            Err(_) => format!("AWS key {id}"),
        },
        None => "another AWS key".to_owned(),
    };
    Error::AlreadyExists { resource: alias.to_owned(), message: format!("{alias} already belongs to {owner_text}") }
}

/// CreateAlias for each alias in turn; the first refusal stops (an alias taken is
/// ALREADY_EXISTS naming its owner). Returns the aliases made, and the error if any.
pub(crate) async fn create_aliases(
    kms: &Arc<dyn Kms>,
    aws_key_id: &str,
    aliases: &[Alias],
) -> (Vec<String>, Option<Error>) {
    let mut made = Vec::new();
    for alias in aliases {
        if let Err(e) = kms.create_alias(alias.as_str(), aws_key_id).await {
            let err = match e {
                kms::Error::AlreadyExists(_) => alias_taken(kms, alias.as_str()).await,
                other => Error::from(other),
            };
            return (made, Some(err));
        }
        made.push(alias.as_str().to_owned());
    }
    (made, None)
}

impl Keyward {
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
}

/// Moves one planned alias to `new_aws_key_id` with UpdateAlias after asking AWS where it
/// points (DescribeKey of the alias: one call, whatever the key's number of aliases): on the
/// old key → moved; on the new key already (a run before a crash moved it) → nothing to do.
/// `Err(why)` inside `Ok` when it is elsewhere: never move an alias the plan did not expect.
pub(crate) async fn move_planned_alias(
    kms: &Arc<dyn Kms>,
    m: &crate::domain::AliasMove,
    new_aws_key_id: &str,
) -> Result<std::result::Result<(), String>> {
    let target = match kms.describe_key(&m.alias).await {
        Ok(meta) => Some(meta.key_id),
        Err(kms::Error::NotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    if target.as_deref() == Some(m.from_aws_key_id.as_str()) {
        kms.update_alias(&m.alias, new_aws_key_id).await?;
    } else if target.as_deref() != Some(new_aws_key_id) {
        return Ok(Err(format!("{} no longer targets {} as the plan expected", m.alias, m.from_aws_key_id)));
    }
    Ok(Ok(()))
}
