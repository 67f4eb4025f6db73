//! What every request shares, built once by [`crate::app`] and read by the routes: the token manager, the
//! login settings, and the small caches that save CRM calls (fields metadata, administrator confirmations, each
//! user's module navigation).
//!
//! It sits below both `app` and `routes`, so that neither imports the other for it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use url::Url;

use crate::tokens::{SignIns, TokenManager, TokenOwner};
use crate::user_crm::UserCrm;
use crate::zoho::CrmClient;
use crate::zoho::crm::CrmField;

/// What every handler shares, built once (not per worker).
pub struct PortalState {
    pub manager: TokenManager,
    /// The comma-separated scopes a login asks for.
    pub scope: String,
    /// Where logins start (`--accounts-url`).
    pub accounts_url: Url,
    pub public_url: Url,
    /// Fields metadata by (token owner, module), with when it was fetched (see `routes::records`).
    pub fields_cache: FieldsCache,
    /// When each token owner was last confirmed an Administrator at Zoho (see `routes::admin`).
    pub admin_checks: DashMap<TokenOwner, Instant>,
    /// The sign-ins and logins in flight, kept on the server (see [`SignIns`]).
    pub sign_ins: SignIns,
    /// Each token owner's module navigation, as last listed at Zoho (see `routes::landing::navigation`).
    pub navigation: DashMap<TokenOwner, Arc<[NavModule]>>,
    /// How long a login in flight (its state and PKCE verifier, kept on the server) stays good.
    pub pending_login_ttl: Duration,
    /// How long a request body may take to arrive, from the request's head on (see
    /// `routes::middleware::body_deadline`).
    pub body_read_timeout: Duration,
}

/// Fields metadata by (token owner, module), with when it was fetched.
pub type FieldsCache = DashMap<(TokenOwner, String), (Instant, Arc<Vec<CrmField>>)>;

impl PortalState {
    /// Zoho CRM as `owner` sees it, through `client` (the serving worker's own): every call gets a valid access
    /// token from the manager first.
    pub fn crm_for<'a>(&'a self, client: &'a CrmClient, owner: &'a TokenOwner) -> UserCrm<'a> {
        UserCrm::new(&self.manager, client, owner)
    }

    /// Forgets what was cached for a token (its user logged in again, disconnected, or was deleted).
    pub fn forget_token(&self, token_id: &str) {
        self.fields_cache
            .retain(|(owner, _), _| owner.token_id != token_id);
        self.admin_checks
            .retain(|owner, _| owner.token_id != token_id);
        self.navigation
            .retain(|owner, _| owner.token_id != token_id);
    }

    /// The module navigation kept for `owner`; empty when none is (see `routes::landing::navigation`).
    pub fn navigation_of(&self, owner: &TokenOwner) -> Arc<[NavModule]> {
        self.navigation
            .get(owner)
            .map(|modules| modules.clone())
            .unwrap_or_default()
    }
}

/// The most modules the navigation lists: Zoho lets an organization add custom modules to its standard ones,
/// and this bounds what the portal keeps per user (the rest stay reachable by address).
pub const NAV_MODULES_MAX: usize = 100;

/// The longest module label (in UTF-8 bytes) the navigation keeps; longer ones are cut with an ellipsis.
pub const NAV_LABEL_MAX: usize = 32;

/// One entry of the module navigation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NavModule {
    /// The module's API name (a [module name](crate::zoho::crm::is_module_name)).
    pub api_name: String,
    /// The module's plural label, at most [`NAV_LABEL_MAX`] bytes.
    pub label: String,
    /// Whether Zoho said the user's profile may edit the module's records (`editable`).
    #[serde(default)]
    pub editable: bool,
}

impl NavModule {
    /// An entry with the label cut to at most [`NAV_LABEL_MAX`] bytes (on a character boundary).
    pub fn new(api_name: String, label: &str) -> NavModule {
        let label = if label.len() > NAV_LABEL_MAX {
            let ellipsis = '…';
            let mut cut = String::new();
            for c in label.chars() {
                if cut.len() + c.len_utf8() + ellipsis.len_utf8() > NAV_LABEL_MAX {
                    break;
                }
                cut.push(c);
            }
            cut.push(ellipsis);
            cut
        } else {
            label.to_owned()
        };
        NavModule {
            api_name,
            label,
            editable: false,
        }
    }

    /// The entry, marked as a module whose records the user may edit (or not).
    pub fn editable(self, editable: bool) -> NavModule {
        NavModule { editable, ..self }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_labels_are_cut_on_a_character_boundary() {
        let module = NavModule::new("Leads".into(), &"é".repeat(100));
        assert!(module.label.len() <= NAV_LABEL_MAX);
        assert!(module.label.ends_with('…'));
        assert_eq!(NavModule::new("Leads".into(), "Leads").label, "Leads");
    }
}
