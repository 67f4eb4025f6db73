//! Model-based property test: random sequences of operations on each store and on `ListStore`, the oracle,
//! must get the same answers.

use proptest::prelude::*;
use zylker_portal::secret::Secret;
use zylker_portal::tokens::conformance::in_temp_dir;
use zylker_portal::tokens::{
    FileStore, ListStore, OAuthToken, SqliteStore, StoreError, TokenStore,
};

#[derive(Debug, Clone)]
enum Operation {
    Save(OAuthToken),
    Find(OAuthToken),
    Delete(String),
    GetTokens,
    DeleteAll,
    FindById(String),
    CompareAndSet {
        id: String,
        expected: Option<String>,
        access_token: String,
        expiry_time: i64,
    },
    DeleteIfUnchanged {
        id: String,
        expected: Option<String>,
    },
}

/// What an operation answered, in a form two stores' answers can be compared in.
#[derive(Debug, PartialEq)]
enum Answer {
    /// The id the caller learned, or the error's kind.
    Saved(Result<Option<String>, String>),
    Token(Option<OAuthToken>),
    /// `get_tokens`, as a sorted set.
    Tokens(Vec<String>),
    Won(bool),
    Done,
    Failed(String),
}

// Few distinct values, so that operations keep meeting the same rows and keys.
fn pick(values: &'static [&'static str]) -> impl Strategy<Value = Option<String>> {
    prop::option::of(prop::sample::select(values).prop_map(str::to_owned))
}

fn id() -> impl Strategy<Value = String> {
    prop::sample::select(&["1", "2", "3", "4", "x"][..]).prop_map(str::to_owned)
}

fn token() -> impl Strategy<Value = OAuthToken> {
    (
        (
            pick(&["1", "2", "3", "x"]),
            pick(&["alice", "bob", "o'brien", "名前"]),
            pick(&["c1"]),
            pick(&["s1"]),
            pick(&["r1", "r2"]),
        ),
        (
            pick(&["a1", "a2", "a3"]),
            pick(&["g1", "g2"]),
            prop::option::of(prop_oneof![-3i64..3, Just(1_900_000_000_000)]),
            pick(&["http://localhost/cb"]),
            pick(&["https://www.zohoapis.com", "https://a,b\"c"]),
        ),
    )
        .prop_map(
            |(
                (id, user_name, client_id, client_secret, refresh_token),
                (access_token, grant_token, expiry_time, redirect_url, api_domain),
            )| OAuthToken {
                id,
                user_name,
                client_id,
                client_secret: client_secret.map(Secret::from),
                refresh_token: refresh_token.map(Secret::from),
                access_token: access_token.map(Secret::from),
                grant_token: grant_token.map(Secret::from),
                expiry_time,
                redirect_url,
                api_domain,
            },
        )
}

fn operation() -> impl Strategy<Value = Operation> {
    prop_oneof![
        6 => token().prop_map(Operation::Save),
        4 => token().prop_map(|mut t| { t.id = None; Operation::Find(t) }),
        1 => id().prop_map(Operation::Delete),
        1 => Just(Operation::GetTokens),
        1 => Just(Operation::DeleteAll),
        2 => id().prop_map(Operation::FindById),
        2 => (id(), pick(&["a1", "a2", "a3"]), pick(&["a1", "a2", "a3"]), -3i64..3).prop_map(
            |(id, expected, access_token, expiry_time)| Operation::CompareAndSet {
                id,
                expected,
                access_token: access_token.unwrap_or_else(|| "a4".to_owned()),
                expiry_time,
            }
        ),
        1 => (id(), pick(&["a1", "a2", "a3"]))
            .prop_map(|(id, expected)| Operation::DeleteIfUnchanged { id, expected }),
    ]
}

fn apply(store: &dyn TokenStore, operation: &Operation) -> Answer {
    let failed = |e: StoreError| Answer::Failed(e.to_string());
    match operation {
        Operation::Save(token) => {
            let mut token = token.clone();
            match store.save_token(&mut token) {
                Ok(()) => Answer::Saved(Ok(token.id)),
                Err(StoreError::NothingToSave) => Answer::Saved(Err("NothingToSave".into())),
                Err(e) => failed(e),
            }
        }
        Operation::Find(partial) => store.find_token(partial).map_or_else(failed, Answer::Token),
        Operation::Delete(id) => store
            .delete_token(id)
            .map_or_else(failed, |()| Answer::Done),
        Operation::GetTokens => store.get_tokens().map_or_else(failed, |tokens| {
            let mut rows: Vec<String> = tokens
                .iter()
                .map(|t| serde_json::to_string(t).expect("json"))
                .collect();
            rows.sort();
            Answer::Tokens(rows)
        }),
        Operation::DeleteAll => store.delete_tokens().map_or_else(failed, |()| Answer::Done),
        Operation::FindById(id) => store
            .find_token_by_id(id)
            .map_or_else(failed, Answer::Token),
        Operation::CompareAndSet {
            id,
            expected,
            access_token,
            expiry_time,
        } => store
            .compare_and_set_access_token(id, expected.as_deref(), access_token, *expiry_time)
            .map_or_else(failed, Answer::Won),
        Operation::DeleteIfUnchanged { id, expected } => store
            .delete_token_if_unchanged(id, expected.as_deref())
            .map_or_else(failed, Answer::Won),
    }
}

/// Applies `operations` to `store` and to a `ListStore`, step by step, and to finish compares every row.
fn behaves_like_the_list_store(
    store: &dyn TokenStore,
    operations: &[Operation],
) -> Result<(), TestCaseError> {
    let oracle = ListStore::new();
    for (step, operation) in operations.iter().enumerate() {
        let expected = apply(&oracle, operation);
        let actual = apply(store, operation);
        prop_assert_eq!(actual, expected, "step {}: {:?}", step, operation);
    }
    prop_assert_eq!(
        apply(store, &Operation::GetTokens),
        apply(&oracle, &Operation::GetTokens)
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn sqlite_file_store_behaves_like_the_list_store(operations in prop::collection::vec(operation(), 1..40)) {
        let store = in_temp_dir(|dir| SqliteStore::open(dir.join("zohooauth.db")));
        behaves_like_the_list_store(&store, &operations)?;
    }

    #[test]
    fn sqlite_memory_store_behaves_like_the_list_store(operations in prop::collection::vec(operation(), 1..40)) {
        let store = SqliteStore::in_memory().expect("in memory");
        behaves_like_the_list_store(&store, &operations)?;
    }

    #[test]
    fn file_store_behaves_like_the_list_store(operations in prop::collection::vec(operation(), 1..40)) {
        let store = in_temp_dir(|dir| FileStore::open(dir.join("tokens.csv")));
        behaves_like_the_list_store(&store, &operations)?;
    }
}
