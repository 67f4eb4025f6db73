//! CRM records: a module's list (`/crm/{module}?page=N`, sorted and paged as [`paging`] says) and its search
//! (`?q=TEXT`), one record, a new lead and an edited one (the portal writes too).

mod columns;
mod lead_edit;
mod lead_form;
mod paging;
mod search;
mod values;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;

pub use columns::{Column, EscapedHtml, RowsHtml};
pub use lead_edit::{EditLeadPage, LeadEditForm, edit_lead, update_lead};
pub use lead_form::{FormErrors, LeadForm, NewLeadPage, create_lead, new_lead};
pub use values::display_value;

use super::session::SignedIn;
use super::{AppError, render};
use crate::state::NavModule;
use crate::user_crm::UserCrm;
use crate::zoho::crm::{CrmField, Record, RecordPage, is_module_name, is_record_id};
use columns::{columns_from_fields, field_label, lead_columns, rows_html, wanted_fields};
use paging::{
    ColumnSort, MAX_PAGE, MAX_TOKEN_PAGE, PER_PAGE, PagingQuery, Sort, SortField, SortParams,
};
pub use search::SearchBox;

/// How long a user's fields metadata is reused.
const FIELDS_CACHE_TTL: Duration = Duration::from_secs(300);
/// Entries kept before the cache starts over (a bound, not a tuning knob).
const FIELDS_CACHE_MAX: usize = 10_000;

/// A module's fields metadata for one user, fetched through the token manager and kept for a few minutes:
/// every list of a module other than Leads and every record page needs it, and each call to Zoho costs an
/// API credit. Keyed by token, because field permissions follow the user's profile.
async fn fields_of(
    signed_in: &SignedIn,
    crm: UserCrm<'_>,
    module: &str,
) -> Result<Arc<Vec<CrmField>>, AppError> {
    let cache = &signed_in.state.fields_cache;
    // Keyed by the owner, not the bare id: an id reused by another user's login must not find these.
    let key = (signed_in.owner.clone(), module.to_owned());
    if let Some(entry) = cache.get(&key)
        && entry.0.elapsed() < FIELDS_CACHE_TTL
    {
        return Ok(entry.1.clone());
    }
    let fields = Arc::new(crm.fields(module).await?);
    if cache.len() >= FIELDS_CACHE_MAX {
        cache.clear();
    }
    cache.insert(key, (Instant::now(), fields.clone()));
    Ok(fields)
}

/// The page number and search of a record list's query string (`?page=N`, `q=TEXT`); its order and page token
/// are [`PagingQuery`]'s.
#[derive(serde::Deserialize)]
pub struct ListQuery {
    page: Option<u32>,
    /// The search box: the module's records matching this text, by Zoho's search.
    q: Option<String>,
}

/// A page of a module's records.
#[derive(Template)]
#[template(path = "records.html")]
pub struct RecordListPage<'a> {
    pub layout: super::Layout,
    pub module: String,
    pub module_label: String,
    pub columns: Cow<'static, [Column]>,
    /// The table's rows, as HTML.
    pub rows: RowsHtml,
    pub page: u32,
    pub more_records: bool,
    pub can_create: bool,
    /// The order asked for; `None`: Zoho's default (newest first). A search is in Zoho's order.
    pub sort: Option<Sort>,
    /// Zoho's `next_page_token`, from page 100 on: the Next link carries it.
    pub next_token: Option<&'a str>,
    /// Zoho's `previous_page_token`, on a page reached by token past page 101.
    pub previous_token: Option<&'a str>,
    /// The search this page shows the results of, if it is one.
    pub search: Option<SearchBox>,
}

impl RecordListPage<'_> {
    /// Whether a next page can be asked for: by number up to page 100 (a search reaches no further: Zoho
    /// searches only the first 2,000 matches), then with Zoho's token.
    pub fn has_next(&self) -> bool {
        self.more_records
            && (self.page < MAX_PAGE || (self.next_token.is_some() && self.page < MAX_TOKEN_PAGE))
    }

    /// Whether the next page is asked for by token rather than by number.
    pub fn next_by_token(&self) -> bool {
        self.page >= MAX_PAGE
    }

    /// Whether the previous page is asked for by token rather than by number.
    pub fn previous_by_token(&self) -> bool {
        self.page > MAX_PAGE + 1
    }

    /// Whether a previous page can be asked for: by number, or with Zoho's token past page 101.
    pub fn has_previous(&self) -> bool {
        self.page > 1 && (self.page - 1 <= MAX_PAGE || self.previous_token.is_some())
    }

    /// The order's parameters for a link that already has a query (`&amp;sort_by=…`), or that has none (`?…`).
    pub fn sort_params(&self, first: bool) -> SortParams {
        SortParams {
            sort: self.sort,
            first,
        }
    }

    /// What a sortable column's heading shows and links to.
    pub fn column_sort(&self, field: &SortField) -> ColumnSort {
        ColumnSort::of(*field, self.sort)
    }

    /// The text in the search box.
    pub fn query(&self) -> &str {
        self.search.as_ref().map_or("", |search| &search.text)
    }

    /// What a page link's query string starts with to stay in the search: `q=TEXT&`, or nothing.
    pub fn search_param(&self) -> &str {
        self.search.as_ref().map_or("", |search| &search.param)
    }

    /// Why the search was not made, if it was not.
    pub fn search_problem(&self) -> Option<&str> {
        self.search.as_ref().and_then(|search| search.problem)
    }
}

/// `GET /crm/{module}?page=N`, with `sort_by` and `sort_order`, and `page_token` past page 100 (see [`paging`]);
/// and `?q=TEXT&page=N` for the records matching TEXT (Zoho's search; a text too short to search for gets the
/// page with a message and a 400, and costs no call).
pub async fn list(
    signed_in: SignedIn,
    module: web::Path<String>,
    query: web::Query<ListQuery>,
    paging: web::Query<PagingQuery>,
) -> Result<HttpResponse, AppError> {
    let module = module.into_inner();
    if !is_module_name(&module) {
        return Err(AppError::NotFound);
    }
    let paging = paging.into_inner().check()?;
    let page = paging.page(query.page)?;
    if paging.unusable_token {
        return Ok(paging::restart(&signed_in.session, &module, paging.sort));
    }
    let crm = signed_in.crm();
    let columns = if module == "Leads" {
        Cow::Borrowed(lead_columns())
    } else {
        Cow::Owned(columns_from_fields(
            &fields_of(&signed_in, crm, &module).await?,
        ))
    };
    let wanted = wanted_fields(&columns);
    let mut search = SearchBox::from_query(query.q.as_deref());
    let records = match &mut search {
        None => match crm.list(&module, &wanted, paging.params(page)).await {
            Ok(records) => records,
            Err(failure) if failure.is_page_token_refused() => {
                return Ok(paging::restart(&signed_in.session, &module, paging.sort));
            }
            Err(failure) => return Err(failure.into()),
        },
        Some(search) if !search.is_askable() => RecordPage::default(),
        Some(search) => match crm
            .search(&module, &search.text, &wanted, page, PER_PAGE)
            .await
        {
            Ok(records) => records,
            Err(failure) => match search.refused_by_zoho(failure) {
                None => RecordPage::default(),
                Some(failure) => return Err(failure.into()),
            },
        },
    };
    let rows = rows_html(
        records.records(),
        records.record_count(),
        &columns,
        &wanted,
        &module,
    );
    let mut layout = signed_in.layout("").await;
    let module_label = module_label(&layout.navigation, &module);
    layout.title.clone_from(&module_label);
    // A text too short to ask, or one Zoho refused: the page says why, as a 400.
    let unsearched = search.as_ref().is_some_and(|search| !search.is_askable());
    let mut response = render(&RecordListPage {
        layout,
        can_create: module == "Leads",
        module,
        module_label,
        columns,
        rows,
        page,
        more_records: records.more_records,
        sort: if search.is_some() { None } else { paging.sort },
        next_token: (page >= MAX_PAGE)
            .then(|| records.next_page_token())
            .flatten(),
        previous_token: (page > MAX_PAGE + 1)
            .then(|| records.previous_page_token())
            .flatten(),
        search,
    })?;
    if unsearched {
        *response.status_mut() = StatusCode::BAD_REQUEST;
    }
    Ok(response)
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
pub struct RecordDetailPage {
    pub layout: super::Layout,
    pub module: String,
    pub module_label: String,
    pub id: String,
    pub heading: String,
    pub fields: Vec<FieldView>,
    /// Whether the page offers "Edit": a lead, and a profile Zoho says may edit leads.
    pub can_edit: bool,
}

/// `GET /crm/{module}/{id}`.
pub async fn detail(
    signed_in: SignedIn,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    let (module, id) = path.into_inner();
    if !is_module_name(&module) || !is_record_id(&id) {
        return Err(AppError::NotFound);
    }
    let crm = signed_in.crm();
    let record = crm.record(&module, &id).await?.ok_or(AppError::NotFound)?;
    let metadata = fields_of(&signed_in, crm, &module).await?;

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
    let layout = signed_in.layout(heading.clone()).await;
    let module_label = module_label(&layout.navigation, &module);
    let can_edit = module == "Leads" && lead_edit::may_edit_leads(&layout.navigation);
    render(&RecordDetailPage {
        layout,
        module,
        module_label,
        id,
        heading,
        fields,
        can_edit,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_and_record_ids_are_checked_before_asking_zoho() {
        assert!(is_module_name("Leads") && is_module_name("Zylker_Courses"));
        assert!(!is_module_name("") && !is_module_name("../etc") && !is_module_name("Leads?x=1"));
        assert!(is_record_id("5843104000000425001"));
        assert!(!is_record_id("12a") && !is_record_id(""));
    }
}
