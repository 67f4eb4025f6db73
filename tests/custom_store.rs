//! The conformance kit on the custom store of `examples/custom_store.rs`, the same source file: what a
//! developer writing a store outside this crate runs.

#[path = "../examples/custom_store.rs"]
#[allow(dead_code)] // the example's `main`, which serves the portal, is not run here
mod custom_store;

use custom_store::JsonFileStore;
use zylker_portal::tokens::conformance::in_temp_dir;

zylker_portal::token_store_conformance!(json_file_store, || {
    in_temp_dir(|dir| JsonFileStore::open(dir.join("tokens.json")))
});
