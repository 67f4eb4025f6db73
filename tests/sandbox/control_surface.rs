//! The `/_sandbox/` control surface the tests steer the sandbox with: counters, expiry, revocation, injections.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn counters_count_exchanges_refreshes_revocations_crm_calls_and_401s() {
    let sandbox = Sandbox::start().await;
    assert_eq!(
        sandbox.counters().await,
        json!({"code_exchanges":0,"refreshes":0,"throttled_refreshes":0,"revocations":0,"crm_calls":0,"unauthorized":0,"crm_429":0,"max_concurrent_crm":0,"max_concurrent_search":0,"credits_used":0})
    );
    let tokens = sandbox.login(PRIYA).await;
    sandbox.refresh(&tokens.refresh).await;
    sandbox.crm(&tokens.access, "org").await;
    sandbox.crm("1000.bad.token", "org").await;
    sandbox.revoke(&tokens.refresh).await;
    assert_eq!(
        sandbox.counters().await,
        json!({"code_exchanges":1,"refreshes":1,"throttled_refreshes":0,"revocations":1,"crm_calls":2,"unauthorized":1,"crm_429":0,"max_concurrent_crm":1,"max_concurrent_search":0,"credits_used":2})
    );
    let (status, body) = sandbox.control("reset", json!({})).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"ok": true})));
    assert_eq!(sandbox.running.counters(), Default::default());
}

#[tokio::test]
async fn expire_access_tokens_makes_every_live_token_invalid() {
    let sandbox = Sandbox::start().await;
    let priya = sandbox.login(PRIYA).await;
    let arjun = sandbox.login(ARJUN).await;
    let (status, body) = sandbox.control("expire-access-tokens", json!({})).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"expired": 2})));
    for token in [&priya.access, &arjun.access] {
        let (status, body) = sandbox.crm_json(token, "org").await;
        assert_crm_error(status, &body, 401, "INVALID_TOKEN");
    }
    let fresh = sandbox.refresh(&priya.refresh).await;
    let (status, _) = sandbox
        .crm_json(fresh["access_token"].as_str().unwrap_or_default(), "org")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        sandbox.control("expire-access-tokens", json!({})).await.1,
        json!({"expired": 1})
    );
}

#[tokio::test]
async fn revoke_refresh_tokens_ends_every_session() {
    let sandbox = Sandbox::start().await;
    let priya = sandbox.login(PRIYA).await;
    let arjun = sandbox.login(ARJUN).await;
    assert_eq!(
        sandbox.control("revoke-refresh-tokens", json!({})).await.1,
        json!({"revoked": 2})
    );
    for tokens in [&priya, &arjun] {
        assert_eq!(
            sandbox.refresh(&tokens.refresh).await,
            json!({"error": "invalid_code"})
        );
        let (status, body) = sandbox.crm_json(&tokens.access, "org").await;
        assert_crm_error(status, &body, 401, "INVALID_TOKEN");
    }
}

#[tokio::test]
async fn injected_crm_failures_answer_zohos_envelopes_for_the_next_n_calls() {
    let sandbox = Sandbox::start().await;
    let priya = sandbox.login(PRIYA).await;
    let (status, body) = sandbox
        .control(
            "inject",
            json!({"target": "crm", "status": 500, "count": 2}),
        )
        .await;
    assert_eq!((status, body), (StatusCode::OK, json!({"ok": true})));
    sandbox
        .control(
            "inject",
            json!({"target": "crm", "status": 429, "count": 1}),
        )
        .await;
    for _ in 0..2 {
        let (status, body) = sandbox.crm_json(&priya.access, "org").await;
        assert_crm_error(status, &body, 500, "INTERNAL_ERROR");
    }
    let (status, body) = sandbox
        .crm_json(&priya.access, "Leads?fields=Last_Name")
        .await;
    assert_crm_error(status, &body, 429, "TOO_MANY_REQUESTS");
    assert_eq!(
        sandbox.crm(&priya.access, "org").await.status(),
        StatusCode::OK
    );
    assert_eq!(sandbox.running.counters().crm_calls, 4);
}

#[tokio::test]
async fn an_injected_crm_delay_holds_the_answer_back() {
    let sandbox = Sandbox::start().await;
    let priya = sandbox.login(PRIYA).await;
    sandbox
        .control(
            "inject",
            json!({"target": "crm", "delay_ms": 300, "count": 1}),
        )
        .await;
    let started = Instant::now();
    assert_eq!(
        sandbox.crm(&priya.access, "org").await.status(),
        StatusCode::OK
    );
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "the delay is a lower bound"
    );
}

#[tokio::test]
async fn injected_token_errors_answer_http_200_and_access_denied_counts_as_throttled() {
    let sandbox = Sandbox::start().await;
    let priya = sandbox.login(PRIYA).await;
    sandbox
        .control(
            "inject",
            json!({"target": "token", "error": "Access Denied", "count": 1}),
        )
        .await;
    sandbox
        .control(
            "inject",
            json!({"target": "token", "error": "invalid_client", "count": 1}),
        )
        .await;
    let throttled = sandbox.refresh(&priya.refresh).await;
    assert_eq!(throttled["error"], "Access Denied");
    assert_eq!(throttled["status"], "failure");
    assert_eq!(
        sandbox.refresh(&priya.refresh).await,
        json!({"error": "invalid_client"})
    );
    assert!(sandbox.refresh(&priya.refresh).await["access_token"].is_string());
    let counters = sandbox.running.counters();
    assert_eq!((counters.throttled_refreshes, counters.refreshes), (1, 1));
}

#[tokio::test]
async fn an_injected_api_domain_rides_on_the_next_successful_token_answers() {
    let sandbox = Sandbox::start().await;
    let priya = sandbox.login(PRIYA).await;
    sandbox
        .control(
            "inject",
            json!({"target": "token", "api_domain": "https://evil.example", "count": 2}),
        )
        .await;
    assert_eq!(
        sandbox.refresh("1000.unknown.x").await,
        json!({"error": "invalid_code"})
    );
    assert_eq!(
        sandbox.refresh(&priya.refresh).await["api_domain"],
        "https://evil.example"
    );
    let code = sandbox.code_for(ARJUN, ALL_SCOPES, &[]).await;
    assert_eq!(
        sandbox.exchange(&code).await["api_domain"],
        "https://evil.example"
    );
    assert_eq!(
        sandbox.refresh(&priya.refresh).await["api_domain"],
        sandbox.base.as_str()
    );
}

#[tokio::test]
async fn an_injected_token_delay_still_answers() {
    let sandbox = Sandbox::start().await;
    let priya = sandbox.login(PRIYA).await;
    sandbox
        .control("inject", json!({"target": "token", "delay_ms": 200}))
        .await;
    let started = Instant::now();
    assert!(sandbox.refresh(&priya.refresh).await["access_token"].is_string());
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn reset_clears_pending_injections() {
    let sandbox = Sandbox::start().await;
    let priya = sandbox.login(PRIYA).await;
    sandbox
        .control(
            "inject",
            json!({"target": "crm", "status": 500, "count": 5}),
        )
        .await;
    sandbox.control("reset", json!({})).await;
    assert_eq!(
        sandbox.crm(&priya.access, "org").await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn malformed_injections_are_refused() {
    let sandbox = Sandbox::start().await;
    for body in [
        json!({"target": "mail", "status": 500}),
        json!({"target": "crm"}),
        json!({"target": "crm", "status": 200}),
        json!({"target": "crm", "status": 500, "count": 0}),
        json!({"target": "token", "status": 500}),
        json!({"target": "crm", "status": 500, "colour": "red"}),
    ] {
        let (status, reply) = sandbox.control("inject", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(reply["ok"], false);
    }
}

#[tokio::test]
async fn the_control_surface_is_404_when_off() {
    let sandbox = Sandbox::start_with(config(false)).await;
    for path in [
        "expire-access-tokens",
        "revoke-refresh-tokens",
        "inject",
        "reset",
        "advance-clock",
    ] {
        let (status, _) = sandbox.control(path, json!({})).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let response = sandbox
        .http
        .get(sandbox.url("/_sandbox/counters"))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    // The sandbox itself still works.
    let tokens = sandbox.login(PRIYA).await;
    assert_eq!(
        sandbox.crm(&tokens.access, "org").await.status(),
        StatusCode::OK
    );
}
