//! The sandbox's mutable state: grant codes, tokens and their limits, counters, injected faults, the clock and
//! the CRM records. Each part sits behind its own lock, held only for the few map operations of one request.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use super::SandboxClient;
use super::data::{self, ModuleRecords};
use super::limits::{CallKind, CreditBook, CrmGate, CrmLimits, Place, Refusal};
use super::page_tokens::PageTokens;
use super::state_file;

/// How long a grant code works (Zoho Accounts: two minutes). This and the limits below:
/// `docs/zoho-protocol.md#token-lifetimes-and-limits`.
pub const CODE_TTL_MS: i64 = 2 * 60 * 1000;
/// Zoho lets one refresh token mint this many access tokens per [`REFRESH_WINDOW_MS`]…
pub const REFRESHES_PER_WINDOW: usize = 10;
/// …in a window of ten minutes.
pub const REFRESH_WINDOW_MS: i64 = 10 * 60 * 1000;
/// At most this many access tokens of one refresh token work at once; a new one ends the oldest.
pub const LIVE_ACCESS_TOKENS_PER_REFRESH_TOKEN: usize = 15;
/// At most this many refresh tokens per user and client; a new one revokes the oldest.
pub const REFRESH_TOKENS_PER_USER_AND_CLIENT: usize = 20;

/// The scopes a token was granted, lower-cased (Zoho matches scopes case-insensitively).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(from = "Vec<String>", into = "Vec<String>")]
pub struct Scopes(Arc<[String]>);

impl From<Vec<String>> for Scopes {
    fn from(scopes: Vec<String>) -> Self {
        Scopes(scopes.into())
    }
}

impl From<Scopes> for Vec<String> {
    fn from(scopes: Scopes) -> Self {
        scopes.0.to_vec()
    }
}

impl Scopes {
    /// Parses Zoho's comma-separated scope list (spaces are tolerated too).
    pub fn parse(list: &str) -> Self {
        Scopes(
            list.split([',', ' '])
                .map(str::trim)
                .filter(|scope| !scope.is_empty())
                .map(str::to_ascii_lowercase)
                .collect(),
        )
    }

    /// Whether any granted scope is one of `wanted` (lower-case).
    pub fn grants_any(&self, wanted: &[&str]) -> bool {
        self.0.iter().any(|scope| wanted.contains(&scope.as_str()))
    }

    /// Whether a scope `zohocrm.modules.{module}.{op}` is granted for one of `ops` (lower-case).
    pub fn grants_module(&self, module: &str, ops: &[&str]) -> bool {
        self.0.iter().any(|scope| {
            scope
                .strip_prefix("zohocrm.modules.")
                .and_then(|rest| rest.rsplit_once('.'))
                .is_some_and(|(name, op)| name.eq_ignore_ascii_case(module) && ops.contains(&op))
        })
    }
}

/// A PKCE challenge attached to a grant code.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Challenge {
    pub challenge: String,
    /// `S256` or `plain` (Zoho's default).
    pub method: String,
}

impl Challenge {
    fn verified_by(&self, verifier: &str) -> bool {
        let expected = if self.method == "S256" {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier))
        } else {
            verifier.to_owned()
        };
        bool::from(expected.as_bytes().ct_eq(self.challenge.as_bytes()))
    }
}

/// What a consent grants: the code remembers it and the tokens inherit it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Consent {
    pub client_id: String,
    pub redirect_uri: String,
    pub persona: usize,
    pub scopes: Scopes,
    pub offline: bool,
    /// `prompt=consent`: a fresh refresh token even when the user already has one for this client.
    pub prompt_consent: bool,
    pub challenge: Option<Challenge>,
}

#[derive(Serialize, Deserialize)]
struct GrantCode {
    consent: Consent,
    expires_at_ms: i64,
}

#[derive(Serialize, Deserialize)]
struct RefreshGrant {
    client_id: String,
    persona: usize,
    scopes: Scopes,
    /// Issue order, to find the oldest of a user's refresh tokens.
    serial: u64,
    /// When the successful refreshes of the current window happened.
    refreshes: VecDeque<i64>,
    /// Access tokens minted from this refresh token, oldest first.
    access_tokens: VecDeque<String>,
}

#[derive(Serialize, Deserialize)]
struct AccessGrant {
    persona: usize,
    scopes: Scopes,
    refresh_token: Option<String>,
    expires_at_ms: i64,
}

/// Every code and token issued, as the state file keeps them.
#[derive(Default, Serialize, Deserialize)]
pub struct TokenBook {
    codes: HashMap<String, GrantCode>,
    refresh: HashMap<String, RefreshGrant>,
    access: HashMap<String, AccessGrant>,
    serial: u64,
}

impl TokenBook {
    /// Whether every grant names one of the `personas`: what a state file must satisfy before the sandbox
    /// trusts it (a persona is an index into the persona table).
    fn names_known_personas(&self, personas: usize) -> bool {
        self.codes
            .values()
            .all(|code| code.consent.persona < personas)
            && self.refresh.values().all(|grant| grant.persona < personas)
            && self.access.values().all(|grant| grant.persona < personas)
    }

    fn forget_refresh_token(&mut self, token: &str) -> bool {
        match self.refresh.remove(token) {
            Some(grant) => {
                for access in grant.access_tokens {
                    self.access.remove(&access);
                }
                true
            }
            None => false,
        }
    }

    /// Drops what can no longer be used, so that a long-running sandbox does not grow without bound.
    fn sweep(&mut self, now_ms: i64) {
        self.codes.retain(|_, code| code.expires_at_ms > now_ms);
        self.access
            .retain(|_, access| access.expires_at_ms > now_ms);
        let access = &self.access;
        for grant in self.refresh.values_mut() {
            grant
                .access_tokens
                .retain(|token| access.contains_key(token));
        }
    }

    fn mint_access_token(
        &mut self,
        persona: usize,
        scopes: Scopes,
        refresh_token: Option<&str>,
        expires_at_ms: i64,
    ) -> String {
        let token = new_token();
        if let Some(refresh_token) = refresh_token
            && let Some(grant) = self.refresh.get_mut(refresh_token)
        {
            while grant.access_tokens.len() >= LIVE_ACCESS_TOKENS_PER_REFRESH_TOKEN {
                if let Some(oldest) = grant.access_tokens.pop_front() {
                    self.access.remove(&oldest);
                }
            }
            grant.access_tokens.push_back(token.clone());
        }
        self.access.insert(
            token.clone(),
            AccessGrant {
                persona,
                scopes,
                refresh_token: refresh_token.map(str::to_owned),
                expires_at_ms,
            },
        );
        token
    }
}

/// A token-endpoint failure, answered with HTTP 200 as Zoho does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenEndpointError {
    InvalidClient,
    InvalidClientSecret,
    InvalidCode,
    InvalidRedirectUri,
    UnsupportedGrantType,
    /// Too many refreshes: Zoho's "Access Denied".
    Throttled,
    /// Injected through the control surface: this `error` value.
    Injected(String),
}

/// Tokens issued by a successful grant.
#[derive(Debug)]
pub struct IssuedTokens {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_in: u64,
}

/// The caller behind a valid access token.
#[derive(Clone, Debug)]
pub struct Caller {
    pub persona: usize,
    pub scopes: Scopes,
}

/// Why an access token does not open the CRM.
#[derive(Debug, PartialEq, Eq)]
pub enum AccessError {
    /// Unknown, expired, pushed out or revoked.
    InvalidToken,
}

/// The counters the control surface reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxCounters {
    /// Successful `authorization_code` grants.
    pub code_exchanges: u64,
    /// Successful `refresh_token` grants.
    pub refreshes: u64,
    /// Refreshes answered `Access Denied` (the limit, or an injected one).
    pub throttled_refreshes: u64,
    /// Successful revocations.
    pub revocations: u64,
    /// Requests under `/crm/v8`.
    pub crm_calls: u64,
    /// CRM answers with HTTP 401.
    pub unauthorized: u64,
    /// CRM answers with HTTP 429: over the concurrency cap, out of credits, or injected.
    pub crm_429: u64,
    /// The most CRM calls that were in flight at once.
    pub max_concurrent_crm: u64,
    /// The most searches that were in flight at once.
    pub max_concurrent_search: u64,
    /// API credits spent in the last 24 hours of the sandbox's clock (one per admitted CRM call).
    pub credits_used: u64,
}

#[derive(Default)]
struct CounterCells {
    code_exchanges: AtomicU64,
    refreshes: AtomicU64,
    throttled_refreshes: AtomicU64,
    revocations: AtomicU64,
    crm_calls: AtomicU64,
    unauthorized: AtomicU64,
    crm_429: AtomicU64,
}

/// Which counter to bump.
#[derive(Clone, Copy, Debug)]
pub enum Counter {
    CodeExchanges,
    Refreshes,
    ThrottledRefreshes,
    Revocations,
    CrmCalls,
    Unauthorized,
    Crm429,
}

/// What `POST /_sandbox/inject` accepts. The shapes are fixed: the README's sandbox section lists them and tests
/// send them.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Injection {
    /// `crm` or `token`.
    pub target: String,
    /// CRM: answer with this HTTP status and Zoho's envelope (429 `TOO_MANY_REQUESTS`, 5xx `INTERNAL_ERROR`).
    #[serde(default)]
    pub status: Option<u16>,
    /// Wait this long before answering.
    #[serde(default)]
    pub delay_ms: Option<u64>,
    /// Token endpoint: answer HTTP 200 with this `error` (`Access Denied` gets Zoho's throttling body).
    #[serde(default)]
    pub error: Option<String>,
    /// Token endpoint: the next successful answers carry this `api_domain`.
    #[serde(default)]
    pub api_domain: Option<String>,
    /// How many calls this applies to.
    #[serde(default = "one")]
    pub count: u32,
}

fn one() -> u32 {
    1
}

/// One fault to apply to the current call.
#[derive(Clone, Debug, Default)]
pub struct Fault {
    pub delay: Option<Duration>,
    pub status: Option<u16>,
    pub error: Option<String>,
}

#[derive(Default)]
struct Injections {
    crm: VecDeque<(Fault, u32)>,
    token: VecDeque<(Fault, u32)>,
    api_domain: Option<(String, u32)>,
}

fn take_front(queue: &mut VecDeque<(Fault, u32)>) -> Option<Fault> {
    let (fault, remaining) = queue.front_mut()?;
    let fault_now = fault.clone();
    *remaining -= 1;
    if *remaining == 0 {
        queue.pop_front();
    }
    Some(fault_now)
}

/// Everything one sandbox holds.
pub struct SandboxState {
    /// The public URL without a trailing slash: `accounts-server` and `api_domain`.
    pub public_url: String,
    pub clients: Vec<SandboxClient>,
    pub access_ttl: Duration,
    /// Added to the wall clock; moved forward by tests instead of sleeping.
    clock_offset_ms: AtomicI64,
    tokens: RwLock<TokenBook>,
    counters: CounterCells,
    injections: Mutex<Injections>,
    /// Lets the hot path skip the injections lock while nothing is injected.
    pending_injections: AtomicUsize,
    records: RwLock<BTreeMap<&'static str, ModuleRecords>>,
    /// Each module's last seeded id: records above it were created through the API.
    seeded_last_id: BTreeMap<&'static str, u64>,
    crm_gate: CrmGate,
    /// Issues and checks the `page_token`s of record lists (they live in no state: see [`PageTokens`]).
    pub page_tokens: PageTokens,
    /// Where the state outlives the process; `None`: in memory only.
    state_file: Option<PathBuf>,
    /// One writer of the state file at a time, so that the last write holds the newest state.
    saving: Mutex<()>,
}

/// The most records one bulk insert makes: enough for Zoho's 100,000 reachable by `page_token`.
pub const MAX_BULK_RECORDS: usize = 100_000;

/// The state file's format; a sandbox refuses a format it does not know.
const STATE_FORMAT: u32 = 1;

/// What the state file holds: everything a restart would otherwise forget. Seeded records are not in it
/// (they are the same at every start) unless updated through the API, nor the counters and injections, which
/// are for tests.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    format: u32,
    clock_offset_ms: i64,
    tokens: TokenBook,
    /// Records created through the API, by module.
    created_records: BTreeMap<String, Vec<data::Record>>,
    /// Seeded records updated through the API, whole, by module (absent from files of earlier versions, and
    /// written only when there are some, so that those versions still read a file without).
    #[serde(default)]
    updated_records: BTreeMap<String, Vec<data::Record>>,
    credits: CreditBook,
}

/// [`Snapshot`] as it is written: borrowing the state under its locks.
#[derive(Serialize)]
struct SnapshotRef<'a> {
    format: u32,
    clock_offset_ms: i64,
    tokens: &'a TokenBook,
    created_records: BTreeMap<&'static str, Vec<&'a data::Record>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    updated_records: BTreeMap<&'static str, Vec<&'a data::Record>>,
    credits: &'a CreditBook,
}

/// Whether a seeded record has been updated through the API: seeding stamps `Modified_Time` equal to
/// `Created_Time`, and every update moves `Modified_Time` on.
fn updated_since_seeded(record: &data::Record) -> bool {
    record.get("Modified_Time") != record.get("Created_Time")
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

/// A Zoho-looking token: `1000.` and two runs of random hex.
fn new_token() -> String {
    let mut rng = rand::rng();
    let first: [u8; 16] = rng.random();
    let second: [u8; 16] = rng.random();
    format!("1000.{}.{}", hex::encode(first), hex::encode(second))
}

impl SandboxState {
    /// A fresh sandbox state with the seeded records.
    pub fn new(
        public_url: String,
        clients: Vec<SandboxClient>,
        access_ttl: Duration,
        crm_limits: CrmLimits,
    ) -> Self {
        let records = data::seed();
        let seeded_last_id = records
            .iter()
            .map(|(module, records)| {
                let last = records.by_id.last_key_value().map_or(0, |(id, _)| *id);
                (*module, last)
            })
            .collect();
        SandboxState {
            public_url,
            clients,
            access_ttl,
            clock_offset_ms: AtomicI64::new(0),
            tokens: RwLock::new(TokenBook::default()),
            counters: CounterCells::default(),
            injections: Mutex::new(Injections::default()),
            pending_injections: AtomicUsize::new(0),
            records: RwLock::new(records),
            seeded_last_id,
            crm_gate: CrmGate::new(crm_limits),
            page_tokens: PageTokens::default(),
            state_file: None,
            saving: Mutex::new(()),
        }
    }

    /// Keeps the state in the file at `path` from now on, after taking over what it holds (if it exists). A
    /// file that cannot be used is an error, and the file is left as it is.
    pub fn keep_in(&mut self, path: PathBuf) -> std::io::Result<()> {
        if let Some(snapshot) = state_file::load(&path)? {
            self.restore(snapshot)
                .map_err(|what| state_file::broken(&path, &what))?;
        }
        self.state_file = Some(path);
        Ok(())
    }

    /// Whether the state outlives the process.
    pub fn is_kept(&self) -> bool {
        self.state_file.is_some()
    }

    fn restore(&mut self, snapshot: Snapshot) -> Result<(), String> {
        if snapshot.format != STATE_FORMAT {
            return Err(format!(
                "format {}, where this sandbox reads format {STATE_FORMAT}",
                snapshot.format
            ));
        }
        if !snapshot.tokens.names_known_personas(data::PERSONAS.len()) {
            return Err("a token names a persona this sandbox does not have".into());
        }
        if !snapshot.credits.is_consistent() {
            return Err("the credits do not add up".into());
        }
        let records = self
            .records
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        for (module, created) in snapshot.created_records {
            let (name, seeded_last) = self
                .seeded_last_id
                .iter()
                .find(|(name, _)| **name == module)
                .map(|(name, last)| (*name, *last))
                .ok_or_else(|| format!("records of an unknown module {module:?}"))?;
            let module_records = records.entry(name).or_default();
            for record in created {
                let id = record
                    .get("id")
                    .and_then(serde_json::Value::as_str)
                    .and_then(|id| id.parse::<u64>().ok())
                    .filter(|id| *id > seeded_last)
                    .ok_or_else(|| format!("a created {module} record without a valid id"))?;
                module_records.by_id.insert(id, Arc::new(record));
            }
        }
        for (module, updated) in snapshot.updated_records {
            let module_records = self
                .seeded_last_id
                .keys()
                .find(|name| **name == module)
                .and_then(|name| records.get_mut(name))
                .ok_or_else(|| format!("records of an unknown module {module:?}"))?;
            for record in updated {
                let seeded = record
                    .get("id")
                    .and_then(serde_json::Value::as_str)
                    .and_then(|id| id.parse::<u64>().ok())
                    .and_then(|id| module_records.by_id.get_mut(&id))
                    .ok_or_else(|| format!("an updated {module} record that was never seeded"))?;
                *seeded = Arc::new(record);
            }
        }
        *self
            .tokens
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner) = snapshot.tokens;
        self.clock_offset_ms = AtomicI64::new(snapshot.clock_offset_ms);
        self.crm_gate
            .with_credits(|credits| *credits = snapshot.credits);
        Ok(())
    }

    /// Writes the state file, if there is one; a failure is logged (the sandbox goes on serving from memory).
    /// Blocking: call it off the async workers.
    pub fn save(&self) {
        let Some(path) = &self.state_file else {
            return;
        };
        let _one_writer = lock(&self.saving);
        let written = self
            .snapshot_json()
            .map_err(std::io::Error::other)
            .and_then(|contents| state_file::write(path, &contents));
        if let Err(error) = written {
            tracing::warn!(path = %path.display(), %error, "cannot write the sandbox state file");
        }
    }

    fn snapshot_json(&self) -> serde_json::Result<Vec<u8>> {
        let tokens = read(&self.tokens);
        let records = read(&self.records);
        let created_records = records
            .iter()
            .filter_map(|(module, records)| {
                let seeded_last = self.seeded_last_id.get(module).copied().unwrap_or(0);
                let created: Vec<&data::Record> = records
                    .by_id
                    .range(seeded_last + 1..)
                    .map(|(_, record)| record.as_ref())
                    .collect();
                (!created.is_empty()).then_some((*module, created))
            })
            .collect();
        let updated_records = records
            .iter()
            .filter_map(|(module, records)| {
                let seeded_last = self.seeded_last_id.get(module).copied().unwrap_or(0);
                let updated: Vec<&data::Record> = records
                    .by_id
                    .range(..=seeded_last)
                    .map(|(_, record)| record.as_ref())
                    .filter(|record| updated_since_seeded(record))
                    .collect();
                (!updated.is_empty()).then_some((*module, updated))
            })
            .collect();
        self.crm_gate.with_credits(|credits| {
            serde_json::to_vec(&SnapshotRef {
                format: STATE_FORMAT,
                clock_offset_ms: self.clock_offset_ms.load(Ordering::Relaxed),
                tokens: &tokens,
                created_records,
                updated_records,
                credits,
            })
        })
    }

    /// The sandbox's clock in epoch milliseconds: the wall clock plus what tests advanced it by.
    pub fn now_ms(&self) -> i64 {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as i64);
        wall + self.clock_offset_ms.load(Ordering::Relaxed)
    }

    /// Moves the sandbox's clock forward; returns the total offset in milliseconds.
    pub fn advance_clock(&self, by: Duration) -> i64 {
        let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX / 4);
        self.clock_offset_ms.fetch_add(by, Ordering::Relaxed) + by
    }

    /// Adds one to `counter`.
    pub fn bump(&self, counter: Counter) {
        let cell = match counter {
            Counter::CodeExchanges => &self.counters.code_exchanges,
            Counter::Refreshes => &self.counters.refreshes,
            Counter::ThrottledRefreshes => &self.counters.throttled_refreshes,
            Counter::Revocations => &self.counters.revocations,
            Counter::CrmCalls => &self.counters.crm_calls,
            Counter::Unauthorized => &self.counters.unauthorized,
            Counter::Crm429 => &self.counters.crm_429,
        };
        cell.fetch_add(1, Ordering::Relaxed);
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> SandboxCounters {
        let cells = &self.counters;
        SandboxCounters {
            code_exchanges: cells.code_exchanges.load(Ordering::Relaxed),
            refreshes: cells.refreshes.load(Ordering::Relaxed),
            throttled_refreshes: cells.throttled_refreshes.load(Ordering::Relaxed),
            revocations: cells.revocations.load(Ordering::Relaxed),
            crm_calls: cells.crm_calls.load(Ordering::Relaxed),
            unauthorized: cells.unauthorized.load(Ordering::Relaxed),
            crm_429: cells.crm_429.load(Ordering::Relaxed),
            max_concurrent_crm: self.crm_gate.max_concurrent(),
            max_concurrent_search: self.crm_gate.max_concurrent_searches(),
            credits_used: self.crm_gate.credits_used(self.now_ms()),
        }
    }

    /// The CRM's limits.
    pub fn crm_limits(&self) -> CrmLimits {
        self.crm_gate.limits()
    }

    /// Admits a CRM call of `kind` now: its place in the org's cap (and a search's in the sub-limit) and its
    /// credit, or why not.
    pub fn admit_crm_call(&self, kind: CallKind) -> Result<Place<'_>, Refusal> {
        self.crm_gate.admit(self.now_ms(), kind)
    }

    /// Clears counters (credits included) and injections; tokens and records stay.
    pub fn reset(&self) {
        let cells = &self.counters;
        for cell in [
            &cells.code_exchanges,
            &cells.refreshes,
            &cells.throttled_refreshes,
            &cells.revocations,
            &cells.crm_calls,
            &cells.unauthorized,
            &cells.crm_429,
        ] {
            cell.store(0, Ordering::Relaxed);
        }
        self.crm_gate.reset();
        *lock(&self.injections) = Injections::default();
        self.pending_injections.store(0, Ordering::Relaxed);
    }

    /// The registered client with this id.
    pub fn client(&self, client_id: &str) -> Option<&SandboxClient> {
        self.clients
            .iter()
            .find(|client| client.client_id == client_id)
    }

    /// Checks a client's credentials as the token endpoint does.
    pub fn authenticate_client(
        &self,
        client_id: &str,
        secret: &str,
    ) -> Result<(), TokenEndpointError> {
        let client = self
            .client(client_id)
            .ok_or(TokenEndpointError::InvalidClient)?;
        if bool::from(
            client
                .client_secret
                .expose_secret()
                .as_bytes()
                .ct_eq(secret.as_bytes()),
        ) {
            Ok(())
        } else {
            Err(TokenEndpointError::InvalidClientSecret)
        }
    }

    /// Issues a grant code for an accepted consent.
    pub fn issue_code(&self, consent: Consent) -> String {
        let code = new_token();
        let expires_at_ms = self.now_ms() + CODE_TTL_MS;
        let mut book = write(&self.tokens);
        book.sweep(self.now_ms());
        book.codes.insert(
            code.clone(),
            GrantCode {
                consent,
                expires_at_ms,
            },
        );
        code
    }

    fn access_ttl_ms(&self) -> i64 {
        i64::try_from(self.access_ttl.as_millis()).unwrap_or(i64::MAX / 4)
    }

    /// The `authorization_code` grant; the client is already authenticated.
    pub fn exchange_code(
        &self,
        client_id: &str,
        code: &str,
        redirect_uri: Option<&str>,
        code_verifier: Option<&str>,
    ) -> Result<IssuedTokens, TokenEndpointError> {
        let now = self.now_ms();
        let mut book = write(&self.tokens);
        // A code is burned by the first exchange that names it, whatever the outcome: one use only.
        let grant = book
            .codes
            .remove(code)
            .ok_or(TokenEndpointError::InvalidCode)?;
        let consent = grant.consent;
        if grant.expires_at_ms <= now || consent.client_id != client_id {
            return Err(TokenEndpointError::InvalidCode);
        }
        if redirect_uri != Some(consent.redirect_uri.as_str()) {
            return Err(TokenEndpointError::InvalidRedirectUri);
        }
        if let Some(challenge) = &consent.challenge {
            // Zoho's name for a failed PKCE check is not documented (`docs/zoho-protocol.md#authorization-endpoint`);
            // invalid_code is what a client already treats as "this code is no good".
            if !code_verifier.is_some_and(|verifier| challenge.verified_by(verifier)) {
                return Err(TokenEndpointError::InvalidCode);
            }
        }
        book.sweep(now);
        let user_has_refresh_token = book
            .refresh
            .values()
            .any(|grant| grant.persona == consent.persona && grant.client_id == client_id);
        // Zoho issues a refresh token on the first offline consent only, or again with prompt=consent
        // (`docs/zoho-protocol.md#authorization-endpoint`): the portal's consent budget depends on this.
        let refresh_token = if consent.offline
            && (consent.prompt_consent || !user_has_refresh_token)
        {
            let mut same_user: Vec<(u64, String)> = book
                .refresh
                .iter()
                .filter(|(_, grant)| {
                    grant.persona == consent.persona && grant.client_id == client_id
                })
                .map(|(token, grant)| (grant.serial, token.clone()))
                .collect();
            same_user.sort();
            let excess = (same_user.len() + 1).saturating_sub(REFRESH_TOKENS_PER_USER_AND_CLIENT);
            for (_, oldest) in same_user.iter().take(excess) {
                book.forget_refresh_token(oldest);
            }
            book.serial += 1;
            let serial = book.serial;
            let token = new_token();
            book.refresh.insert(
                token.clone(),
                RefreshGrant {
                    client_id: client_id.to_owned(),
                    persona: consent.persona,
                    scopes: consent.scopes.clone(),
                    serial,
                    refreshes: VecDeque::new(),
                    access_tokens: VecDeque::new(),
                },
            );
            Some(token)
        } else {
            None
        };
        let access_token = book.mint_access_token(
            consent.persona,
            consent.scopes,
            refresh_token.as_deref(),
            now + self.access_ttl_ms(),
        );
        drop(book);
        self.bump(Counter::CodeExchanges);
        Ok(IssuedTokens {
            access_token,
            refresh_token,
            expires_in: self.access_ttl.as_secs(),
        })
    }

    /// The `refresh_token` grant; the client is already authenticated.
    pub fn refresh(
        &self,
        client_id: &str,
        refresh_token: &str,
    ) -> Result<IssuedTokens, TokenEndpointError> {
        let now = self.now_ms();
        let mut book = write(&self.tokens);
        book.sweep(now);
        let grant = book
            .refresh
            .get_mut(refresh_token)
            .filter(|grant| grant.client_id == client_id)
            .ok_or(TokenEndpointError::InvalidCode)?;
        while grant
            .refreshes
            .front()
            .is_some_and(|at| *at <= now - REFRESH_WINDOW_MS)
        {
            grant.refreshes.pop_front();
        }
        if grant.refreshes.len() >= REFRESHES_PER_WINDOW {
            drop(book);
            self.bump(Counter::ThrottledRefreshes);
            return Err(TokenEndpointError::Throttled);
        }
        grant.refreshes.push_back(now);
        let (persona, scopes) = (grant.persona, grant.scopes.clone());
        let access_token = book.mint_access_token(
            persona,
            scopes,
            Some(refresh_token),
            now + self.access_ttl_ms(),
        );
        drop(book);
        self.bump(Counter::Refreshes);
        Ok(IssuedTokens {
            access_token,
            refresh_token: None,
            expires_in: self.access_ttl.as_secs(),
        })
    }

    /// Revokes a refresh token (with its access tokens) or an access token; `false` if it is not live.
    pub fn revoke(&self, token: &str) -> bool {
        let mut book = write(&self.tokens);
        let revoked = book.forget_refresh_token(token) || book.access.remove(token).is_some();
        drop(book);
        if revoked {
            self.bump(Counter::Revocations);
        }
        revoked
    }

    /// Who an access token belongs to, if it still works.
    pub fn caller(&self, access_token: &str) -> Result<Caller, AccessError> {
        let now = self.now_ms();
        let book = read(&self.tokens);
        match book.access.get(access_token) {
            Some(grant) if grant.expires_at_ms > now => Ok(Caller {
                persona: grant.persona,
                scopes: grant.scopes.clone(),
            }),
            _ => Err(AccessError::InvalidToken),
        }
    }

    /// Expires every live access token now; returns how many there were.
    pub fn expire_access_tokens(&self) -> usize {
        let now = self.now_ms();
        let mut book = write(&self.tokens);
        let mut expired = 0;
        for grant in book.access.values_mut() {
            if grant.expires_at_ms > now {
                grant.expires_at_ms = now;
                expired += 1;
            }
        }
        expired
    }

    /// Revokes every refresh token and the access tokens they minted; returns how many refresh tokens.
    pub fn revoke_refresh_tokens(&self) -> usize {
        let mut book = write(&self.tokens);
        let revoked = book.refresh.len();
        book.refresh.clear();
        book.access.retain(|_, grant| grant.refresh_token.is_none());
        revoked
    }

    /// Queues an injection; `Err` says what is wrong with it.
    pub fn inject(&self, injection: Injection) -> Result<(), String> {
        if injection.count == 0 {
            return Err("count must be at least 1".into());
        }
        let delay = injection.delay_ms.map(Duration::from_millis);
        let mut injections = lock(&self.injections);
        match injection.target.as_str() {
            "crm" => {
                if injection.error.is_some() || injection.api_domain.is_some() {
                    return Err("crm injections take status and/or delay_ms".into());
                }
                if let Some(status) = injection.status
                    && !(400..=599).contains(&status)
                {
                    return Err("status must be a 4xx or 5xx code".into());
                }
                if injection.status.is_none() && delay.is_none() {
                    return Err("crm injections need status or delay_ms".into());
                }
                let fault = Fault {
                    delay,
                    status: injection.status,
                    error: None,
                };
                injections.crm.push_back((fault, injection.count));
            }
            "token" => {
                if injection.status.is_some() {
                    return Err("token injections take error, delay_ms or api_domain".into());
                }
                if let Some(api_domain) = injection.api_domain {
                    injections.api_domain = Some((api_domain, injection.count));
                }
                if injection.error.is_some() || delay.is_some() {
                    let fault = Fault {
                        delay,
                        status: None,
                        error: injection.error,
                    };
                    injections.token.push_back((fault, injection.count));
                } else if injections.api_domain.is_none() {
                    return Err("token injections need error, delay_ms or api_domain".into());
                }
            }
            other => return Err(format!("unknown target {other:?}: use crm or token")),
        }
        self.pending_injections.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Runs `pick` over the pending injections; skips the lock while nothing is injected (the hot path).
    fn take_injected<T>(&self, pick: impl FnOnce(&mut Injections) -> Option<T>) -> Option<T> {
        if self.pending_injections.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let mut injections = lock(&self.injections);
        let taken = pick(&mut injections);
        if injections.crm.is_empty()
            && injections.token.is_empty()
            && injections.api_domain.is_none()
        {
            self.pending_injections.store(0, Ordering::Relaxed);
        }
        taken
    }

    /// The fault injected for the current CRM call, if any.
    pub fn take_crm_fault(&self) -> Option<Fault> {
        self.take_injected(|injections| take_front(&mut injections.crm))
    }

    /// The fault injected for the current token-endpoint call, if any.
    pub fn take_token_fault(&self) -> Option<Fault> {
        self.take_injected(|injections| take_front(&mut injections.token))
    }

    /// The `api_domain` for a successful token answer: an injected one, or the sandbox's own.
    pub fn api_domain_for_answer(&self) -> String {
        self.take_injected(|injections| {
            let (domain, remaining) = injections.api_domain.as_mut()?;
            let domain = domain.clone();
            *remaining -= 1;
            if *remaining == 0 {
                injections.api_domain = None;
            }
            Some(domain)
        })
        .unwrap_or_else(|| self.public_url.clone())
    }

    /// Inserts `count` records into the API module `module` at once, as if created one second apart up to now
    /// by the org's first administrator (see [`data::bulk_record`]); their ids, oldest first. `Err` says what is
    /// wrong with the request.
    pub fn insert_bulk(&self, module: &str, count: usize) -> Result<Vec<String>, String> {
        let module = data::module_by_name(module)
            .filter(|module| module.api_supported)
            .ok_or_else(|| format!("no API module {module:?}"))?;
        if !(1..=MAX_BULK_RECORDS).contains(&count) {
            return Err(format!("count must be 1 to {MAX_BULK_RECORDS}"));
        }
        let now = time::OffsetDateTime::from_unix_timestamp(self.now_ms() / 1000)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let owner = &data::PERSONAS[0];
        let ids = self.with_records_mut(|records| {
            let records = records.entry(module.api_name).or_default();
            let first = records.by_id.len() + 1;
            (0..count)
                .map(|index| {
                    let age = i64::try_from(count - 1 - index).unwrap_or(i64::MAX);
                    let at = now - time::Duration::seconds(age);
                    let mut record = data::bulk_record(module, first + index, owner, at);
                    let id = records.next_id(data::id_base(module.api_name));
                    record.insert("id".into(), serde_json::Value::String(id.to_string()));
                    records.by_id.insert(id, Arc::new(record));
                    id.to_string()
                })
                .collect()
        });
        Ok(ids)
    }

    /// Runs `f` over the records (read lock: keep `f` short).
    pub fn with_records<T>(
        &self,
        f: impl FnOnce(&BTreeMap<&'static str, ModuleRecords>) -> T,
    ) -> T {
        f(&read(&self.records))
    }

    /// Runs `f` over the records for writing.
    pub fn with_records_mut<T>(
        &self,
        f: impl FnOnce(&mut BTreeMap<&'static str, ModuleRecords>) -> T,
    ) -> T {
        f(&mut write(&self.records))
    }
}
