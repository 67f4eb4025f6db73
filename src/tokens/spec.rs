//! The store spec string (`--store`, `TOKEN_STORE`) that picks a store everywhere.

use std::sync::Arc;

use super::{Secret, StoreError, TokenStore};

/// A parsed store spec: `sqlite:PATH` (the default, `sqlite:zohooauth.db`), `sqlite:PATH?create=1`,
/// `sqlite::memory:`, `list`, `file:PATH`, `postgres://…` (or `postgresql://…`) or `mysql://…`.
///
/// `Display` writes the spec back with any password masked: it is what error messages and logs print.
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
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=disable|prefer|require][&table=NAME]`
    Postgres(Box<DatabaseSpec>),
    /// `mysql://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?table=NAME]`
    MySql(Box<DatabaseSpec>),
}

/// The table the SDK's database stores use, and the database stores' default.
pub const DEFAULT_TABLE: &str = "oauthtoken";

/// Where a database store lives: server, credentials, database and table.
///
/// The password is a [`Secret`], kept out of `Debug` and `Display`; [`password`](Self::password) reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseSpec {
    pub user: String,
    password: Option<Secret>,
    pub host: String,
    pub port: u16,
    pub database: String,
    /// The token table: an identifier (letters, digits, `_`), checked when the spec is parsed, so that it can
    /// be quoted into SQL; never a value taken raw.
    pub table: String,
    /// PostgreSQL's `sslmode`; MySQL specs have none and keep the default.
    pub ssl_mode: SslMode,
}

/// How a PostgreSQL store uses TLS, as libpq's `sslmode` of the same names: `disable` never, `prefer` when
/// the server offers it (the default), `require` always. Like libpq's `require`, the server's certificate is
/// not checked against a certificate authority: the connection is encrypted, not authenticated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    #[default]
    Prefer,
    Require,
}

impl SslMode {
    fn name(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
        }
    }
}

impl DatabaseSpec {
    /// The password, if the spec has one.
    pub fn password(&self) -> Option<&str> {
        self.password.as_ref().map(Secret::expose_secret)
    }

    /// Parses what follows `scheme://`; `kind` names the database in error messages.
    fn parse(spec: &str, default_port: u16, with_ssl_mode: bool) -> Result<Self, StoreError> {
        let bad = |reason: &str| StoreError::BadDatabaseSpec {
            spec: mask_password(spec),
            reason: reason.to_owned(),
        };
        let url = url::Url::parse(spec).map_err(|e| bad(&e.to_string()))?;
        let decode = |text: &str, what: &str| {
            percent_encoding::percent_decode_str(text)
                .decode_utf8()
                .map(|decoded| decoded.into_owned())
                .map_err(|_| bad(&format!("the {what} is not UTF-8")))
        };
        let user = decode(url.username(), "user")?;
        if user.is_empty() {
            return Err(bad("no user: expected USER[:PASSWORD]@HOST"));
        }
        let password = url
            .password()
            .map(|p| decode(p, "password").map(Secret::from))
            .transpose()?;
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("no host"))?
            .to_owned();
        let port = url.port().unwrap_or(default_port);
        let database = decode(url.path().strip_prefix('/').unwrap_or_default(), "database")?;
        if database.is_empty() || database.contains('/') {
            return Err(bad(
                "expected one database name after the host: …@HOST[:PORT]/DATABASE",
            ));
        }
        if url.fragment().is_some() {
            return Err(bad("a store spec has no #fragment"));
        }
        let mut table = None;
        let mut ssl_mode = None;
        for (name, value) in url.query_pairs() {
            match name.as_ref() {
                "table" if table.is_none() => {
                    if !is_identifier(&value) {
                        return Err(bad(&format!(
                            "table={value:?} is not a table name (letters, digits and _, not starting with a digit, at most {MAX_TABLE_NAME} characters)"
                        )));
                    }
                    table = Some(value.into_owned());
                }
                "sslmode" if with_ssl_mode && ssl_mode.is_none() => {
                    ssl_mode = Some(match value.as_ref() {
                        "disable" => SslMode::Disable,
                        "prefer" => SslMode::Prefer,
                        "require" => SslMode::Require,
                        other => {
                            return Err(bad(&format!(
                                "sslmode={other:?}: expected disable, prefer or require"
                            )));
                        }
                    });
                }
                "table" | "sslmode" if with_ssl_mode || name == "table" => {
                    return Err(bad(&format!("{name} is given twice")));
                }
                other => {
                    let known = if with_ssl_mode {
                        "sslmode and table"
                    } else {
                        "table"
                    };
                    return Err(bad(&format!(
                        "unknown parameter {other:?}: expected {known}"
                    )));
                }
            }
        }
        Ok(DatabaseSpec {
            user,
            password,
            host,
            port,
            database,
            table: table.unwrap_or_else(|| DEFAULT_TABLE.to_owned()),
            ssl_mode: ssl_mode.unwrap_or_default(),
        })
    }

    /// Writes `scheme://user[:***]@host:port/database[?…]`: the spec without its password.
    fn write(&self, scheme: &str, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let encode =
            |text: &str| percent_encoding::utf8_percent_encode(text, URL_COMPONENT).to_string();
        write!(f, "{scheme}://{}", encode(&self.user))?;
        if self.password.is_some() {
            f.write_str(":***")?;
        }
        let host = if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        write!(f, "@{host}:{}/{}", self.port, encode(&self.database))?;
        let mut separator = '?';
        if self.ssl_mode != SslMode::default() {
            write!(f, "{separator}sslmode={}", self.ssl_mode.name())?;
            separator = '&';
        }
        if self.table != DEFAULT_TABLE {
            write!(f, "{separator}table={}", self.table)?;
        }
        Ok(())
    }
}

/// What a user name or database name keeps percent-encoded when a spec is written back.
const URL_COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The longest table name accepted: PostgreSQL cuts identifiers at 63 bytes, MySQL at 64.
const MAX_TABLE_NAME: usize = 63;

/// Whether `name` is a plain SQL identifier, safe to put between quotes in a statement.
fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= MAX_TABLE_NAME
}

/// A spec as typed, with whatever stands where a password would be replaced by `***`: for error messages
/// about specs too malformed to parse.
///
/// The password is everything from the first `:` after `scheme://` to the last `@`, whatever it contains
/// (`/`, `#`, `?`, `@`, `%`, percent-encoded or not). A URL parser cannot be asked: a password typed with a
/// raw `/`, `?` or `#` ends the authority for it, so it would take the password's head for a host and port and
/// its tail for a path, query or fragment, and never call any of it a password. Cutting at the last `@` may
/// mask more than the password when a path or query holds an `@` (no valid spec does): a masked host is
/// better than a shown password.
pub fn mask_password(spec: &str) -> String {
    let Some((scheme, rest)) = spec.split_once("://") else {
        return spec.to_owned();
    };
    let Some(at) = rest.rfind('@') else {
        return spec.to_owned();
    };
    let (userinfo, host_on) = rest.split_at(at);
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***{host_on}"),
        None => spec.to_owned(),
    }
}

impl std::str::FromStr for StoreSpec {
    type Err = StoreError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let bad = || StoreError::BadSpec(mask_password(spec));
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
                } else if spec.starts_with("postgres://") || spec.starts_with("postgresql://") {
                    DatabaseSpec::parse(spec, 5432, true).map(|d| StoreSpec::Postgres(Box::new(d)))
                } else if spec.starts_with("mysql://") {
                    DatabaseSpec::parse(spec, 3306, false).map(|d| StoreSpec::MySql(Box::new(d)))
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
    /// Writes the spec back in the form it was parsed from, with a password masked as `***`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreSpec::SqliteFile(path) => write!(f, "sqlite:{}", path.display()),
            StoreSpec::SqliteFileBesideOtherTables(path) => {
                write!(f, "sqlite:{}{CREATE_OPTION}", path.display())
            }
            StoreSpec::SqliteMemory => f.write_str("sqlite::memory:"),
            StoreSpec::List => f.write_str("list"),
            StoreSpec::File(path) => write!(f, "file:{}", path.display()),
            StoreSpec::Postgres(database) => database.write("postgres", f),
            StoreSpec::MySql(database) => database.write("mysql", f),
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
    /// The file a `sqlite:PATH` or `file:PATH` spec names; `None` for the other stores.
    pub fn file_path(&self) -> Option<&std::path::Path> {
        match self {
            StoreSpec::SqliteFile(path)
            | StoreSpec::SqliteFileBesideOtherTables(path)
            | StoreSpec::File(path) => Some(path),
            StoreSpec::SqliteMemory
            | StoreSpec::List
            | StoreSpec::Postgres(_)
            | StoreSpec::MySql(_) => None,
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
        StoreSpec::Postgres(database) => Arc::new(super::PostgresStore::open(database)?),
        StoreSpec::MySql(database) => Arc::new(super::MySqlStore::open(database)?),
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
    let (tokens, sign_in_store): (Arc<dyn TokenStore>, Arc<dyn super::SignInStore>) = match spec {
        StoreSpec::SqliteFile(path) | StoreSpec::SqliteFileBesideOtherTables(path) => (
            open_store(spec)?,
            Arc::new(super::SqliteSignIns::open(path, false)?),
        ),
        StoreSpec::File(path) => (
            open_store(spec)?,
            Arc::new(super::SqliteSignIns::open(
                &super::sign_ins_file_beside(path),
                true,
            )?),
        ),
        // The database stores keep the sign-ins in tables of the portal's own beside the tokens, on the same pool.
        StoreSpec::Postgres(database) => {
            let store = Arc::new(super::PostgresStore::open(database)?);
            store.ensure_sign_in_tables()?;
            (store.clone(), store)
        }
        StoreSpec::MySql(database) => {
            let store = Arc::new(super::MySqlStore::open(database)?);
            store.ensure_sign_in_tables()?;
            (store.clone(), store)
        }
        StoreSpec::SqliteMemory | StoreSpec::List => {
            (open_store(spec)?, Arc::new(super::MemorySignIns::default()))
        }
    };
    sign_in_store.purge(now_secs)?;
    Ok(PortalStores {
        tokens,
        sign_ins: super::SignIns::new(sign_in_store).purged_at(now_secs),
    })
}

/// The sign-in store of a spec, its tables created when missing (a CSV store's side file too), for `tokens copy`
/// to write into; `None` for the stores that live in memory, whose sign-ins no other process can reach.
pub fn open_sign_in_store(
    spec: &StoreSpec,
) -> Result<Option<Arc<dyn super::SignInStore>>, StoreError> {
    Ok(match spec {
        StoreSpec::SqliteFile(path) | StoreSpec::SqliteFileBesideOtherTables(path) => {
            Some(Arc::new(super::SqliteSignIns::open(path, false)?))
        }
        StoreSpec::File(path) => Some(Arc::new(super::SqliteSignIns::open(
            &super::sign_ins_file_beside(path),
            true,
        )?)),
        StoreSpec::Postgres(database) => {
            let store = super::PostgresStore::open_existing(database)?;
            store.ensure_sign_in_tables()?;
            Some(Arc::new(store))
        }
        StoreSpec::MySql(database) => {
            let store = super::MySqlStore::open_existing(database)?;
            store.ensure_sign_in_tables()?;
            Some(Arc::new(store))
        }
        StoreSpec::SqliteMemory | StoreSpec::List => None,
    })
}

/// The live sign-ins (see [`super::SignInStore::live_sign_ins`]) a store spec holds, read without changing the
/// store: none when it has no sign-in table, only an earlier version's (whose sign-ins name no token), or lives
/// in memory (a process of its own would see an empty one). What `tokens copy` carries over.
pub fn live_sign_ins_in(
    spec: &StoreSpec,
    now_secs: i64,
) -> Result<Vec<super::SignInRecord>, StoreError> {
    match spec {
        StoreSpec::SqliteFile(path) | StoreSpec::SqliteFileBesideOtherTables(path) => {
            super::sign_ins::read_live_sign_ins(path, now_secs)
        }
        // `exists` asks the file system about the path, opening nothing (see `sqlite.rs` on why that matters).
        StoreSpec::File(path) => match super::sign_ins_file_beside(path) {
            beside if beside.exists() => super::sign_ins::read_live_sign_ins(&beside, now_secs),
            _ => Ok(Vec::new()),
        },
        StoreSpec::Postgres(database) => {
            let store = super::PostgresStore::open_existing(database)?;
            if !store.has_sign_in_owner_columns()? {
                return Ok(Vec::new());
            }
            super::SignInStore::live_sign_ins(&store, now_secs)
        }
        StoreSpec::MySql(database) => {
            let store = super::MySqlStore::open_existing(database)?;
            if !store.has_sign_in_owner_columns()? {
                return Ok(Vec::new());
            }
            super::SignInStore::live_sign_ins(&store, now_secs)
        }
        StoreSpec::SqliteMemory | StoreSpec::List => Ok(Vec::new()),
    }
}

/// Opens the store a spec names only if its file (or its database's token table) is already there: a mistyped
/// path is [`StoreError::Missing`] and creates nothing (the file stores' `open_existing` never create one). For the
/// commands that inspect or maintain a store.
pub fn open_existing_store(spec: &StoreSpec) -> Result<Arc<dyn TokenStore>, StoreError> {
    Ok(match spec {
        StoreSpec::SqliteFile(path) | StoreSpec::SqliteFileBesideOtherTables(path) => {
            Arc::new(super::SqliteStore::open_existing(path)?)
        }
        StoreSpec::File(path) => Arc::new(super::FileStore::open_existing(path)?),
        StoreSpec::Postgres(database) => Arc::new(super::PostgresStore::open_existing(database)?),
        StoreSpec::MySql(database) => Arc::new(super::MySqlStore::open_existing(database)?),
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
            "mysqlx://x",
            "postgres:x",
            "List",
            "memory",
            "zohooauth.db",
        ] {
            let error = bad.parse::<StoreSpec>().expect_err(bad).to_string();
            for form in [
                "sqlite:PATH",
                "sqlite::memory:",
                "list",
                "file:PATH",
                "postgres://",
                "mysql://",
            ] {
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
            "postgres://portal@db.zylker.academy:5432/zohooauth",
            "postgres://portal@10.0.0.7:6432/zohooauth?sslmode=require&table=portal_tokens",
            "postgres://portal@[::1]:5432/zohooauth?sslmode=disable",
            "mysql://root@127.0.0.1:3306/zohooauth",
            "mysql://sdk%20user@127.0.0.1:3307/zohooauth2?table=tokens2",
        ] {
            assert_eq!(spec.parse::<StoreSpec>().unwrap().to_string(), spec);
        }
    }

    fn database(spec: &str) -> DatabaseSpec {
        match spec.parse::<StoreSpec>() {
            Ok(StoreSpec::Postgres(database) | StoreSpec::MySql(database)) => *database,
            other => panic!("{spec}: {other:?}"),
        }
    }

    #[test]
    fn database_specs_parse_into_their_parts_with_the_defaults() {
        let pg = database("postgresql://portal:s%40cret@db.zylker.academy/zohooauth");
        assert_eq!(
            (pg.user.as_str(), pg.password(), pg.host.as_str(), pg.port),
            ("portal", Some("s@cret"), "db.zylker.academy", 5432)
        );
        assert_eq!(
            (pg.database.as_str(), pg.table.as_str()),
            ("zohooauth", "oauthtoken")
        );
        assert_eq!(pg.ssl_mode, SslMode::Prefer);
        let my = database("mysql://root@127.0.0.1/zohooauth?table=sdk_tokens");
        assert_eq!(
            (my.port, my.password(), my.table.as_str()),
            (3306, None, "sdk_tokens")
        );
        assert_eq!(
            database("postgres://u@h/d?sslmode=require").ssl_mode,
            SslMode::Require
        );
    }

    #[test]
    fn bad_database_specs_are_refused_with_the_reason_and_never_the_password() {
        for (spec, reason) in [
            ("postgres://h/d", "no user"),
            ("postgres://u:pw-secret@h", "one database name"),
            ("postgres://u:pw-secret@h/d/e", "one database name"),
            ("postgres://u:pw-secret@h/d?sslmode=verify-full", "sslmode"),
            (
                "postgres://u:pw-secret@h/d?table=oauth;drop",
                "not a table name",
            ),
            ("postgres://u:pw-secret@h/d?table=1abc", "not a table name"),
            ("postgres://u:pw-secret@h/d?table=a&table=b", "twice"),
            (
                "mysql://u:pw-secret@h/d?sslmode=require",
                "unknown parameter",
            ),
            ("mysql://u:pw-secret@h/d?user=x", "unknown parameter"),
            ("mysql://u:pw-secret@h:99999/d", "port"),
            ("mysql://u:pw-secret@/d", "host"),
        ] {
            let error = spec.parse::<StoreSpec>().expect_err(spec);
            let text = format!("{error} {error:?}");
            assert!(text.contains(reason), "{spec}: {text}");
            assert!(
                !text.contains("pw-secret"),
                "{spec}: the password leaked: {text}"
            );
        }
    }

    #[test]
    fn a_password_never_reaches_display_or_debug() {
        let spec: StoreSpec = "postgres://portal:pw-secret@db/zohooauth"
            .parse()
            .expect("spec");
        assert_eq!(spec.to_string(), "postgres://portal:***@db:5432/zohooauth");
        assert!(!format!("{spec:?}").contains("pw-secret"));
        assert_eq!(
            mask_password("mysql://u:p@ss:w@rd@h/d"),
            "mysql://u:***@h/d",
            "everything up to the last @ of the host part is the password"
        );
    }

    #[test]
    fn a_password_is_masked_whatever_it_contains() {
        for (spec, masked) in [
            ("postgres://u:pa/ss@h/d", "postgres://u:***@h/d"),
            ("postgres://u:pa#ss@h:5432/d", "postgres://u:***@h:5432/d"),
            ("postgres://u:12#ss@h/d", "postgres://u:***@h/d"),
            ("mysql://u:pa?ss@h/d?table=t", "mysql://u:***@h/d?table=t"),
            ("mysql://u:p@ss@h/d", "mysql://u:***@h/d"),
            ("mysql://u:50%off@h/d", "mysql://u:***@h/d"),
            ("mysql://u:p%2Fa%23s%3Fs%40w%25@h/d", "mysql://u:***@h/d"),
            ("postgresql://u:/#?@%@h", "postgresql://u:***@h"),
            ("postgres://:secret@h/d", "postgres://:***@h/d"),
            ("postgres://u:@h/d", "postgres://u:***@h/d"),
        ] {
            assert_eq!(mask_password(spec), masked, "{spec}");
        }
    }

    #[test]
    fn a_spec_without_a_password_is_shown_as_typed() {
        for spec in [
            "postgres://u@h/d",
            "postgres://h/d",
            "sqlite:/tmp/x.db",
            "mysql://",
        ] {
            assert_eq!(mask_password(spec), spec);
        }
    }

    #[test]
    fn no_spec_shows_a_password_with_url_delimiters_refused_or_not() {
        for password in [
            "Se/CrEt",
            "12#SeCrEt",
            "Se?CrEt",
            "p@SeCrEt/x",
            "Se%2FCr%23Et",
            "99/SeCrEt",
        ] {
            for spec in [
                format!("postgres://portal:{password}@db/zohooauth"),
                format!("mysql://portal:{password}@db:3306/zohooauth?table=t"),
                format!("postgres://portal:{password}@db/zohooauth?sslmode=bogus"),
            ] {
                let shown = match spec.parse::<StoreSpec>() {
                    Ok(parsed) => format!("{parsed} {parsed:?}"),
                    Err(error) => format!("{error} {error:?}"),
                };
                assert!(
                    !shown.contains("CrEt") && !shown.contains("Cr%23Et"),
                    "{spec}: the password leaked: {shown}"
                );
            }
        }
    }
}
