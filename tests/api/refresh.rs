//! Automatic refresh: the store's expiry, Zoho's 401, a stampede, a dead refresh token, throttling.

use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::json;

use std::time::Duration;

use crate::helpers::{PRIYA, TestApp, TestAppOptions, sent_to_sign_in};

#[tokio::test]
async fn expiry_passed_in_the_store_gives_exactly_one_refresh() {
    let app = TestApp::spawn().await;
    app.login_as(PRIYA).await;
    let before = app.stored_token_of(PRIYA).await.expect("stored");
    app.expire_in_store(PRIYA).await;

    let (first, _) = app.get_text("/crm/Leads").await;
    let (second, _) = app.get_text("/crm/Leads?page=2").await;

    assert_eq!(first, StatusCode::OK);
    assert_eq!(second, StatusCode::OK);
    let counters = app.counters().await;
    assert_eq!(counters.refreshes, 1);
    assert_eq!(
        counters.unauthorized, 0,
        "refreshed before calling, not after a 401"
    );
    let after = app.stored_token_of(PRIYA).await.expect("stored");
    assert_ne!(after.access_token, before.access_token);
    assert_eq!(
        after.refresh_token, before.refresh_token,
        "the refresh token is kept"
    );
    assert!(after.expiry_time > before.expiry_time);
}

#[tokio::test]
async fn a_token_expired_at_zoho_gives_one_refresh_and_one_retry() {
    let app = TestApp::spawn().await;
    app.login_as(PRIYA).await;
    app.expire_access_tokens_at_sandbox().await;

    let (status, _) = app.get_text("/crm/Leads").await;

    assert_eq!(status, StatusCode::OK);
    let counters = app.counters().await;
    assert_eq!(counters.unauthorized, 1, "one 401");
    assert_eq!(
        counters.refreshes, 1,
        "one refresh, then the retry succeeded"
    );
}

#[tokio::test]
async fn fifty_concurrent_requests_on_an_expired_token_make_exactly_one_refresh() {
    let app = TestApp::spawn().await;
    app.login_as(PRIYA).await;
    app.expire_in_store(PRIYA).await;
    app.expire_access_tokens_at_sandbox().await;

    let statuses = join_all((0..50).map(|_| async { app.get("/crm/Leads").await.status() })).await;

    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
    assert_eq!(app.counters().await.refreshes, 1);
}

#[tokio::test]
async fn a_revoked_refresh_token_sends_to_sign_in_again_and_the_row_is_gone() {
    let app = TestApp::spawn().await;
    app.login_as(PRIYA).await;
    app.revoke_refresh_tokens_at_sandbox().await;

    let (to, body) = sent_to_sign_in(&app, "/crm/Leads").await;

    assert_eq!(to, "/sign-in?next=%2Fcrm%2FLeads&reason=ended");
    assert!(body.contains("Your Zoho session has ended, please log in again."));
    assert!(body.contains("href=\"/login?next=%2Fcrm%2FLeads\""));
    assert!(
        app.stored_tokens().await.is_empty(),
        "the dead token is deleted"
    );
    let (_, landing) = app.get_text("/").await;
    assert!(landing.contains("Login with Zoho"), "the session ended");
}

#[tokio::test]
async fn a_throttled_refresh_gives_429_and_the_token_stays() {
    let app = TestApp::spawn().await;
    app.login_as(PRIYA).await;
    let before = app.stored_token_of(PRIYA).await.expect("stored");
    app.expire_in_store(PRIYA).await;
    app.inject(json!({"target": "token", "error": "Access Denied", "count": 1}))
        .await;

    let (status, body) = app.get_text("/crm/Leads").await;

    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(body.contains("Zoho is busy"));
    let after = app.stored_token_of(PRIYA).await.expect("the token stays");
    assert_eq!(after.refresh_token, before.refresh_token);
    let (landing_status, landing) = app.get_text("/").await;
    assert_eq!(landing_status, StatusCode::OK, "the next refresh works");
    assert!(landing.contains("Priya Raman"), "still signed in");
}

#[tokio::test]
async fn crm_errors_map_to_their_pages() {
    // A page keeps trying after 429s for as long as its queue timeout: half a second here.
    let app = TestApp::spawn_with(crate::helpers::TestAppOptions {
        crm_limits: zylker_portal::zoho::CrmLimits {
            queue_timeout: std::time::Duration::from_millis(500),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    app.login_as(PRIYA).await;

    app.inject(json!({"target": "crm", "status": 500, "count": 1}))
        .await;
    let (server_error, _) = app.get_text("/crm/Leads").await;
    app.inject(json!({"target": "crm", "status": 429, "count": 1000}))
        .await;
    let (throttled, _) = app.get_text("/crm/Leads").await;

    assert_eq!(server_error, StatusCode::BAD_GATEWAY);
    assert_eq!(throttled, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn a_refresh_refused_as_invalid_client_is_a_misconfiguration_page_and_a_loud_log() {
    for error in ["invalid_client", "invalid_client_secret"] {
        let app = TestApp::spawn().await;
        app.login_as(PRIYA).await;
        app.expire_in_store(PRIYA).await;
        app.inject(json!({"target": "token", "error": error, "count": 1}))
            .await;

        let (status, body) = app.get_text("/crm/Leads").await;

        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{error}");
        assert!(body.contains("The portal is misconfigured"), "{error}");
        assert!(crate::helpers::captured_logs().contains("MISCONFIGURED"));
        assert!(
            app.stored_token_of(PRIYA).await.is_some(),
            "{error}: only a dead token is deleted"
        );
    }
}

#[tokio::test]
async fn a_refresh_that_times_out_gives_504_and_the_token_stays() {
    let app = TestApp::spawn_with(TestAppOptions {
        http_timeout: Duration::from_millis(500),
        ..TestAppOptions::default()
    })
    .await;
    app.login_as(PRIYA).await;
    app.expire_in_store(PRIYA).await;
    app.inject(json!({"target": "token", "delay_ms": 1500, "count": 1}))
        .await;

    let (status, body) = app.get_text("/crm/Leads").await;

    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert!(body.contains("Zoho is taking too long"));
    assert!(app.stored_token_of(PRIYA).await.is_some());
}

#[tokio::test]
async fn a_login_without_the_needed_scope_gets_a_page_offering_to_log_in_again() {
    let app = TestApp::spawn_with(TestAppOptions {
        scope: "ZohoCRM.users.READ,ZohoCRM.org.READ",
        ..TestAppOptions::default()
    })
    .await;
    app.login_as(PRIYA).await;

    let (status, body) = app.get_text("/crm/Leads").await;

    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("Zoho did not grant this"), "{body}");
    assert!(body.contains("href=\"/login\""));
}

#[tokio::test]
async fn zoho_out_of_reach_gives_502_and_the_token_stays() {
    let mut app = TestApp::spawn().await;
    app.login_as(PRIYA).await;
    app.stop_sandbox().await;

    let (status, body) = app.get_text("/crm/Leads").await;

    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(body.contains("Zoho cannot be reached"), "{body}");
    assert!(app.stored_token_of(PRIYA).await.is_some());
    let (_, landing) = app.get_text("/crm/Leads/new").await;
    assert!(landing.contains("Priya Raman"), "still signed in");
}
