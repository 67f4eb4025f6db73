//! What the portal counts: Prometheus metrics (when `--metrics-bind` serves them) and the Zoho usage the
//! administrators' page shows (always).
//!
//! Each portal has its own [`Telemetry`] with its own recorder: the `metrics` facade's handles are taken from
//! that recorder directly ([`Recorder::register_counter`] and friends), never from a process-wide recorder, so
//! that several portals in one process (the tests start dozens) count apart. With no metrics listener the
//! handles are no-ops and nothing but the usage counters is kept.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use metrics::{Counter, Gauge, Histogram, Key, Label, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

/// Pages served, by route pattern and status.
pub const PAGES: &str = "portal_pages_total";
/// CRM calls (each HTTP exchange with Zoho CRM, retries included), by module and outcome.
pub const CRM_CALLS: &str = "zoho_crm_calls_total";
/// Answers of Zoho CRM that were HTTP 429 / `TOO_MANY_REQUESTS`.
pub const CRM_RATE_LIMITED: &str = "zoho_crm_429_total";
/// CRM calls waiting for their turn at the gate right now.
pub const QUEUE_DEPTH: &str = "zoho_crm_queue_depth";
/// How long CRM calls waited for their turn at the gate.
pub const QUEUE_WAIT: &str = "zoho_crm_queue_wait_seconds";
/// CRM calls whose turn did not come within the queue timeout (each one a 503 page).
pub const QUEUE_TIMEOUTS: &str = "zoho_crm_queue_timeouts_total";
/// CRM calls that left the queue because their page was gone (the browser left); none reached Zoho.
pub const QUEUE_ABANDONED: &str = "zoho_crm_queue_abandoned_total";
/// Refreshes of access tokens at Zoho Accounts, by outcome.
pub const REFRESHES: &str = "zoho_token_refreshes_total";
/// How long one read of a token from the store took.
pub const STORE_READ: &str = "token_store_read_seconds";
/// Signed-in users seen in the last [`LIVE_SIGN_IN_WINDOW`].
pub const LIVE_SIGN_INS: &str = "portal_live_sign_ins";

/// A sign-in counts as live while its user has had a page that used their token this recently. The session
/// lives in the browser's cookie, so the server cannot count sessions; it can count the users it serves.
pub const LIVE_SIGN_IN_WINDOW: Duration = Duration::from_secs(5 * 60);

/// The most CRM module names that get a label of their own. Only names Zoho listed (see
/// [`Telemetry::modules_listed`]) get one, so a typed address never does; the bound only keeps a portal that
/// serves many organizations, each with its custom modules, from growing the metrics without end.
const MAX_MODULE_LABELS: usize = 1000;

/// The `module` label of every call to a module no module list from Zoho named: a user's typed address
/// (`/crm/Fake_1`), a module of a list past [`MAX_MODULE_LABELS`].
pub const OTHER_MODULE: &str = "other";

/// The `module` labels of the CRM calls that are not about one module (see `zoho::crm`): fixed, so they are
/// labels of their own from the start.
pub const CRM_APIS: [&str; 4] = ["users", "org", "settings/modules", "settings/fields"];

/// Every `outcome` of a CRM call (see `zoho::crm`), each counted from 0 from the start.
pub const CRM_OUTCOMES: [&str; 10] = [
    "ok",
    RATE_LIMITED_OUTCOME,
    "unauthorized",
    "forbidden",
    "client_error",
    "server_error",
    "unexpected_status",
    "timeout",
    "unreachable",
    "unreadable",
];

/// Every `outcome` of a refresh at Zoho Accounts (see `tokens::manager`), each counted from 0 from the start.
pub const REFRESH_OUTCOMES: [&str; 8] = [
    "ok",
    "dead",
    "throttled",
    "misconfigured",
    "rejected",
    "timeout",
    "unreachable",
    "protocol",
];

/// The `route` label of a request no route matched (the 404 page): the raw path would let anyone add labels.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Buckets of the queue-wait histogram, in seconds: from no wait to the longest queue timeout worth having.
const WAIT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Buckets of the store-read histogram, in seconds: an in-memory read takes a microsecond, a server's a
/// millisecond or more.
const STORE_BUCKETS: &[f64] = &[
    0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005,
    0.01, 0.05, 0.25, 1.0,
];

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

/// The metrics and usage counters of one portal.
pub struct Telemetry {
    prometheus: Option<Prometheus>,
    usage: UsageCounters,
    started: Instant,
    /// When each signed-in user (by token id) last had a page that used their token; kept only with metrics.
    sign_ins: DashMap<String, Instant>,
    /// The CRM module names that have a label of their own: those Zoho listed (see [`Telemetry::modules_listed`]).
    modules: Mutex<HashSet<String>>,
}

struct Prometheus {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    rate_limited: Counter,
    queue_depth: Gauge,
    queue_wait: Histogram,
    queue_timeouts: Counter,
    queue_abandoned: Counter,
    store_read: Histogram,
    live_sign_ins: Gauge,
}

#[derive(Default)]
struct UsageCounters {
    calls: AtomicU64,
    rate_limited: AtomicU64,
    refreshes: AtomicU64,
    queued: AtomicU64,
    queue_timeouts: AtomicU64,
    queue_abandoned: AtomicU64,
    queue_wait_micros: AtomicU64,
}

/// This portal's use of Zoho since it started, as the administrators' page shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// How long ago the portal started.
    pub since: Duration,
    /// CRM calls (HTTP exchanges with Zoho CRM, retries included).
    pub calls: u64,
    /// Of those, how many Zoho answered 429.
    pub rate_limited: u64,
    /// Access-token refreshes asked of Zoho Accounts.
    pub refreshes: u64,
    /// CRM calls that had to wait for their turn.
    pub queued: u64,
    /// Of those, how many waited past the queue timeout (and got the "Zoho is busy" page).
    pub queue_timeouts: u64,
    /// Of those, how many left the queue because their page was gone (nothing sent to Zoho).
    pub queue_abandoned: u64,
    /// The time all of them waited, together.
    pub queue_wait: Duration,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("metrics", &self.prometheus.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry::without_metrics()
    }
}

impl Telemetry {
    /// Usage counters only: every metric is a no-op.
    pub fn without_metrics() -> Telemetry {
        Telemetry {
            prometheus: None,
            usage: UsageCounters::default(),
            started: Instant::now(),
            sign_ins: DashMap::new(),
            modules: Mutex::new(HashSet::new()),
        }
    }

    /// Usage counters and a Prometheus recorder of this portal's own.
    pub fn with_metrics() -> Telemetry {
        let builder = PrometheusBuilder::new();
        let builder = builder
            .set_buckets_for_metric(Matcher::Full(QUEUE_WAIT.to_owned()), WAIT_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full(STORE_READ.to_owned()), STORE_BUCKETS)
            });
        let recorder = match builder {
            Ok(builder) => builder.build_recorder(),
            // Only an empty bucket list fails, and the lists above are not empty.
            Err(error) => {
                tracing::warn!(%error, "histogram buckets refused; reporting summaries instead");
                PrometheusBuilder::new().build_recorder()
            }
        };
        describe(&recorder);
        let handle = recorder.handle();
        let prometheus = Prometheus {
            rate_limited: recorder
                .register_counter(&Key::from_static_name(CRM_RATE_LIMITED), &METADATA),
            queue_depth: recorder.register_gauge(&Key::from_static_name(QUEUE_DEPTH), &METADATA),
            queue_wait: recorder.register_histogram(&Key::from_static_name(QUEUE_WAIT), &METADATA),
            queue_timeouts: recorder
                .register_counter(&Key::from_static_name(QUEUE_TIMEOUTS), &METADATA),
            queue_abandoned: recorder
                .register_counter(&Key::from_static_name(QUEUE_ABANDONED), &METADATA),
            store_read: recorder.register_histogram(&Key::from_static_name(STORE_READ), &METADATA),
            live_sign_ins: recorder
                .register_gauge(&Key::from_static_name(LIVE_SIGN_INS), &METADATA),
            handle,
            recorder,
        };
        let telemetry = Telemetry {
            prometheus: Some(prometheus),
            ..Telemetry::without_metrics()
        };
        telemetry.count_from_zero();
        telemetry
    }

    /// Registers every counter series whose labels are known before the first event, at 0, so that a scrape
    /// of a fresh portal lists them all and a rate over the first event is not lost. The unlabelled counters are
    /// registered with their handles; of the labelled ones: every refresh outcome, every CRM call outcome of
    /// the fixed APIs and of [`OTHER_MODULE`], and the one page series that is fixed (an address no route
    /// matches is always a 404). Modules get theirs once Zoho has listed them.
    fn count_from_zero(&self) {
        let Some(prometheus) = &self.prometheus else {
            return;
        };
        let register = |name: &'static str, labels: Vec<Label>| {
            prometheus
                .recorder
                .register_counter(&Key::from_parts(name, labels), &METADATA)
                .increment(0);
        };
        for outcome in REFRESH_OUTCOMES {
            register(REFRESHES, vec![Label::new("outcome", outcome)]);
        }
        for module in CRM_APIS.into_iter().chain([OTHER_MODULE]) {
            for outcome in CRM_OUTCOMES {
                register(
                    CRM_CALLS,
                    vec![Label::new("module", module), Label::new("outcome", outcome)],
                );
            }
        }
        register(
            PAGES,
            vec![
                Label::new("route", UNMATCHED_ROUTE),
                Label::new("status", "404"),
            ],
        );
    }

    /// Zoho listed these CRM modules (a user's module list, which becomes their navigation): from now on each
    /// has a `module` label of its own; calls to any other module are counted as [`OTHER_MODULE`].
    pub fn modules_listed<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        let mut modules = self.modules.lock().unwrap_or_else(|p| p.into_inner());
        for name in names {
            if modules.len() >= MAX_MODULE_LABELS {
                break;
            }
            if !modules.contains(name) {
                modules.insert(name.to_owned());
            }
        }
    }

    /// Whether metrics are kept (a metrics listener serves them).
    pub fn has_metrics(&self) -> bool {
        self.prometheus.is_some()
    }

    /// The metrics in Prometheus' text format; `None` without metrics.
    pub fn render(&self) -> Option<String> {
        let prometheus = self.prometheus.as_ref()?;
        self.sign_ins
            .retain(|_, seen| seen.elapsed() < LIVE_SIGN_IN_WINDOW);
        prometheus.live_sign_ins.set(self.sign_ins.len() as f64);
        Some(prometheus.handle.render())
    }

    /// Drains what histograms have gathered since the last render, so that a portal nobody scrapes does not
    /// keep every observation; run every few seconds.
    pub fn run_upkeep(&self) {
        if let Some(prometheus) = &self.prometheus {
            prometheus.handle.run_upkeep();
        }
    }

    /// A page was answered.
    pub fn page(&self, route: &str, status: u16) {
        if let Some(prometheus) = &self.prometheus {
            let labels = vec![
                Label::new("route", route.to_owned()),
                Label::new("status", status.to_string()),
            ];
            prometheus
                .recorder
                .register_counter(&Key::from_parts(PAGES, labels), &METADATA)
                .increment(1);
        }
    }

    /// A CRM call was answered (or failed) with `outcome`; `module` is the CRM module or API it asked.
    pub fn crm_call(&self, module: &str, outcome: &'static str) {
        debug_assert!(
            CRM_OUTCOMES.contains(&outcome),
            "{outcome} is in CRM_OUTCOMES"
        );
        self.usage.calls.fetch_add(1, Ordering::Relaxed);
        if outcome == RATE_LIMITED_OUTCOME {
            self.usage.rate_limited.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(prometheus) = &self.prometheus {
            let labels = vec![
                Label::new("module", self.module_label(module)),
                Label::new("outcome", outcome),
            ];
            prometheus
                .recorder
                .register_counter(&Key::from_parts(CRM_CALLS, labels), &METADATA)
                .increment(1);
            if outcome == RATE_LIMITED_OUTCOME {
                prometheus.rate_limited.increment(1);
            }
        }
    }

    /// A CRM call starts waiting for its turn.
    pub fn queue_entered(&self) {
        self.usage.queued.fetch_add(1, Ordering::Relaxed);
        if let Some(prometheus) = &self.prometheus {
            prometheus.queue_depth.increment(1.0);
        }
    }

    /// A CRM call that waited got its turn (`timed_out`: it gave up instead) after `waited`.
    pub fn queue_left(&self, waited: Duration, timed_out: bool) {
        let micros = u64::try_from(waited.as_micros()).unwrap_or(u64::MAX);
        self.usage
            .queue_wait_micros
            .fetch_add(micros, Ordering::Relaxed);
        if timed_out {
            self.usage.queue_timeouts.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(prometheus) = &self.prometheus {
            prometheus.queue_depth.decrement(1.0);
            prometheus.queue_wait.record(waited.as_secs_f64());
            if timed_out {
                prometheus.queue_timeouts.increment(1);
            }
        }
    }

    /// A waiting CRM call left the queue after `waited` because its page was gone (its browser left).
    pub fn queue_abandoned(&self, waited: Duration) {
        let micros = u64::try_from(waited.as_micros()).unwrap_or(u64::MAX);
        self.usage
            .queue_wait_micros
            .fetch_add(micros, Ordering::Relaxed);
        self.usage.queue_abandoned.fetch_add(1, Ordering::Relaxed);
        if let Some(prometheus) = &self.prometheus {
            prometheus.queue_depth.decrement(1.0);
            prometheus.queue_abandoned.increment(1);
        }
    }

    /// A CRM call got its turn at once.
    pub fn queue_skipped(&self) {
        if let Some(prometheus) = &self.prometheus {
            prometheus.queue_wait.record(0.0);
        }
    }

    /// A refresh at Zoho Accounts ended with `outcome`.
    pub fn refresh(&self, outcome: &'static str) {
        debug_assert!(
            REFRESH_OUTCOMES.contains(&outcome),
            "{outcome} is in REFRESH_OUTCOMES"
        );
        self.usage.refreshes.fetch_add(1, Ordering::Relaxed);
        if let Some(prometheus) = &self.prometheus {
            prometheus
                .recorder
                .register_counter(
                    &Key::from_parts(REFRESHES, vec![Label::new("outcome", outcome)]),
                    &METADATA,
                )
                .increment(1);
        }
    }

    /// A token was read from the store in `took`.
    pub fn store_read(&self, took: Duration) {
        if let Some(prometheus) = &self.prometheus {
            prometheus.store_read.record(took.as_secs_f64());
        }
    }

    /// The signed-in user of token `token_id` had a page that used their token.
    pub fn sign_in_seen(&self, token_id: &str) {
        if self.prometheus.is_some() {
            match self.sign_ins.get_mut(token_id) {
                Some(mut seen) => *seen = Instant::now(),
                None => {
                    self.sign_ins.insert(token_id.to_owned(), Instant::now());
                }
            }
        }
    }

    /// This portal's use of Zoho since it started.
    pub fn usage(&self) -> Usage {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Usage {
            since: self.started.elapsed(),
            calls: read(&self.usage.calls),
            rate_limited: read(&self.usage.rate_limited),
            refreshes: read(&self.usage.refreshes),
            queued: read(&self.usage.queued),
            queue_timeouts: read(&self.usage.queue_timeouts),
            queue_abandoned: read(&self.usage.queue_abandoned),
            queue_wait: Duration::from_micros(read(&self.usage.queue_wait_micros)),
        }
    }

    /// `module` itself when it is one of the fixed APIs or a module Zoho listed, else [`OTHER_MODULE`].
    fn module_label(&self, module: &str) -> SharedString {
        let listed = || {
            self.modules
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(module)
        };
        if CRM_APIS.contains(&module) || listed() {
            SharedString::from(module.to_owned())
        } else {
            SharedString::const_str(OTHER_MODULE)
        }
    }
}

/// The outcome of a CRM call that Zoho answered 429.
pub const RATE_LIMITED_OUTCOME: &str = "rate_limited";

fn describe(recorder: &PrometheusRecorder) {
    let text = |name: &'static str, unit: Option<Unit>, help: &'static str| {
        (name, unit, SharedString::const_str(help))
    };
    let counters = [
        text(PAGES, None, "Pages answered, by route pattern and status."),
        text(
            CRM_CALLS,
            None,
            "HTTP calls to Zoho CRM (retries included), by module and outcome.",
        ),
        text(
            CRM_RATE_LIMITED,
            None,
            "Zoho CRM answers that were HTTP 429 TOO_MANY_REQUESTS.",
        ),
        text(
            QUEUE_TIMEOUTS,
            None,
            "CRM calls whose turn did not come within the queue timeout (503 pages).",
        ),
        text(
            QUEUE_ABANDONED,
            None,
            "CRM calls that left the queue because their page's browser had gone (nothing sent to Zoho).",
        ),
        text(
            REFRESHES,
            None,
            "Access-token refreshes at Zoho Accounts, by outcome.",
        ),
    ];
    for (name, unit, help) in counters {
        recorder.describe_counter(name.into(), unit, help);
    }
    recorder.describe_gauge(
        QUEUE_DEPTH.into(),
        None,
        SharedString::const_str("CRM calls waiting for their turn at the per-org gate."),
    );
    recorder.describe_gauge(
        LIVE_SIGN_INS.into(),
        None,
        SharedString::const_str(
            "Signed-in users with a page that used Zoho in the last 5 minutes.",
        ),
    );
    recorder.describe_histogram(
        QUEUE_WAIT.into(),
        Some(Unit::Seconds),
        SharedString::const_str("How long CRM calls waited for their turn at the per-org gate."),
    );
    recorder.describe_histogram(
        STORE_READ.into(),
        Some(Unit::Seconds),
        SharedString::const_str("How long one read of a token from the token store took."),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_portals_count_apart() {
        let (one, two) = (Telemetry::with_metrics(), Telemetry::with_metrics());
        one.modules_listed(["Leads"]);
        one.crm_call("Leads", "ok");
        one.crm_call("Leads", RATE_LIMITED_OUTCOME);
        let rendered = one.render().unwrap();
        assert!(
            rendered.contains(r#"zoho_crm_calls_total{module="Leads",outcome="ok"} 1"#),
            "{rendered}"
        );
        assert!(rendered.contains("zoho_crm_429_total 1"), "{rendered}");
        assert!(!two.render().unwrap().contains("Leads"));
        assert_eq!(one.usage().calls, 2);
        assert_eq!(one.usage().rate_limited, 1);
        assert_eq!(two.usage().calls, 0);
    }

    #[test]
    fn without_metrics_only_usage_is_kept() {
        let telemetry = Telemetry::without_metrics();
        telemetry.crm_call("Leads", "ok");
        telemetry.refresh("ok");
        telemetry.sign_in_seen("1");
        assert!(telemetry.render().is_none());
        assert_eq!(telemetry.usage().calls, 1);
        assert_eq!(telemetry.usage().refreshes, 1);
        assert!(telemetry.sign_ins.is_empty());
    }

    #[test]
    fn only_modules_zoho_listed_and_the_fixed_apis_get_a_label_of_their_own() {
        let telemetry = Telemetry::with_metrics();
        telemetry.modules_listed(["Leads", "Contacts"]);
        for n in 0..200 {
            telemetry.crm_call(&format!("Made_Up_{n}"), "client_error");
        }
        telemetry.crm_call("Leads", "ok");
        telemetry.crm_call("users", "ok");
        let rendered = telemetry.render().unwrap();
        assert!(
            rendered.contains(r#"module="other",outcome="client_error"} 200"#),
            "{rendered}"
        );
        assert!(rendered.contains(r#"module="Leads",outcome="ok"} 1"#));
        assert!(rendered.contains(r#"module="users",outcome="ok"} 1"#));
        assert!(!rendered.contains("Made_Up"), "{rendered}");
    }

    #[test]
    fn module_labels_stop_at_their_bound() {
        let telemetry = Telemetry::with_metrics();
        let names: Vec<String> = (0..MAX_MODULE_LABELS + 5)
            .map(|n| format!("Custom_{n}"))
            .collect();
        telemetry.modules_listed(names.iter().map(String::as_str));
        telemetry.crm_call(&names[MAX_MODULE_LABELS], "ok");
        telemetry.crm_call(&names[0], "ok");
        let rendered = telemetry.render().unwrap();
        assert!(
            rendered.contains(r#"module="other",outcome="ok"} 1"#),
            "{rendered}"
        );
        assert!(rendered.contains(r#"module="Custom_0",outcome="ok"} 1"#));
    }

    #[test]
    fn a_fresh_portal_lists_every_counter_at_zero() {
        let rendered = Telemetry::with_metrics().render().unwrap();
        for series in [
            "zoho_crm_429_total 0".to_owned(),
            "zoho_crm_queue_timeouts_total 0".to_owned(),
            r#"portal_pages_total{route="unmatched",status="404"} 0"#.to_owned(),
        ]
        .into_iter()
        .chain(
            REFRESH_OUTCOMES
                .iter()
                .map(|o| format!(r#"zoho_token_refreshes_total{{outcome="{o}"}} 0"#)),
        )
        .chain(
            CRM_OUTCOMES
                .iter()
                .map(|o| format!(r#"zoho_crm_calls_total{{module="other",outcome="{o}"}} 0"#)),
        ) {
            assert!(
                rendered.lines().any(|line| line == series),
                "{series}: {rendered}"
            );
        }
    }

    #[test]
    fn live_sign_ins_are_distinct_users() {
        let telemetry = Telemetry::with_metrics();
        for id in ["1", "2", "1"] {
            telemetry.sign_in_seen(id);
        }
        let rendered = telemetry.render().unwrap();
        assert!(rendered.contains("portal_live_sign_ins 2"), "{rendered}");
    }
}
