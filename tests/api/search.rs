//! The search box of a module page (`/crm/{module}?q=TEXT`): by word, email and phone through Zoho's search,
//! no results, a text too short to search for, paging that keeps the search, a burst of searches within Zoho's
//! sub-limit, and one CRM call per search page.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use url::form_urlencoded;
use zylker_portal::sandbox::{self, data};
use zylker_portal::zoho::CrmLimits;

use crate::helpers::{LIAM, PRIYA, SCOPE, StoreChoice, TestApp, TestAppOptions, param};

/// `/crm/{module}?q=…&page=…`, the text form-encoded as a browser sends the search box.
fn search_path(module: &str, text: &str, page: Option<u32>) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("q", text);
    if let Some(page) = page {
        query.append_pair("page", &page.to_string());
    }
    format!("/crm/{module}?{}", query.finish())
}

/// The ids of the records a list page links to, in order.
fn record_ids(page: &str, module: &str) -> Vec<String> {
    let marker = format!("href=\"/crm/{module}/");
    page.match_indices(&marker)
        .filter_map(|(at, _)| {
            let rest = &page[at + marker.len()..];
            let id: String = rest.chars().take_while(char::is_ascii_digit).collect();
            (rest[id.len()..].starts_with('"') && !id.is_empty()).then_some(id)
        })
        .collect()
}

/// The seeded Leads for which `found` holds, newest first (the order Zoho's search answers in).
fn seeded_leads(found: impl Fn(&serde_json::Map<String, Value>) -> bool) -> Vec<String> {
    let seed = data::seed();
    seed["Leads"]
        .by_id
        .iter()
        .rev()
        .filter(|(_, record)| found(record))
        .map(|(id, _)| id.to_string())
        .collect()
}

/// Whether any text value of `record` holds `word`, case-insensitively.
fn holds_word(record: &serde_json::Map<String, Value>, word: &str) -> bool {
    let word = word.to_lowercase();
    record
        .values()
        .filter_map(Value::as_str)
        .any(|text| text.to_lowercase().contains(&word))
}

/// The CRM calls the sandbox answered while `path` was loaded, and the page.
async fn crm_calls_of(app: &TestApp, path: &str) -> (u64, StatusCode, String) {
    let before = app.counters().await.crm_calls;
    let (status, body) = app.get_text(path).await;
    (app.counters().await.crm_calls - before, status, body)
}

#[tokio::test]
async fn a_word_finds_the_records_holding_it_in_the_same_table() {
    let app = TestApp::spawn().await;
    app.login_as(PRIYA).await;
    let expected = seeded_leads(|lead| holds_word(lead, "kavya"));
    assert!(
        (1..=20).contains(&expected.len()),
        "the seeded Leads hold a page of Kavyas: {}",
        expected.len()
    );

    let (status, body) = app.get_text(&search_path("Leads", "kAVYA", None)).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(record_ids(&body, "Leads"), expected);
    assert!(
        body.contains("<th scope=\"col\">Email</th>"),
        "the list's table"
    );
    assert!(body.contains("Results for “kAVYA”"), "{body}");
    assert!(
        body.contains(r#"<input type="search" id="search-q" name="q" value="kAVYA""#),
        "the query stays in the box: {body}"
    );
    assert!(!body.contains("rel=\"next\""), "one page of results");
}

#[tokio::test]
async fn every_module_page_has_a_labelled_search_box() {
    let app = TestApp::spawn().await;
    app.login_as(PRIYA).await;

    for module in ["Leads", "Contacts", "Courses"] {
        let (status, body) = app.get_text(&format!("/crm/{module}")).await;

        assert_eq!(status, StatusCode::OK, "{module}");
        assert!(
            body.contains(&format!(
                r#"<form class="search" method="get" action="/crm/{module}" role="search">"#
            )),
            "{module}: {body}"
        );
        assert!(body.contains(r#"<label class="search-label" for="search-q">Search "#));
        assert!(body.contains(r#"<input type="search" id="search-q" name="q" value="""#));
        assert!(body.contains(r#"<button type="submit" class="btn">Search</button>"#));
    }
}

#[tokio::test]
async fn an_email_address_is_searched_in_the_email_fields() {
    let app = TestApp::spawn().await;
    app.login_as(PRIYA).await;
    let seed = data::seed();
    let (id, lead) = seed["Leads"].by_id.iter().nth(42).expect("a 43rd lead");
    let email = lead["Email"].as_str().expect("an email").to_owned();
    let expected = seeded_leads(|other| {
        other["Email"]
            .as_str()
            .is_some_and(|other| other.eq_ignore_ascii_case(&email))
    });
    assert!(expected.contains(&id.to_string()));

    let (status, body) = app
        .get_text(&search_path("Leads", &email.to_uppercase(), None))
        .await;
    // A part of an address is no address: searched by email, it finds nothing (searched as a word, it would).
    let (_, part) = app.get_text(&search_path("Leads", &email[1..], None)).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(record_ids(&body, "Leads"), expected);
    assert!(record_ids(&part, "Leads").is_empty(), "{part}");
    assert!(part.contains("No results for"), "{part}");
}

#[tokio::test]
async fn a_phone_number_is_searched_by_its_digits() {
    let app = TestApp::spawn().await;
    app.login_as(PRIYA).await;
    let seed = data::seed();
    let (id, lead) = seed["Leads"].by_id.iter().nth(7).expect("an 8th lead");
    let phone = lead["Phone"].as_str().expect("a phone"); // "+91 9xxxx xxxxx"
    let national: String = phone.trim_start_matches("+91 ").replace(' ', "-");
    assert_ne!(national, phone);

    let (status, body) = app.get_text(&search_path("Leads", &national, None)).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        record_ids(&body, "Leads"),
        [id.to_string()],
        "{national}: {body}"
    );
}

#[tokio::test]
async fn a_search_without_matches_says_so_and_offers_the_whole_list() {
    let app = TestApp::spawn().await;
    app.login_as(PRIYA).await;

    let (status, body) = app.get_text(&search_path("Leads", "Zyzzyva", None)).await;

    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("No results for “Zyzzyva”."), "{body}");
    assert!(body.contains(r#"href="/crm/Leads">Show all Leads</a>"#));
    assert!(record_ids(&body, "Leads").is_empty());
    assert!(!body.contains("rel=\"next\""));
    assert!(!body.contains("<table"));
}

#[tokio::test]
async fn a_text_too_short_to_search_for_is_said_on_the_page_and_costs_no_call() {
    let app = TestApp::spawn().await;
    app.login_as(PRIYA).await;
    app.get_text("/crm/Leads").await;

    let (calls, status, body) = crm_calls_of(&app, &search_path("Leads", " k ", None)).await;

    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(calls, 0, "Zoho was not asked");
    assert!(
        body.contains("Type at least 2 characters to search."),
        "{body}"
    );
    assert!(body.contains(r#"value="k" maxlength="200""#), "{body}");
    assert!(body.contains(r#"aria-invalid="true" aria-describedby="search-problem""#));
    assert!(body.contains("Priya Raman"), "the module page, signed in");
    assert!(
        !body.contains("Back to the start page"),
        "not an error page"
    );
    assert!(record_ids(&body, "Leads").is_empty());
}

#[tokio::test]
async fn a_text_zoho_refuses_is_said_on_the_page_not_as_an_error_page() {
    let app = TestApp::spawn().await;
    app.login_as(PRIYA).await;
    app.get_text("/crm/Leads").await;

    // Two characters, but no letter or digit: Zoho's INVALID_DATA.
    let (calls, status, body) = crm_calls_of(&app, &search_path("Leads", "%%", None)).await;

    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(calls, 1);
    assert!(
        body.contains("Zoho CRM cannot search for this text."),
        "{body}"
    );
    assert!(body.contains(r#"value="%%""#));
    assert!(
        !body.contains("Back to the start page"),
        "not an error page"
    );
}

#[tokio::test]
async fn paging_through_results_keeps_the_search() {
    let app = TestApp::spawn().await;
    app.login_as(PRIYA).await;
    let expected = seeded_leads(|lead| holds_word(lead, "not contacted"));
    assert!(
        expected.len() > 20,
        "more than a page of results: {}",
        expected.len()
    );

    let (_, first) = app
        .get_text(&search_path("Leads", "Not Contacted", None))
        .await;
    let next = r#"href="/crm/Leads?q=Not+Contacted&#38;page=2""#;
    assert!(first.contains(next), "{first}");
    let (status, second) = app
        .get_text(&search_path("Leads", "Not Contacted", Some(2)))
        .await;

    assert_eq!(record_ids(&first, "Leads"), expected[..20]);
    assert_eq!(status, StatusCode::OK, "{second}");
    let rest = &expected[20..expected.len().min(40)];
    assert_eq!(record_ids(&second, "Leads"), rest);
    assert!(second.contains(r#"href="/crm/Leads?q=Not+Contacted&#38;page=1""#));
    assert!(second.contains(r#"value="Not Contacted""#));
    assert_eq!(second.contains("rel=\"next\""), expected.len() > 40);
}

#[tokio::test]
async fn a_search_is_escaped_and_encoded_wherever_it_is_shown() {
    let app = TestApp::spawn().await;
    app.login_as(PRIYA).await;
    let text = r#"<b>"Nair" & co</b>"#;

    let (status, body) = app.get_text(&search_path("Leads", text, None)).await;

    assert_eq!(status, StatusCode::OK);
    assert!(!body.contains("<b>"), "{body}");
    assert!(
        body.contains("No results for “&#60;b&#62;&#34;Nair&#34; &#38; co&#60;/b&#62;”."),
        "{body}"
    );
}

#[tokio::test]
async fn a_search_in_a_module_the_profile_cannot_open_is_refused() {
    let app = TestApp::spawn().await;
    app.login_as(LIAM).await;

    let (status, body) = app.get_text(&search_path("Leads", "Kavya", None)).await;

    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("No access to Leads"), "{body}");
    assert!(record_ids(&body, "Leads").is_empty());
}

#[tokio::test]
async fn a_search_page_costs_exactly_one_crm_call() {
    let app = TestApp::spawn().await;
    app.login_as(PRIYA).await;
    for module in ["Leads", "Contacts"] {
        // Warm: the fields metadata of a module other than Leads is kept after the first page.
        app.get_text(&format!("/crm/{module}")).await;

        for path in [
            search_path(module, "Kavya", None),
            search_path(module, "Web Design", Some(2)),
            search_path(module, "nobody@example.com", None),
        ] {
            let (calls, status, body) = crm_calls_of(&app, &path).await;
            assert_eq!(status, StatusCode::OK, "{path}: {body}");
            assert_eq!(calls, 1, "{path}");
        }
    }
}

#[tokio::test]
async fn a_burst_of_searches_waits_for_the_search_sub_limit_instead_of_meeting_429s() {
    // An Enterprise org: 20 calls at once, 10 of them searches. The portal's gate is as wide as the org's cap,
    // so only its search gate keeps the 11th search back.
    let app = TestApp::spawn_with(TestAppOptions {
        crm_limits: CrmLimits {
            concurrency: 20,
            ..CrmLimits::default()
        },
        sandbox_crm: sandbox::CrmLimits {
            latency: Duration::from_millis(150),
            ..sandbox::CrmLimits::zoho(sandbox::Edition::Enterprise)
        },
        ..TestAppOptions::default()
    })
    .await;
    app.login_as(PRIYA).await;
    assert_eq!(app.get("/crm/Leads").await.status(), StatusCode::OK);
    app.sandbox_post("/_sandbox/reset", json!({})).await;

    let pages: Vec<_> = (0..30)
        .map(|n| {
            let client = app.client.clone();
            let url = app.url(&search_path(
                "Leads",
                ["Kavya", "Nair", "Web Design"][n % 3],
                None,
            ));
            tokio::spawn(async move { client.get(url).send().await.expect("portal").status() })
        })
        .collect();
    let mut statuses = Vec::new();
    for page in pages {
        statuses.push(page.await.expect("join"));
    }

    assert!(
        statuses.iter().all(|status| *status == StatusCode::OK),
        "{statuses:?}"
    );
    let counters = app.counters().await;
    assert_eq!(counters.crm_429, 0, "{counters:?}");
    assert_eq!(
        counters.crm_calls, 30,
        "one call per page, none tried again"
    );
    assert_eq!(
        counters.max_concurrent_search, 10,
        "the sub-limit, reached and kept: {counters:?}"
    );
}

#[tokio::test]
async fn a_login_made_before_search_was_asked_for_gets_it_by_logging_in_again_with_consent() {
    // A portal of an earlier version asked for no search scope; its users' refresh tokens lack it.
    let earlier_scope = SCOPE
        .strip_suffix(",ZohoSearch.securesearch.READ")
        .expect("the search scope is the last");
    let app = TestApp::spawn_with(TestAppOptions {
        store: StoreChoice::SqliteFile,
        scope: earlier_scope,
        ..TestAppOptions::default()
    })
    .await;
    app.login_as(PRIYA).await;
    let app = app.restart_asking_for(SCOPE).await;
    let kavya = search_path("Leads", "Kavya", None);

    let (status, body) = app.get_text(&kavya).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("Zoho did not grant this"), "{body}");
    let auth_url = app.start_login().await;
    assert_eq!(param(&auth_url, "prompt").as_deref(), Some("consent"));
    let callback = app.consent(&auth_url, PRIYA, "accept").await;
    assert_eq!(app.follow(&callback).await.status(), StatusCode::SEE_OTHER);
    // The next access token comes from the stored refresh token: it must be the new one, granted search.
    app.expire_access_tokens_at_sandbox().await;
    let refreshes = app.counters().await.refreshes;

    let (status, body) = app.get_text(&kavya).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(!record_ids(&body, "Leads").is_empty());
    assert_eq!(
        app.counters().await.refreshes,
        refreshes + 1,
        "refreshed first"
    );
}
