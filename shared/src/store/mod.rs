//! The database: SQLite (default, embedded) or PostgreSQL, through sea-orm. Entities stay in
//! here; callers get domain types. Secrets are sealed on the way in and opened on the way out.

mod access;
mod audit;
pub use audit::{AuditQuery, BrokenLink};
pub use sealed::ResealReport;
mod convert;
mod drift;
mod entities;
mod estate;
pub use estate::Estate;
mod migration;
mod sealed;

use std::sync::Arc;
use std::time::Duration;

use sea_orm::sea_query::{Expr, ExprTrait, LikeExpr, OnConflict, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction,
    EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, SqlErr, TransactionSession, TransactionTrait,
};
use sea_orm_migration::MigratorTrait;
use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;

use self::entities::{groups, key_aliases, key_links, key_tags, keys, leases, operations, sync_runs};
use crate::crypto::Keyring;
use crate::domain::{
    AwsKmsConfig, Cmp, ConnectionStatus, CryptoPolicy, EndpointUrl, Group, GroupId, GroupKind, Key, KeyCursor,
    KeyFilter, KeyId, KeyLink, KeyLinkKind, KeyOrder, KeyOrderField, KeyState, OpKind, OpState, Operation, Region,
    SortValue, SyncRun, SyncRunId, SyncRunState, TextMatch, micros,
};
use crate::{Error, Precondition, Result};

/// Database handle: over the pool (`Store`, cheap to clone) or inside one transaction
/// (`Store<DatabaseTransaction>`, from [`Store::begin_audited`]); the same methods on both.
#[derive(Clone)]
pub struct Store<C = DatabaseConnection> {
    db: C,
    master_key: Arc<Keyring>,
    /// Key writes committed through this process so far (caches of key records compare it).
    key_writes: Arc<std::sync::atomic::AtomicU64>,
}

impl<C> std::fmt::Debug for Store<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store(..)")
    }
}

fn secret_binding(id: &GroupId, column: &str) -> String {
    format!("groups/{id}/{column}")
}

fn material_binding(id: KeyId) -> String {
    format!("keys/{id}/material")
}

impl Store {
    /// Connects to `url`: `sqlite://PATH?mode=rwc` (file created if missing), `sqlite::memory:`,
    /// or `postgres://...`. Does not migrate.
    pub async fn connect(url: &str, master_key: Arc<Keyring>) -> Result<Self> {
        let mut opts = ConnectOptions::new(url.to_owned());
        opts.sqlx_logging(false).connect_timeout(Duration::from_secs(10)).acquire_timeout(Duration::from_secs(30));
        if url.starts_with("sqlite") {
            // One writer at a time in SQLite; a small pool avoids lock convoys.
            opts.max_connections(4);
        }
        let db = Database::connect(opts).await?;
        if db.get_database_backend() == sea_orm::DatabaseBackend::Sqlite {
            restrict_sqlite_files(url);
            // Readers do not block the writer (server and worker share the file). Persistent.
            // sqlx already sets foreign_keys=ON and a 5 s busy timeout on every connection.
            db.execute_unprepared("PRAGMA journal_mode=WAL;").await?;
        }
        Ok(Self { db, master_key, key_writes: Arc::default() })
    }

    /// The current master key's id.
    pub fn master_key_id(&self) -> String {
        self.master_key.current_id()
    }

    /// Applies pending migrations (the server does this at start).
    pub async fn migrate(&self) -> Result<()> {
        migration::Migrator::up(&self.db, None).await?;
        Ok(())
    }

    /// Waits until the server has applied every migration this build knows (the worker's start).
    pub async fn wait_for_migrations(&self, timeout: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let applied = migration::Migrator::get_applied_migrations(&self.db).await.unwrap_or_default();
            if applied.iter().any(|m| m.name() == migration::LATEST) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Unavailable("database schema is not migrated; start keyward-server first".into()));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Begins a transaction that will append to the audit log: its first statement takes the
    /// audit head's lock, so appenders queue (PostgreSQL row lock; SQLite write lock taken
    /// before any read, so no lock upgrade can fail). Keep AWS calls outside it.
    pub async fn begin_audited(&self) -> Result<Store<DatabaseTransaction>> {
        let tx = self.db.begin().await?;
        audit::lock_head(&tx).await?;
        Ok(Store { db: tx, master_key: self.master_key.clone(), key_writes: self.key_writes.clone() })
    }

    /// Raw connection for tests that inspect the database itself.
    #[cfg(feature = "test-util")]
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }
}

impl Store<DatabaseTransaction> {
    /// Commits the change and its audit event together.
    pub async fn commit(self) -> Result<()> {
        let writes = self.key_writes.clone();
        self.db.commit().await?;
        // Its key writes are visible only now.
        writes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}

impl<C> Store<C> {
    /// Key writes committed through this process so far: a cache of key records filled when
    /// this was `n` holds nothing older than the database once it is still `n` (read it before
    /// reading the key). Writes through other processes are not counted.
    pub fn key_writes(&self) -> u64 {
        self.key_writes.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Counts a key write (after its commit).
    fn wrote_keys(&self) {
        self.key_writes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl<C: ConnectionTrait + TransactionTrait> Store<C> {
    // ----- groups -----

    /// The sealed value of a secret setting; a setting that did not open when read (and was not
    /// set since) keeps its stored value (`NotSet`).
    fn seal(
        &self,
        id: &GroupId,
        column: &'static str,
        aws: Option<&AwsKmsConfig>,
        secret: Option<&SecretString>,
    ) -> Result<sea_orm::ActiveValue<Option<Vec<u8>>>> {
        if secret.is_none() && aws.is_some_and(|a| a.unopened.contains(&column)) {
            return Ok(sea_orm::ActiveValue::NotSet);
        }
        let sealed = secret
            .map(|s| self.master_key.seal(s.expose_secret().as_bytes(), &secret_binding(id, column)))
            .transpose()
            .map_err(Error::internal)?;
        Ok(Set(sealed))
    }

    /// Opens a stored secret; one that does not open is `None` and named in `unopened` (logged
    /// with the group and setting, never the value): only this group is affected.
    fn open(
        &self,
        id: &GroupId,
        column: &'static str,
        sealed: Option<&[u8]>,
        unopened: &mut Vec<&'static str>,
    ) -> Option<SecretString> {
        let plain = self.master_key.open(sealed?, &secret_binding(id, column));
        match plain.ok().and_then(|p| String::from_utf8(p.to_vec()).ok()) {
            Some(s) => Some(SecretString::from(s)),
            None => {
                tracing::warn!(group_id = %id, setting = column, "a stored secret does not open under the master keyring");
                unopened.push(column);
                None
            }
        }
    }

    fn group_row(&self, g: &Group) -> Result<groups::ActiveModel> {
        let aws = g.aws_kms.as_ref();
        Ok(groups::ActiveModel {
            id: Set(g.id.to_string()),
            display_name: Set(g.display_name.clone()),
            description: Set(g.description.clone()),
            kind: Set(convert::group_kind_name(g.kind).to_owned()),
            region: Set(aws.map(|a| a.region.as_str().to_owned())),
            endpoint_url: Set(aws.and_then(|a| a.endpoint_url.as_ref().map(|u| u.as_str().to_owned()))),
            access_key_id: Set(aws.map(|a| a.access_key_id.clone())),
            secret_access_key_sealed: self.seal(
                &g.id,
                "secret_access_key",
                aws,
                aws.and_then(|a| a.secret_access_key.as_ref()),
            )?,
            ca_certificate_pem: Set(aws.and_then(|a| a.ca_certificate_pem.clone())),
            client_certificate_pem: Set(aws.and_then(|a| a.client_certificate_pem.clone())),
            client_private_key_sealed: self.seal(
                &g.id,
                "client_private_key_pem",
                aws,
                aws.and_then(|a| a.client_private_key_pem.as_ref()),
            )?,
            validate_host: Set(aws.is_none_or(|a| a.validate_host)),
            connection_state: Set(convert::connection_state_name(g.connection.state).to_owned()),
            connection_message: Set(g.connection.message.clone()),
            connection_checked_at: Set(g.connection.check_time),
            allowed_key_specs: Set(convert::specs_json(&g.crypto_policy.allowed_key_specs)),
            allowed_key_ops: Set(convert::ops_json(&g.crypto_policy.allowed_key_ops)),
            sync_interval_secs: Set(g.sync_interval.map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))),
            audit_key_use: Set(g.audit_key_use),
            next_sync_at_ms: Set(g.next_sync_time.map(ms)),
            // Written by the sync run's end only.
            last_sync_at_ms: sea_orm::ActiveValue::NotSet,
            created_at: Set(g.create_time),
            updated_at: Set(g.update_time),
            etag: Set(g.etag.clone()),
        })
    }

    fn group(&self, m: groups::Model) -> Result<Group> {
        let id = GroupId(uuid::Uuid::parse_str(&m.id).map_err(|_| convert::corrupt("groups.id"))?);
        let kind = convert::group_kind(&m.kind)?;
        let aws_kms = match kind {
            GroupKind::Regular => None,
            GroupKind::AwsKms => Some({
                let mut unopened = Vec::new();
                let secret_access_key =
                    self.open(&id, "secret_access_key", m.secret_access_key_sealed.as_deref(), &mut unopened);
                let client_private_key_pem =
                    self.open(&id, "client_private_key_pem", m.client_private_key_sealed.as_deref(), &mut unopened);
                AwsKmsConfig {
                    region: Region::parse(m.region.as_deref().unwrap_or_default())
                        .map_err(|_| convert::corrupt("region"))?,
                    endpoint_url: m
                        .endpoint_url
                        .as_deref()
                        .map(EndpointUrl::parse)
                        .transpose()
                        .map_err(|_| convert::corrupt("endpoint_url"))?,
                    access_key_id: m.access_key_id.unwrap_or_default(),
                    secret_access_key,
                    ca_certificate_pem: m.ca_certificate_pem,
                    client_certificate_pem: m.client_certificate_pem,
                    client_private_key_pem,
                    validate_host: m.validate_host,
                    unopened,
                }
            }),
        };
        Ok(Group {
            id,
            display_name: m.display_name,
            description: m.description,
            kind,
            aws_kms,
            connection: ConnectionStatus {
                state: convert::connection_state(&m.connection_state),
                message: m.connection_message,
                check_time: m.connection_checked_at,
            },
            crypto_policy: CryptoPolicy {
                allowed_key_specs: convert::specs(&m.allowed_key_specs)?,
                allowed_key_ops: convert::ops(&m.allowed_key_ops)?,
            },
            sync_interval: m.sync_interval_secs.map(|s| Duration::from_secs(u64::try_from(s).unwrap_or(0))),
            audit_key_use: m.audit_key_use,
            last_sync_time: m.last_sync_at_ms.map(from_ms),
            next_sync_time: m.next_sync_at_ms.map(from_ms),
            create_time: m.created_at,
            update_time: m.updated_at,
            etag: m.etag,
        })
    }

    /// Inserts a group. Display name taken → ALREADY_EXISTS.
    pub async fn insert_group(&self, g: &Group) -> Result<()> {
        let row = self.group_row(g)?;
        groups::Entity::insert(row).exec(&self.db).await.map_err(|e| unique(e, "group", &g.display_name))?;
        Ok(())
    }

    pub async fn get_group(&self, id: GroupId) -> Result<Group> {
        let m = groups::Entity::find_by_id(id.to_string()).one(&self.db).await?;
        self.group(m.ok_or_else(|| Error::not_found(format!("groups/{id}")))?)
    }

    /// Groups ordered by id after `after`, at most `limit`, optionally of one kind, and only
    /// those of `only` when given.
    pub async fn list_groups(
        &self,
        kind: Option<GroupKind>,
        after: Option<String>,
        limit: u64,
        only: Option<&[GroupId]>,
    ) -> Result<Vec<Group>> {
        let mut q = groups::Entity::find().order_by_asc(groups::Column::Id).limit(limit);
        if let Some(only) = only {
            q = q.filter(groups::Column::Id.is_in(only.iter().map(GroupId::to_string)));
        }
        if let Some(k) = kind {
            q = q.filter(groups::Column::Kind.eq(convert::group_kind_name(k)));
        }
        if let Some(a) = after {
            q = q.filter(groups::Column::Id.gt(a));
        }
        q.all(&self.db).await?.into_iter().map(|m| self.group(m)).collect()
    }

    /// Replaces a group's row if its stored etag is still `expected_etag`; else ABORTED. The
    /// next sync time is written only with `schedule_changed` (a scheduled sync moves it
    /// without changing the etag).
    pub async fn update_group(&self, g: &Group, expected_etag: &str, schedule_changed: bool) -> Result<()> {
        let mut row = self.group_row(g)?;
        row.created_at = sea_orm::ActiveValue::NotSet;
        if !schedule_changed {
            row.next_sync_at_ms = sea_orm::ActiveValue::NotSet;
        }
        let res = groups::Entity::update_many()
            .set(row)
            .filter(groups::Column::Id.eq(g.id.to_string()))
            .filter(groups::Column::Etag.eq(expected_etag))
            .exec(&self.db)
            .await
            .map_err(|e| unique(e, "group", &g.display_name))?;
        if res.rows_affected == 0 {
            self.get_group(g.id).await?;
            return Err(Error::Aborted(format!("groups/{} was changed concurrently; read it again", g.id)));
        }
        Ok(())
    }

    /// Stores the outcome of a connection test (not an edit: etag unchanged).
    pub async fn set_connection(&self, id: GroupId, status: &ConnectionStatus) -> Result<()> {
        groups::Entity::update_many()
            .col_expr(groups::Column::ConnectionState, Expr::value(convert::connection_state_name(status.state)))
            .col_expr(groups::Column::ConnectionMessage, Expr::value(status.message.clone()))
            .col_expr(groups::Column::ConnectionCheckedAt, Expr::value(status.check_time))
            .filter(groups::Column::Id.eq(id.to_string()))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Deletes a group that holds no keys; otherwise FAILED_PRECONDITION. Call inside
    /// [`Store::begin_audited`], which also serialises it against key inserts on SQLite.
    /// Deletes a group with its sync runs and memberships; with `force` its keys too (with the
    /// links to and from them), else FAILED_PRECONDITION while it holds keys. Answers the keys
    /// deleted. Call inside [`Store::begin_audited`].
    pub async fn delete_group(&self, id: GroupId, force: bool) -> Result<u64> {
        let txn = &self.db;
        let n = keys::Entity::find().filter(keys::Column::GroupId.eq(id.to_string())).count(txn).await?;
        if force && n > 0 {
            let ids: Vec<String> = keys::Entity::find()
                .select_only()
                .column(keys::Column::Id)
                .filter(keys::Column::GroupId.eq(id.to_string()))
                .into_tuple()
                .all(txn)
                .await?;
            for chunk in ids.chunks(500) {
                key_links::Entity::delete_many()
                    .filter(
                        key_links::Column::KeyId
                            .is_in(chunk.iter().cloned())
                            .or(key_links::Column::OtherKeyId.is_in(chunk.iter().cloned())),
                    )
                    .exec(txn)
                    .await?;
            }
            key_aliases::Entity::delete_many()
                .filter(key_aliases::Column::GroupId.eq(id.to_string()))
                .exec(txn)
                .await?;
            key_tags::Entity::delete_many().filter(key_tags::Column::GroupId.eq(id.to_string())).exec(txn).await?;
            keys::Entity::delete_many().filter(keys::Column::GroupId.eq(id.to_string())).exec(txn).await?;
            self.wrote_keys();
        } else if n > 0 {
            return Err(Error::precondition(
                Precondition::GroupNotEmpty,
                format!("groups/{id}"),
                format!(
                    "groups/{id} holds {n} {}; delete them first, or for an AWS_KMS group send force: true to drop its virtual keys from Keyward (AWS is not touched)",
                    if n == 1 { "key" } else { "keys" }
                ),
            ));
        }
        sync_runs::Entity::delete_many().filter(sync_runs::Column::GroupId.eq(id.to_string())).exec(txn).await?;
        entities::sync_drifts::Entity::delete_many()
            .filter(entities::sync_drifts::Column::GroupId.eq(id.to_string()))
            .exec(txn)
            .await?;
        self.delete_memberships_of_group(id).await?;
        let res = groups::Entity::delete_by_id(id.to_string()).exec(txn).await?;
        if res.rows_affected == 0 {
            return Err(Error::not_found(format!("groups/{id}")));
        }
        Ok(n)
    }

    /// Other AWS_KMS groups reaching `access_key_id` at `endpoint_url` in `region`: (id, display name).
    pub async fn groups_reaching(
        &self,
        region: &str,
        endpoint_url: Option<&str>,
        access_key_id: &str,
        except: GroupId,
    ) -> Result<Vec<(String, String)>> {
        let mut q = groups::Entity::find()
            .select_only()
            .column(groups::Column::Id)
            .column(groups::Column::DisplayName)
            .filter(groups::Column::Region.eq(region))
            .filter(groups::Column::AccessKeyId.eq(access_key_id))
            .filter(groups::Column::Id.ne(except.to_string()));
        q = match endpoint_url {
            Some(u) => q.filter(groups::Column::EndpointUrl.eq(u)),
            None => q.filter(groups::Column::EndpointUrl.is_null()),
        };
        Ok(q.into_tuple().all(&self.db).await?)
    }

    /// The id of a journal entry of the group not in a terminal state, if any.
    pub async fn open_operation_of_group(&self, id: GroupId) -> Result<Option<String>> {
        let row = operations::Entity::find()
            .filter(operations::Column::GroupId.eq(id.to_string()))
            .filter(operations::Column::State.is_not_in(OpState::TERMINAL.map(OpState::name)))
            .one(&self.db)
            .await?;
        Ok(row.map(|o| o.id))
    }

    /// Groups whose scheduled sync is due at `now`.
    pub async fn groups_due_for_sync(&self, now: OffsetDateTime) -> Result<Vec<(GroupId, i64)>> {
        let rows = groups::Entity::find()
            .filter(groups::Column::NextSyncAtMs.lte(ms(now)))
            .filter(groups::Column::SyncIntervalSecs.gt(0))
            .order_by_asc(groups::Column::NextSyncAtMs)
            .all(&self.db)
            .await?;
        rows.into_iter()
            .map(|m| {
                let id = uuid::Uuid::parse_str(&m.id).map_err(|_| convert::corrupt("groups.id"))?;
                Ok((GroupId(id), m.next_sync_at_ms.unwrap_or_default()))
            })
            .collect()
    }

    /// Claims a due scheduled sync: moves `next_sync_at` from `seen` to `now + interval` in one
    /// conditional UPDATE. Exactly one of several workers gets `true`.
    pub async fn claim_scheduled_sync(&self, id: GroupId, seen_next_ms: i64, now: OffsetDateTime) -> Result<bool> {
        let res = groups::Entity::update_many()
            .col_expr(
                groups::Column::NextSyncAtMs,
                Expr::val(ms(now)).add(Expr::col(groups::Column::SyncIntervalSecs).mul(1000)),
            )
            .filter(groups::Column::Id.eq(id.to_string()))
            .filter(groups::Column::NextSyncAtMs.eq(seen_next_ms))
            .exec(&self.db)
            .await?;
        Ok(res.rows_affected == 1)
    }

    // ----- keys -----

    fn key_row(k: &Key) -> keys::ActiveModel {
        keys::ActiveModel {
            id: Set(k.id.to_string()),
            group_id: Set(k.group_id.to_string()),
            display_name: Set(k.display_name.clone()),
            description: Set(k.description.clone()),
            key_spec: Set(k.key_spec.api_name().to_owned()),
            key_ops: Set(convert::ops_json(&k.key_ops)),
            state: Set(k.state.name().to_owned()),
            source: Set(k.source.name().to_owned()),
            tags: Set(convert::tags_json(&k.tags)),
            is_virtual: Set(k.is_virtual()),
            aws_key_arn: Set(k.aws.as_ref().map(|a| a.key_arn.clone())),
            aws: Set(k.aws.as_ref().map(|a| convert::aws_json(a, k.state.deletion_time()))),
            created_by: Set(k.created_by.clone()),
            created_at: Set(k.create_time),
            updated_at: Set(k.update_time),
            etag: Set(k.etag.clone()),
            next_check_at_ms: sea_orm::ActiveValue::NotSet,
            material_sealed: sea_orm::ActiveValue::NotSet,
            rotation_policy: Set(k.rotation_policy.as_ref().map(convert::rotation_policy_json)),
            next_rotation_at_ms: Set(k.rotation_policy.as_ref().map(|p| ms(p.next_rotation_time))),
            aws_key_id: Set(k.aws.as_ref().map(|a| a.aws_key_id.clone())),
            origin: Set(k.aws.as_ref().and_then(|a| a.origin.clone())),
            created_at_us: Set(micros(k.create_time)),
            updated_at_us: Set(micros(k.update_time)),
            has_links: sea_orm::ActiveValue::NotSet,
        }
    }

    /// Writes a key's rows in `key_aliases` and `key_tags` (what the alias and tag filters
    /// read); `replace`: the key's old rows go first.
    async fn write_search_rows(c: &impl ConnectionTrait, k: &Key, replace: bool) -> Result<()> {
        let (id, group) = (k.id.to_string(), k.group_id.to_string());
        if replace {
            key_aliases::Entity::delete_many().filter(key_aliases::Column::KeyId.eq(&id)).exec(c).await?;
            key_tags::Entity::delete_many().filter(key_tags::Column::KeyId.eq(&id)).exec(c).await?;
        }
        let (aliases, tags) = search_rows(&id, &group, k.aws.as_ref().map(|a| a.aliases.as_slice()), &k.tags);
        if !aliases.is_empty() {
            key_aliases::Entity::insert_many(aliases).exec_without_returning(c).await?;
        }
        if !tags.is_empty() {
            key_tags::Entity::insert_many(tags).exec_without_returning(c).await?;
        }
        Ok(())
    }

    /// Inserts a key. Display name taken in the group → ALREADY_EXISTS.
    pub async fn insert_key(&self, k: &Key) -> Result<()> {
        let txn = self.db.begin().await?;
        keys::Entity::insert(Self::key_row(k)).exec(&txn).await.map_err(|e| unique(e, "key", &k.display_name))?;
        Self::write_search_rows(&txn, k, false).await?;
        txn.commit().await?;
        self.wrote_keys();
        Ok(())
    }

    /// Inserts a virtual key found by a sync unless the group already has its ARN (then
    /// `Ok(false)`). A taken display name is ALREADY_EXISTS (the caller picks another).
    pub async fn insert_synced_key(&self, k: &Key) -> Result<bool> {
        let txn = self.db.begin().await?;
        let res = keys::Entity::insert(Self::key_row(k))
            .on_conflict(OnConflict::columns([keys::Column::GroupId, keys::Column::AwsKeyArn]).do_nothing().to_owned())
            .exec_without_returning(&txn)
            .await
            .map_err(|e| unique(e, "key", &k.display_name))?;
        if res == 1 {
            Self::write_search_rows(&txn, k, false).await?;
        }
        txn.commit().await?;
        self.wrote_keys();
        Ok(res == 1)
    }

    /// Replaces a key's row if its stored etag is still `expected_etag` (the one the caller
    /// read); otherwise ABORTED: someone changed the key meanwhile.
    pub async fn replace_key(&self, k: &Key, expected_etag: &str) -> Result<()> {
        let mut row = Self::key_row(k);
        row.created_at = sea_orm::ActiveValue::NotSet;
        row.created_at_us = sea_orm::ActiveValue::NotSet;
        let txn = self.db.begin().await?;
        let res = keys::Entity::update_many()
            .set(row)
            .filter(keys::Column::Id.eq(k.id.to_string()))
            .filter(keys::Column::Etag.eq(expected_etag))
            .exec(&txn)
            .await
            .map_err(|e| unique(e, "key", &k.display_name))?;
        if res.rows_affected == 1 {
            Self::write_search_rows(&txn, k, true).await?;
            txn.commit().await?;
            self.wrote_keys();
        }
        if res.rows_affected == 0 {
            return Err(Error::Aborted(format!(
                "groups/{}/keys/{} was changed concurrently; read it again",
                k.group_id, k.id
            )));
        }
        Ok(())
    }

    pub async fn get_key(&self, group: GroupId, id: KeyId) -> Result<Key> {
        let m = keys::Entity::find_by_id(id.to_string())
            .filter(keys::Column::GroupId.eq(group.to_string()))
            .one(&self.db)
            .await?;
        let m = m.ok_or_else(|| Error::not_found(format!("groups/{group}/keys/{id}")))?;
        let linked = m.has_links;
        let mut k = [convert::key(m)?];
        if linked {
            self.attach_links(&mut k).await?;
        }
        let [k] = k;
        Ok(k)
    }

    /// Keys of `group` (every group: `None`, or every group of `only` when given) matching `q`,
    /// in `order` (ties by id) after `after`, at most `limit`. Every term is answered by an
    /// index: aliases and tags through their tables, times by their microsecond columns.
    pub async fn list_keys(
        &self,
        group: Option<GroupId>,
        only: Option<&[GroupId]>,
        q: &KeyFilter,
        order: KeyOrder,
        after: Option<&KeyCursor>,
        limit: u64,
    ) -> Result<Vec<Key>> {
        let mut s = keys::Entity::find().limit(limit);
        if let Some(only) = only {
            s = s.filter(keys::Column::GroupId.is_in(only.iter().map(GroupId::to_string)));
        }
        if let Some(g) = group {
            s = s.filter(keys::Column::GroupId.eq(g.to_string()));
        }
        if let Some(st) = q.state {
            s = s.filter(keys::Column::State.eq(st.name()));
        }
        if let Some(v) = q.is_virtual {
            s = s.filter(keys::Column::IsVirtual.eq(v));
        }
        if let Some(spec) = q.key_spec {
            s = s.filter(keys::Column::KeySpec.eq(spec.api_name()));
        }
        if let Some(src) = q.source {
            s = s.filter(keys::Column::Source.eq(src.name()));
        }
        if let Some(o) = &q.origin {
            s = s.filter(keys::Column::Origin.eq(o));
        }
        if let Some(id) = &q.aws_key_id {
            s = s.filter(keys::Column::AwsKeyId.eq(id));
        }
        if let Some(arn) = &q.key_arn {
            s = s.filter(keys::Column::AwsKeyArn.eq(arn));
        }
        match &q.display_name {
            None => {}
            Some(TextMatch::Exact(v)) => s = s.filter(keys::Column::DisplayName.eq(v)),
            Some(TextMatch::Prefix(p)) => s = s.filter(self.prefix_of(keys::Column::DisplayName, p)),
        }
        let in_group = |c: Expr| match group {
            Some(g) => c.eq(g.to_string()),
            None => Expr::value(true),
        };
        if let Some(a) = &q.alias {
            let sub = Query::select()
                .column(key_aliases::Column::KeyId)
                .from(key_aliases::Entity)
                .and_where(Expr::col(key_aliases::Column::Alias).eq(a.as_str()))
                .and_where(in_group(Expr::col(key_aliases::Column::GroupId)))
                .to_owned();
            s = s.filter(keys::Column::Id.in_subquery(sub));
        }
        for (k, v) in &q.tags {
            let sub = Query::select()
                .column(key_tags::Column::KeyId)
                .from(key_tags::Entity)
                .and_where(Expr::col(key_tags::Column::TagKey).eq(k.as_str()))
                .and_where(Expr::col(key_tags::Column::TagValue).eq(v.as_str()))
                .and_where(in_group(Expr::col(key_tags::Column::GroupId)))
                .to_owned();
            s = s.filter(keys::Column::Id.in_subquery(sub));
        }
        for (cmp, t) in &q.update_time {
            let (c, us) = (keys::Column::UpdatedAtUs, micros(*t));
            s = s.filter(match cmp {
                Cmp::Eq => c.eq(us),
                Cmp::Lt => c.lt(us),
                Cmp::Le => c.lte(us),
                Cmp::Gt => c.gt(us),
                Cmp::Ge => c.gte(us),
            });
        }
        let by = match order.by {
            KeyOrderField::Id => None,
            KeyOrderField::DisplayName => Some(keys::Column::DisplayName),
            KeyOrderField::CreateTime => Some(keys::Column::CreatedAtUs),
            KeyOrderField::UpdateTime => Some(keys::Column::UpdatedAtUs),
        };
        let dir = if order.descending { sea_orm::Order::Desc } else { sea_orm::Order::Asc };
        if let Some(c) = by {
            s = s.order_by(c, dir.clone());
        }
        s = s.order_by(keys::Column::Id, dir);
        if let Some(after) = after {
            let beyond = |c: keys::Column, v: sea_orm::Value| if order.descending { c.lt(v) } else { c.gt(v) };
            let past_id = beyond(keys::Column::Id, after.id.clone().into());
            s = s.filter(match (by, &after.value) {
                (None, _) => past_id,
                (Some(c), v) => {
                    let v: sea_orm::Value = match v {
                        SortValue::Text(t) => t.clone().into(),
                        SortValue::Micros(us) => (*us).into(),
                        SortValue::None => return Err(Error::invalid("page_token", "not a token of this order_by")),
                    };
                    beyond(c, v.clone()).or(c.eq(v).and(past_id))
                }
            });
        }
        let rows = s.all(&self.db).await?;
        let linked = rows.iter().any(|m| m.has_links);
        let mut keys = rows.into_iter().map(convert::key).collect::<Result<Vec<_>>>()?;
        if linked {
            self.attach_links(&mut keys).await?;
        }
        Ok(keys)
    }

    /// `column` starts with `prefix`, case-sensitively and through the column's index: GLOB on
    /// SQLite (LIKE there ignores case), LIKE on PostgreSQL (a text_pattern_ops index).
    fn prefix_of(&self, column: keys::Column, prefix: &str) -> sea_orm::sea_query::SimpleExpr {
        use sea_orm::sea_query::extension::sqlite::SqliteExpr;
        if self.db.get_database_backend() == sea_orm::DatabaseBackend::Sqlite {
            let escaped: String = prefix
                .chars()
                .map(|c| match c {
                    '*' | '?' | '[' => format!("[{c}]"),
                    c => c.to_string(),
                })
                .collect();
            Expr::col((keys::Entity, column)).glob(format!("{escaped}*"))
        } else {
            let escaped: String = prefix
                .chars()
                .map(|c| match c {
                    '%' | '_' | '\\' => format!("\\{c}"),
                    c => c.to_string(),
                })
                .collect();
            Expr::col((keys::Entity, column)).like(LikeExpr::new(format!("{escaped}%")).escape('\\'))
        }
    }

    /// Inserts a Keyward key with its material, sealed and bound to `keys/{id}/material`.
    pub async fn insert_key_with_material(&self, k: &Key, material: &[u8]) -> Result<()> {
        let mut row = Self::key_row(k);
        let sealed = self.master_key.seal(material, &material_binding(k.id)).map_err(Error::internal)?;
        row.material_sealed = Set(Some(sealed));
        let txn = self.db.begin().await?;
        keys::Entity::insert(row).exec(&txn).await.map_err(|e| unique(e, "key", &k.display_name))?;
        Self::write_search_rows(&txn, k, false).await?;
        txn.commit().await?;
        self.wrote_keys();
        Ok(())
    }

    /// The material of a Keyward key (opened from its sealed column). NOT_FOUND for keys
    /// without material (virtual keys).
    pub async fn key_material(&self, id: KeyId) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        let (group, sealed) = self.sealed_material(id).await?;
        self.open_material(group, id, &sealed)
    }

    /// The group and the sealed material of a Keyward key, as stored. NOT_FOUND for keys
    /// without material.
    pub async fn sealed_material(&self, id: KeyId) -> Result<(GroupId, Vec<u8>)> {
        let m: Option<(String, Option<Vec<u8>>)> = keys::Entity::find_by_id(id.to_string())
            .select_only()
            .column(keys::Column::GroupId)
            .column(keys::Column::MaterialSealed)
            .into_tuple()
            .one(&self.db)
            .await?;
        let (group, sealed) =
            m.and_then(|(g, s)| Some((g, s?))).ok_or_else(|| Error::not_found(format!("material of key {id}")))?;
        Ok((GroupId::parse(&group).ok_or_else(|| convert::corrupt("keys.group_id"))?, sealed))
    }

    /// Opens the sealed material of key `id` of `group` (what [`Store::sealed_material`]
    /// answered).
    pub fn open_material(&self, group: GroupId, id: KeyId, sealed: &[u8]) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        self.master_key.open(sealed, &material_binding(id)).map_err(|e| {
            tracing::warn!(key_id = %id, error = %e, "key material does not open under the master keyring");
            let name = format!("groups/{group}/keys/{id}");
            Error::precondition(
                Precondition::SealedValue,
                name.clone(),
                format!(
                    "the stored material of {name} does not open under the master keyring ({e}): start Keyward with the master key that sealed it too, or restore the key from a backup"
                ),
            )
        })
    }

    /// Records a link from `from` to `to` (one direction).
    pub async fn insert_link(&self, from: KeyId, link: &KeyLink) -> Result<()> {
        key_links::Entity::insert(key_links::ActiveModel {
            id: Set(uuid::Uuid::now_v7().to_string()),
            key_id: Set(from.to_string()),
            kind: Set(link.kind.name().to_owned()),
            other_group_id: Set(link.group_id.to_string()),
            other_key_id: Set(link.key_id.to_string()),
            actor: Set(link.actor.clone()),
            created_at: Set(link.create_time),
        })
        .exec(&self.db)
        .await?;
        keys::Entity::update_many()
            .col_expr(keys::Column::HasLinks, Expr::value(true))
            .filter(keys::Column::Id.eq(from.to_string()))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    async fn attach_links(&self, keys: &mut [Key]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = keys.iter().map(|k| k.id.to_string()).collect();
        let rows = key_links::Entity::find()
            .filter(key_links::Column::KeyId.is_in(ids))
            .order_by_asc(key_links::Column::Id)
            .all(&self.db)
            .await?;
        for r in rows {
            let link = KeyLink {
                kind: KeyLinkKind::from_name(&r.kind).ok_or_else(|| convert::corrupt("key_links.kind"))?,
                group_id: GroupId::parse(&r.other_group_id)
                    .ok_or_else(|| convert::corrupt("key_links.other_group_id"))?,
                key_id: KeyId::parse(&r.other_key_id).ok_or_else(|| convert::corrupt("key_links.other_key_id"))?,
                actor: r.actor,
                create_time: r.created_at,
            };
            if let Some(k) = keys.iter_mut().find(|k| k.id.to_string() == r.key_id) {
                k.links.push(link);
            }
        }
        Ok(())
    }

    /// Journal: records the intent of a multi-step AWS operation.
    pub async fn insert_operation(&self, op: &Operation) -> Result<()> {
        operations::Entity::insert(operations::ActiveModel {
            id: Set(op.id.to_string()),
            kind: Set(op.kind.name().to_owned()),
            group_id: Set(op.group_id.to_string()),
            key_id: Set(op.key_id.to_string()),
            aws_key_id: Set(op.aws_key_id.clone()),
            subjects: Set(convert::subjects_json(&op.subjects)),
            plan: Set(op.plan.as_ref().map(convert::plan_json)),
            state: Set(op.state.name().to_owned()),
            detail: Set(op.detail.clone()),
            created_at: Set(op.created_at),
            updated_at: Set(op.updated_at),
        })
        .exec(&self.db)
        .await?;
        Ok(())
    }

    /// Journal: records a step (state, the AWS key id once known, subjects, a detail).
    pub async fn update_operation(&self, op: &Operation) -> Result<()> {
        operations::Entity::update_many()
            .col_expr(operations::Column::State, Expr::value(op.state.name()))
            .col_expr(operations::Column::AwsKeyId, Expr::value(op.aws_key_id.clone()))
            .col_expr(operations::Column::Subjects, Expr::value(convert::subjects_json(&op.subjects)))
            .col_expr(operations::Column::Plan, Expr::value(op.plan.as_ref().map(convert::plan_json)))
            .col_expr(operations::Column::Detail, Expr::value(op.detail.clone()))
            .col_expr(operations::Column::UpdatedAt, Expr::value(op.updated_at))
            .filter(operations::Column::Id.eq(op.id.to_string()))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Journal entries not in a terminal state, last touched before `before`.
    pub async fn stale_operations(&self, before: OffsetDateTime) -> Result<Vec<Operation>> {
        let rows = operations::Entity::find()
            .filter(operations::Column::State.is_not_in(OpState::TERMINAL.map(OpState::name)))
            .filter(operations::Column::UpdatedAt.lt(before))
            .order_by_asc(operations::Column::Id)
            .all(&self.db)
            .await?;
        rows.into_iter().map(convert::operation).collect()
    }

    /// Whether an open (not terminal) rotation journal entry names the key, as the rotated key
    /// or among its subjects.
    pub async fn open_rotation_touching(&self, id: KeyId) -> Result<bool> {
        let id = id.to_string();
        let n = operations::Entity::find()
            .filter(operations::Column::Kind.eq(OpKind::Rotate.name()))
            .filter(operations::Column::State.is_not_in(OpState::TERMINAL.map(OpState::name)))
            .filter(operations::Column::KeyId.eq(id.clone()).or(operations::Column::Subjects.contains(id)))
            .count(&self.db)
            .await?;
        Ok(n > 0)
    }

    /// Claims a stale journal entry for recovery (one worker wins).
    pub async fn claim_operation(&self, op: &Operation, now: OffsetDateTime) -> Result<bool> {
        let res = operations::Entity::update_many()
            .col_expr(operations::Column::UpdatedAt, Expr::value(now))
            .filter(operations::Column::Id.eq(op.id.to_string()))
            .filter(operations::Column::UpdatedAt.eq(op.updated_at))
            .exec(&self.db)
            .await?;
        Ok(res.rows_affected == 1)
    }

    /// Deletes a key's row; its links, and the links other keys hold to it, go with it. Call
    /// inside [`Store::begin_audited`].
    pub async fn delete_key(&self, group: GroupId, id: KeyId) -> Result<()> {
        let res = keys::Entity::delete_many()
            .filter(keys::Column::Id.eq(id.to_string()))
            .filter(keys::Column::GroupId.eq(group.to_string()))
            .exec(&self.db)
            .await?;
        if res.rows_affected == 0 {
            return Err(Error::not_found(format!("groups/{group}/keys/{id}")));
        }
        key_links::Entity::delete_many()
            .filter(key_links::Column::KeyId.eq(id.to_string()).or(key_links::Column::OtherKeyId.eq(id.to_string())))
            .exec(&self.db)
            .await?;
        key_aliases::Entity::delete_many().filter(key_aliases::Column::KeyId.eq(id.to_string())).exec(&self.db).await?;
        key_tags::Entity::delete_many().filter(key_tags::Column::KeyId.eq(id.to_string())).exec(&self.db).await?;
        self.wrote_keys();
        Ok(())
    }

    /// Sets when the deletion-window check should next look at a key (`None`: never).
    pub async fn set_next_check(&self, id: KeyId, at: Option<OffsetDateTime>) -> Result<()> {
        keys::Entity::update_many()
            .col_expr(keys::Column::NextCheckAtMs, Expr::value(at.map(ms)))
            .filter(keys::Column::Id.eq(id.to_string()))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Virtual keys PENDING_DELETION whose next check is due at `now`, with the seen check time.
    pub async fn keys_due_for_check(&self, now: OffsetDateTime, limit: u64) -> Result<Vec<(Key, i64)>> {
        let rows = keys::Entity::find()
            .filter(keys::Column::State.eq(KeyState::PendingDeletion { deletion_time: None }.name()))
            .filter(keys::Column::IsVirtual.eq(true))
            .filter(keys::Column::NextCheckAtMs.lte(ms(now)))
            .order_by_asc(keys::Column::NextCheckAtMs)
            .limit(limit)
            .all(&self.db)
            .await?;
        rows.into_iter()
            .map(|m| {
                let seen = m.next_check_at_ms.unwrap_or_default();
                convert::key(m).map(|k| (k, seen))
            })
            .collect()
    }

    /// Claims a due check: moves `next_check_at_ms` from `seen` to `next` in one conditional
    /// UPDATE; exactly one of several workers gets `true`.
    pub async fn claim_check(&self, id: KeyId, seen_ms: i64, next: OffsetDateTime) -> Result<bool> {
        let res = keys::Entity::update_many()
            .col_expr(keys::Column::NextCheckAtMs, Expr::value(ms(next)))
            .filter(keys::Column::Id.eq(id.to_string()))
            .filter(keys::Column::NextCheckAtMs.eq(seen_ms))
            .exec(&self.db)
            .await?;
        Ok(res.rows_affected == 1)
    }

    /// Keys whose scheduled rotation is due at `now`, soonest first, at most `limit`.
    pub async fn keys_due_for_rotation(&self, now: OffsetDateTime, limit: u64) -> Result<Vec<Key>> {
        keys::Entity::find()
            .filter(keys::Column::NextRotationAtMs.lte(ms(now)))
            .order_by_asc(keys::Column::NextRotationAtMs)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(convert::key)
            .collect()
    }

    /// Every virtual key of a group (sync compares them with AWS).
    pub async fn virtual_keys_of(&self, group: GroupId) -> Result<Vec<Key>> {
        keys::Entity::find()
            .filter(keys::Column::GroupId.eq(group.to_string()))
            .filter(keys::Column::IsVirtual.eq(true))
            .all(&self.db)
            .await?
            .into_iter()
            .map(convert::key)
            .collect()
    }

    /// Whether the group holds any key.
    pub async fn group_has_keys(&self, group: GroupId) -> Result<bool> {
        let n =
            keys::Entity::find().filter(keys::Column::GroupId.eq(group.to_string())).limit(1).count(&self.db).await?;
        Ok(n > 0)
    }

    /// Whether a key of the group has this display name.
    pub async fn key_name_taken(&self, group: GroupId, display_name: &str) -> Result<bool> {
        let n = keys::Entity::find()
            .filter(keys::Column::GroupId.eq(group.to_string()))
            .filter(keys::Column::DisplayName.eq(display_name))
            .count(&self.db)
            .await?;
        Ok(n > 0)
    }

    // ----- sync runs -----

    fn run_row(r: &SyncRun) -> sync_runs::ActiveModel {
        sync_runs::ActiveModel {
            id: Set(r.id.to_string()),
            group_id: Set(r.group_id.to_string()),
            state: Set(r.state.name().to_owned()),
            trigger: Set(convert::trigger_name(r.trigger).to_owned()),
            actor: Set(r.actor.clone()),
            listed: Set(r.listed),
            added: Set(r.added),
            updated: Set(r.updated),
            unchanged: Set(r.unchanged),
            failed: Set(r.failed),
            warnings: Set(convert::warnings_json(&r.warnings)),
            error: Set(r.error.clone()),
            started_at: Set(r.start_time),
            ended_at: Set(r.end_time),
            drift: Set(drift::summary_json(&r.drift)),
        }
    }

    pub async fn insert_sync_run(&self, r: &SyncRun) -> Result<()> {
        sync_runs::Entity::insert(Self::run_row(r)).exec(&self.db).await?;
        Ok(())
    }

    /// Closes the group's runs still RUNNING as FAILED with `why` (their process stopped);
    /// how many.
    pub async fn fail_running_sync_runs(&self, group: GroupId, now: OffsetDateTime, why: &str) -> Result<u64> {
        let res = sync_runs::Entity::update_many()
            .col_expr(sync_runs::Column::State, Expr::value(SyncRunState::Failed.name()))
            .col_expr(sync_runs::Column::Error, Expr::value(why.to_owned()))
            .col_expr(sync_runs::Column::EndedAt, Expr::value(now))
            .filter(sync_runs::Column::GroupId.eq(group.to_string()))
            .filter(sync_runs::Column::State.eq(SyncRunState::Running.name()))
            .exec(&self.db)
            .await?;
        Ok(res.rows_affected)
    }

    /// Stores a run's counts and state; a run that SUCCEEDED also becomes its group's
    /// `last_sync_time`.
    pub async fn update_sync_run(&self, r: &SyncRun) -> Result<()> {
        sync_runs::Entity::update(Self::run_row(r)).exec(&self.db).await?;
        if let (SyncRunState::Succeeded, Some(end)) = (r.state, r.end_time) {
            groups::Entity::update_many()
                .col_expr(groups::Column::LastSyncAtMs, Expr::value(ms(end)))
                .filter(groups::Column::Id.eq(r.group_id.to_string()))
                .exec(&self.db)
                .await?;
        }
        Ok(())
    }

    pub async fn get_sync_run(&self, group: GroupId, id: SyncRunId) -> Result<SyncRun> {
        let m = sync_runs::Entity::find_by_id(id.to_string())
            .filter(sync_runs::Column::GroupId.eq(group.to_string()))
            .one(&self.db)
            .await?;
        convert::sync_run(m.ok_or_else(|| Error::not_found(format!("groups/{group}/syncRuns/{id}")))?)
    }

    /// Runs of a group, newest first, before `before` (an id), at most `limit`.
    pub async fn list_sync_runs(&self, group: GroupId, before: Option<String>, limit: u64) -> Result<Vec<SyncRun>> {
        let mut q = sync_runs::Entity::find()
            .filter(sync_runs::Column::GroupId.eq(group.to_string()))
            .order_by_desc(sync_runs::Column::Id)
            .limit(limit);
        if let Some(b) = before {
            q = q.filter(sync_runs::Column::Id.lt(b));
        }
        q.all(&self.db).await?.into_iter().map(convert::sync_run).collect()
    }

    // ----- leases -----

    /// Takes lease `name` for `holder` until `now + ttl`, if it is free, expired, or already
    /// `holder`'s. One INSERT … ON CONFLICT DO UPDATE … WHERE: atomic on SQLite and PostgreSQL.
    pub async fn try_lease(&self, name: &str, holder: &str, ttl: Duration, now: OffsetDateTime) -> Result<bool> {
        let row = leases::ActiveModel {
            name: Set(name.to_owned()),
            holder: Set(holder.to_owned()),
            expires_at_ms: Set(ms(now) + ttl.as_millis() as i64),
        };
        let on_conflict = OnConflict::column(leases::Column::Name)
            .update_columns([leases::Column::Holder, leases::Column::ExpiresAtMs])
            .action_and_where(
                Expr::col((leases::Entity, leases::Column::ExpiresAtMs)).lt(ms(now)).or(Expr::col((
                    leases::Entity,
                    leases::Column::Holder,
                ))
                .eq(holder)),
            )
            .to_owned();
        let n = leases::Entity::insert(row).on_conflict(on_conflict).exec_without_returning(&self.db).await?;
        Ok(n == 1)
    }

    /// Whether someone holds lease `name` at `now` (not expired).
    pub async fn lease_is_held(&self, name: &str, now: OffsetDateTime) -> Result<bool> {
        let n = leases::Entity::find()
            .filter(leases::Column::Name.eq(name))
            .filter(leases::Column::ExpiresAtMs.gte(ms(now)))
            .count(&self.db)
            .await?;
        Ok(n > 0)
    }

    /// Gives lease `name` back if `holder` has it.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        leases::Entity::delete_many()
            .filter(leases::Column::Name.eq(name))
            .filter(leases::Column::Holder.eq(holder))
            .exec(&self.db)
            .await?;
        Ok(())
    }
}

/// Makes the SQLite file of `url` (and its WAL and shared-memory files, which SQLite creates
/// with the database file's mode) readable by its owner only: it holds sealed secrets and the
/// key inventory. Best effort: a failure is logged.
fn restrict_sqlite_files(url: &str) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let Some(path) = url.strip_prefix("sqlite://").and_then(|p| p.split('?').next()) else { return };
        for file in [path.to_owned(), format!("{path}-wal"), format!("{path}-shm")] {
            if std::path::Path::new(&file).exists()
                && let Err(e) = std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
            {
                tracing::warn!(file = %file, error = %e, "could not make the database file private");
            }
        }
    }
    #[cfg(not(unix))]
    let _ = url;
}

/// A key's rows in `key_aliases` and `key_tags`.
fn search_rows(
    key_id: &str,
    group_id: &str,
    aliases: Option<&[String]>,
    tags: &std::collections::BTreeMap<String, String>,
) -> (Vec<key_aliases::ActiveModel>, Vec<key_tags::ActiveModel>) {
    let aliases = aliases
        .unwrap_or_default()
        .iter()
        .map(|a| key_aliases::ActiveModel {
            key_id: Set(key_id.to_owned()),
            alias: Set(a.clone()),
            group_id: Set(group_id.to_owned()),
        })
        .collect();
    let tags = tags
        .iter()
        .map(|(k, v)| key_tags::ActiveModel {
            key_id: Set(key_id.to_owned()),
            tag_key: Set(k.clone()),
            tag_value: Set(v.clone()),
            group_id: Set(group_id.to_owned()),
        })
        .collect();
    (aliases, tags)
}

/// Fills the search columns and tables from the keys stored before they existed (migration
/// m0011), a thousand keys at a time.
async fn backfill_key_search(c: &impl ConnectionTrait) -> std::result::Result<(), sea_orm::DbErr> {
    let mut after = String::new();
    loop {
        // Only the columns m0011 knows: later migrations add others after it runs.
        let rows: Vec<(String, String, String, Option<String>, OffsetDateTime, OffsetDateTime)> = keys::Entity::find()
            .select_only()
            .columns([
                keys::Column::Id,
                keys::Column::GroupId,
                keys::Column::Tags,
                keys::Column::Aws,
                keys::Column::CreatedAt,
                keys::Column::UpdatedAt,
            ])
            .filter(keys::Column::Id.gt(after.clone()))
            .order_by_asc(keys::Column::Id)
            .limit(1000)
            .into_tuple()
            .all(c)
            .await?;
        let Some(last) = rows.last() else { return Ok(()) };
        after = last.0.clone();
        for (id, group_id, tags, aws, created_at, updated_at) in rows {
            let aws = aws.as_deref().and_then(|a| convert::aws_details(a).ok()).map(|(a, _)| a);
            let tags: std::collections::BTreeMap<String, String> = serde_json::from_str(&tags).unwrap_or_default();
            keys::Entity::update_many()
                .col_expr(keys::Column::AwsKeyId, Expr::value(aws.as_ref().map(|a| a.aws_key_id.clone())))
                .col_expr(keys::Column::Origin, Expr::value(aws.as_ref().and_then(|a| a.origin.clone())))
                .col_expr(keys::Column::CreatedAtUs, Expr::value(micros(created_at)))
                .col_expr(keys::Column::UpdatedAtUs, Expr::value(micros(updated_at)))
                .filter(keys::Column::Id.eq(id.clone()))
                .exec(c)
                .await?;
            let (aliases, tags) = search_rows(&id, &group_id, aws.as_ref().map(|a| a.aliases.as_slice()), &tags);
            if !aliases.is_empty() {
                key_aliases::Entity::insert_many(aliases).exec_without_returning(c).await?;
            }
            if !tags.is_empty() {
                key_tags::Entity::insert_many(tags).exec_without_returning(c).await?;
            }
        }
    }
}

/// Unix milliseconds.
pub fn ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// From unix milliseconds (out of range: the epoch, which no stored time is).
fn from_ms(v: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(v) * 1_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn unique(e: sea_orm::DbErr, what: &str, name: &str) -> Error {
    match e.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(_)) => Error::AlreadyExists {
            resource: name.to_owned(),
            message: format!("a {what} named {name:?} already exists"),
        },
        _ => Error::from(e),
    }
}
