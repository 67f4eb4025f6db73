//! Disconnect and central revocation: revoke at Zoho, delete here, whatever Zoho answers.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use zylker_portal::zoho::AccountsError;

use crate::support::*;

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
    let reuse = accounts_client().refresh(&zoho.url, &refresh).await;
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
