//! Zoho CRM's concurrency cap, kept from the portal's side: a fair, async gate per Zoho org, and what to do
//! about a 429.
//!
//! Zoho caps the CRM calls one app may have in flight per org (5 to 25 by edition) and answers the call past
//! the cap with HTTP 429 `TOO_MANY_REQUESTS`. A portal that forwards every page's call at once turns a crowd
//! into a wall of 429s, so every CRM call takes a turn at its org's gate first:
//!
//! - **The gate** lets `--crm-concurrency` calls per org through at once; the others wait, asynchronously (a
//!   waiting call holds no thread). A call that does not get its turn within `--crm-queue-timeout-ms` gives up
//!   with [`GateError::Busy`]: the page says "Zoho is busy" with a `Retry-After`, instead of waiting for ever.
//! - **Turns are fair.** Waiting calls are kept in [`Lane`]s: a login's calls in a lane of their own, served
//!   before any page's (a login is never starved by page traffic), and each user's page calls in a lane of the
//!   user's, the users served round-robin (one user's forty tabs cost another user one turn of the gate, not
//!   forty). Within a lane, first come, first served.
//! - **A call whose page is gone leaves at once.** When the browser goes away, the server drops the page's
//!   future; the call's place in the queue is removed as it is dropped (and a turn handed to it in that instant
//!   goes on to the next call), so it never reaches Zoho. Counted as `zoho_crm_queue_abandoned_total`.
//! - **A 429** means somebody else (another app, another portal of the same org) uses part of the cap too. The
//!   call's turn is then held back for [`SHRINK_FOR`] (up to a minute when Zoho says to come back later), so
//!   the gate lets one call fewer through per 429, down to one; and the call is tried again after an
//!   exponential backoff with jitter, or after the time Zoho named (`Retry-After`, `X-RATELIMIT-RESET`), as long
//!   as that ends within the call's deadline (the queue timeout, counted from the call's first turn in the
//!   queue). Past it the call fails with Zoho's 429 and the page says so.
//!
//! - **Searches** count against a sub-limit of their own too: Zoho lets at most [`SEARCH_CONCURRENCY`] search
//!   calls per org be in flight, within the org's cap. A search ([`CallKind::Search`]) first takes a turn at its
//!   org's search gate (that many turns, or the org's gate's size if smaller), in its lane as at the org's gate,
//!   then a turn at the org's gate; a burst of searches waits there instead of meeting Zoho's 429. Other calls
//!   never wait for the search gate.
//!
//! **The org key.** A stored token's `user_name` is `email:org_id` (as the Zoho SDKs key their tokens), and the
//! token carries its `api_domain` (its data centre); the two make the [`OrgKey`]. A login's first two calls are
//! made before the org is known; they take their turn at the gate of the org last seen at that API domain (for
//! a portal of one org, that org's own gate), or at a gate of the API domain alone before any org was seen.
//!
//! The token endpoint (Zoho Accounts) is not gated: it has limits of its own, handled by the token manager.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use dashmap::DashMap;
use tokio::sync::oneshot;
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

/// Zoho's sub-limit on concurrent search calls per org, within the org's cap, in every edition
/// (`docs/zoho-protocol.md#api-limits`).
pub const SEARCH_CONCURRENCY: usize = 10;

/// `--crm-concurrency`'s default: the cap of Zoho CRM Standard.
pub const DEFAULT_CONCURRENCY: usize = 10;
/// `--crm-queue-timeout-ms`'s default.
pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(10);

/// The widest gate: more turns than any Zoho edition's cap, far from overflowing a counter.
const MAX_CONCURRENCY: usize = 1 << 20;

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

/// Where a waiting call queues at its org's gate (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Lane {
    /// A login's calls (who the user is, which org): served before every page's.
    Login,
    /// A page's calls for one user, by the token's `user_name` (`email:org_id`): users take turns.
    User(String),
}

/// What kind of call takes a turn: a search also needs a turn at its org's search gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// Any call without a sub-limit of its own.
    Plain,
    /// `GET /crm/v8/{module}/search`.
    Search,
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
    /// Each org's search gate: [`SEARCH_CONCURRENCY`] turns (fewer if the org's gate is smaller).
    searches: DashMap<OrgKey, Arc<OrgGate>>,
    /// The org last seen at each API domain, for the calls of a login (see the module documentation).
    last_org: DashMap<String, OrgKey>,
    telemetry: Arc<Telemetry>,
}

/// One org's gate.
#[derive(Debug)]
struct OrgGate {
    /// The gate's size (`--crm-concurrency`).
    capacity: usize,
    /// Turns held back after 429s; never all of them.
    withheld: AtomicUsize,
    queue: Mutex<Queue>,
}

/// The turns free at one org's gate and the calls waiting for one. While a call waits, no turn is free: every
/// turn given back goes to the next waiting call first.
#[derive(Debug)]
struct Queue {
    free: usize,
    next_ticket: u64,
    login: VecDeque<Waiter>,
    /// The users with calls waiting, in the order their next turn comes.
    users: VecDeque<String>,
    waiting: HashMap<String, VecDeque<Waiter>>,
}

/// A waiting call: its ticket, and where to hand it its turn.
#[derive(Debug)]
struct Waiter {
    ticket: u64,
    grant: oneshot::Sender<Turn>,
}

/// A turn at an org's gate: one call in flight. Dropping it gives the turn to the next waiting call, also when
/// it is dropped unused (its call was abandoned in the instant it was handed over).
#[derive(Debug)]
struct Turn {
    gate: Option<Arc<OrgGate>>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        if let Some(gate) = self.gate.take() {
            gate.hand_on(1);
        }
    }
}

impl Turn {
    /// A turn that was never handed over: counted back by whoever made it, not by dropping it.
    fn disarm(mut self) {
        self.gate = None;
    }
}

impl CrmGate {
    pub fn new(limits: CrmLimits, telemetry: Arc<Telemetry>) -> CrmGate {
        CrmGate {
            limits: CrmLimits {
                concurrency: limits.concurrency.clamp(1, MAX_CONCURRENCY),
                ..limits
            },
            orgs: DashMap::new(),
            searches: DashMap::new(),
            last_org: DashMap::new(),
            telemetry,
        }
    }

    /// How long a call waits for its turn (`--crm-queue-timeout-ms`): also the bound of other waits a page
    /// makes before its call, such as for another portal's refresh.
    pub fn queue_timeout(&self) -> Duration {
        self.limits.queue_timeout
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

    /// Runs `attempt` (one CRM call) in its turn in `lane` at `org`'s gate, trying again after 429s within the
    /// deadline. Dropping the future (the page's browser has gone) leaves the queue; nothing is sent after that.
    pub async fn run<T, F, Fut>(
        &self,
        org: &OrgKey,
        lane: &Lane,
        attempt: F,
    ) -> Result<T, GateError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, CrmError>>,
    {
        self.run_as(org, lane, CallKind::Plain, attempt).await
    }

    /// [`Self::run`] for a call of `kind`: a search takes its turn at the org's search gate first (see the
    /// module documentation), within the same deadline.
    pub async fn run_as<T, F, Fut>(
        &self,
        org: &OrgKey,
        lane: &Lane,
        kind: CallKind,
        mut attempt: F,
    ) -> Result<T, GateError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, CrmError>>,
    {
        let deadline = Instant::now() + self.limits.queue_timeout;
        let gate = self.gate_of(org);
        let search_gate = (kind == CallKind::Search).then(|| self.search_gate_of(org));
        let mut backoff = ExponentialBuilder::default()
            .with_min_delay(FIRST_BACKOFF)
            .with_max_delay(MAX_BACKOFF)
            .with_jitter()
            .without_max_times()
            .build();
        loop {
            // The search turn first, holding nothing; then the org's, holding the search turn. No call holds an
            // org's turn while it waits, so the two gates cannot wait on each other.
            let search_turn = match &search_gate {
                Some(search_gate) => Some(self.sub_turn(search_gate, lane, deadline).await?),
                None => None,
            };
            let turn = self.turn(&gate, lane, deadline).await?;
            let retry_after = match attempt().await {
                Err(CrmError::RateLimited { retry_after }) => retry_after,
                answer => return answer.map_err(GateError::from),
            };
            let shrink_for = retry_after
                .unwrap_or(SHRINK_FOR)
                .clamp(SHRINK_FOR, LONGEST_SHRINK);
            gate.hold_back(turn, shrink_for);
            // The 429 may have been the search sub-limit's (another app searching): fewer searches for a while.
            if let (Some(search_gate), Some(search_turn)) = (&search_gate, search_turn) {
                search_gate.hold_back(search_turn, shrink_for);
            }
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

    /// Waits in `lane` for a turn at `gate` until `deadline`.
    async fn turn(
        &self,
        gate: &Arc<OrgGate>,
        lane: &Lane,
        deadline: Instant,
    ) -> Result<Turn, GateError> {
        let (ticket, granted) = match gate.enter(lane) {
            Entered::Now(turn) => {
                self.telemetry.queue_skipped();
                return Ok(turn);
            }
            Entered::Queued { ticket, granted } => (ticket, granted),
        };
        self.wait_for_turn(gate, lane, deadline, ticket, granted)
            .await
    }

    /// [`Self::turn`] at a search gate: a turn had at once is not counted (the call is counted at the org's gate
    /// next), a wait is counted as any other.
    async fn sub_turn(
        &self,
        gate: &Arc<OrgGate>,
        lane: &Lane,
        deadline: Instant,
    ) -> Result<Turn, GateError> {
        match gate.enter(lane) {
            Entered::Now(turn) => Ok(turn),
            Entered::Queued { ticket, granted } => {
                self.wait_for_turn(gate, lane, deadline, ticket, granted)
                    .await
            }
        }
    }

    /// Waits with the place `ticket` in `lane` at `gate` until the turn comes through `granted` or `deadline`
    /// passes.
    async fn wait_for_turn(
        &self,
        gate: &Arc<OrgGate>,
        lane: &Lane,
        deadline: Instant,
        ticket: u64,
        mut granted: oneshot::Receiver<Turn>,
    ) -> Result<Turn, GateError> {
        self.telemetry.queue_entered();
        // Declared after `granted`, so dropped before it: the place is left before a turn handed over in the
        // meantime goes back (either order is safe; this one hands it on sooner).
        let mut waiting = Waiting {
            gate,
            lane,
            ticket,
            queued: Instant::now(),
            telemetry: &self.telemetry,
            settled: false,
        };
        let answer = tokio::time::timeout_at(deadline, &mut granted).await;
        let turn = match answer {
            Ok(Ok(turn)) => Some(turn),
            // The sender is only dropped unsent by a gate being dropped, which this call holds.
            Ok(Err(_)) => None,
            // Out of time; unless the turn was handed over in that very instant, the place is still queued.
            Err(_) if gate.leave(lane, ticket) => None,
            Err(_) => granted.try_recv().ok(),
        };
        if turn.is_some() {
            // The browser may have gone while the call waited, and the server learns it only when it reads the
            // connection, which it does before it polls the page again: one yield lets it drop the page here
            // (counted as abandoned, the turn going on to the next call) rather than after Zoho was called.
            tokio::task::yield_now().await;
        }
        let waited = waiting.queued.elapsed();
        waiting.settled = true;
        self.telemetry.queue_left(waited, turn.is_none());
        turn.ok_or_else(|| {
            tracing::warn!(
                waited_ms = waited.as_millis(),
                "no turn to call Zoho CRM within the queue timeout"
            );
            GateError::Busy {
                retry_after: BUSY_RETRY_AFTER,
            }
        })
    }

    fn gate_of(&self, org: &OrgKey) -> Arc<OrgGate> {
        gate_in(&self.orgs, org, self.limits.concurrency)
    }

    fn search_gate_of(&self, org: &OrgKey) -> Arc<OrgGate> {
        gate_in(
            &self.searches,
            org,
            SEARCH_CONCURRENCY.min(self.limits.concurrency),
        )
    }
}

/// `org`'s gate in `gates`, made with `capacity` turns the first time it is asked for.
fn gate_in(gates: &DashMap<OrgKey, Arc<OrgGate>>, org: &OrgKey, capacity: usize) -> Arc<OrgGate> {
    if let Some(gate) = gates.get(org) {
        return Arc::clone(gate.value());
    }
    let gate = gates
        .entry(org.clone())
        .or_insert_with(|| Arc::new(OrgGate::new(capacity)));
    Arc::clone(gate.value())
}

/// What [`OrgGate::enter`] gave a call.
enum Entered {
    /// A turn at once: a turn was free and nobody waited.
    Now(Turn),
    /// A place in its lane; the turn comes through `granted`.
    Queued {
        ticket: u64,
        granted: oneshot::Receiver<Turn>,
    },
}

/// A call's place in its lane while it waits. Dropped unsettled (the page's future was dropped: its browser has
/// gone), it leaves the lane and counts as abandoned.
struct Waiting<'a> {
    gate: &'a Arc<OrgGate>,
    lane: &'a Lane,
    ticket: u64,
    queued: Instant,
    telemetry: &'a Telemetry,
    settled: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.gate.leave(self.lane, self.ticket);
            self.telemetry.queue_abandoned(self.queued.elapsed());
            tracing::debug!("a CRM call left the queue: its page is gone");
        }
    }
}

impl OrgGate {
    fn new(capacity: usize) -> OrgGate {
        OrgGate {
            capacity,
            withheld: AtomicUsize::new(0),
            queue: Mutex::new(Queue {
                free: capacity,
                next_ticket: 0,
                login: VecDeque::new(),
                users: VecDeque::new(),
                waiting: HashMap::new(),
            }),
        }
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        // Nothing panics while holding the lock; should something, the queue's state is still whole.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A turn at once, or a place at the end of `lane`.
    fn enter(self: &Arc<Self>, lane: &Lane) -> Entered {
        let mut queue = self.queue();
        if queue.free > 0 {
            queue.free -= 1;
            return Entered::Now(Turn {
                gate: Some(Arc::clone(self)),
            });
        }
        let (grant, granted) = oneshot::channel();
        let ticket = queue.next_ticket;
        queue.next_ticket += 1;
        let waiter = Waiter { ticket, grant };
        match lane {
            Lane::Login => queue.login.push_back(waiter),
            Lane::User(user) => match queue.waiting.get_mut(user) {
                Some(waiting) => waiting.push_back(waiter),
                None => {
                    queue.users.push_back(user.clone());
                    queue.waiting.insert(user.clone(), VecDeque::from([waiter]));
                }
            },
        }
        Entered::Queued { ticket, granted }
    }

    /// Takes the place of `ticket` out of `lane`; whether it was still there (no turn handed to it).
    fn leave(&self, lane: &Lane, ticket: u64) -> bool {
        let mut queue = self.queue();
        match lane {
            Lane::Login => remove_ticket(&mut queue.login, ticket),
            Lane::User(user) => {
                let Some(waiting) = queue.waiting.get_mut(user) else {
                    return false;
                };
                let removed = remove_ticket(waiting, ticket);
                if waiting.is_empty() {
                    queue.waiting.remove(user);
                    queue.users.retain(|queued| queued != user);
                }
                removed
            }
        }
    }

    /// Gives `freed` turns back and hands them to the next waiting calls; a turn whose call has gone meanwhile
    /// goes on to the one after. Never called with the queue locked (a dropped [`Turn`] calls it).
    fn hand_on(self: &Arc<Self>, mut freed: usize) {
        while freed > 0 {
            let next: Vec<Waiter> = {
                let mut queue = self.queue();
                queue.free += freed;
                let mut next = Vec::new();
                while queue.free > 0 {
                    let Some(waiter) = queue.next_waiter() else {
                        break;
                    };
                    queue.free -= 1;
                    next.push(waiter);
                }
                next
            };
            freed = 0;
            // Sent with the queue unlocked: a turn that cannot be sent comes back here, not through its drop.
            for waiter in next {
                let turn = Turn {
                    gate: Some(Arc::clone(self)),
                };
                if let Err(turn) = waiter.grant.send(turn) {
                    turn.disarm();
                    freed += 1;
                }
            }
        }
    }

    /// Keeps `turn` out of the gate for `how_long` (the gate lets one call fewer through meanwhile), unless
    /// every other turn is held back already: one call at a time always goes through.
    fn hold_back(self: &Arc<Self>, turn: Turn, how_long: Duration) {
        let capacity = self.capacity;
        let reserved = self
            .withheld
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                (held + 1 < capacity).then_some(held + 1)
            })
            .is_ok();
        if !reserved {
            return;
        }
        let gate = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep(how_long).await;
            gate.withheld.fetch_sub(1, Ordering::AcqRel);
            drop(turn);
        });
    }
}

impl Queue {
    /// The call whose turn is next: the login lane first, then the user whose turn it is (who goes to the back
    /// of the round if more of their calls wait).
    fn next_waiter(&mut self) -> Option<Waiter> {
        if let Some(waiter) = self.login.pop_front() {
            return Some(waiter);
        }
        let user = self.users.pop_front()?;
        let waiting = self.waiting.get_mut(&user)?;
        let waiter = waiting.pop_front();
        if waiting.is_empty() {
            self.waiting.remove(&user);
        } else {
            self.users.push_back(user);
        }
        waiter
    }
}

/// Removes the waiter of `ticket` from `lane`; whether it was there.
fn remove_ticket(lane: &mut VecDeque<Waiter>, ticket: u64) -> bool {
    match lane.iter().position(|waiter| waiter.ticket == ticket) {
        Some(at) => {
            lane.remove(at);
            true
        }
        None => false,
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

    /// A page's lane of `user`.
    fn lane(user: &str) -> Lane {
        Lane::User(format!("{user}@zylker.com:60032191920"))
    }

    /// A free turn at [`org`]'s gate, taken as another call would.
    fn take_a_turn(gate: &CrmGate) -> Turn {
        match gate.gate_of(&org()).enter(&lane("someone")) {
            Entered::Now(turn) => turn,
            Entered::Queued { .. } => panic!("no free turn"),
        }
    }

    fn available(gate: &CrmGate, org: &OrgKey) -> usize {
        gate.gate_of(org).queue().free
    }

    #[tokio::test(start_paused = true)]
    async fn no_more_calls_than_the_cap_are_in_flight() {
        let gate = Arc::new(gate(3, Duration::from_secs(60)));
        let (in_flight, most) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
        let calls: Vec<_> = (0..20)
            .map(|_| {
                let (gate, in_flight, most) = (gate.clone(), in_flight.clone(), most.clone());
                tokio::spawn(async move {
                    gate.run(&org(), &lane("priya"), || async {
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

    /// `count` searches of Priya's at once, each holding its turn for `hold`; how many are in flight now, and
    /// the most that ever were.
    #[allow(clippy::type_complexity)]
    fn spawn_searches(
        gate: &Arc<CrmGate>,
        count: usize,
        hold: Duration,
    ) -> (
        Vec<tokio::task::JoinHandle<Result<(), GateError>>>,
        Arc<AtomicU32>,
        Arc<AtomicU32>,
    ) {
        let (in_flight, most) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
        let searches = (0..count)
            .map(|_| {
                let (gate, in_flight, most) = (gate.clone(), in_flight.clone(), most.clone());
                tokio::spawn(async move {
                    gate.run_as(&org(), &lane("priya"), CallKind::Search, || async {
                        let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        tokio::time::sleep(hold).await;
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                        Ok::<_, CrmError>(())
                    })
                    .await
                })
            })
            .collect();
        (searches, in_flight, most)
    }

    #[tokio::test(start_paused = true)]
    async fn searches_keep_within_the_search_sub_limit_and_other_calls_pass_them() {
        let gate = Arc::new(gate(20, Duration::from_secs(60)));
        let (searches, in_flight, most) = spawn_searches(&gate, 30, Duration::from_millis(150));
        tokio::time::sleep(Duration::from_millis(10)).await;

        let started = tokio::time::Instant::now();
        let plain = gate
            .run(&org(), &lane("arjun"), || async { Ok::<_, CrmError>(7) })
            .await;

        assert_eq!(plain.unwrap(), 7);
        assert!(
            started.elapsed() < Duration::from_millis(150),
            "a plain call takes a free turn of the org's gate while searches wait"
        );
        assert_eq!(in_flight.load(Ordering::SeqCst), SEARCH_CONCURRENCY as u32);
        for search in searches {
            search.await.unwrap().unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), SEARCH_CONCURRENCY as u32);
        assert_eq!(
            gate.telemetry.usage().queued,
            20,
            "each search that waited counted once"
        );
        assert_eq!(available(&gate, &org()), 20, "every turn given back");
    }

    #[tokio::test(start_paused = true)]
    async fn a_gate_smaller_than_the_sub_limit_is_the_searches_limit() {
        let gate = Arc::new(gate(3, Duration::from_secs(60)));
        let (searches, _, most) = spawn_searches(&gate, 8, Duration::from_millis(50));
        for search in searches {
            search.await.unwrap().unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn turns_come_first_come_first_served() {
        let gate = Arc::new(gate(1, Duration::from_secs(60)));
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut calls = Vec::new();
        for n in 0..6 {
            let (gate, order) = (gate.clone(), order.clone());
            calls.push(tokio::spawn(async move {
                gate.run(&org(), &lane("priya"), || async {
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

    /// Queues calls at a gate of one, in the order given, each `(user, lane)` queued before the next arrives;
    /// the order their calls reached Zoho.
    async fn order_of_turns(
        gate: Arc<CrmGate>,
        calls: Vec<(&'static str, Lane)>,
    ) -> Vec<&'static str> {
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut running = Vec::new();
        for (name, lane) in calls {
            let (gate, order) = (gate.clone(), order.clone());
            running.push(tokio::spawn(async move {
                gate.run(&org(), &lane, || async {
                    order.lock().unwrap().push(name);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Ok::<_, CrmError>(())
                })
                .await
            }));
            tokio::task::yield_now().await;
        }
        for call in running {
            call.await.unwrap().unwrap();
        }
        order.lock().unwrap().to_vec()
    }

    #[tokio::test(start_paused = true)]
    async fn a_user_flooding_the_gate_costs_another_user_one_turn_not_forty() {
        let gate = Arc::new(gate(1, Duration::from_secs(60)));
        let mut calls: Vec<_> = (0..40).map(|_| ("flood", lane("flood"))).collect();
        calls.push(("arjun", lane("arjun")));
        calls.push(("ada", lane("ada")));

        let order = order_of_turns(gate, calls).await;

        // The flood's first call was in flight, its second next in the round; then Arjun's and Ada's.
        assert_eq!(order[..4], ["flood", "flood", "arjun", "ada"], "{order:?}");
        assert_eq!(order.len(), 42);
    }

    #[tokio::test(start_paused = true)]
    async fn users_with_several_calls_waiting_take_turns_one_call_each() {
        let gate = Arc::new(gate(1, Duration::from_secs(60)));
        let calls = vec![
            ("a1", lane("a")),
            ("a2", lane("a")),
            ("a3", lane("a")),
            ("b1", lane("b")),
            ("b2", lane("b")),
            ("c1", lane("c")),
        ];

        let order = order_of_turns(gate, calls).await;

        assert_eq!(order, ["a1", "a2", "b1", "c1", "a3", "b2"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_logins_calls_are_served_before_every_waiting_page() {
        let gate = Arc::new(gate(1, Duration::from_secs(60)));
        let mut calls: Vec<_> = (0..10).map(|_| ("page", lane("flood"))).collect();
        calls.push(("other", lane("other")));
        calls.push(("login", Lane::Login));

        let order = order_of_turns(gate, calls).await;

        assert_eq!(order[..2], ["page", "login"], "{order:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn calls_whose_page_is_gone_leave_the_queue_and_are_never_sent() {
        let gate = Arc::new(CrmGate::new(
            CrmLimits {
                concurrency: 1,
                queue_timeout: Duration::from_secs(60),
            },
            Arc::new(Telemetry::with_metrics()),
        ));
        let metrics = gate.telemetry.render().unwrap();
        assert!(
            metrics.contains("zoho_crm_queue_abandoned_total 0"),
            "counted from the start: {metrics}"
        );
        let held = take_a_turn(&gate);
        let sent = Arc::new(Mutex::new(Vec::new()));
        let calls: Vec<_> = (0..5)
            .map(|n| {
                let (gate, sent) = (gate.clone(), sent.clone());
                tokio::spawn(async move {
                    gate.run(&org(), &lane("priya"), || async {
                        sent.lock().unwrap().push(n);
                        Ok::<_, CrmError>(())
                    })
                    .await
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(10)).await;

        // The browsers of calls 0, 2 and 4 go away: the server drops their futures.
        for gone in [0, 2, 4] {
            calls[gone].abort();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(held);
        for call in calls {
            let _ = call.await;
        }

        assert_eq!(*sent.lock().unwrap(), vec![1, 3]);
        assert_eq!(gate.telemetry.usage().queue_abandoned, 3);
        let metrics = gate.telemetry.render().unwrap();
        assert!(
            metrics.contains("zoho_crm_queue_abandoned_total 3"),
            "{metrics}"
        );
        assert!(metrics.contains("zoho_crm_queue_depth 0"), "{metrics}");
        assert_eq!(available(&gate, &org()), 1, "every turn given back");
    }

    #[test]
    fn a_turn_handed_to_a_call_that_goes_in_that_instant_goes_on_to_the_next() {
        let gate = gate(1, Duration::from_secs(60));
        let org_gate = gate.gate_of(&org());
        let held = take_a_turn(&gate);
        let queue = |user| match org_gate.enter(&lane(user)) {
            Entered::Queued { granted, .. } => granted,
            Entered::Now(_) => panic!("the only turn is held"),
        };
        let (first, mut second, mut third) = (queue("a"), queue("b"), queue("c"));

        // The first call's turn is handed over, and its page goes before taking it.
        drop(held);
        drop(first);
        let turn = second
            .try_recv()
            .expect("the turn went on to the next call");
        // The third call's page goes before any turn is handed over; its place is found empty.
        third.close();
        drop(turn);

        assert_eq!(available(&gate, &org()), 1, "no turn lost");
        assert!(third.try_recv().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_whose_turn_does_not_come_in_time_is_busy_and_never_sent() {
        let gate = gate(1, Duration::from_millis(500));
        // Another call holds the only permit until the waiter has given up.
        let permit = take_a_turn(&gate);
        let sent = AtomicU32::new(0);
        let waited = gate
            .run(&org(), &lane("priya"), || async {
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
            .run(&org(), &lane("priya"), || async {
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
            .run(&org(), &lane("priya"), || async {
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
            .run(&org(), &lane("priya"), || async {
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
            .run(&org(), &lane("priya"), || async {
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
        let _busy = take_a_turn(&gate);
        let answer = gate
            .run(&other, &lane("priya"), || async { Ok::<_, CrmError>(7) })
            .await;
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
