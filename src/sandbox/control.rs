//! The test and demo control surface under `/_sandbox/`: mounted only when `SandboxConfig::control` is on.
//!
//! The surface needs no credentials, so a state-changing call must be one that no other site can make from a
//! browser: a cross-site form or a `fetch` without a CORS preflight can send only `text/plain`, form or
//! multipart bodies and no custom header. Every `POST` therefore needs `Content-Type: application/json` and
//! [`CONTROL_HEADER`]`: 1`; either one alone would make a browser ask first (a preflight), and the sandbox
//! grants no preflight. `GET /_sandbox/counters` changes nothing and stays a plain GET.

use std::time::Duration;

use actix_web::HttpMessage as _;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::{Next, from_fn};
use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::state::{Injection, SandboxState};

/// The header every state-changing control call carries, with the value `1`.
pub const CONTROL_HEADER: &str = "x-sandbox-control";

/// Mounts the control routes.
pub fn routes(config: &mut web::ServiceConfig) {
    config.service(
        web::scope("/_sandbox")
            .wrap(from_fn(refuse_cross_site_calls))
            .route(
                "/expire-access-tokens",
                web::post().to(expire_access_tokens),
            )
            .route(
                "/revoke-refresh-tokens",
                web::post().to(revoke_refresh_tokens),
            )
            .route("/counters", web::get().to(counters))
            .route("/inject", web::post().to(inject))
            .route("/reset", web::post().to(reset))
            .route("/advance-clock", web::post().to(advance_clock))
            .route("/page-token-ttl", web::post().to(page_token_ttl))
            .route("/records/{module}/bulk", web::post().to(insert_bulk)),
    );
}

/// Why a control call was refused, if it was: see the module's first paragraph.
fn cross_site_refusal(request: &ServiceRequest) -> Option<HttpResponse> {
    if matches!(*request.method(), Method::GET | Method::HEAD) {
        return None;
    }
    let json = request
        .mime_type()
        .ok()
        .flatten()
        .is_some_and(|mime| mime.essence_str() == "application/json");
    if !json {
        return Some(HttpResponse::UnsupportedMediaType().json(json!({
            "ok": false,
            "error": "control calls take Content-Type: application/json",
        })));
    }
    let marked = request
        .headers()
        .get(CONTROL_HEADER)
        .is_some_and(|value| value.as_bytes() == b"1");
    if !marked {
        return Some(HttpResponse::Forbidden().json(json!({
            "ok": false,
            "error": format!("control calls carry the header {CONTROL_HEADER}: 1"),
        })));
    }
    None
}

async fn refuse_cross_site_calls(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    match cross_site_refusal(&request) {
        Some(refusal) => Ok(request.into_response(refusal).map_into_right_body()),
        None => Ok(next.call(request).await?.map_into_left_body()),
    }
}

async fn expire_access_tokens(sandbox: web::Data<SandboxState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({"expired": sandbox.expire_access_tokens()}))
}

async fn revoke_refresh_tokens(sandbox: web::Data<SandboxState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({"revoked": sandbox.revoke_refresh_tokens()}))
}

async fn counters(sandbox: web::Data<SandboxState>) -> HttpResponse {
    HttpResponse::Ok().json(sandbox.counters())
}

fn bad_request(error: impl std::fmt::Display) -> HttpResponse {
    HttpResponse::BadRequest().json(json!({"ok": false, "error": error.to_string()}))
}

async fn inject(body: web::Bytes, sandbox: web::Data<SandboxState>) -> HttpResponse {
    let injection: Injection = match serde_json::from_slice(&body) {
        Ok(injection) => injection,
        Err(error) => return bad_request(error),
    };
    match sandbox.inject(injection) {
        Ok(()) => HttpResponse::Ok().json(json!({"ok": true})),
        Err(error) => bad_request(error),
    }
}

async fn reset(sandbox: web::Data<SandboxState>) -> HttpResponse {
    sandbox.reset();
    HttpResponse::Ok().json(json!({"ok": true}))
}

/// `{"seconds": N}`: moves the sandbox's clock forward, so tests pass code, token and window lifetimes
/// without sleeping.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Advance {
    seconds: u64,
}

async fn advance_clock(body: web::Bytes, sandbox: web::Data<SandboxState>) -> HttpResponse {
    let advance: Advance = match serde_json::from_slice(&body) {
        Ok(advance) => advance,
        Err(error) => return bad_request(error),
    };
    let offset_ms = sandbox.advance_clock(Duration::from_secs(advance.seconds));
    HttpResponse::Ok().json(json!({"offset_seconds": offset_ms / 1000}))
}

/// `{"seconds": N}`: how long the `page_token`s issued from now on work (Zoho: a day), so that a test can see
/// one expire.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PageTokenTtl {
    seconds: u64,
}

async fn page_token_ttl(body: web::Bytes, sandbox: web::Data<SandboxState>) -> HttpResponse {
    let ttl: PageTokenTtl = match serde_json::from_slice(&body) {
        Ok(ttl) => ttl,
        Err(error) => return bad_request(error),
    };
    sandbox
        .page_tokens
        .set_ttl(Duration::from_secs(ttl.seconds));
    HttpResponse::Ok().json(json!({"ok": true}))
}

/// `{"count": N}`: inserts N records into the module at once (a module large enough for `page_token` paging);
/// answers their ids, oldest first.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Bulk {
    count: usize,
}

async fn insert_bulk(
    module: web::Path<String>,
    body: web::Bytes,
    sandbox: web::Data<SandboxState>,
) -> HttpResponse {
    let bulk: Bulk = match serde_json::from_slice(&body) {
        Ok(bulk) => bulk,
        Err(error) => return bad_request(error),
    };
    match sandbox.insert_bulk(&module, bulk.count) {
        Ok(ids) => HttpResponse::Ok().json(json!({"ok": true, "ids": ids})),
        Err(error) => bad_request(error),
    }
}
