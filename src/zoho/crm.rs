//! The Zoho CRM v8 client: the calls the portal makes, and Zoho's errors classified.

use std::time::Duration;

use serde_json::{Map, Value};
use url::Url;

/// One CRM record: field API names to values, as Zoho sends them (ids are strings of digits).
pub type Record = Map<String, Value>;

/// Whom a CRM call is made for: the user's API domain and a valid access token.
#[derive(Clone, Copy)]
pub struct CrmAuth<'a> {
    pub api_domain: &'a Url,
    pub access_token: &'a str,
}

/// `{name, id}`, as Zoho nests owners, roles and profiles.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NamedRef {
    pub name: String,
    pub id: String,
}

/// `users?type=CurrentUser`, the fields the portal uses.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct CrmUser {
    pub id: String,
    pub email: String,
    pub full_name: Option<String>,
    pub role: Option<NamedRef>,
    pub profile: Option<NamedRef>,
    pub zuid: Option<String>,
}

/// `org`, the fields the portal uses.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct CrmOrg {
    pub id: String,
    pub company_name: Option<String>,
}

/// One entry of `settings/modules`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct CrmModule {
    pub api_name: String,
    pub module_name: Option<String>,
    pub singular_label: Option<String>,
    pub plural_label: Option<String>,
    #[serde(default)]
    pub api_supported: bool,
    #[serde(default)]
    pub creatable: bool,
}

/// One entry of `settings/fields?module=`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct CrmField {
    pub api_name: String,
    pub field_label: Option<String>,
    pub display_label: Option<String>,
    pub data_type: Option<String>,
}

/// A page of `GET /crm/v8/{module}`; a 204 is an empty page.
#[derive(Debug, Clone, Default)]
pub struct RecordPage {
    pub records: Vec<Record>,
    pub page: u32,
    pub per_page: u32,
    pub more_records: bool,
}

/// Zoho's answer for one record of a `POST /crm/v8/{module}`.
#[derive(Debug, Clone, PartialEq)]
pub enum CreateResult {
    Created {
        id: String,
    },
    /// `code` such as `MANDATORY_NOT_FOUND` or `INVALID_DATA`; `field` is `details.api_name` when Zoho names one.
    Failed {
        code: String,
        message: String,
        field: Option<String>,
    },
}

/// How a CRM call failed, classified by what the portal must do about it.
#[derive(Debug, thiserror::Error)]
pub enum CrmError {
    /// 401 `INVALID_TOKEN` or `AUTHENTICATION_FAILURE`: refresh once and retry once.
    #[error("Zoho CRM rejected the access token ({0})")]
    InvalidToken(String),
    /// 401 `OAUTH_SCOPE_MISMATCH`: the login did not grant this; log in again.
    #[error("the Zoho login does not grant access to this")]
    ScopeMismatch,
    /// 403 `NO_PERMISSION`: the user's CRM profile lacks the module.
    #[error("your Zoho CRM profile has no permission for this")]
    NoPermission,
    /// 400 `INVALID_MODULE`, or an id that does not exist.
    #[error("no such module or record in Zoho CRM")]
    NotFound,
    /// 429 `TOO_MANY_REQUESTS`.
    #[error("Zoho CRM is throttling requests")]
    RateLimited,
    /// 5xx.
    #[error("Zoho CRM failed (HTTP {0})")]
    Server(u16),
    #[error("Zoho CRM did not answer in time")]
    Timeout,
    #[error("Zoho CRM could not be reached")]
    Unreachable(#[source] reqwest::Error),
    /// Any other error envelope or an unreadable answer.
    #[error("Zoho CRM error {code} (HTTP {status}): {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
}

/// Makes CRM v8 calls with `Authorization: Zoho-oauthtoken …`.
#[derive(Clone)]
pub struct CrmClient {
    http: reqwest::Client,
}

impl CrmClient {
    pub fn new(_timeout: Duration) -> Result<Self, reqwest::Error> {
        todo!("zoho helper")
    }

    pub async fn current_user(&self, _auth: CrmAuth<'_>) -> Result<CrmUser, CrmError> {
        let _ = &self.http;
        todo!("zoho helper")
    }

    pub async fn org(&self, _auth: CrmAuth<'_>) -> Result<CrmOrg, CrmError> {
        todo!("zoho helper")
    }

    pub async fn modules(&self, _auth: CrmAuth<'_>) -> Result<Vec<CrmModule>, CrmError> {
        todo!("zoho helper")
    }

    pub async fn fields(
        &self,
        _auth: CrmAuth<'_>,
        _module: &str,
    ) -> Result<Vec<CrmField>, CrmError> {
        todo!("zoho helper")
    }

    pub async fn records(
        &self,
        _auth: CrmAuth<'_>,
        _module: &str,
        _fields: &[&str],
        _page: u32,
        _per_page: u32,
    ) -> Result<RecordPage, CrmError> {
        todo!("zoho helper")
    }

    /// `Ok(None)` when the record does not exist.
    pub async fn record(
        &self,
        _auth: CrmAuth<'_>,
        _module: &str,
        _id: &str,
    ) -> Result<Option<Record>, CrmError> {
        todo!("zoho helper")
    }

    pub async fn create_records(
        &self,
        _auth: CrmAuth<'_>,
        _module: &str,
        _records: &[Record],
    ) -> Result<Vec<CreateResult>, CrmError> {
        todo!("zoho helper")
    }
}
