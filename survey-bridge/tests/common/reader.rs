//! A report reader: accounts made with the `account` subcommand, and a browser-like HTTPS
//! client that signs in (password, then TOTP) and keeps its session cookie.

use std::process::Command;

use reqwest::{StatusCode, header};

use super::Bridge;

/// Runs `survey-bridge account ...` against the bridge's database; returns stdout.
pub fn account(bridge: &Bridge, args: &[&str]) -> (Option<i32>, String, String) {
    let config_file = bridge.path("account.toml");
    std::fs::write(&config_file, toml::to_string(&bridge.config).unwrap()).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_survey-bridge"))
        .arg("--config")
        .arg(&config_file)
        .arg("account")
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Creates an account; returns its first password.
pub fn add(bridge: &Bridge, args: &[&str]) -> String {
    let mut all = vec!["add"];
    all.extend_from_slice(args);
    let (code, out, err) = account(bridge, &all);
    assert_eq!(code, Some(0), "{out} {err}");
    out.split("first password: ").nth(1).unwrap().split_whitespace().next().unwrap().to_string()
}

/// A browser-like client: keeps the session cookie by hand (the cookie is `Secure`, and
/// the test checks its attributes).
pub struct Reader<'a> {
    pub bridge: &'a Bridge,
    pub http: reqwest::Client,
    pub cookie: Option<String>,
}

impl<'a> Reader<'a> {
    pub fn new(bridge: &'a Bridge) -> Self {
        Reader { bridge, http: bridge.http(), cookie: None }
    }

    pub fn keep_cookie(&mut self, response: &reqwest::Response) {
        if let Some(set) = response.headers().get(header::SET_COOKIE) {
            let set = set.to_str().unwrap();
            for attribute in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
                assert!(set.contains(attribute), "{set}");
            }
            let pair = set.split(';').next().unwrap();
            self.cookie = if pair.ends_with('=') { None } else { Some(pair.to_string()) };
        }
    }

    pub async fn get(&mut self, path: &str) -> reqwest::Response {
        let mut request = self.http.get(self.bridge.url(path));
        if let Some(cookie) = &self.cookie {
            request = request.header(header::COOKIE, cookie);
        }
        let response = request.send().await.unwrap();
        self.keep_cookie(&response);
        response
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let mut request = self.http.post(self.bridge.url(path)).form(form);
        if let Some(cookie) = &self.cookie {
            request = request.header(header::COOKIE, cookie);
        }
        let response = request.send().await.unwrap();
        self.keep_cookie(&response);
        response
    }

    pub async fn password(&mut self, username: &str, password: &str) -> reqwest::Response {
        self.post("/login", &[("username", username), ("password", password)]).await
    }

    /// The six digits an authenticator shows for `key` at the bridge's time.
    pub fn code(&self, key: &str) -> String {
        let secret = totp_rs::Secret::Encoded(key.to_string()).to_bytes().unwrap();
        let totp = totp_rs::TOTP::new_unchecked(totp_rs::Algorithm::SHA1, 6, 1, 30, secret);
        totp.generate(self.bridge.clock.now().as_second() as u64)
    }

    /// Signs in for the first time: password, then the second factor set up from the key
    /// on the enrolment page. Returns the key.
    pub async fn first_sign_in(&mut self, username: &str, password: &str) -> String {
        let response = self.password(username, password).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert!(response.headers()["location"].to_str().unwrap().starts_with("/login/enrol"));
        let page = self.get("/login/enrol").await.text().await.unwrap();
        assert!(page.contains("<svg"), "a QR code");
        let key = between(&page, "<code id=\"totp-key\">", "</code>");
        let code = self.code(&key);
        let done = self.post("/login/enrol", &[("csrf", &super::csrf(&page)), ("code", &code)]).await;
        assert_eq!(done.status(), StatusCode::SEE_OTHER);
        assert!(done.headers()["location"].to_str().unwrap().starts_with("/reports"));
        key
    }

    pub async fn json(&mut self, query: &str) -> (StatusCode, serde_json::Value) {
        let response = self.get(&format!("/reports/report.json{query}")).await;
        let status = response.status();
        (status, response.json().await.unwrap_or(serde_json::Value::Null))
    }
}

pub fn between(page: &str, start: &str, end: &str) -> String {
    let from = page.find(start).unwrap() + start.len();
    page[from..from + page[from..].find(end).unwrap()].to_string()
}
