//! What wraps every response: security headers, `Cache-Control`, error pages in the signed-in layout, and a
//! request log line that never carries a query string (the callback's code lives there).

use std::time::Instant;

use actix_session::{Session, SessionExt};
use actix_web::body::{BodySize, BoxBody, EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::{DefaultHeaders, Next};
use actix_web::web;
use url::Url;

use super::error::{AppError, render_status_page};
use super::{Layout, session};
use crate::state::PortalState;

/// The headers every response carries. Built once; each worker makes its own `DefaultHeaders` from it.
#[derive(Debug, Clone)]
pub struct SecurityHeaders {
    content_security_policy: String,
}

impl SecurityHeaders {
    /// `accounts_url` is where logins start: the only other origin a page of ours may hand the browser to.
    pub fn new(accounts_url: &Url) -> Self {
        let accounts_origin = accounts_url.origin().ascii_serialization();
        // No inline script or style anywhere; forms post to our own origin only (plus Zoho Accounts, where the
        // login goes); no framing; no <base> tricks.
        let content_security_policy = format!(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             form-action 'self' {accounts_origin}; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
        );
        SecurityHeaders {
            content_security_policy,
        }
    }

    /// The middleware for one worker.
    pub fn default_headers(&self) -> DefaultHeaders {
        DefaultHeaders::new()
            .add((
                header::CONTENT_SECURITY_POLICY,
                self.content_security_policy.clone(),
            ))
            .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .add((header::REFERRER_POLICY, "no-referrer"))
            .add((header::X_FRAME_OPTIONS, "DENY"))
    }
}

/// `Cache-Control: no-store` on every dynamic response (they may show CRM data); static files may be cached.
pub async fn cache_control(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let is_static = req.path().starts_with("/static/");
    let mut res = next.call(req).await?;
    let cacheable = res.status().is_success() || res.status() == StatusCode::NOT_MODIFIED;
    let value = if is_static && cacheable {
        HeaderValue::from_static("public, max-age=3600")
    } else {
        HeaderValue::from_static("no-store")
    };
    res.headers_mut().insert(header::CACHE_CONTROL, value);
    Ok(res)
}

/// One line per request: method, path (never the query), status, milliseconds.
pub async fn request_log(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.path().to_owned();
    let res = next.call(req).await?;
    tracing::info!(
        %method,
        %path,
        status = res.status().as_u16(),
        elapsed_ms = %format_args!("{:.2}", started.elapsed().as_secs_f64() * 1000.0),
        "request"
    );
    Ok(res)
}

/// Clears a session whose sign-in is over (ended on any portal sharing the store, or past the session lifetime)
/// before any handler sees it, so that every page, error pages included, treats a replayed or stale cookie as
/// nobody's, and the browser gets an empty cookie in its place (one that can still carry a login in flight or a
/// flash). When the sign-ins cannot be read, the request gets the error page and the cookie is left as it is.
pub async fn sign_in_gate(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    if let Some(state) = req.app_data::<web::Data<PortalState>>() {
        let session = req.get_session();
        match session::sign_in_has_lapsed(&session, &state.sign_ins).await {
            Ok(false) => {}
            Ok(true) => {
                session.clear();
                session.renew();
            }
            Err(error) => {
                let error = AppError::internal(super::error::error_chain(&error));
                error.log(req.method().as_str(), req.path());
                let page = error.render_page(Layout::anonymous(""));
                return Ok(req.into_response(page).map_into_right_body());
            }
        }
    }
    Ok(next.call(req).await?.map_into_left_body())
}

/// Renders error pages inside the normal layout, with the signed-in user's header when there is one, logs an
/// [`AppError`] (the one place it is logged), and ends the session when the error says so. Errors that did not come from [`AppError`] (a 405, an oversized body)
/// get the same page for their status.
pub async fn error_pages(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let res = next.call(req).await?;
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return Ok(res.map_into_boxed_body());
    }
    if let Some(app_error) = res
        .response()
        .error()
        .and_then(|error| error.as_error::<AppError>())
    {
        app_error.log(res.request().method().as_str(), res.request().path());
        let session = res.request().get_session();
        let state = res.request().app_data::<web::Data<PortalState>>();
        if app_error.ends_session()
            && let Some(state) = state
            && let Err(error) = session::sign_out(&session, &state.sign_ins).await
        {
            tracing::warn!(error = %super::error::error_chain(&error), "could not end the sign-in of a session whose token is gone");
        }
        let page = app_error.render_page(error_layout(&session, state));
        return Ok(res.into_response(page).map_into_boxed_body());
    }
    let foreign_error = res.response().error().is_some();
    let empty = matches!(
        res.response().body().size(),
        BodySize::None | BodySize::Sized(0)
    );
    if foreign_error || empty {
        let session = res.request().get_session();
        let state = res.request().app_data::<web::Data<PortalState>>();
        let mut page = render_status_page(status, error_layout(&session, state));
        // A 405 names the methods the path takes; the page keeps that header.
        if let Some(allow) = res.headers().get(header::ALLOW) {
            page.headers_mut().insert(header::ALLOW, allow.clone());
        }
        return Ok(res.into_response(page).map_into_boxed_body());
    }
    Ok(res.map_into_boxed_body())
}

/// The layout of an error page: the signed-in user's, when the portal's state is there to give their
/// navigation (it always is in the portal; the fallback only keeps this middleware usable on its own).
fn error_layout(session: &Session, state: Option<&web::Data<PortalState>>) -> Layout {
    match state {
        Some(state) => Layout::new(session, state, ""),
        None => Layout::anonymous(""),
    }
}
