//! CRM v8 search (`/crm/v8/{module}/search`): by word, email and phone; Zoho's refusals of a missing or too
//! short value; paging, 204 for no match and the 2,000-result cap; the scope it needs; and the sub-limit on
//! concurrent searches.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};
use zylker_portal::sandbox::{CrmLimits, Edition, SandboxConfig};

use crate::support::*;

/// The scopes of a login that may search.
const SEARCH_SCOPES: &str = "ZohoCRM.modules.ALL,ZohoCRM.settings.ALL,ZohoCRM.users.READ,ZohoCRM.org.READ,ZohoSearch.securesearch.READ";

async fn searcher(sandbox: &Sandbox) -> String {
    sandbox.login_with(PRIYA, SEARCH_SCOPES).await.access
}

/// `Leads/search?{param}={value}&…`, the value percent-encoded.
fn leads_search(param: &str, value: &str, rest: &str) -> String {
    let value: String = url::form_urlencoded::byte_serialize(value.as_bytes()).collect();
    format!("Leads/search?{param}={value}{rest}")
}

fn ids(body: &Value) -> Vec<String> {
    body["data"]
        .as_array()
        .map(|records| {
            records
                .iter()
                .map(|record| record["id"].as_str().expect("an id").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_word_is_found_case_insensitively_in_the_text_fields_newest_first() {
    let sandbox = Sandbox::start().await;
    let token = searcher(&sandbox).await;

    let (status, body) = sandbox
        .crm_json(
            &token,
            &leads_search("word", "KAVYA", "&fields=Full_Name,Email"),
        )
        .await;

    assert_eq!(status, StatusCode::OK, "{body}");
    let records = body["data"].as_array().expect("records");
    assert!(!records.is_empty());
    for record in records {
        let mut keys: Vec<&str> = record
            .as_object()
            .expect("a record")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(keys, ["Email", "Full_Name", "id"]);
        let text = format!("{} {}", record["Full_Name"], record["Email"]).to_lowercase();
        assert!(text.contains("kavya"), "{record}");
    }
    let found = ids(&body);
    let mut newest_first = found.clone();
    newest_first.sort_by_key(|id| std::cmp::Reverse(id.parse::<u64>().expect("digits")));
    assert_eq!(found, newest_first);
    assert_eq!(body["info"]["count"], records.len());
    assert_eq!(body["info"]["page"], 1);
    assert_eq!(body["info"]["per_page"], 200);
    assert_eq!(body["info"]["more_records"], false);
}

#[tokio::test]
async fn no_match_is_a_204_with_an_empty_body() {
    let sandbox = Sandbox::start().await;
    let token = searcher(&sandbox).await;

    let response = sandbox
        .crm(&token, &leads_search("word", "Zyzzyva", ""))
        .await;

    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(response.bytes().await.expect("body").is_empty());
}

#[tokio::test]
async fn an_email_matches_an_email_field_equal_to_it_and_a_phone_by_its_digits() {
    let sandbox = Sandbox::start().await;
    let token = searcher(&sandbox).await;
    let (_, list) = sandbox
        .crm_json(&token, "Leads?fields=Email,Phone&per_page=1")
        .await;
    let lead = &list["data"][0];
    let (id, email, phone) = (
        lead["id"].as_str().expect("id"),
        lead["Email"].as_str().expect("an email"),
        lead["Phone"].as_str().expect("a phone"),
    );

    let (status, by_email) = sandbox
        .crm_json(&token, &leads_search("email", &email.to_uppercase(), ""))
        .await;
    assert_eq!(status, StatusCode::OK, "{by_email}");
    assert!(ids(&by_email).contains(&id.to_owned()));
    let part = sandbox
        .crm(&token, &leads_search("email", &email[1..], ""))
        .await;
    assert_eq!(
        part.status(),
        StatusCode::NO_CONTENT,
        "an email is matched whole"
    );

    // "+91 9xxxx xxxxx" written without its country code, in another layout.
    let national = phone.trim_start_matches("+91 ").replace(' ', "-");
    let (status, by_phone) = sandbox
        .crm_json(&token, &leads_search("phone", &national, ""))
        .await;
    assert_eq!(status, StatusCode::OK, "{by_phone}");
    assert_eq!(ids(&by_phone), [id]);
    let as_word = sandbox
        .crm(&token, &leads_search("word", &national, ""))
        .await;
    assert_eq!(
        as_word.status(),
        StatusCode::NO_CONTENT,
        "a word is matched as written"
    );
}

#[tokio::test]
async fn a_missing_or_too_short_value_gets_zohos_400s() {
    let sandbox = Sandbox::start().await;
    let token = searcher(&sandbox).await;

    for path in [
        "Leads/search",
        "Leads/search?word=",
        "Leads/search?fields=Email",
    ] {
        let (status, body) = sandbox.crm_json(&token, path).await;
        assert_crm_error(status, &body, 400, "EXPECTED_PARAM_MISSING");
    }
    for (param, value) in [
        ("word", "k"),
        ("word", " k "),
        ("word", "%%"),
        ("email", "@"),
        ("phone", "+1"),
    ] {
        let (status, body) = sandbox
            .crm_json(&token, &leads_search(param, value, ""))
            .await;
        assert_crm_error(status, &body, 400, "INVALID_DATA");
        assert_eq!(body["details"]["param_name"], param, "{body}");
    }
    let (status, body) = sandbox
        .crm_json(
            &token,
            &leads_search("criteria", "(Last_Name:equals:Nair)", ""),
        )
        .await;
    assert_crm_error(status, &body, 400, "INVALID_QUERY");
    let (status, body) = sandbox
        .crm_json(&token, &leads_search("word", "Kavya", "&per_page=201"))
        .await;
    assert_crm_error(status, &body, 400, "INVALID_DATA");
    let (status, body) = sandbox.crm_json(&token, "Nope/search?word=Kavya").await;
    assert_crm_error(status, &body, 400, "INVALID_MODULE");
}

#[tokio::test]
async fn searching_needs_zohos_search_scope_and_the_modules_permission() {
    let sandbox = Sandbox::start().await;
    let without_search = sandbox.login(PRIYA).await;
    let liam = sandbox.login_with(LIAM, SEARCH_SCOPES).await;

    let (status, body) = sandbox
        .crm_json(&without_search.access, &leads_search("word", "Kavya", ""))
        .await;
    assert_crm_error(status, &body, 401, "OAUTH_SCOPE_MISMATCH");
    let (status, body) = sandbox
        .crm_json(&liam.access, &leads_search("word", "Kavya", ""))
        .await;
    assert_crm_error(status, &body, 403, "NO_PERMISSION");
}

#[tokio::test]
async fn results_page_with_more_records_and_stop_at_2000() {
    let sandbox = Sandbox::start().await;
    let token = searcher(&sandbox).await;
    for batch in 0..21 {
        let leads: Vec<Value> = (0..100)
            .map(|n| json!({"Last_Name": format!("Capwell {batch}-{n}")}))
            .collect();
        let (status, body) = sandbox
            .create(&token, "Leads", json!({ "data": leads }))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    let (status, first) = sandbox
        .crm_json(
            &token,
            &leads_search("word", "capwell", "&fields=Last_Name&per_page=200"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["info"]["count"], 200);
    assert_eq!(first["info"]["more_records"], true);
    assert_eq!(
        first["data"][0]["Last_Name"], "Capwell 20-99",
        "newest first"
    );
    let (status, tenth) = sandbox
        .crm_json(
            &token,
            &leads_search("word", "capwell", "&fields=Last_Name&per_page=200&page=10"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{tenth}");
    assert_eq!(tenth["info"]["count"], 200);
    assert_eq!(
        tenth["info"]["more_records"], false,
        "2,100 match, the 2,000th is the last reachable"
    );
    let (status, past) = sandbox
        .crm_json(
            &token,
            &leads_search("word", "capwell", "&per_page=200&page=11"),
        )
        .await;
    assert_crm_error(status, &past, 400, "LIMIT_REACHED");
    let (status, straddling) = sandbox
        .crm_json(
            &token,
            &leads_search("word", "capwell", "&per_page=30&page=67"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{straddling}");
    assert_eq!(straddling["info"]["count"], 20, "records 1,981 to 2,000");
    assert_eq!(straddling["info"]["more_records"], false);
}

#[tokio::test]
async fn searches_beyond_the_sub_limit_get_zohos_429_while_other_calls_go_on() {
    let sandbox = Sandbox::start_with(SandboxConfig {
        crm: CrmLimits {
            latency: Duration::from_secs(2),
            ..CrmLimits::zoho(Edition::Enterprise)
        },
        ..config(true)
    })
    .await;
    let token = searcher(&sandbox).await;
    let path = leads_search("word", "Kavya", "&fields=Last_Name");

    let searching = join_all((0..10).map(|_| sandbox.crm_json(&token, &path)));
    let beyond = async {
        let started = Instant::now();
        while sandbox.counters().await["max_concurrent_search"] != 10 {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "ten searches in flight"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let eleventh = sandbox.crm_json(&token, &path).await;
        let other = sandbox.crm(&token, "org").await.status();
        (eleventh, other)
    };
    let (held, ((status, refused), other)) = futures_util::future::join(searching, beyond).await;

    for (status, body) in &held {
        assert_eq!(*status, StatusCode::OK, "{body}");
    }
    assert_crm_error(status, &refused, 429, "TOO_MANY_REQUESTS");
    assert_eq!(
        other,
        StatusCode::OK,
        "the org's cap has room for other calls"
    );
    let counters = sandbox.running.counters();
    assert_eq!((counters.crm_429, counters.max_concurrent_search), (1, 10));
}
