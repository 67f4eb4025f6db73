//! Tokens, codes, the client secret and the session cookie never reach the log.

use reqwest::StatusCode;

use crate::helpers::{ARJUN, LIAM, PRIYA, SOFIA, TestApp, captured_logs, param};

#[tokio::test]
async fn no_secrets_in_logs_through_login_refresh_and_disconnect() {
    let app = TestApp::spawn().await;

    let callback = app.login_as(PRIYA).await;
    let code = param(&callback, "code").expect("a code");
    let first = app.stored_token_of(PRIYA).await.expect("stored");
    app.expire_in_store(PRIYA).await;
    let (status, _) = app.get_text("/crm/Leads").await;
    assert_eq!(status, StatusCode::OK);
    let refreshed = app.stored_token_of(PRIYA).await.expect("stored");
    assert_eq!(app.counters().await.refreshes, 1);
    let cookie = app.session_cookie().expect("session cookie");
    let csrf = app.csrf_token().await;
    let response = app.post_form("/disconnect", &[("csrf_token", &csrf)]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);

    let logs = captured_logs();
    if std::env::var_os("ZYLKER_PRINT_LOGS").is_some() {
        eprintln!("{logs}");
    }
    assert!(logs.contains("user logged in"), "the capture works");
    assert!(logs.contains("user disconnected"));
    // Email addresses are logged at DEBUG only; INFO (and WARN, ERROR) lines name the token by its id. The
    // capture holds every test of this binary that has run, so every persona's address is looked for.
    for line in logs.lines().filter(|line| {
        [" INFO ", " WARN ", " ERROR "]
            .iter()
            .any(|level| line.contains(level))
    }) {
        for email in [PRIYA, ARJUN, SOFIA, LIAM] {
            assert!(!line.contains(email), "an email address at INFO: {line}");
        }
    }
    assert!(
        logs.lines().any(|line| line.contains(" INFO ")
            && line.contains("logged in")
            && line.contains("token_id=")),
        "INFO lines carry the token id"
    );
    assert!(
        logs.lines()
            .any(|line| line.contains("DEBUG") && line.contains(PRIYA)),
        "the email is still there at DEBUG"
    );
    let secrets = [
        ("authorization code", Some(code)),
        (
            "access token",
            first.access_token.map(|t| t.expose_secret().to_owned()),
        ),
        (
            "refreshed access token",
            refreshed.access_token.map(|t| t.expose_secret().to_owned()),
        ),
        (
            "refresh token",
            first.refresh_token.map(|t| t.expose_secret().to_owned()),
        ),
        (
            "client secret",
            Some(zylker_portal::sandbox::DEMO_CLIENT_SECRET.to_owned()),
        ),
        ("session cookie", Some(cookie)),
        ("csrf token", Some(csrf)),
    ];
    for (what, secret) in secrets {
        let secret = secret.unwrap_or_else(|| panic!("{what} is known"));
        assert!(secret.len() >= 8, "{what} is long enough to search for");
        assert!(!logs.contains(&secret), "the {what} reached the log");
    }
}

/// A page served as asked is a request line at DEBUG (the default log is not a line per page); one that went
/// wrong is a line at INFO. Either way the line has the path without its query.
#[tokio::test]
async fn request_lines_are_info_for_errors_and_debug_for_pages_served() {
    let app = TestApp::spawn().await;
    app.login_as(PRIYA).await;
    let (status, _) = app.get_text("/crm/Leads?page=1&marker=served-page").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app
        .get_text("/no-such-page-for-the-request-line-test?marker=missing")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let logs = captured_logs();
    let line_of = |path: &str| {
        logs.lines()
            .find(|line| line.contains(&format!("path={path} ")) && line.contains(" status="))
            .unwrap_or_else(|| panic!("no request line for {path}"))
            .to_owned()
    };
    let missing = line_of("/no-such-page-for-the-request-line-test");
    assert!(missing.contains(" INFO "), "{missing}");
    assert!(missing.contains("status=404"), "{missing}");
    assert!(!logs.contains("marker="), "the query never reaches the log");
    let served = logs
        .lines()
        .filter(|line| line.contains("path=/crm/Leads ") && line.contains("status=200"))
        .collect::<Vec<_>>();
    assert!(!served.is_empty(), "a line for the page served");
    assert!(
        served.iter().all(|line| line.contains("DEBUG")),
        "pages served are logged at DEBUG: {served:?}"
    );
}
