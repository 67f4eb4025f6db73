//! `GET /healthz` of the real binary on a PostgreSQL store: 503 while the database refuses the portal, 200 again
//! once it is back, without a restart. The public answer says only `unavailable`; the reason is in the log and in
//! the metrics listener's `/healthz`; the spec's password is in none of them.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::databases::TestDatabase;

const PASSWORD: &str = "pw-never-printed";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free loopback port")
}

/// The portal process, killed when the test ends.
struct Portal(Child);

impl Drop for Portal {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn health(client: &reqwest::Client, url: &str) -> Option<(u16, serde_json::Value)> {
    let response = client.get(url).send().await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.json().await.ok()?))
}

/// Asks `/healthz` until it answers `status`, for at most `wait`.
async fn wait_for(
    client: &reqwest::Client,
    url: &str,
    status: u16,
    wait: Duration,
) -> serde_json::Value {
    let started = Instant::now();
    loop {
        let answer = health(client, url).await;
        if let Some((got, body)) = &answer
            && *got == status
        {
            return body.clone();
        }
        assert!(
            started.elapsed() < wait,
            "/healthz did not answer {status} within {wait:?}: last answer {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A plain test with a runtime of its own for the HTTP side: the database's synchronous client, which the test
/// database uses, must not run on an async worker.
#[test]
fn healthz_says_only_unavailable_while_the_database_refuses_and_recovers_without_a_restart() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let Some(database) = TestDatabase::postgres() else {
        return;
    };
    // Trust authentication ignores the password: it is there to be kept out of the answer and the log.
    let spec = database
        .spec()
        .replacen("://postgres@", &format!("://postgres:{PASSWORD}@"), 1);
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("stderr.log");
    let (port, sandbox_port, metrics_port) = (free_port(), free_port(), free_port());
    let portal = Command::new(env!("CARGO_BIN_EXE_zylker-portal"))
        .current_dir(dir.path())
        .env_remove("ZOHO_CLIENT_ID")
        .env_remove("ZOHO_CLIENT_SECRET")
        .env_remove("SESSION_KEY")
        .env("PORTAL_BIND", format!("127.0.0.1:{port}"))
        .env("PORTAL_PUBLIC_URL", format!("http://127.0.0.1:{port}"))
        .env("SANDBOX_BIND", format!("127.0.0.1:{sandbox_port}"))
        .env("TOKEN_STORE", &spec)
        .env("METRICS_BIND", format!("127.0.0.1:{metrics_port}"))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("start zylker-portal");
    let _portal = Portal(portal);
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/healthz");
    let operators_url = format!("http://127.0.0.1:{metrics_port}/healthz");
    runtime.block_on(wait_for(&client, &url, 200, Duration::from_secs(30)));
    let body = runtime.block_on(wait_for(
        &client,
        &operators_url,
        200,
        Duration::from_secs(30),
    ));
    assert_eq!(body, serde_json::json!({"status": "ok"}));

    database.server_admin(&[
        format!("ALTER DATABASE {} ALLOW_CONNECTIONS false", database.name),
        format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}'",
            database.name
        ),
    ]);
    let body = runtime.block_on(wait_for(&client, &url, 503, Duration::from_secs(30)));
    assert_eq!(
        body,
        serde_json::json!({"status": "unavailable"}),
        "the public answer says nothing about the store"
    );
    let public = body.to_string();
    for detail in [
        database.name.as_str(),
        "postgres",
        "127.0.0.1",
        "5432",
        "oauthtoken",
    ] {
        assert!(!public.contains(detail), "{detail} in {public}");
    }
    // The reason, once a read of the store has ended (the store may take longer than a check waits to fail).
    let started = Instant::now();
    let reason = loop {
        let body = runtime.block_on(wait_for(
            &client,
            &operators_url,
            503,
            Duration::from_secs(30),
        ));
        assert_eq!(body["status"], "unavailable", "{body}");
        let reason = body["store"].as_str().expect("a reason").to_owned();
        if reason.contains(&database.name) {
            break reason;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the metrics listener's answer never named the store: {reason}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    eprintln!(
        "the metrics listener named the store {:?} into the outage: {reason}",
        started.elapsed()
    );
    assert!(
        reason.contains("postgres://postgres:***@"),
        "the metrics listener's answer names the store, password masked: {reason}"
    );
    // A load balancer's check gets its answer within a second, the outage's included.
    let started = Instant::now();
    let answer = runtime.block_on(health(&client, &url));
    assert_eq!(answer.map(|(status, _)| status), Some(503));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    database.server_admin(&[format!(
        "ALTER DATABASE {} ALLOW_CONNECTIONS true",
        database.name
    )]);
    let body = runtime.block_on(wait_for(&client, &url, 200, Duration::from_secs(30)));
    assert_eq!(body, serde_json::json!({"status": "ok"}));

    let logged = std::fs::read_to_string(&log).expect("log");
    assert!(
        logged.contains("the token store cannot be read") && logged.contains(&database.name),
        "the outage is logged, with the store named: {logged}"
    );
    assert!(
        !logged.contains(PASSWORD) && !reason.contains(PASSWORD),
        "the password leaked"
    );
}
