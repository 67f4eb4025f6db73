//! The Zoho CRM v8 client: the calls the portal makes, and Zoho's errors classified (`docs/zoho-protocol.md#crm-v8`).

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt as _, Full};
use hyper::body::{Body as _, Bytes, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Uri};
use hyper_rustls::{ConfigBuilderExt as _, HttpsConnector};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use serde_json::Value;
use smallvec::SmallVec;
use sonic_rs::{JsonContainerTrait, JsonValueTrait};
use tokio::net::TcpStream;
use url::Url;

use crate::secret::Secret;
use crate::telemetry::{RATE_LIMITED_OUTCOME, Telemetry};

/// One CRM record: field API names to values, as Zoho sends them (ids are strings of digits).
///
/// Records are parsed with `sonic-rs`, not `serde_json`: a page of records is most of what the portal parses,
/// and sonic-rs reads a 20-record page in about an eighth of the time (`cargo bench --bench json`). Everything else
/// Zoho answers (identity, modules, fields, errors) is small and stays `serde_json`.
pub type Record = sonic_rs::Object;

/// Whom a CRM call is made for: the user's API domain and a valid access token (a [`Secret`]: `Debug` never
/// prints it).
#[derive(Debug, Clone, Copy)]
pub struct CrmAuth<'a> {
    pub api_domain: &'a Url,
    pub access_token: &'a Secret,
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
    /// Whether the user's profile may edit the module's records (`docs/zoho-protocol.md#updating-a-record`).
    #[serde(default)]
    pub editable: bool,
}

/// One entry of `settings/fields?module=`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct CrmField {
    pub api_name: String,
    pub field_label: Option<String>,
    pub display_label: Option<String>,
    pub data_type: Option<String>,
    /// A picklist's choices, in Zoho's order (empty for other fields).
    #[serde(default)]
    pub pick_list_values: Vec<PickListValue>,
}

/// One choice of a picklist field: `actual_value` is what the API reads and writes, `display_value` what
/// people see.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct PickListValue {
    pub display_value: String,
    pub actual_value: String,
}

/// A page of `GET /crm/v8/{module}`; a 204 is an empty page.
#[derive(Debug, Clone, Default)]
pub struct RecordPage {
    /// Zoho's answer as parsed. The records stay in its `data` and are lent out by [`Self::records`]: taking
    /// them out would copy every one of them.
    answer: sonic_rs::Value,
    pub page: u32,
    pub per_page: u32,
    pub more_records: bool,
}

impl RecordPage {
    fn empty(page: u32, per_page: u32) -> RecordPage {
        RecordPage {
            answer: sonic_rs::Value::default(),
            page,
            per_page,
            more_records: false,
        }
    }

    /// `info.next_page_token`: what asks Zoho for the next page past the first 2,000 records
    /// (`docs/zoho-protocol.md#page-tokens`). Read from the kept answer only when asked for.
    pub fn next_page_token(&self) -> Option<&str> {
        self.info_text("next_page_token")
    }

    /// `info.previous_page_token`: the page before a page reached by token.
    pub fn previous_page_token(&self) -> Option<&str> {
        self.info_text("previous_page_token")
    }

    fn info_text(&self, key: &str) -> Option<&str> {
        self.answer
            .get("info")
            .and_then(|info| info.get(key))
            .and_then(|value| value.as_str())
            .filter(|text| !text.is_empty())
    }

    /// The page's records, in Zoho's order (anything in `data` that is not an object is skipped).
    pub fn records(&self) -> impl Iterator<Item = &Record> {
        self.data()
            .into_iter()
            .flat_map(|data| data.iter())
            .filter_map(|record| record.as_object())
    }

    /// How many entries `data` has (all of them records, unless Zoho's answer is not as documented).
    pub fn record_count(&self) -> usize {
        self.data().map_or(0, |data| data.len())
    }

    fn data(&self) -> Option<&sonic_rs::Array> {
        self.answer.get("data").and_then(|data| data.as_array())
    }
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

/// Zoho's answer to `PUT /crm/v8/{module}/{id}` (`docs/zoho-protocol.md#updating-a-record`).
#[derive(Debug, Clone, PartialEq)]
pub enum UpdateResult {
    /// Written; the record's new `Modified_Time`, when Zoho says it.
    Updated { modified_time: Option<String> },
    /// 412 `ALREADY_MODIFIED`: the record was modified after the `If-Unmodified-Since` time, and nothing was
    /// written. When, and by whom, as Zoho says.
    AlreadyModified {
        modified_time: Option<String>,
        modified_by: Option<String>,
    },
    /// Refused for its data: `code` such as `INVALID_DATA` or `MANDATORY_NOT_FOUND`; `field` is
    /// `details.api_name` when Zoho names one.
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
    /// 429 `TOO_MANY_REQUESTS`: over the org's concurrency cap (or out of API credits). `retry_after` is how
    /// long Zoho asked the caller to wait (`Retry-After` or `X-RATELIMIT-RESET`), when it said.
    #[error("Zoho CRM is throttling requests")]
    RateLimited { retry_after: Option<Duration> },
    /// 5xx.
    #[error("Zoho CRM failed (HTTP {0})")]
    Server(u16),
    #[error("Zoho CRM did not answer in time")]
    Timeout,
    /// The connection failed, or broke before the whole answer came. The cause is kept for the logs; it never
    /// names the URL (the user's module and record).
    #[error("Zoho CRM could not be reached")]
    Unreachable(#[source] Box<dyn StdError + Send + Sync>),
    /// Any other error envelope or an unreadable answer.
    #[error("Zoho CRM error {code} (HTTP {status}): {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
}

impl CrmError {
    /// Whether Zoho refused a list call's `page_token`: expired (`EXPIRED_VALUE`), or not for this user or these
    /// parameters (`TOKEN_BOUND_DATA_MISMATCH`). The list starts again without it
    /// (`docs/zoho-protocol.md#page-tokens`).
    pub fn is_page_token_refused(&self) -> bool {
        matches!(self, CrmError::Api { code, .. }
            if code == "EXPIRED_VALUE" || code == "TOKEN_BOUND_DATA_MISMATCH")
    }
}

/// Zoho's list calls take at most this many field names
/// (`docs/zoho-protocol.md#the-calls-the-portal-and-the-sandbox-use`).
pub const MAX_FIELDS: usize = 50;
/// Zoho's largest page.
pub const MAX_PER_PAGE: u32 = 200;

/// Zoho searches only for a value of at least this many characters (`INVALID_DATA` below it)
/// (`docs/zoho-protocol.md#search`).
pub const MIN_SEARCH_CHARS: usize = 2;
/// The most records one search can reach, whatever the page (`LIMIT_REACHED` past them).
pub const MAX_SEARCH_RESULTS: u32 = 2_000;
/// Digits a text needs to be searched as a phone number.
const MIN_PHONE_DIGITS: usize = 5;

/// Which of Zoho's search parameters a text goes in, decided by its shape: `email` for anything with an `@`,
/// `phone` for a text written as a phone number (digits, `+`, `-`, spaces and parentheses only) with at least
/// five digits, else `word` (`docs/zoho-protocol.md#search`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchBy {
    Word,
    Email,
    Phone,
}

impl SearchBy {
    /// The parameter `text` is searched by.
    pub fn of(text: &str) -> SearchBy {
        if text.contains('@') {
            return SearchBy::Email;
        }
        let phone_like = text
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | ' ' | '(' | ')'));
        let digits = text.bytes().filter(u8::is_ascii_digit).count();
        if phone_like && digits >= MIN_PHONE_DIGITS {
            SearchBy::Phone
        } else {
            SearchBy::Word
        }
    }

    /// Zoho's name for the parameter.
    pub fn param(self) -> &'static str {
        match self {
            SearchBy::Word => "word",
            SearchBy::Email => "email",
            SearchBy::Phone => "phone",
        }
    }
}

/// Whether Zoho refused a search for its text: too short, or characters it does not search for
/// (`INVALID_DATA`, or `INVALID_QUERY` for a value it cannot read). Both are 400s of the search call.
pub fn is_refused_search_text(error: &CrmError) -> bool {
    matches!(error, CrmError::Api { status: 400, code, .. } if code == "INVALID_DATA" || code == "INVALID_QUERY")
}

/// Which page of a list to ask for, and in which order (`docs/zoho-protocol.md#page-tokens`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ListParams<'a> {
    /// The page number (from 1); not sent with a `page_token`, which names the page itself.
    pub page: u32,
    pub per_page: u32,
    /// `sort_by` (`id`, `Created_Time` or `Modified_Time`) and `sort_order` (`asc` or `desc`); `None`:
    /// Zoho's default order, and neither parameter is sent.
    pub sort: Option<(&'a str, &'a str)>,
    /// A `next_page_token` or `previous_page_token` from Zoho's answer to the same list.
    pub page_token: Option<&'a str>,
}

/// The HTTP client under [`CrmClient`]: hyper's pooled HTTP/1.1 client, https through rustls, plain http too
/// (the sandbox). One body type for every call: a GET's is empty.
type HttpClient = Client<HttpsConnector<ProxyAware>, Full<Bytes>>;

/// Makes CRM v8 calls with `Authorization: Zoho-oauthtoken …`.
#[derive(Clone)]
pub struct CrmClient {
    http: HttpClient,
    /// What [`Self::for_worker`] builds a worker's pool on: the TCP settings and the TLS configuration, made once.
    connector: HttpsConnector<ProxyAware>,
    timeout: Duration,
    /// Where each call is counted, by module and outcome.
    telemetry: Arc<Telemetry>,
}

impl fmt::Debug for CrmClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CrmClient").finish_non_exhaustive()
    }
}

impl CrmClient {
    /// An HTTP client that follows no redirects (the token must not travel to another host: a 3xx is an answer
    /// like any other) and gives up on a call, its answer read, after `timeout`.
    ///
    /// https goes through rustls with ring and webpki's roots (Mozilla's), TLS 1.3 and 1.2, ALPN `http/1.1`;
    /// plain http is allowed (the sandbox). Fails only if rustls refuses that configuration.
    pub fn new(timeout: Duration) -> Result<Self, rustls::Error> {
        let connector = connector(timeout)?;
        Ok(Self {
            http: pooled(connector.clone()),
            connector,
            timeout,
            telemetry: Arc::default(),
        })
    }

    /// The same client, counting its calls in `telemetry` (the portal's).
    pub fn with_telemetry(mut self, telemetry: Arc<Telemetry>) -> Self {
        self.telemetry = telemetry;
        self
    }

    /// A client with the same settings and a connection pool of its own, for one HTTP worker of the portal.
    ///
    /// A connection runs on the event loop of the worker that opened it. Shared between workers, a pool hands
    /// a request on one worker a connection living on another, and every call then crosses threads twice
    /// (a wake-up there for the request, one back for the answer). With a pool per worker, a page's CRM call
    /// stays on the worker serving the page.
    pub fn for_worker(&self) -> CrmClient {
        CrmClient {
            http: pooled(self.connector.clone()),
            connector: self.connector.clone(),
            timeout: self.timeout,
            telemetry: Arc::clone(&self.telemetry),
        }
    }

    /// `GET /crm/v8/users?type=CurrentUser`: who the token belongs to.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn current_user(&self, auth: CrmAuth<'_>) -> Result<CrmUser, CrmError> {
        let url = crm_url(auth.api_domain, &["users"], &[("type", "CurrentUser")])?;
        let answer = self.get(auth, url, "users").await?;
        first_of::<CrmUser>(answer, "users")
    }

    /// `GET /crm/v8/org`: the organization the token belongs to.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn org(&self, auth: CrmAuth<'_>) -> Result<CrmOrg, CrmError> {
        let url = crm_url(auth.api_domain, &["org"], &[])?;
        let answer = self.get(auth, url, "org").await?;
        first_of::<CrmOrg>(answer, "org")
    }

    /// `GET /crm/v8/settings/modules`: every module, as Zoho lists them (filter on `api_supported` to show).
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn modules(&self, auth: CrmAuth<'_>) -> Result<Vec<CrmModule>, CrmError> {
        let url = crm_url(auth.api_domain, &["settings", "modules"], &[])?;
        let answer = self.get(auth, url, "settings/modules").await?;
        let modules: Vec<CrmModule> = list_of(answer, "modules")?;
        // Modules Zoho named get metric labels of their own; a module only typed in an address never does.
        self.telemetry.modules_listed(
            modules
                .iter()
                .filter(|module| module.api_supported && is_module_name(&module.api_name))
                .map(|module| module.api_name.as_str()),
        );
        Ok(modules)
    }

    /// `GET /crm/v8/settings/fields?module=…`.
    #[tracing::instrument(level = "debug", skip_all, fields(module))]
    pub async fn fields(&self, auth: CrmAuth<'_>, module: &str) -> Result<Vec<CrmField>, CrmError> {
        check_module(module)?;
        let url = crm_url(
            auth.api_domain,
            &["settings", "fields"],
            &[("module", module)],
        )?;
        let answer = self.get(auth, url, "settings/fields").await?;
        list_of(answer, "fields")
    }

    /// `GET /crm/v8/{module}?fields=…&page=…&per_page=…`. `fields` is mandatory at Zoho (at most 50; an empty
    /// list asks for `id` only); `page` starts at 1 and `per_page` is at most 200. A 204 is an empty page.
    pub async fn records(
        &self,
        auth: CrmAuth<'_>,
        module: &str,
        fields: &[&str],
        page: u32,
        per_page: u32,
    ) -> Result<RecordPage, CrmError> {
        let params = ListParams {
            page,
            per_page,
            ..ListParams::default()
        };
        self.list_records(auth, module, fields, params).await
    }

    /// [`CrmClient::records`] with a sort order, or with a `page_token` instead of the page number (Zoho
    /// refuses both together, and a token with other parameters than its list's:
    /// [`CrmError::is_page_token_refused`]).
    #[tracing::instrument(level = "debug", skip_all, fields(module, page, per_page))]
    pub async fn list_records(
        &self,
        auth: CrmAuth<'_>,
        module: &str,
        fields: &[&str],
        params: ListParams<'_>,
    ) -> Result<RecordPage, CrmError> {
        check_module(module)?;
        let fields = fields_param(fields)?;
        let page = params.page.max(1);
        let per_page = params.per_page.clamp(1, MAX_PER_PAGE);
        let page_text = page.to_string();
        let per_page_text = per_page.to_string();
        let mut query: SmallVec<[(&str, &str); 5]> = SmallVec::new();
        query.push(("fields", &fields));
        match params.page_token {
            Some(token) => query.push(("page_token", token)),
            None => query.push(("page", &page_text)),
        }
        query.push(("per_page", &per_page_text));
        if let Some((sort_by, sort_order)) = params.sort {
            query.push(("sort_by", sort_by));
            query.push(("sort_order", sort_order));
        }
        let url = crm_url(auth.api_domain, &[module], &query)?;
        let (status, bytes) = self.send_get(auth, url, module).await?;
        record_page_of(status, &bytes, page, per_page)
    }

    /// `GET /crm/v8/{module}/search?{word|email|phone}=…&fields=…&page=…&per_page=…`: the records matching
    /// `text`, searched by its shape ([`SearchBy::of`]), newest first. `fields` and paging are as for
    /// [`Self::records`]; only the first [`MAX_SEARCH_RESULTS`] matches can be reached. A 204 is no match (an
    /// empty page). A text Zoho will not search for is a 400 (see [`is_refused_search_text`]).
    #[tracing::instrument(level = "debug", skip_all, fields(module, page, per_page))]
    pub async fn search(
        &self,
        auth: CrmAuth<'_>,
        module: &str,
        text: &str,
        fields: &[&str],
        page: u32,
        per_page: u32,
    ) -> Result<RecordPage, CrmError> {
        check_module(module)?;
        let fields = fields_param(fields)?;
        let page = page.max(1);
        let per_page = per_page.clamp(1, MAX_PER_PAGE);
        let url = crm_url(
            auth.api_domain,
            &[module, "search"],
            &[
                (SearchBy::of(text).param(), text),
                ("fields", &fields),
                ("page", &page.to_string()),
                ("per_page", &per_page.to_string()),
            ],
        )?;
        let (status, bytes) = self.send_get(auth, url, module).await?;
        record_page_of(status, &bytes, page, per_page)
    }

    /// `GET /crm/v8/{module}/{id}`; `Ok(None)` when the record does not exist.
    #[tracing::instrument(level = "debug", skip_all, fields(module))]
    pub async fn record(
        &self,
        auth: CrmAuth<'_>,
        module: &str,
        id: &str,
    ) -> Result<Option<Record>, CrmError> {
        check_module(module)?;
        // Anything but a record id names no record and need not travel.
        if !is_record_id(id) {
            return Ok(None);
        }
        let url = crm_url(auth.api_domain, &[module, id], &[])?;
        let (status, bytes) = self.send_get(auth, url, module).await?;
        if !(200..300).contains(&status) {
            // A wrong id is `INVALID_DATA` (or a 404); a wrong module stays an error of its own.
            return match classify_error(status, &bytes) {
                CrmError::NotFound if error_code(&bytes).as_deref() != Some("INVALID_MODULE") => {
                    Ok(None)
                }
                error => Err(error),
            };
        }
        if matches!(status, 204 | 304) {
            return Ok(None);
        }
        // The same answer as a list's, with one record in `data`.
        let answer = parse_record_page(&bytes, 1, 1).ok_or_else(|| unreadable(status))?;
        let record = answer.records().next().cloned();
        Ok(record)
    }

    /// `POST /crm/v8/{module}` with `{"data": records}`; one result per record, in order.
    #[tracing::instrument(level = "debug", skip_all, fields(module, count = records.len()))]
    pub async fn create_records(
        &self,
        auth: CrmAuth<'_>,
        module: &str,
        records: &[Record],
    ) -> Result<Vec<CreateResult>, CrmError> {
        check_module(module)?;
        let url = crm_url(auth.api_domain, &[module], &[])?;
        let body = serde_json::json!({ "data": records });
        let request = json_request(Method::POST, url, authorization(auth)?, &body)?;
        let (status, bytes) = self.exchange(request, module).await?;
        // All-failed creates come back as 400 with per-record results: read those before the envelope.
        if let Ok(answer) = serde_json::from_slice::<Value>(&bytes)
            && let Some(items) = answer.get("data").and_then(Value::as_array)
        {
            return Ok(items.iter().map(parse_create_result).collect());
        }
        Err(classify_error(status, &bytes))
    }

    /// `PUT /crm/v8/{module}/{id}` with `{"data": [record + id]}`: writes the fields `record` holds (a `null`
    /// clears one). With `unmodified_since` (the record's `Modified_Time` as Zoho wrote it), Zoho writes only
    /// if the record has not been modified after that time, and answers 412 `ALREADY_MODIFIED` otherwise.
    ///
    /// Sent once: unlike a GET, an update is not sent again when its connection closes under it (the answer
    /// to a second try of a write that went through would be `ALREADY_MODIFIED`, a conflict with itself).
    #[tracing::instrument(level = "debug", skip_all, fields(module))]
    pub async fn update_record(
        &self,
        auth: CrmAuth<'_>,
        module: &str,
        id: &str,
        record: &Record,
        unmodified_since: Option<&str>,
    ) -> Result<UpdateResult, CrmError> {
        check_module(module)?;
        if !is_record_id(id) {
            return Err(CrmError::NotFound);
        }
        let url = crm_url(auth.api_domain, &[module, id], &[])?;
        let mut with_id = record.clone();
        with_id.insert("id", id);
        let body = serde_json::json!({ "data": [with_id] });
        let mut request = json_request(Method::PUT, url, authorization(auth)?, &body)?;
        if let Some(since) = unmodified_since {
            let since = HeaderValue::from_str(since).map_err(|_| CrmError::Api {
                status: 0,
                code: "INVALID_MODIFIED_TIME".to_owned(),
                message: "the record's Modified_Time is not a header value".to_owned(),
            })?;
            request
                .headers_mut()
                .insert(header::IF_UNMODIFIED_SINCE, since);
        }
        let (status, bytes) = self.exchange(request, module).await?;
        parse_update_answer(status, &bytes)
    }

    /// A GET with the token; `Ok(None)` for 204/304, the JSON answer for 2xx, else the classified error.
    async fn get(&self, auth: CrmAuth<'_>, url: Uri, api: &str) -> Result<Option<Value>, CrmError> {
        let (status, bytes) = self.send_get(auth, url, api).await?;
        read_answer(status, &bytes)
    }

    /// A GET, sent once more when the kept-alive connection it went out on was closed by the server before any
    /// answer came: the server closes an idle connection just as the client picks it from its pool, and the
    /// request dies with it without having been read. A GET changes nothing, so sending it again is safe; once is
    /// enough, on a fresh connection. Any other failure is the answer.
    async fn send_get(
        &self,
        auth: CrmAuth<'_>,
        url: Uri,
        api: &str,
    ) -> Result<(u16, Vec<u8>), CrmError> {
        let authorization = authorization(auth)?;
        let mut tries_left = 2;
        loop {
            tries_left -= 1;
            let request = request(
                Method::GET,
                url.clone(),
                authorization.clone(),
                Full::default(),
            );
            match self.exchange(request, api).await {
                Err(CrmError::Unreachable(error))
                    if tries_left > 0 && closed_before_answer(&*error) =>
                {
                    tracing::debug!(
                        "a kept-alive connection to Zoho CRM closed under the request; sending it again"
                    );
                }
                answer => return answer,
            }
        }
    }

    /// Sends one request and reads the answer; counts the call under `api` (the module or API asked) with its
    /// outcome. A 429 (or a `TOO_MANY_REQUESTS` envelope) is [`CrmError::RateLimited`] here, with Zoho's hint
    /// of when to try again, whatever the caller would make of the body.
    ///
    /// The whole exchange, from the connection to the answer's last byte, gives up after the client's timeout
    /// ([`CrmError::Timeout`]).
    async fn exchange(
        &self,
        request: Request<Full<Bytes>>,
        api: &str,
    ) -> Result<(u16, Vec<u8>), CrmError> {
        let answer = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|error| transport_error(Box::new(error)))?;
            let status = response.status().as_u16();
            let failed = !(200..300).contains(&status);
            let retry_after = if failed {
                retry_hint(response.headers())
            } else {
                None
            };
            let bytes = read_crm_answer(response.into_body(), status).await?;
            let limited = status == 429
                || (failed && error_code(&bytes).as_deref() == Some("TOO_MANY_REQUESTS"));
            if limited {
                return Err(CrmError::RateLimited { retry_after });
            }
            Ok((status, bytes))
        };
        let answer = tokio::time::timeout(self.timeout, answer)
            .await
            .unwrap_or(Err(CrmError::Timeout));
        self.telemetry.crm_call(api, outcome_of(&answer));
        answer
    }
}

/// The outcome label of a CRM call: by status class, so that the labels stay few.
fn outcome_of(answer: &Result<(u16, Vec<u8>), CrmError>) -> &'static str {
    match answer {
        Ok((200..=299 | 304, _)) => "ok",
        Ok((401, _)) => "unauthorized",
        Ok((403, _)) => "forbidden",
        Ok((400..=499, _)) => "client_error",
        Ok((500..=599, _)) => "server_error",
        Ok(_) => "unexpected_status",
        Err(CrmError::RateLimited { .. }) => RATE_LIMITED_OUTCOME,
        Err(CrmError::Timeout) => "timeout",
        Err(CrmError::Unreachable(_)) => "unreachable",
        Err(_) => "unreadable",
    }
}

/// Longest wait a 429's hint is taken at: a hint further out is a day's credits running out, not a busy
/// moment, and the page gives up at once either way.
const MAX_RETRY_HINT: Duration = Duration::from_secs(3600);

/// When a 429 says to try again: `Retry-After` in seconds, else `X-RATELIMIT-RESET`. Zoho documents neither
/// for certain; older notes describe `X-RATELIMIT-RESET` without a unit, so a value that can only be a moment
/// (past 10^12: epoch milliseconds; past 10^9: epoch seconds) is read as one, and a smaller one as seconds from
/// now. `None` when neither is there or readable.
fn retry_hint(headers: &HeaderMap) -> Option<Duration> {
    let number = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<u64>().ok();
    if let Some(seconds) = number("retry-after") {
        return Some(Duration::from_secs(seconds).min(MAX_RETRY_HINT));
    }
    let reset = number("x-ratelimit-reset")?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
    let wait = if reset >= 1_000_000_000_000 {
        Duration::from_millis(reset).saturating_sub(now)
    } else if reset >= 1_000_000_000 {
        Duration::from_secs(reset).saturating_sub(now)
    } else {
        Duration::from_secs(reset)
    };
    Some(wait.min(MAX_RETRY_HINT))
}

/// Most bytes one CRM answer may have: a page of 200 records with 50 fields stays well below it.
pub const MAX_CRM_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// Reads an answer of at most [`MAX_CRM_ANSWER_BYTES`]: a declared `Content-Length` over the cap is refused
/// before anything is read, and a body without one is read chunk by chunk and dropped as soon as it passes the
/// cap (its connection with it), so that a misbehaving upstream cannot make the portal buffer without bound.
async fn read_crm_answer(mut body: Incoming, status: u16) -> Result<Vec<u8>, CrmError> {
    let too_large = || CrmError::Api {
        status,
        code: "ANSWER_TOO_LARGE".to_owned(),
        message: format!("the answer is larger than {MAX_CRM_ANSWER_BYTES} bytes"),
    };
    let declared = body.size_hint().exact();
    if declared.is_some_and(|length| length > MAX_CRM_ANSWER_BYTES as u64) {
        return Err(too_large());
    }
    // At most the cap, just checked.
    let mut bytes = Vec::with_capacity(declared.map_or(0, |length| length as usize));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| transport_error(Box::new(error)))?;
        // Anything but data (trailers) is not part of the answer.
        if let Ok(chunk) = frame.into_data() {
            if bytes.len() + chunk.len() > MAX_CRM_ANSWER_BYTES {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
    }
    Ok(bytes)
}

/// `Ok(None)` for 204/304, the JSON answer for another 2xx, else the classified error.
fn read_answer(status: u16, bytes: &[u8]) -> Result<Option<Value>, CrmError> {
    match status {
        204 | 304 => Ok(None),
        200..=299 => serde_json::from_slice(bytes)
            .map(Some)
            .map_err(|_| unreadable(status)),
        _ => Err(classify_error(status, bytes)),
    }
}

/// The `code` of Zoho's error envelope, if the body is one.
fn error_code(body: &[u8]) -> Option<String> {
    let answer: Value = serde_json::from_slice(body).ok()?;
    answer
        .get("code")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// A request to Zoho CRM with the token, `Accept: */*` (what the client has always sent: reqwest's default
/// header) and `Host`.
fn request(
    method: Method,
    url: Uri,
    authorization: HeaderValue,
    body: Full<Bytes>,
) -> Request<Full<Bytes>> {
    let host = host_header(&url);
    let mut request = Request::new(body);
    *request.method_mut() = method;
    *request.uri_mut() = url;
    let headers = request.headers_mut();
    headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
    headers.insert(header::AUTHORIZATION, authorization);
    if let Some(host) = host {
        headers.insert(header::HOST, host);
    }
    request
}

/// `Host`, as hyper-util's client writes it when a request has none (host, and the port unless it is the
/// scheme's default), taken from the address's text instead of formatted again: `url::Url`, and so
/// [`crm_url`], writes no default port, and a port as its plain digits. `None` (hyper-util writes it) for an
/// address with credentials or a default port written out.
fn host_header(url: &Uri) -> Option<HeaderValue> {
    let authority = url.authority()?.as_str();
    let default_port = match url.scheme_str() {
        Some("https") => ":443",
        _ => ":80",
    };
    if authority.contains('@') || authority.ends_with(default_port) {
        return None;
    }
    HeaderValue::from_str(authority).ok()
}

/// A request with `body` as its JSON (`Content-Type: application/json`).
fn json_request(
    method: Method,
    url: Uri,
    authorization: HeaderValue,
    body: &Value,
) -> Result<Request<Full<Bytes>>, CrmError> {
    // A `Value` always serialises; were it not to, the call fails as reqwest failed it (unsent, unreachable).
    let body = serde_json::to_vec(body).map_err(|error| CrmError::Unreachable(Box::new(error)))?;
    let mut request = request(method, url, authorization, Full::new(Bytes::from(body)));
    request.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(request)
}

/// The connector every pool of a [`CrmClient`] opens its connections with: TCP as reqwest set it up (no Nagle,
/// keep-alive probes after 15 s, every 15 s, 3 of them; unacknowledged data gives up after 30 s), `timeout` to
/// connect, through the environment's proxy where it names one ([`ProxyAware`]); then TLS for https through
/// rustls with ring (chosen here, so that no process-wide provider is needed) and webpki's roots, and plain TCP
/// for http.
fn connector(timeout: Duration) -> Result<HttpsConnector<ProxyAware>, rustls::Error> {
    connector_with(timeout, Matcher::from_env())
}

/// [`connector`], with the proxies `proxies` names.
fn connector_with(
    timeout: Duration,
    proxies: Matcher,
) -> Result<HttpsConnector<ProxyAware>, rustls::Error> {
    let mut tcp = HttpConnector::new();
    // The scheme is the TLS layer's business: the TCP connector takes https addresses too.
    tcp.enforce_http(false);
    tcp.set_connect_timeout(Some(timeout));
    tcp.set_nodelay(true);
    tcp.set_keepalive(Some(Duration::from_secs(15)));
    tcp.set_keepalive_interval(Some(Duration::from_secs(15)));
    tcp.set_keepalive_retries(Some(3));
    #[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
    tcp.set_tcp_user_timeout(Some(Duration::from_secs(30)));
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(rustls::ALL_VERSIONS)?
    .with_webpki_roots()
    .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = ProxyAware {
        direct: tcp,
        proxies: Arc::new(proxies),
    };
    // Built from its parts, the connector takes http as well as https (the sandbox).
    Ok(HttpsConnector::from((tcp, tls)))
}

/// Where a CRM connection's TCP goes: straight to Zoho, or, for an https address that the environment's proxy
/// settings send through a proxy (`HTTPS_PROXY` or `ALL_PROXY`, less `NO_PROXY`, upper or lower case, read once
/// when the client is made, as reqwest reads them for the Accounts client), through a tunnel the proxy opens
/// with `CONNECT` (its `user:password` as basic authentication), so that TLS runs end to end with Zoho and the
/// proxy sees no token. Plain http (the sandbox, on this machine) always goes straight. Only a new connection
/// asks: a pooled one is reused as it is.
#[derive(Clone)]
struct ProxyAware {
    direct: HttpConnector,
    proxies: Arc<Matcher>,
}

impl tower_service::Service<Uri> for ProxyAware {
    type Response = TokioIo<TcpStream>;
    type Error = Box<dyn StdError + Send + Sync>;
    type Future =
        std::pin::Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.direct.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, destination: Uri) -> Self::Future {
        let intercept = (destination.scheme_str() == Some("https"))
            .then(|| self.proxies.intercept(&destination))
            .flatten();
        match intercept {
            Some(proxy) => {
                let mut tunnel = Tunnel::new(proxy.uri().clone(), self.direct.clone());
                if let Some(auth) = proxy.basic_auth() {
                    tunnel = tunnel.with_auth(auth.clone());
                }
                Box::pin(async move { tunnel.call(destination).await.map_err(Into::into) })
            }
            None => {
                let connecting = self.direct.call(destination);
                Box::pin(async move { connecting.await.map_err(Into::into) })
            }
        }
    }
}

/// A pool of connections over `connector`, kept as reqwest kept them: idle connections closed after 90 s, any
/// number of them per host.
fn pooled(connector: HttpsConnector<ProxyAware>) -> HttpClient {
    Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(usize::MAX)
        .build(connector)
}

/// The `Authorization` header, marked sensitive so that no debug output of the request shows it.
fn authorization(auth: CrmAuth<'_>) -> Result<HeaderValue, CrmError> {
    const SCHEME: &[u8] = b"Zoho-oauthtoken ";
    let token = auth.access_token.expose_secret().as_bytes();
    let mut text = Vec::with_capacity(SCHEME.len() + token.len());
    text.extend_from_slice(SCHEME);
    text.extend_from_slice(token);
    // The header's bytes are this buffer, not a copy of it.
    let mut value = HeaderValue::from_maybe_shared(Bytes::from(text)).map_err(|_| {
        CrmError::InvalidToken("the access token is not a valid header value".to_owned())
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// `{api_domain}/crm/v8/{segments…}?{query}`, each segment percent-encoded as one path segment, the query
/// form-encoded, as the address hyper sends the request to.
///
/// The text is written directly ([`crm_url_text`]) and parsed once by `http`'s `Uri`, which is much cheaper
/// than building a `url::Url` of it.
fn crm_url(api_domain: &Url, segments: &[&str], query: &[(&str, &str)]) -> Result<Uri, CrmError> {
    let text = crm_url_text(api_domain, segments, query)?;
    Uri::try_from(text).map_err(|_| CrmError::Api {
        status: 0,
        code: "INVALID_API_DOMAIN".to_owned(),
        message: "the API domain does not make an address to send to".to_owned(),
    })
}

/// The text of [`crm_url`], byte for byte what `url::Url` makes of it ([`crm_url_by_url`]): written directly
/// for an http(s) domain and segments of letters, digits, `_` and `-` (module names, record ids and the API's
/// own words: every call the portal makes), else by `url::Url`.
fn crm_url_text(
    api_domain: &Url,
    segments: &[&str],
    query: &[(&str, &str)],
) -> Result<String, CrmError> {
    let plain = |segment: &&str| {
        !segment.is_empty()
            && segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    if !matches!(api_domain.scheme(), "http" | "https") || !segments.iter().all(plain) {
        return crm_url_by_url(api_domain, segments, query).map(String::from);
    }
    // Scheme, credentials, host and port, as the domain's own text has them.
    let origin = &api_domain[..url::Position::BeforePath];
    let length = origin.len()
        + "/crm/v8".len()
        + segments
            .iter()
            .map(|segment| segment.len() + 1)
            .sum::<usize>()
        + query
            .iter()
            .map(|(name, value)| name.len() + value.len() + 2)
            .sum::<usize>();
    let mut text = String::with_capacity(length + 16);
    text.push_str(origin);
    text.push_str("/crm/v8");
    for segment in segments {
        text.push('/');
        text.push_str(segment);
    }
    for (n, (name, value)) in query.iter().enumerate() {
        text.push(if n == 0 { '?' } else { '&' });
        text.extend(url::form_urlencoded::byte_serialize(name.as_bytes()));
        text.push('=');
        text.extend(url::form_urlencoded::byte_serialize(value.as_bytes()));
    }
    Ok(text)
}

/// [`crm_url_text`] by `url::Url`: the domain's path, query and fragment replaced, each segment pushed as one
/// path segment (`.` and `..` are skipped), the query pairs form-encoded.
fn crm_url_by_url(
    api_domain: &Url,
    segments: &[&str],
    query: &[(&str, &str)],
) -> Result<Url, CrmError> {
    let mut url = api_domain.clone();
    url.set_query(None);
    url.set_fragment(None);
    url.path_segments_mut()
        .map_err(|()| CrmError::Api {
            status: 0,
            code: "INVALID_API_DOMAIN".to_owned(),
            message: "the API domain cannot carry a path".to_owned(),
        })?
        .clear()
        .extend(["crm", "v8"])
        .extend(segments);
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query);
    }
    Ok(url)
}

/// The `fields` parameter: at most [`MAX_FIELDS`] names, comma-separated; `id` alone for none.
fn fields_param(fields: &[&str]) -> Result<String, CrmError> {
    if fields.len() > MAX_FIELDS {
        return Err(CrmError::Api {
            status: 400,
            code: "LIMIT_EXCEEDED".to_owned(),
            message: format!("at most {MAX_FIELDS} fields per call"),
        });
    }
    Ok(if fields.is_empty() {
        "id".to_owned()
    } else {
        fields.join(",")
    })
}

/// Whether `name` can be a module's API name: letters, digits and underscores, at most 100 of them. Anything
/// else names no module and need not travel (the routes answer 404 for it, this client [`CrmError::NotFound`]).
pub fn is_module_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Whether `id` can be a record id: Zoho's record ids are digits (at most 30 here).
pub fn is_record_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 30 && id.bytes().all(|b| b.is_ascii_digit())
}

fn check_module(module: &str) -> Result<(), CrmError> {
    if is_module_name(module) {
        Ok(())
    } else {
        Err(CrmError::NotFound)
    }
}

/// A failed exchange: [`CrmError::Timeout`] when anything on the way timed out (the connection, or the system's
/// TCP timers), else [`CrmError::Unreachable`] with the cause (hyper's errors carry no URL: the URL names the
/// user's module and record, and the log needs neither).
fn transport_error(error: Box<dyn StdError + Send + Sync>) -> CrmError {
    if timed_out(&*error) {
        CrmError::Timeout
    } else {
        CrmError::Unreachable(error)
    }
}

fn timed_out(error: &(dyn StdError + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if let Some(http) = error.downcast_ref::<hyper::Error>()
            && http.is_timeout()
        {
            return true;
        }
        if let Some(io) = error.downcast_ref::<io::Error>()
            && io.kind() == io::ErrorKind::TimedOut
        {
            return true;
        }
        cause = error.source();
    }
    false
}

/// Whether a request failed because its connection closed before any answer came (hyper's incomplete message,
/// anywhere in the error or its causes): a kept-alive connection the server closed as the request went out, so a
/// GET may be sent again once. Takes the CRM client's errors and reqwest's alike: `examples/passthrough.rs`
/// (reqwest) does the same, so the floor it measures answers what the portal answers.
pub fn closed_before_answer(error: &(dyn StdError + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if let Some(http) = error.downcast_ref::<hyper::Error>() {
            return http.is_incomplete_message();
        }
        cause = error.source();
    }
    false
}

fn unreadable(status: u16) -> CrmError {
    CrmError::Api {
        status,
        code: "UNREADABLE".to_owned(),
        message: "the answer was not the JSON Zoho sends".to_owned(),
    }
}

/// Classifies a failed CRM answer by Zoho's `code` first (statuses disagree between sources), then by status
/// (`docs/zoho-protocol.md#crm-errors`).
pub fn classify_error(status: u16, body: &[u8]) -> CrmError {
    let answer = serde_json::from_slice::<Value>(body).ok();
    // The envelope is the whole body, or (for per-record answers) the first item of `data`.
    let envelope = answer.as_ref().and_then(|a| {
        if a.get("code").is_some() {
            Some(a)
        } else {
            a.get("data")
                .and_then(Value::as_array)
                .and_then(|d| d.first())
        }
    });
    let text = |key: &str| {
        envelope
            .and_then(|e| e.get(key))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let code = text("code");
    let message = text("message");
    match code.as_str() {
        "INVALID_TOKEN"
        | "AUTHENTICATION_FAILURE"
        | "AUTHENTICATION_FAILED"
        | "INVALID_OAUTHTOKEN" => return CrmError::InvalidToken(code),
        "OAUTH_SCOPE_MISMATCH" => return CrmError::ScopeMismatch,
        "NO_PERMISSION" => return CrmError::NoPermission,
        "INVALID_MODULE" | "INVALID_URL_PATTERN" | "NOT_FOUND" => return CrmError::NotFound,
        "INVALID_DATA" if invalid_id(envelope, &message) => return CrmError::NotFound,
        "TOO_MANY_REQUESTS" => return CrmError::RateLimited { retry_after: None },
        _ => {}
    }
    match status {
        429 => CrmError::RateLimited { retry_after: None },
        500..=599 => CrmError::Server(status),
        _ => CrmError::Api {
            status,
            code: if code.is_empty() {
                "UNKNOWN".to_owned()
            } else {
                code
            },
            message,
        },
    }
}

/// Zoho reports a record id that does not exist as `INVALID_DATA` "the id given seems to be invalid".
fn invalid_id(envelope: Option<&Value>, message: &str) -> bool {
    let names_id = envelope
        .and_then(|e| e.get("details"))
        .and_then(|d| d.get("api_name"))
        .and_then(Value::as_str)
        == Some("id");
    names_id || message.contains("id given seems to be invalid")
}

fn first_of<T: serde::de::DeserializeOwned>(
    answer: Option<Value>,
    key: &str,
) -> Result<T, CrmError> {
    let no_content = || CrmError::Api {
        status: 204,
        code: "NO_CONTENT".to_owned(),
        message: format!("Zoho returned no {key}"),
    };
    let mut answer = answer.ok_or_else(no_content)?;
    let first = answer
        .get_mut(key)
        .and_then(Value::as_array_mut)
        .filter(|items| !items.is_empty())
        .map(|items| items.swap_remove(0))
        .ok_or_else(no_content)?;
    serde_json::from_value(first).map_err(|_| unreadable(200))
}

fn list_of<T: serde::de::DeserializeOwned>(
    answer: Option<Value>,
    key: &str,
) -> Result<Vec<T>, CrmError> {
    let Some(mut answer) = answer else {
        return Ok(Vec::new());
    };
    match answer.get_mut(key).map(Value::take) {
        Some(items) => serde_json::from_value(items).map_err(|_| unreadable(200)),
        None => Ok(Vec::new()),
    }
}

/// A list's or a search's answer: 204 (and 304) an empty page, another 2xx its records, anything else Zoho's
/// error.
fn record_page_of(
    status: u16,
    bytes: &[u8],
    page: u32,
    per_page: u32,
) -> Result<RecordPage, CrmError> {
    match status {
        204 | 304 => Ok(RecordPage::empty(page, per_page)),
        200..=299 => parse_record_page(bytes, page, per_page).ok_or_else(|| unreadable(status)),
        _ => Err(classify_error(status, bytes)),
    }
}

/// A list answer as a page; `info.page`/`per_page` win over what was asked when Zoho sends them. `None`: the
/// answer is not JSON.
fn parse_record_page(body: &[u8], page: u32, per_page: u32) -> Option<RecordPage> {
    let answer: sonic_rs::Value = sonic_rs::from_slice(body).ok()?;
    let info = answer.get("info");
    let number = |key: &str| {
        info.and_then(|i| i.get(key))
            .and_then(|n| n.as_u64())
            .and_then(|n| u32::try_from(n).ok())
    };
    let (page, per_page) = (
        number("page").unwrap_or(page),
        number("per_page").unwrap_or(per_page),
    );
    let more_records = info
        .and_then(|i| i.get("more_records"))
        .and_then(|m| m.as_bool())
        .unwrap_or(false);
    Some(RecordPage {
        answer,
        page,
        per_page,
        more_records,
    })
}

/// An update's answer: its one result in `data` (with any status: Zoho answers a refused record with 400 and a
/// stale one with 412), or an error of the whole call (a bad token, no permission, an unknown record).
fn parse_update_answer(status: u16, body: &[u8]) -> Result<UpdateResult, CrmError> {
    let answer = serde_json::from_slice::<Value>(body).ok();
    let item = answer
        .as_ref()
        .and_then(|answer| answer.get("data"))
        .and_then(Value::as_array)
        .and_then(|items| items.first());
    let Some(item) = item else {
        return Err(if (200..300).contains(&status) {
            unreadable(status)
        } else {
            classify_error(status, body)
        });
    };
    let text = |value: Option<&Value>| value.and_then(Value::as_str).map(str::to_owned);
    let details = item.get("details");
    let detail = |key: &str| text(details.and_then(|d| d.get(key)));
    match text(item.get("status")).as_deref() {
        Some("success") if (200..300).contains(&status) => {
            return Ok(UpdateResult::Updated {
                modified_time: detail("Modified_Time"),
            });
        }
        _ if text(item.get("code")).as_deref() == Some("ALREADY_MODIFIED") => {
            return Ok(UpdateResult::AlreadyModified {
                modified_time: detail("Modified_Time"),
                modified_by: text(
                    details
                        .and_then(|d| d.get("Modified_By"))
                        .and_then(|by| by.get("name")),
                ),
            });
        }
        _ => {}
    }
    // Errors that are not about the record's data (a token, a permission, an unknown id) keep their meaning.
    match classify_error(status, body) {
        CrmError::Api { code, message, .. } => Ok(UpdateResult::Failed {
            code,
            message,
            field: detail("api_name"),
        }),
        error => Err(error),
    }
}

fn parse_create_result(item: &Value) -> CreateResult {
    let text = |key: &str| item.get(key).and_then(Value::as_str).map(str::to_owned);
    let details = item.get("details");
    let created_id = details
        .and_then(|d| d.get("id"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    match (text("status").as_deref(), created_id) {
        (Some("success"), Some(id)) => CreateResult::Created { id },
        _ => CreateResult::Failed {
            code: text("code").unwrap_or_else(|| "UNKNOWN".to_owned()),
            message: text("message").unwrap_or_default(),
            field: details
                .and_then(|d| d.get("api_name"))
                .and_then(Value::as_str)
                .map(str::to_owned),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain() -> Url {
        Url::parse("https://www.zohoapis.com").unwrap()
    }

    #[test]
    fn crm_url_encodes_each_segment() {
        let url = crm_url(&domain(), &["Leads", "a/b?c#d", ".."], &[("fields", "A,B")]).unwrap();
        assert_eq!(
            url.to_string(),
            "https://www.zohoapis.com/crm/v8/Leads/a%2Fb%3Fc%23d?fields=A%2CB"
        );
        let url = crm_url(
            &Url::parse("http://localhost:8081/").unwrap(),
            &["users"],
            &[("type", "CurrentUser")],
        )
        .unwrap();
        assert_eq!(
            url.to_string(),
            "http://localhost:8081/crm/v8/users?type=CurrentUser"
        );
        let url = crm_url(
            &Url::parse("https://www.zohoapis.eu/some/path?x=1#top").unwrap(),
            &["Leads", "search"],
            &[("word", "Nair & Sons+1 é"), ("page", "1")],
        )
        .unwrap();
        assert_eq!(
            url.to_string(),
            "https://www.zohoapis.eu/crm/v8/Leads/search?word=Nair+%26+Sons%2B1+%C3%A9&page=1"
        );
        assert!(matches!(
            crm_url(&Url::parse("mailto:a@b").unwrap(), &["org"], &[]),
            Err(CrmError::Api { code, .. }) if code == "INVALID_API_DOMAIN"
        ));
    }

    #[test]
    fn the_host_header_is_the_addresss_host_and_port_unless_default() {
        let host = |url: &str| {
            host_header(&Uri::try_from(url).unwrap())
                .map(|value| value.to_str().unwrap().to_owned())
        };
        assert_eq!(
            host("https://www.zohoapis.com/crm/v8/org").as_deref(),
            Some("www.zohoapis.com")
        );
        assert_eq!(
            host("http://127.0.0.1:8081/crm/v8/org").as_deref(),
            Some("127.0.0.1:8081")
        );
        assert_eq!(
            host("http://[::1]:9/crm/v8/org").as_deref(),
            Some("[::1]:9")
        );
        assert_eq!(
            host("http://localhost:8080/crm/v8/org").as_deref(),
            Some("localhost:8080")
        );
        assert_eq!(
            host("http://www.zohoapis.com:443/crm/v8/org").as_deref(),
            Some("www.zohoapis.com:443")
        );
        // Left to hyper-util: a default port written out, credentials.
        assert_eq!(host("https://www.zohoapis.com:443/crm/v8/org"), None);
        assert_eq!(host("http://localhost:80/crm/v8/org"), None);
        assert_eq!(host("http://user@localhost:8081/crm/v8/org"), None);
    }

    proptest::proptest! {
        /// The address written directly is, byte for byte, the one `url::Url` makes.
        #[test]
        fn crm_url_is_written_as_url_writes_it(
            domain in "(http|https)://(www\\.zohoapis\\.(com|eu|in)|localhost|127\\.0\\.0\\.1|\\[::1\\]|u:p@h\\.com|WWW\\.ZOHO\\.COM)(:[0-9]{1,5})?(/[a-z]{0,3}){0,2}(\\?[a-z=&]{0,5})?(#[a-z]{0,3})?",
            segments in proptest::collection::vec("[A-Za-z0-9_\\-]{1,8}|\\.{1,2}|[ -~]{0,4}|\\PC{0,3}", 0..4),
            query in proptest::collection::vec(("[a-z_]{1,6}|\\PC{0,3}", "\\PC{0,12}"), 0..5),
        ) {
            let Ok(domain) = Url::parse(&domain) else {
                return Ok(());
            };
            let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
            let query: Vec<(&str, &str)> =
                query.iter().map(|(name, value)| (name.as_str(), value.as_str())).collect();
            let by_url = crm_url_by_url(&domain, &segments, &query).map(String::from);
            let written = crm_url_text(&domain, &segments, &query);
            proptest::prop_assert_eq!(written.ok(), by_url.ok());
        }
    }

    #[test]
    fn a_search_goes_by_email_phone_or_word_by_the_texts_shape() {
        for email in ["kavya.nair12@example.com", "@zylker", "a@b"] {
            assert_eq!(SearchBy::of(email), SearchBy::Email, "{email}");
        }
        for phone in ["+91 98765 43210", "(044) 2345-6789", "98765", "+1-555-0100"] {
            assert_eq!(SearchBy::of(phone), SearchBy::Phone, "{phone}");
        }
        for word in [
            "Kavya",
            "1234",
            "+91 98",
            "Room 12345",
            "98765x",
            "Nair 98765",
        ] {
            assert_eq!(SearchBy::of(word), SearchBy::Word, "{word}");
        }
        assert_eq!(
            [SearchBy::Word, SearchBy::Email, SearchBy::Phone].map(SearchBy::param),
            ["word", "email", "phone"]
        );
    }

    #[test]
    fn a_refused_search_text_is_a_400_invalid_data_or_invalid_query() {
        let envelope = |code: &str| {
            format!(
                r#"{{"code":"{code}","details":{{"param_name":"word"}},"message":"m","status":"error"}}"#
            )
        };
        for code in ["INVALID_DATA", "INVALID_QUERY"] {
            assert!(is_refused_search_text(&classify_error(
                400,
                envelope(code).as_bytes()
            )));
        }
        for (status, code) in [
            (400, "EXPECTED_PARAM_MISSING"),
            (400, "LIMIT_REACHED"),
            (500, "INVALID_DATA"),
        ] {
            assert!(!is_refused_search_text(&classify_error(
                status,
                envelope(code).as_bytes()
            )));
        }
    }

    #[test]
    fn implausible_module_names_never_travel() {
        for module in ["", "../org", "Leads/1", "Leads?x", "Le ads", "Léads"] {
            assert!(
                matches!(check_module(module), Err(CrmError::NotFound)),
                "{module}"
            );
        }
        assert!(check_module("Courses__c").is_ok());
    }

    #[test]
    fn errors_are_classified_by_code_first() {
        let envelope = |code: &str| {
            format!(r#"{{"code":"{code}","details":{{}},"message":"m","status":"error"}}"#)
        };
        assert!(matches!(
            classify_error(401, envelope("INVALID_TOKEN").as_bytes()),
            CrmError::InvalidToken(c) if c == "INVALID_TOKEN"
        ));
        assert!(matches!(
            classify_error(401, envelope("AUTHENTICATION_FAILURE").as_bytes()),
            CrmError::InvalidToken(_)
        ));
        // Sources disagree on the status of a scope mismatch; the code decides.
        for status in [401, 403] {
            assert!(matches!(
                classify_error(status, envelope("OAUTH_SCOPE_MISMATCH").as_bytes()),
                CrmError::ScopeMismatch
            ));
        }
        assert!(matches!(
            classify_error(403, envelope("NO_PERMISSION").as_bytes()),
            CrmError::NoPermission
        ));
        assert!(matches!(
            classify_error(400, envelope("INVALID_MODULE").as_bytes()),
            CrmError::NotFound
        ));
        assert!(matches!(
            classify_error(429, envelope("TOO_MANY_REQUESTS").as_bytes()),
            CrmError::RateLimited { .. }
        ));
        assert!(matches!(
            classify_error(500, envelope("INTERNAL_ERROR").as_bytes()),
            CrmError::Server(500)
        ));
        assert!(matches!(
            classify_error(503, b"<html>"),
            CrmError::Server(503)
        ));
        assert!(matches!(
            classify_error(429, b""),
            CrmError::RateLimited { .. }
        ));
        assert!(matches!(
            classify_error(400, envelope("REQUIRED_PARAM_MISSING").as_bytes()),
            CrmError::Api { status: 400, code, .. } if code == "REQUIRED_PARAM_MISSING"
        ));
        // A 401 without Zoho's envelope is not taken for an expired token.
        assert!(matches!(
            classify_error(401, b"nope"),
            CrmError::Api { status: 401, .. }
        ));
    }

    #[test]
    fn a_429s_hint_is_read_from_retry_after_or_the_reset_header() {
        let headers = |pairs: &[(&'static str, String)]| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.insert(*name, HeaderValue::from_str(value).unwrap());
            }
            map
        };
        assert_eq!(
            retry_hint(&headers(&[("retry-after", "3".into())])),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            retry_hint(&headers(&[("x-ratelimit-reset", "2".into())])),
            Some(Duration::from_secs(2))
        );
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let in_a_while = retry_hint(&headers(&[(
            "x-ratelimit-reset",
            (now_ms + 60_000).to_string(),
        )]))
        .unwrap();
        assert!(in_a_while > Duration::from_secs(50) && in_a_while <= Duration::from_secs(60));
        let past = retry_hint(&headers(&[(
            "x-ratelimit-reset",
            (now_ms / 1000 - 5).to_string(),
        )]));
        assert_eq!(past, Some(Duration::ZERO));
        assert_eq!(
            retry_hint(&headers(&[("retry-after", "soon".into())])),
            None
        );
        assert_eq!(retry_hint(&HeaderMap::new()), None);
        assert_eq!(
            retry_hint(&headers(&[("retry-after", "99999999".into())])),
            Some(MAX_RETRY_HINT)
        );
    }

    #[test]
    fn an_invalid_record_id_is_not_found() {
        let body = br#"{"data":[{"code":"INVALID_DATA","details":{"api_name":"id"},"message":"the id given seems to be invalid","status":"error"}]}"#;
        assert!(matches!(classify_error(400, body), CrmError::NotFound));
        let body = br#"{"code":"INVALID_DATA","details":{},"message":"the id given seems to be invalid","status":"error"}"#;
        assert!(matches!(classify_error(400, body), CrmError::NotFound));
        let other = br#"{"code":"INVALID_DATA","details":{"api_name":"Phone"},"message":"invalid data","status":"error"}"#;
        assert!(matches!(classify_error(400, other), CrmError::Api { .. }));
    }

    #[test]
    fn record_pages_are_parsed() {
        let answer = br#"{"data":[{"id":"1","Last_Name":"Raman"},{"id":"2"},"not a record"],"info":{"page":2,"per_page":2,"more_records":true,"count":2}}"#;
        let page = parse_record_page(answer, 1, 20).unwrap();
        let records: Vec<&Record> = page.records().collect();
        assert_eq!(records.len(), 2);
        assert_eq!(
            records[0].get(&"Last_Name").and_then(|v| v.as_str()),
            Some("Raman")
        );
        assert_eq!(records[1].get(&"id").and_then(|v| v.as_str()), Some("2"));
        assert_eq!((page.page, page.per_page, page.more_records), (2, 2, true));
        let bare = parse_record_page(br#"{"data":[]}"#, 3, 20).unwrap();
        assert_eq!(bare.records().count(), 0);
        assert_eq!(RecordPage::empty(1, 20).records().count(), 0);
        assert_eq!(
            (bare.page, bare.per_page, bare.more_records),
            (3, 20, false)
        );
        assert!(parse_record_page(b"<html>", 1, 20).is_none());
    }

    #[test]
    fn page_tokens_are_read_from_info_and_their_refusals_recognised() {
        let answer = br#"{"data":[{"id":"1"}],"info":{"page":100,"per_page":20,"more_records":true,"next_page_token":"c8582xx9e7c7","previous_page_token":null,"page_token_expiry":"2026-12-08T15:08:14+05:30"}}"#;
        let page = parse_record_page(answer, 100, 20).unwrap();
        assert_eq!(page.next_page_token(), Some("c8582xx9e7c7"));
        assert_eq!(page.previous_page_token(), None);
        assert_eq!(RecordPage::empty(1, 20).next_page_token(), None);

        let envelope = |code: &str| {
            format!(
                r#"{{"code":"{code}","details":{{"param_name":"page_token"}},"message":"m","status":"error"}}"#
            )
        };
        for code in ["EXPIRED_VALUE", "TOKEN_BOUND_DATA_MISMATCH"] {
            assert!(
                classify_error(400, envelope(code).as_bytes()).is_page_token_refused(),
                "{code}"
            );
        }
        assert!(!classify_error(400, envelope("INVALID_DATA").as_bytes()).is_page_token_refused());
        assert!(
            !classify_error(
                400,
                envelope("DISCRETE_PAGINATION_LIMIT_EXCEEDED").as_bytes()
            )
            .is_page_token_refused()
        );
    }

    #[test]
    fn create_results_are_read_per_record() {
        let ok = serde_json::json!({"code":"SUCCESS","details":{"id":"5725767000000524157"},"message":"record added","status":"success"});
        let failed = serde_json::json!({"code":"MANDATORY_NOT_FOUND","details":{"api_name":"Last_Name"},"message":"required field not found","status":"error"});
        assert_eq!(
            parse_create_result(&ok),
            CreateResult::Created {
                id: "5725767000000524157".to_owned()
            }
        );
        assert_eq!(
            parse_create_result(&failed),
            CreateResult::Failed {
                code: "MANDATORY_NOT_FOUND".to_owned(),
                message: "required field not found".to_owned(),
                field: Some("Last_Name".to_owned()),
            }
        );
    }

    #[test]
    fn update_answers_are_read_whatever_their_status() {
        let updated = br#"{"data":[{"code":"SUCCESS","details":{"Modified_Time":"2023-05-10T01:10:47-07:00","id":"5725767000000524157"},"message":"record updated","status":"success"}]}"#;
        assert_eq!(
            parse_update_answer(200, updated).unwrap(),
            UpdateResult::Updated {
                modified_time: Some("2023-05-10T01:10:47-07:00".to_owned())
            }
        );
        let stale = br#"{"data":[{"code":"ALREADY_MODIFIED","message":"record updated time has already passed if-unmodified-since time","status":"error","details":{"Modified_Time":"2023-06-04T12:00:24+05:30","id":"492070000199308229","Modified_By":{"name":"Senthilkumar","id":"492070000000209017"}}}]}"#;
        assert_eq!(
            parse_update_answer(412, stale).unwrap(),
            UpdateResult::AlreadyModified {
                modified_time: Some("2023-06-04T12:00:24+05:30".to_owned()),
                modified_by: Some("Senthilkumar".to_owned()),
            }
        );
        let refused = br#"{"data":[{"code":"INVALID_DATA","details":{"api_name":"Email","json_path":"$.data[0].Email"},"message":"invalid data","status":"error"}]}"#;
        for status in [200, 400] {
            assert_eq!(
                parse_update_answer(status, refused).unwrap(),
                UpdateResult::Failed {
                    code: "INVALID_DATA".to_owned(),
                    message: "invalid data".to_owned(),
                    field: Some("Email".to_owned()),
                }
            );
        }
        let unknown = br#"{"data":[{"code":"INVALID_DATA","details":{"api_name":"id"},"message":"the id given seems to be invalid","status":"error"}]}"#;
        assert!(matches!(
            parse_update_answer(400, unknown),
            Err(CrmError::NotFound)
        ));
        let forbidden = br#"{"code":"NO_PERMISSION","details":{"permissions":["Crm_Implied_Edit_Leads"]},"message":"permission denied","status":"error"}"#;
        assert!(matches!(
            parse_update_answer(403, forbidden),
            Err(CrmError::NoPermission)
        ));
        let expired = br#"{"code":"INVALID_TOKEN","details":{},"message":"invalid oauth token","status":"error"}"#;
        assert!(matches!(
            parse_update_answer(401, expired),
            Err(CrmError::InvalidToken(_))
        ));
        assert!(matches!(
            parse_update_answer(200, b"<html>"),
            Err(CrmError::Api { .. })
        ));
    }

    #[test]
    fn identity_answers_are_read() {
        let users: Value = serde_json::from_str(
            r#"{"users":[{"id":"1","email":"liam.o'brien@zylker.com","full_name":"Liam O'Brien","profile":{"name":"Student","id":"9"},"role":{"name":"Student","id":"8"},"zuid":"77"}],"info":{}}"#,
        )
        .unwrap();
        let user: CrmUser = first_of(Some(users), "users").unwrap();
        assert_eq!(user.email, "liam.o'brien@zylker.com");
        assert_eq!(user.profile.unwrap().name, "Student");
        assert!(matches!(
            first_of::<CrmOrg>(None, "org"),
            Err(CrmError::Api { status: 204, .. })
        ));
        let modules: Vec<CrmModule> = list_of(None, "modules").unwrap();
        assert!(modules.is_empty());
    }

    #[test]
    fn auth_debug_redacts_the_token() {
        let domain = domain();
        let auth = CrmAuth {
            api_domain: &domain,
            access_token: &Secret::from("1000.secret-token"),
        };
        assert!(!format!("{auth:?}").contains("secret-token"));
    }

    #[tokio::test]
    async fn a_workers_client_keeps_the_timeout_and_follows_no_redirect() {
        let worker = CrmClient::new(Duration::from_millis(300))
            .unwrap()
            .for_worker();
        // A server that takes the request and never answers.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent_url = Url::parse(&format!("http://{}", silent.local_addr().unwrap())).unwrap();
        tokio::spawn(async move {
            let held = silent.accept().await;
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(held);
        });
        let auth = CrmAuth {
            api_domain: &silent_url,
            access_token: &Secret::from("1000.token"),
        };
        let error = worker.org(auth).await.unwrap_err();
        assert!(matches!(error, CrmError::Timeout), "{error:?}");

        // A redirect is an answer, not an address to take the token to (port 9 would refuse it).
        let redirecting = crate::zoho::accounts::serve_one_answer(
            "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:9/crm/v8/org\r\ncontent-length: 0\r\n\r\n",
            0,
        )
        .await;
        let auth = CrmAuth {
            api_domain: &redirecting,
            access_token: &Secret::from("1000.token"),
        };
        let error = worker.org(auth).await.unwrap_err();
        assert!(
            matches!(error, CrmError::Api { status: 302, .. }),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn a_crm_answer_past_the_cap_is_an_api_error() {
        let server = crate::zoho::accounts::serve_one_answer(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n",
            MAX_CRM_ANSWER_BYTES + 1,
        )
        .await;
        let auth = CrmAuth {
            api_domain: &server,
            access_token: &Secret::from("1000.token"),
        };

        let error = CrmClient::new(Duration::from_secs(30))
            .unwrap()
            .records(auth, "Leads", &["Last_Name"], 1, 200)
            .await
            .unwrap_err();

        assert!(
            matches!(&error, CrmError::Api { code, .. } if code == "ANSWER_TOO_LARGE"),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn a_crm_answer_declaring_more_than_the_cap_is_refused_unread() {
        let server = crate::zoho::accounts::serve_one_answer(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 17000000\r\n\r\n",
            0,
        )
        .await;
        let auth = CrmAuth {
            api_domain: &server,
            access_token: &Secret::from("1000.token"),
        };

        let error = CrmClient::new(Duration::from_secs(30))
            .unwrap()
            .org(auth)
            .await
            .unwrap_err();

        assert!(
            matches!(&error, CrmError::Api { code, .. } if code == "ANSWER_TOO_LARGE"),
            "{error:?}"
        );
    }

    /// A server that reads one request (head and, by its `Content-Length`, body), hands its text over, and
    /// answers with `answer` (status line, headers and body).
    async fn serve_and_capture(
        answer: &'static str,
    ) -> (Url, tokio::sync::oneshot::Receiver<String>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        let (captured, receiver) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buffer = [0u8; 4096];
            loop {
                let read = socket.read(&mut buffer).await.unwrap();
                assert!(read > 0, "the request ended early");
                request.extend_from_slice(&buffer[..read]);
                let text = String::from_utf8_lossy(&request).into_owned();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text[..end]
                        .lines()
                        .find_map(|line| {
                            let (name, value) = line.split_once(':')?;
                            name.eq_ignore_ascii_case("content-length")
                                .then(|| value.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    if request.len() >= end + 4 + length {
                        break;
                    }
                }
            }
            socket.write_all(answer.as_bytes()).await.unwrap();
            let _ = captured.send(String::from_utf8(request).unwrap());
            let _ = socket.shutdown().await;
        });
        (url, receiver)
    }

    #[tokio::test]
    async fn an_update_goes_out_as_a_put_with_its_json_and_headers() {
        let (server, captured) = serve_and_capture(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 113\r\n\r\n{\"data\":[{\"code\":\"SUCCESS\",\"details\":{\"Modified_Time\":\"2026-01-05T10:00:00+05:30\",\"id\":\"7\"},\"status\":\"success\"}]}",
        )
        .await;
        let auth = CrmAuth {
            api_domain: &server,
            access_token: &Secret::from("1000.token"),
        };
        let mut record = Record::new();
        record.insert("Phone", "+91 98765 43210");

        let answer = CrmClient::new(Duration::from_secs(10))
            .unwrap()
            .update_record(
                auth,
                "Leads",
                "7",
                &record,
                Some("2026-01-05T09:00:00+05:30"),
            )
            .await;

        assert_eq!(
            answer.unwrap(),
            UpdateResult::Updated {
                modified_time: Some("2026-01-05T10:00:00+05:30".to_owned())
            }
        );
        let request = captured.await.unwrap();
        let (head, body) = request.split_once("\r\n\r\n").unwrap();
        let head = head.to_ascii_lowercase();
        assert!(
            head.starts_with("put /crm/v8/leads/7 http/1.1\r\n"),
            "{head}"
        );
        for line in [
            "authorization: zoho-oauthtoken 1000.token",
            "content-type: application/json",
            "if-unmodified-since: 2026-01-05t09:00:00+05:30",
            "accept: */*",
            &format!("host: {}", server.authority()),
            &format!("content-length: {}", body.len()),
        ] {
            assert!(
                head.lines().any(|header| header == line),
                "{line} in {head}"
            );
        }
        let sent: Value = serde_json::from_str(body).unwrap();
        assert_eq!(
            sent,
            serde_json::json!({"data": [{"Phone": "+91 98765 43210", "id": "7"}]})
        );
    }

    #[tokio::test]
    async fn an_answer_whose_body_stalls_is_a_timeout() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // The head and a tenth of the body come at once; the rest never does.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = vec![0; 16 * 1024];
            let _ = socket.read(&mut request).await;
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{\"data\":[")
                .await;
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        let auth = CrmAuth {
            api_domain: &server,
            access_token: &Secret::from("1000.token"),
        };

        let error = CrmClient::new(Duration::from_millis(300))
            .unwrap()
            .records(auth, "Leads", &["Last_Name"], 1, 20)
            .await
            .unwrap_err();

        assert!(matches!(error, CrmError::Timeout), "{error:?}");
    }

    #[tokio::test]
    async fn an_https_address_the_environment_sends_through_a_proxy_is_tunnelled_and_stays_tls() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // A proxy that opens the tunnel, then keeps what comes through it first and hangs up.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = format!("http://user:pass@{}", listener.local_addr().unwrap());
        let (seen, received) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                let mut byte = [0; 1];
                socket.read_exact(&mut byte).await.unwrap();
                head.push(byte[0]);
            }
            socket
                .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                .await
                .unwrap();
            let mut hello = vec![0; 16 * 1024];
            let read = socket.read(&mut hello).await.unwrap();
            hello.truncate(read);
            let _ = seen.send((String::from_utf8(head).unwrap(), hello));
        });
        let proxies = Matcher::builder().all(proxy).no("localhost").build();
        let connector = connector_with(Duration::from_secs(10), proxies).unwrap();
        let client = CrmClient {
            http: pooled(connector.clone()),
            connector,
            timeout: Duration::from_secs(10),
            telemetry: Arc::default(),
        };
        let server = Url::parse("https://www.zohoapis.zylker.example").unwrap();
        let auth = CrmAuth {
            api_domain: &server,
            access_token: &Secret::from("1000.token"),
        };

        let error = client.org(auth).await.unwrap_err();

        assert!(matches!(error, CrmError::Unreachable(_)), "{error:?}");
        let (head, hello) = tokio::time::timeout(Duration::from_secs(5), received)
            .await
            .expect("the proxy was asked for a tunnel")
            .unwrap();
        assert!(
            head.starts_with("CONNECT www.zohoapis.zylker.example:443 HTTP/1.1\r\n"),
            "{head}"
        );
        // user:pass as basic authentication.
        assert!(
            head.to_ascii_lowercase()
                .contains("proxy-authorization: basic dxnlcjpwyxnz"),
            "{head}"
        );
        assert!(!head.contains("1000.token"));
        // Through the tunnel, TLS with Zoho's host: the proxy sees no token.
        assert_eq!(hello.first(), Some(&0x16), "{hello:?}");
        let contains = |needle: &[u8]| hello.windows(needle.len()).any(|window| window == needle);
        assert!(contains(b"www.zohoapis.zylker.example"));
        assert!(!contains(b"1000.token"));

        // Plain http goes straight, though the settings name a proxy for it too.
        let direct = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = direct.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut socket, _) = direct.accept().await.unwrap();
            let mut buffer = vec![0; 4096];
            let _ = socket.read(&mut buffer).await;
            let body = br#"{"org":[{"id":"1","company_name":"Z"}]}"#;
            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
            let _ = socket.write_all(head.as_bytes()).await;
            let _ = socket.write_all(body).await;
        });
        let server = Url::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let auth = CrmAuth {
            api_domain: &server,
            access_token: &Secret::from("1000.token"),
        };
        assert_eq!(client.org(auth).await.unwrap().id, "1");

        // So does an https host the settings leave out (NO_PROXY): its first bytes are TLS, not CONNECT.
        let direct = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = direct.local_addr().unwrap().port();
        let (first, received) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (mut socket, _) = direct.accept().await.unwrap();
            let mut byte = [0; 1];
            socket.read_exact(&mut byte).await.unwrap();
            let _ = first.send(byte[0]);
        });
        let server = Url::parse(&format!("https://localhost:{port}")).unwrap();
        let auth = CrmAuth {
            api_domain: &server,
            access_token: &Secret::from("1000.token"),
        };
        assert!(client.org(auth).await.is_err());
        let first = tokio::time::timeout(Duration::from_secs(5), received).await;
        assert_eq!(
            first.expect("a connection straight to the host").unwrap(),
            0x16
        );
    }

    #[tokio::test]
    async fn an_https_address_goes_through_rustls() {
        use tokio::io::AsyncReadExt;
        // Not a TLS server: it keeps what the client sends first (its ClientHello) and hangs up.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (hello, received) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buffer = vec![0; 16 * 1024];
            let read = socket.read(&mut buffer).await.unwrap();
            buffer.truncate(read);
            let _ = hello.send(buffer);
        });
        let server = Url::parse(&format!("https://localhost:{port}")).unwrap();
        let auth = CrmAuth {
            api_domain: &server,
            access_token: &Secret::from("1000.token"),
        };

        let error = CrmClient::new(Duration::from_secs(10))
            .unwrap()
            .org(auth)
            .await
            .unwrap_err();

        assert!(matches!(error, CrmError::Unreachable(_)), "{error:?}");
        let hello = received.await.unwrap();
        // A TLS handshake record, naming the host (SNI) and asking for HTTP/1.1 (ALPN); no token in it.
        assert_eq!(hello.first(), Some(&0x16), "{hello:?}");
        let contains = |needle: &[u8]| hello.windows(needle.len()).any(|window| window == needle);
        assert!(contains(b"localhost"));
        assert!(contains(b"http/1.1"));
        assert!(!contains(b"1000.token"));
    }
}
