//! The sandbox's own tests: every rule of Zoho Accounts and CRM v8 it plays, driven over real HTTP with a
//! plain client.

mod consent_page;
mod control_surface;
mod crm_identity;
mod crm_metadata;
mod crm_records;
mod crm_search;
mod crm_update;
mod cross_site;
mod lifecycle;
mod limits;
mod persistence;
mod revocation;
mod support;
mod token_endpoint;
