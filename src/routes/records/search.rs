//! A module page's search box (`/crm/{module}?q=TEXT`): what was asked, whether Zoho can be asked it, and the
//! query parameter the page's links carry on.

use url::form_urlencoded;

use crate::tokens::TokenError;
use crate::user_crm::CrmFailure;
use crate::zoho::crm::{MIN_SEARCH_CHARS, is_refused_search_text};

/// The longest search text sent to Zoho: longer than any field the portal shows, far below a URL's limits.
pub const MAX_SEARCH_CHARS: usize = 200;

/// Shown when the text is too short to search for (Zoho's minimum).
const TOO_SHORT: &str = "Type at least 2 characters to search.";
/// Shown when the text is longer than [`MAX_SEARCH_CHARS`].
const TOO_LONG: &str = "Search for at most 200 characters.";
/// Shown when Zoho refused the text (too short for it, or characters it does not search for).
const REFUSED: &str = "Zoho CRM cannot search for this text. Try at least 2 letters or digits, without special characters.";

/// A search asked of a module page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchBox {
    /// The text, trimmed: shown in the box and sent to Zoho.
    pub text: String,
    /// `q=TEXT&`, URL-encoded, to begin the query string of the page's links.
    pub param: String,
    /// Why Zoho was not asked, or refused: said beside the box, and the page answers 400.
    pub problem: Option<&'static str>,
}

impl SearchBox {
    /// The search in `q`, if it holds anything but spaces (an empty box lists the module as usual).
    pub fn from_query(q: Option<&str>) -> Option<SearchBox> {
        let text = q.map(str::trim).filter(|text| !text.is_empty())?;
        let length = text.chars().count();
        let problem = if length < MIN_SEARCH_CHARS {
            Some(TOO_SHORT)
        } else if length > MAX_SEARCH_CHARS {
            Some(TOO_LONG)
        } else {
            None
        };
        let mut param = String::from("q=");
        param.extend(form_urlencoded::byte_serialize(text.as_bytes()));
        param.push('&');
        Some(SearchBox {
            text: text.to_owned(),
            param,
            problem,
        })
    }

    /// Whether Zoho may be asked for this text.
    pub fn is_askable(&self) -> bool {
        self.problem.is_none()
    }

    /// Takes a failed search: a text Zoho refused becomes this box's problem (`None` back), any other failure is
    /// given back.
    pub fn refused_by_zoho(&mut self, failure: CrmFailure) -> Option<CrmFailure> {
        match &failure.source {
            TokenError::Crm(error) if is_refused_search_text(error) => {
                self.problem = Some(REFUSED);
                None
            }
            _ => Some(failure),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_box_is_no_search() {
        assert_eq!(SearchBox::from_query(None), None);
        assert_eq!(SearchBox::from_query(Some("")), None);
        assert_eq!(SearchBox::from_query(Some("   ")), None);
    }

    #[test]
    fn the_text_is_trimmed_and_encoded_for_links() {
        let search = SearchBox::from_query(Some("  Kavya Nair & co/+1 ")).unwrap();
        assert_eq!(search.text, "Kavya Nair & co/+1");
        assert_eq!(search.param, "q=Kavya+Nair+%26+co%2F%2B1&");
        assert!(search.is_askable());
    }

    #[test]
    fn too_short_and_too_long_texts_are_not_asked() {
        let short = SearchBox::from_query(Some(" é ")).unwrap();
        assert_eq!(short.problem, Some(TOO_SHORT));
        assert!(SearchBox::from_query(Some("ké")).unwrap().is_askable());
        let long = "a".repeat(MAX_SEARCH_CHARS + 1);
        assert_eq!(
            SearchBox::from_query(Some(&long)).unwrap().problem,
            Some(TOO_LONG)
        );
        assert!(
            SearchBox::from_query(Some(&long[1..]))
                .unwrap()
                .is_askable()
        );
    }
}
