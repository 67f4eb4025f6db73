//! The OAuth callback refuses whatever it cannot trust, and stores nothing then.

use std::net::TcpListener;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{PRIYA, TestApp, param, with_param};

#[tokio::test]
async fn callback_with_forged_state_stores_nothing() {
    let app = TestApp::spawn().await;
    let auth_url = app.start_login().await;
    let callback = app.consent(&auth_url, PRIYA, "accept").await;

    let forged = with_param(&callback, "state", Some("forged-state-value-0123456789"));
    let (status, body) = {
        let response = app.follow(&forged).await;
        (response.status(), response.text().await.expect("body"))
    };

    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("The login could not be completed"));
    assert!(app.stored_tokens().await.is_empty());
    assert_eq!(
        app.counters().await.code_exchanges,
        0,
        "the code was never exchanged"
    );
}

#[tokio::test]
async fn callback_without_state_stores_nothing() {
    let app = TestApp::spawn().await;
    let auth_url = app.start_login().await;
    let callback = app.consent(&auth_url, PRIYA, "accept").await;

    let response = app.follow(&with_param(&callback, "state", None)).await;

    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(app.stored_tokens().await.is_empty());
    assert_eq!(app.counters().await.code_exchanges, 0);
}

#[tokio::test]
async fn callback_state_is_good_once() {
    let app = TestApp::spawn().await;
    let callback = app.login_as(PRIYA).await;

    let response = app.follow(&callback).await;

    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        app.counters().await.code_exchanges,
        1,
        "the replay went nowhere"
    );
}

#[tokio::test]
async fn replayed_code_is_refused_and_stores_nothing_new() {
    let app = TestApp::spawn().await;
    let used = app.login_as(PRIYA).await;
    let before = app.stored_tokens().await;

    // A fresh login in progress, answered with the old, already used code.
    let auth_url = app.start_login().await;
    let state = param(&auth_url, "state").expect("state");
    let replay = with_param(&used, "state", Some(&state));
    let response = app.follow(&replay).await;

    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body = response.text().await.expect("body");
    assert!(body.contains("already been used or has expired"), "{body}");
    assert_eq!(
        app.stored_tokens().await,
        before,
        "nothing changed in the store"
    );
}

#[tokio::test]
async fn denied_consent_shows_login_cancelled_and_stores_nothing() {
    let app = TestApp::spawn().await;
    let auth_url = app.start_login().await;

    let callback = app.consent(&auth_url, PRIYA, "deny").await;
    assert_eq!(param(&callback, "error").as_deref(), Some("access_denied"));
    let response = app.follow(&callback).await;

    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(
        response
            .text()
            .await
            .expect("body")
            .contains("Login cancelled")
    );
    assert!(app.stored_tokens().await.is_empty());
}

#[tokio::test]
async fn callback_with_forged_accounts_server_sends_nothing_there_and_stores_nothing() {
    let app = TestApp::spawn().await;
    let evil = TcpListener::bind("127.0.0.1:0").expect("bind");
    evil.set_nonblocking(true).expect("nonblocking");
    let evil_url = format!(
        "http://127.0.0.1:{}",
        evil.local_addr().expect("addr").port()
    );
    let auth_url = app.start_login().await;
    let callback = app.consent(&auth_url, PRIYA, "accept").await;

    let forged = with_param(&callback, "accounts-server", Some(&evil_url));
    let response = app.follow(&forged).await;

    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(
        response
            .text()
            .await
            .expect("body")
            .contains("accounts server that is not Zoho")
    );
    // A connection attempt would be waiting in the backlog by now.
    assert!(
        matches!(evil.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "nothing connected to the forged accounts server"
    );
    assert!(app.stored_tokens().await.is_empty());
    assert_eq!(app.counters().await.code_exchanges, 0);
}

#[tokio::test]
async fn a_non_zoho_api_domain_is_refused_and_nothing_is_stored() {
    let app = TestApp::spawn().await;
    app.inject(json!({"target": "token", "api_domain": "https://evil.example", "count": 1}))
        .await;
    let auth_url = app.start_login().await;
    let callback = app.consent(&auth_url, PRIYA, "accept").await;

    let response = app.follow(&callback).await;

    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(app.stored_tokens().await.is_empty());
}

#[tokio::test]
async fn callback_without_code_is_a_400() {
    let app = TestApp::spawn().await;
    let auth_url = app.start_login().await;
    let callback = app.consent(&auth_url, PRIYA, "accept").await;

    let response = app.follow(&with_param(&callback, "code", None)).await;

    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(app.stored_tokens().await.is_empty());
}
