//! Zoho CRM as one signed-in user sees it: the facade the routes call.
//!
//! Each method is one CRM call made through [`TokenManager::call`], which hands it a valid access token
//! (refreshing first when needed, and once more if CRM rejects the token). A failure comes back as a
//! [`CrmFailure`] that remembers the module it was about, so that a permission error can name it on the page.

use std::future::Future;

use crate::tokens::{AccessToken, TokenError, TokenManager, TokenOwner};
use crate::zoho::crm::{
    CreateResult, CrmField, CrmModule, CrmUser, ListParams, Record, RecordPage, UpdateResult,
};
use crate::zoho::{CallKind, CrmClient};

/// A CRM call that failed, and the module it was about (if it was about one).
#[derive(Debug, thiserror::Error)]
#[error("{source}")]
pub struct CrmFailure {
    #[source]
    pub source: TokenError,
    /// The module's API name, for a permission error's page.
    pub module: Option<String>,
}

impl CrmFailure {
    /// Whether Zoho refused the call's `page_token` (see [`crate::zoho::CrmError::is_page_token_refused`]).
    pub fn is_page_token_refused(&self) -> bool {
        matches!(&self.source, TokenError::Crm(error) if error.is_page_token_refused())
    }
}

/// Zoho CRM for one token owner, through one CRM client (the serving worker's own).
#[derive(Debug, Clone, Copy)]
pub struct UserCrm<'a> {
    manager: &'a TokenManager,
    client: &'a CrmClient,
    owner: &'a TokenOwner,
}

impl<'a> UserCrm<'a> {
    pub fn new(manager: &'a TokenManager, client: &'a CrmClient, owner: &'a TokenOwner) -> Self {
        UserCrm {
            manager,
            client,
            owner,
        }
    }

    /// Whose CRM this is.
    pub fn owner(&self) -> &'a TokenOwner {
        self.owner
    }

    /// The modules the user's profile may see (`settings/modules`).
    pub async fn modules(&self) -> Result<Vec<CrmModule>, CrmFailure> {
        let crm = self.client;
        self.call(
            None,
            |token| async move { crm.modules(token.crm_auth()).await },
        )
        .await
    }

    /// A module's fields metadata.
    pub async fn fields(&self, module: &str) -> Result<Vec<CrmField>, CrmFailure> {
        let crm = self.client;
        self.call(Some(module), |token| async move {
            crm.fields(token.crm_auth(), module).await
        })
        .await
    }

    /// One page of a module's records, with `fields` only.
    pub async fn records(
        &self,
        module: &str,
        fields: &[&str],
        page: u32,
        per_page: u32,
    ) -> Result<RecordPage, CrmFailure> {
        let crm = self.client;
        self.call(Some(module), |token| async move {
            crm.records(token.crm_auth(), module, fields, page, per_page)
                .await
        })
        .await
    }

    /// One page of the module's records matching `text` (searched as a word, an email or a phone number by its
    /// shape), with `fields` only: Zoho's search, kept within its sub-limit on concurrent searches.
    pub async fn search(
        &self,
        module: &str,
        text: &str,
        fields: &[&str],
        page: u32,
        per_page: u32,
    ) -> Result<RecordPage, CrmFailure> {
        let crm = self.client;
        self.call_as(CallKind::Search, Some(module), |token| async move {
            crm.search(token.crm_auth(), module, text, fields, page, per_page)
                .await
        })
        .await
    }

    /// One page of a module's records, with `fields` only, in a chosen order or by `page_token` (see
    /// [`ListParams`]).
    pub async fn list(
        &self,
        module: &str,
        fields: &[&str],
        params: ListParams<'_>,
    ) -> Result<RecordPage, CrmFailure> {
        let crm = self.client;
        self.call(Some(module), |token| async move {
            crm.list_records(token.crm_auth(), module, fields, params)
                .await
        })
        .await
    }

    /// One record; `None` when it does not exist.
    pub async fn record(&self, module: &str, id: &str) -> Result<Option<Record>, CrmFailure> {
        let crm = self.client;
        self.call(Some(module), |token| async move {
            crm.record(token.crm_auth(), module, id).await
        })
        .await
    }

    /// Creates records in a module; one result per record, in order.
    pub async fn create(
        &self,
        module: &str,
        records: &[Record],
    ) -> Result<Vec<CreateResult>, CrmFailure> {
        let crm = self.client;
        self.call(Some(module), |token| async move {
            crm.create_records(token.crm_auth(), module, records).await
        })
        .await
    }

    /// Writes `record`'s fields into the record `id` of `module`, only if it has not been modified after
    /// `unmodified_since` (its `Modified_Time` as Zoho wrote it) when that is given.
    pub async fn update(
        &self,
        module: &str,
        id: &str,
        record: &Record,
        unmodified_since: Option<&str>,
    ) -> Result<UpdateResult, CrmFailure> {
        let crm = self.client;
        self.call(Some(module), |token| async move {
            crm.update_record(token.crm_auth(), module, id, record, unmodified_since)
                .await
        })
        .await
    }

    /// The user as CRM knows them now (`users?type=CurrentUser`): the administrators' pages confirm the
    /// profile with it.
    pub async fn current_user(&self) -> Result<CrmUser, CrmFailure> {
        let crm = self.client;
        self.call(None, |token| async move {
            crm.current_user(token.crm_auth()).await
        })
        .await
    }

    async fn call<T, F, Fut>(&self, module: Option<&str>, call: F) -> Result<T, CrmFailure>
    where
        F: Fn(AccessToken) -> Fut,
        Fut: Future<Output = Result<T, crate::zoho::CrmError>>,
    {
        self.call_as(CallKind::Plain, module, call).await
    }

    async fn call_as<T, F, Fut>(
        &self,
        kind: CallKind,
        module: Option<&str>,
        call: F,
    ) -> Result<T, CrmFailure>
    where
        F: Fn(AccessToken) -> Fut,
        Fut: Future<Output = Result<T, crate::zoho::CrmError>>,
    {
        self.manager
            .call_as(self.owner, kind, call)
            .await
            .map_err(|source| CrmFailure {
                source,
                module: module.map(str::to_owned),
            })
    }
}
