//! Sign-ins kept on the server, each tied to its token's owner, and the logins whose callback has been used.
//!
//! The session cookie is encrypted, but it is the browser's: signing out cannot take it back from a browser, or
//! from whoever copied it. So the cookie only names a sign-in (a random id), and the sign-in itself lives here.
//! A cookie is good while its sign-in's record exists, is within its lifetime, and names the token the cookie
//! names (`email:org_id` and the token's id); signing out, disconnecting, logging in as someone else in the same
//! browser, and deleting the token (the user's disconnect, an administrator's delete) delete the record, and
//! every portal on the store then refuses every copy of the cookie.
//!
//! A login in flight (the OAuth `state`, the PKCE verifier, its end) lives in the encrypted cookie only, so an
//! anonymous `/login` writes nothing here. What is kept is the other half of "a state is good once": the state
//! of every callback that got past the state check, until the login's lifetime is over. A replayed callback
//! (a copy of the pre-callback cookie and its state) finds its state consumed, on any portal on the store.
//!
//! Records are kept by a SHA-256 digest of the id (or state), never the id: a copy of the database is no list
//! of cookies.
//!
//! Where the records live is chosen with the token store (`spec::open_portal_stores`): tables of the portal's
//! own beside the SDK's `oauthtoken` in a SQLite file, a SQLite file beside the CSV file store, memory for the
//! stores that live in memory. [`SignInStore`] is the interface another backend implements.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use sha2::{Digest, Sha256};

use super::{Secret, StoreError};

/// The table of sign-ins, beside the SDK's `oauthtoken` (which is never touched).
pub const SIGN_INS_TABLE: &str = "portal_sign_ins";

/// The table of the logins whose callback has been used (their state's digest), until the login's lifetime is
/// over: a replayed callback is refused by every portal on the store.
pub const CONSUMED_LOGINS_TABLE: &str = "portal_consumed_logins";

/// How long a portal trusts what it last read about a sign-in: a sign-in ended on another portal is refused
/// here at most this long after, plus one read of the store (the store is read again at most once per sign-in
/// per interval). Under a second, so that with that read the bound is one second.
pub const RECHECK_EVERY: Duration = Duration::from_millis(900);

/// How often a portal deletes the records past their lifetime (also once when it starts).
pub const PURGE_EVERY: Duration = Duration::from_secs(10 * 60);

/// How long a consumed login is kept after the login's own end: the end is read off one portal's clock and
/// compared with another's, and a replay must not slip through the difference between the two.
pub const CONSUMED_LOGIN_MARGIN: Duration = Duration::from_secs(5 * 60);

/// Above this many remembered verdicts, those older than [`RECHECK_EVERY`] are forgotten.
const VERDICTS_SWEEP_ABOVE: usize = 10_000;

/// The SQLite file that keeps the sign-ins of a CSV file store: `<file>.sign-ins.db` beside it.
pub fn sign_ins_file_beside(csv: &Path) -> PathBuf {
    let mut name = csv.as_os_str().to_owned();
    name.push(".sign-ins.db");
    PathBuf::from(name)
}

/// A login on its way through Zoho, as the encrypted cookie keeps it: the state to expect back (good once), the
/// PKCE verifier, and when it ends.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PendingLogin {
    pub state: Secret,
    pub code_verifier: Secret,
    /// Whether this round asked with `prompt=consent` (it happens at most once).
    pub consent: bool,
    /// Unix seconds after which the callback is refused.
    #[serde(default)]
    pub expires_at: i64,
    /// Where the person lands once logged in: a path on the portal's own site, checked by the routes when it
    /// is taken in and again before it is followed; none lands on the start page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// What the callback finds of the login it answers.
#[derive(Debug)]
pub enum PendingLoginFound {
    /// The login in flight whose state the callback carries, taken from the cookie (and consumed on the server
    /// by the caller: a state is good once).
    Pending(PendingLogin),
    /// The login the callback answers was started longer ago than its lifetime: taken and dropped.
    Expired,
    /// The callback carries no state, while a login is in flight here.
    NoState,
    /// The callback's state is none of this browser's logins in flight (forged, or crowded out by later
    /// logins in this browser).
    NotThisBrowsers,
    /// No login in flight in this browser.
    None,
}

/// One sign-in record: the key (a digest of the cookie's id), the token it opens, and its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInRecord {
    /// The SHA-256 digest, hex, of the id the cookie carries.
    pub key: String,
    /// The token's `user_name` (`email:org_id`).
    pub user_name: String,
    /// The token's id in its store.
    pub token_id: String,
    /// Unix seconds.
    pub expires_at: i64,
}

/// How many records a purge deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub sign_ins: u64,
    pub consumed_logins: u64,
}

/// Where sign-ins and consumed logins are kept: one implementation per kind of shared store.
///
/// Ids arrive as digests (see the module's documentation); times are Unix seconds. Every method may block (a
/// database), so [`SignIns`] calls them on the blocking pool unless [`runs_in_memory`](Self::runs_in_memory).
/// A store shared by several portals must make [`consume_login`](Self::consume_login) atomic: two callbacks
/// racing with one state never both get `true`.
pub trait SignInStore: Send + Sync {
    /// Records a sign-in (replacing one under the same key).
    fn record_sign_in(&self, record: &SignInRecord) -> Result<(), StoreError>;

    /// Whether the sign-in `key` is recorded for the token `user_name` and `token_id`, and `now` is before
    /// its end. A record that names no token (kept by an earlier version) is not live.
    fn sign_in_is_live(
        &self,
        key: &str,
        user_name: &str,
        token_id: &str,
        now: i64,
    ) -> Result<bool, StoreError>;

    /// Ends a sign-in: deletes its record (nothing when there is none).
    fn end_sign_in(&self, key: &str) -> Result<(), StoreError>;

    /// Ends every sign-in of the token's owner `user_name`: those of the token `token_id`, or all of the
    /// user's when `None`. Returns how many ended.
    fn end_sign_ins_of(&self, user_name: &str, token_id: Option<&str>) -> Result<u64, StoreError>;

    /// Every live sign-in (its end after `now`) that names its token: what `tokens copy` carries over.
    fn live_sign_ins(&self, now: i64) -> Result<Vec<SignInRecord>, StoreError>;

    /// Records that the login whose state digests to `key` has had its callback, until `expires_at`: `true`
    /// the first time, `false` when it was recorded already (a replay). Atomic.
    fn consume_login(&self, key: &str, expires_at: i64) -> Result<bool, StoreError>;

    /// Deletes every record whose end is at or before `now`.
    fn purge(&self, now: i64) -> Result<Purged, StoreError>;

    /// Whether the records live in this process's memory, so that calls never block.
    fn runs_in_memory(&self) -> bool {
        false
    }
}

/// What this portal last read about one sign-in.
struct Verdict {
    live: bool,
    read_at: Instant,
    user_name: String,
    token_id: String,
}

/// The portal's sign-ins: a [`SignInStore`], what this portal last read from it (trusted for
/// [`RECHECK_EVERY`]), and the schedule of purges.
pub struct SignIns {
    store: Arc<dyn SignInStore>,
    /// By the sign-in's id, as the cookie names it: in memory only, never stored or logged.
    verdicts: DashMap<String, Verdict>,
    recheck_every: Duration,
    /// When the next purge is due (Unix seconds).
    next_purge_at: AtomicI64,
}

impl std::fmt::Debug for SignIns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignIns")
            .field("verdicts", &self.verdicts.len())
            .field("recheck_every", &self.recheck_every)
            .finish_non_exhaustive()
    }
}

impl SignIns {
    /// The sign-ins kept in `store`. The first purge runs with the first sign-in or callback recorded.
    pub fn new(store: Arc<dyn SignInStore>) -> SignIns {
        SignIns {
            store,
            verdicts: DashMap::new(),
            recheck_every: RECHECK_EVERY,
            next_purge_at: AtomicI64::new(0),
        }
    }

    /// Sign-ins kept in this process only, for the stores that live in memory (a restart forgets their tokens
    /// too, and every session with them).
    pub fn in_memory() -> SignIns {
        SignIns::new(Arc::new(MemorySignIns::default()))
    }

    /// Says the store was purged at `now` (as the portal's stores are when opened): the next purge is due
    /// [`PURGE_EVERY`] later, not with the first sign-in.
    pub fn purged_at(self, now: i64) -> SignIns {
        self.next_purge_at
            .store(next_purge_after(now), Ordering::Relaxed);
        self
    }

    /// Trusts what was read about a sign-in for `every` instead of [`RECHECK_EVERY`].
    pub fn recheck_every(mut self, every: Duration) -> SignIns {
        self.recheck_every = every;
        self
    }

    /// Records a new sign-in of the token `user_name`/`token_id`, `id` being the random id the cookie carries.
    pub async fn begin(
        &self,
        id: &str,
        user_name: &str,
        token_id: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        self.purge_if_due(now).await;
        let record = SignInRecord {
            key: digest(id),
            user_name: user_name.to_owned(),
            token_id: token_id.to_owned(),
            expires_at,
        };
        let verdict = Verdict {
            live: true,
            read_at: Instant::now(),
            user_name: record.user_name.clone(),
            token_id: record.token_id.clone(),
        };
        self.run(move |store| store.record_sign_in(&record)).await?;
        self.verdicts.insert(id.to_owned(), verdict);
        Ok(())
    }

    /// Whether the sign-in `id` of the token `user_name`/`token_id` is live: as read from the store, at most
    /// [`RECHECK_EVERY`] ago.
    pub async fn is_live(
        &self,
        id: &str,
        user_name: &str,
        token_id: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        // An ended sign-in stays ended whoever asks; a live one is live only for the token it was read for.
        // Verdicts are kept by the cookie's id itself (in this process's memory only), so that a page within
        // the recheck interval computes no digest: only the store's records are kept by digest.
        if let Some(verdict) = self.verdicts.get(id)
            && verdict.read_at.elapsed() < self.recheck_every
            && (!verdict.live || (verdict.user_name == user_name && verdict.token_id == token_id))
        {
            return Ok(verdict.live);
        }
        let live = self
            .run({
                let (key, user_name, token_id) =
                    (digest(id), user_name.to_owned(), token_id.to_owned());
                move |store| store.sign_in_is_live(&key, &user_name, &token_id, now)
            })
            .await?;
        if self.verdicts.len() >= VERDICTS_SWEEP_ABOVE {
            let every = self.recheck_every;
            self.verdicts
                .retain(|_, verdict| verdict.read_at.elapsed() < every);
        }
        self.verdicts.insert(
            id.to_owned(),
            Verdict {
                live,
                read_at: Instant::now(),
                user_name: user_name.to_owned(),
                token_id: token_id.to_owned(),
            },
        );
        Ok(live)
    }

    /// Ends the sign-in `id`: refused here at once, and by every portal on the store once its record is gone.
    pub async fn end(&self, id: &str) -> Result<(), StoreError> {
        let key = digest(id);
        // A sign-in never comes back, so the verdict holds even if the delete below fails.
        self.verdicts.insert(
            id.to_owned(),
            Verdict {
                live: false,
                read_at: Instant::now(),
                user_name: String::new(),
                token_id: String::new(),
            },
        );
        self.run(move |store| store.end_sign_in(&key)).await
    }

    /// Ends every sign-in of the token `user_name`/`token_id` (of every token of the user when `None`): its
    /// token is gone, so every cookie that names it is refused here at once, and by every portal on the store
    /// once the records are gone. Returns how many records ended.
    pub async fn end_all_of(
        &self,
        user_name: &str,
        token_id: Option<&str>,
    ) -> Result<u64, StoreError> {
        for mut verdict in self.verdicts.iter_mut() {
            if verdict.user_name == user_name
                && token_id.is_none_or(|token_id| verdict.token_id == token_id)
            {
                verdict.live = false;
            }
        }
        let (user_name, token_id) = (user_name.to_owned(), token_id.map(str::to_owned));
        self.run(move |store| store.end_sign_ins_of(&user_name, token_id.as_deref()))
            .await
    }

    /// Records that the callback of `login` has come (a state is good once): `true` the first time on any
    /// portal on the store, `false` for a replay. The record lasts as long as the login could still be
    /// presented ([`CONSUMED_LOGIN_MARGIN`] past its end).
    pub async fn consume_login(&self, login: &PendingLogin, now: i64) -> Result<bool, StoreError> {
        self.purge_if_due(now).await;
        let key = digest(&format!("login-state:{}", login.state.expose_secret()));
        let margin = i64::try_from(CONSUMED_LOGIN_MARGIN.as_secs()).unwrap_or(i64::MAX);
        let expires_at = login.expires_at.saturating_add(margin);
        self.run(move |store| store.consume_login(&key, expires_at))
            .await
    }

    /// Purges when [`PURGE_EVERY`] has passed since the last purge (one caller at a time). A purge that fails
    /// is logged: the records wait for the next one.
    async fn purge_if_due(&self, now: i64) {
        let due_at = self.next_purge_at.load(Ordering::Relaxed);
        let next = next_purge_after(now);
        if now < due_at
            || self
                .next_purge_at
                .compare_exchange(due_at, next, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        match self.run(move |store| store.purge(now)).await {
            Ok(purged) if purged != Purged::default() => {
                tracing::debug!(
                    sign_ins = purged.sign_ins,
                    consumed_logins = purged.consumed_logins,
                    "purged sign-in records past their lifetime"
                );
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(error = ?error, "could not purge old sign-in records; trying again later");
            }
        }
    }

    /// Runs `work` on the store: at once when it lives in memory, else on the blocking pool.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&dyn SignInStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        if self.store.runs_in_memory() {
            return work(self.store.as_ref());
        }
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || work(store.as_ref()))
            .await
            .map_err(|error| StoreError::backend("the sign-in store's task ended", error))?
    }
}

/// When the purge after one at `now` is due.
fn next_purge_after(now: i64) -> i64 {
    now.saturating_add(PURGE_EVERY.as_secs() as i64)
}

/// The store's key for an id: SHA-256, hex.
fn digest(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

/// Sign-ins in this process's memory.
#[derive(Default)]
pub struct MemorySignIns {
    sign_ins: Mutex<HashMap<String, SignInRecord>>,
    consumed: Mutex<HashMap<String, i64>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every change is one map operation: a panic elsewhere cannot leave a map half changed.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl SignInStore for MemorySignIns {
    fn record_sign_in(&self, record: &SignInRecord) -> Result<(), StoreError> {
        lock(&self.sign_ins).insert(record.key.clone(), record.clone());
        Ok(())
    }

    fn sign_in_is_live(
        &self,
        key: &str,
        user_name: &str,
        token_id: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        Ok(lock(&self.sign_ins).get(key).is_some_and(|record| {
            now < record.expires_at && record.user_name == user_name && record.token_id == token_id
        }))
    }

    fn end_sign_in(&self, key: &str) -> Result<(), StoreError> {
        lock(&self.sign_ins).remove(key);
        Ok(())
    }

    fn end_sign_ins_of(&self, user_name: &str, token_id: Option<&str>) -> Result<u64, StoreError> {
        let mut sign_ins = lock(&self.sign_ins);
        let before = sign_ins.len();
        sign_ins.retain(|_, record| {
            !(record.user_name == user_name && token_id.is_none_or(|id| record.token_id == id))
        });
        Ok((before - sign_ins.len()) as u64)
    }

    fn live_sign_ins(&self, now: i64) -> Result<Vec<SignInRecord>, StoreError> {
        Ok(lock(&self.sign_ins)
            .values()
            .filter(|record| now < record.expires_at)
            .cloned()
            .collect())
    }

    fn consume_login(&self, key: &str, expires_at: i64) -> Result<bool, StoreError> {
        let mut consumed = lock(&self.consumed);
        if consumed.contains_key(key) {
            return Ok(false);
        }
        consumed.insert(key.to_owned(), expires_at);
        Ok(true)
    }

    fn purge(&self, now: i64) -> Result<Purged, StoreError> {
        let mut sign_ins = lock(&self.sign_ins);
        let before = sign_ins.len();
        sign_ins.retain(|_, record| now < record.expires_at);
        let purged_sign_ins = (before - sign_ins.len()) as u64;
        drop(sign_ins);
        let mut consumed = lock(&self.consumed);
        let before = consumed.len();
        consumed.retain(|_, expires_at| now < *expires_at);
        Ok(Purged {
            sign_ins: purged_sign_ins,
            consumed_logins: (before - consumed.len()) as u64,
        })
    }

    fn runs_in_memory(&self) -> bool {
        true
    }
}

/// Sign-ins and consumed logins in two tables of a SQLite file: the token store's own file, or a file of their
/// own beside the CSV file store. Every statement is a single one (`INSERT … ON CONFLICT DO NOTHING` consumes a
/// login atomically), so any number of portals on the file agree.
pub struct SqliteSignIns {
    pool: r2d2::Pool<SqliteConnectionManager>,
    location: String,
}

/// Connections kept for the sign-in tables: lookups are short and cached, so a few suffice.
const SQLITE_POOL_SIZE: u32 = 4;

/// The columns that tie a sign-in to its token, added to a table made by an earlier version (whose rows have
/// none, and so are not live: see [`SignInStore::sign_in_is_live`]).
const OWNER_COLUMNS: [&str; 2] = ["user_name", "token_id"];

impl SqliteSignIns {
    /// The sign-in tables in the SQLite file at `path`, created there when missing; the file itself is created
    /// (mode 0600) when `create_file`, else it must exist (the token store made and checked it).
    pub fn open(path: &Path, create_file: bool) -> Result<SqliteSignIns, StoreError> {
        let location = path.display().to_string();
        let fail = |action: &str, error: rusqlite::Error| {
            StoreError::backend(format!("{location}: {action}"), error)
        };
        if create_file {
            super::sqlite::create_private_file(path)?;
        }
        super::sqlite::check_sqlite_database(path)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let busy_timeout = super::DEFAULT_BUSY_TIMEOUT;
        let mut setup = Connection::open_with_flags(path, flags)
            .map_err(|e| fail("open the database for the sign-ins", e))?;
        setup
            .busy_timeout(busy_timeout)
            .map_err(|e| fail("set the busy timeout", e))?;
        super::sqlite::switch_to_wal(&setup, busy_timeout).map_err(|e| fail("switch to WAL", e))?;
        create_sqlite_tables(&mut setup).map_err(|e| fail("create the sign-in tables", e))?;
        drop(setup);
        let pool = super::sqlite::connection_pool(path, &location, SQLITE_POOL_SIZE, busy_timeout)?;
        Ok(SqliteSignIns { pool, location })
    }

    fn with_connection<T>(
        &self,
        action: &str,
        work: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let conn = self.pool.get().map_err(|e| {
            StoreError::backend(format!("{}: {action}: no connection", self.location), e)
        })?;
        work(&conn).map_err(|e| StoreError::backend(format!("{}: {action}", self.location), e))
    }
}

/// The live sign-ins in the SQLite file at `path`, read through a read-only connection (which changes nothing,
/// and never drops a lock this process holds on the file); none when the file has no sign-in table with the
/// owner's columns.
pub(super) fn read_live_sign_ins(path: &Path, now: i64) -> Result<Vec<SignInRecord>, StoreError> {
    let location = path.display().to_string();
    let fail = |error: rusqlite::Error| {
        StoreError::backend(format!("{location}: read the live sign-ins"), error)
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(fail)?;
    conn.busy_timeout(super::DEFAULT_BUSY_TIMEOUT)
        .map_err(fail)?;
    let columns: i64 = conn
        .query_row(
            &format!(
                "SELECT count(*) FROM pragma_table_info('{SIGN_INS_TABLE}') \
                 WHERE name IN ('user_name', 'token_id')"
            ),
            [],
            |row| row.get(0),
        )
        .map_err(fail)?;
    if columns != 2 {
        return Ok(Vec::new());
    }
    live_sign_ins_on(&conn, now).map_err(fail)
}

/// The sign-ins of a SQLite sign-in table that are live at `now` and name their token, by key.
fn live_sign_ins_on(conn: &Connection, now: i64) -> rusqlite::Result<Vec<SignInRecord>> {
    conn.prepare(&format!(
        "SELECT id, user_name, token_id, expires_at FROM {SIGN_INS_TABLE} \
         WHERE expires_at > ?1 AND user_name IS NOT NULL AND token_id IS NOT NULL ORDER BY id"
    ))?
    .query_map([now], |row| {
        Ok(SignInRecord {
            key: row.get(0)?,
            user_name: row.get(1)?,
            token_id: row.get(2)?,
            expires_at: row.get(3)?,
        })
    })?
    .collect()
}

/// Creates the sign-in tables, or adds the owner's columns to a sign-in table of an earlier version, in one
/// transaction (portals starting together on one file each try; the first does it).
fn create_sqlite_tables(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {SIGN_INS_TABLE} (
             id TEXT PRIMARY KEY NOT NULL, expires_at INTEGER NOT NULL, user_name TEXT, token_id TEXT);
         CREATE INDEX IF NOT EXISTS {SIGN_INS_TABLE}_expires_at ON {SIGN_INS_TABLE} (expires_at);
         CREATE TABLE IF NOT EXISTS {CONSUMED_LOGINS_TABLE} (
             id TEXT PRIMARY KEY NOT NULL, expires_at INTEGER NOT NULL);
         CREATE INDEX IF NOT EXISTS {CONSUMED_LOGINS_TABLE}_expires_at ON {CONSUMED_LOGINS_TABLE} (expires_at);"
    ))?;
    let columns: Vec<String> = tx
        .prepare(&format!(
            "SELECT name FROM pragma_table_info('{SIGN_INS_TABLE}')"
        ))?
        .query_map([], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for column in OWNER_COLUMNS {
        if !columns.iter().any(|name| name == column) {
            tx.execute(
                &format!("ALTER TABLE {SIGN_INS_TABLE} ADD COLUMN {column} TEXT"),
                [],
            )?;
        }
    }
    tx.execute(
        &format!(
            "CREATE INDEX IF NOT EXISTS {SIGN_INS_TABLE}_user_name ON {SIGN_INS_TABLE} (user_name)"
        ),
        [],
    )?;
    tx.commit()
}

impl SignInStore for SqliteSignIns {
    fn record_sign_in(&self, record: &SignInRecord) -> Result<(), StoreError> {
        self.with_connection("record a sign-in", |conn| {
            conn.prepare_cached(&format!(
                "INSERT INTO {SIGN_INS_TABLE} (id, expires_at, user_name, token_id) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at, \
                 user_name = excluded.user_name, token_id = excluded.token_id"
            ))?
            .execute(params![
                record.key,
                record.expires_at,
                record.user_name,
                record.token_id
            ])
            .map(drop)
        })
    }

    fn sign_in_is_live(
        &self,
        key: &str,
        user_name: &str,
        token_id: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.with_connection("read a sign-in", |conn| {
            conn.prepare_cached(&format!(
                "SELECT 1 FROM {SIGN_INS_TABLE} \
                 WHERE id = ?1 AND expires_at > ?2 AND user_name = ?3 AND token_id = ?4"
            ))?
            .query_row(params![key, now, user_name, token_id], |_| Ok(()))
            .optional()
            .map(|row| row.is_some())
        })
    }

    fn end_sign_in(&self, key: &str) -> Result<(), StoreError> {
        self.with_connection("end a sign-in", |conn| {
            conn.prepare_cached(&format!("DELETE FROM {SIGN_INS_TABLE} WHERE id = ?1"))?
                .execute([key])
                .map(drop)
        })
    }

    fn end_sign_ins_of(&self, user_name: &str, token_id: Option<&str>) -> Result<u64, StoreError> {
        self.with_connection("end the sign-ins of a token", |conn| {
            conn.prepare_cached(&format!(
                "DELETE FROM {SIGN_INS_TABLE} WHERE user_name = ?1 AND (?2 IS NULL OR token_id = ?2)"
            ))?
            .execute(params![user_name, token_id])
            .map(|ended| ended as u64)
        })
    }

    fn live_sign_ins(&self, now: i64) -> Result<Vec<SignInRecord>, StoreError> {
        self.with_connection("list the live sign-ins", |conn| live_sign_ins_on(conn, now))
    }

    fn consume_login(&self, key: &str, expires_at: i64) -> Result<bool, StoreError> {
        self.with_connection("record a used login", |conn| {
            conn.prepare_cached(&format!(
                "INSERT INTO {CONSUMED_LOGINS_TABLE} (id, expires_at) VALUES (?1, ?2) \
                 ON CONFLICT (id) DO NOTHING"
            ))?
            .execute(params![key, expires_at])
            .map(|inserted| inserted == 1)
        })
    }

    fn purge(&self, now: i64) -> Result<Purged, StoreError> {
        self.with_connection("purge old sign-in records", |conn| {
            let sign_ins = conn.execute(
                &format!("DELETE FROM {SIGN_INS_TABLE} WHERE expires_at <= ?1"),
                [now],
            )?;
            let consumed_logins = conn.execute(
                &format!("DELETE FROM {CONSUMED_LOGINS_TABLE} WHERE expires_at <= ?1"),
                [now],
            )?;
            Ok(Purged {
                sign_ins: sign_ins as u64,
                consumed_logins: consumed_logins as u64,
            })
        })
    }
}

/// What every [`SignInStore`] backend must do, for the tests of a backend (the crate's own run it on each).
pub mod conformance {
    use super::*;

    fn record(key: &str, user_name: &str, token_id: &str, expires_at: i64) -> SignInRecord {
        SignInRecord {
            key: key.to_owned(),
            user_name: user_name.to_owned(),
            token_id: token_id.to_owned(),
            expires_at,
        }
    }

    /// Checks that `store` does what a [`SignInStore`] must (panics otherwise), starting from empty tables.
    pub fn behaves_as_a_sign_in_store(store: &dyn SignInStore) {
        store
            .record_sign_in(&record("a", "p@z:1", "7", 100))
            .unwrap();
        store
            .record_sign_in(&record("b", "p@z:1", "7", 100))
            .unwrap();
        store
            .record_sign_in(&record("c", "a@z:1", "8", 100))
            .unwrap();
        assert!(store.sign_in_is_live("a", "p@z:1", "7", 99).unwrap());
        assert!(
            !store.sign_in_is_live("a", "p@z:1", "7", 100).unwrap(),
            "past its end"
        );
        assert!(
            !store.sign_in_is_live("a", "p@z:1", "8", 0).unwrap(),
            "another token id"
        );
        assert!(
            !store.sign_in_is_live("a", "a@z:1", "7", 0).unwrap(),
            "another user"
        );
        assert!(!store.sign_in_is_live("nobody", "p@z:1", "7", 0).unwrap());
        store.end_sign_in("a").unwrap();
        store.end_sign_in("a").unwrap();
        assert!(
            !store.sign_in_is_live("a", "p@z:1", "7", 0).unwrap(),
            "ended"
        );
        assert!(
            store.sign_in_is_live("b", "p@z:1", "7", 0).unwrap(),
            "the other stays"
        );

        let mut live = store.live_sign_ins(0).unwrap();
        live.sort_by(|x, y| x.key.cmp(&y.key));
        assert_eq!(
            live,
            vec![
                record("b", "p@z:1", "7", 100),
                record("c", "a@z:1", "8", 100)
            ]
        );
        assert!(
            store.live_sign_ins(100).unwrap().is_empty(),
            "none live at 100"
        );

        assert_eq!(
            store.end_sign_ins_of("p@z:1", Some("8")).unwrap(),
            0,
            "not that token"
        );
        assert_eq!(store.end_sign_ins_of("p@z:1", Some("7")).unwrap(), 1);
        assert!(
            !store.sign_in_is_live("b", "p@z:1", "7", 0).unwrap(),
            "its token is gone"
        );
        assert!(
            store.sign_in_is_live("c", "a@z:1", "8", 0).unwrap(),
            "another user's stays"
        );
        store
            .record_sign_in(&record("d", "a@z:1", "9", 100))
            .unwrap();
        assert_eq!(
            store.end_sign_ins_of("a@z:1", None).unwrap(),
            2,
            "every token of the user"
        );

        assert!(store.consume_login("s1", 50).unwrap(), "the first callback");
        assert!(!store.consume_login("s1", 50).unwrap(), "a replay");
        assert!(store.consume_login("s2", 200).unwrap());

        store
            .record_sign_in(&record("old", "p@z:1", "7", 20))
            .unwrap();
        store
            .record_sign_in(&record("new", "p@z:1", "7", 200))
            .unwrap();
        assert_eq!(
            store.purge(50).unwrap(),
            Purged {
                sign_ins: 1,
                consumed_logins: 1
            }
        );
        assert!(store.sign_in_is_live("new", "p@z:1", "7", 50).unwrap());
        assert!(
            !store.consume_login("s2", 200).unwrap(),
            "kept until its end"
        );
        assert!(
            store.consume_login("s1", 50).unwrap(),
            "purged after its end"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::conformance::behaves_as_a_sign_in_store;
    use super::*;

    #[test]
    fn memory_sign_ins_behave() {
        behaves_as_a_sign_in_store(&MemorySignIns::default());
    }

    #[test]
    fn sqlite_sign_ins_behave_and_leave_the_token_table_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.db");
        let tokens = crate::tokens::SqliteStore::open(&path).unwrap();
        let sign_ins = SqliteSignIns::open(&path, false).unwrap();
        behaves_as_a_sign_in_store(&sign_ins);
        assert!(
            crate::tokens::TokenStore::get_tokens(&tokens)
                .unwrap()
                .is_empty()
        );
    }

    /// The table where earlier versions kept every login in flight, one row per `/login`. Nothing writes or
    /// reads it any more (a login in flight lives in the cookie); a database that has it keeps it as it is,
    /// since other programs may read it.
    const PENDING_LOGINS_TABLE: &str = "portal_pending_logins";

    #[test]
    fn a_sign_in_table_of_an_earlier_version_gets_the_owner_columns_and_its_rows_are_not_live() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.db");
        crate::tokens::SqliteStore::open(&path).unwrap();
        {
            let earlier = Connection::open(&path).unwrap();
            earlier
                .execute_batch(&format!(
                    "CREATE TABLE {SIGN_INS_TABLE} (id TEXT PRIMARY KEY NOT NULL, expires_at INTEGER NOT NULL);
                     INSERT INTO {SIGN_INS_TABLE} VALUES ('from-before', 9999999999);
                     CREATE TABLE {PENDING_LOGINS_TABLE} (
                         id TEXT PRIMARY KEY NOT NULL, state TEXT NOT NULL, code_verifier TEXT NOT NULL,
                         consent INTEGER NOT NULL, expires_at INTEGER NOT NULL);
                     INSERT INTO {PENDING_LOGINS_TABLE} VALUES ('p', 's', 'v', 0, 1);"
                ))
                .unwrap();
        }

        let sign_ins = SqliteSignIns::open(&path, false).unwrap();
        sign_ins.purge(10).unwrap();

        assert!(!sign_ins.sign_in_is_live("from-before", "", "", 0).unwrap());
        assert!(sign_ins.live_sign_ins(0).unwrap().is_empty());
        behaves_as_a_sign_in_store(&sign_ins);
        let pending: i64 = Connection::open(&path)
            .unwrap()
            .query_row(
                &format!("SELECT count(*) FROM {PENDING_LOGINS_TABLE}"),
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(pending, 1, "the earlier version's table is left as it was");
    }

    #[test]
    fn a_sign_in_file_beside_a_csv_store_is_created_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let beside = sign_ins_file_beside(&dir.path().join("tokens.csv"));
        assert!(beside.ends_with("tokens.csv.sign-ins.db"));
        let missing = dir.path().join("missing.db");
        assert!(SqliteSignIns::open(&missing, false).is_err());
        assert!(!missing.exists(), "nothing is created unless asked");

        behaves_as_a_sign_in_store(&SqliteSignIns::open(&beside, true).unwrap());

        let mode = std::fs::metadata(&beside).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[tokio::test]
    async fn sign_ins_are_kept_by_digest_and_trusted_for_the_recheck_interval() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.db");
        crate::tokens::SqliteStore::open(&path).unwrap();
        let here = SignIns::new(Arc::new(SqliteSignIns::open(&path, false).unwrap()))
            .recheck_every(Duration::from_secs(3600));
        let there = SignIns::new(Arc::new(SqliteSignIns::open(&path, false).unwrap()));

        here.begin("cookie-id", "p@z:1", "7", 1_000, 0)
            .await
            .unwrap();
        assert!(there.is_live("cookie-id", "p@z:1", "7", 10).await.unwrap());
        let stored: String = Connection::open(&path)
            .unwrap()
            .query_row(&format!("SELECT id FROM {SIGN_INS_TABLE}"), [], |row| {
                row.get(0)
            })
            .unwrap();
        assert_ne!(stored, "cookie-id");
        assert_eq!(stored, digest("cookie-id"));

        there.end("cookie-id").await.unwrap();
        assert!(!there.is_live("cookie-id", "p@z:1", "7", 10).await.unwrap());
        assert!(
            here.is_live("cookie-id", "p@z:1", "7", 10).await.unwrap(),
            "within the recheck interval, what was read holds"
        );
        let fresh = here.recheck_every(Duration::ZERO);
        assert!(!fresh.is_live("cookie-id", "p@z:1", "7", 10).await.unwrap());
    }

    #[tokio::test]
    async fn ending_a_tokens_sign_ins_is_seen_here_at_once_and_elsewhere_after_the_recheck() {
        let store: Arc<dyn SignInStore> = Arc::new(MemorySignIns::default());
        let here = SignIns::new(store.clone()).recheck_every(Duration::from_secs(3600));
        let there = SignIns::new(store).recheck_every(Duration::ZERO);
        here.begin("one", "p@z:1", "7", 1_000, 0).await.unwrap();
        here.begin("two", "p@z:1", "7", 1_000, 0).await.unwrap();
        here.begin("arjun", "a@z:1", "8", 1_000, 0).await.unwrap();

        assert_eq!(here.end_all_of("p@z:1", Some("7")).await.unwrap(), 2);

        for id in ["one", "two"] {
            assert!(
                !here.is_live(id, "p@z:1", "7", 1).await.unwrap(),
                "{id} here"
            );
            assert!(
                !there.is_live(id, "p@z:1", "7", 1).await.unwrap(),
                "{id} there"
            );
        }
        assert!(here.is_live("arjun", "a@z:1", "8", 1).await.unwrap());
    }

    #[tokio::test]
    async fn a_login_is_consumed_once_across_portals_on_one_store() {
        let store: Arc<dyn SignInStore> = Arc::new(MemorySignIns::default());
        let (here, there) = (SignIns::new(store.clone()), SignIns::new(store));
        let login = PendingLogin {
            state: Secret::from("state"),
            code_verifier: Secret::from("verifier"),
            consent: false,
            expires_at: 600,
            next: None,
        };

        assert!(here.consume_login(&login, 1).await.unwrap());
        assert!(
            !there.consume_login(&login, 2).await.unwrap(),
            "replayed elsewhere"
        );
        assert!(
            !here.consume_login(&login, 2).await.unwrap(),
            "replayed here"
        );
    }
}
