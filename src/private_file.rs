//! Files that hold tokens (the token stores, the sandbox's state file): readable and writable by their owner only.

use std::fs::{self, Permissions};
use std::io::ErrorKind;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;

/// The mode every file holding tokens gets: read and write for its owner, nothing for anyone else.
pub const PRIVATE_MODE: u32 = 0o600;

/// Tightens an existing file that holds tokens to mode 0600 when its group or others may read or write it, and
/// logs that it did; when it cannot (a file owned by another user, a read-only mount), logs a warning and goes
/// on, since refusing to start would not make the file private either. A missing file is left missing. `what`
/// names the file in the log; the log never shows its contents.
pub fn restrict_to_owner(path: &Path, what: &str) {
    let mode = match fs::metadata(path) {
        Ok(metadata) => metadata.permissions().mode(),
        Err(error) if error.kind() == ErrorKind::NotFound => return,
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "cannot read the mode of the {what}, which holds tokens");
            return;
        }
    };
    if mode & 0o077 == 0 {
        return;
    }
    match fs::set_permissions(path, Permissions::from_mode(PRIVATE_MODE)) {
        Ok(()) => tracing::info!(
            path = %path.display(),
            was = format_args!("{:o}", mode & 0o777),
            "the {what} holds tokens and others could read it: tightened to mode 0600"
        ),
        Err(error) => tracing::warn!(
            path = %path.display(),
            %error,
            "the {what} holds tokens and others may read it; it could not be tightened to mode 0600"
        ),
    }
}

/// Whether `a` and `b` name one file: the same absolute path, or two existing paths with the same device and
/// inode (a link, another spelling of the path). Only stats: neither file is opened, so a SQLite file that
/// connections of this process hold keeps its locks (see `tokens::sqlite`).
pub fn same_file(a: &Path, b: &Path) -> bool {
    if let (Ok(a), Ok(b)) = (std::path::absolute(a), std::path::absolute(b))
        && a == b
    {
        return true;
    }
    match (fs::metadata(a), fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}
