//! The token endpoint: code exchange, PKCE, refresh, Zoho's limits on tokens, and errors answered as HTTP 200.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use zylker_portal::sandbox::{DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, SandboxClient, SandboxConfig};

use crate::support::*;

#[tokio::test]
async fn code_exchange_answers_zohos_body_with_a_refresh_token_for_offline_access() {
    let sandbox = Sandbox::start().await;
    let code = sandbox
        .code_for(PRIYA, ALL_SCOPES, &[("access_type", "offline")])
        .await;
    let body = sandbox.exchange(&code).await;
    let shape = regex_like_token;
    assert!(
        shape(body["access_token"].as_str().unwrap_or_default()),
        "{body}"
    );
    assert!(
        shape(body["refresh_token"].as_str().unwrap_or_default()),
        "{body}"
    );
    assert_eq!(body["api_domain"], sandbox.base.as_str());
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body.as_object().map(|body| body.len()), Some(5), "{body}");
}

/// `1000.<hex>.<hex>`, the shape of Zoho's tokens.
fn regex_like_token(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    parts.len() == 3
        && parts[0] == "1000"
        && parts[1..]
            .iter()
            .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_hexdigit()))
}

#[tokio::test]
async fn online_consent_gets_no_refresh_token() {
    let sandbox = Sandbox::start().await;
    let code = sandbox.code_for(PRIYA, ALL_SCOPES, &[]).await;
    let body = sandbox.exchange(&code).await;
    assert!(body["access_token"].is_string());
    assert!(body.get("refresh_token").is_none(), "{body}");
}

#[tokio::test]
async fn a_second_offline_consent_gets_a_refresh_token_only_with_prompt_consent() {
    let sandbox = Sandbox::start().await;
    let first = sandbox
        .exchange(
            &sandbox
                .code_for(SOFIA, ALL_SCOPES, &[("access_type", "offline")])
                .await,
        )
        .await;
    assert!(first["refresh_token"].is_string());
    let second = sandbox
        .exchange(
            &sandbox
                .code_for(SOFIA, ALL_SCOPES, &[("access_type", "offline")])
                .await,
        )
        .await;
    assert!(second["access_token"].is_string());
    assert!(second.get("refresh_token").is_none(), "{second}");
    let forced = sandbox
        .exchange(
            &sandbox
                .code_for(
                    SOFIA,
                    ALL_SCOPES,
                    &[("access_type", "offline"), ("prompt", "consent")],
                )
                .await,
        )
        .await;
    assert!(forced["refresh_token"].is_string(), "{forced}");
    // Another person is a first consent of their own.
    let other = sandbox
        .exchange(
            &sandbox
                .code_for(ARJUN, ALL_SCOPES, &[("access_type", "offline")])
                .await,
        )
        .await;
    assert!(other["refresh_token"].is_string());
}

#[tokio::test]
async fn a_code_works_once() {
    let sandbox = Sandbox::start().await;
    let code = sandbox.code_for(PRIYA, ALL_SCOPES, &[]).await;
    assert!(sandbox.exchange(&code).await["access_token"].is_string());
    assert_eq!(
        sandbox.exchange(&code).await,
        json!({"error": "invalid_code"})
    );
}

#[tokio::test]
async fn a_code_expires_after_two_minutes() {
    let sandbox = Sandbox::start().await;
    let fresh = sandbox.code_for(PRIYA, ALL_SCOPES, &[]).await;
    let stale = sandbox.code_for(PRIYA, ALL_SCOPES, &[]).await;
    sandbox.running.advance_clock(Duration::from_secs(110));
    assert!(sandbox.exchange(&fresh).await["access_token"].is_string());
    let (status, body) = sandbox
        .control("advance-clock", json!({"seconds": 11}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["offset_seconds"], 121);
    assert_eq!(
        sandbox.exchange(&stale).await,
        json!({"error": "invalid_code"})
    );
}

#[tokio::test]
async fn a_code_is_bound_to_its_redirect_uri() {
    let sandbox = Sandbox::start().await;
    let code = sandbox.code_for(PRIYA, ALL_SCOPES, &[]).await;
    let (status, body) = sandbox
        .token_call(&[
            ("grant_type", "authorization_code"),
            ("client_id", DEMO_CLIENT_ID),
            ("client_secret", DEMO_CLIENT_SECRET),
            ("redirect_uri", "http://localhost:9/other"),
            ("code", &code),
        ])
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"error": "invalid_redirect_uri"}));
}

#[tokio::test]
async fn a_code_is_bound_to_its_client() {
    let mut two_clients = config(true);
    two_clients.clients.push(SandboxClient {
        client_id: "1000.OTHER".into(),
        client_secret: "other-secret".into(),
        redirect_uris: vec![REDIRECT.into()],
    });
    let sandbox = Sandbox::start_with(two_clients).await;
    let code = sandbox.code_for(PRIYA, ALL_SCOPES, &[]).await;
    let (_, body) = sandbox
        .token_call(&[
            ("grant_type", "authorization_code"),
            ("client_id", "1000.OTHER"),
            ("client_secret", "other-secret"),
            ("redirect_uri", REDIRECT),
            ("code", &code),
        ])
        .await;
    assert_eq!(body, json!({"error": "invalid_code"}));
}

#[tokio::test]
async fn token_errors_are_http_200_with_zohos_error_names() {
    let sandbox = Sandbox::start().await;
    let code = sandbox.code_for(PRIYA, ALL_SCOPES, &[]).await;
    let cases: [(&[(&str, &str)], &str); 6] = [
        (
            &[
                ("grant_type", "authorization_code"),
                ("client_id", "1000.NOBODY"),
                ("client_secret", "x"),
                ("redirect_uri", REDIRECT),
                ("code", &code),
            ],
            "invalid_client",
        ),
        (
            &[
                ("grant_type", "authorization_code"),
                ("client_id", DEMO_CLIENT_ID),
                ("client_secret", "wrong"),
                ("redirect_uri", REDIRECT),
                ("code", &code),
            ],
            "invalid_client_secret",
        ),
        (
            &[
                ("grant_type", "password"),
                ("client_id", DEMO_CLIENT_ID),
                ("client_secret", DEMO_CLIENT_SECRET),
            ],
            "unsupported_grant_type",
        ),
        (
            &[
                ("client_id", DEMO_CLIENT_ID),
                ("client_secret", DEMO_CLIENT_SECRET),
            ],
            "unsupported_grant_type",
        ),
        (
            &[
                ("grant_type", "authorization_code"),
                ("client_id", DEMO_CLIENT_ID),
                ("client_secret", DEMO_CLIENT_SECRET),
                ("redirect_uri", REDIRECT),
                ("code", "1000.nope.nope"),
            ],
            "invalid_code",
        ),
        (
            &[
                ("grant_type", "refresh_token"),
                ("client_id", DEMO_CLIENT_ID),
                ("client_secret", DEMO_CLIENT_SECRET),
                ("refresh_token", "1000.unknown.token"),
            ],
            "invalid_code",
        ),
    ];
    for (form, error) in cases {
        let (status, body) = sandbox.token_call(form).await;
        assert_eq!(status, StatusCode::OK, "{error}");
        assert_eq!(body, json!({ "error": error }));
    }
    // The failed client checks did not burn the code.
    assert!(sandbox.exchange(&code).await["access_token"].is_string());
}

#[tokio::test]
async fn token_parameters_may_come_in_the_query_string() {
    let sandbox = Sandbox::start().await;
    let code = sandbox
        .code_for(PRIYA, ALL_SCOPES, &[("access_type", "offline")])
        .await;
    let response = sandbox
        .http
        .post(sandbox.url("/oauth/v2/token"))
        .query(&[
            ("grant_type", "authorization_code"),
            ("client_id", DEMO_CLIENT_ID),
            ("client_secret", DEMO_CLIENT_SECRET),
            ("redirect_uri", REDIRECT),
            ("code", &code),
        ])
        .send()
        .await
        .expect("POST");
    let body: Value = response.json().await.expect("JSON");
    let refresh = body["refresh_token"]
        .as_str()
        .expect("refresh_token")
        .to_owned();
    // …or split between the query and the body.
    let response = sandbox
        .http
        .post(sandbox.url("/oauth/v2/token"))
        .query(&[
            ("grant_type", "refresh_token"),
            ("client_id", DEMO_CLIENT_ID),
        ])
        .form(&[
            ("client_secret", DEMO_CLIENT_SECRET),
            ("refresh_token", &refresh),
        ])
        .send()
        .await
        .expect("POST");
    let body: Value = response.json().await.expect("JSON");
    assert!(body["access_token"].is_string(), "{body}");
}

#[tokio::test]
async fn pkce_s256_and_plain_verifiers_are_checked() {
    use base64::Engine as _;
    use sha2::Digest as _;
    let sandbox = Sandbox::start().await;
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let challenge =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier));
    let exchange = |code: String, verifier: Option<&'static str>| {
        let mut form = vec![
            ("grant_type", "authorization_code".to_owned()),
            ("client_id", DEMO_CLIENT_ID.to_owned()),
            ("client_secret", DEMO_CLIENT_SECRET.to_owned()),
            ("redirect_uri", REDIRECT.to_owned()),
            ("code", code),
        ];
        if let Some(verifier) = verifier {
            form.push(("code_verifier", verifier.to_owned()));
        }
        let request = sandbox
            .http
            .post(sandbox.url("/oauth/v2/token"))
            .form(&form);
        async move {
            request
                .send()
                .await
                .expect("POST")
                .json::<Value>()
                .await
                .expect("JSON")
        }
    };
    let s256 = [
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    let good = sandbox.code_for(PRIYA, ALL_SCOPES, &s256).await;
    assert!(exchange(good, Some(verifier)).await["access_token"].is_string());
    let wrong = sandbox.code_for(PRIYA, ALL_SCOPES, &s256).await;
    assert_eq!(
        exchange(wrong, Some("not-the-verifier")).await,
        json!({"error": "invalid_code"})
    );
    let missing = sandbox.code_for(PRIYA, ALL_SCOPES, &s256).await;
    assert_eq!(
        exchange(missing, None).await,
        json!({"error": "invalid_code"})
    );
    let plain = [
        ("code_challenge", "plain-verifier-value"),
        ("code_challenge_method", "plain"),
    ];
    let code = sandbox.code_for(PRIYA, ALL_SCOPES, &plain).await;
    assert!(exchange(code, Some("plain-verifier-value")).await["access_token"].is_string());
}

#[tokio::test]
async fn refresh_answers_a_new_access_token_and_no_refresh_token() {
    let sandbox = Sandbox::start().await;
    let tokens = sandbox.login(PRIYA).await;
    let body = sandbox.refresh(&tokens.refresh).await;
    assert!(regex_like_token(
        body["access_token"].as_str().unwrap_or_default()
    ));
    assert_ne!(body["access_token"], tokens.access.as_str());
    assert!(body.get("refresh_token").is_none(), "{body}");
    assert_eq!(body["api_domain"], sandbox.base.as_str());
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    let new_access = body["access_token"].as_str().unwrap_or_default();
    let (status, _) = sandbox.crm_json(new_access, "users?type=CurrentUser").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn the_eleventh_refresh_in_ten_minutes_is_access_denied_until_the_window_moves() {
    let sandbox = Sandbox::start().await;
    let tokens = sandbox.login(PRIYA).await;
    for attempt in 1..=10 {
        let body = sandbox.refresh(&tokens.refresh).await;
        assert!(
            body["access_token"].is_string(),
            "refresh {attempt}: {body}"
        );
    }
    let throttled = sandbox.refresh(&tokens.refresh).await;
    assert_eq!(
        throttled,
        json!({
            "error_description": "You have made too many requests continuously. Please try again after some time.",
            "error": "Access Denied",
            "status": "failure",
        })
    );
    let counters = sandbox.running.counters();
    assert_eq!((counters.refreshes, counters.throttled_refreshes), (10, 1));
    sandbox.running.advance_clock(Duration::from_secs(601));
    assert!(sandbox.refresh(&tokens.refresh).await["access_token"].is_string());
}

#[tokio::test]
async fn a_sixteenth_live_access_token_ends_the_oldest() {
    let sandbox = Sandbox::start().await;
    let tokens = sandbox.login(PRIYA).await; // access token 1
    let mut minted = vec![tokens.access.clone()];
    for round in 0..15 {
        if round == 9 {
            sandbox.running.advance_clock(Duration::from_secs(601));
        }
        let body = sandbox.refresh(&tokens.refresh).await;
        minted.push(body["access_token"].as_str().expect("access").to_owned());
    }
    assert_eq!(minted.len(), 16);
    let (status, body) = sandbox.crm_json(&minted[0], "users?type=CurrentUser").await;
    assert_crm_error(status, &body, 401, "INVALID_TOKEN");
    for token in &minted[1..] {
        let (status, _) = sandbox.crm_json(token, "users?type=CurrentUser").await;
        assert_eq!(status, StatusCode::OK);
    }
}

#[tokio::test]
async fn a_twenty_first_refresh_token_revokes_the_oldest_and_its_access_tokens() {
    let sandbox = Sandbox::start().await;
    let mut logins = Vec::new();
    for _ in 0..21 {
        logins.push(sandbox.login(ARJUN).await);
    }
    let oldest = &logins[0];
    assert_eq!(
        sandbox.refresh(&oldest.refresh).await,
        json!({"error": "invalid_code"})
    );
    let (status, body) = sandbox
        .crm_json(&oldest.access, "users?type=CurrentUser")
        .await;
    assert_crm_error(status, &body, 401, "INVALID_TOKEN");
    assert!(sandbox.refresh(&logins[1].refresh).await["access_token"].is_string());
    assert!(sandbox.refresh(&logins[20].refresh).await["access_token"].is_string());
    // The limit is per user: another persona's token is untouched.
    let priya = sandbox.login(PRIYA).await;
    assert!(sandbox.refresh(&priya.refresh).await["access_token"].is_string());
    assert!(sandbox.refresh(&logins[1].refresh).await["access_token"].is_string());
}

#[tokio::test]
async fn an_access_token_expires_after_its_lifetime() {
    let sandbox = Sandbox::start_with(SandboxConfig {
        access_ttl: Duration::from_secs(90),
        ..config(true)
    })
    .await;
    let code = sandbox.code_for(PRIYA, ALL_SCOPES, &[]).await;
    let body = sandbox.exchange(&code).await;
    assert_eq!(body["expires_in"], 90);
    let token = body["access_token"].as_str().expect("access");
    assert_eq!(sandbox.crm(token, "org").await.status(), StatusCode::OK);
    sandbox.running.advance_clock(Duration::from_secs(91));
    let (status, body) = sandbox.crm_json(token, "org").await;
    assert_crm_error(status, &body, 401, "INVALID_TOKEN");
}
