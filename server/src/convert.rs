//! Proto ⇄ domain translation, by hand: resource names, enums, timestamps, and the parsing of
//! every request field (errors name the field).

use std::collections::BTreeMap;
use std::time::Duration;

use keyward_proto::v1 as pb;
use keyward_shared::domain::{
    Alias, AwsKmsConfig, AwsKmsConfigPatch, ConnectionState, ConnectionStatus, CronSchedule, CryptoPolicy, DriftKind,
    EndpointUrl, FieldViolation, Group, GroupId, GroupKind, Key, KeyCursor, KeyDrift, KeyId, KeyLinkKind, KeyOp,
    KeySource, KeySpec, KeyState, OldKeyAction, Region, RotationEvery, RotationKind, RotationPlan, SortValue, SyncRun,
    SyncRunId, SyncRunState, SyncTrigger, Tags,
};
use keyward_shared::{Error, LinkedCopies, NewGroup, NewKey, ToSource};
use secrecy::SecretString;
use time::OffsetDateTime;
use tonic::Status;

use crate::status::{invalid, to_status};

// ----- names -----

pub fn group_name(id: GroupId) -> String {
    format!("groups/{id}")
}

pub fn key_name(g: GroupId, k: KeyId) -> String {
    format!("groups/{g}/keys/{k}")
}

pub fn parse_group_name(field: &str, name: &str) -> Result<GroupId, Status> {
    name.strip_prefix("groups/")
        .and_then(GroupId::parse)
        .ok_or_else(|| invalid(field, format!("{name:?} is not a group name groups/{{uuid}}")))
}

/// `groups/{g}` → `Some(g)`, `groups/-` → `None` (every group).
pub fn parse_key_parent(field: &str, name: &str) -> Result<Option<GroupId>, Status> {
    if name == "groups/-" { Ok(None) } else { parse_group_name(field, name).map(Some) }
}

pub fn parse_key_name(field: &str, name: &str) -> Result<(GroupId, KeyId), Status> {
    let bad = || invalid(field, format!("{name:?} is not a key name groups/{{uuid}}/keys/{{uuid}}"));
    let rest = name.strip_prefix("groups/").ok_or_else(bad)?;
    let (g, k) = rest.split_once("/keys/").ok_or_else(bad)?;
    Ok((GroupId::parse(g).ok_or_else(bad)?, KeyId::parse(k).ok_or_else(bad)?))
}

pub fn parse_sync_run_name(field: &str, name: &str) -> Result<(GroupId, SyncRunId), Status> {
    let bad = || invalid(field, format!("{name:?} is not a sync run name groups/{{uuid}}/syncRuns/{{uuid}}"));
    let rest = name.strip_prefix("groups/").ok_or_else(bad)?;
    let (g, r) = rest.split_once("/syncRuns/").ok_or_else(bad)?;
    Ok((GroupId::parse(g).ok_or_else(bad)?, SyncRunId::parse(r).ok_or_else(bad)?))
}

/// A resource name as the audit log keeps it: UUID segments in their canonical (lower-case,
/// hyphenated) form, so filters find refusals however the caller spelled the name.
pub fn canonical_name(name: &str) -> String {
    name.split('/')
        .map(|seg| uuid::Uuid::parse_str(seg).map(|u| u.to_string()).unwrap_or_else(|_| seg.to_owned()))
        .collect::<Vec<_>>()
        .join("/")
}

// ----- paging -----

/// AIP-158: 0 → 100; above 1000 → 1000; negative → INVALID_ARGUMENT.
pub fn page_size(n: i32) -> Result<u64, Status> {
    match n {
        n if n < 0 => Err(invalid("page_size", "must not be negative")),
        0 => Ok(100),
        n => Ok(n.min(1000) as u64),
    }
}

/// Opaque page token carrying the last id of the previous page.
pub fn encode_token(last_id: &str) -> String {
    format!("k1{}", hex::encode(last_id))
}

/// The text a `prefix` + hex page token carries (at most `max_hex` hex digits).
fn unhex_token(token: &str, prefix: &str, max_hex: usize) -> Option<String> {
    let hex = token.strip_prefix(prefix).filter(|h| h.len() <= max_hex)?;
    String::from_utf8(hex::decode(hex).ok()?).ok()
}

/// A page token carrying a position (`{prefix}{seq}`), e.g. the audit log's.
pub fn encode_seq_token(prefix: &str, seq: i64) -> String {
    format!("{prefix}{seq}")
}

/// The position of a [`encode_seq_token`] token; empty: `None`.
pub fn decode_seq_token(prefix: &str, token: &str) -> Result<Option<i64>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    token
        .strip_prefix(prefix)
        .and_then(|s| s.parse::<i64>().ok())
        .filter(|n| *n >= 0)
        .map(Some)
        .ok_or_else(|| invalid("page_token", "not a token this server issued"))
}

pub fn decode_token(token: &str) -> Result<Option<String>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || invalid("page_token", "not a token this server issued");
    let id = unhex_token(token, "k1", 128).ok_or_else(bad)?;
    uuid::Uuid::parse_str(&id).map_err(|_| bad())?;
    Ok(Some(id))
}

/// A digest of the request fields a page token belongs to (parent, filter, order_by).
pub fn query_digest(parts: &[&str]) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for p in parts {
        ctx.update(p.as_bytes());
        ctx.update(&[0]);
    }
    hex::encode(&ctx.finish().as_ref()[..8])
}

/// ListKeys page token: `k2` + hex of the query digest (16), the last key id (36), the sort
/// value's kind (`n` none, `t` text, `u` microseconds) and the value.
pub fn encode_key_token(query: &str, c: &KeyCursor) -> String {
    let value = match &c.value {
        SortValue::None => "n".to_owned(),
        SortValue::Text(t) => format!("t{t}"),
        SortValue::Micros(us) => format!("u{us}"),
    };
    format!("k2{}", hex::encode(format!("{query}{}{value}", c.id)))
}

/// The cursor of a ListKeys page token; a token of another parent, filter or order_by (or not
/// one this server issued) → INVALID_ARGUMENT.
pub fn decode_key_token(token: &str, query: &str) -> Result<Option<KeyCursor>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || invalid("page_token", "not a token this server issued");
    // A cursor holds at most a display name: 256 characters, 1,024 bytes of UTF-8.
    let raw = unhex_token(token, "k2", 2 * 1200).ok_or_else(bad)?;
    let (digest, rest) = raw.split_at_checked(16).ok_or_else(bad)?;
    let (id, value) = rest.split_at_checked(36).ok_or_else(bad)?;
    uuid::Uuid::parse_str(id).map_err(|_| bad())?;
    if digest != query {
        return Err(invalid("page_token", "this token belongs to another parent, filter or order_by"));
    }
    let value = match value.split_at_checked(1).ok_or_else(bad)? {
        ("n", "") => SortValue::None,
        ("t", t) if !t.chars().any(char::is_control) => SortValue::Text(t.to_owned()),
        ("u", us) => SortValue::Micros(us.parse().map_err(|_| bad())?),
        _ => return Err(bad()),
    };
    Ok(Some(KeyCursor { value, id: id.to_owned() }))
}

/// The next page token when the page is full.
pub fn next_token(len: usize, limit: u64, last: Option<String>) -> String {
    match last {
        Some(id) if len as u64 == limit => encode_token(&id),
        _ => String::new(),
    }
}

// ----- time -----

pub fn ts(t: OffsetDateTime) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: t.unix_timestamp(), nanos: t.nanosecond() as i32 }
}

fn duration(field: &str, d: Option<prost_types::Duration>) -> Result<Option<Duration>, FieldViolation> {
    match d {
        None => Ok(None),
        Some(d) if d.seconds < 0 || d.nanos < 0 => Err(FieldViolation::new(field, "must not be negative")),
        Some(d) if d.seconds == 0 && d.nanos == 0 => Ok(None),
        Some(d) if d.seconds < 60 => Err(FieldViolation::new(field, "at least 60s (or zero for never)")),
        Some(d) if d.seconds > 366 * 86_400 => Err(FieldViolation::new(field, "at most 366 days")),
        Some(d) => Ok(Some(Duration::new(d.seconds as u64, d.nanos as u32))),
    }
}

// ----- enums -----

/// The wire value of a spec: the proto enum value named `KEY_SPEC_<api name>` (one naming rule,
/// no table to keep in step).
pub fn key_spec_pb(s: KeySpec) -> pb::KeySpec {
    pb::KeySpec::from_str_name(&format!("KEY_SPEC_{}", s.api_name())).unwrap_or(pb::KeySpec::Other)
}

fn key_spec(field: &str, v: i32) -> Result<KeySpec, FieldViolation> {
    match pb::KeySpec::try_from(v) {
        Ok(pb::KeySpec::Unspecified) => Err(FieldViolation::new(field, "required")),
        Ok(s) if s != pb::KeySpec::Other => s
            .as_str_name()
            .strip_prefix("KEY_SPEC_")
            .and_then(KeySpec::from_api_name)
            .ok_or_else(|| FieldViolation::new(field, format!("{v} is not a key spec"))),
        _ => Err(FieldViolation::new(field, format!("{v} is not a key spec"))),
    }
}

/// The wire value of an operation: `KEY_OPERATION_<name>`.
pub fn key_op_pb(o: KeyOp) -> pb::KeyOperation {
    pb::KeyOperation::from_str_name(&format!("KEY_OPERATION_{}", o.name())).unwrap_or(pb::KeyOperation::Unspecified)
}

fn key_ops(field: &str, v: &[i32]) -> Result<Vec<KeyOp>, FieldViolation> {
    let mut out = Vec::new();
    for &x in v {
        let op = pb::KeyOperation::try_from(x)
            .ok()
            .and_then(|o| o.as_str_name().strip_prefix("KEY_OPERATION_").and_then(KeyOp::from_name))
            .ok_or_else(|| FieldViolation::new(field, format!("{x} is not a key operation")))?;
        if !out.contains(&op) {
            out.push(op);
        }
    }
    out.sort();
    Ok(out)
}

fn key_state_pb(s: KeyState) -> pb::KeyState {
    match s {
        KeyState::Enabled => pb::KeyState::Enabled,
        KeyState::Disabled => pb::KeyState::Disabled,
        KeyState::PendingDeletion { .. } => pb::KeyState::PendingDeletion,
        KeyState::PendingImport => pb::KeyState::PendingImport,
        KeyState::Deleted => pb::KeyState::Deleted,
        KeyState::Unavailable => pb::KeyState::Unavailable,
    }
}

fn key_source_pb(s: KeySource) -> pb::KeySource {
    match s {
        KeySource::AwsNative => pb::KeySource::AwsNative,
        KeySource::Keyward => pb::KeySource::Keyward,
        KeySource::Imported => pb::KeySource::Imported,
    }
}

fn group_kind(v: i32) -> Result<GroupKind, FieldViolation> {
    match pb::GroupKind::try_from(v) {
        Ok(pb::GroupKind::Regular) => Ok(GroupKind::Regular),
        Ok(pb::GroupKind::AwsKms) => Ok(GroupKind::AwsKms),
        Ok(pb::GroupKind::Unspecified) => {
            Err(FieldViolation::new("group.kind", "required: GROUP_KIND_REGULAR or GROUP_KIND_AWS_KMS"))
        }
        Err(_) => Err(FieldViolation::new("group.kind", format!("{v} is not a group kind"))),
    }
}

pub fn group_kind_filter(filter: &str) -> Result<Option<GroupKind>, Status> {
    let f: String = filter.split_whitespace().collect();
    match f.as_str() {
        "" => Ok(None),
        "kind=AWS_KMS" | "kind=GROUP_KIND_AWS_KMS" => Ok(Some(GroupKind::AwsKms)),
        "kind=REGULAR" | "kind=GROUP_KIND_REGULAR" => Ok(Some(GroupKind::Regular)),
        _ => Err(invalid("filter", "filters on kind only: kind = GROUP_KIND_AWS_KMS or kind = GROUP_KIND_REGULAR")),
    }
}

pub fn connection_pb(c: &ConnectionStatus) -> pb::ConnectionStatus {
    pb::ConnectionStatus {
        state: match c.state {
            ConnectionState::Connected => pb::ConnectionState::Connected,
            ConnectionState::NotConnected => pb::ConnectionState::NotConnected,
            ConnectionState::Unknown => pb::ConnectionState::Unknown,
        } as i32,
        message: c.message.clone(),
        check_time: c.check_time.map(ts),
    }
}

// ----- groups -----

fn opt(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

/// `endpoint_url` (empty: none), or its violation under `field`.
fn endpoint_url(field: &str, url: &str) -> Result<Option<EndpointUrl>, FieldViolation> {
    opt(url).map(|u| EndpointUrl::parse(&u)).transpose().map_err(|e| FieldViolation::new(field, e))
}

/// Parses an `AwsKmsConfig` (field paths under `prefix`).
pub fn aws_kms_config(prefix: &str, a: &pb::AwsKmsConfig) -> Result<AwsKmsConfig, Vec<FieldViolation>> {
    let region = Region::parse(&a.region).map_err(|e| FieldViolation::new(format!("{prefix}.region"), e));
    let endpoint = endpoint_url(&format!("{prefix}.endpoint_url"), &a.endpoint_url);
    let (region, endpoint_url) = match (region, endpoint) {
        (Ok(r), Ok(e)) => (r, e),
        (r, e) => return Err(r.err().into_iter().chain(e.err()).collect()),
    };
    Ok(AwsKmsConfig {
        region,
        endpoint_url,
        access_key_id: a.access_key_id.clone(),
        secret_access_key: opt(&a.secret_access_key).map(SecretString::from),
        ca_certificate_pem: opt(&a.ca_certificate_pem),
        client_certificate_pem: opt(&a.client_certificate_pem),
        client_private_key_pem: opt(&a.client_private_key_pem).map(SecretString::from),
        validate_host: a.validate_host.unwrap_or(true),
        unopened: Vec::new(),
    })
}

fn crypto_policy(p: Option<&pb::CryptoPolicy>) -> Result<CryptoPolicy, FieldViolation> {
    let Some(p) = p else { return Ok(CryptoPolicy::default()) };
    let specs = p
        .allowed_key_specs
        .iter()
        .map(|&v| key_spec("group.crypto_policy.allowed_key_specs", v))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(CryptoPolicy {
        allowed_key_specs: specs,
        allowed_key_ops: key_ops("group.crypto_policy.allowed_key_ops", &p.allowed_key_ops)?,
    })
}

pub fn new_group(g: pb::Group) -> Result<NewGroup, Status> {
    let mut bad = Vec::new();
    let kind = group_kind(g.kind).map_err(|v| bad.push(v)).ok();
    let aws_kms = match &g.aws_kms {
        Some(a) => aws_kms_config("group.aws_kms", a).map_err(|v| bad.extend(v)).ok(),
        None => None,
    };
    let policy = crypto_policy(g.crypto_policy.as_ref()).map_err(|v| bad.push(v)).ok();
    let interval = duration("group.sync_schedule.interval", g.sync_schedule.and_then(|s| s.interval))
        .map_err(|v| bad.push(v))
        .ok()
        .flatten();
    match (kind, policy) {
        (Some(kind), Some(crypto_policy)) if bad.is_empty() => Ok(NewGroup {
            display_name: g.display_name,
            description: g.description,
            kind,
            aws_kms,
            crypto_policy,
            sync_interval: interval,
            audit_key_use: g.audit_key_use,
        }),
        _ => Err(to_status(Error::InvalidArgument(bad))),
    }
}

/// UpdateGroup's `update_mask` paths.
const GROUP_PATHS: &[&str] = &[
    "display_name",
    "description",
    "audit_key_use",
    "crypto_policy",
    "sync_schedule",
    "sync_schedule.interval",
    "aws_kms",
    "aws_kms.region",
    "aws_kms.endpoint_url",
    "aws_kms.access_key_id",
    "aws_kms.secret_access_key",
    "aws_kms.ca_certificate_pem",
    "aws_kms.client_certificate_pem",
    "aws_kms.client_private_key_pem",
    "aws_kms.validate_host",
];

/// UpdateKey's `update_mask` paths.
const KEY_PATHS: &[&str] = &[
    "display_name",
    "description",
    "key_ops",
    "tags",
    "enabled",
    "aws.aliases",
    "aws.key_policy",
    "aws.rotation",
    "aws.rotation_enabled",
    "aws.rotation_period_days",
    "rotation_policy",
];

/// The mask's paths in snake_case (a lowerCamelCase path, as JSON spells field names, is
/// taken as its snake_case field); `example` names a path for the error of an empty mask. A
/// path not in `known` is refused with the list of those that are.
fn mask_paths(mask: Option<prost_types::FieldMask>, known: &[&str], example: &str) -> Result<Vec<String>, Status> {
    let paths = mask.map(|m| m.paths).unwrap_or_default();
    if paths.is_empty() {
        return Err(invalid("update_mask", format!("required: list the fields to change, e.g. {example}")));
    }
    let snake = |p: &str| {
        p.chars().fold(String::with_capacity(p.len() + 4), |mut out, c| {
            if c.is_ascii_uppercase() {
                out.push('_');
                out.push(c.to_ascii_lowercase());
            } else {
                out.push(c);
            }
            out
        })
    };
    let unknown: Vec<FieldViolation> = paths
        .iter()
        .filter(|p| !known.contains(&snake(p.trim()).as_str()))
        .map(|p| FieldViolation::new("update_mask", format!("{p:?} is not a path here; paths: {}", known.join(", "))))
        .collect();
    if unknown.is_empty() {
        Ok(paths.iter().map(|p| snake(p.trim())).collect())
    } else {
        Err(to_status(Error::InvalidArgument(unknown)))
    }
}

/// UpdateGroup: the patch the mask names.
pub fn group_patch(g: pb::Group, mask: Option<prost_types::FieldMask>) -> Result<keyward_shared::GroupPatch, Status> {
    let paths = mask_paths(mask, GROUP_PATHS, "display_name")?;
    let a = g.aws_kms.clone().unwrap_or_default();
    let mut p = keyward_shared::GroupPatch { etag: opt(&g.etag), ..Default::default() };
    let mut bad = Vec::new();
    for path in &paths {
        match path.as_str() {
            "display_name" => p.display_name = Some(g.display_name.clone()),
            "description" => p.description = Some(g.description.clone()),
            "audit_key_use" => p.audit_key_use = Some(g.audit_key_use),
            "crypto_policy" => match crypto_policy(g.crypto_policy.as_ref()) {
                Ok(c) => p.crypto_policy = Some(c),
                Err(v) => bad.push(v),
            },
            "sync_schedule" | "sync_schedule.interval" => {
                match duration("group.sync_schedule.interval", g.sync_schedule.and_then(|s| s.interval)) {
                    Ok(d) => p.sync_interval = Some(d),
                    Err(v) => bad.push(v),
                }
            }
            "aws_kms" => match aws_kms_config("group.aws_kms", &a) {
                Ok(c) => p.aws_kms = AwsKmsConfigPatch::replacing(c),
                Err(v) => bad.extend(v),
            },
            "aws_kms.region" => match Region::parse(&a.region) {
                Ok(r) => p.aws_kms.region = Some(r),
                Err(e) => bad.push(FieldViolation::new("group.aws_kms.region", e)),
            },
            "aws_kms.endpoint_url" => match endpoint_url("group.aws_kms.endpoint_url", &a.endpoint_url) {
                Ok(u) => p.aws_kms.endpoint_url = Some(u),
                Err(v) => bad.push(v),
            },
            "aws_kms.access_key_id" => p.aws_kms.access_key_id = Some(a.access_key_id.clone()),
            "aws_kms.secret_access_key" => {
                p.aws_kms.secret_access_key = Some(opt(&a.secret_access_key).map(SecretString::from))
            }
            "aws_kms.ca_certificate_pem" => p.aws_kms.ca_certificate_pem = Some(opt(&a.ca_certificate_pem)),
            "aws_kms.client_certificate_pem" => p.aws_kms.client_certificate_pem = Some(opt(&a.client_certificate_pem)),
            "aws_kms.client_private_key_pem" => {
                p.aws_kms.client_private_key_pem = Some(opt(&a.client_private_key_pem).map(SecretString::from))
            }
            "aws_kms.validate_host" => p.aws_kms.validate_host = Some(a.validate_host.unwrap_or(true)),
            other => bad.push(FieldViolation::new("update_mask", format!("{other:?} is not a path here"))),
        }
    }
    if bad.is_empty() { Ok(p) } else { Err(to_status(Error::InvalidArgument(bad))) }
}

pub fn group_pb(g: &Group) -> pb::Group {
    pb::Group {
        name: group_name(g.id),
        display_name: g.display_name.clone(),
        description: g.description.clone(),
        kind: match g.kind {
            GroupKind::Regular => pb::GroupKind::Regular,
            GroupKind::AwsKms => pb::GroupKind::AwsKms,
        } as i32,
        aws_kms: g.aws_kms.as_ref().map(|a| pb::AwsKmsConfig {
            region: a.region.as_str().to_owned(),
            endpoint_url: a.endpoint_url.as_ref().map(|u| u.as_str().to_owned()).unwrap_or_default(),
            access_key_id: a.access_key_id.clone(),
            secret_access_key: String::new(),
            secret_access_key_set: a.secret_access_key.is_some(),
            ca_certificate_pem: a.ca_certificate_pem.clone().unwrap_or_default(),
            client_certificate_pem: a.client_certificate_pem.clone().unwrap_or_default(),
            client_private_key_pem: String::new(),
            client_private_key_set: a.client_private_key_pem.is_some(),
            validate_host: Some(a.validate_host),
        }),
        connection: Some(connection_pb(&g.connection)),
        crypto_policy: Some(pb::CryptoPolicy {
            allowed_key_specs: g.crypto_policy.allowed_key_specs.iter().map(|s| key_spec_pb(*s) as i32).collect(),
            allowed_key_ops: g.crypto_policy.allowed_key_ops.iter().map(|o| key_op_pb(*o) as i32).collect(),
        }),
        sync_schedule: Some(pb::SyncSchedule {
            interval: g
                .sync_interval
                .map(|d| prost_types::Duration { seconds: d.as_secs() as i64, nanos: d.subsec_nanos() as i32 }),
        }),
        create_time: Some(ts(g.create_time)),
        update_time: Some(ts(g.update_time)),
        etag: g.etag.clone(),
        audit_key_use: g.audit_key_use,
        last_sync_time: g.last_sync_time.map(ts),
        next_sync_time: g.next_sync_time.map(ts),
        warnings: Vec::new(),
    }
}

/// A run as the wire shows it at `now` (the estimate of the time left is taken at `now`).
pub fn sync_run_pb(r: &SyncRun, now: OffsetDateTime) -> pb::SyncRun {
    pb::SyncRun {
        done: r.done(),
        estimated_time_remaining: r
            .estimated_time_remaining(now)
            .map(|d| prost_types::Duration { seconds: d.whole_seconds(), nanos: d.subsec_nanoseconds() }),
        name: format!("groups/{}/syncRuns/{}", r.group_id, r.id),
        state: match r.state {
            SyncRunState::Running => pb::SyncRunState::Running,
            SyncRunState::Succeeded => pb::SyncRunState::Succeeded,
            SyncRunState::Failed => pb::SyncRunState::Failed,
        } as i32,
        trigger: match r.trigger {
            SyncTrigger::Manual => pb::SyncTrigger::Manual,
            SyncTrigger::Scheduled => pb::SyncTrigger::Scheduled,
        } as i32,
        listed: r.listed,
        added: r.added,
        updated: r.updated,
        unchanged: r.unchanged,
        failed: r.failed,
        warnings: r
            .warnings
            .iter()
            .map(|w| pb::SyncWarning { aws_key: w.aws_key.clone(), message: w.message.clone() })
            .collect(),
        error: r.error.clone().unwrap_or_default(),
        start_time: Some(ts(r.start_time)),
        end_time: r.end_time.map(ts),
        actor: r.actor.clone(),
        drift: Some(pb::DriftSummary {
            keys: r.drift.keys,
            fields: r.drift.fields.clone().into_iter().collect(),
            not_applied: r.drift.not_applied,
        }),
    }
}

pub fn key_drift_pb(d: &KeyDrift) -> pb::KeyDrift {
    pb::KeyDrift {
        key: d.key_name.clone(),
        aws_key_arn: d.aws_key_arn.clone(),
        changes: d
            .changes
            .iter()
            .map(|c| pb::DriftChange {
                field: c.field.clone(),
                kind: match c.kind {
                    DriftKind::Changed => pb::DriftKind::Changed,
                    DriftKind::Added => pb::DriftKind::Added,
                    DriftKind::Removed => pb::DriftKind::Removed,
                    DriftKind::Repointed => pb::DriftKind::Repointed,
                    DriftKind::Created => pb::DriftKind::Created,
                    DriftKind::Deleted => pb::DriftKind::Deleted,
                } as i32,
                before: c.before.clone(),
                after: c.after.clone(),
            })
            .collect(),
        applied: d.applied,
    }
}

// ----- keys -----

pub fn new_key(k: pb::Key) -> Result<NewKey, Status> {
    let mut bad = Vec::new();
    let spec = key_spec("key.key_spec", k.key_spec).map_err(|v| bad.push(v)).ok();
    let ops = key_ops("key.key_ops", &k.key_ops).map_err(|v| bad.push(v)).ok();
    let tags = Tags::parse(k.tags.into_iter().collect::<BTreeMap<_, _>>(), "key.tags").map_err(|v| bad.extend(v)).ok();
    let aws = k.aws.unwrap_or_default();
    if aws.rotation_enabled || aws.rotation_period_days != 0 {
        bad.push(FieldViolation::new(
            "key.aws.rotation_enabled",
            "AWS's automatic rotation is set with UpdateKey (aws.rotation_enabled) once the key exists",
        ));
    }
    let mut aliases = Vec::new();
    for a in aws.aliases {
        match Alias::parse(&a) {
            Ok(a) => aliases.push(a),
            Err(e) => bad.push(FieldViolation::new("key.aws.aliases", e)),
        }
    }
    let rotation_schedule = match k.rotation_policy.as_ref().map(rotation_schedule).transpose() {
        Ok(s) => s,
        Err(v) => {
            bad.push(v);
            None
        }
    };
    match (spec, ops, tags) {
        (Some(key_spec), Some(key_ops), Some(tags)) if bad.is_empty() => Ok(NewKey {
            display_name: k.display_name,
            description: k.description,
            key_spec,
            key_ops,
            tags,
            aliases,
            key_policy: opt(&aws.key_policy),
            rotation_schedule,
        }),
        _ => Err(to_status(Error::InvalidArgument(bad))),
    }
}

pub fn key_pb(k: &Key) -> pb::Key {
    pb::Key {
        name: key_name(k.group_id, k.id),
        key_id: k.id.to_string(),
        group: group_name(k.group_id),
        display_name: k.display_name.clone(),
        description: k.description.clone(),
        key_spec: key_spec_pb(k.key_spec) as i32,
        key_ops: k.key_ops.iter().map(|o| key_op_pb(*o) as i32).collect(),
        r#virtual: k.is_virtual(),
        state: key_state_pb(k.state) as i32,
        source: key_source_pb(k.source) as i32,
        tags: k.tags.clone().into_iter().collect(),
        aws: k.aws.as_ref().map(|a| pb::AwsKeyDetails {
            key_arn: a.key_arn.clone(),
            aws_key_id: a.aws_key_id.clone(),
            aliases: a.aliases.clone(),
            key_policy: a.key_policy.clone().unwrap_or_default(),
            aws_key_state: a.aws_key_state.clone().unwrap_or_default(),
            origin: a.origin.clone().unwrap_or_default(),
            key_usage: a.key_usage.clone().unwrap_or_default(),
            key_manager: a.key_manager.clone().unwrap_or_default(),
            creation_time: a.creation_time.map(ts),
            deletion_time: k.state.deletion_time().map(ts),
            valid_to: a.valid_to.map(ts),
            rotation_enabled: a.rotation.as_ref().is_some_and(|r| r.enabled),
            rotation_period_days: a.rotation.as_ref().and_then(|r| r.period_days).unwrap_or_default(),
            next_rotation_time: a.rotation.as_ref().and_then(|r| r.next_rotation_time).map(ts),
            key_spec: a.key_spec.clone().unwrap_or_default(),
            enabled: a.enabled,
        }),
        links: k
            .links
            .iter()
            .map(|l| pb::KeyLink {
                kind: match l.kind {
                    KeyLinkKind::CopiedFrom => pb::KeyLinkKind::CopiedFrom,
                    KeyLinkKind::CopiedTo => pb::KeyLinkKind::CopiedTo,
                    KeyLinkKind::RotatedFrom => pb::KeyLinkKind::RotatedFrom,
                    KeyLinkKind::RotatedTo => pb::KeyLinkKind::RotatedTo,
                } as i32,
                key: key_name(l.group_id, l.key_id),
                group: group_name(l.group_id),
                actor: l.actor.clone(),
                create_time: Some(ts(l.create_time)),
            })
            .collect(),
        rotation_policy: k.rotation_policy.as_ref().map(|p| {
            let (action, days) = old_key_action_pb(p.schedule.old_key_action);
            let (interval, cron) = match &p.schedule.every {
                RotationEvery::Interval(d) => {
                    (Some(prost_types::Duration { seconds: d.as_secs() as i64, nanos: 0 }), String::new())
                }
                RotationEvery::Cron(c) => (None, c.as_str().to_owned()),
            };
            pb::RotationPolicy {
                interval,
                cron,
                rotate_linked: p.schedule.rotate_linked,
                next_rotation_time: Some(ts(p.next_rotation_time)),
                in_place: p.schedule.in_place,
                old_key_action: action as i32,
                pending_window_days: days,
                last_rotation_time: p.last_rotation_time.map(ts),
                last_error: p.last_error.clone().unwrap_or_default(),
                failures: i32::try_from(p.failures).unwrap_or(i32::MAX),
            }
        }),
        created_by: k.created_by.clone(),
        create_time: Some(ts(k.create_time)),
        update_time: Some(ts(k.update_time)),
        etag: k.etag.clone(),
        mutable: k.is_mutable(),
        enabled: k.state == KeyState::Enabled,
    }
}

/// UpdateKey: the patch the mask names.
pub fn key_patch(
    k: pb::Key,
    mask: Option<prost_types::FieldMask>,
    remove_aliases: Vec<String>,
) -> Result<keyward_shared::KeyPatch, Status> {
    let paths = mask_paths(mask, KEY_PATHS, "description")?;
    let mut p = keyward_shared::KeyPatch { etag: opt(&k.etag), ..Default::default() };
    let mut bad = Vec::new();
    for a in remove_aliases {
        match Alias::parse(&a) {
            Ok(a) => p.remove_aliases.push(a),
            Err(e) => bad.push(FieldViolation::new("remove_aliases", e)),
        }
    }
    let aws = k.aws.clone().unwrap_or_default();
    let mut rotation_seen = false;
    for path in &paths {
        match path.as_str() {
            "display_name" => p.display_name = Some(k.display_name.clone()),
            "description" => p.description = Some(k.description.clone()),
            "tags" => match Tags::parse(k.tags.clone().into_iter().collect(), "key.tags") {
                Ok(t) => p.tags = Some(t),
                Err(v) => bad.extend(v),
            },
            "aws.aliases" => {
                let mut list = Vec::new();
                for a in &aws.aliases {
                    match Alias::parse(a) {
                        Ok(a) => list.push(a),
                        Err(e) => bad.push(FieldViolation::new("key.aws.aliases", e)),
                    }
                }
                p.aliases = Some(list);
            }
            "aws.key_policy" => p.key_policy = Some(aws.key_policy.clone()),
            "enabled" => p.enabled = Some(k.enabled),
            "rotation_policy" => match k.rotation_policy.as_ref().map(rotation_schedule).transpose() {
                Ok(s) => p.rotation_schedule = Some(s),
                Err(v) => bad.push(v),
            },
            // Several of these paths name one change: read it once.
            "aws.rotation" | "aws.rotation_enabled" | "aws.rotation_period_days" if !rotation_seen => {
                rotation_seen = true;
                if aws.rotation_enabled {
                    p.rotation = Some(Some(aws.rotation_period_days));
                } else if aws.rotation_period_days != 0 {
                    bad.push(FieldViolation::new(
                        "key.aws.rotation_period_days",
                        "set with aws.rotation_enabled = true (a period of a rotation that is off means nothing)",
                    ));
                } else {
                    p.rotation = Some(None);
                }
            }
            "aws.rotation" | "aws.rotation_enabled" | "aws.rotation_period_days" => {}
            "key_ops" => match key_ops("key.key_ops", &k.key_ops) {
                Ok(o) => p.key_ops = Some(o),
                Err(v) => bad.push(v),
            },
            other => bad.push(FieldViolation::new("update_mask", format!("{other:?} is not a path here"))),
        }
    }
    if bad.is_empty() { Ok(p) } else { Err(to_status(Error::InvalidArgument(bad))) }
}

fn material_format(v: i32) -> Result<keyward_shared::crypto::keys::MaterialFormat, FieldViolation> {
    use keyward_shared::crypto::keys::MaterialFormat as F;
    match pb::MaterialFormat::try_from(v) {
        Ok(pb::MaterialFormat::Raw) => Ok(F::Raw),
        Ok(pb::MaterialFormat::Base64) => Ok(F::Base64),
        Ok(pb::MaterialFormat::Hex) => Ok(F::Hex),
        Ok(pb::MaterialFormat::Unspecified) => Err(FieldViolation::new("format", "required: RAW, BASE64 or HEX")),
        Err(_) => Err(FieldViolation::new("format", format!("{v} is not a material format"))),
    }
}

/// ImportKey request → (group, parsed request). The material is moved, never copied around.
pub fn import_request(r: pb::ImportKeyRequest) -> Result<(GroupId, keyward_shared::ImportRequest), Status> {
    let group = parse_group_name("parent", &r.parent)?;
    let mut bad = Vec::new();
    let format = material_format(r.format).map_err(|v| bad.push(v)).ok();
    let wrapping_key = if r.wrapping_key.is_empty() {
        None
    } else {
        match parse_key_name("wrapping_key", &r.wrapping_key) {
            Ok(k) => Some(k),
            Err(_) => {
                bad.push(FieldViolation::new("wrapping_key", "not a key name groups/{uuid}/keys/{uuid}"));
                None
            }
        }
    };
    let valid_to = r.valid_to.map(|t| OffsetDateTime::from_unix_timestamp(t.seconds)).transpose().map_err(|_| {
        bad.push(FieldViolation::new("valid_to", "out of range"));
    });
    let mut k = r.key.unwrap_or_default();
    let unspecified = k.key_spec == pb::KeySpec::Unspecified as i32;
    if unspecified {
        k.key_spec = pb::KeySpec::Aes256 as i32;
    }
    let key = match new_key(k) {
        Ok(mut n) => {
            if unspecified {
                n.key_spec = KeySpec::Other;
            }
            Some(n)
        }
        Err(s) => {
            let details = tonic_types::StatusExt::get_error_details(&s);
            for v in details.bad_request().map(|b| b.field_violations.clone()).unwrap_or_default() {
                bad.push(FieldViolation::new(v.field, v.description));
            }
            None
        }
    };
    match (format, key, valid_to) {
        (Some(format), Some(key), Ok(valid_to)) if bad.is_empty() => Ok((
            group,
            keyward_shared::ImportRequest {
                key,
                material: zeroize::Zeroizing::new(r.material),
                format,
                wrapping_key,
                valid_to,
            },
        )),
        _ => Err(to_status(Error::InvalidArgument(bad))),
    }
}

/// CopyKey request → parsed request.
pub fn copy_request(r: pb::CopyKeyRequest) -> Result<keyward_shared::CopyRequest, Status> {
    let source = parse_key_name("source", &r.source)?;
    let target_group = parse_group_name("target_group", &r.target_group)?;
    let mut bad = Vec::new();
    let mut aliases = Vec::new();
    for a in &r.aliases {
        match Alias::parse(a) {
            Ok(a) => aliases.push(a),
            Err(e) => bad.push(FieldViolation::new("aliases", e)),
        }
    }
    let key_ops = key_ops("key_ops", &r.key_ops).map_err(|v| bad.push(v)).unwrap_or_default();
    if bad.is_empty() {
        Ok(keyward_shared::CopyRequest { source, target_group, display_name: r.display_name, aliases, key_ops })
    } else {
        Err(to_status(Error::InvalidArgument(bad)))
    }
}

// ----- rotation -----

/// A rotation policy's input fields.
fn rotation_schedule(p: &pb::RotationPolicy) -> Result<keyward_shared::RotationSchedule, FieldViolation> {
    let f = "key.rotation_policy";
    let every = match (p.interval, p.cron.trim()) {
        (Some(_), c) if !c.is_empty() => {
            return Err(FieldViolation::new(format!("{f}.cron"), "give an interval or a cron expression, not both"));
        }
        (None, "") => {
            return Err(FieldViolation::new(
                format!("{f}.interval"),
                "required: an interval of at least 1 day (86400s), or a cron expression",
            ));
        }
        (None, c) => {
            RotationEvery::Cron(CronSchedule::parse(c).map_err(|e| FieldViolation::new(format!("{f}.cron"), e))?)
        }
        (Some(d), _) if d.nanos != 0 => {
            return Err(FieldViolation::new(format!("{f}.interval"), "whole seconds, at least 1 day (86400s)"));
        }
        (Some(d), _) if d.seconds > 0 => RotationEvery::Interval(Duration::from_secs(d.seconds as u64)),
        (Some(_), _) => return Err(FieldViolation::new(format!("{f}.interval"), "at least 1 day (86400s)")),
    };
    let old_key_action = old_key_action(p.old_key_action, p.pending_window_days)
        .map_err(|e| FieldViolation::new(format!("{f}.old_key_action"), e))?;
    Ok(keyward_shared::RotationSchedule { every, in_place: p.in_place, old_key_action, rotate_linked: p.rotate_linked })
}

/// An old key action with its pending window (0: 30 days; checked by the use case).
fn old_key_action(action: i32, pending_window_days: i32) -> Result<OldKeyAction, String> {
    let days = if pending_window_days == 0 { 30 } else { pending_window_days };
    match pb::OldKeyAction::try_from(action) {
        Ok(pb::OldKeyAction::Unspecified | pb::OldKeyAction::KeepEnabled) => Ok(OldKeyAction::KeepEnabled),
        Ok(pb::OldKeyAction::Disable) => Ok(OldKeyAction::Disable),
        Ok(pb::OldKeyAction::ScheduleDeletion) => Ok(OldKeyAction::ScheduleDeletion { pending_window_days: days }),
        Err(_) => Err(format!("{action} is not an old key action")),
    }
}

/// RotateKey request → (group, key, parsed request).
pub fn rotate_request(r: &pb::RotateKeyRequest) -> Result<(GroupId, KeyId, keyward_shared::RotateRequest), Status> {
    let (g, id) = parse_key_name("name", &r.name)?;
    let old_key_action =
        old_key_action(r.old_key_action, r.pending_window_days).map_err(|e| invalid("old_key_action", e))?;
    if r.pending_window_days != 0 && !matches!(old_key_action, OldKeyAction::ScheduleDeletion { .. }) {
        return Err(invalid("pending_window_days", "only with old_key_action OLD_KEY_ACTION_SCHEDULE_DELETION"));
    }
    use pb::rotation_source::Source;
    let to_source = match r.to_source.as_ref().and_then(|s| s.source.as_ref()) {
        None if r.to_source.is_some() => {
            return Err(invalid("to_source", "name a `key` or a `new_key_in_group`"));
        }
        None => None,
        Some(Source::Key(name)) => {
            let (sg, sk) = parse_key_name("to_source.key", name)?;
            Some(ToSource::Key(sg, sk))
        }
        Some(Source::NewKeyInGroup(name)) => {
            Some(ToSource::NewKeyIn(parse_group_name("to_source.new_key_in_group", name)?))
        }
    };
    let rotate_linked = match (r.rotate_linked, r.linked_copies.is_empty()) {
        (false, true) => None,
        (false, false) => return Err(invalid("linked_copies", "only with rotate_linked")),
        (true, true) => Some(LinkedCopies::All),
        (true, false) => Some(LinkedCopies::Only(
            r.linked_copies.iter().map(|n| parse_key_name("linked_copies", n)).collect::<Result<_, _>>()?,
        )),
    };
    let key_spec = match r.key_spec {
        0 => None,
        v => Some(key_spec("key_spec", v).map_err(|e| to_status(Error::InvalidArgument(vec![e])))?),
    };
    let rotate = keyward_shared::RotateRequest {
        validate_only: r.validate_only,
        in_place: r.in_place,
        old_key_action,
        to_source,
        rotate_linked,
        key_spec,
    };
    Ok((g, id, rotate))
}

fn old_key_action_pb(a: OldKeyAction) -> (pb::OldKeyAction, i32) {
    match a {
        OldKeyAction::KeepEnabled => (pb::OldKeyAction::KeepEnabled, 0),
        OldKeyAction::Disable => (pb::OldKeyAction::Disable, 0),
        OldKeyAction::ScheduleDeletion { pending_window_days } => {
            (pb::OldKeyAction::ScheduleDeletion, pending_window_days)
        }
    }
}

pub fn rotation_plan_pb(p: &RotationPlan) -> pb::RotationPlan {
    let (action, days) = old_key_action_pb(p.old_key_action);
    pb::RotationPlan {
        kind: match p.kind {
            RotationKind::NewKey => pb::RotationKind::NewKey,
            RotationKind::InPlace => pb::RotationKind::InPlace,
            RotationKind::ToSource => pb::RotationKind::ToSource,
            RotationKind::KeywardKey => pb::RotationKind::KeywardKey,
        } as i32,
        key: key_name(p.group_id, p.key_id),
        aws_key_id: p.aws_key_id.clone(),
        new_key: p.new_key.as_ref().map(|k| pb::PlannedKey {
            display_name: k.display_name.clone(),
            key_spec: key_spec_pb(k.key_spec) as i32,
            key_usage: k.key_usage.aws_name().to_owned(),
            description: k.description.clone(),
            tags: k.tags.clone().into_iter().collect(),
            copies_key_policy: k.key_policy.is_some(),
            rotation_period_days: k.rotation_period_days.unwrap_or_default(),
        }),
        rename_old_to: p.rename_old_to.clone().unwrap_or_default(),
        alias_moves: p.alias_moves.iter().map(|m| alias_move_pb(m, "")).collect(),
        old_key_action: action as i32,
        pending_window_days: days,
        aws_calls: p.aws_calls.clone(),
        source: p.source.as_ref().map(|s| pb::PlannedSource {
            key: key_name(s.group_id, s.key_id),
            create: s.create_named.is_some(),
            // A Keyward key's successor is made under a temporary name and takes the old name.
            display_name: match (p.kind, &p.new_key) {
                (RotationKind::KeywardKey, Some(k)) => k.display_name.clone(),
                _ => s.create_named.clone().unwrap_or_default(),
            },
        }),
        copies: p
            .copies
            .iter()
            .map(|c| pb::PlannedCopy {
                key: key_name(c.group_id, c.key_id),
                new_key: if c.skipped.is_none() { key_name(c.group_id, c.new_key_id) } else { String::new() },
                skipped: c.skipped.clone().unwrap_or_default(),
                aws_key_id: c.aws_key_id.clone().unwrap_or_default(),
                alias_moves: c.alias_moves.iter().map(|m| alias_move_pb(m, "")).collect(),
            })
            .collect(),
    }
}

fn alias_move_pb(m: &keyward_shared::domain::AliasMove, to: &str) -> pb::AliasMove {
    pb::AliasMove { alias: m.alias.clone(), from_aws_key_id: m.from_aws_key_id.clone(), to_aws_key_id: to.to_owned() }
}

pub fn rotation_pb(o: &keyward_shared::RotationOutcome) -> pb::RotateKeyResponse {
    let to = o.moved_to.clone().unwrap_or_default();
    let mut plan = rotation_plan_pb(&o.plan);
    if !o.executed {
        // The keys a plan would make get their ids when they are made.
        if let Some(s) = plan.source.as_mut().filter(|s| s.create) {
            s.key.clear();
        }
        for c in &mut plan.copies {
            c.new_key.clear();
        }
    }
    pb::RotateKeyResponse {
        plan: Some(plan),
        executed: o.executed,
        key: Some(key_pb(&o.key)),
        old_key: o.old_key.as_ref().map(key_pb),
        created_keys: match (&o.old_key, &o.plan.source) {
            (None, _) => Vec::new(),
            (Some(_), Some(s)) if s.create_named.is_some() && o.plan.kind == RotationKind::ToSource => {
                vec![key_name(s.group_id, s.key_id), key_name(o.key.group_id, o.key.id)]
            }
            (Some(_), _) => std::iter::once(&o.key).chain(&o.new_copies).map(|k| key_name(k.group_id, k.id)).collect(),
        },
        moved_aliases: if o.executed {
            let copies = o.plan.copies.iter().filter(|c| c.skipped.is_none()).zip(&o.new_copies);
            let copy_moves = copies.flat_map(|(c, new)| {
                let to = new.aws.as_ref().map(|a| a.aws_key_id.clone()).unwrap_or_default();
                c.alias_moves.iter().map(move |m| alias_move_pb(m, &to))
            });
            o.plan.alias_moves.iter().map(|m| alias_move_pb(m, &to)).chain(copy_moves).collect()
        } else {
            Vec::new()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_spec_and_operation_has_its_wire_value() {
        let keyward = [KeySpec::Aes128, KeySpec::Aes192, KeySpec::Aes256];
        for spec in KeySpec::AWS.into_iter().chain(keyward) {
            let wire = key_spec_pb(spec);
            assert_ne!(wire, pb::KeySpec::Other, "{spec:?}");
            assert_eq!(key_spec("key_spec", wire as i32), Ok(spec));
        }
        assert_eq!(key_spec_pb(KeySpec::Other), pb::KeySpec::Other);
        assert!(key_spec("key_spec", pb::KeySpec::Other as i32).is_err(), "OTHER is output only");
        for op in KeyOp::ALL {
            assert_eq!(key_ops("key_ops", &[key_op_pb(op) as i32]), Ok(vec![op]));
        }
        assert!(key_ops("key_ops", &[0]).is_err());
    }
}
