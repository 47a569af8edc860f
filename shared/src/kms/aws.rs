//! The [`Kms`] port implemented with aws-sdk-kms; the only file that names `aws_sdk_kms`.
//!
//! Each client is built from one group's settings alone: region, endpoint, static credentials
//! and TLS options come from [`AwsKmsConfig`], never from the process environment, profile files
//! or instance metadata (no `aws_config::load_from_env`). HTTP goes through [`super::http`].
//!
//! AWS KMS API reference: <https://docs.aws.amazon.com/kms/latest/APIReference/>; common errors:
//! <https://docs.aws.amazon.com/kms/latest/APIReference/CommonErrors.html>.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_kms::config::retry::{RetryConfig, RetryPartition};
use aws_sdk_kms::config::timeout::TimeoutConfig;
use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::primitives::DateTime;
use aws_sdk_kms::types::{
    DataKeyPairSpec, DataKeySpec, EncryptionAlgorithmSpec, KeyAgreementAlgorithmSpec, KeySpec, KeyUsageType,
    MacAlgorithmSpec, MessageType, SigningAlgorithmSpec, Tag,
};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;

use super::http::{TlsOptions, describe_dispatch_failure};
use super::{
    AliasEntry, Connector, CreateKeyInput, DataKey, DataKeyPair, DataKeySize, EncryptionContext, Error,
    ImportKeyMaterialInput, KeyListEntry, KeyMetadata, KeyRotation, Kms, Page, PublicKeyInfo, Purpose, Result,
    RotationStatus, Sealed, Sealing, Signature,
};
use crate::domain::AwsKmsConfig;

/// Time limits and retries of one AWS KMS client.
///
/// Retries follow the SDK's standard mode: throttling errors, HTTP 5xx, timeouts and connection
/// failures are retried with exponential back-off and full jitter (base 1 s, at most 20 s); every
/// client has its own retry token bucket (per region and endpoint), so one failing endpoint does
/// not use up the retries of the others.
/// <https://docs.aws.amazon.com/sdkref/latest/guide/feature-retry-behavior.html>
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Connection set-up: DNS lookup, TCP connect and TLS handshake together. Standard: 3 s.
    pub connect: Duration,
    /// One attempt: connection set-up, request and response. Standard: 10 s.
    pub attempt: Duration,
    /// The whole call: every attempt and the back-off between them. Standard: 30 s.
    pub operation: Duration,
    /// Attempts per call, the first included; 1 means no retry, 0 counts as 1. Standard: 3.
    pub max_attempts: u32,
}

impl Timeouts {
    /// Limit of one probe attempt and of the whole probe.
    const PROBE_LIMIT: Duration = Duration::from_secs(5);

    /// The defaults for work (sync, key operations): connect 3 s, attempt 10 s, operation 30 s,
    /// 3 attempts.
    pub const fn standard() -> Self {
        Self {
            connect: Duration::from_secs(3),
            attempt: Duration::from_secs(10),
            operation: Duration::from_secs(30),
            max_attempts: 3,
        }
    }

    /// For [`Purpose::Probe`] (TestConnection), so a person gets an answer fast: `connect` as
    /// given, one attempt, attempt and operation limited to 5 s (or to `connect` when longer).
    pub fn probe(connect: Duration) -> Self {
        let limit = Self::PROBE_LIMIT.max(connect);
        Self { connect, attempt: limit, operation: limit, max_attempts: 1 }
    }
}

/// Makes aws-sdk-kms clients ([`AwsKms`]) from group settings: the production [`Connector`].
#[derive(Debug)]
pub struct AwsConnector {
    /// Limits for [`Purpose::Work`]. [`Purpose::Probe`] uses [`Timeouts::probe`] with this
    /// connect timeout.
    pub timeouts: Timeouts,
    /// The request-quota buckets of every account and Region this process reaches.
    quotas: super::quota::QuotaRegistry,
}

impl AwsConnector {
    /// A connector with `timeouts` for work and AWS's default request quotas.
    pub fn new(timeouts: Timeouts) -> Self {
        Self::with_quotas(timeouts, super::quota::QuotaOverrides::default())
    }

    /// A connector with `timeouts` and request quotas `overrides` over AWS's defaults.
    pub fn with_quotas(timeouts: Timeouts, overrides: super::quota::QuotaOverrides) -> Self {
        Self { timeouts, quotas: super::quota::QuotaRegistry::new(overrides) }
    }

    /// The limits a client for `purpose` gets.
    pub fn timeouts_for(&self, purpose: Purpose) -> Timeouts {
        match purpose {
            Purpose::Work => self.timeouts,
            Purpose::Probe => Timeouts::probe(self.timeouts.connect),
        }
    }

    /// The client of the group with settings `config`, for `purpose`. Nothing is sent yet.
    ///
    /// # Errors
    /// [`Error::Config`]: `access_key_id` or `secret_access_key` not set, a PEM field that cannot
    /// be used, or a zero timeout (an [`crate::domain::EndpointUrl`] is checked when parsed).
    /// Messages name the field and never contain secrets.
    pub fn client(&self, config: &AwsKmsConfig, purpose: Purpose) -> Result<AwsKms> {
        AwsKms::build(
            &Settings {
                region: config.region.as_str(),
                endpoint_url: config.endpoint_url.as_ref().map(|u| u.as_str()),
                endpoint: config.endpoint(),
                access_key_id: &config.access_key_id,
                secret_access_key: config.secret_access_key.as_ref(),
                tls: TlsOptions::from_config(config),
                buckets: self.quotas.buckets(&config.endpoint(), config.region.as_str(), &config.access_key_id),
            },
            self.timeouts_for(purpose),
        )
    }
}

impl Connector for AwsConnector {
    /// [`AwsConnector::client`] behind the [`Kms`] trait.
    fn connect(&self, config: &AwsKmsConfig, purpose: Purpose) -> Result<Arc<dyn Kms>> {
        Ok(Arc::new(self.client(config, purpose)?))
    }
}

/// What a client is built from (borrowed from an [`AwsKmsConfig`]).
struct Settings<'a> {
    region: &'a str,
    endpoint_url: Option<&'a str>,
    /// `endpoint_url`, or the region's public endpoint.
    endpoint: String,
    access_key_id: &'a str,
    secret_access_key: Option<&'a SecretString>,
    tls: TlsOptions<'a>,
    /// The request-quota buckets of the account and Region.
    buckets: Arc<super::quota::Buckets>,
}

/// An aws-sdk-kms client for one account, region and endpoint. Cheap to clone (shares the
/// connection pool). `Debug` shows the endpoint only.
#[derive(Clone)]
pub struct AwsKms {
    client: aws_sdk_kms::Client,
    /// Where requests go, for messages: `endpoint_url`, or the region's public endpoint.
    endpoint: String,
}

impl fmt::Debug for AwsKms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsKms").field("endpoint", &self.endpoint).finish_non_exhaustive()
    }
}

impl AwsKms {
    /// Where requests go: the configured `endpoint_url`, or the public endpoint
    /// `https://kms.<region>.amazonaws.com` (`.amazonaws.com.cn` in China regions).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn build(settings: &Settings<'_>, timeouts: Timeouts) -> Result<Self> {
        if timeouts.connect.is_zero() || timeouts.attempt.is_zero() || timeouts.operation.is_zero() {
            return Err(Error::Config("the connect, attempt and operation timeouts must be more than zero".to_owned()));
        }
        let region = settings.region.trim();
        if region.is_empty() {
            return Err(Error::Config("region is not set".to_owned()));
        }
        let access_key_id = settings.access_key_id.trim();
        if access_key_id.is_empty() {
            return Err(Error::Config("access_key_id is not set".to_owned()));
        }
        let secret = settings
            .secret_access_key
            .filter(|secret| !secret.expose_secret().is_empty())
            .ok_or_else(|| Error::Config("secret_access_key is not set".to_owned()))?;
        let endpoint_url = settings.endpoint_url;
        let endpoint = settings.endpoint.clone();

        let credentials =
            Credentials::new(access_key_id, secret.expose_secret().to_owned(), None, None, "keyward-group");
        let mut builder = aws_sdk_kms::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.to_owned()))
            .credentials_provider(credentials)
            .http_client({
                let inner = super::http::http_connector(&settings.tls, timeouts.connect)?;
                let quota =
                    aws_smithy_runtime_api::client::http::SharedHttpConnector::new(super::quota::QuotaConnector {
                        inner,
                        buckets: settings.buckets.clone(),
                    });
                // The SDK asks for a connector per attempt; all share this one (and its pool).
                aws_smithy_runtime_api::client::http::http_client_fn(move |_, _| quota.clone())
            })
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(timeouts.connect)
                    .operation_attempt_timeout(timeouts.attempt)
                    .operation_timeout(timeouts.operation)
                    .build(),
            )
            // Standard: exponential backoff with jitter on throttling and 5xx, under a retry
            // budget shared by the clients of one region and endpoint. (The SDK's adaptive mode,
            // measured with 30 % of answers throttled at random, made a sync 13 times slower;
            // the quota buckets keep Keyward under AWS's rates instead.)
            .retry_config(RetryConfig::standard().with_max_attempts(timeouts.max_attempts.max(1)))
            .retry_partition(RetryPartition::new(format!("keyward-kms {region} {endpoint}")))
            .interceptor(super::metered::AwsCallMetrics { in_flight: settings.buckets.in_flight.clone() });
        if let Some(url) = endpoint_url {
            builder = builder.endpoint_url(url);
        }
        Ok(Self { client: aws_sdk_kms::Client::from_conf(builder.build()), endpoint })
    }

    fn error<E>(&self, err: SdkError<E, HttpResponse>) -> Error
    where
        E: ProvideErrorMetadata + StdError + 'static,
    {
        map_sdk_error(&err, &self.endpoint)
    }
}

#[async_trait]
impl Kms for AwsKms {
    /// ListKeys. Entries without KeyId are skipped; a missing KeyArn is an empty string.
    /// <https://docs.aws.amazon.com/kms/latest/APIReference/API_ListKeys.html>
    async fn list_keys(&self, limit: Option<i32>, marker: Option<String>) -> Result<Page<KeyListEntry>> {
        let out =
            self.client.list_keys().set_limit(limit).set_marker(marker).send().await.map_err(|e| self.error(e))?;
        let items = out
            .keys
            .unwrap_or_default()
            .into_iter()
            .filter_map(|entry| {
                Some(KeyListEntry { key_id: entry.key_id?, key_arn: entry.key_arn.unwrap_or_default() })
            })
            .collect();
        Ok(Page { items, next_marker: next_marker(out.truncated, out.next_marker) })
    }

    /// ListAliases for the region. Entries without AliasName are skipped.
    /// <https://docs.aws.amazon.com/kms/latest/APIReference/API_ListAliases.html>
    async fn list_aliases(&self, limit: Option<i32>, marker: Option<String>) -> Result<Page<AliasEntry>> {
        let out =
            self.client.list_aliases().set_limit(limit).set_marker(marker).send().await.map_err(|e| self.error(e))?;
        Ok(alias_page(out))
    }

    /// DescribeKey. A missing KeyMetadata is [`Error::Other`].
    /// <https://docs.aws.amazon.com/kms/latest/APIReference/API_DescribeKey.html>
    async fn describe_key(&self, key_id: &str) -> Result<KeyMetadata> {
        let out = self.client.describe_key().key_id(key_id).send().await.map_err(|e| self.error(e))?;
        out.key_metadata
            .map(key_metadata)
            .ok_or_else(|| Error::Other("DescribeKey answered without KeyMetadata".to_owned()))
    }

    /// ListResourceTags: `(TagKey, TagValue)` pairs.
    /// <https://docs.aws.amazon.com/kms/latest/APIReference/API_ListResourceTags.html>
    async fn list_resource_tags(&self, key_id: &str, marker: Option<String>) -> Result<Page<(String, String)>> {
        let out = self
            .client
            .list_resource_tags()
            .key_id(key_id)
            .set_marker(marker)
            .send()
            .await
            .map_err(|e| self.error(e))?;
        let items = out.tags.unwrap_or_default().into_iter().map(|tag| (tag.tag_key, tag.tag_value)).collect();
        Ok(Page { items, next_marker: next_marker(out.truncated, out.next_marker) })
    }

    /// GetKeyPolicy with PolicyName `default`: the policy JSON. A missing Policy is
    /// [`Error::Other`].
    /// <https://docs.aws.amazon.com/kms/latest/APIReference/API_GetKeyPolicy.html>
    async fn get_key_policy(&self, key_id: &str) -> Result<String> {
        let out = self
            .client
            .get_key_policy()
            .key_id(key_id)
            .policy_name("default")
            .send()
            .await
            .map_err(|e| self.error(e))?;
        out.policy.ok_or_else(|| Error::Other("GetKeyPolicy answered without Policy".to_owned()))
    }

    /// CreateKey with KeySpec, KeyUsage, Description (left out when empty) and Tags (left out
    /// when none). Unknown spec or usage strings are sent as they are; AWS rejects them
    /// ([`Error::Validation`]).
    /// <https://docs.aws.amazon.com/kms/latest/APIReference/API_CreateKey.html>
    async fn create_key(&self, input: CreateKeyInput) -> Result<KeyMetadata> {
        let tags = input
            .tags
            .into_iter()
            .map(|(key, value)| {
                Tag::builder()
                    .tag_key(key)
                    .tag_value(value)
                    .build()
                    .map_err(|err| Error::Validation(format!("tag: {err}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let out =
            self.client
                .create_key()
                .key_spec(KeySpec::from(input.key_spec.aws_name().ok_or_else(|| {
                    Error::Validation(format!("{} is not an AWS key spec", input.key_spec.api_name()))
                })?))
                .key_usage(KeyUsageType::from(input.key_usage.aws_name()))
                .set_origin(input.external.then_some(aws_sdk_kms::types::OriginType::External))
                .set_description(Some(input.description).filter(|d| !d.is_empty()))
                .set_policy(input.policy)
                .set_tags(Some(tags).filter(|t| !t.is_empty()))
                .send()
                .await
                .map_err(|e| self.error(e))?;
        out.key_metadata
            .map(key_metadata)
            .ok_or_else(|| Error::Other("CreateKey answered without KeyMetadata".to_owned()))
    }

    /// CreateAlias.
    /// <https://docs.aws.amazon.com/kms/latest/APIReference/API_CreateAlias.html>
    async fn create_alias(&self, alias_name: &str, target_key_id: &str) -> Result<()> {
        self.client
            .create_alias()
            .alias_name(alias_name)
            .target_key_id(target_key_id)
            .send()
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    /// DeleteAlias.
    /// <https://docs.aws.amazon.com/kms/latest/APIReference/API_DeleteAlias.html>
    async fn delete_alias(&self, alias_name: &str) -> Result<()> {
        self.client.delete_alias().alias_name(alias_name).send().await.map_err(|e| self.error(e))?;
        Ok(())
    }

    /// ScheduleKeyDeletion with PendingWindowInDays (AWS accepts 7–30): AWS's DeletionDate.
    /// <https://docs.aws.amazon.com/kms/latest/APIReference/API_ScheduleKeyDeletion.html>
    async fn schedule_key_deletion(&self, key_id: &str, pending_window_days: i32) -> Result<Option<OffsetDateTime>> {
        let out = self
            .client
            .schedule_key_deletion()
            .key_id(key_id)
            .pending_window_in_days(pending_window_days)
            .send()
            .await
            .map_err(|e| self.error(e))?;
        Ok(out.deletion_date.and_then(to_offset_date_time))
    }

    async fn cancel_key_deletion(&self, key_id: &str) -> Result<()> {
        self.client.cancel_key_deletion().key_id(key_id).send().await.map_err(|e| self.error(e))?;
        Ok(())
    }

    async fn enable_key(&self, key_id: &str) -> Result<()> {
        self.client.enable_key().key_id(key_id).send().await.map_err(|e| self.error(e))?;
        Ok(())
    }

    async fn disable_key(&self, key_id: &str) -> Result<()> {
        self.client.disable_key().key_id(key_id).send().await.map_err(|e| self.error(e))?;
        Ok(())
    }

    async fn update_key_description(&self, key_id: &str, description: &str) -> Result<()> {
        self.client
            .update_key_description()
            .key_id(key_id)
            .description(description)
            .send()
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    async fn tag_resource(&self, key_id: &str, tags: Vec<(String, String)>) -> Result<()> {
        let tags = tags
            .into_iter()
            .map(|(k, v)| aws_sdk_kms::types::Tag::builder().tag_key(k).tag_value(v).build())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Validation(e.to_string()))?;
        self.client.tag_resource().key_id(key_id).set_tags(Some(tags)).send().await.map_err(|e| self.error(e))?;
        Ok(())
    }

    async fn untag_resource(&self, key_id: &str, tag_keys: Vec<String>) -> Result<()> {
        self.client
            .untag_resource()
            .key_id(key_id)
            .set_tag_keys(Some(tag_keys))
            .send()
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    async fn put_key_policy(&self, key_id: &str, policy: &str) -> Result<()> {
        self.client
            .put_key_policy()
            .key_id(key_id)
            .policy_name("default")
            .policy(policy)
            .bypass_policy_lockout_safety_check(false)
            .send()
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    async fn get_parameters_for_import(&self, key_id: &str) -> Result<super::ImportParameters> {
        let out = self
            .client
            .get_parameters_for_import()
            .key_id(key_id)
            .wrapping_algorithm(aws_sdk_kms::types::AlgorithmSpec::RsaesOaepSha256)
            .wrapping_key_spec(aws_sdk_kms::types::WrappingKeySpec::Rsa2048)
            .send()
            .await
            .map_err(|e| self.error(e))?;
        let (Some(public_key), Some(token)) = (out.public_key, out.import_token) else {
            return Err(Error::Other("GetParametersForImport answered without PublicKey or ImportToken".to_owned()));
        };
        Ok(super::ImportParameters {
            public_key_der: public_key.into_inner(),
            import_token: zeroize::Zeroizing::new(token.into_inner()),
            parameters_valid_to: out.parameters_valid_to.and_then(to_offset_date_time),
        })
    }

    async fn import_key_material(&self, key_id: &str, input: ImportKeyMaterialInput<'_>) -> Result<()> {
        let mut req = self
            .client
            .import_key_material()
            .key_id(key_id)
            .import_token(aws_smithy_types::Blob::new(input.import_token.to_vec()))
            .encrypted_key_material(aws_smithy_types::Blob::new(input.encrypted_key_material.to_vec()));
        req = match input.valid_to {
            None => req.expiration_model(aws_sdk_kms::types::ExpirationModelType::KeyMaterialDoesNotExpire),
            Some(t) => req
                .expiration_model(aws_sdk_kms::types::ExpirationModelType::KeyMaterialExpires)
                .valid_to(DateTime::from_secs(t.unix_timestamp())),
        };
        req.send().await.map_err(|e| self.error(e))?;
        Ok(())
    }

    async fn delete_imported_key_material(&self, key_id: &str) -> Result<()> {
        self.client.delete_imported_key_material().key_id(key_id).send().await.map_err(|e| self.error(e))?;
        Ok(())
    }

    /// Encrypt. <https://docs.aws.amazon.com/kms/latest/APIReference/API_Encrypt.html>
    async fn encrypt(&self, key_id: &str, plaintext: &[u8], sealing: &Sealing<'_>) -> Result<Vec<u8>> {
        let out = self
            .client
            .encrypt()
            .key_id(key_id)
            .plaintext(Blob::new(plaintext.to_vec()))
            .set_encryption_algorithm(sealing.algorithm.map(EncryptionAlgorithmSpec::from))
            .set_encryption_context(context(sealing.context))
            .send()
            .await
            .map_err(|e| self.error(e))?;
        required(out.ciphertext_blob.map(Blob::into_inner), "Encrypt", "CiphertextBlob")
    }

    /// Decrypt. <https://docs.aws.amazon.com/kms/latest/APIReference/API_Decrypt.html>
    async fn decrypt(
        &self,
        key_id: &str,
        ciphertext: &[u8],
        sealing: &Sealing<'_>,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        let out = self
            .client
            .decrypt()
            .key_id(key_id)
            .ciphertext_blob(Blob::new(ciphertext.to_vec()))
            .set_encryption_algorithm(sealing.algorithm.map(EncryptionAlgorithmSpec::from))
            .set_encryption_context(context(sealing.context))
            .send()
            .await
            .map_err(|e| self.error(e))?;
        required(out.plaintext.map(|b| zeroize::Zeroizing::new(b.into_inner())), "Decrypt", "Plaintext")
    }

    /// ReEncrypt. <https://docs.aws.amazon.com/kms/latest/APIReference/API_ReEncrypt.html>
    async fn re_encrypt(&self, ciphertext: &[u8], source: Sealed<'_>, destination: Sealed<'_>) -> Result<Vec<u8>> {
        let out = self
            .client
            .re_encrypt()
            .ciphertext_blob(Blob::new(ciphertext.to_vec()))
            .source_key_id(source.key_id)
            .set_source_encryption_algorithm(source.sealing.algorithm.map(EncryptionAlgorithmSpec::from))
            .set_source_encryption_context(context(source.sealing.context))
            .destination_key_id(destination.key_id)
            .set_destination_encryption_algorithm(destination.sealing.algorithm.map(EncryptionAlgorithmSpec::from))
            .set_destination_encryption_context(context(destination.sealing.context))
            .send()
            .await
            .map_err(|e| self.error(e))?;
        required(out.ciphertext_blob.map(Blob::into_inner), "ReEncrypt", "CiphertextBlob")
    }

    /// GetPublicKey. <https://docs.aws.amazon.com/kms/latest/APIReference/API_GetPublicKey.html>
    async fn get_public_key(&self, key_id: &str) -> Result<PublicKeyInfo> {
        let out = self.client.get_public_key().key_id(key_id).send().await.map_err(|e| self.error(e))?;
        Ok(PublicKeyInfo {
            key_spec: out.key_spec().map(|s| s.as_str().to_owned()),
            key_usage: out.key_usage().map(|u| u.as_str().to_owned()),
            signing_algorithms: names(out.signing_algorithms()),
            encryption_algorithms: names(out.encryption_algorithms()),
            key_agreement_algorithms: names(out.key_agreement_algorithms()),
            der: required(out.public_key.map(Blob::into_inner), "GetPublicKey", "PublicKey")?,
        })
    }

    /// Sign. <https://docs.aws.amazon.com/kms/latest/APIReference/API_Sign.html>
    async fn sign(&self, key_id: &str, message: &[u8], message_type: &str, algorithm: &str) -> Result<Vec<u8>> {
        let out = self
            .client
            .sign()
            .key_id(key_id)
            .message(Blob::new(message.to_vec()))
            .message_type(MessageType::from(message_type))
            .signing_algorithm(SigningAlgorithmSpec::from(algorithm))
            .send()
            .await
            .map_err(|e| self.error(e))?;
        required(out.signature.map(Blob::into_inner), "Sign", "Signature")
    }

    /// Verify; AWS answers an invalid signature with KMSInvalidSignatureException.
    /// <https://docs.aws.amazon.com/kms/latest/APIReference/API_Verify.html>
    async fn verify(&self, key_id: &str, message: &[u8], signature: Signature<'_>) -> Result<bool> {
        let r = self
            .client
            .verify()
            .key_id(key_id)
            .message(Blob::new(message.to_vec()))
            .message_type(MessageType::from(signature.message_type))
            .signature(Blob::new(signature.signature.to_vec()))
            .signing_algorithm(SigningAlgorithmSpec::from(signature.algorithm))
            .send()
            .await;
        match r {
            Ok(out) => Ok(out.signature_valid),
            Err(e) if e.code() == Some("KMSInvalidSignatureException") => Ok(false),
            Err(e) => Err(self.error(e)),
        }
    }

    /// GenerateMac. <https://docs.aws.amazon.com/kms/latest/APIReference/API_GenerateMac.html>
    async fn generate_mac(&self, key_id: &str, message: &[u8], algorithm: &str) -> Result<Vec<u8>> {
        let out = self
            .client
            .generate_mac()
            .key_id(key_id)
            .message(Blob::new(message.to_vec()))
            .mac_algorithm(MacAlgorithmSpec::from(algorithm))
            .send()
            .await
            .map_err(|e| self.error(e))?;
        required(out.mac.map(Blob::into_inner), "GenerateMac", "Mac")
    }

    /// VerifyMac; AWS answers an invalid MAC with KMSInvalidMacException.
    /// <https://docs.aws.amazon.com/kms/latest/APIReference/API_VerifyMac.html>
    async fn verify_mac(&self, key_id: &str, message: &[u8], mac: &[u8], algorithm: &str) -> Result<bool> {
        let r = self
            .client
            .verify_mac()
            .key_id(key_id)
            .message(Blob::new(message.to_vec()))
            .mac(Blob::new(mac.to_vec()))
            .mac_algorithm(MacAlgorithmSpec::from(algorithm))
            .send()
            .await;
        match r {
            Ok(out) => Ok(out.mac_valid),
            Err(e) if e.code() == Some("KMSInvalidMacException") => Ok(false),
            Err(e) => Err(self.error(e)),
        }
    }

    /// GenerateDataKey / GenerateDataKeyWithoutPlaintext.
    /// <https://docs.aws.amazon.com/kms/latest/APIReference/API_GenerateDataKey.html>
    async fn generate_data_key(
        &self,
        key_id: &str,
        size: DataKeySize,
        ctx: &EncryptionContext,
        with_plaintext: bool,
    ) -> Result<DataKey> {
        let (spec, bytes) = match size {
            DataKeySize::Spec(s) => (Some(DataKeySpec::from(s)), None),
            DataKeySize::Bytes(n) => (None, Some(n)),
        };
        if with_plaintext {
            let out = self
                .client
                .generate_data_key()
                .key_id(key_id)
                .set_key_spec(spec)
                .set_number_of_bytes(bytes)
                .set_encryption_context(context(ctx))
                .send()
                .await
                .map_err(|e| self.error(e))?;
            let plaintext = required(
                out.plaintext.map(|b| zeroize::Zeroizing::new(b.into_inner())),
                "GenerateDataKey",
                "Plaintext",
            )?;
            let ciphertext = required(out.ciphertext_blob.map(Blob::into_inner), "GenerateDataKey", "CiphertextBlob")?;
            return Ok(DataKey { plaintext: Some(plaintext), ciphertext });
        }
        let out = self
            .client
            .generate_data_key_without_plaintext()
            .key_id(key_id)
            .set_key_spec(spec)
            .set_number_of_bytes(bytes)
            .set_encryption_context(context(ctx))
            .send()
            .await
            .map_err(|e| self.error(e))?;
        let ciphertext =
            required(out.ciphertext_blob.map(Blob::into_inner), "GenerateDataKeyWithoutPlaintext", "CiphertextBlob")?;
        Ok(DataKey { plaintext: None, ciphertext })
    }

    /// GenerateDataKeyPair / GenerateDataKeyPairWithoutPlaintext.
    /// <https://docs.aws.amazon.com/kms/latest/APIReference/API_GenerateDataKeyPair.html>
    async fn generate_data_key_pair(
        &self,
        key_id: &str,
        pair_spec: &str,
        ctx: &EncryptionContext,
        with_plaintext: bool,
    ) -> Result<DataKeyPair> {
        let op = "GenerateDataKeyPair";
        if with_plaintext {
            let out = self
                .client
                .generate_data_key_pair()
                .key_id(key_id)
                .key_pair_spec(DataKeyPairSpec::from(pair_spec))
                .set_encryption_context(context(ctx))
                .send()
                .await
                .map_err(|e| self.error(e))?;
            return Ok(DataKeyPair {
                private_key_plaintext: Some(required(
                    out.private_key_plaintext.map(|b| zeroize::Zeroizing::new(b.into_inner())),
                    op,
                    "PrivateKeyPlaintext",
                )?),
                private_key_ciphertext: required(
                    out.private_key_ciphertext_blob.map(Blob::into_inner),
                    op,
                    "PrivateKeyCiphertextBlob",
                )?,
                public_key: required(out.public_key.map(Blob::into_inner), op, "PublicKey")?,
            });
        }
        let out = self
            .client
            .generate_data_key_pair_without_plaintext()
            .key_id(key_id)
            .key_pair_spec(DataKeyPairSpec::from(pair_spec))
            .set_encryption_context(context(ctx))
            .send()
            .await
            .map_err(|e| self.error(e))?;
        Ok(DataKeyPair {
            private_key_plaintext: None,
            private_key_ciphertext: required(
                out.private_key_ciphertext_blob.map(Blob::into_inner),
                op,
                "PrivateKeyCiphertextBlob",
            )?,
            public_key: required(out.public_key.map(Blob::into_inner), op, "PublicKey")?,
        })
    }

    /// DeriveSharedSecret. <https://docs.aws.amazon.com/kms/latest/APIReference/API_DeriveSharedSecret.html>
    async fn derive_shared_secret(
        &self,
        key_id: &str,
        algorithm: &str,
        public_key: &[u8],
    ) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        let out = self
            .client
            .derive_shared_secret()
            .key_id(key_id)
            .key_agreement_algorithm(KeyAgreementAlgorithmSpec::from(algorithm))
            .public_key(Blob::new(public_key.to_vec()))
            .send()
            .await
            .map_err(|e| self.error(e))?;
        required(
            out.shared_secret.map(|b| zeroize::Zeroizing::new(b.into_inner())),
            "DeriveSharedSecret",
            "SharedSecret",
        )
    }

    async fn list_key_aliases(&self, key_id: &str, marker: Option<String>) -> Result<Page<AliasEntry>> {
        let out =
            self.client.list_aliases().key_id(key_id).set_marker(marker).send().await.map_err(|e| self.error(e))?;
        Ok(alias_page(out))
    }

    /// UpdateAlias.
    /// <https://docs.aws.amazon.com/kms/latest/APIReference/API_UpdateAlias.html>
    async fn update_alias(&self, alias_name: &str, target_key_id: &str) -> Result<()> {
        let req = self.client.update_alias().alias_name(alias_name).target_key_id(target_key_id);
        req.send().await.map_err(|e| self.error(e))?;
        Ok(())
    }

    /// RotateKeyOnDemand.
    /// <https://docs.aws.amazon.com/kms/latest/APIReference/API_RotateKeyOnDemand.html>
    async fn rotate_key_on_demand(&self, key_id: &str) -> Result<()> {
        self.client.rotate_key_on_demand().key_id(key_id).send().await.map_err(|e| self.error(e))?;
        Ok(())
    }

    /// EnableKeyRotation.
    /// <https://docs.aws.amazon.com/kms/latest/APIReference/API_EnableKeyRotation.html>
    async fn enable_key_rotation(&self, key_id: &str, period_days: Option<i32>) -> Result<()> {
        let req = self.client.enable_key_rotation().key_id(key_id).set_rotation_period_in_days(period_days);
        req.send().await.map_err(|e| self.error(e))?;
        Ok(())
    }

    /// DisableKeyRotation.
    /// <https://docs.aws.amazon.com/kms/latest/APIReference/API_DisableKeyRotation.html>
    async fn disable_key_rotation(&self, key_id: &str) -> Result<()> {
        self.client.disable_key_rotation().key_id(key_id).send().await.map_err(|e| self.error(e))?;
        Ok(())
    }

    /// GetKeyRotationStatus.
    /// <https://docs.aws.amazon.com/kms/latest/APIReference/API_GetKeyRotationStatus.html>
    async fn get_key_rotation_status(&self, key_id: &str) -> Result<RotationStatus> {
        let out = self.client.get_key_rotation_status().key_id(key_id).send().await.map_err(|e| self.error(e))?;
        Ok(RotationStatus {
            enabled: out.key_rotation_enabled,
            period_days: out.rotation_period_in_days,
            next_rotation: out.next_rotation_date.and_then(to_offset_date_time),
        })
    }

    /// ListKeyRotations (completed rotations, newest last as AWS lists them).
    /// <https://docs.aws.amazon.com/kms/latest/APIReference/API_ListKeyRotations.html>
    async fn list_key_rotations(
        &self,
        key_id: &str,
        limit: Option<i32>,
        marker: Option<String>,
    ) -> Result<Page<KeyRotation>> {
        let req = self.client.list_key_rotations().key_id(key_id).set_limit(limit).set_marker(marker);
        let out = req.send().await.map_err(|e| self.error(e))?;
        let items = out
            .rotations
            .unwrap_or_default()
            .into_iter()
            .map(|r| KeyRotation {
                rotation_date: r.rotation_date.and_then(to_offset_date_time),
                rotation_type: r.rotation_type.map(|t| t.as_str().to_owned()),
                key_material_id: r.key_material_id,
            })
            .collect();
        Ok(Page { items, next_marker: next_marker(out.truncated, out.next_marker) })
    }
}

/// AWS's NextMarker, only when the page says Truncated.
fn next_marker(truncated: bool, marker: Option<String>) -> Option<String> {
    if !truncated {
        return None;
    }
    if marker.is_none() {
        tracing::warn!("AWS KMS answered Truncated without NextMarker; listing stops here");
    }
    marker
}

fn key_metadata(m: aws_sdk_kms::types::KeyMetadata) -> KeyMetadata {
    KeyMetadata {
        key_id: m.key_id,
        arn: m.arn.unwrap_or_default(),
        key_state: m.key_state.map(|v| v.as_str().to_owned()),
        key_spec: m.key_spec.map(|v| v.as_str().to_owned()),
        key_usage: m.key_usage.map(|v| v.as_str().to_owned()),
        origin: m.origin.map(|v| v.as_str().to_owned()),
        key_manager: m.key_manager.map(|v| v.as_str().to_owned()),
        description: m.description,
        enabled: m.enabled,
        creation_date: m.creation_date.and_then(to_offset_date_time),
        deletion_date: m.deletion_date.and_then(to_offset_date_time),
        valid_to: m.valid_to.and_then(to_offset_date_time),
    }
}

/// Exact (epoch seconds + nanoseconds); `None` outside `time`'s range.
fn to_offset_date_time(date: DateTime) -> Option<OffsetDateTime> {
    let nanos = i128::from(date.secs()) * 1_000_000_000 + i128::from(date.subsec_nanos());
    OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()
}

/// Maps an SDK error to [`Error`] without `Debug` output of the SDK error (it can be huge).
///
/// - Service errors by AWS error code (see [`by_code`]); no code (HTML, empty body): Unavailable.
/// - DispatchFailure: Timeout when the connector timed out, else Unreachable; both with
///   [`describe_dispatch_failure`]'s message.
/// - TimeoutError (attempt or operation timeout): Timeout.
/// - ResponseError (a response that does not parse): Unavailable.
/// - ConstructionFailure and anything else: Other.
fn map_sdk_error<E>(err: &SdkError<E, HttpResponse>, endpoint: &str) -> Error
where
    E: ProvideErrorMetadata + StdError + 'static,
{
    match err {
        SdkError::ServiceError(context) => {
            let status = context.raw().status().as_u16();
            if status == 501 {
                return Error::Unsupported(format!("{endpoint} answered HTTP {status} for this operation"));
            }
            match context.err().code() {
                Some(code) => by_code(code, context.err().message(), status),
                None if status >= 500 => {
                    Error::Unavailable(format!("HTTP {status} from {endpoint} without AWS error details"))
                }
                None => Error::Unavailable(format!(
                    "HTTP {status} from {endpoint} without an AWS error code (is this an AWS KMS endpoint?)"
                )),
            }
        }
        SdkError::DispatchFailure(failure) => {
            let message = match failure.as_connector_error() {
                Some(connector_error) => describe_dispatch_failure(connector_error, endpoint),
                None => describe_dispatch_failure(err, endpoint),
            };
            if failure.is_timeout() { Error::Timeout(message) } else { Error::Unreachable(message) }
        }
        SdkError::TimeoutError(_) => match innermost(err) {
            Some(detail) => Error::Timeout(format!("timed out waiting for {endpoint} ({detail})")),
            None => Error::Timeout(format!("timed out waiting for {endpoint}")),
        },
        SdkError::ResponseError(context) => Error::Unavailable(format!(
            "unreadable answer from {endpoint} (HTTP {}; is this an AWS KMS endpoint?)",
            context.raw().status().as_u16()
        )),
        SdkError::ConstructionFailure(_) => {
            Error::Other(format!("cannot build the request: {}", innermost(err).unwrap_or_default()))
        }
        _ => Error::Other(innermost(err).unwrap_or_else(|| "unknown SDK error".to_owned())),
    }
}

/// What an AWS KMS error code means to Keyward; each maps to one [`Error`] and, through it, to
/// one gRPC code (README, "Errors").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwsErrorClass {
    /// NOT_FOUND.
    NotFound,
    /// ALREADY_EXISTS.
    AlreadyExists,
    /// PERMISSION_DENIED (reason AWS_ACCESS_DENIED).
    AccessDenied,
    /// FAILED_PRECONDITION (AWS_CREDENTIALS_REJECTED): the group's credentials.
    CredentialsRejected,
    /// INVALID_ARGUMENT: AWS refused the request's contents.
    Validation,
    /// FAILED_PRECONDITION (AWS_KEY_STATE): not in the key's current state.
    InvalidState,
    /// RESOURCE_EXHAUSTED: an AWS limit.
    LimitExceeded,
    /// ABORTED: something else is changing the key now; retry later.
    Conflict,
    /// UNAVAILABLE: AWS's side (throttling, internal, a dependency); retried by the SDK first.
    Unavailable,
    /// DEADLINE_EXCEEDED.
    Timeout,
    /// UNIMPLEMENTED: the endpoint does not have the operation.
    Unsupported,
    /// INTERNAL: an error of a request Keyward never sends (DryRun, custom key stores); a bug.
    Unexpected,
}

/// Every error code the AWS KMS API Reference lists for the operations Keyward calls, and
/// the errors common to all AWS services, with what each means to Keyward. Sources, read
/// 2026-12-03: each operation's "Errors" section, https://docs.aws.amazon.com/kms/latest/APIReference/
/// (as modelled in aws/api-models-aws `kms/service/2014-11-01/kms-2014-11-01.json` @56c8953e,
/// 2025-04-02, and botocore `data/kms/2014-11-01/service-2.json` @3830c65d, 2026-05-20), and
/// https://docs.aws.amazon.com/kms/latest/APIReference/CommonErrors.html.
///
/// A code not listed here: HTTP 5xx or 429 is UNAVAILABLE (AWS's side, worth a retry), any
/// other is INTERNAL (AWS refused in a way Keyward does not know; the message names the code).
/// `true`: the message shown starts with the code (where the class alone does not say why).
pub const AWS_ERRORS: &[(&str, AwsErrorClass, bool)] = {
    use AwsErrorClass::*;
    &[
        // Errors of the operations (KMS).
        ("AlreadyExistsException", AlreadyExists, false),
        ("CloudHsmClusterInvalidConfigurationException", Unexpected, true),
        ("ConflictException", Conflict, true),
        ("CustomKeyStoreInvalidStateException", Unexpected, true),
        ("CustomKeyStoreNotFoundException", Unexpected, true),
        ("DependencyTimeoutException", Unavailable, true),
        ("DisabledException", InvalidState, false),
        ("DryRunOperationException", Unexpected, true),
        ("ExpiredImportTokenException", Validation, true),
        ("IncorrectKeyException", Validation, true),
        ("IncorrectKeyMaterialException", Validation, true),
        ("InvalidAliasNameException", Validation, false),
        ("InvalidArnException", Validation, false),
        ("InvalidCiphertextException", Validation, true),
        ("InvalidGrantTokenException", Validation, true),
        ("InvalidImportTokenException", Validation, true),
        ("InvalidKeyUsageException", Validation, true),
        ("InvalidMarkerException", Validation, false),
        ("KMSInternalException", Unavailable, true),
        // Verify and VerifyMac answer these as "not valid"; anywhere else they are input errors.
        ("KMSInvalidMacException", Validation, true),
        ("KMSInvalidSignatureException", Validation, true),
        ("KMSInvalidStateException", InvalidState, false),
        ("KeyUnavailableException", Unavailable, true),
        ("LimitExceededException", LimitExceeded, false),
        ("MalformedPolicyDocumentException", Validation, false),
        ("NotFoundException", NotFound, false),
        ("TagException", Validation, false),
        ("UnsupportedOperationException", Unsupported, true),
        ("XksKeyAlreadyInUseException", Unexpected, true),
        ("XksKeyInvalidConfigurationException", Unexpected, true),
        ("XksKeyNotFoundException", Unexpected, true),
        // Errors common to all AWS services.
        ("AccessDeniedException", AccessDenied, false),
        ("AccessDenied", AccessDenied, false),
        ("NotAuthorized", AccessDenied, false),
        ("OptInRequired", AccessDenied, true),
        ("IncompleteSignature", CredentialsRejected, false),
        ("InvalidClientTokenId", CredentialsRejected, false),
        ("UnrecognizedClientException", CredentialsRejected, false),
        ("InvalidSignatureException", CredentialsRejected, false),
        ("SignatureDoesNotMatch", CredentialsRejected, false),
        ("ExpiredTokenException", CredentialsRejected, false),
        ("MissingAuthenticationToken", CredentialsRejected, false),
        // The request's signing time is over 15 minutes off AWS's clock: this host's clock.
        ("RequestExpired", CredentialsRejected, true),
        ("InternalFailure", Unavailable, true),
        ("ServiceUnavailable", Unavailable, true),
        ("ThrottlingException", Unavailable, true),
        ("Throttling", Unavailable, true),
        ("RequestAbortedException", Unavailable, true),
        ("RequestTimeoutException", Timeout, true),
        ("ValidationError", Validation, false),
        ("ValidationException", Validation, false),
        ("InvalidParameterValue", Validation, false),
        ("InvalidParameterCombination", Validation, false),
        ("MissingParameter", Validation, false),
        ("MalformedHttpRequestException", Validation, true),
        ("RequestEntityTooLargeException", Validation, true),
        ("InvalidAction", Unsupported, true),
        ("UnknownOperationException", Unsupported, true),
    ]
};

/// AWS error code → [`Error`], by [`AWS_ERRORS`], with AWS's message (or the code and status
/// when it sent none).
fn by_code(code: &str, message: Option<&str>, status: u16) -> Error {
    let message = match message.map(str::trim).filter(|m| !m.is_empty()) {
        Some(message) => clip(message),
        None => format!("{code} (HTTP {status})"),
    };
    let Some(&(_, class, show_code)) = AWS_ERRORS.iter().find(|(c, _, _)| *c == code) else {
        let message = format!("{code}: {message}");
        return if status >= 500 || status == 429 { Error::Unavailable(message) } else { Error::Other(message) };
    };
    let message = if show_code && !message.starts_with(code) { format!("{code}: {message}") } else { message };
    match class {
        AwsErrorClass::NotFound => Error::NotFound(message),
        AwsErrorClass::AlreadyExists => Error::AlreadyExists(message),
        AwsErrorClass::AccessDenied => Error::AccessDenied(message),
        AwsErrorClass::CredentialsRejected => Error::CredentialsRejected(message),
        AwsErrorClass::Validation => Error::Validation(message),
        AwsErrorClass::InvalidState => Error::InvalidState(message),
        AwsErrorClass::LimitExceeded => Error::LimitExceeded(message),
        AwsErrorClass::Conflict => Error::Conflict(message),
        AwsErrorClass::Unavailable => Error::Unavailable(message),
        AwsErrorClass::Timeout => Error::Timeout(message),
        AwsErrorClass::Unsupported => Error::Unsupported(message),
        AwsErrorClass::Unexpected => Error::Other(message),
    }
}

/// The innermost error text of `err`'s source chain (below the SDK error itself), clipped.
fn innermost(err: &(dyn StdError + 'static)) -> Option<String> {
    let mut text = None;
    let mut next = err.source();
    while let Some(e) = next {
        let shown = e.to_string();
        if !shown.trim().is_empty() {
            text = Some(shown);
        }
        next = e.source();
    }
    text.map(|t| clip(&t))
}

/// At most 500 characters of an AWS or emulator message.
fn clip(text: &str) -> String {
    match text.char_indices().nth(500) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// The encryption context of a request: left out when empty.
fn context(c: &EncryptionContext) -> Option<std::collections::HashMap<String, String>> {
    (!c.is_empty()).then(|| c.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

/// A response field AWS documents as always there; its absence is AWS's (or an emulator's) fault.
fn required<T>(v: Option<T>, op: &str, field: &str) -> Result<T> {
    v.ok_or_else(|| Error::Other(format!("{op} answered without {field}")))
}

/// The AWS name of an SDK enum value.
trait AsStr {
    fn text(&self) -> &str;
}

macro_rules! as_str {
    ($($t:ty),*) => { $(impl AsStr for $t { fn text(&self) -> &str { self.as_str() } })* };
}
as_str!(SigningAlgorithmSpec, EncryptionAlgorithmSpec, KeyAgreementAlgorithmSpec);

fn names<T: AsStr>(v: &[T]) -> Vec<String> {
    v.iter().map(|a| a.text().to_owned()).collect()
}

/// A ListAliases answer as a page; entries without AliasName are skipped.
fn alias_page(out: aws_sdk_kms::operation::list_aliases::ListAliasesOutput) -> Page<AliasEntry> {
    let items = out
        .aliases
        .unwrap_or_default()
        .into_iter()
        .filter_map(|entry| Some(AliasEntry { alias_name: entry.alias_name?, target_key_id: entry.target_key_id }))
        .collect();
    Page { items, next_marker: next_marker(out.truncated, out.next_marker) }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::Mutex;
    use std::time::Instant;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::domain::{EndpointUrl, Region};

    const SECRET: &str = "keyward-test-secret-0123456789";

    fn config(endpoint: &str, access_key_id: &str) -> AwsKmsConfig {
        AwsKmsConfig {
            region: Region::parse("us-east-1").unwrap(),
            endpoint_url: Some(EndpointUrl::parse(endpoint).unwrap()),
            access_key_id: access_key_id.to_owned(),
            secret_access_key: Some(SecretString::from(SECRET)),
            ca_certificate_pem: None,
            client_certificate_pem: None,
            client_private_key_pem: None,
            validate_host: true,
            unopened: Vec::new(),
        }
    }

    /// One attempt, short limits.
    fn quick() -> AwsConnector {
        AwsConnector::new(Timeouts {
            connect: Duration::from_secs(1),
            attempt: Duration::from_secs(1),
            operation: Duration::from_secs(3),
            max_attempts: 1,
        })
    }

    fn kms(endpoint: &str) -> AwsKms {
        quick().client(&config(endpoint, "AKIAKEYWARDTEST"), Purpose::Work).unwrap()
    }

    /// Reads one request (head and content-length body); returns it as text.
    async fn read_request(tcp: &mut TcpStream) -> String {
        let mut data = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if data.len() >= end + 4 + length {
                    return String::from_utf8_lossy(&data).into_owned();
                }
            }
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return String::from_utf8_lossy(&data).into_owned(),
                Ok(n) => data.extend_from_slice(&buf[..n]),
            }
        }
    }

    /// A plain-HTTP server answering every request with `status`, `content_type` and `body`.
    /// Returns its endpoint URL and the requests it saw.
    async fn canned(status: u16, content_type: &str, body: &str) -> (String, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let response = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let requests = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let request = read_request(&mut tcp).await;
                requests.lock().unwrap().push(request);
                let _ = tcp.write_all(response.as_bytes()).await;
                let _ = tcp.shutdown().await;
            }
        });
        (endpoint, seen)
    }

    async fn describe_error(status: u16, content_type: &str, body: &str) -> Error {
        let (endpoint, _) = canned(status, content_type, body).await;
        kms(&endpoint).describe_key("k").await.unwrap_err()
    }

    fn aws_error(code: &str, message: &str) -> String {
        format!(r#"{{"__type":"{code}","message":"{message}"}}"#)
    }

    const JSON: &str = "application/x-amz-json-1.1";

    #[tokio::test]
    async fn service_errors_map_by_code() {
        let cases = [
            ("NotFoundException", Error::NotFound("Key 'k' does not exist".to_owned())),
            ("com.amazonaws.kms#AlreadyExistsException", Error::AlreadyExists("Key 'k' does not exist".to_owned())),
            ("AccessDeniedException", Error::AccessDenied("Key 'k' does not exist".to_owned())),
            ("UnrecognizedClientException", Error::CredentialsRejected("Key 'k' does not exist".to_owned())),
            ("InvalidClientTokenId", Error::CredentialsRejected("Key 'k' does not exist".to_owned())),
            ("TagException", Error::Validation("Key 'k' does not exist".to_owned())),
            ("KMSInvalidStateException", Error::InvalidState("Key 'k' does not exist".to_owned())),
            ("DisabledException", Error::InvalidState("Key 'k' does not exist".to_owned())),
            ("LimitExceededException", Error::LimitExceeded("Key 'k' does not exist".to_owned())),
            ("ThrottlingException", Error::Unavailable("ThrottlingException: Key 'k' does not exist".to_owned())),
            ("SomethingNewException", Error::Other("SomethingNewException: Key 'k' does not exist".to_owned())),
        ];
        for (code, expected) in cases {
            assert_eq!(describe_error(400, JSON, &aws_error(code, "Key 'k' does not exist")).await, expected, "{code}");
        }
        assert_eq!(
            describe_error(400, JSON, r#"{"__type":"ValidationException"}"#).await,
            Error::Validation("ValidationException (HTTP 400)".to_owned())
        );
        assert_eq!(
            describe_error(500, JSON, &aws_error("KMSInternalException", "boom")).await,
            Error::Unavailable("KMSInternalException: boom".to_owned())
        );
    }

    #[tokio::test]
    async fn unparseable_answers_are_unavailable() {
        for (status, content_type, body) in
            [(500, JSON, ""), (502, "text/html", "<html>Bad gateway</html>"), (200, "text/html", "<html>hello</html>")]
        {
            match describe_error(status, content_type, body).await {
                Error::Unavailable(message) => {
                    assert!(message.contains(&format!("HTTP {status}")), "{message}")
                }
                other => panic!("HTTP {status} {body:?}: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn requests_are_signed_with_the_group_credentials_only() {
        let (endpoint, seen) = canned(200, JSON, r#"{"Keys":[],"Truncated":false}"#).await;
        kms(&endpoint).list_keys(Some(10), None).await.unwrap();
        let requests = seen.lock().unwrap().clone();
        assert_eq!(requests.len(), 1);
        let request = &requests[0];
        assert!(request.contains("x-amz-target: TrentService.ListKeys"), "{request}");
        assert!(request.contains("Credential=AKIAKEYWARDTEST/"), "{request}");
        assert!(request.contains("/us-east-1/kms/aws4_request"), "{request}");
        assert!(request.ends_with(r#"{"Limit":10}"#), "{request}");
        assert!(!request.contains(SECRET), "{request}");
    }

    #[tokio::test]
    async fn pages_carry_next_marker_only_when_truncated() {
        let (endpoint, seen) = canned(
            200,
            JSON,
            r#"{"Keys":[{"KeyId":"k1","KeyArn":"arn:aws:kms:us-east-1:111122223333:key/k1"},{"KeyArn":"no-id"}],"NextMarker":"m2","Truncated":true}"#,
        )
        .await;
        let page = kms(&endpoint).list_keys(Some(2), Some("m1".to_owned())).await.unwrap();
        assert_eq!(
            page.items,
            vec![KeyListEntry {
                key_id: "k1".to_owned(),
                key_arn: "arn:aws:kms:us-east-1:111122223333:key/k1".to_owned()
            }]
        );
        assert_eq!(page.next_marker.as_deref(), Some("m2"));
        assert!(seen.lock().unwrap()[0].ends_with(r#"{"Limit":2,"Marker":"m1"}"#));

        let (endpoint, _) =
            canned(200, JSON, r#"{"Aliases":[{"AliasName":"alias/a","TargetKeyId":"k1"},{"AliasName":"alias/aws/s3"}],"NextMarker":"m","Truncated":false}"#)
                .await;
        let page = kms(&endpoint).list_aliases(None, None).await.unwrap();
        assert_eq!(page.next_marker, None);
        assert_eq!(
            page.items,
            vec![
                AliasEntry { alias_name: "alias/a".to_owned(), target_key_id: Some("k1".to_owned()) },
                AliasEntry { alias_name: "alias/aws/s3".to_owned(), target_key_id: None },
            ]
        );
    }

    #[tokio::test]
    async fn key_metadata_is_converted() {
        let (endpoint, _) = canned(
            200,
            JSON,
            r#"{"KeyMetadata":{"KeyId":"k1","Arn":"arn:k1","KeyState":"PendingDeletion","KeySpec":"RSA_2048","KeyUsage":"SIGN_VERIFY","Origin":"AWS_KMS","KeyManager":"CUSTOMER","Enabled":false,"CreationDate":1.7000000005E9,"DeletionDate":1700604800}}"#,
        )
        .await;
        let metadata = kms(&endpoint).describe_key("k1").await.unwrap();
        assert_eq!(
            metadata,
            KeyMetadata {
                key_id: "k1".to_owned(),
                arn: "arn:k1".to_owned(),
                key_state: Some("PendingDeletion".to_owned()),
                key_spec: Some("RSA_2048".to_owned()),
                key_usage: Some("SIGN_VERIFY".to_owned()),
                origin: Some("AWS_KMS".to_owned()),
                key_manager: Some("CUSTOMER".to_owned()),
                description: None,
                enabled: false,
                creation_date: Some(OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_500_000_000).unwrap()),
                deletion_date: Some(OffsetDateTime::from_unix_timestamp(1_700_604_800).unwrap()),
                valid_to: None,
            }
        );
        assert_eq!(
            to_offset_date_time(DateTime::from_secs_and_nanos(-1, 250_000_000)),
            Some(OffsetDateTime::from_unix_timestamp_nanos(-750_000_000).unwrap())
        );
    }

    #[tokio::test]
    async fn closed_port_is_unreachable() {
        let port = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
        let err = kms(&format!("http://127.0.0.1:{port}")).list_keys(None, None).await.unwrap_err();
        assert_eq!(err, Error::Unreachable(format!("connection refused by 127.0.0.1:{port}")));
    }

    #[tokio::test]
    async fn silent_server_times_out() {
        // Accepts and reads, never answers.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut tcp, _)) = listener.accept().await {
                read_request(&mut tcp).await;
                held.push(tcp);
            }
        });
        let started = Instant::now();
        let err = kms(&endpoint).list_keys(None, None).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
        server.abort();
        assert_eq!(
            err,
            Error::Timeout(format!(
                "timed out waiting for {endpoint} (operation attempt timeout (single attempt) occurred after 1s)"
            ))
        );
    }

    #[test]
    fn settings_are_checked_without_echoing_secrets() {
        let connector = AwsConnector::new(Timeouts::standard());
        let error = |config: AwsKmsConfig| match connector.client(&config, Purpose::Work) {
            Err(Error::Config(message)) => message,
            other => panic!("expected a Config error, got {other:?}"),
        };
        let mut no_secret = config("http://127.0.0.1:4566", "AKIAKEYWARDTEST");
        no_secret.secret_access_key = None;
        assert_eq!(error(no_secret), "secret_access_key is not set");
        assert_eq!(error(config("http://127.0.0.1:4566", " ")), "access_key_id is not set");
        let mut bad_ca = config("https://kms.example", "AKIA");
        bad_ca.ca_certificate_pem = Some("nope".to_owned());
        assert_eq!(error(bad_ca), "ca_certificate_pem: no certificate found");

        let kms = connector.client(&config("https://kms.example:8443", "AKIA"), Purpose::Probe).unwrap();
        let shown = format!("{kms:?}");
        assert!(shown.contains("https://kms.example:8443") && !shown.contains(SECRET), "{shown}");
        let mut public = config("https://kms.example", "AKIA");
        public.endpoint_url = None;
        assert_eq!(connector.client(&public, Purpose::Work).unwrap().endpoint(), "https://kms.us-east-1.amazonaws.com");
    }

    #[test]
    fn probe_timeouts() {
        let connector = AwsConnector::new(Timeouts::standard());
        assert_eq!(
            connector.timeouts_for(Purpose::Probe),
            Timeouts {
                connect: Duration::from_secs(3),
                attempt: Duration::from_secs(5),
                operation: Duration::from_secs(5),
                max_attempts: 1
            }
        );
        assert_eq!(connector.timeouts_for(Purpose::Work), Timeouts::standard());
        assert_eq!(Timeouts::probe(Duration::from_secs(8)).attempt, Duration::from_secs(8));
    }
}
