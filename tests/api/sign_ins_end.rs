//! A login in flight costs the server nothing until its callback, a callback is good once on every portal,
//! sign-ins end with their token (on every portal, and for good), and `tokens copy` carries the sign-ins over.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::StatusCode;
use url::Url;

use zylker_portal::cli::tokens::{TokensArgs, TokensCommand};
use zylker_portal::tokens::StoreSpec;

use crate::databases::{Server, TestDatabase};
use crate::fleet::database_of;
use crate::helpers::{ARJUN, Browser, PRIYA, TestApp, location, param};

/// The table where earlier versions put every login in flight.
const OLD_PENDING_LOGINS_TABLE: &str = "portal_pending_logins";

/// Rows of `table` in the app's SQLite file.
fn rows(app: &TestApp, table: &str) -> i64 {
    rusqlite::Connection::open(app.sqlite_file())
        .expect("open the store's file")
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
            row.get(0)
        })
        .expect("count")
}

/// Bytes of the store's file with its `-wal` and `-shm`.
fn store_bytes(app: &TestApp) -> u64 {
    let path = app.sqlite_file();
    ["", "-wal", "-shm"]
        .iter()
        .map(|suffix| {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            std::fs::metadata(name).map_or(0, |m| m.len())
        })
        .sum()
}

/// What `path` on `portal` answers a browser holding only the session cookie `cookie`.
async fn status_at(portal: &Url, cookie: &str, path: &str) -> StatusCode {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .get(portal.join(path).expect("url"))
        .header(
            reqwest::header::COOKIE,
            format!("{}={cookie}", zylker_portal::app::SESSION_COOKIE),
        )
        .send()
        .await
        .expect("the portal answers")
        .status()
}

/// Polls until `cookie` is refused at `portal` (sent to sign in: 303), for at most 3 s; how long it took.
async fn refused_within(portal: &Url, cookie: &str) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        if status_at(portal, cookie, "/crm/Leads").await == StatusCode::SEE_OTHER {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// Posts a form of the signed-in page's with its CSRF token; the redirect's path.
async fn post_signed_in(browser: &Browser, path: &str, extra: &[(&str, &str)]) -> String {
    let csrf = browser.csrf_token().await;
    let mut form = vec![("csrf_token", csrf.as_str())];
    form.extend_from_slice(extra);
    let response = browser.post_form(path, &form).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER, "{path} answered");
    location(&response).path().to_owned()
}

#[tokio::test]
async fn a_flood_of_anonymous_logins_grows_the_sqlite_store_by_less_than_a_megabyte() {
    let app = TestApp::spawn_on_sqlite().await;
    // A database an earlier version used: its table of logins in flight is left there, and stays empty.
    rusqlite::Connection::open(app.sqlite_file())
        .expect("open")
        .execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {OLD_PENDING_LOGINS_TABLE} (
                 id TEXT PRIMARY KEY NOT NULL, state TEXT NOT NULL, code_verifier TEXT NOT NULL,
                 consent INTEGER NOT NULL, expires_at INTEGER NOT NULL)"
        ))
        .expect("the earlier version's table");
    let before = store_bytes(&app);

    // 4,000 anonymous `/login`s, 32 at a time, each from a fresh client (no cookie to reuse).
    let url = app.url("/login");
    let answered: Vec<StatusCode> = futures_util::stream::iter(0..4_000)
        .map(|_| {
            let url = url.clone();
            async move {
                reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .expect("client")
                    .get(url)
                    .send()
                    .await
                    .expect("the portal answers")
                    .status()
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;

    assert!(answered.iter().all(|s| *s == StatusCode::SEE_OTHER));
    let grown = store_bytes(&app).saturating_sub(before);
    eprintln!("4,000 anonymous logins grew the store's files by {grown} bytes");
    assert!(grown < 1024 * 1024, "grew by {grown} bytes");
    assert_eq!(rows(&app, OLD_PENDING_LOGINS_TABLE), 0, "nothing written");
    assert_eq!(rows(&app, "portal_sign_ins"), 0);
}

#[tokio::test]
async fn a_used_callback_replayed_on_a_second_portal_is_refused() {
    let app = TestApp::spawn_on_sqlite().await;
    let (twin, twin_handle) = app.twin();
    let auth_url = app.start_login().await;
    let pre_callback = app.session_cookie().expect("the login in flight's cookie");
    let callback = app.consent(&auth_url, PRIYA, "accept").await;
    assert_eq!(location(&app.follow(&callback).await).path(), "/");
    let exchanges = app.counters().await.code_exchanges;

    // The cookie from before the callback, with a fresh code for the same state, at the other portal.
    let replay = app.browser_with_cookie(&pre_callback);
    let second = replay.consent(&auth_url, PRIYA, "accept").await;
    assert_eq!(param(&second, "state"), param(&callback, "state"));
    let at_twin = twin
        .join(&format!("/oauth/callback?{}", second.query().unwrap_or("")))
        .expect("url");
    let response = replay.client.get(at_twin).send().await.expect("twin");
    let status = response.status();
    let page = response.text().await.expect("page");

    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    assert!(page.contains("no login in progress"), "{page}");
    assert_eq!(
        app.counters().await.code_exchanges,
        exchanges,
        "no exchange"
    );
    twin_handle.stop(false).await;
}

#[tokio::test]
async fn logins_started_in_three_tabs_all_complete_and_a_fourth_crowds_out_the_first() {
    let app = TestApp::spawn().await;
    // Priya has consented before, so one round suffices for each tab.
    app.login_as(PRIYA).await;
    let mut tabs = Vec::new();
    for _ in 0..4 {
        let auth_url = app.start_login().await;
        tabs.push(app.consent(&auth_url, PRIYA, "accept").await);
    }

    let (status, page) = {
        let response = app.follow(&tabs[0]).await;
        (response.status(), response.text().await.expect("page"))
    };
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    assert!(page.contains("start the login again"), "{page}");
    for (n, callback) in tabs.iter().enumerate().skip(1).rev() {
        let response = app.follow(callback).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "tab {n}");
        assert_eq!(location(&response).path(), "/", "tab {n} signs in");
    }
    assert_eq!(app.get("/crm/Leads").await.status(), StatusCode::OK);
}

/// Priya in two browsers and Arjun in one, on a portal with a twin on the same SQLite file.
struct TwoBrowsers {
    app: TestApp,
    twin: Url,
    twin_handle: actix_web::dev::ServerHandle,
    /// Priya's second browser's cookie.
    other: String,
    /// Arjun's cookie.
    arjun: String,
}

impl TwoBrowsers {
    async fn start() -> TwoBrowsers {
        let app = TestApp::spawn_on_sqlite().await;
        let (twin, twin_handle) = app.twin();
        app.login_as(PRIYA).await;
        let second = app.new_browser();
        second.login_as(PRIYA).await;
        let other = second.session_cookie().expect("the other browser's cookie");
        let arjuns = app.new_browser();
        arjuns.login_as(ARJUN).await;
        let arjun = arjuns.session_cookie().expect("Arjun's cookie");
        for cookie in [&other, &arjun] {
            assert_eq!(
                status_at(&app.address, cookie, "/crm/Leads").await,
                StatusCode::OK
            );
            assert_eq!(status_at(&twin, cookie, "/crm/Leads").await, StatusCode::OK);
        }
        TwoBrowsers {
            app,
            twin,
            twin_handle,
            other,
            arjun,
        }
    }

    /// `cookie` is refused by both portals within the recheck interval and a read; the wait at the twin.
    async fn refused_everywhere(&self, cookie: &str) -> Duration {
        let here = refused_within(&self.app.address, cookie).await;
        let there = refused_within(&self.twin, cookie).await;
        assert!(here.is_some(), "refused by the portal it happened on");
        let there = there.expect("refused by the other portal");
        eprintln!("refused by the other portal after {} ms", there.as_millis());
        there
    }

    /// After `email` logs in again (a new token, under the id the deleted one had), `cookie` still opens
    /// nothing, on either portal.
    async fn stays_refused_after_a_new_login(&self, email: &str, cookie: &str, old_id: &str) {
        let again = self.app.new_browser();
        again.login_as(email).await;
        let token = self.app.stored_token_of(email).await.expect("a new token");
        eprintln!(
            "the new token's id: {:?} (the deleted one's: {old_id})",
            token.id
        );
        assert_eq!(again.get("/crm/Leads").await.status(), StatusCode::OK);
        for portal in [&self.app.address, &self.twin] {
            assert_eq!(
                status_at(portal, cookie, "/crm/Leads").await,
                StatusCode::SEE_OTHER,
                "the old cookie at {portal}"
            );
        }
    }
}

#[tokio::test]
async fn disconnecting_in_one_browser_signs_the_other_out_on_every_portal_for_good() {
    let fixture = TwoBrowsers::start().await;
    let old_id = fixture
        .app
        .stored_token_of(PRIYA)
        .await
        .and_then(|t| t.id)
        .expect("id");

    assert_eq!(post_signed_in(&fixture.app, "/disconnect", &[]).await, "/");

    assert_eq!(
        rows(&fixture.app, "portal_sign_ins"),
        1,
        "only Arjun's sign-in is left: Priya's other browser's ended with her token"
    );
    fixture.refused_everywhere(&fixture.other).await;
    assert_eq!(
        status_at(&fixture.twin, &fixture.arjun, "/crm/Leads").await,
        StatusCode::OK,
        "another user's sign-in stays"
    );
    fixture
        .stays_refused_after_a_new_login(PRIYA, &fixture.other, &old_id)
        .await;
    fixture.twin_handle.stop(false).await;
}

#[tokio::test]
async fn an_administrators_delete_ends_every_sign_in_of_that_token_on_every_portal_for_good() {
    let fixture = TwoBrowsers::start().await;
    let arjuns = fixture
        .app
        .stored_token_of(ARJUN)
        .await
        .expect("Arjun's token");
    let old_id = arjuns.id.clone().expect("id");

    let path = format!("/admin/tokens/{old_id}/delete");
    let user_name = arjuns.user_name.clone().expect("user name");
    assert_eq!(
        post_signed_in(&fixture.app, &path, &[("user_name", &user_name)]).await,
        "/admin/tokens"
    );

    assert_eq!(
        rows(&fixture.app, "portal_sign_ins"),
        2,
        "Priya's two sign-ins are left; Arjun's ended with his token"
    );
    fixture.refused_everywhere(&fixture.arjun).await;
    assert_eq!(
        status_at(&fixture.twin, &fixture.other, "/crm/Leads").await,
        StatusCode::OK,
        "the administrator's other browser stays signed in"
    );
    fixture
        .stays_refused_after_a_new_login(ARJUN, &fixture.arjun, &old_id)
        .await;
    fixture.twin_handle.stop(false).await;
}

#[tokio::test]
async fn an_administrators_delete_all_ends_every_sign_in_on_every_portal_for_good() {
    let fixture = TwoBrowsers::start().await;
    let old_id = fixture
        .app
        .stored_token_of(ARJUN)
        .await
        .and_then(|t| t.id)
        .expect("id");

    assert_eq!(
        post_signed_in(&fixture.app, "/admin/tokens/delete-all", &[]).await,
        "/"
    );

    assert_eq!(
        rows(&fixture.app, "portal_sign_ins"),
        0,
        "every sign-in ended with its token"
    );
    fixture.refused_everywhere(&fixture.arjun).await;
    fixture.refused_everywhere(&fixture.other).await;
    fixture
        .stays_refused_after_a_new_login(ARJUN, &fixture.arjun, &old_id)
        .await;
    fixture.twin_handle.stop(false).await;
}

#[tokio::test]
async fn a_cookie_of_a_token_deleted_outside_the_portal_never_opens_the_users_next_token() {
    let app = TestApp::spawn_on_sqlite().await;
    let arjuns = app.new_browser();
    arjuns.login_as(ARJUN).await;
    let old_cookie = arjuns.session_cookie().expect("Arjun's cookie");
    let old_id = app
        .stored_token_of(ARJUN)
        .await
        .and_then(|t| t.id)
        .expect("id");

    // As `zylker-portal tokens delete` or another program on the store would.
    app.delete_in_store(&old_id).await;
    let again = app.new_browser();
    again.login_as(ARJUN).await;
    let new_id = app
        .stored_token_of(ARJUN)
        .await
        .and_then(|t| t.id)
        .expect("id");
    assert_eq!(new_id, old_id, "the store gave the id again");

    assert_eq!(
        status_at(&app.address, &old_cookie, "/crm/Leads").await,
        StatusCode::SEE_OTHER
    );
    assert_eq!(again.get("/crm/Leads").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn tokens_copy_from_sqlite_to_postgres_keeps_people_signed_in() {
    let Some(database) =
        database_of(Server::Postgres).map(|database| DroppedOffTheRuntime(Some(database)))
    else {
        return;
    };
    let app = TestApp::spawn_on_sqlite().await;
    app.login_as(PRIYA).await;
    let cookie = app.session_cookie().expect("a session cookie");
    let from = format!("sqlite:{}", app.sqlite_file().display());
    let to = database.spec();

    let output = {
        let args = TokensArgs {
            store: StoreSpec::default(),
            token_encryption_keys: None,
            command: TokensCommand::Copy {
                from: from.parse().expect("spec"),
                to: to.parse().expect("spec"),
            },
        };
        tokio::task::spawn_blocking(move || {
            let mut output = Vec::new();
            args.run_with(&mut std::io::empty(), &mut output)
                .expect("the copy succeeds");
            String::from_utf8(output).expect("text")
        })
        .await
        .expect("join")
    };
    assert!(output.contains("copied 1 sign-ins"), "{output}");

    let (on_postgres, handle) = app.portal_on(&to.parse().expect("spec")).await;
    assert_eq!(
        status_at(&on_postgres, &cookie, "/crm/Leads").await,
        StatusCode::OK,
        "the same cookie is signed in on the portal on PostgreSQL"
    );
    handle.stop(false).await;
}

/// A test database dropped on a thread of its own, also when the test fails: dropping it blocks, which the
/// runtime's thread must not.
struct DroppedOffTheRuntime(Option<TestDatabase>);

impl DroppedOffTheRuntime {
    fn spec(&self) -> String {
        self.0.as_ref().map(TestDatabase::spec).unwrap_or_default()
    }
}

impl Drop for DroppedOffTheRuntime {
    fn drop(&mut self) {
        let database = self.0.take();
        let _ = std::thread::spawn(move || drop(database)).join();
    }
}
