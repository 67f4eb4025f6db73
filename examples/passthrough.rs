//! The least a portal page can cost in this stack, for `bench/portal-load.sh`: an actix-web server whose one
//! route makes the CRM call with reqwest (one client per worker, as the portal does) and passes Zoho's answer
//! on unread. No session, token store, JSON or HTML: what is left is the two HTTP exchanges every page needs.
//! Its throughput beside the sandbox's direct rate is the ceiling for any page that calls Zoho once.
//!
//! `PASSTHROUGH_BIND=127.0.0.1:18282 PASSTHROUGH_TARGET=http://… PASSTHROUGH_TOKEN=… cargo run --release
//! --example passthrough` (the bench script starts it).

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{App, HttpResponse, HttpServer, web};

struct Upstream {
    client: reqwest::Client,
    target: String,
    authorization: String,
}

async fn pass_through(upstream: web::Data<Upstream>) -> HttpResponse {
    let send = || {
        upstream
            .client
            .get(&upstream.target)
            .header(reqwest::header::AUTHORIZATION, &upstream.authorization)
            .send()
    };
    // As the portal's CRM client does: a GET whose kept-alive connection the server closed under it is sent
    // again once, so the floor answers what the portal answers.
    let answer = match send().await {
        Err(error) if zylker_portal::zoho::crm::closed_before_answer(&error) => send().await,
        answer => answer,
    };
    let answer = match answer {
        Ok(answer) => answer,
        Err(_) => return HttpResponse::BadGateway().finish(),
    };
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    match answer.bytes().await {
        Ok(body) => HttpResponse::build(status)
            .content_type("application/json")
            .body(body),
        Err(_) => HttpResponse::BadGateway().finish(),
    }
}

fn setting(name: &str) -> std::io::Result<String> {
    std::env::var(name).map_err(|_| std::io::Error::other(format!("{name} is not set")))
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let bind = setting("PASSTHROUGH_BIND")?;
    let target = setting("PASSTHROUGH_TARGET")?;
    let authorization = format!("Zoho-oauthtoken {}", setting("PASSTHROUGH_TOKEN")?);
    HttpServer::new(move || {
        // Built as the portal builds its CRM client: no redirects, a timeout.
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .expect("an HTTP client with rustls");
        App::new()
            .app_data(web::Data::new(Upstream {
                client,
                target: target.clone(),
                authorization: authorization.clone(),
            }))
            .route("/", web::get().to(pass_through))
    })
    .bind(bind)?
    .run()
    .await
}
