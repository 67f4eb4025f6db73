//! `GET /static/{name}`: the stylesheet and icon, compiled into the binary so a deployed portal needs no files.

use std::sync::OnceLock;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use sha2::{Digest, Sha256};

use super::AppError;

/// One embedded file: its name under `/static/`, its content type and its bytes (from `static/` at build time).
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

/// Every file `/static/` serves. `static/` stays the source folder; the sandbox's own files are its own.
const ASSETS: &[Asset] = &[
    Asset {
        name: "portal.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../static/portal.css"),
    },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../../static/favicon.svg"),
    },
];

/// A strong ETag per asset (a hash of its bytes), computed once.
fn etag(index: usize) -> &'static str {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    let etags = ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|asset| {
                let digest = Sha256::digest(asset.body);
                format!("\"{}\"", hex::encode(&digest[..12]))
            })
            .collect()
    });
    &etags[index]
}

/// `GET /static/{name}`: the embedded file with its ETag (a matching `If-None-Match` gets 304); the cache
/// lifetime is set by `middleware::cache_control`.
pub async fn asset(req: HttpRequest, name: web::Path<String>) -> Result<HttpResponse, AppError> {
    let Some(index) = ASSETS.iter().position(|asset| asset.name == name.as_str()) else {
        return Err(AppError::NotFound);
    };
    let (asset, etag) = (&ASSETS[index], etag(index));
    let matches = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value
                .split(',')
                .any(|tag| tag.trim() == etag || tag.trim() == "*")
        });
    let mut response = if matches {
        HttpResponse::NotModified().finish()
    } else {
        HttpResponse::Ok()
            .content_type(asset.content_type)
            .body(asset.body)
    };
    if let Ok(value) = HeaderValue::from_str(etag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    Ok(response)
}
