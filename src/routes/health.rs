//! `GET /healthz`: 200 `{"status":"ok"}` when the token store can be read, 503 otherwise.

use actix_web::{HttpResponse, web};

use crate::state::PortalState;

/// `GET /healthz`: whether the token store answers a read (for load balancers and `serve` supervisors).
pub async fn healthz(state: web::Data<PortalState>) -> HttpResponse {
    match state.manager.check_store().await {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({"status": "ok"})),
        Err(error) => {
            tracing::error!(error = %super::error::error_chain(&error), "health check: the token store cannot be read");
            HttpResponse::ServiceUnavailable().json(serde_json::json!({"status": "unavailable"}))
        }
    }
}
