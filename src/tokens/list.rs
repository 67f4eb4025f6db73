//! `ListStore`: rows in a `Vec` behind a lock. The shortest correct store, and the oracle of the property tests.

use std::sync::{Mutex, MutexGuard};

use super::{OAuthToken, Secret, StoreError, TokenStore, id_for_new_row, row_to_write};

/// Keeps tokens in memory, in a `Vec`, for as long as the process lives: the contract and nothing else. (A
/// store of your own, outside the crate, starts better from `examples/custom_store.rs`, which uses only the
/// public API.)
#[derive(Debug, Default)]
pub struct ListStore {
    rows: Mutex<TokenRows>,
}

impl ListStore {
    /// An empty store; its tokens live as long as the value (and vanish with the process).
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn rows(&self) -> MutexGuard<'_, TokenRows> {
        // Every method leaves the rows whole before it can panic, so a poisoned lock still guards good data.
        self.rows
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl TokenStore for ListStore {
    fn find_token(&self, partial: &OAuthToken) -> Result<Option<OAuthToken>, StoreError> {
        Ok(self.rows().find(partial).cloned())
    }

    fn save_token(&self, token: &mut OAuthToken) -> Result<(), StoreError> {
        self.rows().save(token)
    }

    fn delete_token(&self, id: &str) -> Result<(), StoreError> {
        self.rows().delete(id);
        Ok(())
    }

    fn get_tokens(&self) -> Result<Vec<OAuthToken>, StoreError> {
        Ok(self.rows().tokens.clone())
    }

    fn delete_tokens(&self) -> Result<(), StoreError> {
        self.rows().tokens.clear();
        Ok(())
    }

    fn find_token_by_id(&self, id: &str) -> Result<Option<OAuthToken>, StoreError> {
        Ok(self.rows().find_by_id(id).cloned())
    }

    /// Answers at once unless another thread holds the rows.
    fn find_token_by_id_without_waiting(
        &self,
        id: &str,
    ) -> Option<Result<Option<OAuthToken>, StoreError>> {
        let rows = super::try_lock(&self.rows)?;
        Some(Ok(rows.find_by_id(id).cloned()))
    }

    fn compare_and_set_access_token(
        &self,
        id: &str,
        expected_access_token: Option<&str>,
        access_token: &str,
        expiry_time: i64,
    ) -> Result<bool, StoreError> {
        Ok(self.rows().compare_and_set_access_token(
            id,
            expected_access_token,
            access_token,
            expiry_time,
        ))
    }

    fn delete_token_if_unchanged(
        &self,
        id: &str,
        expected_access_token: Option<&str>,
    ) -> Result<bool, StoreError> {
        Ok(self.rows().delete_if_unchanged(id, expected_access_token))
    }
}

/// The contract applied to a `Vec` of rows, in insertion order. [`ListStore`] keeps one behind a mutex;
/// [`FileStore`](super::FileStore) loads one from its CSV, applies an operation and writes it back, so the two
/// answer every question the same way.
#[derive(Debug, Default, Clone)]
pub(crate) struct TokenRows {
    pub(crate) tokens: Vec<OAuthToken>,
}

impl TokenRows {
    /// The first row (in insertion order) that `partial` names.
    pub(crate) fn find(&self, partial: &OAuthToken) -> Option<&OAuthToken> {
        let key = partial.key()?;
        self.tokens.iter().find(|t| t.matches(key))
    }

    pub(crate) fn find_by_id(&self, id: &str) -> Option<&OAuthToken> {
        self.tokens.iter().find(|t| t.id.as_deref() == Some(id))
    }

    /// The upsert of [`TokenStore::save_token`].
    pub(crate) fn save(&mut self, token: &mut OAuthToken) -> Result<(), StoreError> {
        if (token.id.is_some() || token.user_name.is_some()) && !token.has_credentials() {
            return Err(StoreError::NothingToSave);
        }
        match row_to_write(&self.tokens, token) {
            Some(index) => {
                token.id = self.tokens[index].id.clone();
                self.tokens[index] = token.clone();
            }
            None => {
                token.id = Some(id_for_new_row(&self.tokens, token));
                self.tokens.push(token.clone());
            }
        }
        Ok(())
    }

    pub(crate) fn delete(&mut self, id: &str) -> bool {
        let before = self.tokens.len();
        self.tokens.retain(|t| t.id.as_deref() != Some(id));
        self.tokens.len() != before
    }

    pub(crate) fn compare_and_set_access_token(
        &mut self,
        id: &str,
        expected_access_token: Option<&str>,
        access_token: &str,
        expiry_time: i64,
    ) -> bool {
        let Some(stored) = self.tokens.iter_mut().find(|t| t.id.as_deref() == Some(id)) else {
            return false;
        };
        if stored.access_token.as_ref().map(Secret::expose_secret) != expected_access_token {
            return false;
        }
        stored.access_token = Some(access_token.into());
        stored.expiry_time = Some(expiry_time);
        true
    }

    pub(crate) fn delete_if_unchanged(
        &mut self,
        id: &str,
        expected_access_token: Option<&str>,
    ) -> bool {
        let before = self.tokens.len();
        self.tokens.retain(|t| {
            t.id.as_deref() != Some(id)
                || t.access_token.as_ref().map(Secret::expose_secret) != expected_access_token
        });
        self.tokens.len() != before
    }
}
