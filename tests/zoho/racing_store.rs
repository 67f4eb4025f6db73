//! A store that lets another writer in at the worst moment, between the manager's read and its write.

use std::sync::Arc;

use zylker_portal::tokens::{OAuthToken, StoreError, TokenStore, now_millis};

/// Wraps a store; when armed, the next compare-and-set or compare-and-delete first lets "another process"
/// write a fresh access token to the row, exactly between the manager's read and its write.
pub struct RacingStore {
    inner: Arc<dyn TokenStore>,
    armed: std::sync::Mutex<Option<String>>,
}

impl RacingStore {
    pub fn new(inner: Arc<dyn TokenStore>) -> Self {
        Self {
            inner,
            armed: std::sync::Mutex::new(None),
        }
    }

    pub fn arm(&self, access_token: &str) {
        *self.armed.lock().unwrap() = Some(access_token.to_owned());
    }

    fn let_the_other_writer_in(&self, id: &str) -> Result<(), StoreError> {
        let Some(access_token) = self.armed.lock().unwrap().take() else {
            return Ok(());
        };
        if let Some(mut row) = self.inner.find_token_by_id(id)? {
            row.access_token = Some(access_token.into());
            row.expiry_time = Some(now_millis() + 3_600_000);
            self.inner.save_token(&mut row)?;
        }
        Ok(())
    }
}

impl TokenStore for RacingStore {
    fn find_token(&self, partial: &OAuthToken) -> Result<Option<OAuthToken>, StoreError> {
        self.inner.find_token(partial)
    }
    fn save_token(&self, token: &mut OAuthToken) -> Result<(), StoreError> {
        self.inner.save_token(token)
    }
    fn delete_token(&self, id: &str) -> Result<(), StoreError> {
        self.inner.delete_token(id)
    }
    fn get_tokens(&self) -> Result<Vec<OAuthToken>, StoreError> {
        self.inner.get_tokens()
    }
    fn delete_tokens(&self) -> Result<(), StoreError> {
        self.inner.delete_tokens()
    }
    fn find_token_by_id(&self, id: &str) -> Result<Option<OAuthToken>, StoreError> {
        self.inner.find_token_by_id(id)
    }
    fn compare_and_set_access_token(
        &self,
        id: &str,
        expected_access_token: Option<&str>,
        access_token: &str,
        expiry_time: i64,
    ) -> Result<bool, StoreError> {
        self.let_the_other_writer_in(id)?;
        self.inner.compare_and_set_access_token(
            id,
            expected_access_token,
            access_token,
            expiry_time,
        )
    }
    fn delete_token_if_unchanged(
        &self,
        id: &str,
        expected_access_token: Option<&str>,
    ) -> Result<bool, StoreError> {
        self.let_the_other_writer_in(id)?;
        self.inner
            .delete_token_if_unchanged(id, expected_access_token)
    }
}
