//! A portal's SQLite file shared with other programs, as a user who shares `zohooauth.db` with the Zoho Python
//! SDK has it: `serve` processes on the file while the SDK's store and Debian's `sqlite3` shell open it, read it
//! and close it again. Every change a portal makes reaches them, and survives `kill -9`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use url::Url;

use crate::fleet::{Fleet, sandbox_control};
use crate::helpers::{ARJUN, PRIYA};
use crate::zoho_sdk::Sdk;

/// How long a poll waits for a change before the test fails: a guard against waiting forever, not a
/// measurement (the time each change took is printed).
const POLL_GUARD: Duration = Duration::from_secs(30);

/// The other programs on the file. Each call opens the file, reads, and closes it: the SDK's custom store on
/// the seed's table (the seed: `CustomStoreSQLite`, the sample store of Zoho's Kaizen #192 article, "Custom token
/// persistence"; Python's `sqlite3` module) and Debian's `sqlite3` shell. Both use the system's SQLite
/// (3.40 on Debian 12), older than the portal's: an older SQLite that closes the file while the portal holds no
/// lock on it deletes the `-wal` the portal writes into (newer ones are more careful).
struct Neighbours {
    /// `None` with `ZYLKER_SKIP_DB_TESTS=1`: the SDK comes from PyPI, as for the database tests it is left out
    /// with; the shell alone still shares the file.
    sdk: Option<Sdk>,
    path: PathBuf,
}

impl Neighbours {
    fn new(path: &Path) -> Neighbours {
        Neighbours {
            sdk: (!crate::databases::skipped()).then(|| Sdk::on_sqlite(path)),
            path: path.to_owned(),
        }
    }

    /// Runs `sql` in the `sqlite3` shell on the file.
    fn shell(&self, sql: &str) -> String {
        sqlite3_shell(&self.path, sql)
    }

    /// The access token the shell reads for the user whose name starts with `email` (the portal's user names
    /// are `email:org_id`).
    fn shell_access_token(&self, email: &str) -> Option<String> {
        self.shell("SELECT user_name, access_token FROM oauthtoken ORDER BY rowid")
            .lines()
            .filter_map(|line| line.split_once('|'))
            .find(|(user, _)| user.starts_with(&format!("{email}:")))
            .map(|(_, token)| token.to_owned())
    }

    /// The user name of `email`'s row as the shell reads it.
    fn shell_user_name(&self, email: &str) -> Option<String> {
        self.shell("SELECT user_name FROM oauthtoken ORDER BY rowid")
            .lines()
            .find(|user| user.starts_with(&format!("{email}:")))
            .map(str::to_owned)
    }

    /// Whether the SDK's store finds `user_name` with `access_token` (always, when the SDK is left out).
    fn sdk_sees(&self, user_name: &str, access_token: Option<&str>) -> bool {
        self.sdk.as_ref().is_none_or(|sdk| {
            sdk.find_by_user_name(user_name)["access_token"].as_str() == access_token
        })
    }

    fn shell_sign_ins(&self) -> u64 {
        self.shell(&format!(
            "SELECT count(*) FROM {}",
            zylker_portal::tokens::SIGN_INS_TABLE
        ))
        .trim()
        .parse()
        .expect("a count")
    }

    fn shell_rows(&self) -> u64 {
        self.shell("SELECT count(*) FROM oauthtoken")
            .trim()
            .parse()
            .expect("a count")
    }

    /// Both programs read the file once, as they do all day beside a running portal.
    fn read_once(&self) {
        self.shell_rows();
        if let Some(sdk) = &self.sdk {
            sdk.run("get_tokens", json!({}));
        }
    }

    /// `PRAGMA integrity_check` in the shell and in the portal's own SQLite.
    fn assert_intact(&self) {
        assert_eq!(self.shell("PRAGMA integrity_check").trim(), "ok");
        let ours: String = rusqlite::Connection::open(&self.path)
            .expect("open")
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .expect("integrity_check");
        assert_eq!(ours, "ok");
    }
}

/// Runs `sql` in Debian's `sqlite3` shell on the file at `path` (which opens the file, runs it, and closes it);
/// its output, one row a line, columns split by `|`.
pub(crate) fn sqlite3_shell(path: &Path, sql: &str) -> String {
    let output = Command::new("sqlite3")
        // Waits for a lock as the portal's connections do, instead of failing at once.
        .args(["-cmd", ".timeout 5000"])
        .arg(path)
        .arg(sql)
        .output()
        .unwrap_or_else(|error| {
            panic!(
                "cannot run Debian's sqlite3 shell ({error}): this test needs it (apt-get install sqlite3; \
                 .ci/run installs it)"
            )
        });
    assert!(
        output.status.success(),
        "sqlite3 {sql:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("text")
}

/// Polls `seen` until it holds; fails the test naming `what` after [`POLL_GUARD`]. Prints how long it took and
/// in how many reads (one: the first read after the change saw it).
async fn until(what: &str, mut seen: impl FnMut() -> bool) {
    let started = Instant::now();
    for reads in 1.. {
        if seen() {
            eprintln!(
                "{what}: seen after {:?}, read {reads} time(s)",
                started.elapsed()
            );
            return;
        }
        assert!(
            started.elapsed() < POLL_GUARD,
            "{what}: never seen by the other programs on the file"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A browser: its own cookie jar (which a thief may copy), no redirects followed.
pub(crate) struct JarBrowser {
    pub(crate) client: reqwest::Client,
    jar: Arc<reqwest::cookie::Jar>,
}

impl JarBrowser {
    pub(crate) fn new() -> JarBrowser {
        let jar = Arc::new(reqwest::cookie::Jar::default());
        let client = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        JarBrowser { client, jar }
    }

    /// The `Cookie` header this browser sends to `portal`.
    fn cookie(&self, portal: &Url) -> String {
        reqwest::cookie::CookieStore::cookies(self.jar.as_ref(), portal)
            .expect("a session cookie")
            .to_str()
            .expect("text")
            .to_owned()
    }
}

async fn log_in(browser: &reqwest::Client, portal: &Url, email: &str) {
    let signed_in = crate::fleet::sign_in(browser, portal, email)
        .await
        .expect("the portal answers");
    assert!(signed_in, "{email} logged in through {portal}");
}

/// Logs `browser` in as `email` at `portal`, then waits until the shell reads the user's row and `sign_ins`
/// sign-ins in all, and the SDK's store finds the row with the access token the shell reads; returns the row's
/// user name (`email:org_id`).
async fn log_in_and_wait_for_the_neighbours(
    neighbours: &Neighbours,
    browser: &JarBrowser,
    portal: &Url,
    email: &str,
    sign_ins: u64,
) -> String {
    log_in(&browser.client, portal, email).await;
    until(
        &format!("{email}'s row and {sign_ins} sign-in(s) in the shell"),
        || neighbours.shell_user_name(email).is_some() && neighbours.shell_sign_ins() == sign_ins,
    )
    .await;
    let user_name = neighbours.shell_user_name(email).expect("a row");
    until(&format!("{email}'s token through the SDK's store"), || {
        neighbours.sdk_sees(&user_name, neighbours.shell_access_token(email).as_deref())
    })
    .await;
    user_name
}

/// The Leads page's status for `browser` at `portal`; with 200 its body shows the records table.
async fn leads_status(browser: &reqwest::Client, portal: &Url) -> StatusCode {
    let response = browser
        .get(portal.join("/crm/Leads").expect("url"))
        .send()
        .await
        .expect("the portal answers");
    let status = response.status();
    if status == StatusCode::OK {
        let body = response.text().await.expect("page");
        assert!(body.contains("<h1>Leads</h1>"), "{body}");
    }
    status
}

/// Signs `browser` out at `portal` (the CSRF token from its landing page, then `POST /logout`).
pub(crate) async fn sign_out(
    browser: &reqwest::Client,
    portal: &Url,
) -> Result<StatusCode, reqwest::Error> {
    let landing = browser.get(portal.clone()).send().await?.text().await?;
    let csrf = crate::helpers::csrf_from(&landing).unwrap_or_default();
    let response = browser
        .post(portal.join("/logout").expect("url"))
        .form(&[("csrf_token", csrf)])
        .send()
        .await?;
    Ok(response.status())
}

/// Makes every access token the sandbox issued expire there: the next CRM call a portal makes gets 401 and
/// refreshes.
async fn expire_access_tokens_at_zoho(sandbox: &Url) {
    sandbox_control(sandbox, "expire-access-tokens", json!({})).await;
}

fn store_file(dir: &tempfile::TempDir) -> (PathBuf, String) {
    let path = dir.path().join("zohooauth.db");
    let spec = format!("sqlite:{}", path.display());
    (path, spec)
}

/// One `serve` process on the file; the SDK's store and the `sqlite3` shell read it beside it. Logins, a
/// refresh and a sign-out through the portal each reach both; after `kill -9` every row and sign-in is still
/// in the file, which is intact, and the browser's cookie opens the records page of a portal restarted on it.
#[tokio::test]
async fn a_portal_sharing_its_sqlite_file_with_the_sdk_and_the_sqlite3_shell_loses_nothing_at_kill_9()
 {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, spec) = store_file(&dir);
    let mut fleet = Fleet::start_on(spec, None, 1).await;
    let portal = fleet.portal(0);
    let neighbours = Neighbours::new(&path);
    neighbours.read_once();

    let priya = JarBrowser::new();
    let priya_user =
        log_in_and_wait_for_the_neighbours(&neighbours, &priya, &portal, PRIYA, 1).await;
    let first_token = neighbours.shell_access_token(PRIYA);
    let arjun = JarBrowser::new();
    log_in_and_wait_for_the_neighbours(&neighbours, &arjun, &portal, ARJUN, 2).await;

    // A refresh: Zoho ends the access tokens; Priya's next page refreshes hers and stores the new one.
    expire_access_tokens_at_zoho(&fleet.sandbox_url).await;
    assert_eq!(leads_status(&priya.client, &portal).await, StatusCode::OK);
    until("Priya's refreshed token in the shell and the SDK", || {
        let token = neighbours.shell_access_token(PRIYA);
        token != first_token && neighbours.sdk_sees(&priya_user, token.as_deref())
    })
    .await;
    let refreshed = neighbours.shell_access_token(PRIYA);

    assert_eq!(
        sign_out(&arjun.client, &portal).await.expect("answered"),
        StatusCode::SEE_OTHER
    );
    until("Arjun's sign-out in the shell", || {
        neighbours.shell_sign_ins() == 1
    })
    .await;

    fleet.kill_portal(0);

    assert_eq!(neighbours.shell_rows(), 2, "both rows survive kill -9");
    assert_eq!(neighbours.shell_sign_ins(), 1, "Priya's sign-in survives");
    assert_eq!(neighbours.shell_access_token(PRIYA), refreshed);
    assert!(neighbours.sdk_sees(&priya_user, refreshed.as_deref()));
    neighbours.assert_intact();
    fleet.start_portal(0).await;
    assert_eq!(
        leads_status(&priya.client, &portal).await,
        StatusCode::OK,
        "Priya's cookie opens the records page after the restart"
    );
    assert_eq!(
        leads_status(&arjun.client, &portal).await,
        StatusCode::SEE_OTHER,
        "Arjun's signed-out cookie stays refused"
    );
    neighbours.assert_intact();
}

/// Two `serve` processes on one file beside the SDK's store and the `sqlite3` shell; one is stopped (SIGTERM, as
/// an operator restarts it) while the other goes on, and started again. What either portal writes reaches the
/// other programs and the other portal, the stopped portal's exit takes nothing with it, and after `kill -9` of
/// both the file holds every row and sign-in.
#[tokio::test]
async fn two_portals_on_one_sqlite_file_one_restarted_share_every_change_with_the_sdk_and_the_shell()
 {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, spec) = store_file(&dir);
    let mut fleet = Fleet::start_on(spec, None, 2).await;
    let (first, second) = (fleet.portal(0), fleet.portal(1));
    let neighbours = Neighbours::new(&path);
    neighbours.read_once();

    let priya = JarBrowser::new();
    log_in_and_wait_for_the_neighbours(&neighbours, &priya, &first, PRIYA, 1).await;
    assert_eq!(leads_status(&priya.client, &second).await, StatusCode::OK);

    // The second portal stops while the first goes on: its exit closes its connections to the file.
    fleet.stop_portal(1);
    neighbours.read_once();
    let arjun = JarBrowser::new();
    let arjun_user =
        log_in_and_wait_for_the_neighbours(&neighbours, &arjun, &first, ARJUN, 2).await;

    fleet.start_portal(1).await;
    assert_eq!(
        leads_status(&arjun.client, &second).await,
        StatusCode::OK,
        "the restarted portal reads the sign-in the other made while it was down"
    );

    // A refresh through the restarted portal reaches the other programs and the first portal.
    let before = neighbours.shell_access_token(ARJUN);
    expire_access_tokens_at_zoho(&fleet.sandbox_url).await;
    assert_eq!(leads_status(&arjun.client, &second).await, StatusCode::OK);
    until("Arjun's refreshed token in the shell and the SDK", || {
        let token = neighbours.shell_access_token(ARJUN);
        token != before && neighbours.sdk_sees(&arjun_user, token.as_deref())
    })
    .await;
    assert_eq!(leads_status(&arjun.client, &first).await, StatusCode::OK);

    // Priya signs out on the restarted portal: the first refuses her cookie, the shell sees one sign-in left.
    let priya_cookie = priya.cookie(&first);
    assert_eq!(
        sign_out(&priya.client, &second).await.expect("answered"),
        StatusCode::SEE_OTHER
    );
    until("Priya's sign-out in the shell", || {
        neighbours.shell_sign_ins() == 1
    })
    .await;
    let stolen = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let started = Instant::now();
    loop {
        let status = stolen
            .get(first.join("/crm/Leads").expect("url"))
            .header(reqwest::header::COOKIE, &priya_cookie)
            .send()
            .await
            .expect("page")
            .status();
        if status == StatusCode::SEE_OTHER {
            eprintln!(
                "the first portal refused the signed-out cookie after {:?}",
                started.elapsed()
            );
            break;
        }
        assert!(
            started.elapsed() < POLL_GUARD,
            "the first portal still takes the signed-out cookie: {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let refreshed = neighbours.shell_access_token(ARJUN);
    fleet.kill_portal(0);
    fleet.kill_portal(1);

    assert_eq!(neighbours.shell_rows(), 2, "both rows survive kill -9");
    assert_eq!(neighbours.shell_sign_ins(), 1, "Arjun's sign-in survives");
    assert!(neighbours.sdk_sees(&arjun_user, refreshed.as_deref()));
    neighbours.assert_intact();
    fleet.start_portal(0).await;
    assert_eq!(leads_status(&arjun.client, &first).await, StatusCode::OK);
    assert_eq!(
        leads_status(&priya.client, &first).await,
        StatusCode::SEE_OTHER
    );
    neighbours.assert_intact();
}
