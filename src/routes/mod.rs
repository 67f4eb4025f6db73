//! The portal's pages, one file per page group, and what they share: the layout, the session, CSRF.

pub mod admin;
pub mod auth;
pub mod error;
pub mod health;
pub mod landing;
pub mod middleware;
pub mod records;
pub mod session;

use actix_files::Files;
use actix_session::Session;
use actix_web::{HttpResponse, web};

pub use error::AppError;
use session::{Flash, SessionUser};

/// Registers every route. Static files come from `static/` (in the crate, or next to the binary's working
/// directory).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(landing::landing))
        .route("/healthz", web::get().to(health::healthz))
        .route("/login", web::get().to(auth::login))
        .route("/oauth/callback", web::get().to(auth::callback))
        .route("/logout", web::post().to(auth::logout))
        .route("/disconnect", web::post().to(auth::disconnect))
        .route("/crm/Leads/new", web::get().to(records::new_lead))
        .route("/crm/Leads", web::post().to(records::create_lead))
        .route("/crm/{module}", web::get().to(records::list))
        .route("/crm/{module}/{id}", web::get().to(records::detail))
        .route("/admin/tokens", web::get().to(admin::tokens))
        .route(
            "/admin/tokens/delete-all",
            web::post().to(admin::delete_all),
        )
        .route(
            "/admin/tokens/{id}/delete",
            web::post().to(admin::delete_one),
        )
        .service(Files::new("/static", static_dir()).prefer_utf8(true));
}

/// Where `static/` is: the crate's own folder when run from a checkout or by tests, else `./static`.
fn static_dir() -> std::path::PathBuf {
    let in_crate = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("static");
    if in_crate.is_dir() {
        in_crate
    } else {
        std::path::PathBuf::from("static")
    }
}

/// Every unknown route: the 404 page.
pub async fn not_found() -> Result<HttpResponse, AppError> {
    Err(AppError::NotFound)
}

/// What `base.html` needs on every page: who is signed in, the CSRF token for the header's forms, flashes.
#[derive(Debug, Default)]
pub struct Layout {
    pub user: Option<SessionUser>,
    pub csrf_token: String,
    pub flashes: Vec<Flash>,
    /// The page's title, shown in `<title>` after the academy's name.
    pub title: String,
}

impl Layout {
    /// The layout for a page, taking the session's pending flash messages (they show once).
    pub fn new(session: &Session, title: impl Into<String>) -> Layout {
        let user = session::current_user(session);
        let csrf_token = if user.is_some() {
            session::csrf_token(session)
        } else {
            String::new()
        };
        Layout {
            user,
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

/// Renders a page into an HTML response.
pub fn render(page: &impl askama::Template) -> Result<HttpResponse, AppError> {
    let html = page.render().map_err(AppError::internal)?;
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

/// Extractor configurations: malformed query strings, paths and forms get the friendly 400 page.
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

    pub fn form() -> web::FormConfig {
        web::FormConfig::default()
            .limit(64 * 1024)
            .error_handler(|err, _| {
                AppError::BadRequest(format!("The form could not be read: {err}")).into()
            })
    }
}
