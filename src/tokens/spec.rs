//! The store spec string (`--store`, `TOKEN_STORE`) that picks a store everywhere.

use std::sync::Arc;

use super::{StoreError, TokenStore};

/// A parsed store spec: `sqlite:PATH` (the default, `sqlite:zohooauth.db`), `sqlite::memory:`, `list` or
/// `file:PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    SqliteFile(std::path::PathBuf),
    SqliteMemory,
    List,
    File(std::path::PathBuf),
}

impl std::str::FromStr for StoreSpec {
    type Err = StoreError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let bad = || StoreError::BadSpec(spec.to_owned());
        match spec {
            "list" => Ok(StoreSpec::List),
            "sqlite::memory:" => Ok(StoreSpec::SqliteMemory),
            _ => {
                if let Some(path) = spec.strip_prefix("sqlite:").filter(|p| !p.is_empty()) {
                    Ok(StoreSpec::SqliteFile(path.into()))
                } else if let Some(path) = spec.strip_prefix("file:").filter(|p| !p.is_empty()) {
                    Ok(StoreSpec::File(path.into()))
                } else {
                    Err(bad())
                }
            }
        }
    }
}

/// Opens the store a spec names.
pub fn open_store(spec: &StoreSpec) -> Result<Arc<dyn TokenStore>, StoreError> {
    Ok(match spec {
        StoreSpec::SqliteFile(path) => Arc::new(super::SqliteStore::open(path)?),
        StoreSpec::SqliteMemory => Arc::new(super::SqliteStore::in_memory()?),
        StoreSpec::List => Arc::new(super::ListStore::new()),
        StoreSpec::File(path) => Arc::new(super::FileStore::open(path)?),
    })
}
