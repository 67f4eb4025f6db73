//! Zoho's limits, from the portal's side: the gate keeps the org's concurrency cap, a 429 is tried again, a page
//! that cannot get its turn says so, and each kind of page costs the CRM calls it should (counted at the
//! sandbox).

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::RETRY_AFTER;
use serde_json::json;
use zylker_portal::zoho::CrmLimits;

use zylker_portal::sandbox;

use crate::helpers::{ARJUN, PRIYA, TestApp, TestAppOptions, csrf_from, location};

async fn app_with_limits(crm_limits: CrmLimits) -> TestApp {
    TestApp::spawn_with(TestAppOptions {
        crm_limits,
        ..TestAppOptions::default()
    })
    .await
}

/// A portal whose gate lets `portal_cap` calls through per org, in front of a Zoho that allows `zoho_cap`
/// concurrent calls and takes 100 ms for each; signed in, with the Leads page warm.
async fn app_against_a_capped_zoho(portal_cap: usize, zoho_cap: usize) -> TestApp {
    let app = TestApp::spawn_with(TestAppOptions {
        crm_limits: CrmLimits {
            concurrency: portal_cap,
            ..CrmLimits::default()
        },
        sandbox_crm: sandbox::CrmLimits {
            latency: Duration::from_millis(100),
            concurrency: Some(zoho_cap),
            credits_per_day: None,
        },
        ..TestAppOptions::default()
    })
    .await;
    app.login_as(PRIYA).await;
    assert_eq!(app.get("/crm/Leads").await.status(), StatusCode::OK);
    app.sandbox_post("/_sandbox/reset", json!({})).await;
    app
}

/// `count` loads of the Leads page at once; their statuses.
async fn load_leads_at_once(app: &TestApp, count: usize) -> Vec<StatusCode> {
    let loads: Vec<_> = (0..count)
        .map(|_| {
            let (client, url) = (app.client.clone(), app.url("/crm/Leads"));
            tokio::spawn(async move { client.get(url).send().await.expect("portal").status() })
        })
        .collect();
    let mut statuses = Vec::with_capacity(count);
    for load in loads {
        statuses.push(load.await.expect("join"));
    }
    statuses
}

#[tokio::test]
async fn fifty_pages_at_once_against_a_cap_of_five_are_all_served_without_a_429() {
    let app = app_against_a_capped_zoho(5, 5).await;

    let statuses = load_leads_at_once(&app, 50).await;

    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
    let counters = app.counters().await;
    assert_eq!(counters.crm_429, 0, "{counters:?}");
    assert_eq!(counters.crm_calls, 50);
    assert!(counters.max_concurrent_crm <= 5, "{counters:?}");
}

#[tokio::test]
async fn a_gate_wider_than_the_orgs_cap_shrinks_after_429s_and_every_page_is_served() {
    // Another app of the org would take part of the cap the same way: the portal only sees the 429s.
    let app = app_against_a_capped_zoho(10, 5).await;

    let statuses = load_leads_at_once(&app, 50).await;

    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
    let counters = app.counters().await;
    assert!(
        counters.crm_429 > 0,
        "the first calls met the cap: {counters:?}"
    );
    assert!(
        counters.crm_429 <= 10,
        "after those the gate held back a turn per 429: {counters:?}"
    );
}

/// The CRM calls the sandbox answered while `page` was loaded (200 expected).
async fn crm_calls_of(app: &TestApp, path: &str) -> u64 {
    let before = app.counters().await.crm_calls;
    let (status, body) = app.get_text(path).await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    app.counters().await.crm_calls - before
}

#[tokio::test]
async fn a_crm_429_followed_by_success_is_one_page_200() {
    let app = TestApp::spawn().await;
    app.login_as(PRIYA).await;
    assert_eq!(app.get("/crm/Leads").await.status(), StatusCode::OK);
    app.inject(json!({"target": "crm", "status": 429, "count": 1}))
        .await;
    let before = app.counters().await.crm_calls;

    let (status, body) = app.get_text("/crm/Leads").await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("Leads"), "{body}");
    assert_eq!(
        app.counters().await.crm_calls - before,
        2,
        "the 429 and the call tried again after it"
    );
}

#[tokio::test]
async fn rate_limits_that_outlast_the_deadline_get_the_429_page() {
    let app = app_with_limits(CrmLimits {
        concurrency: 10,
        queue_timeout: Duration::from_millis(800),
    })
    .await;
    app.login_as(PRIYA).await;
    assert_eq!(app.get("/crm/Leads").await.status(), StatusCode::OK);
    app.inject(json!({"target": "crm", "status": 429, "count": 1000}))
        .await;
    let before = app.counters().await.crm_calls;

    let response = app.get("/crm/Leads").await;

    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().contains_key(RETRY_AFTER));
    let body = response.text().await.expect("body");
    assert!(body.contains("Zoho CRM is limiting requests"), "{body}");
    assert!(
        app.counters().await.crm_calls - before > 1,
        "tried again before giving up"
    );
}

#[tokio::test]
async fn a_page_whose_turn_does_not_come_in_time_gets_the_busy_page() {
    let app = app_with_limits(CrmLimits {
        concurrency: 1,
        queue_timeout: Duration::from_millis(300),
    })
    .await;
    app.login_as(PRIYA).await;
    assert_eq!(app.get("/crm/Leads").await.status(), StatusCode::OK);
    let calls_before = app.counters().await.crm_calls;
    let slow = hold_the_only_turn(&app).await;

    let response = app.get("/crm/Contacts").await;

    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let retry_after: u64 = response.headers()[RETRY_AFTER]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!(retry_after >= 1);
    let body = response.text().await.expect("body");
    assert!(
        body.contains("Zoho is busy, try again in a moment"),
        "{body}"
    );
    assert!(
        body.contains("Priya Raman"),
        "inside the signed-in layout: {body}"
    );
    assert_eq!(
        app.counters().await.crm_calls,
        calls_before + 1,
        "the page that timed out sent nothing to Zoho"
    );
    assert_eq!(slow.await.expect("join"), StatusCode::OK);
}

#[tokio::test]
async fn a_login_takes_its_turn_at_the_orgs_gate_too() {
    let app = app_with_limits(CrmLimits {
        concurrency: 1,
        queue_timeout: Duration::from_millis(300),
    })
    .await;
    app.login_as(PRIYA).await;
    assert_eq!(app.get("/crm/Leads").await.status(), StatusCode::OK);
    let slow = hold_the_only_turn(&app).await;
    let colleague = app.new_browser();
    let auth_url = colleague.start_login().await;
    let callback = colleague.consent(&auth_url, ARJUN, "accept").await;

    let response = colleague.follow(&callback).await;

    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(app.stored_token_of(ARJUN).await.is_none(), "nothing stored");
    assert_eq!(slow.await.expect("join"), StatusCode::OK);
}

#[tokio::test]
async fn login_costs_the_current_user_and_org_calls() {
    let app = TestApp::spawn().await;
    let auth_url = app.start_login().await;
    let callback = app.consent(&auth_url, PRIYA, "accept").await;
    let before = app.counters().await.crm_calls;

    let response = app.follow(&callback).await;

    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response).path(), "/");
    assert_eq!(app.counters().await.crm_calls - before, 2);
}

#[tokio::test]
async fn a_signed_in_landing_page_costs_at_most_one_crm_call() {
    let app = TestApp::spawn().await;
    app.login_as(PRIYA).await;

    assert!(crm_calls_of(&app, "/").await <= 1);
    assert!(crm_calls_of(&app, "/").await <= 1);
}

#[tokio::test]
async fn a_warm_records_page_costs_exactly_one_crm_call() {
    let app = TestApp::spawn().await;
    app.login_as(PRIYA).await;
    for path in ["/crm/Leads", "/crm/Contacts"] {
        crm_calls_of(&app, path).await;

        assert_eq!(crm_calls_of(&app, path).await, 1, "{path}");
        assert_eq!(
            crm_calls_of(&app, &format!("{path}?page=2")).await,
            1,
            "{path}"
        );
    }
}

#[tokio::test]
async fn a_warm_record_page_costs_exactly_one_crm_call() {
    let app = TestApp::spawn().await;
    app.login_as(PRIYA).await;
    let (_, list) = app.get_text("/crm/Leads").await;
    let ids = record_ids(&list, "Leads");
    assert!(ids.len() >= 2, "{list}");
    crm_calls_of(&app, &format!("/crm/Leads/{}", ids[0])).await;

    assert_eq!(
        crm_calls_of(&app, &format!("/crm/Leads/{}", ids[1])).await,
        1
    );
}

#[tokio::test]
async fn the_new_lead_form_costs_no_call_to_show_and_exactly_one_to_send() {
    let app = TestApp::spawn().await;
    app.login_as(PRIYA).await;
    crm_calls_of(&app, "/").await;

    assert_eq!(crm_calls_of(&app, "/crm/Leads/new").await, 0);

    let (_, form) = app.get_text("/crm/Leads/new").await;
    let csrf = csrf_from(&form).expect("the form carries a CSRF token");
    let before = app.counters().await.crm_calls;
    let response = app
        .post_form(
            "/crm/Leads",
            &[
                ("csrf_token", csrf.as_str()),
                ("Last_Name", "Okafor"),
                ("Email", "ada.okafor@example.com"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.counters().await.crm_calls - before, 1);
}

/// Loads a Leads page whose CRM call takes 3 s at Zoho, and returns once that call is in flight (holding the
/// turn of a gate of one); the handle gives the page's status.
pub async fn hold_the_only_turn(app: &TestApp) -> tokio::task::JoinHandle<StatusCode> {
    let calls_before = app.counters().await.crm_calls;
    app.inject(json!({"target": "crm", "delay_ms": 3000, "count": 1}))
        .await;
    let slow = tokio::spawn({
        let client = app.client.clone();
        let url = app.url("/crm/Leads");
        async move { client.get(url).send().await.expect("portal").status() }
    });
    while app.counters().await.crm_calls == calls_before {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    slow
}

/// The ids of the records a list page links to.
fn record_ids(page: &str, module: &str) -> Vec<String> {
    let marker = format!("href=\"/crm/{module}/");
    page.match_indices(&marker)
        .filter_map(|(at, _)| {
            let rest = &page[at + marker.len()..];
            let id: String = rest.chars().take_while(char::is_ascii_digit).collect();
            (!id.is_empty()).then_some(id)
        })
        .collect()
}
