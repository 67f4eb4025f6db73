//! Zoho Accounts: the consent page (`/oauth/v2/auth`), the token endpoint and revocation.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, ContentType};
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use base64::Engine as _;
use serde::Serialize;
use serde_json::json;
use url::Url;

use super::data::{PERSONAS, persona_by_email};
use super::state::{
    Challenge, Consent, Counter, Fault, IssuedTokens, SandboxState, Scopes, TokenEndpointError,
};

/// The parameters of an authorization request, in the order the consent form carries them back.
const AUTH_PARAMS: [&str; 9] = [
    "client_id",
    "response_type",
    "redirect_uri",
    "scope",
    "state",
    "access_type",
    "prompt",
    "code_challenge",
    "code_challenge_method",
];

/// The sign-in-like consent page.
#[derive(Template)]
#[template(path = "sandbox/consent.html")]
struct ConsentPage<'a> {
    client_id: &'a str,
    scopes: Vec<&'a str>,
    personas: Vec<PersonaChoice>,
    hidden: Vec<HiddenField<'a>>,
    offline: bool,
}

struct PersonaChoice {
    email: &'static str,
    full_name: &'static str,
    role: &'static str,
    profile: &'static str,
    checked: bool,
}

struct HiddenField<'a> {
    name: &'a str,
    value: &'a str,
}

/// The sandbox's own error page: bad authorization requests stop here and never go back to the client.
#[derive(Template)]
#[template(path = "sandbox/error.html")]
struct ErrorPage<'a> {
    title: &'a str,
    message: &'a str,
}

/// An authorization request that failed validation: rendered as a 400 page on the sandbox.
struct BadAuthRequest(&'static str, &'static str);

pub(super) fn render(status: StatusCode, page: &impl Template) -> HttpResponse {
    match page.render() {
        Ok(html) => HttpResponse::build(status)
            .content_type(ContentType::html())
            .body(html),
        Err(error) => {
            tracing::error!(%error, "sandbox template failed");
            HttpResponse::InternalServerError().finish()
        }
    }
}

fn error_page(status: StatusCode, title: &str, message: &str) -> HttpResponse {
    render(status, &ErrorPage { title, message })
}

/// Parses `a=1&b=2`; the first value of a repeated parameter wins.
fn parse_pairs(raw: &[u8]) -> Option<Vec<(String, String)>> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(raw).ok()
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// A validated authorization request.
struct AuthRequest<'a> {
    client_id: &'a str,
    redirect_uri: &'a str,
    scope: &'a str,
    state: Option<&'a str>,
    offline: bool,
    prompt_consent: bool,
    challenge: Option<Challenge>,
}

fn validate<'a>(
    sandbox: &SandboxState,
    pairs: &'a [(String, String)],
) -> Result<AuthRequest<'a>, BadAuthRequest> {
    let client_id = param(pairs, "client_id").unwrap_or_default();
    let client = sandbox.client(client_id).ok_or(BadAuthRequest(
        "Invalid client",
        "The application's client_id is not registered with Zoho Accounts.",
    ))?;
    if param(pairs, "response_type") != Some("code") {
        return Err(BadAuthRequest(
            "Unsupported response type",
            "response_type must be code.",
        ));
    }
    let redirect_uri = param(pairs, "redirect_uri").unwrap_or_default();
    if !client
        .redirect_uris
        .iter()
        .any(|registered| registered == redirect_uri)
    {
        return Err(BadAuthRequest(
            "Invalid redirect URI",
            "The redirect_uri does not match any authorized redirect URI of this client.",
        ));
    }
    let scope = param(pairs, "scope").unwrap_or_default();
    if scope.trim().is_empty() {
        return Err(BadAuthRequest(
            "Scope missing",
            "The request names no scope.",
        ));
    }
    let offline = match param(pairs, "access_type") {
        None | Some("online") => false,
        Some("offline") => true,
        Some(_) => {
            return Err(BadAuthRequest(
                "Invalid access type",
                "access_type must be online or offline.",
            ));
        }
    };
    let challenge = match (
        param(pairs, "code_challenge"),
        param(pairs, "code_challenge_method"),
    ) {
        (None, None) => None,
        (Some(challenge), method @ (None | Some("S256") | Some("plain")))
            if !challenge.is_empty() =>
        {
            Some(Challenge {
                challenge: challenge.to_owned(),
                method: method.unwrap_or("plain").to_owned(),
            })
        }
        _ => {
            return Err(BadAuthRequest(
                "Invalid code challenge",
                "code_challenge must be given, and code_challenge_method must be S256 or plain.",
            ));
        }
    };
    Ok(AuthRequest {
        client_id,
        redirect_uri,
        scope,
        state: param(pairs, "state"),
        offline,
        prompt_consent: param(pairs, "prompt") == Some("consent"),
        challenge,
    })
}

/// `GET /oauth/v2/auth`: the consent page, or an error page for a request Zoho would refuse.
pub async fn consent_page(request: HttpRequest, sandbox: web::Data<SandboxState>) -> HttpResponse {
    let Some(pairs) = parse_pairs(request.query_string().as_bytes()) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Bad request",
            "The query string could not be read.",
        );
    };
    let auth = match validate(&sandbox, &pairs) {
        Ok(auth) => auth,
        Err(BadAuthRequest(title, message)) => {
            return error_page(StatusCode::BAD_REQUEST, title, message);
        }
    };
    let hidden = AUTH_PARAMS
        .iter()
        .filter_map(|name| param(&pairs, name).map(|value| HiddenField { name, value }))
        .collect();
    let personas = PERSONAS
        .iter()
        .enumerate()
        .map(|(index, persona)| PersonaChoice {
            email: persona.email,
            full_name: persona.full_name,
            role: persona.role,
            profile: persona.profile.name,
            checked: index == 0,
        })
        .collect();
    let page = ConsentPage {
        client_id: auth.client_id,
        scopes: auth
            .scope
            .split(',')
            .map(str::trim)
            .filter(|scope| !scope.is_empty())
            .collect(),
        personas,
        hidden,
        offline: auth.offline,
    };
    render(StatusCode::OK, &page)
}

/// `POST /oauth/v2/auth`: the person's decision; 302 back to the client with a code or `access_denied`.
pub async fn decide(body: web::Bytes, sandbox: web::Data<SandboxState>) -> HttpResponse {
    let Some(pairs) = parse_pairs(&body) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Bad request",
            "The form could not be read.",
        );
    };
    let auth = match validate(&sandbox, &pairs) {
        Ok(auth) => auth,
        Err(BadAuthRequest(title, message)) => {
            return error_page(StatusCode::BAD_REQUEST, title, message);
        }
    };
    let Ok(mut target) = Url::parse(auth.redirect_uri) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Invalid redirect URI",
            "The registered redirect URI is not a URL.",
        );
    };
    match param(&pairs, "decision") {
        Some("accept") => {
            let Some(persona) = param(&pairs, "email").and_then(persona_by_email) else {
                return error_page(
                    StatusCode::BAD_REQUEST,
                    "Choose who you are",
                    "Pick one of the Zylker Academy accounts to sign in.",
                );
            };
            let code = sandbox.issue_code(Consent {
                client_id: auth.client_id.to_owned(),
                redirect_uri: auth.redirect_uri.to_owned(),
                persona,
                scopes: Scopes::parse(auth.scope),
                offline: auth.offline,
                prompt_consent: auth.prompt_consent,
                challenge: auth.challenge,
            });
            let mut query = target.query_pairs_mut();
            query.append_pair("code", &code);
            if let Some(state) = auth.state {
                query.append_pair("state", state);
            }
            query.append_pair("location", "us");
            query.append_pair("accounts-server", &sandbox.public_url);
            drop(query);
        }
        Some("deny") => {
            let mut query = target.query_pairs_mut();
            query.append_pair("error", "access_denied");
            if let Some(state) = auth.state {
                query.append_pair("state", state);
            }
            drop(query);
        }
        _ => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "Bad request",
                "decision must be accept or deny.",
            );
        }
    }
    HttpResponse::Found()
        .insert_header((header::LOCATION, target.as_str()))
        .finish()
}

/// Zoho's token answer: `refresh_token` only when one was issued.
#[derive(Serialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    api_domain: String,
    token_type: &'static str,
    expires_in: u64,
}

fn token_error(error: &TokenEndpointError) -> HttpResponse {
    // Zoho answers every token-endpoint failure with HTTP 200
    // (`docs/zoho-protocol.md#errors-answered-as-http-200`).
    let body = match error {
        TokenEndpointError::Throttled => throttled_body(),
        TokenEndpointError::Injected(error) if error == "Access Denied" => throttled_body(),
        TokenEndpointError::Injected(error) => json!({ "error": error }),
        TokenEndpointError::InvalidClient => json!({"error": "invalid_client"}),
        TokenEndpointError::InvalidClientSecret => json!({"error": "invalid_client_secret"}),
        TokenEndpointError::InvalidCode => json!({"error": "invalid_code"}),
        TokenEndpointError::InvalidRedirectUri => json!({"error": "invalid_redirect_uri"}),
        TokenEndpointError::UnsupportedGrantType => json!({"error": "unsupported_grant_type"}),
    };
    HttpResponse::Ok().json(body)
}

fn throttled_body() -> serde_json::Value {
    json!({
        "error_description": "You have made too many requests continuously. Please try again after some time.",
        "error": "Access Denied",
        "status": "failure",
    })
}

/// The query and the form body together (the body wins a clash): Zoho accepts the parameters in either.
/// A `multipart/form-data` body, which Zoho also takes, is not read: no client of this crate sends one.
fn token_params(request: &HttpRequest, body: &[u8]) -> Vec<(String, String)> {
    let mut pairs = parse_pairs(body).unwrap_or_default();
    pairs.extend(parse_pairs(request.query_string().as_bytes()).unwrap_or_default());
    pairs
}

/// Client credentials from an `Authorization: Basic` header, Zoho's third way of sending them.
fn basic_credentials(request: &HttpRequest) -> Option<(String, String)> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

async fn apply_delay(fault: &Option<Fault>) {
    if let Some(delay) = fault.as_ref().and_then(|fault| fault.delay) {
        actix_web::rt::time::sleep(delay.min(Duration::from_secs(120))).await;
    }
}

/// `POST /oauth/v2/token`: the `authorization_code` and `refresh_token` grants.
pub async fn token(
    request: HttpRequest,
    body: web::Bytes,
    sandbox: web::Data<SandboxState>,
) -> HttpResponse {
    let fault = sandbox.take_token_fault();
    apply_delay(&fault).await;
    let pairs = token_params(&request, &body);
    let grant_type = param(&pairs, "grant_type").unwrap_or_default();
    if let Some(error) = fault.and_then(|fault| fault.error) {
        if error == "Access Denied" {
            sandbox.bump(Counter::ThrottledRefreshes);
        }
        return token_error(&TokenEndpointError::Injected(error));
    }
    let basic = basic_credentials(&request);
    let (client_id, client_secret) = match &basic {
        Some((id, secret)) => (id.as_str(), secret.as_str()),
        None => (
            param(&pairs, "client_id").unwrap_or_default(),
            param(&pairs, "client_secret").unwrap_or_default(),
        ),
    };
    let issued: Result<IssuedTokens, TokenEndpointError> = sandbox
        .authenticate_client(client_id, client_secret)
        .and_then(|()| match grant_type {
            "authorization_code" => sandbox.exchange_code(
                client_id,
                param(&pairs, "code").unwrap_or_default(),
                param(&pairs, "redirect_uri"),
                param(&pairs, "code_verifier"),
            ),
            "refresh_token" => sandbox.refresh(
                client_id,
                param(&pairs, "refresh_token").unwrap_or_default(),
            ),
            _ => Err(TokenEndpointError::UnsupportedGrantType),
        });
    match issued {
        Ok(tokens) => HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(TokenAnswer {
                access_token: tokens.access_token,
                refresh_token: tokens.refresh_token,
                api_domain: sandbox.api_domain_for_answer(),
                token_type: "Bearer",
                expires_in: tokens.expires_in,
            }),
        Err(error) => token_error(&error),
    }
}

/// `POST /oauth/v2/token/revoke?token=`: revokes a refresh token (and its access tokens) or an access token.
pub async fn revoke(
    request: HttpRequest,
    body: web::Bytes,
    sandbox: web::Data<SandboxState>,
) -> HttpResponse {
    let pairs = token_params(&request, &body);
    let token = param(&pairs, "token").unwrap_or_default();
    if !token.is_empty() && sandbox.revoke(token) {
        HttpResponse::Ok().json(json!({"status": "success"}))
    } else {
        // Zoho answers 400 for a token it does not know (`docs/zoho-protocol.md#revocation`); the body is not
        // documented.
        HttpResponse::BadRequest().json(json!({"status": "failure", "error": "invalid_token"}))
    }
}
