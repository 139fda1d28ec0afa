//! Unsubscribing from email, at `/u/{guid}` on the patient port: the page a person sees,
//! and the one-click POST that mail providers send on their behalf (RFC 8058).
//!
//! `GET` only shows the page: mail scanners fetch links, so a fetch never unsubscribes.
//! `POST` unsubscribes when it carries the page's form token, or when its body is exactly
//! the one-click form `List-Unsubscribe=One-Click` (urlencoded or multipart): providers
//! send that without cookies or anything else from the page, and knowing the GUID is the
//! authority the RFC relies on. Either way the opt-out is final and reaches every
//! campaign: an unused invitation is declined, and the GUID is queued for the cache's
//! `OptOut` even when the survey was already answered. Unknown, malformed and expired
//! links answer the same 404 as `/s/` and count toward the same guessing throttle.

// Handlers return early with a finished response; boxing it would only add noise.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use axum::{
    Form, Router,
    extract::{DefaultBodyLimit, FromRequest, Path, Query, Request, State},
    http::{StatusCode, header},
    response::{Html, IntoResponse, Response},
    routing::get,
};
use cache_server::audit::{Actor, Event};
use tracing::error;

use crate::{
    client::Client,
    db::Unsubscribe,
    html::{self, Message},
    pages::{LangQuery, Pages, page, switch_href},
};

/// `/u/{guid}`: the unsubscribe page and its form, on the pages' state.
pub fn routes() -> Router<Arc<Pages>> {
    Router::new().route("/u/{guid}", get(show).post(confirm).layer(DefaultBodyLimit::max(MAX_BODY)))
}

/// The largest request body `POST /u/{guid}` reads, in bytes: a form token and a language,
/// or the one-click form.
pub const MAX_BODY: usize = 4096;

/// The form-token purpose of the unsubscribe page.
const PURPOSE: &str = "unsubscribe";

/// The one field of an RFC 8058 one-click POST, as a (name, value) pair.
pub const ONE_CLICK: (&str, &str) = ("List-Unsubscribe", "One-Click");

/// `GET /u/{guid}`: the unsubscribe page, whatever the link's state.
pub(crate) async fn show(
    State(pages): State<Arc<Pages>>,
    Client(client): Client,
    Path(guid): Path<String>,
    Query(query): Query<LangQuery>,
) -> Response {
    let link = match pages.look_up(client, &guid, query.lang.as_deref()).await {
        Ok(link) => link,
        Err(response) => return response,
    };
    // The form even when the patient has unsubscribed already: what the page shows must not
    // tell whoever holds the link what the patient did.
    let csrf = pages.keys.csrf(&link.inv.guid_hmac, PURPOSE);
    let action = format!("/u/{}", link.guid);
    Html(html::unsubscribe_page(link.lang, &action, &csrf, &switch_href(link.lang))).into_response()
}

/// `POST /u/{guid}`: unsubscribes, given the page's form token or the one-click form;
/// doing it again answers the same page.
pub(crate) async fn confirm(
    State(pages): State<Arc<Pages>>,
    Client(client): Client,
    Path(guid): Path<String>,
    Query(query): Query<LangQuery>,
    request: Request,
) -> Response {
    let fields = match form_fields(request).await {
        Ok(fields) => fields,
        Err(response) => return response,
    };
    let one_click = is_one_click(&fields);
    let field = |name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let lang = field("lang").or(query.lang.as_deref());
    let link = match pages.look_up(client, &guid, lang).await {
        Ok(link) => link,
        Err(response) => return response,
    };
    if !one_click && !field("csrf").is_some_and(|t| pages.keys.csrf_ok(&link.inv.guid_hmac, PURPOSE, t)) {
        return page(StatusCode::FORBIDDEN, link.lang, Message::NotOpen);
    }
    let outcome = pages.db.unsubscribe(&link.guid.to_string(), &link.inv.guid_hmac, pages.clock.now()).await;
    if matches!(outcome, Ok(Unsubscribe::Declined | Unsubscribe::Answered)) {
        pages.wake.notify_one();
    }
    let result = match &outcome {
        Ok(Unsubscribe::Declined | Unsubscribe::Answered) => "ok",
        Ok(Unsubscribe::AlreadyDeclined) => "already_exists",
        Ok(Unsubscribe::Unknown) => "unknown",
        Ok(Unsubscribe::Expired) => "expired",
        Err(_) => "internal",
    };
    let mut event = Event::new("OPT_OUT", result, Actor::System);
    event.guid = Some(&link.guid);
    event.detail = Some("unsubscribe");
    if let Err(response) = pages.audit(event) {
        return response;
    }
    match outcome {
        Ok(Unsubscribe::Declined | Unsubscribe::Answered | Unsubscribe::AlreadyDeclined) => {
            page(StatusCode::OK, link.lang, Message::Unsubscribed)
        }
        // The link expired since it was looked up.
        Ok(Unsubscribe::Unknown | Unsubscribe::Expired) => {
            page(StatusCode::NOT_FOUND, link.lang, Message::NotOpen)
        }
        Err(err) => {
            error!(cause = %err, "unsubscribe failed");
            page(StatusCode::SERVICE_UNAVAILABLE, link.lang, Message::NotOpen)
        }
    }
}

/// Whether `fields` are exactly the RFC 8058 one-click form.
pub fn is_one_click(fields: &[(String, String)]) -> bool {
    matches!(fields, [(name, value)] if name == ONE_CLICK.0 && value == ONE_CLICK.1)
}

/// The fields of a form body, urlencoded or multipart; none for other bodies (which can
/// then only fail the token check).
async fn form_fields(request: Request) -> Result<Vec<(String, String)>, Response> {
    let content_type =
        request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match essence.as_str() {
        "application/x-www-form-urlencoded" => {
            let Form(fields) = Form::<Vec<(String, String)>>::from_request(request, &())
                .await
                .map_err(IntoResponse::into_response)?;
            Ok(fields)
        }
        "multipart/form-data" => {
            let body =
                axum::body::Bytes::from_request(request, &()).await.map_err(IntoResponse::into_response)?;
            boundary(&content_type).and_then(|boundary| multipart_fields(&body, &boundary)).ok_or_else(|| {
                (StatusCode::BAD_REQUEST, "malformed multipart/form-data body").into_response()
            })
        }
        _ => Ok(Vec::new()),
    }
}

/// The `boundary` parameter of a `multipart/form-data` content type.
pub fn boundary(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let value = value.trim();
        let value = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value);
        (!value.is_empty() && value.len() <= 70).then(|| value.to_string())
    })
}

/// The text fields of a `multipart/form-data` body (RFC 7578), or none if it is malformed
/// or holds a file. Only as much of the format as a one-click POST needs: each part's
/// `Content-Disposition` names it, and its body is its UTF-8 value.
pub fn multipart_fields(body: &[u8], boundary: &str) -> Option<Vec<(String, String)>> {
    let body = std::str::from_utf8(body).ok()?.replace("\r\n", "\n");
    let delimiter = format!("--{boundary}");
    // Whatever precedes the first delimiter is a preamble, to be ignored.
    let (_, mut rest) = body.split_once(&delimiter)?;
    let mut fields = Vec::new();
    loop {
        if rest.starts_with("--") {
            return Some(fields);
        }
        rest = rest.trim_start_matches([' ', '\t']).strip_prefix('\n')?;
        let (part, after) = rest.split_once(&format!("\n{delimiter}"))?;
        let (headers, value) = part.split_once("\n\n")?;
        let mut name = None;
        for line in headers.lines() {
            let (header, content) = line.split_once(':')?;
            if header.trim().eq_ignore_ascii_case("content-disposition") {
                name = Some(disposition_name(content)?);
            }
        }
        fields.push((name?, value.to_string()));
        rest = after;
    }
}

/// The field name of a `form-data` content disposition with no file name.
fn disposition_name(content: &str) -> Option<String> {
    let mut params = content.split(';');
    if !params.next()?.trim().eq_ignore_ascii_case("form-data") {
        return None;
    }
    let mut name = None;
    for param in params {
        let (key, value) = param.split_once('=')?;
        let value = value.trim();
        let value = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value);
        match key.trim().to_ascii_lowercase().as_str() {
            "name" => name = Some(value.to_string()),
            "filename" | "filename*" => return None,
            _ => {}
        }
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(fields: &[(&str, &str)]) -> Vec<(String, String)> {
        fields.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    #[test]
    fn one_click_is_exactly_one_field() {
        assert!(is_one_click(&pairs(&[("List-Unsubscribe", "One-Click")])));
        assert!(!is_one_click(&pairs(&[])));
        assert!(!is_one_click(&pairs(&[("List-Unsubscribe", "one-click")])));
        assert!(!is_one_click(&pairs(&[("list-unsubscribe", "One-Click")])));
        assert!(!is_one_click(&pairs(&[("List-Unsubscribe", "One-Click"), ("csrf", "x")])));
    }

    #[test]
    fn boundary_is_read_plain_or_quoted() {
        assert_eq!(boundary("multipart/form-data; boundary=abc").as_deref(), Some("abc"));
        assert_eq!(boundary("multipart/form-data; charset=utf-8; Boundary=\"a b\"").as_deref(), Some("a b"));
        assert_eq!(boundary("multipart/form-data"), None);
        assert_eq!(boundary("multipart/form-data; boundary=\"\""), None);
        assert_eq!(boundary(&format!("multipart/form-data; boundary={}", "x".repeat(71))), None);
    }

    #[test]
    fn the_one_click_multipart_body_parses() {
        let body = "--XyZ\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\n\
                    One-Click\r\n--XyZ--\r\n";
        let fields = multipart_fields(body.as_bytes(), "XyZ").unwrap();
        assert!(is_one_click(&fields), "{fields:?}");
        // A preamble, a part content type, bare newlines.
        let body = "preamble\n--b\nContent-Type: text/plain\nContent-Disposition: form-data; name=a\n\n1\n\
                    --b\nContent-Disposition: form-data; name=\"c\"\n\n\n--b--";
        assert_eq!(multipart_fields(body.as_bytes(), "b").unwrap(), pairs(&[("a", "1"), ("c", "")]));
    }

    #[test]
    fn malformed_multipart_bodies_are_refused() {
        for body in [
            "",
            "no delimiter",
            "--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1",
            "--b\r\nContent-Disposition: form-data\r\n\r\n1\r\n--b--",
            "--b\r\nContent-Disposition: attachment; name=\"a\"\r\n\r\n1\r\n--b--",
            "--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"x\"\r\n\r\n1\r\n--b--",
            "--b\r\nno colon\r\n\r\n1\r\n--b--",
            "--b\r\nContent-Disposition: form-data; name=\"a\"\r\n1\r\n--b--",
        ] {
            assert_eq!(multipart_fields(body.as_bytes(), "b"), None, "{body:?}");
        }
        assert_eq!(multipart_fields(&[0xff, 0xfe], "b"), None);
    }
}
