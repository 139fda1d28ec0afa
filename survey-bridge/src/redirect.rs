//! The plain-HTTP port, when configured: every request is answered with a permanent
//! redirect to the same path over HTTPS, and nothing else. No page is ever served in clear.

use axum::{
    Router,
    extract::{Request, State},
    http::{StatusCode, Uri, header},
    response::{IntoResponse, Redirect, Response},
};

/// The redirecting service; `https_port` is where the pages are (omitted from the address
/// when 443).
pub fn router(https_port: u16) -> Router {
    Router::new().fallback(redirect).with_state(https_port)
}

async fn redirect(State(https_port): State<u16>, request: Request) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().host())
        .and_then(host_name);
    let Some(host) = host else {
        return (StatusCode::BAD_REQUEST, "the Host header is missing or not a host name").into_response();
    };
    let authority = if https_port == 443 { host.to_string() } else { format!("{host}:{https_port}") };
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    match Uri::builder().scheme("https").authority(authority).path_and_query(path).build() {
        Ok(uri) => Redirect::permanent(&uri.to_string()).into_response(),
        Err(_) => (StatusCode::BAD_REQUEST, "the request address cannot be redirected").into_response(),
    }
}

/// The host part of a Host header, if it is a plain host name or IP address.
fn host_name(value: &str) -> Option<&str> {
    if value.starts_with('[') {
        // An IPv6 literal, `[::1]` or `[::1]:80`.
        let end = value.find(']')?;
        value[1..end].parse::<std::net::Ipv6Addr>().ok()?;
        return Some(&value[..=end]);
    }
    let host = match value.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => value,
    };
    let ok = !host.is_empty()
        && host.len() <= 253
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    ok.then_some(host)
}

#[cfg(test)]
mod tests {
    use super::host_name;

    #[test]
    fn host_names_are_taken_from_host_headers() {
        assert_eq!(host_name("survey.example.org"), Some("survey.example.org"));
        assert_eq!(host_name("localhost:8080"), Some("localhost"));
        assert_eq!(host_name("127.0.0.1:80"), Some("127.0.0.1"));
        assert_eq!(host_name("[::1]:80"), Some("[::1]"));
        assert_eq!(host_name("evil.example/path"), None);
        assert_eq!(host_name("a@b"), None);
        assert_eq!(host_name(""), None);
        assert_eq!(host_name("[zz]:80"), None);
    }
}
