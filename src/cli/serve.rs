//! `zylker-portal serve`: the portal's configuration, flag by flag, each with its environment variable.

use std::net::SocketAddr;

use clap::Args;
use url::Url;

use crate::tokens::StoreSpec;

/// The portal's flags (issue 4 fixes their names, variables and defaults).
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "PORTAL_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// The portal's public URL; the OAuth redirect URL is `{public-url}/oauth/callback`.
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
    pub client_secret: Option<String>,
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
        default_value = "ZohoCRM.modules.ALL,ZohoCRM.settings.modules.READ,ZohoCRM.settings.fields.READ,ZohoCRM.users.READ,ZohoCRM.org.READ"
    )]
    pub scope: String,
    /// Token store: sqlite:PATH, sqlite::memory:, list or file:PATH.
    #[arg(long, env = "TOKEN_STORE", default_value = "sqlite:zohooauth.db")]
    pub store: StoreSpec,
    /// Session cookie key, at least 64 bytes, hex or base64; absent: a random key per start.
    #[arg(long, env = "SESSION_KEY", hide_env_values = true)]
    pub session_key: Option<String>,
    /// Refresh an access token when fewer than this many seconds remain.
    #[arg(long, env = "TOKEN_REFRESH_LEEWAY_SECS", default_value_t = 60)]
    pub refresh_leeway_secs: u64,
    /// Where the embedded sandbox listens in demo mode.
    #[arg(long, env = "SANDBOX_BIND", default_value = "127.0.0.1:8081")]
    pub sandbox_bind: SocketAddr,
}

impl ServeArgs {
    pub async fn run(self) -> anyhow::Result<()> {
        anyhow::bail!("serve is not written yet (web helper)")
    }
}
