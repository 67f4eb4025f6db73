//! What the PostgreSQL and MySQL stores do beyond the kit: the SDK's tables, tables that are already there,
//! `?table=`, exact matching, passwords kept out of errors, and coming back after the server drops them.

use std::sync::{Arc, Barrier};
use std::thread;

use zylker_portal::tokens::conformance::sample_token;
use zylker_portal::tokens::{
    OAuthToken, StoreError, StoreSpec, TokenStore, open_existing_store, open_store,
};

use crate::databases::{Server, TestDatabase};

fn by_user(name: &str) -> OAuthToken {
    OAuthToken {
        user_name: Some(name.to_owned()),
        ..OAuthToken::default()
    }
}

/// Eight threads using the store at once, so that the pool holds eight connections.
fn use_from_eight_threads(store: &Arc<dyn TokenStore>) -> Vec<Result<(), String>> {
    let barrier = Arc::new(Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (store, barrier) = (Arc::clone(store), Arc::clone(&barrier));
            thread::spawn(move || {
                barrier.wait();
                let mut result = Ok(());
                for _ in 0..5 {
                    if let Err(error) = store.find_token(&by_user("alice@zylker.com")) {
                        result = Err(format!("{error:#}"));
                    }
                }
                result
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().expect("thread"))
        .collect()
}

/// Every pooled connection ended by the server (as a restart ends them): the next operations, eight at once,
/// all succeed on new connections, without an error reaching the caller.
fn store_comes_back_after_the_server_ends_its_connections(server: Server) {
    let Some(database) = TestDatabase::create(server) else {
        return;
    };
    let store = database.open();
    store
        .save_token(&mut sample_token("alice@zylker.com"))
        .expect("save");
    assert!(use_from_eight_threads(&store).iter().all(Result::is_ok));

    server.kill_connections_to(&database.name);

    let results = use_from_eight_threads(&store);
    assert!(
        results.iter().all(Result::is_ok),
        "{server:?}: operations failed after the server ended the connections: {results:?}"
    );
    let mut bob = sample_token("bob@zylker.com");
    store
        .save_token(&mut bob)
        .expect("a write after the restart");
    assert_eq!(store.get_tokens().expect("list").len(), 2);
}

#[test]
fn postgres_store_comes_back_after_the_server_ends_its_connections() {
    store_comes_back_after_the_server_ends_its_connections(Server::Postgres);
}

#[test]
fn mysql_store_comes_back_after_the_server_ends_its_connections() {
    store_comes_back_after_the_server_ends_its_connections(Server::MySql);
}

/// Eight asynchronous reads at once on one single-threaded runtime, as on a portal worker: each one's answer.
fn read_eight_at_once_async(
    runtime: &tokio::runtime::Runtime,
    store: &Arc<dyn TokenStore>,
    id: &str,
) -> Vec<Result<Option<OAuthToken>, String>> {
    runtime.block_on(futures_util::future::join_all((0..8).map(|_| async {
        let reading = store
            .find_token_by_id_async(id)
            .expect("the database stores read asynchronously on a runtime");
        reading.await.map_err(|error| format!("{error:#}"))
    })))
}

/// A store with one token, read asynchronously on a runtime of the test's own.
struct AsyncReading {
    database: TestDatabase,
    store: Arc<dyn TokenStore>,
    runtime: tokio::runtime::Runtime,
    id: String,
    expected: Vec<Result<Option<OAuthToken>, String>>,
}

/// The asynchronous reads (the read every page makes) go through connections of each thread's own: when the
/// server ends them, the next reads open others without an error reaching the caller.
fn async_reads_come_back_after_the_server_ends_their_connections(
    server: Server,
) -> Option<AsyncReading> {
    let database = TestDatabase::create(server)?;
    let store = database.open();
    let mut alice = sample_token("alice@zylker.com");
    store.save_token(&mut alice).expect("save");
    let id = alice.id.clone().expect("saved");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let expected = vec![Ok(Some(alice)); 8];
    assert_eq!(read_eight_at_once_async(&runtime, &store, &id), expected);

    server.kill_connections_to(&database.name);
    assert_eq!(
        read_eight_at_once_async(&runtime, &store, &id),
        expected,
        "{server:?}: the reads after the server ended the connections"
    );
    Some(AsyncReading {
        database,
        store,
        runtime,
        id,
        expected,
    })
}

#[test]
fn mysql_async_reads_come_back_after_the_server_ends_their_connections() {
    async_reads_come_back_after_the_server_ends_their_connections(Server::MySql);
}

/// Also: while the database refuses connections the reads fail with an error, in bounded time; once it takes
/// them again, they succeed again.
#[test]
fn postgres_async_reads_come_back_after_the_server_ends_their_connection() {
    let Some(AsyncReading {
        database,
        store,
        runtime,
        id,
        expected,
    }) = async_reads_come_back_after_the_server_ends_their_connections(Server::Postgres)
    else {
        return;
    };
    let name = &database.name;
    Server::Postgres.admin(&[format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false")]);
    Server::Postgres.kill_connections_to(name);
    let started = std::time::Instant::now();
    for answer in read_eight_at_once_async(&runtime, &store, &id) {
        let error = answer.expect_err("a read while the database refuses connections");
        assert!(error.contains("find a token by id"), "{error}");
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "the failed reads took {:?}",
        started.elapsed()
    );

    Server::Postgres.admin(&[format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true")]);
    assert_eq!(
        read_eight_at_once_async(&runtime, &store, &id),
        expected,
        "the reads once the database takes connections again"
    );
}

#[test]
fn mysql_store_creates_zohos_dbstore_table_column_for_column() {
    let Some(database) = TestDatabase::mysql() else {
        return;
    };
    database.open();
    let columns = database.query_texts(&format!(
        "SELECT CONCAT(column_name, ' ', column_type, ' ', is_nullable, ' ', column_key) \
         FROM information_schema.columns WHERE table_schema = '{}' AND table_name = 'oauthtoken' \
         ORDER BY ordinal_position",
        database.name
    ));
    let expected = [
        "id varchar(10) NO PRI",
        "user_name varchar(255) NO ",
        "client_id varchar(255) YES ",
        "client_secret varchar(255) YES ",
        "refresh_token varchar(255) YES ",
        "access_token varchar(255) YES ",
        "grant_token varchar(255) YES ",
        "expiry_time varchar(20) YES ",
        "redirect_url varchar(255) YES ",
        "api_domain varchar(255) YES ",
    ];
    assert_eq!(columns, expected.map(|c| Some(c.to_owned())));
}

#[test]
fn postgres_store_creates_the_sdks_ten_columns_in_order() {
    let Some(database) = TestDatabase::postgres() else {
        return;
    };
    database.open();
    let columns = database.query_texts(
        "SELECT column_name || ' ' || data_type || coalesce('(' || character_maximum_length || ')', '') \
         || ' ' || is_nullable FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = 'oauthtoken' ORDER BY ordinal_position",
    );
    let varchar = |name: &str, length: u32| Some(format!("{name} character varying({length}) YES"));
    let mut expected = vec![
        Some("id character varying(10) NO".to_owned()),
        Some("user_name character varying(255) NO".to_owned()),
    ];
    for name in [
        "client_id",
        "client_secret",
        "refresh_token",
        "access_token",
        "grant_token",
    ] {
        expected.push(varchar(name, 255));
    }
    expected.push(varchar("expiry_time", 20));
    expected.push(varchar("redirect_url", 255));
    expected.push(varchar("api_domain", 255));
    assert_eq!(columns, expected);
}

/// A table the SDK made (here: Zoho's DDL in the server's default, case-insensitive collation) holding a row
/// the SDK wrote is used as it is: its row is found, refreshed and numbered after, names match exactly, and
/// the table's definition is the same afterwards.
fn an_sdk_table_is_used_as_it_is(server: Server) {
    let Some(database) = TestDatabase::create(server) else {
        return;
    };
    let ddl = "CREATE TABLE oauthtoken (id varchar(10) NOT NULL, user_name varchar(255) NOT NULL, \
               client_id varchar(255), client_secret varchar(255), refresh_token varchar(255), \
               access_token varchar(255), grant_token varchar(255), expiry_time varchar(20), \
               redirect_url varchar(255), api_domain varchar(255), primary key (id))";
    let ddl = match server {
        Server::MySql => format!("{ddl} DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_general_ci"),
        Server::Postgres => ddl.to_owned(),
    };
    database.execute(&[
        &ddl,
        "INSERT INTO oauthtoken VALUES ('7', 'sdk.user@zylker.com', '1000.SDK', 'sdk-secret', \
         '1000.sdk.refresh', '1000.sdk.access', NULL, '1700000000000', 'http://sdk/cb', 'https://www.zohoapis.com')",
    ]);
    let definition = || {
        match server {
        Server::MySql => database.query_texts(
            "SELECT GROUP_CONCAT(CONCAT(column_name, column_type, is_nullable, collation_name) ORDER BY ordinal_position) \
             FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = 'oauthtoken'",
        ),
        Server::Postgres => database.query_texts(
            "SELECT string_agg(column_name || data_type || is_nullable, ',' ORDER BY ordinal_position) \
             FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = 'oauthtoken'",
        ),
    }
    };
    let before = definition();

    let store = database.open();
    let found = store
        .find_token(&by_user("sdk.user@zylker.com"))
        .expect("find")
        .expect("the SDK's row");
    assert_eq!(found.expiry_time, Some(1_700_000_000_000));
    assert_eq!(found.id.as_deref(), Some("7"));
    assert!(
        store
            .compare_and_set_access_token("7", Some("1000.sdk.access"), "1000.portal.access", 1)
            .expect("cas"),
        "the portal refreshes the SDK's row"
    );
    let mut portal = sample_token("priya.raman@zylker.com");
    store.save_token(&mut portal).expect("save");
    assert_eq!(
        portal.id.as_deref(),
        Some("8"),
        "numbered after the SDK's ids"
    );
    for other in [
        "SDK.USER@zylker.com",
        "sdk.user@zylker.com ",
        "sdk.user@zylker.co",
    ] {
        assert_eq!(
            store.find_token(&by_user(other)).expect("find"),
            None,
            "{other:?} is not sdk.user@zylker.com"
        );
    }
    assert_eq!(definition(), before, "the SDK's table is unchanged");
}

#[test]
fn postgres_store_uses_an_sdk_table_as_it_is() {
    an_sdk_table_is_used_as_it_is(Server::Postgres);
}

#[test]
fn mysql_store_uses_an_sdk_table_as_it_is() {
    an_sdk_table_is_used_as_it_is(Server::MySql);
}

/// `?table=NAME` puts the tokens in that table, and `oauthtoken` is not made.
fn the_table_parameter_names_the_token_table(server: Server) {
    let Some(database) = TestDatabase::create(server) else {
        return;
    };
    let spec: StoreSpec = database
        .spec_with_password(Some("portal_tokens"))
        .parse()
        .expect("spec");
    let store = open_store(&spec).expect("open");
    store
        .save_token(&mut sample_token("alice@zylker.com"))
        .expect("save");
    assert_eq!(
        database.query_texts("SELECT user_name FROM portal_tokens"),
        vec![Some("alice@zylker.com".to_owned())]
    );
    let schema = match server {
        Server::MySql => "DATABASE()",
        Server::Postgres => "current_schema()",
    };
    assert_eq!(
        database.query_texts(&format!(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = {schema} AND table_name = 'oauthtoken'"
        )),
        Vec::<Option<String>>::new()
    );
}

#[test]
fn postgres_table_parameter_names_the_token_table() {
    the_table_parameter_names_the_token_table(Server::Postgres);
}

#[test]
fn mysql_table_parameter_names_the_token_table() {
    the_table_parameter_names_the_token_table(Server::MySql);
}

/// A table of that name without the SDK's columns is refused and left alone; the commands that inspect a store
/// refuse a database without the table, and create nothing.
fn foreign_or_missing_tables_are_refused(server: Server) {
    let Some(database) = TestDatabase::create(server) else {
        return;
    };
    let spec: StoreSpec = database.spec().parse().expect("spec");
    let error = open_existing_store(&spec).err().expect("no table");
    assert!(matches!(error, StoreError::MissingTable { .. }), "{error}");
    assert!(error.to_string().contains("no table oauthtoken"), "{error}");
    database.execute(&["CREATE TABLE oauthtoken (id varchar(10) NOT NULL, note varchar(20))"]);
    let error = open_store(&spec).err().expect("foreign table");
    assert!(
        matches!(&error, StoreError::NotAStore { reason, .. } if reason.contains("user_name")),
        "{error}"
    );
}

#[test]
fn postgres_foreign_or_missing_tables_are_refused() {
    foreign_or_missing_tables_are_refused(Server::Postgres);
}

#[test]
fn mysql_foreign_or_missing_tables_are_refused() {
    foreign_or_missing_tables_are_refused(Server::MySql);
}

/// A wrong password fails to connect with an error that names the server, never the password.
#[test]
fn a_wrong_mysql_password_never_reaches_the_error() {
    let Some(database) = TestDatabase::mysql() else {
        return;
    };
    let spec = database
        .spec()
        .replacen("@", ":Wr0ng-p4ssw0rd@", 1)
        .replacen("://root:", "://nobody_here:", 1);
    let spec: StoreSpec = spec.parse().expect("spec");
    let error = open_store(&spec).err().expect("refused");
    let mut text = format!("{error} {error:?}");
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(&format!(" {cause} {cause:?}"));
        source = cause.source();
    }
    assert!(text.contains("nobody_here"), "{text}");
    assert!(
        !text.contains("Wr0ng-p4ssw0rd"),
        "the password leaked: {text}"
    );
}
