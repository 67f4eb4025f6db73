//! The test and demo control surface under `/_sandbox/`: mounted only when `SandboxConfig::control` is on.

use std::time::Duration;

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::state::{Injection, SandboxState};

/// Mounts the control routes.
pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route(
            "/_sandbox/expire-access-tokens",
            web::post().to(expire_access_tokens),
        )
        .route(
            "/_sandbox/revoke-refresh-tokens",
            web::post().to(revoke_refresh_tokens),
        )
        .route("/_sandbox/counters", web::get().to(counters))
        .route("/_sandbox/inject", web::post().to(inject))
        .route("/_sandbox/reset", web::post().to(reset))
        .route("/_sandbox/advance-clock", web::post().to(advance_clock));
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
