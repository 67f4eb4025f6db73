//! The Zoho clients and the token manager against the real embedded sandbox, over HTTP.

mod support;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sonic_rs::JsonValueTrait;
use support::*;
use url::Url;
use zylker_portal::tokens::manager::{LoginOutcome, TokenError};
use zylker_portal::tokens::{
    ListStore, OAuthToken, SqliteStore, StoreError, StoreSpec, TokenStore, now_millis, open_store,
};
use zylker_portal::zoho::crm::{CreateResult, CrmAuth, Record};
use zylker_portal::zoho::{AccountsError, CrmError};

// ---------------------------------------------------------------------------------------------------------
// Login

#[tokio::test]
async fn login_stores_one_row_named_email_colon_org_id_with_the_sdk_fields() {
    let zoho = TestZoho::start().await;

    let login = zoho.login(PRIYA).await;

    assert_eq!(login.user.email, PRIYA);
    assert_eq!(login.org.id, ORG_ID);
    let rows = zoho.rows();
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row.id.as_deref(), Some(login.token_id.as_str()));
    assert_eq!(
        row.user_name.as_deref(),
        Some(&*format!("{PRIYA}:{ORG_ID}"))
    );
    assert_eq!(row.client_id.as_deref(), Some(CLIENT_ID));
    assert_eq!(row.client_secret.as_deref(), Some(CLIENT_SECRET));
    assert_eq!(row.redirect_url.as_deref(), Some(REDIRECT_URL));
    assert_eq!(
        row.api_domain.as_deref(),
        Some(&*zoho.url.origin().ascii_serialization())
    );
    assert!(row.access_token.as_deref().is_some_and(|t| !t.is_empty()));
    assert!(row.refresh_token.as_deref().is_some_and(|t| !t.is_empty()));
    assert_eq!(row.grant_token, None, "the spent code is not kept");
    let expiry = row.expiry_time.expect("an expiry");
    let hour = 3_600_000;
    assert!(
        (expiry - now_millis() - hour).abs() < 60_000,
        "expiry in ms, an hour ahead"
    );
    assert_eq!(zoho.counter("code_exchanges").await, 1);
}

#[tokio::test]
async fn a_user_with_an_apostrophe_logs_in() {
    let zoho = TestZoho::start().await;

    let login = zoho.login(LIAM).await;

    let row = zoho.stored(&login.token_id).expect("stored");
    assert_eq!(row.user_name.as_deref(), Some(&*format!("{LIAM}:{ORG_ID}")));
    assert_eq!(
        login.user.profile.map(|p| p.name).as_deref(),
        Some("Student")
    );
}

#[tokio::test]
async fn second_login_of_the_same_user_updates_the_same_row() {
    let zoho = TestZoho::start().await;
    let first = zoho.login(PRIYA).await;
    let before = zoho.stored(&first.token_id).expect("stored");

    let second = zoho.login(PRIYA).await;

    assert_eq!(second.token_id, first.token_id);
    let rows = zoho.rows();
    assert_eq!(rows.len(), 1);
    assert_ne!(
        rows[0].access_token, before.access_token,
        "the new access token is stored"
    );
    // Whatever refresh token the row holds now must work.
    zoho.expire_in_store(&first.token_id);
    zoho.manager
        .access_token_for(&first.owner())
        .await
        .expect("the stored refresh token works");
}

#[tokio::test]
async fn a_new_refresh_token_replacing_a_stored_one_revokes_the_old_one() {
    let zoho = TestZoho::start().await;
    let first = zoho.login(PRIYA).await;
    let old_refresh = zoho
        .stored(&first.token_id)
        .and_then(|t| t.refresh_token)
        .expect("rt");

    let consent = AuthRequest {
        prompt_consent: true,
        ..AuthRequest::default()
    };
    let outcome = zoho.login_outcome(PRIYA, consent).await.expect("login");

    assert!(matches!(outcome, LoginOutcome::LoggedIn(_)));
    let new_refresh = zoho
        .stored(&first.token_id)
        .and_then(|t| t.refresh_token)
        .expect("rt");
    assert_ne!(
        new_refresh, old_refresh,
        "prompt=consent mints a new refresh token"
    );
    assert_eq!(
        zoho.counter("revocations").await,
        1,
        "the replaced one is revoked"
    );
    let revoked_again = zoho
        .manager
        .accounts()
        .revoke(&zoho.url, &old_refresh)
        .await;
    assert!(
        matches!(revoked_again, Err(AccountsError::Dead)),
        "{revoked_again:?}"
    );
}

#[tokio::test]
async fn two_users_get_two_rows() {
    let zoho = TestZoho::start().await;

    let priya = zoho.login(PRIYA).await;
    let arjun = zoho.login(ARJUN).await;

    assert_ne!(priya.token_id, arjun.token_id);
    assert_eq!(zoho.rows().len(), 2);
}

#[tokio::test]
async fn login_without_a_refresh_token_and_none_stored_needs_consent_and_stores_nothing() {
    let zoho = TestZoho::start().await;
    let online = AuthRequest {
        online: true,
        ..AuthRequest::default()
    };

    let outcome = zoho
        .login_outcome(PRIYA, online)
        .await
        .expect("a login outcome");

    assert!(matches!(outcome, LoginOutcome::NeedsConsent));
    assert!(zoho.rows().is_empty());
}

#[tokio::test]
async fn login_without_a_refresh_token_keeps_the_stored_one() {
    let zoho = TestZoho::start().await;
    let first = zoho.login(PRIYA).await;
    let stored_refresh = zoho.stored(&first.token_id).and_then(|t| t.refresh_token);
    let online = AuthRequest {
        online: true,
        ..AuthRequest::default()
    };

    let outcome = zoho.login_outcome(PRIYA, online).await.expect("login");

    let LoginOutcome::LoggedIn(login) = outcome else {
        panic!("a stored refresh token needs no new consent");
    };
    assert_eq!(login.token_id, first.token_id);
    assert_eq!(
        zoho.stored(&first.token_id).and_then(|t| t.refresh_token),
        stored_refresh
    );
    assert_eq!(zoho.counter("revocations").await, 0);
}

#[tokio::test]
async fn forged_api_domain_in_the_token_answer_is_refused_and_nothing_is_stored() {
    let zoho = TestZoho::start().await;
    zoho.inject(json!({"target": "token", "api_domain": "https://evil.example", "count": 1}))
        .await;

    let outcome = zoho.login_outcome(PRIYA, AuthRequest::default()).await;

    assert!(
        matches!(outcome, Err(TokenError::Protocol(_))),
        "{outcome:?}"
    );
    assert!(zoho.rows().is_empty());
    assert_eq!(
        zoho.counter("crm_calls").await,
        0,
        "no CRM call for the forged domain"
    );
}

#[tokio::test]
async fn a_replayed_code_is_refused_as_dead_and_stores_nothing_new() {
    let zoho = TestZoho::start().await;
    let callback = zoho.authorize(PRIYA, AuthRequest::default()).await;
    let accounts = zoho
        .manager
        .hosts()
        .accounts_server(&callback.accounts_server)
        .unwrap();
    zoho.manager
        .login(&accounts, &callback.code, &callback.verifier)
        .await
        .expect("first use");
    zoho.manager.delete_tokens().await.expect("clear");

    let replay = zoho
        .manager
        .login(&accounts, &callback.code, &callback.verifier)
        .await;

    assert!(matches!(replay, Err(TokenError::Dead)), "{replay:?}");
    assert!(zoho.rows().is_empty());
}

#[tokio::test]
async fn a_wrong_client_secret_at_login_is_a_misconfiguration() {
    let zoho = TestZoho::start().await;
    let callback = zoho.authorize(PRIYA, AuthRequest::default()).await;
    let wrong = zoho.manager_with_secret("not-the-secret");
    let accounts = wrong
        .hosts()
        .accounts_server(&callback.accounts_server)
        .unwrap();

    let outcome = wrong
        .login(&accounts, &callback.code, &callback.verifier)
        .await;

    assert!(
        matches!(outcome, Err(TokenError::Misconfigured(_))),
        "{outcome:?}"
    );
    assert!(zoho.rows().is_empty());
}

#[tokio::test]
async fn an_unreachable_accounts_server_is_reported_as_such() {
    let zoho = TestZoho::start().await;
    // A port that was just free: nothing listens there.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let nowhere = Url::parse(&format!("http://127.0.0.1:{closed}")).unwrap();
    let manager = manager_for(&nowhere, Arc::clone(&zoho.store), CLIENT_SECRET);

    let outcome = manager.login(&nowhere, "1000.code", "verifier").await;

    assert!(
        matches!(outcome, Err(TokenError::Unreachable(_))),
        "{outcome:?}"
    );
}

// ---------------------------------------------------------------------------------------------------------
// Access tokens and refresh

#[tokio::test]
async fn a_fresh_token_is_used_without_refreshing() {
    let zoho = TestZoho::start().await;
    let login = zoho.login(PRIYA).await;
    let stored = zoho.stored(&login.token_id).unwrap();

    let token = zoho
        .manager
        .access_token_for(&login.owner())
        .await
        .expect("a token");

    assert_eq!(Some(token.access_token), stored.access_token);
    assert_eq!(token.api_domain.origin(), zoho.url.origin());
    assert_eq!(zoho.counter("refreshes").await, 0);
}

#[tokio::test]
async fn expiry_passed_in_the_store_gives_exactly_one_refresh() {
    let zoho = TestZoho::start().await;
    let login = zoho.login(PRIYA).await;
    let old = zoho.stored(&login.token_id).unwrap();
    zoho.expire_in_store(&login.token_id);

    let first = zoho
        .manager
        .access_token_for(&login.owner())
        .await
        .expect("refreshed");
    let second = zoho
        .manager
        .access_token_for(&login.owner())
        .await
        .expect("reused");

    assert_eq!(zoho.counter("refreshes").await, 1);
    assert_ne!(Some(&first.access_token), old.access_token.as_ref());
    assert_eq!(first.access_token, second.access_token);
    let row = zoho.stored(&login.token_id).unwrap();
    assert_eq!(
        row.access_token.as_deref(),
        Some(first.access_token.as_str())
    );
    assert!(row.expiry_time.unwrap() > now_millis() + 3_000_000);
    assert_eq!(
        row.refresh_token, old.refresh_token,
        "a refresh keeps the refresh token"
    );
    let crm = zoho.manager.crm();
    let user = zoho
        .manager
        .call(&login.owner(), |t| async move {
            let auth = CrmAuth {
                api_domain: &t.api_domain,
                access_token: &t.access_token,
            };
            crm.current_user(auth).await
        })
        .await
        .expect("the refreshed token works at CRM");
    assert_eq!(user.email, PRIYA);
}

#[tokio::test]
async fn a_token_within_the_leeway_is_refreshed_before_it_expires() {
    let zoho = TestZoho::start().await;
    let login = zoho.login(PRIYA).await;
    let mut row = zoho.stored(&login.token_id).unwrap();
    row.expiry_time = Some(now_millis() + LEEWAY.as_millis() as i64 / 2);
    zoho.store.save_token(&mut row).unwrap();

    zoho.manager
        .access_token_for(&login.owner())
        .await
        .expect("refreshed");

    assert_eq!(zoho.counter("refreshes").await, 1);
}

#[tokio::test]
async fn an_unknown_expiry_is_refreshed() {
    let zoho = TestZoho::start().await;
    let login = zoho.login(PRIYA).await;
    let mut row = zoho.stored(&login.token_id).unwrap();
    row.expiry_time = None;
    zoho.store.save_token(&mut row).unwrap();

    zoho.manager
        .access_token_for(&login.owner())
        .await
        .expect("refreshed");

    assert_eq!(zoho.counter("refreshes").await, 1);
    assert!(zoho.stored(&login.token_id).unwrap().expiry_time.is_some());
}

#[tokio::test]
async fn a_sandbox_expired_token_gives_one_refresh_and_one_retry_through_call() {
    let zoho = TestZoho::start().await;
    let login = zoho.login(PRIYA).await;
    let expired = zoho
        .control("/_sandbox/expire-access-tokens", json!({}))
        .await;
    assert!(expired["expired"].as_u64().unwrap() >= 1);
    let calls_before = zoho.counter("crm_calls").await;

    let attempts = std::sync::atomic::AtomicUsize::new(0);
    let page = zoho
        .manager
        .call(&login.owner(), |t| {
            attempts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let manager = Arc::clone(&zoho.manager);
            async move {
                let auth = CrmAuth {
                    api_domain: &t.api_domain,
                    access_token: &t.access_token,
                };
                manager
                    .crm()
                    .records(auth, "Leads", &["Last_Name", "Email"], 1, 10)
                    .await
            }
        })
        .await
        .expect("the retry succeeds");

    assert_eq!(page.records().count(), 10);
    assert_eq!(attempts.into_inner(), 2, "one call and one retry");
    let counters = zoho.counters().await;
    assert_eq!(counters["refreshes"], 1);
    assert_eq!(counters["unauthorized"], 1);
    assert_eq!(counters["crm_calls"].as_u64().unwrap() - calls_before, 2);
}

#[tokio::test]
async fn a_second_rejection_after_the_retry_is_returned_not_retried_again() {
    let zoho = TestZoho::start().await;
    let login = zoho.login(PRIYA).await;
    let attempts = std::sync::atomic::AtomicUsize::new(0);

    let outcome: Result<(), TokenError> = zoho
        .manager
        .call(&login.owner(), |_| {
            attempts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async { Err(CrmError::InvalidToken("INVALID_TOKEN".to_owned())) }
        })
        .await;

    assert!(
        matches!(outcome, Err(TokenError::Crm(CrmError::InvalidToken(_)))),
        "{outcome:?}"
    );
    assert_eq!(attempts.into_inner(), 2);
    assert_eq!(zoho.counter("refreshes").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_requests_on_a_token_expired_in_the_store_make_one_refresh() {
    let zoho = TestZoho::start().await;
    let login = zoho.login(PRIYA).await;
    zoho.expire_in_store(&login.token_id);

    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let manager = Arc::clone(&zoho.manager);
            let owner = login.owner();
            tokio::spawn(async move { manager.access_token_for(&owner).await })
        })
        .collect();
    let mut tokens = Vec::new();
    for task in tasks {
        tokens.push(task.await.expect("task").expect("a token").access_token);
    }

    assert_eq!(zoho.counter("refreshes").await, 1);
    tokens.dedup();
    assert_eq!(tokens.len(), 1, "everyone uses the one refreshed token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_calls_on_a_sandbox_expired_token_make_one_refresh() {
    let zoho = TestZoho::start().await;
    let login = zoho.login(PRIYA).await;
    zoho.control("/_sandbox/expire-access-tokens", json!({}))
        .await;

    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let manager = Arc::clone(&zoho.manager);
            let owner = login.owner();
            tokio::spawn(async move {
                let crm = manager.crm().clone();
                manager
                    .call(&owner, |t| {
                        let crm = crm.clone();
                        async move {
                            let auth = CrmAuth {
                                api_domain: &t.api_domain,
                                access_token: &t.access_token,
                            };
                            crm.current_user(auth).await
                        }
                    })
                    .await
            })
        })
        .collect();
    for task in tasks {
        let user = task.await.expect("task").expect("the call succeeds");
        assert_eq!(user.email, PRIYA);
    }

    assert_eq!(zoho.counter("refreshes").await, 1);
}

#[tokio::test]
async fn a_revoked_refresh_token_is_dead_and_the_row_is_deleted() {
    let zoho = TestZoho::start().await;
    let login = zoho.login(PRIYA).await;
    zoho.control("/_sandbox/revoke-refresh-tokens", json!({}))
        .await;
    zoho.expire_in_store(&login.token_id);

    let outcome = zoho.manager.access_token_for(&login.owner()).await;

    assert!(matches!(outcome, Err(TokenError::Dead)), "{outcome:?}");
    assert!(zoho.stored(&login.token_id).is_none());
    let again = zoho.manager.access_token_for(&login.owner()).await;
    assert!(matches!(again, Err(TokenError::NotStored)), "{again:?}");
}

#[tokio::test]
async fn a_revoked_refresh_token_found_through_a_crm_401_is_dead_too() {
    let zoho = TestZoho::start().await;
    let login = zoho.login(SOFIA).await;
    zoho.control("/_sandbox/revoke-refresh-tokens", json!({}))
        .await;

    let outcome = zoho
        .manager
        .call(&login.owner(), |t| {
            let manager = Arc::clone(&zoho.manager);
            async move {
                let auth = CrmAuth {
                    api_domain: &t.api_domain,
                    access_token: &t.access_token,
                };
                manager.crm().current_user(auth).await
            }
        })
        .await;

    assert!(matches!(outcome, Err(TokenError::Dead)), "{outcome:?}");
    assert!(zoho.rows().is_empty());
}

#[tokio::test]
async fn a_throttled_refresh_keeps_the_token_unchanged() {
    let zoho = TestZoho::start().await;
    let login = zoho.login(PRIYA).await;
    zoho.expire_in_store(&login.token_id);
    let before = zoho.stored(&login.token_id).unwrap();
    zoho.inject(json!({"target": "token", "error": "Access Denied", "count": 1}))
        .await;

    let outcome = zoho.manager.access_token_for(&login.owner()).await;

    assert!(matches!(outcome, Err(TokenError::Throttled)), "{outcome:?}");
    assert_eq!(zoho.stored(&login.token_id), Some(before));
    assert_eq!(zoho.counter("throttled_refreshes").await, 1);
    // Once Zoho lets go, the same token refreshes.
    zoho.manager
        .access_token_for(&login.owner())
        .await
        .expect("refreshed later");
}

#[tokio::test]
async fn invalid_client_on_refresh_is_a_misconfiguration_and_keeps_the_token() {
    let zoho = TestZoho::start().await;
    let login = zoho.login(PRIYA).await;
    zoho.expire_in_store(&login.token_id);
    let before = zoho.stored(&login.token_id).unwrap();
    zoho.inject(json!({"target": "token", "error": "invalid_client", "count": 1}))
        .await;

    let outcome = zoho.manager.access_token_for(&login.owner()).await;

    assert!(
        matches!(&outcome, Err(TokenError::Misconfigured(what)) if what == "invalid_client"),
        "{outcome:?}"
    );
    assert_eq!(zoho.stored(&login.token_id), Some(before));
}

#[tokio::test]
async fn a_slow_token_endpoint_is_a_timeout_and_keeps_the_token() {
    let zoho = TestZoho::start().await;
    let login = zoho.login(PRIYA).await;
    zoho.expire_in_store(&login.token_id);
    let before = zoho.stored(&login.token_id).unwrap();
    let impatient = manager_with_timeout(
        &zoho.url,
        Arc::clone(&zoho.store),
        CLIENT_SECRET,
        Duration::from_millis(300),
    );
    zoho.inject(json!({"target": "token", "delay_ms": 3000, "count": 1}))
        .await;

    let outcome = impatient.access_token_for(&login.owner()).await;

    assert!(matches!(outcome, Err(TokenError::Timeout)), "{outcome:?}");
    assert_eq!(zoho.stored(&login.token_id), Some(before));
}

#[tokio::test]
async fn a_token_refreshed_by_another_process_is_read_from_the_store_not_refreshed_again() {
    let zoho = TestZoho::start().await;
    let login = zoho.login(PRIYA).await;
    zoho.expire_in_store(&login.token_id);
    let other_process = zoho.second_manager();

    let theirs = other_process
        .access_token_for(&login.owner())
        .await
        .expect("refreshed");
    let ours = zoho
        .manager
        .access_token_for(&login.owner())
        .await
        .expect("read");

    assert_eq!(ours.access_token, theirs.access_token);
    assert_eq!(zoho.counter("refreshes").await, 1);
}

#[tokio::test]
async fn a_refresh_that_loses_the_compare_and_set_uses_the_winners_token() {
    let inner: Arc<dyn TokenStore> = Arc::new(ListStore::new());
    let racing = Arc::new(RacingStore::new(Arc::clone(&inner)));
    let zoho = TestZoho::start_with_store(racing.clone()).await;
    let login = zoho.login(PRIYA).await;
    zoho.expire_in_store(&login.token_id);
    racing.arm("1000.written-by-another-process");

    let token = zoho
        .manager
        .access_token_for(&login.owner())
        .await
        .expect("a token");

    assert_eq!(token.access_token, "1000.written-by-another-process");
    let row = inner.find_token_by_id(&login.token_id).unwrap().unwrap();
    assert_eq!(
        row.access_token.as_deref(),
        Some("1000.written-by-another-process"),
        "the other writer's token is not overwritten"
    );
    assert_eq!(zoho.counter("refreshes").await, 1);
}

#[tokio::test]
async fn a_dead_refresh_does_not_delete_a_row_replaced_meanwhile() {
    let inner: Arc<dyn TokenStore> = Arc::new(ListStore::new());
    let racing = Arc::new(RacingStore::new(Arc::clone(&inner)));
    let zoho = TestZoho::start_with_store(racing.clone()).await;
    let login = zoho.login(PRIYA).await;
    zoho.control("/_sandbox/revoke-refresh-tokens", json!({}))
        .await;
    zoho.expire_in_store(&login.token_id);
    racing.arm("1000.fresh-from-a-new-login");

    let outcome = zoho.manager.access_token_for(&login.owner()).await;

    let token = outcome.expect("the row written meanwhile is used");
    assert_eq!(token.access_token, "1000.fresh-from-a-new-login");
    assert!(inner.find_token_by_id(&login.token_id).unwrap().is_some());
}

#[tokio::test]
async fn a_token_deleted_by_an_administrator_is_not_stored() {
    let zoho = TestZoho::start().await;
    let login = zoho.login(PRIYA).await;

    zoho.manager
        .disconnect(&login.owner())
        .await
        .expect("deleted");

    let outcome = zoho.manager.access_token_for(&login.owner()).await;
    assert!(matches!(outcome, Err(TokenError::NotStored)), "{outcome:?}");
}

#[tokio::test]
async fn a_token_id_reused_by_another_user_is_not_stored_for_the_first_and_not_disconnected_by_them()
 {
    let zoho = TestZoho::start().await;
    let priya = zoho.login(PRIYA).await;
    zoho.manager
        .disconnect(&priya.owner())
        .await
        .expect("deleted");
    let sofia = zoho.login(SOFIA).await;
    assert_eq!(sofia.token_id, priya.token_id, "the store reuses the id");
    let sofia_row = zoho.stored(&sofia.token_id).expect("stored");
    let revocations = zoho.counter("revocations").await;

    let read = zoho.manager.access_token_for(&priya.owner()).await;
    let called = zoho
        .manager
        .call(&priya.owner(), |_| async { Ok::<_, CrmError>(()) })
        .await;
    zoho.expire_in_store(&sofia.token_id);
    let refreshed = zoho.manager.access_token_for(&priya.owner()).await;
    zoho.manager
        .disconnect(&priya.owner())
        .await
        .expect("nothing of Priya's to disconnect");

    assert!(matches!(read, Err(TokenError::NotStored)), "{read:?}");
    assert!(matches!(called, Err(TokenError::NotStored)), "{called:?}");
    assert!(
        matches!(refreshed, Err(TokenError::NotStored)),
        "{refreshed:?}"
    );
    let row = zoho.stored(&sofia.token_id).expect("Sofia's row stays");
    assert_eq!(row.user_name, sofia_row.user_name);
    assert_eq!(row.refresh_token, sofia_row.refresh_token);
    assert_eq!(
        zoho.counter("revocations").await,
        revocations,
        "Sofia's token is not revoked"
    );
}

#[tokio::test]
async fn a_stored_api_domain_that_is_not_zoho_is_never_called() {
    let zoho = TestZoho::start().await;
    let login = zoho.login(PRIYA).await;
    let mut row = zoho.stored(&login.token_id).unwrap();
    row.api_domain = Some("https://evil.example".to_owned());
    zoho.store.save_token(&mut row).unwrap();

    let outcome = zoho.manager.access_token_for(&login.owner()).await;

    assert!(
        matches!(outcome, Err(TokenError::Protocol(_))),
        "{outcome:?}"
    );
}

// ---------------------------------------------------------------------------------------------------------
// Disconnect and central revocation

#[tokio::test]
async fn disconnect_revokes_at_zoho_and_deletes_the_row() {
    let zoho = TestZoho::start().await;
    let login = zoho.login(PRIYA).await;
    let refresh = zoho
        .stored(&login.token_id)
        .and_then(|t| t.refresh_token)
        .unwrap();

    zoho.manager
        .disconnect(&login.owner())
        .await
        .expect("disconnected");

    assert_eq!(zoho.counter("revocations").await, 1);
    assert!(zoho.rows().is_empty());
    let reuse = zoho.manager.accounts().refresh(&zoho.url, &refresh).await;
    assert!(matches!(reuse, Err(AccountsError::Dead)), "{reuse:?}");
}

#[tokio::test]
async fn disconnect_of_a_token_zoho_already_forgot_still_deletes_the_row() {
    let zoho = TestZoho::start().await;
    let login = zoho.login(PRIYA).await;
    zoho.control("/_sandbox/revoke-refresh-tokens", json!({}))
        .await;

    zoho.manager
        .disconnect(&login.owner())
        .await
        .expect("disconnected");

    assert!(zoho.rows().is_empty());
}

#[tokio::test]
async fn disconnect_when_zoho_is_unreachable_still_disconnects_here() {
    let zoho = TestZoho::start().await;
    let login = zoho.login(PRIYA).await;
    let impatient = manager_with_timeout(
        &zoho.url,
        Arc::clone(&zoho.store),
        CLIENT_SECRET,
        Duration::from_millis(300),
    );
    zoho.inject(json!({"target": "token", "delay_ms": 3000, "count": 1}))
        .await;

    impatient
        .disconnect(&login.owner())
        .await
        .expect("disconnected here");

    assert!(zoho.rows().is_empty());
}

#[tokio::test]
async fn tokens_and_delete_tokens_pass_through_to_the_store() {
    let zoho = TestZoho::start().await;
    zoho.login(PRIYA).await;
    zoho.login(ARJUN).await;

    let tokens = zoho.manager.tokens().await.expect("listed");
    assert_eq!(tokens.len(), 2);
    zoho.manager.delete_tokens().await.expect("deleted");

    assert!(zoho.manager.tokens().await.expect("listed").is_empty());
}

// ---------------------------------------------------------------------------------------------------------
// CRM client

async fn priya_auth(zoho: &TestZoho) -> (Url, String) {
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
    let crm = zoho.manager.crm();

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
    let crm = zoho.manager.crm();
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
    let crm = zoho.manager.crm();

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
        access_token: "1000.not-a-token",
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

    let outcome = zoho
        .manager
        .crm()
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
    let crm = zoho.manager.crm();

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

    let results = zoho
        .manager
        .crm()
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
    let read = zoho
        .manager
        .crm()
        .record(auth, "Leads", id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read["Last_Name"], "<script>alert(1)</script>");
    let only_bad = zoho
        .manager
        .crm()
        .create_records(auth, "Leads", &[Record::new()])
        .await
        .expect("per-record answer even when all fail");
    assert!(matches!(&only_bad[0], CreateResult::Failed { .. }));
}

// ---------------------------------------------------------------------------------------------------------
// A store that lets another writer in at the worst moment

/// Wraps a store; when armed, the next compare-and-set or compare-and-delete first lets "another process"
/// write a fresh access token to the row, exactly between the manager's read and its write.
struct RacingStore {
    inner: Arc<dyn TokenStore>,
    armed: std::sync::Mutex<Option<String>>,
}

impl RacingStore {
    fn new(inner: Arc<dyn TokenStore>) -> Self {
        Self {
            inner,
            armed: std::sync::Mutex::new(None),
        }
    }

    fn arm(&self, access_token: &str) {
        *self.armed.lock().unwrap() = Some(access_token.to_owned());
    }

    fn let_the_other_writer_in(&self, id: &str) -> Result<(), StoreError> {
        let Some(access_token) = self.armed.lock().unwrap().take() else {
            return Ok(());
        };
        if let Some(mut row) = self.inner.find_token_by_id(id)? {
            row.access_token = Some(access_token);
            row.expiry_time = Some(now_millis() + 3_600_000);
            self.inner.save_token(&mut row)?;
        }
        Ok(())
    }
}

impl TokenStore for RacingStore {
    fn find_token(&self, partial: &OAuthToken) -> Result<Option<OAuthToken>, StoreError> {
        self.inner.find_token(partial)
    }
    fn save_token(&self, token: &mut OAuthToken) -> Result<(), StoreError> {
        self.inner.save_token(token)
    }
    fn delete_token(&self, id: &str) -> Result<(), StoreError> {
        self.inner.delete_token(id)
    }
    fn get_tokens(&self) -> Result<Vec<OAuthToken>, StoreError> {
        self.inner.get_tokens()
    }
    fn delete_tokens(&self) -> Result<(), StoreError> {
        self.inner.delete_tokens()
    }
    fn find_token_by_id(&self, id: &str) -> Result<Option<OAuthToken>, StoreError> {
        self.inner.find_token_by_id(id)
    }
    fn compare_and_set_access_token(
        &self,
        id: &str,
        expected_access_token: Option<&str>,
        access_token: &str,
        expiry_time: i64,
    ) -> Result<bool, StoreError> {
        self.let_the_other_writer_in(id)?;
        self.inner.compare_and_set_access_token(
            id,
            expected_access_token,
            access_token,
            expiry_time,
        )
    }
    fn delete_token_if_unchanged(
        &self,
        id: &str,
        expected_access_token: Option<&str>,
    ) -> Result<bool, StoreError> {
        self.let_the_other_writer_in(id)?;
        self.inner
            .delete_token_if_unchanged(id, expected_access_token)
    }
}

// ---------------------------------------------------------------------------------------------------------
// Sharing a flight's outcome, stores shared between processes, and logs

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_waiting_behind_a_throttled_refresh_are_answered_throttled_without_asking_again() {
    let zoho = TestZoho::start().await;
    let login = zoho.login(PRIYA).await;
    zoho.expire_in_store(&login.token_id);
    // Held up for a moment, so that every request is waiting behind it.
    zoho.inject(json!({"target": "token", "error": "Access Denied", "delay_ms": 500, "count": 1}))
        .await;

    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let manager = Arc::clone(&zoho.manager);
            let owner = login.owner();
            tokio::spawn(async move { manager.access_token_for(&owner).await })
        })
        .collect();
    for task in tasks {
        let outcome = task.await.expect("task");
        assert!(matches!(outcome, Err(TokenError::Throttled)), "{outcome:?}");
    }

    let counters = zoho.counters().await;
    assert_eq!(counters["throttled_refreshes"], 1);
    assert_eq!(counters["refreshes"], 0);
    assert!(zoho.stored(&login.token_id).is_some());
}

fn sqlite_file() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("zohooauth.db");
    (dir, path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_requests_on_sqlite_make_one_refresh() {
    let (_dir, path) = sqlite_file();
    let store: Arc<dyn TokenStore> = Arc::new(SqliteStore::open(&path).expect("open"));
    let zoho = TestZoho::start_with_store(store).await;
    let login = zoho.login(ARJUN).await;
    zoho.expire_in_store(&login.token_id);

    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let manager = Arc::clone(&zoho.manager);
            let owner = login.owner();
            tokio::spawn(async move { manager.access_token_for(&owner).await })
        })
        .collect();
    for task in tasks {
        task.await.expect("task").expect("a token");
    }

    assert_eq!(zoho.counter("refreshes").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_portals_on_one_sqlite_file_never_overwrite_each_others_refresh() {
    let (_dir, path) = sqlite_file();
    let first_store: Arc<dyn TokenStore> = Arc::new(SqliteStore::open(&path).expect("open"));
    let zoho = TestZoho::start_with_store(first_store).await;
    let login = zoho.login(PRIYA).await;
    zoho.expire_in_store(&login.token_id);
    // A second process: its own connection to the same file, its own manager.
    let second_store: Arc<dyn TokenStore> = Arc::new(SqliteStore::open(&path).expect("open"));
    let second = Arc::new(manager_for(&zoho.url, second_store, CLIENT_SECRET));

    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let manager = if i % 2 == 0 {
                Arc::clone(&zoho.manager)
            } else {
                Arc::clone(&second)
            };
            let owner = login.owner();
            tokio::spawn(async move { manager.access_token_for(&owner).await })
        })
        .collect();
    let mut handed_out = Vec::new();
    for task in tasks {
        handed_out.push(task.await.expect("task").expect("a token").access_token);
    }

    // Each process refreshes at most once; whoever lost the compare-and-set used the winner's token.
    let stored = zoho
        .stored(&login.token_id)
        .and_then(|t| t.access_token)
        .unwrap();
    assert!(
        handed_out.iter().all(|t| *t == stored),
        "one token for everyone"
    );
    assert!(zoho.counter("refreshes").await <= 2);
}

#[tokio::test]
async fn login_with_sqlite_survives_a_reopen() {
    let (_dir, path) = sqlite_file();
    let store: Arc<dyn TokenStore> = Arc::new(SqliteStore::open(&path).expect("open"));
    let zoho = TestZoho::start_with_store(store).await;
    let login = zoho.login(LIAM).await;

    let reopened: Arc<dyn TokenStore> = Arc::new(SqliteStore::open(&path).expect("reopen"));
    let restarted = manager_for(&zoho.url, reopened, CLIENT_SECRET);
    let token = restarted
        .access_token_for(&login.owner())
        .await
        .expect("a token");

    let user = restarted
        .crm()
        .current_user(CrmAuth {
            api_domain: &token.api_domain,
            access_token: &token.access_token,
        })
        .await
        .expect("the token works after a restart");
    assert_eq!(user.email, LIAM);
    assert_eq!(zoho.counter("refreshes").await, 0);
}

#[tokio::test]
async fn no_token_code_or_secret_reaches_the_log() {
    let log = global_log_capture();
    let zoho = TestZoho::start().await;
    let mut secrets = vec![CLIENT_SECRET.to_owned()];

    let callback = zoho.authorize(PRIYA, AuthRequest::default()).await;
    secrets.push(callback.code.clone());
    secrets.push(callback.verifier.clone());
    let accounts = zoho
        .manager
        .hosts()
        .accounts_server(&callback.accounts_server)
        .unwrap();
    let LoginOutcome::LoggedIn(login) = zoho
        .manager
        .login(&accounts, &callback.code, &callback.verifier)
        .await
        .expect("login")
    else {
        panic!("logged in");
    };
    let row = zoho.stored(&login.token_id).unwrap();
    secrets.extend(row.access_token.clone());
    secrets.extend(row.refresh_token.clone());
    zoho.expire_in_store(&login.token_id);
    let refreshed = zoho.manager.access_token_for(&login.owner()).await.unwrap();
    secrets.push(refreshed.access_token.clone());
    zoho.control("/_sandbox/expire-access-tokens", json!({}))
        .await;
    let crm = zoho.manager.crm();
    let retried = zoho
        .manager
        .call(&login.owner(), |t| async move {
            let auth = CrmAuth {
                api_domain: &t.api_domain,
                access_token: &t.access_token,
            };
            crm.current_user(auth).await
        })
        .await;
    assert!(retried.is_ok(), "{retried:?}");
    secrets.extend(zoho.stored(&login.token_id).unwrap().access_token);
    zoho.inject(json!({"target": "token", "error": "invalid_client", "count": 1}))
        .await;
    zoho.expire_in_store(&login.token_id);
    let misconfigured = zoho.manager.access_token_for(&login.owner()).await;
    assert!(matches!(misconfigured, Err(TokenError::Misconfigured(_))));
    zoho.manager
        .disconnect(&login.owner())
        .await
        .expect("disconnected");

    let written = log.text();
    assert!(
        written.contains("refreshed"),
        "the log is captured:\n{written}"
    );
    assert!(
        written.contains("MISCONFIGURED"),
        "a loud line for a misconfiguration"
    );
    for secret in &secrets {
        assert!(
            !written.contains(secret.as_str()),
            "a secret reached the log:\n{written}"
        );
    }
}

/// Captures the whole test binary's log from the first call on. Global rather than `set_default`: a
/// thread-local subscriber races with other tests caching "nobody listens" for the same callsites, and then
/// misses events. Other tests' lines land here too, which only widens what the secret check reads.
fn global_log_capture() -> LogCapture {
    static CAPTURE: std::sync::OnceLock<LogCapture> = std::sync::OnceLock::new();
    CAPTURE
        .get_or_init(|| {
            let log = LogCapture::default();
            let subscriber = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(
                    "zylker_portal::tokens=trace,zylker_portal::zoho=trace,reqwest=trace,hyper=trace,hyper_util=trace",
                ))
                .with_writer(log.clone())
                .with_ansi(false)
                .finish();
            tracing::subscriber::set_global_default(subscriber)
                .expect("no other global subscriber in this test binary");
            log
        })
        .clone()
}

/// A `MakeWriter` that keeps everything written, for reading back.
#[derive(Clone, Default)]
struct LogCapture(Arc<std::sync::Mutex<Vec<u8>>>);

impl LogCapture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogCapture {
    type Writer = LogCapture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn a_login_whose_identity_call_fails_stores_nothing_and_gives_back_the_refresh_token() {
    let zoho = TestZoho::start().await;
    zoho.inject(json!({"target": "crm", "status": 500, "count": 1}))
        .await;

    let outcome = zoho.login_outcome(PRIYA, AuthRequest::default()).await;

    assert!(
        matches!(outcome, Err(TokenError::Crm(CrmError::Server(500)))),
        "{outcome:?}"
    );
    assert!(zoho.rows().is_empty());
    assert_eq!(
        zoho.counter("revocations").await,
        1,
        "the unused refresh token is revoked"
    );
}

#[tokio::test]
async fn login_refresh_and_disconnect_work_on_every_store_spec() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let specs = [
        "list".to_owned(),
        "sqlite::memory:".to_owned(),
        format!("sqlite:{}", dir.path().join("tokens.db").display()),
        format!("file:{}", dir.path().join("tokens.csv").display()),
    ];
    for spec in specs {
        let parsed: StoreSpec = spec.parse().expect("a store spec");
        let store = open_store(&parsed).expect("the store opens");
        let zoho = TestZoho::start_with_store(store).await;

        let login = zoho.login(LIAM).await;
        zoho.expire_in_store(&login.token_id);
        let token = zoho.manager.access_token_for(&login.owner()).await;
        let again = zoho.login(LIAM).await;
        zoho.manager
            .disconnect(&login.owner())
            .await
            .expect("disconnected");

        assert!(token.is_ok(), "{spec}: {token:?}");
        assert_eq!(
            again.token_id, login.token_id,
            "{spec}: upsert by user_name"
        );
        assert_eq!(zoho.counter("refreshes").await, 1, "{spec}");
        assert!(zoho.rows().is_empty(), "{spec}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_access_lifetime_shorter_than_the_leeway_does_not_refresh_on_every_request() {
    // 30-second tokens with a 60-second leeway: by the letter, every token is "about to expire" from birth.
    let zoho = TestZoho::start_with(Arc::new(ListStore::new()), Duration::from_secs(30)).await;
    let login = zoho.login(PRIYA).await;

    zoho.manager
        .access_token_for(&login.owner())
        .await
        .expect("a token");
    assert_eq!(
        zoho.counter("refreshes").await,
        0,
        "a newborn token is used"
    );
    zoho.expire_in_store(&login.token_id);
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let manager = Arc::clone(&zoho.manager);
            let owner = login.owner();
            tokio::spawn(async move { manager.access_token_for(&owner).await })
        })
        .collect();
    for task in tasks {
        task.await.expect("task").expect("a token");
    }
    zoho.manager
        .access_token_for(&login.owner())
        .await
        .expect("a token");

    assert_eq!(zoho.counter("refreshes").await, 1);
}

#[tokio::test]
async fn a_code_older_than_two_minutes_is_dead_and_stores_nothing() {
    let zoho = TestZoho::start().await;
    let callback = zoho.authorize(PRIYA, AuthRequest::default()).await;
    let accounts = zoho
        .manager
        .hosts()
        .accounts_server(&callback.accounts_server)
        .unwrap();
    zoho.control("/_sandbox/advance-clock", json!({"seconds": 180}))
        .await;

    let outcome = zoho
        .manager
        .login(&accounts, &callback.code, &callback.verifier)
        .await;

    assert!(matches!(outcome, Err(TokenError::Dead)), "{outcome:?}");
    assert!(zoho.rows().is_empty());
}

#[tokio::test]
async fn zohos_own_limit_of_ten_refreshes_per_ten_minutes_is_throttled_and_keeps_the_token() {
    let zoho = TestZoho::start().await;
    let login = zoho.login(PRIYA).await;
    let refresh_token = zoho
        .stored(&login.token_id)
        .and_then(|t| t.refresh_token)
        .unwrap();
    for _ in 0..10 {
        zoho.manager
            .accounts()
            .refresh(&zoho.url, &refresh_token)
            .await
            .expect("within the limit");
    }
    zoho.expire_in_store(&login.token_id);
    let before = zoho.stored(&login.token_id).unwrap();

    let outcome = zoho.manager.access_token_for(&login.owner()).await;

    assert!(matches!(outcome, Err(TokenError::Throttled)), "{outcome:?}");
    assert_eq!(zoho.stored(&login.token_id), Some(before));
}

/// A store whose disk is full: every save fails, everything else works.
struct FullDiskStore(ListStore);

impl TokenStore for FullDiskStore {
    fn find_token(&self, partial: &OAuthToken) -> Result<Option<OAuthToken>, StoreError> {
        self.0.find_token(partial)
    }
    fn save_token(&self, _token: &mut OAuthToken) -> Result<(), StoreError> {
        Err(StoreError::backend(
            "save a token",
            "no space left on device",
        ))
    }
    fn delete_token(&self, id: &str) -> Result<(), StoreError> {
        self.0.delete_token(id)
    }
    fn get_tokens(&self) -> Result<Vec<OAuthToken>, StoreError> {
        self.0.get_tokens()
    }
    fn delete_tokens(&self) -> Result<(), StoreError> {
        self.0.delete_tokens()
    }
    fn find_token_by_id(&self, id: &str) -> Result<Option<OAuthToken>, StoreError> {
        self.0.find_token_by_id(id)
    }
}

#[tokio::test]
async fn a_login_the_store_cannot_save_gives_the_new_refresh_token_back_to_zoho() {
    let zoho = TestZoho::start_with_store(Arc::new(FullDiskStore(ListStore::new()))).await;

    let outcome = zoho.login_outcome(PRIYA, AuthRequest::default()).await;

    assert!(matches!(outcome, Err(TokenError::Store(_))), "{outcome:?}");
    assert_eq!(zoho.counter("revocations").await, 1);
}
