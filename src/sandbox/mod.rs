//! The embedded Zoho sandbox: Zoho Accounts and CRM v8 as Zoho behaves, quirks included, seeded with Zylker
//! Academy's data. Product code, not a mock: the demo runs on it and every test reaches it over real HTTP.

use std::net::TcpListener;
use std::time::Duration;

use url::Url;

/// The demo client that `zylker-portal serve` uses when no Zoho credentials are configured.
pub const DEMO_CLIENT_ID: &str = "1000.ZYLKERACADEMYDEMO";
/// The demo client's secret. Not a secret: it only opens the sandbox.
pub const DEMO_CLIENT_SECRET: &str = "zylker-academy-demo-secret";

/// A client registered with the sandbox, as in Zoho's API console.
#[derive(Clone, Debug)]
pub struct SandboxClient {
    pub client_id: String,
    pub client_secret: String,
    /// Authorized redirect URIs; `redirect_uri` must equal one of them exactly.
    pub redirect_uris: Vec<String>,
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
}

/// A sandbox serving in the background.
pub struct RunningSandbox {
    url: Url,
}

impl RunningSandbox {
    /// The sandbox's public URL: its Accounts server and its CRM API domain.
    pub fn url(&self) -> &Url {
        &self.url
    }
}

/// Starts a sandbox on `listener` (bind port 0 in tests) and returns at once; it serves until the process ends
/// or [`RunningSandbox::stop`] is called.
pub fn spawn(_listener: TcpListener, _config: SandboxConfig) -> std::io::Result<RunningSandbox> {
    todo!("sandbox helper")
}

impl RunningSandbox {
    /// Stops serving, gracefully.
    pub async fn stop(self) {
        todo!("sandbox helper")
    }
}
