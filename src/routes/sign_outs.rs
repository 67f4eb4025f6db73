//! Sign-ins that ended before their lifetime: the user signed out, disconnected, or lost their Zoho session.
//!
//! The session lives in the browser's (encrypted) cookie, so signing out cannot take the cookie back from a
//! browser, or from whoever copied it. The portal remembers which sign-ins have ended and refuses them
//! ([`gate`]) until they would have expired anyway. The check is a lookup in memory; with a SQLite token store
//! every sign-out is also written to a table of its own in the same database file
//! (`portal_ended_sign_ins`), and read back when the portal starts, so a restart does not bring a copied
//! cookie back to life. The token table is not touched: the Python SDK sharing the file never sees this one.

use std::path::Path;
use std::sync::{Arc, Mutex};

use actix_session::SessionExt;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;
use dashmap::DashMap;
use rusqlite::{Connection, OpenFlags, params};

use crate::app::PortalState;
use crate::tokens::StoreError;

/// The table that keeps ended sign-ins, beside the SDK's `oauthtoken`.
const TABLE: &str = "portal_ended_sign_ins";

/// Above this many ended sign-ins in memory, those past their lifetime are forgotten.
const SWEEP_ABOVE: usize = 10_000;

/// The portal's list of ended sign-ins: by the sign-in's random id, when it would have expired (Unix seconds).
pub struct SignOuts {
    ended: DashMap<String, i64>,
    journal: Option<Journal>,
}

/// Where sign-outs are written so that they outlive the process.
struct Journal {
    connection: Arc<Mutex<Connection>>,
    /// The database's path, for messages.
    location: String,
}

impl std::fmt::Debug for SignOuts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignOuts")
            .field("ended", &self.ended.len())
            .field("journal", &self.journal.as_ref().map(|j| &j.location))
            .finish()
    }
}

impl SignOuts {
    /// Sign-outs kept in this process only: a restart forgets them. For the stores whose tokens live in
    /// memory (a restart forgets those too, and every session with them) and for the CSV file store.
    pub fn in_memory() -> SignOuts {
        SignOuts {
            ended: DashMap::new(),
            journal: None,
        }
    }

    /// Sign-outs also kept in the SQLite database at `path` (the token store's file, which must exist): the
    /// table is created when missing, rows past their lifetime are deleted, and the rest are loaded.
    pub fn with_journal(path: &Path, now_secs: i64) -> Result<SignOuts, StoreError> {
        let location = path.display().to_string();
        let fail = |action: &str, error: rusqlite::Error| {
            StoreError::backend(format!("{location}: {action}"), error)
        };
        // Never created here: the token store made (and checked) the file.
        let connection = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| fail("open the database for the sign-out journal", e))?;
        connection
            .busy_timeout(crate::tokens::DEFAULT_BUSY_TIMEOUT)
            .map_err(|e| fail("set the busy timeout", e))?;
        connection
            .execute(
                &format!(
                    "CREATE TABLE IF NOT EXISTS {TABLE} (sign_in_id TEXT PRIMARY KEY NOT NULL, \
                     expires_at INTEGER NOT NULL) WITHOUT ROWID"
                ),
                [],
            )
            .map_err(|e| fail("create the sign-out journal", e))?;
        connection
            .execute(
                &format!("DELETE FROM {TABLE} WHERE expires_at <= ?1"),
                [now_secs],
            )
            .map_err(|e| fail("forget expired sign-outs", e))?;
        let ended = DashMap::new();
        {
            let mut statement = connection
                .prepare(&format!("SELECT sign_in_id, expires_at FROM {TABLE}"))
                .map_err(|e| fail("read the sign-out journal", e))?;
            let rows = statement
                .query_map([], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
                })
                .map_err(|e| fail("read the sign-out journal", e))?;
            for row in rows {
                let (id, expires_at) = row.map_err(|e| fail("read the sign-out journal", e))?;
                ended.insert(id, expires_at);
            }
        }
        Ok(SignOuts {
            ended,
            journal: Some(Journal {
                connection: Arc::new(Mutex::new(connection)),
                location,
            }),
        })
    }

    /// Whether the sign-in `id` has ended.
    pub fn has_ended(&self, id: &str) -> bool {
        self.ended.contains_key(id)
    }

    /// How many ended sign-ins are remembered.
    pub fn len(&self) -> usize {
        self.ended.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.ended.is_empty()
    }

    /// Ends the sign-in `id` (it would expire at `expires_at`, Unix seconds). It is refused in this process at
    /// once; the journal's write runs on the blocking pool and is awaited, so that a restart right after the
    /// answer still knows it. A write that fails is logged: the sign-out then holds until the next restart.
    pub async fn end(&self, id: String, expires_at: i64, now_secs: i64) {
        if self.ended.len() >= SWEEP_ABOVE {
            self.ended.retain(|_, expires| *expires > now_secs);
        }
        self.ended.insert(id.clone(), expires_at);
        let Some(journal) = &self.journal else {
            return;
        };
        let connection = journal.connection.clone();
        let written = web::block(move || {
            let connection = connection
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            connection.execute(
                &format!(
                    "INSERT INTO {TABLE} (sign_in_id, expires_at) VALUES (?1, ?2) \
                     ON CONFLICT (sign_in_id) DO NOTHING"
                ),
                params![id, expires_at],
            )
        })
        .await;
        let error = match written {
            Ok(Ok(_)) => return,
            Ok(Err(error)) => error.to_string(),
            Err(error) => error.to_string(),
        };
        tracing::warn!(
            database = %journal.location,
            %error,
            "could not record a sign-out in the database: it holds until the portal restarts"
        );
    }
}

/// Clears a session whose sign-in is over (ended, or past the session lifetime) before any handler sees it,
/// so that every page, error pages included, treats a replayed or stale cookie as nobody's, and the browser
/// gets an empty cookie in its place (one that can still carry a login in flight or a flash).
pub async fn gate(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if let Some(state) = req.app_data::<web::Data<PortalState>>() {
        let session = req.get_session();
        if super::session::sign_in_has_lapsed(&session, &state.sign_outs) {
            session.clear();
            session.renew();
        }
    }
    next.call(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tokens.db");
        crate::tokens::SqliteStore::open(&path).expect("a token store");
        (dir, path)
    }

    #[actix_web::test]
    async fn a_sign_out_outlives_the_process_until_its_expiry() {
        let (_dir, path) = database();
        let sign_outs = SignOuts::with_journal(&path, 1_000).expect("journal");
        sign_outs.end("kept".into(), 5_000, 1_000).await;
        sign_outs.end("expiring".into(), 2_000, 1_000).await;
        assert!(sign_outs.has_ended("kept"));
        drop(sign_outs);

        let reopened = SignOuts::with_journal(&path, 3_000).expect("journal");

        assert!(reopened.has_ended("kept"), "read back after a restart");
        assert!(
            !reopened.has_ended("expiring"),
            "past its lifetime: forgotten"
        );
        assert_eq!(reopened.len(), 1);
        let connection = Connection::open(&path).expect("open");
        let rows: i64 = connection
            .query_row(&format!("SELECT count(*) FROM {TABLE}"), [], |row| {
                row.get(0)
            })
            .expect("count");
        assert_eq!(rows, 1, "the expired row is deleted from the file");
    }

    #[actix_web::test]
    async fn the_journal_leaves_the_token_table_alone_and_refuses_a_missing_file() {
        let (dir, path) = database();
        let store = crate::tokens::SqliteStore::open(&path).expect("store");
        let sign_outs = SignOuts::with_journal(&path, 0).expect("journal");
        sign_outs.end("id".into(), 10, 0).await;
        assert!(
            crate::tokens::TokenStore::get_tokens(&store)
                .expect("tokens")
                .is_empty()
        );

        let missing = dir.path().join("missing.db");
        assert!(SignOuts::with_journal(&missing, 0).is_err());
        assert!(!missing.exists(), "nothing is created");
    }

    #[actix_web::test]
    async fn in_memory_sign_outs_are_checked_and_swept() {
        let sign_outs = SignOuts::in_memory();
        for i in 0..SWEEP_ABOVE {
            sign_outs.end(format!("old{i}"), 10, 0).await;
        }
        assert_eq!(sign_outs.len(), SWEEP_ABOVE);

        sign_outs.end("new".into(), 1_000, 100).await;

        assert!(sign_outs.has_ended("new"));
        assert!(!sign_outs.has_ended("old0"), "expired ones are swept");
        assert_eq!(sign_outs.len(), 1);
    }
}
