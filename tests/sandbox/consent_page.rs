//! The consent page at `/oauth/v2/auth`: what it shows and escapes, what it refuses, where accept and deny redirect.

use reqwest::StatusCode;
use zylker_portal::sandbox::DEMO_CLIENT_ID;

use crate::support::*;

#[tokio::test]
async fn consent_page_renders_personas_scopes_and_the_request_as_hidden_fields() {
    let sandbox = Sandbox::start().await;
    let params = Sandbox::auth_params(
        ALL_SCOPES,
        &[
            ("state", "st-123"),
            ("access_type", "offline"),
            ("code_challenge", "abc"),
            ("code_challenge_method", "S256"),
        ],
    );
    let (status, html) = sandbox.consent_page(&params).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(r#"<form method="post" action="/oauth/v2/auth""#));
    assert!(html.contains("Zoho Accounts"));
    for (name, value) in [
        ("client_id", DEMO_CLIENT_ID),
        ("response_type", "code"),
        ("redirect_uri", REDIRECT),
        ("scope", ALL_SCOPES),
        ("state", "st-123"),
        ("access_type", "offline"),
        ("code_challenge", "abc"),
        ("code_challenge_method", "S256"),
    ] {
        let input = format!(r#"<input type="hidden" name="{name}" value="{value}">"#);
        assert!(html.contains(&input), "missing {input}");
    }
    assert!(
        !html.contains(r#"name="prompt""#),
        "only given parameters are carried"
    );
    for email in [PRIYA, ARJUN, SOFIA] {
        assert!(html.contains(&format!(r#"name="email" value="{email}""#)));
    }
    // The apostrophe is escaped in the attribute; a browser submits it as written.
    assert!(html.contains(r#"name="email" value="liam.o&#39;brien@zylker.com""#));
    for scope in ALL_SCOPES.split(',') {
        assert!(
            html.contains(&format!("<code>{scope}</code>")),
            "scope {scope} listed"
        );
    }
    assert!(html.contains(r#"name="decision" value="accept""#));
    assert!(html.contains(r#"name="decision" value="deny""#));
    assert!(!html.contains("<script") && !html.contains("style=") && !html.contains("<style"));
}

#[tokio::test]
async fn consent_page_escapes_what_the_client_sent() {
    let sandbox = Sandbox::start().await;
    let params = Sandbox::auth_params(ALL_SCOPES, &[("state", r#""><script>alert(1)</script>"#)]);
    let (status, html) = sandbox.consent_page(&params).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!html.contains("<script>alert(1)</script>"));
    assert!(
        html.contains("&#34;&#62;&#60;script&#62;") || html.contains("&quot;&gt;&lt;script&gt;")
    );
}

#[tokio::test]
async fn consent_page_refuses_bad_requests_with_its_own_error_page_never_a_redirect() {
    let sandbox = Sandbox::start().await;
    let cases: Vec<(&str, Vec<(String, String)>)> = vec![
        (
            "unknown client",
            Sandbox::auth_params(ALL_SCOPES, &[("client_id", "1000.NOBODY")]),
        ),
        (
            "response_type token",
            Sandbox::auth_params(ALL_SCOPES, &[("response_type", "token")]),
        ),
        (
            "no scope",
            Sandbox::auth_params(ALL_SCOPES, &[])
                .into_iter()
                .filter(|(key, _)| key != "scope")
                .collect(),
        ),
        ("empty scope", Sandbox::auth_params("", &[])),
        (
            "unregistered redirect",
            Sandbox::auth_params(ALL_SCOPES, &[("redirect_uri", "https://evil.example/cb")]),
        ),
        (
            "redirect with a trailing slash",
            Sandbox::auth_params(
                ALL_SCOPES,
                &[("redirect_uri", "http://127.0.0.1:9/oauth/callback/")],
            ),
        ),
        (
            "redirect with an extra query",
            Sandbox::auth_params(
                ALL_SCOPES,
                &[("redirect_uri", "http://127.0.0.1:9/oauth/callback?x=1")],
            ),
        ),
    ];
    for (case, params) in cases {
        let response = sandbox
            .http
            .get(sandbox.url("/oauth/v2/auth"))
            .query(&params)
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{case}");
        assert!(response.headers().get("location").is_none(), "{case}");
        let html = response.text().await.expect("body");
        assert!(html.contains("Zoho Accounts"), "{case}: the sandbox's page");
    }
}

#[tokio::test]
async fn accept_redirects_with_code_state_location_and_the_url_encoded_accounts_server() {
    let sandbox = Sandbox::start().await;
    let location = sandbox
        .decide(PRIYA, ALL_SCOPES, &[("state", "s t&8")], "accept")
        .await;
    assert_eq!(
        format!(
            "{}://{}{}",
            location.scheme(),
            location.authority(),
            location.path()
        ),
        REDIRECT
    );
    let raw = location.query().expect("a query");
    let encoded = url::form_urlencoded::byte_serialize(sandbox.base.as_bytes()).collect::<String>();
    assert!(raw.contains(&format!("accounts-server={encoded}")), "{raw}");
    let params = query(&location);
    assert!(params["code"].starts_with("1000."));
    assert_eq!(params["state"], "s t&8");
    assert_eq!(params["location"], "us");
    assert_eq!(params["accounts-server"], sandbox.base);
}

#[tokio::test]
async fn accept_without_state_sends_no_state() {
    let sandbox = Sandbox::start().await;
    let location = sandbox.decide(ARJUN, ALL_SCOPES, &[], "accept").await;
    let params = query(&location);
    assert!(params.contains_key("code"));
    assert!(!params.contains_key("state"));
}

#[tokio::test]
async fn deny_redirects_with_access_denied_and_state_and_no_code() {
    let sandbox = Sandbox::start().await;
    let location = sandbox
        .decide(PRIYA, ALL_SCOPES, &[("state", "st-9")], "deny")
        .await;
    let params = query(&location);
    assert_eq!(params["error"], "access_denied");
    assert_eq!(params["state"], "st-9");
    assert!(!params.contains_key("code"));
}

#[tokio::test]
async fn consent_post_revalidates_the_request_and_the_persona() {
    let sandbox = Sandbox::start().await;
    let post = |form: Vec<(String, String)>| {
        let request = sandbox.http.post(sandbox.url("/oauth/v2/auth")).form(&form);
        async move { request.send().await.expect("POST") }
    };
    let mut forged =
        Sandbox::auth_params(ALL_SCOPES, &[("redirect_uri", "https://evil.example/cb")]);
    forged.push(("email".into(), PRIYA.into()));
    forged.push(("decision".into(), "accept".into()));
    let response = post(forged).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.headers().get("location").is_none());

    let mut stranger = Sandbox::auth_params(ALL_SCOPES, &[]);
    stranger.push(("email".into(), "mallory@zylker.com".into()));
    stranger.push(("decision".into(), "accept".into()));
    assert_eq!(post(stranger).await.status(), StatusCode::BAD_REQUEST);

    let mut undecided = Sandbox::auth_params(ALL_SCOPES, &[]);
    undecided.push(("email".into(), PRIYA.into()));
    undecided.push(("decision".into(), "maybe".into()));
    assert_eq!(post(undecided).await.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn sandbox_serves_its_stylesheet() {
    let sandbox = Sandbox::start().await;
    let response = sandbox
        .http
        .get(sandbox.url("/static/sandbox.css"))
        .send()
        .await
        .expect("GET css");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("text/css")
    );
    assert!(response.text().await.expect("css").contains(".card"));
}

#[tokio::test]
async fn every_sandbox_answer_says_nosniff() {
    let sandbox = Sandbox::start().await;
    let auth_query = format!(
        "/oauth/v2/auth?client_id={DEMO_CLIENT_ID}&response_type=code&redirect_uri={REDIRECT}&scope={ALL_SCOPES}"
    );
    let requests = [
        ("GET", "/static/sandbox.css"),
        ("GET", auth_query.as_str()),
        ("GET", "/oauth/v2/auth"),
        ("POST", "/oauth/v2/token"),
        ("POST", "/oauth/v2/token/revoke"),
        ("GET", "/crm/v8/users"),
        ("GET", "/crm/v8/Leads"),
        ("GET", "/crm/v8/no/such/url/here"),
        ("GET", "/_sandbox/counters"),
        ("GET", "/no/such/page"),
        ("DELETE", "/oauth/v2/auth"),
    ];
    for (method, path) in requests {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
        let response = sandbox
            .http
            .request(method.clone(), sandbox.url(path))
            .send()
            .await
            .expect("the sandbox answers");
        let values: Vec<_> = response
            .headers()
            .get_all("x-content-type-options")
            .iter()
            .collect();
        assert_eq!(
            values,
            ["nosniff"],
            "{method} {path} ({})",
            response.status()
        );
    }
}
