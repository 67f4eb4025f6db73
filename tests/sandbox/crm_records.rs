//! CRM v8 records: pages of the seeded Zylker Academy records, one record, and creating leads.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn listing_needs_fields_and_at_most_fifty_of_them() {
    let sandbox = Sandbox::start().await;
    let priya = sandbox.login(PRIYA).await;
    let (status, body) = sandbox.crm_json(&priya.access, "Leads").await;
    assert_crm_error(status, &body, 400, "REQUIRED_PARAM_MISSING");
    assert_eq!(body["details"]["param_name"], "fields");
    let (status, body) = sandbox.crm_json(&priya.access, "Leads?fields=").await;
    assert_crm_error(status, &body, 400, "REQUIRED_PARAM_MISSING");
    let fifty: Vec<String> = (0..50).map(|index| format!("F{index}")).collect();
    let (status, _) = sandbox
        .crm_json(&priya.access, &format!("Leads?fields={}", fifty.join(",")))
        .await;
    assert_eq!(status, StatusCode::OK);
    let fifty_one: Vec<String> = (0..51).map(|index| format!("F{index}")).collect();
    let (status, body) = sandbox
        .crm_json(
            &priya.access,
            &format!("Leads?fields={}", fifty_one.join(",")),
        )
        .await;
    assert_crm_error(status, &body, 400, "LIMIT_EXCEEDED");
    let (status, body) = sandbox
        .crm_json(&priya.access, "Leads?fields=Last_Name&per_page=201")
        .await;
    assert_crm_error(status, &body, 400, "INVALID_DATA");
    let (status, body) = sandbox
        .crm_json(&priya.access, "Leads?fields=Last_Name&page=0")
        .await;
    assert_crm_error(status, &body, 400, "INVALID_DATA");
    for module in ["Nope", "Home", "settings"] {
        let (status, body) = sandbox
            .crm_json(&priya.access, &format!("{module}?fields=Last_Name"))
            .await;
        assert_crm_error(status, &body, 400, "INVALID_MODULE");
    }
}

#[tokio::test]
async fn leads_page_through_with_more_records_and_end_in_204() {
    let sandbox = Sandbox::start().await;
    let priya = sandbox.login(PRIYA).await;
    let (status, first) = sandbox
        .crm_json(&priya.access, "Leads?fields=First_Name,Last_Name,Email")
        .await;
    assert_eq!(status, StatusCode::OK);
    let total_first = first["data"].as_array().map(Vec::len).unwrap_or_default();
    assert_eq!(total_first, 200, "per_page defaults to 200");
    assert_eq!(first["info"]["per_page"], 200);
    assert_eq!(first["info"]["count"], 200);
    assert_eq!(first["info"]["page"], 1);
    assert_eq!(first["info"]["more_records"], true);
    assert_eq!(first["info"]["sort_by"], "id");
    assert_eq!(first["info"]["sort_order"], "desc");
    let record = first["data"][0].as_object().expect("a record");
    let mut keys: Vec<&str> = record.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["Email", "First_Name", "Last_Name", "id"]);

    let (status, second) = sandbox
        .crm_json(&priya.access, "Leads?fields=Last_Name&page=2&per_page=200")
        .await;
    assert_eq!(status, StatusCode::OK);
    let rest = second["data"].as_array().map(Vec::len).unwrap_or_default();
    assert!(rest >= 50, "at least 250 leads in all");
    assert_eq!(second["info"]["count"], rest);
    assert_eq!(second["info"]["page"], 2);
    assert_eq!(second["info"]["more_records"], false);

    let past = sandbox
        .crm(&priya.access, "Leads?fields=Last_Name&page=3&per_page=200")
        .await;
    assert_eq!(past.status(), StatusCode::NO_CONTENT);
    assert!(past.bytes().await.expect("body").is_empty());

    let (_, page_one) = sandbox
        .crm_json(&priya.access, "Leads?fields=Last_Name&per_page=20")
        .await;
    let (_, page_two) = sandbox
        .crm_json(&priya.access, "Leads?fields=Last_Name&per_page=20&page=2")
        .await;
    assert_eq!(page_one["data"].as_array().map(Vec::len), Some(20));
    assert_eq!(page_two["info"]["more_records"], true);
    assert_eq!(page_two["data"][0]["id"], first["data"][20]["id"]);
    assert_ne!(page_one["data"][0]["id"], page_two["data"][0]["id"]);

    let (_, ascending) = sandbox
        .crm_json(
            &priya.access,
            "Leads?fields=Last_Name&per_page=1&sort_order=asc",
        )
        .await;
    assert_eq!(ascending["data"][0]["id"], second["data"][rest - 1]["id"]);
}

#[tokio::test]
async fn seeded_leads_are_zylker_academy_enquiries_and_the_same_every_start() {
    let sandbox = Sandbox::start().await;
    let priya = sandbox.login(PRIYA).await;
    let fields = "First_Name,Last_Name,Full_Name,Email,Phone,City,Lead_Status,Lead_Source,Owner,Created_Time,Course_Interest";
    let mut leads = Vec::new();
    for page in 1..=2 {
        let (_, body) = sandbox
            .crm_json(&priya.access, &format!("Leads?fields={fields}&page={page}"))
            .await;
        leads.extend(body["data"].as_array().cloned().unwrap_or_default());
    }
    assert!(leads.len() >= 250, "{} leads", leads.len());
    let staff = ["Priya Raman", "Arjun Mehta", "Sofia Khan"];
    for lead in &leads {
        let id = lead["id"].as_str().expect("id");
        assert!(id.len() == 19 && id.starts_with("6003219192"), "{id}");
        assert!(
            lead["Created_Time"]
                .as_str()
                .is_some_and(|time| time.ends_with("+05:30"))
        );
        assert!(staff.contains(&lead["Owner"]["name"].as_str().unwrap_or_default()));
        assert!(lead["Owner"]["id"].is_string());
        for key in [
            "First_Name",
            "Last_Name",
            "Email",
            "Phone",
            "City",
            "Lead_Status",
            "Lead_Source",
            "Course_Interest",
        ] {
            assert!(lead[key].is_string(), "{key} in {lead}");
        }
    }
    let names: Vec<&str> = leads
        .iter()
        .filter_map(|lead| lead["Last_Name"].as_str())
        .collect();
    assert!(
        names.iter().any(|name| name.contains('\'')),
        "an apostrophe"
    );
    assert!(
        leads.iter().any(|lead| {
            lead["Full_Name"]
                .as_str()
                .is_some_and(|name| !name.is_ascii())
        }),
        "a non-ASCII name"
    );
    let courses: Vec<&str> = leads
        .iter()
        .filter_map(|lead| lead["Course_Interest"].as_str())
        .collect();
    assert!(
        courses.contains(&"Web Design Fundamentals") && courses.contains(&"Full-Stack JavaScript")
    );

    let again = Sandbox::start().await;
    let priya_again = again.login(PRIYA).await;
    let (_, first) = sandbox
        .crm_json(&priya.access, &format!("Leads?fields={fields}&per_page=30"))
        .await;
    let (_, second) = again
        .crm_json(
            &priya_again.access,
            &format!("Leads?fields={fields}&per_page=30"),
        )
        .await;
    assert_eq!(first["data"], second["data"]);
}

#[tokio::test]
async fn other_modules_hold_students_courses_and_corporate_batches() {
    let sandbox = Sandbox::start().await;
    let priya = sandbox.login(PRIYA).await;
    let (_, contacts) = sandbox
        .crm_json(
            &priya.access,
            "Contacts?fields=Full_Name,Course,Student_Status",
        )
        .await;
    assert!(
        contacts["data"]
            .as_array()
            .is_some_and(|data| data.len() >= 50)
    );
    assert!(contacts["data"][0]["Course"]["name"].is_string());
    let (_, courses) = sandbox
        .crm_json(&priya.access, "Courses?fields=Name,Fee")
        .await;
    let names: Vec<&str> = courses["data"]
        .as_array()
        .expect("courses")
        .iter()
        .filter_map(|c| c["Name"].as_str())
        .collect();
    assert!(names.contains(&"UI/UX Design") && names.contains(&"DevOps Essentials"));
    let (_, deals) = sandbox
        .crm_json(
            &priya.access,
            "Deals?fields=Deal_Name,Stage,Amount,Account_Name",
        )
        .await;
    assert!(
        deals["data"][0]["Deal_Name"]
            .as_str()
            .is_some_and(|name| name.contains("batch"))
    );
    assert!(deals["data"][0]["Account_Name"]["name"].is_string());
}

#[tokio::test]
async fn a_record_by_id_and_an_unknown_id() {
    let sandbox = Sandbox::start().await;
    let priya = sandbox.login(PRIYA).await;
    let (_, list) = sandbox
        .crm_json(&priya.access, "Leads?fields=Last_Name&per_page=1")
        .await;
    let id = list["data"][0]["id"].as_str().expect("id").to_owned();
    let (status, body) = sandbox
        .crm_json(&priya.access, &format!("Leads/{id}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let record = &body["data"][0];
    assert_eq!(record["id"], id.as_str());
    assert_eq!(record["Last_Name"], list["data"][0]["Last_Name"]);
    assert!(record["Email"].is_string() && record["Owner"]["name"].is_string());
    for unknown in ["6003219192000000000001", "not-a-number"] {
        let (status, body) = sandbox
            .crm_json(&priya.access, &format!("Leads/{unknown}"))
            .await;
        assert_crm_error(status, &body, 400, "INVALID_DATA");
        assert_eq!(body["message"], "the id given seems to be invalid");
    }
    let liam = sandbox.login(LIAM).await;
    let (status, body) = sandbox.crm_json(&liam.access, &format!("Leads/{id}")).await;
    assert_crm_error(status, &body, 403, "NO_PERMISSION");
}

#[tokio::test]
async fn creating_a_lead_answers_per_record_and_the_lead_is_listed_first() {
    let sandbox = Sandbox::start().await;
    let sofia = sandbox.login(SOFIA).await;
    let (status, body) = sandbox
        .create(
            &sofia.access,
            "Leads",
            json!({"data": [{
                "First_Name": "Zoë",
                "Last_Name": "<script>alert(1)</script>",
                "Email": "zoe@example.com",
                "Course_Interest": "UI/UX Design",
                "Unknown_Field": 1,
            }]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let answer = &body["data"][0];
    assert_eq!(answer["code"], "SUCCESS");
    assert_eq!(answer["status"], "success");
    assert_eq!(answer["message"], "record added");
    let id = answer["details"]["id"].as_str().expect("id").to_owned();
    assert!(id.len() == 19 && id.starts_with("6003219192"));
    assert_eq!(answer["details"]["Created_By"]["name"], "Sofia Khan");
    assert!(
        answer["details"]["Created_Time"]
            .as_str()
            .is_some_and(|time| time.ends_with("+05:30"))
    );
    assert!(answer["details"]["Modified_Time"].is_string());

    let (_, list) = sandbox
        .crm_json(&sofia.access, "Leads?fields=Last_Name,Owner&per_page=1")
        .await;
    assert_eq!(list["data"][0]["id"], id.as_str());
    assert_eq!(list["data"][0]["Last_Name"], "<script>alert(1)</script>");
    assert_eq!(list["data"][0]["Owner"]["name"], "Sofia Khan");
    let (_, record) = sandbox
        .crm_json(&sofia.access, &format!("Leads/{id}"))
        .await;
    assert_eq!(
        record["data"][0]["Full_Name"],
        "Zoë <script>alert(1)</script>"
    );
    assert!(record["data"][0].get("Unknown_Field").is_none());
    // Another token of another user sees it too: records live as long as the sandbox.
    let priya = sandbox.login(PRIYA).await;
    let (status, _) = sandbox
        .crm_json(&priya.access, &format!("Leads/{id}"))
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_lead_without_last_name_is_mandatory_not_found_and_mixed_batches_are_207() {
    let sandbox = Sandbox::start().await;
    let priya = sandbox.login(PRIYA).await;
    let (_, before) = sandbox
        .crm_json(&priya.access, "Leads?fields=Last_Name&per_page=1")
        .await;
    let (status, body) = sandbox
        .create(
            &priya.access,
            "Leads",
            json!({"data": [{"First_Name": "Nameless", "Last_Name": "  "}]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["data"][0],
        json!({"code": "MANDATORY_NOT_FOUND", "details": {"api_name": "Last_Name"}, "message": "required field not found", "status": "error"})
    );
    let (_, after) = sandbox
        .crm_json(&priya.access, "Leads?fields=Last_Name&per_page=1")
        .await;
    assert_eq!(
        before["data"][0]["id"], after["data"][0]["id"],
        "nothing stored"
    );

    let (status, body) = sandbox
        .create(
            &priya.access,
            "Leads",
            json!({"data": [
                {"Last_Name": "D'Souza"},
                {"First_Name": "No"},
                {"Last_Name": "Bad", "Email": "not an email"},
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::MULTI_STATUS);
    assert_eq!(body["data"][0]["code"], "SUCCESS");
    assert_eq!(body["data"][1]["code"], "MANDATORY_NOT_FOUND");
    assert_eq!(body["data"][2]["code"], "INVALID_DATA");
    assert_eq!(body["data"][2]["details"]["api_name"], "Email");

    let (status, body) = sandbox
        .create(&priya.access, "Leads", json!({"nope": []}))
        .await;
    assert_crm_error(status, &body, 400, "REQUIRED_PARAM_MISSING");
    let liam = sandbox.login(LIAM).await;
    let (status, body) = sandbox
        .create(
            &liam.access,
            "Leads",
            json!({"data": [{"Last_Name": "Sneaky"}]}),
        )
        .await;
    assert_crm_error(status, &body, 403, "NO_PERMISSION");
}
