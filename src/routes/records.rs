//! CRM records: a module's list (`/crm/{module}?page=N`), one record, and a new lead (the portal writes too).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::http::header::LOCATION;
use actix_web::{HttpResponse, web};
use askama::Template;
use sonic_rs::{Value, ValueRef};

use super::session::{self, CsrfForm, FlashKind, NavModule};
use super::{AppError, Layout, landing, render};
use crate::app::PortalState;
use crate::tokens::manager::TokenOwner;
use crate::zoho::CrmClient;
use crate::zoho::crm::{CreateResult, CrmField, Record, RecordPage};

/// Records per page.
const PER_PAGE: u32 = 20;
/// Zoho hands out only the first 2,000 records by page number (`DISCRETE_PAGINATION_LIMIT_EXCEEDED`).
const MAX_PAGED_RECORDS: u32 = 2_000;
/// The highest page anyone can ask for.
const MAX_PAGE: u32 = MAX_PAGED_RECORDS / PER_PAGE;
/// Columns picked from the fields metadata for modules without their own defaults.
const MAX_COLUMNS: usize = 5;
/// How long a user's fields metadata is reused.
const FIELDS_CACHE_TTL: Duration = Duration::from_secs(300);
/// Entries kept before the cache starts over (a bound, not a tuning knob).
const FIELDS_CACHE_MAX: usize = 10_000;

/// Whether `name` can be a module's API name; anything else is a 404 without asking Zoho.
pub fn is_module_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Whether `id` can be a record id (a string of digits).
fn is_record_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 30 && id.bytes().all(|b| b.is_ascii_digit())
}

/// A column of the list: its heading and the fields whose values it joins (a lead's name is two fields).
#[derive(Debug, Clone)]
pub struct Column {
    pub label: String,
    pub fields: Vec<String>,
}

impl Column {
    fn new(label: &str, fields: &[&str]) -> Column {
        Column {
            label: label.to_owned(),
            fields: fields.iter().map(|f| (*f).to_owned()).collect(),
        }
    }
}

/// Leads are student enquiries: who, how to reach them, where they stand, where they came from, when.
fn lead_columns() -> Vec<Column> {
    vec![
        Column::new("Name", &["First_Name", "Last_Name"]),
        Column::new("Email", &["Email"]),
        Column::new("Phone", &["Phone"]),
        Column::new("Status", &["Lead_Status"]),
        Column::new("Source", &["Lead_Source"]),
        Column::new("Created", &["Created_Time"]),
    ]
}

/// Data types worth a column in a list; long text, files and internal fields are not.
const LISTABLE_TYPES: &[&str] = &[
    "text",
    "email",
    "phone",
    "picklist",
    "date",
    "datetime",
    "integer",
    "bigint",
    "double",
    "currency",
    "percent",
    "website",
    "lookup",
    "ownerlookup",
    "boolean",
    "autonumber",
];

fn field_label(field: &CrmField) -> String {
    field
        .display_label
        .clone()
        .or_else(|| field.field_label.clone())
        .unwrap_or_else(|| field.api_name.replace('_', " "))
}

/// Fields a list never shows: the name's parts (the name column has them), and bookkeeping.
const NOT_LISTED: &[&str] = &[
    "id",
    "First_Name",
    "Last_Name",
    "Salutation",
    "Modified_Time",
    "Tag",
    "Record_Image",
    "Layout",
];

/// The first few sensible columns from a module's fields metadata: the record's name first (a full name, a
/// `Name`, a `…_Name` of its own, else the last name), then listable fields in Zoho's order, people
/// (owners) last.
fn columns_from_fields(fields: &[CrmField]) -> Vec<Column> {
    let data_type = |field: &CrmField| field.data_type.clone().unwrap_or_default();
    let listable = |field: &&CrmField| {
        !NOT_LISTED.contains(&field.api_name.as_str())
            && (field.data_type.is_none() || LISTABLE_TYPES.contains(&data_type(field).as_str()))
    };
    let own_name = |field: &&CrmField| {
        field.api_name.ends_with("_Name")
            && !NOT_LISTED.contains(&field.api_name.as_str())
            && !data_type(field).contains("lookup")
    };
    let name = ["Full_Name", "Name"]
        .iter()
        .find_map(|wanted| fields.iter().find(|f| f.api_name == *wanted))
        .or_else(|| fields.iter().find(own_name))
        .or_else(|| fields.iter().find(|f| f.api_name == "Last_Name"));
    let mut chosen: Vec<&CrmField> = name.into_iter().collect();
    let is_person = |field: &&CrmField| data_type(field) == "ownerlookup";
    let rest = fields
        .iter()
        .filter(listable)
        .filter(|f| !is_person(f))
        .chain(fields.iter().filter(listable).filter(is_person));
    for field in rest {
        if chosen.len() >= MAX_COLUMNS {
            break;
        }
        if !chosen.iter().any(|c| c.api_name == field.api_name) {
            chosen.push(field);
        }
    }
    chosen
        .into_iter()
        .map(|field| Column {
            label: field_label(field),
            fields: vec![field.api_name.clone()],
        })
        .collect()
}

/// How much of a date and time to show: a list shows the day, a record page the minute too.
#[derive(Clone, Copy, PartialEq, Eq)]
enum TimeDetail {
    Day,
    Minute,
}

/// A value as a person reads it: lookups by name, times in the org's own offset, nothing as an em dash.
pub fn display_value(value: &Value) -> String {
    display_value_with(value, TimeDetail::Minute).into_owned()
}

/// [`display_value`], borrowing from the value where the text is the value's own (most are).
fn display_value_with(value: &Value, detail: TimeDetail) -> Cow<'_, str> {
    match value.as_ref() {
        ValueRef::Null => Cow::Borrowed(""),
        ValueRef::Bool(true) => Cow::Borrowed("Yes"),
        ValueRef::Bool(false) => Cow::Borrowed("No"),
        ValueRef::Number(number) => Cow::Owned(number.to_string()),
        ValueRef::String(text) => display_text(text, detail),
        ValueRef::Array(items) => join_texts(
            items.iter().map(|item| display_value_with(item, detail)),
            ", ",
        ),
        ValueRef::Object(object) => object
            .get(&"name")
            .or_else(|| object.get(&"display_value"))
            .map(|value| display_value_with(value, detail))
            .unwrap_or_default(),
    }
}

/// The non-empty texts joined by `separator`; a single one is passed through as it is.
fn join_texts<'a>(texts: impl Iterator<Item = Cow<'a, str>>, separator: &str) -> Cow<'a, str> {
    let mut joined = Cow::Borrowed("");
    for text in texts.filter(|text| !text.is_empty()) {
        if joined.is_empty() {
            joined = text;
        } else {
            let owned = joined.to_mut();
            owned.push_str(separator);
            owned.push_str(&text);
        }
    }
    joined
}

fn display_text(text: &str, detail: TimeDetail) -> Cow<'_, str> {
    // Most values are names, emails and phones: only what is shaped like `2026-10-09T14:49:00+05:30` is parsed.
    let bytes = text.as_bytes();
    let looks_like_a_time = (20..=40).contains(&bytes.len())
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && matches!(bytes[10], b'T' | b't');
    if !looks_like_a_time {
        return Cow::Borrowed(text);
    }
    let rfc3339 = time::format_description::well_known::Rfc3339;
    let Ok(when) = time::OffsetDateTime::parse(text, &rfc3339) else {
        return Cow::Borrowed(text);
    };
    let (day, month, year) = (when.day(), short_month(when.month()), when.year());
    Cow::Owned(match detail {
        TimeDetail::Day => format!("{day} {month} {year}"),
        TimeDetail::Minute => format!(
            "{day} {month} {year}, {:02}:{:02}",
            when.hour(),
            when.minute()
        ),
    })
}

/// `Jan` … `Dec`, as the pages show months.
fn short_month(month: time::Month) -> &'static str {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    MONTHS[usize::from(u8::from(month)) - 1]
}

/// One row of the list: the record's id (for its link) and one text per column, borrowed from the record where
/// they can be.
pub struct Row<'a> {
    pub id: Cow<'a, str>,
    pub cells: Vec<Cow<'a, str>>,
}

fn row<'a>(record: &'a Record, columns: &[Column], wanted: &[&str]) -> Row<'a> {
    // `wanted` is `id`, then each column's fields in order. One walk over the record's entries finds them all
    // (a lookup per field would walk the entries once per field).
    let mut values: Vec<Option<&Value>> = vec![None; wanted.len()];
    for (name, value) in record.iter() {
        for (slot, field) in values.iter_mut().zip(wanted) {
            if *field == name {
                *slot = Some(value);
            }
        }
    }
    let display = |value: &'a Value| display_value_with(value, TimeDetail::Day);
    let mut values = values.into_iter();
    let id = values.next().flatten().map(display).unwrap_or_default();
    let cells = columns
        .iter()
        .map(|column| {
            // A column joins its fields' texts with spaces (a lead's name is first and last name).
            let texts = values.by_ref().take(column.fields.len()).flatten();
            join_texts(texts.map(display), " ")
        })
        .collect();
    Row { id, cells }
}

/// The fields a list asks Zoho for: `id`, then each column's fields in order (what [`row`] expects).
fn wanted_fields(columns: &[Column]) -> Vec<&str> {
    std::iter::once("id")
        .chain(
            columns
                .iter()
                .flat_map(|c| c.fields.iter().map(String::as_str)),
        )
        .collect()
}

/// A module's fields metadata for one user, fetched through the token manager and kept for a few minutes:
/// every list of a module other than Leads and every record page needs it, and each call to Zoho costs an
/// API credit. Keyed by token, because field permissions follow the user's profile.
async fn fields_of(
    state: &PortalState,
    crm: &CrmClient,
    owner: &TokenOwner,
    module: &str,
) -> Result<Arc<Vec<CrmField>>, AppError> {
    // Keyed by the owner, not the bare id: an id reused by another user's login must not find these.
    let key = (owner.clone(), module.to_owned());
    if let Some(entry) = state.fields_cache.get(&key)
        && entry.0.elapsed() < FIELDS_CACHE_TTL
    {
        return Ok(entry.1.clone());
    }
    let fields = state
        .manager
        .call(owner, |token| async move {
            crm.fields(token.crm_auth(), module).await
        })
        .await
        .map_err(|error| AppError::from_token(error, Some(module)))?;
    let fields = Arc::new(fields);
    if state.fields_cache.len() >= FIELDS_CACHE_MAX {
        state.fields_cache.clear();
    }
    state
        .fields_cache
        .insert(key, (Instant::now(), fields.clone()));
    Ok(fields)
}

/// The query string of a record list (`?page=N`).
#[derive(serde::Deserialize)]
pub struct ListQuery {
    page: Option<u32>,
}

/// A page of a module's records.
#[derive(Template)]
#[template(path = "records.html")]
pub struct RecordsPage<'a> {
    pub layout: Layout,
    pub module: String,
    pub module_label: String,
    pub columns: Vec<Column>,
    pub rows: Vec<Row<'a>>,
    pub page: u32,
    pub more_records: bool,
    pub can_create: bool,
}

impl RecordsPage<'_> {
    /// Whether a next page can be asked for (Zoho pages only the first 2,000 records).
    pub fn has_next(&self) -> bool {
        self.more_records && self.page < MAX_PAGE
    }
}

/// `GET /crm/{module}?page=N`.
pub async fn list(
    state: web::Data<PortalState>,
    crm: web::Data<CrmClient>,
    session: Session,
    module: web::Path<String>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, AppError> {
    let user = session::require_user(&session)?;
    let module = module.into_inner();
    if !is_module_name(&module) {
        return Err(AppError::NotFound);
    }
    let page = query.page.unwrap_or(1);
    if !(1..=MAX_PAGE).contains(&page) {
        return Err(AppError::BadRequest(format!(
            "Pages are numbered from 1 to {MAX_PAGE}: Zoho CRM lists only the first 2,000 records page by page."
        )));
    }
    let owner = user.owner();
    let columns = if module == "Leads" {
        lead_columns()
    } else {
        columns_from_fields(&fields_of(&state, &crm, &owner, &module).await?)
    };
    let wanted = wanted_fields(&columns);
    let crm = crm.get_ref();
    let record_page: RecordPage = state
        .manager
        .call(&owner, |token| {
            let wanted = &wanted;
            let module = &module;
            async move {
                crm.records(token.crm_auth(), module, wanted, page, PER_PAGE)
                    .await
            }
        })
        .await
        .map_err(|error| AppError::from_token(error, Some(&module)))?;
    let rows = record_page
        .records()
        .map(|record| row(record, &columns, &wanted))
        .collect();
    let navigation = landing::navigation(&state, crm, &owner).await;
    let module_label = module_label(&navigation, &module);
    render(&RecordsPage {
        layout: Layout::with_user(&session, Some(user), navigation, module_label.clone()),
        can_create: module == "Leads",
        module,
        module_label,
        columns,
        rows,
        page,
        more_records: record_page.more_records,
    })
}

/// The module's label from the navigation, or its API name.
fn module_label(navigation: &[NavModule], module: &str) -> String {
    navigation
        .iter()
        .find(|m| m.api_name == module)
        .map(|m| m.label.clone())
        .unwrap_or_else(|| module.replace('_', " "))
}

/// One field of a record, as the record page shows it.
pub struct FieldView {
    pub label: String,
    pub value: String,
}

/// One record.
#[derive(Template)]
#[template(path = "record.html")]
pub struct RecordPageView {
    pub layout: Layout,
    pub module: String,
    pub module_label: String,
    pub heading: String,
    pub fields: Vec<FieldView>,
}

/// `GET /crm/{module}/{id}`.
pub async fn detail(
    state: web::Data<PortalState>,
    crm: web::Data<CrmClient>,
    session: Session,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    let user = session::require_user(&session)?;
    let (module, id) = path.into_inner();
    if !is_module_name(&module) || !is_record_id(&id) {
        return Err(AppError::NotFound);
    }
    let owner = user.owner();
    let crm = crm.get_ref();
    let record = state
        .manager
        .call(&owner, |token| {
            let (module, id) = (&module, &id);
            async move { crm.record(token.crm_auth(), module, id).await }
        })
        .await
        .map_err(|error| AppError::from_token(error, Some(&module)))?
        .ok_or(AppError::NotFound)?;
    let metadata = fields_of(&state, crm, &owner, &module).await?;

    // Fields in the metadata's order with their labels, then whatever else the record carries.
    let mut fields: Vec<FieldView> = Vec::new();
    let mut shown: Vec<&str> = vec!["id"];
    for field in metadata.iter() {
        if let Some(value) = record.get(&field.api_name) {
            shown.push(&field.api_name);
            fields.push(FieldView {
                label: field_label(field),
                value: display_value(value),
            });
        }
    }
    for (name, value) in &record {
        if !shown.contains(&name) && !name.starts_with('$') {
            fields.push(FieldView {
                label: name.replace('_', " "),
                value: display_value(value),
            });
        }
    }
    let heading = record_heading(&record).unwrap_or_else(|| format!("Record {id}"));
    let navigation = landing::navigation(&state, crm, &owner).await;
    let module_label = module_label(&navigation, &module);
    render(&RecordPageView {
        layout: Layout::with_user(&session, Some(user), navigation, heading.clone()),
        module,
        module_label,
        heading,
        fields,
    })
}

/// A record's name for its heading: a full name, first and last, or any `…_Name` field.
fn record_heading(record: &Record) -> Option<String> {
    let text = |field: &str| {
        record
            .get(&field)
            .map(display_value)
            .filter(|text| !text.trim().is_empty())
    };
    text("Full_Name")
        .or_else(|| {
            let parts: Vec<String> = ["First_Name", "Last_Name"]
                .iter()
                .filter_map(|f| text(f))
                .collect();
            (!parts.is_empty()).then(|| parts.join(" "))
        })
        .or_else(|| text("Name"))
        .or_else(|| {
            record
                .iter()
                .map(|(key, _)| key)
                .filter(|key| key.ends_with("_Name"))
                .find_map(text)
        })
}

/// The new-lead form as typed, kept to show it again with its errors.
#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct LeadForm {
    #[serde(rename = "First_Name", default)]
    pub first_name: String,
    #[serde(rename = "Last_Name", default)]
    pub last_name: String,
    #[serde(rename = "Email", default)]
    pub email: String,
    #[serde(rename = "Phone", default)]
    pub phone: String,
    #[serde(rename = "Lead_Source", default)]
    pub lead_source: String,
    #[serde(rename = "Description", default)]
    pub description: String,
}

/// Per-field messages, by the field's API name, and one for the form as a whole.
#[derive(Debug, Default)]
pub struct FormErrors {
    pub fields: Vec<(String, String)>,
    pub general: Option<String>,
}

impl FormErrors {
    fn add(&mut self, field: &str, message: impl Into<String>) {
        self.fields.push((field.to_owned(), message.into()));
    }

    fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.general.is_none()
    }

    /// The message for one field, for the template.
    pub fn for_field(&self, field: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(name, _)| name == field)
            .map(|(_, message)| message.as_str())
    }
}

/// Roughly an email address: something, one `@`, a domain with a dot, no spaces.
fn looks_like_email(text: &str) -> bool {
    let Some((local, domain)) = text.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !text.chars().any(char::is_whitespace)
}

impl LeadForm {
    /// The form's fields by their CRM API name: the one table that trimming, the record sent to Zoho and the
    /// placing of Zoho's per-field errors go by (the serde names above are checked against it by a test).
    fn fields_mut(&mut self) -> [(&'static str, &mut String); 6] {
        [
            ("First_Name", &mut self.first_name),
            ("Last_Name", &mut self.last_name),
            ("Email", &mut self.email),
            ("Phone", &mut self.phone),
            ("Lead_Source", &mut self.lead_source),
            ("Description", &mut self.description),
        ]
    }

    /// The API names of the form's fields.
    fn api_names() -> [&'static str; 6] {
        LeadForm::default().fields_mut().map(|(name, _)| name)
    }

    fn trimmed(&self) -> LeadForm {
        let mut form = self.clone();
        for (_, value) in form.fields_mut() {
            *value = value.trim().to_owned();
        }
        form
    }

    fn validate(&self) -> FormErrors {
        let mut errors = FormErrors::default();
        if self.last_name.is_empty() {
            errors.add("Last_Name", "Last name is required.");
        } else if self.last_name.chars().count() > 80 {
            errors.add("Last_Name", "Last name can be at most 80 characters.");
        }
        if self.first_name.chars().count() > 40 {
            errors.add("First_Name", "First name can be at most 40 characters.");
        }
        if !self.email.is_empty() && !looks_like_email(&self.email) {
            errors.add("Email", "This does not look like an email address.");
        }
        if !self.phone.is_empty()
            && (self.phone.chars().count() > 30
                || !self
                    .phone
                    .chars()
                    .all(|c| c.is_ascii_digit() || " +-().".contains(c)))
        {
            errors.add(
                "Phone",
                "A phone number has digits, spaces and + - ( ) only.",
            );
        }
        if self.description.chars().count() > 2000 {
            errors.add("Description", "Notes can be at most 2,000 characters.");
        }
        errors
    }

    /// The record sent to Zoho: only the fields that were filled in.
    fn to_record(&self) -> Record {
        let mut record = Record::new();
        for (name, value) in self.clone().fields_mut() {
            if !value.is_empty() {
                record.insert(name, value.as_str());
            }
        }
        record
    }
}

/// The new-lead form.
#[derive(Template)]
#[template(path = "new_lead.html")]
pub struct NewLeadPage {
    pub layout: Layout,
    pub form: LeadForm,
    pub errors: FormErrors,
}

/// `GET /crm/Leads/new`.
pub async fn new_lead(
    state: web::Data<PortalState>,
    crm: web::Data<CrmClient>,
    session: Session,
) -> Result<HttpResponse, AppError> {
    let user = session::require_user(&session)?;
    let navigation = landing::navigation(&state, &crm, &user.owner()).await;
    render(&NewLeadPage {
        layout: Layout::with_user(&session, Some(user), navigation, "New enquiry"),
        form: LeadForm::default(),
        errors: FormErrors::default(),
    })
}

fn form_again(
    state: &PortalState,
    session: &Session,
    form: LeadForm,
    errors: FormErrors,
) -> Result<HttpResponse, AppError> {
    let mut response = render(&NewLeadPage {
        layout: Layout::new(session, state, "New enquiry"),
        form,
        errors,
    })?;
    *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    Ok(response)
}

/// `POST /crm/Leads`: validates, creates the lead in Zoho CRM, and shows it; Zoho's per-field errors go back
/// onto the form.
pub async fn create_lead(
    state: web::Data<PortalState>,
    crm: web::Data<CrmClient>,
    session: Session,
    form: CsrfForm<LeadForm>,
) -> Result<HttpResponse, AppError> {
    let user = session::require_user(&session)?;
    let form = form.0.trimmed();
    let errors = form.validate();
    if !errors.is_empty() {
        return form_again(&state, &session, form, errors);
    }
    let records = [form.to_record()];
    let crm = crm.get_ref();
    let results = state
        .manager
        .call(&user.owner(), |token| {
            let records = &records;
            async move { crm.create_records(token.crm_auth(), "Leads", records).await }
        })
        .await
        .map_err(|error| AppError::from_token(error, Some("Leads")))?;
    match results.into_iter().next() {
        Some(CreateResult::Created { id }) if is_record_id(&id) => {
            let name = [form.first_name.as_str(), form.last_name.as_str()]
                .iter()
                .filter(|part| !part.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join(" ");
            session::flash(
                &session,
                FlashKind::Success,
                format!("The enquiry from {name} is saved in Zoho CRM."),
            );
            tracing::info!(record_id = %id, "lead created");
            Ok(HttpResponse::SeeOther()
                .insert_header((LOCATION, format!("/crm/Leads/{id}")))
                .finish())
        }
        Some(CreateResult::Failed {
            code,
            message,
            field,
        }) => {
            tracing::info!(%code, ?field, "Zoho refused the new lead");
            let mut errors = FormErrors::default();
            let known = LeadForm::api_names();
            match field.as_deref().filter(|f| known.contains(f)) {
                Some(field) => errors.add(field, format!("Zoho CRM says: {message}")),
                None => {
                    errors.general = Some(format!("Zoho CRM did not save the enquiry: {message}"))
                }
            }
            form_again(&state, &session, form, errors)
        }
        _ => {
            tracing::error!("Zoho's answer to a new lead carried no usable result");
            Err(AppError::Upstream)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sonic_rs::{JsonValueTrait, json};

    #[test]
    fn the_lead_table_names_the_fields_the_form_reads() {
        let body: Vec<(String, String)> = LeadForm::api_names()
            .iter()
            .map(|name| (name.to_string(), format!("value of {name}")))
            .collect();
        let form: LeadForm =
            serde_urlencoded::from_str(&serde_urlencoded::to_string(&body).unwrap()).unwrap();
        let record = form.to_record();
        for name in LeadForm::api_names() {
            assert_eq!(
                record[name].as_str(),
                Some(format!("value of {name}").as_str())
            );
        }
        assert_eq!(record.len(), 6);
    }

    fn field(api_name: &str, label: &str, data_type: &str) -> CrmField {
        serde_json::from_value(serde_json::json!({
            "api_name": api_name, "display_label": label, "data_type": data_type
        }))
        .expect("field")
    }

    #[test]
    fn columns_start_with_the_full_name_and_skip_its_parts_and_owners_first() {
        let fields = [
            field("Owner", "Contact Owner", "ownerlookup"),
            field("First_Name", "First Name", "text"),
            field("Last_Name", "Last Name", "text"),
            field("Full_Name", "Contact Name", "text"),
            field("Email", "Email", "email"),
            field("Description", "Description", "textarea"),
            field("Phone", "Phone", "phone"),
            field("id", "Record Id", "bigint"),
        ];
        let labels: Vec<String> = columns_from_fields(&fields)
            .into_iter()
            .map(|c| c.label)
            .collect();
        assert_eq!(labels, ["Contact Name", "Email", "Phone", "Contact Owner"]);
    }

    #[test]
    fn a_lookup_named_like_a_name_is_not_the_record_name() {
        let fields = [
            field("Account_Name", "Account Name", "lookup"),
            field("Deal_Name", "Deal Name", "text"),
        ];
        assert_eq!(columns_from_fields(&fields)[0].fields, ["Deal_Name"]);
    }

    #[test]
    fn values_read_as_text() {
        assert_eq!(
            display_value(&json!({"name": "Priya Raman", "id": "1"})),
            "Priya Raman"
        );
        assert_eq!(display_value(&json!(null)), "");
        assert_eq!(display_value(&json!(true)), "Yes");
        assert_eq!(display_value(&json!(["a", "b"])), "a, b");
        assert_eq!(
            display_value(&json!("2026-10-09T14:49:00+05:30")),
            "9 Oct 2026, 14:49"
        );
        assert_eq!(
            display_value_with(&json!("2026-10-09T14:49:00+05:30"), TimeDetail::Day),
            "9 Oct 2026"
        );
        assert_eq!(
            display_value(&json!("<b>")),
            "<b>",
            "escaping is the template's job"
        );
    }

    #[test]
    fn a_column_joins_the_texts_of_its_fields_that_are_not_empty() {
        let columns = lead_columns();
        let record: Record = sonic_rs::from_str(
            r#"{"id":"7","First_Name":"","Last_Name":"Raman","Email":null,"Created_Time":"2026-10-09T14:49:00+05:30"}"#,
        )
        .unwrap();
        let wanted = wanted_fields(&columns);
        let only_last = row(&record, &columns, &wanted);
        assert_eq!(only_last.id, "7");
        assert_eq!(only_last.cells, ["Raman", "", "", "", "", "9 Oct 2026"]);
        assert!(
            matches!(only_last.cells[0], Cow::Borrowed(_)),
            "a single text is the record's own, not a copy"
        );
        // The column's order wins over the record's.
        let record: Record =
            sonic_rs::from_str(r#"{"Last_Name":"O'Brien","First_Name":"Søren"}"#).unwrap();
        assert_eq!(row(&record, &columns, &wanted).cells[0], "Søren O'Brien");
        assert_eq!(row(&record, &columns, &wanted).id, "");
    }

    #[test]
    fn a_field_in_two_columns_shows_in_both() {
        let columns = vec![
            Column::new("Contact", &["Email", "Phone"]),
            Column::new("Email", &["Email"]),
        ];
        let wanted = wanted_fields(&columns);
        assert_eq!(wanted, ["id", "Email", "Phone", "Email"]);
        let record: Record =
            sonic_rs::from_str(r#"{"Phone":"+91 1","Email":"a@b.example","id":"3"}"#).unwrap();
        let row = row(&record, &columns, &wanted);
        assert_eq!(row.id, "3");
        assert_eq!(row.cells, ["a@b.example +91 1", "a@b.example"]);
    }

    #[test]
    fn email_shape() {
        assert!(looks_like_email("meera.iyer@example.com"));
        assert!(looks_like_email("liam.o'brien@zylker.com"));
        for bad in [
            "",
            "meera",
            "@example.com",
            "a@b",
            "a@@b.com",
            "a b@c.com",
            "a@.com",
            "a@b.",
        ] {
            assert!(!looks_like_email(bad), "{bad}");
        }
    }

    #[test]
    fn module_names_and_record_ids_are_checked_before_asking_zoho() {
        assert!(is_module_name("Leads") && is_module_name("Zylker_Courses"));
        assert!(!is_module_name("") && !is_module_name("../etc") && !is_module_name("Leads?x=1"));
        assert!(is_record_id("5843104000000425001"));
        assert!(!is_record_id("12a") && !is_record_id(""));
    }
}
