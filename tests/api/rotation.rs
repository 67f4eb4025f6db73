//! Token encryption key rotation end to end, with two portal processes on one PostgreSQL database throughout:
//! encrypted with key A; B added, then put first, one portal restarted at a time; `tokens rekey` beside the
//! running portals; A removed; pages and refreshes work at every step, and the rows in the database say which
//! key wrote them.

use futures_util::future::join_all;
use reqwest::StatusCode;

use crate::databases::Server;
use crate::fleet::{Fleet, database_of};

const KEY_A: &str = "keyA:1111111111111111111111111111111111111111111111111111111111111111";
const KEY_B: &str = "keyB:2222222222222222222222222222222222222222222222222222222222222222";

/// The four secret columns of the token table.
const SECRET_COLUMNS: [&str; 4] = [
    "client_secret",
    "refresh_token",
    "access_token",
    "grant_token",
];

/// Every non-empty secret value in the database, as stored.
fn stored_secrets(fleet: &Fleet, columns: &[&str]) -> Vec<String> {
    columns
        .iter()
        .flat_map(|column| fleet.column(column))
        .flatten()
        .filter(|value| !value.is_empty())
        .collect()
}

/// Asserts that every value of `columns` in the database is encrypted under key `kid`.
#[track_caller]
fn assert_written_under(fleet: &Fleet, columns: &[&str], kid: &str) {
    let values = stored_secrets(fleet, columns);
    assert!(!values.is_empty(), "{columns:?} hold values");
    let prefix = format!("enc:v1:{kid}:");
    let others: Vec<&str> = values
        .iter()
        .filter(|value| !value.starts_with(&prefix))
        .map(|value| value.get(..12).unwrap_or(value))
        .collect();
    assert!(
        others.is_empty(),
        "{columns:?} all under {kid}, not: {others:?}"
    );
}

/// `count` Leads pages spread over both portals, all at once; every one must be served.
async fn pages_load_on_both(fleet: &Fleet, count: usize, step: &str) {
    let pages = (0..count).map(|n| {
        let request = fleet
            .browser
            .get(fleet.portal(n).join("/crm/Leads").expect("url"));
        async move { request.send().await.map(|r| r.status()) }
    });
    let statuses = join_all(pages).await;
    let failed: Vec<_> = statuses
        .iter()
        .filter(|s| !matches!(s, Ok(StatusCode::OK)))
        .collect();
    assert!(
        failed.is_empty(),
        "{step}: every page is served, not {failed:?}"
    );
}

/// Expires the stored access token and loads a page on portal `n`: one refresh at Zoho.
async fn a_refresh_works_on(fleet: &Fleet, n: usize, step: &str) {
    fleet.expire().await;
    let before = fleet.refreshes().await;
    let status = fleet
        .browser
        .get(fleet.portal(n).join("/crm/Leads").expect("url"))
        .send()
        .await
        .expect("a page")
        .status();
    assert_eq!(status, StatusCode::OK, "{step}: the page after expiry");
    assert_eq!(fleet.refreshes().await - before, 1, "{step}: one refresh");
}

/// Restarts the portals one at a time with `keyring`, the other one serving meanwhile.
async fn roll(fleet: &mut Fleet, keyring: &str) {
    fleet.keyring = Some(keyring.to_owned());
    for n in 0..2 {
        fleet.stop_portal(n);
        pages_load_on_both_but(fleet, n, keyring).await;
        fleet.start_portal(n).await;
        pages_load_on_both(fleet, 20, &format!("portal {n} restarted with {keyring}")).await;
    }
}

/// While portal `down` is stopped, the other serves.
async fn pages_load_on_both_but(fleet: &Fleet, down: usize, keyring: &str) {
    let up = 1 - down;
    let status = fleet
        .browser
        .get(fleet.portal(up).join("/crm/Leads").expect("url"))
        .send()
        .await
        .expect("a page")
        .status();
    assert_eq!(
        status,
        StatusCode::OK,
        "portal {up} serves while {down} restarts with {keyring}"
    );
}

#[tokio::test]
async fn keys_rotate_from_a_to_b_under_two_running_portals_and_everything_keeps_working() {
    let Some(database) = database_of(Server::Postgres) else {
        return;
    };
    let (kid_a, kid_b) = ("keyA", "keyB");
    let mut fleet = Fleet::start_encrypted(database, 2, Some(KEY_A.to_owned())).await;
    fleet.login().await;
    let log = fleet.portal_log(0);
    assert_eq!(
        log.matches("token encryption is on").count(),
        1,
        "said once at start: {log}"
    );
    assert!(log.contains(kid_a) && log.contains("SDK"), "{log}");
    assert!(
        !log.contains(&KEY_A[5..25]),
        "the key never reaches the log"
    );
    pages_load_on_both(&fleet, 20, "encrypted with A").await;
    assert_written_under(&fleet, &SECRET_COLUMNS, kid_a);

    // B joins the keyring, second and then first, one portal at a time: at every moment each portal can read
    // what the other writes.
    roll(&mut fleet, &format!("{KEY_A},{KEY_B}")).await;
    let b_first = format!("{KEY_B},{KEY_A}");
    roll(&mut fleet, &b_first).await;

    // The portals now write B: a refresh stores its access token under B; the rest of the row is still A's.
    a_refresh_works_on(&fleet, 1, "B first").await;
    assert_written_under(&fleet, &["access_token"], kid_b);
    assert_written_under(
        &fleet,
        &["client_secret", "refresh_token", "grant_token"],
        kid_a,
    );

    // `tokens rekey` beside both portals serving pages.
    let store = fleet.store.clone();
    let keyring = b_first.clone();
    let rekey = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_zylker-portal"))
            .args(["tokens", "rekey"])
            .env("TOKEN_STORE", store)
            .env("TOKEN_ENCRYPTION_KEYS", keyring)
            .env("RUST_LOG", "warn")
            .output()
            .expect("run tokens rekey")
    });
    pages_load_on_both(&fleet, 40, "during the rekey").await;
    let output = rekey.await.expect("rekey");
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(said.contains("re-encrypted 1 of 1 tokens"), "{said}");
    assert_written_under(&fleet, &SECRET_COLUMNS, kid_b);

    // A leaves the keyring; everything still works: pages, a refresh, on both portals.
    roll(&mut fleet, KEY_B).await;
    a_refresh_works_on(&fleet, 0, "B alone").await;
    a_refresh_works_on(&fleet, 1, "B alone").await;
    pages_load_on_both(&fleet, 20, "B alone").await;
    assert_written_under(&fleet, &SECRET_COLUMNS, kid_b);
}
