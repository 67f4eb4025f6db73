//! The stores' test binary: the conformance kit on every store, the model-based property test, the seed
//! database and SDK CSV compatibility tests, and the `tokens` command end to end.

mod cli;
mod compat;
mod conformance;
mod database_stores;
mod databases;
mod errors;
mod fast_reads;
mod model;
mod processes;
