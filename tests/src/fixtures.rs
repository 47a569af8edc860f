//! Fixtures the suites share, written once: request builders (keys, groups, masks, schedules),
//! [`TestApp`] shortcuts for the calls every suite makes (clients, groups, keys), and reads of
//! what AWS holds.

use std::collections::BTreeMap;

use keyward_proto::v1 as pb;
use keyward_shared::kms::Error as KmsError;
use keyward_shared::kms::faults::Fault;
use pb::KeyOperation as Op;
use pb::audit_service_client::AuditServiceClient;
use pb::crypto_service_client::CryptoServiceClient;
use pb::principal_service_client::PrincipalServiceClient;
use tonic::Status;

use crate::{Conn, TestApp, conn};

// ---------------------------------------------------------------------------------------------
// Request builders.

/// `key_ops` as the wire carries them.
pub fn ops(list: &[Op]) -> Vec<i32> {
    list.iter().map(|o| *o as i32).collect()
}

/// An update mask naming `paths`.
pub fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask { paths: paths.iter().map(|p| p.to_string()).collect() })
}

/// A sync schedule running every `seconds`.
pub fn interval(seconds: i64) -> Option<pb::SyncSchedule> {
    Some(pb::SyncSchedule { interval: Some(prost_types::Duration { seconds, nanos: 0 }) })
}

/// An AWS_KMS group with the settings `cfg`.
pub fn aws_group(display_name: &str, cfg: pb::AwsKmsConfig) -> pb::Group {
    pb::Group {
        display_name: display_name.into(),
        kind: pb::GroupKind::AwsKms as i32,
        aws_kms: Some(cfg),
        ..Default::default()
    }
}

/// A key described as "`name` description", with its spec, ops, aliases and tags.
pub fn key(name: &str, spec: pb::KeySpec, key_ops: &[Op], aliases: &[&str], tags: &[(&str, &str)]) -> pb::Key {
    pb::Key {
        display_name: name.into(),
        description: format!("{name} description"),
        key_spec: spec as i32,
        key_ops: ops(key_ops),
        tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        aws: Some(pb::AwsKeyDetails { aliases: aliases.iter().map(|a| a.to_string()).collect(), ..Default::default() }),
        ..Default::default()
    }
}

/// A SYMMETRIC_DEFAULT key for ENCRYPT and DECRYPT, nothing else set.
pub fn sym_key(name: &str) -> pb::Key {
    pb::Key {
        display_name: name.into(),
        key_spec: pb::KeySpec::SymmetricDefault as i32,
        key_ops: ops(&[Op::Encrypt, Op::Decrypt]),
        ..Default::default()
    }
}

/// The AWS key id of a virtual key.
/// The key inside a DER SubjectPublicKeyInfo (PKCS #1 for RSA, the SEC 1 point for EC, the 32
/// bytes of Ed25519), as aws-lc-rs verifies with it.
pub fn spki_key(der: &[u8]) -> Vec<u8> {
    use x509_parser::prelude::FromDer;
    let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(der).expect("SubjectPublicKeyInfo");
    spki.subject_public_key.data.to_vec()
}

/// A Sign request.
pub fn sign_req(name: &str, message: &[u8], message_type: &str, algorithm: &str) -> pb::SignRequest {
    pb::SignRequest {
        name: name.into(),
        message: message.to_vec(),
        message_type: message_type.into(),
        signing_algorithm: algorithm.into(),
    }
}

pub fn aws_id(k: &pb::Key) -> String {
    k.aws.as_ref().map(|a| a.aws_key_id.clone()).filter(|id| !id.is_empty()).expect("an AWS key id")
}

// ---------------------------------------------------------------------------------------------
// Clients and calls of the test's server.

impl TestApp {
    /// Makes `n` SYMMETRIC_DEFAULT keys in the test's AWS account (through the emulator, eight
    /// at a time), described `seed {i}`; their AWS key ids, in no order.
    pub async fn seed_aws_keys(&self, n: usize) -> Vec<String> {
        use futures::StreamExt;
        futures::stream::iter(0..n)
            .map(|i| {
                let aws = self.aws.clone();
                async move {
                    let made = aws.create_key().description(format!("seed {i}")).send().await.expect("seed key");
                    made.key_metadata().expect("metadata").key_id().to_owned()
                }
            })
            .buffer_unordered(8)
            .collect()
            .await
    }

    /// A channel to this test's server as the bootstrap admin (it connects on first use).
    pub fn channel(&self) -> Conn {
        conn(self.addr, &self.admin_token)
    }

    /// An AuditService client of this test's server.
    pub fn audit_client(&self) -> AuditServiceClient<Conn> {
        AuditServiceClient::new(self.channel())
    }

    /// A CryptoService client of this test's server.
    pub fn crypto_client(&self) -> CryptoServiceClient<Conn> {
        CryptoServiceClient::new(self.channel())
    }

    /// `principals/{id}` of the bootstrap admin the harness calls as.
    pub async fn admin_name(&self) -> String {
        let me = self.principal_client().get_current_principal(pb::GetCurrentPrincipalRequest::default()).await;
        me.expect("principals/me").into_inner().principal.expect("principal").name
    }

    /// A PrincipalService client of this test's server.
    pub fn principal_client(&self) -> PrincipalServiceClient<Conn> {
        PrincipalServiceClient::new(self.channel())
    }

    /// A new principal (a service account) with `account_roles` and, per group, its roles,
    /// and an API token of it.
    pub async fn principal_with(
        &self,
        display_name: &str,
        account_roles: &[pb::AccountRole],
        groups: &[(&str, &[pb::GroupRole])],
    ) -> (pb::Principal, String) {
        let mut admin = self.principal_client();
        let p = admin
            .create_principal(pb::CreatePrincipalRequest {
                principal: Some(pb::Principal {
                    kind: pb::PrincipalKind::ServiceAccount as i32,
                    display_name: display_name.into(),
                    account_roles: account_roles.iter().map(|r| *r as i32).collect(),
                    ..Default::default()
                }),
            })
            .await
            .expect("create principal")
            .into_inner();
        for (group, roles) in groups {
            admin
                .create_membership(pb::CreateMembershipRequest {
                    parent: (*group).into(),
                    membership: Some(pb::Membership {
                        principal: p.name.clone(),
                        roles: roles.iter().map(|r| *r as i32).collect(),
                        ..Default::default()
                    }),
                })
                .await
                .expect("create membership");
        }
        let key = admin
            .create_api_key(pb::CreateApiKeyRequest {
                parent: p.name.clone(),
                api_key: Some(pb::ApiKey { display_name: "test".into(), ..Default::default() }),
            })
            .await
            .expect("create API key")
            .into_inner();
        (p, key.token)
    }

    /// CreateGroup, answering the status instead of panicking.
    pub async fn create_group(&mut self, group: pb::Group) -> Result<pb::Group, Status> {
        self.groups.create_group(pb::CreateGroupRequest { group: Some(group) }).await.map(|r| r.into_inner())
    }

    /// CreateGroup of an AWS_KMS group for this test's account, answering the status.
    pub async fn try_create_aws_group(&mut self, display_name: &str) -> Result<pb::Group, Status> {
        let group = aws_group(display_name, self.aws_kms_config());
        self.create_group(group).await
    }

    /// Creates a REGULAR group (Keyward holds its keys' material).
    pub async fn regular_group(&mut self, display_name: &str) -> pb::Group {
        let group =
            pb::Group { display_name: display_name.into(), kind: pb::GroupKind::Regular as i32, ..Default::default() };
        self.create_group(group).await.expect("create group")
    }

    /// GetGroup.
    pub async fn get_group(&mut self, name: &str) -> pb::Group {
        self.groups.get_group(pb::GetGroupRequest { name: name.into() }).await.expect("get group").into_inner()
    }

    /// The first page (up to 1000) of ListGroups.
    pub async fn list_groups(&mut self) -> Result<Vec<pb::Group>, Status> {
        self.groups
            .list_groups(pb::ListGroupsRequest { page_size: 1000, ..Default::default() })
            .await
            .map(|r| r.into_inner().groups)
    }

    /// CreateKey of `key` under `parent`, answering the status.
    pub async fn try_create_key(&mut self, parent: &str, key: pb::Key) -> Result<pb::Key, Status> {
        self.keys
            .create_key(pb::CreateKeyRequest { parent: parent.into(), key: Some(key) })
            .await
            .map(|r| r.into_inner())
    }

    /// Creates a key of `spec` for `key_ops` (nothing else set).
    pub async fn create_key(&mut self, parent: &str, name: &str, spec: pb::KeySpec, key_ops: &[Op]) -> pb::Key {
        let key =
            pb::Key { display_name: name.into(), key_spec: spec as i32, key_ops: ops(key_ops), ..Default::default() };
        self.try_create_key(parent, key).await.unwrap_or_else(|e| panic!("create key {name}: {e:?}"))
    }

    /// Creates a [`sym_key`].
    pub async fn create_sym_key(&mut self, parent: &str, name: &str) -> pb::Key {
        self.try_create_key(parent, sym_key(name)).await.expect("create key")
    }

    /// GetKey.
    pub async fn get_key(&mut self, name: &str) -> pb::Key {
        self.keys.get_key(pb::GetKeyRequest { name: name.into() }).await.expect("get key").into_inner()
    }

    /// UpdateKey of the `paths` of `key` (its etag checked when set).
    pub async fn update_key(&mut self, key: pb::Key, paths: &[&str]) -> Result<pb::Key, Status> {
        self.update_key_removing(key, paths, &[]).await
    }

    /// UpdateKey of the `paths` of `key`, naming `remove_aliases` (aliases Keyward did not make).
    pub async fn update_key_removing(
        &mut self,
        key: pb::Key,
        paths: &[&str],
        remove_aliases: &[&str],
    ) -> Result<pb::Key, Status> {
        self.keys
            .update_key(pb::UpdateKeyRequest {
                key: Some(key),
                update_mask: mask(paths),
                remove_aliases: remove_aliases.iter().map(|a| a.to_string()).collect(),
            })
            .await
            .map(|r| r.into_inner())
    }

    /// Enables or disables the key `name` (UpdateKey of `enabled`, no etag).
    pub async fn set_enabled(&mut self, name: &str, enabled: bool) -> pb::Key {
        let k = pb::Key { name: name.into(), enabled, ..Default::default() };
        self.update_key(k, &["enabled"]).await.unwrap_or_else(|e| panic!("enabled={enabled} on {name}: {e:?}"))
    }

    /// DeleteKey.
    pub async fn delete_key(&mut self, name: &str) -> Result<(), Status> {
        self.keys.delete_key(pb::DeleteKeyRequest { name: name.into() }).await.map(|_| ())
    }

    /// DeleteKeyMaterial.
    pub async fn delete_material(&mut self, name: &str, acknowledge_unrecoverable: bool) -> Result<pb::Key, Status> {
        self.keys
            .delete_key_material(pb::DeleteKeyMaterialRequest {
                name: name.into(),
                acknowledge_unrecoverable,
                ..Default::default()
            })
            .await
            .map(|r| r.into_inner())
    }

    /// ReimportKeyMaterial.
    pub async fn reimport(&mut self, name: &str) -> Result<pb::Key, Status> {
        self.keys
            .reimport_key_material(pb::ReimportKeyMaterialRequest { name: name.into() })
            .await
            .map(|r| r.into_inner())
    }
}

// ---------------------------------------------------------------------------------------------
// What AWS holds (read with the test's own client).

impl TestApp {
    /// Encrypt in AWS with the test's own client: the ciphertext.
    pub async fn aws_encrypt(&self, id: &str, plaintext: &[u8]) -> Vec<u8> {
        let out = self
            .aws
            .encrypt()
            .key_id(id)
            .plaintext(aws_sdk_kms::primitives::Blob::new(plaintext.to_vec()))
            .send()
            .await
            .expect("encrypt in AWS");
        out.ciphertext_blob().expect("blob").as_ref().to_vec()
    }

    /// Decrypt in AWS with the test's own client: the plaintext, or AWS's error.
    pub async fn aws_decrypt(&self, id: &str, ciphertext: &[u8]) -> Result<Vec<u8>, String> {
        let out = self
            .aws
            .decrypt()
            .key_id(id)
            .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(ciphertext.to_vec()))
            .send()
            .await
            .map_err(|e| format!("{e:?}"))?;
        Ok(out.plaintext().expect("plaintext").as_ref().to_vec())
    }

    /// DescribeKey.
    pub async fn aws_meta(&self, id: &str) -> aws_sdk_kms::types::KeyMetadata {
        self.aws
            .describe_key()
            .key_id(id)
            .send()
            .await
            .expect("aws describe")
            .key_metadata()
            .cloned()
            .expect("metadata")
    }

    /// The AWS key state (`Enabled`, `PendingDeletion`, …).
    pub async fn aws_state(&self, id: &str) -> String {
        self.aws_meta(id).await.key_state().map(|s| s.as_str().to_owned()).unwrap_or_default()
    }

    /// The aliases of an AWS key, sorted.
    pub async fn aws_aliases(&self, id: &str) -> Vec<String> {
        let r = self.aws.list_aliases().key_id(id).send().await.expect("aws aliases");
        let mut v: Vec<String> = r.aliases().iter().filter_map(|a| a.alias_name()).map(str::to_owned).collect();
        v.sort();
        v
    }

    /// The tags of an AWS key.
    pub async fn aws_tags(&self, id: &str) -> BTreeMap<String, String> {
        let r = self.aws.list_resource_tags().key_id(id).limit(50).send().await.expect("aws tags");
        r.tags().iter().map(|t| (t.tag_key().to_owned(), t.tag_value().to_owned())).collect()
    }

    /// From now on Keyward's DescribeKey of `aws_key_id` answers NotFound (as once AWS deleted it).
    pub fn not_found_in_aws(&self, aws_key_id: &str) {
        self.faults.inject(Fault::Fail {
            op: "describe_key",
            key: Some(aws_key_id.to_owned()),
            error: KmsError::NotFound(format!("Key '{aws_key_id}' does not exist")),
            times: None,
        });
    }
}
