//! The dashboard: one HTML page whose script and style are compiled into the
//! binary (no CDN, no asset build), served at `/` of the admin listener.
//!
//! The page holds no data: its script reads `/status` and `/stats/series`
//! every second with the operator's token, the same JSON scripts use. So the
//! page itself is served without a token, which is what lets it ask for one.

use std::sync::OnceLock;

use http::{header, Response, StatusCode};

const HTML: &str = include_str!("dashboard/index.html");
const STYLE: &str = include_str!("dashboard/dashboard.css");
const SCRIPT: &str = include_str!("dashboard/dashboard.js");

/// The page with its style and script inlined, assembled once.
fn html() -> &'static str {
    static PAGE: OnceLock<String> = OnceLock::new();
    PAGE.get_or_init(|| {
        HTML.replacen("/*STYLE*/", STYLE, 1)
            .replacen("/*SCRIPT*/", SCRIPT, 1)
    })
}

pub fn page() -> Response<Vec<u8>> {
    let body = html().as_bytes().to_vec();
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(header::CONTENT_LENGTH, body.len())
        .header(header::CACHE_CONTROL, "no-store")
        // The page talks only to the listener that served it, and cannot be
        // framed by another site (clickjacking the reload endpoint).
        .header(
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; \
             frame-ancestors 'none'",
        )
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(header::REFERRER_POLICY, "no-referrer")
        .body(body)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_carries_its_script_and_style() {
        let page = html();
        assert!(page.contains(SCRIPT) && page.contains(STYLE));
        assert!(!page.contains("/*SCRIPT*/") && !page.contains("/*STYLE*/"));
        // Nothing is fetched from elsewhere.
        for outside in ["http://", "https://", "<script src", "<link "] {
            assert!(!page.contains(outside), "the page refers to {outside}");
        }
    }
}
