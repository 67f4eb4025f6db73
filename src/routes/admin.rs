//! `/admin/tokens`: central revocation for users whose CRM profile is Administrator; token values masked.

use actix_session::Session;
use actix_web::{HttpResponse, web};
use askama::Template;
use serde::de::IgnoredAny;

use super::session::{self, CsrfForm, FlashKind, SessionUser};
use super::{AppError, Layout, render, see_other};
use crate::app::PortalState;
use crate::tokens::{OAuthToken, now_millis};

/// Characters of a token value the page shows before the ellipsis.
const SHOWN_PREFIX: usize = 8;

/// A token value as the administrators' page shows it: a short prefix and an ellipsis.
pub fn mask(value: Option<&str>) -> String {
    match value {
        None | Some("") => "—".into(),
        Some(value) => {
            let prefix: String = value.chars().take(SHOWN_PREFIX).collect();
            format!("{prefix}…")
        }
    }
}

/// One stored token, masked.
pub struct TokenRow {
    pub id: String,
    pub user_name: String,
    pub access_token: String,
    pub refresh_token: String,
    pub expiry: String,
    pub api_domain: String,
    pub is_current: bool,
}

fn describe_expiry(expiry_time: Option<i64>) -> String {
    let Some(expiry) = expiry_time else {
        return "unknown".into();
    };
    let seconds = (expiry - now_millis()) / 1000;
    match seconds {
        s if s <= 0 => "expired (refreshes on next use)".into(),
        s if s < 120 => format!("in {s} s"),
        s => format!("in {} min", s / 60),
    }
}

fn token_row(token: OAuthToken, current_token_id: &str) -> TokenRow {
    let id = token.id.clone().unwrap_or_default();
    TokenRow {
        is_current: id == current_token_id,
        access_token: mask(token.access_token.as_deref()),
        refresh_token: mask(token.refresh_token.as_deref()),
        expiry: describe_expiry(token.expiry_time),
        api_domain: token.api_domain.unwrap_or_default(),
        user_name: token.user_name.unwrap_or_default(),
        id,
    }
}

/// The stored tokens.
#[derive(Template)]
#[template(path = "admin_tokens.html")]
pub struct AdminTokensPage {
    pub layout: Layout,
    pub tokens: Vec<TokenRow>,
}

/// The signed-in administrator, whose own token must still be live: an administrator whose token was
/// deleted (by another administrator, a disconnect elsewhere) keeps no power here.
async fn require_admin(state: &PortalState, session: &Session) -> Result<SessionUser, AppError> {
    let user = session::require_user(session)?;
    if !user.is_admin() {
        return Err(AppError::AdminsOnly);
    }
    state
        .manager
        .access_token_for(&user.token_id)
        .await
        .map_err(|error| AppError::from_token(error, None))?;
    Ok(user)
}

/// `GET /admin/tokens`.
pub async fn tokens(
    state: web::Data<PortalState>,
    session: Session,
) -> Result<HttpResponse, AppError> {
    let user = require_admin(&state, &session).await?;
    let mut tokens: Vec<TokenRow> = state
        .manager
        .tokens()
        .await
        .map_err(|error| AppError::from_token(error, None))?
        .into_iter()
        .map(|token| token_row(token, &user.token_id))
        .collect();
    tokens.sort_by(|a, b| a.user_name.cmp(&b.user_name));
    render(&AdminTokensPage {
        layout: Layout::new(&session, "Stored tokens"),
        tokens,
    })
}

/// `POST /admin/tokens/{id}/delete`.
pub async fn delete_one(
    state: web::Data<PortalState>,
    session: Session,
    id: web::Path<String>,
    _form: CsrfForm<IgnoredAny>,
) -> Result<HttpResponse, AppError> {
    let user = require_admin(&state, &session).await?;
    let id = id.into_inner();
    state
        .manager
        .delete_token(&id)
        .await
        .map_err(|error| AppError::from_token(error, None))?;
    state.forget_token(&id);
    tracing::info!(token_id = %id, by = %user.token_id, "administrator deleted a token");
    if id == user.token_id {
        session::sign_out(&session);
        session::flash(
            &session,
            FlashKind::Info,
            "You deleted your own token, so you are signed out. Log in again to continue.",
        );
        return Ok(see_other("/"));
    }
    session::flash(
        &session,
        FlashKind::Success,
        "The token is deleted; its user will have to log in again.",
    );
    Ok(see_other("/admin/tokens"))
}

/// `POST /admin/tokens/delete-all`.
pub async fn delete_all(
    state: web::Data<PortalState>,
    session: Session,
    _form: CsrfForm<IgnoredAny>,
) -> Result<HttpResponse, AppError> {
    let user = require_admin(&state, &session).await?;
    state
        .manager
        .delete_tokens()
        .await
        .map_err(|error| AppError::from_token(error, None))?;
    state.fields_cache.clear();
    tracing::info!(by = %user.token_id, "administrator deleted every token");
    session::sign_out(&session);
    session::flash(
        &session,
        FlashKind::Info,
        "Every stored token is deleted, yours included: everyone logs in again.",
    );
    Ok(see_other("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_values_are_masked_to_a_short_prefix() {
        assert_eq!(mask(Some("1000.abcdef0123456789")), "1000.abc…");
        assert_eq!(mask(Some("abc")), "abc…");
        assert_eq!(mask(None), "—");
    }
}
