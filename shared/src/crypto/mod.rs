//! Sealing secrets at rest: AES-256-GCM (aws-lc-rs) under the master key, bound to the row and
//! column they belong to (associated data), in a versioned format.
//!
//! Sealed format, version 1: `0x01 ‖ nonce (12 bytes) ‖ ciphertext ‖ tag (16 bytes)`.
//! The associated data is the caller's binding, e.g. `groups/{id}/secret_access_key`: a sealed
//! value copied to another row or column does not open.

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use zeroize::Zeroizing;

const VERSION_1: u8 = 1;

/// Why a sealed value did not open or a master key was refused. Says nothing about the secret.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error(
        "master key must be 32 bytes written as base64 or hex (e.g. `openssl rand -base64 32`); this one is {0} bytes"
    )]
    MasterKeyLength(usize),
    #[error("master key is neither 64 hex digits nor base64 (e.g. `openssl rand -base64 32`)")]
    MasterKeyText,
    #[error("sealed value has unknown format version")]
    UnknownVersion,
    #[error("sealed value does not open under this master key and binding")]
    Open,
    #[error("sealing failed")]
    Seal,
}

/// The 256-bit master key. Never printed.
pub struct MasterKey {
    key: RandomizedNonceKey,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// From 32 raw bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() != 32 {
            return Err(Error::MasterKeyLength(bytes.len()));
        }
        let key = RandomizedNonceKey::new(&AES_256_GCM, bytes).map_err(|_| Error::MasterKeyLength(bytes.len()))?;
        Ok(Self { key })
    }

    /// From the text of `KEYWARD_MASTER_KEY` or a key file: base64 (standard) or hex of 32 bytes,
    /// surrounding whitespace ignored.
    pub fn from_text(text: &str) -> Result<Self, Error> {
        use base64::Engine;
        let t = text.trim();
        let bytes = Zeroizing::new(if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32).filter_map(|i| u8::from_str_radix(&t[2 * i..2 * i + 2], 16).ok()).collect::<Vec<u8>>()
        } else {
            base64::engine::general_purpose::STANDARD.decode(t).map_err(|_| Error::MasterKeyText)?
        });
        Self::from_bytes(&bytes)
    }

    /// A fresh random key as base64 text (for a dev key file).
    pub fn generate_text() -> Result<Zeroizing<String>, Error> {
        use base64::Engine;
        let mut bytes = Zeroizing::new([0u8; 32]);
        aws_lc_rs::rand::fill(bytes.as_mut()).map_err(|_| Error::Seal)?;
        Ok(Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(bytes.as_ref())))
    }

    /// Seals `plaintext` bound to `binding` (e.g. `groups/{id}/secret_access_key`).
    pub fn seal(&self, plaintext: &[u8], binding: &str) -> Result<Vec<u8>, Error> {
        let mut buf = plaintext.to_vec();
        let nonce =
            self.key.seal_in_place_append_tag(Aad::from(binding.as_bytes()), &mut buf).map_err(|_| Error::Seal)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + buf.len());
        out.push(VERSION_1);
        out.extend_from_slice(nonce.as_ref());
        out.extend_from_slice(&buf);
        Ok(out)
    }

    /// Opens a value sealed with [`MasterKey::seal`] under the same `binding`.
    pub fn open(&self, sealed: &[u8], binding: &str) -> Result<Zeroizing<Vec<u8>>, Error> {
        let (&version, rest) = sealed.split_first().ok_or(Error::UnknownVersion)?;
        if version != VERSION_1 {
            return Err(Error::UnknownVersion);
        }
        if rest.len() < NONCE_LEN + 16 {
            return Err(Error::Open);
        }
        let (nonce, ct) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| Error::Open)?;
        let mut buf = Zeroizing::new(ct.to_vec());
        let len =
            self.key.open_in_place(nonce, Aad::from(binding.as_bytes()), &mut buf).map_err(|_| Error::Open)?.len();
        buf.truncate(len);
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_bound_to_binding() {
        let mk = MasterKey::from_bytes(&[7u8; 32]).unwrap();
        let sealed = mk.seal(b"wJalrXUtnFEMI/K7MDENG", "groups/a/secret_access_key").unwrap();
        assert_eq!(sealed[0], 1);
        assert!(!sealed.windows(8).any(|w| w == b"wJalrXUt"));
        assert_eq!(&mk.open(&sealed, "groups/a/secret_access_key").unwrap()[..], b"wJalrXUtnFEMI/K7MDENG");
        assert_eq!(mk.open(&sealed, "groups/b/secret_access_key"), Err(Error::Open));
        let other = MasterKey::from_bytes(&[8u8; 32]).unwrap();
        assert_eq!(other.open(&sealed, "groups/a/secret_access_key"), Err(Error::Open));
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(mk.open(&tampered, "groups/a/secret_access_key"), Err(Error::Open));
        let mut v2 = sealed;
        v2[0] = 2;
        assert_eq!(mk.open(&v2, "groups/a/secret_access_key"), Err(Error::UnknownVersion));
    }

    #[test]
    fn master_key_text_forms() {
        assert!(MasterKey::from_text(&"ab".repeat(32)).is_ok());
        assert!(MasterKey::from_text(&format!(" {}\n", MasterKey::generate_text().unwrap().as_str())).is_ok());
        assert_eq!(MasterKey::from_text("c2hvcnQ=").unwrap_err(), Error::MasterKeyLength(5));
        assert!(MasterKey::from_text("not base64!").is_err());
    }
}
pub mod keys;
