//! One error type for every page: a friendly page in the normal layout with the right status and a way back;
//! the cause chain goes to the log (never a secret), never to the page.
//!
//! Errors from below convert with `?` (`From<TokenError>`, `From<CrmError>`, and `From<CrmFailure>`, which names
//! the module a permission error is about). A converted error keeps its cause; it is logged once, and its page
//! rendered once, where the response is made ([`super::middleware::error_pages`]).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use askama::Template;

use super::Layout;
use crate::tokens::{StoreError, TokenError};
use crate::user_crm::CrmFailure;
use crate::zoho::CrmError;

/// Everything a page can fail with, classified by what the person sees.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("page not found")]
    NotFound,
    /// A request the portal will not act on; the message is shown and must hold no secret.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The login came back without a valid state, code or accounts server; nothing was stored.
    #[error("login refused: {0}")]
    LoginRefused(String),
    /// The person chose Deny on Zoho's consent page.
    #[error("login cancelled at Zoho")]
    LoginCancelled,
    #[error("not signed in")]
    NotSignedIn,
    /// The stored token is gone or dead: the session ends and the person logs in again.
    #[error("the Zoho session has ended")]
    SessionEnded,
    #[error("CSRF token missing or wrong")]
    Csrf,
    /// The request body did not arrive within the body read timeout; nothing was done, and the connection is
    /// closed after this answer (see `middleware::body_deadline`).
    #[error("the request body arrived too slowly")]
    BodyTimeout,
    #[error("administrators only")]
    AdminsOnly,
    #[error("no CRM permission for module {0}")]
    NoPermission(String),
    /// The user's CRM profile may open the module (named, in the plural) but not edit its records.
    #[error("no CRM permission to edit {0}")]
    CannotEdit(String),
    #[error("the Zoho login does not grant this")]
    ScopeMismatch,
    #[error("Zoho is throttling token refreshes")]
    Throttled,
    #[error("Zoho CRM is throttling requests")]
    RateLimited,
    /// The token store did not answer (a database restarting, a file on a disk that failed): 503 with
    /// `Retry-After`; nothing was stored or lost, and the page works again once the store does.
    #[error("the token store is unavailable")]
    StoreUnavailable,
    /// No turn at the org's gate within the queue timeout (see `zoho::limits`): 503 with `Retry-After`.
    #[error("Zoho CRM is busy")]
    ZohoBusy { retry_after_secs: u64 },
    #[error("the portal's Zoho client is misconfigured")]
    Misconfigured,
    #[error("Zoho did not answer in time")]
    Timeout,
    #[error("Zoho could not be reached")]
    Unreachable,
    #[error("Zoho answered with an error")]
    Upstream,
    /// The person's stored token was made through another Zoho than this portal's (see
    /// [`TokenError::ForeignApiDomain`]): a fleet set up with more than one Zoho.
    #[error("the stored token belongs to another Zoho")]
    ForeignZoho,
    #[error("internal error")]
    Internal,
    /// One of the errors above, caused by a failure below (the store, Zoho, a template): the page is `shown`'s,
    /// the log line carries `cause`, the failure's whole chain.
    #[error("{shown}: {cause}")]
    Caused { shown: Box<AppError>, cause: String },
}

impl From<TokenError> for AppError {
    fn from(error: TokenError) -> AppError {
        let cause = error_chain(&error);
        let shown = match error {
            TokenError::NotStored | TokenError::Dead => AppError::SessionEnded,
            TokenError::Throttled => AppError::Throttled,
            TokenError::Misconfigured(_) => AppError::Misconfigured,
            TokenError::Timeout => AppError::Timeout,
            TokenError::Unreachable(_) => AppError::Unreachable,
            TokenError::Protocol(_) => AppError::Upstream,
            TokenError::ForeignApiDomain { .. } => AppError::ForeignZoho,
            TokenError::Store(store) => return AppError::from(store),
            TokenError::Crm(crm) => return AppError::from(crm),
            TokenError::Busy { retry_after } => AppError::ZohoBusy {
                retry_after_secs: retry_after.as_secs().max(1),
            },
        };
        shown.caused_by(cause)
    }
}

impl From<StoreError> for AppError {
    /// A store that did not answer is "unavailable, try again shortly"; any other store error is the portal's.
    fn from(error: StoreError) -> AppError {
        let cause = error_chain(&error);
        let shown = match error {
            StoreError::Backend { .. } => AppError::StoreUnavailable,
            _ => AppError::Internal,
        };
        shown.caused_by(cause)
    }
}

impl From<CrmError> for AppError {
    fn from(error: CrmError) -> AppError {
        let cause = error_chain(&error);
        let shown = match error {
            CrmError::NoPermission => AppError::NoPermission("this module".to_owned()),
            CrmError::ScopeMismatch => AppError::ScopeMismatch,
            CrmError::NotFound => AppError::NotFound,
            CrmError::RateLimited { .. } => AppError::RateLimited,
            CrmError::Timeout => AppError::Timeout,
            CrmError::Unreachable(_) => AppError::Unreachable,
            CrmError::InvalidToken(_) | CrmError::Server(_) | CrmError::Api { .. } => {
                AppError::Upstream
            }
        };
        shown.caused_by(cause)
    }
}

impl From<CrmFailure> for AppError {
    /// As a [`TokenError`], with a permission error naming the module the call was about.
    fn from(failure: CrmFailure) -> AppError {
        let mut error = AppError::from(failure.source);
        if let (AppError::NoPermission(named), Some(module)) = (error.shown_mut(), failure.module) {
            *named = module;
        }
        error
    }
}

impl AppError {
    /// An unexpected failure (store, template, session): shown as a 500 page, its cause logged.
    pub fn internal(cause: impl std::fmt::Display) -> AppError {
        AppError::Internal.caused_by(cause.to_string())
    }

    /// This error, with the failure below that caused it (for the log).
    pub fn caused_by(self, cause: String) -> AppError {
        AppError::Caused {
            shown: Box::new(self),
            cause,
        }
    }

    /// The error the person sees (itself, unless it carries a cause).
    pub fn shown(&self) -> &AppError {
        match self {
            AppError::Caused { shown, .. } => shown,
            shown => shown,
        }
    }

    fn shown_mut(&mut self) -> &mut AppError {
        match self {
            AppError::Caused { shown, .. } => shown,
            shown => shown,
        }
    }

    /// Logs the error once, where its response is made: failures of Zoho or the portal as errors (with their
    /// cause chain), refusals of what a person asked as information.
    pub fn log(&self, method: &str, path: &str) {
        let cause = match self {
            AppError::Caused { cause, .. } => cause.as_str(),
            _ => "",
        };
        match self.shown() {
            AppError::Misconfigured => tracing::error!(
                %method, %path, error = %cause,
                "MISCONFIGURED: Zoho rejects the portal's client; check ZOHO_CLIENT_ID, ZOHO_CLIENT_SECRET and the registered redirect URL"
            ),
            AppError::ForeignZoho => tracing::error!(
                %method, %path, error = %cause,
                "MISCONFIGURED FLEET: a token in the shared store was made through another Zoho than this portal's"
            ),
            AppError::Internal
            | AppError::Upstream
            | AppError::Unreachable
            | AppError::Timeout
            | AppError::StoreUnavailable => {
                tracing::error!(%method, %path, error = %cause, shown = %self.shown(), "Zoho or the store failed")
            }
            shown => tracing::info!(%method, %path, error = %cause, %shown, "request refused"),
        }
    }

    /// The heading, the explanation and the way back that the error page shows.
    fn page_text(&self) -> (String, String) {
        match self.shown() {
            AppError::NotFound => (
                "Page not found".into(),
                "There is nothing at this address. It may have moved, or the record may have been deleted.".into(),
            ),
            AppError::BadRequest(message) => ("That request could not be handled".into(), message.clone()),
            AppError::LoginRefused(message) => ("The login could not be completed".into(), format!("{message} Nothing was saved. Please start the login again.")),
            AppError::LoginCancelled => (
                "Login cancelled".into(),
                "You chose not to let Zylker Academy's portal use your Zoho account. You can log in whenever you are ready.".into(),
            ),
            AppError::NotSignedIn => ("Please log in".into(), "This page needs you to log in with your Zoho account first.".into()),
            AppError::SessionEnded => (
                "Your Zoho session has ended".into(),
                "Your Zoho session has ended, please log in again.".into(),
            ),
            AppError::Csrf => (
                "This form has expired".into(),
                "The form was not sent from this browser's current session, so nothing was done. Please go back, reload the page and try again.".into(),
            ),
            AppError::BodyTimeout => (
                "The form took too long to arrive".into(),
                "The form was not received in time, so nothing was done. Please try again.".into(),
            ),
            AppError::AdminsOnly => (
                "Administrators only".into(),
                "Managing stored tokens is open to users whose Zoho CRM profile is Administrator.".into(),
            ),
            AppError::NoPermission(module) => (
                format!("No access to {module}"),
                format!("Your Zoho CRM profile does not give you permission to open {module}. Ask your CRM administrator if you need it."),
            ),
            AppError::CannotEdit(records) => (
                format!("You cannot edit {records}"),
                format!("Your Zoho CRM profile lets you view {records} but not change them, so nothing was changed. Ask your CRM administrator if you need to edit them."),
            ),
            AppError::ScopeMismatch => (
                "Zoho did not grant this".into(),
                "Your Zoho login does not grant the portal access to this data. Logging in again and accepting the requested permissions fixes it.".into(),
            ),
            AppError::Throttled => (
                "Zoho is busy".into(),
                "Zoho is limiting how often the portal may renew your access. Your login is kept; please try again in a few minutes.".into(),
            ),
            AppError::RateLimited => (
                "Too many requests".into(),
                "Zoho CRM is limiting requests right now. Please try again in a minute.".into(),
            ),
            AppError::StoreUnavailable => (
                "The token store is unavailable".into(),
                "The portal cannot reach its token store right now; nothing was lost. Please try again shortly.".into(),
            ),
            AppError::ZohoBusy { .. } => (
                "Zoho is busy".into(),
                "Zoho is busy, try again in a moment. Many people are using the portal right now, and Zoho CRM takes only so many requests at once.".into(),
            ),
            AppError::Misconfigured => (
                "The portal is misconfigured".into(),
                "Zoho rejects the portal's client configuration (client id, secret or redirect URL). An administrator has to fix the portal's settings; logging in again will not help.".into(),
            ),
            AppError::Timeout => ("Zoho is taking too long".into(), "Zoho did not answer in time. Please try again.".into()),
            AppError::Unreachable => ("Zoho cannot be reached".into(), "The portal could not reach Zoho. Please try again in a moment.".into()),
            AppError::Upstream => ("Zoho had a problem".into(), "Zoho answered with an error. Please try again in a moment.".into()),
            AppError::ForeignZoho => (
                "This portal's Zoho is not the one your sign-in was made with".into(),
                "Your Zoho connection was made through another Zoho server than the one this portal talks to, so this portal cannot use it. This happens when the portals that share one token store are set up with different Zoho servers, for example several demo portals each with a sandbox of its own. The portal's administrator has to point every portal sharing the store at the same Zoho (the README's \"Try a fleet on one machine\" shows how). Logging in again here connects you through this portal's Zoho.".into(),
            ),
            AppError::Internal | AppError::Caused { .. } => ("Something went wrong".into(), "The portal ran into a problem. Please try again.".into()),
        }
    }

    /// Whether the page offers "Log in again" rather than "Back to the start page".
    fn offers_login(&self) -> bool {
        matches!(
            self.shown(),
            AppError::NotSignedIn
                | AppError::SessionEnded
                | AppError::ScopeMismatch
                | AppError::LoginRefused(_)
                | AppError::LoginCancelled
                | AppError::ForeignZoho
        )
    }

    /// Whether the person has to sign in (again) for the page: a GET or HEAD of it is then sent to the sign-in
    /// page rather than shown this error (see [`super::middleware::error_pages`]).
    pub fn asks_to_sign_in(&self) -> bool {
        matches!(self.shown(), AppError::NotSignedIn | AppError::SessionEnded)
    }

    /// Whether this error ends the browser's signed-in session.
    pub fn ends_session(&self) -> bool {
        matches!(self.shown(), AppError::SessionEnded)
    }

    /// Whether the next login should ask Zoho with `prompt=consent`: the stored refresh token was granted fewer
    /// scopes than the portal asks for now (an older `--scope`), and only a consent issues one with all of them
    /// (a login without it keeps the old refresh token, whose next access token lacks them again).
    pub fn needs_consent(&self) -> bool {
        matches!(self.shown(), AppError::ScopeMismatch)
    }

    /// The error page, in the given layout.
    pub fn render_page(&self, mut layout: Layout) -> HttpResponse {
        let (heading, message) = self.page_text();
        layout.title = heading.clone();
        let page = ErrorPage {
            status: self.status_code().as_u16(),
            heading,
            message,
            offers_login: self.offers_login(),
            layout,
        };
        let body = page.render().unwrap_or_else(|_| {
            // Only a broken template gets here; the status still says what happened.
            String::from("<!doctype html><title>Error</title><p>Something went wrong. <a href=\"/\">Back</a></p>")
        });
        let mut response = HttpResponse::build(self.status_code());
        if let Some(seconds) = self.retry_after_secs() {
            response.insert_header((actix_web::http::header::RETRY_AFTER, seconds));
        }
        response.content_type("text/html; charset=utf-8").body(body)
    }

    /// The `Retry-After` of a page that asks to come back later.
    fn retry_after_secs(&self) -> Option<u64> {
        match self.shown() {
            AppError::ZohoBusy { retry_after_secs } => Some(*retry_after_secs),
            AppError::RateLimited => Some(RATE_LIMITED_RETRY_AFTER_SECS),
            AppError::StoreUnavailable => Some(STORE_UNAVAILABLE_RETRY_AFTER_SECS),
            _ => None,
        }
    }
}

/// The `Retry-After` of the token-store-unavailable page: a database restart takes seconds.
const STORE_UNAVAILABLE_RETRY_AFTER_SECS: u64 = 5;

/// The `Retry-After` of the 429 page: the portal has already tried again for as long as a page may wait.
const RATE_LIMITED_RETRY_AFTER_SECS: u64 = 10;

/// An error page: the status, what happened, and a way back.
#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub layout: Layout,
    pub status: u16,
    pub heading: String,
    pub message: String,
    pub offers_login: bool,
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self.shown() {
            AppError::NotFound => StatusCode::NOT_FOUND,
            AppError::BadRequest(_) | AppError::LoginRefused(_) | AppError::LoginCancelled => {
                StatusCode::BAD_REQUEST
            }
            AppError::NotSignedIn | AppError::SessionEnded => StatusCode::UNAUTHORIZED,
            AppError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            AppError::Csrf
            | AppError::AdminsOnly
            | AppError::NoPermission(_)
            | AppError::CannotEdit(_)
            | AppError::ScopeMismatch => StatusCode::FORBIDDEN,
            AppError::Throttled | AppError::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            AppError::Misconfigured | AppError::Internal | AppError::Caused { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            AppError::ZohoBusy { .. } | AppError::StoreUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            AppError::Timeout => StatusCode::GATEWAY_TIMEOUT,
            AppError::Unreachable | AppError::Upstream | AppError::ForeignZoho => {
                StatusCode::BAD_GATEWAY
            }
        }
    }

    /// The status alone: the page is rendered once, with the session's layout, by
    /// [`super::middleware::error_pages`], which finds this error on the response.
    fn error_response(&self) -> HttpResponse {
        HttpResponse::new(self.status_code())
    }
}

/// `error: cause: cause…`, the way the log shows an error.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut chain = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        chain.push_str(": ");
        chain.push_str(&cause.to_string());
        source = cause.source();
    }
    chain
}

/// The error page for a status that no [`AppError`] produced (a 405, an oversized body, …).
pub fn render_status_page(status: StatusCode, layout: Layout) -> HttpResponse {
    let app_error = match status {
        StatusCode::NOT_FOUND => AppError::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => {
            AppError::BadRequest("This address does not accept that kind of request.".into())
        }
        status if status.is_client_error() => {
            AppError::BadRequest("The request could not be handled.".into())
        }
        _ => AppError::Internal,
    };
    let mut page = app_error.render_page(layout);
    *page.status_mut() = status;
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_issue() {
        assert_eq!(
            AppError::SessionEnded.status_code(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            AppError::Throttled.status_code(),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(
            AppError::Misconfigured.status_code(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(AppError::Timeout.status_code(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(AppError::Unreachable.status_code(), StatusCode::BAD_GATEWAY);
        assert_eq!(
            AppError::NoPermission("Leads".into()).status_code(),
            StatusCode::FORBIDDEN
        );
        assert_eq!(AppError::ScopeMismatch.status_code(), StatusCode::FORBIDDEN);
        assert_eq!(AppError::Csrf.status_code(), StatusCode::FORBIDDEN);
        assert_eq!(
            AppError::CannotEdit("leads".into()).status_code(),
            StatusCode::FORBIDDEN
        );
    }
}
