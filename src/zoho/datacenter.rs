//! Zoho's data centres (`../shared/docs/zoho-protocol.md`, section 7) and the host policy built on them.

use url::Url;

/// One Zoho data centre: its `location` code, its Accounts server and its CRM API domains.
#[derive(Debug, Clone, Copy)]
pub struct DataCenter {
    pub location: &'static str,
    pub accounts_url: &'static str,
    pub api_domains: &'static [&'static str],
}

/// Which hosts the portal will talk to. The client secret goes only to an Accounts server in the table or to
/// the configured accounts URL's origin (the sandbox, a test double); CRM calls go only to a Zoho API domain or
/// to a host of the configured accounts URL.
#[derive(Debug, Clone)]
pub struct ZohoHosts {
    configured_accounts: Url,
}

impl ZohoHosts {
    pub fn new(configured_accounts: Url) -> Self {
        Self {
            configured_accounts,
        }
    }

    /// The configured accounts URL (`--accounts-url`), where logins start.
    pub fn configured_accounts(&self) -> &Url {
        &self.configured_accounts
    }

    /// Validates the `accounts-server` a callback claims; `None` when it is not an allowed Accounts server.
    pub fn accounts_server(&self, _claimed: &str) -> Option<Url> {
        todo!("zoho helper")
    }

    /// Validates an `api_domain` from a token response; `None` when it is not a Zoho API domain nor on the
    /// configured accounts URL's host.
    pub fn api_domain(&self, _claimed: &str) -> Option<Url> {
        todo!("zoho helper")
    }

    /// The Accounts server that refreshes and revokes tokens of a user whose CRM lives at `api_domain`.
    pub fn accounts_for_api_domain(&self, _api_domain: &str) -> Option<Url> {
        todo!("zoho helper")
    }
}
