//! Editing a lead through the portal: the form, its checks, Zoho's optimistic check against a lead changed
//! meanwhile, who may edit, CSRF, and signed-out posts. Every change is looked up at the sandbox too.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{ARJUN, Browser, PRIYA, SOFIA, TestApp, location};

/// The first lead the list shows: its id.
async fn first_lead(browser: &Browser) -> String {
    let (status, list) = browser.get_text("/crm/Leads").await;
    assert_eq!(status, StatusCode::OK);
    let marker = "href=\"/crm/Leads/";
    list.match_indices(marker)
        .map(|(at, _)| {
            let rest = &list[at + marker.len()..];
            rest[..rest.find('"').unwrap_or(0)].to_owned()
        })
        .find(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
        .expect("a lead on the list")
}

/// Text as the page wrote it, unescaped (askama writes `'` as `&#39;` and so on).
fn unescape(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let entity_end = rest[at..].find(';').map(|end| at + end);
        let decoded = entity_end.and_then(|end| {
            let entity = &rest[at + 1..end];
            let decoded = match entity {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                _ => entity
                    .strip_prefix("#x")
                    .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                    .or_else(|| entity.strip_prefix('#').and_then(|dec| dec.parse().ok()))
                    .and_then(char::from_u32),
            };
            decoded.map(|c| (c, end))
        });
        match decoded {
            Some((c, end)) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// What the edit form would send as it stands: its hidden inputs, its text inputs, its selects' chosen options.
fn form_fields(page: &str) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    for name in [
        "csrf_token",
        "Modified_Time",
        "heading",
        "loaded_Lead_Status",
        "loaded_Phone",
        "loaded_Email",
        "loaded_Lead_Source",
        "Email",
        "Phone",
    ] {
        let marker = format!("name=\"{name}\" value=\"");
        let start = page.find(&marker).expect(name) + marker.len();
        let end = page[start..].find('"').expect("a closing quote") + start;
        fields.push((name.to_owned(), unescape(&page[start..end])));
    }
    for name in ["Lead_Status", "Lead_Source"] {
        let start = page
            .find(&format!("<select name=\"{name}\""))
            .expect("a select");
        let select = &page[start..start + page[start..].find("</select>").expect("its end")];
        let chosen = select
            .split("<option value=\"")
            .skip(1)
            .find(|option| option.contains("\" selected>"))
            .map(|option| unescape(&option[..option.find('"').unwrap_or(0)]))
            .unwrap_or_default();
        fields.push((name.to_owned(), chosen));
    }
    fields
}

/// The edit form of lead `id` as `browser` opens it.
async fn open_form(browser: &Browser, id: &str) -> Vec<(String, String)> {
    let (status, page) = browser.get_text(&format!("/crm/Leads/{id}/edit")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    form_fields(&page)
}

fn value<'a>(fields: &'a [(String, String)], name: &str) -> &'a str {
    fields
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
        .unwrap_or_default()
}

/// `fields` with some replaced.
fn with(fields: &[(String, String)], changes: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut changed = fields.to_vec();
    for (name, new) in changes {
        match changed.iter_mut().find(|(key, _)| key == name) {
            Some(field) => field.1 = (*new).to_owned(),
            None => changed.push(((*name).to_owned(), (*new).to_owned())),
        }
    }
    changed
}

async fn post(browser: &Browser, path: &str, fields: &[(String, String)]) -> reqwest::Response {
    browser
        .client
        .post(browser.url(path))
        .form(fields)
        .send()
        .await
        .expect("portal answers")
}

/// The lead as the sandbox (Zoho) holds it, read with `email`'s stored token.
async fn lead_at_zoho(app: &TestApp, email: &str, id: &str) -> Value {
    let token = app.stored_token_of(email).await.expect("a stored token");
    let access = token.access_token.expect("an access token");
    let answer: Value = reqwest::Client::new()
        .get(
            app.sandbox_url
                .join(&format!("/crm/v8/Leads/{id}"))
                .expect("url"),
        )
        .header(
            "Authorization",
            format!("Zoho-oauthtoken {}", access.expose_secret()),
        )
        .send()
        .await
        .expect("the sandbox answers")
        .json()
        .await
        .expect("JSON");
    answer["data"][0].clone()
}

/// A status other than `current`.
fn another_status(current: &str) -> &'static str {
    if current == "Contacted" {
        "Pre-Qualified"
    } else {
        "Contacted"
    }
}

/// A source other than `current`.
fn another_source(current: &str) -> &'static str {
    if current == "Chat" {
        "Trade Show"
    } else {
        "Chat"
    }
}

#[tokio::test]
async fn an_editor_changes_status_phone_email_and_source_and_sees_them_on_the_record_and_at_zoho() {
    let app = TestApp::spawn().await;
    app.login_as(ARJUN).await;
    let id = first_lead(&app).await;
    let (_, record_page) = app.get_text(&format!("/crm/Leads/{id}")).await;
    assert!(
        record_page.contains(&format!("href=\"/crm/Leads/{id}/edit\"")),
        "an Edit link"
    );
    let form = open_form(&app, &id).await;
    let status = another_status(value(&form, "Lead_Status"));
    let source = another_source(value(&form, "Lead_Source"));
    let calls_before = app.counters().await.crm_calls;

    let response = post(
        &app,
        &format!("/crm/Leads/{id}/edit"),
        &with(
            &form,
            &[
                ("Lead_Status", status),
                ("Phone", "+91 90000 22222"),
                ("Email", "kavya.menon@example.com"),
                ("Lead_Source", source),
            ],
        ),
    )
    .await;

    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response).path(), format!("/crm/Leads/{id}"));
    assert_eq!(
        app.counters().await.crm_calls,
        calls_before + 1,
        "one call: the update, checked by Zoho itself"
    );
    let (status_code, shown) = app.get_text(&format!("/crm/Leads/{id}")).await;
    assert_eq!(status_code, StatusCode::OK);
    assert!(shown.contains("are saved in Zoho CRM"), "the confirmation");
    for new in [status, "+91 90000 22222", "kavya.menon@example.com", source] {
        assert!(shown.contains(new), "{new} on the record page");
    }
    let lead = lead_at_zoho(&app, ARJUN, &id).await;
    assert_eq!(lead["Lead_Status"], status);
    assert_eq!(lead["Phone"], "+91 90000 22222");
    assert_eq!(lead["Email"], "kavya.menon@example.com");
    assert_eq!(lead["Lead_Source"], source);
    assert_eq!(lead["Modified_By"]["name"], "Arjun Mehta");
    assert_ne!(lead["Modified_Time"], value(&form, "Modified_Time"));
}

#[tokio::test]
async fn a_bad_email_keeps_what_was_typed_and_writes_nothing() {
    let app = TestApp::spawn().await;
    app.login_as(ARJUN).await;
    let id = first_lead(&app).await;
    let form = open_form(&app, &id).await;
    let before = lead_at_zoho(&app, ARJUN, &id).await;
    let calls_before = app.counters().await.crm_calls;

    let response = post(
        &app,
        &format!("/crm/Leads/{id}/edit"),
        &with(
            &form,
            &[("Email", "not-an-email"), ("Phone", "+91 90000 33333")],
        ),
    )
    .await;

    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = response.text().await.expect("body");
    assert!(page.contains("This does not look like an email address."));
    assert!(
        page.contains("value=\"not-an-email\""),
        "what was typed stays"
    );
    assert!(page.contains("value=\"+91 90000 33333\""));
    assert_eq!(
        app.counters().await.crm_calls,
        calls_before,
        "nothing sent to Zoho"
    );
    assert_eq!(
        lead_at_zoho(&app, ARJUN, &id).await,
        before,
        "nothing written"
    );
}

#[tokio::test]
async fn a_lead_changed_by_someone_else_after_the_form_opened_is_not_overwritten() {
    let app = TestApp::spawn().await;
    app.login_as(ARJUN).await;
    let priya = app.new_browser();
    priya.login_as(PRIYA).await;
    let id = first_lead(&app).await;
    let arjuns_form = open_form(&app, &id).await;
    // Priya changes the lead in between, in her own session.
    let priyas_form = open_form(&priya, &id).await;
    let response = post(
        &priya,
        &format!("/crm/Leads/{id}/edit"),
        &with(
            &priyas_form,
            &[("Lead_Status", "Junk Lead"), ("Phone", "+91 90000 44444")],
        ),
    )
    .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);

    let response = post(
        &app,
        &format!("/crm/Leads/{id}/edit"),
        &with(
            &arjuns_form,
            &[
                ("Lead_Status", another_status("Junk Lead")),
                ("Email", "arjun.was.here@example.com"),
            ],
        ),
    )
    .await;

    assert_eq!(response.status(), StatusCode::CONFLICT);
    let page = response.text().await.expect("body");
    assert!(
        page.contains("Someone changed this enquiry while you were editing it"),
        "{page}"
    );
    assert!(page.contains("Your changes were not saved"));
    assert!(page.contains("by Priya Raman"), "who changed it");
    assert!(page.contains("arjun.was.here@example.com"), "what he typed");
    assert!(page.contains("+91 90000 44444"), "what Zoho holds now");
    let lead = lead_at_zoho(&app, ARJUN, &id).await;
    assert_eq!(lead["Lead_Status"], "Junk Lead", "Priya's change stays");
    assert_eq!(lead["Phone"], "+91 90000 44444");
    assert_ne!(lead["Email"], "arjun.was.here@example.com");
    // The form now carries the lead as Zoho holds it: saved from there, the change goes through.
    let fresh = form_fields(&page);
    assert_eq!(value(&fresh, "Lead_Status"), "Junk Lead");
    assert_eq!(value(&fresh, "Modified_Time"), lead["Modified_Time"]);
    let response = post(
        &app,
        &format!("/crm/Leads/{id}/edit"),
        &with(&fresh, &[("Lead_Status", "Contacted")]),
    )
    .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let lead = lead_at_zoho(&app, ARJUN, &id).await;
    assert_eq!(lead["Lead_Status"], "Contacted");
    assert_eq!(lead["Phone"], "+91 90000 44444", "Priya's phone kept");
}

#[tokio::test]
async fn a_profile_that_may_not_edit_sees_no_edit_link_and_gets_403() {
    let app = TestApp::spawn().await;
    app.login_as(SOFIA).await;
    let id = first_lead(&app).await;
    let before = lead_at_zoho(&app, SOFIA, &id).await;

    let (record_status, record_page) = app.get_text(&format!("/crm/Leads/{id}")).await;
    let (get_status, get_page) = app.get_text(&format!("/crm/Leads/{id}/edit")).await;
    let csrf = crate::helpers::csrf_from(&record_page).expect("a CSRF token");
    let response = app
        .post_form(
            &format!("/crm/Leads/{id}/edit"),
            &[
                ("csrf_token", csrf.as_str()),
                (
                    "Modified_Time",
                    before["Modified_Time"].as_str().unwrap_or(""),
                ),
                ("Lead_Status", "Contacted"),
            ],
        )
        .await;

    assert_eq!(record_status, StatusCode::OK);
    assert!(!record_page.contains("/edit\""), "no Edit link");
    assert_eq!(get_status, StatusCode::FORBIDDEN);
    assert!(get_page.contains("You cannot edit leads"), "{get_page}");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let post_page = response.text().await.expect("body");
    assert!(post_page.contains("You cannot edit leads"));
    assert_eq!(
        lead_at_zoho(&app, SOFIA, &id).await,
        before,
        "nothing written"
    );
}

#[tokio::test]
async fn a_missing_or_wrong_csrf_token_is_refused() {
    let app = TestApp::spawn().await;
    app.login_as(ARJUN).await;
    let id = first_lead(&app).await;
    let form = open_form(&app, &id).await;
    let before = lead_at_zoho(&app, ARJUN, &id).await;
    let changed = with(&form, &[("Lead_Status", "Junk Lead")]);
    let without: Vec<(String, String)> = changed
        .iter()
        .filter(|(name, _)| name != "csrf_token")
        .cloned()
        .collect();

    let missing = post(&app, &format!("/crm/Leads/{id}/edit"), &without).await;
    let wrong = post(
        &app,
        &format!("/crm/Leads/{id}/edit"),
        &with(&changed, &[("csrf_token", "forged")]),
    )
    .await;

    for response in [missing, wrong] {
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let page = response.text().await.expect("body");
        assert!(page.contains("This form has expired"), "{page}");
    }
    assert_eq!(
        lead_at_zoho(&app, ARJUN, &id).await,
        before,
        "nothing written"
    );
}

#[tokio::test]
async fn a_signed_out_post_gets_the_refusal_page_and_writes_nothing() {
    let app = TestApp::spawn().await;
    app.login_as(ARJUN).await;
    let id = first_lead(&app).await;
    let form = open_form(&app, &id).await;
    let before = lead_at_zoho(&app, ARJUN, &id).await;
    let stranger = app.new_browser();

    let response = post(
        &stranger,
        &format!("/crm/Leads/{id}/edit"),
        &with(&form, &[("Lead_Status", "Junk Lead")]),
    )
    .await;

    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let page = response.text().await.expect("body");
    assert!(page.contains("href=\"/login\""), "{page}");
    assert_eq!(
        lead_at_zoho(&app, ARJUN, &id).await,
        before,
        "nothing written"
    );
}

#[tokio::test]
async fn an_unknown_lead_has_no_edit_page() {
    let app = TestApp::spawn().await;
    app.login_as(ARJUN).await;

    let (unknown, _) = app.get_text("/crm/Leads/1234567890123/edit").await;
    let (malformed, _) = app.get_text("/crm/Leads/not-an-id/edit").await;

    assert_eq!(unknown, StatusCode::NOT_FOUND);
    assert_eq!(malformed, StatusCode::NOT_FOUND);
}
