//! Test databases: each test gets a database of its own, under a unique name, on the PostgreSQL or MySQL server
//! named by `TEST_POSTGRES_URL` / `TEST_MYSQL_URL`, dropped again when the test ends (also when it fails).
//!
//! Without a server a database test fails, saying how to get one; `ZYLKER_SKIP_DB_TESTS=1` is the only way to
//! leave the database tests out.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use mysql::prelude::Queryable;
use zylker_portal::tokens::conformance::GuardedStore;
use zylker_portal::tokens::{DatabaseSpec, StoreSpec, TokenStore, open_store};

const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const DEFAULT_MYSQL_URL: &str = "mysql://root@127.0.0.1:3306/mysql";

/// Whether the run was told to leave the database tests out.
pub fn skipped() -> bool {
    std::env::var("ZYLKER_SKIP_DB_TESTS").as_deref() == Ok("1")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    Postgres,
    MySql,
}

impl Server {
    fn variable(self) -> &'static str {
        match self {
            Server::Postgres => "TEST_POSTGRES_URL",
            Server::MySql => "TEST_MYSQL_URL",
        }
    }

    /// The server's administrative spec: the variable's value, or the default address.
    pub fn admin_url(self) -> String {
        std::env::var(self.variable()).unwrap_or_else(|_| {
            match self {
                Server::Postgres => DEFAULT_POSTGRES_URL,
                Server::MySql => DEFAULT_MYSQL_URL,
            }
            .to_owned()
        })
    }

    fn admin_spec(self) -> DatabaseSpec {
        let url = self.admin_url();
        match (self, url.parse::<StoreSpec>()) {
            (Server::Postgres, Ok(StoreSpec::Postgres(spec)))
            | (Server::MySql, Ok(StoreSpec::MySql(spec))) => *spec,
            (_, other) => panic!("{} is not a {self:?} spec: {other:?}", self.variable()),
        }
    }

    /// Runs administrative statements (create, drop, kill) on the server, failing the test with directions
    /// when no server answers.
    pub fn admin(self, statements: &[String]) {
        let spec = self.admin_spec();
        let result: Result<(), Box<dyn std::error::Error>> = match self {
            Server::Postgres => postgres_client(&spec).and_then(|mut client| {
                statements
                    .iter()
                    .try_for_each(|s| client.batch_execute(s))
                    .map_err(Into::into)
            }),
            Server::MySql => mysql_conn(&spec).and_then(|mut conn| {
                statements
                    .iter()
                    .try_for_each(|s| conn.query_drop(s))
                    .map_err(Into::into)
            }),
        };
        if let Err(error) = result {
            panic!(
                "{self:?} test database: cannot run {statements:?} on {} ({}): {error}.\n\
                 The database tests need a PostgreSQL and a MySQL/MariaDB server: `.ci/run` starts private ones \
                 when none answers (from Debian's postgresql and mariadb-server packages); or point \
                 TEST_POSTGRES_URL / TEST_MYSQL_URL at servers of your own (a user that may create databases); \
                 or set ZYLKER_SKIP_DB_TESTS=1 to leave the database tests out.",
                StoreSpec::from_database(self, &spec),
                self.variable()
            );
        }
    }

    /// The ids of the server's connections to `database`, but the asking one.
    pub fn connections_to(self, database: &str) -> Vec<String> {
        let spec = self.admin_spec();
        match self {
            Server::Postgres => postgres_client(&spec)
                .expect("connect")
                .query(
                    "SELECT pid::text FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                    &[&database],
                )
                .expect("pg_stat_activity")
                .iter()
                .map(|row| row.get(0))
                .collect(),
            Server::MySql => mysql_conn(&spec)
                .expect("connect")
                .exec(
                    "SELECT CAST(id AS CHAR) FROM information_schema.processlist WHERE db = ? AND id <> CONNECTION_ID()",
                    (database,),
                )
                .expect("processlist"),
        }
    }

    /// Ends every connection to `database` from the server's side, as a restart does.
    pub fn kill_connections_to(self, database: &str) {
        let statements: Vec<String> = self
            .connections_to(database)
            .into_iter()
            .map(|id| match self {
                Server::Postgres => format!("SELECT pg_terminate_backend({id})"),
                Server::MySql => format!("KILL {id}"),
            })
            .collect();
        assert!(!statements.is_empty(), "no connection to {database} to end");
        self.admin(&statements);
    }
}

trait FromDatabase {
    fn from_database(server: Server, spec: &DatabaseSpec) -> StoreSpec;
}

impl FromDatabase for StoreSpec {
    fn from_database(server: Server, spec: &DatabaseSpec) -> StoreSpec {
        match server {
            Server::Postgres => StoreSpec::Postgres(Box::new(spec.clone())),
            Server::MySql => StoreSpec::MySql(Box::new(spec.clone())),
        }
    }
}

pub fn postgres_client(
    spec: &DatabaseSpec,
) -> Result<postgres::Client, Box<dyn std::error::Error>> {
    let mut config = postgres::Config::new();
    config
        .user(&spec.user)
        .host(&spec.host)
        .port(spec.port)
        .dbname(&spec.database)
        .connect_timeout(std::time::Duration::from_secs(5));
    if let Some(password) = spec.password() {
        config.password(password);
    }
    Ok(config.connect(postgres::NoTls)?)
}

pub fn mysql_conn(spec: &DatabaseSpec) -> Result<mysql::Conn, Box<dyn std::error::Error>> {
    let opts = mysql::OptsBuilder::new()
        .ip_or_hostname(Some(spec.host.clone()))
        .tcp_port(spec.port)
        .user(Some(spec.user.clone()))
        .pass(spec.password().map(str::to_owned))
        .db_name(Some(spec.database.clone()))
        .prefer_socket(false)
        .tcp_connect_timeout(Some(std::time::Duration::from_secs(5)));
    Ok(mysql::Conn::new(opts)?)
}

/// A database of the test's own, dropped (with everything in it) when the value is dropped.
pub struct TestDatabase {
    pub server: Server,
    pub name: String,
    spec: DatabaseSpec,
}

impl TestDatabase {
    /// A fresh database on the PostgreSQL server; `None` when the database tests are left out.
    pub fn postgres() -> Option<Self> {
        Self::create(Server::Postgres)
    }

    /// A fresh database on the MySQL server; `None` when the database tests are left out.
    pub fn mysql() -> Option<Self> {
        Self::create(Server::MySql)
    }

    pub fn create(server: Server) -> Option<Self> {
        if skipped() {
            return None;
        }
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let name = format!(
            "zp_test_{}_{}_{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let create = match server {
            Server::Postgres => format!("CREATE DATABASE {name}"),
            Server::MySql => format!("CREATE DATABASE {name} CHARACTER SET utf8mb4"),
        };
        server.admin(&[create]);
        let mut spec = server.admin_spec();
        spec.database = name.clone();
        Some(TestDatabase { server, name, spec })
    }

    /// The store spec of this database (the default table), password included: for `open_store` and children.
    pub fn spec(&self) -> String {
        self.spec_with_password(None)
    }

    /// The spec, with `?table=NAME` when `table` is given, and the password written out (unlike `Display`).
    pub fn spec_with_password(&self, table: Option<&str>) -> String {
        let scheme = match self.server {
            Server::Postgres => "postgres",
            Server::MySql => "mysql",
        };
        let spec = &self.spec;
        let password = spec
            .password()
            .map(|p| {
                format!(
                    ":{}",
                    percent_encoding::utf8_percent_encode(p, percent_encoding::NON_ALPHANUMERIC)
                )
            })
            .unwrap_or_default();
        let mut text = format!(
            "{scheme}://{}{password}@{}:{}/{}",
            spec.user, spec.host, spec.port, spec.database
        );
        let mut separator = '?';
        if self.server == Server::Postgres {
            text.push_str("?sslmode=disable");
            separator = '&';
        }
        if let Some(table) = table {
            text.push_str(&format!("{separator}table={table}"));
        }
        text
    }

    /// The store on this database, opened as `serve` opens it.
    pub fn open(&self) -> Arc<dyn TokenStore> {
        let spec: StoreSpec = self.spec().parse().expect("spec");
        open_store(&spec).unwrap_or_else(|e| panic!("open {spec}: {e:#}"))
    }

    /// The store, keeping the database alive as long as the store lives: for the conformance kit.
    pub fn into_store(self) -> GuardedStore<TestDatabase> {
        GuardedStore::new(self.open(), self)
    }

    /// Runs statements on the server, connected to its administrative database (to change this one).
    pub fn server_admin(&self, statements: &[String]) {
        self.server.admin(statements);
    }

    /// Runs statements on this database, connected as the administrator.
    pub fn execute(&self, statements: &[&str]) {
        let run: Result<(), Box<dyn std::error::Error>> = match self.server {
            Server::Postgres => postgres_client(&self.spec).and_then(|mut client| {
                statements
                    .iter()
                    .try_for_each(|s| client.batch_execute(s))
                    .map_err(Into::into)
            }),
            Server::MySql => mysql_conn(&self.spec).and_then(|mut conn| {
                statements
                    .iter()
                    .try_for_each(|s| conn.query_drop(s))
                    .map_err(Into::into)
            }),
        };
        run.unwrap_or_else(|e| panic!("{statements:?}: {e}"));
    }

    /// The rows of a one-column text query on this database.
    pub fn query_texts(&self, query: &str) -> Vec<Option<String>> {
        match self.server {
            Server::Postgres => postgres_client(&self.spec)
                .expect("connect")
                .query(query, &[])
                .expect("query")
                .iter()
                .map(|row| row.get(0))
                .collect(),
            Server::MySql => mysql_conn(&self.spec)
                .expect("connect")
                .query(query)
                .expect("query"),
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let drop = match self.server {
            Server::Postgres => format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            Server::MySql => format!("DROP DATABASE IF EXISTS {}", self.name),
        };
        // A failure to clean up must not hide the test's own result (nor panic while unwinding).
        let spec = self.server.admin_spec();
        let result: Result<(), Box<dyn std::error::Error>> = match self.server {
            Server::Postgres => postgres_client(&spec)
                .and_then(|mut client| client.batch_execute(&drop).map_err(Into::into)),
            Server::MySql => {
                mysql_conn(&spec).and_then(|mut conn| conn.query_drop(&drop).map_err(Into::into))
            }
        };
        if let Err(error) = result {
            eprintln!("could not drop the test database {}: {error}", self.name);
        }
    }
}
