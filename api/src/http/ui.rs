//! The dashboard (`/`, `/assets/...`) and GraphiQL (`/graphiql`), served from files embedded
//! in the binary (`api/assets/`): no CDN, no build step, works offline.
//!
//! Every page gets a strict Content-Security-Policy: scripts, styles and connections only
//! from this origin (GraphiQL additionally needs inline styles for its editor). Assets are
//! revalidated with an ETag, except the versioned `vendor/` folder, which is immutable.

use axum::{
    extract::Path,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

#[derive(rust_embed::Embed)]
#[folder = "assets/"]
#[exclude = "*.md"]
struct Assets;

/// The dashboard's policy: nothing inline, nothing from elsewhere.
const DASHBOARD_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; font-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// GraphiQL's editor sets inline styles and its CSS embeds fonts and icons as data URIs.
const GRAPHIQL_CSP: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; \
     connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Folder of the libraries only GraphiQL uses; hidden with GraphiQL in production.
const VENDOR: &str = "vendor/";

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        _ => "text/plain; charset=utf-8",
    }
}

/// Serves one embedded file with its type, caching and security headers.
fn serve(path: &str, request: &HeaderMap, csp: &'static str) -> Response {
    let Some(file) = Assets::get(path) else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let etag = format!("\"{}\"", hex::encode(&file.metadata.sha256_hash()[..16]));
    let cache = if path.starts_with(VENDOR) {
        // The folder names carry the versions.
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == etag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut response = file.data.into_owned().into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(content_type(path)),
        );
        response
    };
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, etag);
    }
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// `GET /`: the dashboard shell (pages are hash routes).
pub async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers, DASHBOARD_CSP)
}

/// `GET /graphiql` (not in production).
pub async fn graphiql(headers: HeaderMap) -> Response {
    serve("graphiql.html", &headers, GRAPHIQL_CSP)
}

/// `GET /assets/{*path}`: the dashboard's files; `vendor/` only when GraphiQL is served.
pub(crate) async fn asset(
    graphiql_enabled: bool,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> Response {
    if path.ends_with(".html") || (!graphiql_enabled && path.starts_with(VENDOR)) {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    }
    serve(&path, &headers, DASHBOARD_CSP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_file_has_a_known_type() {
        for path in Assets::iter() {
            let path = path.as_ref();
            if path.ends_with("LICENSE") {
                continue;
            }
            assert_ne!(
                content_type(path),
                "text/plain; charset=utf-8",
                "{path} has no content type"
            );
        }
    }

    #[test]
    fn the_shell_and_graphiql_are_embedded() {
        assert!(Assets::get("index.html").is_some());
        assert!(Assets::get("graphiql.html").is_some());
        assert!(Assets::get("vendor/graphiql-3.9.0/graphiql.min.js").is_some());
    }
}
