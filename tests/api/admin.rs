//! The administrators' token page: Administrator profile only, values masked, deleting works.

use reqwest::StatusCode;

use crate::helpers::{PRIYA, SOFIA, TestApp, csrf_from, location};

#[tokio::test]
async fn admin_pages_are_refused_to_non_administrators() {
    let app = TestApp::spawn().await;
    app.login_as(SOFIA).await;
    let csrf = app.csrf_token().await;

    let (status, body) = app.get_text("/admin/tokens").await;
    let delete_all = app
        .post_form("/admin/tokens/delete-all", &[("csrf_token", &csrf)])
        .await;

    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("Administrators only"));
    assert_eq!(delete_all.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.stored_tokens().await.len(), 1, "nothing deleted");
}

#[tokio::test]
async fn admin_page_lists_tokens_masked_for_an_administrator() {
    let app = TestApp::spawn().await;
    app.new_browser().login_as(SOFIA).await;
    app.login_as(PRIYA).await;
    let sofia = app.stored_token_of(SOFIA).await.expect("stored");

    let (status, body) = app.get_text("/admin/tokens").await;

    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("sofia.khan@zylker.com:60032191920"));
    assert!(body.contains("priya.raman@zylker.com:60032191920"));
    for secret in [sofia.access_token, sofia.refresh_token]
        .into_iter()
        .flatten()
    {
        assert!(!body.contains(&secret), "token values are masked");
        let prefix: String = secret.chars().take(8).collect();
        assert!(body.contains(&format!("{prefix}…")));
    }
}

#[tokio::test]
async fn an_administrator_deletes_one_token_and_its_user_must_log_in_again() {
    let app = TestApp::spawn().await;
    let sofia_browser = app.new_browser();
    sofia_browser.login_as(SOFIA).await;
    app.login_as(PRIYA).await;
    let sofia = app.stored_token_of(SOFIA).await.expect("stored");
    let (_, page) = app.get_text("/admin/tokens").await;
    let csrf = csrf_from(&page).expect("csrf");

    let path = format!("/admin/tokens/{}/delete", sofia.id.expect("id"));
    let response = app.post_form(&path, &[("csrf_token", &csrf)]).await;

    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response).path(), "/admin/tokens");
    assert!(app.stored_token_of(SOFIA).await.is_none());
    assert!(app.stored_token_of(PRIYA).await.is_some());
    let (status, body) = sofia_browser.get_text("/crm/Leads").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("please log in again"));
}

#[tokio::test]
async fn an_administrator_deletes_every_token() {
    let app = TestApp::spawn().await;
    app.new_browser().login_as(SOFIA).await;
    app.login_as(PRIYA).await;
    let csrf = app.csrf_token().await;

    let response = app
        .post_form("/admin/tokens/delete-all", &[("csrf_token", &csrf)])
        .await;

    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(app.stored_tokens().await.is_empty());
    let (_, landing) = app.get_text("/").await;
    assert!(
        landing.contains("Login with Zoho"),
        "the administrator is signed out too"
    );
}

#[tokio::test]
async fn an_administrator_whose_own_token_is_gone_loses_the_admin_pages() {
    let app = TestApp::spawn().await;
    app.login_as(PRIYA).await;
    let store = app.store.clone();
    tokio::task::spawn_blocking(move || store.delete_tokens())
        .await
        .expect("join")
        .expect("store");

    let (status, body) = app.get_text("/admin/tokens").await;

    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("please log in again"));
}
