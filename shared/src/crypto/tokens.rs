//! API tokens: `kw_<api key id, 32 hex digits>_<secret, 32 random bytes as base64url>`. The
//! secret comes from aws-lc-rs's CSPRNG (256 bits); only its SHA-256 is stored, and a presented
//! secret's hash is compared with the stored one in constant time.

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::SecretString;
use uuid::Uuid;

const PREFIX: &str = "kw_";
const SECRET_LEN: usize = 32;

/// A new token for the API key `id`, and the SHA-256 of its secret (what is stored).
pub fn new_token(id: Uuid) -> Result<(SecretString, Vec<u8>), aws_lc_rs::error::Unspecified> {
    let mut secret = zeroize::Zeroizing::new([0u8; SECRET_LEN]);
    SystemRandom::new().fill(secret.as_mut())?;
    let encoded = zeroize::Zeroizing::new(URL_SAFE_NO_PAD.encode(secret.as_ref()));
    let hash = digest(&SHA256, encoded.as_bytes()).as_ref().to_vec();
    Ok((SecretString::from(format!("{PREFIX}{}_{}", id.simple(), encoded.as_str())), hash))
}

/// A presented token, split: the API key's id and the secret part. `None` when it is not in
/// the token format (the caller answers UNAUTHENTICATED without saying more).
pub struct Presented<'a> {
    pub id: Uuid,
    secret: &'a str,
}

pub fn parse(token: &str) -> Option<Presented<'_>> {
    let rest = token.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    if id.len() != 32
        || secret.len() != 43
        || !secret.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return None;
    }
    Some(Presented { id: Uuid::try_parse(id).ok()?, secret })
}

impl Presented<'_> {
    /// Whether the secret's SHA-256 equals `stored` (constant time).
    pub fn matches(&self, stored: &[u8]) -> bool {
        verify_slices_are_equal(digest(&SHA256, self.secret.as_bytes()).as_ref(), stored).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn a_token_parses_back_and_matches_only_its_hash() {
        let id = Uuid::now_v7();
        let (token, hash) = new_token(id).expect("token");
        let text = token.expose_secret().to_owned();
        assert!(text.starts_with("kw_"));
        let p = parse(&text).expect("parses");
        assert_eq!(p.id, id);
        assert!(p.matches(&hash));
        let (_, other) = new_token(id).expect("token");
        assert!(!p.matches(&other));
        // One character changed in the secret: no longer matches.
        let mut bad = text.clone();
        let last = bad.pop().expect("char");
        bad.push(if last == 'A' { 'B' } else { 'A' });
        assert!(!parse(&bad).expect("parses").matches(&hash));
    }

    #[test]
    fn malformed_tokens_do_not_parse() {
        for t in ["", "kw_", "kw_abc_def", "Bearer x", "kw_00000000000000000000000000000000_short"] {
            assert!(parse(t).is_none(), "{t}");
        }
    }
}
