//! `GET /`: the landing page: "Login with Zoho", or the signed-in user, their profile and their modules; and
//! the module navigation every signed-in page shows.

use std::sync::Arc;

use actix_session::Session;
use actix_web::{HttpResponse, web};
use askama::Template;

use super::session::{self, NavModule};
use super::{AppError, Layout, render};
use crate::app::PortalState;
use crate::tokens::TokenOwner;
use crate::zoho::CrmClient;

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
    crm: web::Data<CrmClient>,
    session: Session,
) -> Result<HttpResponse, AppError> {
    let Some(user) = session::current_user(&session) else {
        return render(&LandingPage {
            layout: Layout::new(&session, &state, ""),
        });
    };
    let modules = list_navigation(&state, &crm, &user.owner()).await?;
    render(&LandingPage {
        layout: Layout::with_user(&session, Some(user), modules, "Home"),
    })
}

/// The navigation of `owner`: as kept, or listed at Zoho now when none is (the first page after a restart).
/// A listing that fails leaves the navigation empty for this page: the page itself does not fail for it.
pub async fn navigation(
    state: &PortalState,
    crm: &CrmClient,
    owner: &TokenOwner,
) -> Arc<[NavModule]> {
    if let Some(modules) = state.navigation.get(owner) {
        return modules.clone();
    }
    match list_navigation(state, crm, owner).await {
        Ok(modules) => modules,
        Err(error) => {
            tracing::warn!(token_id = %owner.token_id, %error, "could not list the CRM modules for the navigation");
            Arc::default()
        }
    }
}

/// Lists the modules `owner` may open through the API (`settings/modules`, `api_supported`) and keeps them as
/// their navigation.
async fn list_navigation(
    state: &PortalState,
    crm: &CrmClient,
    owner: &TokenOwner,
) -> Result<Arc<[NavModule]>, AppError> {
    let modules = state
        .manager
        .call(
            owner,
            |token| async move { crm.modules(token.crm_auth()).await },
        )
        .await
        .map_err(|error| AppError::from_token(error, None))?;
    let modules: Arc<[NavModule]> = modules
        .into_iter()
        .filter(|module| module.api_supported && super::records::is_module_name(&module.api_name))
        .take(session::NAV_MODULES_MAX)
        .map(|module| {
            let label = module
                .plural_label
                .or(module.module_name)
                .unwrap_or_else(|| module.api_name.clone());
            NavModule::new(module.api_name, &label)
        })
        .collect();
    state.navigation.insert(owner.clone(), modules.clone());
    Ok(modules)
}
