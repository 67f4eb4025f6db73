//! Sign-ins that ended before their lifetime: the user signed out, disconnected, or lost their Zoho session.
//!
//! The session lives in the browser's (encrypted) cookie, so signing out cannot take the cookie back from a
//! browser, or from whoever copied it. The portal remembers which sign-ins have ended and refuses them
//! (the portal's sign-in gate, `routes::middleware::sign_in_gate`) until they would have expired anyway. The check is a lookup in memory; with a SQLite token store
//! every sign-out is also written to a table of its own in the same database file
//! (`portal_ended_sign_ins`), read back when the portal starts, so a restart does not bring a copied cookie
//! back to life, and read again every few seconds for the sign-outs other portals on the same file wrote. The
//! token table is not touched: the Python SDK sharing the file never sees this one.

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dashmap::DashMap;
use rusqlite::{Connection, OpenFlags, TransactionBehavior, params};

use super::StoreError;

/// The table that keeps ended sign-ins, beside the SDK's `oauthtoken`.
const TABLE: &str = "portal_ended_sign_ins";

/// Above this many ended sign-ins in memory, those past their lifetime are forgotten.
const SWEEP_ABOVE: usize = 10_000;

/// How often the journal is read again for other portals' sign-outs (see [`SignOuts::catch_up_every`]).
pub const CATCH_UP_EVERY: Duration = Duration::from_secs(5);

/// The portal's list of ended sign-ins: by the sign-in's random id, when it would have expired (Unix seconds).
pub struct SignOuts {
    ended: Arc<DashMap<String, i64>>,
    journal: Option<Journal>,
}

/// Where sign-outs are written so that they outlive the process, and where other portals' are read.
struct Journal {
    connection: Arc<Mutex<Connection>>,
    /// The database's path, for messages.
    location: String,
    /// When the journal was last read (Unix milliseconds).
    read_at: AtomicI64,
    /// The last row read: rows are numbered in the order they were written (SQLite's `AUTOINCREMENT` never
    /// gives a number twice), so the next read asks for the rows after it, whatever the writers' clocks say.
    seen: AtomicI64,
    /// How often it is read again.
    every: Duration,
}

impl std::fmt::Debug for SignOuts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignOuts")
            .field("ended", &self.ended.len())
            .field("journal", &self.journal.as_ref().map(|j| &j.location))
            .finish()
    }
}

impl SignOuts {
    /// Sign-outs kept in this process only: a restart forgets them. For the stores whose tokens live in
    /// memory (a restart forgets those too, and every session with them) and for the CSV file store.
    pub fn in_memory() -> SignOuts {
        SignOuts {
            ended: Arc::new(DashMap::new()),
            journal: None,
        }
    }

    /// Sign-outs also kept in the SQLite database at `path` (the token store's file, which must exist): the
    /// table is created when missing, rows past their lifetime are deleted, and the rest are loaded.
    pub fn with_journal(path: &Path, now_secs: i64) -> Result<SignOuts, StoreError> {
        let location = path.display().to_string();
        let fail = |action: &str, error: rusqlite::Error| {
            StoreError::backend(format!("{location}: {action}"), error)
        };
        // Never created here: the token store made (and checked) the file.
        let mut connection = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| fail("open the database for the sign-out journal", e))?;
        connection
            .busy_timeout(super::DEFAULT_BUSY_TIMEOUT)
            .map_err(|e| fail("set the busy timeout", e))?;
        // One write transaction, its lock taken up front (waiting the busy timeout for another writer).
        let transaction = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| fail("create the sign-out journal", e))?;
        transaction
            .execute(
                &format!(
                    "CREATE TABLE IF NOT EXISTS {TABLE} (seq INTEGER PRIMARY KEY AUTOINCREMENT, \
                     sign_in_id TEXT NOT NULL UNIQUE, expires_at INTEGER NOT NULL)"
                ),
                [],
            )
            .map_err(|e| fail("create the sign-out journal", e))?;
        transaction
            .execute(
                &format!("DELETE FROM {TABLE} WHERE expires_at <= ?1"),
                [now_secs],
            )
            .map_err(|e| fail("forget expired sign-outs", e))?;
        transaction
            .commit()
            .map_err(|e| fail("create the sign-out journal", e))?;
        let ended = DashMap::new();
        let seen = read_journal(&connection, 0, &ended)
            .map_err(|e| fail("read the sign-out journal", e))?;
        Ok(SignOuts {
            ended: Arc::new(ended),
            journal: Some(Journal {
                connection: Arc::new(Mutex::new(connection)),
                location,
                read_at: AtomicI64::new(now_secs.saturating_mul(1000)),
                seen: AtomicI64::new(seen),
                every: CATCH_UP_EVERY,
            }),
        })
    }

    /// Reads the journal again every `every` instead of [`CATCH_UP_EVERY`] (tests read it on every request).
    pub fn catch_up_every(mut self, every: Duration) -> SignOuts {
        if let Some(journal) = &mut self.journal {
            journal.every = every;
        }
        self
    }

    /// Reads the sign-outs written to the journal since the last read (by this portal or another on the same
    /// file), when the last read is `every` old; otherwise, or when another request is reading, does nothing.
    /// A read that fails is logged and tried again at the next interval.
    pub async fn catch_up(&self, now_millis: i64) {
        let Some(journal) = &self.journal else {
            return;
        };
        let read_at = journal.read_at.load(Ordering::Relaxed);
        let every = i64::try_from(journal.every.as_millis()).unwrap_or(i64::MAX);
        let due = now_millis.saturating_sub(read_at) >= every;
        // One request per interval reads; the others go on with what is known.
        if !due
            || journal
                .read_at
                .compare_exchange(read_at, now_millis, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let after = journal.seen.load(Ordering::Relaxed);
        let ended = self.ended.clone();
        let read = journal
            .run(
                "could not read the sign-out journal: other portals' sign-outs are known at the next try",
                move |connection| read_journal(connection, after, &ended),
            )
            .await;
        if let Some(last) = read {
            journal.seen.fetch_max(last, Ordering::Relaxed);
        }
    }

    /// Whether the sign-in `id` has ended.
    pub fn has_ended(&self, id: &str) -> bool {
        self.ended.contains_key(id)
    }

    /// How many ended sign-ins are remembered.
    pub fn len(&self) -> usize {
        self.ended.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.ended.is_empty()
    }

    /// Ends the sign-in `id` (it would expire at `expires_at`, Unix seconds). It is refused in this process at
    /// once; the journal's write runs on the blocking pool and is awaited, so that a restart right after the
    /// answer still knows it. A write that fails is logged: the sign-out then holds until the next restart.
    pub async fn end(&self, id: String, expires_at: i64, now_secs: i64) {
        if self.ended.len() >= SWEEP_ABOVE {
            self.ended.retain(|_, expires| *expires > now_secs);
        }
        self.ended.insert(id.clone(), expires_at);
        let Some(journal) = &self.journal else {
            return;
        };
        journal
            .run(
                "could not record a sign-out in the database: it holds until the portal restarts",
                move |connection| {
                    connection.execute(
                        &format!(
                            "INSERT INTO {TABLE} (sign_in_id, expires_at) VALUES (?1, ?2) \
                             ON CONFLICT (sign_in_id) DO NOTHING"
                        ),
                        params![id, expires_at],
                    )?;
                    Ok(())
                },
            )
            .await;
    }
}

impl Journal {
    /// Runs `work` on the journal's connection, on the blocking pool (SQLite may wait for a lock), and awaits
    /// its answer. A failure is logged as `consequence` says, and is `None`: the journal only ever adds to what
    /// memory holds.
    async fn run<T: Send + 'static>(
        &self,
        consequence: &str,
        work: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Option<T> {
        let connection = self.connection.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let connection = connection
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            work(&connection)
        })
        .await;
        let error = match outcome {
            Ok(Ok(answer)) => return Some(answer),
            Ok(Err(error)) => error.to_string(),
            Err(error) => error.to_string(),
        };
        tracing::warn!(database = %self.location, %error, "{consequence}");
        None
    }
}

/// Adds the journal's rows after row `after` to `ended`; returns the last row's number (`after` when none).
fn read_journal(
    connection: &Connection,
    after: i64,
    ended: &DashMap<String, i64>,
) -> rusqlite::Result<i64> {
    let mut statement = connection.prepare_cached(&format!(
        "SELECT seq, sign_in_id, expires_at FROM {TABLE} WHERE seq > ?1 ORDER BY seq"
    ))?;
    let rows = statement.query_map([after], |row| {
        Ok((
            row.get::<_, i64>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, i64>(2)?,
        ))
    })?;
    let mut last = after;
    for row in rows {
        let (seq, id, expires_at) = row?;
        ended.insert(id, expires_at);
        last = seq;
    }
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tokens.db");
        crate::tokens::SqliteStore::open(&path).expect("a token store");
        (dir, path)
    }

    #[tokio::test]
    async fn a_sign_out_outlives_the_process_until_its_expiry() {
        let (_dir, path) = database();
        let sign_outs = SignOuts::with_journal(&path, 1_000).expect("journal");
        sign_outs.end("kept".into(), 5_000, 1_000).await;
        sign_outs.end("expiring".into(), 2_000, 1_000).await;
        assert!(sign_outs.has_ended("kept"));
        drop(sign_outs);

        let reopened = SignOuts::with_journal(&path, 3_000).expect("journal");

        assert!(reopened.has_ended("kept"), "read back after a restart");
        assert!(
            !reopened.has_ended("expiring"),
            "past its lifetime: forgotten"
        );
        assert_eq!(reopened.len(), 1);
        let connection = Connection::open(&path).expect("open");
        let rows: i64 = connection
            .query_row(&format!("SELECT count(*) FROM {TABLE}"), [], |row| {
                row.get(0)
            })
            .expect("count");
        assert_eq!(rows, 1, "the expired row is deleted from the file");
    }

    #[tokio::test]
    async fn the_journal_leaves_the_token_table_alone_and_refuses_a_missing_file() {
        let (dir, path) = database();
        let store = crate::tokens::SqliteStore::open(&path).expect("store");
        let sign_outs = SignOuts::with_journal(&path, 0).expect("journal");
        sign_outs.end("id".into(), 10, 0).await;
        assert!(
            crate::tokens::TokenStore::get_tokens(&store)
                .expect("tokens")
                .is_empty()
        );

        let missing = dir.path().join("missing.db");
        assert!(SignOuts::with_journal(&missing, 0).is_err());
        assert!(!missing.exists(), "nothing is created");
    }

    #[tokio::test]
    async fn a_portal_catches_up_with_another_portals_sign_outs_once_per_interval() {
        let (_dir, path) = database();
        let here = SignOuts::with_journal(&path, 1_000).expect("journal");
        let there = SignOuts::with_journal(&path, 1_000).expect("journal");

        there.end("theirs".into(), 9_000, 1_001).await;
        here.catch_up(1_002_000).await;
        assert!(!here.has_ended("theirs"), "not yet: read at 1,000 s");

        here.catch_up(1_005_000).await;
        assert!(here.has_ended("theirs"), "read again after the interval");

        there.end("later".into(), 9_000, 1_006).await;
        here.catch_up(1_007_000).await;
        assert!(!here.has_ended("later"), "within the interval: not read");
        let every_request = SignOuts::with_journal(&path, 1_000)
            .expect("journal")
            .catch_up_every(Duration::ZERO);
        there.end("last".into(), 9_000, 1_008).await;
        every_request.catch_up(1_008_000).await;
        assert!(every_request.has_ended("last"));
    }

    #[tokio::test]
    async fn in_memory_sign_outs_are_checked_and_swept() {
        let sign_outs = SignOuts::in_memory();
        for i in 0..SWEEP_ABOVE {
            sign_outs.end(format!("old{i}"), 10, 0).await;
        }
        assert_eq!(sign_outs.len(), SWEEP_ABOVE);

        sign_outs.end("new".into(), 1_000, 100).await;

        assert!(sign_outs.has_ended("new"));
        assert!(!sign_outs.has_ended("old0"), "expired ones are swept");
        assert_eq!(sign_outs.len(), 1);
    }
}
