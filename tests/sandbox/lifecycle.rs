//! Starting and stopping the sandbox, and the address it gives itself.

use reqwest::StatusCode;
use url::Url;
use zylker_portal::sandbox::SandboxConfig;

use crate::support::*;

#[actix_web::test]
async fn spawn_serves_inside_an_actix_runtime_and_stop_ends_it() {
    let sandbox = Sandbox::start().await;
    let tokens = sandbox.login(PRIYA).await;
    assert_eq!(
        sandbox.crm(&tokens.access, "org").await.status(),
        StatusCode::OK
    );
    let url = sandbox.url("/static/sandbox.css");
    let http = sandbox.http.clone();
    sandbox.running.stop().await;
    assert!(
        http.get(url).send().await.is_err(),
        "nothing listens after stop"
    );
}

#[tokio::test]
async fn the_public_url_is_what_the_sandbox_calls_itself() {
    let public = Url::parse("http://localhost:9999").expect("URL");
    let sandbox = Sandbox::start_with(SandboxConfig {
        public_url: Some(public),
        ..config(true)
    })
    .await;
    assert_eq!(sandbox.running.url().as_str(), "http://localhost:9999/");
    let location = sandbox.decide(PRIYA, ALL_SCOPES, &[], "accept").await;
    let params = query(&location);
    assert_eq!(params["accounts-server"], "http://localhost:9999");
    assert_eq!(
        sandbox.exchange(&params["code"]).await["api_domain"],
        "http://localhost:9999"
    );
}
