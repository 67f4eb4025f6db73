//! `cargo bench --bench stores`: save+find pairs and finds per second for every store, with 50 users, beside a
//! bare driver doing the same UPDATE+SELECT: rusqlite for SqliteStore, and for PostgresStore and MySqlStore the
//! `postgres` and `mysql` drivers on the same server (the baselines the stores are held to).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group};
use rusqlite::{Connection, params};
use zylker_portal::tokens::conformance::{in_temp_dir, sample_token};
use zylker_portal::tokens::{
    EncryptedStore, FileStore, Keyring, ListStore, OAuthToken, Secret, SqliteStore, TokenStore,
    exposed,
};

const USERS: usize = 50;

fn users() -> Vec<OAuthToken> {
    (0..USERS)
        .map(|n| sample_token(&format!("user{n}@zylker.com:60032191920")))
        .collect()
}

fn partial(token: &OAuthToken) -> OAuthToken {
    OAuthToken {
        user_name: token.user_name.clone(),
        ..OAuthToken::default()
    }
}

fn stores() -> Vec<(&'static str, Arc<dyn TokenStore>)> {
    vec![
        (
            "SqliteStore(file)",
            Arc::new(in_temp_dir(|dir| {
                SqliteStore::open(dir.join("zohooauth.db"))
            })),
        ),
        (
            "EncryptedStore<SqliteStore(file)>",
            Arc::new(encrypted_sqlite_file()),
        ),
        (
            "SqliteStore(memory)",
            Arc::new(SqliteStore::in_memory().expect("memory")),
        ),
        ("ListStore", Arc::new(ListStore::new())),
        (
            "FileStore",
            Arc::new(in_temp_dir(|dir| FileStore::open(dir.join("tokens.csv")))),
        ),
    ]
}

/// A SQLite file store with token encryption on: one key, as after a rotation is done.
fn encrypted_sqlite_file() -> EncryptedStore {
    let keyring: Keyring = format!("bench:{}", "42".repeat(32))
        .parse()
        .expect("keyring");
    let store = in_temp_dir(|dir| SqliteStore::open(dir.join("zohooauth.db")));
    EncryptedStore::over(Arc::new(store), keyring)
}

/// A store driven like a bare driver, to hold the encrypted store against the plain one in the interleaved
/// comparison: a save of one user's token, a find of it by user name.
struct StoreAsBare {
    store: Box<dyn TokenStore>,
}

impl StoreAsBare {
    fn new(store: impl TokenStore + 'static) -> Self {
        let store: Box<dyn TokenStore> = Box::new(store);
        for mut token in users() {
            store.save_token(&mut token).expect("populate");
        }
        StoreAsBare { store }
    }
}

impl Bare for StoreAsBare {
    fn update(&mut self, token: &OAuthToken) {
        self.store.save_token(&mut token.clone()).expect("save");
    }
    fn select(&mut self, user_name: &str) {
        let partial = OAuthToken {
            user_name: Some(user_name.to_owned()),
            ..OAuthToken::default()
        };
        black_box(self.store.find_token(&partial).expect("find"));
    }
}

/// The baseline: one connection, WAL, synchronous=NORMAL, the store's table and index, prepared statements.
struct Baseline {
    conn: Connection,
    _dir: tempfile::TempDir,
}

const BASELINE_UPDATE: &str = "UPDATE oauthtoken SET client_id = ?2, client_secret = ?3, refresh_token = ?4, access_token = ?5, grant_token = ?6, expiry_time = ?7, redirect_url = ?8, api_domain = ?9 WHERE user_name = ?1";
const BASELINE_SELECT: &str = "SELECT id, user_name, client_id, client_secret, refresh_token, access_token, grant_token, expiry_time, redirect_url, api_domain FROM oauthtoken WHERE user_name = ?1";

impl Baseline {
    fn new(tokens: &[OAuthToken]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("baseline.db");
        // The store creates the schema, so both run on the very same table and index.
        drop(SqliteStore::open(&path).expect("schema"));
        let conn = Connection::open(&path).expect("open");
        conn.pragma_update(None, "journal_mode", "WAL")
            .expect("wal");
        conn.pragma_update(None, "synchronous", "NORMAL")
            .expect("synchronous");
        for (n, t) in tokens.iter().enumerate() {
            conn.execute(
                "INSERT INTO oauthtoken VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    (n + 1).to_string(),
                    t.user_name,
                    t.client_id,
                    exposed(&t.client_secret),
                    exposed(&t.refresh_token),
                    exposed(&t.access_token),
                    exposed(&t.grant_token),
                    t.expiry_time,
                    t.redirect_url,
                    t.api_domain
                ],
            )
            .expect("insert");
        }
        Baseline { conn, _dir: dir }
    }

    fn update(&self, t: &OAuthToken) {
        self.conn
            .prepare_cached(BASELINE_UPDATE)
            .expect("prepare")
            .execute(params![
                t.user_name,
                t.client_id,
                exposed(&t.client_secret),
                exposed(&t.refresh_token),
                exposed(&t.access_token),
                exposed(&t.grant_token),
                t.expiry_time,
                t.redirect_url,
                t.api_domain
            ])
            .expect("update");
    }

    fn select(&self, user_name: &str) -> OAuthToken {
        self.conn
            .prepare_cached(BASELINE_SELECT)
            .expect("prepare")
            .query_row([user_name], |row| {
                Ok(OAuthToken {
                    id: row.get(0)?,
                    user_name: row.get(1)?,
                    client_id: row.get(2)?,
                    client_secret: row.get::<_, Option<String>>(3)?.map(Secret::from),
                    refresh_token: row.get::<_, Option<String>>(4)?.map(Secret::from),
                    access_token: row.get::<_, Option<String>>(5)?.map(Secret::from),
                    grant_token: row.get::<_, Option<String>>(6)?.map(Secret::from),
                    expiry_time: row
                        .get::<_, Option<String>>(7)?
                        .and_then(|s| s.parse().ok()),
                    redirect_url: row.get(8)?,
                    api_domain: row.get(9)?,
                })
            })
            .expect("select")
    }
}

fn pairs(c: &mut Criterion) {
    let mut group = c.benchmark_group("save+find pairs");
    group.throughput(Throughput::Elements(1));
    let mut tokens = users();
    let baseline = Baseline::new(&tokens);
    let mut n = 0usize;
    group.bench_function("baseline rusqlite", |b| {
        b.iter(|| {
            n += 1;
            let token = &mut tokens[n % USERS];
            token.access_token = Some(Secret::from(format!("1000.access.{n}")));
            baseline.update(token);
            black_box(baseline.select(token.user_name.as_deref().unwrap_or_default()));
        })
    });
    for (name, store) in stores() {
        let mut tokens = users();
        for token in &mut tokens {
            store.save_token(token).expect("populate");
        }
        let partials: Vec<OAuthToken> = tokens.iter().map(partial).collect();
        let mut n = 0usize;
        group.bench_function(name, |b| {
            b.iter(|| {
                n += 1;
                let token = &mut tokens[n % USERS];
                token.access_token = Some(Secret::from(format!("1000.access.{n}")));
                store.save_token(token).expect("save");
                black_box(store.find_token(&partials[n % USERS]).expect("find"));
            })
        });
    }
    group.finish();
}

fn finds(c: &mut Criterion) {
    let mut group = c.benchmark_group("find");
    group.throughput(Throughput::Elements(1));
    let tokens = users();
    let baseline = Baseline::new(&tokens);
    let names: Vec<String> = tokens.iter().filter_map(|t| t.user_name.clone()).collect();
    let mut n = 0usize;
    group.bench_function("baseline rusqlite", |b| {
        b.iter(|| {
            n += 1;
            black_box(baseline.select(&names[n % USERS]));
        })
    });
    for (name, store) in stores() {
        let mut tokens = users();
        for token in &mut tokens {
            store.save_token(token).expect("populate");
        }
        let partials: Vec<OAuthToken> = tokens.iter().map(partial).collect();
        let mut n = 0usize;
        group.bench_function(name, |b| {
            b.iter(|| {
                n += 1;
                black_box(store.find_token(&partials[n % USERS]).expect("find"));
            })
        });
    }
    group.finish();
}

/// A bare driver doing the same work as a store: a prepared UPDATE of one user's row, a prepared SELECT of it.
trait Bare {
    fn update(&mut self, token: &OAuthToken);
    fn select(&mut self, user_name: &str);
}

impl Bare for Baseline {
    fn update(&mut self, token: &OAuthToken) {
        Baseline::update(self, token);
    }
    fn select(&mut self, user_name: &str) {
        black_box(Baseline::select(self, user_name));
    }
}

/// Criterion measures one store after another, and on a shared machine the load changes in between. This
/// comparison alternates the bare driver and the store in short rounds, so both see the same load, and prints
/// the ratios the targets are about: `targets`, the least pairs and finds per second, in % of the bare side's
/// (a store beside its bare driver: pairs >= 60%, finds >= 50%; the encrypted store beside the plain one: 70%
/// and 70%).
fn interleaved_comparison(
    label: &str,
    bare_label: &str,
    bare: &mut dyn Bare,
    store: &dyn TokenStore,
    (rounds, per_round): (usize, usize),
    (pairs_target, finds_target): (u32, u32),
) {
    let mut tokens = users();
    let mut store_tokens = users();
    for token in &mut store_tokens {
        store.save_token(token).expect("populate");
    }
    let partials: Vec<OAuthToken> = store_tokens.iter().map(partial).collect();
    let names: Vec<String> = tokens.iter().filter_map(|t| t.user_name.clone()).collect();
    let (mut bare_pairs, mut store_pairs) = (Duration::ZERO, Duration::ZERO);
    let (mut bare_finds, mut store_finds) = (Duration::ZERO, Duration::ZERO);
    let mut n = 0usize;
    for _ in 0..rounds {
        let start = Instant::now();
        for _ in 0..per_round {
            n += 1;
            let token = &mut tokens[n % USERS];
            token.access_token = Some(Secret::from(format!("1000.access.{n}")));
            bare.update(token);
            bare.select(&names[n % USERS]);
        }
        bare_pairs += start.elapsed();
        let start = Instant::now();
        for _ in 0..per_round {
            n += 1;
            let token = &mut store_tokens[n % USERS];
            token.access_token = Some(Secret::from(format!("1000.access.{n}")));
            store.save_token(token).expect("save");
            black_box(store.find_token(&partials[n % USERS]).expect("find"));
        }
        store_pairs += start.elapsed();
        let start = Instant::now();
        for _ in 0..per_round {
            n += 1;
            bare.select(&names[n % USERS]);
        }
        bare_finds += start.elapsed();
        let start = Instant::now();
        for _ in 0..per_round {
            n += 1;
            black_box(store.find_token(&partials[n % USERS]).expect("find"));
        }
        store_finds += start.elapsed();
    }
    let rate = |d: Duration| (rounds * per_round) as f64 / d.as_secs_f64();
    let (bp, sp, bf, sf) = (
        rate(bare_pairs),
        rate(store_pairs),
        rate(bare_finds),
        rate(store_finds),
    );
    println!(
        "\n{label} beside {bare_label}, interleaved, {USERS} users, {} operations each:",
        rounds * per_round
    );
    println!(
        "  pairs/s  bare {bp:>9.0}  store {sp:>9.0}  = {:>5.1}% (target >= {pairs_target}%)",
        100.0 * sp / bp
    );
    println!(
        "  finds/s  bare {bf:>9.0}  store {sf:>9.0}  = {:>5.1}% (target >= {finds_target}%)",
        100.0 * sf / bf
    );
}

/// The database stores' half of the bench: PostgreSQL and MySQL, each on a database of its own on the servers of
/// `TEST_POSTGRES_URL` / `TEST_MYSQL_URL` (the tests' defaults when unset), beside the bare driver on the same
/// table. Left out, with a note, when `ZYLKER_SKIP_DB_TESTS=1` or no server answers.
mod databases {
    use mysql::prelude::Queryable;

    use super::*;
    use zylker_portal::tokens::{DatabaseSpec, StoreSpec, open_store};

    const UPDATE_PG: &str = "UPDATE oauthtoken SET client_id = $2, client_secret = $3, refresh_token = $4, access_token = $5, grant_token = $6, expiry_time = $7, redirect_url = $8, api_domain = $9 WHERE user_name = $1";
    const SELECT_PG: &str = "SELECT id, user_name, client_id, client_secret, refresh_token, access_token, grant_token, expiry_time, redirect_url, api_domain FROM oauthtoken WHERE user_name = $1";
    const UPDATE_MY: &str = "UPDATE oauthtoken SET client_id = ?, client_secret = ?, refresh_token = ?, access_token = ?, grant_token = ?, expiry_time = ?, redirect_url = ?, api_domain = ? WHERE user_name = ?";
    const SELECT_MY: &str = "SELECT id, user_name, client_id, client_secret, refresh_token, access_token, grant_token, expiry_time, redirect_url, api_domain FROM oauthtoken WHERE user_name = ?";

    fn values(t: &OAuthToken) -> [Option<String>; 8] {
        [
            t.client_id.clone(),
            exposed(&t.client_secret).map(str::to_owned),
            exposed(&t.refresh_token).map(str::to_owned),
            exposed(&t.access_token).map(str::to_owned),
            exposed(&t.grant_token).map(str::to_owned),
            t.expiry_time.map(|e| e.to_string()),
            t.redirect_url.clone(),
            t.api_domain.clone(),
        ]
    }

    struct BarePostgres {
        client: postgres::Client,
        update: postgres::Statement,
        select: postgres::Statement,
    }

    impl Bare for BarePostgres {
        fn update(&mut self, t: &OAuthToken) {
            let v = values(t);
            let user = t.user_name.clone();
            self.client
                .execute(
                    &self.update,
                    &[
                        &user, &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7],
                    ],
                )
                .expect("update");
        }
        fn select(&mut self, user_name: &str) {
            black_box(
                self.client
                    .query_opt(&self.select, &[&user_name])
                    .expect("select"),
            );
        }
    }

    struct BareMySql(mysql::Conn);

    impl Bare for BareMySql {
        fn update(&mut self, t: &OAuthToken) {
            let mut params: Vec<mysql::Value> =
                values(t).into_iter().map(mysql::Value::from).collect();
            params.push(mysql::Value::from(t.user_name.clone()));
            self.0.exec_drop(UPDATE_MY, params).expect("update");
        }
        fn select(&mut self, user_name: &str) {
            let row: Option<mysql::Row> =
                self.0.exec_first(SELECT_MY, (user_name,)).expect("select");
            black_box(row);
        }
    }

    fn admin_spec(variable: &str, default: &str) -> Option<DatabaseSpec> {
        let url = std::env::var(variable).unwrap_or_else(|_| default.to_owned());
        match url.parse::<StoreSpec>() {
            Ok(StoreSpec::Postgres(spec) | StoreSpec::MySql(spec)) => Some(*spec),
            _ => None,
        }
    }

    fn pg_client(spec: &DatabaseSpec) -> Result<postgres::Client, postgres::Error> {
        let mut config = postgres::Config::new();
        config
            .user(&spec.user)
            .host(&spec.host)
            .port(spec.port)
            .dbname(&spec.database);
        if let Some(password) = spec.password() {
            config.password(password);
        }
        config.connect(postgres::NoTls)
    }

    fn my_conn(spec: &DatabaseSpec) -> Result<mysql::Conn, mysql::Error> {
        mysql::Conn::new(
            mysql::OptsBuilder::new()
                .ip_or_hostname(Some(spec.host.clone()))
                .tcp_port(spec.port)
                .user(Some(spec.user.clone()))
                .pass(spec.password().map(str::to_owned))
                .db_name(Some(spec.database.clone()))
                .prefer_socket(false),
        )
    }

    fn store_spec(scheme: &str, spec: &DatabaseSpec) -> String {
        let password = spec.password().map(|p| format!(":{p}")).unwrap_or_default();
        let ssl = if scheme == "postgres" {
            "?sslmode=disable"
        } else {
            ""
        };
        format!(
            "{scheme}://{}{password}@{}:{}/{}{ssl}",
            spec.user, spec.host, spec.port, spec.database
        )
    }

    pub fn compare(rounds: usize, per_round: usize) {
        if std::env::var("ZYLKER_SKIP_DB_TESTS").as_deref() == Ok("1") {
            println!("\ndatabase stores left out: ZYLKER_SKIP_DB_TESTS=1");
            return;
        }
        let name = format!("zp_bench_{}", std::process::id());
        match admin_spec(
            "TEST_POSTGRES_URL",
            "postgres://postgres@127.0.0.1:5432/postgres",
        ) {
            Some(admin) => match pg_client(&admin) {
                Ok(mut client) => {
                    client
                        .batch_execute(&format!("CREATE DATABASE {name}"))
                        .expect("create");
                    let mut spec = admin.clone();
                    spec.database = name.clone();
                    {
                        let store =
                            open_store(&store_spec("postgres", &spec).parse().expect("spec"))
                                .expect("open");
                        let mut bare_client = pg_client(&spec).expect("connect");
                        let update = bare_client.prepare(UPDATE_PG).expect("prepare");
                        let select = bare_client.prepare(SELECT_PG).expect("prepare");
                        let mut bare = BarePostgres {
                            client: bare_client,
                            update,
                            select,
                        };
                        // The bare driver's rows: the store's users, saved by the store into its own table first.
                        let mut seed = users();
                        for token in &mut seed {
                            store.save_token(token).expect("seed");
                        }
                        interleaved_comparison(
                            "PostgresStore",
                            "postgres (one connection, prepared)",
                            &mut bare,
                            store.as_ref(),
                            (rounds, per_round),
                            (60, 50),
                        );
                    }
                    client
                        .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
                        .expect("drop");
                }
                Err(error) => println!(
                    "\nPostgreSQL left out: no server at {}: {error}",
                    StoreSpec::Postgres(Box::new(admin))
                ),
            },
            None => println!("\nPostgreSQL left out: TEST_POSTGRES_URL is not a postgres:// spec"),
        }
        match admin_spec("TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/mysql") {
            Some(admin) => match my_conn(&admin) {
                Ok(mut conn) => {
                    conn.query_drop(format!("CREATE DATABASE {name} CHARACTER SET utf8mb4"))
                        .expect("create");
                    let mut spec = admin.clone();
                    spec.database = name.clone();
                    {
                        let store = open_store(&store_spec("mysql", &spec).parse().expect("spec"))
                            .expect("open");
                        let mut seed = users();
                        for token in &mut seed {
                            store.save_token(token).expect("seed");
                        }
                        let mut bare = BareMySql(my_conn(&spec).expect("connect"));
                        interleaved_comparison(
                            "MySqlStore",
                            "mysql (one connection, prepared)",
                            &mut bare,
                            store.as_ref(),
                            (rounds, per_round),
                            (60, 50),
                        );
                    }
                    conn.query_drop(format!("DROP DATABASE {name}"))
                        .expect("drop");
                }
                Err(error) => println!(
                    "\nMySQL left out: no server at {}: {error}",
                    StoreSpec::MySql(Box::new(admin))
                ),
            },
            None => println!("\nMySQL left out: TEST_MYSQL_URL is not a mysql:// spec"),
        }
    }
}

criterion_group! {
    name = benches;
    // Short runs: the whole bench takes about a minute on two cores.
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
        .without_plots();
    targets = pairs, finds
}
fn main() {
    benches();
    let mut baseline = Baseline::new(&users());
    let store = in_temp_dir(|dir| SqliteStore::open(dir.join("zohooauth.db")));
    interleaved_comparison(
        "SqliteStore(file)",
        "rusqlite (one connection, prepared)",
        &mut baseline,
        &store,
        (30, 2_000),
        (60, 50),
    );
    // Token encryption's cost: the encrypted SQLite store beside the plain one, alternating as above.
    let mut plain = StoreAsBare::new(in_temp_dir(|dir| {
        SqliteStore::open(dir.join("zohooauth.db"))
    }));
    interleaved_comparison(
        "EncryptedStore<SqliteStore(file)>",
        "SqliteStore(file)",
        &mut plain,
        &encrypted_sqlite_file(),
        (30, 2_000),
        (70, 70),
    );
    databases::compare(10, 500);
    Criterion::default().configure_from_args().final_summary();
}
