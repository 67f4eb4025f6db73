//! The stores' test binary: the conformance kit on every store, the model-based property test, compatibility
//! with the SDK's CSV and with the database of Zoho's Kaizen #192 sample store `CustomStoreSQLite`
//! (<https://help.zoho.com/portal/en/community/topic/kaizen-192-implementing-custom-token-persistence-in-python-sdk>),
//! and the `tokens` command end to end.

mod cli;
mod compat;
mod conformance;
mod database_stores;
mod databases;
mod encryption;
mod errors;
mod fast_reads;
mod health;
mod model;
mod processes;
mod python_sdk;
mod sign_in_tables;
mod sqlite_files;
mod zoho_sdk;
