//! Row ⇄ domain conversion, by hand. Stored enum names are the API names (`ENABLED`, `AWS_KMS`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::entities::{keys, operations, sync_runs};
use crate::domain::{
    AliasMove, AwsKeyDetails, AwsRotation, ConnectionState, CronSchedule, GroupId, GroupKind, Key, KeyId, KeyOp,
    KeySource, KeySpec, KeyState, KeyUsage, OldKeyAction, OpKind, OpState, Operation, PlannedCopy, PlannedKey,
    PlannedSource, RotationEvery, RotationKind, RotationPlan, RotationPolicy, RotationSchedule, SyncRun, SyncRunId,
    SyncRunState, SyncTrigger, SyncWarning,
};
use crate::{Error, Result};

pub(crate) fn corrupt(what: &str) -> Error {
    Error::internal(format!("stored value is not valid: {what}"))
}

pub(crate) fn group_kind_name(k: GroupKind) -> &'static str {
    match k {
        GroupKind::Regular => "REGULAR",
        GroupKind::AwsKms => "AWS_KMS",
    }
}

pub(crate) fn group_kind(s: &str) -> Result<GroupKind> {
    match s {
        "REGULAR" => Ok(GroupKind::Regular),
        "AWS_KMS" => Ok(GroupKind::AwsKms),
        _ => Err(corrupt("groups.kind")),
    }
}

pub(crate) fn connection_state_name(s: ConnectionState) -> &'static str {
    match s {
        ConnectionState::Connected => "CONNECTED",
        ConnectionState::NotConnected => "NOT_CONNECTED",
        ConnectionState::Unknown => "UNKNOWN",
    }
}

pub(crate) fn connection_state(s: &str) -> ConnectionState {
    match s {
        "CONNECTED" => ConnectionState::Connected,
        "NOT_CONNECTED" => ConnectionState::NotConnected,
        _ => ConnectionState::Unknown,
    }
}

pub(crate) fn key_spec(s: &str) -> Result<KeySpec> {
    KeySpec::from_api_name(s).ok_or_else(|| corrupt("key_spec"))
}

pub(crate) fn ops_json(ops: &[KeyOp]) -> String {
    serde_json::to_string(&ops.iter().map(|o| o.name()).collect::<Vec<_>>()).unwrap_or_else(|_| "[]".into())
}

pub(crate) fn ops(s: &str) -> Result<Vec<KeyOp>> {
    let names: Vec<String> = serde_json::from_str(s).map_err(|_| corrupt("key_ops"))?;
    names.iter().map(|n| KeyOp::from_name(n).ok_or_else(|| corrupt("key_ops"))).collect()
}

pub(crate) fn specs_json(specs: &[KeySpec]) -> String {
    serde_json::to_string(&specs.iter().map(|o| o.api_name()).collect::<Vec<_>>()).unwrap_or_else(|_| "[]".into())
}

pub(crate) fn specs(s: &str) -> Result<Vec<KeySpec>> {
    let names: Vec<String> = serde_json::from_str(s).map_err(|_| corrupt("allowed_key_specs"))?;
    names.iter().map(|n| key_spec(n)).collect()
}

pub(crate) fn tags_json(tags: &BTreeMap<String, String>) -> String {
    serde_json::to_string(tags).unwrap_or_else(|_| "{}".into())
}

/// The `keys.aws` JSON column.
#[derive(Serialize, Deserialize, Default)]
pub(crate) struct AwsJson {
    key_arn: String,
    aws_key_id: String,
    aliases: Vec<String>,
    #[serde(default)]
    managed_aliases: Vec<String>,
    key_policy: Option<String>,
    aws_key_state: Option<String>,
    key_spec: Option<String>,
    origin: Option<String>,
    key_usage: Option<String>,
    key_manager: Option<String>,
    enabled: bool,
    #[serde(with = "time::serde::rfc3339::option")]
    creation_time: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    deletion_time: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    valid_to: Option<OffsetDateTime>,
    #[serde(default)]
    rotation: Option<RotationJson>,
}

#[derive(Serialize, Deserialize, Default)]
struct RotationJson {
    enabled: bool,
    period_days: Option<i32>,
    #[serde(with = "time::serde::rfc3339::option")]
    next_rotation_time: Option<OffsetDateTime>,
}

/// The `keys.aws` JSON of a virtual key; the deletion time of a key pending deletion is kept
/// there too.
pub(crate) fn aws_json(a: &AwsKeyDetails, deletion_time: Option<OffsetDateTime>) -> String {
    let j = AwsJson {
        key_arn: a.key_arn.clone(),
        aws_key_id: a.aws_key_id.clone(),
        aliases: a.aliases.clone(),
        managed_aliases: a.managed_aliases.clone(),
        key_policy: a.key_policy.clone(),
        aws_key_state: a.aws_key_state.clone(),
        key_spec: a.key_spec.clone(),
        origin: a.origin.clone(),
        key_usage: a.key_usage.clone(),
        key_manager: a.key_manager.clone(),
        enabled: a.enabled,
        creation_time: a.creation_time,
        deletion_time,
        valid_to: a.valid_to,
        rotation: a.rotation.as_ref().map(|r| RotationJson {
            enabled: r.enabled,
            period_days: r.period_days,
            next_rotation_time: r.next_rotation_time,
        }),
    };
    serde_json::to_string(&j).unwrap_or_default()
}

/// The details and the stored deletion time.
pub(crate) fn aws_details(s: &str) -> Result<(AwsKeyDetails, Option<OffsetDateTime>)> {
    let j: AwsJson = serde_json::from_str(s).map_err(|_| corrupt("keys.aws"))?;
    let details = AwsKeyDetails {
        key_arn: j.key_arn,
        aws_key_id: j.aws_key_id,
        aliases: j.aliases,
        managed_aliases: j.managed_aliases,
        key_policy: j.key_policy,
        aws_key_state: j.aws_key_state,
        key_spec: j.key_spec,
        origin: j.origin,
        key_usage: j.key_usage,
        key_manager: j.key_manager,
        enabled: j.enabled,
        creation_time: j.creation_time,
        valid_to: j.valid_to,
        rotation: j.rotation.map(|r| AwsRotation {
            enabled: r.enabled,
            period_days: r.period_days,
            next_rotation_time: r.next_rotation_time,
        }),
    };
    Ok((details, j.deletion_time))
}

fn uuid_of(s: &str, what: &str) -> Result<uuid::Uuid> {
    uuid::Uuid::parse_str(s).map_err(|_| corrupt(what))
}

pub(crate) fn key(m: keys::Model) -> Result<Key> {
    let (aws, deletion_time) = match m.aws.as_deref().map(aws_details).transpose()? {
        Some((a, t)) => (Some(a), t),
        None => (None, None),
    };
    let state = match KeyState::from_name(&m.state).ok_or_else(|| corrupt("keys.state"))? {
        KeyState::PendingDeletion { .. } => KeyState::PendingDeletion { deletion_time },
        other => other,
    };
    // A key a sync recorded as OTHER before Keyward knew its spec reads as that spec now (its
    // AWS name is kept); its key_ops, empty then, follow its AWS usage.
    let mut key_spec = key_spec(&m.key_spec)?;
    let mut key_ops = ops(&m.key_ops)?;
    if let (KeySpec::Other, Some(a)) = (key_spec, &aws) {
        key_spec = KeySpec::from_aws(a.key_spec.as_deref().unwrap_or_default());
        if key_ops.is_empty() {
            key_ops = KeyOp::for_aws_usage(a.key_usage.as_deref());
        }
    }
    Ok(Key {
        id: KeyId(uuid_of(&m.id, "keys.id")?),
        group_id: GroupId(uuid_of(&m.group_id, "keys.group_id")?),
        display_name: m.display_name,
        description: m.description,
        key_spec,
        key_ops,
        state,
        source: KeySource::from_name(&m.source).ok_or_else(|| corrupt("keys.source"))?,
        tags: serde_json::from_str(&m.tags).map_err(|_| corrupt("keys.tags"))?,
        aws,
        links: Vec::new(),
        rotation_policy: m.rotation_policy.as_deref().map(rotation_policy).transpose()?,
        created_by: m.created_by,
        create_time: m.created_at,
        update_time: m.updated_at,
        etag: m.etag,
    })
}

pub(crate) fn trigger_name(t: SyncTrigger) -> &'static str {
    match t {
        SyncTrigger::Manual => "MANUAL",
        SyncTrigger::Scheduled => "SCHEDULED",
    }
}

#[derive(Serialize, Deserialize)]
struct WarningJson {
    aws_key: String,
    message: String,
}

pub(crate) fn warnings_json(w: &[SyncWarning]) -> String {
    let v: Vec<WarningJson> =
        w.iter().map(|w| WarningJson { aws_key: w.aws_key.clone(), message: w.message.clone() }).collect();
    serde_json::to_string(&v).unwrap_or_else(|_| "[]".into())
}

pub(crate) fn sync_run(m: sync_runs::Model) -> Result<SyncRun> {
    let warnings: Vec<WarningJson> = serde_json::from_str(&m.warnings).map_err(|_| corrupt("sync_runs.warnings"))?;
    Ok(SyncRun {
        id: SyncRunId(uuid_of(&m.id, "sync_runs.id")?),
        group_id: GroupId(uuid_of(&m.group_id, "sync_runs.group_id")?),
        state: match m.state.as_str() {
            "RUNNING" => SyncRunState::Running,
            "SUCCEEDED" => SyncRunState::Succeeded,
            "FAILED" => SyncRunState::Failed,
            _ => return Err(corrupt("sync_runs.state")),
        },
        trigger: if m.trigger == "SCHEDULED" { SyncTrigger::Scheduled } else { SyncTrigger::Manual },
        actor: m.actor,
        listed: m.listed,
        added: m.added,
        updated: m.updated,
        unchanged: m.unchanged,
        failed: m.failed,
        warnings: warnings.into_iter().map(|w| SyncWarning { aws_key: w.aws_key, message: w.message }).collect(),
        error: m.error,
        start_time: m.started_at,
        end_time: m.ended_at,
        drift: super::drift::summary(&m.drift)?,
    })
}

/// `operations.subjects`: `["groups/{g}/keys/{k}", ...]`.
pub(crate) fn subjects_json(subjects: &[(GroupId, KeyId)]) -> String {
    let names: Vec<String> = subjects.iter().map(|(g, k)| format!("groups/{g}/keys/{k}")).collect();
    serde_json::to_string(&names).unwrap_or_else(|_| "[]".into())
}

fn subjects(s: &str) -> Result<Vec<(GroupId, KeyId)>> {
    let names: Vec<String> = serde_json::from_str(s).map_err(|_| corrupt("operations.subjects"))?;
    names
        .iter()
        .map(|n| {
            let (g, k) = n
                .strip_prefix("groups/")
                .and_then(|r| r.split_once("/keys/"))
                .ok_or_else(|| corrupt("operations.subjects"))?;
            Ok((
                GroupId::parse(g).ok_or_else(|| corrupt("operations.subjects"))?,
                KeyId::parse(k).ok_or_else(|| corrupt("operations.subjects"))?,
            ))
        })
        .collect()
}

pub(crate) fn operation(r: operations::Model) -> Result<Operation> {
    Ok(Operation {
        id: uuid_of(&r.id, "operations.id")?,
        kind: OpKind::from_name(&r.kind).ok_or_else(|| corrupt("operations.kind"))?,
        group_id: GroupId(uuid_of(&r.group_id, "operations.group_id")?),
        key_id: KeyId(uuid_of(&r.key_id, "operations.key_id")?),
        aws_key_id: r.aws_key_id,
        subjects: subjects(&r.subjects)?,
        plan: r.plan.as_deref().map(plan).transpose()?,
        state: OpState::from_name(&r.state).ok_or_else(|| corrupt("operations.state"))?,
        detail: r.detail,
        created_at: r.created_at,
        updated_at: r.updated_at,
    })
}

/// `operations.plan`: a rotation's plan, with the API's names for enums.
#[derive(Serialize, Deserialize)]
struct PlanJson {
    kind: String,
    group_id: String,
    key_id: String,
    aws_key_id: String,
    new_key: Option<PlannedKeyJson>,
    rename_old_to: Option<String>,
    #[serde(default)]
    source: Option<SourceJson>,
    #[serde(default)]
    copies: Vec<CopyJson>,
    alias_moves: Vec<(String, String)>,
    old_key_action: String,
    pending_window_days: i32,
    aws_calls: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct CopyJson {
    group_id: String,
    key_id: String,
    aws_key_id: Option<String>,
    skipped: Option<String>,
    new_key_id: String,
    display_name: String,
    rename_old_to: String,
    description: String,
    tags: BTreeMap<String, String>,
    key_policy: Option<String>,
    alias_moves: Vec<(String, String)>,
}

#[derive(Serialize, Deserialize)]
struct SourceJson {
    group_id: String,
    key_id: String,
    create_named: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct PlannedKeyJson {
    display_name: String,
    key_spec: String,
    key_usage: String,
    description: String,
    tags: BTreeMap<String, String>,
    key_policy: Option<String>,
    #[serde(default)]
    rotation_period_days: Option<i32>,
}

pub(crate) fn plan_json(p: &RotationPlan) -> String {
    let j = PlanJson {
        kind: p.kind.name().to_owned(),
        group_id: p.group_id.to_string(),
        key_id: p.key_id.to_string(),
        aws_key_id: p.aws_key_id.clone(),
        new_key: p.new_key.as_ref().map(|k| PlannedKeyJson {
            display_name: k.display_name.clone(),
            key_spec: k.key_spec.api_name().to_owned(),
            key_usage: k.key_usage.aws_name().to_owned(),
            description: k.description.clone(),
            tags: k.tags.clone(),
            key_policy: k.key_policy.clone(),
            rotation_period_days: k.rotation_period_days,
        }),
        rename_old_to: p.rename_old_to.clone(),
        source: p.source.as_ref().map(|s| SourceJson {
            group_id: s.group_id.to_string(),
            key_id: s.key_id.to_string(),
            create_named: s.create_named.clone(),
        }),
        copies: p
            .copies
            .iter()
            .map(|c| CopyJson {
                group_id: c.group_id.to_string(),
                key_id: c.key_id.to_string(),
                aws_key_id: c.aws_key_id.clone(),
                skipped: c.skipped.clone(),
                new_key_id: c.new_key_id.to_string(),
                display_name: c.display_name.clone(),
                rename_old_to: c.rename_old_to.clone(),
                description: c.description.clone(),
                tags: c.tags.clone(),
                key_policy: c.key_policy.clone(),
                alias_moves: moves_json(&c.alias_moves),
            })
            .collect(),
        alias_moves: moves_json(&p.alias_moves),
        old_key_action: p.old_key_action.name().to_owned(),
        pending_window_days: window_days(p.old_key_action),
        aws_calls: p.aws_calls.clone(),
    };
    serde_json::to_string(&j).unwrap_or_default()
}

fn moves_json(moves: &[AliasMove]) -> Vec<(String, String)> {
    moves.iter().map(|m| (m.alias.clone(), m.from_aws_key_id.clone())).collect()
}

fn moves(j: Vec<(String, String)>) -> Vec<AliasMove> {
    j.into_iter().map(|(alias, from_aws_key_id)| AliasMove { alias, from_aws_key_id }).collect()
}

fn plan(s: &str) -> Result<RotationPlan> {
    let bad = || corrupt("operations.plan");
    let j: PlanJson = serde_json::from_str(s).map_err(|_| bad())?;
    let new_key = match j.new_key {
        None => None,
        Some(k) => Some(PlannedKey {
            display_name: k.display_name,
            key_spec: key_spec(&k.key_spec)?,
            key_usage: match k.key_usage.as_str() {
                "ENCRYPT_DECRYPT" => KeyUsage::EncryptDecrypt,
                "SIGN_VERIFY" => KeyUsage::SignVerify,
                _ => return Err(bad()),
            },
            description: k.description,
            tags: k.tags,
            key_policy: k.key_policy,
            rotation_period_days: k.rotation_period_days,
        }),
    };
    Ok(RotationPlan {
        kind: RotationKind::from_name(&j.kind).ok_or_else(bad)?,
        group_id: GroupId(uuid_of(&j.group_id, "operations.plan")?),
        key_id: KeyId(uuid_of(&j.key_id, "operations.plan")?),
        aws_key_id: j.aws_key_id,
        new_key,
        rename_old_to: j.rename_old_to,
        source: match j.source {
            None => None,
            Some(s) => Some(PlannedSource {
                group_id: GroupId(uuid_of(&s.group_id, "operations.plan")?),
                key_id: KeyId(uuid_of(&s.key_id, "operations.plan")?),
                create_named: s.create_named,
            }),
        },
        copies: j
            .copies
            .into_iter()
            .map(|c| {
                Ok(PlannedCopy {
                    group_id: GroupId(uuid_of(&c.group_id, "operations.plan")?),
                    key_id: KeyId(uuid_of(&c.key_id, "operations.plan")?),
                    aws_key_id: c.aws_key_id,
                    skipped: c.skipped,
                    new_key_id: KeyId(uuid_of(&c.new_key_id, "operations.plan")?),
                    display_name: c.display_name,
                    rename_old_to: c.rename_old_to,
                    description: c.description,
                    tags: c.tags,
                    key_policy: c.key_policy,
                    alias_moves: moves(c.alias_moves),
                })
            })
            .collect::<Result<_>>()?,
        alias_moves: moves(j.alias_moves),
        old_key_action: old_key_action(&j.old_key_action, j.pending_window_days).ok_or_else(bad)?,
        aws_calls: j.aws_calls,
    })
}

/// `keys.rotation_policy`.
#[derive(Serialize, Deserialize)]
struct RotationPolicyJson {
    /// 0 with a cron schedule.
    interval_secs: u64,
    #[serde(default)]
    cron: Option<String>,
    #[serde(default)]
    rotate_linked: bool,
    in_place: bool,
    old_key_action: String,
    pending_window_days: i32,
    #[serde(with = "time::serde::rfc3339")]
    next_rotation_time: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    last_rotation_time: Option<OffsetDateTime>,
    last_error: Option<String>,
    failures: u32,
}

fn old_key_action(name: &str, days: i32) -> Option<OldKeyAction> {
    match name {
        "KEEP_ENABLED" => Some(OldKeyAction::KeepEnabled),
        "DISABLE" => Some(OldKeyAction::Disable),
        "SCHEDULE_DELETION" => Some(OldKeyAction::ScheduleDeletion { pending_window_days: days }),
        _ => None,
    }
}

fn window_days(a: OldKeyAction) -> i32 {
    match a {
        OldKeyAction::ScheduleDeletion { pending_window_days } => pending_window_days,
        _ => 0,
    }
}

pub(crate) fn rotation_policy_json(p: &RotationPolicy) -> String {
    let j = RotationPolicyJson {
        interval_secs: match &p.schedule.every {
            RotationEvery::Interval(d) => d.as_secs(),
            RotationEvery::Cron(_) => 0,
        },
        cron: match &p.schedule.every {
            RotationEvery::Interval(_) => None,
            RotationEvery::Cron(c) => Some(c.as_str().to_owned()),
        },
        rotate_linked: p.schedule.rotate_linked,
        in_place: p.schedule.in_place,
        old_key_action: p.schedule.old_key_action.name().to_owned(),
        pending_window_days: window_days(p.schedule.old_key_action),
        next_rotation_time: p.next_rotation_time,
        last_rotation_time: p.last_rotation_time,
        last_error: p.last_error.clone(),
        failures: p.failures,
    };
    serde_json::to_string(&j).unwrap_or_default()
}

fn rotation_policy(s: &str) -> Result<RotationPolicy> {
    let j: RotationPolicyJson = serde_json::from_str(s).map_err(|_| corrupt("keys.rotation_policy"))?;
    let every = match j.cron {
        Some(c) => RotationEvery::Cron(CronSchedule::parse_checked(&c).map_err(|_| corrupt("keys.rotation_policy"))?),
        None => RotationEvery::Interval(std::time::Duration::from_secs(j.interval_secs)),
    };
    Ok(RotationPolicy {
        schedule: RotationSchedule {
            every,
            in_place: j.in_place,
            old_key_action: old_key_action(&j.old_key_action, j.pending_window_days)
                .ok_or_else(|| corrupt("keys.rotation_policy"))?,
            rotate_linked: j.rotate_linked,
        },
        next_rotation_time: j.next_rotation_time,
        last_rotation_time: j.last_rotation_time,
        last_error: j.last_error,
        failures: j.failures,
    })
}
