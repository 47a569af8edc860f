//! Sealing secrets at rest: AES-256-GCM (aws-lc-rs) under the master key, bound to the row and
//! column they belong to (associated data), in a versioned format that names the master key.
//!
//! Sealed format, version 2: `0x02 ‖ master key id (8 bytes) ‖ nonce (12 bytes) ‖ ciphertext ‖
//! tag (16 bytes)`, the associated data being the version and key id followed by the caller's
//! binding, e.g. `groups/{id}/secret_access_key`: a sealed value copied to another row or column
//! does not open. Version 1 (`0x01 ‖ nonce ‖ ciphertext ‖ tag`, the binding alone as associated
//! data, no key id) is still opened. The key id is the first 8 bytes of SHA-256 over
//! `keyward master key id` and the key: it names a key without revealing anything of it.
//!
//! A [`Keyring`] holds the current master key (every new value is sealed under it) and older ones
//! (values sealed under them still open until they are sealed again: `Store::reseal`).

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use zeroize::Zeroizing;

const VERSION_1: u8 = 1;
const VERSION_2: u8 = 2;
const ID_LEN: usize = 8;

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
    #[error("sealed under master key {0}, which the keyring does not hold")]
    UnknownKey(String),
    #[error("sealed value does not open under this master key and binding")]
    Open,
    #[error("sealing failed")]
    Seal,
}

/// The 256-bit master key. Never printed; its [`MasterKey::id`] may be.
pub struct MasterKey {
    key: RandomizedNonceKey,
    id: [u8; ID_LEN],
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey({})", self.id())
    }
}

impl MasterKey {
    /// From 32 raw bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() != 32 {
            return Err(Error::MasterKeyLength(bytes.len()));
        }
        let key = RandomizedNonceKey::new(&AES_256_GCM, bytes).map_err(|_| Error::MasterKeyLength(bytes.len()))?;
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        ctx.update(b"keyward master key id");
        ctx.update(bytes);
        let mut id = [0u8; ID_LEN];
        id.copy_from_slice(&ctx.finish().as_ref()[..ID_LEN]);
        Ok(Self { key, id })
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

    /// The key's id as 16 hex digits (what sealed values name).
    pub fn id(&self) -> String {
        hex::encode(self.id)
    }

    /// Seals `plaintext` bound to `binding` (e.g. `groups/{id}/secret_access_key`), version 2.
    pub fn seal(&self, plaintext: &[u8], binding: &str) -> Result<Vec<u8>, Error> {
        let mut header = vec![VERSION_2];
        header.extend_from_slice(&self.id);
        let mut buf = plaintext.to_vec();
        let aad = [header.as_slice(), binding.as_bytes()].concat();
        let nonce = self.key.seal_in_place_append_tag(Aad::from(aad), &mut buf).map_err(|_| Error::Seal)?;
        let mut out = header;
        out.extend_from_slice(nonce.as_ref());
        out.extend_from_slice(&buf);
        Ok(out)
    }

    /// Opens a value sealed under this key with `binding`, either version.
    pub fn open(&self, sealed: &[u8], binding: &str) -> Result<Zeroizing<Vec<u8>>, Error> {
        let (aad, rest) = match sealed_key_id(sealed)? {
            None => (binding.as_bytes().to_vec(), &sealed[1..]),
            Some(id) if id == self.id => ([&sealed[..1 + ID_LEN], binding.as_bytes()].concat(), &sealed[1 + ID_LEN..]),
            Some(id) => return Err(Error::UnknownKey(hex::encode(id))),
        };
        if rest.len() < NONCE_LEN + 16 {
            return Err(Error::Open);
        }
        let (nonce, ct) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| Error::Open)?;
        let mut buf = Zeroizing::new(ct.to_vec());
        let len = self.key.open_in_place(nonce, Aad::from(aad), &mut buf).map_err(|_| Error::Open)?.len();
        buf.truncate(len);
        Ok(buf)
    }
}

/// The master key id a sealed value names: `Some` for version 2, `None` for version 1 (which
/// names none).
pub fn sealed_key_id(sealed: &[u8]) -> Result<Option<[u8; ID_LEN]>, Error> {
    match sealed.first() {
        Some(&VERSION_1) => Ok(None),
        Some(&VERSION_2) if sealed.len() > ID_LEN => {
            let mut id = [0u8; ID_LEN];
            id.copy_from_slice(&sealed[1..1 + ID_LEN]);
            Ok(Some(id))
        }
        Some(&VERSION_2) => Err(Error::Open),
        _ => Err(Error::UnknownVersion),
    }
}

impl From<MasterKey> for Keyring {
    /// A keyring of one key.
    fn from(current: MasterKey) -> Self {
        Self::new(current, Vec::new())
    }
}

/// The current master key and older ones.
#[derive(Debug)]
pub struct Keyring {
    current: MasterKey,
    older: Vec<MasterKey>,
}

impl Keyring {
    /// `current` seals; `older` (and `current`) open. A key given twice counts once.
    pub fn new(current: MasterKey, older: Vec<MasterKey>) -> Self {
        let mut kept: Vec<MasterKey> = Vec::new();
        for k in older {
            if k.id != current.id && !kept.iter().any(|o| o.id == k.id) {
                kept.push(k);
            }
        }
        Self { current, older: kept }
    }

    /// The current key's id.
    pub fn current_id(&self) -> String {
        self.current.id()
    }

    /// Every key's id, the current one first.
    pub fn ids(&self) -> Vec<String> {
        std::iter::once(&self.current).chain(&self.older).map(MasterKey::id).collect()
    }

    /// Seals under the current key.
    pub fn seal(&self, plaintext: &[u8], binding: &str) -> Result<Vec<u8>, Error> {
        self.current.seal(plaintext, binding)
    }

    /// Opens a value sealed under any key of the ring (version 1: each key is tried).
    pub fn open(&self, sealed: &[u8], binding: &str) -> Result<Zeroizing<Vec<u8>>, Error> {
        let mut keys = std::iter::once(&self.current).chain(&self.older);
        match sealed_key_id(sealed)? {
            Some(id) => match keys.find(|k| k.id == id) {
                Some(k) => k.open(sealed, binding),
                None => Err(Error::UnknownKey(hex::encode(id))),
            },
            None => keys.find_map(|k| k.open(sealed, binding).ok()).ok_or(Error::Open),
        }
    }

    /// Whether `sealed` is not (yet) sealed under the current key.
    pub fn needs_reseal(&self, sealed: &[u8]) -> bool {
        !matches!(sealed_key_id(sealed), Ok(Some(id)) if id == self.current.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_bound_to_binding() {
        let mk = MasterKey::from_bytes(&[7u8; 32]).unwrap();
        let sealed = mk.seal(b"wJalrXUtnFEMI/K7MDENG", "groups/a/secret_access_key").unwrap();
        assert_eq!(sealed[0], 2);
        assert_eq!(hex::encode(&sealed[1..9]), mk.id());
        assert!(!sealed.windows(8).any(|w| w == b"wJalrXUt"));
        assert_eq!(&mk.open(&sealed, "groups/a/secret_access_key").unwrap()[..], b"wJalrXUtnFEMI/K7MDENG");
        assert_eq!(mk.open(&sealed, "groups/b/secret_access_key"), Err(Error::Open));
        let other = MasterKey::from_bytes(&[8u8; 32]).unwrap();
        assert_eq!(other.open(&sealed, "groups/a/secret_access_key"), Err(Error::UnknownKey(mk.id())));
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(mk.open(&tampered, "groups/a/secret_access_key"), Err(Error::Open));
        let mut v3 = sealed.clone();
        v3[0] = 3;
        assert_eq!(mk.open(&v3, "groups/a/secret_access_key"), Err(Error::UnknownVersion));
        // The key id is authenticated: another id in the header does not open.
        let mut renamed = sealed;
        renamed[1] ^= 1;
        assert!(mk.open(&renamed, "groups/a/secret_access_key").is_err());
    }

    /// A version-1 value, as sealed before key ids existed (the code of that version).
    fn seal_v1(mk_bytes: &[u8], plaintext: &[u8], binding: &str) -> Vec<u8> {
        let key = RandomizedNonceKey::new(&AES_256_GCM, mk_bytes).unwrap();
        let mut buf = plaintext.to_vec();
        let nonce = key.seal_in_place_append_tag(Aad::from(binding.as_bytes()), &mut buf).unwrap();
        [&[VERSION_1][..], nonce.as_ref(), &buf].concat()
    }

    #[test]
    fn a_keyring_opens_old_keys_values_and_seals_under_the_current_one() {
        let (old_bytes, new_bytes) = ([1u8; 32], [2u8; 32]);
        let old = MasterKey::from_bytes(&old_bytes).unwrap();
        let under_old = old.seal(b"secret", "b").unwrap();
        let v1 = seal_v1(&old_bytes, b"legacy", "b");
        let ring =
            Keyring::new(MasterKey::from_bytes(&new_bytes).unwrap(), vec![MasterKey::from_bytes(&old_bytes).unwrap()]);
        assert_eq!(ring.ids(), vec![MasterKey::from_bytes(&new_bytes).unwrap().id(), old.id()]);
        assert_eq!(&ring.open(&under_old, "b").unwrap()[..], b"secret");
        assert_eq!(&ring.open(&v1, "b").unwrap()[..], b"legacy");
        assert!(ring.needs_reseal(&under_old) && ring.needs_reseal(&v1));
        let resealed = ring.seal(b"secret", "b").unwrap();
        assert!(!ring.needs_reseal(&resealed));
        assert_eq!(hex::encode(&resealed[1..9]), ring.current_id());
        // Only the new key: the old key's values name a key the ring lacks.
        let new_only = Keyring::new(MasterKey::from_bytes(&new_bytes).unwrap(), vec![]);
        assert_eq!(new_only.open(&under_old, "b"), Err(Error::UnknownKey(old.id())));
        assert_eq!(new_only.open(&v1, "b"), Err(Error::Open));
        assert_eq!(&new_only.open(&resealed, "b").unwrap()[..], b"secret");
    }

    #[test]
    fn master_key_text_forms() {
        assert!(MasterKey::from_text(&"ab".repeat(32)).is_ok());
        assert!(MasterKey::from_text(&format!(" {}\n", MasterKey::generate_text().unwrap().as_str())).is_ok());
        assert_eq!(MasterKey::from_text("c2hvcnQ=").unwrap_err(), Error::MasterKeyLength(5));
        assert!(MasterKey::from_text("not base64!").is_err());
    }
}
pub mod asymmetric;
pub mod keys;
pub mod tokens;
