//! Token persistence: the Zoho SDK's `TokenStore` contract, the `OAuthToken` it stores, and the stores.
//!
//! The contract is written on [`TokenStore`] itself, so that a developer reading only the trait can write a
//! store. The stores in this folder are the references: [`SqliteStore`] (the default, on a file or in memory),
//! [`ListStore`] (the shortest correct store, and the oracle of the property tests) and [`FileStore`] (the SDK's
//! CSV file). [`conformance`] is the suite every store must pass, yours included.

pub mod conformance;
pub mod encrypted;
mod file;
pub mod keyring;
mod list;
pub mod manager;
mod mysql;
mod postgres;
pub mod sign_ins;
mod spec;
mod sql;
mod sqlite;

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

pub use crate::secret::Secret;

pub use encrypted::{EncryptedStore, encrypted_if};
pub use file::FileStore;
pub use keyring::{Keyring, KeyringError};
pub use list::ListStore;
pub use manager::{AccessToken, Disconnected, LoginOutcome, TokenError, TokenManager, TokenOwner};
pub use mysql::MySqlStore;
pub use postgres::PostgresStore;
pub use sign_ins::{
    CONSUMED_LOGINS_TABLE, MemorySignIns, PendingLogin, PendingLoginFound, Purged, SIGN_INS_TABLE,
    SignInRecord, SignInStore, SignIns, SqliteSignIns, sign_ins_file_beside,
};
pub use spec::{
    DatabaseSpec, PortalStores, SslMode, StoreSpec, live_sign_ins_in, mask_password,
    open_existing_store, open_portal_stores, open_sign_in_store, open_store,
};
pub use sqlite::{DEFAULT_BUSY_TIMEOUT, JOURNAL_SIZE_LIMIT, SqliteStore};

/// What [`TokenStore::find_token_by_id_async`] returns: a store operation running on the caller's async runtime.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// One user's OAuth credentials, exactly the ten fields of the Zoho SDK's `OAuthToken` as its stores persist
/// them (the `oauthtoken` table of "the seed", Zoho's Kaizen #192 sample store `CustomStoreSQLite`,
/// <https://help.zoho.com/portal/en/community/topic/kaizen-192-implementing-custom-token-persistence-in-python-sdk>,
/// and the SDK's CSV file have one column per field; `docs/zoho-protocol.md#the-sdks-token-store`).
///
/// Every field is optional because the SDK's stores allow NULL everywhere but `id`, and a partially filled
/// token is how [`TokenStore::find_token`] is asked a question. The secret fields are [`Secret`]s, so `Debug`
/// never prints them; a store writes them with [`Secret::expose_secret`].
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OAuthToken {
    /// The row's unique key, assigned by [`TokenStore::save_token`] when absent. Text, as in the SDK ("1", "2", …).
    pub id: Option<String>,
    /// The user signature. The v8 SDK stores `email:org_id`; the seed's Python sample stores the email.
    pub user_name: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    pub refresh_token: Option<Secret>,
    pub access_token: Option<Secret>,
    /// The one-time authorization code the token was made from, if any.
    pub grant_token: Option<Secret>,
    /// When the access token expires, in milliseconds since the Unix epoch (the SDK's `expires_in`).
    pub expiry_time: Option<i64>,
    pub redirect_url: Option<String>,
    /// Where this user's CRM API lives, e.g. `https://www.zohoapis.eu`.
    pub api_domain: Option<String>,
}

/// The text of an optional secret field, for the places it must go (a row, a request).
pub fn exposed(secret: &Option<Secret>) -> Option<&str> {
    secret.as_ref().map(Secret::expose_secret)
}

/// Which stored row a partial token asks for: the SDK's matching rules, in their order of precedence.
///
/// Every store uses this one function, so that the rules are written once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKey<'a> {
    UserName(&'a str),
    AccessToken(&'a str),
    GrantToken(&'a str),
    RefreshToken(&'a str),
}

impl OAuthToken {
    /// The key that [`TokenStore::find_token`] and [`TokenStore::save_token`] match on, or `None` when the
    /// token names no row (see the trait's contract).
    pub fn key(&self) -> Option<TokenKey<'_>> {
        fn non_empty(value: Option<&str>) -> Option<&str> {
            value.filter(|v| !v.is_empty())
        }
        let has_client = self.client_id.is_some() && self.client_secret.is_some();
        let no_client = self.client_id.is_none() && self.client_secret.is_none();
        if let Some(name) = non_empty(self.user_name.as_deref()) {
            Some(TokenKey::UserName(name))
        } else if let (Some(access), true) = (non_empty(exposed(&self.access_token)), no_client) {
            Some(TokenKey::AccessToken(access))
        } else if let (Some(grant), true) = (non_empty(exposed(&self.grant_token)), has_client) {
            Some(TokenKey::GrantToken(grant))
        } else if let (Some(refresh), true) = (non_empty(exposed(&self.refresh_token)), has_client)
        {
            Some(TokenKey::RefreshToken(refresh))
        } else {
            None
        }
    }

    /// Whether this stored token is the row `key` asks for.
    pub fn matches(&self, key: TokenKey<'_>) -> bool {
        let field = match key {
            TokenKey::UserName(_) => self.user_name.as_deref(),
            TokenKey::AccessToken(_) => exposed(&self.access_token),
            TokenKey::GrantToken(_) => exposed(&self.grant_token),
            TokenKey::RefreshToken(_) => exposed(&self.refresh_token),
        };
        let wanted = match key {
            TokenKey::UserName(v)
            | TokenKey::AccessToken(v)
            | TokenKey::GrantToken(v)
            | TokenKey::RefreshToken(v) => v,
        };
        field == Some(wanted)
    }

    /// The token's user name, when it has a non-empty one: the name that makes a row a user's.
    pub fn user_name(&self) -> Option<&str> {
        self.user_name.as_deref().filter(|name| !name.is_empty())
    }

    /// Whether the token carries something worth saving: a refresh, grant or access token.
    pub fn has_credentials(&self) -> bool {
        [&self.refresh_token, &self.grant_token, &self.access_token]
            .into_iter()
            .any(|value| value.as_ref().is_some_and(|v| !v.is_empty()))
    }
}

/// Everything a store can fail with. Stores never panic; they return one of these.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `save_token` was given a token that names a row (by id or user) but carries no refresh, grant or access
    /// token: there would be nothing to use afterwards (the SDK raises here too).
    #[error("the token names a row but carries no refresh, grant or access token")]
    NothingToSave,
    /// The backing file exists but is not a token store (not a database, a foreign CSV header, …).
    #[error("{path} is not a token store: {reason}")]
    NotAStore { path: String, reason: String },
    /// The spec names a file that does not exist, where the store must already be there (the `tokens`
    /// commands inspect and maintain a store; they never create one).
    #[error("no token store at {path}: the file does not exist")]
    Missing { path: String },
    /// The database of a `postgres://` or `mysql://` spec has no token table, where the store must already be
    /// there (as [`Missing`](Self::Missing) for files). `location` is the spec with its password masked.
    #[error("no token store at {location}: the database has no table {table}")]
    MissingTable { location: String, table: String },
    /// The store spec (`--store`, `TOKEN_STORE`) is not one of the accepted forms.
    #[error(
        "unknown token store {0:?}: expected sqlite:PATH (sqlite:PATH?create=1 to add the token table to a database that holds other tables), sqlite::memory:, list, file:PATH, postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE or mysql://USER[:PASSWORD]@HOST[:PORT]/DATABASE"
    )]
    BadSpec(String),
    /// A `postgres://` or `mysql://` spec that does not parse; `spec` has its password masked.
    #[error("bad token store {spec}: {reason}")]
    BadDatabaseSpec { spec: String, reason: String },
    /// A stored value is encrypted under a key id that the keyring (`--token-encryption-keys`,
    /// `TOKEN_ENCRYPTION_KEYS`) does not have: the key was removed before every row was re-encrypted, or the
    /// portal runs with another keyring than the one that wrote the row.
    #[error(
        "the {field} of token {id} is encrypted under key {kid:?}, which is not in the keyring (--token-encryption-keys / TOKEN_ENCRYPTION_KEYS): add key {kid:?} to the keyring to read it"
    )]
    UnknownKeyId {
        kid: String,
        id: String,
        field: &'static str,
    },
    /// A stored encrypted value does not decrypt under the key it names: it was altered, or moved from another
    /// column or row. It is refused rather than read as something else.
    #[error(
        "the {field} of token {id} does not decrypt under key {kid:?}: it was altered, or moved from another column or row"
    )]
    Undecryptable {
        id: String,
        field: &'static str,
        kid: String,
    },
    /// The backend failed: I/O, a locked database, a broken pool, … The cause chain says which.
    #[error("token store failure: {context}")]
    Backend {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl StoreError {
    /// Wraps a backend error with a short description of what the store was doing.
    pub fn backend(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        StoreError::Backend {
            context: context.into(),
            source: source.into(),
        }
    }
}

/// The Zoho SDK's token persistence interface: six methods, two provided ones for the refresh path, and an
/// optional fast path for reads.
///
/// Implement the six and your store works with the portal's token manager; prove it with one line in a test
/// file, which runs every rule below as its own `#[test]` (see [`conformance`]):
///
/// ```ignore
/// zylker_portal::token_store_conformance!(my_store_conformance, || MyStore::new());
/// ```
///
/// [`ListStore`] is the shortest correct implementation in the crate; `examples/custom_store.rs` is a complete
/// one outside it, written only against this public API (a JSON file, with [`row_to_write`] and
/// [`id_for_new_row`] choosing the row as the contract says). Methods are synchronous (a store is
/// allowed to block: the portal calls the six from a blocking thread pool) and must be safe to call from many
/// threads at once. No method may panic: failures are [`StoreError`]s.
///
/// # Which row a token names
///
/// [`find_token`](Self::find_token) and [`save_token`](Self::save_token) match a partial token to a stored row
/// by the first of these that the partial token has ([`OAuthToken::key`]):
///
/// 1. a non-empty `user_name`;
/// 2. else a non-empty `access_token`, when `client_id` and `client_secret` are both absent;
/// 3. else a non-empty `grant_token`, when `client_id` and `client_secret` are both present;
/// 4. else a non-empty `refresh_token`, when `client_id` and `client_secret` are both present.
///
/// Values are compared exactly, as data: a user named `o'brien@zylker.com` or `nobody' or '1'='1` is a name,
/// never a piece of a query. A user name names at most one row; the other three values may be shared by
/// several rows. When several rows match, the oldest one is meant: the one saved first (updating a row does
/// not make it younger, and its id says nothing about its age).
///
/// # Which row `save_token` writes
///
/// [`save_token`](Self::save_token) writes the first of these rows that exists, and inserts a new one when
/// none does:
///
/// 1. **the user's row**: the row whose `user_name` is the token's non-empty `user_name`, whatever id the token
///    brings (a user never gets a second row);
/// 2. **the row `token.id` names**, unless that row holds another user's name while the token names a user
///    of its own (two users never share a row): the id comes before the shared values below, so a row read
///    with [`find_token_by_id`](Self::find_token_by_id), changed and saved back is written to that row and no
///    other, even when an older row has the same refresh token;
/// 3. **the oldest row the token's key names** (an access, grant or refresh token, by the rules above);
/// 4. **a new row**, under `token.id` when the token brings one that no row has, else under a fresh id (an
///    explicit id that another user's row holds is not given to a second row).
///
/// A written row keeps its id and its place among the rows, and `token.id` is set to that id.
///
/// # Ids
///
/// Ids are text. The stores here number new rows like the SDK, one past the largest numeric id, so an id
/// freed by deleting the newest row is given to the next new row: an id names a row, not a person for ever.
/// Code that keeps an id (a session, say) should check that the row it finds still has the `user_name` it
/// expects.
pub trait TokenStore: Send + Sync {
    /// Returns the complete stored token that `partial` names (see "Which row a token names"), or `None` when
    /// no row matches or `partial` names no row.
    fn find_token(&self, partial: &OAuthToken) -> Result<Option<OAuthToken>, StoreError>;

    /// Upserts `token`: the row chosen by "Which row `save_token` writes" above is replaced by `token`
    /// (keeping the row's `id`); when there is none, a new row is inserted. Either way `token.id` is set to the
    /// row's id on return, so the caller learns it. Ids stay unique: no two rows ever share one.
    ///
    /// A user never gets a second row, and different users never share one. A token that names a row (by `id`
    /// or `user_name`) but carries no refresh, grant or access token is refused with
    /// [`StoreError::NothingToSave`] and nothing is written.
    fn save_token(&self, token: &mut OAuthToken) -> Result<(), StoreError>;

    /// Deletes the row with this id. Deleting an id that is not stored is not an error.
    fn delete_token(&self, id: &str) -> Result<(), StoreError>;

    /// Returns every stored token, in no particular order.
    fn get_tokens(&self) -> Result<Vec<OAuthToken>, StoreError>;

    /// Deletes every stored token.
    fn delete_tokens(&self) -> Result<(), StoreError>;

    /// Returns the token with this id, or `None` (the SDK raises when it is absent; an `Option` says it better).
    fn find_token_by_id(&self, id: &str) -> Result<Option<OAuthToken>, StoreError>;

    /// An optional fast path for the read every page makes: [`find_token_by_id`](Self::find_token_by_id)'s
    /// answer, given only if the store can give it at once, without waiting for a lock, a connection, the disk
    /// or the network. `None` means "ask me the usual way", and is always correct: it is the default.
    ///
    /// The portal calls this on its async workers and everything else on a blocking thread pool. Handing a read
    /// to another thread and back costs two thread switches, more than an in-memory or SQLite WAL read itself,
    /// so stores that can answer at once ([`ListStore`], [`SqliteStore`]) do, and fall back to `None` whenever
    /// they would have to wait.
    fn find_token_by_id_without_waiting(
        &self,
        id: &str,
    ) -> Option<Result<Option<OAuthToken>, StoreError>> {
        let _ = id;
        None
    }

    /// An optional asynchronous form of the same read, for stores whose driver can wait on the network without
    /// holding a thread: a future that gives [`find_token_by_id`](Self::find_token_by_id)'s answer, run on
    /// the portal's async worker. `None` means "ask me the usual way", and is always correct: it is the default.
    ///
    /// A database server answers in a round trip, so a blocking driver has to be handed to the blocking pool
    /// and back for every page; [`PostgresStore`] and [`MySqlStore`] read through asynchronous connections on
    /// the worker itself instead. The future must not block its thread: it is polled among the worker's other
    /// requests.
    fn find_token_by_id_async<'a>(
        &'a self,
        id: &'a str,
    ) -> Option<StoreFuture<'a, Option<OAuthToken>>> {
        let _ = id;
        None
    }

    /// Compare-and-set for the refresh path: replaces the access token and expiry of row `id` only if its
    /// stored `access_token` is still `expected_access_token` (what the caller read before refreshing).
    /// Returns whether it won; `false` also when the row is gone.
    ///
    /// This is how two refreshes never overwrite the newer token. The default, built on the six methods, reads
    /// the row by id and saves it back with its id, which writes that very row (rule 2 of "Which row
    /// `save_token` writes"; the kit runs this default on your store to prove it). It is atomic only among
    /// callers of the provided methods in this process; a store shared between processes overrides it with
    /// one atomic operation (as [`SqliteStore`] does with a conditional `UPDATE`).
    fn compare_and_set_access_token(
        &self,
        id: &str,
        expected_access_token: Option<&str>,
        access_token: &str,
        expiry_time: i64,
    ) -> Result<bool, StoreError> {
        let _guard = provided_method_lock();
        let Some(mut stored) = self.find_token_by_id(id)? else {
            return Ok(false);
        };
        if stored.access_token.as_ref().map(Secret::expose_secret) != expected_access_token {
            return Ok(false);
        }
        stored.access_token = Some(access_token.into());
        stored.expiry_time = Some(expiry_time);
        self.save_token(&mut stored)?;
        Ok(true)
    }

    /// Compare-and-delete for a dead refresh token: deletes row `id` only if its stored `access_token` is
    /// still `expected_access_token`, so that a failed refresh never deletes a token that someone else has
    /// since refreshed or replaced by logging in again. Returns whether it deleted.
    ///
    /// The default has the same atomicity as [`compare_and_set_access_token`](Self::compare_and_set_access_token).
    fn delete_token_if_unchanged(
        &self,
        id: &str,
        expected_access_token: Option<&str>,
    ) -> Result<bool, StoreError> {
        let _guard = provided_method_lock();
        let Some(stored) = self.find_token_by_id(id)? else {
            return Ok(false);
        };
        if stored.access_token.as_ref().map(Secret::expose_secret) != expected_access_token {
            return Ok(false);
        }
        self.delete_token(id)?;
        Ok(true)
    }

    /// Takes the refresh lease of token `token_id` for `holder` (a name unique to one refresh attempt in one
    /// process) for at most `ttl`, and says whether it did: the lease admits one holder at a time across every
    /// process that shares the store, so that one refresh per token runs at Zoho however many portals need it.
    ///
    /// The holder asking again while it holds the lease renews it (`true`). A lease that was never released
    /// lapses `ttl` after it was taken, so a holder that dies mid-refresh blocks the others for `ttl` at most.
    ///
    /// The default grants at once and holds nothing, which is right for a store only one process uses (the
    /// portal's own single flight still makes one refresh per token in the process). Stores shared between
    /// processes override the pair ([`SqliteStore`] and the database stores keep a lease row in a table of
    /// their own), and prove it with the kit's lease rules (see [`conformance`]).
    fn try_acquire_refresh_lease(
        &self,
        token_id: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let _ = (token_id, holder, ttl);
        Ok(true)
    }

    /// Gives back the refresh lease of token `token_id` if `holder` holds it; a lease held by another holder
    /// (taken over after this one lapsed) is left alone. Releasing a lease not held is not an error.
    fn release_refresh_lease(&self, token_id: &str, holder: &str) -> Result<(), StoreError> {
        let _ = (token_id, holder);
        Ok(())
    }
}

/// The table the stores that keep refresh leases keep them in, beside the tokens: the portal's own, so the SDK's
/// `oauthtoken` is never changed.
pub const REFRESH_LEASE_TABLE: &str = "portal_refresh_leases";

/// `Mutex::try_lock` for the stores' read fast path: `None` when another thread holds the lock. A poisoned lock
/// is taken as it is: no store method leaves its data half-changed before it can panic.
pub(crate) fn try_lock<T>(mutex: &Mutex<T>) -> Option<std::sync::MutexGuard<'_, T>> {
    match mutex.try_lock() {
        Ok(guard) => Some(guard),
        Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
        Err(std::sync::TryLockError::WouldBlock) => None,
    }
}

/// The lock that makes the provided compare-and-set methods atomic among themselves within this process.
fn provided_method_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    // A panic elsewhere while holding this lock leaves nothing half-done that the lock protects.
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How a secret (token, client secret) is shown wherever it is not revealed (the CLI, the administrators'
/// page): a short prefix, enough to tell `1000.` tokens apart at a glance but never more than a quarter of
/// the value nor more than 7 characters, and an ellipsis. A secret of fewer than 4 characters shows nothing.
pub fn mask_secret(secret: &str) -> String {
    let length = secret.chars().count();
    if length == 0 {
        return String::new();
    }
    let shown: String = secret.chars().take((length / 4).min(7)).collect();
    format!("{shown}…")
}

/// An access token's expiry for people: the UTC time, and whether it has passed. `-` when unknown.
pub fn describe_expiry(expiry_time: Option<i64>) -> String {
    let Some(millis) = expiry_time else {
        return "-".to_owned();
    };
    let when = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{millis} ms"));
    if millis <= now_millis() {
        format!("{when} (expired)")
    } else {
        when
    }
}

/// When a token expires, as people read it against `now` (both in ms since the epoch): "in 59 min",
/// "expired 2 h ago", "in 30 s", "in 3 d"; "-" when the token has no expiry. The exact time is
/// [`describe_expiry`]'s.
pub fn relative_expiry(expiry_time: Option<i64>, now: i64) -> String {
    let Some(expiry) = expiry_time else {
        return "-".to_owned();
    };
    let seconds = expiry.saturating_sub(now).unsigned_abs() / 1000;
    let amount = match seconds {
        0..60 => format!("{seconds} s"),
        60..3_600 => format!("{} min", seconds / 60),
        3_600..172_800 => format!("{} h", seconds / 3_600),
        _ => format!("{} d", seconds / 86_400),
    };
    if expiry > now {
        format!("in {amount}")
    } else {
        format!("expired {amount} ago")
    }
}

/// Milliseconds since the Unix epoch, the unit of [`OAuthToken::expiry_time`].
pub fn now_millis() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    (now.unix_timestamp_nanos() / 1_000_000) as i64
}

/// The number in a row id, for numbering new rows: the SDK's ids are decimal text ("1", "2", …), and a new
/// row gets one past the largest. Ids that are not plain decimal numbers (or that are too large to count on
/// from) are left out of the numbering. A store of your own can use it to number rows like the others.
pub fn numeric_id(id: &str) -> Option<u64> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    id.parse::<u64>().ok().filter(|n| *n < i64::MAX as u64)
}

/// The id a new row gets: one past the largest numeric id among `ids` (the SDK's numbering), `1` when none is.
pub(crate) fn next_id<'a>(ids: impl IntoIterator<Item = &'a str>) -> String {
    let largest = ids.into_iter().filter_map(numeric_id).max().unwrap_or(0);
    (largest + 1).to_string()
}

/// Which of `rows` (kept in the order they were first saved) [`TokenStore::save_token`] replaces with `token`,
/// by the contract's order: the user's row, the row `token.id` names (unless another user holds it), the
/// oldest row the key names. `None`: the token goes into a new row, under [`id_for_new_row`].
///
/// A store that holds its rows in a list (in memory, a file of its own) can call this and
/// [`id_for_new_row`] instead of writing the rules again; a database store says the same in its queries.
pub fn row_to_write(rows: &[OAuthToken], token: &OAuthToken) -> Option<usize> {
    let by_id = token
        .id
        .as_deref()
        .and_then(|id| rows.iter().position(|t| t.id.as_deref() == Some(id)));
    match token.key() {
        Some(key @ TokenKey::UserName(_)) => rows
            .iter()
            .position(|t| t.matches(key))
            .or_else(|| by_id.filter(|&index| rows[index].user_name().is_none())),
        key => by_id.or_else(|| {
            let key = key?;
            rows.iter().position(|t| t.matches(key))
        }),
    }
}

/// The id a new row for `token` gets: `token.id` when it brings one that none of `rows` has, else one past
/// the largest numeric id (the SDK's numbering; see [`numeric_id`]).
pub fn id_for_new_row(rows: &[OAuthToken], token: &OAuthToken) -> String {
    let taken = |id: &str| rows.iter().any(|t| t.id.as_deref() == Some(id));
    match token.id.as_deref() {
        Some(id) if !taken(id) => id.to_owned(),
        _ => next_id(rows.iter().filter_map(|t| t.id.as_deref())),
    }
}

/// Reads an `expiry_time` stored as text by another program (the SDK writes milliseconds as a decimal string).
/// A value that is not a number reads as `None` rather than failing the whole read: the token is still usable,
/// it will just be refreshed first.
pub(crate) fn parse_expiry_time(text: &str) -> Option<i64> {
    let text = text.trim();
    text.parse::<i64>().ok().or_else(|| {
        let float = text.parse::<f64>().ok().filter(|f| f.is_finite())?;
        // Python may have written `1700000000000.0`; out-of-range values are as good as unparseable.
        ((i64::MIN as f64)..=(i64::MAX as f64))
            .contains(&float)
            .then_some(float as i64)
    })
}

#[cfg(test)]
mod tests {
    use super::relative_expiry;

    #[test]
    fn an_expiry_reads_as_people_say_it() {
        let now = 1_800_000_000_000;
        let at = |seconds: i64| Some(now + seconds * 1000);
        assert_eq!(relative_expiry(at(3_599), now), "in 59 min");
        assert_eq!(relative_expiry(at(30), now), "in 30 s");
        assert_eq!(relative_expiry(at(-7_300), now), "expired 2 h ago");
        assert_eq!(relative_expiry(at(3 * 86_400 + 5), now), "in 3 d");
        assert_eq!(relative_expiry(at(0), now), "expired 0 s ago");
        assert_eq!(relative_expiry(None, now), "-");
    }
}
