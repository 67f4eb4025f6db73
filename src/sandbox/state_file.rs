//! The sandbox's state file: what a restart would otherwise forget, kept in one JSON file that only its owner
//! may read (it holds live tokens), replaced whole on every write so that a crash leaves the old or the new
//! file, never half of one.

use std::fs::{self, Permissions};
use std::io::{self, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use super::state::Snapshot;
use crate::private_file::restrict_to_owner;

/// Reads the state file at `path`; `Ok(None)` when there is none yet. A file others may read is tightened to
/// 0600 first (a warning if that fails). A file that is not a state file is an error that says what to do and
/// leaves the file as it is; the error never quotes the file, which holds tokens.
pub fn load(path: &Path) -> io::Result<Option<Snapshot>> {
    match fs::metadata(path) {
        Ok(_) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(broken(path, &error.to_string())),
    }
    restrict_to_owner(path, "sandbox state file");
    let contents = fs::read(path).map_err(|error| broken(path, &error.to_string()))?;
    let snapshot = serde_json::from_slice(&contents).map_err(|error| {
        // serde_json's message may quote a value from the file: only its kind and place are told.
        broken(
            path,
            &format!(
                "{:?} error at line {} column {}",
                error.classify(),
                error.line(),
                error.column()
            ),
        )
    })?;
    Ok(Some(snapshot))
}

/// The error for a state file that cannot be used.
pub fn broken(path: &Path, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "the sandbox state file {} cannot be used ({what}); it was left as it is: move it aside or delete it to start the sandbox with no sign-ins",
            path.display()
        ),
    )
}

/// Replaces the file at `path` with `contents`: a temporary file beside it (mode 0600 from the start), synced,
/// then renamed over it.
pub fn write(path: &Path, contents: &[u8]) -> io::Result<()> {
    let folder = path
        .parent()
        .filter(|folder| !folder.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut temporary = tempfile::Builder::new()
        .prefix(".zylker-sandbox-")
        .suffix(".tmp")
        .permissions(Permissions::from_mode(0o600))
        .tempfile_in(folder)?;
    temporary.write_all(contents)?;
    temporary.as_file().sync_all()?;
    temporary.persist(path).map_err(|error| error.error)?;
    Ok(())
}
