//! `PostgresStore`: the SDK's `oauthtoken` table in PostgreSQL, shared by every portal that reaches the database.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{Client, GenericClient, Row, Statement};
use r2d2_postgres::PostgresConnectionManager;
use thread_local::ThreadLocal;
use tokio::sync::OnceCell;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::sign_ins::{CONSUMED_LOGINS_TABLE, Purged, SIGN_INS_TABLE, SignInRecord, SignInStore};
use super::spec::{DatabaseSpec, SslMode};
use super::sql::{
    COLUMNS, KEY_COLUMNS, ORDER_TABLE, columns_of, key_column, read_on_runtime, reconnect_attempts,
    token_from,
};
use super::{OAuthToken, REFRESH_LEASE_TABLE, StoreError, StoreFuture, TokenKey, TokenStore};

/// The most connections a store's pool opens. Every portal process has its own pool; the server's
/// `max_connections` (100 by default) has to cover all of them, with one more per async worker (see
/// [`AsyncReads`]).
const POOL_SIZE: u32 = 8;

/// How long opening a connection may take, and how long an operation waits for a free pooled connection,
/// before the store answers with an error (the portal then shows its "store unavailable" page).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A restart of the server drops every connection; the kernel tells the client only when it next uses one.
/// Keepalives find connections cut without a word (a firewall, a dead machine) within about a minute.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);

/// Tokens in the SDK's ten-column table in a PostgreSQL database.
///
/// The table (`oauthtoken`, or the spec's `?table=NAME`) is created with the columns and types of Zoho's
/// `DBStore` table when absent; an existing one with those ten columns is used as it is. Beside it the store
/// keeps two tables of its own, never touching the SDK's: `portal_token_order` (in which order the portal
/// inserted rows) and `portal_refresh_leases` (the refresh leases).
///
/// Every operation is one statement, or one transaction, on a pooled connection:
/// compare-and-set and delete-if-unchanged are single conditional statements, and so is the update of a known
/// user's row; any other save is one transaction under a transaction-scoped advisory lock, so that two
/// processes never number two rows alike nor insert one user twice. Connections the server dropped (a restart, `pg_terminate_backend`) are replaced on the next use.
///
/// The read every page makes ([`TokenStore::find_token_by_id_async`]) does not go through the pool: each async
/// worker thread reads through an asynchronous connection of its own (see [`AsyncReads`]).
pub struct PostgresStore {
    /// Always `Some` until the store is dropped (see `Drop`).
    pool: Option<r2d2::Pool<Manager>>,
    reads: AsyncReads,
    /// The spec with its password masked: what errors say.
    location: String,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

/// Every statement of the store, written once per store for its table (a checked identifier).
struct Sql {
    select_by: [String; 4],
    update_by: [String; 4],
    update_by_id: String,
    select_by_id: String,
    select_all: String,
    select_ids: String,
    lock_inserts: String,
    insert: String,
    remember_order: String,
    delete_by_id: String,
    delete_all: String,
    forget_all_order: String,
    compare_and_set: String,
    delete_if_unchanged: String,
    acquire_lease: String,
    release_lease: String,
}

impl Sql {
    fn new(table: &str) -> Self {
        let t = format!("\"{table}\"");
        let qualified: Vec<String> = COLUMNS.iter().map(|c| format!("t.{c}")).collect();
        let qualified = qualified.join(", ");
        let columns = COLUMNS.join(", ");
        // The oldest row first: rows the portal inserted in their order, rows written by others (no order row)
        // before them, by id. Every row for the whole table (a join); the matching rows' order looked up by
        // its key for a lookup (a subquery: the server joins nothing for the rows that do not match).
        let ordered = format!(
            "FROM {t} t LEFT JOIN {ORDER_TABLE} o ON o.token_table = '{table}' AND o.token_id = t.id \
             ORDER BY o.seq NULLS FIRST, t.id"
        );
        let oldest = format!(
            "ORDER BY (SELECT o.seq FROM {ORDER_TABLE} o WHERE o.token_table = '{table}' AND o.token_id = t.id) \
             NULLS FIRST, t.id"
        );
        let select_by = KEY_COLUMNS.map(|key| {
            format!("SELECT {qualified} FROM {t} t WHERE t.{key} = $1 {oldest} LIMIT 1")
        });
        // The row is picked by the subquery, and checked again by the outer condition: when another writer
        // changes it in between, PostgreSQL re-evaluates the outer `WHERE` on the new version.
        let update_by = KEY_COLUMNS.map(|key| {
            format!(
                "UPDATE {t} SET user_name = $2, client_id = $3, client_secret = $4, refresh_token = $5, \
                 access_token = $6, grant_token = $7, expiry_time = $8, redirect_url = $9, api_domain = $10 \
                 WHERE id = (SELECT t.id FROM {t} t WHERE t.{key} = $1 {oldest} LIMIT 1) AND {key} = $1 \
                 RETURNING id"
            )
        });
        let values = "$1, $2, $3, $4, $5, $6, $7, $8, $9, $10";
        Sql {
            select_by,
            update_by,
            // By id, the row is taken over only when the token names no user ($2 is '') or the row holds none:
            // a row that holds another user's name is never given to a second user.
            update_by_id: format!(
                "UPDATE {t} SET user_name = $2, client_id = $3, client_secret = $4, refresh_token = $5, \
                 access_token = $6, grant_token = $7, expiry_time = $8, redirect_url = $9, api_domain = $10 \
                 WHERE id = $1 AND ($2 = '' OR user_name = '' OR user_name IS NULL) RETURNING id"
            ),
            select_by_id: format!("SELECT {columns} FROM {t} WHERE id = $1"),
            select_all: format!("SELECT {qualified} {ordered}"),
            select_ids: format!("SELECT id FROM {t} WHERE id ~ '^[0-9]+$'"),
            lock_inserts: format!(
                "SELECT pg_advisory_xact_lock(hashtext('zylker-portal inserts into {table}'))"
            ),
            // Only ever run after the transaction found no row to write, so a new row never replaces one.
            insert: format!("INSERT INTO {t} ({columns}) VALUES ({values})"),
            // A row deleted by someone else (the SDK) leaves its entry behind: a new row under its id is the
            // newest row, so it takes a new `seq`.
            remember_order: format!(
                "INSERT INTO {ORDER_TABLE} (token_table, token_id) VALUES ('{table}', $1) \
                 ON CONFLICT (token_table, token_id) DO UPDATE SET seq = excluded.seq"
            ),
            delete_by_id: format!(
                "WITH gone AS (DELETE FROM {t} WHERE id = $1 RETURNING id) \
                 DELETE FROM {ORDER_TABLE} WHERE token_table = '{table}' AND token_id IN (SELECT id FROM gone)"
            ),
            delete_all: format!("DELETE FROM {t}"),
            forget_all_order: format!("DELETE FROM {ORDER_TABLE} WHERE token_table = '{table}'"),
            compare_and_set: format!(
                "UPDATE {t} SET access_token = $3, expiry_time = $4 \
                 WHERE id = $1 AND access_token IS NOT DISTINCT FROM $2"
            ),
            delete_if_unchanged: format!(
                "WITH gone AS (DELETE FROM {t} WHERE id = $1 AND access_token IS NOT DISTINCT FROM $2 RETURNING id), \
                 forgotten AS (DELETE FROM {ORDER_TABLE} WHERE token_table = '{table}' AND token_id IN (SELECT id FROM gone)) \
                 SELECT count(*) FROM gone"
            ),
            // The database's clock decides expiry, so portals on machines with different clocks agree.
            acquire_lease: format!(
                "INSERT INTO {REFRESH_LEASE_TABLE} AS lease (token_table, token_id, holder, expires_at) \
                 VALUES ('{table}', $1, $2, clock_timestamp() + $3::bigint * interval '1 millisecond') \
                 ON CONFLICT (token_table, token_id) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
                 WHERE lease.expires_at <= clock_timestamp() OR lease.holder = excluded.holder \
                 RETURNING 1"
            ),
            release_lease: format!(
                "DELETE FROM {REFRESH_LEASE_TABLE} WHERE token_table = '{table}' AND token_id = $1 AND holder = $2"
            ),
        }
    }
}

/// [`Sql`], prepared on one connection.
struct Statements {
    select_by: [Statement; 4],
    update_by: [Statement; 4],
    update_by_id: Statement,
    select_by_id: Statement,
    select_all: Statement,
    select_ids: Statement,
    lock_inserts: Statement,
    insert: Statement,
    remember_order: Statement,
    delete_by_id: Statement,
    delete_all: Statement,
    forget_all_order: Statement,
    compare_and_set: Statement,
    delete_if_unchanged: Statement,
    acquire_lease: Statement,
    release_lease: Statement,
}

impl Statements {
    fn prepare(client: &mut Client, sql: &Sql) -> Result<Self, postgres::Error> {
        let mut prepare_each = |texts: &[String; 4]| -> Result<[Statement; 4], postgres::Error> {
            Ok([
                client.prepare(&texts[0])?,
                client.prepare(&texts[1])?,
                client.prepare(&texts[2])?,
                client.prepare(&texts[3])?,
            ])
        };
        let select_by = prepare_each(&sql.select_by)?;
        let update_by = prepare_each(&sql.update_by)?;
        Ok(Statements {
            select_by,
            update_by,
            update_by_id: client.prepare(&sql.update_by_id)?,
            select_by_id: client.prepare(&sql.select_by_id)?,
            select_all: client.prepare(&sql.select_all)?,
            select_ids: client.prepare(&sql.select_ids)?,
            lock_inserts: client.prepare(&sql.lock_inserts)?,
            insert: client.prepare(&sql.insert)?,
            remember_order: client.prepare(&sql.remember_order)?,
            delete_by_id: client.prepare(&sql.delete_by_id)?,
            delete_all: client.prepare(&sql.delete_all)?,
            forget_all_order: client.prepare(&sql.forget_all_order)?,
            compare_and_set: client.prepare(&sql.compare_and_set)?,
            delete_if_unchanged: client.prepare(&sql.delete_if_unchanged)?,
            acquire_lease: client.prepare(&sql.acquire_lease)?,
            release_lease: client.prepare(&sql.release_lease)?,
        })
    }
}

/// A pooled connection with the store's statements prepared on it (once, when it opens).
struct PgConnection {
    client: Client,
    statements: Statements,
    /// Set when the server dropped the connection, so that the pool closes it instead of handing it out again.
    broken: bool,
}

/// `r2d2_postgres`'s manager, plus the store's prepared statements on each connection.
struct Manager {
    connections: PostgresConnectionManager<MakeRustlsConnect>,
    sql: Arc<Sql>,
}

impl r2d2::ManageConnection for Manager {
    type Connection = PgConnection;
    type Error = postgres::Error;

    fn connect(&self) -> Result<PgConnection, postgres::Error> {
        let mut client = self.connections.connect()?;
        let statements = Statements::prepare(&mut client, &self.sql)?;
        Ok(PgConnection {
            client,
            statements,
            broken: false,
        })
    }

    fn is_valid(&self, conn: &mut PgConnection) -> Result<(), postgres::Error> {
        conn.client.simple_query("").map(drop)
    }

    fn has_broken(&self, conn: &mut PgConnection) -> bool {
        conn.broken || conn.client.is_closed()
    }
}

/// Whether an error says the connection is gone (rather than the statement failing): the server shut down,
/// terminated the backend, or the socket broke.
fn connection_lost(error: &postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    if let Some(code) = error.code() {
        return [
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
        ]
        .contains(code)
            || code.code().starts_with("08");
    }
    std::error::Error::source(error).is_some_and(|source| source.is::<std::io::Error>())
}

impl PostgresStore {
    /// Connects to the database a `postgres://` spec names and creates the token table when it is absent
    /// (with the store's own two tables).
    pub fn open(spec: &DatabaseSpec) -> Result<Self, StoreError> {
        off_any_runtime(|| Self::connect(spec, true))
    }

    /// [`open`](Self::open) a store whose token table is already there: without it,
    /// [`StoreError::MissingTable`], and the token table is not created. For the commands that inspect or
    /// maintain a store.
    pub fn open_existing(spec: &DatabaseSpec) -> Result<Self, StoreError> {
        off_any_runtime(|| Self::connect(spec, false))
    }

    fn connect(spec: &DatabaseSpec, create: bool) -> Result<Self, StoreError> {
        let location = super::StoreSpec::Postgres(Box::new(spec.clone())).to_string();
        let mut config = tokio_postgres::Config::new();
        config
            .user(&spec.user)
            .host(&spec.host)
            .port(spec.port)
            .dbname(&spec.database)
            .application_name("zylker-portal")
            .connect_timeout(CONNECT_TIMEOUT)
            .keepalives(true)
            .keepalives_idle(KEEPALIVE_IDLE)
            .ssl_mode(match spec.ssl_mode {
                SslMode::Disable => tokio_postgres::config::SslMode::Disable,
                SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
                SslMode::Require => tokio_postgres::config::SslMode::Require,
            });
        if let Some(password) = spec.password() {
            config.password(password);
        }
        let tls = tls::connector()
            .map_err(|e| StoreError::backend(format!("{location}: set up TLS"), e))?;
        let connections =
            PostgresConnectionManager::new(postgres::Config::from(config.clone()), tls.clone());

        // The schema first, on a connection of its own: the pooled connections prepare statements on it.
        let mut setup = r2d2::ManageConnection::connect(&connections)
            .map_err(|e| StoreError::backend(format!("{location}: connect"), e))?;
        prepare_schema(&mut setup, &spec.table, create, &location)?;
        drop(setup);

        let sql = Sql::new(&spec.table);
        let reads = AsyncReads {
            config,
            tls,
            select_by_id: sql.select_by_id.clone(),
            location: location.clone(),
            connections: ThreadLocal::new(),
        };
        let manager = Manager {
            connections,
            sql: Arc::new(sql),
        };
        let pool = r2d2::Pool::builder()
            .max_size(POOL_SIZE)
            .min_idle(Some(1))
            // A dead connection is found by using it, and the operation is then tried again on another
            // (see `run`): a test query before every use would cost a round trip each time.
            .test_on_check_out(false)
            .connection_timeout(CONNECT_TIMEOUT)
            .build(manager)
            .map_err(|e| StoreError::backend(format!("{location}: open the connection pool"), e))?;
        Ok(PostgresStore {
            pool: Some(pool),
            reads,
            location,
        })
    }

    /// Runs `work` on a pooled connection; when the server had dropped that connection, runs it again on
    /// another (see [`reconnect_attempts`]).
    fn run<T>(
        &self,
        action: &str,
        mut work: impl FnMut(&mut Client, &Statements) -> Result<T, postgres::Error>,
    ) -> Result<T, StoreError> {
        let mut attempts_left = reconnect_attempts(POOL_SIZE);
        loop {
            let pool = self
                .pool
                .as_ref()
                .expect("the pool lives as long as the store");
            let mut conn = pool.get().map_err(|e| {
                StoreError::backend(
                    format!("{}: {action}: no connection to the database", self.location),
                    e,
                )
            })?;
            let PgConnection {
                client, statements, ..
            } = &mut *conn;
            match work(client, statements) {
                Ok(value) => return Ok(value),
                Err(error) if connection_lost(&error) => {
                    conn.broken = true;
                    attempts_left -= 1;
                    if attempts_left == 0 {
                        return Err(StoreError::backend(
                            format!(
                                "{}: {action}: the database dropped the connection",
                                self.location
                            ),
                            error,
                        ));
                    }
                }
                Err(error) => {
                    return Err(StoreError::backend(
                        format!("{}: {action}", self.location),
                        error,
                    ));
                }
            }
        }
    }
}

/// The asynchronous reads of one store: a connection per thread that reads, opened on first use on that
/// thread's runtime and driven by it, and opened again when the server dropped it.
///
/// An actix-web worker is one thread running one single-threaded runtime, so its reads and its connection's
/// task share that thread: a read is a query written to the socket and an answer the worker's event loop
/// picks up, with no hand-off to another thread. Concurrent reads on one worker are pipelined on its
/// connection. The portal therefore holds one such connection per worker beside its pool.
struct AsyncReads {
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    select_by_id: String,
    location: String,
    connections: ThreadLocal<RefCell<Arc<OnceCell<ReadConnection>>>>,
}

/// An asynchronous connection with the read prepared on it.
struct ReadConnection {
    client: tokio_postgres::Client,
    select_by_id: Statement,
}

impl AsyncReads {
    /// This thread's connection (to be opened when the cell is empty), or a fresh cell when the server dropped
    /// the last one or the runtime that drove it has ended.
    fn connection(&self) -> Arc<OnceCell<ReadConnection>> {
        let mut mine = self.connections.get_or_default().borrow_mut();
        if mine.get().is_some_and(|open| open.client.is_closed()) {
            *mine = Arc::default();
        }
        Arc::clone(&mine)
    }

    /// Forgets this thread's connection if it is still `broken`, so that the next read opens another.
    fn forget(&self, broken: &Arc<OnceCell<ReadConnection>>) {
        let mut mine = self.connections.get_or_default().borrow_mut();
        if Arc::ptr_eq(&mine, broken) {
            *mine = Arc::default();
        }
    }

    async fn open(&self) -> Result<ReadConnection, postgres::Error> {
        let (client, connection) = self.config.connect(self.tls.clone()).await?;
        // The connection's task ends with an error when the server goes away; the client then reports itself
        // closed, and the next read opens a new one. Nothing to log here: the failed read says it.
        tokio::spawn(async move { drop(connection.await) });
        let select_by_id = client.prepare(&self.select_by_id).await?;
        Ok(ReadConnection {
            client,
            select_by_id,
        })
    }

    /// `find_token_by_id` on this thread's connection, tried once more on a new connection when the server
    /// had dropped the old one (a restart; see [`reconnect_attempts`]). [`read_on_runtime`] bounds it in time.
    async fn find_token_by_id(&self, id: &str) -> Result<Option<OAuthToken>, StoreError> {
        let mut attempts_left = reconnect_attempts(1);
        loop {
            attempts_left -= 1;
            let cell = self.connection();
            let found = async {
                // Opening a connection is a future of some 4 KB (the handshake, TLS's with it), and it is rare:
                // boxed, it stays out of this future, which every page's read moves into its box and polls.
                let open = cell.get_or_try_init(|| Box::pin(self.open())).await?;
                let row = open.client.query_opt(&open.select_by_id, &[&id]).await?;
                row.map(|row| row_to_token(&row)).transpose()
            }
            .await;
            let error = match found {
                Ok(token) => return Ok(token),
                Err(error) => error,
            };
            let lost = connection_lost(&error);
            if lost {
                self.forget(&cell);
            }
            if !lost || attempts_left == 0 {
                let what = if lost {
                    ": no connection to the database"
                } else {
                    ""
                };
                return Err(StoreError::backend(
                    format!("{}: find a token by id{what}", self.location),
                    error,
                ));
            }
        }
    }
}

/// Runs `work` on a thread of its own and waits for it. The `postgres` client drives each connection with a
/// small runtime of its own, which cannot start on a thread that runs async tasks: opening and closing a
/// store may happen on one (`serve` opens its store in its async `main`); every other operation runs on
/// tokio's blocking pool, as the trait asks.
fn off_any_runtime<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| match scope.spawn(work).join() {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

impl Drop for PostgresStore {
    /// Closes the pooled connections off any async worker thread (see [`off_any_runtime`]).
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            off_any_runtime(move || drop(pool));
        }
    }
}

/// Checks the token table (creating it when absent and `create`) and creates the store's own tables, under an
/// advisory lock: PostgreSQL's `CREATE TABLE IF NOT EXISTS` can fail when two sessions run it at once.
fn prepare_schema(
    client: &mut Client,
    table: &str,
    create: bool,
    location: &str,
) -> Result<(), StoreError> {
    let failed =
        |e: postgres::Error| StoreError::backend(format!("{location}: prepare the tables"), e);
    let mut tx = client.transaction().map_err(failed)?;
    // `CREATE TABLE IF NOT EXISTS` reports a table that is there with a NOTICE, which the driver would log.
    tx.batch_execute(
        "SET LOCAL client_min_messages = warning; \
         SELECT pg_advisory_xact_lock(hashtext('zylker-portal schema'))",
    )
    .map_err(failed)?;
    let present: Vec<String> = tx
        .query(
            "SELECT column_name::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1",
            &[&table],
        )
        .map_err(failed)?
        .iter()
        .map(|row| row.get(0))
        .collect();
    if present.is_empty() {
        if !create {
            return Err(StoreError::MissingTable {
                location: location.to_owned(),
                table: table.to_owned(),
            });
        }
        tx.batch_execute(&format!(
            "CREATE TABLE \"{table}\" (id varchar(10) NOT NULL, user_name varchar(255) NOT NULL, \
             client_id varchar(255), client_secret varchar(255), refresh_token varchar(255), \
             access_token varchar(255), grant_token varchar(255), expiry_time varchar(20), \
             redirect_url varchar(255), api_domain varchar(255), PRIMARY KEY (id))"
        ))
        .map_err(failed)?;
    } else {
        let missing: Vec<&str> = COLUMNS
            .iter()
            .copied()
            .filter(|wanted| !present.iter().any(|name| name == wanted))
            .collect();
        if !missing.is_empty() {
            return Err(StoreError::NotAStore {
                path: location.to_owned(),
                reason: format!(
                    "its table {table} lacks the column(s) {}",
                    missing.join(", ")
                ),
            });
        }
    }
    tx.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {ORDER_TABLE} (token_table varchar(63) NOT NULL, \
         token_id varchar(255) NOT NULL, seq bigserial NOT NULL, PRIMARY KEY (token_table, token_id)); \
         CREATE TABLE IF NOT EXISTS {REFRESH_LEASE_TABLE} (token_table varchar(63) NOT NULL, \
         token_id varchar(255) NOT NULL, holder varchar(255) NOT NULL, expires_at timestamptz NOT NULL, \
         PRIMARY KEY (token_table, token_id))"
    ))
    .map_err(failed)?;
    tx.commit().map_err(failed)
}

fn row_to_token(row: &Row) -> Result<OAuthToken, postgres::Error> {
    let mut columns: [Option<String>; 10] = Default::default();
    for (index, column) in columns.iter_mut().enumerate() {
        *column = row.try_get(index)?;
    }
    Ok(token_from(columns))
}

/// The ten values of `token` as statement parameters, in the columns' order.
fn parameters(values: &[Option<String>; 10]) -> [&(dyn ToSql + Sync); 10] {
    values.each_ref().map(|value| value as &(dyn ToSql + Sync))
}

/// Replaces the row `token` names with `token`'s values (keeping the row's id) and returns that id, or `None`
/// when no row matches. One statement.
fn update_matching(
    client: &mut impl GenericClient,
    statements: &Statements,
    token: &OAuthToken,
) -> Result<Option<String>, postgres::Error> {
    let Some(key) = token.key() else {
        return Ok(None);
    };
    let (index, value) = key_column(key);
    let values = columns_of(token);
    let mut params = parameters(&values);
    // $1 is the key's value; $2…$10 the row's values but the id.
    params[0] = &value;
    Ok(client
        .query_opt(&statements.update_by[index], &params)?
        .map(|row| row.get(0)))
}

/// Writes the row that `save_token`'s contract chooses (the user's row, the row the id names, the oldest row
/// the key names) and returns its id, or `None` when there is none. Run inside the insert's transaction.
fn update_chosen_row(
    tx: &mut postgres::Transaction<'_>,
    statements: &Statements,
    token: &OAuthToken,
) -> Result<Option<String>, postgres::Error> {
    let user_key = matches!(token.key(), Some(TokenKey::UserName(_)));
    if user_key && let Some(id) = update_matching(tx, statements, token)? {
        return Ok(Some(id));
    }
    if token.id.is_some()
        && let Some(row) =
            tx.query_opt(&statements.update_by_id, &parameters(&columns_of(token)))?
    {
        return Ok(Some(row.get(0)));
    }
    if user_key {
        return Ok(None);
    }
    update_matching(tx, statements, token)
}

/// Inserts `token` as a new row inside the advisory lock's transaction, under `token.id` when no row has it,
/// else under the next free number, and returns its id; `None` when that id was taken meanwhile by a writer
/// that does not take the lock (the SDK), so the caller tries again.
fn insert(
    tx: &mut postgres::Transaction<'_>,
    statements: &Statements,
    token: &OAuthToken,
) -> Result<Option<String>, postgres::Error> {
    let mut values = columns_of(token);
    let explicit_id_is_free = match &token.id {
        Some(id) => tx.query_opt(&statements.select_by_id, &[id])?.is_none(),
        None => false,
    };
    if !explicit_id_is_free {
        let ids: Vec<String> = tx
            .query(&statements.select_ids, &[])?
            .iter()
            .map(|row| row.get(0))
            .collect();
        values[0] = Some(super::next_id(ids.iter().map(String::as_str)));
    }
    match tx.execute(&statements.insert, &parameters(&values)) {
        Ok(_) => {}
        Err(error) if error.code() == Some(&SqlState::UNIQUE_VIOLATION) => return Ok(None),
        Err(error) => return Err(error),
    }
    tx.execute(&statements.remember_order, &[&values[0]])?;
    Ok(values[0].take())
}

impl TokenStore for PostgresStore {
    fn find_token(&self, partial: &OAuthToken) -> Result<Option<OAuthToken>, StoreError> {
        let Some(key) = partial.key() else {
            return Ok(None);
        };
        let (index, value) = key_column(key);
        self.run("find a token", |client, statements| {
            client
                .query_opt(&statements.select_by[index], &[&value])?
                .map(|row| row_to_token(&row))
                .transpose()
        })
    }

    fn save_token(&self, token: &mut OAuthToken) -> Result<(), StoreError> {
        if (token.id.is_some() || token.user_name.is_some()) && !token.has_credentials() {
            return Err(StoreError::NothingToSave);
        }
        let id = self.run("save a token", |client, statements| {
            // The common cases, a known user or a token without id whose key names a row, are one atomic
            // statement. With an id and no user name, the id comes before the key: that needs the transaction.
            let user_key = matches!(token.key(), Some(TokenKey::UserName(_)));
            if (user_key || token.id.is_none())
                && let Some(id) = update_matching(client, statements, token)?
            {
                return Ok(id);
            }
            // One transaction chooses the row and writes it, or inserts. An insert must not race another
            // process inserting the same user or numbering the same id: the advisory lock makes the
            // transactions take turns, and each looks again once it has the lock.
            loop {
                let mut tx = client.transaction()?;
                tx.execute(&statements.lock_inserts, &[])?;
                let id = match update_chosen_row(&mut tx, statements, token)? {
                    Some(id) => Some(id),
                    None => insert(&mut tx, statements, token)?,
                };
                // `None`: the insert's id was taken meanwhile; dropping the transaction rolls it back.
                if let Some(id) = id {
                    tx.commit()?;
                    return Ok(id);
                }
            }
        })?;
        token.id = Some(id);
        Ok(())
    }

    fn delete_token(&self, id: &str) -> Result<(), StoreError> {
        self.run("delete a token", |client, statements| {
            client.execute(&statements.delete_by_id, &[&id]).map(drop)
        })
    }

    fn get_tokens(&self) -> Result<Vec<OAuthToken>, StoreError> {
        self.run("list the tokens", |client, statements| {
            client
                .query(&statements.select_all, &[])?
                .iter()
                .map(row_to_token)
                .collect()
        })
    }

    fn delete_tokens(&self) -> Result<(), StoreError> {
        self.run("delete every token", |client, statements| {
            let mut tx = client.transaction()?;
            tx.execute(&statements.delete_all, &[])?;
            tx.execute(&statements.forget_all_order, &[])?;
            tx.commit()
        })
    }

    fn find_token_by_id(&self, id: &str) -> Result<Option<OAuthToken>, StoreError> {
        self.run("find a token by id", |client, statements| {
            client
                .query_opt(&statements.select_by_id, &[&id])?
                .map(|row| row_to_token(&row))
                .transpose()
        })
    }

    /// On the caller's runtime, through this thread's asynchronous connection (see [`AsyncReads`]); `None`
    /// off any runtime.
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
        self.run("update an access token", |client, statements| {
            let changed = client.execute(
                &statements.compare_and_set,
                &[&id, &expected_access_token, &access_token, &expiry_time],
            )?;
            Ok(changed > 0)
        })
    }

    /// One conditional `DELETE` (with the row's order entry, in the same statement).
    fn delete_token_if_unchanged(
        &self,
        id: &str,
        expected_access_token: Option<&str>,
    ) -> Result<bool, StoreError> {
        self.run("delete a token", |client, statements| {
            let deleted: i64 = client
                .query_one(
                    &statements.delete_if_unchanged,
                    &[&id, &expected_access_token],
                )?
                .get(0);
            Ok(deleted > 0)
        })
    }

    /// A lease row in `portal_refresh_leases`, taken or renewed by one `INSERT … ON CONFLICT DO UPDATE`
    /// that expires by the database's clock.
    fn try_acquire_refresh_lease(
        &self,
        token_id: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let ttl = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2);
        self.run("take a refresh lease", |client, statements| {
            Ok(client
                .query_opt(&statements.acquire_lease, &[&token_id, &holder, &ttl])?
                .is_some())
        })
    }

    fn release_refresh_lease(&self, token_id: &str, holder: &str) -> Result<(), StoreError> {
        self.run("release a refresh lease", |client, statements| {
            client
                .execute(&statements.release_lease, &[&token_id, &holder])
                .map(drop)
        })
    }
}

mod tls {
    //! TLS for `sslmode=prefer|require` with rustls: encryption without checking the server's certificate,
    //! which is what libpq's `require` means (checking it is `verify-full`, which the spec does not offer).

    use std::sync::Arc;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::WebPkiSupportedAlgorithms;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{DigitallySignedStruct, SignatureScheme};
    use tokio_postgres_rustls::MakeRustlsConnect;

    /// The connector every connection of a store uses (TLS happens only when the spec's `sslmode` asks).
    pub(super) fn connector() -> Result<MakeRustlsConnect, rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = EncryptOnly {
            algorithms: provider.signature_verification_algorithms,
        };
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        Ok(MakeRustlsConnect::new(config))
    }

    /// Accepts the server's certificate without a certificate authority, but still checks that the server
    /// holds the certificate's key (the handshake signatures), as libpq's `sslmode=require` does.
    #[derive(Debug)]
    struct EncryptOnly {
        algorithms: WebPkiSupportedAlgorithms,
    }

    impl ServerCertVerifier for EncryptOnly {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp_response: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.algorithms.supported_schemes()
        }
    }
}

impl PostgresStore {
    /// Creates the portal's sign-in tables beside the tokens when absent, and adds the owner's columns to a
    /// sign-in table of an earlier version (`oauthtoken` is never changed; the pending-login table of an
    /// earlier version is left as it is). An advisory lock keeps portals that start together from creating
    /// them twice.
    pub fn ensure_sign_in_tables(&self) -> Result<(), StoreError> {
        self.run("create the sign-in tables", |client, _| {
            let mut transaction = client.transaction()?;
            transaction.execute("SELECT pg_advisory_xact_lock($1)", &[&SIGN_IN_TABLES_LOCK])?;
            transaction.batch_execute(&format!(
                "SET LOCAL client_min_messages = warning;
                 CREATE TABLE IF NOT EXISTS {SIGN_INS_TABLE} (
                     id TEXT PRIMARY KEY, expires_at BIGINT NOT NULL, user_name TEXT, token_id TEXT);
                 ALTER TABLE {SIGN_INS_TABLE} ADD COLUMN IF NOT EXISTS user_name TEXT;
                 ALTER TABLE {SIGN_INS_TABLE} ADD COLUMN IF NOT EXISTS token_id TEXT;
                 CREATE INDEX IF NOT EXISTS {SIGN_INS_TABLE}_expires_at ON {SIGN_INS_TABLE} (expires_at);
                 CREATE INDEX IF NOT EXISTS {SIGN_INS_TABLE}_user_name ON {SIGN_INS_TABLE} (user_name);
                 CREATE TABLE IF NOT EXISTS {CONSUMED_LOGINS_TABLE} (
                     id TEXT PRIMARY KEY, expires_at BIGINT NOT NULL);
                 CREATE INDEX IF NOT EXISTS {CONSUMED_LOGINS_TABLE}_expires_at
                     ON {CONSUMED_LOGINS_TABLE} (expires_at);"
            ))?;
            transaction.commit()
        })
    }
}

impl PostgresStore {
    /// Whether the sign-in table is there with the columns that tie a sign-in to its token (read only).
    pub fn has_sign_in_owner_columns(&self) -> Result<bool, StoreError> {
        self.run("look for the sign-in table", |client, _| {
            let row = client.query_one(
                "SELECT count(*) FROM information_schema.columns WHERE table_schema = current_schema() \
                 AND table_name = $1 AND column_name IN ('user_name', 'token_id')",
                &[&SIGN_INS_TABLE],
            )?;
            Ok(row.get::<_, i64>(0) == 2)
        })
    }
}

/// The advisory lock taken while the sign-in tables are created (any fixed number the portal owns).
const SIGN_IN_TABLES_LOCK: i64 = 0x7a79_6c6b_7369_676e;

impl SignInStore for PostgresStore {
    fn record_sign_in(&self, record: &SignInRecord) -> Result<(), StoreError> {
        self.run("record a sign-in", |client, _| {
            client
                .execute(
                    &format!(
                        "INSERT INTO {SIGN_INS_TABLE} (id, expires_at, user_name, token_id) \
                         VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (id) DO UPDATE SET expires_at = EXCLUDED.expires_at, \
                         user_name = EXCLUDED.user_name, token_id = EXCLUDED.token_id"
                    ),
                    &[
                        &record.key,
                        &record.expires_at,
                        &record.user_name,
                        &record.token_id,
                    ],
                )
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
        self.run("read a sign-in", |client, _| {
            client
                .query_opt(
                    &format!(
                        "SELECT 1 FROM {SIGN_INS_TABLE} \
                         WHERE id = $1 AND expires_at > $2 AND user_name = $3 AND token_id = $4"
                    ),
                    &[&key, &now, &user_name, &token_id],
                )
                .map(|row| row.is_some())
        })
    }

    fn end_sign_in(&self, key: &str) -> Result<(), StoreError> {
        self.run("end a sign-in", |client, _| {
            client
                .execute(
                    &format!("DELETE FROM {SIGN_INS_TABLE} WHERE id = $1"),
                    &[&key],
                )
                .map(drop)
        })
    }

    fn end_sign_ins_of(&self, user_name: &str, token_id: Option<&str>) -> Result<u64, StoreError> {
        self.run("end the sign-ins of a token", |client, _| {
            client.execute(
                &format!(
                    "DELETE FROM {SIGN_INS_TABLE} \
                     WHERE user_name = $1 AND ($2::TEXT IS NULL OR token_id = $2)"
                ),
                &[&user_name, &token_id],
            )
        })
    }

    fn live_sign_ins(&self, now: i64) -> Result<Vec<SignInRecord>, StoreError> {
        self.run("list the live sign-ins", |client, _| {
            let rows = client.query(
                &format!(
                    "SELECT id, user_name, token_id, expires_at FROM {SIGN_INS_TABLE} \
                     WHERE expires_at > $1 AND user_name IS NOT NULL AND token_id IS NOT NULL ORDER BY id"
                ),
                &[&now],
            )?;
            Ok(rows
                .iter()
                .map(|row| SignInRecord {
                    key: row.get(0),
                    user_name: row.get(1),
                    token_id: row.get(2),
                    expires_at: row.get(3),
                })
                .collect())
        })
    }

    fn consume_login(&self, key: &str, expires_at: i64) -> Result<bool, StoreError> {
        // One statement: of two callbacks racing with one state, one inserts and the other finds the row.
        self.run("record a used login", |client, _| {
            client
                .execute(
                    &format!(
                        "INSERT INTO {CONSUMED_LOGINS_TABLE} (id, expires_at) VALUES ($1, $2) \
                         ON CONFLICT (id) DO NOTHING"
                    ),
                    &[&key, &expires_at],
                )
                .map(|inserted| inserted == 1)
        })
    }

    fn purge(&self, now: i64) -> Result<Purged, StoreError> {
        self.run("purge old sign-in records", |client, _| {
            let sign_ins = client.execute(
                &format!("DELETE FROM {SIGN_INS_TABLE} WHERE expires_at <= $1"),
                &[&now],
            )?;
            let consumed_logins = client.execute(
                &format!("DELETE FROM {CONSUMED_LOGINS_TABLE} WHERE expires_at <= $1"),
                &[&now],
            )?;
            Ok(Purged {
                sign_ins,
                consumed_logins,
            })
        })
    }
}
