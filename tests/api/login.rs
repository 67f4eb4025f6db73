//! Logging in, staying logged in, and logging out.

use reqwest::StatusCode;
use reqwest::header::LOCATION;

use crate::helpers::{PRIYA, SOFIA, TestApp, location, param};

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
    let callback = app.login_as(PRIYA).await;
    app.get_text("/").await;

    let session = app.decrypted_session(&app);
    let token = app.stored_token_of(PRIYA).await.expect("stored");

    let text = serde_json::to_string(&session).expect("json");
    for secret in [
        token.access_token.map(|t| t.expose_secret().to_owned()),
        token.refresh_token.map(|t| t.expose_secret().to_owned()),
        param(&callback, "code"),
    ]
    .into_iter()
    .flatten()
    {
        assert!(!text.contains(&secret), "no token or code in the session");
    }
    assert!(
        !app.session_cookie().expect("cookie").contains("priya"),
        "the cookie is encrypted"
    );
    let keys: Vec<&str> = session.keys().map(String::as_str).collect();
    assert!(
        keys.iter()
            .all(|key| ["user", "grant", "csrf", "flashes"].contains(key)),
        "{keys:?}"
    );
    let user: serde_json::Value =
        serde_json::from_str(session["user"].as_str().expect("text")).expect("user json");
    let mut fields: Vec<&str> = user
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "email", "name", "org_id", "org_name", "profile", "role", "token_id"
        ]
    );
    assert_eq!(user["token_id"], token.id.expect("id").as_str());
    assert_eq!(user["email"], PRIYA);
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
    let sofia = app.new_browser();
    sofia.login_as(SOFIA).await;
    // What each session's requests can do comes from the token they use: Priya's profile opens Contacts,
    // Sofia's (Support) does not.
    let (priya_contacts, _) = app.get_text("/crm/Contacts").await;
    let (sofia_contacts, _) = sofia.get_text("/crm/Contacts").await;
    let priya_row = app.stored_token_of(PRIYA).await.expect("stored");
    let sofia_row = app.stored_token_of(SOFIA).await.expect("stored");

    // Each session's requests use its own row: an expired token of Priya's is refreshed by Priya's
    // request, and Sofia's row is left alone.
    app.expire_in_store(PRIYA).await;
    let (priya_leads, _) = app.get_text("/crm/Leads").await;

    assert_eq!(priya_contacts, StatusCode::OK);
    assert_eq!(sofia_contacts, StatusCode::FORBIDDEN);
    assert_eq!(priya_leads, StatusCode::OK);
    assert_ne!(priya_row.id, sofia_row.id);
    assert_ne!(priya_row.refresh_token, sofia_row.refresh_token);
    let priya_after = app.stored_token_of(PRIYA).await.expect("stored");
    assert_ne!(
        priya_after.access_token, priya_row.access_token,
        "Priya's row refreshed"
    );
    assert_eq!(
        app.stored_token_of(SOFIA).await,
        Some(sofia_row),
        "Sofia's row untouched"
    );
    assert_eq!(app.counters().await.refreshes, 1);
}

#[tokio::test]
async fn a_session_whose_token_id_went_to_another_user_ends_and_touches_nothing_of_theirs() {
    let app = TestApp::spawn().await;
    app.login_as(PRIYA).await;
    let priya_second = app.new_browser();
    priya_second.login_as(PRIYA).await;
    let csrf = priya_second.csrf_token().await;
    let priya_row = app.stored_token_of(PRIYA).await.expect("stored");
    app.delete_in_store(priya_row.id.as_deref().expect("id"))
        .await;
    let sofia = app.new_browser();
    sofia.login_as(SOFIA).await;
    let sofia_row = app.stored_token_of(SOFIA).await.expect("stored");
    assert_eq!(
        sofia_row.id, priya_row.id,
        "the store hands the id out again"
    );
    let revocations = app.counters().await.revocations;

    let leads = app.get("/crm/Leads").await;
    let (leads_status, leads_to) = (leads.status(), leads.headers().get(LOCATION).cloned());
    let leads = leads.text().await.expect("body");
    let (home_status, home) = app.get_text("/").await;
    let disconnect = priya_second
        .post_form("/disconnect", &[("csrf_token", &csrf)])
        .await;

    assert_eq!(leads_status, StatusCode::SEE_OTHER, "sent to sign in again");
    assert_eq!(
        leads_to.as_ref().and_then(|to| to.to_str().ok()),
        Some("/sign-in?next=%2Fcrm%2FLeads&reason=ended"),
        "which says the session has ended"
    );
    assert!(!leads.contains("Sofia") && !leads.contains("sofia.khan"));
    assert_eq!(home_status, StatusCode::OK);
    assert!(
        home.contains("Login with Zoho"),
        "Priya's browser is signed out"
    );
    assert!(!home.contains("Sofia"));
    assert_eq!(disconnect.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        app.stored_token_of(SOFIA).await,
        Some(sofia_row),
        "Sofia's row stays"
    );
    assert_eq!(
        app.counters().await.revocations,
        revocations,
        "Sofia's refresh token is not revoked"
    );
    let (sofia_status, _) = sofia.get_text("/crm/Leads").await;
    assert_eq!(sofia_status, StatusCode::OK, "Sofia is still signed in");
}

#[tokio::test]
async fn restarted_app_with_same_store_and_key_serves_the_same_browser_without_a_new_login() {
    let app = TestApp::spawn_on_sqlite().await;
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
    assert_eq!(status, StatusCode::SEE_OTHER, "sent to sign in");
}

/// Requests `path` with a session cookie someone kept a copy of, as another client would.
async fn replay(app: &TestApp, cookie: &str, path: &str) -> (StatusCode, String) {
    let response = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .get(app.url(path))
        .header(
            reqwest::header::COOKIE,
            format!("{}={cookie}", zylker_portal::app::SESSION_COOKIE),
        )
        .send()
        .await
        .expect("portal");
    let status = response.status();
    (status, response.text().await.expect("page"))
}

#[tokio::test]
async fn a_session_cookie_kept_from_before_logout_is_refused() {
    let app = TestApp::spawn().await;
    app.login_as(PRIYA).await;
    let copied = app.session_cookie().expect("a session cookie");
    let csrf = app.csrf_token().await;
    app.post_form("/logout", &[("csrf_token", &csrf)]).await;

    // Whoever kept a copy of the signed-in cookie replays it after the sign-out.
    let (status, body) = replay(&app, &copied, "/crm/Leads").await;

    assert_eq!(status, StatusCode::SEE_OTHER, "sent to sign in");
    assert!(!body.contains("Nikhil"), "no CRM data for an ended session");
}

#[tokio::test]
async fn a_sign_out_still_holds_after_a_restart() {
    let app = TestApp::spawn_on_sqlite().await;
    app.login_as(PRIYA).await;
    let copied = app.session_cookie().expect("a session cookie");
    let csrf = app.csrf_token().await;
    app.post_form("/logout", &[("csrf_token", &csrf)]).await;

    // Same store file, same session key: only what the database remembers tells the copy from a live cookie.
    let app = app.restart().await;
    let (status, body) = replay(&app, &copied, "/crm/Leads").await;
    let (_, landing) = replay(&app, &copied, "/").await;

    assert_eq!(status, StatusCode::SEE_OTHER, "sent to sign in");
    assert!(!body.contains("Nikhil"), "no CRM data for an ended session");
    assert!(landing.contains("Login with Zoho"), "nobody is signed in");
    assert!(!landing.contains("Priya Raman"));
    assert_eq!(app.stored_tokens().await.len(), 1, "the token stays");
}

#[tokio::test]
async fn a_sign_in_past_its_lifetime_or_without_a_record_counts_as_nobody() {
    let app = TestApp::spawn().await;
    app.login_as(PRIYA).await;
    let two_weeks_and_a_day = 15 * 24 * 60 * 60;

    // The cookie lives in the browser: only the sign-in's time inside it says how old it is.
    app.rewrite_session(&app, |session| {
        let mut grant: serde_json::Value =
            serde_json::from_str(session["grant"].as_str().expect("text")).expect("json");
        let signed_in_at = grant["signed_in_at"].as_i64().expect("seconds");
        grant["signed_in_at"] = (signed_in_at - two_weeks_and_a_day).into();
        session["grant"] = grant.to_string().into();
    });
    let (expired_status, _) = app.get_text("/crm/Leads").await;
    let (_, landing) = app.get_text("/").await;

    assert_eq!(expired_status, StatusCode::SEE_OTHER, "sent to sign in");
    assert!(landing.contains("Login with Zoho"));
    assert!(
        !app.decrypted_session(&app).contains_key("user"),
        "the stale session is cleared, not only ignored"
    );

    let other = app.new_browser();
    other.login_as(SOFIA).await;
    app.rewrite_session(&other, |session| {
        session.remove("grant");
    });
    let (status, _) = other.get_text("/crm/Leads").await;
    assert_eq!(
        status,
        StatusCode::SEE_OTHER,
        "a user with no sign-in record is sent to sign in"
    );
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
