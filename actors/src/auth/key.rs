//! API keys: the `tm_<key id>_<secret>` format, the stored [`KeyRecord`], and
//! verification. Pure: no I/O, the clock is a parameter.
//!
//! - A key is `tm_` + a 12-character key id + `_` + a 32-character secret, all lowercase
//!   `[a-z0-9]` (the id from `[a-z0-9]`, the secret 128 random bits in hex), so secret
//!   scanners can spot one with `tm_[a-z0-9]{12}_[a-z0-9]{32}`.
//! - Only the SHA-256 of the secret is stored (hex, [`KeyRecord::secret_hash`]); the
//!   secret is never stored or logged ([`ApiKey`]'s `Debug` hides it).
//! - [`verify`] compares hashes in constant time and hashes the presented secret even for
//!   an unknown key id (against a dummy hash), so an unknown id costs what a wrong secret
//!   costs.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::scope::Scope;
use crate::rate_limit::RateLimit;
use crate::task::Millis;

/// What every key starts with.
pub const PREFIX: &str = "tm_";
/// Length of a key id.
pub const ID_LEN: usize = 12;
/// Length of a secret (32 hex characters: 128 bits).
pub const SECRET_LEN: usize = 32;

/// A whole key as a client presents it. `Debug` and `Display` never show the secret;
/// [`ApiKey::expose`] is the one way to get the whole key (to show it once).
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    id: String,
    secret: String,
}

/// A string that is not a well-formed key. Carries nothing of the string itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a well-formed API key (expected tm_<12 chars [a-z0-9]>_<32 chars [a-z0-9]>)")]
pub struct MalformedKey;

fn is_key_char(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// Whether `part` is `len` characters of `[a-z0-9]`.
fn well_formed(part: &str, len: usize) -> bool {
    part.len() == len && part.bytes().all(is_key_char)
}

/// Whether `id` could be a key id (12 characters of `[a-z0-9]`).
pub fn is_key_id(id: &str) -> bool {
    well_formed(id, ID_LEN)
}

impl ApiKey {
    /// A fresh key: a random id and 128 random bits of secret, from the thread's
    /// cryptographically secure generator.
    pub fn generate() -> Self {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let id = (0..ID_LEN)
            .map(|_| char::from(ALPHABET[rand::random_range(0..ALPHABET.len())]))
            .collect();
        let secret = format!("{:032x}", rand::random::<u128>());
        Self { id, secret }
    }

    /// The key id (public: it names the key in listings and logs).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The whole key, `tm_<id>_<secret>`: only to show it once, at creation.
    pub fn expose(&self) -> String {
        format!("{PREFIX}{}_{}", self.id, self.secret)
    }

    /// The SHA-256 of the secret, in lowercase hex: what the store keeps.
    pub fn secret_hash(&self) -> String {
        hash_secret(&self.secret)
    }
}

impl FromStr for ApiKey {
    type Err = MalformedKey;

    fn from_str(s: &str) -> Result<Self, MalformedKey> {
        let rest = s.strip_prefix(PREFIX).ok_or(MalformedKey)?;
        let (id, secret) = rest.split_once('_').ok_or(MalformedKey)?;
        if !is_key_id(id) || !well_formed(secret, SECRET_LEN) {
            return Err(MalformedKey);
        }
        Ok(Self {
            id: id.to_owned(),
            secret: secret.to_owned(),
        })
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({PREFIX}{}_***)", self.id)
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// The SHA-256 of `secret` in lowercase hex (64 characters).
pub fn hash_secret(secret: &str) -> String {
    use fmt::Write;
    let digest = Sha256::digest(secret.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in digest.iter() {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// A stored key: everything but the secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// The key id.
    pub id: String,
    /// A name for people (`ci`, `bootstrap`).
    pub name: String,
    /// What the key may do.
    pub scopes: Vec<Scope>,
    /// SHA-256 of the secret, lowercase hex.
    pub secret_hash: String,
    /// When the key was created.
    pub created_at_ms: Millis,
    /// When the key stops working, if ever.
    pub expires_at_ms: Option<Millis>,
    /// When the key was revoked, if it was.
    pub revoked_at_ms: Option<Millis>,
    /// The key's own rate limit; `None`: the node's `--key-rate-limit`. Absent from
    /// records written before rate limits existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
}

impl KeyRecord {
    /// The record of `key`, created `now`.
    pub fn new(
        key: &ApiKey,
        name: impl Into<String>,
        scopes: Vec<Scope>,
        now: Millis,
        expires_at_ms: Option<Millis>,
    ) -> Self {
        Self {
            id: key.id.clone(),
            name: name.into(),
            scopes,
            secret_hash: key.secret_hash(),
            created_at_ms: now,
            expires_at_ms,
            revoked_at_ms: None,
            rate_limit: None,
        }
    }

    /// Whether the key works at `now`: neither revoked nor expired.
    pub fn is_live(&self, now: Millis) -> bool {
        self.revoked_at_ms.is_none() && self.expires_at_ms.is_none_or(|at| now < at)
    }
}

/// Compared with the presented secret's hash when the key id is unknown, so an unknown id
/// costs one hash and one comparison, as a wrong secret does. No secret hashes to it
/// (it is not hex).
const DUMMY_HASH: &[u8; 64] = b"zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz";

/// The record of `key` if `key` is valid at `now`: `record` is what the store holds under
/// its id (`None` when unknown), the secret's hash matches it (in constant time), and the
/// key is neither revoked nor expired. Every failure answers `None`, alike.
pub fn verify<'r>(
    key: &ApiKey,
    record: Option<&'r KeyRecord>,
    now: Millis,
) -> Option<&'r KeyRecord> {
    let presented = key.secret_hash();
    let stored = record.map_or(&DUMMY_HASH[..], |r| r.secret_hash.as_bytes());
    let matches: bool = presented.as_bytes().ct_eq(stored).into();
    let record = record?;
    (matches && record.id == key.id && record.is_live(now)).then_some(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ApiKey {
        "tm_abcdef012345_0123456789abcdef0123456789abcdef"
            .parse()
            .expect("well-formed")
    }

    #[test]
    fn a_generated_key_is_well_formed_and_round_trips() {
        let key = ApiKey::generate();
        let text = key.expose();
        assert_eq!(text.len(), 3 + ID_LEN + 1 + SECRET_LEN);
        assert!(text.starts_with(PREFIX));
        assert_eq!(text.parse::<ApiKey>(), Ok(key.clone()));
        assert_ne!(ApiKey::generate(), key, "two keys are different");
    }

    #[test]
    fn malformed_keys_are_refused() {
        for bad in [
            "",
            "tm_",
            "garbage",
            "Bearer tm_abcdef012345_0123456789abcdef0123456789abcdef",
            "xx_abcdef012345_0123456789abcdef0123456789abcdef",
            "tm_abcdef01234_0123456789abcdef0123456789abcdef0",
            "tm_ABCDEF012345_0123456789abcdef0123456789abcdef",
            "tm_abcdef012345_0123456789abcdef0123456789abcde",
            "tm_abcdef012345_0123456789abcdef0123456789abcdef0",
            "tm_abcdef012345-0123456789abcdef0123456789abcdef",
            "tm_abcdef012345_0123456789abcdef0123456789abcde_",
            "tm_abcdef012345_0123456789abcdef0123456789abcdéf",
        ] {
            assert_eq!(bad.parse::<ApiKey>(), Err(MalformedKey), "{bad:?}");
        }
    }

    #[test]
    fn debug_and_display_hide_the_secret() {
        let key = key();
        for shown in [format!("{key:?}"), key.to_string()] {
            assert!(shown.contains("abcdef012345"), "{shown}");
            assert!(!shown.contains("0123456789abcdef"), "{shown}");
        }
    }

    #[test]
    fn the_hash_is_sha256_hex() {
        // sha256("hello world")
        assert_eq!(
            hash_secret("hello world"),
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        assert_eq!(
            key().secret_hash(),
            hash_secret("0123456789abcdef0123456789abcdef")
        );
    }

    #[test]
    fn verify_accepts_only_the_right_secret_of_a_live_key() {
        let key = key();
        let mut record = KeyRecord::new(&key, "ci", vec![Scope::Submit], 1_000, Some(5_000));
        assert!(
            !record
                .secret_hash
                .contains("0123456789abcdef0123456789abcdef")
        );
        assert_eq!(verify(&key, Some(&record), 1_000), Some(&record));
        assert_eq!(verify(&key, None, 1_000), None, "unknown id");
        assert_eq!(verify(&key, Some(&record), 5_000), None, "expired");
        let wrong: ApiKey = "tm_abcdef012345_ffffffffffffffffffffffffffffffff"
            .parse()
            .expect("well-formed");
        assert_eq!(verify(&wrong, Some(&record), 1_000), None, "wrong secret");
        let other_id: ApiKey = "tm_zzzzzz012345_0123456789abcdef0123456789abcdef"
            .parse()
            .expect("well-formed");
        assert_eq!(verify(&other_id, Some(&record), 1_000), None, "another id");
        record.revoked_at_ms = Some(2_000);
        assert_eq!(verify(&key, Some(&record), 1_500), None, "revoked");
    }

    #[test]
    fn a_key_without_expiry_stays_live_until_revoked() {
        let mut record = KeyRecord::new(&key(), "x", vec![Scope::Read], 0, None);
        assert!(record.is_live(u64::MAX));
        record.revoked_at_ms = Some(1);
        assert!(!record.is_live(0));
    }
}
