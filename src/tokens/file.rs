//! `FileStore`: the Zoho SDK's file persistence, a CSV file that the Python SDK and this store can share.

use std::fs::{File, OpenOptions, Permissions};
use std::io::ErrorKind;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use super::list::TokenRows;
use super::sqlite::missing_folder;
use super::{OAuthToken, Secret, StoreError, TokenStore, exposed, parse_expiry_time};
use crate::private_file::restrict_to_owner;

/// The SDK FileStore's header, exactly (`redirect_uri` there, where the table and the token say `redirect_url`).
const HEADER: [&str; 10] = [
    "id",
    "user_name",
    "client_id",
    "client_secret",
    "refresh_token",
    "access_token",
    "grant_token",
    "expiry_time",
    "redirect_uri",
    "api_domain",
];

/// Tokens in a CSV file with the SDK FileStore's header, one row per token, empty cells for absent values.
///
/// A file written by the Python SDK is read and changed in place: CRLF or LF line endings, quoted cells, and
/// the older nine-column files without `api_domain` (rewritten with ten columns on the next write; the SDK
/// reads both). Because an empty cell means "absent", an empty string is stored as absent.
///
/// Every change rewrites the whole file atomically: a temporary file in the same folder, fsync, rename (and
/// an fsync of the folder), so a crash leaves the old file or the new one, never half of one. The file gets
/// mode 0600 (a file the SDK wrote with looser permissions is tightened when the store opens it, with a
/// warning when it cannot be).
///
/// Writers queue on a lock inside the process and on an advisory lock (`flock`) on a sidecar file
/// `<file>.lock`, so threads and several processes using `FileStore` on one file never lose each other's
/// changes. Readers need no lock: they always see a whole file. The limit: a Python SDK process writing the
/// same file at the same moment takes no such lock, so one of two simultaneous writes may be lost (the file
/// stays whole). Every operation reads the whole file: this store suits a few hundred users, not a crowd.
#[derive(Debug)]
pub struct FileStore {
    path: PathBuf,
    lock_path: PathBuf,
    writers: Mutex<()>,
}

impl FileStore {
    /// Opens the CSV file at `path`, creating it (header only, mode 0600) when missing. An existing file with
    /// another header, or that is not CSV, is refused with [`StoreError::NotAStore`] and left as it was; a
    /// token file that others may read is tightened to mode 0600.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let store = Self::at(path.as_ref())?;
        store.read()?;
        // Only once the file is known to be a token file: another file named by mistake keeps its mode.
        restrict_to_owner(&store.path, "token file");
        if !store.path.exists() {
            // Created under the writers' lock, so that a store opening at the same moment in another process
            // cannot replace a token saved in between with an empty file.
            store.write_with(|_| true)?;
        }
        Ok(store)
    }

    /// [`open`](Self::open) a CSV file that is already there: a missing file is [`StoreError::Missing`] and
    /// nothing is created. For the commands that inspect or maintain a store.
    pub fn open_existing(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let store = Self::at(path.as_ref())?;
        match std::fs::read(&store.path) {
            Ok(bytes) => store.parse(&bytes)?,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(StoreError::Missing {
                    path: store.path.display().to_string(),
                });
            }
            Err(e) => return Err(store.io_error("cannot read", &store.path, e)),
        };
        restrict_to_owner(&store.path, "token file");
        Ok(store)
    }

    /// The store for the file at `path`, which must not be a folder; nothing is read or written yet.
    fn at(path: &Path) -> Result<Self, StoreError> {
        let path = path.to_path_buf();
        let Some(file_name) = path.file_name() else {
            return Err(StoreError::NotAStore {
                path: path.display().to_string(),
                reason: "the path names no file".to_owned(),
            });
        };
        let mut lock_name = file_name.to_os_string();
        lock_name.push(".lock");
        let store = FileStore {
            lock_path: path.with_file_name(lock_name),
            path,
            writers: Mutex::new(()),
        };
        if store.path.is_dir() {
            return Err(store.not_a_store("it is a folder".to_owned()));
        }
        Ok(store)
    }

    fn not_a_store(&self, reason: String) -> StoreError {
        StoreError::NotAStore {
            path: self.path.display().to_string(),
            reason,
        }
    }

    /// The rows as the file holds them now; a missing file holds none.
    fn read(&self) -> Result<TokenRows, StoreError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(TokenRows::default()),
            Err(e) => {
                return Err(StoreError::backend(
                    format!("cannot read {}", self.path.display()),
                    e,
                ));
            }
        };
        self.parse(&bytes)
    }

    fn parse(&self, bytes: &[u8]) -> Result<TokenRows, StoreError> {
        // Python's csv module writes "\r\n" and quotes cells holding commas, quotes or line breaks; the csv
        // crate reads that, and blank lines, as it is.
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(bytes);
        let mut records = reader.records();
        let header = match records.next() {
            None => return Ok(TokenRows::default()),
            Some(header) => header.map_err(|e| self.not_a_store(e.to_string()))?,
        };
        let columns: Vec<&str> = header
            .iter()
            .enumerate()
            // A byte-order mark (Python's "utf-8-sig") is not part of the first name.
            .map(|(i, name)| {
                if i == 0 {
                    name.trim_start_matches('\u{feff}')
                } else {
                    name
                }
            })
            .collect();
        if columns != HEADER && columns != HEADER[..9] {
            return Err(self.not_a_store(format!(
                "its header is not the SDK FileStore's ({})",
                HEADER.join(",")
            )));
        }
        let mut rows = TokenRows::default();
        for (line, record) in records.enumerate() {
            let record = record.map_err(|e| self.not_a_store(e.to_string()))?;
            if record.len() > columns.len() {
                return Err(self.not_a_store(format!(
                    "row {} has {} cells, the header {}",
                    line + 2,
                    record.len(),
                    columns.len()
                )));
            }
            let cell = |i: usize| record.get(i).filter(|v| !v.is_empty()).map(str::to_owned);
            rows.tokens.push(OAuthToken {
                id: cell(0),
                user_name: cell(1),
                client_id: cell(2),
                client_secret: cell(3).map(Secret::from),
                refresh_token: cell(4).map(Secret::from),
                access_token: cell(5).map(Secret::from),
                grant_token: cell(6).map(Secret::from),
                expiry_time: record.get(7).and_then(parse_expiry_time),
                redirect_url: cell(8),
                api_domain: cell(9),
            });
        }
        Ok(rows)
    }

    /// Reads the rows under the writers' locks, lets `change` edit them, and when it reports a change writes
    /// them back atomically. Returns what `change` returned.
    fn write_with(&self, change: impl FnOnce(&mut TokenRows) -> bool) -> Result<bool, StoreError> {
        let _in_process = self.lock_writers();
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&self.lock_path)
            .map_err(|e| self.io_error("cannot open the lock file", &self.lock_path, e))?;
        lock_file
            .lock()
            .map_err(|e| self.io_error("cannot lock", &self.lock_path, e))?;
        let mut rows = self.read()?;
        let changed = change(&mut rows);
        if changed {
            self.replace_file(&rows)?;
        }
        // Closing the lock file (at the end of this scope) releases the advisory lock.
        Ok(changed)
    }

    fn lock_writers(&self) -> MutexGuard<'_, ()> {
        // The mutex guards no data, only the turn to write; a panicking writer leaves nothing half-done.
        self.writers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn io_error(&self, what: &str, path: &Path, error: std::io::Error) -> StoreError {
        if error.kind() == ErrorKind::NotFound {
            return missing_folder(&self.path, error);
        }
        StoreError::backend(format!("{what} {}", path.display()), error)
    }

    /// Writes `rows` to a temporary file beside the store's file, syncs it, and renames it over the file.
    fn replace_file(&self, rows: &TokenRows) -> Result<(), StoreError> {
        let folder = match self.path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        let write_error = |e: std::io::Error| self.io_error("cannot write", &self.path, e);
        let mut temporary = tempfile::Builder::new()
            .prefix(".tokens-")
            .suffix(".csv.tmp")
            .permissions(Permissions::from_mode(0o600))
            .tempfile_in(folder)
            .map_err(write_error)?;
        {
            // The SDK's line ending (Python's csv default), so that a file shared with it looks like its own.
            let mut writer = csv::WriterBuilder::new()
                .terminator(csv::Terminator::CRLF)
                .from_writer(temporary.as_file_mut());
            let csv_error = |e: csv::Error| {
                StoreError::backend(format!("cannot write {}", self.path.display()), e)
            };
            writer.write_record(HEADER).map_err(csv_error)?;
            for token in &rows.tokens {
                let expiry = token.expiry_time.map(|t| t.to_string());
                let text = |value: Option<&str>| value.unwrap_or_default().to_owned();
                writer
                    .write_record([
                        text(token.id.as_deref()),
                        text(token.user_name.as_deref()),
                        text(token.client_id.as_deref()),
                        text(exposed(&token.client_secret)),
                        text(exposed(&token.refresh_token)),
                        text(exposed(&token.access_token)),
                        text(exposed(&token.grant_token)),
                        expiry.unwrap_or_default(),
                        text(token.redirect_url.as_deref()),
                        text(token.api_domain.as_deref()),
                    ])
                    .map_err(csv_error)?;
            }
            writer.flush().map_err(write_error)?;
        }
        temporary.as_file().sync_all().map_err(write_error)?;
        temporary
            .persist(&self.path)
            .map_err(|e| write_error(e.error))?;
        // The rename itself is durable once the folder is synced.
        File::open(folder)
            .and_then(|dir| dir.sync_all())
            .map_err(write_error)?;
        Ok(())
    }
}

impl TokenStore for FileStore {
    fn find_token(&self, partial: &OAuthToken) -> Result<Option<OAuthToken>, StoreError> {
        Ok(self.read()?.find(partial).cloned())
    }

    fn save_token(&self, token: &mut OAuthToken) -> Result<(), StoreError> {
        let mut result = Ok(());
        let mut saved = token.clone();
        self.write_with(|rows| {
            result = rows.save(&mut saved);
            result.is_ok()
        })?;
        result?;
        *token = saved;
        Ok(())
    }

    fn delete_token(&self, id: &str) -> Result<(), StoreError> {
        self.write_with(|rows| rows.delete(id)).map(drop)
    }

    fn get_tokens(&self) -> Result<Vec<OAuthToken>, StoreError> {
        Ok(self.read()?.tokens)
    }

    fn delete_tokens(&self) -> Result<(), StoreError> {
        self.write_with(|rows| {
            rows.tokens.clear();
            true
        })
        .map(drop)
    }

    fn find_token_by_id(&self, id: &str) -> Result<Option<OAuthToken>, StoreError> {
        Ok(self.read()?.find_by_id(id).cloned())
    }

    /// Atomic across threads and `FileStore`s in other processes: the check and the write happen under the
    /// writers' locks.
    fn compare_and_set_access_token(
        &self,
        id: &str,
        expected_access_token: Option<&str>,
        access_token: &str,
        expiry_time: i64,
    ) -> Result<bool, StoreError> {
        self.write_with(|rows| {
            rows.compare_and_set_access_token(id, expected_access_token, access_token, expiry_time)
        })
    }

    /// Atomic like [`compare_and_set_access_token`](Self::compare_and_set_access_token).
    fn delete_token_if_unchanged(
        &self,
        id: &str,
        expected_access_token: Option<&str>,
    ) -> Result<bool, StoreError> {
        self.write_with(|rows| rows.delete_if_unchanged(id, expected_access_token))
    }
}
