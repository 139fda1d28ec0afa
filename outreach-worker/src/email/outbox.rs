//! A local email outbox, for development only: each message is written as one file of a
//! Maildir (`<dir>/new/`, as mail readers and `mutt -f <dir>` take it) instead of being sent.
//! The files hold email addresses, so the directories are created owner-only (0700), the
//! files owner-only (0600), and the worker warns at start-up whenever it is configured.
//!
//! Each file is written in `tmp/` and renamed into `new/` once complete, so that a reader of
//! `new/` never sees half a message. A file that cannot be written is a retry, as a relay that
//! is down would be; the error names the directory and the kind of failure only.

use std::{
    fs::{DirBuilder, OpenOptions},
    io::Write,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use lettre::Message;
use tracing::{debug, error};

use super::{EmailError, EmailOutcome};

/// A Maildir that messages are written into.
#[derive(Debug)]
pub struct MailOutbox {
    dir: PathBuf,
}

impl MailOutbox {
    /// The Maildir `dir`, created with its `tmp`, `new` and `cur` if missing.
    pub fn create(dir: PathBuf) -> Result<MailOutbox, EmailError> {
        if dir.as_os_str().is_empty() {
            return Err(EmailError::Outbox { path: String::new(), reason: "must not be empty".into() });
        }
        let mut builder = DirBuilder::new();
        builder.recursive(true).mode(0o700);
        for sub in ["tmp", "new", "cur"] {
            builder.create(dir.join(sub)).map_err(|e| EmailError::Outbox {
                path: dir.display().to_string(),
                reason: format!("cannot create {sub}/: {e}"),
            })?;
        }
        Ok(MailOutbox { dir })
    }

    /// The Maildir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes `email` into `new/`: [`EmailOutcome::Sent`], or [`EmailOutcome::Retry`] when it
    /// cannot be written.
    pub fn write(&self, email: &Message) -> EmailOutcome {
        // Maildir's unique name: the time, something unique to this delivery, the host.
        let secs = jiff::Timestamp::now().as_second();
        let name = format!("{secs}.{}.outreach-worker", uuid::Uuid::new_v4().simple());
        let (tmp, new) = (self.dir.join("tmp").join(&name), self.dir.join("new").join(&name));
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut file| {
                file.write_all(&email.formatted())?;
                file.sync_all()
            })
            .and_then(|()| std::fs::rename(&tmp, &new));
        match written {
            Ok(()) => {
                debug!("email written to the local outbox");
                EmailOutcome::Sent
            }
            Err(err) => {
                let _ = std::fs::remove_file(&tmp);
                error!(path = %self.dir.display(), kind = ?err.kind(), "email outbox not writable");
                EmailOutcome::Retry { code: None }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn email(to: &str) -> Message {
        Message::builder()
            .from("Survey <survey@clinic.example.org>".parse().expect("from"))
            .to(to.parse().expect("to"))
            .subject("Survey")
            .body("https://bridge.example.org/s/3f2a9c4e-8b1d-4e6f-a2c5-7d9e0b1f4a6c".to_string())
            .expect("message")
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777
    }

    #[test]
    fn each_message_is_one_owner_only_file_in_new() {
        let dir = tempfile::tempdir().expect("tempdir");
        let maildir = dir.path().join("mail");
        let outbox = MailOutbox::create(maildir.clone()).expect("outbox");
        for n in 1..=2 {
            assert_eq!(outbox.write(&email(&format!("patient{n}@example.net"))), EmailOutcome::Sent);
        }
        let files: Vec<PathBuf> =
            std::fs::read_dir(maildir.join("new")).expect("new/").map(|e| e.expect("entry").path()).collect();
        assert_eq!(files.len(), 2);
        for file in &files {
            assert_eq!(mode(file), 0o600, "{}", file.display());
            let text = std::fs::read_to_string(file).expect("read");
            assert!(text.contains("/s/3f2a9c4e-8b1d-4e6f-a2c5-7d9e0b1f4a6c"), "{text}");
        }
        assert_eq!(std::fs::read_dir(maildir.join("tmp")).expect("tmp/").count(), 0, "nothing left in tmp/");
        for sub in ["", "tmp", "new", "cur"] {
            assert_eq!(mode(&maildir.join(sub)), 0o700, "{sub}");
        }
    }

    #[test]
    fn an_unusable_directory_is_named_and_an_unwritable_one_is_a_retry() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("a-file");
        std::fs::write(&file, "").expect("write");
        let err = MailOutbox::create(file.join("mail")).expect_err("not a directory");
        assert!(err.to_string().starts_with("email_outbox ") && err.to_string().contains("a-file"), "{err}");
        let err = MailOutbox::create(PathBuf::new()).expect_err("empty");
        assert!(err.to_string().contains("must not be empty"), "{err}");

        let outbox = MailOutbox::create(dir.path().join("mail")).expect("outbox");
        std::fs::remove_dir_all(dir.path().join("mail")).expect("remove");
        assert_eq!(outbox.write(&email("patient@example.net")), EmailOutcome::Retry { code: None });
    }
}
