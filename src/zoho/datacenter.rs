//! Zoho's data centres (`docs/zoho-protocol.md#data-centres`) and the host policy built on them.

use url::{Host, Url};

/// One Zoho data centre: its `location` code, its Accounts server and its CRM API domains.
#[derive(Debug, Clone, Copy)]
pub struct DataCenter {
    /// The `location` code Zoho appends to the callback (`us`, `eu`, …).
    pub location: &'static str,
    /// The Accounts server's origin: authorization, token and revoke endpoints hang off it.
    pub accounts_url: &'static str,
    /// The CRM API domains whose tokens this Accounts server issues (production, sandbox, developer).
    pub api_domains: &'static [&'static str],
}

/// Every data centre the portal will talk to, from the v8 SDK's `dc/*.py` (production, sandbox and developer
/// CRM domains). UK is on Zoho's multi-DC page but not in the SDK: only its production API domain is known, so
/// only that one is listed.
pub const DATA_CENTERS: &[DataCenter] = &[
    DataCenter {
        location: "us",
        accounts_url: "https://accounts.zoho.com",
        api_domains: &[
            "https://www.zohoapis.com",
            "https://sandbox.zohoapis.com",
            "https://developer.zohoapis.com",
        ],
    },
    DataCenter {
        location: "eu",
        accounts_url: "https://accounts.zoho.eu",
        api_domains: &[
            "https://www.zohoapis.eu",
            "https://sandbox.zohoapis.eu",
            "https://developer.zohoapis.eu",
        ],
    },
    DataCenter {
        location: "in",
        accounts_url: "https://accounts.zoho.in",
        api_domains: &[
            "https://www.zohoapis.in",
            "https://sandbox.zohoapis.in",
            "https://developer.zohoapis.in",
        ],
    },
    DataCenter {
        location: "au",
        accounts_url: "https://accounts.zoho.com.au",
        api_domains: &[
            "https://www.zohoapis.com.au",
            "https://sandbox.zohoapis.com.au",
            "https://developer.zohoapis.com.au",
        ],
    },
    DataCenter {
        location: "cn",
        accounts_url: "https://accounts.zoho.com.cn",
        api_domains: &[
            "https://www.zohoapis.com.cn",
            "https://sandbox.zohoapis.com.cn",
            "https://developer.zohoapis.com.cn",
        ],
    },
    DataCenter {
        location: "jp",
        accounts_url: "https://accounts.zoho.jp",
        api_domains: &[
            "https://www.zohoapis.jp",
            "https://sandbox.zohoapis.jp",
            "https://developer.zohoapis.jp",
        ],
    },
    DataCenter {
        location: "ca",
        accounts_url: "https://accounts.zohocloud.ca",
        api_domains: &[
            "https://www.zohoapis.ca",
            "https://sandbox.zohoapis.ca",
            "https://developer.zohoapis.ca",
        ],
    },
    DataCenter {
        location: "sa",
        accounts_url: "https://accounts.zoho.sa",
        api_domains: &[
            "https://www.zohoapis.sa",
            "https://sandbox.zohoapis.sa",
            "https://developer.zohoapis.sa",
        ],
    },
    DataCenter {
        location: "uk",
        accounts_url: "https://accounts.zoho.uk",
        api_domains: &["https://www.zohoapis.uk"],
    },
];

/// Which hosts the portal will talk to. The client secret goes only to an Accounts server in the table or to
/// the configured accounts URL's origin (the sandbox, a test double); CRM calls go only to a Zoho API domain or,
/// when the configured accounts URL is not Zoho's, to exactly its origin (the sandbox serves its CRM there).
#[derive(Debug, Clone)]
pub struct ZohoHosts {
    configured_accounts: Url,
    /// Every accepted API domain as Zoho and the sandbox spell it (`https://www.zohoapis.com`), with its answer:
    /// every page checks the stored `api_domain`, and an exact match needs no parsing.
    usual_api_domains: Vec<(String, Url)>,
}

impl ZohoHosts {
    /// The policy for a portal whose logins start at `configured_accounts` (`--accounts-url`).
    pub fn new(configured_accounts: Url) -> Self {
        let mut hosts = Self {
            configured_accounts,
            usual_api_domains: Vec::new(),
        };
        let configured_origin = hosts.configured_accounts.origin().ascii_serialization();
        hosts.usual_api_domains = DATA_CENTERS
            .iter()
            .flat_map(|dc| dc.api_domains.iter().copied())
            .chain(std::iter::once(configured_origin.as_str()))
            .flat_map(|origin| [origin.to_owned(), format!("{origin}/")])
            .filter_map(|spelling| Some((spelling.clone(), hosts.check_api_domain(&spelling)?)))
            .collect();
        hosts
    }

    /// The configured accounts URL (`--accounts-url`), where logins start.
    pub fn configured_accounts(&self) -> &Url {
        &self.configured_accounts
    }

    /// Validates the `accounts-server` a callback claims; `None` when it is not an allowed Accounts server.
    ///
    /// The value is percent-decoded once (real callbacks encode it; decoding an already decoded value changes
    /// nothing) and must then be a bare origin: no userinfo, no path beyond `/`, no query or fragment. An origin
    /// of the table must be https on the default port; otherwise it must be exactly the configured accounts
    /// URL's origin. The answer is the allowed origin itself, never the claimed text.
    pub fn accounts_server(&self, claimed: &str) -> Option<Url> {
        let claimed = parse_bare_origin(claimed)?;
        if let Some(dc) = DATA_CENTERS
            .iter()
            .find(|dc| same_https_origin(&claimed, dc.accounts_url))
        {
            return Url::parse(dc.accounts_url).ok();
        }
        if claimed.origin() == self.configured_accounts.origin() {
            return self.configured_origin();
        }
        None
    }

    /// Validates an `api_domain` from a token response; `None` when it is not a Zoho API domain nor the
    /// configured accounts URL's origin.
    ///
    /// A Zoho API domain must be https on the default port. Otherwise the domain must be exactly the configured
    /// accounts URL's origin (scheme, host and port), and only when that URL is not one of Zoho's Accounts
    /// servers: the sandbox and a test double serve their CRM on their own origin, while Zoho's Accounts host
    /// serves no CRM on any port. The answer is the origin (path `/`).
    pub fn api_domain(&self, claimed: &str) -> Option<Url> {
        match self
            .usual_api_domains
            .iter()
            .find(|(usual, _)| usual == claimed)
        {
            Some((_, answer)) => Some(answer.clone()),
            None => self.check_api_domain(claimed),
        }
    }

    /// [`Self::api_domain`] for any spelling.
    fn check_api_domain(&self, claimed: &str) -> Option<Url> {
        let claimed = parse_bare_origin(claimed)?;
        if let Some(domain) = DATA_CENTERS
            .iter()
            .flat_map(|dc| dc.api_domains)
            .find(|domain| same_https_origin(&claimed, domain))
        {
            return Url::parse(domain).ok();
        }
        if self.is_configured_stand_in(&claimed) {
            return self.configured_origin();
        }
        None
    }

    /// The Accounts server that refreshes and revokes tokens of a user whose CRM lives at `api_domain`.
    ///
    /// For an API domain of the table, its data centre's Accounts server. For the configured accounts URL's
    /// origin, when that URL is not one of Zoho's (the sandbox, a test double), the configured URL.
    pub fn accounts_for_api_domain(&self, api_domain: &str) -> Option<Url> {
        let claimed = parse_bare_origin(api_domain)?;
        if let Some(dc) = DATA_CENTERS.iter().find(|dc| {
            dc.api_domains
                .iter()
                .any(|domain| same_https_origin(&claimed, domain))
        }) {
            return Url::parse(dc.accounts_url).ok();
        }
        if self.is_configured_stand_in(&claimed) {
            return self.configured_origin();
        }
        None
    }

    fn configured_origin(&self) -> Option<Url> {
        Url::parse(&self.configured_accounts.origin().ascii_serialization()).ok()
    }

    /// Whether `url` is exactly the configured accounts URL's origin while that URL is no Zoho host of the table
    /// (a sandbox or a test double, which serves its CRM on its own origin).
    fn is_configured_stand_in(&self, url: &Url) -> bool {
        let configured = &self.configured_accounts;
        let configured_is_zoho = DATA_CENTERS.iter().any(|dc| {
            std::iter::once(dc.accounts_url)
                .chain(dc.api_domains.iter().copied())
                .any(|origin| {
                    origin.strip_prefix("https://").is_some_and(
                        |host| matches!(configured.host(), Some(Host::Domain(h)) if h == host),
                    )
                })
        });
        !configured_is_zoho && url.host().is_some() && url.origin() == configured.origin()
    }
}

/// Parses a claimed origin, percent-decoded once; `None` unless it is an http(s) URL with a host and nothing
/// else: no userinfo, no path beyond `/`, no query, no fragment.
fn parse_bare_origin(claimed: &str) -> Option<Url> {
    let decoded = percent_encoding::percent_decode_str(claimed.trim())
        .decode_utf8()
        .ok()?;
    let url = Url::parse(&decoded).ok()?;
    let bare = matches!(url.scheme(), "https" | "http")
        && url.username().is_empty()
        && url.password().is_none()
        && matches!(
            url.host(),
            Some(Host::Domain(_) | Host::Ipv4(_) | Host::Ipv6(_))
        )
        && url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none();
    bare.then_some(url)
}

/// Whether `url` is exactly the https origin `expected` (scheme, host, default port). `expected` is a table
/// entry, `https://` and a lowercase host, so comparing host text is enough and costs no parse per request.
fn same_https_origin(url: &Url, expected: &str) -> bool {
    let Some(expected_host) = expected.strip_prefix("https://") else {
        return false;
    };
    url.scheme() == "https"
        && url.port().is_none()
        && matches!(url.host(), Some(Host::Domain(host)) if host == expected_host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zoho_configured() -> ZohoHosts {
        ZohoHosts::new(Url::parse("https://accounts.zoho.com").unwrap())
    }

    fn sandbox_configured() -> ZohoHosts {
        ZohoHosts::new(Url::parse("http://localhost:8081").unwrap())
    }

    #[test]
    fn the_table_holds_bare_lowercase_https_origins() {
        for entry in DATA_CENTERS
            .iter()
            .flat_map(|dc| std::iter::once(dc.accounts_url).chain(dc.api_domains.iter().copied()))
        {
            let url = Url::parse(entry).unwrap();
            assert_eq!(url.origin().ascii_serialization(), entry);
            assert_eq!(url.scheme(), "https");
        }
    }

    #[test]
    fn every_table_accounts_server_is_accepted_as_its_origin() {
        let hosts = zoho_configured();
        for dc in DATA_CENTERS {
            let accepted = hosts.accounts_server(dc.accounts_url).unwrap();
            assert_eq!(accepted.as_str(), format!("{}/", dc.accounts_url));
        }
    }

    #[test]
    fn percent_encoded_accounts_server_is_decoded_and_accepted() {
        let hosts = zoho_configured();
        let accepted = hosts
            .accounts_server("https%3A%2F%2Faccounts.zoho.eu")
            .unwrap();
        assert_eq!(accepted.as_str(), "https://accounts.zoho.eu/");
        assert!(hosts.accounts_server("https://accounts.zoho.in/").is_some());
        assert!(hosts.accounts_server("https://ACCOUNTS.ZOHO.COM").is_some());
        assert!(
            hosts
                .accounts_server("https://accounts.zoho.com:443")
                .is_some()
        );
    }

    #[test]
    fn forged_accounts_servers_are_refused() {
        let hosts = zoho_configured();
        for forged in [
            "https://accounts.zoho.com.evil.example",
            "https%3A%2F%2Faccounts.zoho.com.evil.example",
            "https://evil@accounts.zoho.com",
            "https://evil%40accounts.zoho.com",
            "https://user:pass@accounts.zoho.com",
            "http://accounts.zoho.com",
            "https://accounts.zoho.com:8443",
            "https://accounts.zoho.com:80",
            "https://accounts.zoho.com/evil",
            "https://accounts.zoho.com/oauth/v2/token",
            "https://accounts.zoho.com?x=1",
            "https://accounts.zoho.com#frag",
            "https://accounts.zoho.com.",
            "https://accounts.zoho.ca",
            "https://evil.example/https://accounts.zoho.com",
            "javascript:alert(1)",
            "javascript://accounts.zoho.com",
            "ftp://accounts.zoho.com",
            "//accounts.zoho.com",
            "accounts.zoho.com",
            "https://www.zohoapis.com",
            "",
            "   ",
            "%",
            "%ff%fe",
        ] {
            assert!(
                hosts.accounts_server(forged).is_none(),
                "{forged:?} was accepted"
            );
        }
    }

    #[test]
    fn configured_accounts_origin_is_accepted_and_nothing_else_on_its_host() {
        let hosts = sandbox_configured();
        let accepted = hosts.accounts_server("http://localhost:8081").unwrap();
        assert_eq!(accepted.as_str(), "http://localhost:8081/");
        assert!(
            hosts
                .accounts_server("http%3A%2F%2Flocalhost%3A8081")
                .is_some()
        );
        for forged in [
            "http://localhost:8082",
            "https://localhost:8081",
            "http://127.0.0.1:8081",
            "http://evil@localhost:8081",
            "http://localhost:8081/x",
            "http://localhost",
        ] {
            assert!(
                hosts.accounts_server(forged).is_none(),
                "{forged:?} was accepted"
            );
        }
        // The table still applies when a sandbox is configured.
        assert!(hosts.accounts_server("https://accounts.zoho.eu").is_some());
    }

    #[test]
    fn table_api_domains_are_accepted() {
        let hosts = zoho_configured();
        for domain in DATA_CENTERS.iter().flat_map(|dc| dc.api_domains) {
            let accepted = hosts.api_domain(domain).unwrap();
            assert_eq!(accepted.as_str(), format!("{domain}/"));
        }
    }

    #[test]
    fn forged_api_domains_are_refused() {
        let hosts = zoho_configured();
        for forged in [
            "https://evil.example",
            "https://www.zohoapis.com.evil.example",
            "https://evil@www.zohoapis.com",
            "http://www.zohoapis.com",
            "https://www.zohoapis.com:8443",
            "https://www.zohoapis.com/crm",
            "https://content.zohoapis.com",
            "https://zohoapis.com",
            "javascript:alert(1)",
            "",
        ] {
            assert!(
                hosts.api_domain(forged).is_none(),
                "{forged:?} was accepted"
            );
        }
    }

    #[test]
    fn the_usual_spellings_of_api_domains_get_the_answer_a_full_check_gives() {
        for hosts in [zoho_configured(), sandbox_configured()] {
            assert!(hosts.usual_api_domains.len() >= 2 * 8, "{hosts:?}");
            for (spelling, answer) in &hosts.usual_api_domains {
                assert_eq!(hosts.check_api_domain(spelling).as_ref(), Some(answer));
                assert_eq!(hosts.api_domain(spelling).as_ref(), Some(answer));
            }
            for unusual in [
                "HTTPS://WWW.ZOHOAPIS.EU",
                "https%3A%2F%2Fwww.zohoapis.in",
                " https://www.zohoapis.com ",
            ] {
                assert_eq!(
                    hosts.api_domain(unusual),
                    hosts.check_api_domain(unusual),
                    "{unusual}"
                );
                assert!(hosts.api_domain(unusual).is_some(), "{unusual}");
            }
        }
        let zoho = zoho_configured();
        assert!(
            !zoho
                .usual_api_domains
                .iter()
                .any(|(s, _)| s.contains("accounts.zoho")),
            "Zoho's Accounts host serves no CRM"
        );
        assert!(zoho.api_domain("https://accounts.zoho.com").is_none());
        assert!(zoho.api_domain("http://www.zohoapis.com").is_none());
    }

    #[test]
    fn api_domain_on_the_configured_host_is_accepted() {
        let hosts = sandbox_configured();
        assert_eq!(
            hosts.api_domain("http://localhost:8081").unwrap().as_str(),
            "http://localhost:8081/"
        );
        assert!(hosts.api_domain("http%3A%2F%2Flocalhost%3A8081").is_some());
        // Same host, another port or scheme: not the configured stand-in.
        assert!(hosts.api_domain("http://localhost:9000").is_none());
        assert!(hosts.api_domain("https://localhost:8081").is_none());
        assert!(hosts.api_domain("http://localhost").is_none());
        assert!(hosts.api_domain("http://127.0.0.1:8081").is_none());
        assert!(hosts.api_domain("http://evil@localhost:8081").is_none());
        assert!(hosts.api_domain("https://evil.example").is_none());
    }

    #[test]
    fn https_configured_stand_in_accepts_only_its_own_origin() {
        let hosts = ZohoHosts::new(Url::parse("https://zoho-double.test:9443").unwrap());
        assert_eq!(
            hosts
                .api_domain("https://zoho-double.test:9443")
                .unwrap()
                .as_str(),
            "https://zoho-double.test:9443/"
        );
        assert!(hosts.api_domain("https://zoho-double.test:9444").is_none());
        assert!(hosts.api_domain("http://zoho-double.test:9443").is_none());
        assert!(hosts.api_domain("https://zoho-double.test").is_none());
    }

    #[test]
    fn zoho_accounts_host_is_no_api_domain_on_any_port() {
        let hosts = zoho_configured();
        for forged in [
            "https://accounts.zoho.com",
            "https://accounts.zoho.com:8443",
            "https://accounts.zoho.com:443",
            "http://accounts.zoho.com",
            "http://accounts.zoho.com:8080",
        ] {
            assert!(
                hosts.api_domain(forged).is_none(),
                "{forged:?} was accepted"
            );
        }
        // Another data centre configured, the same rule.
        let eu = ZohoHosts::new(Url::parse("https://accounts.zoho.eu").unwrap());
        assert!(eu.api_domain("https://accounts.zoho.eu:8443").is_none());
        assert!(eu.api_domain("https://www.zohoapis.eu").is_some());
    }

    #[test]
    fn sandbox_api_domain_is_its_accounts_server_and_public_url() {
        // The sandbox answers with `api_domain` = `accounts-server` = its public URL: exactly the configured
        // origin, so exact-origin matching accepts it.
        let public = "http://localhost:8081";
        let hosts = ZohoHosts::new(Url::parse(public).unwrap());
        let accounts = hosts.accounts_server(public).unwrap();
        let api = hosts.api_domain(public).unwrap();
        assert_eq!(accounts, api);
        assert_eq!(hosts.accounts_for_api_domain(public).unwrap(), accounts);
    }

    #[test]
    fn accounts_for_api_domain_follows_the_table() {
        let hosts = zoho_configured();
        let cases = [
            ("https://www.zohoapis.com", "https://accounts.zoho.com/"),
            ("https://sandbox.zohoapis.eu", "https://accounts.zoho.eu/"),
            ("https://developer.zohoapis.in", "https://accounts.zoho.in/"),
            (
                "https://www.zohoapis.com.au",
                "https://accounts.zoho.com.au/",
            ),
            (
                "https://www.zohoapis.com.cn",
                "https://accounts.zoho.com.cn/",
            ),
            ("https://www.zohoapis.jp", "https://accounts.zoho.jp/"),
            ("https://www.zohoapis.ca", "https://accounts.zohocloud.ca/"),
            ("https://www.zohoapis.sa", "https://accounts.zoho.sa/"),
            ("https://www.zohoapis.uk", "https://accounts.zoho.uk/"),
        ];
        for (api, accounts) in cases {
            assert_eq!(
                hosts.accounts_for_api_domain(api).unwrap().as_str(),
                accounts
            );
        }
        assert!(
            hosts
                .accounts_for_api_domain("https://evil.example")
                .is_none()
        );
        // A real Zoho accounts URL never vouches for a host outside the table.
        assert!(
            hosts
                .accounts_for_api_domain("https://accounts.zoho.com")
                .is_none()
        );
    }

    #[test]
    fn accounts_for_api_domain_of_a_sandbox_is_the_configured_url() {
        let hosts = sandbox_configured();
        assert_eq!(
            hosts
                .accounts_for_api_domain("http://localhost:8081")
                .unwrap()
                .as_str(),
            "http://localhost:8081/"
        );
        assert!(
            hosts
                .accounts_for_api_domain("http://127.0.0.1:8081")
                .is_none()
        );
        assert!(
            hosts
                .accounts_for_api_domain("http://localhost:9000")
                .is_none()
        );
        assert_eq!(
            hosts
                .accounts_for_api_domain("https://www.zohoapis.eu")
                .unwrap()
                .as_str(),
            "https://accounts.zoho.eu/"
        );
    }
}
