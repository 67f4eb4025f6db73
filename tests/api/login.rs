//! Logging in, staying logged in, and logging out.

use reqwest::StatusCode;

use crate::helpers::{PRIYA, SOFIA, StoreChoice, TestApp, TestAppOptions, location, param};

#[tokio::test]
async fn landing_page_offers_login_with_zoho() {
    let app = TestApp::spawn().await;

    let (status, body) = app.get_text("/").await;

    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("Zylker Academy"));
    assert!(body.contains("href=\"/login\""));
    assert!(body.contains("Login with Zoho"));
}

#[tokio::test]
async fn login_redirects_to_zoho_with_state_pkce_and_offline_access() {
    let app = TestApp::spawn().await;

    let auth_url = app.start_login().await;

    assert_eq!(auth_url.origin(), app.sandbox_url.origin());
    assert_eq!(auth_url.path(), "/oauth/v2/auth");
    let param = |name: &str| param(&auth_url, name);
    assert_eq!(param("response_type").as_deref(), Some("code"));
    assert_eq!(param("access_type").as_deref(), Some("offline"));
    assert_eq!(param("code_challenge_method").as_deref(), Some("S256"));
    assert_eq!(
        param("redirect_uri"),
        Some(app.url("/oauth/callback").to_string())
    );
    assert!(param("scope").is_some_and(|s| s.contains("ZohoCRM.modules.ALL,")));
    assert_eq!(
        param("prompt"),
        None,
        "the first round does not spend a consent"
    );
    // At least 128 bits: 22 base64url characters or more.
    assert!(param("state").is_some_and(|s| s.len() >= 22));
    assert!(param("code_challenge").is_some_and(|s| s.len() >= 43));
}

#[tokio::test]
async fn full_login_shows_the_user_their_profile_and_modules() {
    let app = TestApp::spawn().await;

    app.login_as(PRIYA).await;
    let (status, body) = app.get_text("/").await;

    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("Priya Raman"), "{body}");
    assert!(body.contains("Administrator"));
    assert!(body.contains("href=\"/crm/Leads\""));
    assert!(body.contains("Sign out") && body.contains("Disconnect"));
    let tokens = app.stored_tokens().await;
    assert_eq!(tokens.len(), 1);
    assert_eq!(
        tokens[0].user_name.as_deref(),
        Some("priya.raman@zylker.com:60032191920")
    );
    assert!(tokens[0].refresh_token.is_some());
    assert_eq!(
        tokens[0].client_id.as_deref(),
        Some(zylker_portal::sandbox::DEMO_CLIENT_ID)
    );
    assert_eq!(
        tokens[0].redirect_url.as_deref(),
        Some(app.url("/oauth/callback").as_str())
    );
}

#[tokio::test]
async fn session_cookie_holds_no_token() {
    let app = TestApp::spawn().await;
    app.login_as(PRIYA).await;

    let cookie = app.session_cookie().expect("a session cookie");
    let token = app.stored_token_of(PRIYA).await.expect("stored");

    assert!(!cookie.contains(token.access_token.as_deref().unwrap_or("-")));
    assert!(!cookie.contains(token.refresh_token.as_deref().unwrap_or("-")));
    assert!(!cookie.contains("priya"), "the cookie is encrypted");
}

#[tokio::test]
async fn second_login_of_the_same_user_updates_rather_than_adds() {
    let app = TestApp::spawn().await;
    app.login_as(PRIYA).await;
    let first = app.stored_token_of(PRIYA).await.expect("stored");

    // A second browser, same person.
    app.new_browser().login_as(PRIYA).await;

    let tokens = app.stored_tokens().await;
    assert_eq!(tokens.len(), 1, "one row per user");
    assert_eq!(tokens[0].id, first.id, "the same row, updated");
}

#[tokio::test]
async fn two_users_stay_apart() {
    let app = TestApp::spawn().await;
    app.login_as(PRIYA).await;
    let other = app.new_browser();
    other.login_as(SOFIA).await;

    let (_, priya_page) = app.get_text("/").await;
    let (_, sofia_page) = other.get_text("/").await;
    assert!(priya_page.contains("Priya Raman") && !priya_page.contains("Sofia Khan"));
    assert!(sofia_page.contains("Sofia Khan") && !sofia_page.contains("Priya Raman"));
    let tokens = app.stored_tokens().await;
    assert_eq!(tokens.len(), 2);
    assert_ne!(tokens[0].id, tokens[1].id);
    assert_ne!(tokens[0].refresh_token, tokens[1].refresh_token);
}

#[tokio::test]
async fn restarted_app_with_same_store_and_key_serves_the_same_browser_without_a_new_login() {
    let app = TestApp::spawn_with(TestAppOptions {
        store: StoreChoice::SqliteFile,
        ..TestAppOptions::default()
    })
    .await;
    app.login_as(PRIYA).await;
    let exchanges = app.counters().await.code_exchanges;

    let app = app.restart().await;
    let (status, body) = app.get_text("/").await;
    let (records_status, _) = app.get_text("/crm/Leads").await;

    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("Priya Raman"),
        "still signed in after the restart"
    );
    assert_eq!(records_status, StatusCode::OK);
    assert_eq!(
        app.counters().await.code_exchanges,
        exchanges,
        "no new login"
    );
}

#[tokio::test]
async fn logout_ends_the_session_and_keeps_the_token() {
    let app = TestApp::spawn().await;
    app.login_as(PRIYA).await;
    let csrf = app.csrf_token().await;

    let response = app.post_form("/logout", &[("csrf_token", &csrf)]).await;

    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response).path(), "/");
    let (_, body) = app.get_text("/").await;
    assert!(body.contains("Login with Zoho"));
    assert!(!body.contains("Priya Raman"));
    assert_eq!(app.stored_tokens().await.len(), 1, "the token stays");
    let (status, _) = app.get_text("/crm/Leads").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn disconnect_revokes_at_zoho_deletes_the_token_and_ends_the_session() {
    let app = TestApp::spawn().await;
    app.login_as(PRIYA).await;
    let csrf = app.csrf_token().await;

    let response = app.post_form("/disconnect", &[("csrf_token", &csrf)]).await;

    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(app.stored_tokens().await.is_empty());
    assert_eq!(app.counters().await.revocations, 1);
    let (_, body) = app.get_text("/").await;
    assert!(body.contains("Login with Zoho"));
    assert!(body.contains("disconnected"), "a flash says so");
}

#[tokio::test]
async fn a_login_without_a_refresh_token_and_none_stored_asks_zoho_once_more_with_prompt_consent() {
    let app = TestApp::spawn().await;
    app.login_as(SOFIA).await;
    // The portal loses the token; Zoho still remembers Sofia's consent and sends no new refresh token.
    let store = app.store.clone();
    tokio::task::spawn_blocking(move || store.delete_tokens())
        .await
        .expect("join")
        .expect("store");
    let browser = app.new_browser();

    let first_round = browser.start_login().await;
    let callback = browser.consent(&first_round, SOFIA, "accept").await;
    let response = browser.follow(&callback).await;

    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response).path(), "/login", "once more");
    assert!(
        app.stored_tokens().await.is_empty(),
        "nothing stored without a refresh token"
    );
    let second_round = browser.start_login().await;
    assert_eq!(param(&second_round, "prompt").as_deref(), Some("consent"));
    let callback = browser.consent(&second_round, SOFIA, "accept").await;
    let response = browser.follow(&callback).await;
    assert_eq!(location(&response).path(), "/");
    let token = app.stored_token_of(SOFIA).await.expect("stored");
    assert!(token.refresh_token.is_some());
    let third_round = app.new_browser().start_login().await;
    assert_eq!(
        param(&third_round, "prompt"),
        None,
        "the consent round happens once"
    );
}
