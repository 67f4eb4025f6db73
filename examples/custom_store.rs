//! A token store of your own, outside the crate: tokens in a JSON file, written only against the public API
//! of `zylker_portal`, proven by the conformance kit (`tests/custom_store.rs` runs it on this very file) and
//! plugged into a running portal.
//!
//! `cargo run --example custom_store` serves the portal on http://localhost:8080 in demo mode, on the
//! embedded Zoho sandbox (at http://127.0.0.1:8081), with its tokens in `zylker-tokens.json`
//! (`CUSTOM_STORE_PATH=…` puts them elsewhere). Log in, stop it, start it again: the file still holds your
//! token.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::net::TcpListener;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use url::Url;
use zylker_portal::app::{
    DEFAULT_BODY_READ_TIMEOUT, DEFAULT_PENDING_LOGIN_TTL, Portal, PortalSettings,
};
use zylker_portal::sandbox::{DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, SandboxConfig};
use zylker_portal::tokens::{
    OAuthToken, Secret, SignIns, StoreError, TokenStore, id_for_new_row, row_to_write,
};
use zylker_portal::zoho::{ClientCredentials, CrmLimits, DEFAULT_SCOPE};

/// Tokens in a JSON file: an array of `OAuthToken`s, in the order they were first saved (so "the oldest
/// match" is the first one in the array).
///
/// The rows are read once, at open, and kept in memory behind one lock; every change is written to the file
/// before it counts. The lock is held across every read-change-write, from taking the rows to renaming the
/// new file into place: a store that let go of it in between would lose the writes of other threads (the
/// kit's concurrent rules catch that). Each write goes to a temporary file, synced, then renamed over the
/// old one, so a crash leaves one whole file or the other. Meant for one process: another process writing
/// the same file would not be seen.
pub struct JsonFileStore {
    path: PathBuf,
    rows: Mutex<Vec<OAuthToken>>,
}

impl JsonFileStore {
    /// Opens the store at `path`, creating an empty one (mode 0600) when the file is missing. A file that is
    /// not a JSON array of tokens is refused and left as it is.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let rows = match fs::read(&path) {
            Ok(text) => serde_json::from_slice(&text).map_err(|error| StoreError::NotAStore {
                path: path.display().to_string(),
                reason: format!("not a JSON array of tokens: {error}"),
            })?,
            Err(error) if error.kind() == ErrorKind::NotFound => {
                write_file(&path, &[])?;
                Vec::new()
            }
            Err(error) => {
                return Err(StoreError::backend(
                    format!("cannot read {}", path.display()),
                    error,
                ));
            }
        };
        Ok(JsonFileStore {
            path,
            rows: Mutex::new(rows),
        })
    }

    fn rows(&self) -> MutexGuard<'_, Vec<OAuthToken>> {
        // A panic under the lock happens before the rows are replaced, so they are still whole.
        self.rows
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Lets `change` edit a copy of the rows and, when it says it changed them, writes the copy to the file
    /// and only then keeps it; all under the lock.
    fn change<T>(
        &self,
        change: impl FnOnce(&mut Vec<OAuthToken>) -> Result<(T, bool), StoreError>,
    ) -> Result<T, StoreError> {
        let mut rows = self.rows();
        let mut copy = rows.clone();
        let (answer, changed) = change(&mut copy)?;
        if changed {
            write_file(&self.path, &copy)?;
            *rows = copy;
        }
        Ok(answer)
    }
}

/// Writes `rows` to a temporary file beside `path` (mode 0600), syncs it, and renames it over `path`.
fn write_file(path: &Path, rows: &[OAuthToken]) -> Result<(), StoreError> {
    let failed = |error: std::io::Error| {
        StoreError::backend(format!("cannot write {}", path.display()), error)
    };
    let json = serde_json::to_vec(rows)
        .map_err(|error| StoreError::backend("cannot encode the tokens", error))?;
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    match fs::remove_file(&temporary) {
        Err(error) if error.kind() != ErrorKind::NotFound => return Err(failed(error)),
        _ => {}
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)
        .map_err(failed)?;
    file.write_all(&json).map_err(failed)?;
    file.sync_all().map_err(failed)?;
    fs::rename(&temporary, path).map_err(failed)
}

impl TokenStore for JsonFileStore {
    fn find_token(&self, partial: &OAuthToken) -> Result<Option<OAuthToken>, StoreError> {
        let Some(key) = partial.key() else {
            return Ok(None);
        };
        Ok(self.rows().iter().find(|token| token.matches(key)).cloned())
    }

    fn save_token(&self, token: &mut OAuthToken) -> Result<(), StoreError> {
        if (token.id.is_some() || token.user_name.is_some()) && !token.has_credentials() {
            return Err(StoreError::NothingToSave);
        }
        self.change(|rows| {
            // The contract's choice of row (the user's, the id's, the key's oldest) is one library call.
            match row_to_write(rows, token) {
                Some(index) => {
                    token.id = rows[index].id.clone();
                    rows[index] = token.clone();
                }
                None => {
                    token.id = Some(id_for_new_row(rows, token));
                    rows.push(token.clone());
                }
            }
            Ok(((), true))
        })
    }

    fn delete_token(&self, id: &str) -> Result<(), StoreError> {
        self.change(|rows| {
            let before = rows.len();
            rows.retain(|token| token.id.as_deref() != Some(id));
            Ok(((), rows.len() != before))
        })
    }

    fn get_tokens(&self) -> Result<Vec<OAuthToken>, StoreError> {
        Ok(self.rows().clone())
    }

    fn delete_tokens(&self) -> Result<(), StoreError> {
        self.change(|rows| {
            rows.clear();
            Ok(((), true))
        })
    }

    fn find_token_by_id(&self, id: &str) -> Result<Option<OAuthToken>, StoreError> {
        Ok(self
            .rows()
            .iter()
            .find(|token| token.id.as_deref() == Some(id))
            .cloned())
    }

    // The trait's default compare-and-set methods would work on the six above (the kit proves it), but they
    // are atomic only among themselves: a login saving the same user between their read and their write
    // could be overwritten. Under the store's lock they are atomic against every write of this store.

    fn compare_and_set_access_token(
        &self,
        id: &str,
        expected_access_token: Option<&str>,
        access_token: &str,
        expiry_time: i64,
    ) -> Result<bool, StoreError> {
        self.change(|rows| {
            let Some(row) = rows.iter_mut().find(|t| t.id.as_deref() == Some(id)) else {
                return Ok((false, false));
            };
            if row.access_token.as_ref().map(Secret::expose_secret) != expected_access_token {
                return Ok((false, false));
            }
            row.access_token = Some(access_token.into());
            row.expiry_time = Some(expiry_time);
            Ok((true, true))
        })
    }

    fn delete_token_if_unchanged(
        &self,
        id: &str,
        expected_access_token: Option<&str>,
    ) -> Result<bool, StoreError> {
        self.change(|rows| {
            let before = rows.len();
            rows.retain(|t| {
                t.id.as_deref() != Some(id)
                    || t.access_token.as_ref().map(Secret::expose_secret) != expected_access_token
            });
            let deleted = rows.len() != before;
            Ok((deleted, deleted))
        })
    }
}

/// The portal in demo mode with a [`JsonFileStore`]: the embedded sandbox plays Zoho, as in
/// `zylker-portal serve` without Zoho credentials.
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();

    let path = std::env::var_os("CUSTOM_STORE_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("zylker-tokens.json"));
    let store: Arc<dyn TokenStore> = Arc::new(JsonFileStore::open(&path)?);

    let public_url = Url::parse("http://localhost:8080")?;
    let redirect_url = public_url.join("oauth/callback")?;
    // The sandbox answers on the other loopback name, so that it and the portal are different sites (as Zoho
    // and a portal are) and their cookies stay apart.
    let sandbox = zylker_portal::sandbox::spawn(
        TcpListener::bind("127.0.0.1:8081")?,
        SandboxConfig {
            public_url: Some(Url::parse("http://127.0.0.1:8081")?),
            ..SandboxConfig::demo(redirect_url.as_str())
        },
    )?;

    let portal = Portal::build(
        TcpListener::bind("127.0.0.1:8080")?,
        PortalSettings {
            public_url: public_url.clone(),
            client: ClientCredentials {
                client_id: DEMO_CLIENT_ID.to_owned(),
                client_secret: DEMO_CLIENT_SECRET.into(),
                redirect_url,
            },
            accounts_url: sandbox.url().clone(),
            scope: DEFAULT_SCOPE.to_owned(),
            store,
            // A random key: sessions end when this example stops; the stored tokens do not.
            session_key: None,
            refresh_leeway: Duration::from_secs(60),
            http_timeout: Duration::from_secs(15),
            workers: None,
            sign_ins: SignIns::in_memory(),
            crm_limits: CrmLimits::default(),
            metrics_listener: None,
            pending_login_ttl: DEFAULT_PENDING_LOGIN_TTL,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
        },
    )?;
    println!(
        "portal: {public_url} (tokens in {}; log in as priya.raman@zylker.com on the sandbox's page)",
        path.display()
    );
    portal.run().await?;
    sandbox.stop().await;
    Ok(())
}
