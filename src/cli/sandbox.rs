//! `zylker-portal sandbox`: the embedded Zoho sandbox alone.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use url::Url;

use crate::secret::Secret;
use crate::tokens::StoreSpec;

use crate::sandbox::{
    self, CrmLimits, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_REDIRECT_URI, Edition, SandboxClient,
    SandboxConfig,
};

/// Zoho CRM's limits as the sandbox plays them, on `sandbox` and on `serve` (demo mode) alike. The override of
/// the edition's cap is not here: `serve` names it `--sandbox-crm-concurrency`, since its own
/// `--crm-concurrency` is the portal's gate.
#[derive(Debug, Args)]
pub struct CrmLimitArgs {
    /// Each CRM call takes this many milliseconds (without holding a thread), as Zoho's 100-400 ms do.
    #[arg(long, env = "SANDBOX_CRM_LATENCY_MS", default_value_t = 0)]
    pub crm_latency_ms: u64,
    /// Zoho CRM edition: its cap on concurrent CRM calls (free 5, standard 10, professional 15, enterprise 20,
    /// ultimate 25).
    #[arg(long, env = "SANDBOX_EDITION", value_enum, default_value_t = Edition::Enterprise)]
    pub edition: Edition,
    /// API credits per rolling 24 hours (one per CRM call); absent: unlimited.
    #[arg(long, env = "SANDBOX_CRM_CREDITS")]
    pub crm_credits_per_day: Option<u64>,
}

impl CrmLimitArgs {
    /// The limits, with the edition's cap replaced by `concurrency` when given (0: no cap).
    pub fn limits(&self, concurrency: Option<usize>) -> CrmLimits {
        CrmLimits {
            latency: Duration::from_millis(self.crm_latency_ms),
            concurrency: CrmLimits::concurrency_for(self.edition, concurrency),
            credits_per_day: self.crm_credits_per_day,
        }
    }
}

/// The sandbox's flags, whose names are fixed: the README documents them and scripts use them. The environment
/// variables start with `SANDBOX_`, so that
/// they never clash with the portal's; `SANDBOX_BIND` means the same in both: where the sandbox listens.
#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// Address to listen on.
    #[arg(long, env = "SANDBOX_BIND", default_value = "127.0.0.1:8081")]
    pub bind: SocketAddr,
    /// The URL the sandbox calls itself; default `http://{bind}`.
    #[arg(long, env = "SANDBOX_PUBLIC_URL")]
    pub public_url: Option<Url>,
    /// Client id to register; default the demo client.
    #[arg(long, env = "SANDBOX_CLIENT_ID", requires = "client_secret")]
    pub client_id: Option<String>,
    /// The registered client's secret.
    #[arg(
        long,
        env = "SANDBOX_CLIENT_SECRET",
        hide_env_values = true,
        requires = "client_id"
    )]
    pub client_secret: Option<Secret>,
    /// Authorized redirect URI (repeatable; in the environment, separated by spaces); default
    /// `http://localhost:8080/oauth/callback`.
    #[arg(long, env = "SANDBOX_REDIRECT_URIS", value_delimiter = ' ')]
    pub redirect_uri: Vec<String>,
    /// Access-token lifetime in seconds.
    #[arg(long, env = "SANDBOX_ACCESS_TTL_SECS", default_value_t = 3600)]
    pub access_ttl: u64,
    /// Server worker threads.
    #[arg(long, env = "SANDBOX_WORKERS", default_value_t = 2)]
    pub workers: usize,
    #[command(flatten)]
    pub crm: CrmLimitArgs,
    /// Concurrent CRM calls allowed, instead of the edition's cap; 0: no cap.
    #[arg(long, env = "SANDBOX_CRM_CONCURRENCY")]
    pub crm_concurrency: Option<usize>,
}

impl SandboxArgs {
    /// Serves the sandbox until Ctrl-C, after printing where it is, its client and its personas.
    pub async fn run(self) -> anyhow::Result<()> {
        let redirect_uris = if self.redirect_uri.is_empty() {
            vec![DEMO_REDIRECT_URI.to_owned()]
        } else {
            self.redirect_uri
        };
        for uri in &redirect_uris {
            let parsed = Url::parse(uri)
                .map_err(|error| anyhow::anyhow!("--redirect-uri {uri:?} is not a URL: {error}"))?;
            anyhow::ensure!(
                matches!(parsed.scheme(), "http" | "https"),
                "--redirect-uri {uri:?} must start with http:// or https://"
            );
        }
        let demo = self.client_id.is_none();
        let client = match (self.client_id, self.client_secret) {
            (Some(client_id), Some(client_secret)) => SandboxClient {
                client_id,
                client_secret,
                redirect_uris,
            },
            _ => SandboxClient::demo(redirect_uris),
        };
        let listener = std::net::TcpListener::bind(self.bind)
            .map_err(|error| anyhow::anyhow!("cannot listen on {}: {error}", self.bind))?;
        let config = SandboxConfig {
            public_url: self.public_url,
            clients: vec![client.clone()],
            access_ttl: Duration::from_secs(self.access_ttl.max(1)),
            // The control surface (expire, revoke, inject, move the clock) needs no credentials: it is on for the
            // demo client only, never for a sandbox someone registered a client of their own with.
            control: demo,
            crm: self.crm.limits(self.crm_concurrency),
            state_file: None,
        };
        let config_limits = config.crm;
        let running = sandbox::spawn_with_workers(listener, config, self.workers)?;
        println!("Zoho sandbox (Zylker Academy) at {}", running.url());
        println!("  client id:     {}", client.client_id);
        if demo {
            println!("  client secret: {DEMO_CLIENT_SECRET} (the demo client {DEMO_CLIENT_ID})");
        } else {
            println!("  client secret: (as given)");
        }
        for uri in &client.redirect_uris {
            println!("  redirect URI:  {uri}");
        }
        println!("  personas (pick one on the consent page):");
        for line in persona_lines("    ") {
            println!("{line}");
        }
        if demo {
            println!("  control surface: {}_sandbox/counters", running.url());
        } else {
            println!("  control surface: off (it is for the demo client only)");
        }
        println!("  CRM limits:    {}", limits_line(&config_limits));
        println!("Press Ctrl-C to stop.");
        tokio::signal::ctrl_c().await?;
        running.stop().await;
        Ok(())
    }
}

/// The embedded sandbox's state file beside a token store that is a file.
pub const STATE_FILE_NAME: &str = "zylker-sandbox.json";

/// The demo's sandbox state file: `none` keeps the state in memory; given, that path; else
/// [`STATE_FILE_NAME`] beside the token store when the store is a file (a store in memory forgets its tokens
/// at restart anyway, so the sandbox may too; a database store has no folder beside it, so with one the state
/// is kept only where `--sandbox-state` says).
pub fn state_file_for(given: Option<&str>, store: &StoreSpec) -> Option<PathBuf> {
    match given {
        Some("none") => None,
        Some(path) => Some(PathBuf::from(path)),
        None => match store {
            StoreSpec::SqliteFile(path)
            | StoreSpec::SqliteFileBesideOtherTables(path)
            | StoreSpec::File(path) => Some(path.with_file_name(STATE_FILE_NAME)),
            StoreSpec::SqliteMemory
            | StoreSpec::List
            | StoreSpec::Postgres(_)
            | StoreSpec::MySql(_) => None,
        },
    }
}

/// Refuses a sandbox state file that is one of the token store's own files (the store's file, its SQLite
/// companions, the CSV store's lock and sign-in files): the sandbox reads its state file with `std::fs` and
/// replaces it whole on every write, which would drop this process's SQLite locks on the store's file or
/// replace the store. Said before anything is opened, instead of a state file "that cannot be used".
pub fn refuse_state_file_in_store(state_file: &Path, store: &StoreSpec) -> anyhow::Result<()> {
    let Some(store_file) = store.file_path() else {
        return Ok(());
    };
    let with_suffix = |path: &Path, suffix: &str| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    // The SQLite file: the store's own, or the sign-in file beside a CSV store.
    let sqlite_file = match store {
        StoreSpec::File(csv) => crate::tokens::sign_ins_file_beside(csv),
        _ => store_file.to_path_buf(),
    };
    let mut files = vec![
        store_file.to_path_buf(),
        with_suffix(&sqlite_file, "-wal"),
        with_suffix(&sqlite_file, "-shm"),
    ];
    if let StoreSpec::File(csv) = store {
        files.push(with_suffix(csv, ".lock"));
        files.push(sqlite_file);
    }
    if files
        .iter()
        .any(|file| crate::private_file::same_file(state_file, file))
    {
        anyhow::bail!(
            "--sandbox-state (SANDBOX_STATE) {} is a file of the token store {store}: give the sandbox a file of its own \
             (by default it keeps {STATE_FILE_NAME} beside the store)",
            state_file.display()
        );
    }
    Ok(())
}

/// The CRM's limits in one line, for the banners.
pub(crate) fn limits_line(limits: &CrmLimits) -> String {
    let cap = limits
        .concurrency
        .map_or("no cap".to_owned(), |cap| format!("{cap} concurrent calls"));
    let credits = limits
        .credits_per_day
        .map_or("unlimited credits".to_owned(), |credits| {
            format!("{credits} credits a day")
        });
    format!("{cap}, {} ms a call, {credits}", limits.latency.as_millis())
}

/// One banner line per sandbox persona, from the sandbox's own table: the email to pick on the consent page,
/// who it is, and which modules the CRM profile opens.
pub(crate) fn persona_lines(indent: &str) -> Vec<String> {
    sandbox::data::PERSONAS
        .iter()
        .map(|persona| {
            let modules = match persona.profile.modules {
                None => "every module".to_owned(),
                Some(modules) => modules.join(", "),
            };
            format!(
                "{indent}{:<26} {}, {} (profile {}: {modules})",
                persona.email, persona.full_name, persona.role, persona.profile.name
            )
        })
        .collect()
}
