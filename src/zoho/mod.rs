//! Talking to Zoho: the Accounts client (OAuth 2.0), the CRM v8 client, the gate that keeps CRM calls within
//! Zoho's concurrency cap, and the data-centre table that says which hosts are Zoho's.

pub mod accounts;
pub mod crm;
pub mod datacenter;
pub mod limits;

pub use accounts::{
    AccountsClient, AccountsError, ClientCredentials, DEFAULT_SCOPE, TokenResponse,
};
pub use crm::{CrmAuth, CrmClient, CrmError};
pub use datacenter::ZohoHosts;
pub use limits::{CallKind, CrmGate, CrmLimits, GateError, Lane, OrgKey};
