//! `GET /`: the landing page: "Login with Zoho", or the signed-in user, their profile and their modules; and
//! the module navigation every signed-in page shows.

use std::sync::Arc;

use super::cookie_session::Session;
use actix_web::{HttpResponse, web};
use askama::Template;

use super::session::SignedIn;
use super::{AppError, Layout, render};
use crate::state::{NAV_MODULES_MAX, NavModule, PortalState};
use crate::user_crm::{CrmFailure, UserCrm};
use crate::zoho::crm::is_module_name;

/// The landing page: the signed-in user and their freshly listed modules are the layout's.
#[derive(Template)]
#[template(path = "landing.html")]
pub struct LandingPage {
    pub layout: Layout,
}

/// `GET /`: the login button for visitors; for a signed-in user, their profile and their CRM modules, listed
/// afresh at Zoho (and kept as their navigation).
pub async fn landing(
    state: web::Data<PortalState>,
    signed_in: Option<SignedIn>,
    session: Session,
) -> Result<HttpResponse, AppError> {
    let Some(signed_in) = signed_in else {
        return render(&LandingPage {
            layout: Layout::new(&session, &state, ""),
        });
    };
    let modules = list_navigation(&state, signed_in.crm()).await?;
    render(&LandingPage {
        layout: Layout::with_user(&session, Some(signed_in.user), modules, "Home"),
    })
}

/// The navigation of `crm`'s user: as kept, or listed at Zoho now when none is (the first page after a
/// restart). A listing that fails leaves the navigation empty for this page: the page itself does not fail for
/// it.
pub async fn navigation(state: &PortalState, crm: UserCrm<'_>) -> Arc<[NavModule]> {
    if let Some(modules) = state.navigation.get(crm.owner()) {
        return modules.clone();
    }
    match list_navigation(state, crm).await {
        Ok(modules) => modules,
        Err(error) => {
            tracing::warn!(token_id = %crm.owner().token_id, %error, "could not list the CRM modules for the navigation");
            Arc::default()
        }
    }
}

/// The navigation of `crm`'s user, as kept, or listed at Zoho now; a listing that fails is the page's error: for a
/// page that decides something by it (who may edit), not only shows it.
pub async fn navigation_or_error(
    state: &PortalState,
    crm: UserCrm<'_>,
) -> Result<Arc<[NavModule]>, CrmFailure> {
    if let Some(modules) = state.navigation.get(crm.owner()) {
        return Ok(modules.clone());
    }
    list_navigation(state, crm).await
}

/// Lists the modules the user may open through the API (`settings/modules`, `api_supported`) and keeps them as
/// their navigation.
async fn list_navigation(
    state: &PortalState,
    crm: UserCrm<'_>,
) -> Result<Arc<[NavModule]>, CrmFailure> {
    let modules: Arc<[NavModule]> = crm
        .modules()
        .await?
        .into_iter()
        .filter(|module| module.api_supported && is_module_name(&module.api_name))
        .take(NAV_MODULES_MAX)
        .map(|module| {
            let label = module
                .plural_label
                .or(module.module_name)
                .unwrap_or_else(|| module.api_name.clone());
            NavModule::new(module.api_name, &label).editable(module.editable)
        })
        .collect();
    state
        .navigation
        .insert(crm.owner().clone(), modules.clone());
    Ok(modules)
}
