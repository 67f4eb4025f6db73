//! CRM v8 record updates: `PUT /crm/v8/{module}/{id}`, its per-field errors, the profile's edit permission and
//! the `If-Unmodified-Since` check.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

/// `PUT /crm/v8/{module}/{id}` with `body`, and `If-Unmodified-Since` when given.
async fn update(
    sandbox: &Sandbox,
    token: &str,
    path: &str,
    body: Value,
    unmodified_since: Option<&str>,
) -> (StatusCode, Value) {
    let mut request = sandbox
        .http
        .put(sandbox.url(&format!("/crm/v8/{path}")))
        .header("Authorization", format!("Zoho-oauthtoken {token}"))
        .json(&body);
    if let Some(since) = unmodified_since {
        request = request.header("If-Unmodified-Since", since);
    }
    let response = request.send().await.expect("PUT /crm/v8");
    let status = response.status();
    (status, response.json().await.expect("a JSON body"))
}

/// The newest seeded lead, whole.
async fn a_lead(sandbox: &Sandbox, token: &str) -> Value {
    let (status, page) = sandbox
        .crm_json(token, "Leads?fields=Last_Name&per_page=1")
        .await;
    assert_eq!(status, StatusCode::OK);
    let id = page["data"][0]["id"].as_str().expect("an id").to_owned();
    let (status, record) = sandbox.crm_json(token, &format!("Leads/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    record["data"][0].clone()
}

#[tokio::test]
async fn an_update_writes_the_given_fields_and_moves_modified_time() {
    let sandbox = Sandbox::start().await;
    let arjun = sandbox.login(ARJUN).await;
    let lead = a_lead(&sandbox, &arjun.access).await;
    let id = lead["id"].as_str().expect("id");

    let (status, answer) = update(
        &sandbox,
        &arjun.access,
        &format!("Leads/{id}"),
        json!({"data": [{"id": id, "Lead_Status": "Contacted", "Phone": "+91 90000 11111"}]}),
        None,
    )
    .await;

    assert_eq!(status, StatusCode::OK, "{answer}");
    let item = &answer["data"][0];
    assert_eq!(item["code"], "SUCCESS");
    assert_eq!(item["status"], "success");
    assert_eq!(item["message"], "record updated");
    assert_eq!(item["details"]["id"], id);
    assert_eq!(item["details"]["Modified_By"]["name"], "Arjun Mehta");
    let (_, after) = sandbox
        .crm_json(&arjun.access, &format!("Leads/{id}"))
        .await;
    let after = &after["data"][0];
    assert_eq!(after["Lead_Status"], "Contacted");
    assert_eq!(after["Phone"], "+91 90000 11111");
    assert_eq!(after["Email"], lead["Email"], "fields not sent stay");
    assert_eq!(after["Last_Name"], lead["Last_Name"]);
    assert_eq!(after["Modified_Time"], item["details"]["Modified_Time"]);
    assert_ne!(after["Modified_Time"], lead["Modified_Time"]);
    assert_eq!(after["Modified_By"]["name"], "Arjun Mehta");
    assert_eq!(after["Created_Time"], lead["Created_Time"]);
}

#[tokio::test]
async fn a_stale_if_unmodified_since_is_412_already_modified_and_writes_nothing() {
    let sandbox = Sandbox::start().await;
    let priya = sandbox.login(PRIYA).await;
    let lead = a_lead(&sandbox, &priya.access).await;
    let id = lead["id"].as_str().expect("id");
    let loaded_at = lead["Modified_Time"].as_str().expect("Modified_Time");
    let path = format!("Leads/{id}");

    // Unchanged since it was read: the update goes through, and moves Modified_Time on.
    let (first, answer) = update(
        &sandbox,
        &priya.access,
        &path,
        json!({"data": [{"Lead_Status": "Contacted"}]}),
        Some(loaded_at),
    )
    .await;
    assert_eq!(first, StatusCode::OK, "{answer}");
    // A second writer still holding the old time is refused.
    let (second, refused) = update(
        &sandbox,
        &priya.access,
        &path,
        json!({"data": [{"Lead_Status": "Junk Lead"}]}),
        Some(loaded_at),
    )
    .await;

    assert_eq!(second, StatusCode::PRECONDITION_FAILED, "{refused}");
    let item = &refused["data"][0];
    assert_eq!(item["code"], "ALREADY_MODIFIED");
    assert_eq!(item["status"], "error");
    assert_eq!(item["details"]["id"], id);
    assert_eq!(
        item["details"]["Modified_Time"],
        answer["data"][0]["details"]["Modified_Time"]
    );
    assert_eq!(item["details"]["Modified_By"]["name"], "Priya Raman");
    let (_, after) = sandbox.crm_json(&priya.access, &path).await;
    assert_eq!(
        after["data"][0]["Lead_Status"], "Contacted",
        "nothing written"
    );
    let (unreadable, body) = update(
        &sandbox,
        &priya.access,
        &path,
        json!({"data": [{"Lead_Status": "Junk Lead"}]}),
        Some("yesterday"),
    )
    .await;
    assert_crm_error(unreadable, &body, 400, "INVALID_DATA");
}

#[tokio::test]
async fn invalid_fields_are_answered_per_field_and_write_nothing() {
    let sandbox = Sandbox::start().await;
    let priya = sandbox.login(PRIYA).await;
    let lead = a_lead(&sandbox, &priya.access).await;
    let path = format!("Leads/{}", lead["id"].as_str().expect("id"));

    let (status, bad_email) = update(
        &sandbox,
        &priya.access,
        &path,
        json!({"data": [{"Email": "not an email", "Lead_Status": "Contacted"}]}),
        None,
    )
    .await;
    let (emptied_status, emptied) = update(
        &sandbox,
        &priya.access,
        &path,
        json!({"data": [{"Last_Name": "  "}]}),
        None,
    )
    .await;

    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad_email}");
    assert_eq!(bad_email["data"][0]["code"], "INVALID_DATA");
    assert_eq!(bad_email["data"][0]["status"], "error");
    assert_eq!(bad_email["data"][0]["details"]["api_name"], "Email");
    assert_eq!(emptied_status, StatusCode::BAD_REQUEST, "{emptied}");
    assert_eq!(emptied["data"][0]["code"], "MANDATORY_NOT_FOUND");
    assert_eq!(emptied["data"][0]["details"]["api_name"], "Last_Name");
    let (_, after) = sandbox.crm_json(&priya.access, &path).await;
    assert_eq!(after["data"][0], lead, "nothing written");
}

#[tokio::test]
async fn a_profile_without_edit_permission_is_refused_and_told_so_by_the_modules_list() {
    let sandbox = Sandbox::start().await;
    let sofia = sandbox.login(SOFIA).await;
    let priya = sandbox.login(PRIYA).await;
    let lead = a_lead(&sandbox, &sofia.access).await;
    let path = format!("Leads/{}", lead["id"].as_str().expect("id"));

    let (status, body) = update(
        &sandbox,
        &sofia.access,
        &path,
        json!({"data": [{"Lead_Status": "Contacted"}]}),
        None,
    )
    .await;

    assert_crm_error(status, &body, 403, "NO_PERMISSION");
    let editable = |modules: &Value| {
        modules["modules"]
            .as_array()
            .expect("modules")
            .iter()
            .find(|module| module["api_name"] == "Leads")
            .map(|module| module["editable"].clone())
    };
    let (_, sofias) = sandbox.crm_json(&sofia.access, "settings/modules").await;
    let (_, priyas) = sandbox.crm_json(&priya.access, "settings/modules").await;
    assert_eq!(editable(&sofias), Some(json!(false)));
    assert_eq!(editable(&priyas), Some(json!(true)));
    let (_, after) = sandbox.crm_json(&sofia.access, &path).await;
    assert_eq!(after["data"][0], lead, "nothing written");
}

#[tokio::test]
async fn an_unknown_record_a_read_only_scope_and_a_foreign_id_are_refused() {
    let sandbox = Sandbox::start().await;
    let priya = sandbox.login(PRIYA).await;
    let reader = sandbox
        .login_with(
            PRIYA,
            "ZohoCRM.modules.READ,ZohoCRM.settings.ALL,ZohoCRM.users.READ",
        )
        .await;
    let lead = a_lead(&sandbox, &priya.access).await;
    let id = lead["id"].as_str().expect("id");
    let body = json!({"data": [{"Lead_Status": "Contacted"}]});

    let (unknown, unknown_body) = update(
        &sandbox,
        &priya.access,
        "Leads/1234567890123",
        body.clone(),
        None,
    )
    .await;
    let (scope, scope_body) = update(
        &sandbox,
        &reader.access,
        &format!("Leads/{id}"),
        body.clone(),
        None,
    )
    .await;
    let (elsewhere, elsewhere_body) = update(
        &sandbox,
        &priya.access,
        &format!("Leads/{id}"),
        json!({"data": [{"id": "1234567890123", "Lead_Status": "Contacted"}]}),
        None,
    )
    .await;

    assert_eq!(unknown, StatusCode::BAD_REQUEST);
    assert_eq!(unknown_body["data"][0]["code"], "INVALID_DATA");
    assert_eq!(unknown_body["data"][0]["details"]["api_name"], "id");
    assert_crm_error(scope, &scope_body, 401, "OAUTH_SCOPE_MISMATCH");
    assert_eq!(elsewhere, StatusCode::BAD_REQUEST);
    assert_eq!(elsewhere_body["data"][0]["details"]["api_name"], "id");
    let (_, after) = sandbox
        .crm_json(&priya.access, &format!("Leads/{id}"))
        .await;
    assert_eq!(after["data"][0], lead, "nothing written");
}
