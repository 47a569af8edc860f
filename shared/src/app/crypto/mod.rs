//! Data-plane use cases (CryptoService): Encrypt, Decrypt, WrapKey and UnwrapKey with one key
//! here; `signing` (GetPublicKey, Sign, Verify, GenerateMac, VerifyMac, DeriveSharedSecret) and
//! `data_keys` (GenerateDataKey, GenerateDataKeyPair, ReEncrypt) beside it.
//!
//! Keyward keys (REGULAR groups) work here, with material opened from the store: AES-256-GCM in
//! the format of [`crate::crypto::keys::encrypt`] (the ciphertext names its key), and AES key
//! wrap with padding (RFC 5649). Virtual keys call AWS KMS Encrypt/Decrypt — symmetric keys with
//! an encryption context, RSA keys with RSAES-OAEP, SM2 keys with SM2PKE; AWS has no RFC 5649
//! wrap, so WrapKey/UnwrapKey refuse them.
//!
//! Every call checks the key first: the operation must be in its `key_ops` and its state must be
//! ENABLED — Keyward's own records decide, before any AWS call. Nothing here changes state, so
//! nothing is audited; plaintext, ciphertext and material are never logged.

use std::sync::Arc;

use zeroize::Zeroizing;

use super::support::checks::{permits, usable};
use super::{Ctx, Keyward};
use crate::crypto::keys as ck;
use crate::domain::{GroupId, Key, KeyId, KeyOp, KeySpec, algorithms};
use crate::kms::{self, EncryptionContext, Kms, Sealing};
use crate::{Error, Precondition, Result};

mod data_keys;
mod signing;

/// Groups' `audit_key_use` as read in the last second, so that an unaudited call costs no
/// database read; emptied of a group when this process changes it (another server's change
/// counts within a second).
#[derive(Default)]
pub(crate) struct KeyUseFlags(std::sync::Mutex<std::collections::HashMap<GroupId, (time::OffsetDateTime, bool)>>);

impl KeyUseFlags {
    const TTL: time::Duration = time::Duration::seconds(1);

    fn get(&self, g: GroupId, now: time::OffsetDateTime) -> Option<bool> {
        let map = self.0.lock().ok()?;
        map.get(&g).filter(|(at, _)| now - *at < Self::TTL).map(|(_, on)| *on)
    }

    fn put(&self, g: GroupId, on: bool, now: time::OffsetDateTime) {
        if let Ok(mut map) = self.0.lock() {
            if map.len() >= 10_000 {
                map.clear();
            }
            map.insert(g, (now, on));
        }
    }

    pub(crate) fn forget(&self, g: GroupId) {
        if let Ok(mut map) = self.0.lock() {
            map.remove(&g);
        }
    }
}

pub use data_keys::DataKeyRequest;
pub use signing::{PublicKey, Signing};

/// How Encrypt, Decrypt and ReEncrypt bind and choose.
#[derive(Debug, Clone, Default)]
pub struct Binding {
    /// Additional authenticated data: Keyward keys bind it; AWS symmetric keys carry it as the
    /// encryption context pair `keyward:aad` (base64).
    pub aad: Vec<u8>,
    /// AWS's encryption context (virtual symmetric keys only).
    pub encryption_context: EncryptionContext,
    /// AWS's EncryptionAlgorithmSpec: empty (or SYMMETRIC_DEFAULT) for symmetric keys;
    /// RSAES_OAEP_SHA_1 or RSAES_OAEP_SHA_256 for RSA keys, SM2PKE for SM2 keys (required).
    pub encryption_algorithm: String,
}

/// The encryption context pair that carries `aad` to AWS.
const AAD_CONTEXT_KEY: &str = "keyward:aad";
/// AWS's limit on an encryption context, counted as the bytes of its keys and values.
const CONTEXT_MAX: usize = 8192;

/// The binding of a virtual key (or a Keyward key pair) as AWS takes it: the algorithm
/// (`None`: symmetric default) and the context (with `aad` in it), checked against the key's
/// spec. `field` prefixes the field names
/// (`""`, `source_`, `destination_`).
fn sealing_of(key: &Key, b: &Binding, field: &str, op: KeyOp) -> Result<(Option<String>, EncryptionContext)> {
    let allowed = algorithms::encryption(key.key_spec);
    let name = key.name();
    if allowed.is_empty() {
        return Err(Error::precondition(
            Precondition::KeySpec,
            name.clone(),
            format!("{name} is {} and does not {}", key.key_spec.api_name(), op.name()),
        ));
    }
    let symmetric = key.key_spec == KeySpec::SymmetricDefault;
    let algorithm = match b.encryption_algorithm.as_str() {
        "" if symmetric => None,
        "" => {
            return Err(Error::invalid(
                format!("{field}encryption_algorithm"),
                format!("required for a {} key: {}", key.key_spec.api_name(), allowed.join(" or ")),
            ));
        }
        a if allowed.contains(&a) => (!symmetric).then(|| a.to_owned()),
        a => {
            return Err(Error::invalid(
                format!("{field}encryption_algorithm"),
                format!("{a:?} is not one of {} ({} key)", allowed.join(", "), key.key_spec.api_name()),
            ));
        }
    };
    let bound = !b.aad.is_empty() || !b.encryption_context.is_empty();
    if !symmetric && bound {
        let which = if b.aad.is_empty() { "encryption_context" } else { "aad" };
        return Err(Error::invalid(
            format!("{field}{which}"),
            "AWS binds no context to asymmetric encryption: leave it empty for this key",
        ));
    }
    let mut context = b.encryption_context.clone();
    let size: usize = context.iter().map(|(k, v)| k.len() + v.len()).sum();
    if context.keys().any(|k| k.is_empty()) || context.contains_key(AAD_CONTEXT_KEY) || size > CONTEXT_MAX {
        return Err(Error::invalid(
            format!("{field}encryption_context"),
            format!(
                "keys 1+ characters, not {AAD_CONTEXT_KEY:?} (Keyward's), at most {CONTEXT_MAX} bytes of keys and values"
            ),
        ));
    }
    if !b.aad.is_empty() {
        use base64::Engine;
        context.insert(AAD_CONTEXT_KEY.into(), base64::engine::general_purpose::STANDARD.encode(&b.aad));
    }
    Ok((algorithm, context))
}

/// A Keyward key binds `aad` only: AWS's algorithm and context fields do not apply.
fn keyward_binding(b: &Binding, field: &str) -> Result<()> {
    if !matches!(b.encryption_algorithm.as_str(), "" | "SYMMETRIC_DEFAULT") {
        return Err(Error::invalid(
            format!("{field}encryption_algorithm"),
            "Keyward keys use AES-256-GCM: leave it empty",
        ));
    }
    if !b.encryption_context.is_empty() {
        return Err(Error::invalid(
            format!("{field}encryption_context"),
            "Keyward keys bind aad, not an AWS encryption context",
        ));
    }
    Ok(())
}

/// Largest plaintext (and AAD, and wrapped key) a Keyward key takes: 64 KiB.
pub const KEYWARD_DATA_MAX: usize = 64 * 1024;
/// AWS KMS Encrypt takes at most 4096 bytes of plaintext.
pub const AWS_PLAINTEXT_MAX: usize = 4096;
/// AAD sent to AWS as encryption context (base64 text); kept well inside AWS's request limits.
pub const AWS_AAD_MAX: usize = 4096;
/// AWS KMS Decrypt: CiphertextBlob is 1–6144 bytes.
pub const AWS_CIPHERTEXT_MAX: usize = 6144;
/// Keyward ciphertext overhead: version (1) ‖ key id (16) ‖ nonce (12) ‖ tag (16).
const GCM_OVERHEAD: usize = 1 + 16 + 12 + 16;
/// RFC 5649 output of [`KEYWARD_DATA_MAX`] bytes: padded to 8, plus 8.
const WRAPPED_MAX: usize = KEYWARD_DATA_MAX + 8;

/// A bytes field that must not be empty.
pub(super) fn required(field: &str, bytes: &[u8]) -> Result<()> {
    if bytes.is_empty() {
        return Err(Error::invalid(field, "required"));
    }
    Ok(())
}

/// A bytes field of at most `max` bytes (`why` says whose limit).
pub(super) fn at_most(field: &str, bytes: &[u8], max: usize, why: &str) -> Result<()> {
    if bytes.len() > max {
        return Err(Error::invalid(field, format!("{} bytes; at most {max} bytes {why}", bytes.len())));
    }
    Ok(())
}

/// The key allows `op` and its state allows use (ENABLED).
pub(super) fn check_use(key: &Key, op: KeyOp) -> Result<()> {
    permits(key, op, |name| {
        let ops = key.key_ops.iter().map(|o| o.name()).collect::<Vec<_>>().join(", ");
        format!("{name} does not allow {}; its key_ops are [{ops}]", op.name())
    })?;
    usable(key, &format!("only an ENABLED key can {}", op.name()))
}

/// The one answer for a ciphertext that does not decrypt, whatever the cause.
pub(super) fn not_decrypted() -> Error {
    Error::invalid("ciphertext", ck::Error::Open.to_string())
}

/// Virtual keys refuse WrapKey/UnwrapKey: AWS KMS has no RFC 5649 wrap.
fn refuse_virtual_wrap(key: &Key, op: KeyOp) -> Result<()> {
    if key.is_virtual() {
        let name = key.name();
        return Err(Error::precondition(
            Precondition::NotKeywardKey,
            name.clone(),
            format!(
                "{name} is a virtual key and AWS KMS has no RFC 5649 key wrap, so {} needs a Keyward key \
                 (REGULAR group); use Encrypt/Decrypt with this key instead",
                op.name()
            ),
        ));
    }
    Ok(())
}

/// Whether an AWS error from Decrypt means "this ciphertext does not open here": AWS sends
/// InvalidCiphertextException (wrong context, tampered, not a KMS blob) or IncorrectKeyException
/// (another key's ciphertext), which the adapter reports as Validation.
pub(super) fn is_bad_ciphertext(e: &kms::Error) -> bool {
    matches!(e, kms::Error::Validation(_))
}

/// Where a call runs once its key and input passed the checks.
pub(super) enum Backend {
    /// AWS KMS, with this AWS key id, algorithm and encryption context.
    Aws(Arc<dyn Kms>, String, Option<String>, EncryptionContext),
    /// A Keyward RSA key pair (PKCS #8) with this RSAES-OAEP algorithm.
    KeywardPair(Zeroizing<Vec<u8>>, String),
    /// Keyward, with the key's material.
    Keyward(Zeroizing<Vec<u8>>),
}

/// A bytes field of a call and its limits: for AWS (with whose limit it is), for a Keyward key.
pub(super) struct Input<'a> {
    pub(super) field: &'static str,
    pub(super) bytes: &'a [u8],
    pub(super) aws_max: (usize, &'static str),
    pub(super) keyward_max: usize,
}

impl Keyward {
    /// A CryptoService call's `result` on the key named `key` (of group `group`), appended to the
    /// audit log as `action` when the group has `audit_key_use` (its outcome: OK or the refusal's
    /// code and message; never data). If the event cannot be written the call fails (nothing it
    /// made is handed out unaudited).
    pub async fn accounted<T>(
        &self,
        ctx: &Ctx,
        group: GroupId,
        key: &str,
        action: crate::domain::Action,
        result: Result<T>,
    ) -> Result<T> {
        let on = match self.key_use_flags.get(group, ctx.now) {
            Some(on) => on,
            None => match self.store.get_group(group).await {
                Ok(g) => {
                    self.key_use_flags.put(group, g.audit_key_use, ctx.now);
                    g.audit_key_use
                }
                Err(Error::NotFound { .. }) => false,
                Err(e) => return Err(e),
            },
        };
        if !on {
            return result;
        }
        let (outcome, detail) = match &result {
            Ok(_) => (crate::domain::OUTCOME_OK, String::new()),
            Err(e) => (e.code_name(), e.to_string()),
        };
        let tx = self.store.begin_audited().await?;
        let event = crate::domain::NewAuditEvent {
            caller: &ctx.caller,
            action,
            resource: key.to_owned(),
            outcome,
            detail: detail.chars().take(512).collect(),
        };
        tx.append_event(event, ctx.now).await?;
        tx.commit().await?;
        result
    }

    /// Encrypt. Keyward keys: AES-256-GCM, the ciphertext names the key and binds `aad`.
    /// Virtual keys: AWS KMS Encrypt with the encryption context (and `aad` in it), or with
    /// RSAES-OAEP / SM2PKE for asymmetric keys.
    pub async fn encrypt(
        &self,
        _ctx: &Ctx,
        group: GroupId,
        id: KeyId,
        plaintext: &[u8],
        binding: &Binding,
    ) -> Result<Vec<u8>> {
        required("plaintext", plaintext)?;
        let key = self.key_for_use(group, id).await?;
        self.encrypt_with(&key, plaintext, binding, "", "plaintext").await
    }

    /// Encrypt under `key`; `prefix` names the binding's fields in errors (`destination_` for
    /// ReEncrypt), `field` the data's.
    pub(super) async fn encrypt_with(
        &self,
        key: &Key,
        plaintext: &[u8],
        binding: &Binding,
        prefix: &str,
        field: &'static str,
    ) -> Result<Vec<u8>> {
        let input = Input {
            field,
            bytes: plaintext,
            aws_max: (AWS_PLAINTEXT_MAX, "(AWS KMS Encrypt limit)"),
            keyward_max: KEYWARD_DATA_MAX,
        };
        let ct = match self.backend(key, KeyOp::Encrypt, input, binding, prefix).await? {
            Backend::Aws(kms, aws_key_id, algorithm, context) => {
                kms.encrypt(&aws_key_id, plaintext, &Sealing { algorithm: algorithm.as_deref(), context: &context })
                    .await?
            }
            Backend::Keyward(material) => {
                ck::encrypt(&material, key.id.0, plaintext, &binding.aad).map_err(Error::internal)?
            }
            Backend::KeywardPair(pkcs8, algorithm) => {
                crate::crypto::asymmetric::rsa_encrypt(&pkcs8, &algorithm, plaintext).map_err(Error::internal)?
            }
        };
        tracing::debug!(key = %key.name(), bytes = plaintext.len(), "encrypted");
        Ok(ct)
    }

    /// Decrypt what [`Keyward::encrypt`] made with the same key and `aad`. Any ciphertext that
    /// does not open (another key's, tampered, truncated, wrong `aad`) is one INVALID_ARGUMENT.
    pub async fn decrypt(
        &self,
        _ctx: &Ctx,
        group: GroupId,
        id: KeyId,
        ciphertext: &[u8],
        binding: &Binding,
    ) -> Result<Zeroizing<Vec<u8>>> {
        required("ciphertext", ciphertext)?;
        let key = self.key_for_use(group, id).await?;
        self.decrypt_with(&key, ciphertext, binding, "").await
    }

    /// Decrypt under `key`; `prefix` names the binding's fields in errors (`source_`).
    pub(super) async fn decrypt_with(
        &self,
        key: &Key,
        ciphertext: &[u8],
        binding: &Binding,
        prefix: &str,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let input = Input {
            field: "ciphertext",
            bytes: ciphertext,
            aws_max: (AWS_CIPHERTEXT_MAX, "(AWS KMS Decrypt limit)"),
            keyward_max: KEYWARD_DATA_MAX + GCM_OVERHEAD,
        };
        match self.backend(key, KeyOp::Decrypt, input, binding, prefix).await? {
            Backend::Aws(kms, aws_key_id, algorithm, context) => match kms
                .decrypt(&aws_key_id, ciphertext, &Sealing { algorithm: algorithm.as_deref(), context: &context })
                .await
            {
                Ok(pt) => Ok(pt),
                Err(e) if is_bad_ciphertext(&e) => {
                    tracing::debug!(key = %key.name(), error = %e, "AWS KMS could not decrypt");
                    Err(not_decrypted())
                }
                Err(e) => Err(e.into()),
            },
            Backend::Keyward(material) => {
                ck::decrypt(&material, key.id.0, ciphertext, &binding.aad).map_err(|_| not_decrypted())
            }
            Backend::KeywardPair(pkcs8, algorithm) => {
                crate::crypto::asymmetric::rsa_decrypt(&pkcs8, &algorithm, ciphertext).map_err(|_| not_decrypted())
            }
        }
    }

    /// WrapKey: RFC 5649 AES key wrap with padding under a Keyward key.
    pub async fn wrap_key(&self, _ctx: &Ctx, group: GroupId, id: KeyId, plaintext: &[u8]) -> Result<Vec<u8>> {
        let material = self.wrapping_material(group, id, KeyOp::WrapKey, "plaintext", plaintext).await?;
        ck::wrap(&material, plaintext).map_err(Error::internal)
    }

    /// UnwrapKey: RFC 5649 (or RFC 3394) unwrap under a Keyward key. A wrong key or corrupt
    /// input is one INVALID_ARGUMENT, "could not unwrap".
    pub async fn unwrap_key(
        &self,
        _ctx: &Ctx,
        group: GroupId,
        id: KeyId,
        wrapped: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>> {
        let material = self.wrapping_material(group, id, KeyOp::UnwrapKey, "wrapped", wrapped).await?;
        ck::unwrap(&material, wrapped).map_err(|_| Error::invalid("wrapped", ck::Error::Unwrap.to_string()))
    }

    /// Checks `key` for `op` (key_ops, state, AWS key spec and algorithm) and the input's and
    /// the binding's sizes against the limits of where the call runs, in that order, before any
    /// AWS call.
    pub(super) async fn backend(
        &self,
        key: &Key,
        op: KeyOp,
        input: Input<'_>,
        binding: &Binding,
        prefix: &str,
    ) -> Result<Backend> {
        let aad_field = format!("{prefix}aad");
        match &key.aws {
            Some(aws) => {
                at_most(input.field, input.bytes, input.aws_max.0, input.aws_max.1)?;
                at_most(&aad_field, &binding.aad, AWS_AAD_MAX, "for an AWS KMS key")?;
                let (algorithm, context) = sealing_of(key, binding, prefix, op)?;
                if let (KeyOp::Encrypt, Some(max)) =
                    (op, algorithm.as_deref().and_then(|a| algorithms::oaep_plaintext_max(key.key_spec, a)))
                {
                    at_most(input.field, input.bytes, max, "for this RSA key and algorithm (RFC 8017)")?;
                }
                check_use(key, op)?;
                Ok(Backend::Aws(self.group_client(key.group_id).await?, aws.aws_key_id.clone(), algorithm, context))
            }
            None if key.key_spec.aes_bytes().is_none() => {
                // A Keyward key pair: RSAES-OAEP as AWS's RSA keys (other specs do not encrypt).
                let (algorithm, _) = sealing_of(key, binding, prefix, op)?;
                let algorithm = algorithm.unwrap_or_default();
                if let (KeyOp::Encrypt, Some(max)) = (op, algorithms::oaep_plaintext_max(key.key_spec, &algorithm)) {
                    at_most(input.field, input.bytes, max, "for this RSA key and algorithm (RFC 8017)")?;
                }
                at_most(input.field, input.bytes, input.aws_max.0, "for an RSA key")?;
                check_use(key, op)?;
                Ok(Backend::KeywardPair(self.material_for_use(key).await?, algorithm))
            }
            None => {
                at_most(input.field, input.bytes, input.keyward_max, "for a Keyward key")?;
                at_most(&aad_field, &binding.aad, KEYWARD_DATA_MAX, "for a Keyward key")?;
                keyward_binding(binding, prefix)?;
                check_use(key, op)?;
                Ok(Backend::Keyward(self.material_for_use(key).await?))
            }
        }
    }

    /// The material for WrapKey/UnwrapKey of `bytes` (`field`) after the checks: a Keyward key
    /// (AWS has no RFC 5649 wrap) that allows `op`, input within the limits.
    async fn wrapping_material(
        &self,
        group: GroupId,
        id: KeyId,
        op: KeyOp,
        field: &str,
        bytes: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>> {
        required(field, bytes)?;
        let key = self.key_for_use(group, id).await?;
        refuse_virtual_wrap(&key, op)?;
        if key.key_spec.aes_bytes().is_none() {
            let name = key.name();
            return Err(Error::precondition(
                Precondition::KeySpec,
                name.clone(),
                format!("{name} is {}; AES key wrap needs an AES key", key.key_spec.api_name()),
            ));
        }
        if key.key_spec == KeySpec::Aes192 {
            let name = key.name();
            return Err(Error::precondition(
                Precondition::KeySpec,
                name.clone(),
                format!("{name} is AES_192 and there is no AES-192 key wrap; use an AES_128 or AES_256 key"),
            ));
        }
        let (max, why) =
            if op == KeyOp::WrapKey { (KEYWARD_DATA_MAX, "to wrap") } else { (WRAPPED_MAX, "(RFC 5649 of 64 KiB)") };
        at_most(field, bytes, max, why)?;
        check_use(&key, op)?;
        self.material_for_use(&key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_decrypt_failures_that_mean_a_bad_ciphertext() {
        assert!(is_bad_ciphertext(&kms::Error::Validation("InvalidCiphertextException: (HTTP 400)".into())));
        assert!(!is_bad_ciphertext(&kms::Error::Other("SomethingElse: x".into())));
        assert!(is_bad_ciphertext(&kms::Error::Validation("1 validation error".into())));
        assert!(!is_bad_ciphertext(&kms::Error::Other("cannot build the request: x".into())));
        assert!(!is_bad_ciphertext(&kms::Error::InvalidState("disabled".into())));
        assert!(!is_bad_ciphertext(&kms::Error::Unavailable("throttled".into())));
    }

    #[test]
    fn one_message_for_every_bad_ciphertext() {
        let Error::InvalidArgument(v) = not_decrypted() else { panic!("not INVALID_ARGUMENT") };
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].field, "ciphertext");
        assert!(v[0].description.starts_with("could not decrypt"));
    }
}
