//! The Zoho Accounts client: authorization URL, code exchange, refresh and revoke, Zoho's quirks included.
//!
//! The token calls are plain form POSTs through reqwest rather than the `oauth2` crate's client: Zoho answers
//! errors with HTTP 200, sends `api_domain` and sometimes `expires_in_sec` with `expires_in` in milliseconds,
//! separates scopes with commas and revokes at a non-standard endpoint. Each of those needs a workaround around
//! `oauth2`'s client (a wrapped HTTP client, extra token fields, a single comma-joined scope), so four short
//! requests and one parser say what happens more plainly. `oauth2` still provides the random PKCE pair and state.
//! What Zoho's endpoints take and answer is written down in `docs/zoho-protocol.md`.

use std::fmt;
use std::time::Duration;

use serde_json::Value;
use url::Url;

use crate::secret::Secret;

/// The scopes the portal asks for by default (`--scope`), comma-separated as Zoho wants them: the CRM modules,
/// their metadata, the current user, the org, and search (Zoho's search calls need `ZohoSearch.securesearch.READ`
/// beside the module's scope: `docs/zoho-protocol.md#search`).
pub const DEFAULT_SCOPE: &str = "ZohoCRM.modules.ALL,ZohoCRM.settings.modules.READ,ZohoCRM.settings.fields.READ,ZohoCRM.users.READ,ZohoCRM.org.READ,ZohoSearch.securesearch.READ";

/// The OAuth client registered in Zoho's API console. The secret is a [`Secret`]: `Debug` never prints it.
#[derive(Debug, Clone)]
pub struct ClientCredentials {
    pub client_id: String,
    pub client_secret: Secret,
    /// `{public-url}/oauth/callback`, exactly as registered.
    pub redirect_url: Url,
}

/// A successful answer of the token endpoint. The tokens are [`Secret`]s: `Debug` never prints them.
#[derive(Debug, Clone)]
pub struct TokenResponse {
    pub access_token: Secret,
    /// Present after a code exchange with `access_type=offline` on first consent; never after a refresh.
    pub refresh_token: Option<Secret>,
    pub api_domain: Option<String>,
    pub expires_in: Duration,
}

/// How a call to Zoho Accounts failed, classified by what the portal must do about it.
#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    /// `invalid_code`: the code or the refresh token is dead (used, expired, revoked). Log in again.
    #[error("Zoho says the code or refresh token is no longer valid")]
    Dead,
    /// `Access Denied`: too many requests; keep the token and try later.
    #[error("Zoho is throttling token requests")]
    Throttled,
    /// `invalid_client`, `invalid_client_secret`, `invalid_redirect_uri`: the portal is misconfigured.
    #[error("Zoho rejected the portal's client configuration ({0})")]
    Misconfigured(String),
    /// Any other `error` value.
    #[error("Zoho refused the request ({0})")]
    Rejected(String),
    #[error("Zoho Accounts did not answer in time")]
    Timeout,
    #[error("Zoho Accounts could not be reached")]
    Unreachable(#[source] reqwest::Error),
    /// An answer that is neither a token nor an error.
    #[error("unexpected answer from Zoho Accounts: {0}")]
    Protocol(String),
}

/// A fresh PKCE pair `(code_verifier, code_challenge)` for `code_challenge_method=S256`: the verifier stays in
/// the session, the challenge goes into the authorization URL.
pub fn new_pkce_pair() -> (Secret, String) {
    let (challenge, verifier) = oauth2::PkceCodeChallenge::new_random_sha256();
    (
        Secret::from(verifier.into_secret()),
        challenge.as_str().to_owned(),
    )
}

/// Talks to Zoho Accounts for one registered client.
#[derive(Clone)]
pub struct AccountsClient {
    credentials: ClientCredentials,
    http: reqwest::Client,
}

impl fmt::Debug for AccountsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccountsClient")
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

impl AccountsClient {
    /// An HTTP client that follows no redirects and gives up after `timeout`.
    pub fn new(credentials: ClientCredentials, timeout: Duration) -> Result<Self, reqwest::Error> {
        // A redirect would carry the form body, client secret included, to a host nobody validated.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()?;
        Ok(Self { credentials, http })
    }

    /// The registered client this talks for.
    pub fn credentials(&self) -> &ClientCredentials {
        &self.credentials
    }

    /// `{accounts}/oauth/v2/auth?…` with the comma-separated `scope`, `access_type=offline`, `state`, PKCE S256,
    /// and `prompt=consent` when asked for.
    pub fn authorization_url(
        &self,
        accounts: &Url,
        scope: &str,
        state: &str,
        code_challenge: &str,
        prompt_consent: bool,
    ) -> Url {
        let mut url = endpoint(accounts, "/oauth/v2/auth");
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("client_id", &self.credentials.client_id)
                .append_pair("response_type", "code")
                .append_pair("redirect_uri", self.credentials.redirect_url.as_str())
                .append_pair("scope", scope)
                .append_pair("access_type", "offline")
                .append_pair("state", state)
                .append_pair("code_challenge", code_challenge)
                .append_pair("code_challenge_method", "S256");
            if prompt_consent {
                query.append_pair("prompt", "consent");
            }
        }
        url
    }

    /// `grant_type=authorization_code` at `{accounts_server}/oauth/v2/token`.
    #[tracing::instrument(skip_all, fields(accounts_server = %accounts_server))]
    pub async fn exchange_code(
        &self,
        accounts_server: &Url,
        code: &Secret,
        code_verifier: &Secret,
    ) -> Result<TokenResponse, AccountsError> {
        let form = [
            ("grant_type", "authorization_code"),
            ("client_id", self.credentials.client_id.as_str()),
            (
                "client_secret",
                self.credentials.client_secret.expose_secret(),
            ),
            ("redirect_uri", self.credentials.redirect_url.as_str()),
            ("code", code.expose_secret()),
            ("code_verifier", code_verifier.expose_secret()),
        ];
        self.token_request(accounts_server, &form).await
    }

    /// `grant_type=refresh_token` at `{accounts_server}/oauth/v2/token`.
    #[tracing::instrument(skip_all, fields(accounts_server = %accounts_server))]
    pub async fn refresh(
        &self,
        accounts_server: &Url,
        refresh_token: &Secret,
    ) -> Result<TokenResponse, AccountsError> {
        let form = [
            ("grant_type", "refresh_token"),
            ("client_id", self.credentials.client_id.as_str()),
            (
                "client_secret",
                self.credentials.client_secret.expose_secret(),
            ),
            ("refresh_token", refresh_token.expose_secret()),
        ];
        self.token_request(accounts_server, &form).await
    }

    /// `POST {accounts_server}/oauth/v2/token/revoke?token=…`.
    ///
    /// Zoho answers HTTP 400 for a token it does not know (already revoked, never issued): that is
    /// [`AccountsError::Dead`], which a caller disconnecting a user may treat as done.
    #[tracing::instrument(skip_all, fields(accounts_server = %accounts_server))]
    pub async fn revoke(&self, accounts_server: &Url, token: &Secret) -> Result<(), AccountsError> {
        let mut url = endpoint(accounts_server, "/oauth/v2/token/revoke");
        url.query_pairs_mut()
            .append_pair("token", token.expose_secret());
        let response = self.http.post(url).send().await.map_err(transport_error)?;
        let status = response.status().as_u16();
        let body = read_token_answer(response).await?;
        parse_revoke_answer(status, &body)
    }

    async fn token_request(
        &self,
        accounts_server: &Url,
        form: &[(&str, &str)],
    ) -> Result<TokenResponse, AccountsError> {
        let url = endpoint(accounts_server, "/oauth/v2/token");
        let response = self
            .http
            .post(url)
            .form(form)
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status().as_u16();
        let body = read_token_answer(response).await?;
        let answer = parse_token_answer(status, &body);
        if let Err(error) = &answer {
            tracing::debug!(status, %error, "token endpoint refused");
        }
        answer
    }
}

/// Most bytes a token or revoke answer may have: Zoho's are a few hundred, so anything near this is not Zoho.
pub const MAX_TOKEN_ANSWER_BYTES: usize = 1024 * 1024;

async fn read_token_answer(response: reqwest::Response) -> Result<Vec<u8>, AccountsError> {
    read_capped(response, MAX_TOKEN_ANSWER_BYTES)
        .await
        .map_err(|error| match error {
            CappedBodyError::TooLarge => AccountsError::Protocol(format!(
                "an answer larger than {MAX_TOKEN_ANSWER_BYTES} bytes"
            )),
            CappedBodyError::Transport(error) => transport_error(error),
        })
}

/// Why a body could not be read within its cap.
enum CappedBodyError {
    /// The answer declared or sent more than the cap.
    TooLarge,
    Transport(reqwest::Error),
}

/// Reads a response body of at most `limit` bytes: a declared `Content-Length` over the cap is refused before
/// anything is read, and a body without one is read chunk by chunk and dropped as soon as it passes the cap, so
/// that a misbehaving upstream cannot make the portal buffer without bound.
async fn read_capped(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, CappedBodyError> {
    let declared = response.content_length();
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(CappedBodyError::TooLarge);
    }
    let expected = declared.map_or(0, |length| usize::try_from(length).unwrap_or(limit));
    let mut body = Vec::with_capacity(expected.min(limit));
    while let Some(chunk) = response.chunk().await.map_err(CappedBodyError::Transport)? {
        if body.len() + chunk.len() > limit {
            return Err(CappedBodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `{origin}{path}`: endpoints hang off the server's origin, whatever path the configured URL carries.
fn endpoint(server: &Url, path: &str) -> Url {
    let mut url = server.clone();
    url.set_path(path);
    url.set_query(None);
    url.set_fragment(None);
    url
}

fn transport_error(error: reqwest::Error) -> AccountsError {
    if error.is_timeout() {
        AccountsError::Timeout
    } else if error.is_decode() {
        AccountsError::Protocol("the answer could not be read".to_owned())
    } else {
        // Strip the URL: for a revoke it carries the token in its query.
        AccountsError::Unreachable(error.without_url())
    }
}

/// Reads a token-endpoint answer the way Zoho means it: success only when there is an `access_token` and no
/// `error`, whatever the HTTP status says (Zoho reports errors with HTTP 200:
/// `docs/zoho-protocol.md#errors-answered-as-http-200`).
pub fn parse_token_answer(status: u16, body: &[u8]) -> Result<TokenResponse, AccountsError> {
    let Ok(Value::Object(answer)) = serde_json::from_slice::<Value>(body) else {
        return Err(AccountsError::Protocol(format!(
            "HTTP {status} without a JSON object"
        )));
    };
    if let Some(error) = answer.get("error") {
        let error = match error {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        return Err(classify_token_error(&error));
    }
    let access_token = match answer.get("access_token") {
        Some(Value::String(token)) if !token.is_empty() => Secret::from(token.as_str()),
        _ => {
            return Err(AccountsError::Protocol(format!(
                "HTTP {status} without an access_token"
            )));
        }
    };
    let refresh_token = match answer.get("refresh_token") {
        Some(Value::String(token)) if !token.is_empty() => Some(Secret::from(token.as_str())),
        _ => None,
    };
    let api_domain = match answer.get("api_domain") {
        Some(Value::String(domain)) => Some(domain.clone()),
        _ => None,
    };
    let expires_in = token_lifetime(&answer).ok_or_else(|| {
        AccountsError::Protocol("no usable expires_in in the token answer".to_owned())
    })?;
    Ok(TokenResponse {
        access_token,
        refresh_token,
        api_domain,
        expires_in,
    })
}

/// The access token's lifetime: `expires_in_sec` when present (then `expires_in` is in milliseconds, the
/// legacy form the SDK still reads), else `expires_in` in seconds. A day is the most Zoho would ever grant;
/// anything longer or negative is not believed (`docs/zoho-protocol.md#token-endpoint`).
fn token_lifetime(answer: &serde_json::Map<String, Value>) -> Option<Duration> {
    const LONGEST: u64 = 24 * 60 * 60;
    let seconds = |value: &Value| -> Option<u64> {
        match value {
            Value::Number(number) => number.as_u64(),
            Value::String(text) => text.trim().parse().ok(),
            _ => None,
        }
    };
    let secs = match answer.get("expires_in_sec") {
        Some(legacy) => seconds(legacy)?,
        None => seconds(answer.get("expires_in")?)?,
    };
    (secs <= LONGEST).then(|| Duration::from_secs(secs))
}

/// Zoho's token-endpoint `error` values, by what the portal must do about them.
fn classify_token_error(error: &str) -> AccountsError {
    match error {
        "invalid_code" => AccountsError::Dead,
        // Throttling arrives as "Access Denied" (space, capitals); the grant-code limit as `access_denied`.
        _ if error.eq_ignore_ascii_case("access denied") || error == "access_denied" => {
            AccountsError::Throttled
        }
        "invalid_client" | "invalid_client_secret" | "invalid_redirect_uri" => {
            AccountsError::Misconfigured(error.to_owned())
        }
        other => AccountsError::Rejected(other.to_owned()),
    }
}

/// `{"status":"success"}` is revoked; HTTP 400 means the token was not valid any more (`docs/zoho-protocol.md#revocation`).
fn parse_revoke_answer(status: u16, body: &[u8]) -> Result<(), AccountsError> {
    if status == 400 {
        return Err(AccountsError::Dead);
    }
    let answer: Value = serde_json::from_slice(body).map_err(|_| {
        AccountsError::Protocol(format!("revoke: HTTP {status} without a JSON object"))
    })?;
    if let Some(Value::String(error)) = answer.get("error") {
        return Err(classify_token_error(error));
    }
    match answer.get("status").and_then(Value::as_str) {
        Some("success") if (200..300).contains(&status) => Ok(()),
        _ => Err(AccountsError::Protocol(format!(
            "revoke: HTTP {status} without status success"
        ))),
    }
}

/// A one-shot HTTP server for the body-cap tests: answers one request with `head` (status line and headers)
/// and then `body_len` bytes of `a`, in 64 KiB writes.
#[cfg(test)]
pub(crate) async fn serve_one_answer(head: &'static str, body_len: usize) -> Url {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
    tokio::spawn(async move {
        let Ok((mut socket, _)) = listener.accept().await else {
            return;
        };
        let mut request = vec![0; 16 * 1024];
        let _ = socket.read(&mut request).await;
        let chunked = head.contains("chunked");
        if socket.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let block = vec![b'a'; 64 * 1024];
        let mut left = body_len;
        while left > 0 {
            let size = left.min(block.len());
            let written = if chunked {
                let frame = [format!("{size:x}\r\n").as_bytes(), &block[..size], b"\r\n"].concat();
                socket.write_all(&frame).await
            } else {
                socket.write_all(&block[..size]).await
            };
            // The client hangs up once it has seen enough.
            if written.is_err() {
                return;
            }
            left -= size;
        }
        if chunked {
            let _ = socket.write_all(b"0\r\n\r\n").await;
        }
        let _ = socket.shutdown().await;
    });
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> AccountsClient {
        AccountsClient::new(
            ClientCredentials {
                client_id: "1000.CLIENT".to_owned(),
                client_secret: Secret::from("top-secret"),
                redirect_url: Url::parse("http://127.0.0.1:8080/oauth/callback").unwrap(),
            },
            Duration::from_secs(5),
        )
        .unwrap()
    }

    fn query(url: &Url) -> Vec<(String, String)> {
        url.query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    #[test]
    fn authorization_url_carries_exactly_the_issue_parameters() {
        let url = client().authorization_url(
            &Url::parse("https://accounts.zoho.com").unwrap(),
            "ZohoCRM.modules.ALL,ZohoCRM.users.READ",
            "the-state",
            "the-challenge",
            false,
        );
        assert_eq!(
            url.origin().ascii_serialization(),
            "https://accounts.zoho.com"
        );
        assert_eq!(url.path(), "/oauth/v2/auth");
        let expected: Vec<(String, String)> = [
            ("client_id", "1000.CLIENT"),
            ("response_type", "code"),
            ("redirect_uri", "http://127.0.0.1:8080/oauth/callback"),
            ("scope", "ZohoCRM.modules.ALL,ZohoCRM.users.READ"),
            ("access_type", "offline"),
            ("state", "the-state"),
            ("code_challenge", "the-challenge"),
            ("code_challenge_method", "S256"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(query(&url), expected);
        assert!(!url.as_str().contains("top-secret"));
    }

    #[test]
    fn authorization_url_asks_for_consent_only_when_told() {
        let url = client().authorization_url(
            &Url::parse("http://localhost:8081/").unwrap(),
            "ZohoCRM.modules.ALL",
            "s",
            "c",
            true,
        );
        assert!(query(&url).contains(&("prompt".to_owned(), "consent".to_owned())));
        assert_eq!(
            url.as_str().split('?').next(),
            Some("http://localhost:8081/oauth/v2/auth")
        );
    }

    #[test]
    fn pkce_pair_is_s256_of_the_verifier() {
        use base64::Engine;
        use sha2::Digest;
        let (verifier, challenge) = new_pkce_pair();
        assert!(verifier.expose_secret().len() >= 43);
        let digest = sha2::Sha256::digest(verifier.expose_secret().as_bytes());
        let expected = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest);
        assert_eq!(challenge, expected);
        assert_ne!(new_pkce_pair().0, verifier);
    }

    #[test]
    fn current_token_answer_is_parsed() {
        let response = parse_token_answer(
            200,
            br#"{"access_token":"1000.a","refresh_token":"1000.r","api_domain":"https://www.zohoapis.com","token_type":"Bearer","expires_in":3600}"#,
        )
        .unwrap();
        assert_eq!(response.access_token.expose_secret(), "1000.a");
        assert_eq!(
            response.refresh_token.as_ref().map(Secret::expose_secret),
            Some("1000.r")
        );
        assert_eq!(
            response.api_domain.as_deref(),
            Some("https://www.zohoapis.com")
        );
        assert_eq!(response.expires_in, Duration::from_secs(3600));
    }

    #[test]
    fn legacy_token_answer_reads_expires_in_sec() {
        let response = parse_token_answer(
            200,
            br#"{"access_token":"1000.a","expires_in_sec":3600,"expires_in":3600000,"api_domain":"https://www.zohoapis.eu","token_type":"Bearer"}"#,
        )
        .unwrap();
        assert_eq!(response.expires_in, Duration::from_secs(3600));
        assert_eq!(response.refresh_token, None);
    }

    #[test]
    fn http_200_errors_are_classified() {
        type Expectation = fn(&AccountsError) -> bool;
        let cases: [(&[u8], Expectation); 7] = [
            (br#"{"error":"invalid_code"}"#, |e| {
                matches!(e, AccountsError::Dead)
            }),
            (
                br#"{"error_description":"You have made too many requests continuously. Please try again after some time.","error":"Access Denied","status":"failure"}"#,
                |e| matches!(e, AccountsError::Throttled),
            ),
            (br#"{"error":"invalid_client"}"#, |e| {
                matches!(e, AccountsError::Misconfigured(v) if v == "invalid_client")
            }),
            (br#"{"error":"invalid_client_secret"}"#, |e| {
                matches!(e, AccountsError::Misconfigured(_))
            }),
            (br#"{"error":"invalid_redirect_uri"}"#, |e| {
                matches!(e, AccountsError::Misconfigured(_))
            }),
            (br#"{"error":"unsupported_grant_type"}"#, |e| {
                matches!(e, AccountsError::Rejected(v) if v == "unsupported_grant_type")
            }),
            // An error wins over an access token in the same answer.
            (br#"{"error":"invalid_code","access_token":"x","expires_in":3600}"#, |e| {
                matches!(e, AccountsError::Dead)
            }),
        ];
        for (body, expected) in cases {
            let error = parse_token_answer(200, body).unwrap_err();
            assert!(
                expected(&error),
                "{} gave {error:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn garbage_token_answers_are_protocol_errors() {
        for body in [
            &b"<html>502 Bad Gateway</html>"[..],
            b"",
            b"[]",
            br#"{"token_type":"Bearer","expires_in":3600}"#,
            br#"{"access_token":"","expires_in":3600}"#,
            br#"{"access_token":"a"}"#,
            br#"{"access_token":"a","expires_in":-5}"#,
            br#"{"access_token":"a","expires_in":"soon"}"#,
            br#"{"access_token":"a","expires_in":99999999999}"#,
        ] {
            let error = parse_token_answer(200, body).unwrap_err();
            assert!(
                matches!(error, AccountsError::Protocol(_)),
                "{} gave {error:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn revoke_answers_are_classified() {
        assert!(parse_revoke_answer(200, br#"{"status":"success"}"#).is_ok());
        assert!(matches!(
            parse_revoke_answer(400, b"Bad Request"),
            Err(AccountsError::Dead)
        ));
        assert!(matches!(
            parse_revoke_answer(200, br#"{"status":"failure"}"#),
            Err(AccountsError::Protocol(_))
        ));
        assert!(matches!(
            parse_revoke_answer(302, b""),
            Err(AccountsError::Protocol(_))
        ));
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let credentials = client().credentials().clone();
        let grant = TokenResponse {
            access_token: Secret::from("1000.access-secret"),
            refresh_token: Some(Secret::from("1000.refresh-secret")),
            api_domain: Some("https://www.zohoapis.com".to_owned()),
            expires_in: Duration::from_secs(3600),
        };
        let printed = format!("{credentials:?} {grant:?} {:?}", client());
        for secret in ["top-secret", "access-secret", "refresh-secret"] {
            assert!(!printed.contains(secret), "{printed}");
        }
        assert!(printed.contains("1000.CLIENT"));
    }

    #[tokio::test]
    async fn a_token_answer_declaring_more_than_the_cap_is_a_protocol_error() {
        let server = serve_one_answer(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2097152\r\n\r\n",
            2 * 1024 * 1024,
        )
        .await;

        let error = client()
            .refresh(&server, &Secret::from("1000.refresh"))
            .await
            .unwrap_err();

        assert!(
            matches!(&error, AccountsError::Protocol(why) if why.contains("larger than")),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn a_chunked_token_answer_past_the_cap_is_a_protocol_error() {
        let server = serve_one_answer(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n",
            MAX_TOKEN_ANSWER_BYTES + 1,
        )
        .await;

        let error = client()
            .revoke(&server, &Secret::from("1000.refresh"))
            .await
            .unwrap_err();

        assert!(
            matches!(&error, AccountsError::Protocol(why) if why.contains("larger than")),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn an_answer_of_exactly_the_cap_is_read_whole() {
        let server = serve_one_answer(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
            MAX_TOKEN_ANSWER_BYTES,
        )
        .await;
        let response = reqwest::get(server).await.unwrap();

        let body = read_capped(response, MAX_TOKEN_ANSWER_BYTES).await;

        assert!(matches!(body, Ok(bytes) if bytes.len() == MAX_TOKEN_ANSWER_BYTES));
    }
}
