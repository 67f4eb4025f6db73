//! The portal's pages, one file per page group, and what they share: the layout, the session, CSRF.

pub mod admin;
pub mod assets;
pub mod auth;
pub mod cookie_session;
pub mod error;
pub mod health;
pub mod landing;
pub mod metrics;
pub mod middleware;
pub mod records;
pub mod return_path;
pub mod session;

use std::sync::Arc;

use actix_web::{HttpResponse, web};
use cookie_session::Session;

pub use error::AppError;
use session::{Flash, SessionUser};

use crate::secret::Secret;
use crate::state::{NavModule, PortalState};

/// Registers every route, one resource a path: a path asked with a method it does not take answers
/// `405 Method Not Allowed` with an `Allow` header naming the methods it takes (actix-web's default for a
/// resource whose routes' method guards all refuse), rendered as an error page by
/// [`middleware::error_pages`]. A path no resource matches falls through to [`not_found`]. The stylesheet and
/// icon are compiled into the binary (see [`assets`]).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/").route(get_or_head().to(landing::landing)))
        .service(web::resource("/healthz").route(get_or_head().to(health::healthz)))
        .service(web::resource("/sign-in").route(get_or_head().to(auth::sign_in_page)))
        .service(web::resource("/login").route(get_or_head().to(auth::login)))
        // GET only: a HEAD (a link preview, a monitor) must not spend the login in flight or complete it.
        .service(web::resource("/oauth/callback").route(web::get().to(auth::callback)))
        .service(web::resource("/logout").route(web::post().to(auth::logout)))
        .service(web::resource("/disconnect").route(web::post().to(auth::disconnect)))
        .service(web::resource("/crm/Leads/new").route(get_or_head().to(records::new_lead)))
        // Leads is listed like every module and also takes new leads; `{module:Leads}` matches that one
        // module only and hands it to `records::list` as the others' `{module}` does.
        .service(
            web::resource("/crm/{module:Leads}")
                .route(get_or_head().to(records::list))
                .route(web::post().to(records::create_lead)),
        )
        .service(web::resource("/crm/{module}").route(get_or_head().to(records::list)))
        .service(web::resource("/crm/{module}/{id}").route(get_or_head().to(records::detail)))
        .service(
            web::resource("/crm/Leads/{id}/edit")
                .route(get_or_head().to(records::edit_lead))
                .route(web::post().to(records::update_lead)),
        )
        .service(web::resource("/admin/tokens").route(get_or_head().to(admin::tokens)))
        .service(web::resource("/admin/tokens/delete-all").route(web::post().to(admin::delete_all)))
        .service(
            web::resource("/admin/tokens/{id}/delete").route(web::post().to(admin::delete_one)),
        )
        .service(web::resource("/static/{name}").route(get_or_head().to(assets::asset)));
}

/// A GET route that answers HEAD too (load balancers and monitors ask with HEAD; actix sends no body for it).
/// Both methods are named in the `Allow` header of a 405.
fn get_or_head() -> actix_web::Route {
    web::route().guard(actix_web::guard::Any(actix_web::guard::Get()).or(actix_web::guard::Head()))
}

/// Every unknown route: the 404 page.
pub async fn not_found() -> Result<HttpResponse, AppError> {
    Err(AppError::NotFound)
}

/// What `base.html` needs on every page: who is signed in, their module navigation, the CSRF token for the
/// header's forms (a [`Secret`]: `Debug` never prints it), flashes.
#[derive(Debug, Default)]
pub struct Layout {
    pub user: Option<SessionUser>,
    /// The modules the header lists for the signed-in user.
    pub navigation: Arc<[NavModule]>,
    pub csrf_token: Secret,
    pub flashes: Vec<Flash>,
    /// The page's title, shown in `<title>` after the academy's name.
    pub title: String,
}

impl Layout {
    /// The layout for a page, taking the session's pending flash messages (they show once). The navigation is
    /// the one kept for the signed-in user (a page that calls Zoho anyway lists it when none is kept: see
    /// [`landing::navigation`]).
    pub fn new(session: &Session, state: &PortalState, title: impl Into<String>) -> Layout {
        let user = session::current_user(session);
        let navigation = user
            .as_ref()
            .map(|user| state.navigation_of(&user.owner()))
            .unwrap_or_default();
        Layout::with_user(session, user, navigation, title)
    }

    /// [`Layout::new`] for a signed-in page that has its user and navigation already (see
    /// [`session::SignedIn::layout`]).
    pub fn with_user(
        session: &Session,
        user: Option<SessionUser>,
        navigation: Arc<[NavModule]>,
        title: impl Into<String>,
    ) -> Layout {
        let csrf_token = if user.is_some() {
            session::csrf_token(session)
        } else {
            Secret::default()
        };
        Layout {
            user,
            navigation,
            csrf_token,
            flashes: session::take_flashes(session),
            title: title.into(),
        }
    }

    /// The layout of a page shown to nobody in particular (an error page rendered without a session).
    pub fn anonymous(title: impl Into<String>) -> Layout {
        Layout {
            title: title.into(),
            ..Layout::default()
        }
    }

    /// Whether the signed-in user may open the administrators' pages.
    pub fn is_admin(&self) -> bool {
        self.user.as_ref().is_some_and(SessionUser::is_admin)
    }

    /// Whether `module` is the one shown, to mark it in the navigation.
    pub fn is_current(&self, module: &str) -> bool {
        self.title == module
    }
}

/// Bytes set aside for a rendered page: a page of 20 records is about 10 KB.
const PAGE_CAPACITY: usize = 16 * 1024;

/// Renders a page into an HTML response.
pub fn render<T: askama::Template>(page: &T) -> Result<HttpResponse, AppError> {
    // Room for a page of records at once (askama's own estimate counts only the templates' text, so the buffer
    // would grow, and be copied, twice on the way).
    let mut html = String::with_capacity(PAGE_CAPACITY.max(T::SIZE_HINT));
    page.render_into(&mut html).map_err(AppError::internal)?;
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(html))
}

/// A `303 See Other` to one of the portal's own paths (never a user-supplied URL: no open redirects).
pub fn see_other(path: &'static str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((actix_web::http::header::LOCATION, path))
        .finish()
}

/// A `303 See Other` to a path on this site a person was going to (checked: see [`return_path`]).
pub fn see_other_path(path: &return_path::ReturnPath) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((actix_web::http::header::LOCATION, path.as_str()))
        .finish()
}

/// Extractor configurations: malformed query strings and paths get the friendly 400 or 404 page, and form
/// bodies (read as bytes by [`session::CsrfForm`]) are limited in size.
pub mod extractor_configs {
    use actix_web::web;

    use super::AppError;

    pub fn query() -> web::QueryConfig {
        web::QueryConfig::default().error_handler(|err, _| {
            AppError::BadRequest(format!("The address is malformed: {err}")).into()
        })
    }

    pub fn path() -> web::PathConfig {
        web::PathConfig::default().error_handler(|_, _| AppError::NotFound.into())
    }

    /// The largest form body accepted; a larger one is answered 413. The portal's forms are a few hundred
    /// bytes (a new lead's description is the longest field).
    pub const FORM_LIMIT: usize = 64 * 1024;

    /// The body limit of the `web::Bytes` extractor every form goes through (`CsrfForm`).
    pub fn payload() -> web::PayloadConfig {
        web::PayloadConfig::new(FORM_LIMIT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_debug_redacts_the_csrf_token() {
        let layout = Layout {
            csrf_token: Secret::from("very-secret-csrf-token"),
            title: "Home".into(),
            ..Layout::default()
        };
        let shown = format!("{layout:?}");
        assert!(!shown.contains("very-secret-csrf-token"), "{shown}");
        assert!(shown.contains("Home"));
    }
}
