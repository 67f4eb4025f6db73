//! The conformance kit: one suite, written once, that every `TokenStore` must pass, yours included.
//!
//! Add one line to a test file and `cargo test` runs every rule of the contract against your store, one
//! `#[test]` per rule, so a failure names the rule it broke:
//!
//! ```ignore
//! zylker_portal::token_store_conformance!(my_store_conformance, || MyStore::new());
//! ```
//!
//! The closure builds a fresh, empty store for each test. It may return the store, a `Result` of it (an
//! `Err` fails the test), or an `Arc<dyn TokenStore>`. For a store that lives in files, [`in_temp_dir`] gives
//! each test its own folder, removed afterwards:
//!
//! ```ignore
//! zylker_portal::token_store_conformance!(sqlite_file, || {
//!     zylker_portal::tokens::conformance::in_temp_dir(|dir| SqliteStore::open(dir.join("tokens.db")))
//! });
//! ```
//!
//! Each rule is also a public function taking an `Arc<dyn TokenStore>`, for harnesses of your own. The rules
//! panic (they are test code) with a message that says what the store did wrong.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Debug;
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use super::{OAuthToken, Secret, StoreError, StoreFuture, TokenStore};

/// What [`token_store_conformance!`](crate::token_store_conformance) accepts from the store factory.
pub trait IntoSharedStore {
    fn into_shared_store(self) -> Arc<dyn TokenStore>;

    /// The store, or `None` to leave the test out (see the `Option` implementation).
    fn into_store_or_skip(self) -> Option<Arc<dyn TokenStore>>
    where
        Self: Sized,
    {
        Some(self.into_shared_store())
    }
}

impl<S: TokenStore + 'static> IntoSharedStore for S {
    fn into_shared_store(self) -> Arc<dyn TokenStore> {
        Arc::new(self)
    }
}

impl IntoSharedStore for Arc<dyn TokenStore> {
    fn into_shared_store(self) -> Arc<dyn TokenStore> {
        self
    }
}

impl<S: IntoSharedStore, E: Debug> IntoSharedStore for Result<S, E> {
    fn into_shared_store(self) -> Arc<dyn TokenStore> {
        match self {
            Ok(store) => store.into_shared_store(),
            Err(error) => panic!("the store factory failed: {error:?}"),
        }
    }
}

/// `None` leaves the test out: for a store that needs a server which the run was told to do without (the
/// database stores' factories give `None` only when `ZYLKER_SKIP_DB_TESTS=1`).
impl<S: IntoSharedStore> IntoSharedStore for Option<S> {
    fn into_shared_store(self) -> Arc<dyn TokenStore> {
        match self {
            Some(store) => store.into_shared_store(),
            None => panic!("the store factory gave no store"),
        }
    }

    fn into_store_or_skip(self) -> Option<Arc<dyn TokenStore>> {
        self.map(IntoSharedStore::into_shared_store)
    }
}

/// A store that keeps something alive beside it, dropped after the store: a temporary folder, a test
/// database. Every method, the provided ones included, goes straight to the wrapped store.
pub struct GuardedStore<G> {
    store: Arc<dyn TokenStore>,
    // Dropped after `store` (fields drop in order), so the store closes its files or connections first.
    _guard: G,
}

impl<G> GuardedStore<G> {
    /// `store`, with `guard` kept alive until the store is dropped.
    pub fn new(store: impl IntoSharedStore, guard: G) -> Self {
        GuardedStore {
            store: store.into_shared_store(),
            _guard: guard,
        }
    }
}

/// A store kept in a temporary folder that is deleted when the store is dropped.
pub type TempDirStore = GuardedStore<tempfile::TempDir>;

/// Opens a store in a fresh temporary folder: `open` gets the folder's path.
pub fn in_temp_dir<S, E>(open: impl FnOnce(&Path) -> Result<S, E>) -> TempDirStore
where
    S: TokenStore + 'static,
    E: Debug,
{
    let dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(error) => panic!("cannot create a temporary folder: {error}"),
    };
    let store = match open(dir.path()) {
        Ok(store) => store,
        Err(error) => panic!(
            "cannot open the store in {}: {error:?}",
            dir.path().display()
        ),
    };
    GuardedStore::new(store, dir)
}

impl<G: Send + Sync> TokenStore for GuardedStore<G> {
    fn find_token(&self, partial: &OAuthToken) -> Result<Option<OAuthToken>, StoreError> {
        self.store.find_token(partial)
    }
    fn save_token(&self, token: &mut OAuthToken) -> Result<(), StoreError> {
        self.store.save_token(token)
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
    fn find_token_by_id_without_waiting(
        &self,
        id: &str,
    ) -> Option<Result<Option<OAuthToken>, StoreError>> {
        self.store.find_token_by_id_without_waiting(id)
    }
    fn find_token_by_id_async<'a>(
        &'a self,
        id: &'a str,
    ) -> Option<StoreFuture<'a, Option<OAuthToken>>> {
        self.store.find_token_by_id_async(id)
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
    fn try_acquire_refresh_lease(
        &self,
        token_id: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.store.try_acquire_refresh_lease(token_id, holder, ttl)
    }
    fn release_refresh_lease(&self, token_id: &str, holder: &str) -> Result<(), StoreError> {
        self.store.release_refresh_lease(token_id, holder)
    }
}

/// Expands to a module of `#[test]`s, one per rule of the [`TokenStore`] contract, run against stores built
/// by the factory closure. See [the kit's documentation](crate::tokens::conformance).
///
/// A store that overrides the refresh lease adds `refresh_lease` to run the lease rules too (a store that keeps
/// the default lease, which grants at once, leaves it out):
///
/// ```ignore
/// zylker_portal::token_store_conformance!(my_store_conformance, || MyStore::new(), refresh_lease);
/// ```
#[macro_export]
macro_rules! token_store_conformance {
    (@rules $module:ident, $factory:expr, [$($extra:ident),* $(,)?]) => {
        $crate::__token_store_conformance_rules!(
            $module,
            $factory,
            [
                find_matches_user_name_first,
                find_matches_access_token_only_without_client_credentials,
                find_matches_grant_then_refresh_token_with_client_credentials,
                find_returns_none_for_unknown_or_keyless_tokens,
                save_updates_the_users_row_instead_of_adding_one,
                save_never_merges_two_users,
                insert_assigns_a_fresh_unique_id_the_caller_learns,
                insert_keeps_an_explicit_id,
                update_keeps_the_rows_id,
                save_without_credentials_is_refused_and_writes_nothing,
                save_with_an_explicit_id_writes_the_row_it_names,
                save_never_gives_an_explicit_id_to_a_second_row,
                when_several_rows_match_the_oldest_is_meant,
                delete_token_removes_only_that_row,
                get_tokens_returns_every_row,
                delete_tokens_removes_everything,
                find_token_by_id_returns_none_when_absent,
                reads_without_waiting_agree_with_find_token_by_id,
                async_reads_agree_with_find_token_by_id,
                saved_fields_round_trip,
                compare_and_set_access_token_wins_only_on_the_expected_token,
                delete_token_if_unchanged_deletes_only_the_expected_token,
                default_compare_and_set_methods_act_on_the_row_they_name,
                hostile_user_names_round_trip_and_find_nobody_else,
                concurrent_mixed_operations_keep_one_row_per_user_and_lose_no_update,
                concurrent_mixed_operations_keep_the_row_count,
                concurrent_inserts_of_distinct_users_all_survive,
                concurrent_updates_of_one_user_leave_the_last_write_of_some_thread_and_no_other_row,
                racing_inserts_of_one_user_leave_one_row,
                racing_compare_and_set_writers_exactly_one_wins,
                racing_compare_and_set_and_delete_exactly_one_wins,
                $($extra,)*
            ]
        );
    };
    ($module:ident, $factory:expr $(,)?) => {
        $crate::token_store_conformance!(@rules $module, $factory, []);
    };
    ($module:ident, $factory:expr, refresh_lease $(,)?) => {
        $crate::token_store_conformance!(
            @rules $module,
            $factory,
            [
                refresh_lease_admits_one_holder_at_a_time,
                refresh_lease_of_a_holder_that_never_releases_lapses_after_its_ttl,
                racing_holders_exactly_one_takes_the_refresh_lease,
            ]
        );
    };
}

/// Implementation detail of [`token_store_conformance!`](crate::token_store_conformance).
#[doc(hidden)]
#[macro_export]
macro_rules! __token_store_conformance_rules {
    ($module:ident, $factory:expr, [$($rule:ident),* $(,)?]) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;

            fn fresh_store() -> ::std::option::Option<::std::sync::Arc<dyn $crate::tokens::TokenStore>> {
                $crate::tokens::conformance::IntoSharedStore::into_store_or_skip(($factory)())
            }

            $(
                #[test]
                fn $rule() {
                    match fresh_store() {
                        Some(store) => $crate::tokens::conformance::$rule(store),
                        None => eprintln!("{}: left out", stringify!($rule)),
                    }
                }
            )*
        }
    };
}

type Rule = fn(Arc<dyn TokenStore>);

/// The refresh lease's rules, for stores that override the lease (the macro's `refresh_lease`).
pub const LEASE_RULES: &[(&str, Rule)] = &[
    (
        "refresh_lease_admits_one_holder_at_a_time",
        refresh_lease_admits_one_holder_at_a_time,
    ),
    (
        "refresh_lease_of_a_holder_that_never_releases_lapses_after_its_ttl",
        refresh_lease_of_a_holder_that_never_releases_lapses_after_its_ttl,
    ),
    (
        "racing_holders_exactly_one_takes_the_refresh_lease",
        racing_holders_exactly_one_takes_the_refresh_lease,
    ),
];

/// Every rule, by name, in the order the macro runs them.
pub const RULES: &[(&str, Rule)] = &[
    ("find_matches_user_name_first", find_matches_user_name_first),
    (
        "find_matches_access_token_only_without_client_credentials",
        find_matches_access_token_only_without_client_credentials,
    ),
    (
        "find_matches_grant_then_refresh_token_with_client_credentials",
        find_matches_grant_then_refresh_token_with_client_credentials,
    ),
    (
        "find_returns_none_for_unknown_or_keyless_tokens",
        find_returns_none_for_unknown_or_keyless_tokens,
    ),
    (
        "save_updates_the_users_row_instead_of_adding_one",
        save_updates_the_users_row_instead_of_adding_one,
    ),
    ("save_never_merges_two_users", save_never_merges_two_users),
    (
        "insert_assigns_a_fresh_unique_id_the_caller_learns",
        insert_assigns_a_fresh_unique_id_the_caller_learns,
    ),
    ("insert_keeps_an_explicit_id", insert_keeps_an_explicit_id),
    ("update_keeps_the_rows_id", update_keeps_the_rows_id),
    (
        "save_without_credentials_is_refused_and_writes_nothing",
        save_without_credentials_is_refused_and_writes_nothing,
    ),
    (
        "save_with_an_explicit_id_writes_the_row_it_names",
        save_with_an_explicit_id_writes_the_row_it_names,
    ),
    (
        "save_never_gives_an_explicit_id_to_a_second_row",
        save_never_gives_an_explicit_id_to_a_second_row,
    ),
    (
        "when_several_rows_match_the_oldest_is_meant",
        when_several_rows_match_the_oldest_is_meant,
    ),
    (
        "delete_token_removes_only_that_row",
        delete_token_removes_only_that_row,
    ),
    ("get_tokens_returns_every_row", get_tokens_returns_every_row),
    (
        "delete_tokens_removes_everything",
        delete_tokens_removes_everything,
    ),
    (
        "find_token_by_id_returns_none_when_absent",
        find_token_by_id_returns_none_when_absent,
    ),
    (
        "reads_without_waiting_agree_with_find_token_by_id",
        reads_without_waiting_agree_with_find_token_by_id,
    ),
    (
        "async_reads_agree_with_find_token_by_id",
        async_reads_agree_with_find_token_by_id,
    ),
    ("saved_fields_round_trip", saved_fields_round_trip),
    (
        "compare_and_set_access_token_wins_only_on_the_expected_token",
        compare_and_set_access_token_wins_only_on_the_expected_token,
    ),
    (
        "delete_token_if_unchanged_deletes_only_the_expected_token",
        delete_token_if_unchanged_deletes_only_the_expected_token,
    ),
    (
        "default_compare_and_set_methods_act_on_the_row_they_name",
        default_compare_and_set_methods_act_on_the_row_they_name,
    ),
    (
        "hostile_user_names_round_trip_and_find_nobody_else",
        hostile_user_names_round_trip_and_find_nobody_else,
    ),
    (
        "concurrent_mixed_operations_keep_one_row_per_user_and_lose_no_update",
        concurrent_mixed_operations_keep_one_row_per_user_and_lose_no_update,
    ),
    (
        "concurrent_mixed_operations_keep_the_row_count",
        concurrent_mixed_operations_keep_the_row_count,
    ),
    (
        "concurrent_inserts_of_distinct_users_all_survive",
        concurrent_inserts_of_distinct_users_all_survive,
    ),
    (
        "concurrent_updates_of_one_user_leave_the_last_write_of_some_thread_and_no_other_row",
        concurrent_updates_of_one_user_leave_the_last_write_of_some_thread_and_no_other_row,
    ),
    (
        "racing_inserts_of_one_user_leave_one_row",
        racing_inserts_of_one_user_leave_one_row,
    ),
    (
        "racing_compare_and_set_writers_exactly_one_wins",
        racing_compare_and_set_writers_exactly_one_wins,
    ),
    (
        "racing_compare_and_set_and_delete_exactly_one_wins",
        racing_compare_and_set_and_delete_exactly_one_wins,
    ),
];

// ---------------------------------------------------------------------------------------------------------
// Helpers

/// Runs a rule's checks; a failure anywhere in them (in a thread they started too) fails the rule with its
/// name in the message, so that any harness's output says which rule broke.
fn rule(name: &str, checks: impl FnOnce()) {
    if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(checks)) {
        let message = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("a check panicked");
        panic!("conformance rule `{name}` broken: {message}");
    }
}

/// How a failing check shows a value: tokens by their row's id and user name and never by a secret (the
/// kit's tokens are made up, but a message must not teach anyone to print a token).
trait Shown {
    fn show(&self) -> String;
    /// What differs between two values that show alike (the same row with other fields); empty by default.
    fn differences(&self, _other: &Self) -> String {
        String::new()
    }
}

impl Shown for OAuthToken {
    fn show(&self) -> String {
        let user = match &self.user_name {
            Some(name) => format!("user {name:?}"),
            None => "no user name".to_owned(),
        };
        match &self.id {
            Some(id) => format!("the row with id {id:?} and {user}"),
            None => format!("a token without id and {user}"),
        }
    }
    fn differences(&self, other: &Self) -> String {
        let fields = differing_fields(self, other);
        if fields.is_empty() {
            String::new()
        } else {
            format!(" (they differ in {})", fields.join(", "))
        }
    }
}

impl<T: Shown + ?Sized> Shown for &T {
    fn show(&self) -> String {
        (**self).show()
    }
    fn differences(&self, other: &Self) -> String {
        (**self).differences(*other)
    }
}

impl<T: Shown> Shown for Option<T> {
    fn show(&self) -> String {
        match self {
            Some(value) => value.show(),
            None => "nothing".to_owned(),
        }
    }
    fn differences(&self, other: &Self) -> String {
        match (self, other) {
            (Some(a), Some(b)) => a.differences(b),
            _ => String::new(),
        }
    }
}

impl<T: Shown> Shown for Vec<T> {
    fn show(&self) -> String {
        let items: Vec<String> = self.iter().map(Shown::show).collect();
        format!("[{}]", items.join("; "))
    }
    fn differences(&self, other: &Self) -> String {
        let pairs: Vec<String> = self
            .iter()
            .zip(other)
            .map(|(a, b)| a.differences(b))
            .filter(|d| !d.is_empty())
            .collect();
        pairs.join("")
    }
}

/// Names, labels and ids: never a token (secrets are shown through [`kit_label`]).
impl Shown for str {
    fn show(&self) -> String {
        format!("{self:?}")
    }
}

impl Shown for String {
    fn show(&self) -> String {
        self.as_str().show()
    }
}

impl Shown for bool {
    fn show(&self) -> String {
        self.to_string()
    }
}

impl Shown for usize {
    fn show(&self) -> String {
        self.to_string()
    }
}

impl Shown for BTreeMap<String, usize> {
    fn show(&self) -> String {
        format!("{self:?}")
    }
}

/// The names of the fields in which two tokens differ.
fn differing_fields(a: &OAuthToken, b: &OAuthToken) -> Vec<&'static str> {
    let fields = [
        ("id", a.id == b.id),
        ("user_name", a.user_name == b.user_name),
        ("client_id", a.client_id == b.client_id),
        ("client_secret", a.client_secret == b.client_secret),
        ("refresh_token", a.refresh_token == b.refresh_token),
        ("access_token", a.access_token == b.access_token),
        ("grant_token", a.grant_token == b.grant_token),
        ("expiry_time", a.expiry_time == b.expiry_time),
        ("redirect_url", a.redirect_url == b.redirect_url),
        ("api_domain", a.api_domain == b.api_domain),
    ];
    fields
        .into_iter()
        .filter(|(_, same)| !same)
        .map(|(name, _)| name)
        .collect()
}

/// Fails the rule unless `actual == expected`, saying what was tried and showing both values safely.
macro_rules! check_eq {
    // A `match`, as `assert_eq!` has, so that temporaries in the operands live through the comparison.
    ($actual:expr, $expected:expr, $($tried:tt)+) => {
        match (&$actual, &$expected) {
            (actual, expected) => {
                if actual != expected {
                    panic!(
                        "{}: got {}, expected {}{}",
                        format_args!($($tried)+),
                        Shown::show(actual),
                        Shown::show(expected),
                        Shown::differences(actual, expected)
                    );
                }
            }
        }
    };
}

/// The kit writes its tokens as `1000.<kind>.<label>`; a failing check shows the label (which write it was),
/// never the value itself, and says so when the store holds a value the kit did not write.
fn kit_label(value: Option<&str>) -> String {
    match value {
        None => "no value".to_owned(),
        Some(value) => match value
            .strip_prefix("1000.")
            .and_then(|rest| rest.split_once('.'))
        {
            Some((_, label)) if !label.is_empty() => format!("the kit's write {label:?}"),
            _ => format!(
                "a value of {} characters the kit never wrote",
                value.chars().count()
            ),
        },
    }
}

const CLIENT_ID: &str = "1000.CONFORMANCECLIENT";
const CLIENT_SECRET: &str = "conformance-client-secret";

/// Unwraps a store answer, failing the rule with what was being done.
#[track_caller]
fn ok<T>(result: Result<T, StoreError>, doing: &str) -> T {
    match result {
        Ok(value) => value,
        Err(error) => panic!("{doing}: the store failed: {error:#}"),
    }
}

/// A complete token for `user`, as the portal saves one after a login.
pub fn sample_token(user: &str) -> OAuthToken {
    OAuthToken {
        id: None,
        user_name: Some(user.to_owned()),
        client_id: Some(CLIENT_ID.to_owned()),
        client_secret: Some(CLIENT_SECRET.to_owned().into()),
        refresh_token: Some(format!("1000.refresh.{user}").into()),
        access_token: Some(format!("1000.access.{user}").into()),
        grant_token: Some(format!("1000.grant.{user}").into()),
        expiry_time: Some(1_900_000_000_000),
        redirect_url: Some("http://127.0.0.1:8080/oauth/callback".to_owned()),
        api_domain: Some("https://www.zohoapis.com".to_owned()),
    }
}

#[track_caller]
fn save(store: &dyn TokenStore, mut token: OAuthToken) -> OAuthToken {
    ok(store.save_token(&mut token), "save_token");
    assert!(
        token.id.is_some(),
        "save_token must set token.id so the caller learns the row's id"
    );
    token
}

fn by_user(user: &str) -> OAuthToken {
    OAuthToken {
        user_name: Some(user.to_owned()),
        ..OAuthToken::default()
    }
}

#[track_caller]
fn find_user(store: &dyn TokenStore, user: &str) -> Option<OAuthToken> {
    ok(store.find_token(&by_user(user)), "find_token by user_name")
}

#[track_caller]
fn find_by_id(store: &dyn TokenStore, id: &str) -> Option<OAuthToken> {
    ok(store.find_token_by_id(id), "find_token_by_id")
}

#[track_caller]
fn all(store: &dyn TokenStore) -> Vec<OAuthToken> {
    let mut tokens = ok(store.get_tokens(), "get_tokens");
    tokens.sort_by(|a, b| (&a.user_name, &a.id).cmp(&(&b.user_name, &b.id)));
    tokens
}

fn id_of(token: &OAuthToken) -> &str {
    token.id.as_deref().unwrap_or_default()
}

/// A small, seedable generator, so the concurrent rules need no random-number crate and replay alike.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

// ---------------------------------------------------------------------------------------------------------
// find_token: which row a partial token names

/// A non-empty `user_name` decides the match, even when the partial token also has another user's tokens,
/// and an unknown user name finds nothing (no falling back to the other keys).
pub fn find_matches_user_name_first(store: Arc<dyn TokenStore>) {
    rule("find_matches_user_name_first", || {
        let store = store.as_ref();
        let alice = save(store, sample_token("alice@zylker.com"));
        let bob = save(store, sample_token("bob@zylker.com"));

        let mut partial = by_user("alice@zylker.com");
        partial.access_token = bob.access_token.clone();
        partial.refresh_token = bob.refresh_token.clone();
        check_eq!(
            ok(store.find_token(&partial), "find_token").as_ref(),
            Some(&alice),
            "user_name comes before every other key"
        );

        let mut unknown = by_user("carol@zylker.com");
        unknown.access_token = alice.access_token.clone();
        check_eq!(
            ok(store.find_token(&unknown), "find_token"),
            None,
            "an unknown user_name finds nothing, even with another user's access token"
        );

        let mut empty_name = by_user("");
        empty_name.access_token = bob.access_token.clone();
        check_eq!(
            ok(store.find_token(&empty_name), "find_token").as_ref(),
            Some(&bob),
            "an empty user_name counts as absent"
        );
    });
}

/// Without a user name, an access token matches only when client id and secret are both absent.
pub fn find_matches_access_token_only_without_client_credentials(store: Arc<dyn TokenStore>) {
    rule(
        "find_matches_access_token_only_without_client_credentials",
        || {
            let store = store.as_ref();
            let alice = save(store, sample_token("alice@zylker.com"));
            let access = alice.access_token.clone();

            let bare = OAuthToken {
                access_token: access.clone(),
                ..OAuthToken::default()
            };
            check_eq!(
                ok(store.find_token(&bare), "find_token").as_ref(),
                Some(&alice),
                "find_token by the access token of {} alone (no client credentials)",
                alice.show()
            );

            let with_client = OAuthToken {
                access_token: access.clone(),
                client_id: Some(CLIENT_ID.to_owned()),
                client_secret: Some(CLIENT_SECRET.to_owned().into()),
                ..OAuthToken::default()
            };
            check_eq!(
                ok(store.find_token(&with_client), "find_token"),
                None,
                "with client credentials an access token alone names no row"
            );

            let half_client = OAuthToken {
                access_token: access,
                client_id: Some(CLIENT_ID.to_owned()),
                ..OAuthToken::default()
            };
            check_eq!(
                ok(store.find_token(&half_client), "find_token"),
                None,
                "a client id without its secret: the access token is not a key, and there is no grant or refresh token"
            );
        },
    );
}

/// With client id and secret, a grant token matches first, then a refresh token; without them, neither does.
pub fn find_matches_grant_then_refresh_token_with_client_credentials(store: Arc<dyn TokenStore>) {
    rule(
        "find_matches_grant_then_refresh_token_with_client_credentials",
        || {
            let store = store.as_ref();
            let alice = save(store, sample_token("alice@zylker.com"));
            let bob = save(store, sample_token("bob@zylker.com"));
            let client = |grant: Option<&Secret>, refresh: Option<&Secret>| OAuthToken {
                client_id: Some(CLIENT_ID.to_owned()),
                client_secret: Some(CLIENT_SECRET.to_owned().into()),
                grant_token: grant.cloned(),
                refresh_token: refresh.cloned(),
                ..OAuthToken::default()
            };

            let both = client(alice.grant_token.as_ref(), bob.refresh_token.as_ref());
            check_eq!(
                ok(store.find_token(&both), "find_token").as_ref(),
                Some(&alice),
                "the grant token comes before the refresh token"
            );
            let refresh_only = client(None, bob.refresh_token.as_ref());
            check_eq!(
                ok(store.find_token(&refresh_only), "find_token").as_ref(),
                Some(&bob),
                "find_token by the refresh token of {} with client credentials",
                bob.show()
            );

            let unknown_grant = client(
                Some(&Secret::from("1000.grant.nobody")),
                bob.refresh_token.as_ref(),
            );
            check_eq!(
                ok(store.find_token(&unknown_grant), "find_token"),
                None,
                "an unknown grant token finds nothing, even beside a known refresh token"
            );

            let without_client = OAuthToken {
                grant_token: alice.grant_token.clone(),
                refresh_token: alice.refresh_token.clone(),
                ..OAuthToken::default()
            };
            check_eq!(
                ok(store.find_token(&without_client), "find_token"),
                None,
                "grant and refresh tokens are keys only with client credentials"
            );
        },
    );
}

/// An empty partial token names no row; unknown values find nothing; an empty store finds nothing.
pub fn find_returns_none_for_unknown_or_keyless_tokens(store: Arc<dyn TokenStore>) {
    rule("find_returns_none_for_unknown_or_keyless_tokens", || {
        let store = store.as_ref();
        check_eq!(find_user(store, "alice@zylker.com"), None, "empty store");
        save(store, sample_token("alice@zylker.com"));
        check_eq!(
            ok(store.find_token(&OAuthToken::default()), "find_token"),
            None,
            "a token with no key names no row"
        );
        check_eq!(
            find_user(store, "Alice@zylker.com"),
            None,
            "names match exactly"
        );
        let unknown_access = OAuthToken {
            access_token: Some("1000.access.nobody".to_owned().into()),
            ..OAuthToken::default()
        };
        check_eq!(
            ok(store.find_token(&unknown_access), "find_token"),
            None,
            "find_token by an access token nobody holds"
        );
    });
}

// ---------------------------------------------------------------------------------------------------------
// save_token: the upsert

/// Saving a user again replaces that user's row: one row, the newest values, the same id.
pub fn save_updates_the_users_row_instead_of_adding_one(store: Arc<dyn TokenStore>) {
    rule("save_updates_the_users_row_instead_of_adding_one", || {
        let store = store.as_ref();
        let first = save(store, sample_token("alice@zylker.com"));
        let mut newer = sample_token("alice@zylker.com");
        newer.access_token = Some(Secret::from("1000.access.newer".to_owned()));
        newer.expiry_time = Some(1_900_000_360_000);
        let newer = save(store, newer);

        check_eq!(newer.id, first.id, "the row keeps its id");
        check_eq!(
            all(store),
            vec![newer.clone()],
            "exactly one row, with the newest values"
        );
        check_eq!(
            find_user(store, "alice@zylker.com"),
            Some(newer),
            "find_token for \"alice@zylker.com\" after her second save"
        );
    });
}

/// Two users with otherwise identical tokens get two rows, and each finds their own.
pub fn save_never_merges_two_users(store: Arc<dyn TokenStore>) {
    rule("save_never_merges_two_users", || {
        let store = store.as_ref();
        let mut alice = sample_token("alice@zylker.com");
        alice.refresh_token = Some(Secret::from("1000.refresh.shared".to_owned()));
        alice.access_token = Some(Secret::from("1000.access.shared".to_owned()));
        let mut bob = alice.clone();
        bob.user_name = Some("bob@zylker.com".to_owned());
        let alice = save(store, alice);
        let bob = save(store, bob);

        check_eq!(alice.id != bob.id, true, "two users, two ids");
        check_eq!(all(store).len(), 2, "two users, two rows");
        check_eq!(
            find_user(store, "alice@zylker.com"),
            Some(alice),
            "find_token for \"alice@zylker.com\", saved beside bob with the same tokens"
        );
        check_eq!(
            find_user(store, "bob@zylker.com"),
            Some(bob),
            "find_token for \"bob@zylker.com\", saved beside alice with the same tokens"
        );
    });
}

/// An insert without an id gets a new id, unique among the rows, also after deletes; `token.id` tells it.
pub fn insert_assigns_a_fresh_unique_id_the_caller_learns(store: Arc<dyn TokenStore>) {
    rule("insert_assigns_a_fresh_unique_id_the_caller_learns", || {
        let store = store.as_ref();
        let mut saved = Vec::new();
        for n in 0..10 {
            saved.push(save(store, sample_token(&format!("user{n}@zylker.com"))));
        }
        ok(store.delete_token(id_of(&saved[3])), "delete_token");
        saved.remove(3);
        saved.push(save(store, sample_token("late@zylker.com")));

        let ids: HashSet<&str> = saved.iter().map(id_of).collect();
        check_eq!(ids.len(), saved.len(), "every row has its own id: {ids:?}");
        check_eq!(!ids.contains(""), true, "an id is never empty");
        for token in &saved {
            check_eq!(
                ok(store.find_token_by_id(id_of(token)), "find_token_by_id").as_ref(),
                Some(token),
                "token.id names the row that was saved"
            );
        }
    });
}

/// An insert that brings its own id is stored under that id.
pub fn insert_keeps_an_explicit_id(store: Arc<dyn TokenStore>) {
    rule("insert_keeps_an_explicit_id", || {
        let store = store.as_ref();
        let mut token = sample_token("alice@zylker.com");
        token.id = Some("alice-7".to_owned());
        let token = save(store, token);
        check_eq!(
            token.id.as_deref(),
            Some("alice-7"),
            "the id learned when inserting \"alice@zylker.com\" with the explicit id \"alice-7\""
        );
        check_eq!(
            ok(store.find_token_by_id("alice-7"), "find_token_by_id"),
            Some(token),
            "find_token_by_id(\"alice-7\") after inserting alice under that id"
        );
    });
}

/// Updating a row keeps the row's id, even when the token brings another id: `token.id` is set to the row's.
pub fn update_keeps_the_rows_id(store: Arc<dyn TokenStore>) {
    rule("update_keeps_the_rows_id", || {
        let store = store.as_ref();
        let first = save(store, sample_token("alice@zylker.com"));
        let mut again = sample_token("alice@zylker.com");
        again.id = Some("some-other-id".to_owned());
        again.access_token = Some(Secret::from("1000.access.again".to_owned()));
        let again = save(store, again);

        check_eq!(again.id, first.id, "the caller learns the row's id");
        check_eq!(
            ok(store.find_token_by_id("some-other-id"), "find_token_by_id"),
            None,
            "find_token_by_id(\"some-other-id\"), the id brought by a save of the stored \"alice@zylker.com\""
        );
        check_eq!(
            all(store),
            vec![again],
            "rows after saving \"alice@zylker.com\" again with the id \"some-other-id\""
        );
    });
}

/// A token naming a row (by id or user) with no refresh, grant or access token is `NothingToSave`, and
/// nothing is written: not a new row, not a change to the existing one.
pub fn save_without_credentials_is_refused_and_writes_nothing(store: Arc<dyn TokenStore>) {
    rule(
        "save_without_credentials_is_refused_and_writes_nothing",
        || {
            let store = store.as_ref();
            let alice = save(store, sample_token("alice@zylker.com"));
            let empty_user = OAuthToken {
                user_name: Some("alice@zylker.com".to_owned()),
                client_id: Some(CLIENT_ID.to_owned()),
                client_secret: Some(CLIENT_SECRET.to_owned().into()),
                api_domain: Some("https://evil.example".to_owned()),
                ..OAuthToken::default()
            };
            let empty_new_user = OAuthToken {
                user_name: Some("bob@zylker.com".to_owned()),
                ..OAuthToken::default()
            };
            let empty_id = OAuthToken {
                id: alice.id.clone(),
                redirect_url: Some("https://evil.example".to_owned()),
                ..OAuthToken::default()
            };
            for mut token in [empty_user, empty_new_user, empty_id] {
                let before = token.clone();
                match store.save_token(&mut token) {
                    Err(StoreError::NothingToSave) => {}
                    other => panic!("saving {before:?} must be NothingToSave, got {other:?}"),
                }
            }
            check_eq!(all(store), vec![alice], "nothing was written");
        },
    );
}

/// A token without user name that, once saved, shares its refresh token with no other row yet.
fn userless_token(label: &str) -> OAuthToken {
    OAuthToken {
        user_name: None,
        refresh_token: Some(format!("1000.refresh.{label}").into()),
        access_token: Some(format!("1000.access.{label}").into()),
        grant_token: None,
        ..sample_token("")
    }
}

/// Two rows without user name that share a refresh token: the older first. The newer got its refresh token
/// by a save through its id, the only way the contract lets two such rows share one.
fn two_rows_sharing_a_refresh_token(store: &dyn TokenStore) -> (OAuthToken, OAuthToken) {
    let older = save(store, userless_token("older"));
    let mut newer = save(store, userless_token("newer"));
    newer.refresh_token = older.refresh_token.clone();
    let newer = save(store, newer);
    (older, newer)
}

/// `token.id` naming a row writes that row: before the values several rows may share (an older row with the
/// same refresh token is left alone), and a row without user name may be given one. The row keeps its id.
pub fn save_with_an_explicit_id_writes_the_row_it_names(store: Arc<dyn TokenStore>) {
    rule("save_with_an_explicit_id_writes_the_row_it_names", || {
        let store = store.as_ref();
        let (older, newer) = two_rows_sharing_a_refresh_token(store);
        check_eq!(
            all(store).len(),
            2,
            "rows after saving {} with the refresh token of {}",
            newer.show(),
            older.show()
        );
        check_eq!(
            find_by_id(store, id_of(&newer)),
            Some(newer.clone()),
            "find_token_by_id({:?}) after saving that row through its id",
            id_of(&newer)
        );

        let mut again = newer.clone();
        again.access_token = Some(Secret::from("1000.access.newer-again".to_owned()));
        let again = save(store, again);
        check_eq!(
            again.id,
            newer.id,
            "the id learned when saving {} again through its id",
            newer.show()
        );
        check_eq!(
            all(store),
            vec![older.clone(), again.clone()],
            "rows after saving {} through its id, while the older {} has the same refresh token",
            newer.show(),
            older.show()
        );

        let mut named = again.clone();
        named.user_name = Some("carol@zylker.com".to_owned());
        let named = save(store, named);
        check_eq!(
            named.id,
            again.id,
            "the id learned when giving {} the user \"carol@zylker.com\"",
            again.show()
        );
        check_eq!(
            find_user(store, "carol@zylker.com"),
            Some(named),
            "find_token for \"carol@zylker.com\", saved into the row without user name her id named"
        );
        check_eq!(
            all(store).len(),
            2,
            "rows after carol took over a row by its id"
        );
    });
}

/// A token whose id names another row than its user's writes its user's row; a token whose id another user's
/// row holds gets a row of its own under a fresh id. Ids stay unique and that other row is left alone.
pub fn save_never_gives_an_explicit_id_to_a_second_row(store: Arc<dyn TokenStore>) {
    rule("save_never_gives_an_explicit_id_to_a_second_row", || {
        let store = store.as_ref();
        let alice = save(store, sample_token("alice@zylker.com"));
        let bob = save(store, sample_token("bob@zylker.com"));

        let mut alice_with_bobs_id = sample_token("alice@zylker.com");
        alice_with_bobs_id.id = bob.id.clone();
        alice_with_bobs_id.access_token = Some(Secret::from("1000.access.alice-again".to_owned()));
        let alice_again = save(store, alice_with_bobs_id);
        check_eq!(
            alice_again.id,
            alice.id,
            "the id learned when saving \"alice@zylker.com\" with the id {:?} of bob's row",
            id_of(&bob)
        );

        let mut carol = sample_token("carol@zylker.com");
        carol.id = alice.id.clone();
        let carol = save(store, carol);
        check_eq!(
            carol.id != alice.id,
            true,
            "the id learned when saving the new user \"carol@zylker.com\" with the id {:?} of alice's row is {:?}",
            id_of(&alice),
            id_of(&carol)
        );
        let mut expected = vec![alice_again, bob, carol];
        expected.sort_by(|a, b| (&a.user_name, &a.id).cmp(&(&b.user_name, &b.id)));
        check_eq!(
            all(store),
            expected,
            "rows after saving alice with bob's id and the new carol with alice's id"
        );
        let ids: HashSet<&str> = expected.iter().map(id_of).collect();
        check_eq!(ids.len(), 3, "distinct ids among alice, bob and carol");
    });
}

/// The store's six methods alone: the provided methods of the trait run their defaults on them.
struct SixMethodsOnly(Arc<dyn TokenStore>);

impl TokenStore for SixMethodsOnly {
    fn find_token(&self, partial: &OAuthToken) -> Result<Option<OAuthToken>, StoreError> {
        self.0.find_token(partial)
    }
    fn save_token(&self, token: &mut OAuthToken) -> Result<(), StoreError> {
        self.0.save_token(token)
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

/// The trait's default `compare_and_set_access_token` and `delete_token_if_unchanged`, run on this store's
/// six methods, act on the row they are given, also on rows without user name and on a row whose refresh
/// token an older row shares; and the two compare-and-set rules hold with the defaults. So a store that
/// passes the kit may leave both to the trait.
pub fn default_compare_and_set_methods_act_on_the_row_they_name(store: Arc<dyn TokenStore>) {
    rule(
        "default_compare_and_set_methods_act_on_the_row_they_name",
        || {
            let defaults: Arc<dyn TokenStore> = Arc::new(SixMethodsOnly(Arc::clone(&store)));
            let defaults = defaults.as_ref();
            let (older, newer) = two_rows_sharing_a_refresh_token(defaults);
            let mut bare = userless_token("bare");
            bare.client_id = None;
            bare.client_secret = None;
            let bare = save(defaults, bare);
            let alice = save(defaults, sample_token("alice@zylker.com"));

            for (row, others) in [
                (&newer, vec![&older, &bare, &alice]),
                (&older, vec![&newer, &bare, &alice]),
                (&bare, vec![&older, &newer, &alice]),
                (&alice, vec![&older, &newer, &bare]),
            ] {
                let before: Vec<Option<OAuthToken>> = others
                    .iter()
                    .map(|t| find_by_id(defaults, id_of(t)))
                    .collect();
                let won = ok(
                    defaults.compare_and_set_access_token(
                        id_of(row),
                        row.access_token.as_ref().map(Secret::expose_secret),
                        "1000.access.by-default",
                        77,
                    ),
                    "the default compare_and_set_access_token",
                );
                check_eq!(
                    won,
                    true,
                    "the default compare_and_set_access_token on {}",
                    row.show()
                );
                let mut expected = row.clone();
                expected.access_token = Some(Secret::from("1000.access.by-default".to_owned()));
                expected.expiry_time = Some(77);
                check_eq!(
                    find_by_id(defaults, id_of(row)),
                    Some(expected.clone()),
                    "{} after the default compare_and_set_access_token won on it",
                    row.show()
                );
                let after: Vec<Option<OAuthToken>> = others
                    .iter()
                    .map(|t| find_by_id(defaults, id_of(t)))
                    .collect();
                check_eq!(
                    after,
                    before,
                    "the other rows after the default compare_and_set_access_token on {}",
                    row.show()
                );
                // Put the row back as it was, for the next round and the delete below.
                let restored = ok(
                    defaults.compare_and_set_access_token(
                        id_of(row),
                        Some("1000.access.by-default"),
                        row.access_token
                            .as_ref()
                            .map(Secret::expose_secret)
                            .unwrap_or_default(),
                        row.expiry_time.unwrap_or_default(),
                    ),
                    "the default compare_and_set_access_token",
                );
                check_eq!(
                    restored,
                    true,
                    "restoring {} with the default compare-and-set",
                    row.show()
                );
            }

            let deleted = ok(
                defaults.delete_token_if_unchanged(
                    id_of(&newer),
                    newer.access_token.as_ref().map(Secret::expose_secret),
                ),
                "the default delete_token_if_unchanged",
            );
            check_eq!(
                deleted,
                true,
                "the default delete_token_if_unchanged on {}",
                newer.show()
            );
            let left = all(defaults);
            let mut left: Vec<&str> = left.iter().map(id_of).collect();
            left.sort_unstable();
            let mut expected = [&older, &bare, &alice].map(id_of);
            expected.sort_unstable();
            check_eq!(
                left,
                expected.to_vec(),
                "the ids left after the default delete_token_if_unchanged deleted {}",
                newer.show()
            );

            // The two rules of the methods themselves, on the defaults.
            let defaults: Arc<dyn TokenStore> = Arc::new(SixMethodsOnly(Arc::clone(&store)));
            ok(defaults.delete_tokens(), "delete_tokens");
            compare_and_set_access_token_wins_only_on_the_expected_token(Arc::clone(&defaults));
            ok(defaults.delete_tokens(), "delete_tokens");
            delete_token_if_unchanged_deletes_only_the_expected_token(defaults);
        },
    );
}

/// When several rows match a partial token, `find_token` returns the oldest (the first saved, not the one
/// with the smallest id, and still after it was updated) and `save_token` writes that one.
pub fn when_several_rows_match_the_oldest_is_meant(store: Arc<dyn TokenStore>) {
    rule("when_several_rows_match_the_oldest_is_meant", || {
        let store = store.as_ref();
        // Saved first under the larger id, so that neither the id's text nor its number says which is older.
        let mut alice = sample_token("alice@zylker.com");
        alice.id = Some("9".to_owned());
        let mut bob = sample_token("bob@zylker.com");
        bob.id = Some("10".to_owned());
        for shared in [&mut alice, &mut bob] {
            shared.refresh_token = Some(Secret::from("1000.refresh.shared".to_owned()));
            shared.access_token = Some(Secret::from("1000.access.shared".to_owned()));
            shared.grant_token = Some(Secret::from("1000.grant.shared".to_owned()));
        }
        let alice = save(store, alice);
        let bob = save(store, bob);
        let client = |grant: bool, refresh: bool| OAuthToken {
            client_id: Some(CLIENT_ID.to_owned()),
            client_secret: Some(CLIENT_SECRET.into()),
            grant_token: grant.then(|| Secret::from("1000.grant.shared")),
            refresh_token: refresh.then(|| Secret::from("1000.refresh.shared")),
            ..OAuthToken::default()
        };
        let by_access = OAuthToken {
            access_token: Some("1000.access.shared".to_owned().into()),
            ..OAuthToken::default()
        };
        let probes = [
            ("the access token both rows hold", by_access),
            ("the grant token both rows hold", client(true, false)),
            ("the refresh token both rows hold", client(false, true)),
        ];
        for (what, partial) in &probes {
            check_eq!(
                ok(store.find_token(partial), "find_token"),
                Some(alice.clone()),
                "find_token by {what} (saved first: {}; then {})",
                alice.show(),
                bob.show()
            );
        }

        let mut alice_updated = alice.clone();
        alice_updated.expiry_time = Some(1_900_000_999_000);
        let alice_updated = save(store, alice_updated);
        check_eq!(
            ok(store.find_token(&probes[2].1), "find_token"),
            Some(alice_updated.clone()),
            "find_token by the shared refresh token after {} was updated",
            alice.show()
        );

        let mut by_refresh = client(false, true);
        by_refresh.access_token = Some(Secret::from("1000.access.by-refresh".to_owned()));
        let written = save(store, by_refresh);
        check_eq!(
            written.id,
            alice.id,
            "the row written by saving a token whose refresh token both rows hold"
        );
        check_eq!(
            find_by_id(store, id_of(&bob)),
            Some(bob.clone()),
            "{} after a save by the refresh token it shares with the older row",
            bob.show()
        );
    });
}

// ---------------------------------------------------------------------------------------------------------
// delete_token, get_tokens, delete_tokens, find_token_by_id

/// Deleting an id removes that row only; deleting an absent id is not an error.
pub fn delete_token_removes_only_that_row(store: Arc<dyn TokenStore>) {
    rule("delete_token_removes_only_that_row", || {
        let store = store.as_ref();
        let alice = save(store, sample_token("alice@zylker.com"));
        let bob = save(store, sample_token("bob@zylker.com"));
        ok(store.delete_token(id_of(&alice)), "delete_token");
        check_eq!(
            find_user(store, "alice@zylker.com"),
            None,
            "find_token for \"alice@zylker.com\" after delete_token({:?})",
            id_of(&alice)
        );
        check_eq!(
            ok(store.find_token_by_id(id_of(&alice)), "find_token_by_id"),
            None,
            "find_token_by_id({:?}) after delete_token of that id",
            id_of(&alice)
        );
        ok(
            store.delete_token("no-such-id"),
            "delete_token of an absent id",
        );
        ok(store.delete_token(id_of(&alice)), "delete_token twice");
        check_eq!(
            all(store),
            vec![bob],
            "rows after deleting {} (twice) and the absent id \"no-such-id\"",
            alice.show()
        );
    });
}

/// `get_tokens` returns every stored token, complete, and nothing else.
pub fn get_tokens_returns_every_row(store: Arc<dyn TokenStore>) {
    rule("get_tokens_returns_every_row", || {
        let store = store.as_ref();
        check_eq!(all(store), vec![], "an empty store has no tokens");
        let mut saved: Vec<OAuthToken> = ["carol", "alice", "bob"]
            .iter()
            .map(|name| save(store, sample_token(&format!("{name}@zylker.com"))))
            .collect();
        saved.sort_by(|a, b| (&a.user_name, &a.id).cmp(&(&b.user_name, &b.id)));
        check_eq!(
            all(store),
            saved,
            "get_tokens after saving carol, alice and bob"
        );
    });
}

/// `delete_tokens` empties the store, which keeps working afterwards.
pub fn delete_tokens_removes_everything(store: Arc<dyn TokenStore>) {
    rule("delete_tokens_removes_everything", || {
        let store = store.as_ref();
        for name in ["alice", "bob", "carol"] {
            save(store, sample_token(&format!("{name}@zylker.com")));
        }
        ok(store.delete_tokens(), "delete_tokens");
        check_eq!(all(store), vec![], "get_tokens after delete_tokens");
        check_eq!(
            find_user(store, "alice@zylker.com"),
            None,
            "find_token for \"alice@zylker.com\" after delete_tokens"
        );
        ok(store.delete_tokens(), "delete_tokens on an empty store");
        let dave = save(store, sample_token("dave@zylker.com"));
        check_eq!(
            all(store),
            vec![dave],
            "get_tokens after delete_tokens and saving \"dave@zylker.com\""
        );
    });
}

/// `find_token_by_id` answers `None`, not an error, for an id that is not stored.
pub fn find_token_by_id_returns_none_when_absent(store: Arc<dyn TokenStore>) {
    rule("find_token_by_id_returns_none_when_absent", || {
        let store = store.as_ref();
        check_eq!(
            ok(store.find_token_by_id("1"), "find_token_by_id"),
            None,
            "find_token_by_id(\"1\") on an empty store"
        );
        let alice = save(store, sample_token("alice@zylker.com"));
        check_eq!(
            ok(store.find_token_by_id("not-an-id"), "find_token_by_id"),
            None,
            "find_token_by_id(\"not-an-id\")"
        );
        check_eq!(
            ok(store.find_token_by_id(""), "find_token_by_id"),
            None,
            "find_token_by_id(\"\")"
        );
        check_eq!(
            ok(store.find_token_by_id(id_of(&alice)), "find_token_by_id"),
            Some(alice.clone()),
            "find_token_by_id({:?}), the id alice's save returned",
            id_of(&alice)
        );
    });
}

/// The optional asynchronous read, whenever the store offers it, answers what `find_token_by_id` does: a stored
/// token, an updated one, `None` for an absent or deleted id, on one runtime read after read. (Offering none is
/// always allowed.) Its futures run on a single-threaded runtime of the rule's own, as on a portal worker.
pub fn async_reads_agree_with_find_token_by_id(store: Arc<dyn TokenStore>) {
    rule("async_reads_agree_with_find_token_by_id", || {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(error) => panic!("cannot start a runtime for the asynchronous reads: {error}"),
        };
        // Only the asynchronous read runs inside the runtime: a blocking driver may not run in one.
        fast_reads_agree(store.as_ref(), "find_token_by_id_async", |id| {
            runtime.block_on(async {
                match store.find_token_by_id_async(id) {
                    Some(reading) => Some(reading.await),
                    None => None,
                }
            })
        });
    });
}

/// The optional fast path, whenever it answers, answers what `find_token_by_id` does: a stored token, an
/// updated one, `None` for an absent or deleted id. (Answering `None`, "ask me the usual way", is always allowed.)
pub fn reads_without_waiting_agree_with_find_token_by_id(store: Arc<dyn TokenStore>) {
    rule("reads_without_waiting_agree_with_find_token_by_id", || {
        fast_reads_agree(store.as_ref(), "find_token_by_id_without_waiting", |id| {
            store.find_token_by_id_without_waiting(id)
        });
    });
}

/// What the two fast-path rules check: `fast` (the read `method` names), whenever it answers, agrees with
/// `find_token_by_id`, through saves, a second read of one token, an update and a delete.
fn fast_reads_agree(
    store: &dyn TokenStore,
    method: &str,
    fast: impl Fn(&str) -> Option<Result<Option<OAuthToken>, StoreError>>,
) {
    let agree = |id: &str, doing: &str| {
        let expected = ok(store.find_token_by_id(id), "find_token_by_id");
        if let Some(answer) = fast(id) {
            check_eq!(
                ok(answer, method),
                expected,
                "{method} disagrees with find_token_by_id {doing}"
            );
        }
    };
    agree("1", "on an empty store");
    let mut alice = save(store, sample_token("alice@zylker.com"));
    let bob = save(store, sample_token("bob@zylker.com"));
    agree(id_of(&alice), "for a stored token");
    agree(id_of(&bob), "for a second stored token");
    agree(id_of(&alice), "for a token read before");
    agree("not-an-id", "for an id that is not stored");
    alice.access_token = Some(Secret::from("1000.access.refreshed".to_owned()));
    ok(store.save_token(&mut alice), "save_token");
    agree(id_of(&alice), "after the token was updated");
    ok(store.delete_token(id_of(&bob)), "delete_token");
    agree(id_of(&bob), "after the token was deleted");
}

/// All ten fields come back exactly as saved, absent fields absent, and text is text (commas, quotes,
/// non-ASCII, large and negative expiry times).
pub fn saved_fields_round_trip(store: Arc<dyn TokenStore>) {
    rule("saved_fields_round_trip", || {
        let store = store.as_ref();
        let full = OAuthToken {
            id: None,
            user_name: Some("zoë.ünïcødé@zylker.com:60032191920".to_owned()),
            client_id: Some("1000.ABC,DEF".to_owned()),
            client_secret: Some("sec\"ret,with'quotes".to_owned().into()),
            refresh_token: Some("1000.r€fresh".to_owned().into()),
            access_token: Some("1000.access 名前".to_owned().into()),
            grant_token: Some("1000.grant;semi".to_owned().into()),
            expiry_time: Some(i64::MAX),
            redirect_url: Some("http://localhost:8080/callback?a=1&b=2".to_owned()),
            api_domain: Some("https://www.zohoapis.eu".to_owned()),
        };
        let sparse = OAuthToken {
            id: None,
            user_name: None,
            client_id: None,
            client_secret: None,
            refresh_token: None,
            access_token: Some("1000.access.sparse".to_owned().into()),
            grant_token: None,
            expiry_time: Some(-1),
            redirect_url: None,
            api_domain: None,
        };
        let full = save(store, full);
        let sparse = save(store, sparse);
        check_eq!(
            ok(store.find_token_by_id(id_of(&full)), "find_token_by_id"),
            Some(full.clone()),
            "find_token_by_id({:?}): every field of a full token with commas, quotes, non-ASCII and the largest expiry",
            id_of(&full)
        );
        check_eq!(
            ok(store.find_token_by_id(id_of(&sparse)), "find_token_by_id"),
            Some(sparse.clone()),
            "find_token_by_id({:?}): a sparse token (access token and a negative expiry only)",
            id_of(&sparse)
        );
    });
}

// ---------------------------------------------------------------------------------------------------------
// The compare-and-set methods

/// `compare_and_set_access_token` changes the access token and expiry (and nothing else) only when the stored
/// access token is the expected one, and reports whether it did.
pub fn compare_and_set_access_token_wins_only_on_the_expected_token(store: Arc<dyn TokenStore>) {
    rule(
        "compare_and_set_access_token_wins_only_on_the_expected_token",
        || {
            let store = store.as_ref();
            let alice = save(store, sample_token("alice@zylker.com"));
            let id = id_of(&alice);
            let cas = |expected: Option<&str>, new: &str, expiry| {
                ok(
                    store.compare_and_set_access_token(id, expected, new, expiry),
                    "compare_and_set_access_token",
                )
            };

            check_eq!(
                !cas(Some("1000.access.stale"), "1000.access.lost", 1),
                true,
                "a stale token loses"
            );
            check_eq!(
                !cas(None, "1000.access.lost", 1),
                true,
                "None is not the stored token"
            );
            check_eq!(
                find_user(store, "alice@zylker.com").as_ref(),
                Some(&alice),
                "a loss changes nothing"
            );

            check_eq!(
                cas(
                    alice.access_token.as_ref().map(Secret::expose_secret),
                    "1000.access.next",
                    42
                ),
                true,
                "the expected token wins"
            );
            let mut expected = alice.clone();
            expected.access_token = Some(Secret::from("1000.access.next".to_owned()));
            expected.expiry_time = Some(42);
            check_eq!(
                find_user(store, "alice@zylker.com"),
                Some(expected),
                "only access token and expiry change"
            );
            check_eq!(
                !cas(
                    alice.access_token.as_ref().map(Secret::expose_secret),
                    "1000.access.again",
                    43
                ),
                true,
                "the old token has lost now"
            );

            check_eq!(
                !ok(
                    store.compare_and_set_access_token("no-such-id", None, "x", 1),
                    "compare_and_set_access_token"
                ),
                true,
                "compare_and_set_access_token on the absent id \"no-such-id\" must lose"
            );

            let mut refresh_only = sample_token("bob@zylker.com");
            refresh_only.access_token = None;
            let bob = save(store, refresh_only);
            check_eq!(
                ok(
                    store.compare_and_set_access_token(id_of(&bob), None, "1000.access.first", 7),
                    "compare_and_set_access_token"
                ),
                true,
                "an expected None matches a stored absent access token"
            );
            check_eq!(
                kit_label(
                    find_user(store, "bob@zylker.com")
                        .and_then(|t| t.access_token)
                        .as_ref()
                        .map(Secret::expose_secret)
                ),
                kit_label(Some("1000.access.first")),
                "the access token of {} after compare_and_set_access_token from None won",
                bob.show()
            );
        },
    );
}

/// `delete_token_if_unchanged` deletes only while the stored access token is the expected one.
pub fn delete_token_if_unchanged_deletes_only_the_expected_token(store: Arc<dyn TokenStore>) {
    rule(
        "delete_token_if_unchanged_deletes_only_the_expected_token",
        || {
            let store = store.as_ref();
            let alice = save(store, sample_token("alice@zylker.com"));
            let bob = save(store, sample_token("bob@zylker.com"));
            let id = id_of(&alice);
            let delete = |expected: Option<&str>| {
                ok(
                    store.delete_token_if_unchanged(id, expected),
                    "delete_token_if_unchanged",
                )
            };

            check_eq!(
                !delete(Some("1000.access.stale")),
                true,
                "a refreshed token is not deleted"
            );
            check_eq!(!delete(None), true, "None is not the stored token");
            check_eq!(
                all(store).len(),
                2,
                "rows after delete_token_if_unchanged lost twice on {}",
                alice.show()
            );
            check_eq!(
                delete(alice.access_token.as_ref().map(Secret::expose_secret)),
                true,
                "the unchanged token is deleted"
            );
            check_eq!(
                !delete(alice.access_token.as_ref().map(Secret::expose_secret)),
                true,
                "an absent row is not deleted twice"
            );
            check_eq!(
                all(store),
                vec![bob],
                "rows after delete_token_if_unchanged deleted {}",
                alice.show()
            );
        },
    );
}

// ---------------------------------------------------------------------------------------------------------
// Data, not code

/// User names with quotes, semicolons, SQL and non-ASCII are stored and found as names: each finds exactly
/// its own token, and a name built to match everything matches nothing.
pub fn hostile_user_names_round_trip_and_find_nobody_else(store: Arc<dyn TokenStore>) {
    rule("hostile_user_names_round_trip_and_find_nobody_else", || {
        let store = store.as_ref();
        let victim = save(store, sample_token("priya.raman@zylker.com:60032191920"));
        for probe in [
            "nobody' or '1'='1",
            "' OR 1=1 --",
            "%",
            "*",
            "priya.raman@zylker.com:%",
        ] {
            check_eq!(
                find_user(store, probe),
                None,
                "{probe:?} must not find someone else's token"
            );
        }

        let names = [
            "o'brien@zylker.com",
            "liam.o'brien@zylker.com:60032191920",
            "x'); DROP TABLE oauthtoken;--",
            "nobody' or '1'='1",
            "semi;colon,comma\"double\"quote@zylker.com",
            "zoë@zylker.com",
            "名前@zylker.com",
            "line\nbreak\r\nand\ttab@zylker.com",
        ];
        let mut saved = vec![victim];
        for name in names {
            let mut token = sample_token(name);
            token.access_token = Some(Secret::from(format!("1000.access.{name}.'\";")));
            saved.push(save(store, token));
        }
        for token in &saved {
            let name = token.user_name.as_deref().unwrap_or_default();
            check_eq!(
                find_user(store, name).as_ref(),
                Some(token),
                "{name:?} finds its own token"
            );
            let by_access = OAuthToken {
                access_token: token.access_token.clone(),
                ..OAuthToken::default()
            };
            check_eq!(
                ok(store.find_token(&by_access), "find_token").as_ref(),
                Some(token),
                "find_token by the access token of {}",
                token.show()
            );
        }
        saved.sort_by(|a, b| (&a.user_name, &a.id).cmp(&(&b.user_name, &b.id)));
        check_eq!(
            all(store),
            saved,
            "every row is intact (and the table still exists)"
        );
    });
}

// ---------------------------------------------------------------------------------------------------------
// Concurrency: no write is lost

/// How many threads the concurrent rules run, and how many operations each makes in the mixed run.
const THREADS: usize = 8;
const MIXED_OPERATIONS: usize = 1_000;
/// The users every thread of the mixed run races on.
const SHARED_USERS: usize = 20;

/// Joins the threads of a rule, failing the rule with the first thread's failure.
fn join_all<T>(workers: Vec<thread::JoinHandle<T>>) -> Vec<T> {
    workers
        .into_iter()
        .map(|worker| {
            worker
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
        .collect()
}

/// 8 threads insert 50 distinct users each at the same moment: all 400 rows survive, each with its own id
/// and its own values, the id each saver learned.
pub fn concurrent_inserts_of_distinct_users_all_survive(store: Arc<dyn TokenStore>) {
    rule("concurrent_inserts_of_distinct_users_all_survive", || {
        const PER_THREAD: usize = 50;
        let start = Arc::new(Barrier::new(THREADS));
        let workers: Vec<_> = (0..THREADS)
            .map(|thread| {
                let (store, start) = (Arc::clone(&store), Arc::clone(&start));
                thread::spawn(move || {
                    start.wait();
                    (0..PER_THREAD)
                        .map(|n| {
                            save(
                                store.as_ref(),
                                sample_token(&format!("t{thread}.u{n}@zylker.com")),
                            )
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let saved: Vec<OAuthToken> = join_all(workers).into_iter().flatten().collect();

        let stored = all(store.as_ref());
        check_eq!(
            stored.len(),
            THREADS * PER_THREAD,
            "rows after {THREADS} threads inserted {PER_THREAD} distinct users each (an insert was lost, or a row added)"
        );
        let ids: HashSet<&str> = stored.iter().map(id_of).collect();
        check_eq!(ids.len(), stored.len(), "distinct ids among the rows");
        for token in &saved {
            let name = token.user_name.as_deref().unwrap_or_default();
            check_eq!(
                find_user(store.as_ref(), name),
                Some(token.clone()),
                "find_token for {name:?}, inserted concurrently"
            );
        }
    });
}

/// 8 threads save one user 10 times each, every write with its own access, refresh and grant token, and
/// read the row back after each: every read finds one whole write (no field from another write). Then that
/// user has one row, the id every saver learned, holding one whole write that is the last write of some
/// thread; and no other row appeared. Eight rounds, a new user each, so that the first saves race to insert.
pub fn concurrent_updates_of_one_user_leave_the_last_write_of_some_thread_and_no_other_row(
    store: Arc<dyn TokenStore>,
) {
    rule(
        "concurrent_updates_of_one_user_leave_the_last_write_of_some_thread_and_no_other_row",
        || {
            // Rounds, each with a new user, so that the first saves race to insert that user each time.
            const ROUNDS: usize = 8;
            const WRITES: usize = 10;
            for round in 0..ROUNDS {
                let user = format!("round{round}.alice@zylker.com");
                let start = Arc::new(Barrier::new(THREADS));
                let workers: Vec<_> = (0..THREADS)
                    .map(|thread| {
                        let (store, start, user) =
                            (Arc::clone(&store), Arc::clone(&start), user.clone());
                        thread::spawn(move || {
                            start.wait();
                            let mut ids = HashSet::new();
                            for write in 0..WRITES {
                                let label = format!("r{round}.t{thread}.w{write}");
                                let mut token = sample_token(&user);
                                token.access_token = Some(Secret::from(format!("1000.access.{label}")));
                                token.refresh_token = Some(Secret::from(format!("1000.refresh.{label}")));
                                token.grant_token = Some(Secret::from(format!("1000.grant.{label}")));
                                ids.insert(save(store.as_ref(), token).id);
                                // Read back at once: a row is one whole write, also while others write.
                                let found = find_user(store.as_ref(), &user);
                                let labels = found
                                    .iter()
                                    .flat_map(|t| [&t.access_token, &t.refresh_token, &t.grant_token])
                                    .map(|value| kit_label(value.as_ref().map(Secret::expose_secret)))
                                    .collect::<Vec<_>>();
                                check_eq!(
                                    labels.iter().collect::<HashSet<_>>().len(),
                                    1,
                                    "find_token for {user:?} while {THREADS} threads save it: access, refresh and grant token come from {labels:?}"
                                );
                            }
                            ids
                        })
                    })
                    .collect();
                let ids: HashSet<Option<String>> =
                    join_all(workers).into_iter().flatten().collect();

                let stored = all(store.as_ref());
                let users: Vec<&str> = stored
                    .iter()
                    .map(|t| t.user_name.as_deref().unwrap_or("(no user name)"))
                    .collect();
                check_eq!(
                    stored.len(),
                    round + 1,
                    "rows after {THREADS} threads saved {user:?} {WRITES} times each, one user per round (rows for {users:?})"
                );
                let rows: Vec<&OAuthToken> = stored
                    .iter()
                    .filter(|t| t.user_name.as_deref() == Some(user.as_str()))
                    .collect();
                check_eq!(rows.len(), 1, "rows of {user:?}");
                let row = rows[0];
                let learned: Vec<&str> = ids
                    .iter()
                    .map(|id| id.as_deref().unwrap_or_default())
                    .collect();
                check_eq!(
                    learned,
                    vec![id_of(row)],
                    "the ids the savers of {user:?} learned"
                );
                let labels = [&row.access_token, &row.refresh_token, &row.grant_token]
                    .map(|value| kit_label(value.as_ref().map(Secret::expose_secret)));
                check_eq!(
                    labels.iter().collect::<HashSet<_>>().len(),
                    1,
                    "one whole write in {user:?}'s row: access, refresh and grant token come from {labels:?}"
                );
                let last_writes: Vec<String> = (0..THREADS)
                    .map(|thread| {
                        kit_label(Some(&format!(
                            "1000.access.r{round}.t{thread}.w{}",
                            WRITES - 1
                        )))
                    })
                    .collect();
                check_eq!(
                    last_writes.contains(&labels[0]),
                    true,
                    "{user:?}'s row holds {}, which is not the last write of any thread ({last_writes:?}): an update was lost",
                    labels[0]
                );
            }
        },
    );
}

/// What the mixed run did, to check the store against: the last value each thread wrote for each shared
/// user, and the users each thread created, updated and deleted on its own.
struct MixedRun {
    /// Per thread, the last access token it wrote (by save or won compare-and-set) per shared user.
    shared_last: Vec<HashMap<usize, String>>,
    /// Users that one thread alone created and kept, with the access token it wrote last.
    own_live: BTreeMap<String, String>,
    /// Users that one thread alone created and then deleted.
    own_deleted: Vec<String>,
    /// Users of one thread whose save of an update learned another id than their insert: their row was lost.
    own_moved: Vec<String>,
}

/// 8 threads run 1,000 mixed operations each, starting from an empty store: on 20 shared users they save,
/// find (by user, by refresh token, by id), list and compare-and-set; on users of their own they insert,
/// update and delete. During the run no user has two rows and no find returns another user's token.
fn mixed_run(store: &Arc<dyn TokenStore>) -> MixedRun {
    let shared = |n: usize| format!("user{n}@zylker.com");
    let shared_refresh = |n: usize| format!("1000.refresh.user{n}");
    let start = Arc::new(Barrier::new(THREADS));

    let workers: Vec<_> = (0..THREADS)
        .map(|thread| {
            let store = Arc::clone(store);
            let start = Arc::clone(&start);
            thread::spawn(move || {
                let store = store.as_ref();
                let mut last_written: HashMap<usize, String> = HashMap::new();
                // This thread's own users: name -> (id, last access token written).
                let mut own: BTreeMap<String, (String, String)> = BTreeMap::new();
                let mut own_deleted = Vec::new();
                let mut moved = Vec::new();
                let mut created = 0;
                let mut random =
                    XorShift(0x9E37_79B9_7F4A_7C15 ^ ((thread as u64 + 1) * 0x1000_0001));
                start.wait();
                for op in 0..MIXED_OPERATIONS {
                    let n = if op < SHARED_USERS {
                        (op + thread) % SHARED_USERS // every thread races to create every user first
                    } else {
                        random.below(SHARED_USERS as u64) as usize
                    };
                    let value = format!("1000.access.t{thread}.op{op}");
                    let action = if op < SHARED_USERS { 0 } else { random.below(100) };
                    match action {
                        0..30 => {
                            let mut token = sample_token(&shared(n));
                            token.refresh_token = Some(Secret::from(shared_refresh(n)));
                            token.access_token = Some(Secret::from(value.clone()));
                            save(store, token);
                            last_written.insert(n, value);
                        }
                        30..42 => {
                            if let Some(found) = find_user(store, &shared(n)) {
                                check_eq!(found.user_name, Some(shared(n)), "find_token for {:?}", shared(n));
                                check_eq!(
                                    kit_label(found.refresh_token.as_ref().map(Secret::expose_secret)),
                                    kit_label(Some(&shared_refresh(n))),
                                    "the refresh token of {:?} (two users merged?)",
                                    shared(n)
                                );
                            }
                        }
                        42..57 => {
                            if let Some(found) = find_user(store, &shared(n)) {
                                let won = ok(
                                    store.compare_and_set_access_token(
                                        id_of(&found),
                                        found.access_token.as_ref().map(Secret::expose_secret),
                                        &value,
                                        op as i64,
                                    ),
                                    "concurrent compare_and_set_access_token",
                                );
                                if won {
                                    last_written.insert(n, value);
                                }
                            }
                        }
                        57..64 => {
                            if let Some(found) = find_user(store, &shared(n)) {
                                let by_id = ok(store.find_token_by_id(id_of(&found)), "find_token_by_id");
                                check_eq!(
                                    by_id.and_then(|t| t.user_name),
                                    Some(shared(n)),
                                    "find_token_by_id({:?}), the id of {:?} (shared users are never deleted)",
                                    id_of(&found),
                                    shared(n)
                                );
                            }
                        }
                        64..69 => {
                            let partial = OAuthToken {
                                client_id: Some(CLIENT_ID.to_owned()),
                                client_secret: Some(CLIENT_SECRET.to_owned().into()),
                                refresh_token: Some(shared_refresh(n).into()),
                                ..OAuthToken::default()
                            };
                            if let Some(found) = ok(store.find_token(&partial), "find_token") {
                                check_eq!(
                                    found.user_name,
                                    Some(shared(n)),
                                    "find_token by the refresh token of {:?}",
                                    shared(n)
                                );
                            }
                        }
                        69..74 => {
                            let tokens = ok(store.get_tokens(), "concurrent get_tokens");
                            let mut seen = HashSet::new();
                            for token in &tokens {
                                let name = token.user_name.clone().unwrap_or_default();
                                check_eq!(seen.insert(name.clone()), true, "get_tokens: does {name:?} have one row");
                            }
                        }
                        74..82 => {
                            let name = format!("t{thread}.own{created}@zylker.com");
                            created += 1;
                            let mut token = sample_token(&name);
                            token.access_token = Some(Secret::from(value.clone()));
                            let token = save(store, token);
                            own.insert(name, (id_of(&token).to_owned(), value));
                        }
                        82..92 => {
                            let pick = random.below(own.len().max(1) as u64) as usize;
                            if let Some((name, (id, last))) = own.iter_mut().nth(pick) {
                                let mut token = sample_token(name);
                                token.access_token = Some(Secret::from(value.clone()));
                                let token = save(store, token);
                                if token.id.as_deref() != Some(id.as_str()) {
                                    // The row was lost and this save inserted it anew; the checks after
                                    // the run say so (and count the rows as they are).
                                    moved.push(format!(
                                        "{name:?} came back under id {:?} instead of {id:?}",
                                        id_of(&token)
                                    ));
                                    *id = id_of(&token).to_owned();
                                }
                                *last = value;
                            }
                        }
                        _ => {
                            let pick = random.below(own.len().max(1) as u64) as usize;
                            if let Some(name) = own.keys().nth(pick).cloned() {
                                let (id, _) = own.remove(&name).unwrap_or_default();
                                ok(store.delete_token(&id), "concurrent delete_token");
                                own_deleted.push(name);
                            }
                        }
                    }
                }
                (last_written, own, own_deleted, moved)
            })
        })
        .collect();

    let mut run = MixedRun {
        shared_last: Vec::new(),
        own_live: BTreeMap::new(),
        own_deleted: Vec::new(),
        own_moved: Vec::new(),
    };
    for (last, own, deleted, moved) in join_all(workers) {
        run.own_moved.extend(moved);
        run.shared_last.push(last);
        run.own_live
            .extend(own.into_iter().map(|(name, (_, value))| (name, value)));
        run.own_deleted.extend(deleted);
    }
    run
}

/// After the mixed run (8 threads x 1,000 operations, see [`mixed_run`]) every user has exactly one row and
/// no update is lost: a user only one thread wrote holds exactly that thread's last write (or is gone, if
/// the thread deleted it), and a shared user holds the last write of some thread.
pub fn concurrent_mixed_operations_keep_one_row_per_user_and_lose_no_update(
    store: Arc<dyn TokenStore>,
) {
    rule(
        "concurrent_mixed_operations_keep_one_row_per_user_and_lose_no_update",
        || {
            let run = mixed_run(&store);
            let tokens = all(store.as_ref());
            let mut rows_per_user: BTreeMap<String, usize> = BTreeMap::new();
            for token in &tokens {
                *rows_per_user
                    .entry(token.user_name.clone().unwrap_or_default())
                    .or_default() += 1;
            }
            let expected: BTreeMap<String, usize> = (0..SHARED_USERS)
                .map(|n| format!("user{n}@zylker.com"))
                .chain(run.own_live.keys().cloned())
                .map(|name| (name, 1))
                .collect();
            check_eq!(rows_per_user, expected, "rows per user after the mixed run");
            check_eq!(
                run.own_moved,
                Vec::<String>::new(),
                "users written by one thread only, whose row vanished and was inserted again by a later save"
            );

            for (name, last) in &run.own_live {
                let stored = find_user(store.as_ref(), name).and_then(|t| t.access_token);
                check_eq!(
                    kit_label(stored.as_ref().map(Secret::expose_secret)),
                    kit_label(Some(last)),
                    "{name:?}, written by one thread only: its last write must be stored (an update was lost)"
                );
            }
            for name in &run.own_deleted {
                check_eq!(
                    find_user(store.as_ref(), name),
                    None,
                    "{name:?}, deleted by the one thread that wrote it"
                );
            }
            for n in 0..SHARED_USERS {
                let name = format!("user{n}@zylker.com");
                let stored = find_user(store.as_ref(), &name).and_then(|t| t.access_token);
                let candidates: Vec<String> = run
                    .shared_last
                    .iter()
                    .filter_map(|last| last.get(&n))
                    .map(|value| kit_label(Some(value)))
                    .collect();
                check_eq!(
                    candidates.contains(&kit_label(stored.as_ref().map(Secret::expose_secret))),
                    true,
                    "{name:?} holds {}, not the last write of any thread ({candidates:?}): an update was lost",
                    kit_label(stored.as_ref().map(Secret::expose_secret))
                );
            }
        },
    );
}

/// After the mixed run (see [`mixed_run`]) the store holds exactly as many rows as users were created and
/// not deleted (20 shared ones plus those the threads kept), with as many distinct ids.
pub fn concurrent_mixed_operations_keep_the_row_count(store: Arc<dyn TokenStore>) {
    rule("concurrent_mixed_operations_keep_the_row_count", || {
        let run = mixed_run(&store);
        let tokens = ok(store.get_tokens(), "get_tokens");
        let expected = SHARED_USERS + run.own_live.len();
        check_eq!(
            tokens.len(),
            expected,
            "rows after the mixed run: {SHARED_USERS} shared users, {} created and kept, {} created and deleted",
            run.own_live.len(),
            run.own_deleted.len()
        );
        let ids: HashSet<&str> = tokens.iter().map(id_of).collect();
        check_eq!(ids.len(), expected, "distinct ids after the mixed run");
    });
}

/// Four threads saving the same new user at the same moment leave one row, and all learn its id
/// (repeated, each round with a new user).
pub fn racing_inserts_of_one_user_leave_one_row(store: Arc<dyn TokenStore>) {
    rule("racing_inserts_of_one_user_leave_one_row", || {
        const ROUNDS: usize = 40;
        const RACERS: usize = 4;
        for round in 0..ROUNDS {
            let name = format!("racer{round}@zylker.com");
            let barrier = Arc::new(Barrier::new(RACERS));
            let racers: Vec<_> = (0..RACERS)
                .map(|racer| {
                    let store = Arc::clone(&store);
                    let barrier = Arc::clone(&barrier);
                    let name = name.clone();
                    thread::spawn(move || {
                        let mut token = sample_token(&name);
                        token.access_token =
                            Some(Secret::from(format!("1000.access.racer{racer}")));
                        barrier.wait();
                        ok(store.save_token(&mut token), "racing save_token");
                        token.id
                    })
                })
                .collect();
            let ids: HashSet<Option<String>> = racers
                .into_iter()
                .map(|racer| {
                    racer
                        .join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect();
            let rows = ok(store.get_tokens(), "get_tokens")
                .into_iter()
                .filter(|t| t.user_name.as_deref() == Some(name.as_str()))
                .count();
            check_eq!(rows, 1, "round {round}: {name} has {rows} rows");
            check_eq!(
                ids.len(),
                1,
                "round {round}: the racers learned different ids {ids:?}"
            );
        }
    });
}

/// Two threads compare-and-set the same token from the same expected value at the same moment: exactly one
/// wins, and the stored token is the winner's (repeated many times).
pub fn racing_compare_and_set_writers_exactly_one_wins(store: Arc<dyn TokenStore>) {
    rule("racing_compare_and_set_writers_exactly_one_wins", || {
        const ROUNDS: usize = 100;
        let alice = save(store.as_ref(), sample_token("alice@zylker.com"));
        let id = id_of(&alice).to_owned();
        for round in 0..ROUNDS {
            let expected =
                find_user(store.as_ref(), "alice@zylker.com").and_then(|t| t.access_token);
            let barrier = Arc::new(Barrier::new(2));
            let writers: Vec<_> = ["a", "b"]
                .into_iter()
                .map(|writer| {
                    let (store, barrier, id, expected) = (
                        Arc::clone(&store),
                        Arc::clone(&barrier),
                        id.clone(),
                        expected.clone(),
                    );
                    thread::spawn(move || {
                        let new = format!("1000.access.round{round}.{writer}");
                        barrier.wait();
                        let won = ok(
                            store.compare_and_set_access_token(
                                &id,
                                expected.as_ref().map(Secret::expose_secret),
                                &new,
                                round as i64,
                            ),
                            "racing compare_and_set_access_token",
                        );
                        (won, new)
                    })
                })
                .collect();
            let results: Vec<(bool, String)> = writers
                .into_iter()
                .map(|w| {
                    w.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect();
            let winners: Vec<&String> = results
                .iter()
                .filter(|(won, _)| *won)
                .map(|(_, new)| new)
                .collect();
            check_eq!(winners.len(), 1, "round {round}: {} winners", winners.len());
            let stored = find_user(store.as_ref(), "alice@zylker.com").and_then(|t| t.access_token);
            check_eq!(
                kit_label(stored.as_ref().map(Secret::expose_secret)),
                kit_label(Some(winners[0])),
                "round {round}: the winner's token is stored"
            );
        }
    });
}

/// A refresh (compare-and-set) racing a cleanup of the same token (delete if unchanged): exactly one wins
/// (repeated many times).
pub fn racing_compare_and_set_and_delete_exactly_one_wins(store: Arc<dyn TokenStore>) {
    rule("racing_compare_and_set_and_delete_exactly_one_wins", || {
        const ROUNDS: usize = 100;
        for round in 0..ROUNDS {
            let token = save(
                store.as_ref(),
                sample_token(&format!("round{round}@zylker.com")),
            );
            let id = id_of(&token).to_owned();
            let expected = token.access_token.clone();
            let barrier = Arc::new(Barrier::new(2));
            let refresher = {
                let (store, barrier, id, expected) = (
                    Arc::clone(&store),
                    Arc::clone(&barrier),
                    id.clone(),
                    expected.clone(),
                );
                thread::spawn(move || {
                    barrier.wait();
                    ok(
                        store.compare_and_set_access_token(
                            &id,
                            expected.as_ref().map(Secret::expose_secret),
                            "1000.access.new",
                            1,
                        ),
                        "racing compare_and_set_access_token",
                    )
                })
            };
            let cleaner = {
                let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
                thread::spawn(move || {
                    barrier.wait();
                    ok(
                        store.delete_token_if_unchanged(
                            &id,
                            expected.as_ref().map(Secret::expose_secret),
                        ),
                        "racing delete_token_if_unchanged",
                    )
                })
            };
            let refreshed = refresher
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            let deleted = cleaner
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            check_eq!(
                refreshed ^ deleted,
                true,
                "round {round}: refreshed={refreshed} deleted={deleted}"
            );
            let stored = ok(store.find_token_by_id(id_of(&token)), "find_token_by_id");
            check_eq!(
                stored.is_some(),
                refreshed,
                "round {round}: the row exists exactly when the refresh won"
            );
        }
    });
}

// ---------------------------------------------------------------------------------------------------------
// The refresh lease (stores that override it)

/// Long enough that no lease in the rules below lapses while a rule looks at it, on however loaded a machine.
const LONG_TTL: Duration = Duration::from_secs(120);

#[track_caller]
fn acquire(store: &dyn TokenStore, token_id: &str, holder: &str, ttl: Duration) -> bool {
    ok(
        store.try_acquire_refresh_lease(token_id, holder, ttl),
        "try_acquire_refresh_lease",
    )
}

#[track_caller]
fn release(store: &dyn TokenStore, token_id: &str, holder: &str) {
    ok(
        store.release_refresh_lease(token_id, holder),
        "release_refresh_lease",
    );
}

/// One holder at a time per token: a second holder is refused while the first holds the lease, gets it once
/// the first releases it, and a release by someone who does not hold it changes nothing. The holder may renew
/// its own lease; leases of different tokens are independent.
pub fn refresh_lease_admits_one_holder_at_a_time(store: Arc<dyn TokenStore>) {
    rule("refresh_lease_admits_one_holder_at_a_time", || {
        let store = store.as_ref();
        assert!(
            acquire(store, "1", "portal-a", LONG_TTL),
            "a free lease was refused"
        );
        assert!(
            !acquire(store, "1", "portal-b", LONG_TTL),
            "two holders at once: portal-b got the lease portal-a holds"
        );
        assert!(
            acquire(store, "1", "portal-a", LONG_TTL),
            "the holder asking again was refused the lease it holds"
        );
        assert!(
            acquire(store, "2", "portal-b", LONG_TTL),
            "another token's lease was refused: leases must be per token"
        );
        release(store, "1", "portal-b");
        assert!(
            !acquire(store, "1", "portal-c", LONG_TTL),
            "a release by portal-b, which does not hold the lease, freed it"
        );
        release(store, "1", "portal-a");
        assert!(
            acquire(store, "1", "portal-b", LONG_TTL),
            "a released lease was refused"
        );
        assert!(
            !acquire(store, "1", "portal-a", LONG_TTL),
            "the former holder got the lease portal-b holds"
        );
        release(store, "1", "nobody");
        release(store, "no-such-token", "portal-a");
    });
}

/// A holder that takes the lease and never gives it back (it died mid-refresh) blocks the others only until
/// the lease's ttl has passed: then another holder gets it, and the dead one's late release frees nothing.
pub fn refresh_lease_of_a_holder_that_never_releases_lapses_after_its_ttl(
    store: Arc<dyn TokenStore>,
) {
    rule(
        "refresh_lease_of_a_holder_that_never_releases_lapses_after_its_ttl",
        || {
            const TTL: Duration = Duration::from_secs(2);
            let store = store.as_ref();
            let taken = Instant::now();
            assert!(
                acquire(store, "1", "dead-portal", TTL),
                "a free lease was refused"
            );
            let refused = !acquire(store, "1", "live-portal", LONG_TTL);
            // Only a refusal seen well inside the ttl says something: on a machine stalled past it, granting is
            // right.
            if taken.elapsed() < TTL / 2 {
                assert!(refused, "two holders at once before the ttl ran out");
            }
            thread::sleep(TTL.saturating_sub(taken.elapsed()) + Duration::from_millis(200));
            // Past the ttl the lease must be free: a generous deadline, so that only a lease that never lapses
            // fails.
            let deadline = Instant::now() + Duration::from_secs(10);
            while !acquire(store, "1", "live-portal", LONG_TTL) {
                assert!(
                    Instant::now() < deadline,
                    "a lease taken with a ttl of {TTL:?} and never released was still held 10 s after the ttl"
                );
                thread::sleep(Duration::from_millis(100));
            }
            release(store, "1", "dead-portal");
            assert!(
                !acquire(store, "1", "third-portal", LONG_TTL),
                "the lapsed holder's release freed the lease its successor holds"
            );
        },
    );
}

/// Eight holders asking for the same free lease at the same moment: exactly one gets it (repeated, each round
/// on a new token).
pub fn racing_holders_exactly_one_takes_the_refresh_lease(store: Arc<dyn TokenStore>) {
    rule("racing_holders_exactly_one_takes_the_refresh_lease", || {
        const ROUNDS: usize = 30;
        const HOLDERS: usize = 8;
        for round in 0..ROUNDS {
            let token_id = format!("race{round}");
            let barrier = Arc::new(Barrier::new(HOLDERS));
            let racers: Vec<_> = (0..HOLDERS)
                .map(|holder| {
                    let (store, barrier, token_id) =
                        (Arc::clone(&store), Arc::clone(&barrier), token_id.clone());
                    thread::spawn(move || {
                        barrier.wait();
                        acquire(
                            store.as_ref(),
                            &token_id,
                            &format!("portal-{holder}"),
                            LONG_TTL,
                        )
                    })
                })
                .collect();
            let winners = join_all(racers).into_iter().filter(|won| *won).count();
            check_eq!(
                winners,
                1,
                "round {round}: holders that took one free lease"
            );
        }
    });
}

#[cfg(test)]
mod mutants;
