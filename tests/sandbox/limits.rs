//! Zoho's limits in the sandbox: latency per CRM call, the org's concurrency cap (by edition, or overridden),
//! API credits per rolling 24 hours, and the counters that show them; in process and through the binary.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser as _;
use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};
use zylker_portal::cli::{Cli, Command as CliCommand};
use zylker_portal::sandbox::{
    CrmLimits, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_REDIRECT_URI, SandboxConfig,
};

use crate::support::{PRIYA, Sandbox, config};

/// Long enough that the calls a test holds open are all in flight together on a busy machine; the tests wait
/// for that (a readiness wait) instead of assuming it.
const HOLD: Duration = Duration::from_secs(3);

async fn sandbox_with(crm: CrmLimits) -> Sandbox {
    Sandbox::start_with(SandboxConfig {
        crm,
        ..config(true)
    })
    .await
}

/// Zoho's answer over a limit: 429 and exactly the four keys of its error envelope.
fn assert_too_many_requests(status: StatusCode, body: &Value) {
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    let keys: Vec<&str> = body
        .as_object()
        .expect("a JSON object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["code", "details", "message", "status"], "{body}");
    assert_eq!(body["code"], "TOO_MANY_REQUESTS", "{body}");
    assert_eq!(body["status"], "error", "{body}");
    assert_eq!(body["details"], json!({}), "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|text| !text.is_empty()),
        "{body}"
    );
}

/// Polls the counters until `name` reaches `value`.
async fn wait_for_counter(http: &reqwest::Client, base: &str, name: &str, value: u64) {
    let started = Instant::now();
    loop {
        let counters: Value = http
            .get(format!("{base}/_sandbox/counters"))
            .send()
            .await
            .expect("counters")
            .json()
            .await
            .expect("JSON counters");
        if counters[name] == value {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{name} never reached {value}: {counters}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn org_call(http: &reqwest::Client, base: &str, token: &str) -> (StatusCode, Value) {
    let response = http
        .get(format!("{base}/crm/v8/org"))
        .header("Authorization", format!("Zoho-oauthtoken {token}"))
        .send()
        .await
        .expect("GET /crm/v8/org");
    let status = response.status();
    (status, response.json().await.expect("a JSON body"))
}

/// Holds `held` calls open, waits until all of them are in flight, then makes `over` more: what they answer.
async fn calls_over_a_full_cap(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    held: usize,
    over: usize,
) -> (Vec<(StatusCode, Value)>, Vec<(StatusCode, Value)>) {
    let holding = join_all((0..held).map(|_| org_call(http, base, token)));
    let beyond = async {
        wait_for_counter(http, base, "max_concurrent_crm", held as u64).await;
        join_all((0..over).map(|_| org_call(http, base, token))).await
    };
    futures_util::future::join(holding, beyond).await
}

#[tokio::test]
async fn each_crm_call_takes_at_least_the_configured_latency() {
    let sandbox = sandbox_with(CrmLimits {
        latency: Duration::from_millis(300),
        ..CrmLimits::default()
    })
    .await;
    let priya = sandbox.login(PRIYA).await;

    for path in ["org", "users?type=CurrentUser", "Leads?fields=Last_Name"] {
        let started = Instant::now();
        let status = sandbox.crm(&priya.access, path).await.status();

        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "{path} answered in {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn calls_over_the_cap_get_zohos_429_while_the_cap_is_full_on_one_worker() {
    let sandbox = sandbox_with(CrmLimits {
        latency: HOLD,
        concurrency: Some(4),
        credits_per_day: None,
    })
    .await;
    let priya = sandbox.login(PRIYA).await;

    let (held, refused) =
        calls_over_a_full_cap(&sandbox.http, &sandbox.base, &priya.access, 4, 3).await;

    for (status, body) in &held {
        assert_eq!(*status, StatusCode::OK, "{body}");
    }
    for (status, body) in &refused {
        assert_too_many_requests(*status, body);
    }
    let counters = sandbox.running.counters();
    assert_eq!(
        (
            counters.crm_calls,
            counters.crm_429,
            counters.max_concurrent_crm,
            counters.credits_used
        ),
        (7, 3, 4, 4),
        "every call counted, the refused ones spent no credit, the four in flight at once"
    );
    // The places are given back: the cap lets the next call in.
    assert_eq!(
        org_call(&sandbox.http, &sandbox.base, &priya.access)
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn credits_run_out_and_come_back_24_hours_later() {
    let sandbox = sandbox_with(CrmLimits {
        credits_per_day: Some(3),
        ..CrmLimits::default()
    })
    .await;
    let priya = sandbox.login(PRIYA).await;

    for _ in 0..3 {
        assert_eq!(
            sandbox.crm(&priya.access, "org").await.status(),
            StatusCode::OK
        );
    }
    let (status, body) = sandbox.crm_json(&priya.access, "org").await;

    assert_too_many_requests(status, &body);
    let counters = sandbox.counters().await;
    assert_eq!(counters["credits_used"], 3, "{counters}");
    assert_eq!(counters["crm_429"], 1, "{counters}");
    sandbox
        .control("advance-clock", json!({"seconds": 24 * 3600 + 60}))
        .await;
    // A day later the access token has expired too: a fresh one (the token endpoint spends no credit).
    let fresh = sandbox.refresh(&priya.refresh).await;
    let access = fresh["access_token"].as_str().expect("an access token");
    assert_eq!(
        sandbox.crm(access, "org").await.status(),
        StatusCode::OK,
        "the rolling window moved on"
    );
    assert_eq!(sandbox.running.counters().credits_used, 1);
}

#[tokio::test]
async fn reset_clears_the_429s_the_peak_and_the_credits() {
    let sandbox = sandbox_with(CrmLimits {
        credits_per_day: Some(1),
        ..CrmLimits::default()
    })
    .await;
    let priya = sandbox.login(PRIYA).await;
    sandbox.crm(&priya.access, "org").await;
    sandbox.crm(&priya.access, "org").await;
    let before = sandbox.running.counters();
    assert_eq!(
        (
            before.crm_429,
            before.max_concurrent_crm,
            before.credits_used
        ),
        (1, 1, 1)
    );

    sandbox.control("reset", json!({})).await;

    assert_eq!(sandbox.running.counters(), Default::default());
    assert_eq!(
        sandbox.crm(&priya.access, "org").await.status(),
        StatusCode::OK,
        "a reset is a fresh day"
    );
}

#[test]
fn the_sandbox_command_parses_zohos_limits() {
    let Ok(Cli {
        command: Some(CliCommand::Sandbox(args)),
        ..
    }) = Cli::try_parse_from([
        "zylker-portal",
        "sandbox",
        "--crm-latency-ms",
        "150",
        "--edition",
        "standard",
        "--crm-concurrency",
        "0",
        "--crm-credits-per-day",
        "5000",
    ])
    else {
        panic!("the sandbox's limit flags are refused");
    };
    assert_eq!(
        args.crm.limits(args.crm_concurrency),
        CrmLimits {
            latency: Duration::from_millis(150),
            concurrency: None,
            credits_per_day: Some(5000),
        }
    );

    for (edition, cap) in [
        ("free", 5),
        ("standard", 10),
        ("professional", 15),
        ("enterprise", 20),
        ("ultimate", 25),
    ] {
        let Ok(Cli {
            command: Some(CliCommand::Sandbox(args)),
            ..
        }) = Cli::try_parse_from(["zylker-portal", "sandbox", "--edition", edition])
        else {
            panic!("--edition {edition} is refused");
        };
        assert_eq!(args.crm.limits(args.crm_concurrency).concurrency, Some(cap));
    }
    assert!(Cli::try_parse_from(["zylker-portal", "sandbox", "--edition", "gold"]).is_err());
    assert!(
        Cli::try_parse_from(["zylker-portal", "sandbox", "--sandbox-crm-concurrency", "3"])
            .is_err(),
        "the standalone sandbox names its override --crm-concurrency"
    );
}

#[test]
fn serve_passes_zohos_limits_to_the_embedded_sandbox() {
    let serve_flags = [
        "--crm-latency-ms",
        "150",
        "--edition",
        "free",
        "--sandbox-crm-concurrency",
        "7",
        "--crm-credits-per-day",
        "9",
    ];
    let expected = CrmLimits {
        latency: Duration::from_millis(150),
        concurrency: Some(7),
        credits_per_day: Some(9),
    };
    let with_subcommand =
        Cli::try_parse_from(["zylker-portal", "serve"].into_iter().chain(serve_flags))
            .expect("serve takes the sandbox's limits");
    let Some(CliCommand::Serve(args)) = with_subcommand.command else {
        panic!("not serve");
    };
    assert_eq!(
        args.sandbox_crm.limits(args.sandbox_crm_concurrency),
        expected
    );
    let bare = Cli::try_parse_from(std::iter::once("zylker-portal").chain(serve_flags))
        .expect("no subcommand means serve");
    assert_eq!(
        bare.serve
            .sandbox_crm
            .limits(bare.serve.sandbox_crm_concurrency),
        expected
    );
}

/// A free loopback port, for a child that binds by number.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free loopback port")
}

/// The `zylker-portal` binary, started without any of the configuration variables of the shell the tests run
/// in, so that a developer's settings cannot leak in.
pub fn portal_binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_zylker-portal"));
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if ["PORTAL_", "ZOHO_", "SANDBOX_", "TOKEN_"]
            .iter()
            .any(|prefix| name.starts_with(prefix))
            || name == "SESSION_KEY"
        {
            command.env_remove(name.as_ref());
        }
    }
    command.stdin(Stdio::null());
    command
}

/// `zylker-portal sandbox` as its own process, killed when the test ends.
struct SandboxProcess {
    child: Child,
    base: String,
}

impl SandboxProcess {
    async fn start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> SandboxProcess {
        let bind = format!("127.0.0.1:{}", free_port());
        let mut command = portal_binary();
        command
            .args(["sandbox", "--bind", &bind])
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .envs(env.iter().copied());
        let mut process = SandboxProcess {
            child: command.spawn().expect("the binary starts"),
            base: format!("http://{bind}"),
        };
        let started = Instant::now();
        loop {
            assert!(
                process.child.try_wait().expect("child status").is_none(),
                "the sandbox exited"
            );
            if let Ok(answer) = reqwest::get(format!("{}/_sandbox/counters", process.base)).await
                && answer.status() == StatusCode::OK
            {
                return process;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "never served");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Priya's access token, from a consent and a code exchange with the demo client.
    async fn login(&self, http: &reqwest::Client) -> String {
        let consent = http
            .post(format!("{}/oauth/v2/auth", self.base))
            .form(&[
                ("client_id", DEMO_CLIENT_ID),
                ("response_type", "code"),
                ("redirect_uri", DEMO_REDIRECT_URI),
                ("scope", "ZohoCRM.org.READ"),
                ("email", PRIYA),
                ("decision", "accept"),
            ])
            .send()
            .await
            .expect("consent");
        let location = url::Url::parse(
            consent.headers()["location"]
                .to_str()
                .expect("an ASCII Location"),
        )
        .expect("a URL");
        let code = location
            .query_pairs()
            .find(|(name, _)| name == "code")
            .expect("a code")
            .1
            .into_owned();
        let tokens: Value = http
            .post(format!("{}/oauth/v2/token", self.base))
            .form(&[
                ("grant_type", "authorization_code"),
                ("client_id", DEMO_CLIENT_ID),
                ("client_secret", DEMO_CLIENT_SECRET),
                ("redirect_uri", DEMO_REDIRECT_URI),
                ("code", &code),
            ])
            .send()
            .await
            .expect("token")
            .json()
            .await
            .expect("JSON");
        tokens["access_token"]
            .as_str()
            .expect("an access token")
            .to_owned()
    }
}

impl Drop for SandboxProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client")
}

#[tokio::test]
async fn the_binary_caps_the_free_edition_at_five_concurrent_calls_from_its_variables() {
    let dir = tempfile::tempdir().expect("tempdir");
    let latency = HOLD.as_millis().to_string();
    let sandbox = SandboxProcess::start(
        dir.path(),
        &[],
        &[
            ("SANDBOX_EDITION", "free"),
            ("SANDBOX_CRM_LATENCY_MS", &latency),
        ],
    )
    .await;
    let http = no_redirects();
    let token = sandbox.login(&http).await;

    let (held, refused) = calls_over_a_full_cap(&http, &sandbox.base, &token, 5, 1).await;

    assert!(held.iter().all(|(status, _)| *status == StatusCode::OK));
    assert_too_many_requests(refused[0].0, &refused[0].1);
}

#[tokio::test]
async fn the_binary_with_a_concurrency_of_zero_has_no_cap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let latency = HOLD.as_millis().to_string();
    let sandbox = SandboxProcess::start(
        dir.path(),
        &[
            "--edition",
            "free",
            "--crm-concurrency",
            "0",
            "--crm-latency-ms",
            &latency,
        ],
        &[],
    )
    .await;
    let http = no_redirects();
    let token = sandbox.login(&http).await;

    // Eight in flight at once, over the free edition's five: every one is admitted.
    let (held, _) = calls_over_a_full_cap(&http, &sandbox.base, &token, 8, 0).await;

    assert!(held.iter().all(|(status, _)| *status == StatusCode::OK));
    let counters: Value = http
        .get(format!("{}/_sandbox/counters", sandbox.base))
        .send()
        .await
        .expect("counters")
        .json()
        .await
        .expect("JSON");
    assert_eq!(counters["crm_429"], 0, "{counters}");
}
