//! The metrics side of the web layer: every page counted by route pattern and status, and `GET /metrics` (with
//! a `/healthz` that says why) on a listener of its own (`--metrics-bind`), never on the public one.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{App, HttpResponse, HttpServer, web};

use super::health::StoreHealth;
use crate::telemetry::{Telemetry, UNMATCHED_ROUTE};

/// Counts each answered page under its route pattern (`/crm/{module}`, never the path asked) and status.
pub async fn count_pages(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let telemetry = req
        .app_data::<web::Data<Telemetry>>()
        .filter(|telemetry| telemetry.has_metrics())
        .cloned();
    let res = next.call(req).await;
    if let Some(telemetry) = telemetry {
        let (pattern, status) = match &res {
            Ok(res) => (res.request().match_pattern(), res.status()),
            Err(error) => (None, error.as_response_error().status_code()),
        };
        telemetry.page(
            pattern.as_deref().unwrap_or(UNMATCHED_ROUTE),
            status.as_u16(),
        );
    }
    res
}

/// The metrics listener: `GET /metrics` in Prometheus' text format, and `GET /healthz` that says why the store
/// is unavailable (see [`super::health`]); everything else 404. One worker: a scrape every few seconds needs no
/// more.
pub fn metrics_server(
    listener: TcpListener,
    telemetry: Arc<Telemetry>,
    health: Arc<StoreHealth>,
) -> std::io::Result<Server> {
    let telemetry = web::Data::from(telemetry);
    let health = web::Data::from(health);
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(telemetry.clone())
            .app_data(health.clone())
            .route("/metrics", web::get().to(render_metrics))
            .route(
                "/healthz",
                web::get().to(super::health::healthz_with_reason),
            )
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run())
}

async fn render_metrics(telemetry: web::Data<Telemetry>) -> HttpResponse {
    match telemetry.render() {
        Some(text) => HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4; charset=utf-8")
            .body(text),
        None => HttpResponse::NotFound().finish(),
    }
}
