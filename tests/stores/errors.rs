//! Bad files fail cleanly and stay as they were; files are private; secrets stay out of `Debug`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;
use zylker_portal::tokens::conformance::sample_token;
use zylker_portal::tokens::{FileStore, OAuthToken, SqliteStore, StoreError, TokenStore};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

fn assert_not_a_store<T: std::fmt::Debug>(result: Result<T, StoreError>) -> String {
    match result {
        Err(error @ StoreError::NotAStore { .. }) => error.to_string(),
        other => panic!("expected NotAStore, got {other:?}"),
    }
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn sqlite_store_refuses_a_file_that_is_not_a_database_and_leaves_it_byte_identical() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, content) in [
        (
            "notes.db",
            b"id,user_name\n1,priya\nthis is not a database at all\n".as_slice(),
        ),
        ("short.db", b"abc".as_slice()),
        (
            "corrupt.db",
            b"SQLite format 3\0 and then nothing that SQLite can read, just text......".as_slice(),
        ),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, content).expect("write");
        let error = SqliteStore::open(&path).expect_err(name);
        assert!(
            matches!(error, StoreError::NotAStore { .. }) || error.to_string().contains(name),
            "{name}: {error}"
        );
        assert_eq!(
            std::fs::read(&path).expect("read"),
            content,
            "{name} is untouched"
        );
    }
    assert_eq!(
        files_in(dir.path()),
        ["corrupt.db", "notes.db", "short.db"],
        "no -wal or -shm left behind"
    );
}

#[test]
fn sqlite_store_refuses_a_foreign_oauthtoken_table_and_leaves_the_file_byte_identical() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("other.db");
    {
        let conn = Connection::open(&path).expect("create");
        conn.execute_batch(
            "CREATE TABLE oauthtoken (id INTEGER PRIMARY KEY, token TEXT, owner TEXT);
             INSERT INTO oauthtoken (token, owner) VALUES ('t', 'someone');",
        )
        .expect("a foreign table");
    }
    let before = std::fs::read(&path).expect("read");
    let message = assert_not_a_store(SqliteStore::open(&path));
    assert!(
        message.contains("user_name"),
        "names the missing columns: {message}"
    );
    assert_eq!(
        std::fs::read(&path).expect("read"),
        before,
        "the file is untouched"
    );
    let journal: String = Connection::open(&path)
        .expect("raw")
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("journal mode");
    assert_eq!(journal, "delete", "not switched to WAL");
}

/// A database of another application: one table of its own, one row.
fn another_applications_database(path: &Path) {
    Connection::open(path)
        .expect("create")
        .execute_batch(
            "CREATE TABLE settings (key TEXT, value TEXT); INSERT INTO settings VALUES ('a', 'b');",
        )
        .expect("another table");
}

#[test]
fn sqlite_store_refuses_another_applications_database_and_leaves_it_byte_identical() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("app.db");
    another_applications_database(&path);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let before = std::fs::read(&path).expect("read");

    for result in [SqliteStore::open(&path), SqliteStore::open_existing(&path)] {
        let message = assert_not_a_store(result);
        assert!(
            message.contains("settings")
                && message.contains("no oauthtoken table")
                && message.contains("?create=1"),
            "says what it found and how to add the table on purpose: {message}"
        );
    }

    assert_eq!(std::fs::read(&path).expect("read"), before, "untouched");
    assert_eq!(files_in(dir.path()), ["app.db"], "no -wal or -shm");
    assert_eq!(mode(&path), 0o644, "not even its mode changed");
}

#[test]
fn sqlite_store_adds_its_table_to_another_database_only_when_asked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("app.db");
    another_applications_database(&path);

    let store = SqliteStore::open_beside_other_tables(&path).expect("open");
    store
        .save_token(&mut sample_token("priya.raman@zylker.com"))
        .expect("save");

    let value: String = Connection::open(&path)
        .expect("raw")
        .query_row("SELECT value FROM settings", [], |r| r.get(0))
        .expect("the other table survives");
    assert_eq!(value, "b");
    drop(store);
    SqliteStore::open(&path).expect("now it holds the token table: a store like any other");
}

#[test]
fn sqlite_store_takes_an_empty_file_or_a_database_with_no_tables() {
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").expect("an empty file");
    let no_tables = dir.path().join("no-tables.db");
    Connection::open(&no_tables)
        .expect("create")
        .execute_batch("PRAGMA user_version = 7; CREATE TABLE t (x); DROP TABLE t;")
        .expect("a database whose schema is empty");

    for path in [empty, no_tables] {
        let store = SqliteStore::open(&path).expect("open");
        store
            .save_token(&mut sample_token("priya.raman@zylker.com"))
            .expect("save");
    }
}

#[test]
fn stores_in_a_missing_folder_fail_clearly_and_create_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("no-such-folder");
    let sqlite = SqliteStore::open(missing.join("zohooauth.db"))
        .expect_err("sqlite")
        .to_string();
    let file = FileStore::open(missing.join("tokens.csv"))
        .expect_err("file")
        .to_string();
    for message in [sqlite, file] {
        assert!(
            message.contains("does not exist") && message.contains("no-such-folder"),
            "{message}"
        );
    }
    assert!(!missing.exists(), "no folder was created");
}

#[test]
fn opening_an_existing_store_refuses_a_missing_file_and_creates_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = SqliteStore::open_existing(dir.path().join("zohooauth.db"));
    let file = FileStore::open_existing(dir.path().join("tokens.csv"));

    assert!(
        matches!(sqlite, Err(StoreError::Missing { .. })),
        "{sqlite:?}"
    );
    assert!(matches!(file, Err(StoreError::Missing { .. })), "{file:?}");
    assert!(
        files_in(dir.path()).is_empty(),
        "{:?}",
        files_in(dir.path())
    );
}

#[test]
fn opening_an_existing_store_reads_what_the_store_wrote() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (sqlite_path, csv_path) = (dir.path().join("zohooauth.db"), dir.path().join("t.csv"));
    let mut token = sample_token("o'brien@zylker.com");
    SqliteStore::open(&sqlite_path)
        .expect("sqlite")
        .save_token(&mut token.clone())
        .expect("save");
    FileStore::open(&csv_path)
        .expect("file")
        .save_token(&mut token)
        .expect("save");

    let stores: [Box<dyn TokenStore>; 2] = [
        Box::new(SqliteStore::open_existing(&sqlite_path).expect("sqlite")),
        Box::new(FileStore::open_existing(&csv_path).expect("file")),
    ];

    for store in stores {
        let tokens = store.get_tokens().expect("tokens");
        assert_eq!(tokens.len(), 1);
        assert_eq!(tokens[0].user_name.as_deref(), Some("o'brien@zylker.com"));
    }
    // The checks of a file that is there are open's: a CSV file is not a SQLite store.
    assert_not_a_store(SqliteStore::open_existing(&csv_path));
}

#[test]
fn sqlite_store_reports_a_locked_database_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("locked.db");
    let holder = Connection::open(&path).expect("create");
    holder
        .execute_batch(
            "CREATE TABLE settings (key TEXT); BEGIN EXCLUSIVE; INSERT INTO settings VALUES ('x');",
        )
        .expect("hold an exclusive lock");
    let error =
        SqliteStore::open_with_busy_timeout(&path, Duration::from_millis(100)).expect_err("locked");
    assert!(error.to_string().contains("locked"), "{error}");
    holder.execute_batch("ROLLBACK").expect("release");
    let tables: i64 = holder
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name = 'oauthtoken'",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(tables, 0, "nothing was written while locked");
    drop(holder);
    SqliteStore::open_beside_other_tables(&path).expect("opens once released");
}

#[test]
fn sqlite_store_reports_a_write_lock_held_by_another_process_as_locked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("busy.db");
    let store =
        SqliteStore::open_with_busy_timeout(&path, Duration::from_millis(100)).expect("open");
    let mut alice = sample_token("alice@zylker.com");
    store.save_token(&mut alice).expect("save");
    let holder = Connection::open(&path).expect("raw");
    holder
        .execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");

    let mut changed = alice.clone();
    changed.access_token = Some("1000.access.blocked".into());
    let error = store
        .save_token(&mut changed)
        .expect_err("blocked")
        .to_string();
    assert!(error.contains("locked"), "{error}");
    assert_eq!(
        store.find_token_by_id("1").expect("readers still read"),
        Some(alice.clone())
    );

    holder.execute_batch("COMMIT").expect("release");
    store
        .save_token(&mut changed)
        .expect("writes once released");
}

#[test]
fn file_store_refuses_a_foreign_file_and_leaves_it_byte_identical() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, content) in [
        ("contacts.csv", b"name,email\r\npriya,priya@zylker.com\r\n".as_slice()),
        ("binary.csv", b"\xff\xfe\x00\x01SQLite format 3\0\x00\x00".as_slice()),
        (
            "too_wide.csv",
            b"id,user_name,client_id,client_secret,refresh_token,access_token,grant_token,expiry_time,redirect_uri,api_domain\n1,a,b,c,d,e,f,g,h,i,j,k\n"
                .as_slice(),
        ),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, content).expect("write");
        assert_not_a_store(FileStore::open(&path));
        assert_eq!(std::fs::read(&path).expect("read"), content, "{name} is untouched");
    }
}

#[test]
fn sqlite_files_are_created_private() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("zohooauth.db");
    let store = SqliteStore::open(&path).expect("open");
    store
        .save_token(&mut sample_token("priya.raman@zylker.com"))
        .expect("save");
    assert_eq!(mode(&path), 0o600);
    let wal = dir.path().join("zohooauth.db-wal");
    assert!(
        wal.exists(),
        "WAL mode keeps a -wal file beside the database"
    );
    assert_eq!(mode(&wal), 0o600, "the WAL holds tokens too");
}

#[test]
fn an_existing_sqlite_store_others_can_read_is_tightened_at_open_with_its_wal_and_shm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("zohooauth.db");
    let wal = dir.path().join("zohooauth.db-wal");
    let shm = dir.path().join("zohooauth.db-shm");
    let world_readable = |file: &Path| {
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).expect("chmod")
    };

    // A store left open by another process: its -wal and -shm are there, all three 0644.
    let other = SqliteStore::open(&path).expect("open");
    other
        .save_token(&mut sample_token("priya.raman@zylker.com"))
        .expect("save");
    for file in [&path, &wal, &shm] {
        world_readable(file);
    }
    let store = SqliteStore::open(&path).expect("open");
    for file in [&path, &wal, &shm] {
        assert_eq!(mode(file), 0o600, "{} tightened", file.display());
    }
    drop((store, other));

    // A database the seed's Python wrote (the seed: `CustomStoreSQLite`, the sample store of Zoho's Kaizen #192
    // article, "Custom token persistence"; rollback journal, 0644): its new -wal and -shm are private too.
    let seed = dir.path().join("seed.db");
    crate::compat::seed_database(&seed);
    world_readable(&seed);
    let store = SqliteStore::open(&seed).expect("open");
    store
        .save_token(&mut sample_token("arjun.mehta@zylker.com"))
        .expect("save");
    for suffix in ["", "-wal", "-shm"] {
        let file = dir.path().join(format!("seed.db{suffix}"));
        assert_eq!(mode(&file), 0o600, "{} private", file.display());
    }
}

#[test]
fn csv_files_are_created_private_and_stay_private() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tokens.csv");
    let store = FileStore::open(&path).expect("open");
    assert_eq!(mode(&path), 0o600, "created private");
    store
        .save_token(&mut sample_token("priya.raman@zylker.com"))
        .expect("save");
    assert_eq!(mode(&path), 0o600, "rewritten private");

    let shared = dir.path().join("sdk.csv");
    std::fs::write(&shared, "id,user_name,client_id,client_secret,refresh_token,access_token,grant_token,expiry_time,redirect_uri,api_domain\r\n").expect("write");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    FileStore::open(&shared).expect("open");
    assert_eq!(
        mode(&shared),
        0o600,
        "a file the SDK left readable is tightened at open, before any write"
    );
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    FileStore::open_existing(&shared).expect("open");
    assert_eq!(mode(&shared), 0o600, "and by the `tokens` commands' open");
}

#[test]
fn debug_output_of_a_token_redacts_every_secret() {
    let token = OAuthToken {
        id: Some("7".into()),
        user_name: Some("priya.raman@zylker.com".into()),
        client_id: Some("1000.CLIENTID".into()),
        client_secret: Some("SECRET-client-secret".into()),
        refresh_token: Some("SECRET-refresh".into()),
        access_token: Some("SECRET-access".into()),
        grant_token: Some("SECRET-grant".into()),
        expiry_time: Some(1_700_000_000_000),
        redirect_url: Some("http://localhost/cb".into()),
        api_domain: Some("https://www.zohoapis.com".into()),
    };
    for debug in [
        format!("{token:?}"),
        format!("{token:#?}"),
        format!("{:?}", Some(&token)),
    ] {
        assert!(!debug.contains("SECRET"), "a secret leaked: {debug}");
        assert!(
            debug.contains("priya.raman@zylker.com") && debug.contains("REDACTED"),
            "{debug}"
        );
    }
}
