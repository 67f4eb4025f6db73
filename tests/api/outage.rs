//! The token store going away under a running portal (a database restart): 503 pages inside the layout, then
//! normal service again without a restart.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use reqwest::StatusCode;
use zylker_portal::tokens::{ListStore, OAuthToken, StoreError, TokenStore};

use crate::helpers::{PRIYA, StoreChoice, TestApp, TestAppOptions};

/// A `ListStore` that can be switched off: while it is, every call fails as a database that went away does.
#[derive(Default)]
struct FlakyStore {
    inner: ListStore,
    down: AtomicBool,
}

impl FlakyStore {
    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::backend(
                "the database is restarting",
                std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
            ));
        }
        Ok(())
    }
}

impl TokenStore for FlakyStore {
    fn find_token(&self, token: &OAuthToken) -> Result<Option<OAuthToken>, StoreError> {
        self.check()?;
        self.inner.find_token(token)
    }
    fn save_token(&self, token: &mut OAuthToken) -> Result<(), StoreError> {
        self.check()?;
        self.inner.save_token(token)
    }
    fn delete_token(&self, id: &str) -> Result<(), StoreError> {
        self.check()?;
        self.inner.delete_token(id)
    }
    fn get_tokens(&self) -> Result<Vec<OAuthToken>, StoreError> {
        self.check()?;
        self.inner.get_tokens()
    }
    fn delete_tokens(&self) -> Result<(), StoreError> {
        self.check()?;
        self.inner.delete_tokens()
    }
    fn find_token_by_id(&self, id: &str) -> Result<Option<OAuthToken>, StoreError> {
        self.check()?;
        self.inner.find_token_by_id(id)
    }
}

#[tokio::test]
async fn a_store_outage_gives_503_pages_in_the_layout_and_service_comes_back_by_itself() {
    let store = Arc::new(FlakyStore::default());
    let app = TestApp::spawn_with(TestAppOptions {
        store: StoreChoice::Given(store.clone()),
        ..TestAppOptions::default()
    })
    .await;
    app.login_as(PRIYA).await;

    store.down.store(true, Ordering::SeqCst);
    let response = app.get("/crm/Leads").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        response
            .headers()
            .contains_key(reqwest::header::RETRY_AFTER),
        "asks to come back"
    );
    let page = response.text().await.expect("a page");
    assert!(page.contains("token store is unavailable"), "{page}");
    assert!(page.contains("Priya Raman"), "inside the signed-in layout");

    store.down.store(false, Ordering::SeqCst);
    let response = app.get("/crm/Leads").await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "served again, same session"
    );
}
