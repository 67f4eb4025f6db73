//! Building and running the portal: the zero2prod shape, so tests start the real app on port 0.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::cookie::Key;
use actix_web::dev::{Server, ServerHandle};
use actix_web::{App, HttpServer, middleware, web};
use base64::Engine;
use secrecy::{ExposeSecret, SecretSlice};
use url::Url;

use crate::routes;
use crate::state::{FieldsCache, PortalState};
use crate::telemetry::Telemetry;
use crate::tokens::SignIns;
use crate::tokens::{TokenManager, TokenStore};
use crate::zoho::{AccountsClient, ClientCredentials, CrmClient, CrmLimits, ZohoHosts};

pub use crate::routes::session::{SECURE_SESSION_COOKIE, SESSION_COOKIE, SESSION_TTL_DAYS};

/// Blocking threads per worker for token-store calls.
const STORE_THREADS_PER_WORKER: usize = 4;

/// How long a login in flight (state and PKCE verifier, kept on the server) stays good: [`PortalSettings`]'s
/// default. Zoho's authorization codes live two minutes; ten leave a person time to pick an account and read
/// the consent page.
pub const DEFAULT_PENDING_LOGIN_TTL: Duration = Duration::from_secs(10 * 60);

/// How long a request body may take to arrive after its head: [`PortalSettings`]'s default. The portal's forms
/// are a few hundred bytes; the head itself must arrive within actix-web's 5 seconds.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything the portal needs to run; built by `serve` from flags, by tests directly.
pub struct PortalSettings {
    /// The URL people reach the portal at; the redirect URL is `{public_url}/oauth/callback`.
    pub public_url: Url,
    /// The OAuth client registered with Zoho (its `redirect_url` is the callback above).
    pub client: ClientCredentials,
    /// Where logins start (`--accounts-url`); its origin is also an accepted `accounts-server`.
    pub accounts_url: Url,
    /// The comma-separated scopes to ask for.
    pub scope: String,
    /// Where tokens live.
    pub store: Arc<dyn TokenStore>,
    /// The session cookie key; `None`: a random key per start (sessions end at restart).
    pub session_key: Option<SessionKey>,
    /// Refresh an access token when fewer than this remain.
    pub refresh_leeway: Duration,
    /// Timeout of every call to Zoho.
    pub http_timeout: Duration,
    /// HTTP worker threads; `None`: one per CPU the process may use (actix-web's default).
    pub workers: Option<usize>,
    /// The sign-ins and logins in flight, kept on the server: opened from the store spec by
    /// [`open_portal_stores`](crate::tokens::open_portal_stores), or [`SignIns::in_memory`].
    pub sign_ins: SignIns,
    /// How many CRM calls may be in flight per Zoho org, and how long a page waits for its turn.
    pub crm_limits: CrmLimits,
    /// Where `GET /metrics` is served (`--metrics-bind`); `None`: no metrics are kept.
    pub metrics_listener: Option<TcpListener>,
    /// How long a login in flight stays good ([`DEFAULT_PENDING_LOGIN_TTL`]); a callback after that is
    /// refused and stores nothing.
    pub pending_login_ttl: Duration,
    /// How long a request body may take to arrive ([`DEFAULT_BODY_READ_TIMEOUT`]); a slower one is answered
    /// 408 and its connection closed.
    pub body_read_timeout: Duration,
}

/// The key that encrypts session cookies: at least 64 bytes, held as a `secrecy` secret (wiped on drop; `Debug`
/// never prints it).
#[derive(Debug, Clone)]
pub struct SessionKey(SecretSlice<u8>);

impl SessionKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        SessionKey(Key::generate().master().to_vec().into())
    }

    /// The raw key bytes (the first 64): what `zylker-portal session-key` prints, and what tests restart the
    /// portal with.
    pub fn master(&self) -> &[u8] {
        let bytes = self.0.expose_secret();
        &bytes[..bytes.len().min(64)]
    }

    /// Builds a key from raw bytes; fewer than 64 is a configuration error.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ConfigError> {
        if bytes.len() < 64 {
            return Err(ConfigError::SessionKeyTooShort(bytes.len()));
        }
        Ok(SessionKey(bytes.to_vec().into()))
    }

    /// The cookie key (signing and encryption keys derived from these bytes).
    fn cookie_key(&self) -> Key {
        // `from_bytes` took at least 64 bytes, which is all `Key::from` asks.
        Key::from(self.0.expose_secret())
    }
}

impl std::str::FromStr for SessionKey {
    type Err = ConfigError;

    /// Parses `SESSION_KEY`: hex, or base64 (standard or URL-safe, padded or not), at least 64 bytes decoded.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let is_hex = !text.is_empty()
            && text.len().is_multiple_of(2)
            && text.bytes().all(|b| b.is_ascii_hexdigit());
        let bytes = if is_hex {
            hex::decode(text).map_err(|_| ConfigError::SessionKeyEncoding)?
        } else {
            let engines = [
                &base64::engine::general_purpose::STANDARD,
                &base64::engine::general_purpose::STANDARD_NO_PAD,
                &base64::engine::general_purpose::URL_SAFE,
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            ];
            engines
                .iter()
                .find_map(|engine| engine.decode(text).ok())
                .ok_or(ConfigError::SessionKeyEncoding)?
        };
        SessionKey::from_bytes(&bytes)
    }
}

/// A configuration the portal cannot start with. Messages never include the secret values.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "SESSION_KEY decodes to {0} bytes; it must decode to at least 64 bytes, i.e. 128 hex digits or 86 base64 characters (e.g. `zylker-portal session-key` or `openssl rand -hex 64`)"
    )]
    SessionKeyTooShort(usize),
    #[error("SESSION_KEY is neither hex nor base64")]
    SessionKeyEncoding,
    #[error("the public URL {0} cannot carry paths (it must be http or https)")]
    PublicUrl(String),
    #[error("could not build the HTTP client for Zoho")]
    HttpClient(#[source] reqwest::Error),
    #[error("could not build the TLS configuration of the HTTP client for Zoho CRM")]
    CrmTls(#[source] rustls::Error),
    #[error("could not start the web server")]
    Io(#[from] std::io::Error),
}

/// A portal bound to its listener, ready to run.
pub struct Portal {
    port: u16,
    server: Server,
    metrics: Option<MetricsListener>,
}

/// The metrics listener beside the portal.
struct MetricsListener {
    port: u16,
    server: Server,
    telemetry: Arc<Telemetry>,
}

/// How often histograms are drained when nobody scrapes them (see [`Telemetry::run_upkeep`]).
const METRICS_UPKEEP_EVERY: Duration = Duration::from_secs(5);

impl Portal {
    /// Builds the portal on `listener` (bind port 0 in tests and read [`Portal::port`]).
    pub fn build(listener: TcpListener, settings: PortalSettings) -> Result<Portal, ConfigError> {
        if settings.public_url.cannot_be_a_base()
            || !matches!(settings.public_url.scheme(), "http" | "https")
        {
            return Err(ConfigError::PublicUrl(settings.public_url.to_string()));
        }
        let port = listener.local_addr()?.port();
        let secure_cookie = settings.public_url.scheme() == "https";
        let key = match settings.session_key {
            Some(key) => key.cookie_key(),
            None => {
                tracing::warn!(
                    "no SESSION_KEY configured: using a random key, so every session ends when the portal restarts (`zylker-portal session-key` prints a key to set)"
                );
                Key::generate()
            }
        };
        let accounts = AccountsClient::new(settings.client, settings.http_timeout)
            .map_err(ConfigError::HttpClient)?;
        let telemetry = Arc::new(if settings.metrics_listener.is_some() {
            Telemetry::with_metrics()
        } else {
            Telemetry::without_metrics()
        });
        let crm = CrmClient::new(settings.http_timeout)
            .map_err(ConfigError::CrmTls)?
            .with_telemetry(Arc::clone(&telemetry));
        let hosts = ZohoHosts::new(settings.accounts_url.clone());
        // Both listeners' `/healthz` share one probe, so that a hung store holds one thread however often asked.
        let health = Arc::new(routes::health::StoreHealth::new(Arc::clone(
            &settings.store,
        )));
        let manager = TokenManager::new(
            settings.store,
            accounts,
            crm.clone(),
            hosts,
            settings.refresh_leeway,
        )
        .with_limits(settings.crm_limits, Arc::clone(&telemetry))
        // A refresh lease outlives its holder's call to Zoho by a few seconds, no more.
        .with_refresh_lease_ttl(settings.http_timeout + Duration::from_secs(5));
        let metrics = match settings.metrics_listener {
            Some(listener) => Some(MetricsListener {
                port: listener.local_addr()?.port(),
                server: routes::metrics::metrics_server(
                    listener,
                    Arc::clone(&telemetry),
                    Arc::clone(&health),
                )?,
                telemetry: Arc::clone(&telemetry),
            }),
            None => None,
        };
        let telemetry = web::Data::from(telemetry);
        let health = web::Data::from(health);
        let state = web::Data::new(PortalState {
            manager,
            scope: settings.scope,
            accounts_url: settings.accounts_url,
            public_url: settings.public_url,
            fields_cache: FieldsCache::default(),
            admin_checks: dashmap::DashMap::default(),
            sign_ins: settings.sign_ins,
            navigation: dashmap::DashMap::default(),
            pending_login_ttl: settings.pending_login_ttl,
            body_read_timeout: settings.body_read_timeout,
        });
        let headers =
            routes::middleware::SecurityHeaders::new(&state.accounts_url, &state.public_url);
        let cookie_name = routes::session::session_cookie_name(secure_cookie);

        let mut server = HttpServer::new(move || {
            let session = routes::cookie_session::SessionCookie {
                name: cookie_name,
                key: key.clone(),
                secure: secure_cookie,
                max_age: actix_web::cookie::time::Duration::days(SESSION_TTL_DAYS),
            };
            App::new()
                .app_data(state.clone())
                .app_data(telemetry.clone())
                .app_data(health.clone())
                // This worker's own CRM client: its connections live on this worker's event loop, so a page's
                // CRM call never wakes another thread (see `CrmClient::for_worker`).
                .app_data(web::Data::new(crm.for_worker()))
                .app_data(routes::extractor_configs::query())
                .app_data(routes::extractor_configs::path())
                .app_data(routes::extractor_configs::payload())
                .configure(routes::configure)
                .default_service(web::to(routes::not_found))
                // Outermost last: headers see every response; error pages are rendered with the session.
                .wrap(middleware::from_fn(routes::middleware::error_pages))
                // A session whose sign-in is over is cleared before the handlers (and the error pages) see it.
                .wrap(middleware::from_fn(routes::middleware::sign_in_gate))
                // Behind https only the `__Host-` cookie is read: a plain `zylker_session` there could have been
                // planted from a sibling subdomain or over plain http (a login CSRF), so it is nobody's.
                .wrap(session)
                // Outside the error pages, so that a response whose body was not read closes its connection.
                .wrap(middleware::from_fn(routes::middleware::body_deadline))
                .wrap(middleware::from_fn(routes::middleware::cache_control))
                .wrap(middleware::from_fn(routes::middleware::request_log))
                .wrap(headers.default_headers())
                .wrap(middleware::from_fn(routes::metrics::count_pages))
        })
        // Store calls run on each worker's blocking pool; a few threads serve them all (the SQLite pool has 8
        // connections), where tokio's default of hundreds would each cost a stack and an allocator heap.
        .worker_max_blocking_threads(STORE_THREADS_PER_WORKER)
        // A connection whose client has closed its side ends at once, and the page's future with it: a page
        // nobody waits for leaves the CRM gate's queue and calls Zoho no more (see `zoho::limits`). A browser
        // never half-closes while it waits for an answer; a proxy closes the connection when its client goes.
        .h1_allow_half_closed(false);
        if let Some(workers) = settings.workers {
            server = server.workers(workers);
        }
        let server = server.listen(listener)?.run();
        Ok(Portal {
            port,
            server,
            metrics,
        })
    }

    /// The port the portal listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of the metrics listener, when there is one.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics.as_ref().map(|metrics| metrics.port)
    }

    /// A handle to stop the server (tests restart the portal with it).
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped (the metrics listener, when there is one, stops with the portal).
    pub async fn run(self) -> std::io::Result<()> {
        let Some(metrics) = self.metrics else {
            return self.server.await;
        };
        let (handle, upkeep) = metrics.start();
        let served = self.server.await;
        upkeep.abort();
        handle.stop(true).await;
        served
    }

    /// Serves in the background of the current tokio runtime; returns the handle that stops it (and the
    /// metrics listener with it).
    pub fn spawn(self) -> ServerHandle {
        let handle = self.server.handle();
        tokio::spawn(self.run());
        handle
    }
}

impl MetricsListener {
    /// Starts serving, and draining histograms every few seconds; returns the handles that stop both.
    fn start(self) -> (ServerHandle, tokio::task::JoinHandle<()>) {
        let handle = self.server.handle();
        tokio::spawn(self.server);
        let telemetry = self.telemetry;
        let upkeep = tokio::spawn(async move {
            let mut every = tokio::time::interval(METRICS_UPKEEP_EVERY);
            loop {
                every.tick().await;
                telemetry.run_upkeep();
            }
        });
        (handle, upkeep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_key_accepts_64_bytes_of_hex_or_base64() {
        let bytes = [7u8; 64];
        assert!(hex::encode(bytes).parse::<SessionKey>().is_ok());
        let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
        assert!(b64.parse::<SessionKey>().is_ok());
        let url_safe = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0xfbu8; 66]);
        assert!(url_safe.parse::<SessionKey>().is_ok());
    }

    #[test]
    fn session_key_under_64_bytes_is_a_configuration_error() {
        let short = hex::encode([1u8; 32]);
        let error = short.parse::<SessionKey>().unwrap_err();
        assert!(matches!(error, ConfigError::SessionKeyTooShort(32)));
        assert!(error.to_string().contains("at least 64 bytes"));
    }

    #[test]
    fn session_key_that_is_neither_hex_nor_base64_is_refused() {
        assert!(matches!(
            "not a key!".parse::<SessionKey>(),
            Err(ConfigError::SessionKeyEncoding)
        ));
    }

    #[test]
    fn session_key_debug_is_redacted() {
        let key = SessionKey::from_bytes(&[0xab; 64]).unwrap();
        let shown = format!("{key:?}");
        assert!(shown.contains("REDACTED"), "{shown}");
        assert!(
            !shown.contains("171") && !shown.to_lowercase().contains("ab, ab"),
            "{shown}"
        );
    }
}
