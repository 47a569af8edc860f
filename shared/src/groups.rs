//! Group use cases: create, read, list, update, delete, and the connection test.

use std::time::Duration;

use secrecy::SecretString;
use time::OffsetDateTime;

use crate::audit::ok_event;
use crate::domain::{
    AwsKmsConfig, ConnectionState, ConnectionStatus, CryptoPolicy, FieldViolation, Group, GroupId, GroupKind, Region,
    validate_display_name,
};
use crate::domain::{Caller, actions};
use crate::kms::Purpose;
use crate::{Error, Keyward, Result};

/// What CreateGroup carries once parsed.
#[derive(Debug, Clone)]
pub struct NewGroup {
    pub display_name: String,
    pub description: String,
    pub kind: GroupKind,
    pub aws_kms: Option<AwsKmsConfig>,
    pub crypto_policy: CryptoPolicy,
    pub sync_interval: Option<Duration>,
}

/// The fields an UpdateGroup changes (`None`: untouched; `Some(None)`: cleared).
#[derive(Debug, Clone, Default)]
pub struct GroupPatch {
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub region: Option<Region>,
    pub endpoint_url: Option<Option<String>>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<Option<SecretString>>,
    pub ca_certificate_pem: Option<Option<String>>,
    pub client_certificate_pem: Option<Option<String>>,
    pub client_private_key_pem: Option<Option<SecretString>>,
    pub validate_host: Option<bool>,
    pub crypto_policy: Option<CryptoPolicy>,
    pub sync_interval: Option<Option<Duration>>,
    /// When set, must equal the stored etag (else ABORTED).
    pub etag: Option<String>,
}

impl GroupPatch {
    /// The fields changed, for the audit log (names only, never values).
    fn describe(&self) -> String {
        let fields = [
            ("display_name", self.display_name.is_some()),
            ("description", self.description.is_some()),
            ("aws_kms.region", self.region.is_some()),
            ("aws_kms.endpoint_url", self.endpoint_url.is_some()),
            ("aws_kms.access_key_id", self.access_key_id.is_some()),
            ("aws_kms.secret_access_key", self.secret_access_key.is_some()),
            ("aws_kms.ca_certificate_pem", self.ca_certificate_pem.is_some()),
            ("aws_kms.client_certificate_pem", self.client_certificate_pem.is_some()),
            ("aws_kms.client_private_key_pem", self.client_private_key_pem.is_some()),
            ("aws_kms.validate_host", self.validate_host.is_some()),
            ("crypto_policy", self.crypto_policy.is_some()),
            ("sync_schedule", self.sync_interval.is_some()),
        ];
        let changed: Vec<&str> = fields.iter().filter(|(_, set)| *set).map(|(n, _)| *n).collect();
        format!("changed {}", changed.join(", "))
    }

    fn touches_connection(&self) -> bool {
        self.region.is_some()
            || self.endpoint_url.is_some()
            || self.access_key_id.is_some()
            || self.secret_access_key.is_some()
            || self.ca_certificate_pem.is_some()
            || self.client_certificate_pem.is_some()
            || self.client_private_key_pem.is_some()
            || self.validate_host.is_some()
    }
}

/// 1–128 characters; unique across groups.
const GROUP_NAME_MAX: usize = 128;

/// An http(s) URL with a host, or a violation.
pub(crate) fn check_endpoint_url(url: &str) -> std::result::Result<(), String> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    let authority = rest.map(|r| r.split(['/', '?', '#']).next().unwrap_or(""));
    if authority.is_some_and(|a| a.contains('@')) || (rest.is_none() && url.contains('@')) {
        return Err("must not contain user info (credentials go in access_key_id / secret_access_key)".to_owned());
    }
    match rest {
        Some(r) if !r.is_empty() && !r.starts_with('/') && !r.contains(char::is_whitespace) => Ok(()),
        // Not quoted: a malformed URL may still carry credentials.
        _ => Err("not an http:// or https:// URL with a host".to_owned()),
    }
}

fn check_group(display_name: &str, description: &str, kind: GroupKind, aws: Option<&AwsKmsConfig>) -> Result<()> {
    let mut bad = Vec::new();
    if let Err(e) = validate_display_name(display_name, GROUP_NAME_MAX) {
        bad.push(FieldViolation::new("group.display_name", e));
    }
    if description.chars().count() > crate::keys::DESCRIPTION_MAX {
        bad.push(FieldViolation::new("group.description", "at most 8192 characters"));
    }
    match (kind, aws) {
        (GroupKind::AwsKms, None) => bad.push(FieldViolation::new("group.aws_kms", "required for an AWS_KMS group")),
        (GroupKind::Regular, Some(_)) => {
            bad.push(FieldViolation::new("group.aws_kms", "only AWS_KMS groups have AWS KMS settings"))
        }
        _ => {}
    }
    if let Some(url) = aws.and_then(|a| a.endpoint_url.as_deref())
        && let Err(e) = check_endpoint_url(url)
    {
        bad.push(FieldViolation::new("group.aws_kms.endpoint_url", e));
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
    if bad.is_empty() { Ok(()) } else { Err(Error::InvalidArgument(bad)) }
}

fn new_etag() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

impl Keyward {
    /// CreateGroup. Saves even when the connection details are wrong or incomplete
    /// (connection state UNKNOWN). Display name taken → ALREADY_EXISTS.
    pub async fn create_group(&self, new: NewGroup, caller: &Caller, now: OffsetDateTime) -> Result<Group> {
        let now = crate::domain::to_micros(now);
        check_group(&new.display_name, &new.description, new.kind, new.aws_kms.as_ref())?;
        if new.kind == GroupKind::Regular && new.sync_interval.is_some_and(|d| !d.is_zero()) {
            return Err(Error::invalid("group.sync_schedule.interval", "only AWS_KMS groups are synced"));
        }
        let group = Group {
            id: GroupId::new(),
            display_name: new.display_name,
            description: new.description,
            kind: new.kind,
            aws_kms: new.aws_kms,
            connection: ConnectionStatus::unknown(),
            crypto_policy: new.crypto_policy,
            sync_interval: new.sync_interval.filter(|d| !d.is_zero()),
            create_time: now,
            update_time: now,
            etag: new_etag(),
        };
        let tx = self.store.begin_audited().await?;
        tx.insert_group(&group).await?;
        let detail = format!("kind {:?}", group.kind);
        ok_event(&tx, caller, actions::CREATE_GROUP, format!("groups/{}", group.id), detail, now).await?;
        tx.commit().await?;
        tracing::info!(group_id = %group.id, kind = ?group.kind, "group created");
        Ok(group)
    }

    pub async fn get_group(&self, id: GroupId) -> Result<Group> {
        self.store.get_group(id).await
    }

    /// ListGroups: ordered by id; `after` is the last id of the previous page.
    pub async fn list_groups(&self, kind: Option<GroupKind>, after: Option<String>, limit: u64) -> Result<Vec<Group>> {
        self.store.list_groups(kind, after, limit).await
    }

    /// UpdateGroup. Changing any connection detail resets the connection state to UNKNOWN.
    pub async fn update_group(
        &self,
        id: GroupId,
        patch: GroupPatch,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> Result<Group> {
        let now = crate::domain::to_micros(now);
        let old = self.store.get_group(id).await?;
        if let Some(etag) = &patch.etag
            && etag != &old.etag
        {
            return Err(Error::Aborted(format!("groups/{id} has etag {}, not {etag}; read it again", old.etag)));
        }
        let mut g = old.clone();
        if let Some(v) = patch.display_name.clone() {
            g.display_name = v;
        }
        if let Some(v) = patch.description.clone() {
            g.description = v;
        }
        if let Some(v) = patch.crypto_policy.clone() {
            g.crypto_policy = v;
        }
        if let Some(v) = patch.sync_interval {
            g.sync_interval = v.filter(|d| !d.is_zero());
        }
        if patch.touches_connection() {
            let Some(a) = g.aws_kms.as_mut() else {
                return Err(Error::invalid("group.aws_kms", "only AWS_KMS groups have AWS KMS settings"));
            };
            let p = patch.clone();
            if let Some(v) = p.region {
                a.region = v;
            }
            if let Some(v) = p.endpoint_url {
                a.endpoint_url = v;
            }
            if let Some(v) = p.access_key_id {
                a.access_key_id = v;
            }
            if let Some(v) = p.secret_access_key {
                a.secret_access_key = v;
            }
            if let Some(v) = p.ca_certificate_pem {
                a.ca_certificate_pem = v;
            }
            if let Some(v) = p.client_certificate_pem {
                a.client_certificate_pem = v;
            }
            if let Some(v) = p.client_private_key_pem {
                a.client_private_key_pem = v;
            }
            if let Some(v) = p.validate_host {
                a.validate_host = v;
            }
            g.connection = ConnectionStatus::unknown();
        }
        check_group(&g.display_name, &g.description, g.kind, g.aws_kms.as_ref())?;
        if g.kind == GroupKind::Regular && g.sync_interval.is_some() {
            return Err(Error::invalid("group.sync_schedule.interval", "only AWS_KMS groups are synced"));
        }
        let region_changed =
            patch.region.as_ref().is_some_and(|r| old.aws_kms.as_ref().is_some_and(|a| a.region != *r));
        if region_changed
            && !self
                .store
                .list_keys(&crate::store::KeyQuery { group: Some(id), ..Default::default() }, None, 1)
                .await?
                .is_empty()
        {
            return Err(Error::precondition(
                "GROUP_NOT_EMPTY",
                format!("groups/{id}"),
                "the group holds keys of its region; a group's region cannot change while it holds keys (create another group)",
            ));
        }
        g.update_time = now;
        g.etag = new_etag();
        let tx = self.store.begin_audited().await?;
        tx.update_group(&g, &old.etag).await?;
        ok_event(&tx, caller, actions::UPDATE_GROUP, format!("groups/{id}"), patch.describe(), now).await?;
        tx.commit().await?;
        tracing::info!(group_id = %id, "group updated");
        Ok(g)
    }

    /// DeleteGroup: FAILED_PRECONDITION while the group holds keys.
    pub async fn delete_group(&self, id: GroupId, caller: &Caller, now: OffsetDateTime) -> Result<()> {
        // Not while a sync of the group runs: it would add keys to a group being deleted.
        let lease = format!("sync/{id}");
        let holder = format!("{}-delete-{}", self.holder, uuid::Uuid::now_v7());
        if !self.store.try_lease(&lease, &holder, std::time::Duration::from_secs(60), OffsetDateTime::now_utc()).await?
        {
            return Err(Error::Aborted(format!("a sync of groups/{id} is running; delete the group after it")));
        }
        let deleted = async {
            let tx = self.store.begin_audited().await?;
            tx.delete_group(id).await?;
            ok_event(&tx, caller, actions::DELETE_GROUP, format!("groups/{id}"), String::new(), now).await?;
            tx.commit().await
        }
        .await;
        if let Err(e) = self.store.release_lease(&lease, &holder).await {
            tracing::warn!(group_id = %id, error = %e, "could not release the sync lease; it expires by itself");
        }
        deleted?;
        tracing::info!(group_id = %id, "group deleted");
        Ok(())
    }

    /// TestConnection of a saved group; the outcome is stored on the group.
    pub async fn test_group_connection(
        &self,
        id: GroupId,
        caller: &Caller,
        now: OffsetDateTime,
    ) -> Result<ConnectionStatus> {
        let now = crate::domain::to_micros(now);
        let g = self.store.get_group(id).await?;
        let Some(cfg) = &g.aws_kms else {
            return Err(Error::precondition(
                "NOT_AWS_KMS_GROUP",
                format!("groups/{id}"),
                "only AWS_KMS groups have a connection to test",
            ));
        };
        let status = self.test_connection(cfg, now).await;
        let tx = self.store.begin_audited().await?;
        tx.set_connection(id, &status).await?;
        let detail = format!("{:?}: {}", status.state, status.message);
        ok_event(&tx, caller, actions::TEST_CONNECTION, format!("groups/{id}"), detail, now).await?;
        tx.commit().await?;
        tracing::info!(group_id = %id, state = ?status.state, message = %status.message, "connection tested");
        Ok(status)
    }

    /// TestConnection of unsaved settings: ListKeys (Limit 1) with short timeouts and no
    /// retries. Never an error: a failure is NOT_CONNECTED with what a person can act on.
    pub async fn test_connection(&self, cfg: &AwsKmsConfig, now: OffsetDateTime) -> ConnectionStatus {
        let now = crate::domain::to_micros(now);
        let endpoint =
            cfg.endpoint_url.clone().unwrap_or_else(|| format!("https://kms.{}.amazonaws.com", cfg.region.as_str()));
        let result = match self.kms.connect(cfg, Purpose::Probe) {
            Ok(kms) => kms.list_keys(Some(1), None).await.map(|_| ()),
            Err(e) => Err(e),
        };
        let (state, message) = match result {
            Ok(()) => (ConnectionState::Connected, format!("connected to {endpoint} ({})", cfg.region.as_str())),
            Err(e) => (ConnectionState::NotConnected, e.to_string()),
        };
        ConnectionStatus { state, message, check_time: Some(now) }
    }
}

#[cfg(test)]
mod tests {
    use super::check_endpoint_url;

    #[test]
    fn endpoint_urls_are_checked_without_quoting_them() {
        assert!(check_endpoint_url("https://kms.eu-west-1.amazonaws.com").is_ok());
        assert!(check_endpoint_url("http://127.0.0.1:4566").is_ok());
        for bad in [
            "ftp://user:hunter2@evilhost",
            "https://user:hunter2@evilhost:8443",
            "evilhost.local",
            "https://",
            "http:///x",
        ] {
            let e = check_endpoint_url(bad).unwrap_err();
            assert!(!e.contains("hunter2") && !e.contains("evilhost"), "{bad}: {e}");
        }
    }
}
