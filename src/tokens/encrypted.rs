//! `EncryptedStore`: any `TokenStore`, with its four secret fields encrypted at rest (AES-SIV, `enc:v1:KID:BASE64`).
//!
//! A decorator, so that no store changes and a custom store is encrypted as well as the built-in ones. It
//! encrypts `client_secret`, `refresh_token`, `access_token` and `grant_token`; `id`, `user_name`, `client_id`,
//! `expiry_time`, `redirect_url` and `api_domain` stay readable (the match by user name, the admin page).
//!
//! # Why AES-SIV, and what the associated data binds
//!
//! The contract looks rows up by access, grant or refresh token, and those lookups must stay the inner store's
//! own equality match (an index, a `WHERE`), never a scan. So encryption is deterministic: AES-SIV (RFC 5297,
//! RustCrypto's `aes-siv`), which gives the same text for the same key, plaintext and associated data, and
//! stays safe when it does (it reveals equality of values and nothing else). A lookup encrypts the value it
//! is asked for and lets the inner store match it.
//!
//! A lookup by token does not know the row's `user_name`, so the three lookup fields cannot have it in their
//! associated data: theirs is the field's name. The client secret, which is never looked up, has the field's
//! name, the row's `user_name` and the row's refresh token as associated data. So, on a copy of the database
//! that someone could also write to:
//! - a value moved to another column fails to decrypt (every field's name is bound);
//! - a client secret moved to another user's row fails to decrypt (its user name is bound);
//! - a refresh token moved to another row (whose client secret was made with its own refresh token), or a
//!   row whose `user_name` was changed, fails to decrypt at the client secret, and the whole row is refused.
//!
//! What it does not stop: an access token moved to another row is read there until it expires (an hour at
//! Zoho's); the refresh path then uses the row's own refresh token.
//!
//! # Reading old rows, rotating keys
//!
//! A value that does not start with `enc:v1:` is plaintext and read as it is (rows from before encryption was
//! turned on); the next write of the row encrypts it. A value under a key id the keyring does not have is
//! [`StoreError::UnknownKeyId`]; a value that does not decrypt (altered, moved) is
//! [`StoreError::Undecryptable`]: never garbage, never a panic. Lookups by token try the first key, then the
//! others, then plaintext: a few finds at most, each the inner store's own.

use std::sync::Arc;

use base64::Engine;

use super::keyring::{Keyring, is_key_id};
use super::{OAuthToken, Secret, StoreError, StoreFuture, TokenKey, TokenStore, exposed};

/// What every encrypted value starts with; the version lets a later format live beside this one.
pub const ENCRYPTED_PREFIX: &str = "enc:v1:";

/// The base64 of encrypted values: no `+`, `/` or `=`, so a value needs no quoting in a CSV file or a URL.
const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The four encrypted fields, named as in the SDK's table: the name is associated data of each value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    ClientSecret,
    RefreshToken,
    AccessToken,
    GrantToken,
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Field::ClientSecret => "client_secret",
            Field::RefreshToken => "refresh_token",
            Field::AccessToken => "access_token",
            Field::GrantToken => "grant_token",
        }
    }
}

/// How a value is written: under the keyring's key at this index, or as plaintext (`tokens decrypt`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Key(usize),
    Plaintext,
}

/// Whether a stored value is encrypted (`enc:v1:…`), whatever its key.
pub fn is_encrypted(value: &str) -> bool {
    value.starts_with(ENCRYPTED_PREFIX)
}

/// The key id of an encrypted value (`enc:v1:KID:…`), `None` for plaintext.
pub fn key_id_of(value: &str) -> Option<&str> {
    value
        .strip_prefix(ENCRYPTED_PREFIX)
        .and_then(|rest| rest.split_once(':'))
        .map(|(kid, _)| kid)
}

/// A [`TokenStore`] that encrypts the secret fields of every row it writes into `inner`, and decrypts them on
/// every read. See [the module](self) for what is encrypted and how.
///
/// Every provided method goes through to the inner store (the refresh lease, both compare-and-set methods, the
/// fast reads), so a fleet with encryption still makes one refresh per expiry.
pub struct EncryptedStore<S: ?Sized + TokenStore = dyn TokenStore> {
    keyring: Keyring,
    /// The rows decrypted lately, by their stored secrets and user name (all that decryption depends on):
    /// the read every page makes finds its row here instead of decrypting four values again. Measured with
    /// `cargo bench --bench stores`: without it (and without the per-thread ciphers of [`Keyring`]), finds by
    /// user name ran at 53% of the plain SQLite store's and save+find pairs at 70%; with both, 85% and 78%. Errors are never kept,
    /// so an altered value is refused on every read. At most [`MAX_CACHED_ROWS`], emptied when full.
    opened: dashmap::DashMap<Vec<u8>, Secrets>,
    inner: Arc<S>,
}

/// The four secrets of a row, decrypted: client secret, refresh, access and grant token.
type Secrets = [Option<Secret>; 4];

/// How many decrypted rows an [`EncryptedStore`] keeps: a portal's active users several times over.
const MAX_CACHED_ROWS: usize = 4096;

/// What a stored row's decryption depends on, as one unambiguous key: its user name and four secrets as stored.
fn row_key(stored: &OAuthToken) -> Vec<u8> {
    let parts = [
        stored.user_name.as_deref(),
        exposed(&stored.client_secret),
        exposed(&stored.refresh_token),
        exposed(&stored.access_token),
        exposed(&stored.grant_token),
    ];
    let mut key = Vec::with_capacity(parts.iter().map(|p| p.map_or(1, |p| p.len() + 9)).sum());
    for part in parts {
        match part {
            None => key.push(0),
            Some(text) => {
                key.push(1);
                key.extend_from_slice(&(text.len() as u64).to_le_bytes());
                key.extend_from_slice(text.as_bytes());
            }
        }
    }
    key
}

impl<S: TokenStore> EncryptedStore<S> {
    /// `inner`, encrypted with `keyring`'s first key.
    pub fn new(inner: S, keyring: Keyring) -> Self {
        EncryptedStore::over(Arc::new(inner), keyring)
    }
}

impl<S: ?Sized + TokenStore> EncryptedStore<S> {
    /// A shared `inner` (e.g. the `Arc<dyn TokenStore>` a spec opened), encrypted with `keyring`'s first key.
    pub fn over(inner: Arc<S>, keyring: Keyring) -> Self {
        EncryptedStore {
            keyring,
            opened: dashmap::DashMap::new(),
            inner,
        }
    }

    /// Keeps the decrypted secrets of a stored row.
    fn remember(&self, key: Vec<u8>, secrets: Secrets) {
        if self.opened.len() >= MAX_CACHED_ROWS {
            self.opened.clear();
        }
        self.opened.insert(key, secrets);
    }

    /// The store underneath, which holds the encrypted rows.
    pub fn inner(&self) -> &Arc<S> {
        &self.inner
    }

    /// The keyring.
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// `value` as stored under `encoding`; an empty value stays empty (an empty token means "none" to the
    /// contract, and its ciphertext would not be empty).
    fn seal(
        &self,
        encoding: Encoding,
        field: Field,
        ad: &[&[u8]],
        value: &str,
    ) -> Result<String, StoreError> {
        let Encoding::Key(index) = encoding else {
            return Ok(value.to_owned());
        };
        if value.is_empty() {
            return Ok(String::new());
        }
        let headers = std::iter::once(field.name().as_bytes()).chain(ad.iter().copied());
        // AES-SIV fails only on more than 126 associated data items (this gives at most three); should it ever
        // fail, the write fails: a secret is never stored as something else.
        let sealed = self
            .keyring
            .with_cipher(index, |cipher| cipher.encrypt(headers, value.as_bytes()))
            .map_err(|_| {
                StoreError::backend(
                    format!("encrypt a {}", field.name()),
                    "AES-SIV refused the associated data",
                )
            })?;
        let kid = self.keyring.key_ids().nth(index).unwrap_or_default();
        Ok(format!("{ENCRYPTED_PREFIX}{kid}:{}", BASE64.encode(sealed)))
    }

    /// The plaintext of a stored value of row `id`: plaintext as it is, an `enc:v1:` value decrypted.
    fn open(
        &self,
        id: &str,
        field: Field,
        ad: &[&[u8]],
        stored: &str,
    ) -> Result<String, StoreError> {
        let Some(rest) = stored.strip_prefix(ENCRYPTED_PREFIX) else {
            return Ok(stored.to_owned());
        };
        let undecryptable = |kid: &str| StoreError::Undecryptable {
            id: id.to_owned(),
            field: field.name(),
            kid: kid.to_owned(),
        };
        let Some((kid, payload)) = rest.split_once(':').filter(|(kid, _)| is_key_id(kid)) else {
            return Err(undecryptable("?"));
        };
        let index = self
            .keyring
            .index_of(kid)
            .ok_or_else(|| StoreError::UnknownKeyId {
                kid: kid.to_owned(),
                id: id.to_owned(),
                field: field.name(),
            })?;
        let sealed = BASE64.decode(payload).map_err(|_| undecryptable(kid))?;
        let headers = std::iter::once(field.name().as_bytes()).chain(ad.iter().copied());
        let plain = self
            .keyring
            .with_cipher(index, |cipher| cipher.decrypt(headers, &sealed))
            .map_err(|_| undecryptable(kid))?;
        String::from_utf8(plain).map_err(|_| undecryptable(kid))
    }

    /// `token` as stored under `encoding`: its four secret fields sealed, the rest as it is.
    fn seal_token(&self, token: &OAuthToken, encoding: Encoding) -> Result<OAuthToken, StoreError> {
        let user = token.user_name.as_deref().unwrap_or_default();
        let refresh = exposed(&token.refresh_token).unwrap_or_default();
        let seal = |field: Field, value: &Option<Secret>, ad: &[&[u8]]| {
            exposed(value)
                .map(|v| self.seal(encoding, field, ad, v).map(Secret::from))
                .transpose()
        };
        Ok(OAuthToken {
            client_secret: seal(
                Field::ClientSecret,
                &token.client_secret,
                &[user.as_bytes(), refresh.as_bytes()],
            )?,
            refresh_token: seal(Field::RefreshToken, &token.refresh_token, &[])?,
            access_token: seal(Field::AccessToken, &token.access_token, &[])?,
            grant_token: seal(Field::GrantToken, &token.grant_token, &[])?,
            ..token.clone()
        })
    }

    /// A stored row, decrypted.
    fn open_token(&self, stored: OAuthToken) -> Result<OAuthToken, StoreError> {
        let key = row_key(&stored);
        if let Some(secrets) = self.opened.get(&key) {
            let [client_secret, refresh_token, access_token, grant_token] = secrets.clone();
            return Ok(OAuthToken {
                client_secret,
                refresh_token,
                access_token,
                grant_token,
                ..stored
            });
        }
        let opened = self.decrypt_token(stored)?;
        self.remember(key, secrets_of(&opened));
        Ok(opened)
    }

    /// A stored row, decrypted without the cache.
    fn decrypt_token(&self, stored: OAuthToken) -> Result<OAuthToken, StoreError> {
        let id = stored.id.clone().unwrap_or_default();
        let open = |field: Field, value: &Option<Secret>, ad: &[&[u8]]| {
            exposed(value)
                .map(|v| self.open(&id, field, ad, v).map(Secret::from))
                .transpose()
        };
        let refresh_token = open(Field::RefreshToken, &stored.refresh_token, &[])?;
        let user = stored.user_name.as_deref().unwrap_or_default();
        let refresh = exposed(&refresh_token).unwrap_or_default();
        let client_secret = open(
            Field::ClientSecret,
            &stored.client_secret,
            &[user.as_bytes(), refresh.as_bytes()],
        )?;
        Ok(OAuthToken {
            client_secret,
            refresh_token,
            access_token: open(Field::AccessToken, &stored.access_token, &[])?,
            grant_token: open(Field::GrantToken, &stored.grant_token, &[])?,
            ..stored
        })
    }

    fn open_found(&self, found: Option<OAuthToken>) -> Result<Option<OAuthToken>, StoreError> {
        found.map(|row| self.open_token(row)).transpose()
    }

    /// Every way a value may be stored, the most likely first: the encrypting key, the other keys, plaintext.
    fn encodings(&self) -> impl Iterator<Item = Encoding> {
        (0..self.keyring.len())
            .map(Encoding::Key)
            .chain(std::iter::once(Encoding::Plaintext))
    }

    /// The stored row that a token key names, as stored, and how its key field was encoded: the inner store's
    /// own match, tried once per encoding until one finds a row.
    fn find_stored_by_token(
        &self,
        partial: &OAuthToken,
        key: TokenKey<'_>,
    ) -> Result<Option<OAuthToken>, StoreError> {
        let (field, value) = match key {
            TokenKey::UserName(_) => return self.inner.find_token(&user_name_probe(partial)),
            TokenKey::AccessToken(v) => (Field::AccessToken, v),
            TokenKey::GrantToken(v) => (Field::GrantToken, v),
            TokenKey::RefreshToken(v) => (Field::RefreshToken, v),
        };
        for encoding in self.encodings() {
            // The probe keeps what decides the key (client credentials present or not) and carries only the
            // field matched on: the other secrets play no part in a match, and need not be encrypted.
            let sealed = Some(Secret::from(self.seal(encoding, field, &[], value)?));
            let mut probe = OAuthToken {
                user_name: partial.user_name.clone(),
                client_id: partial.client_id.clone(),
                client_secret: partial.client_secret.as_ref().map(|_| Secret::from("")),
                ..OAuthToken::default()
            };
            match field {
                Field::AccessToken => probe.access_token = sealed,
                Field::GrantToken => probe.grant_token = sealed,
                _ => probe.refresh_token = sealed,
            }
            if let Some(found) = self.inner.find_token(&probe)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// Rewrites row `id` with every secret under `target` (the first key, or plaintext), only if the row is
    /// still what was read, holding the row's refresh lease (so no portal refreshes it meanwhile): the access
    /// token is the row's version (every write a portal makes changes it: a login brings a new one, a refresh
    /// compare-and-sets it), so the write starts with a compare-and-set of the access token to its own value
    /// re-encoded, and the rest of the row is written only if nothing else changed meanwhile. Returns whether
    /// the row changed; `false` too when it was already as `target` wants or is gone. A row another writer
    /// changed between the reads is read again, up to a few times.
    ///
    /// What is left: a login's whole-row save landing between the last check and the write is overwritten
    /// by the row as it was (the user keeps their previous tokens, still valid at Zoho). The trait has no
    /// whole-row compare-and-set to close that gap of a few microseconds; a store whose lease is the default
    /// (grants at once) has no exclusion of refreshes across processes either.
    fn rewrite_row(&self, id: &str, target: Encoding) -> Result<bool, StoreError> {
        // The row's refresh lease keeps the portals' refreshes (which compare-and-set the access token under
        // it) out of the row while it is rewritten, so the whole-row write below cannot undo one. A portal
        // refreshing now holds it for a moment: wait for it, for a few seconds at most.
        let holder = format!(
            "rewrite:{}:{}",
            std::process::id(),
            crate::secret::random_token()
        );
        let mut waited = 0;
        while !self
            .inner
            .try_acquire_refresh_lease(id, &holder, REWRITE_LEASE_TTL)?
        {
            waited += 1;
            if waited > LEASE_WAITS {
                return Err(StoreError::backend(
                    format!("re-encrypt token {id}"),
                    "its refresh lease stayed taken; run the command again",
                ));
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let rewritten = self.rewrite_row_under_lease(id, target);
        let released = self.inner.release_refresh_lease(id, &holder);
        let rewritten = rewritten?;
        released?;
        Ok(rewritten)
    }

    fn rewrite_row_under_lease(&self, id: &str, target: Encoding) -> Result<bool, StoreError> {
        for _attempt in 0..REWRITE_ATTEMPTS {
            let Some(stored) = self.inner.find_token_by_id(id)? else {
                return Ok(false);
            };
            let plain = self.open_token(stored.clone())?;
            let wanted = self.seal_token(&plain, target)?;
            if wanted == stored {
                return Ok(false);
            }
            let stored_access = exposed(&stored.access_token);
            let mut expected = stored.clone();
            if let Some(access) = exposed(&wanted.access_token)
                && Some(access) != stored_access
            {
                // The compare-and-set writes an expiry too: the row's own (0 for none, which reads as expired).
                let expiry = stored.expiry_time.unwrap_or_default();
                if !self
                    .inner
                    .compare_and_set_access_token(id, stored_access, access, expiry)?
                {
                    continue;
                }
                expected.access_token = wanted.access_token.clone();
                expected.expiry_time = Some(expiry);
            }
            // Nothing else changed the row since it was read (its access token is the re-encoded one now)?
            let Some(now) = self.inner.find_token_by_id(id)? else {
                return Ok(false);
            };
            if now != expected {
                continue;
            }
            let mut write = OAuthToken {
                expiry_time: expected.expiry_time,
                ..wanted
            };
            self.inner.save_token(&mut write)?;
            return Ok(true);
        }
        Err(StoreError::backend(
            format!("re-encrypt token {id}"),
            "the row kept changing under other writers; run the command again",
        ))
    }

    /// Re-encrypts row `id` under the first key (plaintext values included); `tokens rekey`, one row at a time.
    /// Returns whether it changed anything.
    pub fn rekey_row(&self, id: &str) -> Result<bool, StoreError> {
        self.rewrite_row(id, Encoding::Key(0))
    }

    /// Writes row `id` back in plaintext; `tokens decrypt`, one row at a time. Returns whether it changed
    /// anything.
    pub fn decrypt_row(&self, id: &str) -> Result<bool, StoreError> {
        self.rewrite_row(id, Encoding::Plaintext)
    }

    /// The stored access token of row `id` whose plaintext is `expected`, when it is stored otherwise than the
    /// first key would write it (an older key, plaintext): what a compare-and-set must name to act on it.
    fn stored_access_token_if(
        &self,
        id: &str,
        expected: &str,
    ) -> Result<Option<Option<String>>, StoreError> {
        let Some(stored) = self.inner.find_token_by_id(id)? else {
            return Ok(None);
        };
        let raw = exposed(&stored.access_token);
        let plain = raw
            .map(|value| self.open(id, Field::AccessToken, &[], value))
            .transpose()?;
        Ok((plain.as_deref() == Some(expected)).then(|| raw.map(str::to_owned)))
    }
}

/// The four secrets of a token, in the order of [`Secrets`].
fn secrets_of(token: &OAuthToken) -> Secrets {
    [
        token.client_secret.clone(),
        token.refresh_token.clone(),
        token.access_token.clone(),
        token.grant_token.clone(),
    ]
}

/// How many times a rewrite reads a row again after another writer changed it.
const REWRITE_ATTEMPTS: usize = 5;

/// How long a rewrite may hold a row's refresh lease: far more than the few statements it takes; a command
/// killed meanwhile blocks that row's refreshes this long at most.
const REWRITE_LEASE_TTL: std::time::Duration = std::time::Duration::from_secs(5);

/// How many times (50 ms apart) a rewrite asks again for a refresh lease a portal holds: 5 s.
const LEASE_WAITS: usize = 100;

/// A probe that names a row by user name: the secrets play no part in that match, so none is sent.
fn user_name_probe(partial: &OAuthToken) -> OAuthToken {
    OAuthToken {
        id: partial.id.clone(),
        user_name: partial.user_name.clone(),
        client_id: partial.client_id.clone(),
        ..OAuthToken::default()
    }
}

impl<S: ?Sized + TokenStore> TokenStore for EncryptedStore<S> {
    fn find_token(&self, partial: &OAuthToken) -> Result<Option<OAuthToken>, StoreError> {
        let Some(key) = partial.key() else {
            return Ok(None);
        };
        let found = self.open_found(self.find_stored_by_token(partial, key)?)?;
        // The inner store matched the stored text; the plaintext must match too (it does, unless a value was
        // swapped in a way the associated data cannot see).
        Ok(found.filter(|row| row.matches(key)))
    }

    fn save_token(&self, token: &mut OAuthToken) -> Result<(), StoreError> {
        let mut stored = self.seal_token(token, Encoding::Key(0))?;
        // The row is read back soon (the login's next page): its secrets are known, no need to decrypt them.
        self.remember(row_key(&stored), secrets_of(token));
        // The inner store matches a token key by the stored text, which for a row written under an older key or
        // in plaintext is not the first key's: find that row here, and name it by id (rule 2 before rule 3
        // writes the same row the contract means).
        if let Some(
            key @ (TokenKey::AccessToken(_) | TokenKey::GrantToken(_) | TokenKey::RefreshToken(_)),
        ) = token.key()
        {
            let id_names_a_row = match token.id.as_deref() {
                Some(id) => self.inner.find_token_by_id(id)?.is_some(),
                None => false,
            };
            if !id_names_a_row && let Some(row) = self.find_stored_by_token(token, key)? {
                stored.id = row.id;
            }
        }
        self.inner.save_token(&mut stored)?;
        token.id = stored.id;
        Ok(())
    }

    fn delete_token(&self, id: &str) -> Result<(), StoreError> {
        self.inner.delete_token(id)
    }

    fn get_tokens(&self) -> Result<Vec<OAuthToken>, StoreError> {
        self.inner
            .get_tokens()?
            .into_iter()
            .map(|row| self.open_token(row))
            .collect()
    }

    fn delete_tokens(&self) -> Result<(), StoreError> {
        self.inner.delete_tokens()
    }

    fn find_token_by_id(&self, id: &str) -> Result<Option<OAuthToken>, StoreError> {
        self.open_found(self.inner.find_token_by_id(id)?)
    }

    fn find_token_by_id_without_waiting(
        &self,
        id: &str,
    ) -> Option<Result<Option<OAuthToken>, StoreError>> {
        self.inner
            .find_token_by_id_without_waiting(id)
            .map(|found| found.and_then(|found| self.open_found(found)))
    }

    fn find_token_by_id_async<'a>(
        &'a self,
        id: &'a str,
    ) -> Option<StoreFuture<'a, Option<OAuthToken>>> {
        let reading = self.inner.find_token_by_id_async(id)?;
        Some(Box::pin(async move { self.open_found(reading.await?) }))
    }

    /// The inner store's compare-and-set, with the expected token as the first key writes it (one statement,
    /// as before, for every row written since the key was first); for a row whose access token is stored
    /// otherwise (an older key, plaintext, or rewritten by a rekey meanwhile), again with the stored text while
    /// it decrypts to the expected one.
    fn compare_and_set_access_token(
        &self,
        id: &str,
        expected_access_token: Option<&str>,
        access_token: &str,
        expiry_time: i64,
    ) -> Result<bool, StoreError> {
        let new = self.seal(Encoding::Key(0), Field::AccessToken, &[], access_token)?;
        let Some(expected) = expected_access_token else {
            return self
                .inner
                .compare_and_set_access_token(id, None, &new, expiry_time);
        };
        let sealed = self.seal(Encoding::Key(0), Field::AccessToken, &[], expected)?;
        if self
            .inner
            .compare_and_set_access_token(id, Some(&sealed), &new, expiry_time)?
        {
            return Ok(true);
        }
        // The stored text decrypts to the expected token but is not the first key's (an older key, plaintext),
        // or a rekey rewrote it between the two: compare-and-set on the text as it is now, while it still
        // decrypts to the expected token.
        for _attempt in 0..REWRITE_ATTEMPTS {
            let Some(stored) = self.stored_access_token_if(id, expected)? else {
                return Ok(false);
            };
            if self
                .inner
                .compare_and_set_access_token(id, stored.as_deref(), &new, expiry_time)?
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// As [`compare_and_set_access_token`](Self::compare_and_set_access_token): the inner store's own, with
    /// the expected token as stored.
    fn delete_token_if_unchanged(
        &self,
        id: &str,
        expected_access_token: Option<&str>,
    ) -> Result<bool, StoreError> {
        let Some(expected) = expected_access_token else {
            return self.inner.delete_token_if_unchanged(id, None);
        };
        let sealed = self.seal(Encoding::Key(0), Field::AccessToken, &[], expected)?;
        if self.inner.delete_token_if_unchanged(id, Some(&sealed))? {
            return Ok(true);
        }
        for _attempt in 0..REWRITE_ATTEMPTS {
            let Some(stored) = self.stored_access_token_if(id, expected)? else {
                return Ok(false);
            };
            if self
                .inner
                .delete_token_if_unchanged(id, stored.as_deref())?
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn try_acquire_refresh_lease(
        &self,
        token_id: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        self.inner.try_acquire_refresh_lease(token_id, holder, ttl)
    }

    fn release_refresh_lease(&self, token_id: &str, holder: &str) -> Result<(), StoreError> {
        self.inner.release_refresh_lease(token_id, holder)
    }
}

/// `store`, encrypted with `keyring` when there is one: how `serve` and the `tokens` commands wrap the store a
/// spec opened.
pub fn encrypted_if(store: Arc<dyn TokenStore>, keyring: Option<&Keyring>) -> Arc<dyn TokenStore> {
    match keyring {
        Some(keyring) => Arc::new(EncryptedStore::over(store, keyring.clone())),
        None => store,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::conformance::sample_token;
    use crate::tokens::{ListStore, SqliteStore};

    const ALICE: &str = "alice@zylker.com:1";
    const BOB: &str = "bob@zylker.com:1";

    fn keyring(text: &str) -> Keyring {
        // Key ids name keys made from their own letter, so "B,A" and "A" share key A.
        text.split(',')
            .map(|kid| format!("{kid}:{}", hex::encode([kid.as_bytes()[0]; 32])))
            .collect::<Vec<_>>()
            .join(",")
            .parse()
            .expect("keyring")
    }

    fn store(inner: &Arc<dyn TokenStore>, keys: &str) -> EncryptedStore {
        EncryptedStore::over(inner.clone(), keyring(keys))
    }

    fn saved(store: &dyn TokenStore, user: &str) -> OAuthToken {
        let mut token = sample_token(user);
        store.save_token(&mut token).expect("save");
        token
    }

    fn secrets(token: &OAuthToken) -> [Option<&str>; 4] {
        [
            exposed(&token.client_secret),
            exposed(&token.refresh_token),
            exposed(&token.access_token),
            exposed(&token.grant_token),
        ]
    }

    fn by_refresh_token(token: &OAuthToken) -> OAuthToken {
        OAuthToken {
            client_id: token.client_id.clone(),
            client_secret: token.client_secret.clone(),
            refresh_token: token.refresh_token.clone(),
            ..OAuthToken::default()
        }
    }

    fn by_access_token(token: &OAuthToken) -> OAuthToken {
        OAuthToken {
            access_token: token.access_token.clone(),
            ..OAuthToken::default()
        }
    }

    #[test]
    fn the_four_secrets_are_stored_encrypted_under_the_first_key_and_the_rest_stays_readable() {
        let inner: Arc<dyn TokenStore> = Arc::new(SqliteStore::in_memory().expect("store"));
        let alice = saved(&store(&inner, "A,B"), ALICE);
        let row = inner.find_token_by_id(alice.id.as_deref().unwrap_or_default());
        let row = row.expect("read").expect("the row");
        for (stored, plain) in secrets(&row).into_iter().zip(secrets(&alice)) {
            let stored = stored.expect("a value");
            assert!(stored.starts_with("enc:v1:A:"), "{stored}");
            assert!(!stored.contains(plain.unwrap_or_default()));
        }
        assert_eq!(
            (
                row.user_name,
                row.client_id,
                row.expiry_time,
                row.api_domain
            ),
            (
                alice.user_name,
                alice.client_id,
                alice.expiry_time,
                alice.api_domain
            )
        );
    }

    #[test]
    fn plaintext_rows_are_read_and_found_as_they_are_and_encrypted_on_their_next_write() {
        let inner: Arc<dyn TokenStore> = Arc::new(ListStore::new());
        let alice = saved(inner.as_ref(), ALICE);
        let encrypted = store(&inner, "A");
        assert_eq!(
            encrypted
                .find_token(&by_refresh_token(&alice))
                .expect("find"),
            Some(alice.clone())
        );
        assert_eq!(
            encrypted
                .find_token(&by_access_token(&alice))
                .expect("find"),
            Some(alice.clone())
        );
        let mut again = alice.clone();
        again.id = None;
        again.user_name = None;
        encrypted
            .save_token(&mut again)
            .expect("save by access token");
        assert_eq!(again.id, alice.id, "the plaintext row is the one written");
        let rows = inner.get_tokens().expect("rows");
        assert_eq!(rows.len(), 1);
        assert!(exposed(&rows[0].refresh_token).is_some_and(is_encrypted));
    }

    #[test]
    fn rows_under_an_older_key_are_read_found_and_refreshed_once_a_new_key_comes_first() {
        let inner: Arc<dyn TokenStore> = Arc::new(ListStore::new());
        let alice = saved(&store(&inner, "A"), ALICE);
        let id = alice.id.clone().unwrap_or_default();
        let rotated = store(&inner, "B,A");
        assert_eq!(
            rotated.find_token_by_id(&id).expect("read"),
            Some(alice.clone())
        );
        assert_eq!(
            rotated.find_token(&by_refresh_token(&alice)).expect("find"),
            Some(alice.clone())
        );
        let wrong = rotated.compare_and_set_access_token(&id, Some("1000.not-it"), "1000.new", 5);
        assert!(
            !wrong.expect("cas"),
            "a compare-and-set on another token loses"
        );
        let won = rotated
            .compare_and_set_access_token(&id, exposed(&alice.access_token), "1000.new", 5)
            .expect("cas");
        assert!(won, "the refresh of a row under the old key wins");
        let row = inner.find_token_by_id(&id).expect("read").expect("row");
        assert!(exposed(&row.access_token).is_some_and(|v| v.starts_with("enc:v1:B:")));
        assert_eq!(
            exposed(
                &rotated
                    .find_token_by_id(&id)
                    .expect("read")
                    .expect("row")
                    .access_token
            ),
            Some("1000.new")
        );
        assert!(
            rotated
                .delete_token_if_unchanged(&id, Some("1000.new"))
                .expect("delete")
        );
    }

    #[test]
    fn a_value_under_a_key_not_in_the_keyring_is_an_error_naming_the_key() {
        let inner: Arc<dyn TokenStore> = Arc::new(ListStore::new());
        let alice = saved(&store(&inner, "A"), ALICE);
        let error = store(&inner, "B")
            .find_token_by_id(alice.id.as_deref().unwrap_or_default())
            .expect_err("key A is gone");
        assert!(
            matches!(&error, StoreError::UnknownKeyId { kid, .. } if kid == "A"),
            "{error:?}"
        );
        assert!(error.to_string().contains("\"A\""), "{error}");
    }

    /// Changes row `id` in `inner` directly, as someone with write access to the database could.
    fn tamper(inner: &Arc<dyn TokenStore>, id: &str, change: impl FnOnce(&mut OAuthToken)) {
        let mut row = inner.find_token_by_id(id).expect("read").expect("row");
        change(&mut row);
        // Deleted and written again under its id, so that even its user name can change.
        inner.delete_token(id).expect("delete");
        inner.save_token(&mut row).expect("write");
        assert_eq!(row.id.as_deref(), Some(id));
    }

    #[test]
    fn altered_or_moved_values_are_refused_never_read_as_something_else() {
        type Change = fn(&mut OAuthToken, &OAuthToken);
        let changes: [(&str, Change); 5] = [
            ("a flipped character", |row, _| {
                let value = exposed(&row.refresh_token).unwrap_or_default();
                let flipped = if value.ends_with('A') { 'B' } else { 'A' };
                row.refresh_token = Some(format!("{}{flipped}", &value[..value.len() - 1]).into());
            }),
            ("a value moved to another column", |row, _| {
                row.grant_token = row.access_token.clone();
            }),
            ("bob's refresh token moved into alice's row", |row, bob| {
                row.refresh_token = bob.refresh_token.clone();
            }),
            ("bob's client secret moved into alice's row", |row, bob| {
                row.client_secret = bob.client_secret.clone();
            }),
            ("the row renamed to another user", |row, _| {
                row.user_name = Some("mallory@zylker.com:1".to_owned());
            }),
        ];
        for (what, change) in changes {
            let inner: Arc<dyn TokenStore> = Arc::new(ListStore::new());
            let encrypted = store(&inner, "A");
            let alice = saved(&encrypted, ALICE);
            let bob = saved(&encrypted, BOB);
            let id = alice.id.clone().unwrap_or_default();
            let bob_row = inner.find_token_by_id(bob.id.as_deref().unwrap_or_default());
            let bob_row = bob_row.expect("read").expect("row");
            tamper(&inner, &id, |row| change(row, &bob_row));
            let error = encrypted.find_token_by_id(&id).expect_err(what);
            assert!(
                matches!(error, StoreError::Undecryptable { .. }),
                "{what}: {error:?}"
            );
            assert!(encrypted.get_tokens().is_err(), "{what}");
        }
    }

    #[test]
    fn rekeying_rewrites_every_secret_under_the_first_key_once_and_decrypting_writes_plaintext() {
        let inner: Arc<dyn TokenStore> = Arc::new(ListStore::new());
        let alice = saved(&store(&inner, "A"), ALICE);
        let bob = saved(inner.as_ref(), BOB);
        let rotated = store(&inner, "B,A");
        let ids = [alice.id.clone(), bob.id.clone()].map(Option::unwrap_or_default);
        for id in &ids {
            assert!(rotated.rekey_row(id).expect("rekey"), "{id} changed");
            assert!(
                !rotated.rekey_row(id).expect("rekey"),
                "{id} is done: run again, nothing changes"
            );
        }
        let only_b = store(&inner, "B");
        for (id, plain) in ids.iter().zip([&alice, &bob]) {
            let row = inner.find_token_by_id(id).expect("read").expect("row");
            assert!(
                secrets(&row)
                    .iter()
                    .all(|v| v.is_some_and(|v| v.starts_with("enc:v1:B:")))
            );
            assert_eq!(
                only_b.find_token_by_id(id).expect("read").as_ref(),
                Some(plain)
            );
            assert!(only_b.decrypt_row(id).expect("decrypt"));
            assert_eq!(
                inner.find_token_by_id(id).expect("read").as_ref(),
                Some(plain)
            );
        }
    }

    #[test]
    fn rekeying_under_concurrent_refreshes_loses_none_of_them() {
        let inner: Arc<dyn TokenStore> = Arc::new(SqliteStore::in_memory().expect("store"));
        let users: Vec<String> = (0..4).map(|n| format!("user{n}@zylker.com:1")).collect();
        let ids: Vec<String> = users
            .iter()
            .map(|user| saved(&store(&inner, "A"), user).id.unwrap_or_default())
            .collect();
        let rotated = Arc::new(store(&inner, "B,A"));
        let refreshers: Vec<_> = users
            .iter()
            .zip(&ids)
            .map(|(user, id)| {
                let (store, user, id) = (rotated.clone(), user.clone(), id.clone());
                std::thread::spawn(move || {
                    let mut current = format!("1000.access.{user}");
                    let lease = std::time::Duration::from_secs(5);
                    for n in 0..200 {
                        // As the portal refreshes: under the row's refresh lease, a compare-and-set.
                        let holder = format!("portal {n}");
                        while !store
                            .try_acquire_refresh_lease(&id, &holder, lease)
                            .expect("lease")
                        {
                            std::thread::yield_now();
                        }
                        let fresh = format!("1000.access.{user}.{n}");
                        match store.compare_and_set_access_token(&id, Some(&current), &fresh, n) {
                            Ok(true) => current = fresh,
                            Ok(false) => panic!("{user}: refresh {n} lost to the rekey"),
                            Err(error) => panic!("{user}: {error}"),
                        }
                        store.release_refresh_lease(&id, &holder).expect("release");
                    }
                    current
                })
            })
            .collect();
        let rekey = {
            let (store, ids) = (rotated.clone(), ids.clone());
            std::thread::spawn(move || {
                for _ in 0..50 {
                    for id in &ids {
                        // Rows that keep changing may need a second run, as the command says.
                        let _ = store.rekey_row(id);
                    }
                }
            })
        };
        rekey.join().expect("rekey thread");
        for ((refresher, id), user) in refreshers.into_iter().zip(&ids).zip(&users) {
            let last = refresher.join().expect("refresher");
            let row = rotated.find_token_by_id(id).expect("read").expect("row");
            assert_eq!(exposed(&row.access_token), Some(last.as_str()), "{user}");
            assert_eq!(
                exposed(&row.refresh_token),
                Some(format!("1000.refresh.{user}").as_str())
            );
        }
    }
}
