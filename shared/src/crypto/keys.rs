//! Key material work, all with aws-lc-rs: generating keys, AES-GCM (128, 192 or 256 by the
//! key's length) encryption of caller data under a Keyward key, AES key wrap (RFC 5649 with padding, RFC 3394 without), RSA-OAEP
//! wrapping for AWS ImportKeyMaterial, and decoding material files (raw, base64, hex).

use aws_lc_rs::aead::{AES_128_GCM, AES_192_GCM, AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::key_wrap::{AES_128, AES_256, AesKek, KeyWrap, KeyWrapPadded};
use aws_lc_rs::rsa::{OAEP_SHA256_MGF1SHA256, OaepPublicEncryptingKey, PublicEncryptingKey};
use zeroize::Zeroizing;

/// Why a crypto operation failed. Says nothing about keys or data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Wrong key, tampered or truncated data, another key's ciphertext: one message for all.
    #[error("could not decrypt: wrong key, or the data was altered")]
    Open,
    /// Unwrapping failed: wrong wrapping key or corrupt file, deliberately indistinguishable.
    #[error("could not unwrap")]
    Unwrap,
    #[error("{0}")]
    Input(String),
    #[error("crypto library failure")]
    Library,
}

/// Fresh random key material of `len` bytes (aws-lc-rs CSPRNG).
pub fn random_key(len: usize) -> Result<Zeroizing<Vec<u8>>, Error> {
    let mut k = Zeroizing::new(vec![0u8; len]);
    aws_lc_rs::rand::fill(&mut k).map_err(|_| Error::Library)?;
    Ok(k)
}

/// Ciphertext format version 1: `0x01 ‖ key id (16 bytes, the Keyward key's UUID) ‖ nonce (12,
/// random) ‖ AES-GCM ciphertext ‖ tag (16)`. The header is authenticated with the caller's AAD.
const CT_V1: u8 = 1;
const HEADER: usize = 1 + 16;

fn gcm_aad(header: &[u8], aad: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(header.len() + 8 + aad.len());
    v.extend_from_slice(header);
    v.extend_from_slice(&(aad.len() as u64).to_be_bytes());
    v.extend_from_slice(aad);
    v
}

/// The AES-GCM key for material of 16, 24 or 32 bytes.
fn gcm_key(key: &[u8]) -> Option<LessSafeKey> {
    let alg = match key.len() {
        16 => &AES_128_GCM,
        24 => &AES_192_GCM,
        32 => &AES_256_GCM,
        _ => return None,
    };
    UnboundKey::new(alg, key).ok().map(LessSafeKey::new)
}

/// Encrypts `plaintext` under the AES `key` (16, 24 or 32 bytes) of Keyward key `key_id`, with
/// a fresh random nonce from aws-lc-rs's CSPRNG.
pub fn encrypt(key: &[u8], key_id: uuid::Uuid, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, Error> {
    let k = gcm_key(key).ok_or_else(|| Error::Input("key is not AES-128, AES-192 or AES-256".into()))?;
    let mut header = vec![CT_V1];
    header.extend_from_slice(key_id.as_bytes());
    let mut nonce = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| Error::Library)?;
    let mut buf = plaintext.to_vec();
    k.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(gcm_aad(&header, aad)), &mut buf)
        .map_err(|_| Error::Library)?;
    let mut out = header;
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&buf);
    Ok(out)
}

/// The Keyward key id a ciphertext names, if it is one of ours.
pub fn ciphertext_key_id(ciphertext: &[u8]) -> Option<uuid::Uuid> {
    (ciphertext.len() >= HEADER && ciphertext[0] == CT_V1)
        .then(|| uuid::Uuid::from_slice(&ciphertext[1..HEADER]).ok())
        .flatten()
}

/// Decrypts what [`encrypt`] made with the same key, key id and AAD.
pub fn decrypt(key: &[u8], key_id: uuid::Uuid, ciphertext: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
    if ciphertext_key_id(ciphertext) != Some(key_id) || ciphertext.len() < HEADER + NONCE_LEN + 16 {
        return Err(Error::Open);
    }
    let k = gcm_key(key).ok_or(Error::Open)?;
    let (header, rest) = ciphertext.split_at(HEADER);
    let (nonce, ct) = rest.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| Error::Open)?;
    let mut buf = Zeroizing::new(ct.to_vec());
    let n = k.open_in_place(nonce, Aad::from(gcm_aad(header, aad)), &mut buf).map_err(|_| Error::Open)?.len();
    buf.truncate(n);
    Ok(buf)
}

fn kek(key: &[u8]) -> Result<AesKek, Error> {
    let alg = match key.len() {
        16 => &AES_128,
        32 => &AES_256,
        _ => return Err(Error::Input("wrapping key must be AES-128 or AES-256".into())),
    };
    AesKek::new(alg, key).map_err(|_| Error::Library)
}

/// RFC 5649 AES key wrap with padding.
pub fn wrap(key: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, Error> {
    if plaintext.is_empty() {
        return Err(Error::Input("nothing to wrap".into()));
    }
    let mut out = vec![0u8; plaintext.len() + 16];
    let n = kek(key)?.wrap_with_padding(plaintext, &mut out).map_err(|_| Error::Library)?.len();
    out.truncate(n);
    Ok(out)
}

/// Unwraps RFC 5649 (with padding) or, failing that for a multiple of 8 bytes, RFC 3394.
/// Any failure is [`Error::Unwrap`], whether the key or the data was wrong.
pub fn unwrap(key: &[u8], wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
    let kek = kek(key).map_err(|_| Error::Unwrap)?;
    if wrapped.len() < 16 {
        return Err(Error::Unwrap);
    }
    let mut out = Zeroizing::new(vec![0u8; wrapped.len()]);
    if let Ok(p) = kek.unwrap_with_padding(wrapped, &mut out) {
        let n = p.len();
        out.truncate(n);
        return Ok(out);
    }
    if wrapped.len() >= 24 && wrapped.len().is_multiple_of(8) {
        let kek = self::kek(key).map_err(|_| Error::Unwrap)?;
        let mut out = Zeroizing::new(vec![0u8; wrapped.len()]);
        if let Ok(p) = kek.unwrap(wrapped, &mut out) {
            let n = p.len();
            out.truncate(n);
            return Ok(out);
        }
    }
    Err(Error::Unwrap)
}

/// Wraps key material for AWS ImportKeyMaterial with RSAES_OAEP_SHA_256 under the wrapping
/// key AWS gave (DER SubjectPublicKeyInfo).
pub fn rsa_oaep_sha256_wrap(public_key_der: &[u8], material: &[u8]) -> Result<Vec<u8>, Error> {
    let pk = PublicEncryptingKey::from_der(public_key_der)
        .map_err(|_| Error::Input("AWS's wrapping key is not a DER SubjectPublicKeyInfo RSA key".into()))?;
    let oaep = OaepPublicEncryptingKey::new(pk).map_err(|_| Error::Library)?;
    let mut out = vec![0u8; oaep.ciphertext_size()];
    let n = oaep.encrypt(&OAEP_SHA256_MGF1SHA256, material, &mut out, None).map_err(|_| Error::Library)?.len();
    out.truncate(n);
    Ok(out)
}

/// How ImportKey's `material` is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaterialFormat {
    /// The bytes as given; nothing trimmed.
    Raw,
    /// Standard base64 (RFC 4648 §4, `+` and `/`, padding required); whitespace and line
    /// breaks anywhere are ignored. The base64url alphabet (`-`, `_`) is refused.
    Base64,
    /// Hexadecimal, either case; surrounding whitespace ignored; an optional `0x`/`0X` prefix
    /// is accepted; nothing else.
    Hex,
}

impl MaterialFormat {
    pub fn name(self) -> &'static str {
        match self {
            Self::Raw => "RAW",
            Self::Base64 => "BASE64",
            Self::Hex => "HEX",
        }
    }
}

/// Decodes an uploaded material file. Errors name the format and never quote the material.
pub fn decode_material(bytes: &[u8], format: MaterialFormat) -> Result<Zeroizing<Vec<u8>>, String> {
    match format {
        MaterialFormat::Raw => Ok(Zeroizing::new(bytes.to_vec())),
        MaterialFormat::Base64 => {
            use base64::Engine;
            let compact: Zeroizing<Vec<u8>> =
                Zeroizing::new(bytes.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect());
            if compact.iter().any(|b| matches!(b, b'-' | b'_')) {
                return Err("BASE64: the base64url alphabet (- and _) is not accepted; use standard base64".into());
            }
            base64::engine::general_purpose::STANDARD
                .decode(&compact[..])
                .map(Zeroizing::new)
                .map_err(|_| "BASE64: not valid standard base64".to_owned())
        }
        MaterialFormat::Hex => {
            let text = std::str::from_utf8(bytes).map_err(|_| "HEX: not text".to_owned())?.trim();
            let digits = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")).unwrap_or(text);
            if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err("HEX: only 0-9, a-f, A-F are allowed (no inner spaces or separators)".into());
            }
            if digits.len() % 2 != 0 {
                return Err(format!("HEX: {} digits; an even number is needed", digits.len()));
            }
            Ok(Zeroizing::new(
                (0..digits.len() / 2).filter_map(|i| u8::from_str_radix(&digits[2 * i..2 * i + 2], 16).ok()).collect(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcm_round_trip_binds_key_id_and_aad() {
        let k = random_key(32).unwrap();
        let id = uuid::Uuid::now_v7();
        let ct = encrypt(&k, id, b"hello", b"ctx").unwrap();
        assert_eq!(ciphertext_key_id(&ct), Some(id));
        assert_eq!(&decrypt(&k, id, &ct, b"ctx").unwrap()[..], b"hello");
        assert_eq!(decrypt(&k, id, &ct, b"other"), Err(Error::Open));
        assert_eq!(decrypt(&k, uuid::Uuid::now_v7(), &ct, b"ctx"), Err(Error::Open));
        let mut t = ct.clone();
        *t.last_mut().unwrap() ^= 1;
        assert_eq!(decrypt(&k, id, &t, b"ctx"), Err(Error::Open));
        assert_eq!(decrypt(&k, id, &ct[..20], b"ctx"), Err(Error::Open));
    }

    #[test]
    fn gcm_of_every_aes_size_and_never_across_sizes() {
        let id = uuid::Uuid::now_v7();
        let keys: Vec<_> = [16, 24, 32].into_iter().map(|n| random_key(n).unwrap()).collect();
        for k in &keys {
            let ct = encrypt(k, id, b"hello", b"ctx").unwrap();
            assert_eq!(&decrypt(k, id, &ct, b"ctx").unwrap()[..], b"hello", "{} bytes", k.len());
            for other in keys.iter().filter(|o| o.len() != k.len()) {
                assert_eq!(decrypt(other, id, &ct, b"ctx"), Err(Error::Open));
            }
        }
        assert!(matches!(encrypt(&random_key(20).unwrap(), id, b"x", b""), Err(Error::Input(_))));
        // Two encryptions of the same data differ (a fresh nonce each time).
        assert_ne!(encrypt(&keys[0], id, b"same", b"").unwrap(), encrypt(&keys[0], id, b"same", b"").unwrap());
    }

    #[test]
    fn rfc5649_and_rfc3394() {
        // RFC 5649 round trips for odd lengths (its §6 vectors use a 192-bit KEK, which
        // aws-lc-rs's key_wrap does not offer).
        let kek = random_key(32).unwrap();
        for len in [1usize, 7, 20, 32, 33] {
            let data = random_key(len).unwrap();
            let wrapped = wrap(&kek, &data).unwrap();
            assert_eq!(wrapped.len(), len.div_ceil(8) * 8 + 8);
            assert_eq!(&unwrap(&kek, &wrapped).unwrap()[..], &data[..]);
        }
        // RFC 3394 §4.6: 256-bit data under a 256-bit KEK.
        let kek = hex::decode("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F").unwrap();
        let w =
            hex::decode("28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21").unwrap();
        assert_eq!(
            hex::encode_upper(&unwrap(&kek, &w).unwrap()[..]),
            "00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F"
        );
        assert_eq!(unwrap(&random_key(32).unwrap(), &w), Err(Error::Unwrap));
        assert_eq!(unwrap(&kek, b"short"), Err(Error::Unwrap));
    }

    #[test]
    fn rsa_oaep_wrap_round_trips() {
        use aws_lc_rs::rsa::{KeySize, OaepPrivateDecryptingKey, PrivateDecryptingKey};
        let sk = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
        use aws_lc_rs::encoding::AsDer;
        let der = sk.public_key().as_der().unwrap();
        let ct = rsa_oaep_sha256_wrap(der.as_ref(), &[7u8; 32]).unwrap();
        let oaep = OaepPrivateDecryptingKey::new(sk).unwrap();
        let mut out = vec![0u8; oaep.min_output_size()];
        let pt = oaep.decrypt(&OAEP_SHA256_MGF1SHA256, &ct, &mut out, None).unwrap();
        assert_eq!(pt, &[7u8; 32]);
        assert!(rsa_oaep_sha256_wrap(b"not der", &[0; 32]).is_err());
    }

    #[test]
    fn material_formats() {
        let key: Vec<u8> = (0u8..32).collect();
        let hex_lower = hex::encode(&key);
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(&key);
        assert_eq!(&decode_material(&key, MaterialFormat::Raw).unwrap()[..], &key[..]);
        assert_eq!(&decode_material(hex_lower.as_bytes(), MaterialFormat::Hex).unwrap()[..], &key[..]);
        let upper = format!("  0X{}\n", hex_lower.to_uppercase());
        assert_eq!(&decode_material(upper.as_bytes(), MaterialFormat::Hex).unwrap()[..], &key[..]);
        let wrapped = format!("\n{}\r\n{}\n", &b64[..20], &b64[20..]);
        assert_eq!(&decode_material(wrapped.as_bytes(), MaterialFormat::Base64).unwrap()[..], &key[..]);
        assert!(decode_material(&hex_lower.as_bytes()[..62], MaterialFormat::Hex).unwrap().len() == 31);
        assert!(decode_material(b"abc", MaterialFormat::Hex).is_err());
        assert!(decode_material(b"ab cd", MaterialFormat::Hex).unwrap_err().contains("separators"));
        assert!(decode_material(b"abcd ef01", MaterialFormat::Hex).unwrap_err().contains("separators"));
        let url = base64::engine::general_purpose::URL_SAFE.encode([0xfbu8; 33]);
        assert!(decode_material(url.as_bytes(), MaterialFormat::Base64).unwrap_err().contains("base64url"));
        assert!(decode_material(b"!!!!", MaterialFormat::Base64).is_err());
    }
}
