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
use crate::tokens::{StoreSpec, now_millis, open_portal_stores};
use crate::zoho::{ClientCredentials, CrmLimits};

/// The portal's flags. Their names, variables and defaults are fixed: the README's Configuration table lists them.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "PORTAL_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// The portal's public URL; the OAuth redirect URL is `{public-url}/oauth/callback`. A path prefix
    /// (`https://example.com/portal`) is kept in the redirect URL, but the portal's own links start at the root
    /// of its host: serve it at the root (a sub-path deployment is not supported yet).
    #[arg(
        long,
        env = "PORTAL_PUBLIC_URL",
        default_value = "http://localhost:8080"
    )]
    pub public_url: Url,
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
    /// Token store: sqlite:PATH, sqlite::memory:, list or file:PATH.
    #[arg(long, env = "TOKEN_STORE", default_value = "sqlite:zohooauth.db")]
    pub store: StoreSpec,
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
        let demo = match (&self.client_id, &self.client_secret) {
            (Some(_), Some(_)) => false,
            (None, None) => true,
            (Some(_), None) => anyhow::bail!(
                "ZOHO_CLIENT_ID (--client-id) is set but ZOHO_CLIENT_SECRET (--client-secret) is not: set both, or neither for demo mode"
            ),
            (None, Some(_)) => anyhow::bail!(
                "ZOHO_CLIENT_SECRET (--client-secret) is set but ZOHO_CLIENT_ID (--client-id) is not: set both, or neither for demo mode"
            ),
        };
        // The parse error says what is wrong (length, encoding), never the key itself.
        let session_key = self
            .session_key
            .as_ref()
            .map(|key| key.expose_secret().parse::<SessionKey>())
            .transpose()
            .context("invalid SESSION_KEY (--session-key)")?;
        let redirect_url = callback_url(&self.public_url)?;
        let stores = open_portal_stores(&self.store, now_millis() / 1000)
            .with_context(|| format!("cannot open the token store {}", self.store))?;

        // Demo mode: the embedded sandbox plays Zoho, with the demo client registered for our callback.
        let (client, accounts_url, sandbox) = if demo {
            let listener = std::net::TcpListener::bind(self.sandbox_bind).with_context(|| {
                format!(
                    "cannot listen on {} for the sandbox (SANDBOX_BIND)",
                    self.sandbox_bind
                )
            })?;
            let sandbox_url = sandbox_public_url(&self.public_url, listener.local_addr()?)?;
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
                state_file: super::sandbox::state_file_for(
                    self.sandbox_state.as_deref(),
                    &self.store,
                ),
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
                client_id: self.client_id.clone().unwrap_or_default(),
                client_secret: self.client_secret.clone().unwrap_or_default(),
                redirect_url: redirect_url.clone(),
            };
            (client, self.accounts_url.clone(), None)
        };

        let listener = std::net::TcpListener::bind(self.bind)
            .with_context(|| format!("cannot listen on {} (PORTAL_BIND)", self.bind))?;
        let metrics_listener = self
            .metrics_bind
            .map(|address| {
                std::net::TcpListener::bind(address)
                    .with_context(|| format!("cannot listen on {address} (METRICS_BIND)"))
            })
            .transpose()?;
        let portal = Portal::build(
            listener,
            PortalSettings {
                public_url: self.public_url.clone(),
                client,
                accounts_url: accounts_url.clone(),
                scope: self.scope.clone(),
                store: stores.tokens,
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
                public = self.public_url,
                sandbox = sandbox.url(),
                personas = super::sandbox::persona_lines("    ").join("\n"),
            );
        } else {
            println!(
                "\nZylker Academy portal: {public}\n  Zoho Accounts: {accounts}\n  Redirect URL to register with Zoho: {redirect_url}\n",
                public = self.public_url,
                accounts = accounts_url,
            );
        }
        tracing::info!(bind = %self.bind, public_url = %self.public_url, demo, "portal listening");
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
