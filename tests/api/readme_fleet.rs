//! The README's "Try a fleet on one machine", run as a newcomer pastes it into a shell: the recipe's lines are
//! read out of README.md and run by bash, with free ports and a database name of the test's own put in place of
//! the README's (8080–8083, `zylker_fleet`, the PostgreSQL server of `TEST_POSTGRES_URL`). If the recipe drifts
//! from the code (a renamed flag, a missing step), this test fails.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use url::Url;

use crate::databases::{Server, skipped};
use crate::helpers::PRIYA;
use crate::serve::{free_port, location_of};

/// The heading of the recipe in README.md; its first ```bash block is the recipe.
const RECIPE_HEADING: &str = "### Try a fleet on one machine";

/// How long the recipe's processes may take to start answering (a readiness wait, not a measurement).
const STARTUP_WAIT: Duration = Duration::from_secs(60);

/// The recipe's shell lines, as the README has them.
fn recipe() -> String {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let section = readme
        .split_once(RECIPE_HEADING)
        .expect("README.md has the fleet recipe")
        .1;
    let block = section
        .split_once("```bash\n")
        .expect("the recipe's bash block")
        .1;
    block
        .split_once("```")
        .expect("the block's end")
        .0
        .to_owned()
}

/// Kills every process the recipe started (they share the process group of the bash that ran it).
struct ProcessGroup(u32);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0)])
            .status();
    }
}

/// The database the recipe creates, dropped when the test ends.
struct RecipeDatabase(String);

impl Drop for RecipeDatabase {
    fn drop(&mut self) {
        let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.0);
        let _ = std::thread::spawn(move || Server::Postgres.admin(&[drop])).join();
    }
}

/// Polls `url` until it answers 200, failing with the recipe's output when it never does.
async fn wait_until_ready(url: &Url, output: &Path) {
    let client = reqwest::Client::new();
    let started = Instant::now();
    loop {
        if let Ok(response) = client.get(url.clone()).send().await
            && response.status() == StatusCode::OK
        {
            return;
        }
        assert!(
            started.elapsed() < STARTUP_WAIT,
            "{url} never answered; the recipe's output:\n{}",
            std::fs::read_to_string(output).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn readme_fleet_recipe_runs_as_written() {
    if skipped() {
        return;
    }
    // The README's values, and the test's own in their place.
    let admin = Server::Postgres.admin_url();
    let server = admin
        .rsplit_once('/')
        .map(|(server, _)| server.to_owned())
        .expect("TEST_POSTGRES_URL ends with /DATABASE");
    let database = RecipeDatabase(format!("zp_recipe_{}_{}", std::process::id(), free_port()));
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let mut script = recipe()
        .replace("postgres://postgres@127.0.0.1:5432", &server)
        .replace("zylker_fleet", &database.0);
    for (readme_port, port) in [8081, 8080, 8082, 8083].iter().zip(&ports) {
        script = script.replace(&format!(":{readme_port}"), &format!(":{port}"));
    }
    assert!(
        !script.contains(":808"),
        "every port of the recipe is one of 8080–8083:\n{script}"
    );

    // `zylker-portal` on the PATH, as `cargo install --path .` puts it there.
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).expect("bin folder");
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_zylker-portal"),
        bin.join("zylker-portal"),
    )
    .expect("the binary on the PATH");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = dir.path().join("output.txt");
    let log = std::fs::File::create(&output).expect("output file");
    let mut command = Command::new("bash");
    command
        .args(["-e", "-c", &script])
        .current_dir(dir.path())
        .env("PATH", path)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("output"))
        .stderr(log)
        // A group of its own: the recipe's `&` processes stay in it, and the test kills them all at the end.
        .process_group(0);
    for variable in crate::serve::CONFIG_VARIABLES {
        command.env_remove(variable);
    }
    let mut bash = command.spawn().expect("bash runs the recipe");
    let _processes = ProcessGroup(bash.id());
    let status = bash
        .wait()
        .expect("the recipe ends once its servers are started");
    assert!(
        status.success(),
        "the recipe failed ({status}):\n{}",
        std::fs::read_to_string(&output).unwrap_or_default()
    );

    let sandbox = Url::parse(&format!("http://127.0.0.1:{}", ports[0])).expect("url");
    wait_until_ready(&sandbox.join("/_sandbox/counters").expect("url"), &output).await;
    let portals: Vec<Url> = ports[1..]
        .iter()
        .map(|port| Url::parse(&format!("http://localhost:{port}")).expect("url"))
        .collect();
    for portal in &portals {
        wait_until_ready(&portal.join("/healthz").expect("url"), &output).await;
    }

    // Log in at the first portal, as the README says, with one browser for all three.
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    let browser = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let login = browser
        .get(portals[0].join("/login").expect("url"))
        .send()
        .await
        .expect("login");
    let auth_url = location_of(&login);
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

    // Every portal serves the browser its records.
    for portal in &portals {
        let page = browser
            .get(portal.join("/crm/Leads").expect("url"))
            .send()
            .await
            .expect("a page");
        assert_eq!(page.status(), StatusCode::OK, "{portal} serves the records");
    }

    // Signing out on the last portal signs the browser out on the first, as the README promises.
    let page = browser
        .get(portals[2].join("/crm/Leads").expect("url"))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("text");
    let csrf = crate::helpers::csrf_from(&page).expect("a csrf field");
    // A copy of the cookie, as a thief would have it (browsers keep cookies by host, not by port).
    let copied = reqwest::cookie::CookieStore::cookies(jar.as_ref(), &portals[0])
        .expect("the session cookie")
        .to_str()
        .expect("text")
        .to_owned();
    let logout = browser
        .post(portals[2].join("/logout").expect("url"))
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .expect("logout");
    assert_eq!(logout.status(), StatusCode::SEE_OTHER);
    let stranger = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let started = Instant::now();
    loop {
        let status = stranger
            .get(portals[0].join("/crm/Leads").expect("url"))
            .header(reqwest::header::COOKIE, &copied)
            .send()
            .await
            .expect("page")
            .status();
        if status != StatusCode::OK {
            assert!(
                status == StatusCode::SEE_OTHER || status == StatusCode::UNAUTHORIZED,
                "a signed-out cookie is refused, not {status}"
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the first portal never refused the signed-out cookie"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
