//! The single flight: at most one refresh per token at a time in this process, and what a flight leaves for
//! the requests that waited behind it.

use std::sync::Arc;
use std::time::Instant;

use dashmap::DashMap;

use super::TokenError;
use crate::tokens::{OAuthToken, Secret};
use crate::zoho::AccountsError;

/// One async mutex per token id with a refresh in flight or waited for; it guards what the last flight left
/// for those waiting behind it.
pub(super) type FlightLocks = DashMap<String, Arc<tokio::sync::Mutex<FlightLog>>>;

/// What a flight leaves for the requests that waited behind it.
#[derive(Default)]
pub(super) struct FlightLog {
    pub(super) last_failure: Option<LoggedFailure>,
}

pub(super) struct LoggedFailure {
    pub(super) at: Instant,
    /// The access token that was stored when the refresh was tried.
    pub(super) access_token: Option<Secret>,
    pub(super) failure: SharedFailure,
}

impl FlightLog {
    /// The failure of a refresh that ended after `boarded`, tried on the token that is still stored.
    pub(super) fn failure_since(
        &self,
        boarded: Instant,
        stored: &OAuthToken,
    ) -> Option<&SharedFailure> {
        self.last_failure
            .as_ref()
            .filter(|logged| logged.at >= boarded && logged.access_token == stored.access_token)
            .map(|logged| &logged.failure)
    }
}

/// A refresh failure in a form every waiter can be given a copy of.
#[derive(Debug, Clone)]
pub(super) enum SharedFailure {
    Throttled,
    Misconfigured(String),
    Timeout,
    Unreachable,
    Protocol(String),
    /// Another process's refresh lease outlasted the queue timeout.
    Busy,
}

impl SharedFailure {
    /// Failures worth sharing; a dead token deletes the row, which waiters find out by reading.
    pub(super) fn of(error: &TokenError) -> Option<Self> {
        match error {
            TokenError::Throttled => Some(Self::Throttled),
            TokenError::Misconfigured(what) => Some(Self::Misconfigured(what.clone())),
            TokenError::Timeout => Some(Self::Timeout),
            TokenError::Unreachable(_) => Some(Self::Unreachable),
            TokenError::Protocol(what) => Some(Self::Protocol(what.clone())),
            TokenError::Busy { .. } => Some(Self::Busy),
            _ => None,
        }
    }

    pub(super) fn to_error(&self) -> TokenError {
        match self {
            Self::Throttled => TokenError::Throttled,
            Self::Misconfigured(what) => TokenError::Misconfigured(what.clone()),
            Self::Timeout => TokenError::Timeout,
            Self::Unreachable => TokenError::Unreachable(AccountsError::Protocol(
                "Zoho Accounts could not be reached (by the refresh this request waited for)"
                    .to_owned(),
            )),
            Self::Protocol(what) => TokenError::Protocol(what.clone()),
            Self::Busy => TokenError::Busy {
                retry_after: crate::zoho::limits::BUSY_RETRY_AFTER,
            },
        }
    }
}

/// Above this many entries, idle locks left behind by cancelled waits are swept.
const FLIGHT_SWEEP_THRESHOLD: usize = 1024;

/// A turn at refreshing one token: holds that token's lock, and on drop (also when the waiting future is
/// cancelled) removes the lock from the map once nobody else holds or waits for it.
pub(super) struct Flight<'a> {
    locks: &'a FlightLocks,
    token_id: &'a str,
    guard: Option<tokio::sync::OwnedMutexGuard<FlightLog>>,
}

impl<'a> Flight<'a> {
    pub(super) async fn board(locks: &'a FlightLocks, token_id: &'a str) -> Flight<'a> {
        if locks.len() > FLIGHT_SWEEP_THRESHOLD {
            // `retain` holds each shard's lock, so no clone can be taken while an entry is judged idle.
            locks.retain(|_, lock| Arc::strong_count(lock) > 1);
        }
        let lock = Arc::clone(locks.entry(token_id.to_owned()).or_default().value());
        let mut flight = Flight {
            locks,
            token_id,
            guard: None,
        };
        flight.guard = Some(lock.lock_owned().await);
        flight
    }

    /// The log of this token's flights; `None` never happens once boarded.
    pub(super) fn log(&mut self) -> Option<&mut FlightLog> {
        self.guard.as_deref_mut()
    }
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        // Release our handle first; the map's own handle is then the only one left if nobody waits.
        drop(self.guard.take());
        self.locks
            .remove_if(self.token_id, |_, lock| Arc::strong_count(lock) == 1);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn flight_locks_are_removed_when_the_last_holder_leaves() {
        let locks = FlightLocks::default();
        {
            let _first = Flight::board(&locks, "1").await;
            assert_eq!(locks.len(), 1);
        }
        assert_eq!(locks.len(), 0);
    }

    #[tokio::test]
    async fn a_waiting_flight_keeps_the_lock_and_then_cleans_up() {
        let locks = Arc::new(FlightLocks::default());
        let first = Flight::board(&locks, "7").await;
        let waiter = {
            let locks = Arc::clone(&locks);
            tokio::spawn(async move {
                let _second = Flight::board(&locks, "7").await;
            })
        };
        // Let the waiter queue up behind the first flight.
        while Arc::strong_count(locks.get("7").unwrap().value()) < 3 {
            tokio::task::yield_now().await;
        }
        drop(first);
        assert_eq!(locks.len(), 1, "the waiter still holds the lock");
        waiter.await.unwrap();
        assert_eq!(locks.len(), 0);
    }

    #[tokio::test]
    async fn a_cancelled_wait_leaves_no_lock_behind_after_the_holder_leaves() {
        let locks = FlightLocks::default();
        let first = Flight::board(&locks, "9").await;
        let cancelled =
            tokio::time::timeout(Duration::from_millis(1), Flight::board(&locks, "9")).await;
        assert!(cancelled.is_err());
        drop(first);
        assert_eq!(locks.len(), 0);
    }
}
