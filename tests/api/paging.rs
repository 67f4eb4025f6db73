//! Record lists in order and past the 2,000th record: `sort_by`/`sort_order` through the column headings and the
//! paging links, and Zoho's `page_token` from page 100 on (expiring, bound to its user), one CRM call per page.

use reqwest::StatusCode;
use serde_json::{Value, json};
use zylker_portal::secret::Secret;

use crate::helpers::{ARJUN, Browser, PRIYA, TestApp, location};

/// Records per list page.
const PER_PAGE: usize = 20;

/// The record ids of a list page, in order.
fn row_ids(body: &str, module: &str) -> Vec<String> {
    let marker = format!("<a href=\"/crm/{module}/");
    body.match_indices(&marker)
        .map(|(at, _)| {
            let rest = &body[at + marker.len()..];
            rest[..rest.find('"').unwrap_or(0)].to_owned()
        })
        .filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
        .collect()
}

/// The `href` of the link marked `rel="{rel}"`, as the browser would follow it (HTML entities decoded).
fn link(body: &str, rel: &str) -> Option<String> {
    let marker = format!("rel=\"{rel}\" href=\"");
    let start = body.find(&marker)? + marker.len();
    let end = body[start..].find('"')? + start;
    Some(body[start..end].replace("&amp;", "&").replace("&#38;", "&"))
}

/// The "Created" cell of every row, as days since an arbitrary start (the list shows the day, `9 Oct 2026`).
fn created_days(body: &str) -> Vec<i64> {
    let marker = "<td data-label=\"Created\">";
    body.match_indices(marker)
        .map(|(at, _)| {
            let rest = &body[at + marker.len()..];
            let text = &rest[..rest.find('<').unwrap_or(0)];
            day_number(text).unwrap_or_else(|| panic!("a date in the Created column: {text:?}"))
        })
        .collect()
}

fn day_number(text: &str) -> Option<i64> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let mut parts = text.split_whitespace();
    let day: i64 = parts.next()?.parse().ok()?;
    let month = parts.next()?;
    let month = MONTHS.iter().position(|m| *m == month)? as i64;
    let year: i64 = parts.next()?.parse().ok()?;
    Some(year * 372 + month * 31 + day)
}

/// A list page of the browser, with its status and the CRM calls it cost at the sandbox.
async fn page(app: &TestApp, browser: &Browser, path: &str) -> (StatusCode, String, u64) {
    let before = app.counters().await.crm_calls;
    let (status, body) = browser.get_text(path).await;
    let calls = app.counters().await.crm_calls - before;
    (status, body, calls)
}

/// A login as `email`, and the first page after it (which also lists the person's modules at Zoho once), so
/// that the pages counted afterwards cost only their own CRM calls.
async fn signed_in(app: &TestApp, email: &str) {
    app.login_as(email).await;
    let (status, _) = app.get_text("/crm/Leads").await;
    assert_eq!(status, StatusCode::OK);
}

/// `GET {sandbox}/crm/v8/{path}` as Zoho's API, with `email`'s access token from the portal's store.
async fn zoho_get(app: &TestApp, email: &str, path: &str) -> (StatusCode, Value) {
    let token = app.stored_token_of(email).await.expect("a stored token");
    let access = token
        .access_token
        .as_ref()
        .map(Secret::expose_secret)
        .expect("an access token")
        .to_owned();
    let response = reqwest::Client::new()
        .get(
            app.sandbox_url
                .join(&format!("/crm/v8/{path}"))
                .expect("url"),
        )
        .header("Authorization", format!("Zoho-oauthtoken {access}"))
        .send()
        .await
        .expect("the sandbox answers");
    let status = response.status();
    let body = response.text().await.expect("body");
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// Inserts `count` leads at the sandbox; their ids, oldest first.
async fn insert_leads(app: &TestApp, count: usize) -> Vec<String> {
    let answer = app
        .sandbox_post("/_sandbox/records/Leads/bulk", json!({ "count": count }))
        .await;
    answer["ids"]
        .as_array()
        .expect("the ids")
        .iter()
        .map(|id| id.as_str().expect("an id").to_owned())
        .collect()
}

/// The leads the portal lists newest first (its default order) at `positions`, from the bulk-inserted `ids`
/// (all newer than the seeded ones).
fn newest_first(ids: &[String], positions: std::ops::Range<usize>) -> Vec<String> {
    positions.map(|p| ids[ids.len() - 1 - p].clone()).collect()
}

#[tokio::test]
async fn sorting_by_created_time_orders_the_rows_both_ways_as_zoho_does() {
    let app = TestApp::spawn().await;
    signed_in(&app, PRIYA).await;

    let (asc_status, asc, asc_calls) =
        page(&app, &app, "/crm/Leads?sort_by=Created_Time&sort_order=asc").await;
    let (desc_status, desc, desc_calls) = page(
        &app,
        &app,
        "/crm/Leads?sort_by=Created_Time&sort_order=desc",
    )
    .await;

    assert_eq!((asc_status, desc_status), (StatusCode::OK, StatusCode::OK));
    assert_eq!((asc_calls, desc_calls), (1, 1), "one CRM call per page");
    let (asc_days, desc_days) = (created_days(&asc), created_days(&desc));
    assert_eq!((asc_days.len(), desc_days.len()), (PER_PAGE, PER_PAGE));
    assert!(asc_days.windows(2).all(|w| w[0] <= w[1]), "{asc_days:?}");
    assert!(desc_days.windows(2).all(|w| w[0] >= w[1]), "{desc_days:?}");
    assert!(
        asc_days[PER_PAGE - 1] < desc_days[PER_PAGE - 1],
        "oldest and newest differ"
    );
    // The rows are Zoho's order to the second, not only to the day.
    let (status, zoho) = zoho_get(
        &app,
        PRIYA,
        "Leads?fields=Created_Time&sort_by=Created_Time&sort_order=asc&per_page=20",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let times: Vec<&str> = zoho["data"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| r["Created_Time"].as_str().expect("a time"))
        .collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
    let zoho_ids: Vec<String> = zoho["data"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| r["id"].as_str().expect("an id").to_owned())
        .collect();
    assert_eq!(row_ids(&asc, "Leads"), zoho_ids);
}

#[tokio::test]
async fn the_created_heading_sorts_and_shows_the_current_direction() {
    let app = TestApp::spawn().await;
    signed_in(&app, PRIYA).await;

    let (_, unsorted) = app.get_text("/crm/Leads").await;
    let (_, asc) = app
        .get_text("/crm/Leads?sort_by=Created_Time&sort_order=asc")
        .await;
    let (_, desc) = app
        .get_text("/crm/Leads?sort_by=Created_Time&sort_order=desc")
        .await;

    let heading = "<a class=\"sort\" href=\"/crm/Leads?sort_by=Created_Time&amp;sort_order=";
    assert!(
        unsorted.contains(&format!("{heading}asc\">Created")),
        "{unsorted}"
    );
    assert!(!unsorted.contains("aria-sort"));
    assert!(asc.contains("<th scope=\"col\" aria-sort=\"ascending\">"));
    assert!(asc.contains(&format!(
        "{heading}desc\">Created<span class=\"sort-arrow\" aria-hidden=\"true\">▲"
    )));
    assert!(desc.contains("<th scope=\"col\" aria-sort=\"descending\">"));
    assert!(desc.contains(&format!(
        "{heading}asc\">Created<span class=\"sort-arrow\" aria-hidden=\"true\">▼"
    )));
    // The other headings are plain text.
    for plain in ["Name", "Email", "Phone", "Status", "Source"] {
        assert!(
            asc.contains(&format!("<th scope=\"col\">{plain}</th>")),
            "{plain}"
        );
    }
}

#[tokio::test]
async fn paging_while_sorted_keeps_the_order_across_pages() {
    let app = TestApp::spawn().await;
    signed_in(&app, PRIYA).await;

    let (_, first) = app
        .get_text("/crm/Leads?sort_by=Created_Time&sort_order=asc")
        .await;
    let next = link(&first, "next").expect("a next link");
    assert_eq!(
        next,
        "/crm/Leads?page=2&sort_by=Created_Time&sort_order=asc"
    );
    let (status, second, calls) = page(&app, &app, &next).await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(calls, 1);
    let (first_days, second_days) = (created_days(&first), created_days(&second));
    assert!(second_days.windows(2).all(|w| w[0] <= w[1]));
    assert!(
        first_days[PER_PAGE - 1] <= second_days[0],
        "page 2 goes on where page 1 ended"
    );
    let (status, zoho) = zoho_get(
        &app,
        PRIYA,
        "Leads?fields=Created_Time&sort_by=Created_Time&sort_order=asc&per_page=40",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let expected: Vec<String> = zoho["data"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| r["id"].as_str().expect("an id").to_owned())
        .collect();
    let shown: Vec<String> = [row_ids(&first, "Leads"), row_ids(&second, "Leads")].concat();
    assert_eq!(shown, expected);
    assert_eq!(
        link(&second, "prev").as_deref(),
        Some("/crm/Leads?page=1&sort_by=Created_Time&sort_order=asc")
    );
}

#[tokio::test]
async fn an_unknown_order_gets_a_400_page_and_zoho_names_the_orders_it_takes() {
    let app = TestApp::spawn().await;
    signed_in(&app, PRIYA).await;
    let before = app.counters().await.crm_calls;

    let (by_status, by_body) = app.get_text("/crm/Leads?sort_by=Last_Name").await;
    let (order_status, _) = app
        .get_text("/crm/Leads?sort_by=Created_Time&sort_order=sideways")
        .await;

    assert_eq!(by_status, StatusCode::BAD_REQUEST);
    assert_eq!(order_status, StatusCode::BAD_REQUEST);
    assert!(by_body.contains("Created_Time"), "the page says what sorts");
    assert_eq!(
        app.counters().await.crm_calls,
        before,
        "nothing asked of Zoho"
    );
    let (status, zoho) = zoho_get(&app, PRIYA, "Leads?fields=Last_Name&sort_by=Last_Name").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(zoho["code"], "INVALID_DATA");
    assert_eq!(zoho["details"]["param_name"], "sort_by");
    assert_eq!(
        zoho["details"]["supported_values"],
        json!(["id", "Created_Time", "Modified_Time"])
    );
}

#[tokio::test]
async fn past_page_100_the_next_link_carries_a_page_token_to_records_2001_on() {
    let app = TestApp::spawn().await;
    signed_in(&app, PRIYA).await;
    let ids = insert_leads(&app, 2_100).await;

    // Page by page, as a person clicking Next would, to page 100: numbered links, one CRM call each.
    let mut path = "/crm/Leads".to_owned();
    for number in 1..=100 {
        let (status, body, calls) = page(&app, &app, &path).await;
        assert_eq!((status, calls), (StatusCode::OK, 1), "page {number}");
        path = link(&body, "next").unwrap_or_else(|| panic!("a next link on page {number}"));
        if number < 100 {
            assert_eq!(path, format!("/crm/Leads?page={}", number + 1));
        }
    }
    assert!(
        path.starts_with("/crm/Leads?page=101&page_token="),
        "{path}"
    );

    let (status, page_101, calls) = page(&app, &app, &path).await;
    assert_eq!((status, calls), (StatusCode::OK, 1));
    assert!(page_101.contains("Page 101"));
    assert_eq!(
        row_ids(&page_101, "Leads"),
        newest_first(&ids, 2_000..2_020),
        "records 2,001 to 2,020"
    );
    assert_eq!(
        link(&page_101, "prev").as_deref(),
        Some("/crm/Leads?page=100")
    );

    let next = link(&page_101, "next").expect("a next link on page 101");
    assert!(
        next.starts_with("/crm/Leads?page=102&page_token="),
        "{next}"
    );
    let (status, page_102, calls) = page(&app, &app, &next).await;
    assert_eq!((status, calls), (StatusCode::OK, 1));
    assert_eq!(
        row_ids(&page_102, "Leads"),
        newest_first(&ids, 2_020..2_040)
    );

    // Back with Zoho's previous_page_token.
    let previous = link(&page_102, "prev").expect("a previous link on page 102");
    assert!(
        previous.starts_with("/crm/Leads?page=101&page_token="),
        "{previous}"
    );
    let (status, again, _) = page(&app, &app, &previous).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(row_ids(&again, "Leads"), newest_first(&ids, 2_000..2_020));
}

#[tokio::test]
async fn the_page_token_keeps_the_order_of_a_sorted_list() {
    let app = TestApp::spawn().await;
    signed_in(&app, PRIYA).await;
    let ids = insert_leads(&app, 2_050).await;

    let (_, page_100) = app
        .get_text("/crm/Leads?page=100&sort_by=Created_Time&sort_order=desc")
        .await;
    let next = link(&page_100, "next").expect("a next link");
    assert!(next.contains("&page_token="), "{next}");
    assert!(
        next.ends_with("&sort_by=Created_Time&sort_order=desc"),
        "{next}"
    );
    let (status, page_101, calls) = page(&app, &app, &next).await;

    assert_eq!((status, calls), (StatusCode::OK, 1));
    assert_eq!(
        row_ids(&page_101, "Leads"),
        newest_first(&ids, 2_000..2_020)
    );
    assert!(page_101.contains("aria-sort=\"descending\""));
}

/// Page 100 of Priya's Leads (after 2,100 more were inserted) and its Next link, which carries a page token.
async fn page_token_link(app: &TestApp) -> String {
    insert_leads(app, 2_100).await;
    let (status, body) = app.get_text("/crm/Leads?page=100").await;
    assert_eq!(status, StatusCode::OK);
    let next = link(&body, "next").expect("a next link on page 100");
    assert!(next.contains("page_token="), "{next}");
    next
}

const RESTARTED: &str = "so the list starts again at the first page";

#[tokio::test]
async fn an_expired_page_token_starts_the_list_again_with_a_note() {
    let app = TestApp::spawn().await;
    signed_in(&app, PRIYA).await;
    app.sandbox_post("/_sandbox/page-token-ttl", json!({"seconds": 60}))
        .await;
    let next = page_token_link(&app).await;
    app.sandbox_post("/_sandbox/advance-clock", json!({"seconds": 61}))
        .await;

    let before = app.counters().await.crm_calls;
    let response = app.get(&next).await;
    assert_eq!(
        app.counters().await.crm_calls,
        before + 1,
        "Zoho refused it once"
    );

    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let restart = location(&response);
    assert_eq!(restart.path(), "/crm/Leads");
    assert_eq!(restart.query(), None);
    let (status, body) = app.get_text("/crm/Leads").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains(RESTARTED), "{body}");
    assert!(body.contains("Page 1"));
    let (_, again) = app.get_text("/crm/Leads").await;
    assert!(!again.contains(RESTARTED), "the note shows once");
}

#[tokio::test]
async fn a_sorted_list_starts_again_in_its_order() {
    let app = TestApp::spawn().await;
    signed_in(&app, PRIYA).await;
    app.sandbox_post("/_sandbox/page-token-ttl", json!({"seconds": 60}))
        .await;
    insert_leads(&app, 2_100).await;
    let (_, page_100) = app
        .get_text("/crm/Leads?page=100&sort_by=Modified_Time&sort_order=asc")
        .await;
    let next = link(&page_100, "next").expect("a next link");
    app.sandbox_post("/_sandbox/advance-clock", json!({"seconds": 61}))
        .await;

    let response = app.get(&next).await;

    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let restart = location(&response);
    assert_eq!(
        (restart.path(), restart.query()),
        ("/crm/Leads", Some("sort_by=Modified_Time&sort_order=asc"))
    );
}

#[tokio::test]
async fn another_persons_page_token_is_refused() {
    let app = TestApp::spawn().await;
    signed_in(&app, PRIYA).await;
    let next = page_token_link(&app).await;
    let arjun = app.new_browser();
    arjun.login_as(ARJUN).await;

    let response = arjun.get(&next).await;

    assert_eq!(response.status(), StatusCode::SEE_OTHER, "not Priya's page");
    assert_eq!(location(&response).path(), "/crm/Leads");
    let (_, body) = arjun.get_text("/crm/Leads").await;
    assert!(body.contains(RESTARTED));
    // At Zoho itself: the token opens Priya's page and not Arjun's.
    let token = next
        .split("page_token=")
        .nth(1)
        .and_then(|rest| rest.split('&').next())
        .expect("the token");
    let query = format!(
        "Leads?fields=id,First_Name,Last_Name,Email,Phone,Lead_Status,Lead_Source,Created_Time&page_token={token}&per_page=20"
    );
    let (status, _) = zoho_get(&app, PRIYA, &query).await;
    assert_eq!(status, StatusCode::OK);
    let (status, refusal) = zoho_get(&app, ARJUN, &query).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(refusal["code"], "TOKEN_BOUND_DATA_MISMATCH");
}

#[tokio::test]
async fn a_page_token_zoho_never_made_starts_the_list_again() {
    let app = TestApp::spawn().await;
    signed_in(&app, PRIYA).await;

    let before = app.counters().await.crm_calls;
    let unusable = app
        .get("/crm/Leads?page=101&page_token=no%20token%20has%20spaces")
        .await;
    assert_eq!(unusable.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.counters().await.crm_calls, before, "not sent to Zoho");

    let forged = app
        .get("/crm/Leads?page=101&page_token=%3Cscript%3Ealert(1)%3C%2Fscript%3E")
        .await;
    assert_eq!(app.counters().await.crm_calls, before + 1, "Zoho judged it");
    assert_eq!(forged.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&forged).path(), "/crm/Leads");
    let (_, body) = app.get_text("/crm/Leads").await;
    assert!(body.contains(RESTARTED));
    assert!(!body.contains("<script>alert"));
}

#[tokio::test]
async fn zoho_keeps_page_numbers_to_2000_records_and_binds_tokens_to_their_list() {
    let app = TestApp::spawn().await;
    signed_in(&app, PRIYA).await;
    app.sandbox_post("/_sandbox/page-token-ttl", json!({"seconds": 600}))
        .await;
    insert_leads(&app, 2_100).await;
    let list = "Leads?fields=Last_Name&per_page=20";

    let (status, beyond) = zoho_get(&app, PRIYA, &format!("{list}&page=101")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(beyond["code"], "DISCRETE_PAGINATION_LIMIT_EXCEEDED");

    let (status, page_100) = zoho_get(&app, PRIYA, &format!("{list}&page=100")).await;
    assert_eq!(status, StatusCode::OK);
    let token = page_100["info"]["next_page_token"]
        .as_str()
        .expect("a next_page_token")
        .to_owned();
    assert!(token.len() <= 96);
    assert!(page_100["info"]["page_token_expiry"].is_string());

    let (status, both) = zoho_get(&app, PRIYA, &format!("{list}&page=2&page_token={token}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(both["code"], "AMBIGUITY_DURING_PROCESSING");

    let (status, altered) = zoho_get(
        &app,
        PRIYA,
        &format!("Leads?fields=Email&per_page=20&page_token={token}"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(altered["code"], "TOKEN_BOUND_DATA_MISMATCH");

    let (status, page_101) = zoho_get(&app, PRIYA, &format!("{list}&page_token={token}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page_101["info"]["page"], 101);
    assert!(page_101["info"]["previous_page_token"].is_string());

    app.sandbox_post("/_sandbox/advance-clock", json!({"seconds": 601}))
        .await;
    let (status, expired) = zoho_get(&app, PRIYA, &format!("{list}&page_token={token}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(expired["code"], "EXPIRED_VALUE");
    assert_eq!(expired["details"]["api_name"], "page_token");
}
