//! The CRM v8 client: pages of records, one record, metadata, creating leads, and how its errors are classified.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use sonic_rs::JsonValueTrait;
use url::Url;
use zylker_portal::tokens::manager::LoginOutcome;
use zylker_portal::zoho::CrmError;
use zylker_portal::zoho::crm::{CreateResult, CrmAuth, Record};

use crate::support::*;

async fn priya_auth(zoho: &TestZoho) -> (Url, Secret) {
    let login = zoho.login(PRIYA).await;
    let token = zoho.manager.access_token_for(&login.owner()).await.unwrap();
    (token.api_domain, token.access_token)
}

#[tokio::test]
async fn records_page_through_leads_with_fields() {
    let zoho = TestZoho::start().await;
    let (domain, token) = priya_auth(&zoho).await;
    let auth = CrmAuth {
        api_domain: &domain,
        access_token: &token,
    };
    let crm = &crm_client();

    let first = crm
        .records(
            auth,
            "Leads",
            &["Last_Name", "Email", "Lead_Status"],
            1,
            200,
        )
        .await
        .expect("page 1");
    let second = crm
        .records(auth, "Leads", &["Last_Name", "Email"], 2, 200)
        .await
        .expect("page 2");

    assert_eq!(first.records().count(), 200);
    assert!(first.more_records);
    assert_eq!(first.page, 1);
    assert!(second.records().next().is_some());
    assert_eq!(second.page, 2);
    let record = first.records().next().expect("a record");
    assert!(record.contains_key(&"Last_Name"));
    assert!(record.get(&"id").and_then(|v| v.as_str()).is_some());
    let beyond = crm
        .records(auth, "Leads", &["Last_Name"], 9, 200)
        .await
        .expect("an empty page");
    assert_eq!(beyond.records().count(), 0);
    assert!(!beyond.more_records);
}

#[tokio::test]
async fn a_record_is_read_and_an_unknown_id_is_none() {
    let zoho = TestZoho::start().await;
    let (domain, token) = priya_auth(&zoho).await;
    let auth = CrmAuth {
        api_domain: &domain,
        access_token: &token,
    };
    let crm = &crm_client();
    let page = crm
        .records(auth, "Leads", &["Last_Name"], 1, 1)
        .await
        .unwrap();
    let id = page.records().next().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let record = crm.record(auth, "Leads", &id).await.expect("read");

    assert_eq!(
        record.and_then(|r| r.get(&"id").and_then(|v| v.as_str()).map(str::to_owned)),
        Some(id)
    );
    assert!(
        crm.record(auth, "Leads", "1")
            .await
            .expect("answered")
            .is_none()
    );
    assert!(
        crm.record(auth, "Leads", "../org")
            .await
            .expect("answered")
            .is_none()
    );
}

#[tokio::test]
async fn crm_errors_are_classified() {
    let zoho = TestZoho::start().await;
    let sofia = zoho.login(SOFIA).await;
    let token = zoho.manager.access_token_for(&sofia.owner()).await.unwrap();
    let auth = CrmAuth {
        api_domain: &token.api_domain,
        access_token: &token.access_token,
    };
    let crm = &crm_client();

    let forbidden = crm.records(auth, "Contacts", &["Last_Name"], 1, 10).await;
    assert!(
        matches!(forbidden, Err(CrmError::NoPermission)),
        "{forbidden:?}"
    );
    let missing = crm
        .records(auth, "NoSuchModule", &["Last_Name"], 1, 10)
        .await;
    assert!(matches!(missing, Err(CrmError::NotFound)), "{missing:?}");
    let bad_token = CrmAuth {
        api_domain: &token.api_domain,
        access_token: &Secret::from("1000.not-a-token"),
    };
    let rejected = crm.current_user(bad_token).await;
    assert!(
        matches!(rejected, Err(CrmError::InvalidToken(_))),
        "{rejected:?}"
    );

    zoho.inject(json!({"target": "crm", "status": 429, "count": 1}))
        .await;
    let throttled = crm.current_user(auth).await;
    assert!(
        matches!(throttled, Err(CrmError::RateLimited { .. })),
        "{throttled:?}"
    );
    zoho.inject(json!({"target": "crm", "status": 500, "count": 1}))
        .await;
    let failed = crm.current_user(auth).await;
    assert!(matches!(failed, Err(CrmError::Server(500))), "{failed:?}");
}

#[tokio::test]
async fn a_login_without_the_modules_scope_meets_a_scope_mismatch() {
    let zoho = TestZoho::start().await;
    let narrow = AuthRequest {
        scope: Some("ZohoCRM.users.READ,ZohoCRM.org.READ"),
        ..AuthRequest::default()
    };
    let LoginOutcome::LoggedIn(login) = zoho.login_outcome(PRIYA, narrow).await.expect("login")
    else {
        panic!("logged in");
    };
    let token = zoho.manager.access_token_for(&login.owner()).await.unwrap();
    let auth = CrmAuth {
        api_domain: &token.api_domain,
        access_token: &token.access_token,
    };

    let outcome = crm_client()
        .records(auth, "Leads", &["Last_Name"], 1, 10)
        .await;

    assert!(
        matches!(outcome, Err(CrmError::ScopeMismatch)),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_slow_crm_is_a_timeout() {
    let zoho = TestZoho::start().await;
    let (domain, token) = priya_auth(&zoho).await;
    let impatient = zylker_portal::zoho::CrmClient::new(Duration::from_millis(300)).unwrap();
    zoho.inject(json!({"target": "crm", "delay_ms": 3000, "count": 1}))
        .await;

    let outcome = impatient
        .current_user(CrmAuth {
            api_domain: &domain,
            access_token: &token,
        })
        .await;

    assert!(matches!(outcome, Err(CrmError::Timeout)), "{outcome:?}");
}

#[tokio::test]
async fn metadata_lists_modules_and_fields() {
    let zoho = TestZoho::start().await;
    let (domain, token) = priya_auth(&zoho).await;
    let auth = CrmAuth {
        api_domain: &domain,
        access_token: &token,
    };
    let crm = &crm_client();

    let modules = crm.modules(auth).await.expect("modules");
    let fields = crm.fields(auth, "Leads").await.expect("fields");
    let org = crm.org(auth).await.expect("org");

    assert!(
        modules
            .iter()
            .any(|m| m.api_name == "Leads" && m.api_supported)
    );
    assert!(fields.iter().any(|f| f.api_name == "Last_Name"));
    assert_eq!(org.id, ORG_ID);
}

#[tokio::test]
async fn creating_leads_reports_each_record() {
    let zoho = TestZoho::start().await;
    let (domain, token) = priya_auth(&zoho).await;
    let auth = CrmAuth {
        api_domain: &domain,
        access_token: &token,
    };
    let mut good = Record::new();
    good.insert("Last_Name", "<script>alert(1)</script>");
    good.insert("Email", "new.student@example.com");
    let mut bad = Record::new();
    bad.insert("Email", "no.name@example.com");

    let results = crm_client()
        .create_records(auth, "Leads", &[good, bad])
        .await
        .expect("answered");

    let CreateResult::Created { id } = &results[0] else {
        panic!("{results:?}");
    };
    assert!(
        matches!(&results[1], CreateResult::Failed { code, field, .. }
            if code == "MANDATORY_NOT_FOUND" && field.as_deref() == Some("Last_Name")),
        "{results:?}"
    );
    let read = crm_client()
        .record(auth, "Leads", id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read["Last_Name"], "<script>alert(1)</script>");
    let only_bad = crm_client()
        .create_records(auth, "Leads", &[Record::new()])
        .await
        .expect("per-record answer even when all fail");
    assert!(matches!(&only_bad[0], CreateResult::Failed { .. }));
}

/// A server that answers the first request on a connection and keeps it alive, then closes it as the next
/// request arrives, without answering: what any server does to an idle kept-alive connection at the moment the
/// client picks it from its pool. Every later connection is answered.
async fn server_closing_its_first_connection_under_the_second_request() -> (Url, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = requests.clone();
    tokio::spawn(async move {
        let answer = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{\"data\":[]}";
        let mut connection = 0;
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            connection += 1;
            let first = connection == 1;
            let counted = counted.clone();
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 8192];
                let mut answered = 0;
                loop {
                    // One read holds one whole GET on loopback.
                    let Ok(read) = socket.read(&mut buffer).await else {
                        return;
                    };
                    if read == 0 {
                        return;
                    }
                    counted.fetch_add(1, Ordering::SeqCst);
                    if first && answered == 1 {
                        return; // closed under the second request, unanswered
                    }
                    socket.write_all(answer.as_bytes()).await.unwrap();
                    answered += 1;
                }
            });
        }
    });
    (url, requests)
}

#[tokio::test]
async fn a_get_whose_kept_alive_connection_is_closed_under_it_is_sent_again_once() {
    let (server, requests) = server_closing_its_first_connection_under_the_second_request().await;
    let crm = crm_client();
    let token = Secret::from("1000.test-access-token");
    let auth = CrmAuth {
        api_domain: &server,
        access_token: &token,
    };

    let first = crm.records(auth, "Leads", &["Last_Name"], 1, 20).await;
    let second = crm.records(auth, "Leads", &["Last_Name"], 1, 20).await;

    assert!(first.is_ok(), "{first:?}");
    assert!(
        second.is_ok(),
        "the page is served, not a 502: {:?}",
        second.err()
    );
    assert_eq!(
        requests.load(Ordering::SeqCst),
        3,
        "the second GET went out twice: on the closed connection, then on a new one"
    );
}

#[tokio::test]
async fn an_update_whose_kept_alive_connection_is_closed_under_it_is_not_sent_again() {
    let (server, requests) = server_closing_its_first_connection_under_the_second_request().await;
    let crm = crm_client();
    let token = Secret::from("1000.test-access-token");
    let auth = CrmAuth {
        api_domain: &server,
        access_token: &token,
    };
    let mut record = Record::new();
    record.insert("Phone", "+91 98765 43210");

    let first = crm.records(auth, "Leads", &["Last_Name"], 1, 20).await;
    let update = crm
        .update_record(auth, "Leads", "5725767000000524157", &record, None)
        .await;

    assert!(first.is_ok(), "{first:?}");
    assert!(
        matches!(update, Err(CrmError::Unreachable(_))),
        "{update:?}"
    );
    assert_eq!(
        requests.load(Ordering::SeqCst),
        2,
        "the update went out once: a write is not sent again"
    );
}
