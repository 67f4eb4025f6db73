//! Several portals on one store, as behind a load balancer: one refresh per expiry across all of them.

use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{PRIYA, TestApp};

/// Three portals on one SQLite file (each with its own token manager, so its own in-process single flight), one
/// browser cookie, the access token expired in the store, the sandbox's token endpoint slowed so that every
/// portal finds the token wanting while the first refresh is on its way: 300 pages, spread over the three, make
/// one refresh at Zoho. Without the store's refresh lease each portal refreshes once (three).
#[tokio::test]
async fn three_portals_on_one_sqlite_file_make_one_refresh_per_expiry() {
    let app = TestApp::spawn_on_sqlite().await;
    let (twin_a, handle_a) = app.twin();
    let (twin_b, handle_b) = app.twin();
    app.login_as(PRIYA).await;
    let cookie = format!(
        "{}={}",
        zylker_portal::app::SESSION_COOKIE,
        app.session_cookie().expect("a session cookie")
    );
    app.expire_in_store(PRIYA).await;
    app.inject(json!({"target": "token", "delay_ms": 400, "count": 1}))
        .await;
    let before = app.counters().await.refreshes;

    let portals = [app.address.clone(), twin_a, twin_b];
    let client = reqwest::Client::new();
    let pages = (0..300).map(|n| {
        let url = portals[n % portals.len()].join("/crm/Leads").expect("url");
        let request = client
            .get(url)
            .header(reqwest::header::COOKIE, cookie.clone());
        async move { request.send().await.expect("a page").status() }
    });
    let statuses = join_all(pages).await;

    let not_ok: Vec<_> = statuses.iter().filter(|s| **s != StatusCode::OK).collect();
    assert!(not_ok.is_empty(), "every page is served: {not_ok:?}");
    assert_eq!(
        app.counters().await.refreshes - before,
        1,
        "one refresh at Zoho for the three portals"
    );
    handle_a.stop(false).await;
    handle_b.stop(false).await;
}
