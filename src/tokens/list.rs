//! `ListStore`: rows in a `Vec` behind a lock. The shortest correct store, and the oracle of the property tests.

use std::sync::{Mutex, MutexGuard};

use super::{OAuthToken, StoreError, TokenStore};

/// Keeps tokens in memory, in a `Vec`, for as long as the process lives. Read this one first when writing a
/// store of your own: it is the contract and nothing else.
#[derive(Debug, Default)]
pub struct ListStore {
    rows: Mutex<Rows>,
}

#[derive(Debug, Default)]
struct Rows {
    tokens: Vec<OAuthToken>,
    last_id: u64,
}

impl ListStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn rows(&self) -> MutexGuard<'_, Rows> {
        // Every method leaves the rows whole before it can panic, so a poisoned lock still guards good data.
        self.rows
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl TokenStore for ListStore {
    fn find_token(&self, partial: &OAuthToken) -> Result<Option<OAuthToken>, StoreError> {
        let Some(key) = partial.key() else {
            return Ok(None);
        };
        Ok(self.rows().tokens.iter().find(|t| t.matches(key)).cloned())
    }

    fn save_token(&self, token: &mut OAuthToken) -> Result<(), StoreError> {
        if (token.id.is_some() || token.user_name.is_some()) && !token.has_credentials() {
            return Err(StoreError::NothingToSave);
        }
        let mut rows = self.rows();
        let existing = match token.key() {
            Some(key) => rows.tokens.iter().position(|t| t.matches(key)),
            None => None,
        };
        match existing {
            Some(index) => {
                token.id = rows.tokens[index].id.clone();
                rows.tokens[index] = token.clone();
            }
            None => {
                if token.id.is_none() {
                    token.id = Some(rows.next_id());
                }
                // An explicit id that is already stored is that row: replace it rather than duplicate the id.
                let id = token.id.clone();
                rows.tokens.retain(|t| t.id != id);
                rows.tokens.push(token.clone());
            }
        }
        Ok(())
    }

    fn delete_token(&self, id: &str) -> Result<(), StoreError> {
        self.rows().tokens.retain(|t| t.id.as_deref() != Some(id));
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
        Ok(self
            .rows()
            .tokens
            .iter()
            .find(|t| t.id.as_deref() == Some(id))
            .cloned())
    }

    fn compare_and_set_access_token(
        &self,
        id: &str,
        expected_access_token: Option<&str>,
        access_token: &str,
        expiry_time: i64,
    ) -> Result<bool, StoreError> {
        let mut rows = self.rows();
        let Some(stored) = rows.tokens.iter_mut().find(|t| t.id.as_deref() == Some(id)) else {
            return Ok(false);
        };
        if stored.access_token.as_deref() != expected_access_token {
            return Ok(false);
        }
        stored.access_token = Some(access_token.to_owned());
        stored.expiry_time = Some(expiry_time);
        Ok(true)
    }

    fn delete_token_if_unchanged(
        &self,
        id: &str,
        expected_access_token: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut rows = self.rows();
        let before = rows.tokens.len();
        rows.tokens.retain(|t| {
            t.id.as_deref() != Some(id) || t.access_token.as_deref() != expected_access_token
        });
        Ok(rows.tokens.len() != before)
    }
}

impl Rows {
    /// A fresh id: one past the largest numeric id stored, like the seed's `generate_id`, and never reused.
    fn next_id(&mut self) -> String {
        let largest = self
            .tokens
            .iter()
            .filter_map(|t| t.id.as_deref()?.parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        self.last_id = self.last_id.max(largest) + 1;
        self.last_id.to_string()
    }
}
