//! A portal killed with SIGKILL at random moments under load, and restarted on the same store each time: every
//! login whose answer reached its browser survives, on every persistent store.
//!
//! Several browsers log in, open pages, sign out and log in again at once, Zoho ends every access token now
//! and then (so pages refresh), and with a SQLite file Debian's `sqlite3` shell reads it the whole time. After each
//! restart, every browser whose last login was answered and that has not tried to sign out since opens the
//! Leads page with its cookie: its token row and its sign-in both outlived the kill. The browsers' choices and
//! the moments of the kills come from a random generator with a fixed seed, printed at the start; set
//! `ZYLKER_CRASH_SEED` to replay another.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use serde_json::json;
use url::Url;

use crate::databases::Server;
use crate::fleet::{Fleet, database_of, sandbox_control, sign_in};
use crate::helpers::{ARJUN, PRIYA, SOFIA};
use crate::sqlite_file::{JarBrowser, sign_out, sqlite3_shell};

/// How many times the portal is killed (and restarted) in one run.
const KILLS: usize = 20;
/// Browsers working at once; they take turns with the personas whose profile opens Leads.
const BROWSERS: usize = 6;
const EMAILS: [&str; 3] = [PRIYA, ARJUN, SOFIA];
/// The generator's seed when `ZYLKER_CRASH_SEED` does not give one.
const DEFAULT_SEED: u64 = 20_190_192;
/// How long the load runs before a kill: a moment drawn in this range (milliseconds).
const LOAD_MS: std::ops::Range<u64> = 150..1_500;
/// How long a verifying page may keep failing other than with a refusal (a restart's first pages, a refresh
/// lease the killed portal held lapsing) before the test fails: a guard, not a measurement.
const VERIFY_GUARD: Duration = Duration::from_secs(40);

/// What a browser knows of its sign-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    /// Its last login's answer reached it, and it has not tried to sign out since: its cookie must open pages.
    SignedIn,
    SignedOut,
    /// A login or sign-out whose answer was lost (the portal died meanwhile): nothing is promised.
    Unsure,
}

struct Visitor {
    browser: JarBrowser,
    email: &'static str,
    known: Known,
}

/// What the browsers did, for the summary line.
#[derive(Default)]
struct Tally {
    answered_logins: AtomicU64,
    sign_outs: AtomicU64,
    pages: AtomicU64,
}

/// One browser's load until `stop`: log in when not signed in; else mostly pages, sometimes a sign-out or a new
/// login. Its choices come from `rng`.
async fn browse(
    visitor: &mut Visitor,
    portal: &Url,
    mut rng: StdRng,
    stop: &AtomicBool,
    tally: &Tally,
) {
    let client = visitor.browser.client.clone();
    while !stop.load(Ordering::Relaxed) {
        let roll = rng.random_range(0..100);
        if visitor.known == Known::SignedIn && roll < 65 {
            if let Ok(response) = client
                .get(portal.join("/crm/Leads").expect("url"))
                .send()
                .await
            {
                let _ = response.bytes().await;
                tally.pages.fetch_add(1, Ordering::Relaxed);
            }
        } else if visitor.known == Known::SignedIn && roll < 85 {
            visitor.known = Known::Unsure;
            if let Ok(StatusCode::SEE_OTHER) = sign_out(&client, portal).await {
                visitor.known = Known::SignedOut;
                tally.sign_outs.fetch_add(1, Ordering::Relaxed);
            }
        } else {
            visitor.known = Known::Unsure;
            if let Ok(true) = sign_in(&client, portal, visitor.email).await {
                visitor.known = Known::SignedIn;
                tally.answered_logins.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Ends every access token at the sandbox `after` the load began, so that the next pages refresh. Once a
/// round, early: a kill in the middle of a refresh leaves the killed portal's refresh lease to lapse (15 s)
/// before the restarted portal refreshes that token, which is right but slow, so it is made rare.
async fn end_access_tokens(sandbox: Url, after: Duration) {
    tokio::time::sleep(after).await;
    sandbox_control(&sandbox, "expire-access-tokens", json!({})).await;
}

/// Another program on the SQLite file until `stop`: Debian's `sqlite3` shell (the system's SQLite, older than
/// the portal's) opens the file, reads, and closes it, over and over.
async fn read_the_file_beside(path: PathBuf, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        let path = path.clone();
        tokio::task::spawn_blocking(move || {
            sqlite3_shell(&path, "SELECT count(*) FROM sqlite_schema")
        })
        .await
        .expect("the shell's task");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Moves the sandbox's clock past Zoho's ten-minute window of refreshes, so that a run's many refreshes are
/// never throttled (a throttled refresh would fail a page for a reason that is not the crash's).
async fn start_a_new_refresh_window(sandbox: &Url) {
    sandbox_control(sandbox, "advance-clock", json!({"seconds": 601})).await;
}

/// Whether `visitor`'s cookie opens the Leads page: polled while the page fails otherwise than by refusing the
/// cookie; `Err` with what it answered last.
async fn opens_the_leads(visitor: &Visitor, portal: &Url) -> Result<(), String> {
    let started = Instant::now();
    loop {
        let answer = visitor
            .browser
            .client
            .get(portal.join("/crm/Leads").expect("url"))
            .send()
            .await;
        let last = match answer {
            Ok(response) if response.status() == StatusCode::OK => return Ok(()),
            Ok(response) if response.status() == StatusCode::SEE_OTHER => {
                return Err("sent to sign in: its sign-in (or its token) is gone".to_owned());
            }
            Ok(response) => format!("{}", response.status()),
            Err(error) => error.to_string(),
        };
        if started.elapsed() > VERIFY_GUARD {
            return Err(format!("still failing after {VERIFY_GUARD:?}: {last}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The run on one store: `neighbour` is a SQLite file another program reads meanwhile.
async fn kill_under_load(mut fleet: Fleet, kind: &str, neighbour: Option<PathBuf>) {
    let seed = std::env::var("ZYLKER_CRASH_SEED")
        .ok()
        .and_then(|given| given.parse().ok())
        .unwrap_or(DEFAULT_SEED);
    eprintln!(
        "{kind}: {KILLS} kills under load, seed {seed} (replay with ZYLKER_CRASH_SEED={seed})"
    );
    let mut rng = StdRng::seed_from_u64(seed);
    let portal = fleet.portal(0);
    let tally = Arc::new(Tally::default());
    let mut visitors: Vec<Visitor> = (0..BROWSERS)
        .map(|n| Visitor {
            browser: JarBrowser::new(),
            email: EMAILS[n % EMAILS.len()],
            known: Known::SignedOut,
        })
        .collect();
    let mut failures = Vec::new();
    let mut verified = 0;
    let started = Instant::now();
    for round in 0..KILLS {
        let stop = Arc::new(AtomicBool::new(false));
        let load = Duration::from_millis(rng.random_range(LOAD_MS));
        let zoho = tokio::spawn(end_access_tokens(
            fleet.sandbox_url.clone(),
            load.mul_f64(rng.random_range(0.0..0.4)),
        ));
        let reader = neighbour
            .clone()
            .map(|path| tokio::spawn(read_the_file_beside(path, stop.clone())));
        let browsing: Vec<_> = visitors
            .drain(..)
            .map(|mut visitor| {
                let (portal, stop, tally) = (portal.clone(), stop.clone(), tally.clone());
                let choices = StdRng::seed_from_u64(rng.random());
                tokio::spawn(async move {
                    browse(&mut visitor, &portal, choices, &stop, &tally).await;
                    visitor
                })
            })
            .collect();

        tokio::time::sleep(load).await;
        fleet.kill_portal(0);
        stop.store(true, Ordering::Relaxed);
        for task in browsing {
            visitors.push(task.await.expect("a browser's task"));
        }
        zoho.await.expect("the token ender");
        if let Some(reader) = reader {
            reader.await.expect("the reader");
        }

        start_a_new_refresh_window(&fleet.sandbox_url).await;
        let restarting = Instant::now();
        fleet.start_portal(0).await;
        let verifying = Instant::now();
        for (n, visitor) in visitors.iter().enumerate() {
            if visitor.known != Known::SignedIn {
                continue;
            }
            verified += 1;
            if let Err(why) = opens_the_leads(visitor, &portal).await {
                failures.push(format!(
                    "kill {round}: browser {n} ({}), whose login was answered: {why}",
                    visitor.email
                ));
            }
        }
        eprintln!(
            "{kind}: kill {round} after {load:?} of load; restarted in {:?}, checked in {:?}",
            verifying - restarting,
            verifying.elapsed()
        );
    }
    eprintln!(
        "{kind}: {KILLS} kills in {:?}: {} answered logins, {} sign-outs, {} pages; {verified} signed-in \
         browsers checked after the restarts",
        started.elapsed(),
        tally.answered_logins.load(Ordering::Relaxed),
        tally.sign_outs.load(Ordering::Relaxed),
        tally.pages.load(Ordering::Relaxed),
    );
    assert!(
        verified > 0,
        "no login was answered before a kill: nothing was checked"
    );
    assert!(
        failures.is_empty(),
        "{kind}, seed {seed}: answered logins lost to kill -9:\n{}",
        failures.join("\n")
    );
}

#[tokio::test]
async fn a_portal_on_a_sqlite_file_killed_under_load_keeps_every_answered_login() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("zohooauth.db");
    let fleet = Fleet::start_on(format!("sqlite:{}", path.display()), None, 1).await;
    kill_under_load(fleet, "sqlite", Some(path)).await;
}

#[tokio::test]
async fn a_portal_on_a_csv_file_killed_under_load_keeps_every_answered_login() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tokens.csv");
    let fleet = Fleet::start_on(format!("file:{}", path.display()), None, 1).await;
    let sign_ins = zylker_portal::tokens::sign_ins_file_beside(&path);
    kill_under_load(fleet, "file", Some(sign_ins)).await;
}

#[tokio::test]
async fn a_portal_on_postgres_killed_under_load_keeps_every_answered_login() {
    let Some(database) = database_of(Server::Postgres) else {
        return;
    };
    kill_under_load(Fleet::start(database, 1).await, "postgres", None).await;
}

#[tokio::test]
async fn a_portal_on_mysql_killed_under_load_keeps_every_answered_login() {
    let Some(database) = database_of(Server::MySql) else {
        return;
    };
    kill_under_load(Fleet::start(database, 1).await, "mysql", None).await;
}
