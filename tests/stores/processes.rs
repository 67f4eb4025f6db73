//! Several processes on one file: the test binary runs copies of itself as the competing processes.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use zylker_portal::secret::Secret;
use zylker_portal::tokens::conformance::sample_token;
use zylker_portal::tokens::{FileStore, SqliteStore, TokenStore};

const CHILD_STORE: &str = "ZYLKER_STORES_CHILD_STORE";
const CHILD_PHASE: &str = "ZYLKER_STORES_CHILD_PHASE";
const PROCESSES: usize = 4;
const USERS: usize = 10;
const INCREMENTS: usize = 60;

fn user(n: usize) -> String {
    format!("user{n}@zylker.com")
}

fn open(spec: &str) -> Arc<dyn TokenStore> {
    match spec.split_once(':') {
        Some(("sqlite", path)) => Arc::new(SqliteStore::open(path).expect("open sqlite")),
        Some(("file", path)) => Arc::new(FileStore::open(path).expect("open file")),
        _ => panic!("bad child store {spec}"),
    }
}

/// Runs `PROCESSES` copies of this test binary as workers on `spec`, all at once, and waits for them.
fn run_children(spec: &str, phase: &str) {
    let exe = std::env::current_exe().expect("the test binary");
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "processes::child_process_worker",
                    "--test-threads=1",
                ])
                .env(CHILD_STORE, spec)
                .env(CHILD_PHASE, phase)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn a child process")
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().expect("wait");
        assert!(
            output.status.success(),
            "a worker process failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// In a child process: phase `insert` races to create every user; phase `increment` adds 1 to users'
/// counters (kept in the access token) with compare-and-set, retrying on a loss. Elsewhere: does nothing.
#[test]
fn child_process_worker() {
    let (Ok(spec), Ok(phase)) = (std::env::var(CHILD_STORE), std::env::var(CHILD_PHASE)) else {
        return;
    };
    let store = open(&spec);
    match phase.as_str() {
        "insert" => {
            for n in 0..USERS {
                let mut token = sample_token(&user(n));
                token.access_token = Some("0".into());
                store.save_token(&mut token).expect("save");
            }
        }
        "increment" => {
            for i in 0..INCREMENTS {
                let name = user((i * 7 + std::process::id() as usize) % USERS);
                loop {
                    let partial = zylker_portal::tokens::OAuthToken {
                        user_name: Some(name.clone()),
                        ..Default::default()
                    };
                    let token = store.find_token(&partial).expect("find").expect("stored");
                    let count: u64 = token
                        .access_token
                        .as_ref()
                        .map(Secret::expose_secret)
                        .unwrap_or("0")
                        .parse()
                        .expect("a count");
                    let id = token.id.as_deref().expect("an id");
                    let won = store
                        .compare_and_set_access_token(
                            id,
                            token.access_token.as_ref().map(Secret::expose_secret),
                            &(count + 1).to_string(),
                            0,
                        )
                        .expect("cas");
                    if won {
                        break;
                    }
                }
            }
        }
        other => panic!("unknown phase {other}"),
    }
}

fn several_processes_share_one_store(spec: &str, path: &Path) {
    run_children(spec, "insert");
    let store = open(spec);
    let tokens = store.get_tokens().expect("get_tokens");
    let mut rows: HashMap<String, usize> = HashMap::new();
    for token in &tokens {
        *rows
            .entry(token.user_name.clone().expect("a user"))
            .or_default() += 1;
    }
    assert_eq!(rows.len(), USERS, "{}: every user stored", path.display());
    assert!(
        rows.values().all(|n| *n == 1),
        "{}: one row per user: {rows:?}",
        path.display()
    );

    run_children(spec, "increment");
    let total: u64 = store
        .get_tokens()
        .expect("get_tokens")
        .iter()
        .map(|t| {
            t.access_token
                .as_ref()
                .map(Secret::expose_secret)
                .unwrap_or("0")
                .parse::<u64>()
                .expect("a count")
        })
        .sum();
    assert_eq!(
        total,
        (PROCESSES * INCREMENTS) as u64,
        "no increment was lost between processes"
    );
}

#[test]
fn several_processes_share_one_sqlite_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("zohooauth.db");
    several_processes_share_one_store(&format!("sqlite:{}", path.display()), &path);
}

#[test]
fn several_processes_share_one_csv_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tokens.csv");
    several_processes_share_one_store(&format!("file:{}", path.display()), &path);
}
