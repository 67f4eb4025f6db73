//! `cargo bench --bench stores`: save+find pairs and finds per second for every store, with 50 users, beside a
//! bare rusqlite connection doing the same UPDATE+SELECT (the baseline SqliteStore is held to).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group};
use rusqlite::{Connection, params};
use zylker_portal::tokens::conformance::{in_temp_dir, sample_token};
use zylker_portal::tokens::{
    FileStore, ListStore, OAuthToken, Secret, SqliteStore, TokenStore, exposed,
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

/// Criterion measures one store after another, and on a shared machine the load changes in between. This
/// comparison alternates the baseline and `SqliteStore` in short rounds, so both see the same load, and
/// prints the ratios the targets are about (pairs >= 60%, finds >= 50% of the baseline).
fn interleaved_comparison() {
    const ROUNDS: usize = 30;
    const PER_ROUND: usize = 2_000;
    let mut tokens = users();
    let baseline = Baseline::new(&tokens);
    let store = in_temp_dir(|dir| SqliteStore::open(dir.join("zohooauth.db")));
    let mut store_tokens = users();
    for token in &mut store_tokens {
        store.save_token(token).expect("populate");
    }
    let partials: Vec<OAuthToken> = store_tokens.iter().map(partial).collect();
    let names: Vec<String> = tokens.iter().filter_map(|t| t.user_name.clone()).collect();
    let (mut baseline_pairs, mut store_pairs) = (Duration::ZERO, Duration::ZERO);
    let (mut baseline_finds, mut store_finds) = (Duration::ZERO, Duration::ZERO);
    let mut n = 0usize;
    for _ in 0..ROUNDS {
        let start = Instant::now();
        for _ in 0..PER_ROUND {
            n += 1;
            let token = &mut tokens[n % USERS];
            token.access_token = Some(Secret::from(format!("1000.access.{n}")));
            baseline.update(token);
            black_box(baseline.select(&names[n % USERS]));
        }
        baseline_pairs += start.elapsed();
        let start = Instant::now();
        for _ in 0..PER_ROUND {
            n += 1;
            let token = &mut store_tokens[n % USERS];
            token.access_token = Some(Secret::from(format!("1000.access.{n}")));
            store.save_token(token).expect("save");
            black_box(store.find_token(&partials[n % USERS]).expect("find"));
        }
        store_pairs += start.elapsed();
        let start = Instant::now();
        for _ in 0..PER_ROUND {
            n += 1;
            black_box(baseline.select(&names[n % USERS]));
        }
        baseline_finds += start.elapsed();
        let start = Instant::now();
        for _ in 0..PER_ROUND {
            n += 1;
            black_box(store.find_token(&partials[n % USERS]).expect("find"));
        }
        store_finds += start.elapsed();
    }
    let rate = |d: Duration| (ROUNDS * PER_ROUND) as f64 / d.as_secs_f64();
    let (bp, sp, bf, sf) = (
        rate(baseline_pairs),
        rate(store_pairs),
        rate(baseline_finds),
        rate(store_finds),
    );
    println!(
        "\ninterleaved, {USERS} users, {} operations each:",
        ROUNDS * PER_ROUND
    );
    println!(
        "  pairs/s  baseline {bp:>9.0}  SqliteStore(file) {sp:>9.0}  = {:>5.1}% (target >= 60%)",
        100.0 * sp / bp
    );
    println!(
        "  finds/s  baseline {bf:>9.0}  SqliteStore(file) {sf:>9.0}  = {:>5.1}% (target >= 50%)",
        100.0 * sf / bf
    );
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
    interleaved_comparison();
    Criterion::default().configure_from_args().final_summary();
}
