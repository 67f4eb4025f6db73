//! The sign-in tables on PostgreSQL and MySQL behave as every sign-in store does; a sign-in table of an earlier
//! version gets the owner's columns (its rows, naming no token, are not live) and the earlier version's table of
//! logins in flight is left as it was; `tokens copy` carries the live sign-ins from store to store.

use zylker_portal::cli::tokens::{TokensArgs, TokensCommand};
use zylker_portal::tokens::sign_ins::conformance::behaves_as_a_sign_in_store;
use zylker_portal::tokens::{
    FileStore, OAuthToken, Secret, SignInRecord, StoreSpec, TokenStore, live_sign_ins_in,
    open_portal_stores, open_sign_in_store,
};

use crate::databases::{Server, TestDatabase};

fn sign_in_tables_behave_and_take_over_an_earlier_versions(server: Server) {
    let Some(database) = TestDatabase::create(server) else {
        return;
    };
    let text = match server {
        Server::Postgres => "TEXT",
        Server::MySql => "VARCHAR(128)",
    };
    database.execute(&[
        &format!("CREATE TABLE portal_sign_ins (id {text} NOT NULL PRIMARY KEY, expires_at BIGINT NOT NULL)"),
        "INSERT INTO portal_sign_ins (id, expires_at) VALUES ('from-before', 9999999999)",
        &format!("CREATE TABLE portal_pending_logins (id {text} NOT NULL PRIMARY KEY, state {text} NOT NULL)"),
        "INSERT INTO portal_pending_logins (id, state) VALUES ('in-flight', 's')",
    ]);
    let spec: StoreSpec = database.spec().parse().expect("spec");

    let portal = open_portal_stores(&spec, 10).expect("a portal opens the store");
    let store = open_sign_in_store(&spec)
        .expect("the sign-in tables")
        .expect("a database keeps them");

    assert!(
        !store
            .sign_in_is_live("from-before", "", "", 0)
            .expect("read"),
        "a sign-in of an earlier version names no token, so it opens none"
    );
    behaves_as_a_sign_in_store(store.as_ref());
    assert_eq!(
        database.query_texts("SELECT state FROM portal_pending_logins"),
        vec![Some("s".to_owned())],
        "the earlier version's logins in flight are left as they were"
    );
    drop((portal, store));
}

#[test]
fn postgres_sign_in_tables_behave_and_take_over_an_earlier_versions() {
    sign_in_tables_behave_and_take_over_an_earlier_versions(Server::Postgres);
}

#[test]
fn mysql_sign_in_tables_behave_and_take_over_an_earlier_versions() {
    sign_in_tables_behave_and_take_over_an_earlier_versions(Server::MySql);
}

fn token_of(user_name: &str) -> OAuthToken {
    OAuthToken {
        user_name: Some(user_name.to_owned()),
        client_id: Some("1000.CLIENT".into()),
        client_secret: Some(Secret::from("secret")),
        refresh_token: Some(Secret::from(format!("1000.refresh.{user_name}"))),
        access_token: Some(Secret::from("1000.access")),
        expiry_time: Some(4_000_000_000_000),
        api_domain: Some("https://www.zohoapis.com".into()),
        ..OAuthToken::default()
    }
}

fn sign_in(key: &str, user_name: &str, token_id: &str, expires_at: i64) -> SignInRecord {
    SignInRecord {
        key: key.to_owned(),
        user_name: user_name.to_owned(),
        token_id: token_id.to_owned(),
        expires_at,
    }
}

/// `tokens copy --from FROM --to TO`, in this process; its output.
fn copy(from: &str, to: &str) -> String {
    let args = TokensArgs {
        store: StoreSpec::default(),
        token_encryption_keys: None,
        command: TokensCommand::Copy {
            from: from.parse().expect("spec"),
            to: to.parse().expect("spec"),
        },
    };
    let mut output = Vec::new();
    args.run_with(&mut std::io::empty(), &mut output)
        .unwrap_or_else(|error| panic!("copy {from} to {to}: {error:#}"));
    String::from_utf8(output).expect("text")
}

const PRIYA: &str = "priya.raman@zylker.com:60032191920";
const ARJUN: &str = "arjun.mehta@zylker.com:60032191920";

#[test]
fn tokens_copy_carries_the_live_sign_ins_from_csv_to_sqlite_to_postgres_to_mysql_and_back_to_csv() {
    let (Some(postgres), Some(mysql)) = (TestDatabase::postgres(), TestDatabase::mysql()) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = format!("file:{}", dir.path().join("tokens.csv").display());
    let sqlite = format!("sqlite:{}", dir.path().join("tokens.db").display());
    let csv_again = format!("file:{}", dir.path().join("again.csv").display());
    let now = zylker_portal::tokens::now_millis() / 1000;
    let later = now + 3600;
    {
        // Priya and Arjun signed in through a portal on the CSV store, Arjun once long ago too.
        let store = FileStore::open(dir.path().join("tokens.csv")).expect("csv");
        let mut priya = token_of(PRIYA);
        store.save_token(&mut priya).expect("save");
        let mut arjun = token_of(ARJUN);
        store.save_token(&mut arjun).expect("save");
        let sign_ins = open_sign_in_store(&csv.parse().expect("spec"))
            .expect("the side file")
            .expect("a file keeps them");
        let (priya, arjun) = (priya.id.expect("id"), arjun.id.expect("id"));
        for record in [
            sign_in("a-priya", PRIYA, &priya, later),
            sign_in("b-arjun", ARJUN, &arjun, later),
            sign_in("c-arjun-lapsed", ARJUN, &arjun, now - 1),
            sign_in(
                "d-deleted-token",
                "gone@zylker.com:60032191920",
                "99",
                later,
            ),
        ] {
            sign_ins.record_sign_in(&record).expect("record");
        }
    }
    let live = |spec: &str| {
        let mut records =
            live_sign_ins_in(&spec.parse().expect("spec"), now).expect("read the sign-ins");
        records.sort_by(|a, b| a.key.cmp(&b.key));
        records
    };
    let carried = live(&csv)[..2].to_vec();

    for (from, to) in [
        (&csv, &sqlite),
        (&sqlite, &postgres.spec()),
        (&postgres.spec(), &mysql.spec()),
        (&mysql.spec(), &csv_again),
    ] {
        let output = copy(from, to);

        assert!(
            output.contains("copied 2 sign-ins"),
            "{from} to {to}: {output}"
        );
        assert_eq!(
            live(to),
            carried,
            "{from} to {to}: the live sign-ins of kept tokens"
        );
    }
    assert!(
        copy(&csv, &sqlite).contains("1 left behind"),
        "a sign-in whose token was not copied is said to be left behind"
    );
}

#[test]
fn tokens_copy_leaves_behind_a_sign_in_whose_token_gets_another_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let from = format!("sqlite:{}", dir.path().join("from.db").display());
    let to = format!("sqlite:{}", dir.path().join("to.db").display());
    let later = zylker_portal::tokens::now_millis() / 1000 + 3600;
    let (from_stores, to_stores) = (
        open_portal_stores(&from.parse().expect("spec"), 0).expect("from"),
        open_portal_stores(&to.parse().expect("spec"), 0).expect("to"),
    );
    let mut priya = token_of(PRIYA);
    from_stores.tokens.save_token(&mut priya).expect("save");
    // The target already has a row under Priya's id, someone else's: hers gets another id there.
    to_stores
        .tokens
        .save_token(&mut token_of(ARJUN))
        .expect("save");
    open_sign_in_store(&from.parse().expect("spec"))
        .expect("tables")
        .expect("a file")
        .record_sign_in(&sign_in("a-priya", PRIYA, &priya.id.expect("id"), later))
        .expect("record");

    let output = copy(&from, &to);

    assert!(
        output.contains("copied 0 sign-ins, 1 left behind"),
        "{output}"
    );
    drop((from_stores, to_stores));
}
