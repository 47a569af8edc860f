//! A fault-injecting wrapper around the real adapter, for conditions no emulator produces:
//! a deny on one key, throttling, a list marker that never advances, a failure between two steps.
//! Every call not matched by a fault goes to the real client.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use time::OffsetDateTime;

use zeroize::Zeroizing;

use super::{
    AliasEntry, Connector, CreateKeyInput, DataKey, DataKeyPair, DataKeySize, EncryptionContext, Error, KeyListEntry,
    KeyMetadata, KeyRotation, Kms, Page, PublicKeyInfo, Purpose, Result, RotationStatus, Sealed, Sealing, Signature,
};
use crate::domain::AwsKmsConfig;

/// One injected fault.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Operation `op` (the trait method name, e.g. `describe_key`) fails with `error`, for the
    /// key `key` only when set (matched against the key id or alias argument), `times` times
    /// (`None`: always).
    Fail { op: &'static str, key: Option<String>, error: Error, times: Option<usize> },
    /// ListKeys answers every page with the same NextMarker.
    StuckListKeysMarker,
    /// ListKeys leaves out this key id, as if AWS had deleted it (deletion takes ≥ 7 days in AWS).
    HideKey(String),
    /// DescribeKey reports this key id with KeyManager AWS (emulators make only customer keys).
    AwsManaged(String),
    /// ListAliases (first page) also lists this alias with no target key, as AWS does for
    /// AWS-managed aliases not created yet.
    AliasWithoutTarget(String),
    /// Operation `op` (for `key` only when set) never answers: the call waits forever, as a
    /// process does at the moment it is killed (crash tests kill it there).
    Hang { op: String, key: Option<String> },
    /// CreateKey is made in AWS, and then its answer never comes back: the moment between AWS
    /// making a key and Keyward recording it, where a crash test kills the process.
    HangAfterCreateKey,
    /// Operation `op` answers only after `millis` (a slow AWS call, e.g. under throttling).
    Delay { op: &'static str, millis: u64 },
}

/// A [`Connector`] whose clients obey the shared fault list, then call the real ones.
pub struct FaultyConnector {
    inner: Arc<dyn Connector>,
    faults: Arc<Mutex<Vec<Fault>>>,
}

impl FaultyConnector {
    pub fn new(inner: Arc<dyn Connector>) -> Self {
        Self { inner, faults: Arc::default() }
    }

    /// Adds a fault for every client made before or after.
    pub fn inject(&self, fault: Fault) {
        if let Ok(mut f) = self.faults.lock() {
            f.push(fault);
        }
    }

    /// Removes every fault.
    pub fn clear(&self) {
        if let Ok(mut f) = self.faults.lock() {
            f.clear();
        }
    }
}

impl Connector for FaultyConnector {
    fn connect(&self, config: &AwsKmsConfig, purpose: Purpose) -> Result<Arc<dyn Kms>> {
        Ok(Arc::new(FaultyKms { inner: self.inner.connect(config, purpose)?, faults: self.faults.clone() }))
    }
}

struct FaultyKms {
    inner: Arc<dyn Kms>,
    faults: Arc<Mutex<Vec<Fault>>>,
}

impl FaultyKms {
    async fn check(&self, op: &str, key: Option<&str>) -> Result<()> {
        let hang = self.faults.lock().is_ok_and(|faults| {
            faults.iter().any(|f| {
                matches!(f, Fault::Hang { op: o, key: k } if o == op && k.as_deref().is_none_or(|k| Some(k) == key))
            })
        });
        if hang {
            std::future::pending::<()>().await;
        }
        let delay = self.faults.lock().ok().and_then(|faults| {
            faults.iter().find_map(|f| match f {
                Fault::Delay { op: o, millis } if *o == op => Some(*millis),
                _ => None,
            })
        });
        if let Some(ms) = delay {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
        let Ok(mut faults) = self.faults.lock() else { return Ok(()) };
        for f in faults.iter_mut() {
            if let Fault::Fail { op: o, key: k, error, times } = f {
                let key_matches = k.as_deref().is_none_or(|k| Some(k) == key);
                if *o == op && key_matches && times.is_none_or(|t| t > 0) {
                    if let Some(t) = times {
                        *t -= 1;
                    }
                    return Err(error.clone());
                }
            }
        }
        Ok(())
    }

    fn stuck_marker(&self) -> bool {
        self.faults.lock().is_ok_and(|f| f.iter().any(|f| matches!(f, Fault::StuckListKeysMarker)))
    }
}

#[async_trait]
impl Kms for FaultyKms {
    async fn list_keys(&self, limit: Option<i32>, marker: Option<String>) -> Result<Page<KeyListEntry>> {
        self.check("list_keys", None).await?;
        let mut page = self.inner.list_keys(limit, marker).await?;
        if let Ok(faults) = self.faults.lock() {
            page.items.retain(|k| !faults.iter().any(|f| matches!(f, Fault::HideKey(id) if *id == k.key_id)));
        }
        if self.stuck_marker() {
            page.next_marker = Some("stuck".to_owned());
        }
        Ok(page)
    }
    async fn list_aliases(&self, limit: Option<i32>, marker: Option<String>) -> Result<Page<AliasEntry>> {
        self.check("list_aliases", None).await?;
        let first = marker.is_none();
        let mut page = self.inner.list_aliases(limit, marker).await?;
        if first && let Ok(faults) = self.faults.lock() {
            for f in faults.iter() {
                if let Fault::AliasWithoutTarget(name) = f {
                    page.items.push(AliasEntry { alias_name: name.clone(), target_key_id: None });
                }
            }
        }
        Ok(page)
    }
    async fn describe_key(&self, key_id: &str) -> Result<KeyMetadata> {
        self.check("describe_key", Some(key_id)).await?;
        let mut meta = self.inner.describe_key(key_id).await?;
        let managed = self
            .faults
            .lock()
            .is_ok_and(|f| f.iter().any(|f| matches!(f, Fault::AwsManaged(id) if *id == meta.key_id || *id == key_id)));
        if managed {
            meta.key_manager = Some("AWS".to_owned());
        }
        Ok(meta)
    }
    async fn list_resource_tags(&self, key_id: &str, marker: Option<String>) -> Result<Page<(String, String)>> {
        self.check("list_resource_tags", Some(key_id)).await?;
        self.inner.list_resource_tags(key_id, marker).await
    }
    async fn get_key_policy(&self, key_id: &str) -> Result<String> {
        self.check("get_key_policy", Some(key_id)).await?;
        self.inner.get_key_policy(key_id).await
    }
    async fn create_key(&self, input: CreateKeyInput) -> Result<KeyMetadata> {
        self.check("create_key", None).await?;
        let meta = self.inner.create_key(input).await?;
        if self.faults.lock().is_ok_and(|f| f.iter().any(|f| matches!(f, Fault::HangAfterCreateKey))) {
            std::future::pending::<()>().await;
        }
        Ok(meta)
    }
    async fn create_alias(&self, alias_name: &str, target_key_id: &str) -> Result<()> {
        self.check("create_alias", Some(alias_name)).await?;
        self.inner.create_alias(alias_name, target_key_id).await
    }
    async fn delete_alias(&self, alias_name: &str) -> Result<()> {
        self.check("delete_alias", Some(alias_name)).await?;
        self.inner.delete_alias(alias_name).await
    }
    async fn schedule_key_deletion(&self, key_id: &str, days: i32) -> Result<Option<OffsetDateTime>> {
        self.check("schedule_key_deletion", Some(key_id)).await?;
        self.inner.schedule_key_deletion(key_id, days).await
    }
    async fn cancel_key_deletion(&self, key_id: &str) -> Result<()> {
        self.check("cancel_key_deletion", Some(key_id)).await?;
        self.inner.cancel_key_deletion(key_id).await
    }
    async fn enable_key(&self, key_id: &str) -> Result<()> {
        self.check("enable_key", Some(key_id)).await?;
        self.inner.enable_key(key_id).await
    }
    async fn disable_key(&self, key_id: &str) -> Result<()> {
        self.check("disable_key", Some(key_id)).await?;
        self.inner.disable_key(key_id).await
    }
    async fn update_key_description(&self, key_id: &str, description: &str) -> Result<()> {
        self.check("update_key_description", Some(key_id)).await?;
        self.inner.update_key_description(key_id, description).await
    }
    async fn tag_resource(&self, key_id: &str, tags: Vec<(String, String)>) -> Result<()> {
        self.check("tag_resource", Some(key_id)).await?;
        self.inner.tag_resource(key_id, tags).await
    }
    async fn untag_resource(&self, key_id: &str, tag_keys: Vec<String>) -> Result<()> {
        self.check("untag_resource", Some(key_id)).await?;
        self.inner.untag_resource(key_id, tag_keys).await
    }
    async fn put_key_policy(&self, key_id: &str, policy: &str) -> Result<()> {
        self.check("put_key_policy", Some(key_id)).await?;
        self.inner.put_key_policy(key_id, policy).await
    }
    async fn get_parameters_for_import(&self, key_id: &str) -> Result<super::ImportParameters> {
        self.check("get_parameters_for_import", Some(key_id)).await?;
        self.inner.get_parameters_for_import(key_id).await
    }
    async fn import_key_material(&self, key_id: &str, input: super::ImportKeyMaterialInput<'_>) -> Result<()> {
        self.check("import_key_material", Some(key_id)).await?;
        self.inner.import_key_material(key_id, input).await
    }
    async fn delete_imported_key_material(&self, key_id: &str) -> Result<()> {
        self.check("delete_imported_key_material", Some(key_id)).await?;
        self.inner.delete_imported_key_material(key_id).await
    }
    async fn encrypt(&self, key_id: &str, plaintext: &[u8], sealing: &Sealing<'_>) -> Result<Vec<u8>> {
        self.check("encrypt", Some(key_id)).await?;
        self.inner.encrypt(key_id, plaintext, sealing).await
    }
    async fn decrypt(&self, key_id: &str, ciphertext: &[u8], sealing: &Sealing<'_>) -> Result<Zeroizing<Vec<u8>>> {
        self.check("decrypt", Some(key_id)).await?;
        self.inner.decrypt(key_id, ciphertext, sealing).await
    }
    async fn re_encrypt(&self, ciphertext: &[u8], source: Sealed<'_>, destination: Sealed<'_>) -> Result<Vec<u8>> {
        self.check("re_encrypt", Some(destination.key_id)).await?;
        self.inner.re_encrypt(ciphertext, source, destination).await
    }
    async fn get_public_key(&self, key_id: &str) -> Result<PublicKeyInfo> {
        self.check("get_public_key", Some(key_id)).await?;
        self.inner.get_public_key(key_id).await
    }
    async fn sign(&self, key_id: &str, message: &[u8], message_type: &str, algorithm: &str) -> Result<Vec<u8>> {
        self.check("sign", Some(key_id)).await?;
        self.inner.sign(key_id, message, message_type, algorithm).await
    }
    async fn verify(&self, key_id: &str, message: &[u8], signature: Signature<'_>) -> Result<bool> {
        self.check("verify", Some(key_id)).await?;
        self.inner.verify(key_id, message, signature).await
    }
    async fn generate_mac(&self, key_id: &str, message: &[u8], algorithm: &str) -> Result<Vec<u8>> {
        self.check("generate_mac", Some(key_id)).await?;
        self.inner.generate_mac(key_id, message, algorithm).await
    }
    async fn verify_mac(&self, key_id: &str, message: &[u8], mac: &[u8], algorithm: &str) -> Result<bool> {
        self.check("verify_mac", Some(key_id)).await?;
        self.inner.verify_mac(key_id, message, mac, algorithm).await
    }
    async fn generate_data_key(
        &self,
        key_id: &str,
        size: DataKeySize,
        context: &EncryptionContext,
        with_plaintext: bool,
    ) -> Result<DataKey> {
        self.check("generate_data_key", Some(key_id)).await?;
        self.inner.generate_data_key(key_id, size, context, with_plaintext).await
    }
    async fn generate_data_key_pair(
        &self,
        key_id: &str,
        pair_spec: &str,
        context: &EncryptionContext,
        with_plaintext: bool,
    ) -> Result<DataKeyPair> {
        self.check("generate_data_key_pair", Some(key_id)).await?;
        self.inner.generate_data_key_pair(key_id, pair_spec, context, with_plaintext).await
    }
    async fn derive_shared_secret(
        &self,
        key_id: &str,
        algorithm: &str,
        public_key: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>> {
        self.check("derive_shared_secret", Some(key_id)).await?;
        self.inner.derive_shared_secret(key_id, algorithm, public_key).await
    }
    async fn list_key_aliases(&self, key_id: &str, marker: Option<String>) -> Result<Page<AliasEntry>> {
        self.check("list_key_aliases", Some(key_id)).await?;
        self.inner.list_key_aliases(key_id, marker).await
    }
    async fn update_alias(&self, alias_name: &str, target_key_id: &str) -> Result<()> {
        self.check("update_alias", Some(alias_name)).await?;
        self.inner.update_alias(alias_name, target_key_id).await
    }
    async fn rotate_key_on_demand(&self, key_id: &str) -> Result<()> {
        self.check("rotate_key_on_demand", Some(key_id)).await?;
        self.inner.rotate_key_on_demand(key_id).await
    }
    async fn enable_key_rotation(&self, key_id: &str, period_days: Option<i32>) -> Result<()> {
        self.check("enable_key_rotation", Some(key_id)).await?;
        self.inner.enable_key_rotation(key_id, period_days).await
    }
    async fn disable_key_rotation(&self, key_id: &str) -> Result<()> {
        self.check("disable_key_rotation", Some(key_id)).await?;
        self.inner.disable_key_rotation(key_id).await
    }
    async fn get_key_rotation_status(&self, key_id: &str) -> Result<RotationStatus> {
        self.check("get_key_rotation_status", Some(key_id)).await?;
        self.inner.get_key_rotation_status(key_id).await
    }
    async fn list_key_rotations(
        &self,
        key_id: &str,
        limit: Option<i32>,
        marker: Option<String>,
    ) -> Result<Page<KeyRotation>> {
        self.check("list_key_rotations", Some(key_id)).await?;
        self.inner.list_key_rotations(key_id, limit, marker).await
    }
}
