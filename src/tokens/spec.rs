//! The store spec string (`--store`, `TOKEN_STORE`) that picks a store everywhere.

use std::sync::Arc;

use super::{StoreError, TokenStore};

/// A parsed store spec: `sqlite:PATH` (the default, `sqlite:zohooauth.db`), `sqlite:PATH?create=1`,
/// `sqlite::memory:`, `list` or `file:PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    /// `sqlite:PATH`: a new or empty file becomes the store; another application's database is refused.
    SqliteFile(std::path::PathBuf),
    /// `sqlite:PATH?create=1`: as `sqlite:PATH`, and a database that holds other tables but no token table
    /// gets the token table added (for `serve`; the `tokens` commands still never add one).
    SqliteFileBesideOtherTables(std::path::PathBuf),
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
                    match path.strip_suffix(CREATE_OPTION) {
                        Some("") => Err(bad()),
                        Some(path) => Ok(StoreSpec::SqliteFileBesideOtherTables(path.into())),
                        None => Ok(StoreSpec::SqliteFile(path.into())),
                    }
                } else if let Some(path) = spec.strip_prefix("file:").filter(|p| !p.is_empty()) {
                    Ok(StoreSpec::File(path.into()))
                } else {
                    Err(bad())
                }
            }
        }
    }
}

/// What `sqlite:PATH` ends with to add the token table to a database that holds other tables.
const CREATE_OPTION: &str = "?create=1";

impl std::fmt::Display for StoreSpec {
    /// Writes the spec back in the form it was parsed from.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreSpec::SqliteFile(path) => write!(f, "sqlite:{}", path.display()),
            StoreSpec::SqliteFileBesideOtherTables(path) => {
                write!(f, "sqlite:{}{CREATE_OPTION}", path.display())
            }
            StoreSpec::SqliteMemory => f.write_str("sqlite::memory:"),
            StoreSpec::List => f.write_str("list"),
            StoreSpec::File(path) => write!(f, "file:{}", path.display()),
        }
    }
}

impl Default for StoreSpec {
    /// `sqlite:zohooauth.db`, the file of Zoho's Kaizen #192 sample store `CustomStoreSQLite`
    /// (<https://help.zoho.com/portal/en/community/topic/kaizen-192-implementing-custom-token-persistence-in-python-sdk>).
    fn default() -> Self {
        StoreSpec::SqliteFile("zohooauth.db".into())
    }
}

impl StoreSpec {
    /// The file a `sqlite:PATH` or `file:PATH` spec names; `None` for the stores that live in memory.
    pub fn file_path(&self) -> Option<&std::path::Path> {
        match self {
            StoreSpec::SqliteFile(path)
            | StoreSpec::SqliteFileBesideOtherTables(path)
            | StoreSpec::File(path) => Some(path),
            StoreSpec::SqliteMemory | StoreSpec::List => None,
        }
    }
}

/// Opens the store a spec names, creating its file when missing (how `serve` starts on a fresh machine).
pub fn open_store(spec: &StoreSpec) -> Result<Arc<dyn TokenStore>, StoreError> {
    Ok(match spec {
        StoreSpec::SqliteFile(path) => Arc::new(super::SqliteStore::open(path)?),
        StoreSpec::SqliteFileBesideOtherTables(path) => {
            Arc::new(super::SqliteStore::open_beside_other_tables(path)?)
        }
        StoreSpec::SqliteMemory => Arc::new(super::SqliteStore::in_memory()?),
        StoreSpec::List => Arc::new(super::ListStore::new()),
        StoreSpec::File(path) => Arc::new(super::FileStore::open(path)?),
    })
}

/// What a portal persists, opened from one spec: the tokens, and the sign-ins (see [`super::SignIns`]).
pub struct PortalStores {
    pub tokens: Arc<dyn TokenStore>,
    pub sign_ins: super::SignIns,
}

/// Opens everything a portal persists from one spec, creating files when missing: the token store, and beside
/// it the sign-ins and logins in flight. With a SQLite file they are tables of their own in the same file; with
/// the CSV file store, a SQLite file of their own beside it (`<file>.sign-ins.db`); either way they outlive a
/// restart and reach every portal on the store. The stores that live in memory keep them in memory. Records
/// past their lifetime are purged here (blocking, as opening is), and then every
/// [`PURGE_EVERY`](super::sign_ins::PURGE_EVERY). This is the one place that chooses.
pub fn open_portal_stores(spec: &StoreSpec, now_secs: i64) -> Result<PortalStores, StoreError> {
    let tokens = open_store(spec)?;
    let sign_in_store: Arc<dyn super::SignInStore> = match spec {
        StoreSpec::SqliteFile(path) | StoreSpec::SqliteFileBesideOtherTables(path) => {
            Arc::new(super::SqliteSignIns::open(path, false)?)
        }
        StoreSpec::File(path) => Arc::new(super::SqliteSignIns::open(
            &super::sign_ins_file_beside(path),
            true,
        )?),
        StoreSpec::SqliteMemory | StoreSpec::List => Arc::new(super::MemorySignIns::default()),
    };
    sign_in_store.purge(now_secs)?;
    Ok(PortalStores {
        tokens,
        sign_ins: super::SignIns::new(sign_in_store),
    })
}

/// Opens the store a spec names only if its file is already there: a mistyped path is
/// [`StoreError::Missing`] and creates nothing (the file stores' `open_existing` never create one). For the
/// commands that inspect or maintain a store.
pub fn open_existing_store(spec: &StoreSpec) -> Result<Arc<dyn TokenStore>, StoreError> {
    Ok(match spec {
        StoreSpec::SqliteFile(path) | StoreSpec::SqliteFileBesideOtherTables(path) => {
            Arc::new(super::SqliteStore::open_existing(path)?)
        }
        StoreSpec::File(path) => Arc::new(super::FileStore::open_existing(path)?),
        StoreSpec::SqliteMemory | StoreSpec::List => open_store(spec)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_forms_parse() {
        let parse = |s: &str| s.parse::<StoreSpec>().ok();
        assert_eq!(parse("sqlite:zohooauth.db"), Some(StoreSpec::default()));
        assert_eq!(
            parse("sqlite:/var/lib/tokens.db"),
            Some(StoreSpec::SqliteFile("/var/lib/tokens.db".into()))
        );
        assert_eq!(
            parse("sqlite:app.db?create=1"),
            Some(StoreSpec::SqliteFileBesideOtherTables("app.db".into()))
        );
        assert_eq!(parse("sqlite::memory:"), Some(StoreSpec::SqliteMemory));
        assert_eq!(parse("list"), Some(StoreSpec::List));
        assert_eq!(
            parse("file:tokens.csv"),
            Some(StoreSpec::File("tokens.csv".into()))
        );
    }

    #[test]
    fn anything_else_is_an_error_naming_the_accepted_forms() {
        for bad in [
            "",
            "sqlite:",
            "sqlite:?create=1",
            "file:",
            "mysql://x",
            "List",
            "memory",
            "zohooauth.db",
        ] {
            let error = bad.parse::<StoreSpec>().expect_err(bad).to_string();
            for form in ["sqlite:PATH", "sqlite::memory:", "list", "file:PATH"] {
                assert!(error.contains(form), "{error:?} should name {form}");
            }
        }
    }

    #[test]
    fn only_open_store_creates_a_missing_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in ["sqlite:new.db", "file:new.csv"] {
            let (kind, file) = name.split_once(':').expect("kind:file");
            let path = dir.path().join(file);
            let spec: StoreSpec = format!("{kind}:{}", path.display()).parse().expect("spec");

            let error = open_existing_store(&spec).err().expect("refused");
            assert!(matches!(error, StoreError::Missing { .. }), "{error}");
            assert!(!path.exists(), "{name}: nothing created");

            open_store(&spec).expect("created, as `serve` needs");
            assert!(path.exists(), "{name}: created");
            open_existing_store(&spec).expect("now it exists");
        }
        for spec in [StoreSpec::List, StoreSpec::SqliteMemory] {
            assert!(open_existing_store(&spec).is_ok(), "{spec}");
        }
    }

    #[test]
    fn display_round_trips() {
        for spec in [
            "sqlite:a/b.db",
            "sqlite:a/b.db?create=1",
            "sqlite::memory:",
            "list",
            "file:t.csv",
        ] {
            assert_eq!(spec.parse::<StoreSpec>().unwrap().to_string(), spec);
        }
    }
}
