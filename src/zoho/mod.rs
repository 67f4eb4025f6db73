//! Talking to Zoho: the Accounts client (OAuth 2.0), the CRM v8 client, and the data-centre table that says
//! which hosts are Zoho's.

pub mod accounts;
pub mod crm;
pub mod datacenter;

pub use accounts::{
    AccountsClient, AccountsError, ClientCredentials, DEFAULT_SCOPE, TokenResponse,
};
pub use crm::{CrmAuth, CrmClient, CrmError};
pub use datacenter::ZohoHosts;
