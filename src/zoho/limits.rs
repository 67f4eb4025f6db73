//! Zoho CRM's concurrency cap, kept from the portal's side: a fair, async gate per Zoho org, and what to do
//! about a 429.
//!
//! Zoho caps the CRM calls one app may have in flight per org (5 to 25 by edition) and answers the call past
//! the cap with HTTP 429 `TOO_MANY_REQUESTS`. A portal that forwards every page's call at once turns a crowd
//! into a wall of 429s, so every CRM call takes a turn at its org's gate first:
//!
//! - **The gate** is a `tokio::sync::Semaphore` of `--crm-concurrency` permits per org: first come, first served
//!   (tokio's semaphore queues its waiters in order), and async (a waiting call holds no thread). A call that
//!   does not get its turn within `--crm-queue-timeout-ms` gives up with [`GateError::Busy`]: the page says
//!   "Zoho is busy" with a `Retry-After`, instead of waiting for ever.
//! - **A 429** means somebody else (another app, another portal of the same org) uses part of the cap too. The
//!   call's permit is then held back for [`SHRINK_FOR`] (up to a minute when Zoho says to come back later), so
//!   the gate lets one call fewer through per 429, down to one; and the call is tried again after an
//!   exponential backoff with jitter, or after the time Zoho named (`Retry-After`, `X-RATELIMIT-RESET`), as long
//!   as that ends within the call's deadline (the queue timeout, counted from the call's first turn in the
//!   queue). Past it the call fails with Zoho's 429 and the page says so.
//!
//! **The org key.** A stored token's `user_name` is `email:org_id` (as the Zoho SDKs key their tokens), and the
//! token carries its `api_domain` (its data centre); the two make the [`OrgKey`]. A login's first two calls are
//! made before the org is known; they take their turn at the gate of the org last seen at that API domain (for
//! a portal of one org, that org's own gate), or at a gate of the API domain alone before any org was seen.
//!
//! The token endpoint (Zoho Accounts) is not gated: it has limits of its own, handled by the token manager.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use dashmap::DashMap;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
// tokio's clock, so that tests can pause it; the same as std's otherwise.
use tokio::time::Instant;

use super::CrmError;
use crate::telemetry::Telemetry;

/// The portal's side of Zoho's concurrency cap (`--crm-concurrency`, `--crm-queue-timeout-ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrmLimits {
    /// The most CRM calls this portal has in flight per org.
    pub concurrency: usize,
    /// How long a call waits for its turn; also how long it keeps trying after 429s.
    pub queue_timeout: Duration,
}

impl Default for CrmLimits {
    /// Zoho Standard's cap (10), and ten seconds.
    fn default() -> Self {
        CrmLimits {
            concurrency: DEFAULT_CONCURRENCY,
            queue_timeout: DEFAULT_QUEUE_TIMEOUT,
        }
    }
}

/// `--crm-concurrency`'s default: the cap of Zoho CRM Standard.
pub const DEFAULT_CONCURRENCY: usize = 10;
/// `--crm-queue-timeout-ms`'s default.
pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a permit is held back after a 429 when Zoho does not say.
pub const SHRINK_FOR: Duration = Duration::from_secs(5);

/// The longest a permit is held back, whatever Zoho says: a 429 that asks for longer is a day's credits running
/// out, which a smaller gate does not help.
const LONGEST_SHRINK: Duration = Duration::from_secs(60);

/// What the "Zoho is busy" page asks the browser to wait before trying again.
pub const BUSY_RETRY_AFTER: Duration = Duration::from_secs(5);

/// The first backoff after a 429, before jitter; it doubles each time, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Which org's cap a call counts against: its data centre's API domain and the org's id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OrgKey {
    api_domain: String,
    org_id: Option<String>,
}

impl OrgKey {
    /// The org of a stored token: `user_name` is `email:org_id`. A name without an org (written by another
    /// program) counts against its API domain's gate.
    pub fn of_token(api_domain: &str, user_name: &str) -> OrgKey {
        OrgKey {
            api_domain: api_domain.to_owned(),
            org_id: user_name
                .rsplit_once(':')
                .map(|(_, org)| org.to_owned())
                .filter(|org| !org.is_empty()),
        }
    }

    /// An org by its id.
    pub fn new(api_domain: &str, org_id: &str) -> OrgKey {
        OrgKey {
            api_domain: api_domain.to_owned(),
            org_id: Some(org_id.to_owned()),
        }
    }

    /// The key of an API domain whose org is not known.
    fn unknown_org(api_domain: &str) -> OrgKey {
        OrgKey {
            api_domain: api_domain.to_owned(),
            org_id: None,
        }
    }
}

/// Why a gated call failed.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// The call's turn did not come within the queue timeout; nothing was sent to Zoho.
    #[error("Zoho CRM is busy: no turn within the queue timeout")]
    Busy { retry_after: Duration },
    /// The call itself failed (a 429 past the deadline among others).
    #[error(transparent)]
    Crm(#[from] CrmError),
}

/// The gates of every org this portal calls; see the module documentation.
#[derive(Debug)]
pub struct CrmGate {
    limits: CrmLimits,
    orgs: DashMap<OrgKey, Arc<OrgGate>>,
    /// The org last seen at each API domain, for the calls of a login (see the module documentation).
    last_org: DashMap<String, OrgKey>,
    telemetry: Arc<Telemetry>,
}

/// One org's gate.
#[derive(Debug)]
struct OrgGate {
    permits: Arc<Semaphore>,
    /// The gate's size (`--crm-concurrency`).
    capacity: usize,
    /// Permits held back after 429s; never all of them.
    withheld: Arc<AtomicUsize>,
}

impl CrmGate {
    pub fn new(limits: CrmLimits, telemetry: Arc<Telemetry>) -> CrmGate {
        CrmGate {
            limits: CrmLimits {
                concurrency: limits.concurrency.clamp(1, Semaphore::MAX_PERMITS),
                ..limits
            },
            orgs: DashMap::new(),
            last_org: DashMap::new(),
            telemetry,
        }
    }

    /// The key for a login's calls at `api_domain`, made before the org is known.
    pub fn login_key(&self, api_domain: &str) -> OrgKey {
        self.last_org
            .get(api_domain)
            .map(|key| key.clone())
            .unwrap_or_else(|| OrgKey::unknown_org(api_domain))
    }

    /// Notes that `org` was seen at its API domain (the next login there takes its turn at that org's gate).
    pub fn note_org(&self, org: &OrgKey) {
        if org.org_id.is_some()
            && self
                .last_org
                .get(&org.api_domain)
                .is_none_or(|known| *known != *org)
        {
            self.last_org.insert(org.api_domain.clone(), org.clone());
        }
    }

    /// Runs `attempt` (one CRM call) in its turn at `org`'s gate, trying again after 429s within the deadline.
    pub async fn run<T, F, Fut>(&self, org: &OrgKey, mut attempt: F) -> Result<T, GateError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, CrmError>>,
    {
        let deadline = Instant::now() + self.limits.queue_timeout;
        let gate = self.gate_of(org);
        let mut backoff = ExponentialBuilder::default()
            .with_min_delay(FIRST_BACKOFF)
            .with_max_delay(MAX_BACKOFF)
            .with_jitter()
            .without_max_times()
            .build();
        loop {
            let permit = self.turn(&gate, deadline).await?;
            let retry_after = match attempt().await {
                Err(CrmError::RateLimited { retry_after }) => retry_after,
                answer => return answer.map_err(GateError::from),
            };
            gate.hold_back(
                permit,
                retry_after
                    .unwrap_or(SHRINK_FOR)
                    .clamp(SHRINK_FOR, LONGEST_SHRINK),
            );
            let wait = retry_after
                .or_else(|| backoff.next())
                .unwrap_or(MAX_BACKOFF);
            if Instant::now() + wait >= deadline {
                tracing::warn!(
                    wait_ms = wait.as_millis(),
                    "Zoho CRM answered 429 and the call's deadline comes first; giving up"
                );
                return Err(CrmError::RateLimited { retry_after }.into());
            }
            tracing::info!(
                wait_ms = wait.as_millis(),
                "Zoho CRM answered 429; trying again after a backoff"
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// Waits for a turn at `gate` until `deadline`.
    async fn turn(
        &self,
        gate: &OrgGate,
        deadline: Instant,
    ) -> Result<OwnedSemaphorePermit, GateError> {
        if let Ok(permit) = Arc::clone(&gate.permits).try_acquire_owned() {
            self.telemetry.queue_skipped();
            return Ok(permit);
        }
        let queued = Instant::now();
        self.telemetry.queue_entered();
        let turn =
            tokio::time::timeout_at(deadline, Arc::clone(&gate.permits).acquire_owned()).await;
        let waited = queued.elapsed();
        match turn {
            Ok(Ok(permit)) => {
                self.telemetry.queue_left(waited, false);
                Ok(permit)
            }
            // The semaphore is never closed; a closed one would mean the portal is stopping.
            Ok(Err(_)) | Err(_) => {
                self.telemetry.queue_left(waited, true);
                tracing::warn!(
                    waited_ms = waited.as_millis(),
                    "no turn to call Zoho CRM within the queue timeout"
                );
                Err(GateError::Busy {
                    retry_after: BUSY_RETRY_AFTER,
                })
            }
        }
    }

    fn gate_of(&self, org: &OrgKey) -> Arc<OrgGate> {
        if let Some(gate) = self.orgs.get(org) {
            return Arc::clone(gate.value());
        }
        let gate = self.orgs.entry(org.clone()).or_insert_with(|| {
            Arc::new(OrgGate {
                permits: Arc::new(Semaphore::new(self.limits.concurrency)),
                capacity: self.limits.concurrency,
                withheld: Arc::new(AtomicUsize::new(0)),
            })
        });
        Arc::clone(gate.value())
    }
}

impl OrgGate {
    /// Keeps `permit` out of the gate for `how_long` (the gate lets one call fewer through meanwhile), unless
    /// every other permit is held back already: one call at a time always goes through.
    fn hold_back(&self, permit: OwnedSemaphorePermit, how_long: Duration) {
        let capacity = self.capacity;
        let withheld = Arc::clone(&self.withheld);
        let reserved = withheld
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                (held + 1 < capacity).then_some(held + 1)
            })
            .is_ok();
        if !reserved {
            return;
        }
        tokio::spawn(async move {
            tokio::time::sleep(how_long).await;
            withheld.fetch_sub(1, Ordering::AcqRel);
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::AtomicU32;

    use super::*;

    fn gate(concurrency: usize, queue_timeout: Duration) -> CrmGate {
        CrmGate::new(
            CrmLimits {
                concurrency,
                queue_timeout,
            },
            Arc::new(Telemetry::with_metrics()),
        )
    }

    fn org() -> OrgKey {
        OrgKey::new("https://www.zohoapis.com", "60032191920")
    }

    /// A turn at [`org`]'s gate, taken as another call would.
    async fn take_a_turn(gate: &CrmGate) -> OwnedSemaphorePermit {
        let permits = Arc::clone(&gate.gate_of(&org()).permits);
        permits.acquire_owned().await.unwrap()
    }

    fn available(gate: &CrmGate, org: &OrgKey) -> usize {
        gate.gate_of(org).permits.available_permits()
    }

    #[tokio::test(start_paused = true)]
    async fn no_more_calls_than_the_cap_are_in_flight() {
        let gate = Arc::new(gate(3, Duration::from_secs(60)));
        let (in_flight, most) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
        let calls: Vec<_> = (0..20)
            .map(|_| {
                let (gate, in_flight, most) = (gate.clone(), in_flight.clone(), most.clone());
                tokio::spawn(async move {
                    gate.run(&org(), || async {
                        let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(150)).await;
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                        Ok::<_, CrmError>(())
                    })
                    .await
                })
            })
            .collect();
        for call in calls {
            call.await.unwrap().unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 3);
        let usage = gate.telemetry.usage();
        assert_eq!(usage.queued, 17, "all but the first three waited");
        assert_eq!(usage.queue_timeouts, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn turns_come_first_come_first_served() {
        let gate = Arc::new(gate(1, Duration::from_secs(60)));
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut calls = Vec::new();
        for n in 0..6 {
            let (gate, order) = (gate.clone(), order.clone());
            calls.push(tokio::spawn(async move {
                gate.run(&org(), || async {
                    order.lock().unwrap().push(n);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    Ok::<_, CrmError>(())
                })
                .await
            }));
            // Each call is queued before the next one arrives.
            tokio::task::yield_now().await;
        }
        for call in calls {
            call.await.unwrap().unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3, 4, 5]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_whose_turn_does_not_come_in_time_is_busy_and_never_sent() {
        let gate = gate(1, Duration::from_millis(500));
        // Another call holds the only permit until the waiter has given up.
        let permit = take_a_turn(&gate).await;
        let sent = AtomicU32::new(0);
        let waited = gate
            .run(&org(), || async {
                sent.fetch_add(1, Ordering::SeqCst);
                Ok::<_, CrmError>(())
            })
            .await;
        drop(permit);
        assert!(
            matches!(waited, Err(GateError::Busy { retry_after }) if retry_after == BUSY_RETRY_AFTER),
            "{waited:?}"
        );
        assert_eq!(sent.load(Ordering::SeqCst), 0);
        assert_eq!(gate.telemetry.usage().queue_timeouts, 1);
        let metrics = gate.telemetry.render().unwrap();
        assert!(
            metrics.contains("zoho_crm_queue_timeouts_total 1"),
            "{metrics}"
        );
        assert!(
            metrics.contains("zoho_crm_queue_wait_seconds_count 1"),
            "{metrics}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_is_tried_again_and_shrinks_the_gate_for_a_while() {
        let gate = gate(4, Duration::from_secs(10));
        let attempts = AtomicU32::new(0);
        let answer = gate
            .run(&org(), || async {
                match attempts.fetch_add(1, Ordering::SeqCst) {
                    0 => Err(CrmError::RateLimited { retry_after: None }),
                    _ => Ok("records"),
                }
            })
            .await;
        assert_eq!(answer.unwrap(), "records");
        assert_eq!(attempts.load(Ordering::SeqCst), 2);
        assert_eq!(available(&gate, &org()), 3, "one permit is held back");
        tokio::time::sleep(SHRINK_FOR + Duration::from_millis(1)).await;
        assert_eq!(available(&gate, &org()), 4, "and given back after a while");
    }

    #[tokio::test(start_paused = true)]
    async fn zohos_retry_after_is_waited_before_trying_again() {
        let gate = gate(2, Duration::from_secs(10));
        let tried_at = Mutex::new(Vec::new());
        let answer = gate
            .run(&org(), || async {
                let mut tried = tried_at.lock().unwrap();
                tried.push(tokio::time::Instant::now());
                if tried.len() == 1 {
                    Err(CrmError::RateLimited {
                        retry_after: Some(Duration::from_secs(3)),
                    })
                } else {
                    Ok(())
                }
            })
            .await;
        answer.unwrap();
        let tried = tried_at.lock().unwrap();
        assert_eq!(tried.len(), 2);
        assert!(tried[1] - tried[0] >= Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_asking_for_longer_than_the_deadline_fails_at_once() {
        let gate = gate(2, Duration::from_secs(10));
        let attempts = AtomicU32::new(0);
        let answer: Result<(), _> = gate
            .run(&org(), || async {
                attempts.fetch_add(1, Ordering::SeqCst);
                Err(CrmError::RateLimited {
                    retry_after: Some(Duration::from_secs(60)),
                })
            })
            .await;
        assert!(
            matches!(
                answer,
                Err(GateError::Crm(CrmError::RateLimited { retry_after: Some(after) })) if after == Duration::from_secs(60)
            ),
            "{answer:?}"
        );
        assert_eq!(attempts.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limits_that_outlast_the_deadline_end_in_a_429_and_the_gate_keeps_one_permit() {
        let gate = gate(3, Duration::from_secs(10));
        let started = tokio::time::Instant::now();
        let attempts = AtomicU32::new(0);
        let answer: Result<(), _> = gate
            .run(&org(), || async {
                attempts.fetch_add(1, Ordering::SeqCst);
                Err(CrmError::RateLimited { retry_after: None })
            })
            .await;
        assert!(
            matches!(answer, Err(GateError::Crm(CrmError::RateLimited { .. }))),
            "{answer:?}"
        );
        assert!(
            attempts.load(Ordering::SeqCst) > 3,
            "backed off and tried again"
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "within the deadline"
        );
        assert!(
            available(&gate, &org()) >= 1,
            "never every permit held back"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn orgs_have_gates_of_their_own() {
        let gate = gate(1, Duration::from_millis(100));
        let other = OrgKey::new("https://www.zohoapis.com", "1");
        let _busy = take_a_turn(&gate).await;
        let answer = gate.run(&other, || async { Ok::<_, CrmError>(7) }).await;
        assert_eq!(answer.unwrap(), 7);
    }

    #[test]
    fn the_org_of_a_token_is_after_the_last_colon_of_its_user_name() {
        let key = OrgKey::of_token(
            "https://www.zohoapis.eu",
            "o'brien:x@zylker.com:60032191920",
        );
        assert_eq!(key, OrgKey::new("https://www.zohoapis.eu", "60032191920"));
        assert_ne!(
            key,
            OrgKey::new("https://www.zohoapis.com", "60032191920"),
            "another data centre is another org"
        );
        assert_eq!(
            OrgKey::of_token("https://www.zohoapis.eu", "no-org"),
            OrgKey::unknown_org("https://www.zohoapis.eu")
        );
    }

    #[test]
    fn a_login_takes_its_turn_at_the_gate_of_the_org_last_seen_at_its_api_domain() {
        let gate = gate(1, Duration::from_secs(1));
        let domain = "https://www.zohoapis.com";
        assert_eq!(gate.login_key(domain), OrgKey::unknown_org(domain));
        gate.note_org(&org());
        assert_eq!(gate.login_key(domain), org());
        assert_eq!(
            gate.login_key("https://www.zohoapis.eu"),
            OrgKey::unknown_org("https://www.zohoapis.eu")
        );
    }
}
