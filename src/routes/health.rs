//! `GET /healthz`: 200 `{"status":"ok"}` when the token store can be read, 503 with the reason otherwise.

use actix_web::{HttpResponse, web};

use crate::state::PortalState;

/// `GET /healthz`: whether the token store answers a read (for load balancers and `serve` supervisors).
pub async fn healthz(state: web::Data<PortalState>) -> HttpResponse {
    match state.manager.check_store().await {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({"status": "ok"})),
        Err(error) => {
            // The stores' errors name the store with its password masked and carry no token: the reason may
            // go to whoever asks, so that an operator sees at once what the store lacks.
            let reason = super::error::error_chain(&error);
            tracing::error!(error = %reason, "health check: the token store cannot be read");
            HttpResponse::ServiceUnavailable()
                .json(serde_json::json!({"status": "unavailable", "store": reason}))
        }
    }
}
