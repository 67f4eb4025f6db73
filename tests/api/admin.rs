//! The administrators' token page: Administrator profile only, values masked, deleting works.

use reqwest::StatusCode;

use zylker_portal::tokens::{OAuthToken, mask_secret};

use crate::helpers::{PRIYA, SOFIA, TestApp, csrf_from, location, sent_to_sign_in};

/// A row of another organization's user, as a second portal sharing the store would write it.
fn foreign_row() -> OAuthToken {
    OAuthToken {
        user_name: Some("ana.silva@example.com:70000000001".into()),
        client_id: Some("1000.OTHERCLIENT".into()),
        refresh_token: Some("1000.foreign-refresh-token-value".into()),
        access_token: Some("1000.foreign-access-token-value".into()),
        expiry_time: Some(zylker_portal::tokens::now_millis() + 3_600_000),
        api_domain: Some("https://www.zohoapis.eu".into()),
        ..OAuthToken::default()
    }
}

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
        let secret = secret.expose_secret();
        assert!(!body.contains(secret), "token values are masked");
        assert!(body.contains(&mask_secret(secret)), "as the CLI masks them");
    }
    // The sandbox's tokens live an hour: the page says so as people read it, the exact time in a tooltip.
    assert!(body.contains(">in 59 min</span>"), "{body}");
    assert!(
        body.contains("<span title=\"20"),
        "the exact time in a tooltip"
    );
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

    let revocations = app.counters().await.revocations;

    let path = format!("/admin/tokens/{}/delete", sofia.id.expect("id"));
    let user_name = sofia.user_name.expect("user name");
    let response = app
        .post_form(&path, &[("csrf_token", &csrf), ("user_name", &user_name)])
        .await;

    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response).path(), "/admin/tokens");
    assert!(app.stored_token_of(SOFIA).await.is_none());
    assert_eq!(
        app.counters().await.revocations,
        revocations + 1,
        "Sofia's refresh token is revoked at Zoho"
    );
    assert!(app.stored_token_of(PRIYA).await.is_some());
    let (_, page) = app.get_text("/admin/tokens").await;
    assert!(page.contains("The token is revoked at Zoho and deleted"));
    let (_, body) = sent_to_sign_in(&sofia_browser, "/crm/Leads").await;
    assert!(body.contains("please log in again"));
}

#[tokio::test]
async fn an_administrator_deletes_every_token() {
    let app = TestApp::spawn().await;
    app.new_browser().login_as(SOFIA).await;
    app.login_as(PRIYA).await;
    let foreign = app.insert_token(foreign_row()).await;
    let csrf = app.csrf_token().await;
    let revocations = app.counters().await.revocations;

    let response = app
        .post_form("/admin/tokens/delete-all", &[("csrf_token", &csrf)])
        .await;

    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        app.stored_tokens().await,
        vec![foreign],
        "only the administrator's organization's rows are deleted"
    );
    assert_eq!(
        app.counters().await.revocations,
        revocations + 2,
        "both refresh tokens are revoked at Zoho"
    );
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

    let (to, body) = sent_to_sign_in(&app, "/admin/tokens").await;

    assert_eq!(to, "/sign-in?next=%2Fadmin%2Ftokens&reason=ended");
    assert!(body.contains("please log in again"));
}

#[tokio::test]
async fn an_administrator_neither_sees_nor_deletes_another_organizations_tokens() {
    let app = TestApp::spawn().await;
    app.login_as(PRIYA).await;
    let foreign = app.insert_token(foreign_row()).await;
    let foreign_id = foreign.id.clone().expect("id");

    let (status, page) = app.get_text("/admin/tokens").await;
    let csrf = csrf_from(&page).expect("csrf");
    let response = app
        .post_form(
            &format!("/admin/tokens/{foreign_id}/delete"),
            &[
                ("csrf_token", &csrf),
                ("user_name", foreign.user_name.as_deref().expect("name")),
            ],
        )
        .await;

    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("priya.raman@zylker.com:60032191920"));
    assert!(
        !page.contains("ana.silva@example.com"),
        "another org's row is not listed"
    );
    assert!(!page.contains(&format!("/admin/tokens/{foreign_id}/delete")));
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(app.stored_tokens().await.contains(&foreign), "not deleted");
}

#[tokio::test]
async fn a_delete_form_for_a_row_whose_id_went_to_another_user_deletes_nothing() {
    let app = TestApp::spawn().await;
    app.login_as(PRIYA).await;
    app.new_browser().login_as(SOFIA).await;
    let sofia = app.stored_token_of(SOFIA).await.expect("stored");
    let (_, page) = app.get_text("/admin/tokens").await;
    let csrf = csrf_from(&page).expect("csrf");
    // The page showed Sofia's row; meanwhile it is deleted and its id goes to Arjun's login.
    app.delete_in_store(sofia.id.as_deref().expect("id")).await;
    app.new_browser().login_as(crate::helpers::ARJUN).await;
    let arjun = app
        .stored_token_of(crate::helpers::ARJUN)
        .await
        .expect("stored");
    assert_eq!(arjun.id, sofia.id, "the id is reused");
    let revocations = app.counters().await.revocations;

    let response = post_delete(&app, &sofia, &csrf).await;

    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        app.stored_token_of(crate::helpers::ARJUN).await,
        Some(arjun),
        "Arjun's row stays"
    );
    assert_eq!(
        app.counters().await.revocations,
        revocations,
        "nothing revoked"
    );
    assert_page_says_nothing_was_deleted(&app).await;
}

/// The administrators' page's delete form for `row`, as the page showed it.
async fn post_delete(app: &TestApp, row: &OAuthToken, csrf: &str) -> reqwest::Response {
    app.post_form(
        &format!("/admin/tokens/{}/delete", row.id.as_deref().expect("id")),
        &[
            ("csrf_token", csrf),
            ("user_name", row.user_name.as_deref().expect("name")),
        ],
    )
    .await
}

/// What the administrators' page says after a delete that found nothing.
async fn assert_page_says_nothing_was_deleted(app: &TestApp) {
    let (_, page) = app.get_text("/admin/tokens").await;
    assert!(
        page.contains("Nothing to delete: the token was already gone."),
        "{page}"
    );
    assert!(!page.contains("revoked at Zoho and deleted"));
}

#[tokio::test]
async fn an_administrators_delete_of_a_token_already_gone_says_so() {
    let app = TestApp::spawn().await;
    app.login_as(PRIYA).await;
    app.new_browser().login_as(SOFIA).await;
    let sofia = app.stored_token_of(SOFIA).await.expect("stored");
    let (_, page) = app.get_text("/admin/tokens").await;
    let csrf = csrf_from(&page).expect("csrf");
    // Another administrator (or Sofia's own disconnect) got there first.
    app.delete_in_store(sofia.id.as_deref().expect("id")).await;

    let response = post_delete(&app, &sofia, &csrf).await;

    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response).path(), "/admin/tokens");
    assert_page_says_nothing_was_deleted(&app).await;
}

#[tokio::test]
async fn a_profile_claimed_by_the_cookie_but_not_confirmed_by_zoho_gets_403() {
    let app = TestApp::spawn().await;
    app.login_as(SOFIA).await;
    let csrf = app.csrf_token().await;
    // Sofia's cookie says Administrator (as a cookie from before a demotion would); Zoho says Support.
    app.rewrite_session(&app, |session| {
        let mut user: serde_json::Value =
            serde_json::from_str(session["user"].as_str().expect("text")).expect("json");
        user["profile"] = "Administrator".into();
        session["user"] = user.to_string().into();
    });

    let (status, body) = app.get_text("/admin/tokens").await;
    let delete_all = app
        .post_form("/admin/tokens/delete-all", &[("csrf_token", &csrf)])
        .await;

    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("Administrators only"));
    assert!(!body.contains("sofia.khan@zylker.com:60032191920"));
    assert_eq!(delete_all.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.stored_tokens().await.len(), 1, "nothing deleted");
}
