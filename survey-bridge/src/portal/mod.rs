//! The reports' side of the HTTPS port: sign-in (password, then a TOTP code; the code is
//! set up at the first sign-in by QR code or key), sessions, and the routes that read
//! reports, the activity log and usage, each checking the role on the server.
//!
//! A session is a random token in a `__Host-` cookie (Secure, HttpOnly, SameSite=Strict,
//! Path=/) that ends after `session_minutes` without a request; the database keeps only
//! its SHA-256. Forms carry a token bound to the session, and a form posted from another
//! site is refused before it is read ([`same_origin`]): the sign-in form has no session to
//! bind a token to, and a forged sign-in must neither count toward an account's lock nor
//! sign a browser into someone else's account. The patient pages set no cookie.

// Handlers return early with a finished response; boxing it would only add noise.
#![allow(clippy::result_large_err)]

pub mod exports;
pub mod pages;
pub mod released;
pub mod reports;

use std::sync::Arc;

use axum::{
    Router,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
    routing::get,
};
use cache_server::clock::Clock;
use sha2::{Digest, Sha256};
use tracing::error;

use crate::{
    accounts::{
        Account,
        store::{Activity, Stage},
    },
    config::ReportsConfig,
    db::Db,
    keys::Keys,
    questionnaire::Questionnaire,
};

/// The session cookie's name. `__Host-` makes browsers require Secure, Path=/ and no Domain.
pub const COOKIE: &str = "__Host-bridge_session";

/// What the portal needs.
#[derive(Debug)]
pub struct Portal {
    /// Accounts, sessions, the activity log and the aggregates.
    pub db: Db,
    /// TOTP secrets and form tokens.
    pub keys: Arc<Keys>,
    /// What reports are about.
    pub questionnaire: Arc<Questionnaire>,
    /// Time.
    pub clock: Clock,
    /// Settings.
    pub config: ReportsConfig,
    /// The noise on released units (`reports.noise_epsilon`), when configured.
    pub noise: Option<crate::report::noise::Noise>,
}

type Shared = Arc<Portal>;

/// The portal's routes.
pub fn router(portal: Portal) -> Router {
    Router::new()
        .route("/login", get(pages::login_form).post(pages::login))
        .route("/login/code", get(pages::code_form).post(pages::code))
        .route("/login/enrol", get(pages::enrol_form).post(pages::enrol))
        .route("/logout", axum::routing::post(pages::logout))
        .route("/reports", get(reports::view))
        .route("/reports/report.csv", get(reports::csv))
        .route("/reports/report.json", get(reports::json))
        .route("/reports/activity.csv", get(exports::activity))
        .route("/reports/usage.csv", get(exports::usage))
        .layer(axum::middleware::from_fn(same_origin))
        .with_state(Arc::new(portal))
}

/// Refuses (403) a form posted from another site, as the browser reports it: a
/// `Sec-Fetch-Site` other than `same-origin` or `none`, or (from a browser that does not
/// send it) an `Origin` that is not this host over HTTPS. A request that says neither (a
/// script, an old browser) goes on to the form's own checks.
async fn same_origin(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if !matches!(*request.method(), axum::http::Method::GET | axum::http::Method::HEAD)
        && !from_this_origin(request.headers(), request.uri())
    {
        return (StatusCode::FORBIDDEN, "this form must be sent from the bridge's own pages").into_response();
    }
    next.run(request).await
}

/// Whether a request's `Sec-Fetch-Site`, else its `Origin`, says it comes from the bridge's
/// own pages. Without `Sec-Fetch-Site` (older browsers), `Origin: null` is refused: the
/// reports' pages send referrers to the bridge itself ([`crate::html::PORTAL_REFERRER_POLICY`]),
/// so their own forms carry the bridge's origin, and `null` comes from a page of no origin
/// (a sandboxed frame, a `data:` page) or from a page of another site that hides its own.
fn from_this_origin(headers: &HeaderMap, uri: &axum::http::Uri) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return matches!(site.as_bytes(), b"same-origin" | b"none");
    }
    let Some(origin) = headers.get(header::ORIGIN) else { return true };
    // HTTP/1.1 names the host in `Host`, HTTP/2 in the request's authority.
    let host =
        headers.get(header::HOST).and_then(|h| h.to_str().ok()).or(uri.authority().map(|a| a.as_str()));
    match (origin.to_str().ok().and_then(|o| o.strip_prefix("https://")), host) {
        (Some(origin_host), Some(host)) => origin_host.eq_ignore_ascii_case(host),
        _ => false,
    }
}

/// A request's session: who, at which stage, and the hash its token is stored under.
#[derive(Debug)]
pub struct Session {
    /// The account.
    pub account: Account,
    /// How far signing in went.
    pub stage: Stage,
    /// The SHA-256 of the token, in hex.
    pub token_hash: String,
}

/// The SHA-256 of a session token, in hex: how sessions are stored.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The session cookie's token in `headers`, if any.
fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
        .filter(|token| token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The `Set-Cookie` value that stores `token` for `minutes`.
fn set_cookie(token: &str, minutes: u32) -> HeaderValue {
    let value =
        format!("{COOKIE}={token}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={}", minutes * 60);
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The `Set-Cookie` value that removes the session cookie.
fn clear_cookie() -> HeaderValue {
    HeaderValue::from_static("__Host-bridge_session=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0")
}

fn unavailable() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "the service is unavailable; please try again later").into_response()
}

impl Portal {
    fn now(&self) -> i64 {
        self.clock.now().as_second()
    }

    fn session_end(&self) -> i64 {
        self.now() + i64::from(self.config.session_minutes) * 60
    }

    /// The session of a request, if it has a live one for an enabled account.
    async fn session(&self, headers: &HeaderMap) -> Result<Option<Session>, Response> {
        let Some(token) = cookie_token(headers) else { return Ok(None) };
        let hash = token_hash(&token);
        let found = self.db.session(&hash, self.now()).await.map_err(|err| {
            error!(cause = %err, "session read failed");
            unavailable()
        })?;
        let Some((username, stage)) = found else { return Ok(None) };
        let account = self.db.account(&username).await.map_err(|err| {
            error!(cause = %err, "account read failed");
            unavailable()
        })?;
        match account {
            Some((account, _)) if !account.disabled => Ok(Some(Session { account, stage, token_hash: hash })),
            _ => Ok(None),
        }
    }

    /// The signed-in session of a request, its expiry pushed back; or a redirect to sign in.
    pub async fn signed_in(&self, headers: &HeaderMap) -> Result<Session, Response> {
        match self.session(headers).await? {
            Some(session) if session.stage == Stage::Full => {
                let end = self.session_end();
                self.db
                    .put_session(&session.token_hash, &session.account.username, Stage::Full, end)
                    .await
                    .map_err(|err| {
                    error!(cause = %err, "session write failed");
                    unavailable()
                })?;
                Ok(session)
            }
            _ => Err(Redirect::to("/login").into_response()),
        }
    }

    /// The form token of a session.
    pub fn csrf(&self, session: &Session) -> String {
        self.keys.csrf(&session.token_hash, "portal")
    }

    /// Adds a line to the activity log; a failure refuses the request.
    pub async fn log(
        &self,
        account: Option<&Account>,
        action: &str,
        result: &str,
        detail: Option<String>,
    ) -> Result<(), Response> {
        let entry = Activity {
            at: self.now(),
            site_id: account.and_then(|a| a.site_id.clone()),
            username: account.map_or_else(|| "(unknown)".to_string(), |a| a.username.clone()),
            action: action.into(),
            result: result.into(),
            detail,
        };
        self.db.log_activity(&entry).await.map_err(|err| {
            error!(cause = %err, "activity log write failed; refusing the request");
            unavailable()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_from_another_origin_are_told_apart() {
        let uri: axum::http::Uri = "/login".parse().unwrap();
        let h2: axum::http::Uri = "https://bridge.example:8443/login".parse().unwrap();
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.insert(*name, HeaderValue::from_static(value));
            }
            map
        };
        let host = ("host", "bridge.example:8443");
        for (pairs, uri, same) in [
            (vec![], &uri, true),
            (vec![host, ("origin", "https://bridge.example:8443")], &uri, true),
            (
                vec![host, ("origin", "https://BRIDGE.example:8443"), ("sec-fetch-site", "same-origin")],
                &uri,
                true,
            ),
            (vec![("origin", "https://bridge.example:8443")], &h2, true),
            (vec![host, ("sec-fetch-site", "none")], &uri, true),
            (vec![host, ("origin", "https://evil.example")], &uri, false),
            (vec![host, ("origin", "http://bridge.example:8443")], &uri, false),
            (vec![host, ("origin", "https://bridge.example:8443.evil.example")], &uri, false),
            (vec![host, ("origin", "null")], &uri, false),
            (vec![host, ("origin", "null"), ("sec-fetch-site", "same-origin")], &uri, true),
            (vec![host, ("origin", "null"), ("sec-fetch-site", "cross-site")], &uri, false),
            (vec![("origin", "https://bridge.example:8443")], &uri, false),
            (vec![host, ("sec-fetch-site", "cross-site")], &uri, false),
            (
                vec![host, ("sec-fetch-site", "same-site"), ("origin", "https://bridge.example:8443")],
                &uri,
                false,
            ),
        ] {
            assert_eq!(from_this_origin(&headers(&pairs), uri), same, "{pairs:?} {uri}");
        }
    }

    #[test]
    fn the_session_cookie_is_found_among_others_and_checked() {
        let token = "ab".repeat(32);
        let mut headers = HeaderMap::new();
        headers
            .insert(header::COOKIE, HeaderValue::from_str(&format!("a=b; {COOKIE}={token}; c=d")).unwrap());
        assert_eq!(cookie_token(&headers), Some(token.clone()));
        headers.insert(header::COOKIE, HeaderValue::from_static("__Host-bridge_session=../etc"));
        assert_eq!(cookie_token(&headers), None);
        let set = set_cookie(&token, 30);
        let set = set.to_str().unwrap();
        for part in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=1800"] {
            assert!(set.contains(part), "{set}");
        }
        assert_ne!(token_hash(&token), token);
    }
}
