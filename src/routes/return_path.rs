//! Where a person was going when the portal asked them to sign in: a path on this site, checked every time it
//! is taken in (from a request, from the sign-in page's query, from `/login`'s) and before it is followed, so
//! that the login can never become an open redirect.

use actix_web::http::Uri;
use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};

/// The longest path kept, in bytes (as sent, percent-encoded): a longer one is dropped and the person lands on
/// the start page.
pub const MAX_RETURN_PATH_BYTES: usize = 1024;

/// The sign-in page, where a signed-out visit to a signed-in page is sent.
pub const SIGN_IN_PATH: &str = "/sign-in";

/// A path on this site to land on after logging in: it starts with a single `/` (so it names no scheme and no
/// host), holds only characters a URI may carry (so no backslash, space or control character), still names no
/// host, backslash or control character once percent-decoded, and is at most [`MAX_RETURN_PATH_BYTES`] long.
/// The only way to make one is [`ReturnPath::parse`] (or [`ReturnPath::of_request`], which goes through it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReturnPath(String);

impl ReturnPath {
    /// `candidate` when it is a same-site path (see [`ReturnPath`]); `None` for anything else, which sends the
    /// person to the start page.
    pub fn parse(candidate: &str) -> Option<ReturnPath> {
        is_same_site_path(candidate).then(|| ReturnPath(candidate.to_owned()))
    }

    /// The path and query of a request, as a place to come back to. Characters that a URI may not carry but
    /// a request line sometimes does (`|`, `"`, `{`, …) are percent-encoded first, which browsers read the same.
    pub fn of_request(uri: &Uri) -> Option<ReturnPath> {
        let raw = uri.path_and_query().map_or("/", |pq| pq.as_str());
        if raw.len() > MAX_RETURN_PATH_BYTES || is_part_of_the_login(uri.path()) {
            return None;
        }
        let encoded: String = utf8_percent_encode(raw, NOT_URI_CHARACTERS).collect();
        ReturnPath::parse(&encoded)
    }

    /// The path, to put in a `Location` header or a link (it is plain visible ASCII).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The sign-in page that explains why and comes back here: `/sign-in?next=…`, with `reason=ended` when a
    /// sign-in has just ended.
    pub fn sign_in_location(next: Option<&ReturnPath>, ended: bool) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        if let Some(next) = next {
            query.append_pair("next", next.as_str());
        }
        if ended {
            query.append_pair("reason", "ended");
        }
        let query = query.finish();
        if query.is_empty() {
            SIGN_IN_PATH.to_owned()
        } else {
            format!("{SIGN_IN_PATH}?{query}")
        }
    }

    /// `/login`, coming back to `next` once logged in.
    pub fn login_location(next: Option<&ReturnPath>) -> String {
        match next {
            Some(next) => {
                let query = url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("next", next.as_str())
                    .finish();
                format!("/login?{query}")
            }
            None => "/login".to_owned(),
        }
    }
}

/// Whether `path` is one of the login's own pages, never a place to come back to (the callback's query carries
/// the authorization code, which must not travel further).
fn is_part_of_the_login(path: &str) -> bool {
    path == SIGN_IN_PATH || path == "/login" || path.starts_with("/oauth/")
}

/// The visible ASCII characters a URI never carries as they are (RFC 3986 section 2). Every other visible
/// ASCII character is unreserved, reserved or `%`.
const NOT_IN_URIS: &[u8] = b" \"<>\\^`{|}";

/// What [`ReturnPath::of_request`] encodes: [`NOT_IN_URIS`], controls and (as every `AsciiSet` does) non-ASCII.
const NOT_URI_CHARACTERS: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'<')
    .add(b'>')
    .add(b'\\')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// Whether `candidate` is a path on this site that is safe to send a browser to (see [`ReturnPath`]).
///
/// Browsers read `//host` and `/\host` as another host, drop tabs and newlines before parsing a URL (so
/// `/<TAB>/host` is `//host`), and some decode before they look: each of those is refused, as is anything
/// that is not a path at all (`https://…`, `%2F%2F…`, `javascript:…`).
pub fn is_same_site_path(candidate: &str) -> bool {
    let bytes = candidate.as_bytes();
    if bytes.len() > MAX_RETURN_PATH_BYTES
        || bytes.first() != Some(&b'/')
        || matches!(bytes.get(1), Some(b'/' | b'\\'))
        || !bytes.iter().all(|&b| is_uri_character(b))
    {
        return false;
    }
    // Once decoded (a browser or a proxy may decode), still no second slash after the first, no backslash and
    // no control character, Unicode's C1 controls included.
    let decoded = percent_decode_str(candidate).decode_utf8_lossy();
    !decoded.starts_with("//") && !decoded.chars().any(|c| c == '\\' || c.is_control())
}

/// A byte a URI may carry as it is: visible ASCII other than [`NOT_IN_URIS`].
fn is_uri_character(byte: u8) -> bool {
    byte.is_ascii_graphic() && !NOT_IN_URIS.contains(&byte)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_on_this_site_are_kept() {
        for path in [
            "/",
            "/crm/Leads/5725767000000412001",
            "/crm/Leads?q=kavya&page=2",
            "/crm/Leads?q=K%C3%A1vya",
            "/admin/tokens",
            "/crm/Leads?q=a%252Fb",
            "/a:b@c;d=e,f!$'()*+~",
        ] {
            assert_eq!(
                ReturnPath::parse(path).as_ref().map(ReturnPath::as_str),
                Some(path),
                "{path}"
            );
        }
    }

    #[test]
    fn a_path_of_exactly_one_kilobyte_is_kept_and_one_byte_more_is_not() {
        let limit = format!("/{}", "a".repeat(MAX_RETURN_PATH_BYTES - 1));
        assert!(is_same_site_path(&limit));
        assert!(!is_same_site_path(&format!("{limit}a")));
    }

    #[test]
    fn other_sites_schemes_backslashes_and_controls_are_refused() {
        for target in [
            "",
            "//evil.example",
            "///evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "%2F%2Fevil.example",
            "/%2F/evil.example",
            "/%2f/evil.example",
            "/%5Cevil.example",
            "/%5cevil.example",
            "https://evil.example",
            "http:/evil.example",
            "javascript:alert(1)",
            "evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r\n/evil.example",
            "/%09/evil.example",
            "/%0A/evil.example",
            "/%00",
            "/%7F",
            "/%C2%85",
            "/ leads",
            "/crm/Leads\u{7f}",
            "/crm/Léads",
            "/crm/Leads/\"><script>",
        ] {
            assert!(ReturnPath::parse(target).is_none(), "{target:?} was kept");
        }
    }

    #[test]
    fn a_request_path_is_kept_with_what_a_uri_may_not_carry_encoded() {
        let uri: Uri = "/crm/Leads?q=a|b&page=2".parse().expect("uri");
        assert_eq!(
            ReturnPath::of_request(&uri)
                .as_ref()
                .map(ReturnPath::as_str),
            Some("/crm/Leads?q=a%7Cb&page=2")
        );
        for login in [
            "/oauth/callback?state=s&code=c",
            "/login?next=%2F",
            "/sign-in",
        ] {
            let uri: Uri = login.parse().expect("uri");
            assert_eq!(ReturnPath::of_request(&uri), None, "{login}");
        }
        let long: Uri = format!("/crm/Leads/{}", "1".repeat(MAX_RETURN_PATH_BYTES))
            .parse()
            .expect("uri");
        assert_eq!(ReturnPath::of_request(&long), None);
    }

    #[test]
    fn the_sign_in_and_login_locations_carry_the_path_encoded() {
        let next = ReturnPath::parse("/crm/Leads?q=kavya&page=2").expect("a path");
        assert_eq!(
            ReturnPath::sign_in_location(Some(&next), false),
            "/sign-in?next=%2Fcrm%2FLeads%3Fq%3Dkavya%26page%3D2"
        );
        assert_eq!(
            ReturnPath::sign_in_location(None, true),
            "/sign-in?reason=ended"
        );
        assert_eq!(ReturnPath::sign_in_location(None, false), "/sign-in");
        assert_eq!(
            ReturnPath::login_location(Some(&next)),
            "/login?next=%2Fcrm%2FLeads%3Fq%3Dkavya%26page%3D2"
        );
        assert_eq!(ReturnPath::login_location(None), "/login");
    }
}
