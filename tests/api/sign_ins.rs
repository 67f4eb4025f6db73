//! Sign-ins kept on the server: a cookie is refused by every portal on the store once its sign-in has ended,
//! across restarts and other portals; a login in flight is used once; old records are purged.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use zylker_portal::tokens::{CONSUMED_LOGINS_TABLE, SIGN_INS_TABLE};

use crate::helpers::{
    ARJUN, Browser, PRIYA, StoreChoice, TestApp, TestAppOptions, location, param,
};

/// Signs `browser` out through the form, as a person does.
async fn sign_out(browser: &Browser) {
    let csrf = browser.csrf_token().await;
    let response = browser.post_form("/logout", &[("csrf_token", &csrf)]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER, "signed out");
}

/// Rows in one of the portal's tables of the SQLite store.
fn rows(app: &TestApp, table: &str) -> i64 {
    rusqlite::Connection::open(app.sqlite_file())
        .expect("open the store's file")
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
            row.get(0)
        })
        .expect("count")
}

#[tokio::test]
async fn a_signed_out_cookie_stays_refused_after_a_restart_on_the_csv_file_store() {
    let app = TestApp::spawn_with(TestAppOptions {
        store: StoreChoice::CsvFile,
        ..TestAppOptions::default()
    })
    .await;
    app.login_as(PRIYA).await;
    let copied = app.session_cookie().expect("a session cookie");
    sign_out(&app).await;

    let app = app.restart().await;
    let (status, page) = app
        .browser_with_cookie(&copied)
        .get_text("/crm/Leads")
        .await;

    assert_eq!(
        status,
        StatusCode::SEE_OTHER,
        "the copy is refused: sent to sign in"
    );
    assert!(!page.contains("Nikhil"), "no CRM data");
    assert!(
        app.stored_token_of(PRIYA).await.is_some(),
        "signing out keeps the token"
    );
}

#[tokio::test]
async fn a_sign_in_on_the_csv_file_store_outlives_a_restart() {
    let app = TestApp::spawn_with(TestAppOptions {
        store: StoreChoice::CsvFile,
        ..TestAppOptions::default()
    })
    .await;
    app.login_as(PRIYA).await;

    let app = app.restart().await;

    assert_eq!(app.get_text("/crm/Leads").await.0, StatusCode::OK);
}

#[tokio::test]
async fn logging_in_as_another_user_in_the_same_browser_ends_the_first_sign_in() {
    let app = TestApp::spawn().await;
    app.login_as(PRIYA).await;
    let administrators = app.session_cookie().expect("a session cookie");
    let copy = app.browser_with_cookie(&administrators);
    assert_eq!(
        copy.get("/admin/tokens").await.status(),
        StatusCode::OK,
        "the copy opens the administrators' page while Priya is signed in"
    );

    app.login_as(ARJUN).await;

    let refused = copy.get("/admin/tokens").await;
    assert_eq!(refused.status(), StatusCode::SEE_OTHER, "sent to sign in");
    assert_eq!(location(&refused).path(), "/sign-in");
    assert_eq!(
        app.get("/crm/Leads").await.status(),
        StatusCode::OK,
        "Arjun's own sign-in works"
    );
}

#[tokio::test]
async fn replaying_the_pre_callback_cookie_finds_no_login_in_progress_and_stores_nothing() {
    let app = TestApp::spawn_on_sqlite().await;
    let auth_url = app.start_login().await;
    let pre_callback = app.session_cookie().expect("the login in flight's cookie");
    let callback = app.consent(&auth_url, PRIYA, "accept").await;
    let response = app.follow(&callback).await;
    assert_eq!(location(&response).path(), "/", "the first login completes");
    let (tokens, sign_ins) = (app.stored_tokens().await, rows(&app, SIGN_INS_TABLE));
    let exchanges = app.counters().await.code_exchanges;

    // Someone with the cookie from before the callback asks Zoho again with the same state and PKCE challenge,
    // and comes back with a fresh, valid code.
    let replay = app.browser_with_cookie(&pre_callback);
    let second = replay.consent(&auth_url, PRIYA, "accept").await;
    assert_eq!(param(&second, "state"), param(&callback, "state"));
    assert_ne!(param(&second, "code"), param(&callback, "code"));
    let (status, page) = {
        let response = replay.follow(&second).await;
        (response.status(), response.text().await.expect("page"))
    };

    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    assert!(page.contains("no login in progress"), "{page}");
    assert_eq!(
        app.counters().await.code_exchanges,
        exchanges,
        "the code never reaches Zoho"
    );
    assert_eq!(app.stored_tokens().await, tokens, "no token is stored");
    assert_eq!(rows(&app, SIGN_INS_TABLE), sign_ins, "no sign-in is made");
    assert_eq!(
        rows(&app, CONSUMED_LOGINS_TABLE),
        1,
        "the one login that came back is recorded as used"
    );
}

#[tokio::test]
async fn a_sign_out_on_one_portal_is_refused_by_another_on_the_same_sqlite_file_within_a_second() {
    let app = TestApp::spawn_on_sqlite().await;
    let (twin, twin_handle) = app.twin();
    app.login_as(PRIYA).await;
    let on_twin = app.browser_with_cookie(&app.session_cookie().expect("a session cookie"));
    let on_twin_leads = || {
        on_twin
            .client
            .get(twin.join("/crm/Leads").expect("url"))
            .send()
    };
    // Read just now: the twin trusts that read as long as it ever does.
    assert_eq!(
        on_twin_leads().await.expect("twin").status(),
        StatusCode::OK,
        "one sign-in serves on both"
    );

    sign_out(&app).await;
    let signed_out = Instant::now();
    let mut refused_after = None;
    while signed_out.elapsed() < Duration::from_secs(5) {
        if on_twin_leads().await.expect("twin").status() == StatusCode::SEE_OTHER {
            refused_after = Some(signed_out.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let delay = refused_after.expect("the twin refuses the cookie within 5 s");
    eprintln!(
        "sign-out propagation: refused by the twin {} ms after the sign-out answered",
        delay.as_millis()
    );
    twin_handle.stop(false).await;
}

#[tokio::test]
async fn records_past_their_lifetime_are_purged_and_live_ones_kept() {
    let app = TestApp::spawn_on_sqlite().await;
    app.login_as(PRIYA).await;
    {
        // Left behind long ago: a sign-in that lapsed and a login used long ago.
        let database = rusqlite::Connection::open(app.sqlite_file()).expect("open");
        database
            .execute(
                &format!("INSERT INTO {SIGN_INS_TABLE} (id, expires_at) VALUES ('lapsed', 1)"),
                [],
            )
            .expect("insert");
        database
            .execute(
                &format!("INSERT INTO {CONSUMED_LOGINS_TABLE} (id, expires_at) VALUES ('used', 1)"),
                [],
            )
            .expect("insert");
    }
    assert_eq!(
        (
            rows(&app, SIGN_INS_TABLE),
            rows(&app, CONSUMED_LOGINS_TABLE)
        ),
        (2, 2),
        "with Priya's sign-in and the callback of her login"
    );

    // A portal purges when it opens the store, and then every few minutes.
    let app = app.restart().await;

    assert_eq!(
        (
            rows(&app, SIGN_INS_TABLE),
            rows(&app, CONSUMED_LOGINS_TABLE)
        ),
        (1, 1),
        "only Priya's live sign-in and her recent callback are left"
    );
    assert_eq!(app.get_text("/crm/Leads").await.0, StatusCode::OK);
}
