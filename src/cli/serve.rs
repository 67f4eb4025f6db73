//! `zylker-portal serve`: the portal's configuration, flag by flag, each with its environment variable.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use url::Url;

use crate::app::{
    DEFAULT_BODY_READ_TIMEOUT, DEFAULT_PENDING_LOGIN_TTL, Portal, PortalSettings, SessionKey,
};
use crate::sandbox::{DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, SandboxClient, SandboxConfig};
use crate::secret::Secret;
use crate::tokens::{Keyring, StoreSpec, encrypted_if, now_millis, open_portal_stores};
use crate::zoho::{ClientCredentials, CrmLimits};

/// The portal's flags. Their names, variables and defaults are fixed: the README's Configuration table lists them.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "PORTAL_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// The portal's public URL; the OAuth redirect URL is `{public-url}/oauth/callback`. A path prefix
    /// (`https://example.com/portal`) is kept in the redirect URL, but the portal's own links start at the root
    /// of its host: serve it at the root (a sub-path deployment is not supported yet). Absent: `http://` and
    /// the address listened on (`localhost` for a loopback or unspecified address), so that `--bind` alone
    /// moves the redirect URL with it.
    #[arg(long, env = "PORTAL_PUBLIC_URL", value_parser = parse_public_url)]
    pub public_url: Option<Url>,
    /// Zoho client id; with the secret absent too, the portal runs on the embedded sandbox (demo mode).
    #[arg(long, env = "ZOHO_CLIENT_ID")]
    pub client_id: Option<String>,
    /// Zoho client secret.
    #[arg(long, env = "ZOHO_CLIENT_SECRET", hide_env_values = true)]
    pub client_secret: Option<Secret>,
    /// Where logins start: Zoho Accounts of your home data centre.
    #[arg(
        long,
        env = "ZOHO_ACCOUNTS_URL",
        default_value = "https://accounts.zoho.com"
    )]
    pub accounts_url: Url,
    /// Scopes to ask for, comma-separated as Zoho wants them.
    #[arg(
        long,
        env = "ZOHO_SCOPE",
        default_value = crate::zoho::DEFAULT_SCOPE
    )]
    pub scope: String,
    /// Token store: sqlite:PATH (sqlite:PATH?create=1 also adds the token table to a database that holds other
    /// tables), sqlite::memory:, list, file:PATH, postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE or
    /// mysql://USER[:PASSWORD]@HOST[:PORT]/DATABASE.
    #[arg(
        long,
        env = "TOKEN_STORE",
        hide_env_values = true,
        default_value = "sqlite:zohooauth.db"
    )]
    pub store: StoreSpec,
    /// Encrypt the tokens at rest: comma-separated KID:KEY pairs (KEY 32 bytes, hex or base64; `zylker-portal
    /// token-key` prints one). The first key encrypts, every key decrypts. Absent: no encryption.
    #[arg(long, env = "TOKEN_ENCRYPTION_KEYS", hide_env_values = true)]
    pub token_encryption_keys: Option<Keyring>,
    /// Session cookie key, at least 64 bytes, hex or base64 (`zylker-portal session-key` prints one); absent: a
    /// random key per start.
    #[arg(long, env = "SESSION_KEY", hide_env_values = true)]
    pub session_key: Option<Secret>,
    /// Refresh an access token when fewer than this many seconds remain.
    #[arg(long, env = "TOKEN_REFRESH_LEEWAY_SECS", default_value_t = 60)]
    pub refresh_leeway_secs: u64,
    /// Where the embedded sandbox listens in demo mode.
    #[arg(long, env = "SANDBOX_BIND", default_value = "127.0.0.1:8081")]
    pub sandbox_bind: SocketAddr,
    /// HTTP worker threads (each runs its own event loop); default: one per CPU the process may use. Give a
    /// portal that has one CPU to itself one worker.
    #[arg(long, env = "PORTAL_WORKERS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: Option<u16>,
    /// The most CRM calls this portal has in flight per Zoho org: Zoho's cap for the org's edition (Free 5,
    /// Standard 10, Professional 15, Enterprise 20, Ultimate 25), divided between the portals that share it.
    #[arg(long, env = "ZOHO_CRM_CONCURRENCY", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub crm_concurrency: u32,
    /// How long a page waits for its turn to call Zoho CRM (and keeps trying after Zoho's 429s) before it
    /// answers "Zoho is busy" (503).
    #[arg(long, env = "ZOHO_CRM_QUEUE_TIMEOUT_MS", default_value_t = 10_000)]
    pub crm_queue_timeout_ms: u64,
    /// Serve `GET /metrics` (Prometheus text) on this address, apart from the public one; absent: no metrics.
    #[arg(long, env = "METRICS_BIND")]
    pub metrics_bind: Option<SocketAddr>,
    /// Demo mode: Zoho's limits in the embedded sandbox.
    #[command(flatten)]
    pub sandbox_crm: super::sandbox::CrmLimitArgs,
    /// Demo mode: concurrent CRM calls the embedded sandbox allows, instead of the edition's cap; 0: no cap.
    #[arg(long, env = "SANDBOX_CRM_CONCURRENCY")]
    pub sandbox_crm_concurrency: Option<usize>,
    /// Demo mode: the file that keeps the embedded sandbox's tokens and clock across restarts, or `none`;
    /// default `zylker-sandbox.json` beside the token store when that is a file, else none.
    #[arg(long, env = "SANDBOX_STATE", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub sandbox_state: Option<String>,
}

impl ServeArgs {
    /// Runs the portal; with no Zoho client configured, first starts the embedded sandbox (demo mode).
    pub async fn run(self) -> anyhow::Result<()> {
        // An empty value (`ZOHO_CLIENT_ID=` in a unit file or a `.env`) means "not set", never a client whose id
        // is the empty string.
        let client_id = self.client_id.as_deref().filter(|id| !id.is_empty());
        let client_secret = self
            .client_secret
            .as_ref()
            .filter(|secret| !secret.expose_secret().is_empty());
        let demo = match (client_id, client_secret) {
            (Some(_), Some(_)) => false,
            (None, None) => true,
            (Some(_), None) => anyhow::bail!(
                "ZOHO_CLIENT_ID (--client-id) is set but ZOHO_CLIENT_SECRET (--client-secret) is not (an empty value counts as not set): set both, or neither for demo mode"
            ),
            (None, Some(_)) => anyhow::bail!(
                "ZOHO_CLIENT_SECRET (--client-secret) is set but ZOHO_CLIENT_ID (--client-id) is not (an empty value counts as not set): set both, or neither for demo mode"
            ),
        };
        // The parse error says what is wrong (length, encoding), never the key itself.
        let session_key = self
            .session_key
            .as_ref()
            .map(|key| key.expose_secret().parse::<SessionKey>())
            .transpose()
            .context("invalid SESSION_KEY (--session-key)")?;
        // Bound first: a public URL that was not given is made from the address actually bound (port 0 too).
        let listener = std::net::TcpListener::bind(self.bind)
            .with_context(|| format!("cannot listen on {} (--bind / PORTAL_BIND)", self.bind))?;
        let bound = listener
            .local_addr()
            .context("cannot read the address listened on")?;
        let public_url = match &self.public_url {
            Some(given) => {
                log_port_mismatch(given, bound, demo);
                given.clone()
            }
            None => public_url_for(bound)?,
        };
        let redirect_url = callback_url(&public_url)?;
        let sandbox_state = if demo {
            super::sandbox::state_file_for(self.sandbox_state.as_deref(), &self.store)
        } else {
            None
        };
        if let Some(state_file) = &sandbox_state {
            super::sandbox::refuse_state_file_in_store(state_file, &self.store)?;
        }
        // Opening blocks (a file, a database's first connections), and the database drivers run runtimes of
        // their own, which cannot start on an async worker: off to the blocking pool.
        let spec = self.store.clone();
        let stores =
            tokio::task::spawn_blocking(move || open_portal_stores(&spec, now_millis() / 1000))
                .await
                .context("the task opening the token store failed")?
                .with_context(|| format!("cannot open the token store {}", self.store))?;
        let tokens = encrypted_if(stores.tokens, self.token_encryption_keys.as_ref());
        if let Some(keyring) = &self.token_encryption_keys {
            // Key ids only: the keys themselves never reach the log.
            tracing::info!(
                encrypting_key = keyring.encrypting_key_id(),
                key_ids = %keyring,
                "token encryption is on: secrets are written encrypted under the first key and read under any; \
                 Zoho's SDKs (the Python SDK's DBStore included) cannot read the encrypted rows"
            );
        }

        // Demo mode: the embedded sandbox plays Zoho, with the demo client registered for our callback.
        let (client, accounts_url, sandbox) = if demo {
            let listener = std::net::TcpListener::bind(self.sandbox_bind).with_context(|| {
                format!(
                    "cannot listen on {} for the sandbox (--sandbox-bind / SANDBOX_BIND)",
                    self.sandbox_bind
                )
            })?;
            let sandbox_url = sandbox_public_url(&public_url, listener.local_addr()?)?;
            let config = SandboxConfig {
                public_url: Some(sandbox_url),
                clients: vec![SandboxClient {
                    client_id: DEMO_CLIENT_ID.to_owned(),
                    client_secret: Secret::from(DEMO_CLIENT_SECRET),
                    redirect_uris: vec![redirect_url.to_string()],
                }],
                access_ttl: Duration::from_secs(3600),
                control: true,
                crm: self.sandbox_crm.limits(self.sandbox_crm_concurrency),
                state_file: sandbox_state,
            };
            let sandbox =
                crate::sandbox::spawn(listener, config).context("cannot start the sandbox")?;
            let client = ClientCredentials {
                client_id: DEMO_CLIENT_ID.to_owned(),
                client_secret: Secret::from(DEMO_CLIENT_SECRET),
                redirect_url: redirect_url.clone(),
            };
            let accounts_url = sandbox.url().clone();
            (client, accounts_url, Some(sandbox))
        } else {
            let client = ClientCredentials {
                client_id: client_id.unwrap_or_default().to_owned(),
                client_secret: client_secret.cloned().unwrap_or_default(),
                redirect_url: redirect_url.clone(),
            };
            (client, self.accounts_url.clone(), None)
        };

        let metrics_listener = self
            .metrics_bind
            .map(|address| {
                std::net::TcpListener::bind(address).with_context(|| {
                    format!("cannot listen on {address} (--metrics-bind / METRICS_BIND)")
                })
            })
            .transpose()?;
        let portal = Portal::build(
            listener,
            PortalSettings {
                public_url: public_url.clone(),
                client,
                accounts_url: accounts_url.clone(),
                scope: self.scope.clone(),
                store: tokens,
                session_key,
                refresh_leeway: Duration::from_secs(self.refresh_leeway_secs),
                http_timeout: HTTP_TIMEOUT,
                workers: self.workers.map(usize::from),
                sign_ins: stores.sign_ins,
                crm_limits: CrmLimits {
                    concurrency: self.crm_concurrency as usize,
                    queue_timeout: Duration::from_millis(self.crm_queue_timeout_ms),
                },
                metrics_listener,
                pending_login_ttl: DEFAULT_PENDING_LOGIN_TTL,
                body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            },
        )?;

        if let Some(sandbox) = &sandbox {
            tracing::info!(
                sandbox = %sandbox.url(),
                "demo mode: no ZOHO_CLIENT_ID/ZOHO_CLIENT_SECRET, so the portal logs in on the embedded Zoho sandbox"
            );
            println!(
                "\nZylker Academy portal: {public}\n\n  demo mode: no Zoho account needed.\n  The embedded Zoho sandbox runs at {sandbox}; on its sign-in page pick one of:\n{personas}\n  Set ZOHO_CLIENT_ID and ZOHO_CLIENT_SECRET to use real Zoho.\n",
                public = public_url,
                sandbox = sandbox.url(),
                personas = super::sandbox::persona_lines("    ").join("\n"),
            );
        } else {
            println!(
                "\nZylker Academy portal: {public}\n  Zoho Accounts: {accounts}\n  Redirect URL to register with Zoho: {redirect_url}\n",
                public = public_url,
                accounts = accounts_url,
            );
        }
        tracing::info!(bind = %bound, public_url = %public_url, demo, "portal listening");
        if let Some(address) = self.metrics_bind {
            tracing::info!(%address, "metrics at GET /metrics");
        }
        portal
            .run()
            .await
            .context("the portal stopped with an error")?;
        if let Some(sandbox) = sandbox {
            sandbox.stop().await;
        }
        Ok(())
    }
}

/// Timeout of every call to Zoho.
const HTTP_TIMEOUT: Duration = Duration::from_secs(15);

/// `--public-url`: an http or https URL. A value without a scheme (`localhost:8080`, which would otherwise parse
/// as the scheme `localhost`) gets an error that says so.
fn parse_public_url(text: &str) -> Result<Url, String> {
    match Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => Ok(url),
        _ if !text.contains("://") => Err(format!(
            "the public URL has no scheme: start it with http:// or https:// (e.g. http://{text})"
        )),
        Ok(url) => Err(format!(
            "the public URL must be an http:// or https:// URL, not {}:",
            url.scheme()
        )),
        Err(error) => Err(format!("not a URL: {error}")),
    }
}

/// The public URL when none was given: `http://` and the bound address, with `localhost` for a loopback or
/// unspecified address (the name a browser on this machine uses; the demo's sandbox then takes `127.0.0.1`, a
/// different site, so the two keep their cookies apart).
fn public_url_for(bound: SocketAddr) -> anyhow::Result<Url> {
    let ip = bound.ip();
    let host = if ip.is_loopback() || ip.is_unspecified() {
        "localhost".to_owned()
    } else if ip.is_ipv6() {
        format!("[{ip}]")
    } else {
        ip.to_string()
    };
    Url::parse(&format!("http://{host}:{}", bound.port()))
        .with_context(|| format!("cannot make the public URL from {bound}"))
}

/// A public URL on another port than the one listened on is what a reverse proxy does, so it is allowed; it is
/// said once at start, since without such a proxy every login would come back to a port nobody answers. In
/// demo mode, rarely behind a proxy, it is a warning.
fn log_port_mismatch(public_url: &Url, bound: SocketAddr, demo: bool) {
    let public_port = public_url.port_or_known_default();
    if public_port == Some(bound.port()) {
        return;
    }
    let public_port = public_port.map_or("none".to_owned(), |port| port.to_string());
    let message = format!(
        "the public URL's port ({public_port}) is not the port the portal listens on ({}): Zoho sends people back to {public_url}, so a reverse proxy must forward it here",
        bound.port()
    );
    if demo {
        tracing::warn!(public_url = %public_url, bind = %bound, "{message}");
    } else {
        tracing::info!(public_url = %public_url, bind = %bound, "{message}");
    }
}

/// `{public-url}/oauth/callback`: the callback's segments are appended to the public URL's path, so that a path
/// prefix stays (`Url::join` would replace a last segment with no trailing slash).
fn callback_url(public_url: &Url) -> anyhow::Result<Url> {
    let mut url = public_url.clone();
    url.set_query(None);
    url.set_fragment(None);
    url.path_segments_mut()
        .map_err(|()| {
            anyhow::anyhow!(
                "the public URL {public_url} cannot carry the callback path (PORTAL_PUBLIC_URL)"
            )
        })?
        .pop_if_empty()
        .extend(["oauth", "callback"]);
    Ok(url)
}

/// The sandbox's URL: on the loopback name the portal does not use, so that the two are different sites (as
/// Zoho and the portal are) and their cookies stay apart; otherwise the portal's host.
fn sandbox_public_url(public_url: &Url, bound: SocketAddr) -> anyhow::Result<Url> {
    let portal_host = public_url.host_str().unwrap_or("localhost");
    let host = if bound.ip().is_loopback() || bound.ip().is_unspecified() {
        match portal_host {
            "localhost" => "127.0.0.1".to_owned(),
            "127.0.0.1" | "[::1]" => "localhost".to_owned(),
            other if bound.ip().is_unspecified() => other.to_owned(),
            _ => bound.ip().to_string(),
        }
    } else {
        bound.ip().to_string()
    };
    Url::parse(&format!("http://{host}:{}", bound.port()))
        .with_context(|| format!("cannot make the sandbox URL from {bound}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_url_is_appended_to_the_public_url_path() {
        for (public, expected) in [
            ("https://x", "https://x/oauth/callback"),
            ("https://x/", "https://x/oauth/callback"),
            ("https://x/portal", "https://x/portal/oauth/callback"),
            ("https://x/portal/", "https://x/portal/oauth/callback"),
            (
                "http://localhost:8080",
                "http://localhost:8080/oauth/callback",
            ),
        ] {
            let url = callback_url(&Url::parse(public).unwrap()).unwrap();
            assert_eq!(url.as_str(), expected, "for {public}");
        }
    }

    #[test]
    fn a_public_url_without_a_scheme_is_refused_saying_so() {
        for text in [
            "localhost:8080",
            "portal.zylker.academy",
            "127.0.0.1:8080/portal",
        ] {
            let error = parse_public_url(text).expect_err(text);
            assert!(
                error.contains("no scheme") && error.contains("http://"),
                "{text}: {error}"
            );
        }
        assert!(parse_public_url("ftp://x.example").is_err());
        assert_eq!(
            parse_public_url("https://portal.zylker.academy")
                .map(String::from)
                .as_deref(),
            Ok("https://portal.zylker.academy/")
        );
    }

    #[test]
    fn a_public_url_not_given_follows_the_bound_address() {
        for (bound, expected) in [
            ("127.0.0.1:18080", "http://localhost:18080/"),
            ("0.0.0.0:8080", "http://localhost:8080/"),
            ("[::1]:9000", "http://localhost:9000/"),
            ("192.0.2.7:8080", "http://192.0.2.7:8080/"),
            ("[2001:db8::7]:8080", "http://[2001:db8::7]:8080/"),
        ] {
            let url = public_url_for(bound.parse().unwrap()).unwrap();
            assert_eq!(url.as_str(), expected, "for {bound}");
        }
    }

    #[test]
    fn a_public_url_that_cannot_carry_a_path_is_refused() {
        assert!(callback_url(&Url::parse("mailto:someone@example.com").unwrap()).is_err());
    }

    /// `serve`'s flags alone, parsed as the command line would be.
    fn serve_args(args: &[&str]) -> Result<ServeArgs, clap::Error> {
        #[derive(clap::Parser)]
        struct Probe {
            #[command(flatten)]
            serve: ServeArgs,
        }
        use clap::Parser;
        Probe::try_parse_from(std::iter::once("serve").chain(args.iter().copied()))
            .map(|probe| probe.serve)
    }

    #[test]
    fn the_gate_and_metrics_flags_parse_with_their_defaults() {
        let defaults = serve_args(&[]).unwrap();
        assert_eq!(
            (defaults.crm_concurrency, defaults.crm_queue_timeout_ms),
            (10, 10_000)
        );
        assert_eq!(defaults.metrics_bind, None);

        let given = serve_args(&[
            "--crm-concurrency",
            "5",
            "--crm-queue-timeout-ms",
            "250",
            "--metrics-bind",
            "127.0.0.1:9100",
        ])
        .unwrap();
        assert_eq!(
            (given.crm_concurrency, given.crm_queue_timeout_ms),
            (5, 250)
        );
        assert_eq!(given.metrics_bind, Some("127.0.0.1:9100".parse().unwrap()));
    }

    #[test]
    fn a_gate_of_zero_calls_and_unreadable_values_are_refused() {
        assert!(serve_args(&["--crm-concurrency", "0"]).is_err());
        assert!(serve_args(&["--crm-queue-timeout-ms", "-1"]).is_err());
        assert!(serve_args(&["--metrics-bind", "somewhere"]).is_err());
    }
}
