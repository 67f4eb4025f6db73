//! `GET /`: the landing page: "Login with Zoho", or the signed-in user, their profile and their modules.

use actix_session::Session;
use actix_web::{HttpResponse, web};
use askama::Template;

use super::session::{self, NavModule, SessionUser};
use super::{AppError, Layout, render};
use crate::app::PortalState;
use crate::zoho::CrmClient;

/// The landing page.
#[derive(Template)]
#[template(path = "landing.html")]
pub struct LandingPage {
    pub layout: Layout,
    /// The signed-in user (also in the layout) with their freshly listed modules.
    pub user: Option<SessionUser>,
}

/// `GET /`: the login button for visitors; for a signed-in user, their profile and their CRM modules.
pub async fn landing(
    state: web::Data<PortalState>,
    crm: web::Data<CrmClient>,
    session: Session,
) -> Result<HttpResponse, AppError> {
    let Some(mut user) = session::current_user(&session) else {
        return render(&LandingPage {
            layout: Layout::new(&session, ""),
            user: None,
        });
    };
    let crm = crm.get_ref();
    let modules = state
        .manager
        .call(&user.owner(), |token| async move {
            crm.modules(token.crm_auth()).await
        })
        .await
        .map_err(|error| AppError::from_token(error, None))?;
    // Bounded (see `session::NAV_MODULES_MAX`): the list rides in the session cookie.
    let modules: Vec<NavModule> = modules
        .into_iter()
        .filter(|module| module.api_supported)
        .filter(|module| {
            super::records::is_module_name(&module.api_name)
                && module.api_name.len() <= session::NAV_API_NAME_MAX
        })
        .take(session::NAV_MODULES_MAX)
        .map(|module| {
            let label = module
                .plural_label
                .or(module.module_name)
                .unwrap_or_else(|| module.api_name.clone());
            NavModule::new(module.api_name, &label)
        })
        .collect();
    if modules != user.modules {
        user.modules = modules;
        session::update_user(&session, &user)?;
    }
    render(&LandingPage {
        layout: Layout::new(&session, "Home"),
        user: Some(user),
    })
}
