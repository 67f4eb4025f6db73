//! The Zoho Python SDK for the tests, in a virtual environment the tests make under `target/` from PyPI (kept
//! between runs, rebuilt when `tests/python/requirements.txt` changes). `tests/python/sdk_dbstore.py` drives its
//! `DBStore` (or, on a SQLite file, a custom store of the SDK's interface on the seed's table), one JSON request
//! on stdin and one JSON answer on stdout, so the database password never appears in a command line. Shared by
//! the stores' tests and the portal's (a portal and the SDK on one MySQL table or one SQLite file). "The seed"
//! is `CustomStoreSQLite`, the sample store of Zoho's Kaizen #192 article, "Custom token persistence".

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use zylker_portal::tokens::StoreSpec;

use crate::databases::TestDatabase;

const REQUIREMENTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/requirements.txt");
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/sdk_dbstore.py");

/// The virtual environment's Python, with the SDK installed: made with `python3 -m venv` and pip on the first
/// run, reused while its copy of the requirements equals the repository's. Fails the test, saying why, when
/// Python or the registry is missing: the test never skips by itself.
fn sdk_python() -> PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("zoho-python-sdk");
    let python = venv.join("bin").join("python");
    let installed = venv.join("requirements.txt");
    let wanted = std::fs::read_to_string(REQUIREMENTS).expect("tests/python/requirements.txt");
    if python.exists() && std::fs::read_to_string(&installed).ok().as_deref() == Some(&wanted) {
        return python;
    }
    if venv.exists() {
        std::fs::remove_dir_all(&venv).expect("remove the outdated virtual environment");
    }
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .output();
    match made {
        Ok(out) if out.status.success() => {}
        other => panic!(
            "cannot make a Python virtual environment at {} with `python3 -m venv`: {other:?}.\n\
             This test needs Python 3 with its venv module (Debian: python3-venv), or \
             ZYLKER_SKIP_DB_TESTS=1 to leave the database tests out.",
            venv.display()
        ),
    }
    let pip = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "--quiet",
            "-r",
            REQUIREMENTS,
        ])
        .output()
        .expect("run pip");
    if !pip.status.success() {
        // A half-made environment must not pass for a cached one next time.
        let _ = std::fs::remove_dir_all(&venv);
        panic!(
            "pip could not install the Zoho Python SDK from PyPI ({}): {}\n\
             This test needs the package registry (pip's PIP_INDEX_URL and proxy settings apply), or \
             ZYLKER_SKIP_DB_TESTS=1 to leave the database tests out.",
            pip.status,
            String::from_utf8_lossy(&pip.stderr).trim()
        );
    }
    std::fs::write(&installed, wanted).expect("mark the environment as made");
    python
}

/// The SDK side: `DBStore` on the test database's `oauthtoken` table.
pub struct Sdk {
    python: PathBuf,
    db: Value,
}

impl Sdk {
    pub fn new(database: &TestDatabase) -> Self {
        let spec = match database.spec().parse::<StoreSpec>() {
            Ok(StoreSpec::MySql(spec)) => spec,
            other => panic!("not a MySQL spec: {other:?}"),
        };
        Sdk {
            python: sdk_python(),
            db: json!({
                "host": spec.host,
                "port": spec.port,
                "user": spec.user,
                "password": spec.password().unwrap_or(""),
                "database": spec.database,
                "table": spec.table,
            }),
        }
    }

    /// The SDK on the seed's SQLite table in the file at `path`, through the custom store an application
    /// sharing the portal's file writes (`tests/python/seed_sqlite_store.py`): every call opens the file with
    /// Python's own SQLite and closes it again.
    #[allow(dead_code)] // used by the portal's tests, not the stores'
    pub fn on_sqlite(path: &Path) -> Self {
        Sdk {
            python: sdk_python(),
            db: json!({ "sqlite": path }),
        }
    }

    /// Runs one operation of the script and returns its answer.
    pub fn run(&self, op: &str, arguments: Value) -> Value {
        let mut request = arguments;
        request["db"] = self.db.clone();
        request["op"] = op.into();
        let mut child = Command::new(&self.python)
            .arg(SCRIPT)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the SDK script");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(request.to_string().as_bytes())
            .expect("write the request");
        let out = child.wait_with_output().expect("the SDK script");
        assert!(
            out.status.success(),
            "the SDK's {op} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "the SDK's {op} answered {:?}: {e}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    pub fn find_by_user_name(&self, user_name: &str) -> Value {
        self.run("find_by_user_name", json!({ "user_name": user_name }))
    }
}
