//! Zoho CRM v8 under `/crm/v8`: the current user, the org, module and field metadata, and records (listed, read,
//! searched, created and updated).
//!
//! Every call is counted, may meet an injected fault, and is authorized as Zoho does it: the
//! `Zoho-oauthtoken` scheme, then the token, then its scopes, then the persona's profile.

use std::sync::Arc;
use std::time::Duration;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::data::{
    self, MODULES, ModuleDef, ORG_ID, PERSONAS, Persona, Record, field_json, module_by_name,
    module_json, user_ref, zoho_datetime,
};
use super::limits::{CallKind, Refusal};
use super::page_tokens::{Bound, Refusal as PageTokenRefusal};
use super::state::{AccessError, Caller, Counter, SandboxState};

/// Zoho's maximum of `fields` on a list call.
const MAX_FIELDS: usize = 50;
/// Zoho's maximum (and default) `per_page`.
const MAX_PER_PAGE: usize = 200;
/// Records reachable with `page` alone; beyond, Zoho wants `page_token`.
const DISCRETE_PAGINATION_LIMIT: usize = 2000;
/// Records reachable at all through consecutive `page_token`s.
const PAGE_TOKEN_LIMIT: usize = 100_000;
/// Records per create call.
const MAX_RECORDS_PER_CREATE: usize = 100;
/// Records one search can reach, whatever the page (`docs/zoho-protocol.md#search`).
const MAX_SEARCH_RESULTS: usize = 2000;
/// Characters a searched value needs.
const MIN_SEARCH_CHARS: usize = 2;

/// A CRM error in Zoho's envelope `{code, details, message, status: "error"}`.
#[derive(Debug)]
pub struct CrmError {
    status: StatusCode,
    code: &'static str,
    details: Value,
    message: &'static str,
}

impl CrmError {
    fn new(status: StatusCode, code: &'static str, details: Value, message: &'static str) -> Self {
        CrmError {
            status,
            code,
            details,
            message,
        }
    }

    fn authentication_failure() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "AUTHENTICATION_FAILURE",
            json!({}),
            "Authentication failed",
        )
    }

    fn invalid_token() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "INVALID_TOKEN",
            json!({}),
            "invalid oauth token",
        )
    }

    fn scope_mismatch() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "OAUTH_SCOPE_MISMATCH",
            json!({}),
            "invalid oauth scope to access this URL",
        )
    }

    fn no_permission(module: &ModuleDef) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "NO_PERMISSION",
            json!({"permissions": [format!("Crm_Implied_View_{}", module.api_name)]}),
            "permission denied",
        )
    }

    /// The profile may open the module but not edit its records. Zoho's pages show this answer's shape for an
    /// update with an example naming a view permission; the permission named here is the sandbox's.
    fn no_edit_permission(module: &ModuleDef) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "NO_PERMISSION",
            json!({"permissions": [format!("Crm_Implied_Edit_{}", module.api_name)]}),
            "permission denied",
        )
    }

    fn invalid_module() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "INVALID_MODULE",
            json!({}),
            "the module name given seems to be invalid",
        )
    }

    fn required_param_missing(param_name: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "REQUIRED_PARAM_MISSING",
            json!({"param_name": param_name}),
            "One of the expected parameter is missing",
        )
    }

    fn invalid_param(param_name: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "INVALID_DATA",
            json!({"param_name": param_name}),
            "invalid data",
        )
    }

    fn into_response(self, sandbox: &SandboxState) -> HttpResponse {
        if self.status == StatusCode::UNAUTHORIZED {
            sandbox.bump(Counter::Unauthorized);
        }
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            sandbox.bump(Counter::Crm429);
        }
        HttpResponse::build(self.status).json(json!({
            "code": self.code,
            "details": self.details,
            "message": self.message,
            "status": "error",
        }))
    }
}

type CrmResult = Result<HttpResponse, CrmError>;

fn answer(sandbox: &SandboxState, result: CrmResult) -> HttpResponse {
    result.unwrap_or_else(|error| error.into_response(sandbox))
}

/// Every call under `/crm/v8`: counted, then admitted within Zoho's limits (a place in the org's cap and a
/// credit) or answered 429, then held for the configured latency, its place kept until the answer is made.
pub async fn limit(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let Some(sandbox) = request.app_data::<web::Data<SandboxState>>().cloned() else {
        return Ok(next.call(request).await?.map_into_left_body());
    };
    sandbox.bump(Counter::CrmCalls);
    let kind = if is_search_path(request.path()) {
        CallKind::Search
    } else {
        CallKind::Plain
    };
    let _place = match sandbox.admit_crm_call(kind) {
        Ok(place) => place,
        Err(refusal) => {
            let answer = too_many_requests(refusal).into_response(&sandbox);
            return Ok(request.into_response(answer).map_into_right_body());
        }
    };
    let latency = sandbox.crm_limits().latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    Ok(next.call(request).await?.map_into_left_body())
}

/// Whether `path` is `/crm/v8/{module}/search`: a search, under the sub-limit on searches.
fn is_search_path(path: &str) -> bool {
    path.strip_prefix("/crm/v8/")
        .and_then(|rest| rest.split_once('/'))
        .is_some_and(|(module, rest)| !module.is_empty() && rest == "search")
}

/// Zoho's answer over a limit: `TOO_MANY_REQUESTS` for each. Zoho documents no `Retry-After` for it, so none
/// is sent.
fn too_many_requests(refusal: Refusal) -> CrmError {
    let message = match refusal {
        Refusal::Concurrency => "Too many concurrent requests. Please try again after some time.",
        Refusal::SearchConcurrency => {
            "Too many concurrent search requests. Please try again after some time."
        }
        Refusal::Credits => "The API credits of the day are exhausted. Please try again later.",
    };
    CrmError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "TOO_MANY_REQUESTS",
        json!({}),
        message,
    )
}

/// Applies an injected fault and finds the caller behind the `Zoho-oauthtoken` header.
async fn enter(request: &HttpRequest, sandbox: &SandboxState) -> Result<Caller, CrmError> {
    if let Some(fault) = sandbox.take_crm_fault() {
        if let Some(delay) = fault.delay {
            actix_web::rt::time::sleep(delay.min(Duration::from_secs(120))).await;
        }
        if let Some(status) = fault.status {
            return Err(injected(status));
        }
    }
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let token = match header.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("Zoho-oauthtoken") => token.trim(),
        _ => return Err(CrmError::authentication_failure()),
    };
    sandbox
        .caller(token)
        .map_err(|AccessError::InvalidToken| CrmError::invalid_token())
}

fn injected(status: u16) -> CrmError {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match status.as_u16() {
        429 => CrmError::new(
            status,
            "TOO_MANY_REQUESTS",
            json!({}),
            "Too many requests. Please try again after some time.",
        ),
        401 => CrmError::invalid_token(),
        500..=599 => CrmError::new(
            status,
            "INTERNAL_ERROR",
            json!({}),
            "Internal Server Error occurred while processing this request",
        ),
        _ => CrmError::new(status, "INVALID_REQUEST", json!({}), "invalid request"),
    }
}

fn persona(caller: &Caller) -> &'static Persona {
    &PERSONAS[caller.persona]
}

fn query_pairs(request: &HttpRequest) -> Result<Vec<(String, String)>, CrmError> {
    serde_urlencoded::from_str(request.query_string()).map_err(|_| {
        CrmError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_DATA",
            json!({}),
            "invalid data",
        )
    })
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

fn user_json(persona: &Persona) -> Value {
    json!({
        "id": persona.id,
        "email": persona.email,
        "full_name": persona.full_name,
        "first_name": persona.first_name,
        "last_name": persona.last_name,
        "zuid": persona.zuid,
        "role": {"name": persona.role, "id": persona.role_id},
        "profile": {"name": persona.profile.name, "id": persona.profile.id},
        "status": "active",
        "confirm": true,
        "time_zone": "Asia/Kolkata",
        "locale": "en_IN",
        "language": "en_US",
        "country": "IN",
        "alias": null,
        "phone": null,
        "mobile": null,
    })
}

/// `GET /crm/v8/users?type=…`.
pub async fn users(request: HttpRequest, sandbox: web::Data<SandboxState>) -> HttpResponse {
    let result = async {
        let caller = enter(&request, &sandbox).await?;
        if !caller
            .scopes
            .grants_any(&["zohocrm.users.all", "zohocrm.users.read"])
        {
            return Err(CrmError::scope_mismatch());
        }
        let pairs = query_pairs(&request)?;
        let chosen: Vec<&Persona> = match param(&pairs, "type").unwrap_or("AllUsers") {
            "CurrentUser" => vec![persona(&caller)],
            "AllUsers" | "ActiveUsers" | "ConfirmedUsers" | "ActiveConfirmedUsers" => {
                PERSONAS.iter().collect()
            }
            "AdminUsers" | "ActiveConfirmedAdmins" => PERSONAS
                .iter()
                .filter(|persona| persona.profile.name == "Administrator")
                .collect(),
            "DeactiveUsers" | "NotConfirmedUsers" | "DeletedUsers" => Vec::new(),
            _ => return Err(CrmError::invalid_param("type")),
        };
        if chosen.is_empty() {
            return Ok(HttpResponse::NoContent().finish());
        }
        let count = chosen.len();
        Ok(HttpResponse::Ok().json(json!({
            "users": chosen.into_iter().map(user_json).collect::<Vec<_>>(),
            "info": {"per_page": 200, "count": count, "page": 1, "more_records": false},
        })))
    }
    .await;
    answer(&sandbox, result)
}

/// `GET /crm/v8/org`.
pub async fn org(request: HttpRequest, sandbox: web::Data<SandboxState>) -> HttpResponse {
    let result = async {
        let caller = enter(&request, &sandbox).await?;
        if !caller
            .scopes
            .grants_any(&["zohocrm.org.all", "zohocrm.org.read"])
        {
            return Err(CrmError::scope_mismatch());
        }
        Ok(HttpResponse::Ok().json(json!({"org": [{
            "id": ORG_ID,
            "company_name": data::COMPANY_NAME,
            "alias": "zylkeracademy",
            "primary_email": PERSONAS[0].email,
            "primary_zuid": PERSONAS[0].zuid,
            "zgid": ORG_ID,
            "domain_name": format!("org{ORG_ID}"),
            "time_zone": "Asia/Kolkata",
            "country_code": "IN",
            "currency": "Indian Rupee - INR",
            "currency_symbol": "₹",
            "iso_code": "INR",
            "type": "production",
            "mc_status": false,
            "website": "https://academy.zylker.example",
            "city": "Chennai",
            "country": "India",
        }]})))
    }
    .await;
    answer(&sandbox, result)
}

/// `GET /crm/v8/settings/modules`: the modules the caller's profile can see (and the API-less ones, which a
/// client filters out with `api_supported`).
pub async fn modules(request: HttpRequest, sandbox: web::Data<SandboxState>) -> HttpResponse {
    let result = async {
        let caller = enter(&request, &sandbox).await?;
        if !caller.scopes.grants_any(&[
            "zohocrm.settings.all",
            "zohocrm.settings.modules.all",
            "zohocrm.settings.modules.read",
        ]) {
            return Err(CrmError::scope_mismatch());
        }
        let profile = persona(&caller).profile;
        // Hiding what the profile cannot open is a sandbox choice: Zoho's documentation does not say whether
        // modules without permission are listed; the portal builds its navigation from this list.
        let modules: Vec<Value> = MODULES
            .iter()
            .filter(|module| !module.api_supported || profile.allows(module.api_name))
            .map(|module| module_json(module, profile))
            .collect();
        Ok(HttpResponse::Ok().json(json!({ "modules": modules })))
    }
    .await;
    answer(&sandbox, result)
}

/// `GET /crm/v8/settings/modules/{api_name}`: one module's description.
pub async fn module(
    request: HttpRequest,
    path: web::Path<String>,
    sandbox: web::Data<SandboxState>,
) -> HttpResponse {
    let result = async {
        let caller = enter(&request, &sandbox).await?;
        if !caller.scopes.grants_any(&[
            "zohocrm.settings.all",
            "zohocrm.settings.modules.all",
            "zohocrm.settings.modules.read",
        ]) {
            return Err(CrmError::scope_mismatch());
        }
        let module = open_module(&path, &caller)?;
        let profile = persona(&caller).profile;
        Ok(HttpResponse::Ok().json(json!({ "modules": [module_json(module, profile)] })))
    }
    .await;
    answer(&sandbox, result)
}

/// The API module named in a URL or parameter, if the caller's profile may open it.
fn open_module(name: &str, caller: &Caller) -> Result<&'static ModuleDef, CrmError> {
    let module = module_by_name(name)
        .filter(|module| module.api_supported)
        .ok_or_else(CrmError::invalid_module)?;
    if persona(caller).profile.allows(module.api_name) {
        Ok(module)
    } else {
        Err(CrmError::no_permission(module))
    }
}

/// `GET /crm/v8/settings/fields?module=`.
pub async fn fields(request: HttpRequest, sandbox: web::Data<SandboxState>) -> HttpResponse {
    let result = async {
        let caller = enter(&request, &sandbox).await?;
        if !caller.scopes.grants_any(&[
            "zohocrm.settings.all",
            "zohocrm.settings.fields.all",
            "zohocrm.settings.fields.read",
        ]) {
            return Err(CrmError::scope_mismatch());
        }
        let pairs = query_pairs(&request)?;
        let name = param(&pairs, "module")
            .filter(|name| !name.is_empty())
            .ok_or_else(|| CrmError::required_param_missing("module"))?;
        let module = open_module(name, &caller)?;
        let fields: Vec<Value> = module
            .fields
            .iter()
            .enumerate()
            .map(|(index, def)| field_json(module, index, def))
            .collect();
        Ok(HttpResponse::Ok().json(json!({ "fields": fields })))
    }
    .await;
    answer(&sandbox, result)
}

fn check_record_scope(caller: &Caller, module: &str, create: bool) -> Result<(), CrmError> {
    let (general, ops): (&[&str], &[&str]) = if create {
        (
            &[
                "zohocrm.modules.all",
                "zohocrm.modules.create",
                "zohocrm.modules.write",
            ],
            &["all", "create", "write"],
        )
    } else {
        (
            &["zohocrm.modules.all", "zohocrm.modules.read"],
            &["all", "read"],
        )
    };
    if caller.scopes.grants_any(general) || caller.scopes.grants_module(module, ops) {
        Ok(())
    } else {
        Err(CrmError::scope_mismatch())
    }
}

/// An update needs `ZohoCRM.modules.ALL`, `.UPDATE` or `.WRITE`, for every module or for this one.
fn check_update_scope(caller: &Caller, module: &str) -> Result<(), CrmError> {
    let general = [
        "zohocrm.modules.all",
        "zohocrm.modules.update",
        "zohocrm.modules.write",
    ];
    if caller.scopes.grants_any(&general)
        || caller
            .scopes
            .grants_module(module, &["all", "update", "write"])
    {
        Ok(())
    } else {
        Err(CrmError::scope_mismatch())
    }
}

/// The fields asked for: comma-separated, at most 50, duplicates dropped.
fn requested_fields(raw: &str) -> Result<Vec<&str>, CrmError> {
    let mut fields: Vec<&str> = Vec::new();
    for field in raw
        .split(',')
        .map(str::trim)
        .filter(|field| !field.is_empty())
    {
        if !fields.contains(&field) {
            fields.push(field);
        }
    }
    if fields.is_empty() {
        return Err(CrmError::required_param_missing("fields"));
    }
    if fields.len() > MAX_FIELDS {
        return Err(CrmError::new(
            StatusCode::BAD_REQUEST,
            "LIMIT_EXCEEDED",
            json!({"param_name": "fields", "limit": MAX_FIELDS}),
            "the number of fields exceeds the limit",
        ));
    }
    Ok(fields)
}

/// A record cut down to `id` and the requested fields; a known field the record lacks is `null`, as in Zoho.
fn project(module: &ModuleDef, record: &Record, fields: Option<&[&str]>) -> Value {
    let Some(fields) = fields else {
        return Value::Object(record.clone());
    };
    let mut out = Map::new();
    if let Some(id) = record.get("id") {
        out.insert("id".to_owned(), id.clone());
    }
    for field in fields {
        match record.get(*field) {
            Some(value) => {
                out.insert((*field).to_owned(), value.clone());
            }
            None if module.field(field).is_some() => {
                out.insert((*field).to_owned(), Value::Null);
            }
            None => {}
        }
    }
    Value::Object(out)
}

fn positive_param(
    pairs: &[(String, String)],
    name: &str,
    default: usize,
) -> Result<usize, CrmError> {
    match param(pairs, name) {
        None => Ok(default),
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|value| *value >= 1)
            .ok_or_else(|| CrmError::invalid_param(name)),
    }
}

/// The fields a list can be sorted by (`sort_by`), Zoho's default first.
const SORTABLE: [&str; 3] = ["id", "Created_Time", "Modified_Time"];

/// `GET /crm/v8/{module}`: one page of records, newest first by default; `sort_by` and `sort_order` choose
/// the order, and past the first 2,000 records `page_token` names the page
/// (`docs/zoho-protocol.md#page-tokens`).
pub async fn list_records(
    request: HttpRequest,
    path: web::Path<String>,
    sandbox: web::Data<SandboxState>,
) -> HttpResponse {
    let result = async {
        let caller = enter(&request, &sandbox).await?;
        check_record_scope(&caller, &path, false)?;
        let module = open_module(&path, &caller)?;
        let pairs = query_pairs(&request)?;
        let ids: Option<Vec<u64>> = param(&pairs, "ids").map(|ids| {
            ids.split(',')
                .filter_map(|id| id.trim().parse().ok())
                .collect()
        });
        // `fields` is mandatory for a listing since v3; with `ids` the SDK's samples omit it.
        let fields = match (param(&pairs, "fields"), &ids) {
            (Some(raw), _) => Some(requested_fields(raw)?),
            (None, Some(_)) => None,
            (None, None) => return Err(CrmError::required_param_missing("fields")),
        };
        let page_token = param(&pairs, "page_token");
        if page_token.is_some() && param(&pairs, "page").is_some() {
            return Err(CrmError::new(
                StatusCode::BAD_REQUEST,
                "AMBIGUITY_DURING_PROCESSING",
                json!({"ambiguity_due_to": [{"param_name": "page"}, {"param_name": "page_token"}]}),
                "page and page_token cannot be given together",
            ));
        }
        let page = positive_param(&pairs, "page", 1)?;
        let per_page = positive_param(&pairs, "per_page", MAX_PER_PAGE)?;
        if per_page > MAX_PER_PAGE {
            return Err(CrmError::invalid_param("per_page"));
        }
        let sort_by = param(&pairs, "sort_by").unwrap_or("id");
        if !SORTABLE.contains(&sort_by) {
            return Err(CrmError::new(
                StatusCode::BAD_REQUEST,
                "INVALID_DATA",
                json!({"param_name": "sort_by", "supported_values": SORTABLE}),
                "invalid data",
            ));
        }
        let sort_order = param(&pairs, "sort_order").unwrap_or("desc");
        let ascending = match sort_order {
            "asc" => true,
            "desc" => false,
            _ => return Err(CrmError::invalid_param("sort_order")),
        };
        let bound = Bound::of(module.api_name, &pairs);
        let now_ms = sandbox.now_ms();
        let offset = match page_token {
            Some(token) => open_page_token(&sandbox, token, caller.persona, bound, now_ms)?,
            None => {
                let offset = (page - 1).saturating_mul(per_page);
                if offset >= DISCRETE_PAGINATION_LIMIT {
                    return Err(CrmError::new(
                        StatusCode::BAD_REQUEST,
                        "DISCRETE_PAGINATION_LIMIT_EXCEEDED",
                        json!({"limit": DISCRETE_PAGINATION_LIMIT}),
                        "You can only get the first 2000 records without using page_token param",
                    ));
                }
                offset
            }
        };
        let (rows, total) = sandbox.with_records(|records| {
            let Some(records) = records.get(module.api_name) else {
                return (Vec::new(), 0);
            };
            let wanted = |id: &u64| ids.as_ref().is_none_or(|ids| ids.contains(id));
            if sort_by == "id" {
                let sorted: Box<dyn Iterator<Item = (&u64, &Arc<Record>)>> = if ascending {
                    Box::new(records.by_id.iter())
                } else {
                    Box::new(records.by_id.iter().rev())
                };
                if ids.is_none() {
                    let rows = page_of(sorted.map(|(_, record)| record), offset, per_page);
                    return (rows, records.by_id.len());
                }
                let matching: Vec<&Arc<Record>> = sorted
                    .filter(|(id, _)| wanted(id))
                    .map(|(_, record)| record)
                    .collect();
                let total = matching.len();
                return (page_of(matching.into_iter(), offset, per_page), total);
            }
            // Zoho writes every datetime in the org's time zone with whole seconds, so the texts sort as the
            // times do; equal times fall back on the id (creation order).
            let mut matching: Vec<(&str, u64, &Arc<Record>)> = records
                .by_id
                .iter()
                .filter(|(id, _)| wanted(id))
                .map(|(id, record)| {
                    let at = record.get(sort_by).and_then(Value::as_str).unwrap_or("");
                    (at, *id, record)
                })
                .collect();
            matching.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
            if !ascending {
                matching.reverse();
            }
            let total = matching.len();
            let sorted = matching.into_iter().map(|(_, _, record)| record);
            (page_of(sorted, offset, per_page), total)
        });
        if rows.is_empty() {
            return Ok(HttpResponse::NoContent().finish());
        }
        let count = rows.len();
        let data = projected(module, &rows, fields.as_deref());
        // Zoho hands out a token for the next page with every page that has one, and one for the previous page
        // with a page reached by token.
        let after = offset + count;
        let more_records = after < total;
        let next = (more_records && after < PAGE_TOKEN_LIMIT).then(|| {
            sandbox
                .page_tokens
                .issue(caller.persona, after, bound, now_ms)
        });
        let previous = (page_token.is_some() && offset > 0).then(|| {
            let start = offset.saturating_sub(per_page);
            sandbox
                .page_tokens
                .issue(caller.persona, start, bound, now_ms)
                .0
        });
        let expiry = next.as_ref().map(|(_, expires_at_ms)| {
            let at = OffsetDateTime::from_unix_timestamp(expires_at_ms / 1000)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH);
            zoho_datetime(at)
        });
        Ok(HttpResponse::Ok().json(json!({
            "data": data,
            "info": {
                "per_page": per_page,
                "count": count,
                "page": offset / per_page + 1,
                "sort_by": sort_by,
                "sort_order": sort_order,
                "more_records": more_records,
                "next_page_token": next.map(|(token, _)| token),
                "previous_page_token": previous,
                "page_token_expiry": expiry,
            },
        })))
    }
    .await;
    answer(&sandbox, result)
}

/// What a search looks for, from its parameter: a word in the text fields, an email address in the email
/// fields, a phone number in the phone fields.
enum Sought {
    /// Lower-cased.
    Word(String),
    /// Lower-cased.
    Email(String),
    /// Its digits.
    Phone(String),
}

impl Sought {
    /// Zoho takes one of `criteria`, `email`, `phone`, `word`, in that order of preference; an empty one counts
    /// as not given.
    fn from_params(pairs: &[(String, String)]) -> Result<Sought, CrmError> {
        let given = |name| param(pairs, name).filter(|value| !value.is_empty());
        if given("criteria").is_some() {
            // The portal searches by word, email or phone only; criteria are not played here.
            return Err(CrmError::new(
                StatusCode::BAD_REQUEST,
                "INVALID_QUERY",
                json!({"param_name": "criteria", "reason": "criteria are not played by the sandbox"}),
                "invalid query formed",
            ));
        }
        let (name, value) = [
            ("email", given("email")),
            ("phone", given("phone")),
            ("word", given("word")),
        ]
        .into_iter()
        .find_map(|(name, value)| value.map(|value| (name, value.trim())))
        .ok_or_else(|| {
            CrmError::new(
                StatusCode::BAD_REQUEST,
                "EXPECTED_PARAM_MISSING",
                json!({"param_name": ["criteria", "email", "phone", "word"]}),
                "mandatory param missing",
            )
        })?;
        // "At least two characters", read as two letters or digits: a value of punctuation alone is refused too.
        if value.chars().filter(|c| c.is_alphanumeric()).count() < MIN_SEARCH_CHARS {
            return Err(CrmError::new(
                StatusCode::BAD_REQUEST,
                "INVALID_DATA",
                json!({"param_name": name}),
                "The search value contains special characters or does not contain at least two characters",
            ));
        }
        Ok(match name {
            "email" => Sought::Email(value.to_lowercase()),
            "phone" => Sought::Phone(digits(value)),
            _ => Sought::Word(value.to_lowercase()),
        })
    }

    /// Whether `record` of `module` holds what is sought.
    fn found_in(&self, module: &ModuleDef, record: &Record) -> bool {
        let texts = |types: &'static [&'static str]| {
            module
                .fields
                .iter()
                .filter(move |def| types.contains(&def.data_type))
                .filter_map(|def| record.get(def.api_name).and_then(Value::as_str))
        };
        match self {
            Sought::Word(word) => {
                texts(&["text", "textarea", "email", "phone", "picklist", "website"])
                    .any(|text| text.to_lowercase().contains(word.as_str()))
            }
            Sought::Email(email) => texts(&["email"]).any(|text| text.to_lowercase() == *email),
            // Numbers are compared by their digits; one written without its country code finds it with one.
            Sought::Phone(wanted) => {
                !wanted.is_empty()
                    && texts(&["phone"]).any(|text| digits(text).ends_with(wanted.as_str()))
            }
        }
    }
}

fn digits(text: &str) -> String {
    text.chars().filter(char::is_ascii_digit).collect()
}

fn check_search_scope(caller: &Caller) -> Result<(), CrmError> {
    if caller.scopes.grants_any(&[
        "zohosearch.securesearch.read",
        "zohosearch.securesearch.all",
    ]) {
        Ok(())
    } else {
        Err(CrmError::scope_mismatch())
    }
}

/// `GET /crm/v8/{module}/search?word=…` (or `email=`, `phone=`): one page of the records holding it, newest
/// first; 204 when none does. Only the first 2,000 matches can be reached (`LIMIT_REACHED` past them).
pub async fn search_records(
    request: HttpRequest,
    path: web::Path<String>,
    sandbox: web::Data<SandboxState>,
) -> HttpResponse {
    let result = async {
        let caller = enter(&request, &sandbox).await?;
        check_record_scope(&caller, &path, false)?;
        check_search_scope(&caller)?;
        let module = open_module(&path, &caller)?;
        let pairs = query_pairs(&request)?;
        let sought = Sought::from_params(&pairs)?;
        let fields = param(&pairs, "fields").map(requested_fields).transpose()?;
        let page = positive_param(&pairs, "page", 1)?;
        let per_page = positive_param(&pairs, "per_page", MAX_PER_PAGE)?;
        if per_page > MAX_PER_PAGE {
            return Err(CrmError::invalid_param("per_page"));
        }
        let offset = (page - 1).saturating_mul(per_page);
        if offset >= MAX_SEARCH_RESULTS {
            return Err(CrmError::new(
                StatusCode::BAD_REQUEST,
                "LIMIT_REACHED",
                json!({"limit": MAX_SEARCH_RESULTS}),
                "Maximum response iteration limit reached",
            ));
        }
        let (rows, reachable): (Vec<Arc<Record>>, usize) = sandbox.with_records(|records| {
            let Some(records) = records.get(module.api_name) else {
                return (Vec::new(), 0);
            };
            let found: Vec<&Arc<Record>> = records
                .by_id
                .values()
                .rev()
                .filter(|record| sought.found_in(module, record))
                .take(MAX_SEARCH_RESULTS)
                .collect();
            (
                page_of(found.iter().copied(), offset, per_page),
                found.len(),
            )
        });
        if rows.is_empty() {
            return Ok(HttpResponse::NoContent().finish());
        }
        let count = rows.len();
        let data = projected(module, &rows, fields.as_deref());
        Ok(HttpResponse::Ok().json(json!({
            "data": data,
            "info": {
                "per_page": per_page,
                "count": count,
                "page": page,
                "more_records": offset + count < reachable,
            },
        })))
    }
    .await;
    answer(&sandbox, result)
}

/// A page's records with the fields asked for (all when none were).
fn projected(module: &ModuleDef, rows: &[Arc<Record>], fields: Option<&[&str]>) -> Vec<Value> {
    rows.iter()
        .map(|record| project(module, record, fields))
        .collect()
}

/// The `per_page` records from `offset` on.
fn page_of<'a>(
    sorted: impl Iterator<Item = &'a Arc<Record>>,
    offset: usize,
    per_page: usize,
) -> Vec<Arc<Record>> {
    sorted.skip(offset).take(per_page).map(Arc::clone).collect()
}

/// Where the page a `page_token` names starts, or Zoho's refusal: `TOKEN_BOUND_DATA_MISMATCH` for a token that
/// is not this user's or not for these parameters, `EXPIRED_VALUE` for an old one, and
/// `PAGINATION_LIMIT_EXCEEDED` past the 100,000th record.
fn open_page_token(
    sandbox: &SandboxState,
    token: &str,
    persona: usize,
    bound: Bound,
    now_ms: i64,
) -> Result<usize, CrmError> {
    let position = sandbox
        .page_tokens
        .open(token, persona, bound, now_ms)
        .map_err(|refusal| match refusal {
            PageTokenRefusal::Mismatch => CrmError::new(
                StatusCode::BAD_REQUEST,
                "TOKEN_BOUND_DATA_MISMATCH",
                json!({"param_name": "page_token"}),
                "The page_token given seems to be invalid or input param is added or altered or deleted",
            ),
            PageTokenRefusal::Expired => CrmError::new(
                StatusCode::BAD_REQUEST,
                "EXPIRED_VALUE",
                json!({"api_name": "page_token", "json_path": "$.query.page_token"}),
                "Page token expired",
            ),
        })?;
    if position >= PAGE_TOKEN_LIMIT {
        return Err(CrmError::new(
            StatusCode::BAD_REQUEST,
            "PAGINATION_LIMIT_EXCEEDED",
            json!({"param_name": "page_token"}),
            "You can only get upto 100000 records using page_token param",
        ));
    }
    Ok(position)
}

/// A write's body as JSON, or Zoho's `INVALID_DATA` for anything else.
fn json_body(body: &[u8]) -> Result<Value, CrmError> {
    serde_json::from_slice(body).map_err(|_| {
        CrmError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_DATA",
            json!({}),
            "the request body is not valid JSON",
        )
    })
}

/// A write's `data`: the records, at least one (`REQUIRED_PARAM_MISSING` otherwise).
fn records_of(body: &Value) -> Result<&Vec<Value>, CrmError> {
    body.get("data")
        .and_then(Value::as_array)
        .filter(|inputs| !inputs.is_empty())
        .ok_or_else(|| CrmError::required_param_missing("data"))
}

/// `GET /crm/v8/{module}/{id}`.
pub async fn get_record(
    request: HttpRequest,
    path: web::Path<(String, String)>,
    sandbox: web::Data<SandboxState>,
) -> HttpResponse {
    let (module_name, id) = path.into_inner();
    let result = async {
        let caller = enter(&request, &sandbox).await?;
        check_record_scope(&caller, &module_name, false)?;
        let module = open_module(&module_name, &caller)?;
        let pairs = query_pairs(&request)?;
        let fields = param(&pairs, "fields").map(requested_fields).transpose()?;
        let record = id.parse::<u64>().ok().and_then(|id| {
            sandbox.with_records(|records| {
                records
                    .get(module.api_name)
                    .and_then(|records| records.by_id.get(&id).cloned())
            })
        });
        // The OAS lists "the id given seems to be invalid" for this case; its HTTP status is not documented
        // (`docs/zoho-protocol.md#the-calls-the-portal-and-the-sandbox-use`), so this follows the other INVALID_DATA
        // answers: 400.
        let record = record.ok_or_else(|| {
            CrmError::new(
                StatusCode::BAD_REQUEST,
                "INVALID_DATA",
                json!({}),
                "the id given seems to be invalid",
            )
        })?;
        Ok(HttpResponse::Ok().json(json!({
            "data": [project(module, &record, fields.as_deref())],
        })))
    }
    .await;
    answer(&sandbox, result)
}

fn record_error(code: &str, details: Value, message: &str) -> Value {
    json!({"code": code, "details": details, "message": message, "status": "error"})
}

fn invalid_value(api_name: &str, expected: &str) -> Value {
    record_error(
        "INVALID_DATA",
        json!({"expected_data_type": expected, "api_name": api_name}),
        "invalid data",
    )
}

fn looks_like_email(value: &str) -> bool {
    value.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty()
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
    }) && !value.contains(char::is_whitespace)
}

/// What a record is checked for: a create must carry every mandatory field; an update carries only the fields it
/// changes, and may not empty a mandatory one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Write {
    Create,
    Update,
}

/// Checks one record of a create or update call against the module; `Ok` holds the fields to store.
fn validate_record(module: &ModuleDef, input: &Value, write: Write) -> Result<Record, Value> {
    let Some(input) = input.as_object() else {
        return Err(record_error("INVALID_DATA", json!({}), "invalid data"));
    };
    for def in module.fields.iter().filter(|def| def.mandatory) {
        let present = match input.get(def.api_name) {
            None => write == Write::Update,
            Some(Value::Null) => false,
            Some(Value::String(text)) => !text.trim().is_empty(),
            Some(_) => true,
        };
        if !present {
            return Err(record_error(
                "MANDATORY_NOT_FOUND",
                json!({"api_name": def.api_name}),
                "required field not found",
            ));
        }
    }
    let mut record = Record::new();
    for (name, value) in input {
        // Zoho ignores fields it does not know and fields the API may not write.
        let Some(def) = module.field(name).filter(|def| !def.read_only) else {
            continue;
        };
        let valid = match (def.data_type, value) {
            (_, Value::Null) => true,
            ("email", Value::String(text)) => text.is_empty() || looks_like_email(text),
            ("textarea", Value::String(text)) => text.chars().count() <= 32_000,
            (_, Value::String(text)) if def.is_textual() => text.chars().count() <= 255,
            ("integer", Value::Number(number)) => number.is_i64(),
            ("currency", Value::Number(_)) => true,
            ("ownerlookup", Value::Object(owner)) => owner
                .get("id")
                .and_then(Value::as_str)
                .is_some_and(|id| PERSONAS[..3].iter().any(|persona| persona.id == id)),
            ("lookup", Value::Object(target)) => target.get("id").is_some_and(Value::is_string),
            _ => false,
        };
        if !valid {
            return Err(invalid_value(def.api_name, def.data_type));
        }
        let value = match (def.data_type, value) {
            ("ownerlookup", Value::Object(owner)) => {
                let id = owner.get("id").and_then(Value::as_str).unwrap_or_default();
                PERSONAS
                    .iter()
                    .find(|persona| persona.id == id)
                    .map_or(Value::Null, user_ref)
            }
            _ => value.clone(),
        };
        record.insert(name.clone(), value);
    }
    Ok(record)
}

/// `Full_Name` from `First_Name` and `Last_Name`, in a module that has it (Zoho computes it; the API cannot write it).
fn set_full_name(module: &ModuleDef, record: &mut Record) {
    if module.field("Full_Name").is_none() {
        return;
    }
    let Some(last) = record.get("Last_Name").and_then(Value::as_str) else {
        return;
    };
    let full = match record.get("First_Name").and_then(Value::as_str) {
        Some(first) if !first.trim().is_empty() => format!("{first} {last}"),
        _ => last.to_owned(),
    };
    record.insert("Full_Name".into(), Value::String(full));
}

/// `POST /crm/v8/{module}` with `{"data": […]}`: one answer per record.
pub async fn create_records(
    request: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    sandbox: web::Data<SandboxState>,
) -> HttpResponse {
    let result = async {
        let caller = enter(&request, &sandbox).await?;
        check_record_scope(&caller, &path, true)?;
        let module = open_module(&path, &caller)?;
        let body = json_body(&body)?;
        let inputs = records_of(&body)?;
        if inputs.len() > MAX_RECORDS_PER_CREATE {
            return Err(CrmError::new(
                StatusCode::BAD_REQUEST,
                "LIMIT_EXCEEDED",
                json!({"param_name": "data", "limit": MAX_RECORDS_PER_CREATE}),
                "the number of records exceeds the limit",
            ));
        }
        let author = persona(&caller);
        let now = OffsetDateTime::from_unix_timestamp(sandbox.now_ms() / 1000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let when = zoho_datetime(now);
        let checked: Vec<Result<Record, Value>> = inputs
            .iter()
            .map(|input| validate_record(module, input, Write::Create))
            .collect();
        let answers: Vec<Value> = sandbox.with_records_mut(|records| {
            let records = records.entry(module.api_name).or_default();
            checked
                .into_iter()
                .map(|outcome| match outcome {
                    Err(error) => error,
                    Ok(mut record) => {
                        set_full_name(module, &mut record);
                        if !record.get("Owner").is_some_and(Value::is_object) {
                            record.insert("Owner".into(), user_ref(author));
                        }
                        let by = json!({"name": author.full_name, "id": author.id});
                        record.insert("Created_By".into(), user_ref(author));
                        record.insert("Modified_By".into(), user_ref(author));
                        record.insert("Created_Time".into(), json!(when));
                        record.insert("Modified_Time".into(), json!(when));
                        let id = records.next_id(data::id_base(module.api_name));
                        record.insert("id".into(), json!(id.to_string()));
                        records.by_id.insert(id, Arc::new(record));
                        json!({
                            "code": "SUCCESS",
                            "details": {
                                "Modified_Time": when,
                                "Modified_By": by,
                                "Created_Time": when,
                                "id": id.to_string(),
                                "Created_By": by,
                            },
                            "message": "record added",
                            "status": "success",
                        })
                    }
                })
                .collect()
        });
        let created = answers
            .iter()
            .filter(|answer| answer["status"] == "success")
            .count();
        // 201 / 207 / 400 comes from a secondary source, not Zoho's pages
        // (`docs/zoho-protocol.md#the-calls-the-portal-and-the-sandbox-use`); clients are told to
        // read each record's status, which every answer carries.
        let status = if created == answers.len() {
            StatusCode::CREATED
        } else if created > 0 {
            StatusCode::MULTI_STATUS
        } else {
            StatusCode::BAD_REQUEST
        };
        Ok(HttpResponse::build(status).json(json!({ "data": answers })))
    }
    .await;
    answer(&sandbox, result)
}

/// `{name, id}` of a stored `Created_By` / `Modified_By`, as Zoho's write answers name them.
fn author_of(record: &Record, key: &str) -> Value {
    match record.get(key) {
        Some(Value::Object(user)) => json!({
            "name": user.get("name").cloned().unwrap_or(Value::Null),
            "id": user.get("id").cloned().unwrap_or(Value::Null),
        }),
        _ => Value::Null,
    }
}

/// The `details` of a write's answer: the record's id and who made and last changed it, when.
fn write_details(record: &Record) -> Value {
    let field = |key: &str| record.get(key).cloned().unwrap_or(Value::Null);
    json!({
        "Modified_Time": field("Modified_Time"),
        "Modified_By": author_of(record, "Modified_By"),
        "Created_Time": field("Created_Time"),
        "id": field("id"),
        "Created_By": author_of(record, "Created_By"),
    })
}

/// A datetime as Zoho writes it (`2024-01-15T15:26:49+05:30`).
fn parse_zoho_datetime(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text.trim(), &Rfc3339).ok()
}

/// What an update found.
enum UpdateOutcome {
    Updated(Value),
    NoSuchRecord,
    /// `If-Unmodified-Since` is older than the record's `Modified_Time`: the record's `details`.
    AlreadyModified(Value),
    Invalid(Value),
}

/// `PUT /crm/v8/{module}/{id}` with `{"data": [record]}`: the fields given are written, if the caller's profile
/// may edit the module's records, the fields are valid, and, with `If-Unmodified-Since` (a datetime as Zoho
/// writes them), the record has not been modified after that time: else 412 `ALREADY_MODIFIED`, nothing written
/// (`docs/zoho-protocol.md#updating-a-record`).
pub async fn update_record(
    request: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Bytes,
    sandbox: web::Data<SandboxState>,
) -> HttpResponse {
    let (module_name, id) = path.into_inner();
    let result = async {
        let caller = enter(&request, &sandbox).await?;
        check_update_scope(&caller, &module_name)?;
        let module = open_module(&module_name, &caller)?;
        let author = persona(&caller);
        if !author.profile.may_edit(module.api_name) {
            return Err(CrmError::no_edit_permission(module));
        }
        // How Zoho answers a header it cannot read is not documented: the sandbox refuses it rather than
        // writing without the check the client asked for.
        let unmodified_since = match request.headers().get(header::IF_UNMODIFIED_SINCE) {
            None => None,
            Some(value) => Some(
                value
                    .to_str()
                    .ok()
                    .and_then(parse_zoho_datetime)
                    .ok_or_else(|| {
                        CrmError::new(
                            StatusCode::BAD_REQUEST,
                            "INVALID_DATA",
                            json!({"header_name": "If-Unmodified-Since"}),
                            "invalid data",
                        )
                    })?,
            ),
        };
        let body = json_body(&body)?;
        let inputs = records_of(&body)?;
        if inputs.len() > 1 {
            return Err(CrmError::new(
                StatusCode::BAD_REQUEST,
                "LIMIT_EXCEEDED",
                json!({"api_name": "data", "maximum_length": 1}),
                "count of records in your request exceeds the limit",
            ));
        }
        let input = &inputs[0];
        let invalid_id = || {
            record_error(
                "INVALID_DATA",
                json!({"api_name": "id", "json_path": "$.data[0].id"}),
                "the id given seems to be invalid",
            )
        };
        let named_elsewhere = input
            .get("id")
            .is_some_and(|given| given.as_str() != Some(id.as_str()));
        let checked = validate_record(module, input, Write::Update);
        let now = OffsetDateTime::from_unix_timestamp(sandbox.now_ms() / 1000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let outcome = match id.parse::<u64>() {
            Ok(record_id) if !named_elsewhere => sandbox.with_records_mut(|records| {
                let Some(stored) = records
                    .get_mut(module.api_name)
                    .and_then(|records| records.by_id.get_mut(&record_id))
                else {
                    return UpdateOutcome::NoSuchRecord;
                };
                let modified = stored
                    .get("Modified_Time")
                    .and_then(Value::as_str)
                    .and_then(parse_zoho_datetime);
                if let (Some(since), Some(modified)) = (unmodified_since, modified)
                    && modified > since
                {
                    return UpdateOutcome::AlreadyModified(write_details(stored));
                }
                let fields = match checked {
                    Ok(fields) => fields,
                    Err(error) => return UpdateOutcome::Invalid(error),
                };
                let record = Arc::make_mut(stored);
                for (name, value) in fields {
                    record.insert(name, value);
                }
                set_full_name(module, record);
                record.insert("Modified_By".into(), user_ref(author));
                record.insert("Modified_Time".into(), json!(zoho_datetime(now)));
                UpdateOutcome::Updated(write_details(record))
            }),
            _ => UpdateOutcome::NoSuchRecord,
        };
        // 200 for a record written, 400 for one refused and 412 for a stale one: the statuses of Zoho's
        // description of this call. A client reads `data[0].status` either way.
        let (status, item) = match outcome {
            UpdateOutcome::Updated(details) => (
                StatusCode::OK,
                json!({
                    "code": "SUCCESS",
                    "details": details,
                    "message": "record updated",
                    "status": "success",
                }),
            ),
            UpdateOutcome::NoSuchRecord => (StatusCode::BAD_REQUEST, invalid_id()),
            UpdateOutcome::Invalid(error) => (StatusCode::BAD_REQUEST, error),
            UpdateOutcome::AlreadyModified(details) => (
                StatusCode::PRECONDITION_FAILED,
                record_error(
                    "ALREADY_MODIFIED",
                    details,
                    "record updated time has already passed if-unmodified-since time",
                ),
            ),
        };
        Ok(HttpResponse::build(status).json(json!({ "data": [item] })))
    }
    .await;
    answer(&sandbox, result)
}

/// Anything else under `/crm/v8`.
pub async fn unknown_url(request: HttpRequest, sandbox: web::Data<SandboxState>) -> HttpResponse {
    let result = async {
        enter(&request, &sandbox).await?;
        Err(CrmError::new(
            StatusCode::NOT_FOUND,
            "INVALID_URL_PATTERN",
            json!({}),
            "Please check if the URL trying to access is a correct one",
        ))
    }
    .await;
    answer(&sandbox, result)
}
