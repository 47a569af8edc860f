//! Schema migrations (sea-orm-migration), run by the server at start; the worker waits for them.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub(crate) struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(M0001Initial),
            Box::new(M0002AuditAndChecks),
            Box::new(M0003Material),
            Box::new(M0004AuditTimes),
            Box::new(M0005JournalSubjectsAndPlans),
            Box::new(M0006RotationPolicies),
            Box::new(M0007MasterKeys),
            Box::new(M0008Access),
            Box::new(M0009AuditKeyUse),
            Box::new(M0010LastSync),
            Box::new(M0011KeySearch),
            Box::new(M0012SyncDrift),
            Box::new(M0013KeyPages),
            Box::new(M0014KeyHasLinks),
        ]
    }
}

/// A migration: its type and its name (what `seaql_migrations` records).
macro_rules! migration {
    ($ty:ident, $name:expr) => {
        struct $ty;

        impl MigrationName for $ty {
            fn name(&self) -> &str {
                $name
            }
        }
    };
}

/// The highest migration name; the worker waits until the database has it.
pub(crate) const LATEST: &str = "m0014_key_has_links";

migration!(M0001Initial, "m0001_initial");

#[async_trait::async_trait]
impl MigrationTrait for M0001Initial {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("groups")
                .col(string("id").primary_key())
                .col(string("display_name").unique_key())
                .col(text("description"))
                .col(string("kind"))
                .col(string_null("region"))
                .col(text_null("endpoint_url"))
                .col(string_null("access_key_id"))
                .col(blob_null("secret_access_key_sealed"))
                .col(text_null("ca_certificate_pem"))
                .col(text_null("client_certificate_pem"))
                .col(blob_null("client_private_key_sealed"))
                .col(boolean("validate_host"))
                .col(string("connection_state"))
                .col(text("connection_message"))
                .col(timestamp_with_time_zone_null("connection_checked_at"))
                .col(text("allowed_key_specs"))
                .col(text("allowed_key_ops"))
                .col(big_integer_null("sync_interval_secs"))
                .col(big_integer_null("next_sync_at_ms"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .col(string("etag"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("keys")
                .col(string("id").primary_key())
                .col(string("group_id"))
                .col(string("display_name"))
                .col(text("description"))
                .col(string("key_spec"))
                .col(text("key_ops"))
                .col(string("state"))
                .col(string("source"))
                .col(text("tags"))
                .col(boolean("is_virtual"))
                .col(string_null("aws_key_arn"))
                .col(text_null("aws"))
                .col(string("created_by"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .col(string("etag"))
                .foreign_key(ForeignKey::create().from("keys", "group_id").to("groups", "id"))
                .to_owned(),
        )
        .await?;
        // One virtual key per AWS key per group, whatever runs concurrently.
        m.create_index(
            Index::create().name("keys_group_arn").table("keys").col("group_id").col("aws_key_arn").unique().to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("keys_group_display_name")
                .table("keys")
                .col("group_id")
                .col("display_name")
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("sync_runs")
                .col(string("id").primary_key())
                .col(string("group_id"))
                .col(string("state"))
                .col(string("trigger"))
                .col(string("actor"))
                .col(big_integer("listed"))
                .col(big_integer("added"))
                .col(big_integer("updated"))
                .col(big_integer("unchanged"))
                .col(big_integer("failed"))
                .col(text("warnings"))
                .col(text_null("error"))
                .col(timestamp_with_time_zone("started_at"))
                .col(timestamp_with_time_zone_null("ended_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(Index::create().name("sync_runs_group").table("sync_runs").col("group_id").col("id").to_owned())
            .await?;
        m.create_table(
            Table::create()
                .table("leases")
                .col(string("name").primary_key())
                .col(string("holder"))
                .col(big_integer("expires_at_ms"))
                .to_owned(),
        )
        .await?;
        Ok(())
    }
}

migration!(M0002AuditAndChecks, "m0002_audit_and_checks");

#[async_trait::async_trait]
impl MigrationTrait for M0002AuditAndChecks {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("audit_events")
                .col(big_integer("seq").primary_key())
                .col(string("id"))
                .col(string("actor"))
                .col(string("action"))
                .col(text("resource"))
                .col(string("outcome"))
                .col(string("request_id"))
                .col(text("detail"))
                .col(timestamp_with_time_zone("created_at"))
                .col(string("prev_hash"))
                .col(string("hash"))
                .to_owned(),
        )
        .await?;
        m.create_index(Index::create().name("audit_events_resource").table("audit_events").col("resource").to_owned())
            .await?;
        m.create_table(
            Table::create()
                .table("audit_head")
                .col(integer("id").primary_key())
                .col(big_integer("seq"))
                .col(string("hash"))
                .to_owned(),
        )
        .await?;
        let zero = "0".repeat(64);
        m.get_connection()
            .execute_unprepared(&format!("INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '{zero}')"))
            .await?;
        m.alter_table(Table::alter().table("keys").add_column(big_integer_null("next_check_at_ms")).to_owned()).await?;
        Ok(())
    }
}

migration!(M0003Material, "m0003_material");

#[async_trait::async_trait]
impl MigrationTrait for M0003Material {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(Table::alter().table("keys").add_column(blob_null("material_sealed")).to_owned()).await?;
        m.create_table(
            Table::create()
                .table("key_links")
                .col(string("id").primary_key())
                .col(string("key_id"))
                .col(string("kind"))
                .col(string("other_group_id"))
                .col(string("other_key_id"))
                .col(string("actor"))
                .col(timestamp_with_time_zone("created_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(Index::create().name("key_links_key").table("key_links").col("key_id").to_owned()).await?;
        m.create_table(
            Table::create()
                .table("operations")
                .col(string("id").primary_key())
                .col(string("kind"))
                .col(string("group_id"))
                .col(string("key_id"))
                .col(string_null("aws_key_id"))
                .col(string("state"))
                .col(text("detail"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .to_owned(),
        )
        .await?;
        Ok(())
    }
}

migration!(M0004AuditTimes, "m0004_audit_times");

#[async_trait::async_trait]
impl MigrationTrait for M0004AuditTimes {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(Table::alter().table("audit_events").add_column(big_integer_null("created_at_ms")).to_owned())
            .await?;
        m.create_index(
            Index::create().name("audit_events_created").table("audit_events").col("created_at_ms").to_owned(),
        )
        .await?;
        Ok(())
    }
}

migration!(M0005JournalSubjectsAndPlans, "m0005_journal_subjects_and_plans");

#[async_trait::async_trait]
impl MigrationTrait for M0005JournalSubjectsAndPlans {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(Table::alter().table("operations").add_column(text("subjects").default("[]")).to_owned()).await?;
        m.alter_table(Table::alter().table("operations").add_column(text_null("plan")).to_owned()).await?;
        m.create_index(Index::create().name("operations_state").table("operations").col("state").to_owned()).await?;
        Ok(())
    }
}

migration!(M0006RotationPolicies, "m0006_rotation_policies");

#[async_trait::async_trait]
impl MigrationTrait for M0006RotationPolicies {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(Table::alter().table("keys").add_column(text_null("rotation_policy")).to_owned()).await?;
        m.alter_table(Table::alter().table("keys").add_column(big_integer_null("next_rotation_at_ms")).to_owned())
            .await?;
        m.create_index(Index::create().name("keys_next_rotation").table("keys").col("next_rotation_at_ms").to_owned())
            .await?;
        Ok(())
    }
}

migration!(M0007MasterKeys, "m0007_master_keys");

/// The ids of the master keys that have sealed values here (never the keys): a start whose
/// keyring lacks one that still seals values is refused.
#[async_trait::async_trait]
impl MigrationTrait for M0007MasterKeys {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("master_keys")
                .col(string("id").primary_key())
                .col(timestamp_with_time_zone("first_used_at"))
                .to_owned(),
        )
        .await
    }
}

migration!(M0008Access, "m0008_access");

/// Principals, their API keys (SHA-256 of the secret only), client-certificate identities
/// (each names one principal), group memberships, and the one-row mark that the bootstrap admin
/// was made.
#[async_trait::async_trait]
impl MigrationTrait for M0008Access {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("principals")
                .col(string("id").primary_key())
                .col(string("kind"))
                .col(string("display_name").unique_key())
                .col(text("description"))
                .col(text("account_roles"))
                .col(boolean("disabled"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .col(string("etag"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("api_keys")
                .col(string("id").primary_key())
                .col(string("principal_id"))
                .col(string("display_name"))
                .col(blob("secret_sha256"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone_null("expires_at"))
                .col(timestamp_with_time_zone_null("revoked_at"))
                .col(timestamp_with_time_zone_null("last_used_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(Index::create().name("api_keys_principal").table("api_keys").col("principal_id").to_owned())
            .await?;
        m.create_table(
            Table::create()
                .table("certificate_identities")
                .col(text("identity").primary_key())
                .col(string("principal_id"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("certificate_identities_principal")
                .table("certificate_identities")
                .col("principal_id")
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("memberships")
                .col(string("group_id"))
                .col(string("principal_id"))
                .col(text("roles"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .primary_key(Index::create().col("group_id").col("principal_id"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create().name("memberships_principal").table("memberships").col("principal_id").to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("bootstrap")
                .col(integer("id").primary_key())
                .col(string("principal_id"))
                .col(timestamp_with_time_zone("created_at"))
                .to_owned(),
        )
        .await
    }
}

migration!(M0009AuditKeyUse, "m0009_audit_key_use");

/// A group may ask for every CryptoService call with its keys to be audited.
#[async_trait::async_trait]
impl MigrationTrait for M0009AuditKeyUse {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(Table::alter().table("groups").add_column(boolean("audit_key_use").default(false)).to_owned())
            .await
    }
}

migration!(M0010LastSync, "m0010_last_sync");

/// A group shows when its last successful sync ended.
#[async_trait::async_trait]
impl MigrationTrait for M0010LastSync {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(Table::alter().table("groups").add_column(big_integer_null("last_sync_at_ms")).to_owned()).await
    }
}

migration!(M0011KeySearch, "m0011_key_search");

/// ListKeys filters and orders answered by indexes: the AWS key id, origin and times of a key
/// in columns of their own, its aliases and tags in tables of their own (filled from the
/// existing rows here, kept by every key write after).
#[async_trait::async_trait]
impl MigrationTrait for M0011KeySearch {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for col in [
            string_null("aws_key_id"),
            string_null("origin"),
            big_integer("created_at_us").default(0).to_owned(),
            big_integer("updated_at_us").default(0).to_owned(),
        ] {
            m.alter_table(Table::alter().table("keys").add_column(col).to_owned()).await?;
        }
        m.create_table(
            Table::create()
                .table("key_aliases")
                .col(string("key_id"))
                .col(string("alias"))
                .col(string("group_id"))
                .primary_key(Index::create().col("key_id").col("alias"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("key_tags")
                .col(string("key_id"))
                .col(string("tag_key"))
                .col(text("tag_value"))
                .col(string("group_id"))
                .primary_key(Index::create().col("key_id").col("tag_key"))
                .to_owned(),
        )
        .await?;
        let indexes: [(&str, &str, &[&str]); 8] = [
            ("key_aliases_alias", "key_aliases", &["alias", "group_id"]),
            ("key_tags_tag", "key_tags", &["tag_key", "tag_value", "group_id"]),
            ("keys_aws_key_id", "keys", &["aws_key_id"]),
            ("keys_arn", "keys", &["aws_key_arn"]),
            ("keys_display_name", "keys", &["display_name"]),
            ("keys_group_state", "keys", &["group_id", "state"]),
            ("keys_group_created", "keys", &["group_id", "created_at_us"]),
            ("keys_group_updated", "keys", &["group_id", "updated_at_us"]),
        ];
        for (name, table, cols) in indexes {
            let mut i = Index::create();
            i.name(name).table(table);
            for c in cols {
                i.col(*c);
            }
            m.create_index(i.to_owned()).await?;
        }
        if m.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
            // A display_name prefix is `LIKE 'p%'`; under a non-C collation only a pattern
            // index answers it.
            m.get_connection()
                .execute_unprepared(
                    "CREATE INDEX keys_group_display_name_pattern ON keys (group_id, display_name text_pattern_ops)",
                )
                .await?;
        }
        super::backfill_key_search(m.get_connection()).await
    }
}

migration!(M0012SyncDrift, "m0012_sync_drift");

/// Sync runs record what changed in AWS behind Keyward's back: a summary on the run, the
/// changes key by key in `sync_drifts`.
#[async_trait::async_trait]
impl MigrationTrait for M0012SyncDrift {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(Table::alter().table("sync_runs").add_column(text("drift").default("{}")).to_owned()).await?;
        m.create_table(
            Table::create()
                .table("sync_drifts")
                .col(string("run_id"))
                .col(big_integer("seq"))
                .col(string("group_id"))
                .col(string_null("key_id"))
                .col(text("key_name"))
                .col(text("aws_key_arn"))
                .col(text("changes"))
                .col(boolean("applied"))
                .primary_key(Index::create().col("run_id").col("seq"))
                .to_owned(),
        )
        .await?;
        m.create_index(Index::create().name("sync_drifts_group").table("sync_drifts").col("group_id").to_owned()).await
    }
}

migration!(M0013KeyPages, "m0013_key_pages");

/// A page of a group's keys in id order reads its rows in index order and stops after the
/// page, instead of sorting every key of the group (a page cost more as the group grew); the
/// deletion-window check finds its due keys without reading the others.
#[async_trait::async_trait]
impl MigrationTrait for M0013KeyPages {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_index(Index::create().name("keys_group_id").table("keys").col("group_id").col("id").to_owned())
            .await?;
        m.create_index(Index::create().name("keys_next_check").table("keys").col("next_check_at_ms").to_owned()).await
    }
}

migration!(M0014KeyHasLinks, LATEST);

/// Keys say whether they have links, so reading a key without any (most) makes one query.
#[async_trait::async_trait]
impl MigrationTrait for M0014KeyHasLinks {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(Table::alter().table("keys").add_column(boolean("has_links").default(false)).to_owned()).await?;
        m.get_connection()
            .execute_unprepared("UPDATE keys SET has_links = TRUE WHERE id IN (SELECT key_id FROM key_links)")
            .await?;
        Ok(())
    }
}
