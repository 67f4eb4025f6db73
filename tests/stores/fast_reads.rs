//! The read fast path (`find_token_by_id_without_waiting`): the stores that can answer at once do, and none of
//! them ever waits in it. The conformance kit checks that its answers agree with `find_token_by_id`.

use rusqlite::Connection;
use zylker_portal::tokens::conformance::sample_token;
use zylker_portal::tokens::{ListStore, SqliteStore, TokenStore};

fn saved_alice(store: &dyn TokenStore) -> zylker_portal::tokens::OAuthToken {
    let mut alice = sample_token("alice@zylker.com");
    store.save_token(&mut alice).expect("save");
    alice
}

#[test]
fn memory_list_and_sqlite_stores_answer_reads_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stores: Vec<(&str, Box<dyn TokenStore>)> = vec![
        ("list", Box::new(ListStore::new())),
        (
            "sqlite in memory",
            Box::new(SqliteStore::in_memory().expect("memory")),
        ),
        (
            "sqlite file",
            Box::new(SqliteStore::open(dir.path().join("tokens.db")).expect("file")),
        ),
    ];
    for (name, store) in stores {
        let alice = saved_alice(store.as_ref());
        let id = alice.id.clone().expect("id");
        let answer = store
            .find_token_by_id_without_waiting(&id)
            .unwrap_or_else(|| panic!("the {name} store gave way with nobody else using it"));
        assert_eq!(answer.expect("read"), Some(alice));
    }
}

#[test]
fn a_sqlite_read_without_waiting_is_not_held_up_by_a_writer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tokens.db");
    let store = SqliteStore::open(&path).expect("open");
    let alice = saved_alice(&store);
    let writer = Connection::open(&path).expect("raw");
    writer
        .execute_batch("BEGIN IMMEDIATE; UPDATE oauthtoken SET access_token = 'uncommitted';")
        .expect("hold the write lock");

    // WAL: readers see the last commit while someone writes.
    let answer = store
        .find_token_by_id_without_waiting("1")
        .expect("answers");
    assert_eq!(answer.expect("read"), Some(alice));
    writer.execute_batch("ROLLBACK").expect("release");
}
