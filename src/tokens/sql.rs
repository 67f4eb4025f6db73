//! What the SQL stores share: the SDK's ten columns (all three), and for the database stores the columns as
//! text, the portal's side tables, and how an operation survives connections that the server dropped.

use std::future::Future;
use std::time::Duration;

use super::{OAuthToken, Secret, StoreError, StoreFuture, TokenKey, exposed, parse_expiry_time};

/// The SDK's ten columns, in its order (the seed's SQLite table has the same: "the seed" is `CustomStoreSQLite`,
/// the sample store of Zoho's Kaizen #192 article, "Custom token persistence", where the `TokenStore` contract
/// and the SQLite schema come from); every `SELECT` of the stores reads them in this order.
pub(crate) const COLUMNS: [&str; 10] = [
    "id",
    "user_name",
    "client_id",
    "client_secret",
    "refresh_token",
    "access_token",
    "grant_token",
    "expiry_time",
    "redirect_url",
    "api_domain",
];

/// The portal's own table that remembers in which order it inserted rows, so that "the oldest matching row"
/// means what it means in every other store (SQL tables have no insertion order, and the SDK's ten columns
/// none to keep one in). One row per token row the portal inserted: `(token_table, token_id, seq)`, a new
/// `seq` at each insert; rows written by others (the SDK) have none and count as older than the portal's.
pub(crate) const ORDER_TABLE: &str = "portal_token_order";

/// The token's ten values as the SDK's table holds them: text (`expiry_time` as decimal milliseconds), and
/// `user_name` as `''` when absent, since Zoho's DDL declares it `NOT NULL`.
pub(crate) fn columns_of(token: &OAuthToken) -> [Option<String>; 10] {
    [
        token.id.clone(),
        Some(token.user_name.clone().unwrap_or_default()),
        token.client_id.clone(),
        exposed(&token.client_secret).map(str::to_owned),
        exposed(&token.refresh_token).map(str::to_owned),
        exposed(&token.access_token).map(str::to_owned),
        exposed(&token.grant_token).map(str::to_owned),
        token.expiry_time.map(|t| t.to_string()),
        token.redirect_url.clone(),
        token.api_domain.clone(),
    ]
}

/// The token a row of the ten columns holds: an empty `user_name` reads as none (the SDK never writes one,
/// and the store writes one only for a token without a user), an `expiry_time` that is not a number as unknown.
pub(crate) fn token_from(columns: [Option<String>; 10]) -> OAuthToken {
    let [
        id,
        user_name,
        client_id,
        client_secret,
        refresh_token,
        access_token,
        grant_token,
        expiry_time,
        redirect_url,
        api_domain,
    ] = columns;
    OAuthToken {
        id,
        user_name: user_name.filter(|name| !name.is_empty()),
        client_id,
        client_secret: client_secret.map(Secret::from),
        refresh_token: refresh_token.map(Secret::from),
        access_token: access_token.map(Secret::from),
        grant_token: grant_token.map(Secret::from),
        expiry_time: expiry_time.as_deref().and_then(parse_expiry_time),
        redirect_url,
        api_domain,
    }
}

/// The column a key matches on, and the value: chosen from this fixed list, never from input.
pub(crate) fn key_column(key: TokenKey<'_>) -> (usize, &str) {
    match key {
        TokenKey::UserName(v) => (0, v),
        TokenKey::AccessToken(v) => (1, v),
        TokenKey::GrantToken(v) => (2, v),
        TokenKey::RefreshToken(v) => (3, v),
    }
}

/// The key columns, in [`key_column`]'s numbering.
pub(crate) const KEY_COLUMNS: [&str; 4] =
    ["user_name", "access_token", "grant_token", "refresh_token"];

/// How many times an operation is tried on a fresh connection after the server dropped the one it ran on.
///
/// After a database restart every pooled connection is dead, and a pool only learns it by using them; one try
/// per pooled connection, and one more for a new one, gets the operation through. Each operation of the
/// stores can run again safely: an upsert, a delete and a lease renewal are idempotent, and a compare-and-set
/// that ran before the connection broke only answers `false` the second time (the caller then reads the row).
pub(crate) const fn reconnect_attempts(pool_size: u32) -> usize {
    pool_size as usize + 1
}

/// A database store's asynchronous read (`TokenStore::find_token_by_id_async`): `None` off any runtime, whose
/// tasks would drive its connections (the caller then reads the usual way); else `read`, failing with an error
/// that names `context` when it takes longer than `limit`, as a pooled operation waits at most that long.
pub(crate) fn read_on_runtime<'a, T: 'a>(
    context: impl FnOnce() -> String + Send + 'a,
    limit: Duration,
    read: impl Future<Output = Result<T, StoreError>> + Send + 'a,
) -> Option<StoreFuture<'a, T>> {
    tokio::runtime::Handle::try_current().ok()?;
    Some(Box::pin(async move {
        match tokio::time::timeout(limit, read).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::backend(
                context(),
                "the database did not answer in time",
            )),
        }
    }))
}
