//! The token encryption keyring (`--token-encryption-keys`, `TOKEN_ENCRYPTION_KEYS`): named 32-byte keys, the
//! first of which encrypts while every one decrypts.

use std::cell::RefCell;
use std::sync::Arc;

use aes_siv::KeyInit;
use aes_siv::siv::Aes256Siv;
use base64::Engine;
use zeroize::Zeroize;

/// The longest key id: short, because it is written into every encrypted value.
pub const MAX_KEY_ID_LEN: usize = 16;

/// Bytes of a key as given: 256 random bits.
pub const KEY_LEN: usize = 32;

/// Why a keyring does not parse. Messages name key ids and positions, never a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyringError {
    #[error(
        "the keyring is empty: expected KID:KEY[,KID:KEY…] (`zylker-portal token-key` prints a pair)"
    )]
    Empty,
    #[error("pair {position} of the keyring has no colon: expected KID:KEY")]
    NoColon { position: usize },
    #[error(
        "pair {position} of the keyring: the key id must be 1 to {MAX_KEY_ID_LEN} characters of A-Z, a-z, 0-9, _ and -"
    )]
    BadKeyId { position: usize },
    #[error("key {kid:?} is given twice in the keyring")]
    DuplicateKeyId { kid: String },
    #[error(
        "key {kid:?} is not 32 bytes in hex (64 digits) or base64: `zylker-portal token-key` prints a new pair"
    )]
    BadKey { kid: String },
}

/// One named key, kept as the AES-SIV key derived from it.
struct NamedKey {
    id: String,
    /// AES-256-SIV takes 64 bytes (a MAC key and a CTR key); the operator gives 32, so both halves are derived
    /// from it with HKDF-SHA256, bound to this purpose.
    siv_key: [u8; 64],
}

impl Drop for NamedKey {
    fn drop(&mut self) {
        self.siv_key.zeroize();
    }
}

/// The keys tokens are encrypted with: the first encrypts, every one decrypts (so a key can be added before the
/// old one is retired). Cheap to clone; `Debug` and `Display` show the key ids only.
#[derive(Clone)]
pub struct Keyring {
    inner: Arc<Keys>,
}

struct Keys {
    keys: Vec<NamedKey>,
    /// Each thread's ready ciphers, one per key: making one is two AES-256 key schedules and a CMAC subkey,
    /// measured at a third of a decryption (`cargo bench --bench stores`), so they are made once per thread.
    ciphers: thread_local::ThreadLocal<RefCell<Vec<Aes256Siv>>>,
}

/// The HKDF `info` that ties a derived key to this use, so the same operator key used elsewhere yields
/// unrelated bytes.
const HKDF_INFO: &[u8] = b"zylker-portal token encryption v1: AES-256-SIV";

impl Keyring {
    /// The key ids, the encrypting one first.
    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.inner.keys.iter().map(|key| key.id.as_str())
    }

    /// The id of the key that encrypts.
    pub fn encrypting_key_id(&self) -> &str {
        &self.inner.keys[0].id
    }

    /// The number of keys; never zero.
    pub fn len(&self) -> usize {
        self.inner.keys.len()
    }

    /// Always false: a keyring holds at least one key. (Clippy asks for it beside `len`.)
    pub fn is_empty(&self) -> bool {
        self.inner.keys.is_empty()
    }

    /// Runs `operation` with the cipher of the key at `index` (0 encrypts). AES-SIV's instances are stateful
    /// (`&mut self`), so each thread has its own, made at its first use.
    pub(crate) fn with_cipher<T>(
        &self,
        index: usize,
        operation: impl FnOnce(&mut Aes256Siv) -> T,
    ) -> T {
        let make = |key: &NamedKey| Aes256Siv::new((&key.siv_key).into());
        let ready = self
            .inner
            .ciphers
            .get_or(|| RefCell::new(self.inner.keys.iter().map(make).collect()));
        match ready.try_borrow_mut() {
            Ok(mut ciphers) => operation(&mut ciphers[index]),
            // Only if `operation` itself came back here: a cipher of its own then.
            Err(_) => operation(&mut make(&self.inner.keys[index])),
        }
    }

    /// The position of key `kid`, if the keyring has it.
    pub(crate) fn index_of(&self, kid: &str) -> Option<usize> {
        self.inner.keys.iter().position(|key| key.id == kid)
    }

    /// A fresh `KID:HEX` pair for `zylker-portal token-key`: a key id of `k`, today's date and four random hex
    /// digits (sortable, and two made the same day differ), and 32 random bytes from the OS-seeded generator.
    pub fn generate_pair() -> String {
        let today = time::OffsetDateTime::now_utc().date();
        let suffix: [u8; 2] = rand::random();
        let kid = format!(
            "k{:04}{:02}{:02}-{}",
            today.year(),
            u8::from(today.month()),
            today.day(),
            hex::encode(suffix)
        );
        let mut key: [u8; KEY_LEN] = rand::random();
        let pair = format!("{kid}:{}", hex::encode(key));
        key.zeroize();
        pair
    }
}

/// Whether `kid` is a valid key id: 1–16 characters from `[A-Za-z0-9_-]` (never a colon, which ends it in a value).
pub fn is_key_id(kid: &str) -> bool {
    (1..=MAX_KEY_ID_LEN).contains(&kid.len())
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A key as given: 64 hex digits, or base64 (standard or URL-safe, padded or not) of 32 bytes.
fn decode_key(text: &str) -> Option<[u8; KEY_LEN]> {
    let mut bytes = if text.len() == 2 * KEY_LEN && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(text).ok()?
    } else {
        let engines = [
            &base64::engine::general_purpose::STANDARD,
            &base64::engine::general_purpose::STANDARD_NO_PAD,
            &base64::engine::general_purpose::URL_SAFE,
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ];
        engines.iter().find_map(|engine| engine.decode(text).ok())?
    };
    let key = <[u8; KEY_LEN]>::try_from(bytes.as_slice()).ok();
    bytes.zeroize();
    key
}

impl std::str::FromStr for Keyring {
    type Err = KeyringError;

    /// Parses `KID:KEY[,KID:KEY…]`; spaces around pairs are ignored.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut keys: Vec<NamedKey> = Vec::new();
        for (index, pair) in text.split(',').map(str::trim).enumerate() {
            let position = index + 1;
            if pair.is_empty() && text.trim().is_empty() {
                return Err(KeyringError::Empty);
            }
            let (kid, key) = pair
                .split_once(':')
                .ok_or(KeyringError::NoColon { position })?;
            let kid = kid.trim();
            if !is_key_id(kid) {
                return Err(KeyringError::BadKeyId { position });
            }
            if keys.iter().any(|k| k.id == kid) {
                return Err(KeyringError::DuplicateKeyId {
                    kid: kid.to_owned(),
                });
            }
            let mut raw = decode_key(key.trim()).ok_or_else(|| KeyringError::BadKey {
                kid: kid.to_owned(),
            })?;
            let mut siv_key = [0u8; 64];
            let derived =
                hkdf::Hkdf::<sha2::Sha256>::new(None, &raw).expand(HKDF_INFO, &mut siv_key);
            raw.zeroize();
            // 64 bytes is far below HKDF-SHA256's limit of 255 blocks; the error cannot happen.
            if derived.is_err() {
                return Err(KeyringError::BadKey {
                    kid: kid.to_owned(),
                });
            }
            keys.push(NamedKey {
                id: kid.to_owned(),
                siv_key,
            });
        }
        if keys.is_empty() {
            return Err(KeyringError::Empty);
        }
        Ok(Keyring {
            inner: Arc::new(Keys {
                keys,
                ciphers: thread_local::ThreadLocal::new(),
            }),
        })
    }
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Keyring")
            .field(&self.key_ids().collect::<Vec<_>>())
            .finish()
    }
}

impl std::fmt::Display for Keyring {
    /// The key ids, comma-separated, the encrypting one first: what the log may say.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.key_ids().collect::<Vec<_>>().join(","))
    }
}

/// `--token-encryption-keys` and `TOKEN_ENCRYPTION_KEYS` are read with this parser: clap's own error for a bad
/// value repeats the value, which is a key; this one says what is wrong and names key ids only.
impl clap::builder::ValueParserFactory for Keyring {
    type Parser = crate::secret::QuietValueParser<Keyring>;

    fn value_parser() -> Self::Parser {
        crate::secret::QuietValueParser::new("the keyring")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn a_keyring_parses_hex_and_base64_keys_in_order() {
        let base64 = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        let keyring: Keyring = format!("new:{HEX_KEY}, old_1:{base64}")
            .parse()
            .expect("keyring");
        assert_eq!(keyring.key_ids().collect::<Vec<_>>(), ["new", "old_1"]);
        assert_eq!(keyring.encrypting_key_id(), "new");
        assert_eq!(keyring.to_string(), "new,old_1");
    }

    #[test]
    fn bad_keyrings_are_refused_without_repeating_the_key() {
        for (text, expected) in [
            ("", KeyringError::Empty),
            ("nocolon", KeyringError::NoColon { position: 1 }),
            (
                &format!("a:{HEX_KEY},:{HEX_KEY}"),
                KeyringError::BadKeyId { position: 2 },
            ),
            (
                &format!("seventeen-chars-x:{HEX_KEY}"),
                KeyringError::BadKeyId { position: 1 },
            ),
            (
                &format!("a:b:{HEX_KEY}"),
                KeyringError::BadKey { kid: "a".into() },
            ),
            (
                &format!("a:{HEX_KEY},a:{HEX_KEY}"),
                KeyringError::DuplicateKeyId { kid: "a".into() },
            ),
            (
                &format!("a:{}", &HEX_KEY[..62]),
                KeyringError::BadKey { kid: "a".into() },
            ),
        ] {
            let error = text.parse::<Keyring>().expect_err(text);
            assert_eq!(error, expected, "{text}");
            assert!(!error.to_string().contains(&HEX_KEY[..20]), "{error}");
        }
    }

    #[test]
    fn generated_pairs_parse_and_differ() {
        let (a, b) = (Keyring::generate_pair(), Keyring::generate_pair());
        assert_ne!(a, b);
        let keyring: Keyring = a.parse().expect("a generated pair parses");
        let kid = keyring.encrypting_key_id();
        assert!(kid.starts_with('k') && kid.len() <= MAX_KEY_ID_LEN, "{kid}");
    }

    #[test]
    fn debug_shows_key_ids_only() {
        let keyring: Keyring = format!("k1:{HEX_KEY}").parse().expect("keyring");
        let printed = format!("{keyring:?} {keyring}");
        assert!(
            printed.contains("k1") && !printed.contains("0001020304"),
            "{printed}"
        );
    }
}
