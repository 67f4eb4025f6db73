//! `GET /healthz`: 200 `{"status":"ok"}` when the token store can be read, 503 otherwise.

use actix_web::{HttpResponse, web};

use crate::app::PortalState;

/// `GET /healthz`: whether the token store answers a read (for load balancers and `serve` supervisors).
pub async fn healthz(state: web::Data<PortalState>) -> HttpResponse {
    let store = state.store.clone();
    // Any read proves the store answers; an id that is never stored keeps it cheap.
    match web::block(move || store.find_token_by_id("healthz-probe")).await {
        Ok(Ok(_)) => HttpResponse::Ok().json(serde_json::json!({"status": "ok"})),
        Ok(Err(error)) => {
            tracing::error!(error = %super::error::error_chain(&error), "health check: the token store cannot be read");
            HttpResponse::ServiceUnavailable().json(serde_json::json!({"status": "unavailable"}))
        }
        Err(_) => {
            HttpResponse::ServiceUnavailable().json(serde_json::json!({"status": "unavailable"}))
        }
    }
}
