//! The CRM gate is fair, over HTTP against a slow sandbox: one user's flood costs another user one turn of the
//! gate, a login during the flood is served first, a page whose browser has gone spends no Zoho call, and a
//! page waiting on another portal's refresh lease waits no longer than the queue timeout.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use zylker_portal::sandbox;
use zylker_portal::zoho::CrmLimits;

use crate::helpers::{ARJUN, Browser, PRIYA, StoreChoice, TestApp, TestAppOptions, location};

/// The gate's size in these tests: two calls in flight per org, as in the report that found the unfair queue.
const GATE: usize = 2;
/// How long each CRM call takes at the sandbox.
const LATENCY: Duration = Duration::from_millis(250);
/// The flood of one user: forty pages at once.
const FLOOD: usize = 40;

/// A portal whose gate lets [`GATE`] calls through, with a queue timeout long enough that nothing in the flood
/// times out (the old gate served them all, in order), in front of a sandbox that takes `latency` a call.
async fn app_in_front_of_a_slow_zoho(latency: Duration) -> TestApp {
    TestApp::spawn_with(TestAppOptions {
        metrics: true,
        crm_limits: CrmLimits {
            concurrency: GATE,
            queue_timeout: Duration::from_secs(60),
        },
        sandbox_crm: sandbox::CrmLimits {
            latency,
            concurrency: None,
            credits_per_day: None,
        },
        ..TestAppOptions::default()
    })
    .await
}

async fn scrape(app: &TestApp) -> String {
    let url = app.metrics_url.clone().expect("the portal serves metrics");
    reqwest::get(url)
        .await
        .expect("the metrics listener answers")
        .text()
        .await
        .expect("body")
}

/// The value of the sample `series` in Prometheus' text format.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        line.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|value| value.trim().parse().ok())
    })
}

/// Waits until at least `calls` CRM calls wait in the portal's queue.
async fn until_queued(app: &TestApp, calls: usize) {
    for _ in 0..500 {
        let depth = sample(&scrape(app).await, "zoho_crm_queue_depth").unwrap_or(0.0);
        if depth >= calls as f64 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{calls} calls never queued");
}

/// A flood of [`FLOOD`] Leads pages at once from `browser`; the handles answer each page's status, and the
/// counter says how many have been answered so far.
fn flood(browser: &Browser) -> (Vec<tokio::task::JoinHandle<StatusCode>>, Arc<AtomicUsize>) {
    let answered = Arc::new(AtomicUsize::new(0));
    let pages = (0..FLOOD)
        .map(|_| {
            let (client, url, answered) = (
                browser.client.clone(),
                browser.url("/crm/Leads"),
                answered.clone(),
            );
            tokio::spawn(async move {
                let status = client.get(url).send().await.expect("portal").status();
                answered.fetch_add(1, Ordering::SeqCst);
                status
            })
        })
        .collect();
    (pages, answered)
}

async fn statuses(pages: Vec<tokio::task::JoinHandle<StatusCode>>) -> Vec<StatusCode> {
    let mut statuses = Vec::with_capacity(pages.len());
    for page in pages {
        statuses.push(page.await.expect("join"));
    }
    statuses
}

#[tokio::test]
async fn another_users_page_is_served_after_one_turn_while_one_user_floods_the_gate() {
    let app = app_in_front_of_a_slow_zoho(LATENCY).await;
    app.login_as(PRIYA).await;
    let arjun = app.new_browser();
    arjun.login_as(ARJUN).await;
    for browser in [&app.browser, &arjun] {
        // Warm: a Leads page is then one CRM call.
        assert_eq!(browser.get("/crm/Leads").await.status(), StatusCode::OK);
    }
    let (pages, flood_answered) = flood(&app.browser);
    until_queued(&app, FLOOD - GATE).await;

    let started = Instant::now();
    let (status, body) = arjun.get_text("/crm/Leads").await;
    let waited = started.elapsed();
    let flood_before = flood_answered.load(Ordering::SeqCst);

    eprintln!(
        "Arjun's page with {FLOOD} of Priya's queued (gate {GATE}, {} ms a call): {} ms, after {flood_before} of the flood",
        LATENCY.as_millis(),
        waited.as_millis()
    );
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        flood_before <= 10,
        "served before most of the flood, not after it: {flood_before} of {FLOOD} were answered first"
    );
    // One turn of the gate is one call's latency; ten are allowed for a noisy machine (the flood takes twenty).
    assert!(
        waited < LATENCY * 10,
        "waited about one turn of the gate, not the flood's: {waited:?}"
    );
    let flooded = statuses(pages).await;
    assert!(
        flooded.iter().all(|s| *s == StatusCode::OK),
        "the flood is served too: {flooded:?}"
    );
}

#[tokio::test]
async fn a_login_during_a_flood_is_served_before_the_flood() {
    let app = app_in_front_of_a_slow_zoho(LATENCY).await;
    app.login_as(PRIYA).await;
    assert_eq!(app.get("/crm/Leads").await.status(), StatusCode::OK);
    let newcomer = app.new_browser();
    let auth_url = newcomer.start_login().await;
    let callback = newcomer.consent(&auth_url, ARJUN, "accept").await;
    let (pages, flood_answered) = flood(&app.browser);
    until_queued(&app, FLOOD - GATE).await;

    let started = Instant::now();
    let response = newcomer.follow(&callback).await;
    let callback_took = started.elapsed();
    let landing = newcomer.get("/").await;
    let flood_before = flood_answered.load(Ordering::SeqCst);

    eprintln!(
        "a callback with {FLOOD} pages queued (gate {GATE}, {} ms a call): {} ms; landed after {flood_before} of the flood",
        LATENCY.as_millis(),
        callback_took.as_millis()
    );
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response).path(), "/");
    assert_eq!(landing.status(), StatusCode::OK);
    let landing = landing.text().await.expect("body");
    assert!(landing.contains("Arjun"), "signed in: {landing}");
    // The callback's two calls (who, which org) take the login lane: two turns, not the flood's twenty.
    assert!(
        callback_took < LATENCY * 10,
        "the callback did not wait for the flood: {callback_took:?}"
    );
    assert!(
        flood_before <= 10,
        "signed in and landed before most of the flood: {flood_before} of {FLOOD} were answered first"
    );
    let flooded = statuses(pages).await;
    assert!(flooded.iter().all(|s| *s == StatusCode::OK), "{flooded:?}");
}

#[tokio::test]
async fn pages_whose_browser_has_gone_leave_the_queue_spend_no_zoho_call_and_are_counted() {
    // Two pages are answered in the browsers' second; the other 28 are still queued or in flight when they go.
    let latency = Duration::from_millis(600);
    let app = app_in_front_of_a_slow_zoho(latency).await;
    app.login_as(PRIYA).await;
    assert_eq!(app.get("/crm/Leads").await.status(), StatusCode::OK);
    let metrics = scrape(&app).await;
    assert_eq!(
        sample(&metrics, "zoho_crm_queue_abandoned_total"),
        Some(0.0),
        "counted from the start: {metrics}"
    );
    let turns_before = sample(&metrics, "zoho_crm_queue_wait_seconds_count").unwrap_or(0.0);
    // Thirty browsers that give up after a second (`curl --max-time 1`), sharing Priya's cookie.
    let impatient = reqwest::Client::builder()
        .cookie_provider(app.cookies.clone())
        .timeout(Duration::from_secs(1))
        .build()
        .expect("client");
    let pages: Vec<_> = (0..30)
        .map(|_| {
            let request = impatient.get(app.url("/crm/Leads"));
            tokio::spawn(async move { request.send().await.map(|r| r.status()) })
        })
        .collect();
    let mut gave_up = 0;
    for page in pages {
        match page.await.expect("join") {
            Ok(status) => assert_eq!(status, StatusCode::OK),
            Err(error) if error.is_timeout() => gave_up += 1,
            Err(error) => panic!("{error}"),
        }
    }
    let when_they_left = app.counters().await.crm_calls;
    assert!(gave_up >= 20, "most browsers gave up: {gave_up}");

    // Long enough for the old gate to hand out eight more rounds of turns to pages nobody waits for.
    tokio::time::sleep(latency * 8).await;

    let spent_after = app.counters().await.crm_calls - when_they_left;
    let metrics = scrape(&app).await;
    let abandoned = sample(&metrics, "zoho_crm_queue_abandoned_total").unwrap_or(0.0) as u64;
    eprintln!(
        "Zoho calls after {gave_up} of 30 browsers gave up (gate {GATE}, {} ms a call): {spent_after}; abandoned in the queue: {abandoned}",
        latency.as_millis()
    );
    assert!(
        spent_after <= GATE as u64,
        "at most the calls already in flight reach Zoho after the browsers left: {spent_after}"
    );
    // Each page either had its turn (the wait histogram counts it) or left the queue without one.
    let turns = sample(&metrics, "zoho_crm_queue_wait_seconds_count").unwrap_or(0.0) - turns_before;
    assert_eq!(abandoned + turns as u64, 30, "{metrics}");
    // The browsers' clocks started a few milliseconds apart: a page whose browser was still there when a turn
    // came took it; the rest left without one.
    assert!(abandoned > 0, "{metrics}");
    assert_eq!(sample(&metrics, "zoho_crm_queue_depth"), Some(0.0));
    assert_eq!(
        app.get("/crm/Leads").await.status(),
        StatusCode::OK,
        "no turn was lost"
    );
}

#[tokio::test]
async fn pages_whose_browsers_all_go_at_once_leave_the_queue_without_a_turn() {
    let app = app_in_front_of_a_slow_zoho(Duration::from_millis(600)).await;
    app.login_as(PRIYA).await;
    assert_eq!(app.get("/crm/Leads").await.status(), StatusCode::OK);
    let before = app.counters().await.crm_calls;
    let turns_before =
        sample(&scrape(&app).await, "zoho_crm_queue_wait_seconds_count").unwrap_or(0.0);
    let pages: Vec<_> = (0..30)
        .map(|_| {
            let request = app.client.get(app.url("/crm/Leads"));
            tokio::spawn(async move { request.send().await.map(|r| r.status()) })
        })
        .collect();
    until_queued(&app, 30 - GATE).await;

    // Every browser goes: its connection closes.
    for page in &pages {
        page.abort();
    }
    // Long enough for the old gate to hand out four more rounds of turns to pages nobody waits for.
    tokio::time::sleep(Duration::from_millis(600 * 4)).await;

    let metrics = scrape(&app).await;
    let abandoned = sample(&metrics, "zoho_crm_queue_abandoned_total").unwrap_or(0.0);
    let spent = app.counters().await.crm_calls - before;
    eprintln!("30 browsers gone at once: {abandoned} calls abandoned, {spent} Zoho calls in all");
    assert_eq!(
        spent, GATE as u64,
        "only the calls in flight when the browsers went reached Zoho"
    );
    // The connections close one after another in a few milliseconds: a turn given back by a page that went
    // first may reach a page whose going the server has not read yet, which then goes before calling Zoho.
    assert!(
        abandoned >= 20.0,
        "the queued pages left without a turn: {metrics}"
    );
    let turns = sample(&metrics, "zoho_crm_queue_wait_seconds_count").unwrap_or(0.0) - turns_before;
    assert_eq!(
        abandoned + turns,
        30.0,
        "each page had its turn or left: {metrics}"
    );
    assert_eq!(sample(&metrics, "zoho_crm_queue_depth"), Some(0.0));
    assert_eq!(app.get("/crm/Leads").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_login_whose_browser_goes_during_the_callback_still_stores_its_token() {
    let app = TestApp::spawn().await;
    let newcomer = app.new_browser();
    let auth_url = newcomer.start_login().await;
    let callback = newcomer.consent(&auth_url, ARJUN, "accept").await;
    // Identifying the user takes a second and a half at Zoho; the browser gives up after half a second, once
    // the code has been exchanged.
    app.inject(json!({"target": "crm", "delay_ms": 1500, "count": 1}))
        .await;

    let gone = tokio::time::timeout(Duration::from_millis(500), newcomer.follow(&callback)).await;

    assert!(gone.is_err(), "the browser went before the answer");
    let mut stored = None;
    for _ in 0..50 {
        stored = app.stored_token_of(ARJUN).await;
        if stored.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        stored.is_some(),
        "the login ran to its end: the exchanged code's token is stored"
    );
    let counters = app.counters().await;
    assert_eq!(counters.code_exchanges, 1);
    assert_eq!(counters.revocations, 0, "{counters:?}");
    // The next login is the usual one.
    newcomer.login_as(ARJUN).await;
    assert_eq!(newcomer.get("/crm/Leads").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_page_waiting_on_a_killed_portals_refresh_lease_gets_the_busy_page_within_the_queue_timeout()
 {
    let queue_timeout = Duration::from_secs(1);
    let app = TestApp::spawn_with(TestAppOptions {
        store: StoreChoice::SqliteFile,
        crm_limits: CrmLimits {
            concurrency: GATE,
            queue_timeout,
        },
        ..TestAppOptions::default()
    })
    .await;
    let (other_portal, other_handle) = app.twin();
    app.login_as(PRIYA).await;
    let cookie = format!(
        "{}={}",
        zylker_portal::app::SESSION_COOKIE,
        app.session_cookie().expect("a session cookie")
    );
    let token_id = app
        .stored_token_of(PRIYA)
        .await
        .and_then(|token| token.id)
        .expect("a stored token");
    // A portal took the refresh lease and was killed before giving it back: the lease lives a minute more.
    let store = app.store.clone();
    let taken = tokio::task::spawn_blocking(move || {
        store.try_acquire_refresh_lease(&token_id, "4242:killed", Duration::from_secs(60))
    })
    .await
    .expect("join")
    .expect("the store answers");
    assert!(taken);
    app.expire_in_store(PRIYA).await;
    let refreshes_before = app.counters().await.refreshes;

    // Three tabs at once: one waits on the lease, the other two behind it in this portal's single flight.
    let started = Instant::now();
    let client = reqwest::Client::new();
    let pages = (0..3).map(|_| {
        let request = client
            .get(other_portal.join("/crm/Leads").expect("url"))
            .header(reqwest::header::COOKIE, cookie.clone())
            .timeout(Duration::from_secs(30));
        async move {
            let response = request
                .send()
                .await
                .expect("the other portal answers within 30 s");
            (response, started.elapsed())
        }
    });
    let answers = futures_util::future::join_all(pages).await;

    for (response, waited) in answers {
        eprintln!(
            "a page behind a killed portal's lease, queue timeout {} ms: answered in {} ms",
            queue_timeout.as_millis(),
            waited.as_millis()
        );
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            response
                .headers()
                .contains_key(reqwest::header::RETRY_AFTER)
        );
        let body = response.text().await.expect("body");
        assert!(
            body.contains("Zoho is busy, try again in a moment"),
            "{body}"
        );
        assert!(
            waited < queue_timeout + Duration::from_secs(3),
            "bounded by the queue timeout, not the lease's minute: {waited:?}"
        );
    }
    assert_eq!(
        app.counters().await.refreshes,
        refreshes_before,
        "nothing refreshed behind the holder's back"
    );
    assert!(app.stored_token_of(PRIYA).await.is_some(), "nothing lost");
    other_handle.stop(false).await;
}
