//! The algorithms AWS KMS offers for each key spec, and the size rules of its data-plane calls,
//! from AWS's key spec reference
//! (https://docs.aws.amazon.com/kms/latest/developerguide/symm-asymm-choose-key-spec.html) and
//! the Sign, Encrypt and GenerateDataKey API references. Names are AWS's exactly.

use super::KeySpec;

/// Sign takes at most 4096 bytes of RAW message (AWS Sign's `Message`); GenerateMac likewise.
pub const MESSAGE_MAX: usize = 4096;
/// GenerateDataKey's NumberOfBytes: 1–1024.
pub const DATA_KEY_BYTES_MAX: i32 = 1024;
/// A signature or MAC Keyward passes to AWS: at most 6144 bytes (AWS Verify's `Signature`).
pub const SIGNATURE_MAX: usize = 6144;
/// A DER public key for DeriveSharedSecret: 1–8192 bytes (AWS's `PublicKey`).
pub const PUBLIC_KEY_MAX: usize = 8192;

/// AWS's SigningAlgorithmSpec values for `spec` (empty: the spec does not sign).
pub fn signing(spec: KeySpec) -> &'static [&'static str] {
    match spec {
        KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096 => &[
            "RSASSA_PSS_SHA_256",
            "RSASSA_PSS_SHA_384",
            "RSASSA_PSS_SHA_512",
            "RSASSA_PKCS1_V1_5_SHA_256",
            "RSASSA_PKCS1_V1_5_SHA_384",
            "RSASSA_PKCS1_V1_5_SHA_512",
        ],
        KeySpec::EccNistP256 | KeySpec::EccSecgP256k1 => &["ECDSA_SHA_256"],
        KeySpec::EccNistP384 => &["ECDSA_SHA_384"],
        KeySpec::EccNistP521 => &["ECDSA_SHA_512"],
        KeySpec::EccNistEdwards25519 => &["ED25519_SHA_512", "ED25519_PH_SHA_512"],
        KeySpec::MlDsa44 | KeySpec::MlDsa65 | KeySpec::MlDsa87 => &["ML_DSA_SHAKE_256"],
        KeySpec::Sm2 => &["SM2DSA"],
        _ => &[],
    }
}

/// AWS's EncryptionAlgorithmSpec values for `spec` (empty: the spec does not encrypt).
pub fn encryption(spec: KeySpec) -> &'static [&'static str] {
    match spec {
        KeySpec::SymmetricDefault => &["SYMMETRIC_DEFAULT"],
        KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096 => &["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"],
        KeySpec::Sm2 => &["SM2PKE"],
        _ => &[],
    }
}

/// AWS's MacAlgorithmSpec of an HMAC spec.
pub fn mac(spec: KeySpec) -> Option<&'static str> {
    Some(match spec {
        KeySpec::Hmac224 => "HMAC_SHA_224",
        KeySpec::Hmac256 => "HMAC_SHA_256",
        KeySpec::Hmac384 => "HMAC_SHA_384",
        KeySpec::Hmac512 => "HMAC_SHA_512",
        _ => return None,
    })
}

/// AWS's KeyAgreementAlgorithmSpec values for `spec`: ECDH for the NIST curves and SM2.
pub fn key_agreement(spec: KeySpec) -> &'static [&'static str] {
    match spec {
        KeySpec::EccNistP256 | KeySpec::EccNistP384 | KeySpec::EccNistP521 | KeySpec::Sm2 => &["ECDH"],
        _ => &[],
    }
}

/// AWS's DataKeyPairSpec values (GenerateDataKeyPair's `KeyPairSpec`).
pub const DATA_KEY_PAIR_SPECS: [&str; 12] = [
    "RSA_2048",
    "RSA_3072",
    "RSA_4096",
    "ECC_NIST_P256",
    "ECC_NIST_P384",
    "ECC_NIST_P521",
    "ECC_SECG_P256K1",
    "ECC_NIST_EDWARDS25519",
    "ML_KEM_512",
    "ML_KEM_768",
    "ML_KEM_1024",
    "SM2",
];

/// Sign/Verify's MessageType and what the message must be for `algorithm`: RAW 1–4096 bytes;
/// DIGEST exactly the algorithm's digest length; EXTERNAL_MU (ML-DSA) 64 bytes. `Err` says why
/// the pair or the length does not fit.
pub fn check_message(algorithm: &str, message_type: &str, len: usize) -> Result<(), String> {
    let digest = match algorithm {
        a if a.ends_with("_SHA_256") || a == "SM2DSA" => Some(32),
        a if a.ends_with("_SHA_384") => Some(48),
        a if a.ends_with("_SHA_512") => Some(64),
        _ => None,
    };
    match message_type {
        "RAW" if algorithm == "ED25519_PH_SHA_512" => {
            Err("ED25519_PH_SHA_512 signs a DIGEST, not a RAW message".into())
        }
        "RAW" if len == 0 || len > MESSAGE_MAX => Err(format!(
            "{len} bytes; a RAW message is 1-{MESSAGE_MAX} bytes (AWS Sign); sign a DIGEST of a longer one"
        )),
        "RAW" => Ok(()),
        "DIGEST" if algorithm == "ED25519_SHA_512" => {
            Err("ED25519_SHA_512 signs a RAW message; ED25519_PH_SHA_512 signs a DIGEST".into())
        }
        "DIGEST" if algorithm == "ML_DSA_SHAKE_256" => {
            Err("ML_DSA_SHAKE_256 signs a RAW message or EXTERNAL_MU".into())
        }
        "DIGEST" => match digest {
            Some(n) if n == len => Ok(()),
            Some(n) => Err(format!("{len} bytes; a DIGEST for {algorithm} is {n} bytes")),
            None => Err(format!("{algorithm} takes no DIGEST")),
        },
        "EXTERNAL_MU" if algorithm != "ML_DSA_SHAKE_256" => Err("EXTERNAL_MU is for ML_DSA_SHAKE_256 only".into()),
        "EXTERNAL_MU" if len != 64 => Err(format!("{len} bytes; an EXTERNAL_MU message is 64 bytes")),
        "EXTERNAL_MU" => Ok(()),
        other => Err(format!("{other:?} is not a MessageType: RAW, DIGEST or EXTERNAL_MU")),
    }
}

/// The largest plaintext RSAES-OAEP encrypts with an RSA key of `spec`: k − 2·hLen − 2
/// (RFC 8017 §7.1.1; AWS's table: 214/342/470 bytes with SHA-1, 190/318/446 with SHA-256).
pub fn oaep_plaintext_max(spec: KeySpec, algorithm: &str) -> Option<usize> {
    let k = match spec {
        KeySpec::Rsa2048 => 256,
        KeySpec::Rsa3072 => 384,
        KeySpec::Rsa4096 => 512,
        _ => return None,
    };
    let h = match algorithm {
        "RSAES_OAEP_SHA_1" => 20,
        "RSAES_OAEP_SHA_256" => 32,
        _ => return None,
    };
    Some(k - 2 * h - 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_rules() {
        assert!(check_message("ECDSA_SHA_256", "RAW", 4096).is_ok());
        assert!(check_message("ECDSA_SHA_256", "RAW", 4097).is_err());
        assert!(check_message("ECDSA_SHA_256", "RAW", 0).is_err());
        assert!(check_message("ECDSA_SHA_384", "DIGEST", 48).is_ok());
        assert!(check_message("RSASSA_PSS_SHA_512", "DIGEST", 32).is_err());
        assert!(check_message("ED25519_PH_SHA_512", "RAW", 10).is_err());
        assert!(check_message("ED25519_SHA_512", "DIGEST", 64).is_err());
        assert!(check_message("ML_DSA_SHAKE_256", "EXTERNAL_MU", 64).is_ok());
        assert!(check_message("ECDSA_SHA_256", "EXTERNAL_MU", 64).is_err());
        assert!(check_message("ECDSA_SHA_256", "raw", 1).is_err());
    }

    #[test]
    fn oaep_limits_match_aws_table() {
        assert_eq!(oaep_plaintext_max(KeySpec::Rsa2048, "RSAES_OAEP_SHA_1"), Some(214));
        assert_eq!(oaep_plaintext_max(KeySpec::Rsa3072, "RSAES_OAEP_SHA_256"), Some(318));
        assert_eq!(oaep_plaintext_max(KeySpec::Rsa4096, "RSAES_OAEP_SHA_256"), Some(446));
        assert_eq!(oaep_plaintext_max(KeySpec::SymmetricDefault, "RSAES_OAEP_SHA_1"), None);
    }

    #[test]
    fn every_aws_spec_has_its_algorithms() {
        for spec in KeySpec::AWS {
            let any = !signing(spec).is_empty()
                || !encryption(spec).is_empty()
                || mac(spec).is_some()
                || !key_agreement(spec).is_empty()
                || matches!(spec, KeySpec::MlKem512 | KeySpec::MlKem768 | KeySpec::MlKem1024);
            assert!(any, "{spec:?}");
        }
    }
}
