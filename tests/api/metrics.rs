//! What the portal counts: `/metrics` on a listener of its own (and only when asked for), the gate and the
//! calls in it, and the Zoho usage on the administrators' page.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use zylker_portal::zoho::CrmLimits;

use crate::helpers::{PRIYA, TestApp, TestAppOptions};
use crate::limits::hold_the_only_turn;
use crate::serve::{DemoPortal, free_port};

async fn app_with_metrics(crm_limits: CrmLimits) -> TestApp {
    TestApp::spawn_with(TestAppOptions {
        metrics: true,
        crm_limits,
        ..TestAppOptions::default()
    })
    .await
}

async fn scrape(app: &TestApp) -> String {
    let url = app.metrics_url.clone().expect("the portal serves metrics");
    let response = reqwest::get(url)
        .await
        .expect("the metrics listener answers");
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    response.text().await.expect("body")
}

/// The value of the sample `series` (name and labels, as Prometheus' text format writes them).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        line.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|value| value.trim().parse().ok())
    })
}

#[tokio::test]
async fn metrics_count_pages_by_route_and_crm_calls_by_module_and_outcome() {
    let app = app_with_metrics(CrmLimits::default()).await;
    app.login_as(PRIYA).await;
    // Where a login lands: the landing page lists the modules at Zoho, which gives them their labels.
    assert_eq!(app.get("/").await.status(), StatusCode::OK);
    assert_eq!(app.get("/crm/Leads").await.status(), StatusCode::OK);
    assert_eq!(app.get("/crm/Leads?page=2").await.status(), StatusCode::OK);
    assert_eq!(app.get("/crm/Contacts").await.status(), StatusCode::OK);
    assert_eq!(
        app.get("/no/such/page").await.status(),
        StatusCode::NOT_FOUND
    );
    app.expire_in_store(PRIYA).await;
    assert_eq!(app.get("/crm/Leads").await.status(), StatusCode::OK);

    let metrics = scrape(&app).await;

    // The route pattern, never the path asked: `?page=2` and `/crm/Leads` are one series.
    assert_eq!(
        sample(
            &metrics,
            r#"portal_pages_total{route="/crm/{module:Leads}",status="200"}"#
        ),
        Some(3.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            r#"portal_pages_total{route="/crm/{module}",status="200"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &metrics,
            r#"portal_pages_total{route="unmatched",status="404"}"#
        ),
        Some(1.0)
    );
    assert!(!metrics.contains("/no/such/page"), "{metrics}");
    assert_eq!(
        sample(
            &metrics,
            r#"zoho_crm_calls_total{module="Leads",outcome="ok"}"#
        ),
        Some(3.0)
    );
    assert_eq!(
        sample(
            &metrics,
            r#"zoho_crm_calls_total{module="users",outcome="ok"}"#
        ),
        Some(1.0),
        "the login's CurrentUser call"
    );
    assert_eq!(
        sample(&metrics, r#"zoho_token_refreshes_total{outcome="ok"}"#),
        Some(1.0)
    );
    // Pages within the trust window use what was read (`TRUSTED_READ`): at least the first page and the one
    // after the expiry read the store.
    assert!(sample(&metrics, "token_store_read_seconds_count").is_some_and(|n| n >= 2.0));
    assert_eq!(sample(&metrics, "portal_live_sign_ins"), Some(1.0));
    assert_eq!(sample(&metrics, "zoho_crm_429_total"), Some(0.0));
}

#[tokio::test]
async fn the_gate_is_counted_in_metrics() {
    // One call at a time, and a page waits at most half a second for its turn.
    let app = app_with_metrics(CrmLimits {
        concurrency: 1,
        queue_timeout: Duration::from_millis(500),
    })
    .await;
    app.login_as(PRIYA).await;
    assert_eq!(app.get("/crm/Leads").await.status(), StatusCode::OK);
    let slow = hold_the_only_turn(&app).await;
    let queued = app.get("/crm/Leads").await.status();
    assert_eq!(slow.await.expect("join"), StatusCode::OK);

    assert_eq!(queued, StatusCode::SERVICE_UNAVAILABLE);
    let metrics = scrape(&app).await;
    assert_eq!(
        sample(&metrics, "zoho_crm_queue_timeouts_total"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(sample(&metrics, "zoho_crm_queue_depth"), Some(0.0));
    // Every call took its turn (the login's two, the modules, two Leads pages, the one that timed out); the
    // one that timed out waited the whole queue timeout.
    let waits = sample(&metrics, "zoho_crm_queue_wait_seconds_count").expect("the histogram");
    assert_eq!(waits, 6.0);
    assert!(sample(&metrics, "zoho_crm_queue_wait_seconds_sum").is_some_and(|sum| sum >= 0.5));
    assert_eq!(
        sample(&metrics, r#"zoho_crm_queue_wait_seconds_bucket{le="0.25"}"#),
        Some(waits - 1.0)
    );
    assert_eq!(
        sample(
            &metrics,
            r#"portal_pages_total{route="/crm/{module:Leads}",status="503"}"#
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn metrics_are_never_on_the_public_listener() {
    for metrics in [false, true] {
        let app = TestApp::spawn_with(TestAppOptions {
            metrics,
            ..TestAppOptions::default()
        })
        .await;
        app.login_as(PRIYA).await;

        let (status, body) = app.get_text("/metrics").await;

        assert_eq!(status, StatusCode::NOT_FOUND, "with metrics: {metrics}");
        assert!(!body.contains("zoho_crm_calls_total"));
    }
}

#[tokio::test]
async fn serve_listens_for_metrics_only_with_metrics_bind() {
    let metrics_port = free_port();
    let bind = format!("127.0.0.1:{metrics_port}");
    let with = DemoPortal::start(&["serve", "--metrics-bind", &bind]).await;
    let browser = with.login_as(PRIYA).await;
    // Where the login lands (the modules listed at Zoho, and with them their labels).
    let landing = browser
        .get(with.public_url.clone())
        .send()
        .await
        .expect("portal");
    assert_eq!(landing.status(), StatusCode::OK);
    let leads = browser
        .get(with.public_url.join("/crm/Leads").expect("url"))
        .send()
        .await
        .expect("portal");
    assert_eq!(leads.status(), StatusCode::OK);

    let metrics = reqwest::get(format!("http://{bind}/metrics"))
        .await
        .expect("the metrics listener answers")
        .text()
        .await
        .expect("body");
    let public = browser
        .get(with.public_url.join("/metrics").expect("url"))
        .send()
        .await
        .expect("portal");

    assert!(
        metrics.contains(r#"zoho_crm_calls_total{module="Leads",outcome="ok"} 1"#),
        "{metrics}"
    );
    assert_eq!(public.status(), StatusCode::NOT_FOUND);
    drop(with);

    let without = DemoPortal::start(&["serve"]).await;
    let public = reqwest::get(without.public_url.join("/metrics").expect("url"))
        .await
        .expect("portal");
    assert_eq!(public.status(), StatusCode::NOT_FOUND);
    assert!(
        reqwest::get(format!("http://{bind}/metrics"))
            .await
            .is_err(),
        "nothing listens for metrics without --metrics-bind"
    );
}

/// The number shown beside `label` on the administrators' page.
fn shown(page: &str, label: &str) -> u64 {
    let marker = format!("<dt>{label}</dt><dd>");
    let start = page
        .find(&marker)
        .unwrap_or_else(|| panic!("{label} is shown"))
        + marker.len();
    let end = start + page[start..].find('<').expect("the number ends");
    page[start..end].parse().expect("a number")
}

#[tokio::test]
async fn the_administrators_page_shows_this_portals_zoho_usage() {
    let app = TestApp::spawn().await;
    app.login_as(PRIYA).await;
    assert_eq!(app.get("/crm/Leads").await.status(), StatusCode::OK);
    app.inject(json!({"target": "crm", "status": 429, "count": 1}))
        .await;
    assert_eq!(app.get("/crm/Leads").await.status(), StatusCode::OK);
    app.expire_in_store(PRIYA).await;

    let (status, page) = app.get_text("/admin/tokens").await;

    assert_eq!(status, StatusCode::OK, "{page}");
    let counters = app.counters().await;
    assert_eq!(
        shown(&page, "CRM calls"),
        counters.crm_calls,
        "every CRM call the sandbox saw, this page's own included"
    );
    assert_eq!(shown(&page, "Answered 429 (too many requests)"), 1);
    assert_eq!(shown(&page, "Token refreshes"), counters.refreshes);
    assert_eq!(counters.refreshes, 1);
    assert_eq!(shown(&page, "Calls that queued"), 0);
}

#[tokio::test]
async fn made_up_modules_in_addresses_cannot_push_a_real_module_out_of_the_labels() {
    let app = app_with_metrics(CrmLimits::default()).await;
    app.login_as(PRIYA).await;
    assert_eq!(
        app.get("/").await.status(),
        StatusCode::OK,
        "the navigation is listed"
    );

    // A hundred made-up modules, a list page and a record page each, ten at a time as a browser's tabs would.
    let pages: Vec<String> = (1..=100)
        .flat_map(|n| [format!("/crm/Fake_{n}"), format!("/crm/Fake_{n}/1")])
        .collect();
    for batch in pages.chunks(10) {
        let statuses = futures_util::future::join_all(batch.iter().map(|page| app.get(page))).await;
        for response in statuses {
            assert_ne!(
                response.status(),
                StatusCode::OK,
                "{} is no module",
                response.url()
            );
        }
    }
    assert_eq!(app.get("/crm/Contacts").await.status(), StatusCode::OK);

    let metrics = scrape(&app).await;

    assert_eq!(
        sample(
            &metrics,
            r#"zoho_crm_calls_total{module="Contacts",outcome="ok"}"#
        ),
        Some(1.0),
        "{metrics}"
    );
    assert!(!metrics.contains("Fake_"), "{metrics}");
    assert!(
        sample(
            &metrics,
            r#"zoho_crm_calls_total{module="other",outcome="client_error"}"#
        )
        .is_some_and(|calls| calls >= 100.0),
        "the made-up modules' calls are counted together: {metrics}"
    );
}

#[tokio::test]
async fn a_fresh_portal_lists_every_counter_at_zero() {
    let app = app_with_metrics(CrmLimits::default()).await;

    let metrics = scrape(&app).await;

    let mut series = vec![
        "zoho_crm_429_total".to_owned(),
        "zoho_crm_queue_timeouts_total".to_owned(),
        r#"portal_pages_total{route="unmatched",status="404"}"#.to_owned(),
    ];
    for outcome in [
        "ok",
        "dead",
        "throttled",
        "misconfigured",
        "rejected",
        "timeout",
        "unreachable",
        "protocol",
    ] {
        series.push(format!(
            r#"zoho_token_refreshes_total{{outcome="{outcome}"}}"#
        ));
    }
    for module in [
        "users",
        "org",
        "settings/modules",
        "settings/fields",
        "other",
    ] {
        for outcome in [
            "ok",
            "rate_limited",
            "unauthorized",
            "forbidden",
            "client_error",
            "server_error",
            "timeout",
            "unreachable",
        ] {
            series.push(format!(
                r#"zoho_crm_calls_total{{module="{module}",outcome="{outcome}"}}"#
            ));
        }
    }
    for series in series {
        assert_eq!(sample(&metrics, &series), Some(0.0), "{series}:\n{metrics}");
    }
}
