//! The conformance kit, one line per store: exactly what a developer writes for a store of their own.

use zylker_portal::tokens::conformance::in_temp_dir;
use zylker_portal::tokens::{EncryptedStore, FileStore, ListStore, SqliteStore};

use crate::databases::TestDatabase;

zylker_portal::token_store_conformance!(
    sqlite_file,
    || in_temp_dir(|dir| SqliteStore::open(dir.join("zohooauth.db"))),
    refresh_lease
);
zylker_portal::token_store_conformance!(sqlite_memory, SqliteStore::in_memory, refresh_lease);
zylker_portal::token_store_conformance!(list, ListStore::new);
zylker_portal::token_store_conformance!(file, || {
    in_temp_dir(|dir| FileStore::open(dir.join("tokens.csv")))
});
zylker_portal::token_store_conformance!(
    postgres,
    || TestDatabase::postgres().map(TestDatabase::into_store),
    refresh_lease
);
zylker_portal::token_store_conformance!(
    mysql,
    || TestDatabase::mysql().map(TestDatabase::into_store),
    refresh_lease
);

/// The keyring the encrypted stores below are tested with: two keys, so the first one writes.
fn test_keyring() -> zylker_portal::tokens::Keyring {
    format!("conformance:{},old:{}", "ab".repeat(32), "cd".repeat(32))
        .parse()
        .expect("a test keyring")
}

// Each built-in store, encrypted: the same kit, and the lease rules, which must reach the inner store's lease.
zylker_portal::token_store_conformance!(
    encrypted_sqlite_file,
    || EncryptedStore::new(
        in_temp_dir(|dir| SqliteStore::open(dir.join("zohooauth.db"))),
        test_keyring()
    ),
    refresh_lease
);
zylker_portal::token_store_conformance!(encrypted_file, || {
    EncryptedStore::new(
        in_temp_dir(|dir| FileStore::open(dir.join("tokens.csv"))),
        test_keyring(),
    )
});
zylker_portal::token_store_conformance!(encrypted_list, || EncryptedStore::new(
    ListStore::new(),
    test_keyring()
));
zylker_portal::token_store_conformance!(
    encrypted_postgres,
    || TestDatabase::postgres().map(|db| EncryptedStore::new(db.into_store(), test_keyring())),
    refresh_lease
);
zylker_portal::token_store_conformance!(
    encrypted_mysql,
    || TestDatabase::mysql().map(|db| EncryptedStore::new(db.into_store(), test_keyring())),
    refresh_lease
);
