//! GenerateDataKey (with or without plaintext), GenerateDataKeyPair and ReEncrypt: envelope
//! encryption. A virtual SYMMETRIC_DEFAULT key calls AWS KMS (GenerateDataKey,
//! GenerateDataKeyPair, ReEncrypt); a Keyward AES key makes the data key here (random bytes from
//! aws-lc-rs, encrypted as Encrypt would, so Decrypt opens it). Each call needs ENCRYPT (and
//! ReEncrypt DECRYPT on its source) and an ENABLED key, checked before AWS.

use super::{Binding, Keyward, check_use, keyward_binding, sealing_of};
use crate::app::Ctx;
use crate::crypto::keys as ck;
use crate::domain::{GroupId, Key, KeyId, KeyOp, KeySpec, algorithms};
use crate::kms::{self, DataKey, DataKeyPair, DataKeySize, EncryptionContext, Sealed, Sealing};
use crate::{Error, Precondition, Result};

/// What GenerateDataKey takes: a DataKeySpec (`AES_128`, `AES_256`) or a number of bytes
/// (1-1024), not both; AWS's encryption context (virtual keys); whether to answer the plaintext.
#[derive(Debug, Clone, Default)]
pub struct DataKeyRequest {
    pub key_spec: String,
    pub number_of_bytes: i32,
    pub encryption_context: EncryptionContext,
    pub with_plaintext: bool,
}

impl DataKeyRequest {
    /// The size asked for, checked.
    fn size(&self) -> Result<DataKeySize> {
        match (self.key_spec.as_str(), self.number_of_bytes) {
            (s, _) if !matches!(s, "" | "AES_128" | "AES_256") => {
                Err(Error::invalid("key_spec", format!("{s:?}; AES_128 or AES_256")))
            }
            ("", 0) => Err(Error::invalid("key_spec", "give key_spec (AES_128 or AES_256) or number_of_bytes")),
            ("AES_128", 0) => Ok(DataKeySize::Spec("AES_128")),
            ("AES_256", 0) => Ok(DataKeySize::Spec("AES_256")),
            ("", n) if (1..=algorithms::DATA_KEY_BYTES_MAX).contains(&n) => Ok(DataKeySize::Bytes(n)),
            ("", n) => Err(Error::invalid("number_of_bytes", format!("{n}; 1 to {}", algorithms::DATA_KEY_BYTES_MAX))),
            _ => Err(Error::invalid("number_of_bytes", "give key_spec or number_of_bytes, not both")),
        }
    }
}

/// Data keys are made only under symmetric encryption keys: SYMMETRIC_DEFAULT in AWS, AES held
/// by Keyward.
fn symmetric_only(key: &Key, op: &str) -> Result<()> {
    let symmetric =
        if key.is_virtual() { key.key_spec == KeySpec::SymmetricDefault } else { key.key_spec.aes_bytes().is_some() };
    if !symmetric {
        let name = key.name();
        return Err(Error::precondition(
            Precondition::KeySpec,
            name.clone(),
            format!(
                "{name} is {}; {op} needs a symmetric encryption key (SYMMETRIC_DEFAULT, or a Keyward AES key)",
                key.key_spec.api_name()
            ),
        ));
    }
    Ok(())
}

impl Keyward {
    /// GenerateDataKey(WithoutPlaintext): a new data key and its ciphertext under the key.
    pub async fn generate_data_key(
        &self,
        _ctx: &Ctx,
        group: GroupId,
        id: KeyId,
        req: &DataKeyRequest,
    ) -> Result<DataKey> {
        let size = req.size()?;
        let key = self.key_for_use(group, id).await?;
        symmetric_only(&key, "GenerateDataKey")?;
        let binding = Binding { encryption_context: req.encryption_context.clone(), ..Default::default() };
        match &key.aws {
            Some(aws) => {
                let (_, context) = sealing_of(&key, &binding, "", KeyOp::Encrypt)?;
                check_use(&key, KeyOp::Encrypt)?;
                let kms = self.group_client(group).await?;
                Ok(kms.generate_data_key(&aws.aws_key_id, size, &context, req.with_plaintext).await?)
            }
            None => {
                keyward_binding(&binding, "")?;
                check_use(&key, KeyOp::Encrypt)?;
                let len = match size {
                    DataKeySize::Spec("AES_128") => 16,
                    DataKeySize::Spec(_) => 32,
                    DataKeySize::Bytes(n) => usize::try_from(n).unwrap_or(32),
                };
                let plaintext = ck::random_key(len).map_err(Error::internal)?;
                let material = self.material_for_use(&key).await?;
                let ciphertext = ck::encrypt(&material, key.id.0, &plaintext, &[]).map_err(Error::internal)?;
                Ok(DataKey { plaintext: req.with_plaintext.then_some(plaintext), ciphertext })
            }
        }
    }

    /// GenerateDataKeyPair(WithoutPlaintext) under a virtual SYMMETRIC_DEFAULT key: a key pair
    /// of `pair_spec` (AWS's DataKeyPairSpec), its private key encrypted under the key.
    pub async fn generate_data_key_pair(
        &self,
        _ctx: &Ctx,
        group: GroupId,
        id: KeyId,
        pair_spec: &str,
        context: &EncryptionContext,
        with_plaintext: bool,
    ) -> Result<DataKeyPair> {
        if !algorithms::DATA_KEY_PAIR_SPECS.contains(&pair_spec) {
            return Err(Error::invalid(
                "key_pair_spec",
                format!("{pair_spec:?}; one of {}", algorithms::DATA_KEY_PAIR_SPECS.join(", ")),
            ));
        }
        let key = self.key_for_use(group, id).await?;
        let Some(aws) = &key.aws else {
            let name = key.name();
            return Err(Error::precondition(
                Precondition::NotVirtual,
                name.clone(),
                format!(
                    "{name} is held by Keyward; GenerateDataKeyPair runs in AWS KMS under a SYMMETRIC_DEFAULT virtual key"
                ),
            ));
        };
        symmetric_only(&key, "GenerateDataKeyPair")?;
        let binding = Binding { encryption_context: context.clone(), ..Default::default() };
        let (_, context) = sealing_of(&key, &binding, "", KeyOp::Encrypt)?;
        check_use(&key, KeyOp::Encrypt)?;
        let kms = self.group_client(group).await?;
        Ok(kms.generate_data_key_pair(&aws.aws_key_id, pair_spec, &context, with_plaintext).await?)
    }

    /// ReEncrypt `ciphertext` from the source key (DECRYPT) to the destination key (ENCRYPT):
    /// inside AWS (ReEncrypt) when both are virtual keys of one group, else opened and sealed
    /// again here — the plaintext never leaves Keyward.
    #[allow(clippy::too_many_arguments)]
    pub async fn re_encrypt(
        &self,
        _ctx: &Ctx,
        (dest_group, dest_id): (GroupId, KeyId),
        (source_group, source_id): (GroupId, KeyId),
        ciphertext: &[u8],
        source: &Binding,
        destination: &Binding,
    ) -> Result<Vec<u8>> {
        super::required("ciphertext", ciphertext)?;
        let src = self.key_for_use(source_group, source_id).await?;
        let dst = self.key_for_use(dest_group, dest_id).await?;
        if let (Some(s), Some(d)) = (&src.aws, &dst.aws)
            && source_group == dest_group
        {
            super::at_most("ciphertext", ciphertext, super::AWS_CIPHERTEXT_MAX, "(AWS ReEncrypt)")?;
            let (s_alg, s_ctx) = sealing_of(&src, source, "source_", KeyOp::Decrypt)?;
            let (d_alg, d_ctx) = sealing_of(&dst, destination, "destination_", KeyOp::Encrypt)?;
            check_use(&src, KeyOp::Decrypt)?;
            check_use(&dst, KeyOp::Encrypt)?;
            let kms = self.group_client(dest_group).await?;
            let from =
                Sealed { key_id: &s.aws_key_id, sealing: Sealing { algorithm: s_alg.as_deref(), context: &s_ctx } };
            let to =
                Sealed { key_id: &d.aws_key_id, sealing: Sealing { algorithm: d_alg.as_deref(), context: &d_ctx } };
            return match kms.re_encrypt(ciphertext, from, to).await {
                // Only AWS's answers about the ciphertext itself; a refusal of the destination
                // side keeps its own message.
                Err(kms::Error::Validation(m))
                    if m.starts_with("InvalidCiphertextException") || m.starts_with("IncorrectKeyException") =>
                {
                    Err(super::not_decrypted())
                }
                other => Ok(other?),
            };
        }
        // The destination first (all but the plaintext's size): nothing is opened for a call
        // that cannot finish.
        let probe = super::Input {
            field: "ciphertext",
            bytes: &[],
            aws_max: (super::AWS_PLAINTEXT_MAX, ""),
            keyward_max: super::KEYWARD_DATA_MAX,
        };
        self.backend(&dst, KeyOp::Encrypt, probe, destination, "destination_").await?;
        let plaintext = self.decrypt_with(&src, ciphertext, source, "source_").await?;
        self.encrypt_with(&dst, &plaintext, destination, "destination_", "ciphertext").await
    }
}
