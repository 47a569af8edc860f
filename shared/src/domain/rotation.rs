//! Key rotation: what a rotation will do (its plan), kept in the journal entry it executes from.
//!
//! A new-key rotation (the guide's 5.1) makes a new AWS key with the old one's spec, usage,
//! description, tags and policy (read fresh from AWS), moves every alias of the old key to it
//! with UpdateAlias (checking before each move that the alias still targets the old key), links
//! the two (`ROTATED_FROM` / `ROTATED_TO`), gives the new key the display name and renames the
//! old one `<name>~rotated-<UTC time as YYYYMMDDTHHMMSSZ>`. A rotation onto Keyward-owned
//! material (the guide's 5.3, `to_source`) does the same with an EXTERNAL AWS key whose material
//! is imported from an AES-256 Keyward key, which it may first make. An in-place rotation is
//! AWS's RotateKeyOnDemand: new material behind the same key ARN, nothing else changes. A
//! Keyward key (the guide's 5.2) rotates to a new Keyward key with new material, and its linked
//! copies follow: each AWS copy gets a new EXTERNAL key with that material and its aliases, each
//! REGULAR copy a new Keyward key; copies that cannot follow are listed with the reason.

use std::collections::BTreeMap;

use time::OffsetDateTime;

use super::{GroupId, KeyId, KeySpec, KeyUsage};

/// What happens to the old key once its aliases moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OldKeyAction {
    /// Stays ENABLED, so that what it encrypted still decrypts (the default).
    KeepEnabled,
    /// DisableKey.
    Disable,
    /// ScheduleKeyDeletion with this PendingWindowInDays (7–30).
    ScheduleDeletion { pending_window_days: i32 },
}

impl OldKeyAction {
    pub fn name(self) -> &'static str {
        match self {
            Self::KeepEnabled => "KEEP_ENABLED",
            Self::Disable => "DISABLE",
            Self::ScheduleDeletion { .. } => "SCHEDULE_DELETION",
        }
    }
}

/// How a key is rotated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotationKind {
    /// A new AWS key takes over the aliases (the guide's 5.1).
    NewKey,
    /// AWS's RotateKeyOnDemand: same key, new material.
    InPlace,
    /// A new EXTERNAL AWS key with a Keyward key's material takes over (the guide's 5.3).
    ToSource,
    /// A new Keyward key with new material takes over, its linked copies with it (5.2).
    KeywardKey,
}

impl RotationKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::NewKey => "NEW_KEY",
            Self::InPlace => "IN_PLACE",
            Self::ToSource => "TO_SOURCE",
            Self::KeywardKey => "KEYWARD_KEY",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        [Self::NewKey, Self::InPlace, Self::ToSource, Self::KeywardKey].into_iter().find(|k| k.name() == s)
    }
}

/// The Keyward key whose material a `ToSource` rotation imports into the new AWS key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedSource {
    pub group_id: GroupId,
    pub key_id: KeyId,
    /// `Some(name)`: the rotation first makes this new AES-256 Keyward key (ENCRYPT, DECRYPT,
    /// EXPORT) in the REGULAR group, recorded with the rotation's intent.
    pub create_named: Option<String>,
}

/// The AWS key a new-key rotation creates, as read from the old one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedKey {
    /// The name the new key takes over (the old key's).
    pub display_name: String,
    pub key_spec: KeySpec,
    pub key_usage: KeyUsage,
    pub description: String,
    pub tags: BTreeMap<String, String>,
    /// The old key's policy, as GetKeyPolicy returned it; `None`: AWS's default policy.
    pub key_policy: Option<String>,
    /// The old key's AWS automatic rotation period when it is on (EnableKeyRotation on the new
    /// key); `None`: off or not read.
    pub rotation_period_days: Option<i32>,
}

/// A linked copy in the rotation of a Keyward key: it follows (a successor with the new
/// material takes over its name and aliases) or is skipped, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedCopy {
    pub group_id: GroupId,
    pub key_id: KeyId,
    /// The copy's AWS key (copies in AWS_KMS groups); `None`: a Keyward key (REGULAR group).
    pub aws_key_id: Option<String>,
    /// Why it does not follow (it keeps the old material); `None`: it follows.
    pub skipped: Option<String>,
    /// Its successor's id, assigned by the plan.
    pub new_key_id: KeyId,
    /// The name its successor takes over, and the one it gets.
    pub display_name: String,
    pub rename_old_to: String,
    /// AWS copies: the new key's description, tags and policy, read fresh from AWS.
    pub description: String,
    pub tags: BTreeMap<String, String>,
    pub key_policy: Option<String>,
    pub alias_moves: Vec<AliasMove>,
}

/// One alias to move from the old key to the new one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasMove {
    pub alias: String,
    /// The AWS key id the alias targets when the plan was made (the old key).
    pub from_aws_key_id: String,
}

/// What one rotation will do, call by call. A rotation executes exactly its plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationPlan {
    pub kind: RotationKind,
    /// The key being rotated.
    pub group_id: GroupId,
    pub key_id: KeyId,
    pub aws_key_id: String,
    /// The new key (new-key rotations).
    pub new_key: Option<PlannedKey>,
    /// The old key's display name afterwards (new-key rotations).
    pub rename_old_to: Option<String>,
    /// Where the new key's material comes from (`ToSource`); for `KeywardKey`, the new Keyward
    /// key itself (made with the rotation's intent, under a temporary name).
    pub source: Option<PlannedSource>,
    /// `KeywardKey`: every linked copy, following or skipped.
    pub copies: Vec<PlannedCopy>,
    pub alias_moves: Vec<AliasMove>,
    pub old_key_action: OldKeyAction,
    /// The AWS calls in order, e.g. `CreateKey(RSA_2048, SIGN_VERIFY)`, `UpdateAlias(alias/a → new key)`.
    pub aws_calls: Vec<String>,
}

impl RotationPlan {
    /// A one-line summary for the audit log.
    pub fn summary(&self) -> String {
        let aliases: Vec<&str> = self
            .alias_moves
            .iter()
            .chain(self.copies.iter().flat_map(|c| &c.alias_moves))
            .map(|m| m.alias.as_str())
            .collect();
        let following = self.copies.iter().filter(|c| c.skipped.is_none()).count();
        let copies = match self.copies.len() {
            0 => String::new(),
            n => format!(", copies {following} of {n} following"),
        };
        let subject =
            if self.aws_key_id.is_empty() { format!("keys/{}", self.key_id) } else { self.aws_key_id.clone() };
        format!(
            "{} rotation of {subject}: {} AWS calls, aliases [{}]{copies}, old key {}",
            self.kind.name(),
            self.aws_calls.len(),
            aliases.join(", "),
            self.old_key_action.name()
        )
    }
}

/// When a policy rotates: every `interval`, or at the times of a cron expression (UTC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotationEvery {
    /// At least a day, at most ten years.
    Interval(std::time::Duration),
    Cron(CronSchedule),
}

/// A cron expression of five fields — minute, hour, day of month, month, day of week — read
/// in UTC (croner's syntax: `0 3 * * 1` is Mondays at 03:00), firing at most once a day.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    text: String,
    cron: Box<croner::Cron>,
}

impl PartialEq for CronSchedule {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}
impl Eq for CronSchedule {}

impl CronSchedule {
    /// Parses `text`; errors say why (a syntax error, seconds given, more than once a day, or
    /// never firing).
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.len() > 100 {
            return Err(format!("{} characters; a cron expression here is at most 100", text.len()));
        }
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if text.split(' ').count() != 5 {
            return Err(format!("{text:?} is not 5 fields (minute hour day-of-month month day-of-week)"));
        }
        let s = Self::parse_checked(&text)?;
        // Fires at least once, and its firings are at least a day apart (sampled over a year
        // of them from a fixed instant, so the answer does not depend on when it is asked).
        let start = OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
        let mut prev = s.next_after(start).ok_or_else(|| format!("{:?} never fires", s.text))?;
        for _ in 0..366 {
            let Some(next) = s.next_after(prev) else { break };
            if next - prev < time::Duration::days(1) {
                return Err(format!("{:?} fires more than once a day; rotate at most daily", s.text));
            }
            prev = next;
        }
        Ok(s)
    }

    /// Parses a stored expression, which [`CronSchedule::parse`] checked when it was set: only
    /// the syntax (reading a key must not sample a year of firings).
    pub fn parse_checked(text: &str) -> Result<Self, String> {
        let cron: croner::Cron = text.parse().map_err(|e| format!("{text:?} is not a cron expression: {e}"))?;
        Ok(Self { text: text.to_owned(), cron: Box::new(cron) })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The first firing strictly after `t`.
    pub fn next_after(&self, t: OffsetDateTime) -> Option<OffsetDateTime> {
        let after = chrono::DateTime::<chrono::Utc>::from_timestamp(t.unix_timestamp(), 0)?;
        let next = self.cron.find_next_occurrence(&after, false).ok()?;
        OffsetDateTime::from_unix_timestamp(next.timestamp()).ok()
    }
}

impl RotationEvery {
    /// The next rotation after one at `t` (a missed firing is not made up: one rotation).
    pub fn next_after(&self, t: OffsetDateTime) -> OffsetDateTime {
        match self {
            Self::Interval(d) => t + *d,
            // A checked cron always fires again; ten years out otherwise.
            Self::Cron(c) => c.next_after(t).unwrap_or(t + RotationPolicy::MAX_INTERVAL),
        }
    }
}

/// A rotation schedule as a request gives it (the worker keeps the times in [`RotationPolicy`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationSchedule {
    pub every: RotationEvery,
    /// AWS RotateKeyOnDemand instead of a new key.
    pub in_place: bool,
    pub old_key_action: OldKeyAction,
    /// Keyward keys: every linked copy follows.
    pub rotate_linked: bool,
}

/// A key's rotation on schedule, run by the worker: at each time of its schedule the key is
/// rotated as RotateKey would (`in_place`, `old_key_action`, `rotate_linked`); after a new-key
/// rotation the policy moves to the new key. The next rotation is the schedule's next time after
/// the last one, so a worker that was down for several periods rotates once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationPolicy {
    pub schedule: RotationSchedule,
    /// When the worker rotates the key next (retries after a failure come sooner).
    pub next_rotation_time: OffsetDateTime,
    /// The last rotation that ran on schedule.
    pub last_rotation_time: Option<OffsetDateTime>,
    /// Why the last scheduled rotation failed, until one succeeds.
    pub last_error: Option<String>,
    /// Scheduled rotations failed in a row (the retry backoff grows with them).
    pub failures: u32,
}

impl RotationPolicy {
    /// Shortest interval: one day.
    pub const MIN_INTERVAL: std::time::Duration = std::time::Duration::from_secs(86_400);
    /// Longest interval: ten years.
    pub const MAX_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3650 * 86_400);

    /// A policy starting at `now`: the first rotation at the schedule's next time.
    pub fn new(schedule: RotationSchedule, now: OffsetDateTime) -> Self {
        Self {
            next_rotation_time: schedule.every.next_after(now),
            schedule,
            last_rotation_time: None,
            last_error: None,
            failures: 0,
        }
    }

    /// After a rotation at `now`: the next one at the schedule's next time, no error.
    pub fn rotated(&self, now: OffsetDateTime) -> Self {
        Self {
            next_rotation_time: self.schedule.every.next_after(now),
            last_rotation_time: Some(now),
            last_error: None,
            failures: 0,
            ..self.clone()
        }
    }

    /// How long after its `failures`-th failure in a row a scheduled rotation is tried again:
    /// 1 h, doubling, at most a day (never later than an interval).
    pub fn retry_after(&self) -> std::time::Duration {
        let hours = 1u64 << self.failures.min(5);
        let backoff = std::time::Duration::from_secs(hours.min(24) * 3600);
        match &self.schedule.every {
            RotationEvery::Interval(d) => backoff.min(*d),
            RotationEvery::Cron(_) => backoff,
        }
    }
}

/// The display name of a key rotated at `at`: `<name>~rotated-<YYYYMMDDTHHMMSSZ>`, the name
/// cut (at a character boundary) so that the whole stays within `max` characters.
pub fn rotated_name(name: &str, at: OffsetDateTime, max: usize) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    let suffix = format!(
        "~rotated-{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    );
    let keep = max.saturating_sub(suffix.chars().count());
    let base: String = name.chars().take(keep).collect();
    format!("{base}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(every: RotationEvery) -> RotationSchedule {
        RotationSchedule { every, in_place: false, old_key_action: OldKeyAction::KeepEnabled, rotate_linked: false }
    }

    #[test]
    fn policies_rotate_an_interval_after_the_last_rotation_and_back_off() {
        let t = time::macros::datetime!(2026-12-02 00:00:00 UTC);
        let day = std::time::Duration::from_secs(86_400);
        let p = RotationPolicy::new(schedule(RotationEvery::Interval(30 * day)), t);
        assert_eq!(p.next_rotation_time, t + 30 * day);
        // Three periods late: the next one is an interval after this rotation, not a backlog.
        let late = t + 100 * day;
        let r = p.rotated(late);
        assert_eq!((r.next_rotation_time, r.last_rotation_time), (late + 30 * day, Some(late)));
        let h = std::time::Duration::from_secs(3600);
        let failing = |failures, every| RotationPolicy { failures, ..RotationPolicy::new(schedule(every), t) };
        assert_eq!(failing(0, RotationEvery::Interval(30 * day)).retry_after(), h);
        assert_eq!(failing(3, RotationEvery::Interval(30 * day)).retry_after(), 8 * h);
        assert_eq!(failing(9, RotationEvery::Interval(30 * day)).retry_after(), 24 * h);
        assert_eq!(failing(9, RotationEvery::Interval(day / 2)).retry_after(), day / 2);
        let cron = RotationEvery::Cron(CronSchedule::parse("0 3 * * *").unwrap());
        assert_eq!(failing(9, cron).retry_after(), 24 * h);
    }

    #[test]
    fn cron_schedules_fire_at_most_daily_in_utc_and_once_after_missed_firings() {
        let monthly = CronSchedule::parse(" 0  3 1 * * ").unwrap();
        assert_eq!(monthly.as_str(), "0 3 1 * *");
        let t = time::macros::datetime!(2026-12-02 10:00:00 UTC);
        assert_eq!(monthly.next_after(t), Some(time::macros::datetime!(2027-01-01 03:00:00 UTC)));
        let p = RotationPolicy::new(schedule(RotationEvery::Cron(monthly)), t);
        // Three firings missed: the next is the one after this rotation.
        let late = time::macros::datetime!(2027-04-15 00:00:00 UTC);
        assert_eq!(p.rotated(late).next_rotation_time, time::macros::datetime!(2027-05-01 03:00:00 UTC));
        let mondays = CronSchedule::parse("30 2 * * 1").unwrap();
        assert_eq!(mondays.next_after(t), Some(time::macros::datetime!(2026-12-07 02:30:00 UTC)));
        for bad in ["* * * * *", "0 * * * *", "0 0,12 * * *", "0 0 3 * * *", "0 3 * *", "every day", "0 3 31 2 *"] {
            assert!(CronSchedule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rotated_names_say_when_and_fit() {
        let at = time::macros::datetime!(2026-12-02 01:02:03 UTC);
        assert_eq!(rotated_name("payments", at, 256), "payments~rotated-20261202T010203Z");
        let long = "x".repeat(300);
        let n = rotated_name(&long, at, 256);
        assert_eq!(n.chars().count(), 256);
        assert!(n.ends_with("~rotated-20261202T010203Z"));
    }
}
