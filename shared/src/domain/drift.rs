//! Drift: what changed in AWS behind Keyward's back, key by key, as a sync finds it.
//!
//! A sync compares each AWS key with the record Keyward kept of it ([`changes`]) and the run
//! collects the result ([`DriftLog`]): changed state, enabled, description, aliases (added,
//! removed, or re-pointed from one key to another), tags, key policy (compared as canonical
//! JSON: statement order, set order and a one-element list against a bare value are not drift),
//! AWS rotation settings and imported material's expiry; keys new in AWS and keys gone from it.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::{Key, KeyId};

/// How a field drifted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DriftKind {
    /// The value is another one now (`before` → `after`).
    Changed,
    /// Present now, absent before (`after`).
    Added,
    /// Present before, absent now (`before`).
    Removed,
    /// An alias moved between keys: `before` is the key it pointed at, `after` the key now.
    Repointed,
    /// A key AWS has that Keyward had not seen (after a group's first sync).
    Created,
    /// A key Keyward knew that AWS no longer lists.
    Deleted,
}

impl DriftKind {
    pub const ALL: [Self; 6] =
        [Self::Changed, Self::Added, Self::Removed, Self::Repointed, Self::Created, Self::Deleted];

    /// The stored name: `CHANGED`, `ADDED`, ...
    pub fn name(self) -> &'static str {
        match self {
            Self::Changed => "CHANGED",
            Self::Added => "ADDED",
            Self::Removed => "REMOVED",
            Self::Repointed => "REPOINTED",
            Self::Created => "CREATED",
            Self::Deleted => "DELETED",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == s)
    }
}

/// One field of one key that drifted. `field` is the Key's field path (`state`, `enabled`,
/// `description`, `aws.aliases`, `tags.<tag key>`, `aws.key_policy`, `aws.rotation`,
/// `aws.valid_to`; empty for a key created or deleted as a whole).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriftChange {
    pub field: String,
    pub kind: DriftKind,
    pub before: String,
    pub after: String,
}

/// What drifted on one AWS key in one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyDrift {
    /// Keyward's key (none for a key new in AWS that Keyward could not record).
    pub key_id: Option<KeyId>,
    pub key_name: String,
    pub aws_key_arn: String,
    pub changes: Vec<DriftChange>,
    /// Whether the run stored AWS's view; `false`: a Keyward change of the key was in flight,
    /// so AWS's view was not written over it (the next sync compares again).
    pub applied: bool,
}

/// A run's drift in numbers: keys that drifted, changes by field, keys not applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DriftSummary {
    pub keys: i64,
    /// Changes by field path (`tags` for every `tags.<tag key>`; `key` for created/deleted).
    pub fields: BTreeMap<String, i64>,
    pub not_applied: i64,
}

impl DriftSummary {
    /// `drift: 3 keys (aws.aliases 2, state 1)`, for the audit log and logs.
    pub fn describe(&self) -> String {
        let fields: Vec<String> = self.fields.iter().map(|(f, n)| format!("{f} {n}")).collect();
        let mut s = format!("drift {} keys", self.keys);
        if !fields.is_empty() {
            s.push_str(&format!(" ({})", fields.join(", ")));
        }
        if self.not_applied > 0 {
            s.push_str(&format!(", {} not applied (changed in Keyward meanwhile)", self.not_applied));
        }
        s
    }
}

/// The changes between what Keyward knew of a key (`old`) and what AWS holds now (`fresh`).
/// Policies are compared only when both were read.
pub fn changes(old: &Key, fresh: &Key) -> Vec<DriftChange> {
    let mut out = Vec::new();
    let mut push = |field: &str, kind, before: String, after: String| {
        out.push(DriftChange { field: field.to_owned(), kind, before, after })
    };
    if old.state.name() != fresh.state.name() {
        push("state", DriftKind::Changed, old.state.name().to_owned(), fresh.state.name().to_owned());
    }
    let (oa, fa) = (old.aws.as_ref(), fresh.aws.as_ref());
    let enabled = |k: Option<&super::AwsKeyDetails>| k.map(|a| a.enabled);
    // A changed state says it all (AWS's Enabled follows KeyState).
    if let (Some(o), Some(f)) = (enabled(oa), enabled(fa))
        && o != f
        && old.state.name() == fresh.state.name()
    {
        push("enabled", DriftKind::Changed, o.to_string(), f.to_string());
    }
    if old.description != fresh.description {
        push("description", DriftKind::Changed, old.description.clone(), fresh.description.clone());
    }
    let no_aliases = Vec::new();
    let (before, after) = (oa.map_or(&no_aliases, |a| &a.aliases), fa.map_or(&no_aliases, |a| &a.aliases));
    for a in after.iter().filter(|a| !before.contains(a)) {
        push("aws.aliases", DriftKind::Added, String::new(), a.clone());
    }
    for a in before.iter().filter(|a| !after.contains(a)) {
        push("aws.aliases", DriftKind::Removed, a.clone(), String::new());
    }
    for (k, v) in &fresh.tags {
        match old.tags.get(k) {
            None => push(&format!("tags.{k}"), DriftKind::Added, String::new(), v.clone()),
            Some(o) if o != v => push(&format!("tags.{k}"), DriftKind::Changed, o.clone(), v.clone()),
            Some(_) => {}
        }
    }
    for (k, v) in old.tags.iter().filter(|(k, _)| !fresh.tags.contains_key(*k)) {
        push(&format!("tags.{k}"), DriftKind::Removed, v.clone(), String::new());
    }
    if let (Some(o), Some(f)) = (oa, fa) {
        if let (Some(op), Some(fp)) = (&o.key_policy, &f.key_policy)
            && canonical_policy(op) != canonical_policy(fp)
        {
            push("aws.key_policy", DriftKind::Changed, op.clone(), fp.clone());
        }
        if let (Some(or), Some(fr)) = (&o.rotation, &f.rotation)
            && (or.enabled, or.period_days) != (fr.enabled, fr.period_days)
        {
            let show = |r: &super::AwsRotation| match (r.enabled, r.period_days) {
                (false, _) => "disabled".to_owned(),
                (true, Some(d)) => format!("every {d} days"),
                (true, None) => "enabled".to_owned(),
            };
            push("aws.rotation", DriftKind::Changed, show(or), show(fr));
        }
        if o.valid_to != f.valid_to {
            let show = |t: Option<time::OffsetDateTime>| {
                t.and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok()).unwrap_or_default()
            };
            let kind = match (o.valid_to, f.valid_to) {
                (None, Some(_)) => DriftKind::Added,
                (Some(_), None) => DriftKind::Removed,
                _ => DriftKind::Changed,
            };
            push("aws.valid_to", kind, show(o.valid_to), show(f.valid_to));
        }
    }
    out
}

/// A key policy as canonical JSON: objects with sorted keys (serde_json's map), every list
/// sorted and deduplicated (IAM treats them as sets), a one-element list as its element.
/// Text that is not JSON compares as itself.
pub fn canonical_policy(text: &str) -> String {
    fn canon(v: Value) -> Value {
        match v {
            Value::Array(items) => {
                let mut items: Vec<Value> = items.into_iter().map(canon).collect();
                items.sort_by_cached_key(|v| v.to_string());
                items.dedup();
                if items.len() == 1 { items.remove(0) } else { Value::Array(items) }
            }
            Value::Object(m) => Value::Object(m.into_iter().map(|(k, v)| (k, canon(v))).collect()),
            other => other,
        }
    }
    match serde_json::from_str::<Value>(text) {
        Ok(v) => canon(v).to_string(),
        Err(_) => text.to_owned(),
    }
}

/// The drift a run collects, in the order it found it.
#[derive(Debug, Default)]
pub struct DriftLog {
    pub keys: Vec<KeyDrift>,
    /// Whether keys new in AWS are drift (not on a group's first sync, which finds them all).
    pub report_created: bool,
}

impl DriftLog {
    /// Records a key new in AWS, when the log reports those.
    pub fn created(&mut self, key: &Key, arn: &str) {
        if self.report_created {
            self.whole(Some(key), arn, DriftKind::Created, true);
        }
    }

    /// Records `changes` of a key (nothing when there are none).
    pub fn record(&mut self, key: &Key, arn: &str, changes: Vec<DriftChange>, applied: bool) {
        if !changes.is_empty() {
            self.keys.push(KeyDrift {
                key_id: Some(key.id),
                key_name: key.name(),
                aws_key_arn: arn.to_owned(),
                changes,
                applied,
            });
        }
    }

    /// Records a key as a whole: created in AWS, or gone from it.
    pub fn whole(&mut self, key: Option<&Key>, arn: &str, kind: DriftKind, applied: bool) {
        let change = DriftChange { field: String::new(), kind, before: String::new(), after: String::new() };
        self.keys.push(KeyDrift {
            key_id: key.map(|k| k.id),
            key_name: key.map(Key::name).unwrap_or_default(),
            aws_key_arn: arn.to_owned(),
            changes: vec![change],
            applied,
        });
    }

    /// Ends the run's log: an alias removed from one key and added to another is re-pointed
    /// (on both keys: `before` the key it left, `after` the key it is on now). Answers the
    /// summary.
    pub fn finish(&mut self) -> DriftSummary {
        let mut left: HashMap<String, usize> = HashMap::new();
        let mut came: HashMap<String, usize> = HashMap::new();
        for (i, k) in self.keys.iter().enumerate() {
            for c in k.changes.iter().filter(|c| c.field == "aws.aliases") {
                match c.kind {
                    DriftKind::Removed => left.insert(c.before.clone(), i),
                    DriftKind::Added => came.insert(c.after.clone(), i),
                    _ => None,
                };
            }
        }
        for (alias, from) in left {
            let Some(&to) = came.get(&alias) else { continue };
            let (from_name, to_name) = (self.keys[from].key_name.clone(), self.keys[to].key_name.clone());
            for i in [from, to] {
                for c in self.keys[i].changes.iter_mut().filter(|c| c.field == "aws.aliases") {
                    let this = if c.kind == DriftKind::Removed { &c.before } else { &c.after };
                    if this == &alias && matches!(c.kind, DriftKind::Removed | DriftKind::Added) {
                        *c = DriftChange {
                            field: format!("aws.aliases.{alias}"),
                            kind: DriftKind::Repointed,
                            before: from_name.clone(),
                            after: to_name.clone(),
                        };
                    }
                }
            }
        }
        let mut s = DriftSummary { keys: self.keys.len() as i64, ..Default::default() };
        for k in &self.keys {
            if !k.applied {
                s.not_applied += 1;
            }
            for c in &k.changes {
                let field = match c.field.as_str() {
                    "" => "key",
                    f if f.starts_with("tags.") => "tags",
                    f if f.starts_with("aws.aliases") => "aws.aliases",
                    f => f,
                };
                *s.fields.entry(field.to_owned()).or_default() += 1;
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_compare_as_sets() {
        let a = r#"{"Version":"2012-10-17","Statement":[{"Sid":"a","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::1:root"},"Action":"kms:*","Resource":"*"},{"Sid":"b","Effect":"Allow","Action":["kms:Decrypt","kms:Encrypt"],"Resource":"*"}]}"#;
        let reordered = r#"{ "Statement": [ {"Resource": "*", "Action": ["kms:Encrypt", "kms:Decrypt"], "Effect": "Allow", "Sid": "b"},
            {"Sid":"a","Effect":"Allow","Principal":{"AWS":["arn:aws:iam::1:root"]},"Action":["kms:*"],"Resource":"*"} ], "Version": "2012-10-17" }"#;
        assert_eq!(canonical_policy(a), canonical_policy(reordered));
        let edited = a.replace("kms:Decrypt", "kms:ReEncrypt*");
        assert_ne!(canonical_policy(a), canonical_policy(&edited));
        assert_eq!(canonical_policy("not json"), "not json");
    }

    #[test]
    fn an_alias_that_moved_is_repointed_on_both_keys() {
        let mut log = DriftLog::default();
        let change = |kind, before: &str, after: &str| DriftChange {
            field: "aws.aliases".into(),
            kind,
            before: before.into(),
            after: after.into(),
        };
        let drift = |name: &str, changes| KeyDrift {
            key_id: None,
            key_name: name.into(),
            aws_key_arn: format!("arn:{name}"),
            changes,
            applied: true,
        };
        log.keys.push(drift(
            "a",
            vec![change(DriftKind::Removed, "alias/x", ""), change(DriftKind::Removed, "alias/y", "")],
        ));
        log.keys.push(drift("b", vec![change(DriftKind::Added, "", "alias/x")]));
        let s = log.finish();
        assert_eq!(log.keys[0].changes[0].kind, DriftKind::Repointed);
        assert_eq!((log.keys[0].changes[0].before.as_str(), log.keys[0].changes[0].after.as_str()), ("a", "b"));
        assert_eq!(log.keys[0].changes[1].kind, DriftKind::Removed, "alias/y went nowhere");
        assert_eq!(log.keys[1].changes[0].kind, DriftKind::Repointed);
        assert_eq!(log.keys[1].changes[0].field, "aws.aliases.alias/x");
        assert_eq!(s.keys, 2);
        assert_eq!(s.fields.get("aws.aliases"), Some(&3));
    }
}
