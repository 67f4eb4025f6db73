//! Token encryption from the command line: `token-key`, and the `tokens` commands with a keyring (`rekey`,
//! `decrypt`, `copy` encrypting on the way), on real store files and a test database.

use std::path::Path;

use zylker_portal::tokens::{EncryptedStore, Keyring, SqliteStore, TokenStore, exposed};

use crate::cli::{by_id, database_with_two_users, run, stderr, stdout};
use crate::databases::TestDatabase;

/// A new key pair, as an operator makes one.
fn token_key() -> String {
    let output = run(&["token-key"], None);
    assert!(output.status.success(), "{}", stderr(&output));
    stdout(&output).trim().to_owned()
}

/// The key id of a `KID:KEY` pair.
fn kid(pair: &str) -> &str {
    pair.split_once(':').map_or(pair, |(kid, _)| kid)
}

/// Every non-empty secret of every row, as stored.
fn stored_secrets(store: &dyn TokenStore) -> Vec<String> {
    store
        .get_tokens()
        .expect("rows")
        .iter()
        .flat_map(|t| {
            [
                &t.client_secret,
                &t.refresh_token,
                &t.access_token,
                &t.grant_token,
            ]
        })
        .filter_map(|value| exposed(value).map(str::to_owned))
        .filter(|value| !value.is_empty())
        .collect()
}

fn sqlite(path: &Path) -> SqliteStore {
    SqliteStore::open(path).expect("open")
}

#[test]
fn token_key_prints_a_new_pair_that_parses_as_a_keyring() {
    let (a, b) = (token_key(), token_key());
    assert_ne!(a, b, "every pair is new");
    a.parse::<Keyring>().expect("a pair is a keyring");
    let (kid, key) = a.split_once(':').expect("KID:KEY");
    assert!(kid.len() <= 16, "{kid}");
    assert_eq!(key.len(), 64, "32 bytes in hex");
}

#[test]
fn rekey_encrypts_a_plaintext_store_then_moves_it_to_a_new_first_key_and_decrypt_writes_it_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, spec) = database_with_two_users(dir.path());
    let plain = by_id(&sqlite(&path));
    let (a, b) = (token_key(), token_key());

    let output = run(
        &[
            "tokens",
            "rekey",
            "--store",
            &spec,
            "--token-encryption-keys",
            &a,
        ],
        None,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("re-encrypted 2 of 2 tokens"),
        "{}",
        stdout(&output)
    );
    let prefix_a = format!("enc:v1:{}:", kid(&a));
    assert!(
        stored_secrets(&sqlite(&path))
            .iter()
            .all(|v| v.starts_with(&prefix_a))
    );

    // Run again: nothing left to do.
    let output = run(
        &[
            "tokens",
            "rekey",
            "--store",
            &spec,
            "--token-encryption-keys",
            &a,
        ],
        None,
    );
    assert!(
        stdout(&output).contains("re-encrypted 0 of 2 tokens"),
        "{}",
        stdout(&output)
    );

    // B first: rekey moves every row to B, after which A alone cannot read them and B alone can.
    let both = format!("{b},{a}");
    let output = run(
        &[
            "tokens",
            "rekey",
            "--store",
            &spec,
            "--token-encryption-keys",
            &both,
        ],
        None,
    );
    assert!(
        stdout(&output).contains("re-encrypted 2 of 2 tokens"),
        "{}",
        stdout(&output)
    );
    let prefix_b = format!("enc:v1:{}:", kid(&b));
    assert!(
        stored_secrets(&sqlite(&path))
            .iter()
            .all(|v| v.starts_with(&prefix_b))
    );
    let output = run(
        &[
            "tokens",
            "list",
            "--store",
            &spec,
            "--token-encryption-keys",
            &a,
        ],
        None,
    );
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains(kid(&b)),
        "the error names the missing key: {}",
        stderr(&output)
    );
    let only_b: Keyring = b.parse().expect("keyring");
    let store = EncryptedStore::new(sqlite(&path), only_b);
    assert_eq!(by_id(&store), plain, "every field as it was");

    // The way out: refused without --yes, then every row in plaintext again.
    let output = run(
        &[
            "tokens",
            "decrypt",
            "--store",
            &spec,
            "--token-encryption-keys",
            &b,
        ],
        None,
    );
    assert!(!output.status.success());
    assert!(stderr(&output).contains("--yes"), "{}", stderr(&output));
    assert!(
        stored_secrets(&sqlite(&path))
            .iter()
            .all(|v| v.starts_with(&prefix_b))
    );
    let args = [
        "tokens",
        "decrypt",
        "--yes",
        "--store",
        &spec,
        "--token-encryption-keys",
        &b,
    ];
    let output = run(&args, None);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("decrypted 2 of 2 tokens"),
        "{}",
        stdout(&output)
    );
    assert_eq!(by_id(&sqlite(&path)), plain);
}

#[test]
fn rekey_and_decrypt_without_a_keyring_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, spec) = database_with_two_users(dir.path());
    for args in [
        &["tokens", "rekey", "--store", &spec][..],
        &["tokens", "decrypt", "--yes", "--store", &spec][..],
    ] {
        let output = run(args, None);
        assert!(!output.status.success(), "{args:?}");
        assert!(
            stderr(&output).contains("TOKEN_ENCRYPTION_KEYS"),
            "{}",
            stderr(&output)
        );
    }
    assert!(
        stored_secrets(&sqlite(&path))
            .iter()
            .all(|v| !v.starts_with("enc:"))
    );
}

#[test]
fn a_bad_keyring_is_refused_without_printing_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, spec) = database_with_two_users(dir.path());
    let short_key = "ab".repeat(31);
    let keyring = format!("k1:{short_key}");
    let output = run(
        &[
            "tokens",
            "list",
            "--store",
            &spec,
            "--token-encryption-keys",
            &keyring,
        ],
        None,
    );
    assert!(!output.status.success());
    let text = stderr(&output);
    assert!(
        text.contains("\"k1\"") && !text.contains(&short_key),
        "{text}"
    );
}

#[test]
fn copy_from_a_plaintext_sqlite_file_into_postgres_with_a_keyring_encrypts_on_the_way() {
    let Some(database) = TestDatabase::postgres() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, from) = database_with_two_users(dir.path());
    let key = token_key();
    let to = database.spec();
    let args = [
        "tokens",
        "copy",
        "--from",
        &from,
        "--to",
        &to,
        "--token-encryption-keys",
        &key,
    ];
    let output = run(&args, None);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("2 added, 0 updated"),
        "{}",
        stdout(&output)
    );

    let prefix = format!("enc:v1:{}:", kid(&key));
    let raw = database.open();
    let secrets = stored_secrets(raw.as_ref());
    assert_eq!(secrets.len(), 8, "four secrets of two users");
    assert!(
        secrets.iter().all(|v| v.starts_with(&prefix)),
        "{} rows",
        secrets.len()
    );
    let keyring: Keyring = key.parse().expect("keyring");
    let decrypted = EncryptedStore::over(raw, keyring);
    assert_eq!(
        by_id(&decrypted),
        by_id(&sqlite(&path)),
        "every token, every field, under its id"
    );

    // And out of the database into a CSV file: read with the keyring, written with its first key.
    let csv = dir.path().join("back.csv");
    let back = format!("file:{}", csv.display());
    let args = [
        "tokens",
        "copy",
        "--from",
        &to,
        "--to",
        &back,
        "--token-encryption-keys",
        &key,
    ];
    let output = run(&args, None);
    assert!(output.status.success(), "{}", stderr(&output));
    let written = zylker_portal::tokens::FileStore::open(&csv).expect("csv");
    assert!(
        stored_secrets(&written)
            .iter()
            .all(|v| v.starts_with(&prefix)),
        "written with the first key"
    );
    let keyring: Keyring = key.parse().expect("keyring");
    assert_eq!(
        by_id(&EncryptedStore::new(written, keyring)),
        by_id(&sqlite(&path))
    );
}
