//! CRM v8 metadata: the modules a profile may open and the fields of a module.

use reqwest::StatusCode;

use crate::support::*;

#[tokio::test]
async fn settings_modules_lists_what_the_profile_may_open_and_marks_api_less_modules() {
    let sandbox = Sandbox::start().await;
    let priya = sandbox.login(PRIYA).await;
    let (status, body) = sandbox.crm_json(&priya.access, "settings/modules").await;
    assert_eq!(status, StatusCode::OK);
    let modules = body["modules"].as_array().expect("modules");
    let api_names: Vec<&str> = modules
        .iter()
        .filter(|module| module["api_supported"] == true)
        .filter_map(|module| module["api_name"].as_str())
        .collect();
    assert_eq!(
        api_names,
        ["Leads", "Contacts", "Accounts", "Deals", "Courses"]
    );
    assert!(
        modules
            .iter()
            .any(|module| module["api_supported"] == false)
    );
    for module in modules {
        for key in [
            "api_name",
            "module_name",
            "singular_label",
            "plural_label",
            "id",
        ] {
            assert!(module[key].is_string(), "{key} in {module}");
        }
        assert!(module["creatable"].is_boolean() && module["api_supported"].is_boolean());
    }
    let courses = modules
        .iter()
        .find(|module| module["api_name"] == "Courses")
        .expect("Courses");
    assert_eq!(courses["generated_type"], "custom");

    let liam = sandbox.login(LIAM).await;
    let (_, body) = sandbox.crm_json(&liam.access, "settings/modules").await;
    let api_names: Vec<&str> = body["modules"]
        .as_array()
        .expect("modules")
        .iter()
        .filter(|module| module["api_supported"] == true)
        .filter_map(|module| module["api_name"].as_str())
        .collect();
    assert_eq!(api_names, ["Courses"]);
}

#[tokio::test]
async fn an_unknown_crm_url_is_invalid_url_pattern() {
    let sandbox = Sandbox::start().await;
    let priya = sandbox.login(PRIYA).await;
    let (status, body) = sandbox.crm_json(&priya.access, "Leads/1/2/3").await;
    assert_crm_error(status, &body, 404, "INVALID_URL_PATTERN");
}

#[tokio::test]
async fn settings_modules_describes_one_module_by_api_name() {
    let sandbox = Sandbox::start().await;
    let arjun = sandbox.login(ARJUN).await;
    let (status, body) = sandbox
        .crm_json(&arjun.access, "settings/modules/Contacts")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["modules"][0]["api_name"], "Contacts");
    assert_eq!(body["modules"][0]["plural_label"], "Contacts");
    let (status, body) = sandbox
        .crm_json(&arjun.access, "settings/modules/Deals")
        .await;
    assert_crm_error(status, &body, 403, "NO_PERMISSION");
    let (status, body) = sandbox
        .crm_json(&arjun.access, "settings/modules/Nope")
        .await;
    assert_crm_error(status, &body, 400, "INVALID_MODULE");
}

#[tokio::test]
async fn settings_fields_needs_a_valid_module() {
    let sandbox = Sandbox::start().await;
    let priya = sandbox.login(PRIYA).await;
    let (status, body) = sandbox.crm_json(&priya.access, "settings/fields").await;
    assert_crm_error(status, &body, 400, "REQUIRED_PARAM_MISSING");
    assert_eq!(body["details"]["param_name"], "module");
    for module in ["Nope", "Home"] {
        let (status, body) = sandbox
            .crm_json(&priya.access, &format!("settings/fields?module={module}"))
            .await;
        assert_crm_error(status, &body, 400, "INVALID_MODULE");
    }
    let (status, body) = sandbox
        .crm_json(&priya.access, "settings/fields?module=Leads")
        .await;
    assert_eq!(status, StatusCode::OK);
    let fields = body["fields"].as_array().expect("fields");
    let last_name = fields
        .iter()
        .find(|field| field["api_name"] == "Last_Name")
        .expect("Last_Name");
    assert_eq!(last_name["system_mandatory"], true);
    assert_eq!(last_name["data_type"], "text");
    let course = fields
        .iter()
        .find(|field| field["api_name"] == "Course_Interest")
        .expect("custom field");
    assert_eq!(course["custom_field"], true);
    assert!(
        course["pick_list_values"]
            .as_array()
            .is_some_and(|values| !values.is_empty())
    );
    for field in fields {
        for key in [
            "api_name",
            "field_label",
            "display_label",
            "data_type",
            "id",
            "json_type",
        ] {
            assert!(field[key].is_string(), "{key} in {field}");
        }
    }
}
