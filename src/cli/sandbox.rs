//! `zylker-portal sandbox`: the embedded Zoho sandbox alone.

use std::net::SocketAddr;

use clap::Args;
use url::Url;

/// The sandbox's flags (issue 3 fixes their names).
#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub bind: SocketAddr,
    /// The URL the sandbox calls itself; default `http://{bind}`.
    #[arg(long)]
    pub public_url: Option<Url>,
    /// Client id to register; default the demo client.
    #[arg(long, requires = "client_secret")]
    pub client_id: Option<String>,
    #[arg(long, requires = "client_id")]
    pub client_secret: Option<String>,
    /// Authorized redirect URI (repeatable); default `http://localhost:8080/oauth/callback`.
    #[arg(long)]
    pub redirect_uri: Vec<String>,
    /// Access-token lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    pub access_ttl: u64,
}

impl SandboxArgs {
    pub async fn run(self) -> anyhow::Result<()> {
        anyhow::bail!("sandbox is not written yet (sandbox helper)")
    }
}
