//! Sharing a flight's outcome, stores shared between processes, and logs; and Zoho's limits on the same path.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use zylker_portal::tokens::manager::{LoginOutcome, TokenError};
use zylker_portal::tokens::{
    ListStore, OAuthToken, SqliteStore, StoreError, StoreSpec, TokenStore, open_store,
};
use zylker_portal::zoho::CrmError;
use zylker_portal::zoho::crm::CrmAuth;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_waiting_behind_a_throttled_refresh_are_answered_throttled_without_asking_again() {
    let zoho = TestZoho::start().await;
    let login = zoho.login(PRIYA).await;
    zoho.expire_in_store(&login.token_id);
    // Held up for a moment, so that every request is waiting behind it.
    zoho.inject(json!({"target": "token", "error": "Access Denied", "delay_ms": 500, "count": 1}))
        .await;

    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let owner = login.owner();
            let manager = Arc::clone(&zoho.manager);
            tokio::spawn(async move { manager.access_token_for(&owner).await })
        })
        .collect();
    for task in tasks {
        let outcome = task.await.expect("task");
        assert!(matches!(outcome, Err(TokenError::Throttled)), "{outcome:?}");
    }

    let counters = zoho.counters().await;
    assert_eq!(counters["throttled_refreshes"], 1);
    assert_eq!(counters["refreshes"], 0);
    assert!(zoho.stored(&login.token_id).is_some());
}

fn sqlite_file() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("zohooauth.db");
    (dir, path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_requests_on_sqlite_make_one_refresh() {
    let (_dir, path) = sqlite_file();
    let store: Arc<dyn TokenStore> = Arc::new(SqliteStore::open(&path).expect("open"));
    let zoho = TestZoho::start_with_store(store).await;
    let login = zoho.login(ARJUN).await;
    zoho.expire_in_store(&login.token_id);

    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let owner = login.owner();
            let manager = Arc::clone(&zoho.manager);
            tokio::spawn(async move { manager.access_token_for(&owner).await })
        })
        .collect();
    for task in tasks {
        task.await.expect("task").expect("a token");
    }

    assert_eq!(zoho.counter("refreshes").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_portals_on_one_sqlite_file_never_overwrite_each_others_refresh() {
    let (_dir, path) = sqlite_file();
    let first_store: Arc<dyn TokenStore> = Arc::new(SqliteStore::open(&path).expect("open"));
    let zoho = TestZoho::start_with_store(first_store).await;
    let login = zoho.login(PRIYA).await;
    zoho.expire_in_store(&login.token_id);
    // A second process: its own connection to the same file, its own manager.
    let second_store: Arc<dyn TokenStore> = Arc::new(SqliteStore::open(&path).expect("open"));
    let second = Arc::new(manager_for(&zoho.url, second_store, CLIENT_SECRET));

    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let manager = if i % 2 == 0 {
                Arc::clone(&zoho.manager)
            } else {
                Arc::clone(&second)
            };
            let owner = login.owner();
            tokio::spawn(async move { manager.access_token_for(&owner).await })
        })
        .collect();
    let mut handed_out = Vec::new();
    for task in tasks {
        handed_out.push(task.await.expect("task").expect("a token").access_token);
    }

    // Each process refreshes at most once; whoever lost the compare-and-set used the winner's token.
    let stored = zoho
        .stored(&login.token_id)
        .and_then(|t| t.access_token)
        .unwrap();
    assert!(
        handed_out.iter().all(|t| *t == stored),
        "one token for everyone"
    );
    assert!(zoho.counter("refreshes").await <= 2);
}

#[tokio::test]
async fn login_with_sqlite_survives_a_reopen() {
    let (_dir, path) = sqlite_file();
    let store: Arc<dyn TokenStore> = Arc::new(SqliteStore::open(&path).expect("open"));
    let zoho = TestZoho::start_with_store(store).await;
    let login = zoho.login(LIAM).await;

    let reopened: Arc<dyn TokenStore> = Arc::new(SqliteStore::open(&path).expect("reopen"));
    let restarted = manager_for(&zoho.url, reopened, CLIENT_SECRET);
    let token = restarted
        .access_token_for(&login.owner())
        .await
        .expect("a token");

    let user = crm_client()
        .current_user(CrmAuth {
            api_domain: &token.api_domain,
            access_token: &token.access_token,
        })
        .await
        .expect("the token works after a restart");
    assert_eq!(user.email, LIAM);
    assert_eq!(zoho.counter("refreshes").await, 0);
}

#[tokio::test]
async fn no_token_code_or_secret_reaches_the_log() {
    let log = global_log_capture();
    let zoho = TestZoho::start().await;
    let mut secrets = vec![Secret::from(CLIENT_SECRET)];

    let callback = zoho.authorize(PRIYA, AuthRequest::default()).await;
    secrets.push(callback.code.clone());
    secrets.push(callback.verifier.clone());
    let accounts = zoho
        .manager
        .accounts_server(&callback.accounts_server)
        .unwrap();
    let LoginOutcome::LoggedIn(login) = zoho
        .manager
        .login(&accounts, &callback.code, &callback.verifier)
        .await
        .expect("login")
    else {
        panic!("logged in");
    };
    let row = zoho.stored(&login.token_id).unwrap();
    secrets.extend(row.access_token.clone());
    secrets.extend(row.refresh_token.clone());
    zoho.expire_in_store(&login.token_id);
    let refreshed = zoho.manager.access_token_for(&login.owner()).await.unwrap();
    secrets.push(refreshed.access_token.clone());
    zoho.control("/_sandbox/expire-access-tokens", json!({}))
        .await;
    let crm = &crm_client();
    let retried = zoho
        .manager
        .call(&login.owner(), |t| async move {
            let auth = CrmAuth {
                api_domain: &t.api_domain,
                access_token: &t.access_token,
            };
            crm.current_user(auth).await
        })
        .await;
    assert!(retried.is_ok(), "{retried:?}");
    secrets.extend(zoho.stored(&login.token_id).unwrap().access_token);
    zoho.inject(json!({"target": "token", "error": "invalid_client", "count": 1}))
        .await;
    zoho.expire_in_store(&login.token_id);
    let misconfigured = zoho.manager.access_token_for(&login.owner()).await;
    assert!(matches!(misconfigured, Err(TokenError::Misconfigured(_))));
    zoho.manager
        .disconnect(&login.owner())
        .await
        .expect("disconnected");

    let written = log.text();
    assert!(
        written.contains("refreshed"),
        "the log is captured:\n{written}"
    );
    assert!(
        written.contains("MISCONFIGURED"),
        "a loud line for a misconfiguration"
    );
    for secret in &secrets {
        assert!(
            !written.contains(secret.expose_secret()),
            "a secret reached the log:\n{written}"
        );
    }
}

/// Captures the whole test binary's log from the first call on. Global rather than `set_default`: a
/// thread-local subscriber races with other tests caching "nobody listens" for the same callsites, and then
/// misses events. Other tests' lines land here too, which only widens what the secret check reads.
fn global_log_capture() -> LogCapture {
    static CAPTURE: std::sync::OnceLock<LogCapture> = std::sync::OnceLock::new();
    CAPTURE
        .get_or_init(|| {
            let log = LogCapture::default();
            let subscriber = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(
                    "zylker_portal::tokens=trace,zylker_portal::zoho=trace,reqwest=trace,hyper=trace,hyper_util=trace",
                ))
                .with_writer(log.clone())
                .with_ansi(false)
                .finish();
            tracing::subscriber::set_global_default(subscriber)
                .expect("no other global subscriber in this test binary");
            log
        })
        .clone()
}

/// A `MakeWriter` that keeps everything written, for reading back.
#[derive(Clone, Default)]
struct LogCapture(Arc<std::sync::Mutex<Vec<u8>>>);

impl LogCapture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogCapture {
    type Writer = LogCapture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn a_login_whose_identity_call_fails_stores_nothing_and_gives_back_the_refresh_token() {
    let zoho = TestZoho::start().await;
    zoho.inject(json!({"target": "crm", "status": 500, "count": 1}))
        .await;

    let outcome = zoho.login_outcome(PRIYA, AuthRequest::default()).await;

    assert!(
        matches!(outcome, Err(TokenError::Crm(CrmError::Server(500)))),
        "{outcome:?}"
    );
    assert!(zoho.rows().is_empty());
    assert_eq!(
        zoho.counter("revocations").await,
        1,
        "the unused refresh token is revoked"
    );
}

#[tokio::test]
async fn login_refresh_and_disconnect_work_on_every_store_spec() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let specs = [
        "list".to_owned(),
        "sqlite::memory:".to_owned(),
        format!("sqlite:{}", dir.path().join("tokens.db").display()),
        format!("file:{}", dir.path().join("tokens.csv").display()),
    ];
    for spec in specs {
        let parsed: StoreSpec = spec.parse().expect("a store spec");
        let store = open_store(&parsed).expect("the store opens");
        let zoho = TestZoho::start_with_store(store).await;

        let login = zoho.login(LIAM).await;
        zoho.expire_in_store(&login.token_id);
        let token = zoho.manager.access_token_for(&login.owner()).await;
        let again = zoho.login(LIAM).await;
        zoho.manager
            .disconnect(&login.owner())
            .await
            .expect("disconnected");

        assert!(token.is_ok(), "{spec}: {token:?}");
        assert_eq!(
            again.token_id, login.token_id,
            "{spec}: upsert by user_name"
        );
        assert_eq!(zoho.counter("refreshes").await, 1, "{spec}");
        assert!(zoho.rows().is_empty(), "{spec}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_access_lifetime_shorter_than_the_leeway_does_not_refresh_on_every_request() {
    // 30-second tokens with a 60-second leeway: by the letter, every token is "about to expire" from birth.
    let zoho = TestZoho::start_with(Arc::new(ListStore::new()), Duration::from_secs(30)).await;
    let login = zoho.login(PRIYA).await;

    zoho.manager
        .access_token_for(&login.owner())
        .await
        .expect("a token");
    assert_eq!(
        zoho.counter("refreshes").await,
        0,
        "a newborn token is used"
    );
    zoho.expire_in_store(&login.token_id);
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let owner = login.owner();
            let manager = Arc::clone(&zoho.manager);
            tokio::spawn(async move { manager.access_token_for(&owner).await })
        })
        .collect();
    for task in tasks {
        task.await.expect("task").expect("a token");
    }
    zoho.manager
        .access_token_for(&login.owner())
        .await
        .expect("a token");

    assert_eq!(zoho.counter("refreshes").await, 1);
}

#[tokio::test]
async fn a_code_older_than_two_minutes_is_dead_and_stores_nothing() {
    let zoho = TestZoho::start().await;
    let callback = zoho.authorize(PRIYA, AuthRequest::default()).await;
    let accounts = zoho
        .manager
        .accounts_server(&callback.accounts_server)
        .unwrap();
    zoho.control("/_sandbox/advance-clock", json!({"seconds": 180}))
        .await;

    let outcome = zoho
        .manager
        .login(&accounts, &callback.code, &callback.verifier)
        .await;

    assert!(matches!(outcome, Err(TokenError::Dead)), "{outcome:?}");
    assert!(zoho.rows().is_empty());
}

#[tokio::test]
async fn zohos_own_limit_of_ten_refreshes_per_ten_minutes_is_throttled_and_keeps_the_token() {
    let zoho = TestZoho::start().await;
    let login = zoho.login(PRIYA).await;
    let refresh_token = zoho
        .stored(&login.token_id)
        .and_then(|t| t.refresh_token)
        .unwrap();
    for _ in 0..10 {
        accounts_client()
            .refresh(&zoho.url, &refresh_token)
            .await
            .expect("within the limit");
    }
    zoho.expire_in_store(&login.token_id);
    let before = zoho.stored(&login.token_id).unwrap();

    let outcome = zoho.manager.access_token_for(&login.owner()).await;

    assert!(matches!(outcome, Err(TokenError::Throttled)), "{outcome:?}");
    assert_eq!(zoho.stored(&login.token_id), Some(before));
}

/// A store whose disk is full: every save fails, everything else works.
struct FullDiskStore(ListStore);

impl TokenStore for FullDiskStore {
    fn find_token(&self, partial: &OAuthToken) -> Result<Option<OAuthToken>, StoreError> {
        self.0.find_token(partial)
    }
    fn save_token(&self, _token: &mut OAuthToken) -> Result<(), StoreError> {
        Err(StoreError::backend(
            "save a token",
            "no space left on device",
        ))
    }
    fn delete_token(&self, id: &str) -> Result<(), StoreError> {
        self.0.delete_token(id)
    }
    fn get_tokens(&self) -> Result<Vec<OAuthToken>, StoreError> {
        self.0.get_tokens()
    }
    fn delete_tokens(&self) -> Result<(), StoreError> {
        self.0.delete_tokens()
    }
    fn find_token_by_id(&self, id: &str) -> Result<Option<OAuthToken>, StoreError> {
        self.0.find_token_by_id(id)
    }
}

#[tokio::test]
async fn a_login_the_store_cannot_save_gives_the_new_refresh_token_back_to_zoho() {
    let zoho = TestZoho::start_with_store(Arc::new(FullDiskStore(ListStore::new()))).await;

    let outcome = zoho.login_outcome(PRIYA, AuthRequest::default()).await;

    assert!(matches!(outcome, Err(TokenError::Store(_))), "{outcome:?}");
    assert_eq!(zoho.counter("revocations").await, 1);
}

#[tokio::test]
async fn reads_are_trusted_for_the_window_and_no_longer() {
    let zoho = TestZoho::start().await;
    let login = zoho.login(PRIYA).await;
    let trusting = zoho
        .second_manager()
        .trusting_reads_for(Duration::from_millis(300));
    let first = trusting
        .access_token_for(&login.owner())
        .await
        .expect("a token");

    // Deleted by another process: within the window the token read a moment ago still serves...
    zoho.store
        .delete_token(&login.token_id)
        .expect("delete in the store");
    let trusted = trusting
        .access_token_for(&login.owner())
        .await
        .expect("the token read less than the window ago");
    assert_eq!(trusted.access_token, first.access_token);
    // ...and never for another owner of the same id.
    let mut stranger = login.owner();
    stranger.user_name = "someone.else@zylker.example:1".into();
    assert!(trusting.access_token_for(&stranger).await.is_err());

    // Past the window, the store is read again: the token is gone.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(matches!(
        trusting.access_token_for(&login.owner()).await,
        Err(TokenError::NotStored)
    ));
}
