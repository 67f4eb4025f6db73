//! The control surface refuses what a cross-site page can send: a `text/plain` or form post, or JSON without
//! the control header, changes nothing.

use reqwest::StatusCode;
use serde_json::json;
use zylker_portal::sandbox::CONTROL_HEADER;

use crate::support::{PRIYA, Sandbox};

/// The shapes a page on another site can post without a CORS preflight, and JSON without the header.
fn cross_site_posts(sandbox: &Sandbox, path: &str, body: &str) -> Vec<reqwest::RequestBuilder> {
    let url = sandbox.url(&format!("/_sandbox/{path}"));
    vec![
        sandbox
            .http
            .post(&url)
            .header("content-type", "text/plain")
            .body(body.to_owned()),
        sandbox
            .http
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_owned()),
        sandbox
            .http
            .post(&url)
            .header("content-type", "multipart/form-data; boundary=x")
            .body(body.to_owned()),
        sandbox.http.post(&url).body(body.to_owned()),
        // A cross-site `fetch` could send this only after a preflight the sandbox never grants.
        sandbox
            .http
            .post(&url)
            .header("content-type", "application/json")
            .body(body.to_owned()),
        sandbox
            .http
            .post(&url)
            .header("content-type", "text/plain")
            .header(CONTROL_HEADER, "1")
            .body(body.to_owned()),
        sandbox
            .http
            .post(&url)
            .header("content-type", "application/json")
            .header(CONTROL_HEADER, "yes")
            .body(body.to_owned()),
    ]
}

#[tokio::test]
async fn a_cross_site_shaped_control_post_is_refused_and_changes_nothing() {
    let sandbox = Sandbox::start().await;
    let priya = sandbox.login(PRIYA).await;

    for (path, body) in [
        ("revoke-refresh-tokens", "{}"),
        ("expire-access-tokens", "{}"),
        ("advance-clock", r#"{"seconds":86400}"#),
        ("inject", r#"{"target":"crm","status":500,"count":5}"#),
    ] {
        for request in cross_site_posts(&sandbox, path, body) {
            let response = request.send().await.expect("the sandbox answers");
            let status = response.status();
            assert!(
                status == StatusCode::FORBIDDEN || status == StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{path}: {status}"
            );
            assert!(
                response
                    .headers()
                    .get("access-control-allow-origin")
                    .is_none(),
                "{path}"
            );
        }
    }

    assert_eq!(
        sandbox.crm(&priya.access, "org").await.status(),
        StatusCode::OK,
        "the access token still works: nothing expired, revoked, injected or moved on"
    );
    assert_eq!(sandbox.refresh(&priya.refresh).await["expires_in"], 3600);
    assert_eq!(sandbox.running.counters().revocations, 0);
    // The same call shaped as the tests make it does act: the refusal above was the guard, not the route.
    let (status, body) = sandbox.control("revoke-refresh-tokens", json!({})).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"revoked": 1})));
}

#[tokio::test]
async fn a_preflight_for_the_control_surface_is_never_granted() {
    let sandbox = Sandbox::start().await;

    let response = sandbox
        .http
        .request(
            reqwest::Method::OPTIONS,
            sandbox.url("/_sandbox/revoke-refresh-tokens"),
        )
        .header("origin", "https://attacker.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            format!("content-type, {CONTROL_HEADER}"),
        )
        .send()
        .await
        .expect("the sandbox answers");

    assert!(!response.status().is_success(), "{}", response.status());
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    assert!(
        response
            .headers()
            .get("access-control-allow-headers")
            .is_none()
    );
}

#[tokio::test]
async fn reading_the_counters_stays_a_plain_get() {
    let sandbox = Sandbox::start().await;

    let response = sandbox
        .http
        .get(sandbox.url("/_sandbox/counters"))
        .send()
        .await
        .expect("the sandbox answers");

    assert_eq!(response.status(), StatusCode::OK);
}
