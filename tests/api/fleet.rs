//! Several portals on one store, as behind a load balancer: one refresh per expiry across all of them.

use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::json;
use url::Url;

use crate::helpers::{PRIYA, TestApp};

/// Three portals on one SQLite file (each with its own token manager, so its own in-process single flight), one
/// browser cookie, the access token expired in the store, the sandbox's token endpoint slowed so that every
/// portal finds the token wanting while the first refresh is on its way: 300 pages, spread over the three, make
/// one refresh at Zoho. Without the store's refresh lease each portal refreshes once (three).
#[tokio::test]
async fn three_portals_on_one_sqlite_file_make_one_refresh_per_expiry() {
    let app = TestApp::spawn_on_sqlite().await;
    let (twin_a, handle_a) = app.twin();
    let (twin_b, handle_b) = app.twin();
    app.login_as(PRIYA).await;
    let cookie = format!(
        "{}={}",
        zylker_portal::app::SESSION_COOKIE,
        app.session_cookie().expect("a session cookie")
    );
    app.expire_in_store(PRIYA).await;
    app.inject(json!({"target": "token", "delay_ms": 400, "count": 1}))
        .await;
    let before = app.counters().await.refreshes;

    let portals = [app.address.clone(), twin_a, twin_b];
    let client = reqwest::Client::new();
    let pages = (0..300).map(|n| {
        let url = portals[n % portals.len()].join("/crm/Leads").expect("url");
        let request = client
            .get(url)
            .header(reqwest::header::COOKIE, cookie.clone());
        async move { request.send().await.expect("a page").status() }
    });
    let statuses = join_all(pages).await;

    let not_ok: Vec<_> = statuses.iter().filter(|s| **s != StatusCode::OK).collect();
    assert!(not_ok.is_empty(), "every page is served: {not_ok:?}");
    assert_eq!(
        app.counters().await.refreshes - before,
        1,
        "one refresh at Zoho for the three portals"
    );
    handle_a.stop(false).await;
    handle_b.stop(false).await;
}

/// Three `serve` processes on one database, sharing the session key and a sandbox process (Zoho): a browser
/// logs in through the first, the access token is expired in the store, the token endpoint is slowed, and 300
/// pages spread over the three make one refresh at Zoho; a sign-out on one is then refused by the others.
async fn three_portal_processes_on_one_database(database: Option<crate::databases::TestDatabase>) {
    use crate::serve::{RunningBinary, free_port, location_of};
    use zylker_portal::sandbox::{DEMO_CLIENT_ID, DEMO_CLIENT_SECRET};

    let Some(database) = database else {
        return; // ZYLKER_SKIP_DB_TESTS=1
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let folder = |name: &str| {
        let path = dir.path().join(name);
        std::fs::create_dir_all(&path).expect("folder");
        path
    };
    let ports = [free_port(), free_port(), free_port()];
    let portal = |n: usize| Url::parse(&format!("http://127.0.0.1:{}", ports[n])).expect("url");
    // Behind a load balancer every portal has the balancer's address; here, the first portal's.
    let public_url = portal(0);
    let redirect = public_url.join("/oauth/callback").expect("url");
    let sandbox_bind = format!("127.0.0.1:{}", free_port());
    let sandbox_url = Url::parse(&format!("http://{sandbox_bind}")).expect("url");
    let mut sandbox = RunningBinary::start(
        &folder("sandbox"),
        &["sandbox"],
        &[
            ("SANDBOX_BIND", &sandbox_bind),
            ("SANDBOX_REDIRECT_URIS", redirect.as_str()),
        ],
    );
    sandbox
        .wait_until_ready(&sandbox_url.join("/_sandbox/counters").expect("url"))
        .await;
    let key = hex::encode([7u8; 64]);
    let store = database.spec();
    let mut portals = Vec::new();
    for (n, port) in ports.iter().enumerate() {
        let bind = format!("127.0.0.1:{port}");
        let mut running = RunningBinary::start(
            &folder(&format!("portal{n}")),
            &["serve"],
            &[
                ("PORTAL_BIND", &bind),
                ("PORTAL_PUBLIC_URL", public_url.as_str()),
                ("ZOHO_CLIENT_ID", DEMO_CLIENT_ID),
                ("ZOHO_CLIENT_SECRET", DEMO_CLIENT_SECRET),
                ("ZOHO_ACCOUNTS_URL", sandbox_url.as_str()),
                ("TOKEN_STORE", &store),
                ("SESSION_KEY", &key),
            ],
        );
        running
            .wait_until_ready(&portal(n).join("/healthz").expect("url"))
            .await;
        portals.push(running);
    }

    // Log in through the first portal as a browser does. Cookies ignore ports: the same jar serves all three.
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    let browser = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let response = browser
        .get(public_url.join("/login").expect("url"))
        .send()
        .await
        .expect("login");
    let auth_url = location_of(&response);
    let mut form: Vec<(String, String)> = auth_url.query_pairs().into_owned().collect();
    form.push(("email".into(), PRIYA.into()));
    form.push(("decision".into(), "accept".into()));
    let consent = browser
        .post(auth_url.join("/oauth/v2/auth").expect("url"))
        .form(&form)
        .send()
        .await
        .expect("consent");
    let callback = browser
        .get(location_of(&consent))
        .send()
        .await
        .expect("callback");
    assert_eq!(callback.status(), StatusCode::SEE_OTHER, "logged in");

    // The access token expires in the store; the token endpoint answers slowly, so every portal finds it
    // wanting while the first refresh is on its way.
    let spec: zylker_portal::tokens::StoreSpec = store.parse().expect("spec");
    // A thread outside the runtime: the database drivers start runtimes of their own.
    std::thread::spawn(move || {
        let tokens = zylker_portal::tokens::open_store(&spec).expect("the store");
        for token in tokens.get_tokens().expect("tokens") {
            let id = token.id.as_deref().expect("an id");
            let access = token
                .access_token
                .as_ref()
                .map(zylker_portal::secret::Secret::expose_secret)
                .expect("an access token");
            assert!(
                tokens
                    .compare_and_set_access_token(id, Some(access), access, 1)
                    .expect("expire")
            );
        }
    })
    .join()
    .expect("expired");
    let control = reqwest::Client::new();
    let inject = control
        .post(sandbox_url.join("/_sandbox/inject").expect("url"))
        .header("X-Sandbox-Control", "1")
        .json(&json!({"target": "token", "delay_ms": 400, "count": 1}))
        .send()
        .await
        .expect("inject");
    assert!(inject.status().is_success(), "{}", inject.status());
    let refreshes = || async {
        let counters: serde_json::Value =
            reqwest::get(sandbox_url.join("/_sandbox/counters").expect("url"))
                .await
                .expect("counters")
                .json()
                .await
                .expect("json");
        counters["refreshes"].as_u64().expect("a count")
    };
    let before = refreshes().await;

    let pages = (0..300).map(|n| {
        let request = browser.get(portal(n % 3).join("/crm/Leads").expect("url"));
        async move { request.send().await.expect("a page").status() }
    });
    let statuses = join_all(pages).await;
    let not_ok: Vec<_> = statuses.iter().filter(|s| **s != StatusCode::OK).collect();
    assert!(not_ok.is_empty(), "every page is served: {not_ok:?}");
    let made = refreshes().await - before;
    eprintln!(
        "{} pages over three processes: {made} refresh(es) at Zoho",
        statuses.len()
    );
    assert_eq!(made, 1, "one refresh at Zoho for the three processes");

    // Signing out on the second portal ends the sign-in on the others too (within a second: each trusts what it
    // read for 900 ms).
    let copied = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let cookie_header = reqwest::cookie::CookieStore::cookies(jar.as_ref(), &public_url)
        .expect("the session cookie")
        .to_str()
        .expect("text")
        .to_owned();
    let csrf = {
        let page = browser
            .get(portal(1).join("/crm/Leads").expect("url"))
            .send()
            .await
            .expect("page")
            .text()
            .await
            .expect("text");
        let marker = "name=\"csrf_token\" value=\"";
        let start = page.find(marker).expect("a csrf field") + marker.len();
        page[start..start + page[start..].find('"').expect("end")].to_owned()
    };
    let logout = browser
        .post(portal(1).join("/logout").expect("url"))
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .expect("logout");
    assert_eq!(logout.status(), StatusCode::SEE_OTHER);
    let mut refused = false;
    for _ in 0..50 {
        let status = copied
            .get(portal(2).join("/crm/Leads").expect("url"))
            .header(reqwest::header::COOKIE, &cookie_header)
            .send()
            .await
            .expect("page")
            .status();
        if status == StatusCode::UNAUTHORIZED {
            refused = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(refused, "the third portal refuses the signed-out cookie");
    drop(portals);
    drop(sandbox);
    // Dropped off the runtime: the PostgreSQL driver starts a runtime of its own.
    std::thread::spawn(move || drop(database))
        .join()
        .expect("the test database dropped");
}

/// A fresh database of the test's own, made off the runtime (see above).
fn database_of(server: crate::databases::Server) -> Option<crate::databases::TestDatabase> {
    std::thread::spawn(move || crate::databases::TestDatabase::create(server))
        .join()
        .expect("a test database")
}

#[tokio::test]
async fn three_portal_processes_on_one_postgres_database_make_one_refresh_and_share_sign_outs() {
    three_portal_processes_on_one_database(database_of(crate::databases::Server::Postgres)).await;
}

#[tokio::test]
async fn three_portal_processes_on_one_mysql_database_make_one_refresh_and_share_sign_outs() {
    three_portal_processes_on_one_database(database_of(crate::databases::Server::MySql)).await;
}
