//! Logging a user in (the code exchange, identifying the user, the upsert) and out of Zoho (revoke, delete).

use url::Url;

use super::refresh::accounts_failure;
use super::{
    Disconnected, Login, LoginOutcome, TokenError, TokenManager, TokenOwner, user_name_of,
};
use crate::tokens::{OAuthToken, Secret};
use crate::zoho::{AccountsError, CrmAuth, Lane, OrgKey};

impl TokenManager {
    /// Exchanges a callback's code at the (already validated) `accounts_server`, identifies the user as the v8
    /// SDK does (`users?type=CurrentUser` and `org`), and upserts the token by `user_name = email:org_id`. When a
    /// new refresh token replaces a stored one, the old one is revoked.
    ///
    /// An `api_domain` that is not Zoho's (nor the configured accounts URL's host) is a
    /// [`TokenError::Protocol`]: no CRM call goes there and nothing is stored. The code is spent and is not
    /// persisted. When Zoho returns no refresh token and none is stored for the user (of this client), the
    /// answer is [`LoginOutcome::NeedsConsent`] and nothing is stored; when one is stored, it is kept.
    ///
    /// The user's email (in `user_name`) is logged at DEBUG only; INFO lines carry the token id.
    #[tracing::instrument(skip_all, fields(accounts_server = %accounts_server, token_id))]
    pub async fn login(
        &self,
        accounts_server: &Url,
        code: &Secret,
        code_verifier: &Secret,
    ) -> Result<LoginOutcome, TokenError> {
        let response = self
            .accounts
            .exchange_code(accounts_server, code, code_verifier)
            .await
            .map_err(|error| accounts_failure("code exchange", error))?;
        let Some(api_domain) = response
            .api_domain
            .as_deref()
            .and_then(|claimed| self.hosts.api_domain(claimed))
        else {
            tracing::warn!(
                api_domain = ?response.api_domain,
                "refusing a token answer whose api_domain is not a Zoho API domain"
            );
            if let Some(refresh_token) = &response.refresh_token {
                // Do not leave an unusable refresh token taking one of the user's 20 slots.
                self.revoke_quietly(accounts_server, refresh_token, "refused login")
                    .await;
            }
            return Err(TokenError::Protocol(
                "the token answer names an API domain that is not Zoho's".to_owned(),
            ));
        };

        let auth = CrmAuth {
            api_domain: &api_domain,
            access_token: &response.access_token,
        };
        let gate = self.gate.login_key(api_domain.as_str());
        // In the login lane: a person logging in is served before the pages of those already in; and the two
        // calls wait for their turns together, so a busy gate costs the callback one turn, not two.
        let identity = async {
            tokio::try_join!(
                self.gate
                    .run(&gate, &Lane::Login, || self.crm.current_user(auth)),
                self.gate.run(&gate, &Lane::Login, || self.crm.org(auth)),
            )
        };
        let (user, org) = match identity.await {
            Ok(identity) => identity,
            Err(error) => {
                tracing::warn!(%error, "could not identify the user; nothing stored");
                if let Some(refresh_token) = &response.refresh_token {
                    self.revoke_quietly(accounts_server, refresh_token, "unidentified login")
                        .await;
                }
                return Err(error.into());
            }
        };
        self.gate
            .note_org(&OrgKey::new(api_domain.as_str(), &org.id));
        let user_name = user_name_of(&user.email, &org.id);
        tracing::debug!(%user_name, "identified the user");

        let stored = {
            let partial = OAuthToken {
                user_name: Some(user_name.clone()),
                ..OAuthToken::default()
            };
            self.with_store(move |store| store.find_token(&partial))
                .await?
        };
        let new_token = stored.is_none();
        let credentials = self.accounts.credentials();
        // A refresh token stored for another client cannot be refreshed with ours.
        let stored_refresh = stored
            .as_ref()
            .filter(|t| {
                t.client_id
                    .as_deref()
                    .is_none_or(|id| id == credentials.client_id)
            })
            .and_then(|t| t.refresh_token.clone())
            .filter(|t| !t.is_empty());
        let (refresh_token, replaced) = match (response.refresh_token.clone(), stored_refresh) {
            (Some(new), old) => {
                let replaced = old.filter(|old| *old != new);
                (new, replaced)
            }
            (None, Some(kept)) => (kept, None),
            (None, None) => {
                tracing::info!("Zoho returned no refresh token and none is stored: consent needed");
                return Ok(LoginOutcome::NeedsConsent);
            }
        };

        let mut token = OAuthToken {
            id: None,
            user_name: Some(user_name),
            client_id: Some(credentials.client_id.clone()),
            client_secret: Some(credentials.client_secret.clone()),
            refresh_token: Some(refresh_token),
            access_token: Some(response.access_token.clone()),
            // The code is spent: keeping it would only give the SDK's matching rules a stale key.
            grant_token: None,
            expiry_time: Some(self.granted(response.expires_in)),
            redirect_url: Some(credentials.redirect_url.as_str().to_owned()),
            api_domain: Some(api_domain.origin().ascii_serialization()),
        };
        let saved = self
            .with_store(move |store| {
                store.save_token(&mut token)?;
                Ok(token.id)
            })
            .await
            .and_then(|id| {
                id.ok_or_else(|| TokenError::Protocol("the store assigned no id".to_owned()))
            });
        let token_id = match saved {
            Ok(token_id) => token_id,
            Err(error) => {
                // Nothing holds the new refresh token now: give it back rather than leave it taking one of the
                // user's 20 slots at Zoho.
                if let Some(new) = &response.refresh_token {
                    self.revoke_quietly(accounts_server, new, "unsaved login")
                        .await;
                }
                return Err(error);
            }
        };
        tracing::Span::current().record("token_id", token_id.as_str());
        tracing::info!("logged in; token saved");
        self.forget_read(&token_id);

        if let Some(old) = replaced {
            let old_accounts = stored
                .as_ref()
                .and_then(|t| t.api_domain.as_deref())
                .and_then(|domain| self.hosts.accounts_for_api_domain(domain))
                .unwrap_or_else(|| accounts_server.clone());
            self.revoke_quietly(&old_accounts, &old, "replaced refresh token")
                .await;
        }
        Ok(LoginOutcome::LoggedIn(Box::new(Login {
            token_id,
            user,
            org,
            new_token,
        })))
    }

    /// Disconnects from Zoho: revokes the refresh token at the user's data centre, then deletes the token.
    ///
    /// The token is deleted here even when the revoke fails (Zoho unreachable, throttled, an `api_domain` with
    /// no known Accounts server): the user asked to be disconnected, and a token the portal no longer holds
    /// cannot be used by it. The failure is logged as a warning; the refresh token then stays valid at Zoho
    /// until the user removes the portal under Connected Apps. Zoho's HTTP 400 (the token was already invalid)
    /// counts as revoked. A token that is not stored any more, or whose row now belongs to another user (ids
    /// are reused), is already disconnected for this owner: [`Disconnected::AlreadyGone`], and nothing of the
    /// other user's is touched. Administrators' central revocation goes through here too.
    #[tracing::instrument(skip_all, fields(token_id = %owner.token_id))]
    pub async fn disconnect(&self, owner: &TokenOwner) -> Result<Disconnected, TokenError> {
        let stored = match self.read(owner).await {
            Ok(stored) => stored,
            Err(TokenError::NotStored) => {
                tracing::info!("nothing to disconnect: the owner's token is not stored");
                return Ok(Disconnected::AlreadyGone);
            }
            Err(error) => return Err(error),
        };
        if let Some(refresh_token) = stored.refresh_token.as_ref().filter(|t| !t.is_empty()) {
            match stored
                .api_domain
                .as_deref()
                .and_then(|domain| self.hosts.accounts_for_api_domain(domain))
            {
                Some(accounts_server) => {
                    match self.accounts.revoke(&accounts_server, refresh_token).await {
                        Ok(()) => tracing::info!("refresh token revoked at Zoho"),
                        Err(AccountsError::Dead) => {
                            tracing::info!("Zoho no longer knew the refresh token")
                        }
                        Err(error) => tracing::warn!(
                            %error,
                            "could not revoke the refresh token at Zoho; deleting it here anyway"
                        ),
                    }
                }
                None => tracing::warn!(
                    api_domain = ?stored.api_domain,
                    "no known Accounts server for the stored api_domain; deleting the token without revoking"
                ),
            }
        }
        self.delete_owned(owner).await
    }

    /// Deletes the owner's token, and only while the row is still the owner's: between reading and deleting,
    /// the row may have been deleted and its id handed to another user's login.
    async fn delete_owned(&self, owner: &TokenOwner) -> Result<Disconnected, TokenError> {
        self.forget_read(&owner.token_id);
        let owner_now = owner.clone();
        let deleted = self
            .with_store(move |store| {
                // Compare-and-delete on the access token just read: a row rewritten in between by another
                // user's login is left alone; one refreshed in between (still the owner's) is tried again.
                for _ in 0..3 {
                    let Some(stored) = store.find_token_by_id(&owner_now.token_id)? else {
                        return Ok(false);
                    };
                    if !owner_now.owns(&stored) {
                        return Ok(false);
                    }
                    if store.delete_token_if_unchanged(
                        &owner_now.token_id,
                        stored.access_token.as_ref().map(Secret::expose_secret),
                    )? {
                        return Ok(true);
                    }
                }
                Ok(false)
            })
            .await?;
        if deleted {
            tracing::info!("token deleted");
            Ok(Disconnected::Deleted)
        } else {
            tracing::info!("the token was gone or no longer the owner's; nothing deleted");
            Ok(Disconnected::AlreadyGone)
        }
    }

    /// Revokes a refresh token the portal no longer needs; a failure is logged, never returned.
    async fn revoke_quietly(&self, accounts_server: &Url, refresh_token: &Secret, why: &str) {
        match self.accounts.revoke(accounts_server, refresh_token).await {
            Ok(()) => tracing::info!(why, "old refresh token revoked"),
            Err(error) => tracing::warn!(why, %error, "could not revoke an old refresh token"),
        }
    }
}
