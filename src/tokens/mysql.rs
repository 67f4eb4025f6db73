//! `MySqlStore`: the Zoho SDK `DBStore`'s `oauthtoken` table in MySQL or MariaDB, shared with the SDKs.

use std::time::Duration;

use mysql::consts::CapabilityFlags;
use mysql::prelude::Queryable;
use mysql::{
    IsolationLevel, OptsBuilder, Pool, PoolConstraints, PoolOpts, PooledConn, Transaction, TxOpts,
    Value,
};

use super::sign_ins::{CONSUMED_LOGINS_TABLE, Purged, SIGN_INS_TABLE, SignInRecord, SignInStore};
use super::spec::DatabaseSpec;
use super::sql::{
    COLUMNS, KEY_COLUMNS, ORDER_TABLE, columns_of, key_column, read_on_runtime, reconnect_attempts,
    token_from,
};
use super::{OAuthToken, REFRESH_LEASE_TABLE, StoreError, StoreFuture, TokenKey, TokenStore};
use thread_local::ThreadLocal;

/// The most connections a store opens (each portal process has its own pool).
const POOL_SIZE: usize = 8;

/// How long opening a connection, or waiting for a free pooled one, may take before the store answers with an
/// error (the portal then shows its "store unavailable" page).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one exchange with the server may take: a server that stops answering fails the operation instead
/// of holding a thread for ever.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// How long an insert waits for another process's insert to finish (they take turns under `GET_LOCK`).
const INSERT_LOCK_TIMEOUT_SECS: u32 = 10;

/// Server error codes that mean the connection is gone: shutdown in progress, connection killed, server gone
/// away, connection lost, disconnected for inactivity.
const CONNECTION_LOST_CODES: [u16; 5] = [1053, 1927, 2006, 2013, 4031];

/// Tokens in the Zoho SDK `DBStore`'s table in a MySQL (8) or MariaDB (10.6+) database.
///
/// The table (`oauthtoken`, or the spec's `?table=NAME`) is created with Zoho's documented DDL when absent
/// (ten columns, `id varchar(10)` the primary key, `user_name varchar(255) NOT NULL`, in `utf8mb4`), and an
/// existing one, such as the one the SDK created, is used as it is: the SDK and the portal read, refresh and
/// delete each other's rows. Since `user_name` cannot be NULL, a token without a user name is stored with
/// `''`, which reads back as none.
///
/// Values match exactly, byte for byte, whatever the table's collation (a case-insensitive one would make
/// `Alice` find `alice`). Compare-and-set and delete-if-unchanged are single conditional statements; a save
/// that is not the update of a known row is one transaction, and these take turns under a `GET_LOCK` named
/// after the table, so that two processes never number two rows alike nor insert one user twice. Beside the SDK's table the store keeps `portal_token_order` and
/// `portal_refresh_leases`, and never changes the SDK's. Connections the server dropped (a restart, `KILL`)
/// are replaced on the next use.
///
/// The read every page makes ([`TokenStore::find_token_by_id_async`]) does not go through the pool: each async
/// worker thread reads through a small asynchronous pool of its own (see [`AsyncReads`]).
pub struct MySqlStore {
    pool: Pool,
    reads: AsyncReads,
    sql: Sql,
    /// The spec with its password masked: what errors say.
    location: String,
}

impl std::fmt::Debug for MySqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MySqlStore")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

/// `column = ?` exactly: the first test can use an index under any collation, the second compares the bytes
/// (in `utf8mb4`, whatever the column's character set), so neither case nor trailing spaces are ignored.
/// Takes the value twice.
fn exact(column: &str) -> String {
    format!("{column} = ? AND CAST(CONVERT({column} USING utf8mb4) AS BINARY) = CAST(? AS BINARY)")
}

/// `column <=> ?` exactly (NULL matches NULL), byte for byte. Takes the value once.
fn exact_or_both_null(column: &str) -> String {
    format!("CAST(CONVERT({column} USING utf8mb4) AS BINARY) <=> CAST(? AS BINARY)")
}

/// Every statement of the store, written once for its table (a checked identifier).
struct Sql {
    select_two_by: [String; 4],
    select_by: [String; 4],
    select_two_ids_by: [String; 4],
    select_id_by: [String; 4],
    update_by_id_and: [String; 4],
    update_by_id: String,
    select_by_id: String,
    select_all: String,
    select_ids: String,
    get_insert_lock: String,
    release_insert_lock: String,
    insert: String,
    remember_order: String,
    delete_by_id: String,
    delete_all: String,
    forget_all_order: String,
    compare_and_set: String,
    delete_if_unchanged: String,
    renew_or_take_over_lease: String,
    take_free_lease: String,
    release_lease: String,
}

impl Sql {
    fn new(table: &str) -> Self {
        let t = format!("`{table}`");
        let qualified: Vec<String> = COLUMNS.iter().map(|c| format!("t.{c}")).collect();
        let qualified = qualified.join(", ");
        let columns = COLUMNS.join(", ");
        // The order table's columns are binary strings, so the join compares bytes, whatever the collation
        // of the SDK's table (two different collations could not be compared at all).
        let ordered = format!(
            "FROM {t} t LEFT JOIN {ORDER_TABLE} o ON o.token_table = '{table}' AND o.token_id = t.id"
        );
        // NULL (a row inserted by someone else) sorts first in MySQL's ascending order.
        let oldest = "ORDER BY o.seq, t.id";
        // Ordering by the order table makes MySQL build a temporary table for each query; almost always one row
        // matches, so the stores first ask without ordering, and order only when two rows come back.
        let select_two_by = KEY_COLUMNS.map(|key| {
            format!(
                "SELECT {columns} FROM {t} t WHERE {} LIMIT 2",
                exact(&format!("t.{key}"))
            )
        });
        let select_two_ids_by = KEY_COLUMNS.map(|key| {
            format!(
                "SELECT t.id FROM {t} t WHERE {} LIMIT 2",
                exact(&format!("t.{key}"))
            )
        });
        let select_by = KEY_COLUMNS.map(|key| {
            format!(
                "SELECT {qualified} {ordered} WHERE {} {oldest} LIMIT 1",
                exact(&format!("t.{key}"))
            )
        });
        let select_id_by = KEY_COLUMNS.map(|key| {
            format!(
                "SELECT t.id {ordered} WHERE {} {oldest} LIMIT 1",
                exact(&format!("t.{key}"))
            )
        });
        // MySQL cannot read the table it updates in a subquery, so the row is found first and the update
        // checks again that it still matches the key.
        let update_by_id_and = KEY_COLUMNS.map(|key| {
            format!(
                "UPDATE {t} t SET t.user_name = ?, t.client_id = ?, t.client_secret = ?, t.refresh_token = ?, \
                 t.access_token = ?, t.grant_token = ?, t.expiry_time = ?, t.redirect_url = ?, t.api_domain = ? \
                 WHERE t.id = ? AND {}",
                exact(&format!("t.{key}"))
            )
        });
        let placeholders = "?, ?, ?, ?, ?, ?, ?, ?, ?, ?";
        // A lock name is at most 64 characters: a digest of the database and table names keeps it short.
        let lock_name = format!("CONCAT('zylker-portal:', SHA1(CONCAT(DATABASE(), '.{table}')))");
        Sql {
            select_two_by,
            select_by,
            select_two_ids_by,
            select_id_by,
            update_by_id_and,
            // By id, the row is taken over only when the token names no user (the first `?` is true) or the
            // row holds none: a row that holds another user's name is never given to a second user.
            update_by_id: format!(
                "UPDATE {t} t SET t.user_name = ?, t.client_id = ?, t.client_secret = ?, t.refresh_token = ?, \
                 t.access_token = ?, t.grant_token = ?, t.expiry_time = ?, t.redirect_url = ?, t.api_domain = ? \
                 WHERE {} AND (? OR t.user_name = '' OR t.user_name IS NULL)",
                exact("t.id")
            ),
            select_by_id: format!("SELECT {columns} FROM {t} t WHERE {}", exact("t.id")),
            select_all: format!("SELECT {qualified} {ordered} {oldest}"),
            select_ids: format!("SELECT id FROM {t} WHERE id REGEXP '^[0-9]+$'"),
            get_insert_lock: format!("SELECT GET_LOCK({lock_name}, {INSERT_LOCK_TIMEOUT_SECS})"),
            release_insert_lock: format!("SELECT RELEASE_LOCK({lock_name})"),
            // Only ever run after the transaction found no row to write, so a new row never replaces one.
            insert: format!("INSERT INTO {t} ({columns}) VALUES ({placeholders})"),
            // A row deleted by someone else (the SDK) leaves its entry behind: REPLACE gives a new row under
            // its id a new, larger `seq`, since it is the newest row.
            remember_order: format!(
                "REPLACE INTO {ORDER_TABLE} (token_table, token_id) VALUES ('{table}', ?)"
            ),
            delete_by_id: format!("DELETE t, o {ordered} WHERE {}", exact("t.id")),
            delete_all: format!("DELETE FROM {t}"),
            forget_all_order: format!("DELETE FROM {ORDER_TABLE} WHERE token_table = '{table}'"),
            compare_and_set: format!(
                "UPDATE {t} t SET t.access_token = ?, t.expiry_time = ? WHERE {} AND {}",
                exact("t.id"),
                exact_or_both_null("t.access_token")
            ),
            delete_if_unchanged: format!(
                "DELETE t, o {ordered} WHERE {} AND {}",
                exact("t.id"),
                exact_or_both_null("t.access_token")
            ),
            // The lease's columns are binary strings: exact comparisons. UTC from the database's clock decides
            // expiry, so portals on machines with different clocks (or time zones) agree.
            renew_or_take_over_lease: format!(
                "UPDATE {REFRESH_LEASE_TABLE} SET holder = ?, expires_at = UTC_TIMESTAMP(3) + INTERVAL ? MICROSECOND \
                 WHERE token_table = '{table}' AND token_id = ? AND (holder = ? OR expires_at <= UTC_TIMESTAMP(3))"
            ),
            take_free_lease: format!(
                "INSERT INTO {REFRESH_LEASE_TABLE} (token_table, token_id, holder, expires_at) \
                 VALUES ('{table}', ?, ?, UTC_TIMESTAMP(3) + INTERVAL ? MICROSECOND)"
            ),
            release_lease: format!(
                "DELETE FROM {REFRESH_LEASE_TABLE} WHERE token_table = '{table}' AND token_id = ? AND holder = ?"
            ),
        }
    }
}

/// Why an operation failed: the connection went away (try again on another), or anything else.
fn connection_lost(error: &mysql::Error) -> bool {
    match error {
        mysql::Error::IoError(_) | mysql::Error::CodecError(_) => true,
        mysql::Error::DriverError(mysql::DriverError::PacketOutOfSync) => true,
        mysql::Error::MySqlError(server) => CONNECTION_LOST_CODES.contains(&server.code),
        _ => false,
    }
}

/// InnoDB chose this statement as a deadlock's victim and rolled it back (its transaction with it): running
/// the operation again is what the server asks for. Concurrent lease takers (an `UPDATE` and an `INSERT` of
/// the same key) meet this now and then.
fn is_deadlock(error: &mysql::Error) -> bool {
    matches!(error, mysql::Error::MySqlError(server) if server.code == 1213)
}

fn is_duplicate_key(error: &mysql::Error) -> bool {
    matches!(error, mysql::Error::MySqlError(server) if server.code == 1062)
}

/// The ten values as statement parameters.
fn values_of(token: &OAuthToken) -> [Value; 10] {
    columns_of(token).map(Value::from)
}

fn row_to_token(row: mysql::Row) -> Result<OAuthToken, mysql::Error> {
    token_of_row(row).map_err(|error| mysql::Error::FromValueError(error.0))
}

/// A row of the ten columns as a token (the synchronous and the asynchronous driver share the row type).
fn token_of_row(mut row: mysql::Row) -> Result<OAuthToken, mysql::FromValueError> {
    let mut columns: [Option<String>; 10] = Default::default();
    for (index, column) in columns.iter_mut().enumerate() {
        *column = match row.take_opt::<Option<String>, _>(index) {
            Some(value) => value?,
            None => None,
        };
    }
    Ok(token_from(columns))
}

/// The asynchronous reads of one store: a pool per thread that reads, made on first use on that thread's
/// runtime (whose tasks drive its connections), reconnecting by itself when the server dropped a connection.
///
/// An actix-web worker is one thread running one single-threaded runtime, so a read is a query written to the
/// socket and an answer the worker's event loop picks up, with no hand-off to another thread. MySQL answers one
/// statement at a time on a connection, so each worker's pool holds up to [`READ_CONNECTIONS`] connections.
struct AsyncReads {
    opts: mysql_async::Opts,
    select_by_id: String,
    location: String,
    pools: ThreadLocal<mysql_async::Pool>,
}

/// The most connections each worker's asynchronous pool opens.
const READ_CONNECTIONS: usize = 4;

impl AsyncReads {
    fn new(spec: &DatabaseSpec, select_by_id: String, location: String) -> Self {
        let constraints =
            mysql_async::PoolConstraints::new(0, READ_CONNECTIONS).unwrap_or_default();
        let opts = mysql_async::OptsBuilder::default()
            .ip_or_hostname(spec.host.clone())
            .tcp_port(spec.port)
            .user(Some(spec.user.clone()))
            .pass(spec.password().map(str::to_owned))
            .db_name(Some(spec.database.clone()))
            .prefer_socket(false)
            .stmt_cache_size(8)
            .init(vec!["SET NAMES utf8mb4"])
            .pool_opts(
                mysql_async::PoolOpts::default()
                    .with_constraints(constraints)
                    // Without it the pool keeps no idle connection above the lower bound (0): every read
                    // would open one.
                    .with_inactive_connection_ttl(Duration::from_secs(60))
                    .with_reset_connection(false),
            );
        AsyncReads {
            opts: opts.into(),
            select_by_id,
            location,
            pools: ThreadLocal::new(),
        }
    }

    /// This thread's pool, made on first use (on the caller's runtime, whose tasks then drive it).
    fn pool(&self) -> &mysql_async::Pool {
        self.pools
            .get_or(|| mysql_async::Pool::new(self.opts.clone()))
    }

    /// `find_token_by_id` through this thread's pool, tried again on another connection when the server had
    /// dropped the one it used (see [`reconnect_attempts`]). [`read_on_runtime`] bounds it in time.
    async fn find_token_by_id(&self, id: &str) -> Result<Option<OAuthToken>, StoreError> {
        use mysql_async::prelude::Queryable as _;
        let context = || format!("{}: find a token by id", self.location);
        let mut attempts_left = reconnect_attempts(READ_CONNECTIONS as u32);
        loop {
            attempts_left -= 1;
            let found = async {
                let mut conn = self.pool().get_conn().await?;
                conn.exec_first::<mysql::Row, _, _>(&self.select_by_id, (id, id))
                    .await
            }
            .await;
            match found {
                Ok(row) => {
                    return row
                        .map(token_of_row)
                        .transpose()
                        .map_err(|error| StoreError::backend(context(), error));
                }
                Err(error) if async_connection_lost(&error) && attempts_left > 0 => {}
                Err(error) => return Err(StoreError::backend(context(), error)),
            }
        }
    }
}

/// [`connection_lost`] for the asynchronous driver's errors.
fn async_connection_lost(error: &mysql_async::Error) -> bool {
    match error {
        mysql_async::Error::Io(_) | mysql_async::Error::Driver(_) => true,
        mysql_async::Error::Server(server) => CONNECTION_LOST_CODES.contains(&server.code),
        _ => false,
    }
}

impl MySqlStore {
    /// Connects to the database a `mysql://` spec names and creates the token table with Zoho's DDL when it
    /// is absent (with the store's own two tables).
    pub fn open(spec: &DatabaseSpec) -> Result<Self, StoreError> {
        Self::connect(spec, true)
    }

    /// [`open`](Self::open) a store whose token table is already there: without it,
    /// [`StoreError::MissingTable`], and the token table is not created.
    pub fn open_existing(spec: &DatabaseSpec) -> Result<Self, StoreError> {
        Self::connect(spec, false)
    }

    fn connect(spec: &DatabaseSpec, create: bool) -> Result<Self, StoreError> {
        let location = super::StoreSpec::MySql(Box::new(spec.clone())).to_string();
        let constraints = PoolConstraints::new(1, POOL_SIZE).unwrap_or_default();
        let pool_opts = PoolOpts::default()
            .with_constraints(constraints)
            // A dead connection is found by using it, and the operation tried again on another (see `run`):
            // a ping before every use, or a reset after it, would cost a round trip each time.
            .with_check_health(false)
            .with_reset_connection(false);
        let opts = OptsBuilder::new()
            .ip_or_hostname(Some(spec.host.clone()))
            .tcp_port(spec.port)
            .user(Some(spec.user.clone()))
            .pass(spec.password().map(str::to_owned))
            .db_name(Some(spec.database.clone()))
            .prefer_socket(false)
            .tcp_connect_timeout(Some(CONNECT_TIMEOUT))
            .read_timeout(Some(IO_TIMEOUT))
            .write_timeout(Some(IO_TIMEOUT))
            .stmt_cache_size(Some(64))
            // UPDATE answers how many rows matched, not how many it changed: a save that writes the values a
            // row already has, or a compare-and-set to the same token, still found its row.
            .additional_capabilities(CapabilityFlags::CLIENT_FOUND_ROWS)
            // Strict: a value too long for its column is an error, never silently cut.
            .init(vec![
                "SET NAMES utf8mb4",
                "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION'",
            ])
            .pool_opts(pool_opts);
        let pool =
            Pool::new(opts).map_err(|e| StoreError::backend(format!("{location}: connect"), e))?;
        let sql = Sql::new(&spec.table);
        let store = MySqlStore {
            pool,
            reads: AsyncReads::new(spec, sql.select_by_id.clone(), location.clone()),
            sql,
            location,
        };
        store.prepare_schema(&spec.table, create)?;
        Ok(store)
    }

    /// Checks the token table (creating it with Zoho's DDL when absent and `create`) and creates the store's
    /// own tables.
    fn prepare_schema(&self, table: &str, create: bool) -> Result<(), StoreError> {
        let location = &self.location;
        let present: Vec<String> = self.run("read the tables", |conn| {
            conn.exec(
                "SELECT column_name FROM information_schema.columns \
                 WHERE table_schema = DATABASE() AND table_name = ?",
                (table,),
            )
        })?;
        if present.is_empty() {
            if !create {
                return Err(StoreError::MissingTable {
                    location: location.clone(),
                    table: table.to_owned(),
                });
            }
            // Zoho's `DBStore` DDL, column for column; the character set makes every name storable.
            let ddl = format!(
                "CREATE TABLE IF NOT EXISTS `{table}` (id varchar(10) NOT NULL, user_name varchar(255) NOT NULL, \
                 client_id varchar(255), client_secret varchar(255), refresh_token varchar(255), \
                 access_token varchar(255), grant_token varchar(255), expiry_time varchar(20), \
                 redirect_url varchar(255), api_domain varchar(255), primary key (id)) \
                 DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin"
            );
            self.run("create the table", |conn| conn.query_drop(&ddl))?;
        } else {
            let missing: Vec<&str> = COLUMNS
                .iter()
                .copied()
                .filter(|wanted| !present.iter().any(|name| name.eq_ignore_ascii_case(wanted)))
                .collect();
            if !missing.is_empty() {
                return Err(StoreError::NotAStore {
                    path: location.clone(),
                    reason: format!(
                        "its table {table} lacks the column(s) {}",
                        missing.join(", ")
                    ),
                });
            }
        }
        self.run("create the portal's tables", |conn| {
            conn.query_drop(format!(
                "CREATE TABLE IF NOT EXISTS {ORDER_TABLE} (token_table varbinary(64) NOT NULL, \
                 token_id varbinary(255) NOT NULL, seq bigint NOT NULL AUTO_INCREMENT, \
                 PRIMARY KEY (token_table, token_id), UNIQUE KEY (seq))"
            ))?;
            conn.query_drop(format!(
                "CREATE TABLE IF NOT EXISTS {REFRESH_LEASE_TABLE} (token_table varbinary(64) NOT NULL, \
                 token_id varbinary(255) NOT NULL, holder varbinary(255) NOT NULL, expires_at datetime(3) NOT NULL, \
                 PRIMARY KEY (token_table, token_id))"
            ))
        })
    }

    /// Runs `work` on a pooled connection; when the server had dropped that connection, runs it again on
    /// another (see [`reconnect_attempts`]), and when it was a deadlock's victim, runs it again.
    fn run<T>(
        &self,
        action: &str,
        mut work: impl FnMut(&mut PooledConn) -> Result<T, mysql::Error>,
    ) -> Result<T, StoreError> {
        let mut attempts_left = reconnect_attempts(POOL_SIZE as u32);
        loop {
            let mut conn = self.pool.try_get_conn(CONNECT_TIMEOUT).map_err(|e| {
                StoreError::backend(
                    format!("{}: {action}: no connection to the database", self.location),
                    e,
                )
            })?;
            match work(&mut conn) {
                Ok(value) => return Ok(value),
                Err(error) => {
                    let lost = connection_lost(&error);
                    if lost {
                        // Returned to the pool, the connection is reset first; a dead one fails that and is
                        // dropped.
                        conn.reset_connection(true);
                    } else if !is_deadlock(&error) {
                        return Err(StoreError::backend(
                            format!("{}: {action}", self.location),
                            error,
                        ));
                    }
                    attempts_left -= 1;
                    if attempts_left == 0 {
                        let why = if lost {
                            "the database dropped the connection"
                        } else {
                            "deadlocked again and again"
                        };
                        return Err(StoreError::backend(
                            format!("{}: {action}: {why}", self.location),
                            error,
                        ));
                    }
                }
            }
        }
    }

    /// The id of the oldest row `key` names, if any.
    fn id_matching(
        &self,
        conn: &mut impl Queryable,
        key: TokenKey<'_>,
    ) -> Result<Option<String>, mysql::Error> {
        let (index, value) = key_column(key);
        let mut ids: Vec<String> = conn.exec(&self.sql.select_two_ids_by[index], (value, value))?;
        if ids.len() < 2 {
            return Ok(ids.pop());
        }
        conn.exec_first(&self.sql.select_id_by[index], (value, value))
    }

    /// Replaces row `id` with `token`'s values (keeping the id) if it still matches `key`; whether it did.
    fn update_row(
        &self,
        conn: &mut impl Queryable,
        id: &str,
        key: TokenKey<'_>,
        token: &OAuthToken,
    ) -> Result<bool, mysql::Error> {
        let (index, value) = key_column(key);
        let mut params: Vec<Value> = values_of(token).into_iter().skip(1).collect();
        params.extend([Value::from(id), Value::from(value), Value::from(value)]);
        let updated = conn.exec_iter(&self.sql.update_by_id_and[index], params)?;
        Ok(updated.affected_rows() > 0)
    }

    /// Replaces the row `token` names with `token`'s values and returns its id, or `None` when no row matches.
    fn update_matching(
        &self,
        conn: &mut impl Queryable,
        token: &OAuthToken,
    ) -> Result<Option<String>, mysql::Error> {
        let Some(key) = token.key() else {
            return Ok(None);
        };
        // A token that brings its user's row id (as every save after the first does) updates in one statement:
        // a user has one row, so the row with that id and that user is the row the name names.
        if let (TokenKey::UserName(_), Some(id)) = (key, &token.id)
            && self.update_row(conn, id, key, token)?
        {
            return Ok(Some(id.clone()));
        }
        // Otherwise find the row, then update it if it still matches; a row changed in between is looked for again.
        for _ in 0..3 {
            let Some(id) = self.id_matching(conn, key)? else {
                return Ok(None);
            };
            if self.update_row(conn, &id, key, token)? {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    /// Writes the row that `save_token`'s contract chooses (the user's row, the row the id names, the oldest
    /// row the key names) and returns its id, or `None` when there is none. Run inside the save's transaction.
    fn update_chosen_row(
        &self,
        tx: &mut Transaction<'_>,
        token: &OAuthToken,
    ) -> Result<Option<String>, mysql::Error> {
        let user_key = matches!(token.key(), Some(TokenKey::UserName(_)));
        if user_key && let Some(id) = self.update_matching(tx, token)? {
            return Ok(Some(id));
        }
        if let Some(id) = &token.id {
            let mut params: Vec<Value> = values_of(token).into_iter().skip(1).collect();
            params.extend([
                Value::from(id),
                Value::from(id),
                Value::from(token.user_name().is_none()),
            ]);
            if tx
                .exec_iter(&self.sql.update_by_id, params)?
                .affected_rows()
                > 0
            {
                return Ok(Some(id.clone()));
            }
        }
        if user_key {
            return Ok(None);
        }
        self.update_matching(tx, token)
    }

    /// Saves `token` in one transaction (the row the contract chooses, else a new row), under the insert lock,
    /// and returns its id.
    fn save_locked(
        &self,
        conn: &mut PooledConn,
        token: &OAuthToken,
    ) -> Result<String, mysql::Error> {
        let got: Option<Option<i64>> = conn.exec_first(&self.sql.get_insert_lock, ())?;
        if got.flatten() != Some(1) {
            return Err(mysql::Error::DriverError(mysql::DriverError::Timeout));
        }
        let saved = self.save_in_transactions(conn, token);
        let released = conn.exec_drop(&self.sql.release_insert_lock, ());
        let id = saved?;
        released?;
        Ok(id)
    }

    fn save_in_transactions(
        &self,
        conn: &mut PooledConn,
        token: &OAuthToken,
    ) -> Result<String, mysql::Error> {
        // Each statement reads what is committed when it runs (not a snapshot from the first read), so a row
        // that another process committed before this one got the lock is seen.
        let options = TxOpts::default().set_isolation_level(Some(IsolationLevel::ReadCommitted));
        loop {
            let mut tx = conn.start_transaction(options)?;
            // Another process may have inserted this user while this one waited for the lock.
            let id = match self.update_chosen_row(&mut tx, token)? {
                Some(id) => Some(id),
                None => self.insert(&mut tx, token)?,
            };
            match id {
                Some(id) => {
                    tx.commit()?;
                    return Ok(id);
                }
                // A writer that does not take the lock (the SDK) took that id meanwhile: look again.
                None => tx.rollback()?,
            }
        }
    }

    /// Inserts `token` as a new row, under `token.id` when no row has it, else under the next free number, and
    /// returns its id; `None` when that id was taken meanwhile.
    fn insert(
        &self,
        tx: &mut Transaction<'_>,
        token: &OAuthToken,
    ) -> Result<Option<String>, mysql::Error> {
        let mut values = columns_of(token);
        let explicit_id_is_free = match &token.id {
            Some(id) => {
                let found: Option<mysql::Row> = tx.exec_first(&self.sql.select_by_id, (id, id))?;
                found.is_none()
            }
            None => false,
        };
        if !explicit_id_is_free {
            let ids: Vec<String> = tx.exec(&self.sql.select_ids, ())?;
            values[0] = Some(super::next_id(ids.iter().map(String::as_str)));
        }
        let id = values[0].clone();
        match tx.exec_drop(&self.sql.insert, values.map(Value::from).to_vec()) {
            Ok(()) => {}
            Err(error) if is_duplicate_key(&error) => return Ok(None),
            Err(error) => return Err(error),
        }
        tx.exec_drop(&self.sql.remember_order, (id.clone(),))?;
        Ok(id)
    }
}

impl TokenStore for MySqlStore {
    fn find_token(&self, partial: &OAuthToken) -> Result<Option<OAuthToken>, StoreError> {
        let Some(key) = partial.key() else {
            return Ok(None);
        };
        let (index, value) = key_column(key);
        self.run("find a token", |conn| {
            let mut rows: Vec<mysql::Row> =
                conn.exec(&self.sql.select_two_by[index], (value, value))?;
            let row = if rows.len() < 2 {
                rows.pop()
            } else {
                conn.exec_first(&self.sql.select_by[index], (value, value))?
            };
            row.map(row_to_token).transpose()
        })
    }

    fn save_token(&self, token: &mut OAuthToken) -> Result<(), StoreError> {
        if (token.id.is_some() || token.user_name.is_some()) && !token.has_credentials() {
            return Err(StoreError::NothingToSave);
        }
        let id = self.run("save a token", |conn| {
            // The common cases, a known user or a token without id whose key names a row, need no lock. With
            // an id and no user name, the id comes before the key: that needs the transaction.
            let user_key = matches!(token.key(), Some(TokenKey::UserName(_)));
            if (user_key || token.id.is_none())
                && let Some(id) = self.update_matching(conn, token)?
            {
                return Ok(id);
            }
            self.save_locked(conn, token)
        })?;
        token.id = Some(id);
        Ok(())
    }

    fn delete_token(&self, id: &str) -> Result<(), StoreError> {
        self.run("delete a token", |conn| {
            conn.exec_drop(&self.sql.delete_by_id, (id, id))
        })
    }

    fn get_tokens(&self) -> Result<Vec<OAuthToken>, StoreError> {
        self.run("list the tokens", |conn| {
            let rows: Vec<mysql::Row> = conn.exec(&self.sql.select_all, ())?;
            rows.into_iter().map(row_to_token).collect()
        })
    }

    fn delete_tokens(&self) -> Result<(), StoreError> {
        self.run("delete every token", |conn| {
            let mut tx = conn.start_transaction(TxOpts::default())?;
            tx.exec_drop(&self.sql.delete_all, ())?;
            tx.exec_drop(&self.sql.forget_all_order, ())?;
            tx.commit()
        })
    }

    fn find_token_by_id(&self, id: &str) -> Result<Option<OAuthToken>, StoreError> {
        self.run("find a token by id", |conn| {
            conn.exec_first(&self.sql.select_by_id, (id, id))?
                .map(row_to_token)
                .transpose()
        })
    }

    /// On the caller's runtime, through this thread's asynchronous pool (see [`AsyncReads`]); `None` off any
    /// runtime.
    fn find_token_by_id_async<'a>(
        &'a self,
        id: &'a str,
    ) -> Option<StoreFuture<'a, Option<OAuthToken>>> {
        read_on_runtime(
            || format!("{}: find a token by id", self.location),
            CONNECT_TIMEOUT,
            self.reads.find_token_by_id(id),
        )
    }

    /// One conditional `UPDATE`: atomic across every connection and process.
    fn compare_and_set_access_token(
        &self,
        id: &str,
        expected_access_token: Option<&str>,
        access_token: &str,
        expiry_time: i64,
    ) -> Result<bool, StoreError> {
        let expiry_time = expiry_time.to_string();
        self.run("update an access token", |conn| {
            conn.exec_drop(
                &self.sql.compare_and_set,
                (access_token, &expiry_time, id, id, expected_access_token),
            )?;
            Ok(conn.affected_rows() > 0)
        })
    }

    /// One conditional `DELETE` (of the row and its order entry, in the same statement).
    fn delete_token_if_unchanged(
        &self,
        id: &str,
        expected_access_token: Option<&str>,
    ) -> Result<bool, StoreError> {
        self.run("delete a token", |conn| {
            conn.exec_drop(
                &self.sql.delete_if_unchanged,
                (id, id, expected_access_token),
            )?;
            Ok(conn.affected_rows() > 0)
        })
    }

    /// A lease row in `portal_refresh_leases`: renewed or taken over (when lapsed) by one conditional
    /// `UPDATE`, else taken by an `INSERT` that fails on the primary key while someone else holds it.
    fn try_acquire_refresh_lease(
        &self,
        token_id: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let ttl = u64::try_from(ttl.as_micros()).unwrap_or(u64::MAX / 2);
        self.run("take a refresh lease", |conn| {
            conn.exec_drop(
                &self.sql.renew_or_take_over_lease,
                (holder, ttl, token_id, holder),
            )?;
            if conn.affected_rows() > 0 {
                return Ok(true);
            }
            match conn.exec_drop(&self.sql.take_free_lease, (token_id, holder, ttl)) {
                Ok(()) => Ok(true),
                Err(error) if is_duplicate_key(&error) => Ok(false),
                Err(error) => Err(error),
            }
        })
    }

    fn release_refresh_lease(&self, token_id: &str, holder: &str) -> Result<(), StoreError> {
        self.run("release a refresh lease", |conn| {
            conn.exec_drop(&self.sql.release_lease, (token_id, holder))
        })
    }
}

impl MySqlStore {
    /// Creates the portal's sign-in tables beside the tokens when absent, and adds the owner's columns to a
    /// sign-in table of an earlier version (the SDK's table is never changed; the pending-login table of an
    /// earlier version is left as it is).
    pub fn ensure_sign_in_tables(&self) -> Result<(), StoreError> {
        self.run("create the sign-in tables", |conn| {
            conn.query_drop(format!(
                "CREATE TABLE IF NOT EXISTS {SIGN_INS_TABLE} (
                     id VARCHAR(128) NOT NULL PRIMARY KEY, expires_at BIGINT NOT NULL,
                     user_name VARCHAR(255) NULL, token_id VARCHAR(255) NULL,
                     INDEX (expires_at), INDEX (user_name))"
            ))?;
            conn.query_drop(format!(
                "CREATE TABLE IF NOT EXISTS {CONSUMED_LOGINS_TABLE} (
                     id VARCHAR(128) NOT NULL PRIMARY KEY, expires_at BIGINT NOT NULL, INDEX (expires_at))"
            ))?;
            if !has_owner_columns(conn)? {
                // MySQL 8 has no `ADD COLUMN IF NOT EXISTS`: a portal starting at the same moment may have
                // added them first, which fails here with a duplicate column and is as good.
                let added = conn.query_drop(format!(
                    "ALTER TABLE {SIGN_INS_TABLE} ADD COLUMN user_name VARCHAR(255) NULL, \
                     ADD COLUMN token_id VARCHAR(255) NULL, ADD INDEX (user_name)"
                ));
                if let Err(error) = added
                    && !has_owner_columns(conn)?
                {
                    return Err(error);
                }
            }
            Ok(())
        })
    }
}

impl MySqlStore {
    /// Whether the sign-in table is there with the columns that tie a sign-in to its token (read only).
    pub fn has_sign_in_owner_columns(&self) -> Result<bool, StoreError> {
        self.run("look for the sign-in table", has_owner_columns)
    }
}

/// Whether the sign-in table has the columns that tie a sign-in to its token.
fn has_owner_columns(conn: &mut PooledConn) -> Result<bool, mysql::Error> {
    let count: Option<u64> = conn.exec_first(
        "SELECT COUNT(*) FROM information_schema.columns \
         WHERE table_schema = DATABASE() AND table_name = ? AND column_name IN ('user_name', 'token_id')",
        (SIGN_INS_TABLE,),
    )?;
    Ok(count == Some(2))
}

impl SignInStore for MySqlStore {
    fn record_sign_in(&self, record: &SignInRecord) -> Result<(), StoreError> {
        self.run("record a sign-in", |conn| {
            conn.exec_drop(
                format!(
                    "INSERT INTO {SIGN_INS_TABLE} (id, expires_at, user_name, token_id) VALUES (?, ?, ?, ?) \
                     ON DUPLICATE KEY UPDATE expires_at = VALUES(expires_at), \
                     user_name = VALUES(user_name), token_id = VALUES(token_id)"
                ),
                (
                    &record.key,
                    record.expires_at,
                    &record.user_name,
                    &record.token_id,
                ),
            )
        })
    }

    fn sign_in_is_live(
        &self,
        key: &str,
        user_name: &str,
        token_id: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.run("read a sign-in", |conn| {
            // BINARY: the table's collation would take `Priya@…` for `priya@…`; a token's owner is exact.
            conn.exec_first::<u8, _, _>(
                format!(
                    "SELECT 1 FROM {SIGN_INS_TABLE} WHERE id = ? AND expires_at > ? \
                     AND user_name = BINARY ? AND token_id = BINARY ?"
                ),
                (key, now, user_name, token_id),
            )
            .map(|row| row.is_some())
        })
    }

    fn end_sign_in(&self, key: &str) -> Result<(), StoreError> {
        self.run("end a sign-in", |conn| {
            conn.exec_drop(format!("DELETE FROM {SIGN_INS_TABLE} WHERE id = ?"), (key,))
        })
    }

    fn end_sign_ins_of(&self, user_name: &str, token_id: Option<&str>) -> Result<u64, StoreError> {
        self.run("end the sign-ins of a token", |conn| {
            conn.exec_drop(
                format!(
                    "DELETE FROM {SIGN_INS_TABLE} \
                     WHERE user_name = BINARY ? AND (? IS NULL OR token_id = BINARY ?)"
                ),
                (user_name, token_id, token_id),
            )?;
            Ok(conn.affected_rows())
        })
    }

    fn live_sign_ins(&self, now: i64) -> Result<Vec<SignInRecord>, StoreError> {
        self.run("list the live sign-ins", |conn| {
            conn.exec_map(
                format!(
                    "SELECT id, user_name, token_id, expires_at FROM {SIGN_INS_TABLE} \
                     WHERE expires_at > ? AND user_name IS NOT NULL AND token_id IS NOT NULL ORDER BY id"
                ),
                (now,),
                |(key, user_name, token_id, expires_at)| SignInRecord {
                    key,
                    user_name,
                    token_id,
                    expires_at,
                },
            )
        })
    }

    fn consume_login(&self, key: &str, expires_at: i64) -> Result<bool, StoreError> {
        // The primary key decides: of two callbacks racing with one state, one inserts, the other is refused.
        self.run("record a used login", |conn| {
            match conn.exec_drop(
                format!("INSERT INTO {CONSUMED_LOGINS_TABLE} (id, expires_at) VALUES (?, ?)"),
                (key, expires_at),
            ) {
                Ok(()) => Ok(true),
                Err(error) if is_duplicate_key(&error) => Ok(false),
                Err(error) => Err(error),
            }
        })
    }

    fn purge(&self, now: i64) -> Result<Purged, StoreError> {
        self.run("purge old sign-in records", |conn| {
            conn.exec_drop(
                format!("DELETE FROM {SIGN_INS_TABLE} WHERE expires_at <= ?"),
                (now,),
            )?;
            let sign_ins = conn.affected_rows();
            conn.exec_drop(
                format!("DELETE FROM {CONSUMED_LOGINS_TABLE} WHERE expires_at <= ?"),
                (now,),
            )?;
            Ok(Purged {
                sign_ins,
                consumed_logins: conn.affected_rows(),
            })
        })
    }
}
