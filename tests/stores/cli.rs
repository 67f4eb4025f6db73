//! The `tokens` command end to end: the built binary, run on real store files and test databases.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use zylker_portal::secret::Secret;
use zylker_portal::tokens::conformance::sample_token;
use zylker_portal::tokens::{FileStore, OAuthToken, SqliteStore, TokenStore};

use crate::databases::TestDatabase;

const ACCESS: &str = "1000.a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6.e7f8a9b0c1d2e3f4a5b6c7d8e9f0a1b2";

/// Runs `zylker-portal` with `args`, feeding `stdin` (closed at once when `None`).
pub fn run(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_zylker-portal"))
        .args(args)
        .env_remove("TOKEN_STORE")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run zylker-portal");
    let mut pipe = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        pipe.write_all(text.as_bytes()).expect("write stdin");
    }
    drop(pipe);
    child.wait_with_output().expect("wait")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A database holding Priya and Liam, Priya with a realistic access token.
pub fn database_with_two_users(dir: &Path) -> (PathBuf, String) {
    let path = dir.join("zohooauth.db");
    let store = SqliteStore::open(&path).expect("open");
    let mut priya = sample_token("priya.raman@zylker.com:60032191920");
    priya.access_token = Some(ACCESS.into());
    store.save_token(&mut priya).expect("save");
    store
        .save_token(&mut sample_token("liam.o'brien@zylker.com:60032191920"))
        .expect("save");
    drop(store);
    wait_for_the_last_connection_to_close(&path);
    let spec = format!("sqlite:{}", path.display());
    (path, spec)
}

/// Waits until the pool of a dropped store has closed its last connection: SQLite then checkpoints the log
/// into the file and deletes the log. Until then the file's bytes may still change (the pool's threads can
/// hold it a moment past the drop), and a "left as it was" comparison would race with that, not with the
/// code under test.
fn wait_for_the_last_connection_to_close(path: &Path) {
    let wal = PathBuf::from(format!("{}-wal", path.display()));
    for _ in 0..200 {
        if !wal.exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!(
        "{} is still there 10 s after the store was dropped",
        wal.display()
    );
}

fn user_names(path: &Path) -> Vec<String> {
    let store = SqliteStore::open(path).expect("open");
    let mut names: Vec<String> = store
        .get_tokens()
        .expect("get_tokens")
        .into_iter()
        .filter_map(|t| t.user_name)
        .collect();
    names.sort();
    names
}

#[test]
fn tokens_list_shows_a_table_with_secrets_masked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, spec) = database_with_two_users(dir.path());
    let output = run(&["tokens", "list", "--store", &spec], None);
    assert!(output.status.success(), "{}", stderr(&output));
    let table = stdout(&output);
    assert!(table.starts_with("ID"), "{table}");
    assert!(
        table.contains("priya.raman@zylker.com:60032191920")
            && table.contains("liam.o'brien@zylker.com")
    );
    assert!(
        table.contains("1000.a1…"),
        "masked as a short prefix: {table}"
    );
    assert!(
        !table.contains(ACCESS) && !table.contains("1000.refresh."),
        "no secret in the table: {table}"
    );
}

#[test]
fn tokens_list_json_has_the_ten_fields_masked_unless_revealed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, spec) = database_with_two_users(dir.path());

    let output = run(&["tokens", "--store", &spec, "list", "--json"], None);
    assert!(output.status.success(), "{}", stderr(&output));
    let rows: Vec<serde_json::Map<String, serde_json::Value>> =
        serde_json::from_slice(&output.stdout).expect("a JSON array of objects");
    assert_eq!(rows.len(), 2);
    let keys: Vec<&str> = rows[0].keys().map(String::as_str).collect();
    let mut expected = vec![
        "id",
        "user_name",
        "client_id",
        "client_secret",
        "refresh_token",
        "access_token",
        "grant_token",
        "expiry_time",
        "redirect_url",
        "api_domain",
    ];
    expected.sort();
    let mut sorted_keys = keys.clone();
    sorted_keys.sort();
    assert_eq!(sorted_keys, expected);
    assert_eq!(rows[0]["access_token"], "1000.a1…");
    for field in [
        "client_secret",
        "refresh_token",
        "access_token",
        "grant_token",
    ] {
        let value = rows[1][field].as_str().expect("a string");
        assert!(
            value.ends_with('…') && value.chars().count() <= 8,
            "{field} masked: {value}"
        );
    }
    assert_eq!(
        rows[0]["expiry_time"], 1_900_000_000_000_i64,
        "not a secret: shown"
    );

    let output = run(
        &["tokens", "--store", &spec, "list", "--json", "--reveal"],
        None,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let revealed: Vec<OAuthToken> = serde_json::from_slice(&output.stdout).expect("tokens");
    assert_eq!(
        revealed[0].access_token.as_ref().map(Secret::expose_secret),
        Some(ACCESS)
    );
}

#[test]
fn tokens_list_reads_token_store_from_the_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("tokens.csv");
    FileStore::open(&csv)
        .expect("open")
        .save_token(&mut sample_token("sofia.khan@zylker.com"))
        .expect("save");
    let output = Command::new(env!("CARGO_BIN_EXE_zylker-portal"))
        .args(["tokens", "list"])
        .env("TOKEN_STORE", format!("file:{}", csv.display()))
        .output()
        .expect("run");
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("sofia.khan@zylker.com"));
}

#[test]
fn tokens_on_a_store_in_memory_explains_that_it_lives_only_inside_a_running_portal() {
    for spec in ["list", "sqlite::memory:"] {
        for args in [
            vec!["tokens", "list"],
            vec!["tokens", "show", "1"],
            vec!["tokens", "delete-all", "--yes"],
        ] {
            let output = run(&[args.as_slice(), &["--store", spec]].concat(), None);

            assert!(!output.status.success(), "{spec} {args:?}");
            let message = stderr(&output);
            assert!(
                message.contains(&format!(
                    "the {spec} store lives only inside a running portal"
                )) && message.contains("sqlite:PATH"),
                "{spec} {args:?}: {message}"
            );
            assert_eq!(stdout(&output), "", "{spec} {args:?}: no empty listing");
        }
    }
}

#[test]
fn tokens_show_prints_one_token_masked_and_fails_for_an_unknown_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, spec) = database_with_two_users(dir.path());
    let output = run(&["tokens", "show", "1", "--store", &spec], None);
    assert!(output.status.success(), "{}", stderr(&output));
    let shown = stdout(&output);
    assert!(
        shown.contains("priya.raman@zylker.com:60032191920") && shown.contains("1000.a1…"),
        "{shown}"
    );
    assert!(!shown.contains(ACCESS), "{shown}");

    let output = run(&["tokens", "show", "1", "--reveal", "--store", &spec], None);
    assert!(output.status.success(), "{}", stderr(&output));
    let revealed = stdout(&output);
    assert!(
        revealed.contains(&format!("access_token   {ACCESS}")),
        "{revealed}"
    );

    for (flags, access) in [
        (vec!["--json"], "1000.a1…"),
        (vec!["--json", "--reveal"], ACCESS),
    ] {
        let output = run(
            &[&["tokens", "show", "1", "--store", &spec], flags.as_slice()].concat(),
            None,
        );
        assert!(output.status.success(), "{flags:?}: {}", stderr(&output));
        let token: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&output.stdout).expect("one JSON object");
        assert_eq!(token.len(), 10, "the ten fields: {token:?}");
        assert_eq!(token["user_name"], "priya.raman@zylker.com:60032191920");
        assert_eq!(token["access_token"], access, "{flags:?}");
    }

    let output = run(&["tokens", "show", "42", "--store", &spec], None);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("no token with id \"42\""),
        "{}",
        stderr(&output)
    );
}

#[test]
fn tokens_delete_removes_one_token_and_fails_for_an_unknown_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, spec) = database_with_two_users(dir.path());
    let output = run(&["tokens", "delete", "2", "--store", &spec], None);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("deleted token 2"));
    assert_eq!(user_names(&path), ["priya.raman@zylker.com:60032191920"]);

    let output = run(&["tokens", "delete", "2", "--store", &spec], None);
    assert!(
        !output.status.success(),
        "deleting a missing id is reported"
    );
    assert!(stderr(&output).contains("no token with id"));
}

#[test]
fn tokens_delete_all_without_yes_deletes_nothing_when_nobody_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, spec) = database_with_two_users(dir.path());
    for answer in [None, Some(""), Some("no\n"), Some("y es\n")] {
        let output = run(&["tokens", "delete-all", "--store", &spec], answer);
        assert!(
            !output.status.success(),
            "{answer:?}: not confirmed is not success"
        );
        assert!(
            stderr(&output).contains("nothing deleted"),
            "{answer:?}: {}",
            stderr(&output)
        );
        assert_eq!(user_names(&path).len(), 2, "{answer:?}: nothing deleted");
    }
}

#[test]
fn tokens_delete_all_deletes_when_confirmed_or_with_yes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, spec) = database_with_two_users(dir.path());
    let output = run(&["tokens", "delete-all", "--store", &spec], Some("yes\n"));
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains("Delete all 2 tokens"), "it asked");
    assert_eq!(user_names(&path).len(), 0);

    let (path, spec) = database_with_two_users(&dir.path().join("."));
    let output = run(&["tokens", "delete-all", "--yes", "--store", &spec], None);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "deleted 2 tokens\n");
    assert_eq!(user_names(&path).len(), 0);
}

#[test]
fn tokens_on_a_file_that_is_not_a_store_fails_clearly_and_leaves_it_as_it_was() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notes.txt");
    let content = b"these are my notes, not a database\n";
    std::fs::write(&path, content).expect("write");
    for spec in [
        format!("sqlite:{}", path.display()),
        format!("file:{}", path.display()),
    ] {
        for args in [
            vec!["tokens", "list"],
            vec!["tokens", "delete-all", "--yes"],
        ] {
            let output = run(
                &[args.as_slice(), &["--store", spec.as_str()]].concat(),
                None,
            );
            assert!(!output.status.success(), "{spec} {args:?}");
            let message = stderr(&output);
            assert!(
                message.contains("is not a token store"),
                "{spec}: {message}"
            );
            assert_eq!(
                std::fs::read(&path).expect("read"),
                content,
                "{spec}: untouched"
            );
        }
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).expect("ls").count(),
        1,
        "nothing created beside it"
    );
}

#[test]
fn tokens_in_a_missing_folder_or_with_a_bad_spec_fails_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = format!(
        "sqlite:{}",
        dir.path().join("nowhere/zohooauth.db").display()
    );
    let output = run(&["tokens", "list", "--store", &spec], None);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("does not exist"),
        "{}",
        stderr(&output)
    );
    assert!(!dir.path().join("nowhere").exists());

    let output = run(
        &["tokens", "list", "--store", "mongodb://localhost/tokens"],
        None,
    );
    assert!(!output.status.success());
    let message = stderr(&output);
    for form in [
        "sqlite:PATH",
        "sqlite::memory:",
        "list",
        "file:PATH",
        "postgres://",
        "mysql://",
    ] {
        assert!(message.contains(form), "{message}");
    }
}

#[test]
fn tokens_on_a_store_file_that_does_not_exist_fails_clearly_and_creates_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (kind, name) in [("sqlite", "typo.db"), ("file", "typo.csv")] {
        let path = dir.path().join(name);
        let spec = format!("{kind}:{}", path.display());
        for args in [
            vec!["tokens", "list"],
            vec!["tokens", "list", "--json"],
            vec!["tokens", "show", "1"],
            vec!["tokens", "delete", "1"],
            vec!["tokens", "delete-all"],
            vec!["tokens", "delete-all", "--yes"],
        ] {
            let output = run(
                &[args.as_slice(), &["--store", spec.as_str()]].concat(),
                Some("yes\n"),
            );
            assert!(!output.status.success(), "{spec} {args:?}");
            let message = stderr(&output);
            assert!(
                message.contains(&format!("no token store at {}", path.display())),
                "{spec} {args:?}: {message}"
            );
            assert!(
                stdout(&output).is_empty(),
                "{spec} {args:?}: {}",
                stdout(&output)
            );
            assert_eq!(
                std::fs::read_dir(dir.path()).expect("ls").count(),
                0,
                "{spec} {args:?}: nothing created"
            );
        }
    }
}

#[test]
fn tokens_on_a_locked_database_fails_clearly_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, spec) = database_with_two_users(dir.path());
    let holder = rusqlite::Connection::open(&path).expect("raw");
    holder
        .execute_batch("BEGIN EXCLUSIVE; UPDATE oauthtoken SET access_token = 'held'")
        .expect("hold the database");
    // `delete-all` must wait the store's busy timeout for the lock, then give up.
    let output = run(&["tokens", "delete-all", "--yes", "--store", &spec], None);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("locked"), "{}", stderr(&output));
    holder.execute_batch("ROLLBACK").expect("release");
    drop(holder);
    assert_eq!(user_names(&path).len(), 2, "nothing deleted");
}

/// Every token of `store`, by id.
pub fn by_id(store: &dyn TokenStore) -> Vec<OAuthToken> {
    let mut tokens = store.get_tokens().expect("get_tokens");
    tokens.sort_by(|a, b| a.id.cmp(&b.id));
    tokens
}

#[test]
fn tokens_copy_moves_a_sqlite_file_into_postgres_keeping_ids_and_upserting_by_user() {
    let Some(database) = TestDatabase::postgres() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, from) = database_with_two_users(dir.path());
    let to = database.spec();

    let output = run(&["tokens", "copy", "--from", &from, "--to", &to], None);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("2 added, 0 updated"),
        "{}",
        stdout(&output)
    );
    let sqlite = SqliteStore::open(&path).expect("open");
    let postgres = database.open();
    assert_eq!(
        by_id(postgres.as_ref()),
        by_id(&sqlite),
        "every token, every field, under its id"
    );

    // Priya refreshed and Arjun logged in on the old portal since: copying again updates and adds.
    let mut priya = sample_token("priya.raman@zylker.com:60032191920");
    priya.access_token = Some(Secret::from("1000.access.after-the-move"));
    sqlite.save_token(&mut priya).expect("save");
    sqlite
        .save_token(&mut sample_token("arjun.mehta@zylker.com:60032191920"))
        .expect("save");
    let output = run(&["tokens", "copy", "--from", &from, "--to", &to], None);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("1 added, 2 updated"),
        "{}",
        stdout(&output)
    );
    assert_eq!(by_id(postgres.as_ref()), by_id(&sqlite));
}

/// A SQLite file of ten users, the fifth with a NUL byte in its user name (PostgreSQL's text refuses it).
fn database_with_a_bad_row_among_ten(dir: &Path) -> String {
    let path = dir.join("ten.db");
    let store = SqliteStore::open(&path).expect("open");
    for n in 1..=10 {
        let user = if n == 5 {
            "broken\0user@zylker.com:60032191920".to_owned()
        } else {
            format!("user{n}@zylker.com:60032191920")
        };
        store.save_token(&mut sample_token(&user)).expect("save");
    }
    format!("sqlite:{}", path.display())
}

/// Copies the ten users of [`database_with_a_bad_row_among_ten`] into `to`, which refuses the NUL one, and
/// checks what `tokens copy` says and that `open_to` (the tokens `to` then holds) has the nine others.
fn copy_ten_with_one_refused(from: &str, to: &str, open_to: impl Fn() -> Vec<OAuthToken>) {
    let output = run(&["tokens", "copy", "--from", from, "--to", to], None);

    let (out, err) = (stdout(&output), stderr(&output));
    assert!(
        !output.status.success(),
        "a failed row fails the command: {out}{err}"
    );
    assert!(out.contains("copied 9 of 10 tokens, 1 failed"), "{out}");
    assert!(out.contains("9 added, 0 updated"), "{out}");
    let reports: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("cannot copy the token"))
        .collect();
    assert_eq!(reports.len(), 1, "{err}");
    assert!(
        reports[0].contains("cannot copy the token 5 of \"broken\\0user@zylker.com:60032191920\""),
        "the row is named by id and user name: {err}"
    );
    assert!(
        !err.contains("1000.") && !out.contains("1000."),
        "no token printed: {out}{err}"
    );
    let mut copied: Vec<String> = open_to().into_iter().filter_map(|t| t.user_name).collect();
    copied.sort();
    let mut expected: Vec<String> = (1..=10)
        .filter(|n| *n != 5)
        .map(|n| format!("user{n}@zylker.com:60032191920"))
        .collect();
    expected.sort();
    assert_eq!(copied, expected, "the nine others are copied");
}

#[test]
fn tokens_copy_into_postgres_reports_a_refused_row_and_copies_the_rest() {
    let Some(database) = TestDatabase::postgres() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let from = database_with_a_bad_row_among_ten(dir.path());

    copy_ten_with_one_refused(&from, &database.spec(), || {
        database.open().get_tokens().expect("get_tokens")
    });
}

#[test]
fn tokens_copy_into_sqlite_reports_a_refused_row_and_copies_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let from = database_with_a_bad_row_among_ten(dir.path());
    // SQLite takes a NUL in text; this file refuses it as PostgreSQL does, with a rule of its own (a trigger),
    // as a database with its own constraints would.
    let to_path = dir.path().join("strict.db");
    drop(SqliteStore::open(&to_path).expect("create"));
    rusqlite::Connection::open(&to_path)
        .expect("open")
        .execute_batch(
            "CREATE TRIGGER no_nul BEFORE INSERT ON oauthtoken \
             WHEN instr(CAST(NEW.user_name AS BLOB), x'00') > 0 \
             BEGIN SELECT RAISE(ABORT, 'a user name with a NUL byte'); END;",
        )
        .expect("the trigger");
    let to = format!("sqlite:{}", to_path.display());

    copy_ten_with_one_refused(&from, &to, || {
        SqliteStore::open(&to_path)
            .expect("open")
            .get_tokens()
            .expect("get_tokens")
    });
}

#[test]
fn tokens_copy_from_a_missing_store_fails_and_creates_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = format!("sqlite:{}", dir.path().join("typo.db").display());
    let to = format!("sqlite:{}", dir.path().join("new.db").display());
    let output = run(&["tokens", "copy", "--from", &missing, "--to", &to], None);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("does not exist"),
        "{}",
        stderr(&output)
    );
    assert!(!dir.path().join("typo.db").exists() && !dir.path().join("new.db").exists());
}

#[test]
fn tokens_copy_refuses_one_file_as_both_ends_and_leaves_it_as_it_was() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, spec) = database_with_two_users(dir.path());
    let before = std::fs::read(&path).expect("read");
    let relative = format!("sqlite:{}/./zohooauth.db", dir.path().display());
    let as_csv = format!("file:{}", path.display());

    for to in [&spec, &relative, &as_csv] {
        let output = run(&["tokens", "copy", "--from", &spec, "--to", to], None);

        assert!(!output.status.success(), "--to {to} was taken");
        assert!(
            stderr(&output).contains("name the same file"),
            "{}",
            stderr(&output)
        );
    }
    assert_eq!(
        std::fs::read(&path).expect("read"),
        before,
        "byte-identical"
    );
}

/// `list`, `show`, `delete` and `delete-all` on the database stores, through the binary.
fn tokens_commands_work_on(database: &TestDatabase) {
    let spec = database.spec();
    let store = database.open();
    let mut priya = sample_token("priya.raman@zylker.com:60032191920");
    priya.access_token = Some(ACCESS.into());
    store.save_token(&mut priya).expect("save");
    store
        .save_token(&mut sample_token("liam.o'brien@zylker.com:60032191920"))
        .expect("save");

    let output = run(&["tokens", "list", "--store", &spec], None);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("liam.o'brien@zylker.com"),
        "{}",
        stdout(&output)
    );
    assert!(stdout(&output).contains("1000.a1…") && !stdout(&output).contains(ACCESS));
    let output = run(&["tokens", "show", "1", "--store", &spec], None);
    assert!(
        stdout(&output).contains("priya.raman@zylker.com"),
        "{}",
        stderr(&output)
    );
    let output = run(&["tokens", "delete", "1", "--store", &spec], None);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(store.get_tokens().expect("list").len(), 1);
    let output = run(&["tokens", "delete-all", "--yes", "--store", &spec], None);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(store.get_tokens().expect("list"), vec![]);
}

#[test]
fn tokens_commands_work_on_postgres() {
    if let Some(database) = TestDatabase::postgres() {
        tokens_commands_work_on(&database);
    }
}

#[test]
fn tokens_commands_work_on_mysql() {
    if let Some(database) = TestDatabase::mysql() {
        tokens_commands_work_on(&database);
    }
}

/// A spec's password reaches neither an error about the spec nor `--help` (which shows variables' values).
#[test]
fn a_store_specs_password_is_never_printed() {
    let output = run(
        &[
            "tokens",
            "list",
            "--store",
            "postgres://portal:pw-secret@db/zohooauth?table=1x",
        ],
        None,
    );
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("not a table name"),
        "{}",
        stderr(&output)
    );
    assert!(
        !stderr(&output).contains("pw-secret"),
        "{}",
        stderr(&output)
    );

    for args in [&["tokens", "--help"][..], &["serve", "--help"][..]] {
        let output = Command::new(env!("CARGO_BIN_EXE_zylker-portal"))
            .args(args)
            .env("TOKEN_STORE", "mysql://portal:pw-secret@db/zohooauth")
            .output()
            .expect("run");
        assert!(output.status.success(), "{}", stderr(&output));
        assert!(
            stdout(&output).contains("TOKEN_STORE"),
            "{}",
            stdout(&output)
        );
        assert!(
            !stdout(&output).contains("pw-secret"),
            "{args:?}: {}",
            stdout(&output)
        );
    }
}
