//! The portal end to end: the real app and the real sandbox on random ports, over HTTP (and one headless
//! browser). One binary, so the log capture and the build are shared.

mod admin;
mod browser;
mod callback;
mod config;
mod crashes;
mod edit;
// The database harness of the stores' tests: a database of a test's own on the local servers, dropped after.
#[allow(dead_code)]
#[path = "../stores/databases.rs"]
mod databases;
mod deep_links;
// The Zoho Python SDK of the stores' tests, here as one more member of a fleet.
mod edges;
mod fair_gate;
mod fleet;
mod helpers;
mod limits;
mod login;
mod logs;
mod metrics;
mod outage;
mod paging;
mod private_postgres;
mod readme_fleet;
mod records;
mod refresh;
mod rotation;
mod search;
mod security;
mod serve;
mod sign_ins;
mod sign_ins_end;
mod sqlite_file;
#[path = "../stores/zoho_sdk.rs"]
mod zoho_sdk;
