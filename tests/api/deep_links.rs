//! Deep links: a signed-out visit to a signed-in page is sent to the sign-in page, and the login that starts
//! there lands on the page; a place that is not a path on the portal's own site is never followed.

use reqwest::StatusCode;

use crate::helpers::{Browser, PRIYA, TestApp, location};

/// The record links of a Leads page, in order.
fn record_links(body: &str) -> Vec<String> {
    body.match_indices("href=\"/crm/Leads/")
        .map(|(at, _)| {
            let rest = &body[at + "href=\"".len()..];
            rest[..rest.find('"').unwrap_or(0)].to_owned()
        })
        .filter(|link| {
            link.rsplit('/')
                .next()
                .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect()
}

/// A record of the Leads module and its name, as a signed-in person finds it on the list.
async fn a_lead(app: &TestApp) -> (String, String) {
    let someone = app.new_browser();
    someone.login_as(PRIYA).await;
    let (_, list) = someone.get_text("/crm/Leads").await;
    let link = record_links(&list)
        .into_iter()
        .next()
        .expect("a record link");
    let (_, record) = someone.get_text(&link).await;
    let heading = between(&record, "<h1>", "</h1>").expect("the record's heading");
    (link, heading.to_owned())
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    let to = text[from..].find(end)? + from;
    Some(&text[from..to])
}

/// The `href` of the sign-in page's "Login with Zoho" button, as the browser reads it (HTML entities decoded).
fn login_button_href(page: &str) -> String {
    let button = page
        .find(">Login with Zoho</a>")
        .expect("the Login with Zoho button");
    let tag = &page[page[..button].rfind("<a ").expect("its tag")..button];
    between(tag, "href=\"", "\"")
        .expect("its href")
        .replace("&#x2f;", "/")
        .replace("&#x3d;", "=")
        .replace("&amp;", "&")
        .replace("&#38;", "&")
}

/// `path` on the portal as `browser` asks it: `(status, Location as a portal path and query)`.
async fn redirect_of(browser: &Browser, path: &str) -> (StatusCode, Option<String>) {
    let response = browser.get(path).await;
    let status = response.status();
    let to = response
        .headers()
        .get(reqwest::header::LOCATION)
        .map(|value| value.to_str().expect("an ASCII Location").to_owned());
    (status, to)
}

/// Logs `browser` in as Priya from `login_path` (`/login?next=…`), through Zoho's consent page (and the one
/// more round the portal may ask for); where the callback sends the browser, the `Location` as it is sent
/// (not resolved: `//evil.example` must not pass for a path).
async fn log_in_from(browser: &Browser, login_path: &str) -> String {
    let mut login_path = login_path.to_owned();
    for _ in 0..2 {
        let started = browser.get(&login_path).await;
        assert_eq!(started.status(), StatusCode::SEE_OTHER, "{login_path}");
        let callback = browser.consent(&location(&started), PRIYA, "accept").await;
        let answer = browser.follow(&callback).await;
        assert_eq!(answer.status(), StatusCode::SEE_OTHER, "the callback");
        let landing = answer
            .headers()
            .get(reqwest::header::LOCATION)
            .expect("a Location")
            .to_str()
            .expect("an ASCII Location")
            .to_owned();
        if landing != "/login" && !landing.starts_with("/login?") {
            return landing;
        }
        login_path = landing;
    }
    panic!("the login did not finish in two rounds");
}

/// `/sign-in?next=…` with `next` as the query value (encoded as a browser's form would).
fn sign_in_for(next: &str) -> String {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("next", next)
        .finish();
    format!("/sign-in?{query}")
}

/// `/login?next=…` likewise.
fn login_for(next: &str) -> String {
    sign_in_for(next).replacen("/sign-in", "/login", 1)
}

#[tokio::test]
async fn a_record_opened_signed_out_goes_to_sign_in_and_the_login_lands_on_it() {
    let app = TestApp::spawn().await;
    let (record, name) = a_lead(&app).await;

    let (status, to) = redirect_of(&app, &record).await;

    assert_eq!(status, StatusCode::SEE_OTHER);
    let to = to.expect("a Location");
    assert_eq!(to, sign_in_for(&record));
    let (status, page) = app.get_text(&to).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("<h1>Sign in to see this page</h1>"), "{page}");
    assert!(page.contains("only signed-in staff may see"), "says why");
    let login = login_button_href(&page);
    assert_eq!(login, login_for(&record));

    let landing = log_in_from(&app, &login).await;

    assert_eq!(landing, record, "lands on the record");
    let (status, page) = app.get_text(&record).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(&format!("<h1>{name}</h1>")), "{page}");
}

#[tokio::test]
async fn a_list_opened_signed_out_keeps_its_query_string_through_the_login() {
    let app = TestApp::spawn().await;
    let list = "/crm/Leads?q=kavya&page=2";

    let (status, to) = redirect_of(&app, list).await;

    assert_eq!(status, StatusCode::SEE_OTHER);
    let to = to.expect("a Location");
    assert_eq!(to, "/sign-in?next=%2Fcrm%2FLeads%3Fq%3Dkavya%26page%3D2");
    let (_, page) = app.get_text(&to).await;
    let landing = log_in_from(&app, &login_button_href(&page)).await;
    assert_eq!(landing, list);
    assert_eq!(app.get(list).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn every_signed_in_page_sends_a_signed_out_get_or_head_to_sign_in() {
    let app = TestApp::spawn().await;

    for page in [
        "/crm/Leads",
        "/crm/Contacts?page=3",
        "/crm/Leads/new",
        "/admin/tokens",
    ] {
        for method in ["GET", "HEAD"] {
            let response = app.request(method, page).await;
            assert_eq!(response.status(), StatusCode::SEE_OTHER, "{method} {page}");
            assert_eq!(
                response.headers().get(reqwest::header::LOCATION),
                Some(
                    &reqwest::header::HeaderValue::from_str(&sign_in_for(page)).expect("a header")
                ),
                "{method} {page}"
            );
        }
    }
}

#[tokio::test]
async fn a_post_while_signed_out_still_gets_the_refusal_page() {
    let app = TestApp::spawn().await;

    let response = app
        .post_form(
            "/crm/Leads",
            &[("csrf_token", "x"), ("Last_Name", "Nobody")],
        )
        .await;

    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let page = response.text().await.expect("page");
    assert!(page.contains("Please log in"), "{page}");
}

#[tokio::test]
async fn a_sign_in_that_ended_is_explained_on_the_sign_in_page() {
    let app = TestApp::spawn().await;
    app.login_as(PRIYA).await;
    let id = app
        .stored_token_of(PRIYA)
        .await
        .and_then(|token| token.id)
        .expect("Priya's token");
    app.delete_in_store(&id).await;

    let (status, to) = redirect_of(&app, "/crm/Leads").await;

    assert_eq!(status, StatusCode::SEE_OTHER);
    let to = to.expect("a Location");
    assert_eq!(to, "/sign-in?next=%2Fcrm%2FLeads&reason=ended");
    let (status, page) = app.get_text(&to).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("Your Zoho session has ended, please log in again."),
        "{page}"
    );
}

#[tokio::test]
async fn a_path_over_a_kilobyte_is_not_kept() {
    let app = TestApp::spawn().await;
    let long = format!("/crm/Leads/{}", "1".repeat(1100));

    let (status, to) = redirect_of(&app, &long).await;

    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        to.as_deref(),
        Some("/sign-in"),
        "sign in, and land on the start page"
    );
}

/// Places a login must never send a browser to, as the sign-in page and `/login` are asked them: another
/// host (plain, with a backslash, percent-encoded), another scheme, a control character browsers drop, and a
/// path over 1 KB.
fn refused_targets() -> Vec<String> {
    vec![
        "//evil.example".to_owned(),
        "/\\evil.example".to_owned(),
        "%2F%2Fevil.example".to_owned(),
        "/%2F/evil.example".to_owned(),
        "/%5Cevil.example".to_owned(),
        "https://evil.example".to_owned(),
        "/\t/evil.example".to_owned(),
        "/crm/Leads\n".to_owned(),
        format!("/crm/Leads?q={}", "a".repeat(1024)),
    ]
}

#[tokio::test]
async fn the_sign_in_page_drops_a_place_that_is_not_a_path_on_this_site() {
    let app = TestApp::spawn().await;

    for target in refused_targets() {
        let (status, page) = app.get_text(&sign_in_for(&target)).await;

        assert_eq!(status, StatusCode::OK, "{target:?}");
        assert_eq!(login_button_href(&page), "/login", "{target:?}");
        assert!(!page.contains("evil.example"), "{target:?} is not shown");
        assert!(page.contains("you land on the start page"), "{target:?}");
    }
}

#[tokio::test]
async fn a_login_asked_to_come_back_elsewhere_lands_on_the_start_page() {
    let app = TestApp::spawn().await;

    for target in refused_targets() {
        let browser = app.new_browser();

        let landing = log_in_from(&browser, &login_for(&target)).await;

        assert_eq!(landing, "/", "{target:?}");
    }
}

#[tokio::test]
async fn someone_signed_in_is_sent_straight_on_from_the_sign_in_page() {
    let app = TestApp::spawn().await;
    app.login_as(PRIYA).await;

    let (status, to) = redirect_of(&app, &sign_in_for("/crm/Leads?page=2")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(to.as_deref(), Some("/crm/Leads?page=2"));

    let (status, to) = redirect_of(&app, &sign_in_for("//evil.example")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(to.as_deref(), Some("/"));
}
