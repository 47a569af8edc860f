//! Group use cases: create, read, list, update, delete, and the connection test.

use std::time::Duration;
use time::OffsetDateTime;

use super::requests::{GroupPatch, NewGroup};
use super::support::checks::{DESCRIPTION_MAX, none_bad};
use super::support::new_etag;
use super::support::records::ok_event;
use super::{Ctx, Keyward};
use crate::domain::{
    Action, AwsKmsConfig, ConnectionState, ConnectionStatus, FieldViolation, Group, GroupId, GroupKind,
    validate_display_name,
};
use crate::kms::Purpose;
use crate::{Error, Precondition, Result};

/// 1–128 characters; unique across groups.
const GROUP_NAME_MAX: usize = 128;

fn check_group(g: &Group) -> Result<()> {
    let mut bad = Vec::new();
    if let Err(e) = validate_display_name(&g.display_name, GROUP_NAME_MAX) {
        bad.push(FieldViolation::new("group.display_name", e));
    }
    if g.description.chars().count() > DESCRIPTION_MAX {
        bad.push(FieldViolation::new("group.description", "at most 8192 characters"));
    }
    let aws = g.aws_kms.as_ref();
    match (g.kind, aws) {
        (GroupKind::AwsKms, None) => bad.push(FieldViolation::new("group.aws_kms", "required for an AWS_KMS group")),
        (GroupKind::Regular, Some(_)) => {
            bad.push(FieldViolation::new("group.aws_kms", "only AWS_KMS groups have AWS KMS settings"))
        }
        _ => {}
    }
    if aws.and_then(|a| a.client_certificate_pem.as_deref()).is_some_and(|p| p.contains("PRIVATE KEY")) {
        bad.push(FieldViolation::new(
            "group.aws_kms.client_certificate_pem",
            "holds a private key; send it in client_private_key_pem, which is sealed and never returned",
        ));
    }
    if aws.and_then(|a| a.ca_certificate_pem.as_deref()).is_some_and(|p| p.contains("PRIVATE KEY")) {
        bad.push(FieldViolation::new(
            "group.aws_kms.ca_certificate_pem",
            "holds a private key; only certificates belong here",
        ));
    }
    none_bad(bad)?;
    if g.kind == GroupKind::Regular && g.sync_interval.is_some() {
        return Err(Error::invalid("group.sync_schedule.interval", "only AWS_KMS groups are synced"));
    }
    Ok(())
}

/// The first scheduled sync of a schedule set at `now`, to the millisecond (as stored).
fn next_sync(now: OffsetDateTime, every: Option<Duration>) -> Option<OffsetDateTime> {
    let t = now + every?;
    t.replace_nanosecond(t.nanosecond() / 1_000_000 * 1_000_000).ok()
}

impl Keyward {
    /// CreateGroup. Saves even when the connection details are wrong or incomplete
    /// (connection state UNKNOWN). Display name taken → ALREADY_EXISTS.
    pub async fn create_group(&self, ctx: &Ctx, new: NewGroup) -> Result<Group> {
        let group = Group {
            id: GroupId::new(),
            display_name: new.display_name,
            description: new.description,
            kind: new.kind,
            aws_kms: new.aws_kms,
            connection: ConnectionStatus::unknown(),
            crypto_policy: new.crypto_policy,
            sync_interval: new.sync_interval.filter(|d| !d.is_zero()),
            audit_key_use: new.audit_key_use,
            last_sync_time: None,
            next_sync_time: None,
            create_time: ctx.now,
            update_time: ctx.now,
            etag: new_etag(),
        };
        check_group(&group)?;
        let group = Group { next_sync_time: next_sync(ctx.now, group.sync_interval), ..group };
        let tx = self.store.begin_audited().await?;
        tx.insert_group(&group).await?;
        let detail = format!("kind {:?}", group.kind);
        ok_event(&tx, &ctx.caller, Action::CreateGroup, format!("groups/{}", group.id), detail, ctx.now).await?;
        tx.commit().await?;
        tracing::info!(group_id = %group.id, kind = ?group.kind, "group created");
        Ok(group)
    }

    pub async fn get_group(&self, _ctx: &Ctx, id: GroupId) -> Result<Group> {
        self.store.get_group(id).await
    }

    /// What a caller who just made or changed `g` may want to know: another AWS_KMS group reaching
    /// the same account (access key id), region and endpoint holds the same AWS keys. Groups the
    /// caller cannot read are counted, not named.
    pub async fn group_warnings(&self, ctx: &Ctx, g: &Group) -> Result<Vec<String>> {
        let Some(a) = &g.aws_kms else { return Ok(Vec::new()) };
        let others = self
            .store
            .groups_reaching(a.region.as_str(), a.endpoint_url.as_ref().map(|u| u.as_str()), &a.access_key_id, g.id)
            .await?;
        let readable = ctx.caller.grants.groups_with(crate::domain::Permission::ReadGroup);
        let can_read = |id: &str| readable.as_ref().is_none_or(|only| only.iter().any(|g| g.to_string() == id));
        let (named, hidden): (Vec<_>, Vec<_>) = others.iter().partition(|(id, _)| can_read(id));
        let mut out: Vec<String> = named
            .iter()
            .map(|(id, name)| {
                format!(
                    "groups/{id} ({name:?}) reaches the same AWS account, region and endpoint: both hold its keys as virtual keys"
                )
            })
            .collect();
        if !hidden.is_empty() {
            out.push(format!(
                "{} other group(s) you cannot read reach the same AWS account, region and endpoint",
                hidden.len()
            ));
        }
        Ok(out)
    }

    /// ListGroups: ordered by id; `after` is the last id of the previous page. Only the groups
    /// the caller reads.
    pub async fn list_groups(
        &self,
        ctx: &Ctx,
        kind: Option<GroupKind>,
        after: Option<String>,
        limit: u64,
    ) -> Result<Vec<Group>> {
        let only = ctx.caller.grants.groups_with(crate::domain::Permission::ReadGroup);
        self.store.list_groups(kind, after, limit, only.as_deref()).await
    }

    /// UpdateGroup. Changing any connection detail resets the connection state to UNKNOWN.
    pub async fn update_group(&self, ctx: &Ctx, id: GroupId, patch: GroupPatch) -> Result<Group> {
        // A change of audit_key_use counts here from the next call (other servers: within a second).
        self.key_use_flags.forget(id);
        let old = self.store.get_group(id).await?;
        if let Some(etag) = &patch.etag
            && etag != &old.etag
        {
            return Err(Error::Aborted(format!("groups/{id} has etag {}, not {etag}; read it again", old.etag)));
        }
        let detail = patch.describe();
        let region_changed =
            patch.aws_kms.region.as_ref().is_some_and(|r| old.aws_kms.as_ref().is_some_and(|a| a.region != *r));
        let mut g = old.clone();
        if let Some(v) = patch.display_name {
            g.display_name = v;
        }
        if let Some(v) = patch.description {
            g.description = v;
        }
        if let Some(v) = patch.crypto_policy {
            g.crypto_policy = v;
        }
        if let Some(v) = patch.audit_key_use {
            g.audit_key_use = v;
        }
        if let Some(v) = patch.sync_interval
            && v.filter(|d| !d.is_zero()) != g.sync_interval
        {
            g.sync_interval = v.filter(|d| !d.is_zero());
            g.next_sync_time = next_sync(ctx.now, g.sync_interval);
        }
        if !patch.aws_kms.changed().is_empty() {
            let Some(a) = g.aws_kms.as_mut() else {
                return Err(Error::invalid("group.aws_kms", "only AWS_KMS groups have AWS KMS settings"));
            };
            patch.aws_kms.apply(a);
            g.connection = ConnectionStatus::unknown();
        }
        check_group(&g)?;
        if region_changed && self.store.group_has_keys(id).await? {
            return Err(Error::precondition(
                Precondition::GroupNotEmpty,
                format!("groups/{id}"),
                "the group holds keys of its region; a group's region cannot change while it holds keys (create another group)",
            ));
        }
        g.update_time = ctx.now;
        g.etag = new_etag();
        let tx = self.store.begin_audited().await?;
        tx.update_group(&g, &old.etag, g.next_sync_time != old.next_sync_time).await?;
        ok_event(&tx, &ctx.caller, Action::UpdateGroup, format!("groups/{id}"), detail, ctx.now).await?;
        tx.commit().await?;
        tracing::info!(group_id = %id, "group updated");
        Ok(g)
    }

    /// DeleteGroup: FAILED_PRECONDITION while the group holds keys, unless `force` and the
    /// group is AWS_KMS: then its virtual keys are dropped from Keyward too (AWS untouched).
    /// ABORTED while it syncs, or (with `force`) while a journaled change of its keys is open.
    pub async fn delete_group(&self, ctx: &Ctx, id: GroupId, force: bool) -> Result<()> {
        let g = self.store.get_group(id).await?;
        if force && g.kind == GroupKind::Regular && self.store.group_has_keys(id).await? {
            return Err(Error::precondition(
                Precondition::GroupNotEmpty,
                format!("groups/{id}"),
                "force drops virtual keys only: a REGULAR group's keys hold their material in Keyward; delete them one by one first",
            ));
        }
        let force = force && g.kind == GroupKind::AwsKms;
        // Not while a sync of the group runs: it would add keys to a group being deleted.
        let Some(sync_lease) = self.lock_named_within(&format!("sync/{id}"), Duration::ZERO).await? else {
            return Err(Error::Aborted(format!("a sync of groups/{id} is running; delete the group after it")));
        };
        let deleted = async {
            if force && let Some(op) = self.store.open_operation_of_group(id).await? {
                return Err(Error::Aborted(format!(
                    "journaled change {op} of a key of groups/{id} is under way; delete the group once it ends (the worker finishes or undoes it within about ten minutes)"
                )));
            }
            let tx = self.store.begin_audited().await?;
            let dropped = tx.delete_group(id, force).await?;
            let detail = if force {
                format!("force: {dropped} virtual keys dropped from Keyward, left in AWS as they are")
            } else {
                String::new()
            };
            ok_event(&tx, &ctx.caller, Action::DeleteGroup, format!("groups/{id}"), detail, ctx.now).await?;
            tx.commit().await
        }
        .await;
        sync_lease.release().await;
        deleted?;
        tracing::info!(group_id = %id, "group deleted");
        Ok(())
    }

    /// TestConnection of a saved group; the outcome is stored on the group.
    pub async fn test_group_connection(&self, ctx: &Ctx, id: GroupId) -> Result<ConnectionStatus> {
        let g = self.store.get_group(id).await?;
        let Some(cfg) = &g.aws_kms else {
            return Err(Error::precondition(
                Precondition::NotAwsKmsGroup,
                format!("groups/{id}"),
                "only AWS_KMS groups have a connection to test",
            ));
        };
        let status = self.test_connection(ctx, cfg).await;
        let tx = self.store.begin_audited().await?;
        tx.set_connection(id, &status).await?;
        let detail = format!("{:?}: {}", status.state, status.message);
        ok_event(&tx, &ctx.caller, Action::TestConnection, format!("groups/{id}"), detail, ctx.now).await?;
        tx.commit().await?;
        tracing::info!(group_id = %id, state = ?status.state, message = %status.message, "connection tested");
        Ok(status)
    }

    /// TestConnection of unsaved settings: ListKeys (Limit 1) with short timeouts and no
    /// retries. Never an error: a failure is NOT_CONNECTED with what a person can act on.
    pub async fn test_connection(&self, ctx: &Ctx, cfg: &AwsKmsConfig) -> ConnectionStatus {
        let result = match self.kms.connect(cfg, Purpose::Probe) {
            Ok(kms) => kms.list_keys(Some(1), None).await.map(|_| ()),
            Err(e) => Err(e),
        };
        let (state, message) = match result {
            Ok(()) => {
                (ConnectionState::Connected, format!("connected to {} ({})", cfg.endpoint(), cfg.region.as_str()))
            }
            Err(e) => (ConnectionState::NotConnected, e.to_string()),
        };
        ConnectionStatus { state, message, check_time: Some(ctx.now) }
    }
}
