//! Revoking a refresh token at `/oauth/v2/token/revoke`, with the token in the query or in a form body.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn revoking_a_refresh_token_kills_its_access_tokens_and_a_second_revoke_is_400() {
    let sandbox = Sandbox::start().await;
    let tokens = sandbox.login(PRIYA).await;
    let refreshed = sandbox.refresh(&tokens.refresh).await;
    let (status, body) = sandbox.revoke(&tokens.refresh).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"status": "success"}));
    for access in [
        tokens.access.as_str(),
        refreshed["access_token"].as_str().unwrap_or_default(),
    ] {
        let (status, body) = sandbox.crm_json(access, "org").await;
        assert_crm_error(status, &body, 401, "INVALID_TOKEN");
    }
    assert_eq!(
        sandbox.refresh(&tokens.refresh).await,
        json!({"error": "invalid_code"})
    );
    assert_eq!(
        sandbox.revoke(&tokens.refresh).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        sandbox.revoke("1000.never.issued").await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(sandbox.running.counters().revocations, 1);
}

#[tokio::test]
async fn revoke_takes_the_token_in_a_form_body_and_revokes_access_tokens_too() {
    let sandbox = Sandbox::start().await;
    let tokens = sandbox.login(PRIYA).await;
    let response = sandbox
        .http
        .post(sandbox.url("/oauth/v2/token/revoke"))
        .form(&[("token", tokens.access.as_str())])
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), StatusCode::OK);
    let (status, body) = sandbox.crm_json(&tokens.access, "org").await;
    assert_crm_error(status, &body, 401, "INVALID_TOKEN");
    // The refresh token lives on.
    assert!(sandbox.refresh(&tokens.refresh).await["access_token"].is_string());
}
