//! What the session cookie holds (the token's id and display data, never a token), flash messages, and CSRF.

use std::future::Future;
use std::pin::Pin;

use actix_session::{Session, SessionExt};
use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use base64::Engine;
use rand::RngCore;
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;

use super::AppError;

const USER: &str = "user";
const CSRF: &str = "csrf";
const FLASHES: &str = "flashes";
const PENDING_LOGIN: &str = "pending_login";
const CONSENT_ROUND: &str = "consent_round";

/// The profile whose users may open the administrators' pages.
pub const ADMIN_PROFILE: &str = "Administrator";

/// The signed-in user, as the session holds them: the stored token's id and what the pages show.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SessionUser {
    pub token_id: String,
    pub name: String,
    pub email: String,
    pub profile: Option<String>,
    pub role: Option<String>,
    pub org_name: Option<String>,
    pub org_id: String,
    /// The modules the navigation lists (`settings/modules` with `api_supported`), refreshed on the landing page.
    #[serde(default)]
    pub modules: Vec<NavModule>,
}

impl SessionUser {
    pub fn is_admin(&self) -> bool {
        self.profile.as_deref() == Some(ADMIN_PROFILE)
    }
}

/// One entry of the module navigation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NavModule {
    pub api_name: String,
    pub label: String,
}

/// A one-time message shown on the next page.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Flash {
    pub kind: FlashKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlashKind {
    Success,
    Info,
    Error,
}

impl FlashKind {
    /// The CSS class suffix.
    pub fn css(&self) -> &'static str {
        match self {
            FlashKind::Success => "success",
            FlashKind::Info => "info",
            FlashKind::Error => "error",
        }
    }
}

/// A login on its way through Zoho: the state to expect back (good once) and the PKCE verifier.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct PendingLogin {
    pub state: String,
    pub code_verifier: String,
    /// Whether this round asked with `prompt=consent` (it happens at most once).
    pub consent: bool,
}

/// The signed-in user, if any. A cookie that cannot be read counts as nobody.
pub fn current_user(session: &Session) -> Option<SessionUser> {
    session.get::<SessionUser>(USER).ok().flatten()
}

/// The signed-in user, or the 401 page.
pub fn require_user(session: &Session) -> Result<SessionUser, AppError> {
    current_user(session).ok_or(AppError::NotSignedIn)
}

/// Starts a signed-in session: a new session id (no fixation), the user, a fresh CSRF token.
pub fn sign_in(session: &Session, user: &SessionUser) -> Result<(), AppError> {
    session.renew();
    session.remove(PENDING_LOGIN);
    session.remove(CONSENT_ROUND);
    session.remove(CSRF);
    session.insert(USER, user).map_err(AppError::internal)
}

/// Updates the signed-in user's display data (e.g. the module list).
pub fn update_user(session: &Session, user: &SessionUser) -> Result<(), AppError> {
    session.insert(USER, user).map_err(AppError::internal)
}

/// Ends the signed-in session (the cookie is replaced by an empty one that can still carry a flash).
pub fn sign_out(session: &Session) {
    session.clear();
    session.renew();
}

/// Queues a flash message for the next page.
pub fn flash(session: &Session, kind: FlashKind, message: impl Into<String>) {
    let mut flashes: Vec<Flash> = session.get(FLASHES).ok().flatten().unwrap_or_default();
    flashes.push(Flash {
        kind,
        message: message.into(),
    });
    // A flash that cannot be stored is lost, not an error worth a page.
    let _ = session.insert(FLASHES, flashes);
}

/// Removes `key` only when present: any removal marks the session changed, and a changed session re-encrypts
/// and re-sends its cookie on every page.
fn take<T: DeserializeOwned>(session: &Session, key: &str) -> Option<Result<T, String>> {
    if session.contains_key(key) {
        session.remove_as::<T>(key)
    } else {
        None
    }
}

/// Takes the pending flash messages (they show once).
pub fn take_flashes(session: &Session) -> Vec<Flash> {
    match take::<Vec<Flash>>(session, FLASHES) {
        Some(Ok(flashes)) => flashes,
        _ => Vec::new(),
    }
}

/// 32 random bytes, URL-safe base64: CSRF tokens (256 bits).
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The session's CSRF token, made on first use.
pub fn csrf_token(session: &Session) -> String {
    if let Ok(Some(token)) = session.get::<String>(CSRF) {
        return token;
    }
    let token = random_token();
    let _ = session.insert(CSRF, &token);
    token
}

/// Whether `submitted` is the session's CSRF token, compared in constant time.
fn csrf_matches(session: &Session, submitted: Option<&str>) -> bool {
    let expected = session.get::<String>(CSRF).ok().flatten();
    match (expected, submitted) {
        (Some(expected), Some(submitted)) if !expected.is_empty() => {
            bool::from(expected.as_bytes().ct_eq(submitted.as_bytes()))
        }
        _ => false,
    }
}

/// Keeps a login in flight.
pub fn begin_login(session: &Session, pending: &PendingLogin) -> Result<(), AppError> {
    session
        .insert(PENDING_LOGIN, pending)
        .map_err(AppError::internal)
}

/// Takes the login in flight: a state is good once, whatever happens next.
pub fn take_pending_login(session: &Session) -> Option<PendingLogin> {
    match take::<PendingLogin>(session, PENDING_LOGIN) {
        Some(Ok(pending)) => Some(pending),
        _ => None,
    }
}

/// Marks that the next `/login` asks Zoho with `prompt=consent`.
pub fn request_consent_round(session: &Session) -> Result<(), AppError> {
    session
        .insert(CONSENT_ROUND, true)
        .map_err(AppError::internal)
}

/// Whether this `/login` is the consent round (taken: it happens once).
pub fn take_consent_round(session: &Session) -> bool {
    matches!(take::<bool>(session, CONSENT_ROUND), Some(Ok(true)))
}

/// A form body whose `csrf_token` field was checked against the session: extracting it is the CSRF check,
/// so a handler cannot forget it. A POST without the token or with a wrong one gets the 403 page.
pub struct CsrfForm<T>(pub T);

#[derive(serde::Deserialize)]
struct CsrfField {
    csrf_token: Option<String>,
}

impl<T: DeserializeOwned + 'static> FromRequest for CsrfForm<T> {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let session = req.get_session();
        let body = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            let body = body.await.map_err(|_| AppError::Csrf)?;
            let field: CsrfField =
                serde_urlencoded::from_bytes(&body).map_err(|_| AppError::Csrf)?;
            if !csrf_matches(&session, field.csrf_token.as_deref()) {
                return Err(AppError::Csrf.into());
            }
            let form: T = serde_urlencoded::from_bytes(&body).map_err(|err| {
                AppError::BadRequest(format!("The form could not be read: {err}"))
            })?;
            Ok(CsrfForm(form))
        })
    }
}
