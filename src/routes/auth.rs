//! Logging in with Zoho (`/sign-in`, `/login`, `/oauth/callback`), signing out and disconnecting.

use super::cookie_session::Session;
use actix_web::http::header::LOCATION;
use actix_web::{HttpResponse, web};
use askama::Template;
use serde::de::IgnoredAny;

use super::return_path::ReturnPath;
use super::session::{self, CsrfForm, FlashKind, SessionUser, SignedIn};
use super::{AppError, Layout, render, see_other, see_other_path};
use crate::secret::Secret;
use crate::state::PortalState;
use crate::tokens::{LoginOutcome, PendingLogin, PendingLoginFound, TokenError};
use crate::zoho::accounts;

/// What the sign-in page is asked: where the person was going, and why they were sent here.
#[derive(serde::Deserialize)]
pub struct SignInParams {
    next: Option<String>,
    /// `ended` when the browser's sign-in has just ended; anything else is ignored.
    reason: Option<String>,
}

/// The sign-in page: why this page needs a login, where the person will land, and the login button.
#[derive(Template)]
#[template(path = "sign_in.html")]
pub struct SignInPage {
    pub layout: Layout,
    /// Whether the browser's sign-in has just ended (rather than never having been).
    pub ended: bool,
    /// Where the login comes back to; none for the start page.
    pub next: Option<ReturnPath>,
    /// `/login`, carrying `next`.
    pub login_href: String,
}

/// `GET /sign-in?next=PATH`: where a signed-out visit to a signed-in page is sent. It says why, and its "Login
/// with Zoho" button logs in and comes back to `next` (a path on this site; anything else is dropped). Someone
/// already signed in goes straight there.
pub async fn sign_in_page(
    state: web::Data<PortalState>,
    session: Session,
    params: web::Query<SignInParams>,
) -> Result<HttpResponse, AppError> {
    let next = params.next.as_deref().and_then(ReturnPath::parse);
    if session::current_user(&session).is_some() {
        return Ok(match next {
            Some(next) => see_other_path(&next),
            None => see_other("/"),
        });
    }
    render(&SignInPage {
        layout: Layout::new(&session, &state, "Sign in"),
        ended: params.reason.as_deref() == Some("ended"),
        login_href: ReturnPath::login_location(next.as_ref()),
        next,
    })
}

/// Where a login comes back to: `next`, a path on this site (anything else is dropped).
#[derive(serde::Deserialize)]
pub struct NextParam {
    next: Option<String>,
}

impl NextParam {
    fn return_path(&self) -> Option<ReturnPath> {
        self.next.as_deref().and_then(ReturnPath::parse)
    }
}

/// `GET /login?next=PATH`: sends the browser to Zoho Accounts with a fresh state and PKCE challenge, kept in the
/// encrypted session cookie with where to land afterwards (`next`, when it is a path on this site; else the
/// start page): an anonymous `/login` writes nothing on the server.
pub async fn login(
    state: web::Data<PortalState>,
    session: Session,
    params: web::Query<NextParam>,
) -> Result<HttpResponse, AppError> {
    let next = params.return_path();
    let consent = session::take_consent_round(&session);
    // 256 random bits of state; PKCE S256.
    let login_state = Secret::random();
    let (code_verifier, code_challenge) = accounts::new_pkce_pair();
    let url = state.manager.authorization_url(
        &state.accounts_url,
        &state.scope,
        &login_state,
        &code_challenge,
        consent,
    );
    session::begin_login(
        &session,
        PendingLogin {
            state: login_state,
            code_verifier,
            consent,
            expires_at: 0,
            next: next.map(|next| next.as_str().to_owned()),
        },
        state.pending_login_ttl,
    )?;
    tracing::info!(consent, "login started");
    Ok(HttpResponse::SeeOther()
        .insert_header((LOCATION, url.as_str()))
        .finish())
}

/// What Zoho appends to the redirect URL. Everything is optional: a forged callback may carry anything.
#[derive(serde::Deserialize)]
pub struct CallbackParams {
    state: Option<Secret>,
    code: Option<Secret>,
    error: Option<String>,
    #[serde(rename = "accounts-server")]
    accounts_server: Option<String>,
}

/// `GET /oauth/callback`: state first; then a cancelled login, the code, the accounts server; then the token
/// manager exchanges the code and stores the token, and the session is renewed for the signed-in user.
pub async fn callback(
    state: web::Data<PortalState>,
    session: Session,
    params: web::Query<CallbackParams>,
) -> Result<HttpResponse, AppError> {
    let params = params.into_inner();
    // The login the state names is taken from the cookie and consumed on the server whatever happens next: a
    // state is good once.
    let pending =
        session::take_pending_login(&session, &state.sign_ins, params.state.as_ref()).await?;
    let pending = match pending {
        PendingLoginFound::None => {
            return Err(AppError::LoginRefused(
                "This browser has no login in progress (it may have been used already).".into(),
            ));
        }
        PendingLoginFound::Expired => {
            tracing::info!("callback for a login started too long ago; refused");
            return Err(AppError::LoginRefused(
                "This browser has no login in progress: the one started here took too long.".into(),
            ));
        }
        PendingLoginFound::NoState => {
            return Err(AppError::LoginRefused(
                "Zoho's answer carried no state.".into(),
            ));
        }
        PendingLoginFound::NotThisBrowsers => {
            return Err(AppError::LoginRefused(format!(
                "Zoho's answer does not belong to this browser's login (a browser keeps its last {} logins \
                 started; this may be an older one).",
                session::MAX_PENDING_LOGINS
            )));
        }
        PendingLoginFound::Pending(pending) => pending,
    };
    if let Some(error) = params.error.as_deref() {
        if error == "access_denied" {
            return Err(AppError::LoginCancelled);
        }
        return Err(AppError::LoginRefused("Zoho refused the login.".into()));
    }
    let Some(code) = params.code.as_ref().filter(|code| !code.is_empty()) else {
        return Err(AppError::LoginRefused(
            "Zoho's answer carried no authorization code.".into(),
        ));
    };
    // The client secret goes only to an Accounts server we know: never to a host the browser named.
    let accounts_server = match params.accounts_server.as_deref() {
        Some(claimed) => state.manager.accounts_server(claimed).ok_or_else(|| {
            tracing::warn!("callback named an accounts-server that is not Zoho's; refused");
            AppError::LoginRefused(
                "Zoho's answer names an accounts server that is not Zoho's.".into(),
            )
        })?,
        None => state.accounts_url.clone(),
    };

    // The code is spent at Zoho as soon as it is exchanged, so the login runs to its end (the token stored, or a
    // refresh token it cannot keep revoked) on a task of its own, even if the browser goes meanwhile and the
    // server drops this page: the person logs in with one click next time, and no refresh token is left behind.
    let login = {
        let (state, code, verifier) = (state.clone(), code.clone(), pending.code_verifier.clone());
        actix_web::rt::spawn(async move {
            state
                .manager
                .login(&accounts_server, &code, &verifier)
                .await
        })
    };
    let outcome = login
        .await
        .map_err(AppError::internal)?
        .map_err(|error| match error {
            TokenError::Dead => {
                tracing::info!("authorization code refused by Zoho (used or expired)");
                AppError::LoginRefused("This login has already been used or has expired.".into())
            }
            TokenError::Protocol(reason) => {
                tracing::warn!(%reason, "login refused: unusable token answer");
                AppError::LoginRefused("Zoho's answer could not be trusted.".into())
            }
            other => AppError::from(other),
        })?;

    match outcome {
        LoginOutcome::LoggedIn(login) => {
            let user = SessionUser {
                token_id: login.token_id.clone(),
                name: login
                    .user
                    .full_name
                    .clone()
                    .filter(|name| !name.trim().is_empty())
                    .unwrap_or_else(|| login.user.email.clone()),
                email: login.user.email.clone(),
                profile: login.user.profile.as_ref().map(|p| p.name.clone()),
                role: login.user.role.as_ref().map(|r| r.name.clone()),
                org_name: login.org.company_name.clone(),
                org_id: login.org.id.clone(),
            };
            state.forget_token(&user.token_id);
            if login.new_token {
                // The user had no token: whatever sign-ins are still recorded for them were made with a token
                // deleted since (by any means: the CLI, another program, a refresh Zoho refused), whose id this
                // token may now carry. None of them may open it.
                let ended = state
                    .sign_ins
                    .end_all_of(&user.owner().user_name, None)
                    .await?;
                if ended > 0 {
                    tracing::info!(token_id = %user.token_id, ended, "ended the sign-ins of the user's deleted token");
                }
            }
            session::sign_in(&session, &state.sign_ins, &user).await?;
            session::flash(
                &session,
                FlashKind::Success,
                format!("Welcome, {}. You are signed in with Zoho.", user.name),
            );
            tracing::info!(token_id = %user.token_id, "user logged in");
            // Where the person was going, checked again on the way out: the cookie is ours, but the rule is
            // cheap and the login lands nowhere else.
            Ok(match returning_to(&pending) {
                Some(next) => see_other_path(&next),
                None => see_other("/"),
            })
        }
        LoginOutcome::NeedsConsent if !pending.consent => {
            // Zoho sends a refresh token only on consent; ask for it once, and only when none is stored.
            tracing::info!("no refresh token returned; asking Zoho once more with prompt=consent");
            session::request_consent_round(&session)?;
            Ok(HttpResponse::SeeOther()
                .insert_header((
                    LOCATION,
                    ReturnPath::login_location(returning_to(&pending).as_ref()),
                ))
                .finish())
        }
        LoginOutcome::NeedsConsent => Err(AppError::LoginRefused(
            "Zoho granted no lasting access even after consent.".into(),
        )),
    }
}

/// Where the login in flight was going, if it is (still) a path on this site.
fn returning_to(pending: &PendingLogin) -> Option<ReturnPath> {
    pending.next.as_deref().and_then(ReturnPath::parse)
}

/// `POST /logout`: signs this browser out; the stored token stays, so the next login is one click.
pub async fn logout(
    state: web::Data<PortalState>,
    session: Session,
    _form: CsrfForm<IgnoredAny>,
) -> Result<HttpResponse, AppError> {
    session::sign_out(&session, &state.sign_ins).await?;
    session::flash(
        &session,
        FlashKind::Info,
        "You have signed out of the portal. Your Zoho connection is kept for next time.",
    );
    Ok(see_other("/"))
}

/// `POST /disconnect`: revokes the refresh token at Zoho, deletes it from the store, ends the session.
pub async fn disconnect(
    signed_in: SignedIn,
    _form: CsrfForm<IgnoredAny>,
) -> Result<HttpResponse, AppError> {
    let SignedIn {
        user,
        owner,
        state,
        session,
        ..
    } = signed_in;
    // Revoked at Zoho, deleted here, every sign-in with it ended: on a task of its own, so that a browser that
    // goes meanwhile (the server then drops this page) never leaves a revoked token stored and its other
    // sign-ins open.
    let disconnecting = {
        let (state, owner) = (state.clone(), owner.clone());
        actix_web::rt::spawn(async move {
            // Through the owner: a stale session whose token id now belongs to someone else revokes nothing
            // of theirs.
            match state.manager.disconnect(&owner).await {
                Ok(_) | Err(TokenError::NotStored) => {}
                Err(error) => return Err(AppError::from(error)),
            }
            state.forget_token(&owner.token_id);
            // The token is gone: so is every sign-in made with it (the user's other browsers), on every portal.
            session::end_sign_ins_of_token(&state.sign_ins, &owner).await?;
            Ok(())
        })
    };
    disconnecting.await.map_err(AppError::internal)??;
    tracing::info!(token_id = %user.token_id, "user disconnected from Zoho");
    session::sign_out(&session, &state.sign_ins).await?;
    session::flash(
        &session,
        FlashKind::Info,
        "You are disconnected from Zoho: the portal no longer holds any access to your account.",
    );
    Ok(see_other("/"))
}
