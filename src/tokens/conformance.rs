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

use super::{OAuthToken, Secret, StoreError, TokenStore};

/// What [`token_store_conformance!`](crate::token_store_conformance) accepts from the store factory.
pub trait IntoSharedStore {
    fn into_shared_store(self) -> Arc<dyn TokenStore>;
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

/// A store kept in a temporary folder that is deleted when the store is dropped. Every method, the provided
/// compare-and-set ones included, goes straight to the wrapped store.
pub struct TempDirStore {
    store: Arc<dyn TokenStore>,
    // Dropped after `store` (fields drop in order), so the store closes its files before they are removed.
    _dir: tempfile::TempDir,
}

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
    TempDirStore {
        store: Arc::new(store),
        _dir: dir,
    }
}

impl TokenStore for TempDirStore {
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

/// Runs every rule against stores made by `factory`, in this thread: for harnesses that are not `cargo test`.
pub fn run_all<S: IntoSharedStore>(factory: impl Fn() -> S) {
    for (name, rule) in RULES {
        eprintln!("conformance: {name}");
        rule(factory().into_shared_store());
    }
}

/// Expands to a module of `#[test]`s, one per rule of the [`TokenStore`] contract, run against stores built
/// by the factory closure. See [the kit's documentation](crate::tokens::conformance).
#[macro_export]
macro_rules! token_store_conformance {
    ($module:ident, $factory:expr $(,)?) => {
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
                delete_token_removes_only_that_row,
                get_tokens_returns_every_row,
                delete_tokens_removes_everything,
                find_token_by_id_returns_none_when_absent,
                reads_without_waiting_agree_with_find_token_by_id,
                saved_fields_round_trip,
                compare_and_set_access_token_wins_only_on_the_expected_token,
                delete_token_if_unchanged_deletes_only_the_expected_token,
                hostile_user_names_round_trip_and_find_nobody_else,
                concurrent_mixed_operations_keep_one_row_per_user_and_lose_no_update,
                racing_inserts_of_one_user_leave_one_row,
                racing_compare_and_set_writers_exactly_one_wins,
                racing_compare_and_set_and_delete_exactly_one_wins,
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

            fn fresh_store() -> ::std::sync::Arc<dyn $crate::tokens::TokenStore> {
                $crate::tokens::conformance::IntoSharedStore::into_shared_store(($factory)())
            }

            $(
                #[test]
                fn $rule() {
                    $crate::tokens::conformance::$rule(fresh_store());
                }
            )*
        }
    };
}

type Rule = fn(Arc<dyn TokenStore>);

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
        "hostile_user_names_round_trip_and_find_nobody_else",
        hostile_user_names_round_trip_and_find_nobody_else,
    ),
    (
        "concurrent_mixed_operations_keep_one_row_per_user_and_lose_no_update",
        concurrent_mixed_operations_keep_one_row_per_user_and_lose_no_update,
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
    let store = store.as_ref();
    let alice = save(store, sample_token("alice@zylker.com"));
    let bob = save(store, sample_token("bob@zylker.com"));

    let mut partial = by_user("alice@zylker.com");
    partial.access_token = bob.access_token.clone();
    partial.refresh_token = bob.refresh_token.clone();
    assert_eq!(
        ok(store.find_token(&partial), "find_token").as_ref(),
        Some(&alice),
        "user_name comes before every other key"
    );

    let mut unknown = by_user("carol@zylker.com");
    unknown.access_token = alice.access_token.clone();
    assert_eq!(
        ok(store.find_token(&unknown), "find_token"),
        None,
        "an unknown user_name finds nothing, even with another user's access token"
    );

    let mut empty_name = by_user("");
    empty_name.access_token = bob.access_token.clone();
    assert_eq!(
        ok(store.find_token(&empty_name), "find_token").as_ref(),
        Some(&bob),
        "an empty user_name counts as absent"
    );
}

/// Without a user name, an access token matches only when client id and secret are both absent.
pub fn find_matches_access_token_only_without_client_credentials(store: Arc<dyn TokenStore>) {
    let store = store.as_ref();
    let alice = save(store, sample_token("alice@zylker.com"));
    let access = alice.access_token.clone();

    let bare = OAuthToken {
        access_token: access.clone(),
        ..OAuthToken::default()
    };
    assert_eq!(
        ok(store.find_token(&bare), "find_token").as_ref(),
        Some(&alice)
    );

    let with_client = OAuthToken {
        access_token: access.clone(),
        client_id: Some(CLIENT_ID.to_owned()),
        client_secret: Some(CLIENT_SECRET.to_owned().into()),
        ..OAuthToken::default()
    };
    assert_eq!(
        ok(store.find_token(&with_client), "find_token"),
        None,
        "with client credentials an access token alone names no row"
    );

    let half_client = OAuthToken {
        access_token: access,
        client_id: Some(CLIENT_ID.to_owned()),
        ..OAuthToken::default()
    };
    assert_eq!(
        ok(store.find_token(&half_client), "find_token"),
        None,
        "a client id without its secret: the access token is not a key, and there is no grant or refresh token"
    );
}

/// With client id and secret, a grant token matches first, then a refresh token; without them, neither does.
pub fn find_matches_grant_then_refresh_token_with_client_credentials(store: Arc<dyn TokenStore>) {
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
    assert_eq!(
        ok(store.find_token(&both), "find_token").as_ref(),
        Some(&alice),
        "the grant token comes before the refresh token"
    );
    let refresh_only = client(None, bob.refresh_token.as_ref());
    assert_eq!(
        ok(store.find_token(&refresh_only), "find_token").as_ref(),
        Some(&bob)
    );

    let unknown_grant = client(
        Some(&Secret::from("1000.grant.nobody")),
        bob.refresh_token.as_ref(),
    );
    assert_eq!(
        ok(store.find_token(&unknown_grant), "find_token"),
        None,
        "an unknown grant token finds nothing, even beside a known refresh token"
    );

    let without_client = OAuthToken {
        grant_token: alice.grant_token.clone(),
        refresh_token: alice.refresh_token.clone(),
        ..OAuthToken::default()
    };
    assert_eq!(
        ok(store.find_token(&without_client), "find_token"),
        None,
        "grant and refresh tokens are keys only with client credentials"
    );
}

/// An empty partial token names no row; unknown values find nothing; an empty store finds nothing.
pub fn find_returns_none_for_unknown_or_keyless_tokens(store: Arc<dyn TokenStore>) {
    let store = store.as_ref();
    assert_eq!(find_user(store, "alice@zylker.com"), None, "empty store");
    save(store, sample_token("alice@zylker.com"));
    assert_eq!(
        ok(store.find_token(&OAuthToken::default()), "find_token"),
        None,
        "a token with no key names no row"
    );
    assert_eq!(
        find_user(store, "Alice@zylker.com"),
        None,
        "names match exactly"
    );
    let unknown_access = OAuthToken {
        access_token: Some("1000.access.nobody".to_owned().into()),
        ..OAuthToken::default()
    };
    assert_eq!(ok(store.find_token(&unknown_access), "find_token"), None);
}

// ---------------------------------------------------------------------------------------------------------
// save_token: the upsert

/// Saving a user again replaces that user's row: one row, the newest values, the same id.
pub fn save_updates_the_users_row_instead_of_adding_one(store: Arc<dyn TokenStore>) {
    let store = store.as_ref();
    let first = save(store, sample_token("alice@zylker.com"));
    let mut newer = sample_token("alice@zylker.com");
    newer.access_token = Some(Secret::from("1000.access.newer".to_owned()));
    newer.expiry_time = Some(1_900_000_360_000);
    let newer = save(store, newer);

    assert_eq!(newer.id, first.id, "the row keeps its id");
    assert_eq!(
        all(store),
        vec![newer.clone()],
        "exactly one row, with the newest values"
    );
    assert_eq!(find_user(store, "alice@zylker.com"), Some(newer));
}

/// Two users with otherwise identical tokens get two rows, and each finds their own.
pub fn save_never_merges_two_users(store: Arc<dyn TokenStore>) {
    let store = store.as_ref();
    let mut alice = sample_token("alice@zylker.com");
    alice.refresh_token = Some(Secret::from("1000.refresh.shared".to_owned()));
    alice.access_token = Some(Secret::from("1000.access.shared".to_owned()));
    let mut bob = alice.clone();
    bob.user_name = Some("bob@zylker.com".to_owned());
    let alice = save(store, alice);
    let bob = save(store, bob);

    assert_ne!(alice.id, bob.id, "two users, two ids");
    assert_eq!(all(store).len(), 2, "two users, two rows");
    assert_eq!(find_user(store, "alice@zylker.com"), Some(alice));
    assert_eq!(find_user(store, "bob@zylker.com"), Some(bob));
}

/// An insert without an id gets a new id, unique among the rows, also after deletes; `token.id` tells it.
pub fn insert_assigns_a_fresh_unique_id_the_caller_learns(store: Arc<dyn TokenStore>) {
    let store = store.as_ref();
    let mut saved = Vec::new();
    for n in 0..10 {
        saved.push(save(store, sample_token(&format!("user{n}@zylker.com"))));
    }
    ok(store.delete_token(id_of(&saved[3])), "delete_token");
    saved.remove(3);
    saved.push(save(store, sample_token("late@zylker.com")));

    let ids: HashSet<&str> = saved.iter().map(id_of).collect();
    assert_eq!(ids.len(), saved.len(), "every row has its own id: {ids:?}");
    assert!(!ids.contains(""), "an id is never empty");
    for token in &saved {
        assert_eq!(
            ok(store.find_token_by_id(id_of(token)), "find_token_by_id").as_ref(),
            Some(token),
            "token.id names the row that was saved"
        );
    }
}

/// An insert that brings its own id is stored under that id.
pub fn insert_keeps_an_explicit_id(store: Arc<dyn TokenStore>) {
    let store = store.as_ref();
    let mut token = sample_token("alice@zylker.com");
    token.id = Some("alice-7".to_owned());
    let token = save(store, token);
    assert_eq!(token.id.as_deref(), Some("alice-7"));
    assert_eq!(
        ok(store.find_token_by_id("alice-7"), "find_token_by_id"),
        Some(token)
    );
}

/// Updating a row keeps the row's id, even when the token brings another id: `token.id` is set to the row's.
pub fn update_keeps_the_rows_id(store: Arc<dyn TokenStore>) {
    let store = store.as_ref();
    let first = save(store, sample_token("alice@zylker.com"));
    let mut again = sample_token("alice@zylker.com");
    again.id = Some("some-other-id".to_owned());
    again.access_token = Some(Secret::from("1000.access.again".to_owned()));
    let again = save(store, again);

    assert_eq!(again.id, first.id, "the caller learns the row's id");
    assert_eq!(
        ok(store.find_token_by_id("some-other-id"), "find_token_by_id"),
        None
    );
    assert_eq!(all(store), vec![again]);
}

/// A token naming a row (by id or user) with no refresh, grant or access token is `NothingToSave`, and
/// nothing is written: not a new row, not a change to the existing one.
pub fn save_without_credentials_is_refused_and_writes_nothing(store: Arc<dyn TokenStore>) {
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
    assert_eq!(all(store), vec![alice], "nothing was written");
}

// ---------------------------------------------------------------------------------------------------------
// delete_token, get_tokens, delete_tokens, find_token_by_id

/// Deleting an id removes that row only; deleting an absent id is not an error.
pub fn delete_token_removes_only_that_row(store: Arc<dyn TokenStore>) {
    let store = store.as_ref();
    let alice = save(store, sample_token("alice@zylker.com"));
    let bob = save(store, sample_token("bob@zylker.com"));
    ok(store.delete_token(id_of(&alice)), "delete_token");
    assert_eq!(find_user(store, "alice@zylker.com"), None);
    assert_eq!(
        ok(store.find_token_by_id(id_of(&alice)), "find_token_by_id"),
        None
    );
    ok(
        store.delete_token("no-such-id"),
        "delete_token of an absent id",
    );
    ok(store.delete_token(id_of(&alice)), "delete_token twice");
    assert_eq!(all(store), vec![bob]);
}

/// `get_tokens` returns every stored token, complete, and nothing else.
pub fn get_tokens_returns_every_row(store: Arc<dyn TokenStore>) {
    let store = store.as_ref();
    assert_eq!(all(store), vec![], "an empty store has no tokens");
    let mut saved: Vec<OAuthToken> = ["carol", "alice", "bob"]
        .iter()
        .map(|name| save(store, sample_token(&format!("{name}@zylker.com"))))
        .collect();
    saved.sort_by(|a, b| (&a.user_name, &a.id).cmp(&(&b.user_name, &b.id)));
    assert_eq!(all(store), saved);
}

/// `delete_tokens` empties the store, which keeps working afterwards.
pub fn delete_tokens_removes_everything(store: Arc<dyn TokenStore>) {
    let store = store.as_ref();
    for name in ["alice", "bob", "carol"] {
        save(store, sample_token(&format!("{name}@zylker.com")));
    }
    ok(store.delete_tokens(), "delete_tokens");
    assert_eq!(all(store), vec![]);
    assert_eq!(find_user(store, "alice@zylker.com"), None);
    ok(store.delete_tokens(), "delete_tokens on an empty store");
    let dave = save(store, sample_token("dave@zylker.com"));
    assert_eq!(all(store), vec![dave]);
}

/// `find_token_by_id` answers `None`, not an error, for an id that is not stored.
pub fn find_token_by_id_returns_none_when_absent(store: Arc<dyn TokenStore>) {
    let store = store.as_ref();
    assert_eq!(ok(store.find_token_by_id("1"), "find_token_by_id"), None);
    let alice = save(store, sample_token("alice@zylker.com"));
    assert_eq!(
        ok(store.find_token_by_id("not-an-id"), "find_token_by_id"),
        None
    );
    assert_eq!(ok(store.find_token_by_id(""), "find_token_by_id"), None);
    assert_eq!(
        ok(store.find_token_by_id(id_of(&alice)), "find_token_by_id"),
        Some(alice)
    );
}

/// The optional fast path, whenever it answers, answers what `find_token_by_id` does: a stored token, an
/// updated one, `None` for an absent or deleted id. (Answering `None`, "ask me the usual way", is always allowed.)
pub fn reads_without_waiting_agree_with_find_token_by_id(store: Arc<dyn TokenStore>) {
    let store = store.as_ref();
    let agree = |id: &str, doing: &str| {
        let expected = ok(store.find_token_by_id(id), "find_token_by_id");
        if let Some(answer) = store.find_token_by_id_without_waiting(id) {
            assert_eq!(
                ok(answer, "find_token_by_id_without_waiting"),
                expected,
                "find_token_by_id_without_waiting disagrees with find_token_by_id {doing}"
            );
        }
    };
    agree("1", "on an empty store");
    let mut alice = save(store, sample_token("alice@zylker.com"));
    let bob = save(store, sample_token("bob@zylker.com"));
    agree(id_of(&alice), "for a stored token");
    agree(id_of(&bob), "for a second stored token");
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
    assert_eq!(
        ok(store.find_token_by_id(id_of(&full)), "find_token_by_id"),
        Some(full)
    );
    assert_eq!(
        ok(store.find_token_by_id(id_of(&sparse)), "find_token_by_id"),
        Some(sparse)
    );
}

// ---------------------------------------------------------------------------------------------------------
// The compare-and-set methods

/// `compare_and_set_access_token` changes the access token and expiry (and nothing else) only when the stored
/// access token is the expected one, and reports whether it did.
pub fn compare_and_set_access_token_wins_only_on_the_expected_token(store: Arc<dyn TokenStore>) {
    let store = store.as_ref();
    let alice = save(store, sample_token("alice@zylker.com"));
    let id = id_of(&alice);
    let cas = |expected: Option<&str>, new: &str, expiry| {
        ok(
            store.compare_and_set_access_token(id, expected, new, expiry),
            "compare_and_set_access_token",
        )
    };

    assert!(
        !cas(Some("1000.access.stale"), "1000.access.lost", 1),
        "a stale token loses"
    );
    assert!(
        !cas(None, "1000.access.lost", 1),
        "None is not the stored token"
    );
    assert_eq!(
        find_user(store, "alice@zylker.com").as_ref(),
        Some(&alice),
        "a loss changes nothing"
    );

    assert!(
        cas(
            alice.access_token.as_ref().map(Secret::expose_secret),
            "1000.access.next",
            42
        ),
        "the expected token wins"
    );
    let mut expected = alice.clone();
    expected.access_token = Some(Secret::from("1000.access.next".to_owned()));
    expected.expiry_time = Some(42);
    assert_eq!(
        find_user(store, "alice@zylker.com"),
        Some(expected),
        "only access token and expiry change"
    );
    assert!(
        !cas(
            alice.access_token.as_ref().map(Secret::expose_secret),
            "1000.access.again",
            43
        ),
        "the old token has lost now"
    );

    assert!(
        !ok(
            store.compare_and_set_access_token("no-such-id", None, "x", 1),
            "compare_and_set_access_token"
        ),
        "an absent row is a loss"
    );

    let mut refresh_only = sample_token("bob@zylker.com");
    refresh_only.access_token = None;
    let bob = save(store, refresh_only);
    assert!(
        ok(
            store.compare_and_set_access_token(id_of(&bob), None, "1000.access.first", 7),
            "compare_and_set_access_token"
        ),
        "an expected None matches a stored absent access token"
    );
    assert_eq!(
        find_user(store, "bob@zylker.com").and_then(|t| t.access_token),
        Some(Secret::from("1000.access.first"))
    );
}

/// `delete_token_if_unchanged` deletes only while the stored access token is the expected one.
pub fn delete_token_if_unchanged_deletes_only_the_expected_token(store: Arc<dyn TokenStore>) {
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

    assert!(
        !delete(Some("1000.access.stale")),
        "a refreshed token is not deleted"
    );
    assert!(!delete(None), "None is not the stored token");
    assert_eq!(all(store).len(), 2);
    assert!(
        delete(alice.access_token.as_ref().map(Secret::expose_secret)),
        "the unchanged token is deleted"
    );
    assert!(
        !delete(alice.access_token.as_ref().map(Secret::expose_secret)),
        "an absent row is not deleted twice"
    );
    assert_eq!(all(store), vec![bob]);
}

// ---------------------------------------------------------------------------------------------------------
// Data, not code

/// User names with quotes, semicolons, SQL and non-ASCII are stored and found as names: each finds exactly
/// its own token, and a name built to match everything matches nothing.
pub fn hostile_user_names_round_trip_and_find_nobody_else(store: Arc<dyn TokenStore>) {
    let store = store.as_ref();
    let victim = save(store, sample_token("priya.raman@zylker.com:60032191920"));
    for probe in [
        "nobody' or '1'='1",
        "' OR 1=1 --",
        "%",
        "*",
        "priya.raman@zylker.com:%",
    ] {
        assert_eq!(
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
        assert_eq!(
            find_user(store, name).as_ref(),
            Some(token),
            "{name:?} finds its own token"
        );
        let by_access = OAuthToken {
            access_token: token.access_token.clone(),
            ..OAuthToken::default()
        };
        assert_eq!(
            ok(store.find_token(&by_access), "find_token").as_ref(),
            Some(token)
        );
    }
    saved.sort_by(|a, b| (&a.user_name, &a.id).cmp(&(&b.user_name, &b.id)));
    assert_eq!(
        all(store),
        saved,
        "every row is intact (and the table still exists)"
    );
}

// ---------------------------------------------------------------------------------------------------------
// Concurrency

/// 8 threads run 1,000 mixed operations each (save, find by user / refresh token / id, list, compare-and-set)
/// on 20 users, starting from an empty store. At no time does a user have two rows or find another user's
/// token; at the end there is exactly one row per user, holding the last value some thread wrote for that
/// user (an earlier write surviving a thread's later one would be a lost update).
pub fn concurrent_mixed_operations_keep_one_row_per_user_and_lose_no_update(
    store: Arc<dyn TokenStore>,
) {
    const THREADS: usize = 8;
    const OPERATIONS: usize = 1_000;
    const USERS: usize = 20;
    let user = |n: usize| format!("user{n}@zylker.com");
    let refresh = |n: usize| format!("1000.refresh.user{n}");
    let start = Arc::new(Barrier::new(THREADS));

    let workers: Vec<_> = (0..THREADS)
        .map(|thread| {
            let store = Arc::clone(&store);
            let start = Arc::clone(&start);
            thread::spawn(move || {
                // The last access token this thread wrote for each user.
                let mut last_written: HashMap<usize, String> = HashMap::new();
                let mut random =
                    XorShift(0x9E37_79B9_7F4A_7C15 ^ ((thread as u64 + 1) * 0x1000_0001));
                start.wait();
                for op in 0..OPERATIONS {
                    let n = if op < USERS {
                        (op + thread) % USERS // every thread races to create every user first
                    } else {
                        random.below(USERS as u64) as usize
                    };
                    let value = format!("1000.access.t{thread}.op{op}");
                    let action = if op < USERS { 0 } else { random.below(100) };
                    match action {
                        0..35 => {
                            let mut token = sample_token(&user(n));
                            token.refresh_token = Some(Secret::from(refresh(n)));
                            token.access_token = Some(Secret::from(value.clone()));
                            ok(store.save_token(&mut token), "concurrent save_token");
                            last_written.insert(n, value);
                        }
                        35..55 => {
                            if let Some(found) = find_user(store.as_ref(), &user(n)) {
                                assert_eq!(found.user_name, Some(user(n)), "found someone else");
                                assert_eq!(
                                    found.refresh_token,
                                    Some(Secret::from(refresh(n))),
                                    "two users merged"
                                );
                            }
                        }
                        55..75 => {
                            if let Some(found) = find_user(store.as_ref(), &user(n)) {
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
                        75..85 => {
                            if let Some(found) = find_user(store.as_ref(), &user(n)) {
                                let by_id =
                                    ok(store.find_token_by_id(id_of(&found)), "find_token_by_id");
                                let by_id =
                                    by_id.expect("a found row vanished: nothing deletes here");
                                assert_eq!(
                                    by_id.user_name,
                                    Some(user(n)),
                                    "an id moved to another user"
                                );
                            }
                        }
                        85..92 => {
                            let partial = OAuthToken {
                                client_id: Some(CLIENT_ID.to_owned()),
                                client_secret: Some(CLIENT_SECRET.to_owned().into()),
                                refresh_token: Some(refresh(n).into()),
                                ..OAuthToken::default()
                            };
                            if let Some(found) = ok(store.find_token(&partial), "find_token") {
                                assert_eq!(found.user_name, Some(user(n)), "found someone else");
                            }
                        }
                        _ => {
                            let tokens = ok(store.get_tokens(), "concurrent get_tokens");
                            let mut seen = HashSet::new();
                            for token in &tokens {
                                assert!(
                                    seen.insert(token.user_name.clone()),
                                    "{:?} has two rows",
                                    token.user_name
                                );
                            }
                        }
                    }
                }
                last_written
            })
        })
        .collect();

    let mut last_by_thread = Vec::new();
    for worker in workers {
        match worker.join() {
            Ok(last) => last_by_thread.push(last),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    let tokens = all(store.as_ref());
    let mut rows_per_user: BTreeMap<String, usize> = BTreeMap::new();
    for token in &tokens {
        *rows_per_user
            .entry(token.user_name.clone().unwrap_or_default())
            .or_default() += 1;
    }
    let expected: BTreeMap<String, usize> = (0..USERS).map(|n| (user(n), 1)).collect();
    assert_eq!(rows_per_user, expected, "exactly one row per user");
    let ids: HashSet<&str> = tokens.iter().map(id_of).collect();
    assert_eq!(ids.len(), USERS, "every row has its own id");

    for n in 0..USERS {
        let stored = find_user(store.as_ref(), &user(n)).and_then(|t| t.access_token);
        let stored = stored.as_ref().map(Secret::expose_secret);
        let candidates: Vec<&String> = last_by_thread
            .iter()
            .filter_map(|last| last.get(&n))
            .collect();
        assert!(
            stored.is_some_and(|s| candidates.iter().any(|c| c.as_str() == s)),
            "{}: stored {stored:?} is not the last write of any thread ({candidates:?}): an update was lost",
            user(n)
        );
    }
}

/// Four threads saving the same new user at the same moment leave one row, and all learn its id
/// (repeated, each round with a new user).
pub fn racing_inserts_of_one_user_leave_one_row(store: Arc<dyn TokenStore>) {
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
                    token.access_token = Some(Secret::from(format!("1000.access.racer{racer}")));
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
        assert_eq!(rows, 1, "round {round}: {name} has {rows} rows");
        assert_eq!(
            ids.len(),
            1,
            "round {round}: the racers learned different ids {ids:?}"
        );
    }
}

/// Two threads compare-and-set the same token from the same expected value at the same moment: exactly one
/// wins, and the stored token is the winner's (repeated many times).
pub fn racing_compare_and_set_writers_exactly_one_wins(store: Arc<dyn TokenStore>) {
    const ROUNDS: usize = 100;
    let alice = save(store.as_ref(), sample_token("alice@zylker.com"));
    let id = id_of(&alice).to_owned();
    for round in 0..ROUNDS {
        let expected = find_user(store.as_ref(), "alice@zylker.com").and_then(|t| t.access_token);
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
        assert_eq!(winners.len(), 1, "round {round}: {} winners", winners.len());
        let stored = find_user(store.as_ref(), "alice@zylker.com").and_then(|t| t.access_token);
        assert_eq!(
            stored.as_ref().map(Secret::expose_secret),
            Some(winners[0].as_str()),
            "round {round}: the winner's token is stored"
        );
    }
}

/// A refresh (compare-and-set) racing a cleanup of the same token (delete if unchanged): exactly one wins
/// (repeated many times).
pub fn racing_compare_and_set_and_delete_exactly_one_wins(store: Arc<dyn TokenStore>) {
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
        assert!(
            refreshed ^ deleted,
            "round {round}: refreshed={refreshed} deleted={deleted}"
        );
        let stored = ok(store.find_token_by_id(id_of(&token)), "find_token_by_id");
        assert_eq!(
            stored.is_some(),
            refreshed,
            "round {round}: the row exists exactly when the refresh won"
        );
    }
}
