//! Keyward-held asymmetric and HMAC keys, with aws-lc-rs: generation (the private key as
//! PKCS #8 DER, which the store seals like AES material; HMAC keys as random bytes of the hash's
//! length), the public key (DER SubjectPublicKeyInfo), signing and verifying in AWS KMS's
//! algorithms (RAW messages and DIGESTs), RSAES-OAEP encryption and decryption, HMAC.
//! Names of algorithms are AWS KMS's, so a Keyward key answers as a virtual key of its spec would.

use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
use aws_lc_rs::signature::{self, KeyPair, VerificationAlgorithm};
use aws_lc_rs::{digest, hmac, rand, rsa};
use zeroize::Zeroizing;

use super::keys::Error;
use crate::domain::KeySpec;

/// New material of `spec`: PKCS #8 for RSA, ECC and Ed25519 keys; random bytes for HMAC keys
/// (as long as the hash: 28, 32, 48 or 64) and AES keys.
pub fn generate(spec: KeySpec) -> Result<Zeroizing<Vec<u8>>, Error> {
    let der = match spec {
        KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096 => {
            let size = match spec {
                KeySpec::Rsa2048 => rsa::KeySize::Rsa2048,
                KeySpec::Rsa3072 => rsa::KeySize::Rsa3072,
                _ => rsa::KeySize::Rsa4096,
            };
            let pair = rsa::KeyPair::generate(size).map_err(|_| Error::Library)?;
            AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair).map_err(|_| Error::Library)?.as_ref().to_vec()
        }
        KeySpec::EccNistP256 | KeySpec::EccNistP384 | KeySpec::EccNistP521 => {
            let pair = signature::EcdsaKeyPair::generate(ecdsa_signing(spec)?).map_err(|_| Error::Library)?;
            pair.to_pkcs8v1().map_err(|_| Error::Library)?.as_ref().to_vec()
        }
        KeySpec::EccNistEdwards25519 => {
            let pair = signature::Ed25519KeyPair::generate().map_err(|_| Error::Library)?;
            pair.to_pkcs8v1().map_err(|_| Error::Library)?.as_ref().to_vec()
        }
        _ => return super::keys::random_key(material_len(spec).ok_or(Error::Library)?),
    };
    Ok(Zeroizing::new(der))
}

/// Bytes of random material for symmetric specs (AES, HMAC).
fn material_len(spec: KeySpec) -> Option<usize> {
    spec.aes_bytes().or(match spec {
        KeySpec::Hmac224 => Some(28),
        KeySpec::Hmac256 => Some(32),
        KeySpec::Hmac384 => Some(48),
        KeySpec::Hmac512 => Some(64),
        _ => None,
    })
}

fn ecdsa_signing(spec: KeySpec) -> Result<&'static signature::EcdsaSigningAlgorithm, Error> {
    Ok(match spec {
        KeySpec::EccNistP256 => &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        KeySpec::EccNistP384 => &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
        KeySpec::EccNistP521 => &signature::ECDSA_P521_SHA512_ASN1_SIGNING,
        _ => return Err(Error::Library),
    })
}

/// The DER SubjectPublicKeyInfo of a key pair held as PKCS #8.
pub fn public_key(spec: KeySpec, pkcs8: &[u8]) -> Result<Vec<u8>, Error> {
    let der: PublicKeyX509Der<'static> = match spec {
        KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096 => {
            let pair = rsa::KeyPair::from_pkcs8(pkcs8).map_err(|_| Error::Library)?;
            pair.public_key().as_der().map_err(|_| Error::Library)?
        }
        KeySpec::EccNistP256 | KeySpec::EccNistP384 | KeySpec::EccNistP521 => {
            let pair = signature::EcdsaKeyPair::from_pkcs8(ecdsa_signing(spec)?, pkcs8).map_err(|_| Error::Library)?;
            pair.public_key().as_der().map_err(|_| Error::Library)?
        }
        KeySpec::EccNistEdwards25519 => {
            let pair = signature::Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|_| Error::Library)?;
            pair.public_key().as_der().map_err(|_| Error::Library)?
        }
        _ => return Err(Error::Library),
    };
    Ok(der.as_ref().to_vec())
}

/// The hash of an AWS signing algorithm (`None`: it hashes nothing itself, Ed25519).
fn hash_of(algorithm: &str) -> Option<&'static digest::Algorithm> {
    match algorithm {
        a if a.ends_with("_SHA_256") => Some(&digest::SHA256),
        a if a.ends_with("_SHA_384") => Some(&digest::SHA384),
        a if a.ends_with("_SHA_512") && a != "ED25519_SHA_512" => Some(&digest::SHA512),
        _ => None,
    }
}

fn rsa_encoding(algorithm: &str) -> Option<&'static dyn signature::RsaEncoding> {
    Some(match algorithm {
        "RSASSA_PSS_SHA_256" => &signature::RSA_PSS_SHA256,
        "RSASSA_PSS_SHA_384" => &signature::RSA_PSS_SHA384,
        "RSASSA_PSS_SHA_512" => &signature::RSA_PSS_SHA512,
        "RSASSA_PKCS1_V1_5_SHA_256" => &signature::RSA_PKCS1_SHA256,
        "RSASSA_PKCS1_V1_5_SHA_384" => &signature::RSA_PKCS1_SHA384,
        "RSASSA_PKCS1_V1_5_SHA_512" => &signature::RSA_PKCS1_SHA512,
        _ => return None,
    })
}

fn verification(algorithm: &str, spec: KeySpec) -> Option<&'static dyn VerificationAlgorithm> {
    Some(match (algorithm, spec) {
        ("RSASSA_PSS_SHA_256", _) => &signature::RSA_PSS_2048_8192_SHA256,
        ("RSASSA_PSS_SHA_384", _) => &signature::RSA_PSS_2048_8192_SHA384,
        ("RSASSA_PSS_SHA_512", _) => &signature::RSA_PSS_2048_8192_SHA512,
        ("RSASSA_PKCS1_V1_5_SHA_256", _) => &signature::RSA_PKCS1_2048_8192_SHA256,
        ("RSASSA_PKCS1_V1_5_SHA_384", _) => &signature::RSA_PKCS1_2048_8192_SHA384,
        ("RSASSA_PKCS1_V1_5_SHA_512", _) => &signature::RSA_PKCS1_2048_8192_SHA512,
        ("ECDSA_SHA_256", KeySpec::EccNistP256) => &signature::ECDSA_P256_SHA256_ASN1,
        ("ECDSA_SHA_384", KeySpec::EccNistP384) => &signature::ECDSA_P384_SHA384_ASN1,
        ("ECDSA_SHA_512", KeySpec::EccNistP521) => &signature::ECDSA_P521_SHA512_ASN1,
        ("ED25519_SHA_512", KeySpec::EccNistEdwards25519) => &signature::ED25519,
        _ => return None,
    })
}

/// A DIGEST message as aws-lc-rs takes it.
fn imported(algorithm: &str, d: &[u8]) -> Result<digest::Digest, Error> {
    let alg = hash_of(algorithm).ok_or(Error::Library)?;
    digest::Digest::import_less_safe(d, alg).map_err(|_| Error::Library)
}

/// Signs `message` (RAW) or a digest (`digest` true) with a key pair held as PKCS #8, in AWS's
/// `algorithm` (checked against the spec by the caller): RSA PKCS #1 / PSS signatures, ECDSA in
/// DER (as AWS answers), Ed25519's 64 bytes.
pub fn sign(spec: KeySpec, pkcs8: &[u8], algorithm: &str, message: &[u8], digest: bool) -> Result<Vec<u8>, Error> {
    match spec {
        KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096 => {
            let pair = rsa::KeyPair::from_pkcs8(pkcs8).map_err(|_| Error::Library)?;
            let encoding = rsa_encoding(algorithm).ok_or(Error::Library)?;
            let mut sig = vec![0u8; pair.public_modulus_len()];
            if digest {
                pair.sign_digest(encoding, &imported(algorithm, message)?, &mut sig).map_err(|_| Error::Library)?;
            } else {
                pair.sign(encoding, &rand::SystemRandom::new(), message, &mut sig).map_err(|_| Error::Library)?;
            }
            Ok(sig)
        }
        KeySpec::EccNistP256 | KeySpec::EccNistP384 | KeySpec::EccNistP521 => {
            let pair = signature::EcdsaKeyPair::from_pkcs8(ecdsa_signing(spec)?, pkcs8).map_err(|_| Error::Library)?;
            let sig = if digest {
                pair.sign_digest(&imported(algorithm, message)?)
            } else {
                pair.sign(&rand::SystemRandom::new(), message)
            };
            Ok(sig.map_err(|_| Error::Library)?.as_ref().to_vec())
        }
        KeySpec::EccNistEdwards25519 if !digest => {
            let pair = signature::Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|_| Error::Library)?;
            Ok(pair.sign(message).as_ref().to_vec())
        }
        _ => Err(Error::Library),
    }
}

/// Whether `sig` is `algorithm`'s signature of `message` (or of the digest) under the key pair.
pub fn verify(
    spec: KeySpec,
    pkcs8: &[u8],
    algorithm: &str,
    message: &[u8],
    digest: bool,
    sig: &[u8],
) -> Result<bool, Error> {
    let alg = verification(algorithm, spec).ok_or(Error::Library)?;
    let public = public_key(spec, pkcs8)?;
    let key = signature::UnparsedPublicKey::new(alg, public);
    Ok(if digest { key.verify_digest(&imported(algorithm, message)?, sig) } else { key.verify(message, sig) }.is_ok())
}

fn oaep(algorithm: &str) -> Result<&'static rsa::OaepAlgorithm, Error> {
    match algorithm {
        "RSAES_OAEP_SHA_1" => Ok(&rsa::OAEP_SHA1_MGF1SHA1),
        "RSAES_OAEP_SHA_256" => Ok(&rsa::OAEP_SHA256_MGF1SHA256),
        _ => Err(Error::Library),
    }
}

/// RSAES-OAEP encryption with the public half of an RSA key held as PKCS #8.
pub fn rsa_encrypt(pkcs8: &[u8], algorithm: &str, plaintext: &[u8]) -> Result<Vec<u8>, Error> {
    let private = rsa::PrivateDecryptingKey::from_pkcs8(pkcs8).map_err(|_| Error::Library)?;
    let public = rsa::OaepPublicEncryptingKey::new(private.public_key()).map_err(|_| Error::Library)?;
    let mut out = vec![0u8; public.ciphertext_size()];
    let n = public.encrypt(oaep(algorithm)?, plaintext, &mut out, None).map_err(|_| Error::Library)?.len();
    out.truncate(n);
    Ok(out)
}

/// RSAES-OAEP decryption; `Err(Error::Open)` for a ciphertext that does not open.
pub fn rsa_decrypt(pkcs8: &[u8], algorithm: &str, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
    let private = rsa::PrivateDecryptingKey::from_pkcs8(pkcs8).map_err(|_| Error::Library)?;
    let key = rsa::OaepPrivateDecryptingKey::new(private).map_err(|_| Error::Library)?;
    let mut out = Zeroizing::new(vec![0u8; key.min_output_size()]);
    let n = key.decrypt(oaep(algorithm)?, ciphertext, &mut out, None).map_err(|_| Error::Open)?.len();
    out.truncate(n);
    Ok(out)
}

/// Whether `der` is a public key (SubjectPublicKeyInfo) on the curve of a NIST ECC `spec`, as
/// DeriveSharedSecret needs; `None` for a spec this cannot check (SM2).
pub fn peer_key_fits(spec: KeySpec, der: &[u8]) -> Option<bool> {
    use aws_lc_rs::agreement;
    let alg = match spec {
        KeySpec::EccNistP256 => &agreement::ECDH_P256,
        KeySpec::EccNistP384 => &agreement::ECDH_P384,
        KeySpec::EccNistP521 => &agreement::ECDH_P521,
        _ => return None,
    };
    Some(agreement::ParsedPublicKey::try_from(agreement::UnparsedPublicKey::new(alg, der)).is_ok())
}

fn hmac_alg(spec: KeySpec) -> Result<hmac::Algorithm, Error> {
    Ok(match spec {
        KeySpec::Hmac224 => hmac::HMAC_SHA224,
        KeySpec::Hmac256 => hmac::HMAC_SHA256,
        KeySpec::Hmac384 => hmac::HMAC_SHA384,
        KeySpec::Hmac512 => hmac::HMAC_SHA512,
        _ => return Err(Error::Library),
    })
}

/// HMAC of `message` under an HMAC key.
pub fn mac(spec: KeySpec, key: &[u8], message: &[u8]) -> Result<Vec<u8>, Error> {
    Ok(hmac::sign(&hmac::Key::new(hmac_alg(spec)?, key), message).as_ref().to_vec())
}

/// Whether `tag` is the HMAC of `message` (compared in constant time by aws-lc-rs).
pub fn verify_mac(spec: KeySpec, key: &[u8], message: &[u8], tag: &[u8]) -> Result<bool, Error> {
    Ok(hmac::verify(&hmac::Key::new(hmac_alg(spec)?, key), message, tag).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::algorithms;

    #[test]
    fn every_signing_algorithm_of_every_held_spec_signs_and_verifies() {
        let message = b"order 4711";
        for spec in [
            KeySpec::Rsa2048,
            KeySpec::EccNistP256,
            KeySpec::EccNistP384,
            KeySpec::EccNistP521,
            KeySpec::EccNistEdwards25519,
        ] {
            let key = generate(spec).expect("generate");
            assert!(!public_key(spec, &key).expect("public key").is_empty());
            for &alg in algorithms::signing(spec) {
                let digest = alg == "ED25519_PH_SHA_512";
                if digest {
                    // aws-lc-rs has no Ed25519ph: held Ed25519 keys sign RAW messages only.
                    assert!(sign(spec, &key, alg, message, true).is_err());
                    continue;
                }
                let sig = sign(spec, &key, alg, message, false).expect(alg);
                assert!(verify(spec, &key, alg, message, false, &sig).expect("verify"), "{alg}");
                assert!(!verify(spec, &key, alg, b"order 4712", false, &sig).expect("verify"), "{alg}");
                if let Some(h) = hash_of(alg) {
                    let d = digest::digest(h, message);
                    let sig = sign(spec, &key, alg, d.as_ref(), true).expect("digest");
                    assert!(
                        verify(spec, &key, alg, message, false, &sig).expect("verify"),
                        "{alg} digest over message"
                    );
                }
            }
        }
    }

    #[test]
    fn oaep_and_hmac_round_trip() {
        let key = generate(KeySpec::Rsa2048).expect("rsa");
        for alg in ["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"] {
            let ct = rsa_encrypt(&key, alg, b"secret").expect("encrypt");
            assert_eq!(rsa_decrypt(&key, alg, &ct).expect("decrypt").as_slice(), b"secret");
        }
        let ct = rsa_encrypt(&key, "RSAES_OAEP_SHA_1", b"secret").expect("encrypt");
        assert!(matches!(rsa_decrypt(&key, "RSAES_OAEP_SHA_256", &ct), Err(Error::Open)));
        for (spec, len) in [(KeySpec::Hmac224, 28), (KeySpec::Hmac512, 64)] {
            let k = generate(spec).expect("hmac key");
            assert_eq!(k.len(), len);
            let tag = mac(spec, &k, b"m").expect("mac");
            assert_eq!(tag.len(), len);
            assert!(verify_mac(spec, &k, b"m", &tag).expect("verify"));
            assert!(!verify_mac(spec, &k, b"n", &tag).expect("verify"));
        }
    }
}
