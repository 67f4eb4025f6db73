//! CRM v8 identity and authorization: the current user and org, the `Zoho-oauthtoken` scheme, scopes, profiles.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn current_user_and_org_describe_the_persona_and_zylker_academy() {
    let sandbox = Sandbox::start().await;
    let tokens = sandbox.login(LIAM).await;
    let (status, body) = sandbox
        .crm_json(&tokens.access, "users?type=CurrentUser")
        .await;
    assert_eq!(status, StatusCode::OK);
    let user = &body["users"][0];
    assert_eq!(body["users"].as_array().map(Vec::len), Some(1));
    assert_eq!(user["email"], LIAM);
    assert_eq!(user["full_name"], "Liam O'Brien");
    assert_eq!(user["first_name"], "Liam");
    assert_eq!(user["last_name"], "O'Brien");
    assert_eq!(user["profile"]["name"], "Student");
    assert_eq!(user["role"]["name"], "Student");
    assert_eq!(user["status"], "active");
    for key in ["id", "zuid"] {
        assert!(
            user[key]
                .as_str()
                .is_some_and(|id| id.chars().all(|c| c.is_ascii_digit()))
        );
    }
    assert!(user["role"]["id"].is_string() && user["profile"]["id"].is_string());
    let (status, body) = sandbox.crm_json(&tokens.access, "org").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["org"][0]["id"], "60032191920");
    assert_eq!(body["org"][0]["company_name"], "Zylker Academy");

    let priya = sandbox.login(PRIYA).await;
    let (_, body) = sandbox
        .crm_json(&priya.access, "users?type=CurrentUser")
        .await;
    assert_eq!(body["users"][0]["profile"]["name"], "Administrator");
    assert_eq!(body["users"][0]["role"]["name"], "Course Coordinator");
}

#[tokio::test]
async fn crm_without_the_zoho_oauthtoken_scheme_is_authentication_failure() {
    let sandbox = Sandbox::start().await;
    let tokens = sandbox.login(PRIYA).await;
    let bare = sandbox
        .http
        .get(sandbox.url("/crm/v8/org"))
        .send()
        .await
        .expect("GET");
    let status = bare.status();
    assert_crm_error(
        status,
        &bare.json().await.expect("JSON"),
        401,
        "AUTHENTICATION_FAILURE",
    );
    let bearer = sandbox
        .http
        .get(sandbox.url("/crm/v8/org"))
        .bearer_auth(&tokens.access)
        .send()
        .await
        .expect("GET");
    let status = bearer.status();
    assert_crm_error(
        status,
        &bearer.json().await.expect("JSON"),
        401,
        "AUTHENTICATION_FAILURE",
    );
    assert_eq!(sandbox.running.counters().unauthorized, 2);
}

#[tokio::test]
async fn crm_with_an_unknown_token_is_invalid_token() {
    let sandbox = Sandbox::start().await;
    let (status, body) = sandbox
        .crm_json("1000.not.mine", "Leads?fields=Last_Name")
        .await;
    assert_crm_error(status, &body, 401, "INVALID_TOKEN");
}

#[tokio::test]
async fn scopes_that_do_not_cover_the_call_are_oauth_scope_mismatch() {
    let sandbox = Sandbox::start().await;
    let narrow = sandbox
        .login_with(SOFIA, "zohocrm.modules.leads.read,ZohoCRM.users.READ")
        .await;
    let (status, _) = sandbox
        .crm_json(&narrow.access, "Leads?fields=Last_Name")
        .await;
    assert_eq!(status, StatusCode::OK, "module scope, any case");
    assert_eq!(
        sandbox
            .crm(&narrow.access, "users?type=CurrentUser")
            .await
            .status(),
        StatusCode::OK
    );
    for path in [
        "Contacts?fields=Last_Name",
        "org",
        "settings/modules",
        "settings/fields?module=Leads",
    ] {
        let (status, body) = sandbox.crm_json(&narrow.access, path).await;
        assert_crm_error(status, &body, 401, "OAUTH_SCOPE_MISMATCH");
    }
    let (status, body) = sandbox
        .create(
            &narrow.access,
            "Leads",
            json!({"data": [{"Last_Name": "Read Only"}]}),
        )
        .await;
    assert_crm_error(status, &body, 401, "OAUTH_SCOPE_MISMATCH");

    let settings = sandbox
        .login_with(
            PRIYA,
            "ZohoCRM.settings.modules.READ,ZohoCRM.settings.fields.ALL,ZohoCRM.org.ALL",
        )
        .await;
    assert_eq!(
        sandbox
            .crm(&settings.access, "settings/modules")
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        sandbox
            .crm(&settings.access, "settings/fields?module=Leads")
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        sandbox.crm(&settings.access, "org").await.status(),
        StatusCode::OK
    );
    let (status, body) = sandbox
        .crm_json(&settings.access, "users?type=CurrentUser")
        .await;
    assert_crm_error(status, &body, 401, "OAUTH_SCOPE_MISMATCH");
    let (status, body) = sandbox
        .crm_json(&settings.access, "Leads?fields=Last_Name")
        .await;
    assert_crm_error(status, &body, 401, "OAUTH_SCOPE_MISMATCH");
}

#[tokio::test]
async fn a_profile_without_the_module_gets_no_permission() {
    let sandbox = Sandbox::start().await;
    let liam = sandbox.login(LIAM).await;
    let (status, body) = sandbox
        .crm_json(&liam.access, "Leads?fields=Last_Name")
        .await;
    assert_crm_error(status, &body, 403, "NO_PERMISSION");
    assert!(
        body["details"]["permissions"]
            .as_array()
            .is_some_and(|list| !list.is_empty())
    );
    assert_eq!(
        sandbox
            .crm(&liam.access, "Courses?fields=Name")
            .await
            .status(),
        StatusCode::OK
    );

    let sofia = sandbox.login(SOFIA).await;
    for path in [
        "Contacts?fields=Last_Name",
        "Courses?fields=Name",
        "Deals?fields=Deal_Name",
    ] {
        let (status, body) = sandbox.crm_json(&sofia.access, path).await;
        assert_crm_error(status, &body, 403, "NO_PERMISSION");
    }
    let (status, body) = sandbox
        .crm_json(&sofia.access, "settings/fields?module=Contacts")
        .await;
    assert_crm_error(status, &body, 403, "NO_PERMISSION");

    let arjun = sandbox.login(ARJUN).await;
    for path in [
        "Leads?fields=Last_Name",
        "Contacts?fields=Last_Name",
        "Courses?fields=Name",
    ] {
        assert_eq!(
            sandbox.crm(&arjun.access, path).await.status(),
            StatusCode::OK,
            "{path}"
        );
    }
    let (status, body) = sandbox
        .crm_json(&arjun.access, "Deals?fields=Deal_Name")
        .await;
    assert_crm_error(status, &body, 403, "NO_PERMISSION");

    let priya = sandbox.login(PRIYA).await;
    for path in ["Leads", "Contacts", "Accounts", "Deals", "Courses"] {
        let (status, body) = sandbox
            .crm_json(&priya.access, &format!("{path}?fields=Owner"))
            .await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
}
