//! Sign-ins kept on the server: every sign-in and every login in flight is a record in the portal's shared
//! store, so that any portal sharing the store refuses a cookie whose sign-in has ended.
//!
//! The session cookie is encrypted, but it is the browser's: signing out cannot take it back from a browser, or
//! from whoever copied it. So the cookie only names a sign-in (a random id), and the sign-in itself lives here.
//! A cookie is good while its sign-in's record exists and is within its lifetime; signing out, disconnecting, or
//! logging in as someone else in the same browser deletes the record, and every portal on the store then refuses
//! every copy of the cookie. A login in flight (the OAuth `state` and the PKCE verifier) is a record too, taken
//! (deleted) by the one callback that uses it, so a replayed pre-callback cookie finds nothing.
//!
//! Records are kept by a SHA-256 digest of the id, never the id: a copy of the database is no list of cookies.
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

/// The table of logins in flight.
pub const PENDING_LOGINS_TABLE: &str = "portal_pending_logins";

/// How long a portal trusts what it last read about a sign-in: a sign-in ended on another portal is refused
/// here at most this long after, plus one read of the store (the store is read again at most once per sign-in
/// per interval). Under a second, so that with that read the bound is one second.
pub const RECHECK_EVERY: Duration = Duration::from_millis(900);

/// How often a portal deletes the records past their lifetime (also once when it starts).
pub const PURGE_EVERY: Duration = Duration::from_secs(10 * 60);

/// Above this many remembered verdicts, those older than [`RECHECK_EVERY`] are forgotten.
const VERDICTS_SWEEP_ABOVE: usize = 10_000;

/// The SQLite file that keeps the sign-ins of a CSV file store: `<file>.sign-ins.db` beside it.
pub fn sign_ins_file_beside(csv: &Path) -> PathBuf {
    let mut name = csv.as_os_str().to_owned();
    name.push(".sign-ins.db");
    PathBuf::from(name)
}

/// A login on its way through Zoho: the state to expect back (good once) and the PKCE verifier.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PendingLogin {
    pub state: Secret,
    pub code_verifier: Secret,
    /// Whether this round asked with `prompt=consent` (it happens at most once).
    pub consent: bool,
}

/// What the callback finds of the login it answers.
#[derive(Debug)]
pub enum PendingLoginFound {
    /// The login in flight, taken (a state is good once).
    Pending(PendingLogin),
    /// A login started longer ago than its lifetime: taken and dropped.
    Expired,
    /// No login in flight under that id (never started, or used already).
    None,
}

/// How many records a purge deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub sign_ins: u64,
    pub pending_logins: u64,
}

/// Where sign-ins and logins in flight are kept: one implementation per kind of shared store.
///
/// Ids arrive as digests (see the module's documentation); times are Unix seconds. Every method may block (a
/// database), so [`SignIns`] calls them on the blocking pool unless [`runs_in_memory`](Self::runs_in_memory).
/// A store shared by several portals must make [`take_pending_login`](Self::take_pending_login) atomic: two
/// callbacks racing with one pending login never both get it.
pub trait SignInStore: Send + Sync {
    /// Records a sign-in that lasts until `expires_at`.
    fn record_sign_in(&self, id: &str, expires_at: i64) -> Result<(), StoreError>;

    /// Whether the sign-in is recorded and `now` is before its end.
    fn sign_in_is_live(&self, id: &str, now: i64) -> Result<bool, StoreError>;

    /// Ends a sign-in: deletes its record (nothing when there is none).
    fn end_sign_in(&self, id: &str) -> Result<(), StoreError>;

    /// Records a login in flight, good until `expires_at`.
    fn record_pending_login(
        &self,
        id: &str,
        login: &PendingLogin,
        expires_at: i64,
    ) -> Result<(), StoreError>;

    /// Takes a login in flight: deletes its record and returns it with its end, expired or not. Atomic.
    fn take_pending_login(&self, id: &str) -> Result<Option<(PendingLogin, i64)>, StoreError>;

    /// Deletes every record whose end is at or before `now`.
    fn purge(&self, now: i64) -> Result<Purged, StoreError>;

    /// Whether the records live in this process's memory, so that calls never block.
    fn runs_in_memory(&self) -> bool {
        false
    }
}

/// The portal's sign-ins: a [`SignInStore`], what this portal last read from it (trusted for
/// [`RECHECK_EVERY`]), and the schedule of purges.
pub struct SignIns {
    store: Arc<dyn SignInStore>,
    /// By digest: whether the sign-in was live, and when that was read.
    verdicts: DashMap<String, (bool, Instant)>,
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
    /// The sign-ins kept in `store`. The first purge runs with the first sign-in or login recorded.
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

    /// Records a new sign-in, `id` being the random id the cookie carries.
    pub async fn begin(&self, id: &str, expires_at: i64, now: i64) -> Result<(), StoreError> {
        self.purge_if_due(now).await;
        let key = digest(id);
        self.run({
            let key = key.clone();
            move |store| store.record_sign_in(&key, expires_at)
        })
        .await?;
        self.verdicts.insert(key, (true, Instant::now()));
        Ok(())
    }

    /// Whether the sign-in `id` is live: as read from the store, at most [`RECHECK_EVERY`] ago.
    pub async fn is_live(&self, id: &str, now: i64) -> Result<bool, StoreError> {
        let key = digest(id);
        if let Some(verdict) = self.verdicts.get(&key)
            && verdict.1.elapsed() < self.recheck_every
        {
            return Ok(verdict.0);
        }
        let live = self
            .run({
                let key = key.clone();
                move |store| store.sign_in_is_live(&key, now)
            })
            .await?;
        if self.verdicts.len() >= VERDICTS_SWEEP_ABOVE {
            let every = self.recheck_every;
            self.verdicts.retain(|_, (_, read)| read.elapsed() < every);
        }
        self.verdicts.insert(key, (live, Instant::now()));
        Ok(live)
    }

    /// Ends the sign-in `id`: refused here at once, and by every portal on the store once its record is gone.
    pub async fn end(&self, id: &str) -> Result<(), StoreError> {
        let key = digest(id);
        // A sign-in never comes back, so the verdict holds even if the delete below fails.
        self.verdicts.insert(key.clone(), (false, Instant::now()));
        self.run(move |store| store.end_sign_in(&key)).await
    }

    /// Records a login in flight under `id` (the random id the cookie carries), good for `lifetime` (the
    /// portal's `pending_login_ttl`); the record is purged after it.
    pub async fn begin_login(
        &self,
        id: &str,
        login: PendingLogin,
        now: i64,
        lifetime: Duration,
    ) -> Result<(), StoreError> {
        self.purge_if_due(now).await;
        let key = digest(id);
        let lifetime = i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX);
        let expires_at = now.saturating_add(lifetime);
        self.run(move |store| store.record_pending_login(&key, &login, expires_at))
            .await
    }

    /// Takes the login in flight `id`: it is gone afterwards, whatever the caller does with it.
    pub async fn take_login(&self, id: &str, now: i64) -> Result<PendingLoginFound, StoreError> {
        let key = digest(id);
        let taken = self
            .run(move |store| store.take_pending_login(&key))
            .await?;
        Ok(match taken {
            Some((login, expires_at)) if now < expires_at => PendingLoginFound::Pending(login),
            Some(_) => PendingLoginFound::Expired,
            None => PendingLoginFound::None,
        })
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
                    pending_logins = purged.pending_logins,
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
    sign_ins: Mutex<HashMap<String, i64>>,
    pending: Mutex<HashMap<String, (PendingLogin, i64)>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every change is one map operation: a panic elsewhere cannot leave a map half changed.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl SignInStore for MemorySignIns {
    fn record_sign_in(&self, id: &str, expires_at: i64) -> Result<(), StoreError> {
        lock(&self.sign_ins).insert(id.to_owned(), expires_at);
        Ok(())
    }

    fn sign_in_is_live(&self, id: &str, now: i64) -> Result<bool, StoreError> {
        Ok(lock(&self.sign_ins)
            .get(id)
            .is_some_and(|expires_at| now < *expires_at))
    }

    fn end_sign_in(&self, id: &str) -> Result<(), StoreError> {
        lock(&self.sign_ins).remove(id);
        Ok(())
    }

    fn record_pending_login(
        &self,
        id: &str,
        login: &PendingLogin,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        lock(&self.pending).insert(id.to_owned(), (login.clone(), expires_at));
        Ok(())
    }

    fn take_pending_login(&self, id: &str) -> Result<Option<(PendingLogin, i64)>, StoreError> {
        Ok(lock(&self.pending).remove(id))
    }

    fn purge(&self, now: i64) -> Result<Purged, StoreError> {
        let mut sign_ins = lock(&self.sign_ins);
        let before = sign_ins.len();
        sign_ins.retain(|_, expires_at| now < *expires_at);
        let purged_sign_ins = (before - sign_ins.len()) as u64;
        drop(sign_ins);
        let mut pending = lock(&self.pending);
        let before = pending.len();
        pending.retain(|_, (_, expires_at)| now < *expires_at);
        Ok(Purged {
            sign_ins: purged_sign_ins,
            pending_logins: (before - pending.len()) as u64,
        })
    }

    fn runs_in_memory(&self) -> bool {
        true
    }
}

/// Sign-ins in two tables of a SQLite file: the token store's own file, or a file of their own beside the CSV
/// file store. Every statement is a single one (SQLite's `DELETE … RETURNING` takes a login in flight
/// atomically), so any number of portals on the file agree.
pub struct SqliteSignIns {
    pool: r2d2::Pool<SqliteConnectionManager>,
    location: String,
}

/// Connections kept for the sign-in tables: lookups are short and cached, so a few suffice.
const SQLITE_POOL_SIZE: u32 = 4;

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
        let setup = Connection::open_with_flags(path, flags)
            .map_err(|e| fail("open the database for the sign-ins", e))?;
        setup
            .busy_timeout(busy_timeout)
            .map_err(|e| fail("set the busy timeout", e))?;
        super::sqlite::switch_to_wal(&setup, busy_timeout).map_err(|e| fail("switch to WAL", e))?;
        setup
            .execute_batch(&format!(
                "BEGIN IMMEDIATE;
                 CREATE TABLE IF NOT EXISTS {SIGN_INS_TABLE} (
                     id TEXT PRIMARY KEY NOT NULL, expires_at INTEGER NOT NULL);
                 CREATE INDEX IF NOT EXISTS {SIGN_INS_TABLE}_expires_at ON {SIGN_INS_TABLE} (expires_at);
                 CREATE TABLE IF NOT EXISTS {PENDING_LOGINS_TABLE} (
                     id TEXT PRIMARY KEY NOT NULL, state TEXT NOT NULL, code_verifier TEXT NOT NULL,
                     consent INTEGER NOT NULL, expires_at INTEGER NOT NULL);
                 COMMIT;"
            ))
            .map_err(|e| fail("create the sign-in tables", e))?;
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

impl SignInStore for SqliteSignIns {
    fn record_sign_in(&self, id: &str, expires_at: i64) -> Result<(), StoreError> {
        self.with_connection("record a sign-in", |conn| {
            conn.prepare_cached(&format!(
                "INSERT INTO {SIGN_INS_TABLE} (id, expires_at) VALUES (?1, ?2) \
                 ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at"
            ))?
            .execute(params![id, expires_at])
            .map(drop)
        })
    }

    fn sign_in_is_live(&self, id: &str, now: i64) -> Result<bool, StoreError> {
        self.with_connection("read a sign-in", |conn| {
            conn.prepare_cached(&format!(
                "SELECT 1 FROM {SIGN_INS_TABLE} WHERE id = ?1 AND expires_at > ?2"
            ))?
            .query_row(params![id, now], |_| Ok(()))
            .optional()
            .map(|row| row.is_some())
        })
    }

    fn end_sign_in(&self, id: &str) -> Result<(), StoreError> {
        self.with_connection("end a sign-in", |conn| {
            conn.prepare_cached(&format!("DELETE FROM {SIGN_INS_TABLE} WHERE id = ?1"))?
                .execute([id])
                .map(drop)
        })
    }

    fn record_pending_login(
        &self,
        id: &str,
        login: &PendingLogin,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        self.with_connection("record a login in flight", |conn| {
            conn.prepare_cached(&format!(
                "INSERT INTO {PENDING_LOGINS_TABLE} (id, state, code_verifier, consent, expires_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5)"
            ))?
            .execute(params![
                id,
                login.state.expose_secret(),
                login.code_verifier.expose_secret(),
                login.consent,
                expires_at
            ])
            .map(drop)
        })
    }

    fn take_pending_login(&self, id: &str) -> Result<Option<(PendingLogin, i64)>, StoreError> {
        self.with_connection("take a login in flight", |conn| {
            conn.prepare_cached(&format!(
                "DELETE FROM {PENDING_LOGINS_TABLE} WHERE id = ?1 \
                 RETURNING state, code_verifier, consent, expires_at"
            ))?
            .query_row([id], |row| {
                Ok((
                    PendingLogin {
                        state: Secret::from(row.get::<_, String>(0)?),
                        code_verifier: Secret::from(row.get::<_, String>(1)?),
                        consent: row.get(2)?,
                    },
                    row.get::<_, i64>(3)?,
                ))
            })
            .optional()
        })
    }

    fn purge(&self, now: i64) -> Result<Purged, StoreError> {
        self.with_connection("purge old sign-in records", |conn| {
            let sign_ins = conn.execute(
                &format!("DELETE FROM {SIGN_INS_TABLE} WHERE expires_at <= ?1"),
                [now],
            )?;
            let pending_logins = conn.execute(
                &format!("DELETE FROM {PENDING_LOGINS_TABLE} WHERE expires_at <= ?1"),
                [now],
            )?;
            Ok(Purged {
                sign_ins: sign_ins as u64,
                pending_logins: pending_logins as u64,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(state: &str) -> PendingLogin {
        PendingLogin {
            state: Secret::from(state),
            code_verifier: Secret::from(format!("{state}-verifier")),
            consent: true,
        }
    }

    /// What every backend must do; run on each below.
    fn behaves_as_a_sign_in_store(store: &dyn SignInStore) {
        store.record_sign_in("a", 100).unwrap();
        store.record_sign_in("b", 100).unwrap();
        assert!(store.sign_in_is_live("a", 99).unwrap());
        assert!(!store.sign_in_is_live("a", 100).unwrap(), "past its end");
        assert!(!store.sign_in_is_live("nobody", 0).unwrap());
        store.end_sign_in("a").unwrap();
        store.end_sign_in("a").unwrap();
        assert!(!store.sign_in_is_live("a", 0).unwrap(), "ended");
        assert!(store.sign_in_is_live("b", 0).unwrap(), "the other stays");

        store.record_pending_login("p", &login("s1"), 50).unwrap();
        let taken = store.take_pending_login("p").unwrap();
        assert_eq!(taken, Some((login("s1"), 50)));
        assert_eq!(store.take_pending_login("p").unwrap(), None, "once");

        store.record_sign_in("old", 20).unwrap();
        store.record_pending_login("old", &login("s3"), 20).unwrap();
        store
            .record_pending_login("new", &login("s4"), 200)
            .unwrap();
        assert_eq!(
            store.purge(20).unwrap(),
            Purged {
                sign_ins: 1,
                pending_logins: 1
            }
        );
        assert!(store.sign_in_is_live("b", 20).unwrap(), "b lives until 100");
        assert_eq!(
            store.take_pending_login("new").unwrap(),
            Some((login("s4"), 200))
        );
        assert_eq!(store.take_pending_login("old").unwrap(), None, "purged");
    }

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

        here.begin("cookie-id", 1_000, 0).await.unwrap();
        assert!(there.is_live("cookie-id", 10).await.unwrap());
        let stored: String = Connection::open(&path)
            .unwrap()
            .query_row(&format!("SELECT id FROM {SIGN_INS_TABLE}"), [], |row| {
                row.get(0)
            })
            .unwrap();
        assert_ne!(stored, "cookie-id");
        assert_eq!(stored, digest("cookie-id"));

        there.end("cookie-id").await.unwrap();
        assert!(!there.is_live("cookie-id", 10).await.unwrap());
        assert!(
            here.is_live("cookie-id", 10).await.unwrap(),
            "within the recheck interval, what was read holds"
        );
        let fresh = here.recheck_every(Duration::ZERO);
        assert!(!fresh.is_live("cookie-id", 10).await.unwrap());
    }

    #[tokio::test]
    async fn a_login_in_flight_is_taken_once_and_refused_after_its_lifetime() {
        let sign_ins = SignIns::in_memory();
        let minute = Duration::from_secs(60);
        sign_ins
            .begin_login("on-time", login("a"), 0, minute)
            .await
            .unwrap();
        sign_ins
            .begin_login("late", login("b"), 0, minute)
            .await
            .unwrap();

        let on_time = sign_ins.take_login("on-time", 59).await.unwrap();
        let again = sign_ins.take_login("on-time", 59).await.unwrap();
        let late = sign_ins.take_login("late", 60).await.unwrap();
        let late_again = sign_ins.take_login("late", 1).await.unwrap();

        assert!(matches!(on_time, PendingLoginFound::Pending(found) if found == login("a")));
        assert!(matches!(again, PendingLoginFound::None), "used once");
        assert!(matches!(late, PendingLoginFound::Expired));
        assert!(
            matches!(late_again, PendingLoginFound::None),
            "taken all the same"
        );
    }
}
