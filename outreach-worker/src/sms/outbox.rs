//! A local SMS outbox, for development only: each message is appended as a JSON line to a
//! file instead of being sent. The file holds phone numbers, so it is created owner-only and
//! the worker warns at start-up whenever it is configured.

use std::{io::Write, os::unix::fs::OpenOptionsExt, path::PathBuf};

use jiff::Timestamp;
use serde::Serialize;
use tokio::sync::Mutex;
use tracing::error;

use super::{SendOutcome, SmsMessage};

/// The outbox file.
#[derive(Debug)]
pub struct SmsOutbox {
    path: PathBuf,
    lock: Mutex<u64>,
}

#[derive(Serialize)]
struct Line<'a> {
    at: String,
    to: &'a str,
    body: &'a str,
}

impl SmsOutbox {
    /// An outbox appending to `path`.
    pub fn new(path: PathBuf) -> SmsOutbox {
        SmsOutbox { path, lock: Mutex::new(0) }
    }

    /// Appends `message`; a file that cannot be written is a retry, as a provider that is
    /// down would be.
    pub async fn send(&self, message: &SmsMessage) -> SendOutcome {
        let mut count = self.lock.lock().await;
        let line = Line { at: Timestamp::now().to_string(), to: &message.to, body: &message.body };
        let written = serde_json::to_string(&line).map_err(std::io::Error::other).and_then(|json| {
            let mut file =
                std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(&self.path)?;
            writeln!(file, "{json}")
        });
        match written {
            Ok(()) => {
                *count += 1;
                SendOutcome::Sent(format!("outbox-{count}"))
            }
            Err(err) => {
                error!(path = %self.path.display(), kind = ?err.kind(), "sms outbox not writable");
                SendOutcome::Retry { status: None, attempts: 1 }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[tokio::test]
    async fn appends_one_json_line_per_message_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = SmsOutbox::new(dir.path().join("sms.jsonl"));
        for n in 1..=2 {
            let message = SmsMessage { to: format!("+1613999010{n}"), body: format!("link {n}") };
            assert_eq!(outbox.send(&message).await, SendOutcome::Sent(format!("outbox-{n}")));
        }
        let text = std::fs::read_to_string(dir.path().join("sms.jsonl")).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["to"], "+16139990102");
        assert_eq!(lines[1]["body"], "link 2");
        let mode = std::fs::metadata(dir.path().join("sms.jsonl")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[tokio::test]
    async fn an_unwritable_outbox_is_a_retry() {
        let outbox = SmsOutbox::new("/nonexistent/dir/sms.jsonl".into());
        let message = SmsMessage { to: "+16139990100".into(), body: "b".into() };
        assert!(matches!(outbox.send(&message).await, SendOutcome::Retry { .. }));
    }
}
