//! Zoho CRM's API limits, as the sandbox enforces them: a cap on concurrent calls per org (by edition), a
//! latency per call, and API credits per rolling 24 hours.
//!
//! Zoho's documentation (API limits, and its "Kaizen" post on limits and error responses) gives the caps per
//! edition (Free 5, Standard 10, Professional 15, Enterprise 20, Ultimate 25 concurrent calls per app and org),
//! a sub-limit of 10 concurrent calls for some heavy APIs (search among them), one credit per ordinary call,
//! and `TOO_MANY_REQUESTS` over any of these; the HTTP status 429 is what clients observe. The sandbox holds one
//! org, so it keeps one gate, and beside it the sub-limit on searches: with a cap on, at most
//! [`SEARCH_CONCURRENCY`] searches (or the cap, if smaller) are in flight; with no cap, neither.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A Zoho CRM edition: what decides the org's concurrency cap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Edition {
    Free,
    Standard,
    Professional,
    Enterprise,
    Ultimate,
}

impl Edition {
    /// Concurrent CRM calls Zoho allows per app and org in this edition.
    pub fn concurrency(self) -> usize {
        match self {
            Edition::Free => 5,
            Edition::Standard => 10,
            Edition::Professional => 15,
            Edition::Enterprise => 20,
            Edition::Ultimate => 25,
        }
    }
}

/// How slow and strict the sandbox's CRM is. `Default` is no latency, no cap and no credit limit: what
/// in-process tests start with unless they ask for Zoho's limits; the command line defaults to
/// [`CrmLimits::zoho`] of [`Edition::Enterprise`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CrmLimits {
    /// How long each CRM call takes (slept asynchronously, holding its place in the cap).
    pub latency: Duration,
    /// The most CRM calls in flight at once; `None`: no cap.
    pub concurrency: Option<usize>,
    /// API credits per rolling 24 hours (one per call); `None`: unlimited.
    pub credits_per_day: Option<u64>,
}

impl CrmLimits {
    /// Zoho's cap for `edition`, no latency, unlimited credits.
    pub fn zoho(edition: Edition) -> Self {
        CrmLimits {
            concurrency: Some(edition.concurrency()),
            ..CrmLimits::default()
        }
    }

    /// The cap from an edition and an optional override, where an override of 0 means no cap.
    pub fn concurrency_for(edition: Edition, overridden: Option<usize>) -> Option<usize> {
        match overridden {
            Some(0) => None,
            Some(cap) => Some(cap),
            None => Some(edition.concurrency()),
        }
    }
}

/// Zoho's sub-limit on concurrent search calls per org, within the cap, in every edition.
pub const SEARCH_CONCURRENCY: usize = 10;

/// Which limits a CRM call counts against: a search also against the sub-limit on searches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallKind {
    Plain,
    /// `GET /crm/v8/{module}/search`.
    Search,
}

/// Why a CRM call was refused before it ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The org already has its cap of calls in flight.
    Concurrency,
    /// The org already has its sub-limit of searches in flight.
    SearchConcurrency,
    /// The org's credits for the rolling 24 hours are spent.
    Credits,
}

/// Credits are kept per minute of the sandbox's clock, so the rolling window costs at most 1,440 entries.
const MINUTE_MS: i64 = 60_000;
/// The credit window: 24 hours.
const DAY_MS: i64 = 24 * 60 * MINUTE_MS;

/// Credits spent, per minute, over the last 24 hours.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct CreditBook {
    /// `(minute, credits)`, oldest first.
    minutes: VecDeque<(i64, u64)>,
    total: u64,
}

impl CreditBook {
    fn forget_before(&mut self, now_ms: i64) {
        // A minute is forgotten once all of it is more than 24 hours ago: a credit is never forgotten early.
        while let Some(&(minute, credits)) = self.minutes.front() {
            if (minute + 1) * MINUTE_MS > now_ms - DAY_MS {
                break;
            }
            self.minutes.pop_front();
            self.total -= credits;
        }
    }

    /// Spends one credit at `now_ms` if fewer than `limit` were spent in the last 24 hours.
    fn spend(&mut self, now_ms: i64, limit: Option<u64>) -> bool {
        self.forget_before(now_ms);
        if limit.is_some_and(|limit| self.total >= limit) {
            return false;
        }
        let minute = now_ms.div_euclid(MINUTE_MS);
        match self.minutes.back_mut() {
            Some((last, credits)) if *last >= minute => *credits += 1,
            _ => self.minutes.push_back((minute, 1)),
        }
        self.total += 1;
        true
    }

    /// Credits spent in the 24 hours before `now_ms`.
    fn used(&mut self, now_ms: i64) -> u64 {
        self.forget_before(now_ms);
        self.total
    }

    /// Whether what was read from a state file adds up.
    pub fn is_consistent(&self) -> bool {
        self.minutes
            .iter()
            .try_fold(0u64, |sum, (_, credits)| sum.checked_add(*credits))
            == Some(self.total)
    }
}

/// The org's gate and credit book.
pub struct CrmGate {
    limits: CrmLimits,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    searches_in_flight: AtomicUsize,
    max_searches_in_flight: AtomicUsize,
    credits: Mutex<CreditBook>,
}

/// A CRM call's place in the cap (and a search's in the sub-limit), given back when dropped (also when the
/// client goes away mid-call).
pub struct Place<'gate> {
    gate: &'gate CrmGate,
    search: bool,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        self.gate.in_flight.fetch_sub(1, Ordering::AcqRel);
        if self.search {
            self.gate.searches_in_flight.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Takes one of `cap` places in `counter` (no cap: always); the count before, or `None` when full.
fn take_place(counter: &AtomicUsize, cap: Option<usize>) -> Option<usize> {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |in_flight| match cap {
            Some(cap) if in_flight >= cap => None,
            _ => Some(in_flight + 1),
        })
        .ok()
}

impl CrmGate {
    pub fn new(limits: CrmLimits) -> Self {
        CrmGate {
            limits,
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            searches_in_flight: AtomicUsize::new(0),
            max_searches_in_flight: AtomicUsize::new(0),
            credits: Mutex::new(CreditBook::default()),
        }
    }

    pub fn limits(&self) -> CrmLimits {
        self.limits
    }

    /// The sub-limit on searches: [`SEARCH_CONCURRENCY`] within the cap; none without a cap.
    fn search_cap(&self) -> Option<usize> {
        self.limits
            .concurrency
            .map(|cap| cap.min(SEARCH_CONCURRENCY))
    }

    /// Admits a call of `kind` at `now_ms`: a place in the cap (and a search's in the sub-limit) and a credit,
    /// or why not. A refused call spends no credit and holds no place.
    pub fn admit(&self, now_ms: i64, kind: CallKind) -> Result<Place<'_>, Refusal> {
        let Some(before) = take_place(&self.in_flight, self.limits.concurrency) else {
            return Err(Refusal::Concurrency);
        };
        let mut place = Place {
            gate: self,
            search: false,
        };
        let searches_before = match kind {
            CallKind::Plain => None,
            CallKind::Search => {
                let Some(before) = take_place(&self.searches_in_flight, self.search_cap()) else {
                    return Err(Refusal::SearchConcurrency);
                };
                place.search = true;
                Some(before)
            }
        };
        let spent = self
            .credits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .spend(now_ms, self.limits.credits_per_day);
        if !spent {
            return Err(Refusal::Credits);
        }
        self.max_in_flight.fetch_max(before + 1, Ordering::AcqRel);
        if let Some(searches_before) = searches_before {
            self.max_searches_in_flight
                .fetch_max(searches_before + 1, Ordering::AcqRel);
        }
        Ok(place)
    }

    /// The most calls that were in flight at once since the start or the last reset.
    pub fn max_concurrent(&self) -> u64 {
        self.max_in_flight.load(Ordering::Acquire) as u64
    }

    /// The most searches that were in flight at once since the start or the last reset.
    pub fn max_concurrent_searches(&self) -> u64 {
        self.max_searches_in_flight.load(Ordering::Acquire) as u64
    }

    /// Credits spent in the 24 hours before `now_ms`.
    pub fn credits_used(&self, now_ms: i64) -> u64 {
        self.credits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .used(now_ms)
    }

    /// Runs `f` over the credit book (to save it, or to restore it from a state file).
    pub fn with_credits<T>(&self, f: impl FnOnce(&mut CreditBook) -> T) -> T {
        f(&mut self
            .credits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Starts counting anew: the peak and the credits (a reset is a fresh day).
    pub fn reset(&self) {
        self.max_in_flight
            .store(self.in_flight.load(Ordering::Acquire), Ordering::Release);
        self.max_searches_in_flight.store(
            self.searches_in_flight.load(Ordering::Acquire),
            Ordering::Release,
        );
        *self
            .credits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = CreditBook::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credits_roll_off_after_24_hours() {
        let mut book = CreditBook::default();
        let start = 1_700_000_000_000;
        assert!(book.spend(start, Some(2)));
        assert!(book.spend(start + MINUTE_MS, Some(2)));
        assert!(!book.spend(start + 2 * MINUTE_MS, Some(2)));
        assert_eq!(book.used(start + DAY_MS - 1), 2);
        assert!(!book.spend(start + DAY_MS - 1, Some(2)));
        assert!(
            book.spend(start + DAY_MS + MINUTE_MS, Some(2)),
            "the first credit rolled off"
        );
    }

    #[test]
    fn searches_have_a_sub_limit_within_the_cap_and_none_without_one() {
        let gate = CrmGate::new(CrmLimits::zoho(Edition::Enterprise));
        let searches: Vec<Place<'_>> = (0..SEARCH_CONCURRENCY)
            .map(|_| {
                gate.admit(0, CallKind::Search)
                    .expect("within the sub-limit")
            })
            .collect();
        assert_eq!(
            gate.admit(0, CallKind::Search).err(),
            Some(Refusal::SearchConcurrency)
        );
        let plain = gate.admit(0, CallKind::Plain).expect("other calls go on");
        assert_eq!(
            gate.credits_used(0),
            SEARCH_CONCURRENCY as u64 + 1,
            "a refusal spends nothing"
        );
        drop(searches.into_iter().next());
        assert!(
            gate.admit(0, CallKind::Search).is_ok(),
            "a place given back"
        );
        drop(plain);
        assert_eq!(gate.max_concurrent_searches(), SEARCH_CONCURRENCY as u64);

        let small = CrmGate::new(CrmLimits::zoho(Edition::Free));
        let _five: Vec<Place<'_>> = (0..5)
            .map(|_| small.admit(0, CallKind::Search).expect("within the cap"))
            .collect();
        assert_eq!(
            small.admit(0, CallKind::Search).err(),
            Some(Refusal::Concurrency)
        );

        let open = CrmGate::new(CrmLimits::default());
        let _many: Vec<Place<'_>> = (0..50)
            .map(|_| {
                open.admit(0, CallKind::Search)
                    .expect("no cap, no sub-limit")
            })
            .collect();
    }

    #[test]
    fn an_override_of_zero_means_no_cap() {
        assert_eq!(CrmLimits::concurrency_for(Edition::Free, None), Some(5));
        assert_eq!(CrmLimits::concurrency_for(Edition::Free, Some(3)), Some(3));
        assert_eq!(CrmLimits::concurrency_for(Edition::Free, Some(0)), None);
        assert_eq!(CrmLimits::zoho(Edition::Ultimate).concurrency, Some(25));
    }
}
