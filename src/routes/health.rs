//! `GET /healthz`: 200 `{"status":"ok"}` when the token store answers a read within [`PROBE_TIMEOUT`], 503
//! `{"status":"unavailable"}` otherwise. The public answer says nothing more, since anyone may ask and the
//! reason names the store's user, host, port, database and table; the reason goes to the log and to the
//! `/healthz` of the metrics listener (`--metrics-bind`), which only operators reach.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{HttpResponse, web};
use tokio::sync::watch;

use crate::tokens::TokenStore;

/// How long a health check waits for the store: a load balancer's check gets its answer within a second, and a
/// store slower than this counts as unavailable.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(800);

/// What one read of the store gave: `None` while it runs, then `Ok` or the reason (the store's errors name
/// the store with its password masked and carry no token).
type ProbeAnswer = Option<Result<(), String>>;

/// Reads the store for health checks, one read at a time.
///
/// A read runs on the blocking pool and cannot be abandoned there: a store that hangs holds its thread until
/// the store's own timeout. So a check that arrives while a read is still running waits for that read's
/// answer instead of starting another, and a hung store costs one blocking thread however often it is asked
/// after, never the pool that pages read their tokens on.
pub struct StoreHealth {
    store: Arc<dyn TokenStore>,
    timeout: Duration,
    /// The answer of the latest read (running while it holds `None` and its sender lives).
    latest: Mutex<Option<watch::Receiver<ProbeAnswer>>>,
    /// Why the last read that ended failed, until one succeeds: a store that takes longer than the timeout to
    /// fail (a database that refuses after retries) still has its reason told.
    last_failure: Arc<Mutex<Option<String>>>,
}

impl StoreHealth {
    /// Health checks of `store`, each waiting at most [`PROBE_TIMEOUT`].
    pub fn new(store: Arc<dyn TokenStore>) -> StoreHealth {
        StoreHealth::with_timeout(store, PROBE_TIMEOUT)
    }

    /// Health checks of `store`, each waiting at most `timeout`.
    pub fn with_timeout(store: Arc<dyn TokenStore>, timeout: Duration) -> StoreHealth {
        StoreHealth {
            store,
            timeout,
            latest: Mutex::new(None),
            last_failure: Arc::default(),
        }
    }

    /// Whether the store answers a read within the timeout; the reason when it does not.
    pub async fn check(&self) -> Result<(), String> {
        let mut answer = self.join_or_start_read();
        match tokio::time::timeout(self.timeout, answer.wait_for(Option::is_some)).await {
            Ok(Ok(done)) => done.clone().unwrap_or(Ok(())),
            Ok(Err(_)) => Err("the token store's read ended without an answer".to_owned()),
            Err(_) => {
                let mut reason = format!(
                    "the token store did not answer a read within {} ms",
                    self.timeout.as_millis()
                );
                let last_failure = self.last_failure.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(last_failure) = last_failure.as_deref() {
                    reason.push_str("; the last read that ended failed: ");
                    reason.push_str(last_failure);
                }
                tracing::warn!(error = %reason, "health check: the token store cannot be read");
                Err(reason)
            }
        }
    }

    /// The running read's answer, or a new read's when none is running.
    fn join_or_start_read(&self) -> watch::Receiver<ProbeAnswer> {
        let mut latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(running) = latest.as_ref()
            && running.borrow().is_none()
            && running.has_changed().is_ok()
        {
            return running.clone();
        }
        let (sender, answer) = watch::channel(None);
        let store = Arc::clone(&self.store);
        let last_failure = Arc::clone(&self.last_failure);
        tokio::task::spawn_blocking(move || {
            let read = store
                .find_token_by_id("healthz-probe")
                .map(|_| ())
                .map_err(|error| super::error::error_chain(&error));
            if let Err(reason) = &read {
                // Logged once per read, however many checks wait on it.
                tracing::warn!(error = %reason, "health check: the token store cannot be read");
            }
            *last_failure.lock().unwrap_or_else(|p| p.into_inner()) = read.clone().err();
            let _ = sender.send(Some(read));
        });
        *latest = Some(answer.clone());
        answer
    }
}

/// `GET /healthz` on the public listener (for load balancers and `serve` supervisors): `ok` or `unavailable`,
/// and nothing about the store.
pub async fn healthz(health: web::Data<StoreHealth>) -> HttpResponse {
    match health.check().await {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({"status": "ok"})),
        Err(_) => {
            HttpResponse::ServiceUnavailable().json(serde_json::json!({"status": "unavailable"}))
        }
    }
}

/// `GET /healthz` on the metrics listener: the same check, and when the store is unavailable, why (the store
/// named with its password masked), so that an operator sees at once what the store lacks.
pub async fn healthz_with_reason(health: web::Data<StoreHealth>) -> HttpResponse {
    match health.check().await {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({"status": "ok"})),
        Err(reason) => HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({"status": "unavailable", "store": reason})),
    }
}
