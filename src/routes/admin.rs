//! `/admin/tokens`: central revocation for users whose CRM profile is Administrator; token values masked; and
//! this portal's Zoho usage since it started.

use std::time::{Duration, Instant};

use actix_web::{HttpResponse, web};
use askama::Template;
use serde::de::IgnoredAny;

use super::session::{self, ADMIN_PROFILE, CsrfForm, FlashKind, SignedIn};
use super::{AppError, Layout, render, see_other};
use crate::secret::Secret;
use crate::state::PortalState;
use crate::telemetry::Usage;
use crate::tokens::{
    Disconnected, OAuthToken, TokenOwner, describe_expiry, mask_secret, now_millis, relative_expiry,
};

/// How long a confirmation from Zoho that the user is an Administrator is trusted: one CRM call per minute
/// per administrator at most, and a demotion takes effect within a minute.
const ADMIN_CHECK_TTL: Duration = Duration::from_secs(60);

/// Above this many remembered confirmations, expired ones are swept.
const ADMIN_CHECKS_MAX: usize = 1024;

/// A token value as the administrators' page shows it (see [`mask_secret`]); a dash when there is none.
pub fn mask(value: Option<&str>) -> String {
    match value {
        None | Some("") => "—".into(),
        Some(value) => mask_secret(value),
    }
}

/// One stored token, masked.
pub struct TokenRow {
    pub id: String,
    pub user_name: String,
    pub access_token: String,
    pub refresh_token: String,
    /// The exact expiry (RFC 3339), for the tooltip.
    pub expiry: String,
    /// The expiry as people read it ("in 59 min", "expired 2 h ago").
    pub expires: String,
    pub api_domain: String,
    pub is_current: bool,
}

fn token_row(token: OAuthToken, current: &TokenOwner) -> TokenRow {
    let id = token.id.clone().unwrap_or_default();
    TokenRow {
        is_current: current.owns(&token),
        access_token: mask(token.access_token.as_ref().map(Secret::expose_secret)),
        refresh_token: mask(token.refresh_token.as_ref().map(Secret::expose_secret)),
        expiry: describe_expiry(token.expiry_time),
        expires: relative_expiry(token.expiry_time, now_millis()),
        api_domain: token.api_domain.unwrap_or_default(),
        user_name: token.user_name.unwrap_or_default(),
        id,
    }
}

/// The stored tokens of the administrator's organization.
#[derive(Template)]
#[template(path = "admin_tokens.html")]
pub struct AdminTokensPage {
    pub layout: Layout,
    pub tokens: Vec<TokenRow>,
    pub usage: UsageView,
}

/// This portal's use of Zoho since it started, as the page shows it.
pub struct UsageView {
    pub since: String,
    pub calls: u64,
    pub rate_limited: u64,
    pub refreshes: u64,
    pub queued: u64,
    pub queue_timeouts: u64,
    /// The average wait of the calls that waited for their turn.
    pub average_wait: String,
}

impl From<Usage> for UsageView {
    fn from(usage: Usage) -> Self {
        let average_wait = match u32::try_from(usage.queued) {
            Ok(0) | Err(_) => "—".to_owned(),
            Ok(queued) => format!("{} ms", (usage.queue_wait / queued).as_millis()),
        };
        UsageView {
            since: describe_duration(usage.since),
            calls: usage.calls,
            rate_limited: usage.rate_limited,
            refreshes: usage.refreshes,
            queued: usage.queued,
            queue_timeouts: usage.queue_timeouts,
            average_wait,
        }
    }
}

/// "45 s", "12 min", "5 h", "3 days": how long the portal has been running.
fn describe_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        0..120 => format!("{seconds} s"),
        120..7_200 => format!("{} min", seconds / 60),
        7_200..172_800 => format!("{} h", seconds / 3_600),
        _ => format!("{} days", seconds / 86_400),
    }
}

/// The signed-in administrator, confirmed with Zoho.
///
/// The session cookie lives 14 days and its profile is the one at login, so it is not trusted: Zoho's
/// `users?type=CurrentUser`, called with the session's own token (which must still be the session user's:
/// see [`TokenOwner`]), must say the profile is Administrator and the user is the session's. A confirmation
/// is kept for [`ADMIN_CHECK_TTL`]; an administrator whose token was deleted keeps no power here.
async fn require_admin(signed_in: &SignedIn) -> Result<(), AppError> {
    let (state, user, owner) = (&signed_in.state, &signed_in.user, &signed_in.owner);
    if !user.is_admin() {
        return Err(AppError::AdminsOnly);
    }
    let recently_confirmed = state
        .admin_checks
        .get(owner)
        .is_some_and(|checked| checked.elapsed() < ADMIN_CHECK_TTL);
    if recently_confirmed {
        // The profile was confirmed a moment ago; the token must still be the user's (a store read).
        state.manager.access_token_for(owner).await?;
        return Ok(());
    }
    let current = signed_in.crm().current_user().await?;
    let is_admin = current.email.eq_ignore_ascii_case(&user.email)
        && current.profile.as_ref().map(|p| p.name.as_str()) == Some(ADMIN_PROFILE);
    if !is_admin {
        state.admin_checks.remove(owner);
        tracing::warn!(token_id = %owner.token_id, "administrators' page refused: Zoho no longer confirms the Administrator profile");
        return Err(AppError::AdminsOnly);
    }
    if state.admin_checks.len() >= ADMIN_CHECKS_MAX {
        // Only administrators get here, so this is rare; dropping confirmations costs one CRM call each.
        state
            .admin_checks
            .retain(|_, checked| checked.elapsed() < ADMIN_CHECK_TTL);
    }
    state.admin_checks.insert(owner.clone(), Instant::now());
    Ok(())
}

/// Whether a stored token belongs to the administrator's organization (`user_name` is `email:org_id`).
fn in_org(token: &OAuthToken, org_id: &str) -> bool {
    token
        .user_name
        .as_deref()
        .and_then(|name| name.rsplit_once(':'))
        .is_some_and(|(_, org)| org == org_id)
}

/// The stored tokens of `org_id`'s users.
async fn org_tokens(state: &PortalState, org_id: &str) -> Result<Vec<OAuthToken>, AppError> {
    Ok(state
        .manager
        .tokens()
        .await?
        .into_iter()
        .filter(|token| in_org(token, org_id))
        .collect())
}

/// `GET /admin/tokens`: the tokens of the administrator's own organization only.
pub async fn tokens(signed_in: SignedIn) -> Result<HttpResponse, AppError> {
    require_admin(&signed_in).await?;
    let mut tokens: Vec<TokenRow> = org_tokens(&signed_in.state, &signed_in.user.org_id)
        .await?
        .into_iter()
        .map(|token| token_row(token, &signed_in.owner))
        .collect();
    tokens.sort_by(|a, b| a.user_name.cmp(&b.user_name));
    render(&AdminTokensPage {
        layout: signed_in.layout("Stored tokens").await,
        tokens,
        usage: signed_in.state.manager.telemetry().usage().into(),
    })
}

/// The delete form: the row's `user_name` as the page showed it, so that a row whose id was meanwhile
/// reused by another user's login is not deleted.
#[derive(serde::Deserialize)]
pub struct DeleteForm {
    user_name: String,
}

/// `POST /admin/tokens/{id}/delete`: revokes the token at Zoho and deletes it, when the row still belongs to
/// the posted user and that user is in the administrator's organization.
pub async fn delete_one(
    signed_in: SignedIn,
    id: web::Path<String>,
    form: CsrfForm<DeleteForm>,
) -> Result<HttpResponse, AppError> {
    require_admin(&signed_in).await?;
    let SignedIn {
        user,
        state,
        session,
        ..
    } = &signed_in;
    let target = TokenOwner {
        token_id: id.into_inner(),
        user_name: form.0.user_name,
    };
    let in_admins_org = target
        .user_name
        .rsplit_once(':')
        .is_some_and(|(_, org)| org == user.org_id);
    if !in_admins_org {
        // Another organization's row is none of this administrator's business; say nothing about it.
        return Err(AppError::NotFound);
    }
    let outcome = state.manager.disconnect(&target).await?;
    state.forget_token(&target.token_id);
    // Whether deleted here or gone already, the target's token is gone: so are its sign-ins, on every portal.
    session::end_sign_ins_of_token(&state.sign_ins, &target).await?;
    if outcome == Disconnected::AlreadyGone {
        // Already deleted (by another administrator, a disconnect, another process), or its id now names
        // another user's row, which stays: say so rather than claim a revocation that did not happen here.
        tracing::info!(token_id = %target.token_id, by = %user.token_id, "administrator's delete found no such token; nothing deleted");
        session::flash(
            session,
            FlashKind::Info,
            "Nothing to delete: the token was already gone.",
        );
        return Ok(see_other("/admin/tokens"));
    }
    tracing::info!(token_id = %target.token_id, by = %user.token_id, "administrator revoked and deleted a token");
    if target == user.owner() {
        session::sign_out(session, &state.sign_ins).await?;
        session::flash(
            session,
            FlashKind::Info,
            "You deleted your own token, so you are signed out. Log in again to continue.",
        );
        return Ok(see_other("/"));
    }
    session::flash(
        session,
        FlashKind::Success,
        "The token is revoked at Zoho and deleted; its user will have to log in again.",
    );
    Ok(see_other("/admin/tokens"))
}

/// `POST /admin/tokens/delete-all`: revokes and deletes every token of the administrator's organization.
///
/// Through the store's six methods this is `get_tokens` and then, per row of the organization, the
/// manager's disconnect (revoke at Zoho, then `delete_token` if the row is still that user's). Not
/// `delete_tokens`: it would also delete other organizations' rows, and it could not revoke anything.
pub async fn delete_all(
    signed_in: SignedIn,
    _form: CsrfForm<IgnoredAny>,
) -> Result<HttpResponse, AppError> {
    require_admin(&signed_in).await?;
    let SignedIn {
        user,
        state,
        session,
        ..
    } = &signed_in;
    let rows = org_tokens(state, &user.org_id).await?;
    let mut count = 0;
    for row in rows {
        let (Some(token_id), Some(user_name)) = (row.id, row.user_name) else {
            continue;
        };
        let target = TokenOwner {
            token_id,
            user_name,
        };
        if state.manager.disconnect(&target).await? == Disconnected::Deleted {
            count += 1;
        }
        state.forget_token(&target.token_id);
        session::end_sign_ins_of_token(&state.sign_ins, &target).await?;
    }
    tracing::info!(by = %user.token_id, count, org_id = %user.org_id, "administrator revoked and deleted the organization's tokens");
    session::sign_out(session, &state.sign_ins).await?;
    session::flash(
        session,
        FlashKind::Info,
        "Every stored token of your organization is revoked and deleted, yours included: everyone logs in again.",
    );
    Ok(see_other("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_values_are_masked_like_the_cli_does() {
        assert_eq!(mask(Some("1000.abcdef0123456789")), "1000.…");
        assert_eq!(
            mask(Some("abc")),
            "…",
            "a short secret shows nothing of itself"
        );
        assert_eq!(mask(Some("abcdefgh")), "ab…", "never more than a quarter");
        assert_eq!(mask(None), "—");
        assert_eq!(mask(Some("")), "—");
    }

    #[test]
    fn rows_belong_to_the_org_after_the_last_colon() {
        let row = |name: &str| OAuthToken {
            user_name: Some(name.to_owned()),
            ..OAuthToken::default()
        };
        assert!(in_org(&row("a@b.com:600"), "600"));
        assert!(!in_org(&row("a@b.com:6001"), "600"));
        assert!(!in_org(&row("a@b.com:600:7"), "600"));
        assert!(!in_org(&OAuthToken::default(), "600"));
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(describe_duration(Duration::from_secs(45)), "45 s");
        assert_eq!(describe_duration(Duration::from_secs(750)), "12 min");
        assert_eq!(describe_duration(Duration::from_secs(5 * 3600 + 1)), "5 h");
        assert_eq!(describe_duration(Duration::from_secs(3 * 86_400)), "3 days");
    }
}
