//! Zylker Academy's "Login with Zoho" portal, and a reference implementation of the pattern.
//!
//! A person logs in through Zoho's OAuth 2.0 authorization-code flow; the tokens are persisted through a
//! pluggable [`tokens::TokenStore`] and refreshed by the [`tokens::TokenManager`] before they expire; the pages
//! show Zoho CRM v8 records. With no Zoho account at hand, the embedded [`sandbox`] plays Zoho over HTTP.
//!
//! Data flows one way: route -> token manager -> store / Zoho client -> template.

pub mod app;
pub mod cli;
pub mod private_file;
pub mod routes;
pub mod sandbox;
pub mod secret;
pub mod state;
pub mod telemetry;
pub mod tokens;
pub mod user_crm;
pub mod zoho;
