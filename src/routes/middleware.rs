//! What wraps every response: security headers, `Cache-Control`, error pages in the signed-in layout, and a
//! request log line that never carries a query string (the callback's code lives there).

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Instant;

use super::cookie_session::{Session, SessionExt};
use actix_web::body::{BodySize, BoxBody, EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::Method;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::{DefaultHeaders, Next};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use futures_core::Stream;
use url::Url;

use super::error::{AppError, render_status_page};
use super::return_path::ReturnPath;
use super::{Layout, session};
use crate::state::PortalState;

/// The headers every response carries. Built once; each worker makes its own `DefaultHeaders` from it.
#[derive(Debug, Clone)]
pub struct SecurityHeaders {
    content_security_policy: String,
    /// Whether the portal is reached at https: then browsers are told to use nothing else.
    strict_transport: bool,
}

impl SecurityHeaders {
    /// `accounts_url` is where logins start: the only other origin a page of ours may hand the browser to.
    /// `public_url` is where people reach the portal: at https, responses carry `Strict-Transport-Security`.
    pub fn new(accounts_url: &Url, public_url: &Url) -> Self {
        let accounts_origin = accounts_url.origin().ascii_serialization();
        // No inline script or style anywhere; forms post to our own origin only (plus Zoho Accounts, where the
        // login goes); no framing; no <base> tricks.
        let content_security_policy = format!(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             form-action 'self' {accounts_origin}; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
        );
        SecurityHeaders {
            content_security_policy,
            strict_transport: public_url.scheme() == "https",
        }
    }

    /// The middleware for one worker.
    pub fn default_headers(&self) -> DefaultHeaders {
        let headers = DefaultHeaders::new();
        // A year, the usual HSTS lifetime; not `includeSubDomains`: the portal speaks for its own host only.
        let headers = if self.strict_transport {
            headers.add((header::STRICT_TRANSPORT_SECURITY, "max-age=31536000"))
        } else {
            headers
        };
        headers
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

/// One line per request: method, path (never the query), status, milliseconds. A request that went wrong
/// (4xx, 5xx) is logged at INFO; the rest, every page served as asked, at DEBUG, so that the default log is
/// not a line per page and a page costs nothing for a line nobody reads (`RUST_LOG=zylker_portal=debug` shows
/// them all).
pub async fn request_log(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let res = next.call(req).await?;
    let status = res.status();
    macro_rules! request_line {
        ($level:expr) => {
            if tracing::enabled!($level) {
                tracing::event!(
                    $level,
                    method = %res.request().method(),
                    path = %res.request().path(),
                    status = status.as_u16(),
                    elapsed_ms = %format_args!("{:.2}", started.elapsed().as_secs_f64() * 1000.0),
                    "request"
                );
            }
        };
    }
    if status.is_client_error() || status.is_server_error() {
        request_line!(tracing::Level::INFO);
    } else {
        request_line!(tracing::Level::DEBUG);
    }
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
        match session::check_sign_in(&session, &state.sign_ins).await {
            Ok(session::SignInCheck::Lapsed) => {
                let user = session::current_user(&session);
                session.clear();
                session.renew();
                // A sign-in ended because its token was deleted (a disconnect in another browser, an
                // administrator) gets "your session has ended" rather than "please log in"; rare, so the read
                // costs nothing that matters, and a failed one just gives the plainer page.
                if let Some(user) = user
                    && let Ok(false) = state.manager.holds_token_of(&user.owner()).await
                {
                    req.extensions_mut().insert(session::TokenGone);
                }
            }
            Ok(session::SignInCheck::Live(user)) => {
                req.extensions_mut().insert(user);
            }
            Ok(session::SignInCheck::Nobody) => {}
            Err(error) => {
                let error = AppError::from(error);
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
///
/// A GET (or HEAD) of a page that needs a sign-in the browser does not have (nobody signed in, or a sign-in
/// that has just ended) is not an error page but a `303 See Other` to the sign-in page, which says why and
/// remembers the page to come back to (see [`ReturnPath`]). Any other method (a form posted from a page left
/// open) gets the refusal page, and nothing is done.
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
        // Nobody signed in asking for a page is how a visit starts, not a refusal worth a line.
        if !matches!(app_error.shown(), AppError::NotSignedIn) || !is_get(res.request()) {
            app_error.log(res.request().method().as_str(), res.request().path());
        }
        let session = res.request().get_session();
        let state = res.request().app_data::<web::Data<PortalState>>();
        if app_error.ends_session()
            && let Some(state) = state
            && let Err(error) = session::sign_out(&session, &state.sign_ins).await
        {
            tracing::warn!(error = %super::error::error_chain(&error), "could not end the sign-in of a session whose token is gone");
        }
        if app_error.needs_consent()
            && let Err(error) = session::request_consent_round(&session)
        {
            tracing::warn!(error = %super::error::error_chain(&error), "could not ask for consent at the next login");
        }
        let request = res.request();
        if app_error.asks_to_sign_in() && is_get(request) {
            let next = ReturnPath::of_request(request.uri());
            let to = ReturnPath::sign_in_location(next.as_ref(), app_error.ends_session());
            let redirect = HttpResponse::SeeOther()
                .insert_header((header::LOCATION, to))
                .finish();
            return Ok(res.into_response(redirect).map_into_boxed_body());
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

/// Whether a request only reads (GET, HEAD): one that may be sent elsewhere to sign in first.
fn is_get(request: &HttpRequest) -> bool {
    matches!(*request.method(), Method::GET | Method::HEAD)
}

/// The layout of an error page: the signed-in user's, when the portal's state is there to give their
/// navigation (it always is in the portal; the fallback only keeps this middleware usable on its own).
fn error_layout(session: &Session, state: Option<&web::Data<PortalState>>) -> Layout {
    match state {
        Some(state) => Layout::new(session, state, ""),
        None => Layout::anonymous(""),
    }
}

/// Gives every request body a deadline: it must have arrived within `PortalState::body_read_timeout` of the
/// request's head. actix-web times out only the head (`client_request_timeout`); a body trickled one byte at
/// a time would otherwise hold its connection, and a worker's share of connections, for as long as the
/// sender likes.
///
/// Past the deadline the body reads as a timed-out [`PayloadError`] (the form extractor answers 408, see
/// [`is_body_timeout`]). A body that was not read to its end (timed out, or never read by the route) is kept
/// alive by the response's body until that has gone out: actix-http then closes the connection after the
/// response (`Connection: close`, and at most the server's client-disconnect timeout of lingering) instead of
/// reading the rest of the body, which it would do, for as long as it trickles, for a dropped chunked body.
pub async fn body_deadline(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<HoldingBody>, actix_web::Error> {
    let timeout = req
        .app_data::<web::Data<PortalState>>()
        .map(|state| state.body_read_timeout);
    let payload = req.take_payload();
    let (Some(timeout), false) = (timeout, matches!(payload, Payload::None)) else {
        // No body (every GET): nothing to time, and nothing allocated on the pages' hot path.
        req.set_payload(payload);
        return Ok(HoldingBody::wrap(next.call(req).await?, None));
    };
    let body = Rc::new(RefCell::new(BodyUnderDeadline {
        payload,
        deadline: Box::pin(actix_web::rt::time::sleep(timeout)),
        finished: false,
    }));
    let stream: Pin<Box<dyn Stream<Item = Result<web::Bytes, PayloadError>>>> =
        Box::pin(DeadlineBody(body.clone()));
    req.set_payload(Payload::Stream { payload: stream });
    let res = next.call(req).await?;
    let finished = body.borrow().finished;
    let unread = (!finished).then_some(body);
    Ok(HoldingBody::wrap(res, unread))
}

/// Whether an error from reading a request body is [`body_deadline`]'s timeout.
pub fn is_body_timeout(error: &actix_web::Error) -> bool {
    matches!(
        error.as_error::<PayloadError>(),
        Some(PayloadError::Io(io)) if io.kind() == std::io::ErrorKind::TimedOut
    )
}

/// A request body and its deadline, shared by the stream the route reads and [`body_deadline`].
struct BodyUnderDeadline {
    payload: Payload,
    deadline: Pin<Box<actix_web::rt::time::Sleep>>,
    /// Whether the body was read to its end.
    finished: bool,
}

/// The body as the route reads it: the request's own, until the deadline.
struct DeadlineBody(Rc<RefCell<BodyUnderDeadline>>);

/// A response body that holds its request's unread body until it has been sent (see [`body_deadline`]):
/// actix-http decides whether to close the connection when the last byte of the response is out, and closes
/// it only while the request body is still held.
pub struct HoldingBody {
    body: BoxBody,
    _unread: Option<Rc<RefCell<BodyUnderDeadline>>>,
}

impl HoldingBody {
    fn wrap(
        res: ServiceResponse<impl MessageBody + 'static>,
        unread: Option<Rc<RefCell<BodyUnderDeadline>>>,
    ) -> ServiceResponse<HoldingBody> {
        res.map_body(|_, body| HoldingBody {
            body: BoxBody::new(body),
            _unread: unread,
        })
    }
}

impl MessageBody for HoldingBody {
    type Error = <BoxBody as MessageBody>::Error;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<web::Bytes, Self::Error>>> {
        Pin::new(&mut self.body).poll_next(cx)
    }
}

impl Stream for DeadlineBody {
    type Item = Result<web::Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut body = self.0.borrow_mut();
        if body.finished {
            return Poll::Ready(None);
        }
        if body.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the request body did not arrive in time",
            )))));
        }
        let next = Pin::new(&mut body.payload).poll_next(cx);
        if let Poll::Ready(None) = next {
            body.finished = true;
        }
        next
    }
}
