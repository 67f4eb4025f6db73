//! How a record list is ordered and paged: `sort_by` / `sort_order` (the orders Zoho can sort by), and the
//! `page_token` that reaches records past the first 2,000 (`docs/zoho-protocol.md#page-tokens`).
//!
//! A list's links carry its order, so paging keeps it. Pages 1 to 100 are asked for by number; from page 100
//! on, the Next link carries Zoho's `next_page_token` (and the page number, for the page's heading). A token
//! Zoho refuses (expired, or not this person's) sends the person back to the first page with a note.

use std::fmt;

use crate::routes::cookie_session::Session;
use actix_web::HttpResponse;
use actix_web::http::header;

use super::super::AppError;
use super::super::session::{self, FlashKind};
use crate::zoho::crm::ListParams;

/// Records per page.
pub const PER_PAGE: u32 = 20;
/// Zoho hands out only the first 2,000 records by page number (`DISCRETE_PAGINATION_LIMIT_EXCEEDED`).
const MAX_PAGED_RECORDS: u32 = 2_000;
/// The highest page asked for by number.
pub const MAX_PAGE: u32 = MAX_PAGED_RECORDS / PER_PAGE;
/// Zoho hands out at most 100,000 records through consecutive page tokens (`PAGINATION_LIMIT_EXCEEDED`).
const MAX_TOKEN_RECORDS: u32 = 100_000;
/// The highest page reached by token.
pub const MAX_TOKEN_PAGE: u32 = MAX_TOKEN_RECORDS / PER_PAGE;
/// The longest `page_token` passed on to Zoho (Zoho's own are at most 96 characters).
const MAX_TOKEN_LEN: usize = 200;

/// A field Zoho can sort a list by (`sort_by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortField {
    Id,
    CreatedTime,
    ModifiedTime,
}

impl SortField {
    /// The field's API name, as `sort_by` takes it.
    pub fn api_name(self) -> &'static str {
        match self {
            SortField::Id => "id",
            SortField::CreatedTime => "Created_Time",
            SortField::ModifiedTime => "Modified_Time",
        }
    }

    fn parse(text: &str) -> Option<SortField> {
        [
            SortField::Id,
            SortField::CreatedTime,
            SortField::ModifiedTime,
        ]
        .into_iter()
        .find(|field| field.api_name() == text)
    }

    /// The field a column sorts by: a column of exactly one sortable field.
    pub fn of_column(fields: &[String]) -> Option<SortField> {
        match fields {
            [field] => SortField::parse(field),
            _ => None,
        }
    }
}

/// `sort_order`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortOrder {
    Asc,
    Desc,
}

impl SortOrder {
    pub fn as_str(self) -> &'static str {
        match self {
            SortOrder::Asc => "asc",
            SortOrder::Desc => "desc",
        }
    }

    fn parse(text: &str) -> Option<SortOrder> {
        match text {
            "asc" => Some(SortOrder::Asc),
            "desc" => Some(SortOrder::Desc),
            _ => None,
        }
    }
}

/// The order a list was asked in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sort {
    pub by: SortField,
    pub order: SortOrder,
}

/// The order and page token of a list's query string (its page number is in `ListQuery`). A separate
/// extractor, so that the list's other parameters stay apart.
#[derive(Debug, Default, serde::Deserialize)]
pub struct PagingQuery {
    sort_by: Option<String>,
    sort_order: Option<String>,
    page_token: Option<String>,
}

/// A list's order and page token, checked.
#[derive(Debug, Default)]
pub struct Paging {
    pub sort: Option<Sort>,
    pub page_token: Option<String>,
    /// A page token that cannot be Zoho's (too long, or with a space, a control or a non-ASCII character): the
    /// list starts again without asking Zoho.
    pub unusable_token: bool,
}

impl PagingQuery {
    /// The order asked for (an unknown one is a 400 page) and the page token.
    pub fn check(self) -> Result<Paging, AppError> {
        let sort = match (self.sort_by.as_deref(), self.sort_order.as_deref()) {
            (None, None) => None,
            (by, order) => {
                let by = by.map_or(Some(SortField::Id), SortField::parse);
                let order = order.map_or(Some(SortOrder::Desc), SortOrder::parse);
                match (by, order) {
                    (Some(by), Some(order)) => Some(Sort { by, order }),
                    _ => {
                        return Err(AppError::BadRequest(
                            "Lists can be sorted by id, Created_Time or Modified_Time (sort_by), in asc or desc order \
                             (sort_order)."
                                .to_owned(),
                        ));
                    }
                }
            }
        };
        let page_token = self.page_token.filter(|token| !token.is_empty());
        // Zoho documents no alphabet for its tokens (its examples are hex), so anything printable goes on to Zoho,
        // which judges it; only what no token can be (long, spaces, control or non-ASCII characters) stops here.
        let unusable_token = page_token.as_deref().is_some_and(|token| {
            token.len() > MAX_TOKEN_LEN || !token.bytes().all(|b| b.is_ascii_graphic())
        });
        Ok(Paging {
            sort,
            page_token,
            unusable_token,
        })
    }
}

impl Paging {
    /// The page to show: as asked, or the first page after the numbered ones for a token without a number.
    /// Numbered pages go to 100 (2,000 records); a page token reaches on to page 5,000 (100,000 records).
    pub fn page(&self, asked: Option<u32>) -> Result<u32, AppError> {
        if self.page_token.is_none() {
            let page = asked.unwrap_or(1);
            if !(1..=MAX_PAGE).contains(&page) {
                return Err(AppError::BadRequest(format!(
                    "Pages are numbered from 1 to {MAX_PAGE}: Zoho CRM lists only the first 2,000 records page by \
                     page. Follow the Next links from page {MAX_PAGE} to go further."
                )));
            }
            return Ok(page);
        }
        let page = asked.unwrap_or(MAX_PAGE + 1);
        if !(MAX_PAGE + 1..=MAX_TOKEN_PAGE).contains(&page) {
            return Err(AppError::BadRequest(format!(
                "Pages past the first 2,000 records are numbered from {} to {MAX_TOKEN_PAGE}.",
                MAX_PAGE + 1
            )));
        }
        Ok(page)
    }

    /// What to ask Zoho for page `page`.
    pub fn params(&self, page: u32) -> ListParams<'_> {
        ListParams {
            page,
            per_page: PER_PAGE,
            sort: self
                .sort
                .map(|sort| (sort.by.api_name(), sort.order.as_str())),
            page_token: self.page_token.as_deref(),
        }
    }
}

/// The answer to a page token Zoho refused, or one that cannot be Zoho's: the list again from its first page,
/// in the same order, with a note saying why.
pub fn restart(session: &Session, module: &str, sort: Option<Sort>) -> HttpResponse {
    session::flash(
        session,
        FlashKind::Info,
        "That page link has expired or is not yours (links past the 2,000th record last a day), so the list \
         starts again at the first page.",
    );
    // `module` is a checked module name and the order is one of the fixed values: nothing here is the
    // person's own text.
    let location = match sort {
        None => format!("/crm/{module}"),
        Some(sort) => format!(
            "/crm/{module}?sort_by={}&sort_order={}",
            sort.by.api_name(),
            sort.order.as_str()
        ),
    };
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .finish()
}

/// What a list's header shows for a sortable column, given the list's order.
#[derive(Debug, Clone, Copy)]
pub struct ColumnSort {
    /// `aria-sort`, when the list is sorted by this column.
    pub aria: Option<&'static str>,
    /// The order its link asks for: the other direction when sorted by it, else ascending.
    pub next: SortOrder,
    /// The arrow shown: the current direction, or a neutral mark.
    pub arrow: &'static str,
}

impl ColumnSort {
    pub fn of(field: SortField, sort: Option<Sort>) -> ColumnSort {
        match sort.filter(|sort| sort.by == field) {
            Some(Sort {
                order: SortOrder::Asc,
                ..
            }) => ColumnSort {
                aria: Some("ascending"),
                next: SortOrder::Desc,
                arrow: "▲",
            },
            Some(Sort {
                order: SortOrder::Desc,
                ..
            }) => ColumnSort {
                aria: Some("descending"),
                next: SortOrder::Asc,
                arrow: "▼",
            },
            None => ColumnSort {
                aria: None,
                next: SortOrder::Asc,
                arrow: "↕",
            },
        }
    }

    /// The link's hidden words for screen readers: what activating it does.
    pub fn hint(&self) -> &'static str {
        match self.next {
            SortOrder::Asc => "sort ascending",
            SortOrder::Desc => "sort descending",
        }
    }
}

/// The order's query parameters for a link, written straight into the page (no text of its own to allocate):
/// nothing for the default order, else `sort_by` and `sort_order` after `lead` (`?` or `&`, the latter written
/// `&amp;`). Only fixed values: safe to write unescaped.
#[derive(Debug, Clone, Copy)]
pub struct SortParams {
    pub sort: Option<Sort>,
    pub first: bool,
}

impl fmt::Display for SortParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(sort) = self.sort else {
            return Ok(());
        };
        let lead = if self.first { "?" } else { "&amp;" };
        write!(
            f,
            "{lead}sort_by={}&amp;sort_order={}",
            sort.by.api_name(),
            sort.order.as_str()
        )
    }
}

impl askama::filters::HtmlSafe for SortParams {}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(sort_by: Option<&str>, sort_order: Option<&str>, token: Option<&str>) -> PagingQuery {
        PagingQuery {
            sort_by: sort_by.map(str::to_owned),
            sort_order: sort_order.map(str::to_owned),
            page_token: token.map(str::to_owned),
        }
    }

    #[test]
    fn the_orders_zoho_sorts_by_are_taken_and_others_refused() {
        let sort = query(Some("Created_Time"), Some("asc"), None)
            .check()
            .unwrap()
            .sort;
        assert_eq!(
            sort,
            Some(Sort {
                by: SortField::CreatedTime,
                order: SortOrder::Asc
            })
        );
        assert_eq!(query(None, None, None).check().unwrap().sort, None);
        let order_only = query(None, Some("asc"), None).check().unwrap().sort;
        assert_eq!(order_only.map(|s| s.by), Some(SortField::Id));
        for (by, order) in [
            (Some("Last_Name"), Some("asc")),
            (Some("Created_Time"), Some("up")),
            (Some("created_time"), None),
            (Some(""), None),
        ] {
            assert!(
                matches!(query(by, order, None).check(), Err(AppError::BadRequest(_))),
                "{by:?} {order:?}"
            );
        }
    }

    #[test]
    fn numbered_pages_stop_at_100_and_tokens_reach_on() {
        let plain = query(None, None, None).check().unwrap();
        assert_eq!(plain.page(None).unwrap(), 1);
        assert_eq!(plain.page(Some(100)).unwrap(), 100);
        assert!(plain.page(Some(101)).is_err());
        assert!(plain.page(Some(0)).is_err());
        let token = query(None, None, Some("abc123")).check().unwrap();
        assert_eq!(token.page(None).unwrap(), 101);
        assert_eq!(token.page(Some(250)).unwrap(), 250);
        assert!(token.page(Some(100)).is_err());
        assert!(token.page(Some(5001)).is_err());
        assert!(!token.unusable_token);
        let params = token.params(101);
        assert_eq!(params.page_token, Some("abc123"));
        assert_eq!(params.per_page, PER_PAGE);
    }

    #[test]
    fn a_token_no_zoho_would_make_is_unusable() {
        for bad in ["a b", "tab\there", "jälkeen", &"a".repeat(201)] {
            assert!(
                query(None, None, Some(bad)).check().unwrap().unusable_token,
                "{bad}"
            );
        }
        assert!(
            query(None, None, Some(""))
                .check()
                .unwrap()
                .page_token
                .is_none()
        );
    }

    #[test]
    fn a_header_toggles_its_own_order_and_starts_others_ascending() {
        let by_created = |order| {
            Some(Sort {
                by: SortField::CreatedTime,
                order,
            })
        };
        let asc = ColumnSort::of(SortField::CreatedTime, by_created(SortOrder::Asc));
        assert_eq!((asc.aria, asc.next), (Some("ascending"), SortOrder::Desc));
        let desc = ColumnSort::of(SortField::CreatedTime, by_created(SortOrder::Desc));
        assert_eq!((desc.aria, desc.next), (Some("descending"), SortOrder::Asc));
        let other = ColumnSort::of(SortField::ModifiedTime, by_created(SortOrder::Desc));
        assert_eq!((other.aria, other.next), (None, SortOrder::Asc));
    }

    #[test]
    fn sort_params_are_written_only_for_a_chosen_order() {
        let sort = Some(Sort {
            by: SortField::ModifiedTime,
            order: SortOrder::Desc,
        });
        let params = |sort, first| SortParams { sort, first }.to_string();
        assert_eq!(params(None, true), "");
        assert_eq!(
            params(sort, true),
            "?sort_by=Modified_Time&amp;sort_order=desc"
        );
        assert_eq!(
            params(sort, false),
            "&amp;sort_by=Modified_Time&amp;sort_order=desc"
        );
    }
}
