//! Compatibility with files the Python side wrote: the SDK's CSV, and the database of "the seed", the sample store
//! `CustomStoreSQLite` of Zoho's Kaizen #192
//! (<https://help.zoho.com/portal/en/community/topic/kaizen-192-implementing-custom-token-persistence-in-python-sdk>).

use rusqlite::Connection;
use zylker_portal::secret::Secret;
use zylker_portal::tokens::{FileStore, OAuthToken, SqliteStore, TokenStore};

/// The seed's `CREATE TABLE`, character for character (two spaces after `TABLE` included).
const SEED_CREATE_TABLE: &str = "CREATE TABLE  oauthtoken (id varchar(10) NOT NULL,user_name varchar(255), client_id varchar(255), client_secret varchar(255), refresh_token varchar(255), access_token varchar(255), grant_token varchar(255), expiry_time varchar(20), redirect_url varchar(255), api_domain varchar(255), primary key (id))";

const SEED_INSERT: &str = "insert into oauthtoken (id,user_name,client_id,client_secret,refresh_token,access_token,grant_token,expiry_time,redirect_url,api_domain) values (?,?,?,?,?,?,?,?,?,?);";

/// Builds `zohooauth.db` the way the seed's Python does: its table, then rows inserted with text values
/// (ids "1" and "2", `expiry_time` as text, NULL where the token had `None`), in the default journal mode.
pub(crate) fn seed_database(path: &std::path::Path) {
    let conn = Connection::open(path).expect("create the seed database");
    conn.execute(SEED_CREATE_TABLE, [])
        .expect("the seed's table");
    let rows: [[Option<&str>; 10]; 2] = [
        [
            Some("1"),
            Some("priya.raman@zylker.com"),
            Some("1000.SEEDCLIENT"),
            Some("17565609051856218813123b9a98de52c301722b7d"),
            Some("1000.refresh.priya"),
            Some("1000.access.priya"),
            Some("1000.grant.priya"),
            Some("1700000000000"),
            Some("http://localhost:5000/callback"),
            Some("https://www.zohoapis.com"),
        ],
        [
            Some("2"),
            Some("liam.o'brien@zylker.com"),
            Some("1000.SEEDCLIENT"),
            Some("17565609051856218813123b9a98de52c301722b7d"),
            Some("1000.refresh.liam"),
            None,
            None,
            Some("not a time"),
            Some("http://localhost:5000/callback"),
            None,
        ],
    ];
    for row in rows {
        conn.execute(SEED_INSERT, rusqlite::params_from_iter(row))
            .expect("a seed row");
    }
}

/// The raw rows, with each value's SQLite storage class, as another program would see them.
fn raw_rows(path: &std::path::Path) -> Vec<Vec<(String, Option<String>)>> {
    let conn = Connection::open(path).expect("a raw connection");
    let mut statement = conn
        .prepare(
            "SELECT typeof(id), id, typeof(user_name), user_name, typeof(access_token), access_token, \
             typeof(grant_token), grant_token, typeof(expiry_time), expiry_time, typeof(api_domain), api_domain \
             FROM oauthtoken ORDER BY rowid",
        )
        .expect("prepare");
    statement
        .query_map([], |row| {
            (0..6)
                .map(|i| {
                    Ok((
                        row.get::<_, String>(2 * i)?,
                        row.get::<_, Option<String>>(2 * i + 1)?,
                    ))
                })
                .collect()
        })
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

fn text(kind: &str, value: &str) -> (String, Option<String>) {
    (kind.to_owned(), Some(value.to_owned()))
}

fn null() -> (String, Option<String>) {
    ("null".to_owned(), None)
}

/// The table's columns and declared types, in order.
fn table_layout(path: &std::path::Path) -> Vec<(String, String)> {
    Connection::open(path)
        .expect("raw connection")
        .prepare("SELECT name, type FROM pragma_table_info('oauthtoken') ORDER BY cid")
        .expect("prepare")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("columns")
}

fn seed_layout() -> Vec<(String, String)> {
    [
        ("id", "varchar(10)"),
        ("user_name", "varchar(255)"),
        ("client_id", "varchar(255)"),
        ("client_secret", "varchar(255)"),
        ("refresh_token", "varchar(255)"),
        ("access_token", "varchar(255)"),
        ("grant_token", "varchar(255)"),
        ("expiry_time", "varchar(20)"),
        ("redirect_url", "varchar(255)"),
        ("api_domain", "varchar(255)"),
    ]
    .iter()
    .map(|(name, kind)| (name.to_string(), kind.to_string()))
    .collect()
}

#[test]
fn a_new_sqlite_store_creates_the_seeds_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("zohooauth.db");
    drop(SqliteStore::open(&path).expect("open"));
    assert_eq!(table_layout(&path), seed_layout());
    let primary_key: String = Connection::open(&path)
        .expect("raw")
        .query_row(
            "SELECT name FROM pragma_table_info('oauthtoken') WHERE pk = 1",
            [],
            |r| r.get(0),
        )
        .expect("primary key");
    assert_eq!(primary_key, "id");
}

#[test]
fn sqlite_store_reads_and_updates_a_seed_database_in_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("zohooauth.db");
    seed_database(&path);

    let store = SqliteStore::open(&path).expect("open the seed's database");

    // Read: text ids, NULLs as None, a text expiry as a number, an unparseable one as None.
    let priya = store
        .find_token(&OAuthToken {
            user_name: Some("priya.raman@zylker.com".into()),
            ..Default::default()
        })
        .expect("find")
        .expect("priya is stored");
    assert_eq!(priya.id.as_deref(), Some("1"));
    assert_eq!(priya.expiry_time, Some(1_700_000_000_000));
    assert_eq!(
        priya.api_domain.as_deref(),
        Some("https://www.zohoapis.com")
    );
    let liam = store
        .find_token_by_id("2")
        .expect("find")
        .expect("liam is stored");
    assert_eq!(liam.user_name.as_deref(), Some("liam.o'brien@zylker.com"));
    assert_eq!(
        (liam.access_token, liam.grant_token, liam.api_domain),
        (None, None, None)
    );
    assert_eq!(
        liam.expiry_time, None,
        "an unparseable expiry_time reads as None"
    );

    // Update in place: the row keeps id "1".
    let mut refreshed = priya.clone();
    refreshed.id = None;
    refreshed.access_token = Some("1000.access.priya.2".into());
    refreshed.expiry_time = Some(1_700_000_360_000);
    store.save_token(&mut refreshed).expect("update priya");
    assert_eq!(refreshed.id.as_deref(), Some("1"));

    // Insert: the next id, as text, like the seed's generate_id.
    let mut sofia = OAuthToken {
        user_name: Some("sofia.khan@zylker.com".into()),
        client_id: Some("1000.SEEDCLIENT".into()),
        client_secret: Some("secret".into()),
        refresh_token: Some("1000.refresh.sofia".into()),
        ..Default::default()
    };
    store.save_token(&mut sofia).expect("insert sofia");
    assert_eq!(sofia.id.as_deref(), Some("3"));
    drop(store);

    // The table is still the seed's, and the rows are what the seed's Python would read.
    let conn = Connection::open(&path).expect("raw connection");
    let schema: String = conn
        .query_row(
            "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = 'oauthtoken'",
            [],
            |r| r.get(0),
        )
        .expect("schema");
    // SQLite keeps the statement's text, only tidying the space after `CREATE TABLE`.
    assert_eq!(
        schema,
        SEED_CREATE_TABLE.replacen("TABLE  ", "TABLE ", 1),
        "the table layout is untouched"
    );
    drop(conn);
    assert_eq!(
        table_layout(&path),
        seed_layout(),
        "the seed's columns, in its order, with its types"
    );

    assert_eq!(
        raw_rows(&path),
        vec![
            vec![
                text("text", "1"),
                text("text", "priya.raman@zylker.com"),
                text("text", "1000.access.priya.2"),
                text("text", "1000.grant.priya"),
                text("text", "1700000360000"),
                text("text", "https://www.zohoapis.com"),
            ],
            vec![
                text("text", "2"),
                text("text", "liam.o'brien@zylker.com"),
                null(),
                null(),
                text("text", "not a time"),
                null(),
            ],
            vec![
                text("text", "3"),
                text("text", "sofia.khan@zylker.com"),
                null(),
                null(),
                null(),
                null(),
            ],
        ],
        "ids and expiry times are text as the seed writes them, untouched rows are untouched"
    );
}

/// What Python's `csv.writer` writes for the SDK's FileStore: CRLF, minimal quoting.
const PYTHON_CSV: &str = "id,user_name,client_id,client_secret,refresh_token,access_token,grant_token,expiry_time,redirect_uri,api_domain\r\n\
1,priya.raman@zylker.com:60032191920,1000.ABC,\"sec,ret\",1000.r1,1000.a1,,1700000000000,http://localhost:8080/cb,https://www.zohoapis.com\r\n\
2,liam.o'brien@zylker.com,1000.ABC,\"say \"\"hi\"\"\",1000.r2,,1000.g2,soon,,\r\n";

#[test]
fn file_store_reads_and_changes_a_csv_written_by_python() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sdk_tokens.txt");
    std::fs::write(&path, PYTHON_CSV).expect("write");
    let store = FileStore::open(&path).expect("open the SDK's file");
    assert_eq!(
        std::fs::read_to_string(&path).expect("read"),
        PYTHON_CSV,
        "opening writes nothing"
    );

    let tokens = store.get_tokens().expect("get_tokens");
    assert_eq!(tokens.len(), 2);
    assert_eq!(
        tokens[0].client_secret.as_ref().map(Secret::expose_secret),
        Some("sec,ret")
    );
    assert_eq!(tokens[0].expiry_time, Some(1_700_000_000_000));
    assert_eq!(
        tokens[0].redirect_url.as_deref(),
        Some("http://localhost:8080/cb")
    );
    assert_eq!(
        tokens[1].client_secret.as_ref().map(Secret::expose_secret),
        Some("say \"hi\"")
    );
    assert_eq!(tokens[1].access_token, None, "an empty cell is None");
    assert_eq!(
        tokens[1].expiry_time, None,
        "an unparseable expiry_time is None"
    );

    let mut liam = tokens[1].clone();
    liam.id = None;
    liam.access_token = Some("1000.a2".into());
    liam.expiry_time = Some(1_700_000_360_000);
    store.save_token(&mut liam).expect("update liam");
    assert_eq!(liam.id.as_deref(), Some("2"));

    let written = std::fs::read_to_string(&path).expect("read");
    let lines: Vec<&str> = written.split_inclusive("\r\n").collect();
    let original: Vec<&str> = PYTHON_CSV.split_inclusive("\r\n").collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0], original[0], "the header is the SDK's");
    assert_eq!(
        lines[1], original[1],
        "an untouched row is written exactly as Python wrote it"
    );
    assert_eq!(
        lines[2],
        "2,liam.o'brien@zylker.com,1000.ABC,\"say \"\"hi\"\"\",1000.r2,1000.a2,1000.g2,1700000360000,,\r\n"
    );
}

#[test]
fn file_store_reads_nine_column_files_and_writes_ten_columns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("old_tokens.csv");
    // An older SDK's file: no api_domain column, LF line endings, a quoted line break.
    std::fs::write(
        &path,
        "id,user_name,client_id,client_secret,refresh_token,access_token,grant_token,expiry_time,redirect_uri\n\
         1,arjun.mehta@zylker.com,1000.ABC,s,1000.r1,1000.a1,,1700000000000,\"http://x/cb\nsecond line\"\n",
    )
    .expect("write");
    let store = FileStore::open(&path).expect("open a nine-column file");
    let arjun = store.find_token_by_id("1").expect("find").expect("stored");
    assert_eq!(arjun.api_domain, None);
    assert_eq!(
        arjun.redirect_url.as_deref(),
        Some("http://x/cb\nsecond line")
    );

    let mut sofia = zylker_portal::tokens::conformance::sample_token("sofia.khan@zylker.com");
    store.save_token(&mut sofia).expect("save");
    assert_eq!(sofia.id.as_deref(), Some("2"));
    let written = std::fs::read_to_string(&path).expect("read");
    assert!(
        written.starts_with(
            "id,user_name,client_id,client_secret,refresh_token,access_token,grant_token,expiry_time,redirect_uri,api_domain\r\n"
        ),
        "rewritten with the ten-column header: {written:?}"
    );
    assert_eq!(
        store.find_token_by_id("1").expect("find"),
        Some(arjun),
        "the old row survives the rewrite"
    );
}
