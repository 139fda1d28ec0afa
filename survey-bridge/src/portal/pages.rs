//! Signing in and out: the password form, the code form, setting up the second factor.
//!
//! Every failure gets the same words, so that the form tells nobody whether a user name
//! exists or an account is locked; the activity log records which it was.

#![allow(clippy::result_large_err)]

use axum::{
    Form,
    extract::{Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{Html, IntoResponse, Redirect, Response},
};
use serde::Deserialize;
use tracing::error;

use super::{Shared, clear_cookie, set_cookie, token_hash, unavailable};
use crate::{
    accounts::{self, store::Stage},
    html::{FOOT, escape, portal_head, tr},
    questionnaire::Lang,
};

/// `?lang=fr`.
#[derive(Debug, Deserialize)]
pub struct LangQuery {
    lang: Option<String>,
}

fn lang_of(query: &LangQuery) -> Lang {
    query.lang.as_deref().and_then(Lang::parse).unwrap_or(Lang::En)
}

const FAILED_EN: &str =
    "Sign-in failed: the user name, password or code is wrong, or the account is locked for a while.";
const FAILED_FR: &str = "Échec de la connexion : le nom d'utilisateur, le mot de passe ou le code est erroné, ou le compte est verrouillé pour un moment.";

fn login_page(lang: Lang, status: StatusCode, failed: bool) -> Response {
    let mut body = portal_head(lang, tr(lang, "Sign in", "Connexion"));
    body.push_str(&format!("<h1>{}</h1>\n", tr(lang, "Sign in to the reports", "Connexion aux rapports")));
    if failed {
        body.push_str(&format!("<p class=\"error\" role=\"alert\">{}</p>\n", tr(lang, FAILED_EN, FAILED_FR)));
    }
    body.push_str(&format!(
        "<form method=\"post\" action=\"/login?lang={l}\">\n\
         <p><label for=\"username\">{user}</label>\n<input id=\"username\" name=\"username\" autocomplete=\"username\" required></p>\n\
         <p><label for=\"password\">{pass}</label>\n<input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required></p>\n\
         <p><button type=\"submit\">{go}</button></p>\n</form>\n",
        l = lang.as_str(),
        user = tr(lang, "User name", "Nom d'utilisateur"),
        pass = tr(lang, "Password", "Mot de passe"),
        go = tr(lang, "Continue", "Continuer"),
    ));
    body.push_str(FOOT);
    (status, Html(body)).into_response()
}

fn code_page(
    lang: Lang,
    status: StatusCode,
    csrf: &str,
    failed: bool,
    enrol: Option<(&str, &str)>,
) -> Response {
    let (title, action) = match enrol {
        Some(_) => (tr(lang, "Set up your second factor", "Configurer votre second facteur"), "/login/enrol"),
        None => (tr(lang, "Enter your code", "Entrez votre code"), "/login/code"),
    };
    let mut body = portal_head(lang, title);
    body.push_str(&format!("<h1>{title}</h1>\n"));
    if failed {
        body.push_str(&format!("<p class=\"error\" role=\"alert\">{}</p>\n", tr(lang, FAILED_EN, FAILED_FR)));
    }
    if let Some((qr, key)) = enrol {
        body.push_str(&format!(
            "<p>{}</p>\n<figure class=\"qr\" aria-label=\"{}\">{qr}</figure>\n<p>{} <code id=\"totp-key\">{}</code></p>\n",
            tr(
                lang,
                "Scan this code with an authenticator app (FreeOTP, Google Authenticator, Microsoft Authenticator, ...), then enter the six digits it shows.",
                "Balayez ce code avec une application d'authentification (FreeOTP, Google Authenticator, Microsoft Authenticator, ...), puis entrez les six chiffres affichés.",
            ),
            tr(lang, "QR code for the authenticator app", "Code QR pour l'application d'authentification"),
            tr(lang, "Or type this key:", "Ou tapez cette clé :"),
            escape(key),
        ));
    }
    body.push_str(&format!(
        "<form method=\"post\" action=\"{action}?lang={l}\">\n<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\n\
         <p><label for=\"code\">{label}</label>\n<input id=\"code\" name=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\" pattern=\"[0-9]{{6}}\" maxlength=\"6\" required></p>\n\
         <p><button type=\"submit\">{go}</button></p>\n</form>\n",
        l = lang.as_str(),
        csrf = escape(csrf),
        label = tr(lang, "Six-digit code", "Code à six chiffres"),
        go = tr(lang, "Sign in", "Se connecter"),
    ));
    body.push_str(FOOT);
    (status, Html(body)).into_response()
}

/// `GET /login`.
pub async fn login_form(Query(query): Query<LangQuery>) -> Response {
    login_page(lang_of(&query), StatusCode::OK, false)
}

/// The password form.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
}

/// `POST /login`: the password.
pub async fn login(
    State(portal): State<Shared>,
    Query(query): Query<LangQuery>,
    Form(form): Form<LoginForm>,
) -> Response {
    let lang = lang_of(&query);
    let failed = || login_page(lang, StatusCode::UNAUTHORIZED, true);
    let now = portal.now();
    let found = match portal.db.account(form.username.trim()).await {
        Ok(found) => found,
        Err(err) => {
            error!(cause = %err, "account read failed");
            return unavailable();
        }
    };
    let Some((account, secrets)) = found else {
        // As long as for a real account, so timing tells nothing.
        let _ = accounts::verify_password(&form.password, accounts::dummy_hash());
        return match portal.log(None, "LOGIN", "unknown_user", None).await {
            Ok(()) => failed(),
            Err(response) => response,
        };
    };
    // The password is checked whatever the account's state, so that a locked or disabled
    // account takes as long to refuse as a wrong password: timing tells nothing.
    let password_ok = accounts::verify_password(&form.password, &secrets.password_hash);
    let result = if account.disabled {
        "disabled"
    } else if account.locked_until > now {
        "locked"
    } else if !password_ok {
        let lock_until = now + i64::from(portal.config.lockout_minutes) * 60;
        match portal
            .db
            .sign_in_failed(&account.username, i64::from(portal.config.max_failures), lock_until)
            .await
        {
            Ok(true) => "wrong_password_now_locked",
            Ok(false) => "wrong_password",
            Err(err) => {
                error!(cause = %err, "account write failed");
                return unavailable();
            }
        }
    } else {
        "ok"
    };
    if result == "wrong_password_now_locked"
        && let Err(err) = portal.db.end_pending_sessions(&account.username).await
    {
        error!(cause = %err, "session write failed");
    }
    if let Err(response) = portal.log(Some(&account), "LOGIN", result, None).await {
        return response;
    }
    if result != "ok" {
        return failed();
    }
    let stage = if account.totp_enrolled { Stage::Password } else { Stage::Enrol };
    let Ok(token) = accounts::new_session_token() else { return unavailable() };
    // Only minutes to enter the code.
    let expires = now + 5 * 60;
    if let Err(err) = portal.db.put_session(&token_hash(&token), &account.username, stage, expires).await {
        error!(cause = %err, "session write failed");
        return unavailable();
    }
    let next = match stage {
        Stage::Enrol => "/login/enrol",
        _ => "/login/code",
    };
    let mut response = Redirect::to(&format!("{next}?lang={}", lang.as_str())).into_response();
    response.headers_mut().insert(header::SET_COOKIE, set_cookie(&token, 5));
    response
}

/// `GET /login/code`.
pub async fn code_form(
    State(portal): State<Shared>,
    Query(query): Query<LangQuery>,
    headers: HeaderMap,
) -> Response {
    let lang = lang_of(&query);
    match portal.session(&headers).await {
        Ok(Some(session)) if session.stage == Stage::Password => {
            code_page(lang, StatusCode::OK, &portal.csrf(&session), false, None)
        }
        Ok(_) => Redirect::to("/login").into_response(),
        Err(response) => response,
    }
}

/// `GET /login/enrol`: the QR code and key of the account's TOTP secret.
pub async fn enrol_form(
    State(portal): State<Shared>,
    Query(query): Query<LangQuery>,
    headers: HeaderMap,
) -> Response {
    let lang = lang_of(&query);
    let session = match portal.session(&headers).await {
        Ok(Some(session)) if session.stage == Stage::Enrol => session,
        Ok(_) => return Redirect::to("/login").into_response(),
        Err(response) => return response,
    };
    enrol_page(&portal, lang, &session, StatusCode::OK, false).await
}

async fn enrol_page(
    portal: &Shared,
    lang: Lang,
    session: &super::Session,
    status: StatusCode,
    failed: bool,
) -> Response {
    let nonce = match portal.db.account(&session.account.username).await {
        Ok(Some((_, secrets))) => secrets.totp_nonce,
        Ok(None) => None,
        Err(err) => {
            error!(cause = %err, "account read failed");
            return unavailable();
        }
    };
    let Some(nonce) = nonce else { return Redirect::to("/login").into_response() };
    let totp = accounts::totp(&portal.keys, &nonce);
    let uri = accounts::otpauth_uri(&totp, &portal.config.totp_issuer, &session.account.username);
    let qr = accounts::qr_svg(&uri).unwrap_or_default();
    code_page(lang, status, &portal.csrf(session), failed, Some((&qr, &totp.get_secret_base32())))
}

/// The code form.
#[derive(Debug, Deserialize)]
pub struct CodeForm {
    csrf: String,
    code: String,
}

/// `POST /login/code`.
pub async fn code(
    State(portal): State<Shared>,
    Query(query): Query<LangQuery>,
    headers: HeaderMap,
    Form(form): Form<CodeForm>,
) -> Response {
    second_factor(portal, lang_of(&query), headers, form, Stage::Password).await
}

/// `POST /login/enrol`: the first code, which confirms the set-up.
pub async fn enrol(
    State(portal): State<Shared>,
    Query(query): Query<LangQuery>,
    headers: HeaderMap,
    Form(form): Form<CodeForm>,
) -> Response {
    second_factor(portal, lang_of(&query), headers, form, Stage::Enrol).await
}

async fn second_factor(
    portal: Shared,
    lang: Lang,
    headers: HeaderMap,
    form: CodeForm,
    stage: Stage,
) -> Response {
    let session = match portal.session(&headers).await {
        Ok(Some(session)) if session.stage == stage => session,
        Ok(_) => return Redirect::to("/login").into_response(),
        Err(response) => return response,
    };
    if !portal.keys.csrf_ok(&session.token_hash, "portal", &form.csrf) {
        return (StatusCode::FORBIDDEN, "the form is stale; sign in again").into_response();
    }
    let now = portal.now();
    let action = if stage == Stage::Enrol { "TOTP_ENROLLED" } else { "TOTP" };
    // The account as it is now, not as it was when this session began: one lock per
    // account, whichever session tripped it.
    let (account, nonce) = match portal.db.account(&session.account.username).await {
        Ok(Some((account, secrets))) => (account, secrets.totp_nonce),
        Ok(None) => return Redirect::to("/login").into_response(),
        Err(err) => {
            error!(cause = %err, "account read failed");
            return unavailable();
        }
    };
    let account = &account;
    if account.disabled || account.locked_until > now {
        let result = if account.disabled { "disabled" } else { "locked" };
        if let Err(response) = portal.log(Some(account), action, result, None).await {
            return response;
        }
        let _ = portal.db.end_session(&session.token_hash, now).await;
        let mut response = login_page(lang, StatusCode::UNAUTHORIZED, true);
        response.headers_mut().insert(header::SET_COOKIE, clear_cookie());
        return response;
    }
    let step =
        nonce.and_then(|nonce| accounts::check_code(&accounts::totp(&portal.keys, &nonce), &form.code, now));
    let fresh = match step {
        Some(step) => portal.db.use_totp_step(&account.username, step).await,
        None => Ok(false),
    };
    let ok = match fresh {
        Ok(ok) => ok,
        Err(err) => {
            error!(cause = %err, "account write failed");
            return unavailable();
        }
    };
    if !ok {
        let lock_until = now + i64::from(portal.config.lockout_minutes) * 60;
        let locked = portal
            .db
            .sign_in_failed(&account.username, i64::from(portal.config.max_failures), lock_until)
            .await;
        let result = match (&step, &locked) {
            (_, Ok(true)) => "wrong_code_now_locked",
            (Some(_), _) => "code_reused",
            (None, _) => "wrong_code",
        };
        if let Err(response) = portal.log(Some(account), action, result, None).await {
            return response;
        }
        if matches!(locked, Ok(true)) || locked.is_err() {
            let _ = portal.db.end_session(&session.token_hash, now).await;
            // Every other attempt in progress ends with it.
            if let Err(err) = portal.db.end_pending_sessions(&account.username).await {
                error!(cause = %err, "session write failed");
            }
            let mut response = login_page(lang, StatusCode::UNAUTHORIZED, true);
            response.headers_mut().insert(header::SET_COOKIE, clear_cookie());
            return response;
        }
        return match stage {
            Stage::Enrol => enrol_page(&portal, lang, &session, StatusCode::UNAUTHORIZED, true).await,
            _ => code_page(lang, StatusCode::UNAUTHORIZED, &portal.csrf(&session), true, None),
        };
    }
    if let Err(err) = portal.db.sign_in_succeeded(&account.username).await {
        error!(cause = %err, "account write failed");
        return unavailable();
    }
    if let Err(response) = portal.log(Some(account), action, "ok", None).await {
        return response;
    }
    // A new token for the signed-in session, so that one seen before sign-in is worthless.
    let _ = portal.db.end_session(&session.token_hash, now).await;
    let Ok(token) = accounts::new_session_token() else { return unavailable() };
    if let Err(err) =
        portal.db.put_session(&token_hash(&token), &account.username, Stage::Full, portal.session_end()).await
    {
        error!(cause = %err, "session write failed");
        return unavailable();
    }
    let mut response = Redirect::to(&format!("/reports?lang={}", lang.as_str())).into_response();
    response.headers_mut().insert(header::SET_COOKIE, set_cookie(&token, portal.config.session_minutes));
    response
}

/// The sign-out form.
#[derive(Debug, Deserialize)]
pub struct LogoutForm {
    csrf: String,
}

/// `POST /logout`.
pub async fn logout(
    State(portal): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<LogoutForm>,
) -> Response {
    if let Ok(Some(session)) = portal.session(&headers).await
        && portal.keys.csrf_ok(&session.token_hash, "portal", &form.csrf)
    {
        let _ = portal.db.end_session(&session.token_hash, portal.now()).await;
        if let Err(response) = portal.log(Some(&session.account), "LOGOUT", "ok", None).await {
            return response;
        }
    }
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().insert(header::SET_COOKIE, clear_cookie());
    response
}
