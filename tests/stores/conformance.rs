//! The conformance kit, one line per store: exactly what a developer writes for a store of their own.

use zylker_portal::tokens::conformance::in_temp_dir;
use zylker_portal::tokens::{FileStore, ListStore, SqliteStore};

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
