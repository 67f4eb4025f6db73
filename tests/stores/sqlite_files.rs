//! The SQLite files among other programs: however the portal's code opens a store's file again, this process
//! keeps the locks its connections hold on it, and the `-wal` goes back to its usual size after a burst.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rusqlite::Connection;
use zylker_portal::tokens::conformance::sample_token;
use zylker_portal::tokens::{
    JOURNAL_SIZE_LIMIT, SignInRecord, SignInStore, SqliteSignIns, SqliteStore, StoreSpec,
    TokenStore, open_existing_store, open_portal_stores, sign_ins_file_beside,
};

/// Whether this process holds a POSIX lock on the file at `path`, as the kernel lists them in `/proc/locks`:
/// `ID: POSIX ADVISORY READ|WRITE PID MAJOR:MINOR:INODE START END`, the device numbers in hex. A SQLite
/// connection in WAL mode holds a read lock on its database file for as long as it is open.
fn this_process_locks(path: &Path) -> bool {
    let metadata = std::fs::metadata(path).expect("stat");
    let dev = metadata.dev();
    // glibc's encoding of major and minor in a dev_t.
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    let file = format!("{major:02x}:{minor:02x}:{}", metadata.ino());
    let pid = std::process::id().to_string();
    std::fs::read_to_string("/proc/locks")
        .expect("/proc/locks")
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .any(|fields| {
            fields.get(1) == Some(&"POSIX")
                && fields.get(4) == Some(&pid.as_str())
                && fields.get(5) == Some(&file.as_str())
        })
}

/// A SQLite store at `path` holding one token: its pooled connection has read and written the file.
fn store_with_a_token(path: &Path) -> SqliteStore {
    let store = SqliteStore::open(path).expect("open");
    store
        .save_token(&mut sample_token("priya.raman@zylker.com"))
        .expect("save");
    store
}

fn spec_of(kind: &str, path: &Path) -> StoreSpec {
    format!("{kind}:{}", path.display())
        .parse()
        .expect("a store spec")
}

#[test]
fn opening_a_sqlite_store_again_in_the_same_process_keeps_the_lock_on_its_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("zohooauth.db");
    let store = store_with_a_token(&path);
    assert!(
        this_process_locks(&path),
        "an open connection in WAL mode holds its read lock on the file"
    );

    // Each way `serve`, the `tokens` commands and a second portal in one process open the same file.
    let sign_ins = SqliteSignIns::open(&path, false).expect("the sign-in tables");
    assert!(
        this_process_locks(&path),
        "the sign-in tables' open dropped the token store's lock"
    );
    let again = SqliteStore::open(&path).expect("open again");
    assert!(this_process_locks(&path), "a second open dropped the lock");
    let existing = open_existing_store(&spec_of("sqlite", &path)).expect("open existing");
    assert!(this_process_locks(&path), "open_existing dropped the lock");
    let portal = open_portal_stores(&spec_of("sqlite", &path), 0).expect("a portal's stores");
    assert!(
        this_process_locks(&path),
        "opening a portal's stores dropped the lock"
    );

    assert_eq!(existing.get_tokens().expect("list").len(), 1);
    drop((sign_ins, again, existing, portal, store));
}

#[test]
fn opening_a_csv_stores_sign_in_file_again_keeps_the_lock_on_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("tokens.csv");
    let spec = spec_of("file", &csv);
    let beside = sign_ins_file_beside(&csv);
    let first = SqliteSignIns::open(&beside, true).expect("the sign-in file");
    first
        .record_sign_in(&SignInRecord {
            key: "a-digest".into(),
            user_name: "priya.raman@zylker.com:60032191920".into(),
            token_id: "1".into(),
            expires_at: i64::MAX,
        })
        .expect("record");
    assert!(this_process_locks(&beside), "the sign-in file is open");

    let portal = open_portal_stores(&spec, 0).expect("a portal's stores");

    assert!(
        this_process_locks(&beside),
        "opening the CSV store's sign-ins again dropped the lock"
    );
    assert!(
        first
            .sign_in_is_live("a-digest", "priya.raman@zylker.com:60032191920", "1", 0)
            .expect("read")
    );
    drop(portal);
}

#[test]
fn a_file_that_is_no_database_is_refused_without_dropping_the_lock_of_an_open_store_on_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("zohooauth.db");
    let _open = store_with_a_token(&path);
    let notes = dir.path().join("notes.db");
    std::fs::write(&notes, "not a database").expect("write");

    let refused = SqliteSignIns::open(&notes, false);

    assert!(refused.is_err(), "a text file was taken for sign-ins");
    assert_eq!(
        std::fs::read(&notes).expect("read"),
        b"not a database",
        "untouched"
    );
    assert!(this_process_locks(&path));
}

/// The size of the `-wal` beside `path`.
fn wal_size(path: &Path) -> u64 {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0)
}

#[test]
fn the_wal_goes_back_to_the_journal_size_limit_after_a_burst_and_a_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("zohooauth.db");
    let store = SqliteStore::open(&path).expect("open");
    let limit = u64::try_from(JOURNAL_SIZE_LIMIT).expect("positive");
    // Another program reading through the burst (the SDK, a backup) keeps the log from starting over, as a
    // steady stream of readers does in production: the log grows past the limit.
    let reader = Connection::open(&path).expect("a reader");
    reader.execute_batch("BEGIN").expect("begin");
    let _: i64 = reader
        .query_row("SELECT count(*) FROM oauthtoken", [], |row| row.get(0))
        .expect("read");
    let mut users = 0;
    while wal_size(&path) <= 3 * limit {
        assert!(
            users < 100_000,
            "the log never grew past three times the limit"
        );
        let mut token = sample_token(&format!("user{users}@zylker.com"));
        token.access_token = Some("a".repeat(2_000).into());
        store.save_token(&mut token).expect("save");
        users += 1;
    }
    let grown = wal_size(&path);

    reader.execute_batch("COMMIT").expect("end the read");
    let (busy, _, _): (i64, i64, i64) = reader
        .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .expect("checkpoint");
    assert_eq!(busy, 0, "the checkpoint ran to its end");
    // The first write after a complete checkpoint starts the log over, and its commit cuts the file back.
    store
        .save_token(&mut sample_token("after.the.burst@zylker.com"))
        .expect("save");

    let after = wal_size(&path);
    eprintln!("{users} tokens written: the -wal grew to {grown} bytes, then was cut to {after}");
    assert!(
        after <= limit,
        "the -wal stayed at {after} bytes after the checkpoint (limit {limit}, grown to {grown})"
    );
    assert_eq!(
        store.get_tokens().expect("list").len(),
        users + 1,
        "nothing lost"
    );
}
