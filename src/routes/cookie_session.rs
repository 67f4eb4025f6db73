//! The session cookie: what a browser's session holds, encrypted and authenticated in the cookie itself, and
//! decrypted once per worker rather than once per page.
//!
//! The cookie's format is the one actix-session's cookie store writes (which the portal used before): a JSON
//! map of key to JSON text, in a private (AES-GCM, the cookie's name bound in) cookie of `actix_web::cookie`.
//! Cookies from earlier versions therefore still read, and nobody is signed out by an upgrade.
//!
//! A page of a signed-in user carries the same cookie many times over. Each worker keeps the states of the
//! cookies it has read, keyed by the cookie's exact text: a cookie seen before is not decrypted again. Only a
//! cookie that decrypted with the portal's key (or that this worker wrote) gets an entry, so no altered or
//! foreign cookie can ever match one; the cache is bounded and starts over when full.
//!
//! [`Session`] has the API of actix-session's: values are JSON, a change re-encrypts and re-sends the cookie
//! when the response goes out, [`Session::renew`] re-sends it even unchanged, [`Session::purge`] removes it.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::rc::Rc;

use actix_web::body::MessageBody;
use actix_web::cookie::{Cookie, CookieJar, Key, SameSite, time::Duration};
use actix_web::dev::{
    Extensions, Payload, Service, ServiceRequest, ServiceResponse, Transform, forward_ready,
};
use actix_web::http::header::{self, HeaderValue};
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The session's state: each key's value as JSON text (what the cookie holds), and the values already read as
/// their types.
///
/// A worker's cached state is read by every page of its session, each reading the same few values (the user, the
/// sign-in, the CSRF token): each is parsed from its JSON once per state and handed out as a copy after that. A
/// changed state is a new one (copied from the cache's on its first change), with nothing read yet.
#[derive(Default)]
struct State {
    values: HashMap<String, String>,
    read: RefCell<Vec<(String, Rc<dyn Any>)>>,
}

impl Clone for State {
    fn clone(&self) -> State {
        State {
            values: self.values.clone(),
            read: RefCell::default(),
        }
    }
}

impl State {
    /// The value at `key` as a `T`: as read before, or parsed from its JSON now (and kept).
    fn get<T: DeserializeOwned + Clone + 'static>(
        &self,
        key: &str,
    ) -> Result<Option<T>, serde_json::Error> {
        let Some(json) = self.values.get(key) else {
            return Ok(None);
        };
        let read = self
            .read
            .borrow()
            .iter()
            .find(|(read_key, _)| read_key == key)
            .and_then(|(_, value)| value.downcast_ref::<T>().cloned());
        if let Some(value) = read {
            return Ok(Some(value));
        }
        let value: T = serde_json::from_str(json)?;
        let mut read = self.read.borrow_mut();
        // A key read as another type before (no caller does) keeps its first reading's place.
        if read.len() < MAX_READ_VALUES && !read.iter().any(|(read_key, _)| read_key == key) {
            read.push((key.to_owned(), Rc::new(value.clone())));
        }
        Ok(Some(value))
    }
}

/// Values a state keeps read (a session holds a handful).
const MAX_READ_VALUES: usize = 8;

/// The largest state a cookie carries, as JSON (the limit actix-session kept): with its encryption, name and
/// attributes it stays under the 4,096 bytes a browser keeps of a cookie.
const MAX_STATE_BYTES: usize = 4064;

/// Cookies a worker remembers the state of; past this it forgets them all and starts over (a bound on memory,
/// not a tuning knob: a worker sees this many live sessions only under a crowd).
const CACHE_ENTRIES: usize = 1024;

/// What happened to a session during its request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SessionStatus {
    /// Nothing changed: no cookie is sent.
    #[default]
    Unchanged,
    /// A value was inserted or removed: the cookie is sent again.
    Changed,
    /// The cookie is sent again, changed or not (after a sign-in or a sign-out).
    Renewed,
    /// The cookie is removed; later changes are ignored.
    Purged,
}

struct SessionInner {
    /// Shared with the worker's cache until the first change.
    state: Rc<State>,
    status: SessionStatus,
}

/// A browser's session, as a handler or a middleware sees it. Cheap to clone: every clone is the same session.
#[derive(Clone)]
pub struct Session(Rc<RefCell<SessionInner>>);

impl Session {
    fn with_state(state: Rc<State>) -> Session {
        Session(Rc::new(RefCell::new(SessionInner {
            state,
            status: SessionStatus::Unchanged,
        })))
    }

    /// The value at `key`, if any; an error when it is not a `T`.
    pub fn get<T: DeserializeOwned + Clone + 'static>(
        &self,
        key: &str,
    ) -> Result<Option<T>, serde_json::Error> {
        self.0.borrow().state.get(key)
    }

    /// Whether the session holds `key`.
    pub fn contains_key(&self, key: &str) -> bool {
        self.0.borrow().state.values.contains_key(key)
    }

    /// Sets `key` to `value` (ignored once the session is purged).
    pub fn insert<T: Serialize>(
        &self,
        key: impl Into<String>,
        value: T,
    ) -> Result<(), serde_json::Error> {
        let json = serde_json::to_string(&value)?;
        self.change(|state| {
            state.values.insert(key.into(), json);
        });
        Ok(())
    }

    /// Removes `key`, giving its JSON text (nothing once the session is purged).
    pub fn remove(&self, key: &str) -> Option<String> {
        let mut removed = None;
        self.change(|state| removed = state.values.remove(key));
        removed
    }

    /// Removes `key`, giving its value, or its JSON text when that is not a `T`.
    pub fn remove_as<T: DeserializeOwned>(&self, key: &str) -> Option<Result<T, String>> {
        self.remove(key)
            .map(|json| serde_json::from_str(&json).map_err(|_| json))
    }

    /// Removes every value (the cookie stays, empty).
    pub fn clear(&self) {
        self.change(|state| state.values.clear());
    }

    /// Removes the cookie from the browser; later changes in this request are ignored.
    pub fn purge(&self) {
        let mut inner = self.0.borrow_mut();
        inner.status = SessionStatus::Purged;
        inner.state = Rc::default();
    }

    /// Sends the cookie again when the response goes out, changed or not.
    pub fn renew(&self) {
        let mut inner = self.0.borrow_mut();
        if inner.status != SessionStatus::Purged {
            inner.status = SessionStatus::Renewed;
        }
    }

    /// What happened to the session so far.
    pub fn status(&self) -> SessionStatus {
        self.0.borrow().status
    }

    /// Applies a change to the state (copied out of the cache first, the one time it is changed).
    fn change(&self, change: impl FnOnce(&mut State)) {
        let mut inner = self.0.borrow_mut();
        if inner.status == SessionStatus::Purged {
            return;
        }
        if inner.status != SessionStatus::Renewed {
            inner.status = SessionStatus::Changed;
        }
        let state = Rc::make_mut(&mut inner.state);
        // What was read of the state before is no longer its values.
        state.read.get_mut().clear();
        change(state);
    }

    fn of(extensions: &mut Extensions) -> Session {
        if let Some(session) = extensions.get::<Session>() {
            return session.clone();
        }
        let session = Session::with_state(Rc::default());
        extensions.insert(session.clone());
        session
    }
}

/// The request's session, from anything that carries the request: a fresh empty one where no
/// [`SessionCookie`] middleware ran.
pub trait SessionExt {
    fn get_session(&self) -> Session;
}

impl SessionExt for HttpRequest {
    fn get_session(&self) -> Session {
        Session::of(&mut self.extensions_mut())
    }
}

impl SessionExt for ServiceRequest {
    fn get_session(&self) -> Session {
        Session::of(&mut self.extensions_mut())
    }
}

impl<B> SessionExt for ServiceResponse<B> {
    fn get_session(&self) -> Session {
        Session::of(&mut self.request().extensions_mut())
    }
}

impl FromRequest for Session {
    type Error = actix_web::Error;
    type Future = Ready<Result<Session, actix_web::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(req.get_session()))
    }
}

/// The session middleware: reads the cookie `name` into the request's [`Session`], and writes it back when the
/// session changed. One per worker (`HttpServer::new`'s factory makes one each), each with its own cache.
#[derive(Clone)]
pub struct SessionCookie {
    /// The cookie's name, bound into its encryption.
    pub name: &'static str,
    /// The key the cookie is encrypted with.
    pub key: Key,
    /// Whether the cookie is `Secure` (the portal is reached at https).
    pub secure: bool,
    /// How long a browser keeps the cookie.
    pub max_age: Duration,
}

impl<S, B> Transform<S, ServiceRequest> for SessionCookie
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Transform = SessionCookieMiddleware<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(SessionCookieMiddleware {
            service: Rc::new(service),
            codec: Rc::new(CookieCodec {
                config: self.clone(),
                cache: RefCell::default(),
            }),
        }))
    }
}

/// [`SessionCookie`] on one worker.
pub struct SessionCookieMiddleware<S> {
    service: Rc<S>,
    codec: Rc<CookieCodec>,
}

impl<S, B> Service<ServiceRequest> for SessionCookieMiddleware<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<ServiceResponse<B>, actix_web::Error>>>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let codec = Rc::clone(&self.codec);
        let service = Rc::clone(&self.service);
        Box::pin(async move {
            let sent = codec.read(&req);
            let had_cookie = sent.is_some();
            let session = Session::with_state(sent.unwrap_or_default());
            req.extensions_mut().insert(session.clone());
            let mut res = service.call(req).await?;
            codec.write(&mut res, &session, had_cookie)?;
            Ok(res)
        })
    }
}

/// The cookie's configuration and one worker's cache of the states of cookies it has read or written.
struct CookieCodec {
    config: SessionCookie,
    /// Keyed by the cookie's text, some 300 bytes, hashed with foldhash rather than SipHash (a fifth of the
    /// instructions): only cookies that decrypted with the portal's key get in, the hasher is seeded at random
    /// per process, and the cache starts over at [`CACHE_ENTRIES`].
    cache: RefCell<HashMap<Box<str>, Rc<State>, foldhash::fast::RandomState>>,
}

impl CookieCodec {
    /// The state of the request's session cookie: `None` when there is none, or it does not decrypt with the
    /// key, or does not hold a state (then the request has an empty session, as if it had sent none).
    fn read(&self, req: &ServiceRequest) -> Option<Rc<State>> {
        let sent = req
            .headers()
            .get_all(header::COOKIE)
            .find_map(|value| cookie_value(value.as_bytes(), self.config.name))?;
        if let Some(state) = self.cache.borrow().get(sent) {
            return Some(Rc::clone(state));
        }
        let state = Rc::new(self.decrypt(sent)?);
        self.remember(sent, &state);
        Some(state)
    }

    fn decrypt(&self, sent: &str) -> Option<State> {
        let value = percent_encoding::percent_decode_str(sent)
            .decode_utf8()
            .ok()?;
        let mut jar = CookieJar::new();
        jar.add_original(Cookie::new(self.config.name, value.into_owned()));
        let Some(cookie) = jar.private(&self.config.key).get(self.config.name) else {
            tracing::warn!("a session cookie did not decrypt with the portal's key; ignored");
            return None;
        };
        match serde_json::from_str(cookie.value()) {
            Ok(values) => Some(State {
                values,
                read: RefCell::default(),
            }),
            Err(_) => {
                tracing::warn!("a session cookie decrypted but held no session; ignored");
                None
            }
        }
    }

    fn remember(&self, sent: &str, state: &Rc<State>) {
        let mut cache = self.cache.borrow_mut();
        if cache.len() >= CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(sent.into(), Rc::clone(state));
    }

    /// Sends the cookie again when the session changed (or removes it when purged), as actix-session did: a
    /// request that came without a cookie gets one only when its session holds something.
    fn write<B>(
        &self,
        res: &mut ServiceResponse<B>,
        session: &Session,
        had_cookie: bool,
    ) -> Result<(), actix_web::Error> {
        let inner = session.0.borrow();
        let set_cookie = match (inner.status, had_cookie) {
            (SessionStatus::Unchanged, _) => return Ok(()),
            (_, false) if inner.state.values.is_empty() => return Ok(()),
            (SessionStatus::Purged, _) => self.removal(),
            (SessionStatus::Changed | SessionStatus::Renewed, _) => self.encrypt(&inner.state)?,
        };
        let value = HeaderValue::from_str(&set_cookie)
            .map_err(actix_web::error::ErrorInternalServerError)?;
        res.response_mut()
            .headers_mut()
            .append(header::SET_COOKIE, value);
        Ok(())
    }

    /// The `Set-Cookie` value carrying `state`; the cookie is remembered, so the browser's next request finds it.
    fn encrypt(&self, state: &Rc<State>) -> Result<String, actix_web::Error> {
        let json = serde_json::to_string(&state.values)
            .map_err(actix_web::error::ErrorInternalServerError)?;
        if json.len() > MAX_STATE_BYTES {
            return Err(actix_web::error::ErrorInternalServerError(
                "the session is too large for its cookie",
            ));
        }
        let mut cookie = Cookie::new(self.config.name, json);
        self.attributes(&mut cookie);
        cookie.set_max_age(self.config.max_age);
        let mut jar = CookieJar::new();
        jar.private_mut(&self.config.key).add(cookie);
        let encrypted = jar
            .get(self.config.name)
            .ok_or_else(|| actix_web::error::ErrorInternalServerError("no session cookie made"))?;
        let set_cookie = encrypted.encoded().to_string();
        if let Some(sent) = set_cookie
            .split(';')
            .next()
            .and_then(|pair| pair.split_once('=').map(|(_, value)| value))
        {
            self.remember(sent, state);
        }
        Ok(set_cookie)
    }

    /// The `Set-Cookie` value that removes the cookie.
    fn removal(&self) -> String {
        let mut cookie = Cookie::new(self.config.name, "");
        self.attributes(&mut cookie);
        cookie.make_removal();
        cookie.to_string()
    }

    fn attributes(&self, cookie: &mut Cookie<'_>) {
        cookie.set_path("/");
        cookie.set_http_only(true);
        cookie.set_same_site(SameSite::Lax);
        cookie.set_secure(self.config.secure);
    }
}

/// The value of the first cookie named `name` in a `Cookie` header, as sent (still percent-encoded).
fn cookie_value<'h>(header: &'h [u8], name: &str) -> Option<&'h str> {
    let header = std::str::from_utf8(header).ok()?;
    header.split(';').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key.trim() == name).then(|| value.trim())
    })
}

#[cfg(test)]
mod tests {
    use actix_web::{App, HttpResponse, test as actix_test, web};

    use super::*;

    const NAME: &str = "zylker_session";

    fn middleware(key: &Key) -> SessionCookie {
        SessionCookie {
            name: NAME,
            key: key.clone(),
            secure: false,
            max_age: Duration::days(14),
        }
    }

    /// A cookie as actix-session's cookie store wrote it (its own code path: a private jar over the JSON map).
    fn cookie_of_earlier_versions(key: &Key, state: &[(&str, &str)]) -> String {
        let state: HashMap<&str, &str> = state.iter().copied().collect();
        let mut jar = CookieJar::new();
        jar.private_mut(key)
            .add(Cookie::new(NAME, serde_json::to_string(&state).unwrap()));
        jar.get(NAME).unwrap().encoded().to_string()
    }

    async fn who(session: Session) -> HttpResponse {
        let user: Option<String> = session.get("user").unwrap();
        HttpResponse::Ok().body(user.unwrap_or_else(|| "nobody".into()))
    }

    async fn sign_in(session: Session) -> HttpResponse {
        session.insert("user", "kavya").unwrap();
        HttpResponse::Ok().finish()
    }

    async fn sign_out(session: Session) -> HttpResponse {
        session.clear();
        session.renew();
        HttpResponse::Ok().finish()
    }

    async fn forget(session: Session) -> HttpResponse {
        session.purge();
        session.insert("user", "ignored").unwrap();
        HttpResponse::Ok().finish()
    }

    macro_rules! app {
        ($key:expr) => {
            actix_test::init_service(
                App::new()
                    .wrap(middleware($key))
                    .route("/who", web::get().to(who))
                    .route("/sign-in", web::get().to(sign_in))
                    .route("/sign-out", web::get().to(sign_out))
                    .route("/forget", web::get().to(forget)),
            )
            .await
        };
    }

    fn set_cookie(res: &ServiceResponse) -> Option<String> {
        res.headers()
            .get(header::SET_COOKIE)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    async fn body(res: ServiceResponse) -> String {
        String::from_utf8(actix_test::read_body(res).await.to_vec()).unwrap()
    }

    fn get(path: &str, cookie: Option<&str>) -> actix_test::TestRequest {
        let req = actix_test::TestRequest::get().uri(path);
        match cookie {
            Some(cookie) => req.insert_header((header::COOKIE, cookie.to_owned())),
            None => req,
        }
    }

    #[actix_web::test]
    async fn a_cookie_of_earlier_versions_reads_and_an_unchanged_session_sends_no_cookie() {
        let key = Key::generate();
        let app = app!(&key);
        let cookie = cookie_of_earlier_versions(&key, &[("user", "\"kavya\"")]);
        let res = actix_test::call_service(&app, get("/who", Some(&cookie)).to_request()).await;
        assert_eq!(set_cookie(&res), None);
        assert_eq!(body(res).await, "kavya");
        // Read again, now from the cache: the same answer.
        let res = actix_test::call_service(&app, get("/who", Some(&cookie)).to_request()).await;
        assert_eq!(body(res).await, "kavya");
    }

    #[actix_web::test]
    async fn altered_or_foreign_cookies_are_nobodys_even_when_the_genuine_one_is_cached() {
        let key = Key::generate();
        let app = app!(&key);
        let genuine = cookie_of_earlier_versions(&key, &[("user", "\"kavya\"")]);
        let res = actix_test::call_service(&app, get("/who", Some(&genuine)).to_request()).await;
        assert_eq!(body(res).await, "kavya");
        let value = genuine.split_once('=').unwrap().1;
        let mut altered = value.to_owned();
        altered.replace_range(5..6, if &value[5..6] == "A" { "B" } else { "A" });
        let foreign = cookie_of_earlier_versions(&Key::generate(), &[("user", "\"mallory\"")]);
        for cookie in [
            format!("{NAME}={altered}"),
            foreign,
            format!("{NAME}={value}x"),
            format!("{NAME}="),
            format!("other={value}"),
        ] {
            let res = actix_test::call_service(&app, get("/who", Some(&cookie)).to_request()).await;
            assert_eq!(body(res).await, "nobody", "{cookie}");
        }
    }

    #[actix_web::test]
    async fn a_written_cookie_reads_back_on_this_worker_and_on_another() {
        let key = Key::generate();
        let app = app!(&key);
        let res = actix_test::call_service(&app, get("/sign-in", None).to_request()).await;
        let written = set_cookie(&res).unwrap();
        assert!(written.contains("HttpOnly") && written.contains("SameSite=Lax"));
        assert!(written.contains("Path=/") && written.contains("Max-Age=1209600"));
        assert!(!written.contains("Secure") && !written.contains("kavya"));
        let cookie = written.split(';').next().unwrap();
        let res = actix_test::call_service(&app, get("/who", Some(cookie)).to_request()).await;
        assert_eq!(body(res).await, "kavya");
        // Another worker (another app, same key) has no cache entry: it decrypts.
        let other = app!(&key);
        let res = actix_test::call_service(&other, get("/who", Some(cookie)).to_request()).await;
        assert_eq!(body(res).await, "kavya");
    }

    #[actix_web::test]
    async fn renew_sends_the_cookie_and_purge_removes_it() {
        let key = Key::generate();
        let app = app!(&key);
        let cookie = cookie_of_earlier_versions(&key, &[("user", "\"kavya\"")]);
        let res =
            actix_test::call_service(&app, get("/sign-out", Some(&cookie)).to_request()).await;
        let emptied = set_cookie(&res).unwrap();
        let emptied = emptied.split(';').next().unwrap();
        let res = actix_test::call_service(&app, get("/who", Some(emptied)).to_request()).await;
        assert_eq!(body(res).await, "nobody");
        let res = actix_test::call_service(&app, get("/forget", Some(&cookie)).to_request()).await;
        let removal = set_cookie(&res).unwrap();
        assert!(removal.starts_with(&format!("{NAME}=;")), "{removal}");
        assert!(removal.contains("Max-Age=0"), "{removal}");
        // Without a cookie, an empty session sends none.
        let res = actix_test::call_service(&app, get("/sign-out", None).to_request()).await;
        assert_eq!(set_cookie(&res), None);
    }

    #[test]
    fn a_value_is_read_once_per_state_and_never_outlives_a_change() {
        let user = |session: &Session| session.get::<String>("user").unwrap();
        let session = Session::with_state(Rc::default());
        session.insert("user", "Priya").unwrap();
        assert_eq!(user(&session).as_deref(), Some("Priya"));
        // Read again: from what was read.
        assert_eq!(user(&session).as_deref(), Some("Priya"));
        assert_eq!(session.0.borrow().state.read.borrow().len(), 1);
        // A change in place (the state is this session's own) forgets what was read.
        session.insert("user", "Kavya").unwrap();
        assert_eq!(user(&session).as_deref(), Some("Kavya"));
        session.remove("user");
        assert_eq!(user(&session), None);
        session.insert("n", 7).unwrap();
        // Another type at the same key is parsed, not taken from what was read.
        assert_eq!(session.get::<u32>("n").unwrap(), Some(7));
        assert!(session.get::<String>("n").is_err());
        assert_eq!(session.get::<u32>("n").unwrap(), Some(7));
        session.clear();
        assert_eq!(session.get::<u32>("n").unwrap(), None);

        // A state shared with the worker's cache: the change is made on a copy, the cached state keeps its values
        // and what was read of them.
        let cached = Rc::new(State::default());
        let first = Session::with_state(Rc::clone(&cached));
        first.insert("user", "Priya").unwrap();
        let cached = Rc::clone(&first.0.borrow().state);
        assert_eq!(user(&first).as_deref(), Some("Priya"));
        let second = Session::with_state(Rc::clone(&cached));
        second.insert("user", "Kavya").unwrap();
        assert_eq!(user(&second).as_deref(), Some("Kavya"));
        assert_eq!(user(&first).as_deref(), Some("Priya"));
        assert_eq!(cached.values["user"], "\"Priya\"");
    }

    #[test]
    fn the_cache_is_bounded() {
        let codec = CookieCodec {
            config: middleware(&Key::generate()),
            cache: RefCell::default(),
        };
        let state = Rc::new(State::default());
        for n in 0..CACHE_ENTRIES + 10 {
            codec.remember(&n.to_string(), &state);
        }
        assert!(codec.cache.borrow().len() <= CACHE_ENTRIES);
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let header = b"a=1; zylker_session=abc%2B; zylker_session=second";
        assert_eq!(cookie_value(header, NAME), Some("abc%2B"));
        assert_eq!(cookie_value(b"zylker_sessionx=1", NAME), None);
        assert_eq!(cookie_value(b"", NAME), None);
    }
}
