//! `FileStore`: not written yet (issue 2).

use std::path::Path;

use super::{OAuthToken, StoreError, TokenStore};

/// Placeholder until the store lands; every call fails.
#[derive(Debug)]
pub struct FileStore;

fn unbuilt() -> StoreError {
    StoreError::backend("FileStore", "not implemented yet")
}

impl FileStore {
    pub fn open(_path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Err(unbuilt())
    }
}

impl TokenStore for FileStore {
    fn find_token(&self, _partial: &OAuthToken) -> Result<Option<OAuthToken>, StoreError> {
        Err(unbuilt())
    }
    fn save_token(&self, _token: &mut OAuthToken) -> Result<(), StoreError> {
        Err(unbuilt())
    }
    fn delete_token(&self, _id: &str) -> Result<(), StoreError> {
        Err(unbuilt())
    }
    fn get_tokens(&self) -> Result<Vec<OAuthToken>, StoreError> {
        Err(unbuilt())
    }
    fn delete_tokens(&self) -> Result<(), StoreError> {
        Err(unbuilt())
    }
    fn find_token_by_id(&self, _id: &str) -> Result<Option<OAuthToken>, StoreError> {
        Err(unbuilt())
    }
}
