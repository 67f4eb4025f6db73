//! Access tokens and refresh: one refresh however many requests need it, and each of Zoho's refresh errors.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use zylker_portal::tokens::manager::TokenError;
use zylker_portal::tokens::{Disconnected, ListStore, TokenStore, now_millis};
use zylker_portal::zoho::CrmError;
use zylker_portal::zoho::crm::CrmAuth;

use crate::racing_store::RacingStore;
use crate::support::*;

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
        row.access_token.as_ref().map(Secret::expose_secret),
        Some(first.access_token.expose_secret())
    );
    assert!(row.expiry_time.unwrap() > now_millis() + 3_000_000);
    assert_eq!(
        row.refresh_token, old.refresh_token,
        "a refresh keeps the refresh token"
    );
    let crm = &crm_client();
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
            async move {
                let auth = CrmAuth {
                    api_domain: &t.api_domain,
                    access_token: &t.access_token,
                };
                crm_client()
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
            let owner = login.owner();
            let manager = Arc::clone(&zoho.manager);
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
            let owner = login.owner();
            let manager = Arc::clone(&zoho.manager);
            tokio::spawn(async move {
                let crm = &crm_client();
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
        .call(&login.owner(), |t| async move {
            let auth = CrmAuth {
                api_domain: &t.api_domain,
                access_token: &t.access_token,
            };
            crm_client().current_user(auth).await
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

    assert_eq!(
        token.access_token.expose_secret(),
        "1000.written-by-another-process"
    );
    let row = inner.find_token_by_id(&login.token_id).unwrap().unwrap();
    assert_eq!(
        row.access_token.as_ref().map(Secret::expose_secret),
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
    assert_eq!(
        token.access_token.expose_secret(),
        "1000.fresh-from-a-new-login"
    );
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
    let disconnected = zoho
        .manager
        .disconnect(&priya.owner())
        .await
        .expect("nothing of Priya's to disconnect");

    assert_eq!(disconnected, Disconnected::AlreadyGone);
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
        matches!(&outcome, Err(TokenError::ForeignApiDomain { stored }) if stored == "https://evil.example"),
        "{outcome:?}"
    );
}
