//! The worker's email settings against the test SMTP sink ([`super::smtp::SmtpSink`]).

use outreach_worker::{
    config::EmailSettings,
    email::{EmailConfig, SmtpTls},
};

/// SMTP settings for a sink on 127.0.0.1:`port`: `tls`, no login, `from` as the sender, the
/// public roots only, two connections and a 10-second time-out.
pub fn smtp_config(port: u16, tls: SmtpTls, from: &str) -> EmailConfig {
    EmailConfig {
        host: "127.0.0.1".into(),
        port,
        tls,
        username: None,
        password: None,
        from: from.into(),
        ca_file: None,
        pool_max: 2,
        timeout_seconds: 10,
    }
}

/// The worker's `[email]` settings: [`smtp_config`] in plaintext, 100 messages a second.
pub fn email_settings(port: u16, from: &str) -> EmailSettings {
    EmailSettings { smtp: smtp_config(port, SmtpTls::None, from), password_file: None, per_second: 100 }
}
