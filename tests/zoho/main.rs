//! The Zoho clients and the token manager against the real embedded sandbox, over HTTP.

mod crm_client;
mod disconnect;
mod login;
mod racing_store;
mod refresh;
mod sharing;
mod support;
