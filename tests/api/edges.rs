//! The web edges: slow request bodies, HEAD on the callback, the https cookie and HSTS, pending logins that
//! expire.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::cookie::CookieStore;
use reqwest::header::{ALLOW, SET_COOKIE, STRICT_TRANSPORT_SECURITY};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use url::Url;
use zylker_portal::app::{SECURE_SESSION_COOKIE, SESSION_COOKIE};

use crate::helpers::{ARJUN, Browser, PRIYA, TestApp, TestAppOptions};

/// Posts `/logout` for the signed-in `app` over a raw connection, its body trickled: all but the last 20
/// bytes at once (chunked or with a `Content-Length`), then one byte every 400 ms. Returns what came back
/// before the connection closed, and whether the whole body could be sent.
async fn post_logout_trickling(app: &TestApp, chunked: bool) -> (String, bool) {
    let csrf = app.csrf_token().await;
    let cookie = app.session_cookie().expect("a session cookie");
    let body = format!("csrf_token={csrf}").into_bytes();
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_owned()
    } else {
        format!("Content-Length: {}", body.len())
    };
    let head = format!(
        "POST /logout HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nCookie: {SESSION_COOKIE}={cookie}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\n{framing}\r\n\r\n",
        app.port
    );
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
        .await
        .expect("connects");
    let (mut reader, mut writer) = stream.into_split();
    let trickle = tokio::spawn(async move {
        let frame = |bytes: &[u8]| -> Vec<u8> {
            if chunked {
                let mut framed = format!("{:x}\r\n", bytes.len()).into_bytes();
                framed.extend_from_slice(bytes);
                framed.extend_from_slice(b"\r\n");
                framed
            } else {
                bytes.to_vec()
            }
        };
        let (start, rest) = body.split_at(body.len() - 20);
        let mut first = head.into_bytes();
        first.extend(frame(start));
        if writer.write_all(&first).await.is_err() {
            return false;
        }
        for byte in rest {
            tokio::time::sleep(Duration::from_millis(400)).await;
            if writer.write_all(&frame(&[*byte])).await.is_err() {
                return false;
            }
        }
        let end: &[u8] = if chunked { b"0\r\n\r\n" } else { b"" };
        writer.write_all(end).await.is_ok() && writer.flush().await.is_ok()
    });
    let mut answer = Vec::new();
    // A bound, so that a server that never closes fails the test rather than hangs it. A reset after the
    // answer counts as closed too.
    let read = tokio::time::timeout(Duration::from_secs(30), reader.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the connection is closed");
    let sent_whole_body = trickle.await.expect("the sender ends");
    (
        String::from_utf8_lossy(&answer).into_owned(),
        sent_whole_body,
    )
}

async fn app_with_a_one_second_body_timeout() -> TestApp {
    let app = TestApp::spawn_with(TestAppOptions {
        body_read_timeout: Duration::from_secs(1),
        ..TestAppOptions::default()
    })
    .await;
    app.login_as(PRIYA).await;
    app
}

async fn assert_still_signed_in(app: &TestApp) {
    let (status, body) = app.get_text("/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("Hello, Priya Raman"), "still signed in");
}

#[tokio::test]
async fn a_form_body_that_trickles_gets_408_its_connection_closed_and_does_nothing() {
    let app = app_with_a_one_second_body_timeout().await;

    let (answer, sent_whole_body) = post_logout_trickling(&app, false).await;

    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        !sent_whole_body,
        "the connection was closed before the trickle ended"
    );
    assert_still_signed_in(&app).await;
}

#[tokio::test]
async fn a_chunked_form_body_that_trickles_gets_408_and_its_connection_closed() {
    let app = app_with_a_one_second_body_timeout().await;

    let (answer, sent_whole_body) = post_logout_trickling(&app, true).await;

    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        !sent_whole_body,
        "the connection was closed rather than the rest of the body read: {answer}"
    );
    assert_still_signed_in(&app).await;
}

#[tokio::test]
async fn head_on_the_callback_is_405_and_leaves_the_login_pending() {
    let app = TestApp::spawn().await;
    let auth_url = app.start_login().await;
    let callback = app.consent(&auth_url, PRIYA, "accept").await;

    let head = app
        .client
        .head(app.at_portal(&callback))
        .send()
        .await
        .expect("answered");

    assert_eq!(head.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(head.headers().get(ALLOW).expect("Allow"), "GET");
    assert!(app.stored_tokens().await.is_empty(), "no login completed");
    assert_eq!(app.counters().await.code_exchanges, 0);
    let response = app.follow(&callback).await;
    assert_eq!(
        response.status(),
        StatusCode::SEE_OTHER,
        "the login in flight is still there"
    );
    assert!(app.stored_token_of(PRIYA).await.is_some());
}

#[tokio::test]
async fn a_callback_after_the_pending_login_expired_is_refused_and_stores_nothing() {
    let app = TestApp::spawn_with(TestAppOptions {
        // Every login in flight has expired by the time Zoho sends the browser back.
        pending_login_ttl: Duration::ZERO,
        ..TestAppOptions::default()
    })
    .await;
    let auth_url = app.start_login().await;
    let callback = app.consent(&auth_url, PRIYA, "accept").await;

    let response = app.follow(&callback).await;

    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body = response.text().await.expect("body");
    assert!(body.contains("no login in progress"), "{body}");
    assert!(app.stored_tokens().await.is_empty());
    assert_eq!(app.counters().await.code_exchanges, 0);
}

/// The value of the cookie `name` the browser holds for the portal.
fn cookie_value(app: &Browser, name: &str) -> Option<String> {
    let header = app.cookies.cookies(&app.address)?;
    header
        .to_str()
        .ok()?
        .split("; ")
        .find_map(|pair| pair.strip_prefix(&format!("{name}=")))
        .map(str::to_owned)
}

/// A portal behind an https proxy (its public URL https, the test reaching it at its own address).
async fn spawn_behind_https() -> TestApp {
    TestApp::spawn_with(TestAppOptions {
        public_url: Some(Url::parse("https://portal.zylker.example").expect("url")),
        ..TestAppOptions::default()
    })
    .await
}

/// What a request carrying only `cookie` (a whole `name=value`) gets: its status, its `Set-Cookie`s and body.
async fn with_only_cookie(
    app: &TestApp,
    path: &Url,
    cookie: &str,
) -> (StatusCode, Vec<String>, String) {
    let response = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .get(app.at_portal(path))
        .header("cookie", cookie)
        .send()
        .await
        .expect("answered");
    let status = response.status();
    let set_cookies = response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|value| value.to_str().expect("ascii").to_owned())
        .collect();
    (status, set_cookies, response.text().await.expect("body"))
}

#[tokio::test]
async fn behind_https_the_cookie_is_host_prefixed_with_hsts_and_a_plain_named_one_is_nobodys() {
    let app = spawn_behind_https().await;
    app.login_as(PRIYA).await;

    let page = app.get("/").await;
    assert_eq!(
        page.headers()
            .get(STRICT_TRANSPORT_SECURITY)
            .expect("HSTS behind https"),
        "max-age=31536000"
    );
    let value = cookie_value(&app, SECURE_SESSION_COOKIE).expect("the __Host- cookie");
    assert!(cookie_value(&app, SESSION_COOKIE).is_none());
    let (status, _, body) = with_only_cookie(
        &app,
        &app.url("/"),
        &format!("{SECURE_SESSION_COOKIE}={value}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("Hello, Priya Raman"),
        "the __Host- cookie serves"
    );

    // The same value under the plain name: what another subdomain (or plain http) can plant.
    let (status, set_cookies, body) =
        with_only_cookie(&app, &app.url("/"), &format!("{SESSION_COOKIE}={value}")).await;

    assert_eq!(status, StatusCode::OK);
    assert!(
        !body.contains("Hello, Priya Raman"),
        "a plain-named cookie behind https signs nobody in: {body}"
    );
    assert!(
        !set_cookies.iter().any(
            |cookie| cookie.starts_with(&format!("{SECURE_SESSION_COOKIE}="))
                && !cookie.contains("Max-Age=0")
        ),
        "the plain cookie is not re-sent under the __Host- name: {set_cookies:?}"
    );
}

#[tokio::test]
async fn behind_https_a_planted_plain_cookie_cannot_sign_the_victim_in_as_the_attacker() {
    let app = spawn_behind_https().await;
    // The attacker starts a login in their own browser and consents as themselves; they stop before the
    // callback, keeping its URL (with their code and state) and their cookie (with the pending login).
    let attacker = app.new_browser();
    let auth_url = attacker.start_login().await;
    let callback = attacker.consent(&auth_url, ARJUN, "accept").await;
    let attackers_cookie = cookie_value(&attacker, SECURE_SESSION_COOKIE)
        .expect("the attacker's __Host- cookie with the pending login");

    // The victim's browser gets the attacker's value planted under the plain name, and is sent to the callback.
    let (status, set_cookies, body) = with_only_cookie(
        &app,
        &callback,
        &format!("{SESSION_COOKIE}={attackers_cookie}"),
    )
    .await;

    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("no login in progress"), "{body}");
    assert!(app.stored_tokens().await.is_empty(), "nothing is stored");
    assert_eq!(
        app.counters().await.code_exchanges,
        0,
        "the code is not spent"
    );
    assert!(
        !set_cookies.iter().any(
            |cookie| cookie.starts_with(&format!("{SECURE_SESSION_COOKIE}="))
                && !cookie.contains("Max-Age=0")
        ),
        "the victim gets no session: {set_cookies:?}"
    );
    // The login stays the attacker's own: their browser finishes it.
    let response = attacker.follow(&callback).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn over_http_the_cookie_keeps_its_name_and_no_hsts_is_sent() {
    let app = TestApp::spawn().await;
    app.login_as(PRIYA).await;

    let page = app.get("/").await;

    assert!(page.headers().get(STRICT_TRANSPORT_SECURITY).is_none());
    assert!(cookie_value(&app, SESSION_COOKIE).is_some());
    assert!(cookie_value(&app, SECURE_SESSION_COOKIE).is_none());
}
