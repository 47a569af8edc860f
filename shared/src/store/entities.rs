//! sea-orm entities: one module per table. Crate-private: nothing outside `store` sees them.
//! Ids are UUID text; times the store compares in SQL are unix milliseconds (`*_at_ms`).

pub(crate) mod groups {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "groups")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        #[sea_orm(unique)]
        pub display_name: String,
        pub description: String,
        pub kind: String,
        pub region: Option<String>,
        pub endpoint_url: Option<String>,
        pub access_key_id: Option<String>,
        /// Sealed (crypto::MasterKey), bound to `groups/{id}/secret_access_key`.
        pub secret_access_key_sealed: Option<Vec<u8>>,
        pub ca_certificate_pem: Option<String>,
        pub client_certificate_pem: Option<String>,
        /// Sealed, bound to `groups/{id}/client_private_key_pem`.
        pub client_private_key_sealed: Option<Vec<u8>>,
        pub validate_host: bool,
        pub connection_state: String,
        pub connection_message: String,
        pub connection_checked_at: Option<TimeDateTimeWithTimeZone>,
        /// JSON array of API key-spec names.
        pub allowed_key_specs: String,
        /// JSON array of API key-op names.
        pub allowed_key_ops: String,
        pub sync_interval_secs: Option<i64>,
        /// CryptoService calls with the group's keys are audited.
        pub audit_key_use: bool,
        /// When the worker should next sync (unix ms); claimed by a conditional UPDATE.
        pub next_sync_at_ms: Option<i64>,
        /// When the last successful sync ended (unix ms).
        pub last_sync_at_ms: Option<i64>,
        pub created_at: TimeDateTimeWithTimeZone,
        pub updated_at: TimeDateTimeWithTimeZone,
        pub etag: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod keys {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "keys")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub group_id: String,
        pub display_name: String,
        pub description: String,
        pub key_spec: String,
        /// JSON array of API key-op names.
        pub key_ops: String,
        pub state: String,
        pub source: String,
        /// JSON object.
        pub tags: String,
        pub is_virtual: bool,
        /// Unique with group_id: one virtual key per AWS key per group.
        pub aws_key_arn: Option<String>,
        /// JSON of the AWS metadata (store::convert::AwsJson).
        pub aws: Option<String>,
        pub created_by: String,
        pub created_at: TimeDateTimeWithTimeZone,
        pub updated_at: TimeDateTimeWithTimeZone,
        pub etag: String,
        /// Deletion-window check: not before this time (unix ms); claimed by conditional UPDATE.
        pub next_check_at_ms: Option<i64>,
        /// JSON of the key's rotation policy.
        pub rotation_policy: Option<String>,
        /// When the worker rotates the key next (unix ms; from the policy, indexed).
        pub next_rotation_at_ms: Option<i64>,
        /// Keyward keys: the material, sealed (crypto::MasterKey) bound to `keys/{id}/material`.
        pub material_sealed: Option<Vec<u8>>,
        /// Virtual keys: the AWS key id and AWS's `Origin`, copied out of `aws` for the filters.
        pub aws_key_id: Option<String>,
        pub origin: Option<String>,
        /// `created_at` and `updated_at` in microseconds since the epoch (ordered and compared
        /// in SQL, the same on SQLite and PostgreSQL).
        pub created_at_us: i64,
        pub updated_at_us: i64,
        /// Set when a link from this key is recorded (`key_links.key_id`); false: it has none,
        /// and reading it needs no look into `key_links`.
        pub has_links: bool,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod sync_runs {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sync_runs")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub group_id: String,
        pub state: String,
        pub trigger: String,
        pub actor: String,
        pub listed: i64,
        pub added: i64,
        pub updated: i64,
        pub unchanged: i64,
        pub failed: i64,
        /// JSON array of {aws_key, message}.
        pub warnings: String,
        pub error: Option<String>,
        /// JSON of the run's drift summary (store::drift).
        pub drift: String,
        pub started_at: TimeDateTimeWithTimeZone,
        pub ended_at: Option<TimeDateTimeWithTimeZone>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod leases {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "leases")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub name: String,
        pub holder: String,
        pub expires_at_ms: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod audit_events {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_events")]
    pub struct Model {
        /// Chain position, from 1; unique.
        #[sea_orm(primary_key, auto_increment = false)]
        pub seq: i64,
        pub id: String,
        pub actor: String,
        pub action: String,
        pub resource: String,
        pub outcome: String,
        pub request_id: String,
        pub detail: String,
        pub created_at: TimeDateTimeWithTimeZone,
        /// `created_at` as unix microseconds, for time filters.
        pub created_at_ms: Option<i64>,
        pub prev_hash: String,
        pub hash: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod audit_head {
    use sea_orm::entity::prelude::*;

    /// One row (id 1): the chain's last seq and hash. Updating it is the appenders' lock.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_head")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i32,
        pub seq: i64,
        pub hash: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod key_links {
    use sea_orm::entity::prelude::*;

    /// One direction of a link: `key_id` has `kind` towards `other_key_id`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "key_links")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub key_id: String,
        pub kind: String,
        pub other_group_id: String,
        pub other_key_id: String,
        pub actor: String,
        pub created_at: TimeDateTimeWithTimeZone,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod sync_drifts {
    use sea_orm::entity::prelude::*;

    /// What drifted on one AWS key in one sync run, `seq` in the order the run found it.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sync_drifts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub run_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub seq: i64,
        pub group_id: String,
        pub key_id: Option<String>,
        pub key_name: String,
        pub aws_key_arn: String,
        /// JSON array of {field, kind, before, after}.
        pub changes: String,
        pub applied: bool,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod key_aliases {
    use sea_orm::entity::prelude::*;

    /// One AWS alias of a virtual key (a copy of `keys.aws`'s aliases, for the alias filter).
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "key_aliases")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub key_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub alias: String,
        pub group_id: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod key_tags {
    use sea_orm::entity::prelude::*;

    /// One tag of a key (a copy of `keys.tags`, for the tag filters).
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "key_tags")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub key_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub tag_key: String,
        pub tag_value: String,
        pub group_id: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod operations {
    use sea_orm::entity::prelude::*;

    /// The journal of multi-step AWS operations (import of key material): intent first, then
    /// each step, so a crash at any point can be compensated.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "operations")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub kind: String,
        pub group_id: String,
        pub key_id: String,
        pub aws_key_id: Option<String>,
        /// JSON list of the other keys' names the operation touches.
        pub subjects: String,
        /// JSON of a rotation's plan.
        pub plan: Option<String>,
        pub state: String,
        pub detail: String,
        pub created_at: TimeDateTimeWithTimeZone,
        pub updated_at: TimeDateTimeWithTimeZone,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod principals {
    use sea_orm::entity::prelude::*;

    /// Users and service accounts.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "principals")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub kind: String,
        #[sea_orm(unique)]
        pub display_name: String,
        pub description: String,
        /// JSON array of account-role names.
        pub account_roles: String,
        pub disabled: bool,
        pub created_at: TimeDateTimeWithTimeZone,
        pub updated_at: TimeDateTimeWithTimeZone,
        pub etag: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod api_keys {
    use sea_orm::entity::prelude::*;

    /// API keys: the SHA-256 of the token's secret part, never the token.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "api_keys")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub principal_id: String,
        pub display_name: String,
        pub secret_sha256: Vec<u8>,
        pub created_at: TimeDateTimeWithTimeZone,
        pub expires_at: Option<TimeDateTimeWithTimeZone>,
        pub revoked_at: Option<TimeDateTimeWithTimeZone>,
        pub last_used_at: Option<TimeDateTimeWithTimeZone>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod certificate_identities {
    use sea_orm::entity::prelude::*;

    /// `subject:…`, `uri:…`, `dns:…` or `email:…` → the principal it authenticates.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "certificate_identities")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub identity: String,
        pub principal_id: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod memberships {
    use sea_orm::entity::prelude::*;

    /// A principal's roles in a group.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "memberships")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub group_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub principal_id: String,
        /// JSON array of group-role names.
        pub roles: String,
        pub created_at: TimeDateTimeWithTimeZone,
        pub updated_at: TimeDateTimeWithTimeZone,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod bootstrap {
    use sea_orm::entity::prelude::*;

    /// One row (id 1) once the bootstrap admin was made: never made twice.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "bootstrap")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i32,
        pub principal_id: String,
        pub created_at: TimeDateTimeWithTimeZone,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
