//! The kit's own tests: deliberately broken stores (mutants), each failing the rule it breaks.
//!
//! A rule is only as good as the broken stores it rejects. Each mutant below is `ListStore`'s logic with one
//! flaw of the kind real stores have; each test runs one rule on the reference store, where it passes, and on
//! the mutant, where it must fail with the rule's name in the message and no secret in it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use super::{CLIENT_SECRET, LEASE_RULES, RULES, Rule};
use crate::tokens::list::TokenRows;
use crate::tokens::{
    ListStore, OAuthToken, SqliteStore, StoreError, StoreFuture, TokenStore, id_for_new_row,
};

/// The one flaw a mutant has.
#[derive(Debug, Clone, Copy)]
enum Flaw {
    /// `save_token` copies the rows under the lock, lets go of it while it changes the copy, and writes the
    /// copy back: a file store that locks only its reads and its writes, not the two together.
    LockReleasedBetweenReadAndWrite,
    /// `save_token` looks for the user's row under the lock and, finding none, inserts after letting go of it.
    InsertsAfterAnUnlockedLookup,
    /// `save_token` writes an existing row one column at a time, letting go of the lock between columns (an
    /// `UPDATE` per column outside a transaction).
    WritesOneColumnAtATime,
    /// `find_token` returns the newest of several matching rows.
    ReturnsTheNewestMatch,
    /// `save_token` matches the key, and otherwise inserts under the token's id, even when a row has it.
    GivesAnExplicitIdToASecondRow,
    /// `save_token` matches the key before the id, and replaces the row an unmatched id names.
    MatchesTheKeyBeforeTheId,
    /// `find_token_by_id_async` answers each id with the first answer it gave: a cache no write invalidates.
    AsyncReadsRememberTheirFirstAnswer,
}

/// `ListStore` with one [`Flaw`] in its `find_token`, `save_token` or `find_token_by_id_async`.
struct Mutant {
    store: ListStore,
    flaw: Flaw,
    /// What the asynchronous reads answered first, by id (for [`Flaw::AsyncReadsRememberTheirFirstAnswer`]).
    first_answers: Mutex<HashMap<String, Option<OAuthToken>>>,
}

/// Long enough that another thread runs in the window a flaw leaves open.
fn pause() {
    thread::sleep(Duration::from_micros(200));
}

impl Mutant {
    fn store(flaw: Flaw) -> Arc<dyn TokenStore> {
        Arc::new(Mutant {
            store: ListStore::new(),
            flaw,
            first_answers: Mutex::default(),
        })
    }

    fn rows(&self) -> MutexGuard<'_, TokenRows> {
        self.store.rows()
    }

    fn insert(&self, token: &mut OAuthToken) {
        let mut rows = self.rows();
        if token.id.is_none() {
            token.id = Some(id_for_new_row(&rows.tokens, token));
        }
        rows.tokens.push(token.clone());
    }
}

impl TokenStore for Mutant {
    fn find_token(&self, partial: &OAuthToken) -> Result<Option<OAuthToken>, StoreError> {
        let rows = self.rows();
        Ok(match self.flaw {
            Flaw::ReturnsTheNewestMatch => partial
                .key()
                .and_then(|key| rows.tokens.iter().rev().find(|t| t.matches(key)).cloned()),
            _ => rows.find(partial).cloned(),
        })
    }

    fn save_token(&self, token: &mut OAuthToken) -> Result<(), StoreError> {
        if (token.id.is_some() || token.user_name.is_some()) && !token.has_credentials() {
            return Err(StoreError::NothingToSave);
        }
        match self.flaw {
            Flaw::LockReleasedBetweenReadAndWrite => {
                let mut copy = self.rows().clone();
                pause();
                copy.save(token)?;
                *self.rows() = copy;
            }
            Flaw::InsertsAfterAnUnlockedLookup => {
                let found = self.rows().find(token).is_some();
                if found {
                    self.rows().save(token)?;
                } else {
                    pause();
                    self.insert(token);
                }
            }
            Flaw::WritesOneColumnAtATime => {
                let existing = self.rows().find(token).and_then(|t| t.id.clone());
                let Some(id) = existing else {
                    return self.rows().save(token);
                };
                let columns: [fn(&mut OAuthToken, &OAuthToken); 9] = [
                    |row, t| row.user_name = t.user_name.clone(),
                    |row, t| row.client_id = t.client_id.clone(),
                    |row, t| row.client_secret = t.client_secret.clone(),
                    |row, t| row.refresh_token = t.refresh_token.clone(),
                    |row, t| row.access_token = t.access_token.clone(),
                    |row, t| row.grant_token = t.grant_token.clone(),
                    |row, t| row.expiry_time = t.expiry_time,
                    |row, t| row.redirect_url = t.redirect_url.clone(),
                    |row, t| row.api_domain = t.api_domain.clone(),
                ];
                for column in columns {
                    if let Some(row) = self
                        .rows()
                        .tokens
                        .iter_mut()
                        .find(|row| row.id.as_ref() == Some(&id))
                    {
                        column(row, token);
                    }
                    pause();
                }
                token.id = Some(id);
            }
            Flaw::ReturnsTheNewestMatch | Flaw::AsyncReadsRememberTheirFirstAnswer => {
                self.rows().save(token)?
            }
            Flaw::GivesAnExplicitIdToASecondRow | Flaw::MatchesTheKeyBeforeTheId => {
                let mut rows = self.rows();
                let matched = token
                    .key()
                    .and_then(|key| rows.tokens.iter_mut().find(|t| t.matches(key)));
                if let Some(row) = matched {
                    token.id = row.id.clone();
                    *row = token.clone();
                    return Ok(());
                }
                if let Flaw::MatchesTheKeyBeforeTheId = self.flaw {
                    rows.tokens.retain(|t| t.id.is_none() || t.id != token.id);
                }
                drop(rows);
                self.insert(token);
            }
        }
        Ok(())
    }

    fn delete_token(&self, id: &str) -> Result<(), StoreError> {
        self.store.delete_token(id)
    }

    fn get_tokens(&self) -> Result<Vec<OAuthToken>, StoreError> {
        self.store.get_tokens()
    }

    fn delete_tokens(&self) -> Result<(), StoreError> {
        self.store.delete_tokens()
    }

    fn find_token_by_id(&self, id: &str) -> Result<Option<OAuthToken>, StoreError> {
        self.store.find_token_by_id(id)
    }

    fn find_token_by_id_async<'a>(
        &'a self,
        id: &'a str,
    ) -> Option<StoreFuture<'a, Option<OAuthToken>>> {
        let Flaw::AsyncReadsRememberTheirFirstAnswer = self.flaw else {
            return None;
        };
        Some(Box::pin(async move {
            let mut first_answers = self.first_answers.lock().expect("not poisoned");
            if let Some(answer) = first_answers.get(id) {
                return Ok(answer.clone());
            }
            let answer = self.store.find_token_by_id(id)?;
            first_answers.insert(id.to_owned(), answer.clone());
            Ok(answer)
        }))
    }

    fn compare_and_set_access_token(
        &self,
        id: &str,
        expected_access_token: Option<&str>,
        access_token: &str,
        expiry_time: i64,
    ) -> Result<bool, StoreError> {
        self.store.compare_and_set_access_token(
            id,
            expected_access_token,
            access_token,
            expiry_time,
        )
    }

    fn delete_token_if_unchanged(
        &self,
        id: &str,
        expected_access_token: Option<&str>,
    ) -> Result<bool, StoreError> {
        self.store
            .delete_token_if_unchanged(id, expected_access_token)
    }
}

/// Runs the rule `name` on `ListStore`, where it must pass, then on a mutant with `flaw`, where it must fail
/// with a message that names the rule and shows no secret.
fn rule_fails_on(name: &str, flaw: Flaw) {
    let rule = named(RULES, name);
    rule(Arc::new(ListStore::new()));
    fails_naming_its_rule(name, rule, Mutant::store(flaw), &format!("{flaw:?}"));
}

/// The rule called `name` in `rules`.
fn named(rules: &[(&str, Rule)], name: &str) -> Rule {
    match rules.iter().find(|(rule, _)| *rule == name) {
        Some((_, rule)) => *rule,
        None => panic!("no rule named {name}"),
    }
}

/// Runs `rule` on `store`, a mutant that `flaw`s; the rule must fail, naming itself and showing no secret.
fn fails_naming_its_rule(name: &str, rule: Rule, store: Arc<dyn TokenStore>, flaw: &str) {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rule(store)));
    let Err(panic) = outcome else {
        panic!("the rule {name} passed on a mutant that {flaw}");
    };
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .unwrap_or_default();
    assert!(
        message.starts_with(&format!("conformance rule `{name}` broken: ")),
        "the failure does not name its rule: {message}"
    );
    // The kit's tokens are 1000.<kind>.<label> and its client secret is fixed: neither may be shown.
    assert!(
        !message.contains("1000.") && !message.contains(CLIENT_SECRET),
        "the failure shows a token or secret: {message}"
    );
}

#[test]
fn a_store_that_releases_its_lock_between_reading_and_writing_loses_concurrent_inserts() {
    rule_fails_on(
        "concurrent_inserts_of_distinct_users_all_survive",
        Flaw::LockReleasedBetweenReadAndWrite,
    );
}

#[test]
fn a_store_that_releases_its_lock_between_reading_and_writing_breaks_the_row_count() {
    rule_fails_on(
        "concurrent_mixed_operations_keep_the_row_count",
        Flaw::LockReleasedBetweenReadAndWrite,
    );
}

#[test]
fn a_store_that_releases_its_lock_between_reading_and_writing_loses_updates_in_the_mixed_run() {
    rule_fails_on(
        "concurrent_mixed_operations_keep_one_row_per_user_and_lose_no_update",
        Flaw::LockReleasedBetweenReadAndWrite,
    );
}

#[test]
fn a_store_that_inserts_after_an_unlocked_lookup_gives_one_user_a_second_row() {
    rule_fails_on(
        "concurrent_updates_of_one_user_leave_the_last_write_of_some_thread_and_no_other_row",
        Flaw::InsertsAfterAnUnlockedLookup,
    );
}

#[test]
fn a_store_that_writes_one_column_at_a_time_leaves_a_row_no_thread_wrote() {
    rule_fails_on(
        "concurrent_updates_of_one_user_leave_the_last_write_of_some_thread_and_no_other_row",
        Flaw::WritesOneColumnAtATime,
    );
}

#[test]
fn a_store_that_returns_the_newest_match_breaks_the_oldest_match_rule() {
    rule_fails_on(
        "when_several_rows_match_the_oldest_is_meant",
        Flaw::ReturnsTheNewestMatch,
    );
}

#[test]
fn a_store_that_gives_an_explicit_id_to_a_second_row_breaks_the_explicit_id_rule() {
    rule_fails_on(
        "save_never_gives_an_explicit_id_to_a_second_row",
        Flaw::GivesAnExplicitIdToASecondRow,
    );
}

#[test]
fn a_store_that_gives_an_explicit_id_to_a_second_row_breaks_the_default_compare_and_set() {
    rule_fails_on(
        "default_compare_and_set_methods_act_on_the_row_they_name",
        Flaw::GivesAnExplicitIdToASecondRow,
    );
}

#[test]
fn a_store_that_matches_the_key_before_the_id_breaks_the_explicit_id_rule() {
    rule_fails_on(
        "save_with_an_explicit_id_writes_the_row_it_names",
        Flaw::MatchesTheKeyBeforeTheId,
    );
}

#[test]
fn a_store_that_matches_the_key_before_the_id_breaks_the_default_compare_and_set() {
    rule_fails_on(
        "default_compare_and_set_methods_act_on_the_row_they_name",
        Flaw::MatchesTheKeyBeforeTheId,
    );
}

#[test]
fn a_store_whose_asynchronous_reads_remember_their_first_answer_breaks_the_async_read_rule() {
    rule_fails_on(
        "async_reads_agree_with_find_token_by_id",
        Flaw::AsyncReadsRememberTheirFirstAnswer,
    );
}

// ---------------------------------------------------------------------------------------------------------
// The refresh lease: each lease rule passes on a correct lease and fails on the lease broken its way

/// `ListStore` with a lease kept in memory, correct unless `never_lapses`.
#[derive(Default)]
struct LeasedListStore {
    rows: ListStore,
    leases: Mutex<HashMap<String, (String, Instant)>>,
    never_lapses: bool,
}

impl TokenStore for LeasedListStore {
    fn find_token(&self, partial: &OAuthToken) -> Result<Option<OAuthToken>, StoreError> {
        self.rows.find_token(partial)
    }
    fn save_token(&self, token: &mut OAuthToken) -> Result<(), StoreError> {
        self.rows.save_token(token)
    }
    fn delete_token(&self, id: &str) -> Result<(), StoreError> {
        self.rows.delete_token(id)
    }
    fn get_tokens(&self) -> Result<Vec<OAuthToken>, StoreError> {
        self.rows.get_tokens()
    }
    fn delete_tokens(&self) -> Result<(), StoreError> {
        self.rows.delete_tokens()
    }
    fn find_token_by_id(&self, id: &str) -> Result<Option<OAuthToken>, StoreError> {
        self.rows.find_token_by_id(id)
    }
    fn try_acquire_refresh_lease(
        &self,
        token_id: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let mut leases = self.leases.lock().expect("leases");
        let now = Instant::now();
        let free = match leases.get(token_id) {
            None => true,
            Some((held_by, until)) => held_by == holder || (!self.never_lapses && *until <= now),
        };
        if free {
            leases.insert(token_id.to_owned(), (holder.to_owned(), now + ttl));
        }
        Ok(free)
    }
    fn release_refresh_lease(&self, token_id: &str, holder: &str) -> Result<(), StoreError> {
        let mut leases = self.leases.lock().expect("leases");
        if leases
            .get(token_id)
            .is_some_and(|(held_by, _)| held_by == holder)
        {
            leases.remove(token_id);
        }
        Ok(())
    }
}

#[test]
fn a_correct_lease_passes_every_lease_rule() {
    for (_, rule) in LEASE_RULES {
        rule(Arc::new(LeasedListStore::default()));
        rule(Arc::new(SqliteStore::in_memory().expect("memory")));
    }
}

#[test]
fn a_lease_that_always_grants_fails_the_one_holder_rules() {
    // The default lease: right for a store one process uses, wrong for one that claims to share a lease.
    for name in [
        "refresh_lease_admits_one_holder_at_a_time",
        "racing_holders_exactly_one_takes_the_refresh_lease",
    ] {
        let rule = named(LEASE_RULES, name);
        let store = Arc::new(ListStore::new());
        fails_naming_its_rule(name, rule, store, "always grants the lease");
    }
}

#[test]
fn a_lease_that_never_lapses_fails_the_ttl_rule() {
    let name = "refresh_lease_of_a_holder_that_never_releases_lapses_after_its_ttl";
    let store = Arc::new(LeasedListStore {
        never_lapses: true,
        ..LeasedListStore::default()
    });
    fails_naming_its_rule(
        name,
        named(LEASE_RULES, name),
        store,
        "never lets a lease lapse",
    );
}
