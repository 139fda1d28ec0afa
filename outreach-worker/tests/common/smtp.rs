//! A local SMTP sink for tests: Debian's aiosmtpd (`/usr/bin/python3 -m aiosmtpd`) as a child
//! process on a loopback port, delivering into a Maildir that [`SmtpSink::messages`] reads.
//!
//! Plain SMTP by default; STARTTLS or implicit TLS with a certificate for `localhost` and
//! `127.0.0.1` signed by a test CA made with the `openssl` CLI ([`SmtpSink::ca_file`]). With
//! [`SmtpOptions::reject`], [`SmtpOptions::defer`] or [`SmtpOptions::login`], a small handler
//! module (a `Mailbox` subclass) answers 550 or 451 for given recipients, or requires AUTH
//! PLAIN/LOGIN with given credentials.
//!
//! When aiosmtpd is not installed, [`SmtpSink::start`] returns `None` after printing a skip
//! note, unless `OUTREACH_REQUIRE_SMTP=1`, when it panics. The child is killed on drop.

use std::{
    fs,
    io::Read,
    net::{Ipv4Addr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use base64::Engine;

/// Debian's Python: the `python3` first on PATH may not see Debian's packages.
const PYTHON: &str = "/usr/bin/python3";

/// The handler used when a sink must reject, defer or authenticate.
const HANDLER: &str = r#"
import base64
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import MISSING


class Sink(Mailbox):
    """A Maildir sink that can refuse recipients and require AUTH PLAIN or LOGIN."""

    def __init__(self, maildir, reject=(), defer=(), login=None):
        super().__init__(maildir)
        self.reject = {a.lower() for a in reject}
        self.defer = {a.lower() for a in defer}
        self.login = login

    @classmethod
    def from_cli(cls, parser, *args):
        if not args:
            parser.error("The directory for the maildir is required")
        reject, defer, login = [], [], None
        for arg in args[1:]:
            key, _, value = arg.partition("=")
            if key == "reject":
                reject.append(value)
            elif key == "defer":
                defer.append(value)
            elif key == "login":
                login = value
            else:
                parser.error("unknown option " + arg)
        return cls(args[0], reject, defer, login)

    async def handle_AUTH(self, server, session, envelope, args):
        if self.login is None:
            return "504 5.5.4 Unrecognized authentication type"
        mechanism = args[0].upper()
        if mechanism == "PLAIN":
            if len(args) > 1:
                blob = base64.b64decode(args[1])
            else:
                blob = await server.challenge_auth("")
                if blob is MISSING:
                    return None
            parts = blob.split(b"\0")
            given = (parts[-2] + b":" + parts[-1]).decode() if len(parts) == 3 else None
        elif mechanism == "LOGIN":
            user = await server.challenge_auth("Username:")
            if user is MISSING:
                return None
            password = await server.challenge_auth("Password:")
            if password is MISSING:
                return None
            given = (user + b":" + password).decode()
        else:
            return "504 5.5.4 Unrecognized authentication type"
        if given != self.login:
            return "535 5.7.8 Authentication credentials invalid"
        session.authenticated = True
        return "235 2.7.0 Authentication successful"

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.login is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        # Like many servers, the answers echo the address.
        if address.lower() in self.reject:
            return "550 5.1.1 <%s>: no such user" % address
        if address.lower() in self.defer:
            return "451 4.3.0 <%s>: try again later" % address
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"
"#;

/// How a sink behaves.
#[derive(Debug, Clone, Default)]
pub struct SmtpOptions {
    /// Offer STARTTLS, and require it before mail.
    pub starttls: bool,
    /// Speak TLS from the first byte (SMTPS).
    pub implicit_tls: bool,
    /// Recipients answered `550 5.1.1 <addr>: no such user`.
    pub reject: Vec<String>,
    /// Recipients answered `451 4.3.0 <addr>: try again later`.
    pub defer: Vec<String>,
    /// Credentials (`user`, `password`) required by AUTH before MAIL (only offered over TLS).
    pub login: Option<(String, String)>,
}

/// A running aiosmtpd, killed on drop.
pub struct SmtpSink {
    /// The loopback port it listens on.
    pub port: u16,
    /// The Maildir it delivers into.
    pub maildir: PathBuf,
    child: Child,
    dir: tempfile::TempDir,
}

/// One delivered message: its headers (unfolded, in order) and raw body.
#[derive(Debug, Clone)]
pub struct Mail {
    /// The whole file.
    pub raw: String,
    /// Name and value of each header, continuation lines joined.
    pub headers: Vec<(String, String)>,
    /// Everything after the blank line.
    pub body: String,
}

/// Whether Debian's aiosmtpd can be imported.
pub fn available() -> bool {
    Command::new(PYTHON)
        .args(["-c", "import aiosmtpd"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap().port()
}

/// Runs `openssl` with `args` in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl").args(args).current_dir(dir).output().expect("run openssl");
    assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

/// Makes `ca.pem` and `server.pem`/`server.key` (for `localhost` and `127.0.0.1`) in `dir`.
fn make_certificates(dir: &Path) {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=outreach-worker test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(dir, &ca);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend(["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]);
    openssl(dir, &csr);
    fs::write(
        dir.join("server.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n\
         subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    );
}

impl SmtpSink {
    /// Starts a sink, or returns `None` (after a skip note) when aiosmtpd is missing and
    /// `OUTREACH_REQUIRE_SMTP=1` is not set.
    pub fn start(options: SmtpOptions) -> Option<SmtpSink> {
        if !available() {
            let required = std::env::var("OUTREACH_REQUIRE_SMTP").is_ok_and(|v| v == "1");
            assert!(!required, "OUTREACH_REQUIRE_SMTP=1 but {PYTHON} cannot import aiosmtpd");
            eprintln!("skipped: {PYTHON} cannot import aiosmtpd (apt-get install python3-aiosmtpd)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let maildir = dir.path().join("Maildir");
        for sub in ["cur", "new", "tmp"] {
            fs::create_dir_all(maildir.join(sub)).unwrap();
        }
        if options.starttls || options.implicit_tls {
            make_certificates(dir.path());
        }
        let custom = !options.reject.is_empty() || !options.defer.is_empty() || options.login.is_some();
        if custom {
            fs::write(dir.path().join("outreach_sink.py"), HANDLER).unwrap();
        }
        let mut last_log = String::new();
        for _ in 0..5 {
            let port = free_port();
            let log = dir.path().join(format!("aiosmtpd-{port}.log"));
            let mut command = Command::new(PYTHON);
            command.args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")]);
            if options.starttls {
                command.arg("--tlscert").arg(dir.path().join("server.pem"));
                command.arg("--tlskey").arg(dir.path().join("server.key"));
            }
            if options.implicit_tls {
                command.arg("--smtpscert").arg(dir.path().join("server.pem"));
                command.arg("--smtpskey").arg(dir.path().join("server.key"));
            }
            if custom {
                command.env("PYTHONPATH", dir.path());
                command.args(["-c", "outreach_sink.Sink"]).arg(&maildir);
                command.args(options.reject.iter().map(|a| format!("reject={a}")));
                command.args(options.defer.iter().map(|a| format!("defer={a}")));
                if let Some((user, password)) = &options.login {
                    command.arg(format!("login={user}:{password}"));
                }
            } else {
                command.args(["-c", "aiosmtpd.handlers.Mailbox"]).arg(&maildir);
            }
            command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(fs::File::create(&log).unwrap());
            let mut child = command.spawn().expect("start aiosmtpd");
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
                    return Some(SmtpSink { port, maildir, child, dir });
                }
                if child.try_wait().unwrap().is_some() || Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_log = fs::read_to_string(&log).unwrap_or_default();
                    break;
                }
                std::thread::sleep(Duration::from_millis(25));
            }
            if !last_log.contains("already in use") {
                break;
            }
        }
        panic!("aiosmtpd did not start:\n{last_log}");
    }

    /// The test CA that signed the sink's certificate (with TLS options only).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Every message delivered so far, oldest first.
    pub fn messages(&self) -> Vec<Mail> {
        let mut files: Vec<_> = fs::read_dir(self.maildir.join("new"))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .map(|path| (fs::metadata(&path).unwrap().modified().unwrap(), path))
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|(_, path)| {
                let mut raw = String::new();
                fs::File::open(path).unwrap().read_to_string(&mut raw).unwrap();
                Mail::parse(&raw)
            })
            .collect()
    }

    /// Waits (up to 10 s) until at least `count` messages are delivered, and returns them.
    pub async fn wait_for(&self, count: usize) -> Vec<Mail> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let messages = self.messages();
            if messages.len() >= count || Instant::now() > deadline {
                return messages;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Splits a header block from its body at the first blank line, either line ending.
fn split_head(text: &str) -> (&str, &str) {
    for sep in ["\r\n\r\n", "\n\n"] {
        if let Some(at) = text.find(sep) {
            return (&text[..at], &text[at + sep.len()..]);
        }
    }
    (text, "")
}

/// Parses a header block, joining continuation lines with a space.
fn parse_headers(head: &str) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.lines() {
        let line = line.trim_end_matches('\r');
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = headers.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push((name.to_string(), value.trim().to_string()));
        }
    }
    headers
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// Decodes a quoted-printable body.
fn decode_quoted_printable(text: &str) -> Vec<u8> {
    let text = text.replace("\r\n", "\n").replace("=\n", "");
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && let Some(hex) = text.get(i + 1..i + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// Decodes a body by its `Content-Transfer-Encoding`.
fn decode_body(encoding: Option<&str>, body: &str) -> String {
    let bytes = match encoding.map(str::to_ascii_lowercase).as_deref() {
        Some("base64") => {
            let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
            base64::engine::general_purpose::STANDARD.decode(compact).unwrap()
        }
        Some("quoted-printable") => decode_quoted_printable(body),
        _ => body.as_bytes().to_vec(),
    };
    String::from_utf8(bytes).unwrap().replace("\r\n", "\n")
}

/// Decodes RFC 2047 encoded words (`=?utf-8?b?...?=`, `=?utf-8?q?...?=`); white space
/// between two encoded words is dropped.
pub fn decode_words(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    let mut after_word = false;
    while let Some(start) = rest.find("=?") {
        let (before, from) = rest.split_at(start);
        let parsed = from[2..].split_once('?').and_then(|(charset, tail)| {
            let (encoding, tail) = tail.split_once('?')?;
            let (text, tail) = tail.split_once("?=")?;
            Some((charset, encoding, text, tail))
        });
        let Some((_, encoding, text, tail)) = parsed else { break };
        if !(after_word && before.trim().is_empty()) {
            out.push_str(before);
        }
        let bytes = if encoding.eq_ignore_ascii_case("b") {
            base64::engine::general_purpose::STANDARD.decode(text).unwrap()
        } else {
            decode_quoted_printable(&text.replace('_', " "))
        };
        out.push_str(&String::from_utf8(bytes).unwrap());
        rest = tail;
        after_word = true;
    }
    out.push_str(rest);
    out
}

impl Mail {
    /// Parses a delivered message.
    pub fn parse(raw: &str) -> Mail {
        let (head, body) = split_head(raw);
        Mail { raw: raw.to_string(), headers: parse_headers(head), body: body.to_string() }
    }

    /// The first header called `name` (any case), unfolded.
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// The header names, in order.
    pub fn header_names(&self) -> Vec<&str> {
        self.headers.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// The subject, RFC 2047 words decoded.
    pub fn subject(&self) -> String {
        decode_words(self.header("Subject").unwrap_or_default())
    }

    /// The decoded body of the part with this content type (e.g. `text/plain`), searching
    /// one level of multipart, or the whole body of a single-part message of that type.
    pub fn part(&self, content_type: &str) -> Option<String> {
        let top = self.header("Content-Type").unwrap_or("text/plain");
        if !top.to_ascii_lowercase().starts_with("multipart/") {
            return top
                .to_ascii_lowercase()
                .starts_with(content_type)
                .then(|| decode_body(self.header("Content-Transfer-Encoding"), &self.body));
        }
        let boundary = top.split(';').find_map(|p| p.trim().strip_prefix("boundary="))?.trim_matches('"');
        let delimiter = format!("--{boundary}");
        for chunk in self.body.split(&delimiter).skip(1) {
            if chunk.starts_with("--") {
                break;
            }
            let chunk = chunk.trim_start_matches(['\r', '\n']);
            let (head, body) = split_head(chunk);
            let headers = parse_headers(head);
            let kind = header(&headers, "Content-Type").unwrap_or("text/plain").to_ascii_lowercase();
            if kind.starts_with(content_type) {
                let body = body.trim_end_matches(['\r', '\n']);
                return Some(decode_body(header(&headers, "Content-Transfer-Encoding"), body));
            }
        }
        None
    }
}
