//! GetPublicKey, Sign, Verify, GenerateMac, VerifyMac and DeriveSharedSecret: each checks the key
//! (its `key_ops`, ENABLED state, spec and AWS's algorithm for it) and the message's size first,
//! then calls AWS KMS for a virtual key or aws-lc-rs for a Keyward key pair or HMAC key
//! ([`crate::crypto::asymmetric`]). Key agreement runs in AWS only.

use zeroize::Zeroizing;

use super::{Keyward, at_most, check_use, required};
use crate::app::Ctx;
use crate::app::support::checks::usable;
use crate::crypto::asymmetric as asym;
use crate::domain::{GroupId, Key, KeyId, KeyOp, KeyUsage, algorithms};
use crate::kms::{PublicKeyInfo, Signature};
use crate::{Error, Precondition, Result};

/// GetPublicKey's answer: AWS's, with the PEM form of the DER key.
#[derive(Debug, Clone)]
pub struct PublicKey {
    pub info: PublicKeyInfo,
    /// `-----BEGIN PUBLIC KEY-----` PEM (RFC 7468) of the DER SubjectPublicKeyInfo.
    pub pem: String,
}

/// A Sign or Verify: the message, its MessageType (empty: RAW) and the SigningAlgorithmSpec.
#[derive(Debug, Clone, Copy)]
pub struct Signing<'a> {
    pub message: &'a [u8],
    pub message_type: &'a str,
    pub algorithm: &'a str,
}

/// The PEM text of a DER public key (RFC 7468 §13: base64 in lines of 64).
fn pem(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN PUBLIC KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END PUBLIC KEY-----\n");
    out
}

/// A virtual key's AWS key id, or FAILED_PRECONDITION NOT_VIRTUAL for a Keyward key (for calls
/// that run in AWS only).
fn aws_key_id(key: &Key, op: &str) -> Result<String> {
    match &key.aws {
        Some(a) => Ok(a.aws_key_id.clone()),
        None => {
            let name = key.name();
            Err(Error::precondition(
                Precondition::NotVirtual,
                name.clone(),
                format!("{name} is held by Keyward; {op} runs in AWS KMS: use a key of an AWS_KMS group"),
            ))
        }
    }
}

/// The signing algorithms of a key: AWS's for its spec, less Ed25519ph for a Keyward key
/// (aws-lc-rs signs Ed25519 over the message only).
fn signing_algorithms(key: &Key) -> Vec<&'static str> {
    let all = algorithms::signing(key.key_spec);
    all.iter().copied().filter(|a| key.is_virtual() || *a != "ED25519_PH_SHA_512").collect()
}

/// A crypto library failure on a Keyward key's own material is a bug, never the caller's.
fn library(e: crate::crypto::keys::Error) -> Error {
    Error::internal(format!("aws-lc-rs: {e}"))
}

/// `algorithm` is one AWS offers for the key's spec (`field` names it in the error).
fn check_algorithm(key: &Key, field: &str, algorithm: &str, allowed: &[&str]) -> Result<()> {
    if allowed.contains(&algorithm) {
        return Ok(());
    }
    if allowed.is_empty() {
        let name = key.name();
        return Err(Error::precondition(
            Precondition::KeySpec,
            name.clone(),
            format!("{name} is {}, which AWS offers no {field} for", key.key_spec.api_name()),
        ));
    }
    Err(Error::invalid(
        field,
        format!("{algorithm:?} is not one of {} ({} key)", allowed.join(", "), key.key_spec.api_name()),
    ))
}

impl Keyward {
    /// GetPublicKey of an asymmetric key (ENABLED; no key_op needed: the public key is not
    /// secret): AWS's answer for a virtual key, the key pair's own for a Keyward key.
    pub async fn get_public_key(&self, _ctx: &Ctx, group: GroupId, id: KeyId) -> Result<PublicKey> {
        let key = self.key_for_use(group, id).await?;
        if !key.key_spec.is_asymmetric() {
            let name = key.name();
            return Err(Error::precondition(
                Precondition::KeySpec,
                name.clone(),
                format!("{name} is {}: symmetric keys have no public key", key.key_spec.api_name()),
            ));
        }
        usable(&key, "only an ENABLED key gives its public key")?;
        let info = match &key.aws {
            Some(aws) => self.group_client(group).await?.get_public_key(&aws.aws_key_id).await?,
            None => {
                // The usage the key was made for (empty key_ops: its spec's default).
                let usage = key.key_spec.aws_key_usage(&key.key_ops).ok();
                let encrypts = usage == Some(KeyUsage::EncryptDecrypt);
                let names = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
                PublicKeyInfo {
                    der: asym::public_key(key.key_spec, &self.material_for_use(&key).await?).map_err(library)?,
                    key_spec: Some(key.key_spec.api_name().to_owned()),
                    key_usage: usage.map(|u| u.aws_name().to_owned()),
                    signing_algorithms: if encrypts { Vec::new() } else { names(&signing_algorithms(&key)) },
                    encryption_algorithms: if encrypts {
                        names(algorithms::encryption(key.key_spec))
                    } else {
                        Vec::new()
                    },
                    key_agreement_algorithms: Vec::new(),
                }
            }
        };
        let pem = pem(&info.der);
        Ok(PublicKey { info, pem })
    }

    /// Sign with an asymmetric key that has SIGN: RAW messages of 1-4096 bytes, or a DIGEST of
    /// the algorithm's length (AWS Sign).
    pub async fn sign(&self, _ctx: &Ctx, group: GroupId, id: KeyId, s: Signing<'_>) -> Result<Vec<u8>> {
        let (key, message_type) = self.signing_key(group, id, KeyOp::Sign, &s).await?;
        let signature = match &key.aws {
            Some(aws) => {
                let kms = self.group_client(group).await?;
                kms.sign(&aws.aws_key_id, s.message, message_type, s.algorithm).await?
            }
            None => {
                let pkcs8 = self.material_for_use(&key).await?;
                asym::sign(key.key_spec, &pkcs8, s.algorithm, s.message, message_type == "DIGEST").map_err(library)?
            }
        };
        tracing::debug!(key = %key.name(), "signed");
        Ok(signature)
    }

    /// Verify with an asymmetric key that has VERIFY: whether `signature` is valid.
    pub async fn verify(
        &self,
        _ctx: &Ctx,
        group: GroupId,
        id: KeyId,
        s: Signing<'_>,
        signature: &[u8],
    ) -> Result<bool> {
        required("signature", signature)?;
        at_most("signature", signature, algorithms::SIGNATURE_MAX, "(AWS Verify)")?;
        let (key, message_type) = self.signing_key(group, id, KeyOp::Verify, &s).await?;
        match &key.aws {
            Some(aws) => {
                let kms = self.group_client(group).await?;
                let sig = Signature { signature, algorithm: s.algorithm, message_type };
                Ok(kms.verify(&aws.aws_key_id, s.message, sig).await?)
            }
            None => {
                let pkcs8 = self.material_for_use(&key).await?;
                let digest = message_type == "DIGEST";
                asym::verify(key.key_spec, &pkcs8, s.algorithm, s.message, digest, signature).map_err(library)
            }
        }
    }

    /// The key of a Sign/Verify after its checks, and the MessageType to send.
    async fn signing_key<'a>(&self, group: GroupId, id: KeyId, op: KeyOp, s: &Signing<'a>) -> Result<(Key, &'a str)> {
        required("message", s.message)?;
        if s.algorithm.is_empty() {
            return Err(Error::invalid("signing_algorithm", "required"));
        }
        let message_type = if s.message_type.is_empty() { "RAW" } else { s.message_type };
        let key = self.key_for_use(group, id).await?;
        check_algorithm(&key, "signing_algorithm", s.algorithm, &signing_algorithms(&key))?;
        algorithms::check_message(s.algorithm, message_type, s.message.len())
            .map_err(|e| Error::invalid(if e.contains("MessageType") { "message_type" } else { "message" }, e))?;
        check_use(&key, op)?;
        Ok((key, message_type))
    }

    /// GenerateMac with an HMAC key that has GENERATE_MAC (message 1-4096 bytes): the MAC and
    /// its algorithm (empty `algorithm`: the spec's one).
    pub async fn generate_mac(
        &self,
        _ctx: &Ctx,
        group: GroupId,
        id: KeyId,
        message: &[u8],
        algorithm: &str,
    ) -> Result<(Vec<u8>, String)> {
        let (key, algorithm) = self.mac_key(group, id, KeyOp::GenerateMac, message, algorithm).await?;
        let mac = match &key.aws {
            Some(aws) => self.group_client(group).await?.generate_mac(&aws.aws_key_id, message, algorithm).await?,
            None => asym::mac(key.key_spec, &self.material_for_use(&key).await?, message).map_err(library)?,
        };
        Ok((mac, algorithm.to_owned()))
    }

    /// VerifyMac with an HMAC key that has VERIFY_MAC: whether `mac` is valid.
    pub async fn verify_mac(
        &self,
        _ctx: &Ctx,
        group: GroupId,
        id: KeyId,
        message: &[u8],
        mac: &[u8],
        algorithm: &str,
    ) -> Result<bool> {
        required("mac", mac)?;
        at_most("mac", mac, 64, "(HMAC-SHA-512's length)")?;
        let (key, algorithm) = self.mac_key(group, id, KeyOp::VerifyMac, message, algorithm).await?;
        match &key.aws {
            Some(aws) => {
                Ok(self.group_client(group).await?.verify_mac(&aws.aws_key_id, message, mac, algorithm).await?)
            }
            None => asym::verify_mac(key.key_spec, &self.material_for_use(&key).await?, message, mac).map_err(library),
        }
    }

    /// The key and MAC algorithm of a GenerateMac/VerifyMac after its checks (empty
    /// `algorithm`: the spec's one).
    async fn mac_key<'a>(
        &self,
        group: GroupId,
        id: KeyId,
        op: KeyOp,
        message: &[u8],
        algorithm: &'a str,
    ) -> Result<(Key, &'a str)> {
        required("message", message)?;
        at_most("message", message, algorithms::MESSAGE_MAX, "(AWS GenerateMac)")?;
        let key = self.key_for_use(group, id).await?;
        let own = algorithms::mac(key.key_spec);
        let chosen: &'a str = if algorithm.is_empty() { own.unwrap_or_default() } else { algorithm };
        check_algorithm(&key, "mac_algorithm", chosen, own.as_slice())?;
        check_use(&key, op)?;
        Ok((key, chosen))
    }

    /// DeriveSharedSecret with a KEY_AGREEMENT virtual key that has DERIVE_SHARED_SECRET and the
    /// peer's DER public key (SubjectPublicKeyInfo); `algorithm` ECDH (empty: ECDH).
    pub async fn derive_shared_secret(
        &self,
        _ctx: &Ctx,
        group: GroupId,
        id: KeyId,
        algorithm: &str,
        public_key: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>> {
        required("public_key", public_key)?;
        at_most("public_key", public_key, algorithms::PUBLIC_KEY_MAX, "(AWS DeriveSharedSecret)")?;
        let algorithm = if algorithm.is_empty() { "ECDH" } else { algorithm };
        let key = self.key_for_use(group, id).await?;
        let aws_id = aws_key_id(&key, "DeriveSharedSecret")?;
        check_algorithm(&key, "key_agreement_algorithm", algorithm, algorithms::key_agreement(key.key_spec))?;
        if asym::peer_key_fits(key.key_spec, public_key) == Some(false) {
            return Err(Error::invalid(
                "public_key",
                format!("not a DER SubjectPublicKeyInfo on the curve of {} ({})", key.name(), key.key_spec.api_name()),
            ));
        }
        check_use(&key, KeyOp::DeriveSharedSecret)?;
        let kms = self.group_client(group).await?;
        Ok(kms.derive_shared_secret(&aws_id, algorithm, public_key).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_wraps_der_in_lines_of_64() {
        let p = pem(&[0u8; 100]);
        assert!(p.starts_with("-----BEGIN PUBLIC KEY-----\n") && p.ends_with("-----END PUBLIC KEY-----\n"));
        assert!(p.lines().all(|l| l.len() <= 64));
        assert_eq!(p.lines().count(), 2 + 3, "136 base64 characters: 3 lines");
    }
}
