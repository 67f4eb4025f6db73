//! Login: the code exchange, the row it stores (upserted by `user_name`), and the failures that store nothing.

use std::sync::Arc;

use serde_json::json;
use url::Url;
use zylker_portal::tokens::manager::{LoginOutcome, TokenError};
use zylker_portal::tokens::now_millis;
use zylker_portal::zoho::AccountsError;

use crate::support::*;

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
    assert_eq!(
        row.client_secret.as_ref().map(Secret::expose_secret),
        Some(CLIENT_SECRET)
    );
    assert_eq!(row.redirect_url.as_deref(), Some(REDIRECT_URL));
    assert_eq!(
        row.api_domain.as_deref(),
        Some(&*zoho.url.origin().ascii_serialization())
    );
    assert!(
        row.access_token
            .as_ref()
            .map(Secret::expose_secret)
            .is_some_and(|t| !t.is_empty())
    );
    assert!(
        row.refresh_token
            .as_ref()
            .map(Secret::expose_secret)
            .is_some_and(|t| !t.is_empty())
    );
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
    let revoked_again = accounts_client().revoke(&zoho.url, &old_refresh).await;
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
    let accounts = wrong.accounts_server(&callback.accounts_server).unwrap();

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

    let outcome = manager
        .login(
            &nowhere,
            &Secret::from("1000.code"),
            &Secret::from("verifier"),
        )
        .await;

    assert!(
        matches!(outcome, Err(TokenError::Unreachable(_))),
        "{outcome:?}"
    );
}
