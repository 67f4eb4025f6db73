//! `SqliteStore`: the token table of Zoho's sample SQLite store, on a file (shared by threads and processes) or
//! in memory.
//!
//! The sample, called "the seed" below, is `CustomStoreSQLite`, the SQLite token store of Zoho's Kaizen #192
//! (<https://help.zoho.com/portal/en/community/topic/kaizen-192-implementing-custom-token-persistence-in-python-sdk>).
//! Its table and file are kept, so that both share one `zohooauth.db` (`docs/zoho-protocol.md#the-sdks-token-store`).
//!
//! **The rule for every SQLite file of the portal** (the token file, the sign-in tables in it, the
//! `PATH.sign-ins.db` beside a CSV store): once a connection of this process may have the file open, nothing
//! but SQLite opens it. SQLite's locks between processes are POSIX advisory locks, which belong to the process
//! and the file, not to a descriptor: closing *any* descriptor of the database file (a `std::fs::File` opened to
//! read its header, say) silently drops every lock this process's connections hold on it. The next program that
//! opens and closes the file (the SDK's Python store, the `sqlite3` shell, a backup script) then believes it is
//! the last user, checkpoints and deletes the `-wal` that this process goes on writing into: those writes are
//! invisible to everyone else from then on, and lost when this process is killed (SQLite's "How To Corrupt An
//! SQLite Database File", section 2.2). SQLite itself keeps one set of locks per file for all the connections of
//! the process and defers closing a descriptor while any of them holds a lock, so a connection is always safe.
//! So a file is checked through SQLite ([`check_sqlite_database`]: a read-only connection), stat'ed or chmod'ed
//! by path (neither opens the file), and never read or written with `std::fs`. `cat /proc/locks` shows whether
//! a running portal still holds its read lock on the file (in WAL mode every open connection holds one, from
//! byte 1073741826).

use std::fmt;
use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior, params};

use crate::private_file::restrict_to_owner;

use super::sql::COLUMNS;
use super::{OAuthToken, Secret, StoreError, TokenKey, TokenStore, exposed, parse_expiry_time};

/// How long a statement waits for another connection or process to release the database before failing.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The most connections a file store's pool opens. WAL lets readers run beside the one writer; more
/// connections than this only queue on SQLite's write lock.
const POOL_SIZE: u32 = 8;

/// The seed's table, word for word in its column order and types, so that the seed's Python
/// `CustomStoreSQLite` and this store can share one `zohooauth.db`.
const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS oauthtoken (id varchar(10) NOT NULL, \
     user_name varchar(255), client_id varchar(255), client_secret varchar(255), \
     refresh_token varchar(255), access_token varchar(255), grant_token varchar(255), \
     expiry_time varchar(20), redirect_url varchar(255), api_domain varchar(255), primary key (id))";

/// Logins look tokens up by user name; the other keys are rare enough to scan for.
const CREATE_INDEX: &str =
    "CREATE INDEX IF NOT EXISTS oauthtoken_user_name ON oauthtoken (user_name)";

// One statement per key column: the column is chosen from this fixed list, the value is always a parameter.
// `ORDER BY rowid` makes "the first matching row" the oldest one, as in `ListStore`'s `Vec`.
const SELECT_BY_USER_NAME: &str = "SELECT id, user_name, client_id, client_secret, refresh_token, access_token, grant_token, expiry_time, redirect_url, api_domain FROM oauthtoken WHERE user_name = ?1 ORDER BY rowid LIMIT 1";
const SELECT_BY_ACCESS_TOKEN: &str = "SELECT id, user_name, client_id, client_secret, refresh_token, access_token, grant_token, expiry_time, redirect_url, api_domain FROM oauthtoken WHERE access_token = ?1 ORDER BY rowid LIMIT 1";
const SELECT_BY_GRANT_TOKEN: &str = "SELECT id, user_name, client_id, client_secret, refresh_token, access_token, grant_token, expiry_time, redirect_url, api_domain FROM oauthtoken WHERE grant_token = ?1 ORDER BY rowid LIMIT 1";
const SELECT_BY_REFRESH_TOKEN: &str = "SELECT id, user_name, client_id, client_secret, refresh_token, access_token, grant_token, expiry_time, redirect_url, api_domain FROM oauthtoken WHERE refresh_token = ?1 ORDER BY rowid LIMIT 1";
const SELECT_BY_ID: &str = "SELECT id, user_name, client_id, client_secret, refresh_token, access_token, grant_token, expiry_time, redirect_url, api_domain FROM oauthtoken WHERE id = ?1";
const SELECT_ALL: &str = "SELECT id, user_name, client_id, client_secret, refresh_token, access_token, grant_token, expiry_time, redirect_url, api_domain FROM oauthtoken ORDER BY rowid";

// The seed's `UPDATE … LIMIT 1` needs a compile option the bundled SQLite lacks; a rowid subquery names the
// one row instead, and `RETURNING id` tells the caller which row it was in the same statement.
// By user name the name cannot change, so it is not set: setting it would rewrite its index entry each time.
// (?2 stays bound but unused, so every update takes the same ten parameters.)
const UPDATE_BY_USER_NAME: &str = "UPDATE oauthtoken SET client_id = ?3, client_secret = ?4, refresh_token = ?5, access_token = ?6, grant_token = ?7, expiry_time = ?8, redirect_url = ?9, api_domain = ?10 WHERE rowid = (SELECT rowid FROM oauthtoken WHERE user_name = ?1 ORDER BY rowid LIMIT 1) RETURNING id";
const UPDATE_BY_ACCESS_TOKEN: &str = "UPDATE oauthtoken SET user_name = ?2, client_id = ?3, client_secret = ?4, refresh_token = ?5, access_token = ?6, grant_token = ?7, expiry_time = ?8, redirect_url = ?9, api_domain = ?10 WHERE rowid = (SELECT rowid FROM oauthtoken WHERE access_token = ?1 ORDER BY rowid LIMIT 1) RETURNING id";
const UPDATE_BY_GRANT_TOKEN: &str = "UPDATE oauthtoken SET user_name = ?2, client_id = ?3, client_secret = ?4, refresh_token = ?5, access_token = ?6, grant_token = ?7, expiry_time = ?8, redirect_url = ?9, api_domain = ?10 WHERE rowid = (SELECT rowid FROM oauthtoken WHERE grant_token = ?1 ORDER BY rowid LIMIT 1) RETURNING id";
const UPDATE_BY_REFRESH_TOKEN: &str = "UPDATE oauthtoken SET user_name = ?2, client_id = ?3, client_secret = ?4, refresh_token = ?5, access_token = ?6, grant_token = ?7, expiry_time = ?8, redirect_url = ?9, api_domain = ?10 WHERE rowid = (SELECT rowid FROM oauthtoken WHERE refresh_token = ?1 ORDER BY rowid LIMIT 1) RETURNING id";

// By id, the row is taken over only when the token names no user or the row holds none (?2 is the token's
// user name): a row that holds another user's name is never given to a second user.
const UPDATE_BY_ID: &str = "UPDATE oauthtoken SET user_name = ?2, client_id = ?3, client_secret = ?4, refresh_token = ?5, access_token = ?6, grant_token = ?7, expiry_time = ?8, redirect_url = ?9, api_domain = ?10 WHERE id = ?1 AND (?2 IS NULL OR ?2 = '' OR user_name IS NULL OR user_name = '') RETURNING id";
const SELECT_ID: &str = "SELECT 1 FROM oauthtoken WHERE id = ?1";
/// Only ever run after the checks above found no row to write, so a new row never replaces one.
const INSERT: &str = "INSERT INTO oauthtoken (id, user_name, client_id, client_secret, refresh_token, access_token, grant_token, expiry_time, redirect_url, api_domain) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";
const SELECT_IDS: &str = "SELECT id FROM oauthtoken";
const DELETE_BY_ID: &str = "DELETE FROM oauthtoken WHERE id = ?1";
const DELETE_ALL: &str = "DELETE FROM oauthtoken";
// `IS` rather than `=` so that an expected NULL access token matches a stored NULL.
const COMPARE_AND_SET: &str = "UPDATE oauthtoken SET access_token = ?3, expiry_time = ?4 WHERE id = ?1 AND access_token IS ?2";
const DELETE_IF_UNCHANGED: &str = "DELETE FROM oauthtoken WHERE id = ?1 AND access_token IS ?2";

/// The refresh leases, in a table of the portal's own beside `oauthtoken` (which stays the seed's table).
/// `expires_at` is in epoch milliseconds, from the clocks of the processes sharing the file: one machine's.
const CREATE_LEASE_TABLE: &str = "CREATE TABLE IF NOT EXISTS portal_refresh_leases (\
     token_id TEXT NOT NULL PRIMARY KEY, holder TEXT NOT NULL, expires_at INTEGER NOT NULL)";
/// One statement takes a free or lapsed lease, renews the holder's own, and returns a row only when it did:
/// atomic under SQLite's write lock, so two processes never both get a row back.
const ACQUIRE_LEASE: &str = "INSERT INTO portal_refresh_leases (token_id, holder, expires_at) VALUES (?1, ?2, ?3 + ?4) \
     ON CONFLICT (token_id) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
     WHERE portal_refresh_leases.expires_at <= ?3 OR portal_refresh_leases.holder = excluded.holder \
     RETURNING holder";
const RELEASE_LEASE: &str = "DELETE FROM portal_refresh_leases WHERE token_id = ?1 AND holder = ?2";

/// Tokens in the seed's `oauthtoken` table, in a SQLite file or in memory.
///
/// On a file ([`open`](Self::open)), the database runs in WAL mode with `synchronous=NORMAL` and a busy
/// timeout, behind a pool of connections, so many threads and several processes can share it: every write is
/// one statement or an `IMMEDIATE` transaction, so two processes never both insert a row for one user. The
/// file is created with mode 0600. A database written by the seed's Python `CustomStoreSQLite` (text ids,
/// NULL columns, `expiry_time` as text) is read and updated in place.
///
/// In memory ([`in_memory`](Self::in_memory)), every connection to `:memory:` would be a database of its
/// own, so the store keeps exactly one connection behind a mutex and every user of the store sees it.
pub struct SqliteStore {
    connections: Connections,
    /// What to call the database in errors and `Debug`: its path, or `:memory:`.
    location: String,
    /// How long a statement waits for a database locked by someone else.
    busy_timeout: Duration,
}

enum Connections {
    Pool(r2d2::Pool<SqliteConnectionManager>),
    /// A pool of exactly one that can never be closed: a shared-cache memory database would let several
    /// connections share it, but shared cache answers contention with `SQLITE_LOCKED` at once instead of
    /// waiting, so concurrent writers would fail where one serialized connection just queues them.
    Single(Mutex<Connection>),
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating when missing, with mode 0600) the database file at `path` and its `oauthtoken` table.
    ///
    /// An existing file is checked before anything is written to it: a file that is not a SQLite database,
    /// whose `oauthtoken` table lacks the seed's columns, or that holds another application's tables and no
    /// `oauthtoken` table, is refused with [`StoreError::NotAStore`] and left byte for byte as it was (an empty
    /// file, or a database with no tables at all, becomes the store). An existing file that others may read
    /// is tightened to mode 0600, with its `-wal` and `-shm` files; a warning is logged when it cannot be.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with_busy_timeout(path, DEFAULT_BUSY_TIMEOUT)
    }

    /// [`open`](Self::open), waiting at most `busy_timeout` for a database locked by someone else.
    pub fn open_with_busy_timeout(
        path: impl AsRef<Path>,
        busy_timeout: Duration,
    ) -> Result<Self, StoreError> {
        create_private_file(path.as_ref())?;
        Self::open_file(path.as_ref(), busy_timeout, OtherTables::Refuse)
    }

    /// [`open`](Self::open), but a database that holds other tables and no `oauthtoken` table gets one added
    /// (`sqlite:PATH?create=1`): for keeping the tokens in a database of one's own application on purpose.
    pub fn open_beside_other_tables(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        create_private_file(path.as_ref())?;
        Self::open_file(path.as_ref(), DEFAULT_BUSY_TIMEOUT, OtherTables::Allow)
    }

    /// [`open`](Self::open) a database file that is already there: a missing file is [`StoreError::Missing`],
    /// and nothing is created, not even when the file goes away while it is being opened (SQLite is never
    /// asked to create it). For the commands that inspect or maintain a store.
    pub fn open_existing(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_file(path.as_ref(), DEFAULT_BUSY_TIMEOUT, OtherTables::Refuse)
    }

    fn open_file(
        path: &Path,
        busy_timeout: Duration,
        other_tables: OtherTables,
    ) -> Result<Self, StoreError> {
        let location = path.display().to_string();
        check_sqlite_database(path)?;

        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut setup = Connection::open_with_flags(path, flags)
            .map_err(|e| sql_error(&location, "open the database", e))?;
        setup
            .busy_timeout(busy_timeout)
            .map_err(|e| sql_error(&location, "set the busy timeout", e))?;
        check_table(&setup, &location, other_tables)?;
        // The file is ours: tighten it before SQLite creates a `-wal` or `-shm` from its mode. Companions the
        // check's read may already have created (a database already in WAL) are tightened with it.
        for file in [
            path.to_path_buf(),
            companion(path, "-wal"),
            companion(path, "-shm"),
        ] {
            restrict_to_owner(&file, "token database");
        }
        // Only now that the file is known to be ours does anything get written to it.
        let mode = switch_to_wal(&setup, busy_timeout)
            .map_err(|e| sql_error(&location, "switch to WAL", e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::backend(
                format!("{location}: switch to WAL"),
                format!("SQLite kept journal mode {mode:?}"),
            ));
        }
        create_schema(&mut setup).map_err(|e| sql_error(&location, "create the table", e))?;
        drop(setup);

        let pool = connection_pool(path, &location, POOL_SIZE, busy_timeout)?;
        Ok(SqliteStore {
            connections: Connections::Pool(pool),
            location,
            busy_timeout,
        })
    }

    /// A fresh, empty database in memory (`sqlite::memory:`), gone with the store. Every clone of an
    /// `Arc` holding it, and every thread, sees the same one database.
    pub fn in_memory() -> Result<Self, StoreError> {
        let location = ":memory:".to_owned();
        let mut conn = Connection::open_in_memory()
            .map_err(|e| sql_error(&location, "open the database", e))?;
        configure(&conn, DEFAULT_BUSY_TIMEOUT)
            .map_err(|e| sql_error(&location, "configure the connection", e))?;
        create_schema(&mut conn).map_err(|e| sql_error(&location, "create the table", e))?;
        Ok(SqliteStore {
            connections: Connections::Single(Mutex::new(conn)),
            location,
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
        })
    }

    /// Runs `work` on a connection: one from the pool, or the single in-memory one.
    fn with_connection<T>(
        &self,
        action: &str,
        work: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let result = match &self.connections {
            Connections::Pool(pool) => {
                let mut conn = pool.get().map_err(|e| {
                    StoreError::backend(format!("{}: {action}: no connection", self.location), e)
                })?;
                work(&mut conn)
            }
            Connections::Single(conn) => work(&mut lock(conn)),
        };
        result.map_err(|e| sql_error(&self.location, action, e))
    }
}

fn lock(conn: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    // A panic while holding the connection leaves at worst an open transaction, which SQLite rolls back when
    // the next `BEGIN` fails or the connection closes; the data itself stays consistent.
    conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Switches the database to WAL (it stays so: a file already in WAL is left as it is) and returns the journal
/// mode SQLite reports.
///
/// The switch needs the database to itself, and SQLite answers `SQLITE_BUSY` at once, without waiting the busy
/// timeout, when another connection is writing meanwhile (two processes starting on a fresh file): so a busy
/// answer is tried again until the timeout is over.
pub(super) fn switch_to_wal(conn: &Connection, busy_timeout: Duration) -> rusqlite::Result<String> {
    let current: String = conn.query_row("PRAGMA journal_mode", [], |row| row.get(0))?;
    if current.eq_ignore_ascii_case("wal") {
        return Ok(current);
    }
    let deadline = std::time::Instant::now() + busy_timeout;
    loop {
        match conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0)) {
            Err(error)
                if error.sqlite_error_code() == Some(ErrorCode::DatabaseBusy)
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            answer => return answer,
        }
    }
}

/// A pool of up to `size` connections to the database file at `path`, which is already set up (WAL, tables):
/// each connection gets [`configure`]d once as it opens.
pub(super) fn connection_pool(
    path: &Path,
    location: &str,
    size: u32,
    busy_timeout: Duration,
) -> Result<r2d2::Pool<SqliteConnectionManager>, StoreError> {
    let manager = SqliteConnectionManager::file(path)
        .with_flags(OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .with_init(move |conn| configure(conn, busy_timeout));
    r2d2::Pool::builder()
        .max_size(size)
        .min_idle(Some(1))
        // The connection is checked by every statement anyway; a test query per checkout only costs time.
        .test_on_check_out(false)
        // Connections hold nothing but a file handle and a statement cache: no need to recycle them.
        .idle_timeout(None)
        .max_lifetime(None)
        .connection_timeout(busy_timeout + Duration::from_secs(5))
        .build(manager)
        .map_err(|e| StoreError::backend(format!("{location}: open the connection pool"), e))
}

/// The size a `-wal` file is cut back to when the log starts over after a complete checkpoint
/// (`PRAGMA journal_size_limit`; without it SQLite keeps the file at the largest size it ever reached).
///
/// 4 MiB because SQLite's automatic checkpoint runs once the log holds 1,000 pages, which is 4,000 KiB with
/// the default 4 KiB pages: in ordinary traffic the log cycles within that size and keeps its file, so no
/// write pays for growing it again; after a burst, or a reader that held checkpoints back, the first write
/// after the next complete checkpoint returns everything beyond it to the disk.
pub const JOURNAL_SIZE_LIMIT: i64 = 4 * 1024 * 1024;

/// Per-connection settings, applied once when a connection opens (never per call).
pub(super) fn configure(conn: &Connection, busy_timeout: Duration) -> rusqlite::Result<()> {
    conn.busy_timeout(busy_timeout)?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // Per connection, and applied by whichever connection writes first after a checkpoint: every one gets it.
    conn.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT)?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(())
}

fn create_schema(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute(CREATE_TABLE, [])?;
    tx.execute(CREATE_INDEX, [])?;
    tx.execute(CREATE_LEASE_TABLE, [])?;
    tx.commit()
}

/// Creates the file with mode 0600 before SQLite sees it (SQLite would create it world-readable under the
/// usual umask, and gives its `-wal` and `-shm` files the main file's mode). An existing file is left alone.
pub(super) fn create_private_file(path: &Path) -> Result<(), StoreError> {
    let created = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
    match created {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Err(missing_folder(path, e)),
        Err(e) => Err(StoreError::backend(
            format!("cannot create {}", path.display()),
            e,
        )),
    }
}

/// The error for a store whose folder does not exist: stores never create folders, since a typo in a path
/// would otherwise quietly start an empty store somewhere unexpected.
pub(crate) fn missing_folder(path: &Path, error: std::io::Error) -> StoreError {
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    StoreError::backend(
        format!(
            "cannot create {}: the folder {} does not exist",
            path.display(),
            folder.display()
        ),
        error,
    )
}

/// Refuses a path that is no SQLite database: missing ([`StoreError::Missing`]), a folder, or a file SQLite
/// cannot read as a database ([`StoreError::NotAStore`]); an empty file passes (SQLite writes the header with
/// the first write). It reads through SQLite on a read-only connection, which writes nothing (a refused file is
/// left byte for byte as it was) and never drops a lock this process holds on the file: see the module's
/// documentation for why the file is never opened with `std::fs`.
pub(super) fn check_sqlite_database(path: &Path) -> Result<(), StoreError> {
    let location = path.display().to_string();
    let missing = || StoreError::Missing {
        path: location.clone(),
    };
    // A stat opens no descriptor of the file.
    match std::fs::metadata(path) {
        Ok(metadata) if metadata.is_dir() => {
            return Err(StoreError::NotAStore {
                path: location,
                reason: "it is a folder".to_owned(),
            });
        }
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => return Err(missing()),
        Err(e) => return Err(StoreError::backend(format!("cannot read {location}"), e)),
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| {
        // Gone between the stat and the open: SQLite was not asked to create it, so it is still missing.
        if !path.exists() {
            return missing();
        }
        sql_error(&location, "open the database", e)
    })?;
    conn.busy_timeout(DEFAULT_BUSY_TIMEOUT)
        .map_err(|e| sql_error(&location, "set the busy timeout", e))?;
    // Reading the schema cookie reads the header: a file that is not a database is SQLITE_NOTADB here, which
    // `sql_error` turns into the refusal.
    conn.query_row("PRAGMA schema_version", [], |row| row.get::<_, i64>(0))
        .map_err(|e| sql_error(&location, "read the database", e))?;
    Ok(())
}

/// Whether a database that holds other tables but no `oauthtoken` table may become a store.
#[derive(Clone, Copy, PartialEq, Eq)]
enum OtherTables {
    /// Refused and left untouched: most likely another application's file named by mistake.
    Refuse,
    /// The token table is added beside them (`sqlite:PATH?create=1`).
    Allow,
}

/// SQLite's `-wal` or `-shm` file beside the database at `path`.
fn companion(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// Checks, reading only, that an existing `oauthtoken` is the seed's table: a rowid table with the ten columns;
/// and, unless `other_tables` allows them, that a database without one holds nothing else.
fn check_table(
    conn: &Connection,
    location: &str,
    other_tables: OtherTables,
) -> Result<(), StoreError> {
    let not_a_store = |reason: String| StoreError::NotAStore {
        path: location.to_owned(),
        reason,
    };
    let read = |e| match e {
        rusqlite::Error::SqliteFailure(ref failure, _)
            if failure.code == ErrorCode::NotADatabase =>
        {
            not_a_store("not a SQLite database".to_owned())
        }
        e => sql_error(location, "read the schema", e),
    };
    let kind: Option<String> = conn
        .query_row(
            "SELECT type FROM sqlite_schema WHERE name = 'oauthtoken' COLLATE NOCASE",
            [],
            |row| row.get(0),
        )
        .optional()
        .map_err(read)?;
    match kind.as_deref() {
        None if other_tables == OtherTables::Allow => return Ok(()),
        None => {
            let mut statement = conn
                .prepare(
                    "SELECT name FROM sqlite_schema WHERE type IN ('table', 'view') \
                     AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
                )
                .map_err(read)?;
            let others = statement
                .query_map([], |row| row.get::<_, String>(0))
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(read)?;
            if others.is_empty() {
                return Ok(());
            }
            return Err(not_a_store(format!(
                "it is another database (it holds {}) with no oauthtoken table, so it was left as it is; \
                 `serve --store sqlite:{location}?create=1` adds the token table to it on purpose",
                others.join(", ")
            )));
        }
        Some("table") => {}
        Some(other) => return Err(not_a_store(format!("oauthtoken is a {other}, not a table"))),
    }
    let mut statement = conn
        .prepare("SELECT name FROM pragma_table_info('oauthtoken')")
        .map_err(read)?;
    let present = statement
        .query_map([], |row| row.get::<_, String>(0))
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(read)?;
    let missing: Vec<&str> = COLUMNS
        .iter()
        .copied()
        .filter(|wanted| !present.iter().any(|name| name.eq_ignore_ascii_case(wanted)))
        .collect();
    if !missing.is_empty() {
        return Err(not_a_store(format!(
            "its oauthtoken table lacks the column(s) {}",
            missing.join(", ")
        )));
    }
    conn.prepare("SELECT rowid FROM oauthtoken LIMIT 0")
        .map_err(|_| not_a_store("its oauthtoken table is a WITHOUT ROWID table".to_owned()))?;
    Ok(())
}

/// Turns a SQLite error into a [`StoreError`], naming a lock held elsewhere plainly.
fn sql_error(location: &str, action: &str, error: rusqlite::Error) -> StoreError {
    let code = error.sqlite_error_code();
    let context = match code {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            format!("{location}: {action}: the database is locked by another connection or process")
        }
        Some(ErrorCode::NotADatabase) => {
            return StoreError::NotAStore {
                path: location.to_owned(),
                reason: "not a SQLite database".to_owned(),
            };
        }
        Some(ErrorCode::ReadOnly | ErrorCode::PermissionDenied) => {
            format!("{location}: {action}: the database is read-only")
        }
        _ => format!("{location}: {action}"),
    };
    StoreError::backend(context, error)
}

fn select_by_id(conn: &Connection, id: &str) -> rusqlite::Result<Option<OAuthToken>> {
    conn.prepare_cached(SELECT_BY_ID)?
        .query_row([id], row_to_token)
        .optional()
}

/// Reads one row of the ten columns. Values another program stored loosely (numbers in text columns, text in
/// `expiry_time`) read as what they say; an `expiry_time` that is not a number reads as `None`.
fn row_to_token(row: &rusqlite::Row<'_>) -> rusqlite::Result<OAuthToken> {
    let text = |index: usize| -> rusqlite::Result<Option<String>> {
        Ok(match row.get_ref(index)? {
            ValueRef::Null => None,
            ValueRef::Integer(n) => Some(n.to_string()),
            ValueRef::Real(x) => Some(x.to_string()),
            ValueRef::Text(bytes) | ValueRef::Blob(bytes) => {
                Some(String::from_utf8_lossy(bytes).into_owned())
            }
        })
    };
    let expiry_time = match row.get_ref(7)? {
        ValueRef::Integer(n) => Some(n),
        ValueRef::Real(x) => parse_expiry_time(&x.to_string()),
        ValueRef::Text(bytes) => std::str::from_utf8(bytes).ok().and_then(parse_expiry_time),
        ValueRef::Null | ValueRef::Blob(_) => None,
    };
    Ok(OAuthToken {
        id: text(0)?,
        user_name: text(1)?,
        client_id: text(2)?,
        client_secret: text(3)?.map(Secret::from),
        refresh_token: text(4)?.map(Secret::from),
        access_token: text(5)?.map(Secret::from),
        grant_token: text(6)?.map(Secret::from),
        expiry_time,
        redirect_url: text(8)?,
        api_domain: text(9)?,
    })
}

fn select_for(key: TokenKey<'_>) -> (&'static str, &str) {
    match key {
        TokenKey::UserName(v) => (SELECT_BY_USER_NAME, v),
        TokenKey::AccessToken(v) => (SELECT_BY_ACCESS_TOKEN, v),
        TokenKey::GrantToken(v) => (SELECT_BY_GRANT_TOKEN, v),
        TokenKey::RefreshToken(v) => (SELECT_BY_REFRESH_TOKEN, v),
    }
}

fn update_for(key: TokenKey<'_>) -> (&'static str, &str) {
    match key {
        TokenKey::UserName(v) => (UPDATE_BY_USER_NAME, v),
        TokenKey::AccessToken(v) => (UPDATE_BY_ACCESS_TOKEN, v),
        TokenKey::GrantToken(v) => (UPDATE_BY_GRANT_TOKEN, v),
        TokenKey::RefreshToken(v) => (UPDATE_BY_REFRESH_TOKEN, v),
    }
}

/// Replaces the row `token`'s key names with `token`'s values (keeping the row's id) and returns that id, or
/// `None` when no row matches. One statement, so atomic on its own.
fn update_matching(conn: &Connection, token: &OAuthToken) -> rusqlite::Result<Option<String>> {
    let Some(key) = token.key() else {
        return Ok(None);
    };
    let (sql, value) = update_for(key);
    update_row(conn, sql, value, token)
}

/// Runs one of the `UPDATE_BY_*` statements: `?1` is `value`, the rest the token's fields.
fn update_row(
    conn: &Connection,
    sql: &str,
    value: &str,
    token: &OAuthToken,
) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached(sql)?
        .query_row(
            params![
                value,
                token.user_name,
                token.client_id,
                exposed(&token.client_secret),
                exposed(&token.refresh_token),
                exposed(&token.access_token),
                exposed(&token.grant_token),
                token.expiry_time,
                token.redirect_url,
                token.api_domain,
            ],
            |row| row.get::<_, String>(0),
        )
        .optional()
}

/// Writes the row that `save_token`'s contract chooses (the user's row, the row the id names, the oldest row
/// the key names) and returns its id, or `None` when there is none. Run inside the insert's transaction.
fn update_chosen_row(conn: &Connection, token: &OAuthToken) -> rusqlite::Result<Option<String>> {
    let user_key = matches!(token.key(), Some(TokenKey::UserName(_)));
    if user_key && let Some(id) = update_matching(conn, token)? {
        return Ok(Some(id));
    }
    if let Some(id) = &token.id
        && let Some(id) = update_row(conn, UPDATE_BY_ID, id, token)?
    {
        return Ok(Some(id));
    }
    if user_key {
        return Ok(None);
    }
    update_matching(conn, token)
}

/// One past the largest numeric id, like the seed's `generate_id`; called inside the insert's transaction.
fn next_id(conn: &Connection) -> rusqlite::Result<String> {
    let mut statement = conn.prepare_cached(SELECT_IDS)?;
    let mut rows = statement.query([])?;
    let mut ids = Vec::new();
    while let Some(row) = rows.next()? {
        if let ValueRef::Text(bytes) = row.get_ref(0)?
            && let Ok(id) = std::str::from_utf8(bytes)
        {
            ids.push(id.to_owned());
        }
    }
    Ok(super::next_id(ids.iter().map(String::as_str)))
}

impl TokenStore for SqliteStore {
    fn find_token(&self, partial: &OAuthToken) -> Result<Option<OAuthToken>, StoreError> {
        let Some(key) = partial.key() else {
            return Ok(None);
        };
        let (sql, value) = select_for(key);
        self.with_connection("find a token", |conn| {
            conn.prepare_cached(sql)?
                .query_row([value], row_to_token)
                .optional()
        })
    }

    fn save_token(&self, token: &mut OAuthToken) -> Result<(), StoreError> {
        if (token.id.is_some() || token.user_name.is_some()) && !token.has_credentials() {
            return Err(StoreError::NothingToSave);
        }
        let id = self.with_connection("save a token", |conn| {
            // The common cases, a known user or a token without id whose key names a row, are one atomic
            // statement. With an id and no user name, the id comes before the key: that needs the transaction.
            let user_key = matches!(token.key(), Some(TokenKey::UserName(_)));
            if (user_key || token.id.is_none())
                && let Some(id) = update_matching(conn, token)?
            {
                return Ok(id);
            }
            // An insert must not race another writer (thread or process) inserting the same user: IMMEDIATE
            // takes the write lock before looking again, so the second writer finds the first one's row.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if let Some(id) = update_chosen_row(&tx, token)? {
                tx.commit()?;
                return Ok(id);
            }
            let explicit_id_is_free = match &token.id {
                Some(id) => tx
                    .prepare_cached(SELECT_ID)?
                    .query_row([id], |_| Ok(()))
                    .optional()?
                    .is_none(),
                None => false,
            };
            let id = match &token.id {
                Some(id) if explicit_id_is_free => id.clone(),
                _ => next_id(&tx)?,
            };
            tx.prepare_cached(INSERT)?.execute(params![
                id,
                token.user_name,
                token.client_id,
                exposed(&token.client_secret),
                exposed(&token.refresh_token),
                exposed(&token.access_token),
                exposed(&token.grant_token),
                token.expiry_time,
                token.redirect_url,
                token.api_domain,
            ])?;
            tx.commit()?;
            Ok(id)
        })?;
        token.id = Some(id);
        Ok(())
    }

    fn delete_token(&self, id: &str) -> Result<(), StoreError> {
        self.with_connection("delete a token", |conn| {
            conn.prepare_cached(DELETE_BY_ID)?.execute([id]).map(drop)
        })
    }

    fn get_tokens(&self) -> Result<Vec<OAuthToken>, StoreError> {
        self.with_connection("list the tokens", |conn| {
            conn.prepare_cached(SELECT_ALL)?
                .query_map([], row_to_token)?
                .collect()
        })
    }

    fn delete_tokens(&self) -> Result<(), StoreError> {
        self.with_connection("delete every token", |conn| {
            conn.prepare_cached(DELETE_ALL)?.execute([]).map(drop)
        })
    }

    fn find_token_by_id(&self, id: &str) -> Result<Option<OAuthToken>, StoreError> {
        self.with_connection("find a token by id", |conn| select_by_id(conn, id))
    }

    /// In WAL mode a read never waits for a writer, so it answers at once when a connection is idle; with no
    /// idle connection, or in the rare moments when SQLite would make even a reader wait (a checkpoint resetting
    /// the log, a crashed writer's log being recovered), it gives way to the blocking path.
    fn find_token_by_id_without_waiting(
        &self,
        id: &str,
    ) -> Option<Result<Option<OAuthToken>, StoreError>> {
        let read = |conn: &Connection| {
            conn.busy_timeout(Duration::ZERO)?;
            let found = select_by_id(conn, id);
            conn.busy_timeout(self.busy_timeout)?;
            found
        };
        let result = match &self.connections {
            Connections::Pool(pool) => read(&*pool.try_get()?),
            Connections::Single(conn) => read(&*super::try_lock(conn)?),
        };
        match result {
            Err(error)
                if matches!(
                    error.sqlite_error_code(),
                    Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
                ) =>
            {
                None
            }
            result => Some(result.map_err(|e| sql_error(&self.location, "find a token by id", e))),
        }
    }

    /// One conditional `UPDATE`: atomic across threads and processes.
    fn compare_and_set_access_token(
        &self,
        id: &str,
        expected_access_token: Option<&str>,
        access_token: &str,
        expiry_time: i64,
    ) -> Result<bool, StoreError> {
        self.with_connection("update an access token", |conn| {
            let changed = conn.prepare_cached(COMPARE_AND_SET)?.execute(params![
                id,
                expected_access_token,
                access_token,
                expiry_time
            ])?;
            Ok(changed > 0)
        })
    }

    /// One conditional `DELETE`: atomic across threads and processes.
    fn delete_token_if_unchanged(
        &self,
        id: &str,
        expected_access_token: Option<&str>,
    ) -> Result<bool, StoreError> {
        self.with_connection("delete a token", |conn| {
            let changed = conn
                .prepare_cached(DELETE_IF_UNCHANGED)?
                .execute(params![id, expected_access_token])?;
            Ok(changed > 0)
        })
    }

    /// A lease row in `portal_refresh_leases`, taken or renewed by one `INSERT … ON CONFLICT DO UPDATE`.
    fn try_acquire_refresh_lease(
        &self,
        token_id: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let ttl = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2);
        self.with_connection("take a refresh lease", |conn| {
            conn.prepare_cached(ACQUIRE_LEASE)?
                .query_row(params![token_id, holder, super::now_millis(), ttl], |_| {
                    Ok(())
                })
                .optional()
                .map(|taken| taken.is_some())
        })
    }

    fn release_refresh_lease(&self, token_id: &str, holder: &str) -> Result<(), StoreError> {
        self.with_connection("release a refresh lease", |conn| {
            conn.prepare_cached(RELEASE_LEASE)?
                .execute(params![token_id, holder])
                .map(drop)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::conformance::sample_token;

    fn store_with_alice(store: &SqliteStore) -> OAuthToken {
        let mut alice = sample_token("alice@zylker.com");
        store.save_token(&mut alice).expect("save");
        alice
    }

    #[test]
    fn a_read_without_waiting_gives_way_when_every_pooled_connection_is_busy() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A long busy timeout: were the fast path to wait for a connection, this test would hang for it.
        let store = SqliteStore::open_with_busy_timeout(
            dir.path().join("tokens.db"),
            Duration::from_secs(600),
        )
        .expect("open");
        let alice = store_with_alice(&store);
        let Connections::Pool(pool) = &store.connections else {
            panic!("a file store has a pool");
        };
        let taken: Vec<_> = (0..POOL_SIZE)
            .map(|_| pool.get().expect("connection"))
            .collect();
        assert!(store.find_token_by_id_without_waiting("1").is_none());
        drop(taken);
        let answer = store
            .find_token_by_id_without_waiting("1")
            .expect("answers");
        assert_eq!(answer.expect("read"), Some(alice));
    }

    #[test]
    fn a_read_without_waiting_gives_way_while_the_memory_connection_is_in_use() {
        let store = SqliteStore::in_memory().expect("memory");
        let alice = store_with_alice(&store);
        let Connections::Single(conn) = &store.connections else {
            panic!("a memory store has one connection");
        };
        let held = lock(conn);
        assert!(store.find_token_by_id_without_waiting("1").is_none());
        drop(held);
        let answer = store
            .find_token_by_id_without_waiting("1")
            .expect("answers");
        assert_eq!(answer.expect("read"), Some(alice));
    }

    #[test]
    fn a_read_without_waiting_leaves_the_connections_busy_timeout_as_configured() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open_with_busy_timeout(
            dir.path().join("tokens.db"),
            Duration::from_millis(1234),
        )
        .expect("open");
        store_with_alice(&store);
        store
            .find_token_by_id_without_waiting("1")
            .expect("answers")
            .expect("read");
        let Connections::Pool(pool) = &store.connections else {
            panic!("a file store has a pool");
        };
        let conn = pool.get().expect("connection");
        let timeout: i64 = conn
            .query_row("PRAGMA busy_timeout", [], |row| row.get(0))
            .expect("busy_timeout");
        assert_eq!(timeout, 1234);
    }
}
