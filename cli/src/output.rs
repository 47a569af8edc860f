//! How answers are shown: aligned columns and `field: value` lists for people, or JSON built
//! by hand from the proto messages (prost types have no serde): the API's lowerCamelCase field
//! names and enum value names (`KEY_STATE_ENABLED`), RFC 3339 timestamps, durations as `"300s"`,
//! counts as JSON numbers, unset messages as `null`.

use keyward_proto::v1 as pb;
use serde_json::{Value, json};

/// An enum field's wire name (`KEY_STATE_ENABLED`), or its number when this client does not know it.
macro_rules! wire {
    ($enum:ident, $v:expr) => {{
        let v: i32 = $v;
        ::keyward_proto::v1::$enum::try_from(v).map(|e| e.as_str_name().to_owned()).unwrap_or_else(|_| v.to_string())
    }};
}

/// An enum value without its prefix (`ENABLED`), for tables.
macro_rules! short {
    ($enum:ident, $v:expr, $prefix:expr) => {{
        let name = $crate::output::wire!($enum, $v);
        name.strip_prefix($prefix).map(str::to_owned).unwrap_or(name)
    }};
}
pub(crate) use {short, wire};

/// Rows under a header, each column as wide as its widest cell (two spaces apart).
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&'static str]) -> Self {
        Self { headers: headers.to_vec(), rows: Vec::new() }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells.iter().map(|c| printable(c)).collect());
    }

    pub fn render(&self) -> String {
        let n = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(n) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let line = |cells: Vec<&str>| {
            let mut out = String::new();
            for (i, cell) in cells.iter().enumerate() {
                out.push_str(cell);
                if i + 1 < cells.len() {
                    out.push_str(&" ".repeat(widths[i] - cell.chars().count() + 2));
                }
            }
            out.trim_end().to_owned()
        };
        let mut out = line(self.headers.clone());
        out.push('\n');
        for row in &self.rows {
            out.push_str(&line(row.iter().map(String::as_str).collect()));
            out.push('\n');
        }
        out
    }
}

/// `s` safe for a terminal: control characters (escape sequences, carriage returns, NUL — text
/// from AWS or another user could hold them) written as `\u{1b}`, so they cannot move the
/// cursor, retitle the window or fake a line.
pub fn printable(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_owned();
    }
    s.chars().map(|c| if c.is_control() { c.escape_unicode().to_string() } else { c.to_string() }).collect()
}

/// `field: value` lines, the values aligned; empty values left out.
pub fn details(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
        out.push_str(&format!("{k}:{}{}\n", " ".repeat(width - k.chars().count() + 1), printable(v)));
    }
    out
}

/// RFC 3339, or empty.
pub fn time(t: &Option<prost_types::Timestamp>) -> String {
    t.as_ref().map(ToString::to_string).unwrap_or_default()
}

fn time_json(t: &Option<prost_types::Timestamp>) -> Value {
    t.as_ref().map_or(Value::Null, |t| Value::String(t.to_string()))
}

fn duration_json(d: &Option<prost_types::Duration>) -> Value {
    d.as_ref().map_or(Value::Null, |d| Value::String(d.to_string()))
}

/// Whole seconds as `1h 02m`, `3m 05s` or `12s`.
pub fn human_duration(d: &prost_types::Duration) -> String {
    let s = d.seconds.max(0) + i64::from(d.nanos >= 500_000_000);
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, sec) => format!("{m}m {sec:02}s"),
        (h, m, _) => format!("{h}h {m:02}m"),
    }
}

pub fn group_json(g: &pb::Group) -> Value {
    json!({
        "name": g.name,
        "displayName": g.display_name,
        "description": g.description,
        "kind": wire!(GroupKind, g.kind),
        "awsKms": g.aws_kms.as_ref().map(|a| json!({
            "region": a.region,
            "endpointUrl": a.endpoint_url,
            "accessKeyId": a.access_key_id,
            "secretAccessKeySet": a.secret_access_key_set,
            "caCertificatePem": a.ca_certificate_pem,
            "clientCertificatePem": a.client_certificate_pem,
            "clientPrivateKeySet": a.client_private_key_set,
            "validateHost": a.validate_host.unwrap_or(true),
        })),
        "connection": g.connection.as_ref().map(|c| json!({
            "state": wire!(ConnectionState, c.state),
            "message": c.message,
            "checkTime": time_json(&c.check_time),
        })),
        "cryptoPolicy": g.crypto_policy.as_ref().map(|p| json!({
            "allowedKeySpecs": p.allowed_key_specs.iter().map(|s| wire!(KeySpec, *s)).collect::<Vec<_>>(),
            "allowedKeyOps": p.allowed_key_ops.iter().map(|o| wire!(KeyOperation, *o)).collect::<Vec<_>>(),
        })),
        "syncSchedule": g.sync_schedule.as_ref().map(|s| json!({"interval": duration_json(&s.interval)})),
        "auditKeyUse": g.audit_key_use,
        "createTime": time_json(&g.create_time),
        "updateTime": time_json(&g.update_time),
        "lastSyncTime": time_json(&g.last_sync_time),
        "nextSyncTime": time_json(&g.next_sync_time),
        "etag": g.etag,
    })
}

pub fn key_json(k: &pb::Key) -> Value {
    json!({
        "name": k.name,
        "keyId": k.key_id,
        "group": k.group,
        "displayName": k.display_name,
        "description": k.description,
        "keySpec": wire!(KeySpec, k.key_spec),
        "keyOps": k.key_ops.iter().map(|o| wire!(KeyOperation, *o)).collect::<Vec<_>>(),
        "virtual": k.r#virtual,
        "state": wire!(KeyState, k.state),
        "source": wire!(KeySource, k.source),
        "tags": k.tags,
        "aws": k.aws.as_ref().map(|a| json!({
            "keyArn": a.key_arn,
            "awsKeyId": a.aws_key_id,
            "aliases": a.aliases,
            "keyPolicy": a.key_policy,
            "awsKeyState": a.aws_key_state,
            "origin": a.origin,
            "keyUsage": a.key_usage,
            "keyManager": a.key_manager,
            "keySpec": a.key_spec,
            "enabled": a.enabled,
            "creationTime": time_json(&a.creation_time),
            "deletionTime": time_json(&a.deletion_time),
            "validTo": time_json(&a.valid_to),
            "rotationEnabled": a.rotation_enabled,
            "rotationPeriodDays": a.rotation_period_days,
            "nextRotationTime": time_json(&a.next_rotation_time),
        })),
        "links": k.links.iter().map(|l| json!({
            "kind": wire!(KeyLinkKind, l.kind),
            "key": l.key,
            "group": l.group,
            "actor": l.actor,
            "createTime": time_json(&l.create_time),
        })).collect::<Vec<_>>(),
        "rotationPolicy": k.rotation_policy.as_ref().map(|p| json!({
            "interval": duration_json(&p.interval),
            "cron": p.cron,
            "rotateLinked": p.rotate_linked,
            "inPlace": p.in_place,
            "oldKeyAction": wire!(OldKeyAction, p.old_key_action),
            "pendingWindowDays": p.pending_window_days,
            "nextRotationTime": time_json(&p.next_rotation_time),
            "lastRotationTime": time_json(&p.last_rotation_time),
            "lastError": p.last_error,
            "failures": p.failures,
        })),
        "createdBy": k.created_by,
        "createTime": time_json(&k.create_time),
        "updateTime": time_json(&k.update_time),
        "etag": k.etag,
        "mutable": k.mutable,
        "enabled": k.enabled,
    })
}

pub fn sync_run_json(r: &pb::SyncRun) -> Value {
    json!({
        "name": r.name,
        "state": wire!(SyncRunState, r.state),
        "trigger": wire!(SyncTrigger, r.trigger),
        "listed": r.listed,
        "done": r.done,
        "added": r.added,
        "updated": r.updated,
        "unchanged": r.unchanged,
        "failed": r.failed,
        "warnings": r.warnings.iter().map(|w| json!({"awsKey": w.aws_key, "message": w.message})).collect::<Vec<_>>(),
        "error": r.error,
        "startTime": time_json(&r.start_time),
        "endTime": time_json(&r.end_time),
        "actor": r.actor,
        "estimatedTimeRemaining": duration_json(&r.estimated_time_remaining),
        "drift": r.drift.as_ref().map(|d| json!({"keys": d.keys, "fields": d.fields, "notApplied": d.not_applied})),
    })
}

pub fn audit_event_json(e: &pb::AuditEvent) -> Value {
    json!({
        "name": e.name,
        "seq": e.seq,
        "actor": e.actor,
        "action": e.action,
        "resource": e.resource,
        "outcome": e.outcome,
        "requestId": e.request_id,
        "detail": e.detail,
        "createTime": time_json(&e.create_time),
        "prevHash": e.prev_hash,
        "hash": e.hash,
    })
}

pub fn current_principal_json(c: &pb::CurrentPrincipal) -> Value {
    json!({
        "principal": c.principal.as_ref().map(|p| json!({
            "name": p.name,
            "kind": wire!(PrincipalKind, p.kind),
            "displayName": p.display_name,
            "description": p.description,
            "accountRoles": p.account_roles.iter().map(|r| wire!(AccountRole, *r)).collect::<Vec<_>>(),
            "disabled": p.disabled,
            "createTime": time_json(&p.create_time),
            "updateTime": time_json(&p.update_time),
        })),
        "groups": c.groups.iter().map(|g| json!({
            "group": g.group,
            "displayName": g.display_name,
            "kind": wire!(GroupKind, g.kind),
            "roles": g.roles.iter().map(|r| wire!(GroupRole, *r)).collect::<Vec<_>>(),
            "connection": g.connection.as_ref().map(|c| json!({
                "state": wire!(ConnectionState, c.state),
                "message": c.message,
                "checkTime": time_json(&c.check_time),
            })),
        })).collect::<Vec<_>>(),
        "authenticatedBy": c.authenticated_by,
    })
}

/// Pretty JSON with a final newline.
pub fn json_text(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up() {
        let mut t = Table::new(&["NAME", "STATE"]);
        t.row(vec!["a-long-name".into(), "ENABLED".into()]);
        t.row(vec!["b".into(), "".into()]);
        assert_eq!(t.render(), "NAME         STATE\na-long-name  ENABLED\nb\n");
    }

    #[test]
    fn enums_and_durations() {
        assert_eq!(wire!(KeyState, 1), "KEY_STATE_ENABLED");
        assert_eq!(wire!(KeyState, 99), "99");
        assert_eq!(short!(KeyState, 3, "KEY_STATE_"), "PENDING_DELETION");
        let d = |seconds| prost_types::Duration { seconds, nanos: 0 };
        assert_eq!(human_duration(&d(12)), "12s");
        assert_eq!(human_duration(&d(185)), "3m 05s");
        assert_eq!(human_duration(&d(3720)), "1h 02m");
    }
}
