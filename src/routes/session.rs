//! What the session cookie holds (the token's id and display data, never a token), flash messages, and CSRF.

use std::future::Future;
use std::pin::Pin;

use super::cookie_session::{Session, SessionExt};
use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use serde::de::DeserializeOwned;

use super::return_path::MAX_RETURN_PATH_BYTES;
use super::{AppError, Layout};
use crate::secret::Secret;
use crate::state::PortalState;
use crate::tokens::manager::{TokenOwner, user_name_of};
use crate::tokens::{PendingLogin, PendingLoginFound, SignIns, StoreError};
use crate::user_crm::UserCrm;
use crate::zoho::CrmClient;

/// The session cookie's name over plain http. Behind https it is never read (see [`SECURE_SESSION_COOKIE`]).
pub const SESSION_COOKIE: &str = "zylker_session";

/// The session cookie's name behind an https public URL. Browsers keep a `__Host-` cookie only when it is
/// `Secure`, has `Path=/` and no `Domain`, so no other site or subdomain can plant or overwrite it.
/// A cookie of the plain name is ignored there, whatever it holds: another subdomain could have planted it
/// (a login CSRF), and one from before the move cannot be read anyway, since the name is bound into the
/// cookie's encryption. Moving to https signs people out once.
pub const SECURE_SESSION_COOKIE: &str = "__Host-zylker_session";

/// The session cookie's name for a portal reached at https (`secure`) or at plain http.
pub fn session_cookie_name(secure: bool) -> &'static str {
    if secure {
        SECURE_SESSION_COOKIE
    } else {
        SESSION_COOKIE
    }
}

/// How long one sign-in lasts, at most (the stored token outlives it: logging in again is one click).
pub const SESSION_TTL_DAYS: i64 = 14;

const USER: &str = "user";
const CSRF: &str = "csrf";
const FLASHES: &str = "flashes";
/// The logins in flight started in this browser, newest last (see [`begin_login`]).
const PENDING_LOGINS: &str = "pending_logins";
/// Where earlier versions kept the id of a login in flight recorded on the server; dropped when seen.
const PENDING_LOGIN_OF_EARLIER_VERSIONS: &str = "pending_login";
/// How many logins in flight a browser keeps at once: a login started in a second tab does not break the
/// first; a fourth drops the oldest, whose callback then asks to start again.
pub const MAX_PENDING_LOGINS: usize = 3;
const CONSENT_ROUND: &str = "consent_round";
/// The sign-in record's key; "grant" since the first cookies carried it, kept so that no one is signed out.
const SIGN_IN: &str = "grant";

/// The profile whose users may open the administrators' pages.
pub const ADMIN_PROFILE: &str = "Administrator";

/// The signed-in user, as the session holds them: the stored token's id and what the pages show.
///
/// The cookie is encrypted, but it lives up to 14 days: the profile here is for display only; the
/// administrators' pages confirm it with Zoho (see `routes::admin`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SessionUser {
    /// The store's id of the user's token; only ever used together with `email:org_id` (see [`Self::owner`]).
    pub token_id: String,
    /// The CRM user's full name (or email when Zoho has none), shown in the header.
    pub name: String,
    /// The CRM user's email: with `org_id`, the stored token's `user_name`.
    pub email: String,
    /// The CRM profile's name at login (e.g. `Administrator`).
    pub profile: Option<String>,
    /// The CRM role's name at login.
    pub role: Option<String>,
    /// The CRM organization's company name.
    pub org_name: Option<String>,
    /// The CRM organization's id: with `email`, the stored token's `user_name`.
    pub org_id: String,
}

impl SessionUser {
    /// Whether the profile at login was Administrator: shows the admin link; access is re-checked with Zoho.
    pub fn is_admin(&self) -> bool {
        self.profile.as_deref() == Some(ADMIN_PROFILE)
    }

    /// The token this session may use: its id, bound to `email:org_id` so a reused id never reaches another
    /// user's token.
    pub fn owner(&self) -> TokenOwner {
        TokenOwner {
            token_id: self.token_id.clone(),
            user_name: user_name_of(&self.email, &self.org_id),
        }
    }
}

/// A one-time message shown on the next page.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Flash {
    pub kind: FlashKind,
    pub message: String,
}

/// How a flash message is styled: a success, a neutral note, or an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlashKind {
    /// Something the user asked for was done.
    Success,
    /// A neutral note (signed out, …).
    Info,
    /// Something failed.
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

/// What the cookie holds of its sign-in: the random id of the sign-in's record on the server (see [`SignIns`])
/// and when it happened. The cookie is good while that record is there and within the session lifetime.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct SignIn {
    id: String,
    signed_in_at: i64,
}

impl SignIn {
    fn new() -> SignIn {
        SignIn {
            id: crate::secret::random_token(),
            signed_in_at: now_secs(),
        }
    }

    fn expires_at(&self) -> i64 {
        self.signed_in_at
            .saturating_add(SESSION_TTL_DAYS.saturating_mul(24 * 60 * 60))
    }
}

/// Whether the session holds a sign-in that is over: ended (signed out, disconnected, its token deleted, replaced
/// by another login in the same browser, on this portal or any other on the store), past the session lifetime,
/// recorded for another token than the cookie's user names, or a user without a sign-in record. [`sign_in_gate`](super::middleware::sign_in_gate) clears such a session before any handler
/// runs, so the handlers' [`current_user`] only has to read the user.
pub(super) async fn check_sign_in(
    session: &Session,
    sign_ins: &SignIns,
) -> Result<SignInCheck, StoreError> {
    match session.get::<SignIn>(SIGN_IN) {
        Ok(Some(sign_in)) => {
            let now = now_secs();
            if now >= sign_in.expires_at() {
                return Ok(SignInCheck::Lapsed);
            }
            let Some(user) = current_user(session) else {
                // A sign-in without its user opens nothing; clearing the cookie costs nothing either.
                return Ok(SignInCheck::Lapsed);
            };
            let owner = user.owner();
            let live = sign_ins
                .is_live(&sign_in.id, &owner.user_name, &owner.token_id, now)
                .await?;
            Ok(if live {
                SignInCheck::Live(Box::new(CheckedUser { user, owner }))
            } else {
                SignInCheck::Lapsed
            })
        }
        Ok(None) if session.contains_key(USER) => Ok(SignInCheck::Lapsed),
        Ok(None) => Ok(SignInCheck::Nobody),
        Err(_) => Ok(SignInCheck::Lapsed),
    }
}

/// What [`check_sign_in`] found.
pub(super) enum SignInCheck {
    /// The session holds a sign-in that is over (see [`check_sign_in`]): it is cleared.
    Lapsed,
    /// A live sign-in, and its user as the cookie holds them.
    Live(Box<CheckedUser>),
    /// Nobody is signed in.
    Nobody,
}

/// The user of a live sign-in, read from the cookie once by the sign-in gate and handed to [`SignedIn`] in the
/// request's extensions, so a page decodes its user once.
pub(super) struct CheckedUser {
    user: SessionUser,
    owner: TokenOwner,
}

fn now_secs() -> i64 {
    crate::tokens::now_millis() / 1000
}

/// The signed-in user, if any. A cookie that cannot be read counts as nobody; one whose sign-in has ended or
/// expired never gets here (see [`check_sign_in`]).
pub fn current_user(session: &Session) -> Option<SessionUser> {
    session.get::<SessionUser>(USER).ok().flatten()
}

/// Marks a request whose sign-in ended because its token is gone (see
/// [`sign_in_gate`](super::middleware::sign_in_gate)): a signed-in page says "your session has ended" then.
#[derive(Debug, Clone, Copy)]
pub struct TokenGone;

/// The signed-in user, as a handler takes them: extracting one is the "is anyone signed in?" check, answered
/// for a visitor before the handler runs (a GET is then sent to the sign-in page, a POST gets the "please log
/// in" page: see [`middleware::error_pages`](super::middleware::error_pages)).
///
/// It carries what a signed-in page needs besides: the session, the portal's state and the serving worker's
/// CRM client, so that [`SignedIn::crm`] calls Zoho as this user and [`SignedIn::layout`] builds the page's
/// header once.
pub struct SignedIn {
    pub user: SessionUser,
    /// The token this session may use (see [`SessionUser::owner`]).
    pub owner: TokenOwner,
    pub session: Session,
    pub state: web::Data<PortalState>,
    client: web::Data<CrmClient>,
}

impl SignedIn {
    /// Zoho CRM as this user sees it.
    pub fn crm(&self) -> UserCrm<'_> {
        self.state.crm_for(&self.client, &self.owner)
    }

    /// The layout of this user's page titled `title`, with their module navigation: as kept, or listed at Zoho
    /// now when none is (see [`navigation`](super::landing::navigation)).
    pub async fn layout(&self, title: impl Into<String>) -> Layout {
        let navigation = super::landing::navigation(&self.state, self.crm()).await;
        Layout::with_user(&self.session, Some(self.user.clone()), navigation, title)
    }
}

impl FromRequest for SignedIn {
    type Error = AppError;
    type Future = std::future::Ready<Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let session = req.get_session();
        // As the sign-in gate read it; the cookie itself only where no gate ran.
        let checked = req
            .extensions_mut()
            .remove::<Box<CheckedUser>>()
            .map(|checked| *checked)
            .or_else(|| {
                current_user(&session).map(|user| CheckedUser {
                    owner: user.owner(),
                    user,
                })
            });
        let parts = (
            checked,
            req.app_data::<web::Data<PortalState>>().cloned(),
            req.app_data::<web::Data<CrmClient>>().cloned(),
        );
        std::future::ready(match parts {
            (None, _, _) if req.extensions().contains::<TokenGone>() => Err(AppError::SessionEnded),
            (None, _, _) => Err(AppError::NotSignedIn),
            (Some(CheckedUser { user, owner }), Some(state), Some(client)) => Ok(SignedIn {
                owner,
                user,
                session,
                state,
                client,
            }),
            (Some(_), _, _) => Err(AppError::internal("the portal's state is not registered")),
        })
    }
}

/// Starts a signed-in session: the sign-in recorded on the server for the user's token, a new session id (no
/// fixation), the user, a fresh CSRF token. Logins still in flight in other tabs of the browser stay. A sign-in this browser held before (another user, or the same one) ends: a copy of the old
/// cookie opens nothing. The token is made here rather than on the first page, so that the cookie the browser
/// gets now is the one it keeps sending (a changed session re-encrypts and re-sends its cookie).
pub async fn sign_in(
    session: &Session,
    sign_ins: &SignIns,
    user: &SessionUser,
) -> Result<(), AppError> {
    if let Ok(Some(replaced)) = session.get::<SignIn>(SIGN_IN) {
        sign_ins.end(&replaced.id).await?;
    }
    let sign_in = SignIn::new();
    let owner = user.owner();
    sign_ins
        .begin(
            &sign_in.id,
            &owner.user_name,
            &owner.token_id,
            sign_in.expires_at(),
            now_secs(),
        )
        .await?;
    session.renew();
    session.remove(CONSENT_ROUND);
    session
        .insert(CSRF, crate::secret::random_token())
        .map_err(AppError::internal)?;
    session
        .insert(SIGN_IN, sign_in)
        .map_err(AppError::internal)?;
    session.insert(USER, user).map_err(AppError::internal)
}

/// Ends the signed-in session: the cookie is replaced by an empty one that can still carry a flash, and the
/// sign-in's record is deleted, so that every portal on the store refuses a copy of the cookie. The cookie goes
/// even when the record cannot be deleted; the error then says so.
pub async fn sign_out(session: &Session, sign_ins: &SignIns) -> Result<(), StoreError> {
    let sign_in = session.get::<SignIn>(SIGN_IN).ok().flatten();
    session.clear();
    session.renew();
    match sign_in {
        Some(sign_in) => sign_ins.end(&sign_in.id).await,
        None => Ok(()),
    }
}

/// Ends every sign-in made with `owner`'s token, on every portal on the store (each refuses them within its
/// recheck interval, this one at once): for when the token has been deleted.
pub async fn end_sign_ins_of_token(
    sign_ins: &SignIns,
    owner: &TokenOwner,
) -> Result<(), StoreError> {
    let ended = sign_ins
        .end_all_of(&owner.user_name, Some(&owner.token_id))
        .await?;
    if ended > 0 {
        tracing::info!(token_id = %owner.token_id, ended, "ended the sign-ins of a deleted token");
    }
    Ok(())
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

/// The session's CSRF token, made on first use.
pub fn csrf_token(session: &Session) -> Secret {
    if let Ok(Some(token)) = session.get::<Secret>(CSRF) {
        return token;
    }
    // The same 256-bit random token the OAuth state uses: one generator for both.
    let token = Secret::random();
    let _ = session.insert(CSRF, &token);
    token
}

/// Whether `submitted` is the session's CSRF token, compared in constant time.
fn csrf_matches(session: &Session, submitted: Option<&Secret>) -> bool {
    let expected = session.get::<Secret>(CSRF).ok().flatten();
    match (expected, submitted) {
        // `Secret`'s equality takes the same time whatever the guess.
        (Some(expected), Some(submitted)) if !expected.is_empty() => expected == *submitted,
        _ => false,
    }
}

/// Keeps a login in flight in the encrypted cookie, good for `lifetime`: nothing is written on the server until
/// its callback comes. Up to [`MAX_PENDING_LOGINS`] are kept (the newest), so that logins started in several
/// tabs each complete; expired ones are dropped here.
pub fn begin_login(
    session: &Session,
    mut pending: PendingLogin,
    lifetime: std::time::Duration,
) -> Result<(), AppError> {
    let now = now_secs();
    pending.expires_at = now.saturating_add(i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX));
    let _ = take::<String>(session, PENDING_LOGIN_OF_EARLIER_VERSIONS);
    let mut logins = pending_logins(session);
    logins.retain(|login| now < login.expires_at);
    logins.push(pending);
    let crowded_out = logins.len().saturating_sub(MAX_PENDING_LOGINS);
    logins.drain(..crowded_out);
    fit_return_paths(&mut logins);
    session
        .insert(PENDING_LOGINS, logins)
        .map_err(AppError::internal)
}

/// How many bytes of return paths the logins in flight keep together: the cookie then stays within a browser's
/// 4 KB however many logins are in flight, each with the longest path.
const RETURN_PATHS_BUDGET: usize = MAX_RETURN_PATH_BYTES;

/// Drops the return paths of older logins in flight (they then land on the start page) where the paths would
/// add up to more than [`RETURN_PATHS_BUDGET`]; the newest always keeps its own.
fn fit_return_paths(logins: &mut [PendingLogin]) {
    let mut kept = 0;
    for login in logins.iter_mut().rev() {
        let bytes = login.next.as_ref().map_or(0, String::len);
        if kept + bytes > RETURN_PATHS_BUDGET {
            login.next = None;
        } else {
            kept += bytes;
        }
    }
}

/// The logins in flight the cookie holds; none when it holds none, or holds something unreadable.
fn pending_logins(session: &Session) -> Vec<PendingLogin> {
    session
        .get::<Vec<PendingLogin>>(PENDING_LOGINS)
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Takes the login in flight whose state the callback carries out of the cookie (the others stay, for other
/// tabs; expired ones go), and consumes it on the server, so that its state is good once on every portal on the
/// store: a replayed callback (a copy of the cookie from before the callback, with the same state) is
/// [`PendingLoginFound::None`]. One older than its lifetime is [`PendingLoginFound::Expired`]: a state and
/// verifier do not stay usable for ever.
pub async fn take_pending_login(
    session: &Session,
    sign_ins: &SignIns,
    given_state: Option<&Secret>,
) -> Result<PendingLoginFound, AppError> {
    let _ = take::<String>(session, PENDING_LOGIN_OF_EARLIER_VERSIONS);
    let mut logins = pending_logins(session);
    if logins.is_empty() {
        return Ok(PendingLoginFound::None);
    }
    let now = now_secs();
    let Some(given_state) = given_state else {
        return Ok(PendingLoginFound::NoState);
    };
    // `Secret`'s equality takes the same time whatever the guess; every entry is compared.
    let matching = logins
        .iter()
        .enumerate()
        .filter(|(_, login)| login.state == *given_state)
        .map(|(at, _)| at)
        .next_back();
    let taken = matching.map(|at| logins.remove(at));
    logins.retain(|login| now < login.expires_at);
    if logins.is_empty() {
        session.remove(PENDING_LOGINS);
    } else {
        session
            .insert(PENDING_LOGINS, &logins)
            .map_err(AppError::internal)?;
    }
    let Some(login) = taken else {
        return Ok(PendingLoginFound::NotThisBrowsers);
    };
    if now >= login.expires_at {
        return Ok(PendingLoginFound::Expired);
    }
    if !sign_ins.consume_login(&login, now).await? {
        tracing::warn!("a callback whose login was used already (a replay); refused");
        return Ok(PendingLoginFound::None);
    }
    Ok(PendingLoginFound::Pending(login))
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
    csrf_token: Option<Secret>,
}

impl<T: DeserializeOwned + 'static> FromRequest for CsrfForm<T> {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let session = req.get_session();
        // Every portal form is urlencoded; anything else is refused before the body is read.
        if !req
            .content_type()
            .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        {
            return Box::pin(async {
                Err(actix_web::error::ErrorUnsupportedMediaType(
                    "forms must be application/x-www-form-urlencoded",
                ))
            });
        }
        // The body limit is the app's `PayloadConfig` (see `extractor_configs::payload`): an oversized body
        // is the payload error's 413, rendered as the friendly page by `middleware::error_pages`.
        let body = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            let body = body.await.map_err(|error| {
                if super::middleware::is_body_timeout(&error) {
                    AppError::BodyTimeout.into()
                } else {
                    error
                }
            })?;
            let field: CsrfField =
                serde_urlencoded::from_bytes(&body).map_err(|_| AppError::Csrf)?;
            if !csrf_matches(&session, field.csrf_token.as_ref()) {
                return Err(AppError::Csrf.into());
            }
            let form: T = serde_urlencoded::from_bytes(&body).map_err(|err| {
                AppError::BadRequest(format!("The form could not be read: {err}"))
            })?;
            Ok(CsrfForm(form))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use actix_web::cookie::{Cookie, CookieJar, Key};

    use super::super::return_path::ReturnPath;
    use super::*;

    #[test]
    fn older_logins_in_flight_give_up_their_return_paths_first() {
        let login = |next: String| PendingLogin {
            state: Secret::random(),
            code_verifier: Secret::random(),
            consent: false,
            expires_at: i64::MAX,
            next: Some(next),
        };
        // Oldest first: 600, 200 and 800 bytes; the newest two fit in the budget together.
        let mut logins = vec![
            login("/a".repeat(300)),
            login("/b".repeat(100)),
            login("/c".repeat(400)),
        ];

        fit_return_paths(&mut logins);

        assert_eq!(logins[0].next, None, "the oldest lands on the start page");
        assert_eq!(logins[1].next.as_deref().map(str::len), Some(200));
        assert_eq!(logins[2].next.as_deref().map(str::len), Some(800));
    }

    #[test]
    fn the_largest_session_still_fits_in_a_cookie() {
        // A signed-in session with long names, a welcome flash, and as many logins in flight as a browser keeps
        // (started in other tabs). The module navigation is kept in the portal,
        // not in the cookie.
        let long = "n".repeat(64);
        let user = SessionUser {
            token_id: "12345678901234567890".into(),
            name: long.clone(),
            email: format!("{long}@example.com"),
            profile: Some("Administrator".into()),
            role: Some(long.clone()),
            org_name: Some(long.clone()),
            org_id: "60032191920".into(),
        };
        // Each started from a deep link as long as is kept; the cookie keeps one such path's worth.
        let longest_path = format!("/crm/Leads?q={}", "%7E".repeat(MAX_RETURN_PATH_BYTES / 3));
        let longest_path = &longest_path[..MAX_RETURN_PATH_BYTES];
        assert!(ReturnPath::parse(longest_path).is_some());
        let mut pending: Vec<PendingLogin> = (0..MAX_PENDING_LOGINS)
            .map(|_| {
                let (code_verifier, _) = crate::zoho::accounts::new_pkce_pair();
                PendingLogin {
                    state: Secret::random(),
                    code_verifier,
                    consent: true,
                    expires_at: i64::MAX,
                    next: Some(longest_path.to_owned()),
                }
            })
            .collect();
        fit_return_paths(&mut pending);
        assert!(pending.last().is_some_and(|newest| newest.next.is_some()));
        let flashes = vec![Flash {
            kind: FlashKind::Success,
            message: format!("Welcome, {long}. You are signed in with Zoho."),
        }];
        // The session cookie (`cookie_session`): a map of key to JSON text, itself JSON, then encrypted (private).
        let state: HashMap<&str, String> = HashMap::from([
            (USER, serde_json::to_string(&user).unwrap()),
            (CSRF, serde_json::to_string(&"x".repeat(43)).unwrap()),
            (SIGN_IN, serde_json::to_string(&SignIn::new()).unwrap()),
            (FLASHES, serde_json::to_string(&flashes).unwrap()),
            (PENDING_LOGINS, serde_json::to_string(&pending).unwrap()),
        ]);
        let mut jar = CookieJar::new();
        jar.private_mut(&Key::generate()).add(Cookie::new(
            SESSION_COOKIE,
            serde_json::to_string(&state).unwrap(),
        ));
        let cookie = jar.get(SESSION_COOKIE).unwrap();
        let with_attributes = format!(
            "{}; HttpOnly; SameSite=Lax; Secure; Path=/; Max-Age=1209600; Expires=Sun, 06 Dec 2026 06:00:00 GMT",
            cookie.encoded()
        );
        assert!(
            with_attributes.len() < 4096,
            "the session cookie is {} bytes",
            with_attributes.len()
        );
    }
}
