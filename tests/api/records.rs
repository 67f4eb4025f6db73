//! CRM records through the portal: lists, paging, one record, a new lead, escaping, permissions.

use reqwest::StatusCode;

use crate::helpers::{ARJUN, LIAM, PRIYA, TestApp, csrf_from, location, sent_to_sign_in};

/// The record links of a list page, in order.
fn record_links(body: &str, module: &str) -> Vec<String> {
    let marker = format!("href=\"/crm/{module}/");
    body.match_indices(&marker)
        .map(|(at, _)| {
            let rest = &body[at + "href=\"".len()..];
            rest[..rest.find('"').unwrap_or(0)].to_owned()
        })
        .filter(|link| {
            link.rsplit('/')
                .next()
                .is_some_and(|id| id.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect()
}

#[tokio::test]
async fn leads_page_lists_records_with_the_default_columns() {
    let app = TestApp::spawn().await;
    app.login_as(PRIYA).await;

    let response = app.get("/crm/Leads").await;
    let status = response.status();
    let body = response.text().await.expect("body");

    assert_eq!(status, StatusCode::OK);
    for heading in ["Name", "Email", "Phone", "Status", "Source"] {
        assert!(
            body.contains(&format!("<th scope=\"col\">{heading}</th>")),
            "column {heading}"
        );
    }
    assert!(
        body.contains("sort_order=asc\">Created<span"),
        "the Created column, a heading that sorts"
    );
    assert_eq!(record_links(&body, "Leads").len(), 20, "a page of 20");
    assert!(body.contains("rel=\"next\""), "more records: a next link");
    assert!(!body.contains("rel=\"prev\""));
}

#[tokio::test]
async fn paging_shows_the_next_records() {
    let app = TestApp::spawn().await;
    app.login_as(PRIYA).await;

    let (_, first) = app.get_text("/crm/Leads").await;
    let (status, second) = app.get_text("/crm/Leads?page=2").await;

    assert_eq!(status, StatusCode::OK);
    let first_links = record_links(&first, "Leads");
    let second_links = record_links(&second, "Leads");
    assert!(!second_links.is_empty());
    assert!(second_links.iter().all(|link| !first_links.contains(link)));
    assert!(
        second.contains("href=\"/crm/Leads?page=1\""),
        "a previous link"
    );
}

#[tokio::test]
async fn a_page_past_the_end_shows_the_empty_state() {
    let app = TestApp::spawn().await;
    app.login_as(PRIYA).await;

    let (status, body) = app.get_text("/crm/Leads?page=50").await;

    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("There are no more records here."));
    assert!(!body.contains("rel=\"next\""));
}

#[tokio::test]
async fn a_malformed_page_number_gets_a_400_page() {
    let app = TestApp::spawn().await;
    app.login_as(PRIYA).await;

    let (status, body) = app.get_text("/crm/Leads?page=abc").await;
    let (zero_status, _) = app.get_text("/crm/Leads?page=0").await;

    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("Back to the start page"));
    assert_eq!(zero_status, StatusCode::BAD_REQUEST);
    let (beyond_status, beyond) = app.get_text("/crm/Leads?page=101").await;
    assert_eq!(
        beyond_status,
        StatusCode::BAD_REQUEST,
        "Zoho pages only the first 2,000"
    );
    assert!(beyond.contains("2,000"));
}

#[tokio::test]
async fn other_modules_list_columns_from_the_fields_metadata() {
    let app = TestApp::spawn().await;
    app.login_as(ARJUN).await;

    let (status, body) = app.get_text("/crm/Contacts").await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("<th scope=\"col\">"));
    assert!(!record_links(&body, "Contacts").is_empty());
}

#[tokio::test]
async fn a_record_opens_from_the_list() {
    let app = TestApp::spawn().await;
    app.login_as(PRIYA).await;
    let (_, list) = app.get_text("/crm/Leads").await;
    let link = record_links(&list, "Leads")
        .into_iter()
        .next()
        .expect("a record");

    let (status, body) = app.get_text(&link).await;

    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("Last Name") || body.contains("Last_Name") || body.contains("Last name"));
    assert!(
        body.contains("href=\"/crm/Leads\""),
        "a way back to the list"
    );
}

#[tokio::test]
async fn an_unknown_record_gets_a_404_page() {
    let app = TestApp::spawn().await;
    app.login_as(PRIYA).await;

    let (status, body) = app.get_text("/crm/Leads/1234567890123").await;
    let (bad_status, _) = app.get_text("/crm/Leads/not-an-id").await;

    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("Page not found"));
    assert_eq!(bad_status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_unknown_module_gets_a_404_page() {
    let app = TestApp::spawn().await;
    app.login_as(PRIYA).await;

    let (status, _) = app.get_text("/crm/Spaceships").await;

    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_new_lead_is_created_and_shown_with_a_flash() {
    let app = TestApp::spawn().await;
    app.login_as(PRIYA).await;
    let (status, form) = app.get_text("/crm/Leads/new").await;
    assert_eq!(status, StatusCode::OK);
    let csrf = csrf_from(&form).expect("csrf");

    let response = app
        .post_form(
            "/crm/Leads",
            &[
                ("csrf_token", &csrf),
                ("First_Name", "Meera"),
                ("Last_Name", "Iyer"),
                ("Email", "meera.iyer@example.com"),
                ("Phone", "+91 98400 12345"),
                ("Lead_Source", "Website"),
            ],
        )
        .await;

    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let record = location(&response);
    assert!(record.path().starts_with("/crm/Leads/"));
    let (status, body) = app.get_text(record.path()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("Meera Iyer"));
    assert!(body.contains("meera.iyer@example.com"));
    assert!(body.contains("is saved in Zoho CRM"), "the flash");
}

#[tokio::test]
async fn a_new_lead_without_last_name_or_with_a_bad_email_is_refused_with_field_errors() {
    let app = TestApp::spawn().await;
    app.login_as(PRIYA).await;
    let csrf = app.csrf_token().await;
    let calls_before = app.counters().await.crm_calls;

    let response = app
        .post_form(
            "/crm/Leads",
            &[
                ("csrf_token", &csrf),
                ("First_Name", "Nameless"),
                ("Email", "not-an-email"),
            ],
        )
        .await;

    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = response.text().await.expect("body");
    assert!(body.contains("Last name is required."));
    assert!(body.contains("This does not look like an email address."));
    assert!(body.contains("value=\"Nameless\""), "what was typed stays");
    assert_eq!(
        app.counters().await.crm_calls,
        calls_before,
        "nothing sent to Zoho"
    );
}

#[tokio::test]
async fn a_lead_named_like_a_script_is_shown_as_text() {
    let app = TestApp::spawn().await;
    app.login_as(PRIYA).await;
    let csrf = app.csrf_token().await;

    let response = app
        .post_form(
            "/crm/Leads",
            &[
                ("csrf_token", &csrf),
                ("Last_Name", "<script>alert(1)</script>"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let (_, record) = app.get_text(location(&response).path()).await;
    let (_, list) = app.get_text("/crm/Leads").await;

    for body in [&record, &list] {
        assert!(!body.contains("<script>alert(1)</script>"));
    }
    // askama writes numeric character references.
    assert!(
        record.contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
        "{record}"
    );
}

#[tokio::test]
async fn a_module_the_profile_lacks_gets_a_403_page_naming_it() {
    let app = TestApp::spawn().await;
    app.login_as(LIAM).await;

    let (status, body) = app.get_text("/crm/Leads").await;

    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("No access to Leads"), "{body}");
    assert!(
        body.contains("Sign out"),
        "still inside the signed-in layout"
    );
}

#[tokio::test]
async fn records_need_a_login() {
    let app = TestApp::spawn().await;

    let (to, page) = sent_to_sign_in(&app, "/crm/Leads").await;

    assert_eq!(to, "/sign-in?next=%2Fcrm%2FLeads");
    assert!(page.contains("href=\"/login?next=%2Fcrm%2FLeads\""));
}

#[tokio::test]
async fn navigation_lists_only_the_api_modules_the_profile_opens() {
    let app = TestApp::spawn().await;
    app.login_as(LIAM).await;

    let (status, body) = app.get_text("/").await;

    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("Liam O&#39;Brien") || body.contains("Liam O&#x27;Brien"),
        "{body}"
    );
    assert!(body.contains("href=\"/crm/Courses\""));
    for hidden in ["Leads", "Contacts", "Home", "Reports"] {
        assert!(
            !body.contains(&format!("href=\"/crm/{hidden}\"")),
            "{hidden} is not listed"
        );
    }
    assert!(
        !body.contains("href=\"/admin/tokens\""),
        "not an administrator"
    );
    let (courses, _) = app.get_text("/crm/Courses").await;
    assert_eq!(courses, StatusCode::OK);
}

#[tokio::test]
async fn after_a_restart_the_first_page_lists_the_navigation_once_and_then_keeps_it() {
    let app = TestApp::spawn_on_sqlite().await;
    app.login_as(ARJUN).await;
    // The navigation is kept in the portal, not in the cookie: a restarted portal has none for Arjun yet.
    let app = app.restart().await;
    let before = app.counters().await.crm_calls;

    let (first, first_page) = app.get_text("/crm/Leads").await;
    let after_first = app.counters().await.crm_calls;
    let (second, second_page) = app.get_text("/crm/Leads").await;

    assert_eq!((first, second), (StatusCode::OK, StatusCode::OK));
    for page in [&first_page, &second_page] {
        assert!(page.contains("href=\"/crm/Contacts\""), "{page}");
        assert!(page.contains("href=\"/crm/Courses\""), "{page}");
    }
    assert_eq!(
        after_first,
        before + 2,
        "the records and, once, the modules"
    );
    assert_eq!(
        app.counters().await.crm_calls,
        after_first + 1,
        "only the records call"
    );
}

#[tokio::test]
async fn fields_metadata_is_fetched_once_for_repeated_pages_of_a_module() {
    let app = TestApp::spawn().await;
    app.login_as(ARJUN).await;
    app.get("/crm/Contacts").await;
    let after_first = app.counters().await.crm_calls;

    let (status, _) = app.get_text("/crm/Contacts?page=2").await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        app.counters().await.crm_calls,
        after_first + 1,
        "only the records call"
    );
}

#[tokio::test]
async fn zoho_field_errors_on_a_new_lead_are_shown_next_to_the_field() {
    let app = TestApp::spawn().await;
    app.login_as(PRIYA).await;
    let csrf = app.csrf_token().await;
    let too_long = "x".repeat(300);

    let response = app
        .post_form(
            "/crm/Leads",
            &[
                ("csrf_token", &csrf),
                ("Last_Name", "Iyer"),
                ("Lead_Source", &too_long),
            ],
        )
        .await;

    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = response.text().await.expect("body");
    assert!(body.contains("Zoho CRM says:"), "{body}");
    assert!(body.contains("value=\"Iyer\""), "what was typed stays");
}
