//! The embedded Zoho sandbox: Zoho Accounts and CRM v8 as Zoho behaves, quirks included, seeded with Zylker
//! Academy's data. Product code, not a mock: the demo runs on it and every test reaches it over real HTTP. The
//! behaviour it plays, and where Zoho's documentation leaves a choice, is in `docs/zoho-protocol.md`.
//!
//! - `accounts`: the consent page, the token endpoint (both grants, Zoho's limits), revocation.
//! - `crm`: `/crm/v8` — current user, org, module and field metadata, records and their search.
//! - [`data`]: the personas, the org, the metadata and the records every start holds (generated deterministically).
//! - `state`: codes, tokens, limits, counters, injections and the clock.
//! - `limits`: Zoho CRM's concurrency cap per edition, latency and API credits.
//! - `page_tokens`: the signed `page_token`s that reach records past the first 2,000.
//! - `state_file`: the file that keeps the state across restarts.
//! - `control`: `/_sandbox/…`, for tests and the demo.

mod accounts;
mod control;
mod crm;
pub mod data;
mod limits;
mod page_tokens;
mod state;
mod state_file;

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::ServerHandle;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::header;
use actix_web::middleware::{DefaultHeaders, Next, from_fn};
use actix_web::{App, HttpResponse, HttpServer, web};
use url::Url;

pub use control::CONTROL_HEADER;
pub use limits::{CrmLimits, Edition};
pub use page_tokens::DEFAULT_PAGE_TOKEN_TTL;
use state::SandboxState;

use crate::secret::Secret;
pub use state::{Injection, SandboxCounters};

/// The demo client that `zylker-portal serve` uses when no Zoho credentials are configured.
pub const DEMO_CLIENT_ID: &str = "1000.ZYLKERACADEMYDEMO";
/// The demo client's secret. Not a secret: it only opens the sandbox.
pub const DEMO_CLIENT_SECRET: &str = "zylker-academy-demo-secret";
/// The redirect URI the demo client is registered with when none is given: the portal's default callback.
pub const DEMO_REDIRECT_URI: &str = "http://localhost:8080/oauth/callback";

/// A client registered with the sandbox, as in Zoho's API console.
#[derive(Debug, Clone)]
pub struct SandboxClient {
    pub client_id: String,
    pub client_secret: Secret,
    /// Authorized redirect URIs; `redirect_uri` must equal one of them exactly.
    pub redirect_uris: Vec<String>,
}

impl SandboxClient {
    /// The demo client with these authorized redirect URIs.
    pub fn demo(redirect_uris: Vec<String>) -> Self {
        SandboxClient {
            client_id: DEMO_CLIENT_ID.to_owned(),
            client_secret: Secret::from(DEMO_CLIENT_SECRET),
            redirect_uris,
        }
    }
}

/// How to run a sandbox.
#[derive(Clone, Debug)]
pub struct SandboxConfig {
    /// The URL the sandbox calls itself (`accounts-server`, `api_domain`); `None`: `http://{bound address}`.
    pub public_url: Option<Url>,
    pub clients: Vec<SandboxClient>,
    /// Lifetime of access tokens (Zoho: one hour).
    pub access_ttl: Duration,
    /// Whether the test and demo control surface under `/_sandbox/` is on.
    pub control: bool,
    /// How slow and strict the CRM is: latency, concurrency cap, credits.
    pub crm: CrmLimits,
    /// The file that keeps issued codes and tokens, the clock, created records and spent credits across
    /// restarts (mode 0600, replaced atomically after every change); `None`: in memory only.
    pub state_file: Option<PathBuf>,
}

impl SandboxConfig {
    /// The demo client registered with `redirect_uri`, Zoho's one-hour tokens, the control surface on.
    pub fn demo(redirect_uri: impl Into<String>) -> Self {
        SandboxConfig {
            public_url: None,
            clients: vec![SandboxClient::demo(vec![redirect_uri.into()])],
            access_ttl: Duration::from_secs(3600),
            control: true,
            crm: CrmLimits::default(),
            state_file: None,
        }
    }
}

impl Default for SandboxConfig {
    /// The demo client with the portal's default callback; control surface off.
    fn default() -> Self {
        SandboxConfig {
            control: false,
            ..SandboxConfig::demo(DEMO_REDIRECT_URI)
        }
    }
}

/// A sandbox serving in the background.
pub struct RunningSandbox {
    url: Url,
    handle: ServerHandle,
    state: web::Data<SandboxState>,
}

impl RunningSandbox {
    /// The sandbox's public URL: its Accounts server and its CRM API domain.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The counters, as `GET /_sandbox/counters` reports them (works with the control surface off too).
    pub fn counters(&self) -> SandboxCounters {
        self.state.counters()
    }

    /// Moves the sandbox's clock forward: codes, access tokens and the refresh window see the later time.
    /// (These three write the state file, if there is one, before they return.)
    pub fn advance_clock(&self, by: Duration) {
        self.state.advance_clock(by);
        self.state.save();
    }

    /// Expires every live access token now; returns how many.
    pub fn expire_access_tokens(&self) -> usize {
        let expired = self.state.expire_access_tokens();
        self.state.save();
        expired
    }

    /// Revokes every refresh token and its access tokens; returns how many refresh tokens.
    pub fn revoke_refresh_tokens(&self) -> usize {
        let revoked = self.state.revoke_refresh_tokens();
        self.state.save();
        revoked
    }

    /// How long the `page_token`s issued from now on work (Zoho: a day, [`DEFAULT_PAGE_TOKEN_TTL`]), as
    /// `POST /_sandbox/page-token-ttl` sets it.
    pub fn set_page_token_ttl(&self, ttl: Duration) {
        self.state.page_tokens.set_ttl(ttl);
    }

    /// Queues an injection as `POST /_sandbox/inject` does.
    pub fn inject(&self, injection: Injection) -> Result<(), String> {
        self.state.inject(injection)
    }
}

/// Worker threads when the caller does not say: one keeps tests light and still serves many thousand
/// requests a second.
pub const DEFAULT_WORKERS: usize = 1;

/// Starts a sandbox on `listener` (bind port 0 in tests) and returns at once; it serves until the process ends
/// or [`RunningSandbox::stop`] is called. Must be called inside a tokio (or actix) runtime.
pub fn spawn(listener: TcpListener, config: SandboxConfig) -> std::io::Result<RunningSandbox> {
    spawn_with_workers(listener, config, DEFAULT_WORKERS)
}

/// [`spawn`] with `workers` server threads (the standalone `sandbox` command uses more for throughput).
pub fn spawn_with_workers(
    listener: TcpListener,
    config: SandboxConfig,
    workers: usize,
) -> std::io::Result<RunningSandbox> {
    let address = listener.local_addr()?;
    let url = match config.public_url {
        Some(url) => url,
        None => Url::parse(&format!("http://{address}"))
            .map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidInput, error))?,
    };
    let public_url = url.as_str().trim_end_matches('/').to_owned();
    let mut state = SandboxState::new(public_url, config.clients, config.access_ttl, config.crm);
    if let Some(path) = config.state_file.clone() {
        state.keep_in(path)?;
    }
    let state = web::Data::from(Arc::new(state));
    let control = config.control;
    let app_state = state.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(app_state.clone())
            .configure(|routes| mount(routes, control))
            .wrap(from_fn(save_after_changes))
            // Every answer, JSON, stylesheet, page or 404: the declared content type is the only one.
            .wrap(DefaultHeaders::new().add((header::X_CONTENT_TYPE_OPTIONS, "nosniff")))
    })
    .workers(workers.max(1))
    .disable_signals()
    .shutdown_timeout(2)
    .listen(listener)?
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    tracing::info!(
        %url,
        control,
        crm = ?config.crm,
        state_file = ?config.state_file,
        "Zoho sandbox serving"
    );
    Ok(RunningSandbox { url, handle, state })
}

/// Headers for the sandbox's HTML pages: a sign-in page is not framed, cached or leaked through Referer.
/// (`X-Content-Type-Options` is on every answer of the app, see [`spawn_with_workers`].)
fn page_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add((
            header::CONTENT_SECURITY_POLICY,
            // No form-action: the consent form's answer is a redirect to the client, which form-action would block.
            "default-src 'none'; style-src 'self'; frame-ancestors 'none'; base-uri 'none'",
        ))
        .add((header::REFERRER_POLICY, "no-referrer"))
        .add((header::X_FRAME_OPTIONS, "DENY"))
        .add((header::CACHE_CONTROL, "no-store"))
}

fn mount(routes: &mut web::ServiceConfig, control: bool) {
    routes
        .service(
            web::resource("/oauth/v2/auth")
                .wrap(page_headers())
                .route(web::get().to(accounts::consent_page))
                .route(web::post().to(accounts::decide)),
        )
        .route("/oauth/v2/token", web::post().to(accounts::token))
        .route("/oauth/v2/token/revoke", web::post().to(accounts::revoke))
        .route("/static/sandbox.css", web::get().to(stylesheet))
        .service(
            web::scope("/crm/v8")
                .wrap(actix_web::middleware::from_fn(crm::limit))
                .route("/users", web::get().to(crm::users))
                .route("/org", web::get().to(crm::org))
                .route("/settings/modules", web::get().to(crm::modules))
                .route("/settings/modules/{module}", web::get().to(crm::module))
                .route("/settings/fields", web::get().to(crm::fields))
                .route("/{module}", web::get().to(crm::list_records))
                .route("/{module}", web::post().to(crm::create_records))
                .route("/{module}/search", web::get().to(crm::search_records))
                .route("/{module}/{id}", web::get().to(crm::get_record))
                .route("/{module}/{id}", web::put().to(crm::update_record))
                .default_service(web::to(crm::unknown_url)),
        );
    if control {
        routes.configure(control::routes);
    }
}

async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(include_str!("../../static/sandbox/sandbox.css"))
}

impl RunningSandbox {
    /// Stops serving, gracefully, and writes the state file a last time (for the credits spent since the last
    /// change).
    pub async fn stop(self) {
        self.handle.stop(true).await;
        if self.state.is_kept() {
            let state = self.state.clone();
            let _ = web::block(move || state.save()).await;
        }
    }
}

/// Every change to the state comes by a POST (a consent, a token grant, a revocation, a created record, a
/// control call): after one, the state file is written before the answer goes out, on the blocking pool, so a
/// client that got its tokens can count on them surviving a restart. GETs change nothing but the credits, which
/// ride along with the next write.
async fn save_after_changes(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let changes = !matches!(*request.method(), Method::GET | Method::HEAD);
    let state = request.app_data::<web::Data<SandboxState>>().cloned();
    let response = next.call(request).await?;
    if changes && let Some(state) = state.filter(|state| state.is_kept()) {
        web::block(move || state.save()).await?;
    }
    Ok(response)
}
