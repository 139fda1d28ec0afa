//! TLS on every listener of the tier, probed from outside as an attacker or an old client
//! would, against the real daemons with the development PKI:
//!
//! - TLS listeners: the cache's gRPC port and the bridge's ledger (both mutual TLS) and the
//!   bridge's HTTPS pages. On each, a TLS 1.0 and a TLS 1.1 ClientHello get a TLS alert (a
//!   hand-made hello and OpenSSL's), plaintext HTTP/1.1 and an h2c preface get a TLS alert
//!   and nothing else, a hello offering every TLS 1.2 suite except the six ECDHE + AEAD
//!   ones is refused, as is a TLS 1.3 hello with only the CCM suites; the suites that do
//!   complete a handshake and get service are the TLS 1.3 ones and ECDHE-ECDSA with
//!   AES-GCM or ChaCha20-Poly1305. On the mutual-TLS ports a client certificate from
//!   another CA (with the same names) gets an alert instead of service.
//! - Plain listeners, by design: the bridge's HTTP port only redirects to HTTPS and serves
//!   no content; the Prometheus ports of the cache, the worker and the bridge serve
//!   `GET /metrics` and nothing else.
//!
//! Every refusal must be a TLS alert sent by the server: a closed connection does not
//! count, so that the handshake lock-out of the gRPC ports (20 failures a minute per peer)
//! cannot pass for a refusal. Each probe is shown able to fail: the same hand-made hello
//! with a modern suite gets a ServerHello from the same listener, the right certificate
//! gets service where the foreign one does not, and with OpenSSL present every refusing
//! probe is also run against an `openssl s_server` that allows the old version or suite,
//! where it must see the handshake accepted.
//!
//! OpenSSL (`openssl s_client`/`s_server`) is optional: without it those probes print a
//! note and are skipped, unless `TLS_REQUIRE_OPENSSL=1` (as `.ci/run` sets).
#![allow(clippy::unwrap_used)]

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Arc,
    time::Duration,
};

use rustls::{
    ClientConfig, ClientConnection, SupportedCipherSuite,
    crypto::{CryptoProvider, ring},
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use test_support::https_client;
use tier_tests::{Daemon, free_port, run, wait_for_port};

// ---------------------------------------------------------------------------------------
// The tier under test
// ---------------------------------------------------------------------------------------

/// A development PKI made by `cache-server certs`, in a temporary folder.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        // reqwest (built with rustls-no-provider) needs the process-wide provider.
        let _ = ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("pki");
        let (code, _, err) = run(
            "cache-server",
            &[
                "certs".into(),
                "--out".into(),
                out.display().to_string(),
                "--sites".into(),
                "site-1001".into(),
            ],
        );
        assert_eq!(code, Some(0), "{err}");
        Pki { dir }
    }

    /// A file of the PKI.
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join("pki").join(name)
    }

    /// A file or folder for a daemon's state.
    fn state(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn p(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
}

fn set(pairs: &[(&str, String)]) -> Vec<String> {
    pairs.iter().flat_map(|(k, v)| ["--set".to_string(), format!("{k}={v}")]).collect()
}

/// The cache with its gRPC port and its metrics port, both on loopback.
async fn start_cache(pki: &Pki) -> (Daemon, u16, u16) {
    let (grpc, metrics) = (free_port(), free_port());
    let mut args = vec![
        "--listen".to_string(),
        format!("127.0.0.1:{grpc}"),
        "--metrics-listen".into(),
        format!("127.0.0.1:{metrics}"),
        "--allow-unlocked".into(),
    ];
    args.extend(set(&[
        ("tls.cert", pki.p("cache-server.pem")),
        ("tls.key", pki.p("cache-server.key")),
        ("tls.client_ca", pki.p("ca.pem")),
        ("audit.path", pki.state("cache-audit.jsonl").display().to_string()),
        ("audit.key_file", pki.p("audit.key")),
    ]));
    let cache = Daemon::spawn("cache-server", &args, &pki.state("cache.log"));
    wait_for_port(grpc, "cache gRPC").await;
    wait_for_port(metrics, "cache metrics").await;
    (cache, grpc, metrics)
}

/// The bridge's ports.
struct BridgePorts {
    https: u16,
    grpc: u16,
    http: u16,
    metrics: u16,
}

/// The bridge with its HTTPS pages, its ledger, its plain-HTTP redirect port and its
/// metrics port.
async fn start_bridge(pki: &Pki) -> (Daemon, BridgePorts) {
    let ports =
        BridgePorts { https: free_port(), grpc: free_port(), http: free_port(), metrics: free_port() };
    let args = set(&[
        ("listen", format!("127.0.0.1:{}", ports.https)),
        ("grpc_listen", format!("127.0.0.1:{}", ports.grpc)),
        ("http_listen", format!("127.0.0.1:{}", ports.http)),
        ("metrics_listen", format!("127.0.0.1:{}", ports.metrics)),
        ("database_url", format!("sqlite://{}?mode=rwc", pki.state("bridge.db").display())),
        ("key_file", pki.p("survey-bridge-secret.key")),
        ("tls.cert", pki.p("survey-bridge.pem")),
        ("tls.key", pki.p("survey-bridge.key")),
        ("tls.client_ca", pki.p("ca.pem")),
        ("audit.path", pki.state("bridge-audit.jsonl").display().to_string()),
        ("audit.key_file", pki.p("audit.key")),
    ]);
    let bridge = Daemon::spawn("survey-bridge", &args, &pki.state("bridge.log"));
    let all = [
        (ports.https, "bridge pages"),
        (ports.grpc, "ledger"),
        (ports.http, "redirect"),
        (ports.metrics, "bridge metrics"),
    ];
    for (port, what) in all {
        wait_for_port(port, what).await;
    }
    (bridge, ports)
}

// ---------------------------------------------------------------------------------------
// Hand-made ClientHellos: any version, any suite, whatever rustls or OpenSSL will send
// ---------------------------------------------------------------------------------------

/// The six TLS 1.2 suites counted as modern: ECDHE key exchange with an AEAD cipher.
const MODERN_TLS12: [u16; 6] = [
    0xc02b, // TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
    0xc02c, // TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
    0xcca9, // TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
    0xc02f, // TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
    0xc030, // TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
    0xcca8, // TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
];
/// The TLS 1.3 suites counted as modern: AES-GCM and ChaCha20-Poly1305.
const MODERN_TLS13: [u16; 3] = [0x1301, 0x1302, 0x1303];
/// The other TLS 1.3 suites: AES-CCM and AES-CCM-8.
const CCM_TLS13: [u16; 2] = [0x1304, 0x1305];

/// Every TLS 1.2 (and older) suite code in the registry's two main blocks and the
/// ChaCha20 block, except the modern six: NULL, export, anonymous, RC4, DES, 3DES,
/// AES-CBC, static RSA and DH, DHE, PSK, CCM, ARIA, Camellia...
fn weak_tls12() -> Vec<u16> {
    (0x0000..=0x00ff)
        .chain(0xc000..=0xc0ff)
        .chain(0xcca8..=0xccae)
        .filter(|s| !MODERN_TLS12.contains(s))
        .collect()
}

const TLS10: u16 = 0x0301;
const TLS11: u16 = 0x0302;
const TLS12: u16 = 0x0303;
const TLS13: u16 = 0x0304;

/// TLS alert descriptions the tests name.
const HANDSHAKE_FAILURE: u8 = 40;

fn with_len16(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

fn extension(out: &mut Vec<u8>, kind: u16, body: &[u8]) {
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&with_len16(body));
}

/// A ClientHello record for `localhost`. `version` is the highest version offered: for TLS
/// 1.3 the legacy field says 1.2 and `supported_versions` says 1.3 only, with an X25519 key
/// share; for 1.0 to 1.2 the legacy field is the version and there is no
/// `supported_versions`. ALPN offers `h2`.
fn client_hello(version: u16, suites: &[u16]) -> Vec<u8> {
    let mut ext = Vec::new();
    let name = b"localhost";
    let mut sni = vec![0];
    sni.extend(with_len16(name));
    extension(&mut ext, 0x0000, &with_len16(&sni)); // server_name
    extension(&mut ext, 0x000a, &with_len16(&[0x00, 0x1d, 0x00, 0x17, 0x00, 0x18])); // groups
    extension(&mut ext, 0x000b, &[1, 0]); // ec_point_formats: uncompressed
    let schemes = [
        0x04, 0x03, 0x05, 0x03, 0x06, 0x03, 0x08, 0x07, 0x08, 0x04, 0x08, 0x05, 0x08, 0x06, 0x04, 0x01, 0x05,
        0x01, 0x06, 0x01, 0x02, 0x01, 0x02, 0x03,
    ];
    extension(&mut ext, 0x000d, &with_len16(&schemes)); // signature_algorithms
    extension(&mut ext, 0x0010, &with_len16(&[2, b'h', b'2'])); // ALPN
    extension(&mut ext, 0x0017, &[]); // extended_master_secret
    extension(&mut ext, 0xff01, &[0]); // renegotiation_info
    if version == TLS13 {
        extension(&mut ext, 0x002b, &[2, 0x03, 0x04]); // supported_versions: 1.3
        // The X25519 base point: a valid public key whose shared secret is not zero.
        let mut share = vec![0x00, 0x1d, 0x00, 0x20, 9];
        share.extend([0; 31]);
        extension(&mut ext, 0x0033, &with_len16(&share)); // key_share
        extension(&mut ext, 0x002d, &[1, 1]); // psk_key_exchange_modes: psk_dhe_ke
    }
    let mut body = Vec::new();
    body.extend_from_slice(&version.min(TLS12).to_be_bytes());
    body.extend([0x5a; 32]); // random
    body.push(0); // no session id
    body.extend(with_len16(&suites.iter().flat_map(|s| s.to_be_bytes()).collect::<Vec<_>>()));
    body.extend([1, 0]); // compression: null
    body.extend(with_len16(&ext));
    let mut handshake = vec![1]; // client_hello
    handshake.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend(body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend(with_len16(&handshake));
    record
}

/// What a listener sent back first.
#[derive(Debug, PartialEq)]
enum Answer {
    /// A ServerHello: the handshake goes on with this version and suite.
    ServerHello { version: u16, suite: u16 },
    /// A TLS alert record with this description.
    Alert(u8),
    /// The connection was closed (or reset) with nothing sent.
    Closed,
    /// Something else: the first bytes, e.g. an HTTP response or an HTTP/2 frame.
    Other(Vec<u8>),
}

fn connect(port: u16) -> TcpStream {
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    // A guard against a hung listener, never a measurement.
    tcp.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    tcp
}

/// Reads up to `n` bytes, fewer if the peer closes first.
fn read_up_to(tcp: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    let mut got = 0;
    while got < n {
        match tcp.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("reading the answer: {e}"),
        }
    }
    buf.truncate(got);
    buf
}

/// Sends `bytes` on a new connection to `port` and classifies the first answer.
fn probe(port: u16, bytes: &[u8]) -> Answer {
    let mut tcp = connect(port);
    // A reset while writing is a refusal with nothing sent back.
    if tcp.write_all(bytes).is_err() {
        return Answer::Closed;
    }
    let header = read_up_to(&mut tcp, 5);
    if header.is_empty() {
        return Answer::Closed;
    }
    if header.len() < 5 || !matches!(header[0], 0x15 | 0x16) || header[1] != 3 {
        // Not TLS: keep what one more read brings (the rest of a response or a frame).
        let mut first = header;
        let mut more = [0; 64];
        if let Ok(n) = tcp.read(&mut more) {
            first.extend_from_slice(&more[..n]);
        }
        return Answer::Other(first);
    }
    let len = u16::from_be_bytes([header[3], header[4]]) as usize;
    let record = read_up_to(&mut tcp, len);
    match (header[0], record.as_slice()) {
        (0x15, [_level, description]) => Answer::Alert(*description),
        (0x16, [2, _, _, _, hello @ ..]) => server_hello(hello).unwrap_or(Answer::Other(record.clone())),
        _ => Answer::Other([header, record].concat()),
    }
}

/// The version and suite of a ServerHello body.
fn server_hello(body: &[u8]) -> Option<Answer> {
    let legacy = u16::from_be_bytes([*body.first()?, *body.get(1)?]);
    let sid = *body.get(34)? as usize;
    let at = 35 + sid;
    let suite = u16::from_be_bytes([*body.get(at)?, *body.get(at + 1)?]);
    let mut version = legacy;
    let mut ext = body.get(at + 5..)?;
    while ext.len() >= 4 {
        let kind = u16::from_be_bytes([ext[0], ext[1]]);
        let len = u16::from_be_bytes([ext[2], ext[3]]) as usize;
        let data = ext.get(4..4 + len)?;
        if kind == 0x002b && len == 2 {
            version = u16::from_be_bytes([data[0], data[1]]);
        }
        ext = &ext[4 + len..];
    }
    Some(Answer::ServerHello { version, suite })
}

/// Every suite: the modern ones and all the others, so that only the version can be the
/// reason for a refusal.
fn every_suite() -> Vec<u16> {
    MODERN_TLS12.iter().copied().chain(weak_tls12()).collect()
}

const PLAINTEXT_HTTP1: &[u8] = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
/// The HTTP/2 connection preface followed by an empty SETTINGS frame: in clear, what an h2c
/// client with prior knowledge (or a plaintext gRPC client) sends first.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// The hand-made probes that must be refused by every TLS listener: the hello versions, the
/// weak suites, and plaintext. Each refusal must be an alert.
fn refuses_old_versions_weak_suites_and_plaintext(what: &str, port: u16) {
    for (name, version) in [("TLS 1.0", TLS10), ("TLS 1.1", TLS11)] {
        let answer = probe(port, &client_hello(version, &every_suite()));
        assert!(matches!(answer, Answer::Alert(_)), "{what}: a {name} ClientHello got {answer:?}");
    }
    let answer = probe(port, &client_hello(TLS12, &weak_tls12()));
    assert_eq!(
        answer,
        Answer::Alert(HANDSHAKE_FAILURE),
        "{what}: a TLS 1.2 hello with {} non-modern suites",
        weak_tls12().len()
    );
    let answer = probe(port, &client_hello(TLS13, &CCM_TLS13));
    assert_eq!(answer, Answer::Alert(HANDSHAKE_FAILURE), "{what}: a TLS 1.3 hello with only AES-CCM");
    // The same hellos with one modern suite added are answered: the refusals above are
    // about the version or the suites, not a malformed hello.
    let mut offered = weak_tls12();
    offered.push(0xc02b);
    let answer = probe(port, &client_hello(TLS12, &offered));
    assert_eq!(answer, Answer::ServerHello { version: TLS12, suite: 0xc02b }, "{what}: TLS 1.2 control");
    let answer = probe(port, &client_hello(TLS13, &[0x1304, 0x1305, 0x1301]));
    assert_eq!(answer, Answer::ServerHello { version: TLS13, suite: 0x1301 }, "{what}: TLS 1.3 control");
    // Plaintext gets a TLS alert and nothing else: no HTTP response, no HTTP/2 frame.
    for (name, bytes) in [("plaintext HTTP/1.1", PLAINTEXT_HTTP1), ("an h2c preface", H2_PREFACE)] {
        let answer = probe(port, bytes);
        assert!(matches!(answer, Answer::Alert(_)), "{what}: {name} got {answer:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Real TLS clients: rustls for what completes, OpenSSL for what rustls cannot send
// ---------------------------------------------------------------------------------------

/// What a full handshake with rustls reached.
#[derive(Debug)]
struct Served {
    version: rustls::ProtocolVersion,
    suite: rustls::CipherSuite,
}

/// Connects with rustls offering only `suite` (ALPN h2, trusting `ca`, presenting `client`
/// if given), sends the HTTP/2 preface and reads the server's first frame, which must be
/// SETTINGS. An error is the rustls error (e.g. an alert received) or the I/O error.
fn serve_h2(
    port: u16,
    ca: &Path,
    client: Option<(&Path, &Path)>,
    suite: SupportedCipherSuite,
) -> Result<Served, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(ca).unwrap()).unwrap();
    let provider = CryptoProvider { cipher_suites: vec![suite], ..ring::default_provider() };
    let builder = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[suite.version()])
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_file(cert).unwrap()],
                PrivateKeyDer::from_pem_file(key).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(Arc::new(config), name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, connect(port));
    let why = |e: std::io::Error| match e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        Some(tls) => format!("tls: {tls}"),
        None => format!("io: {e}"),
    };
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).map_err(why)?;
    }
    tls.write_all(H2_PREFACE).map_err(why)?;
    tls.flush().map_err(why)?;
    let mut frame = [0; 9];
    tls.read_exact(&mut frame).map_err(why)?;
    assert_eq!(frame[3], 4, "the server's first HTTP/2 frame is SETTINGS");
    Ok(Served {
        version: tls.conn.protocol_version().unwrap(),
        suite: tls.conn.negotiated_cipher_suite().unwrap().suite(),
    })
}

/// The suites rustls (ring) implements that an ECDSA server certificate can use: the three
/// TLS 1.3 ones and the three ECDHE-ECDSA ones. Each must complete a handshake and get
/// service on every TLS listener.
fn usable_suites() -> Vec<SupportedCipherSuite> {
    ring::ALL_CIPHER_SUITES
        .iter()
        .copied()
        .filter(|s| match s {
            SupportedCipherSuite::Tls13(_) => true,
            SupportedCipherSuite::Tls12(s) => format!("{:?}", s.common.suite).contains("ECDSA"),
        })
        .collect()
}

fn serves_the_modern_suites(what: &str, port: u16, ca: &Path, client: Option<(&Path, &Path)>) {
    let suites = usable_suites();
    assert_eq!(suites.len(), 6);
    for suite in suites {
        let served = serve_h2(port, ca, client, suite)
            .unwrap_or_else(|e| panic!("{what}: {:?} is not served: {e}", suite.suite()));
        assert_eq!(served.suite, suite.suite(), "{what}");
        assert_eq!(served.version, suite.version().version, "{what}");
        let code = u16::from(served.suite);
        assert!(MODERN_TLS12.contains(&code) || MODERN_TLS13.contains(&code), "{what}: {code:#06x}");
    }
}

/// A certificate from another CA, with the same names as a good one, gets an alert where
/// the good one gets service, over TLS 1.3 and 1.2.
fn refuses_a_foreign_client_certificate(what: &str, port: u16, pki: &Pki, foreign: &Pki) {
    for suite in [
        ring::cipher_suite::TLS13_AES_128_GCM_SHA256,
        ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ] {
        let good = serve_h2(
            port,
            &pki.path("ca.pem"),
            Some((&pki.path("outreach.pem"), &pki.path("outreach.key"))),
            suite,
        );
        assert!(good.is_ok(), "{what}: the tier's own outreach certificate: {good:?}");
        let refused = serve_h2(
            port,
            &pki.path("ca.pem"),
            Some((&foreign.path("outreach.pem"), &foreign.path("outreach.key"))),
            suite,
        );
        let err = refused.expect_err(&format!("{what}: a foreign CA's certificate was served"));
        assert!(err.starts_with("tls: received fatal alert"), "{what}: {:?}: {err}", suite.suite());
    }
}

/// Whether OpenSSL is here; a note (or a failure when `TLS_REQUIRE_OPENSSL=1`) if not.
fn have_openssl() -> bool {
    let found = Command::new("openssl").arg("version").output().is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("TLS_REQUIRE_OPENSSL").as_deref() != Ok("1"),
            "openssl is not on PATH and TLS_REQUIRE_OPENSSL=1 asks for it"
        );
        eprintln!(
            "note: openssl is not on PATH; skipping its probes (set TLS_REQUIRE_OPENSSL=1 to require it)"
        );
    }
    found
}

/// What `openssl s_client` reached.
#[derive(Debug, PartialEq)]
enum Ossl {
    /// The handshake completed with this protocol and cipher.
    Accepted { protocol: String, cipher: String },
    /// The server sent this alert.
    Alert(u8),
    /// This OpenSSL cannot offer what was asked (e.g. a cipher it was built without).
    NotOffered,
    /// Anything else: its stderr.
    Other(String),
}

/// `openssl s_client -connect 127.0.0.1:port -servername localhost <args>`, stdin closed.
fn s_client(port: u16, args: &[&str]) -> Ossl {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}"), "-servername", "localhost"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // "New, TLSv1.2, Cipher is ECDHE-ECDSA-AES128-GCM-SHA256" or "New, (NONE), Cipher is (NONE)"
    if let Some(line) = stdout.lines().find(|l| l.starts_with("New, ") && l.contains(", Cipher is ")) {
        let protocol = line.trim_start_matches("New, ").split(',').next().unwrap_or_default();
        let cipher = line.split(", Cipher is ").nth(1).unwrap_or_default();
        if cipher != "(NONE)" {
            return Ossl::Accepted { protocol: protocol.into(), cipher: cipher.into() };
        }
    }
    if let Some(n) = stderr.split("SSL alert number ").nth(1) {
        let n: String = n.chars().take_while(char::is_ascii_digit).collect();
        return Ossl::Alert(n.parse().unwrap());
    }
    if ["no cipher match", "no ciphers available", "no protocols available", "Call to SSL_CONF_cmd"]
        .iter()
        .any(|m| stderr.contains(m))
    {
        return Ossl::NotOffered;
    }
    Ossl::Other(stderr.into())
}

/// The old versions and weak suites OpenSSL is asked for. The TLS 1.0/1.1 and TLS 1.2
/// ones go with `-cipher ...@SECLEVEL=0` so that OpenSSL's own policy does not hold them
/// back.
fn openssl_refusals() -> Vec<(&'static str, Vec<&'static str>)> {
    vec![
        ("TLS 1.0", vec!["-tls1", "-cipher", "ALL:@SECLEVEL=0"]),
        ("TLS 1.1", vec!["-tls1_1", "-cipher", "ALL:@SECLEVEL=0"]),
        (
            "AES-CBC",
            vec!["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA384:@SECLEVEL=0"],
        ),
        ("RSA key exchange", vec!["-tls1_2", "-cipher", "AES128-GCM-SHA256:AES256-SHA:@SECLEVEL=0"]),
        ("3DES", vec!["-tls1_2", "-cipher", "DES-CBC3-SHA:ECDHE-ECDSA-DES-CBC3-SHA:@SECLEVEL=0"]),
        (
            "TLS 1.3 AES-CCM",
            vec!["-tls1_3", "-ciphersuites", "TLS_AES_128_CCM_SHA256:TLS_AES_128_CCM_8_SHA256"],
        ),
    ]
}

/// OpenSSL's old versions and weak suites get an alert from the listener; a modern TLS 1.2
/// suite completes (the control). `client` is the client certificate for the control.
fn openssl_refused(what: &str, port: u16, ca: &Path, client: &[&str]) {
    for (name, args) in openssl_refusals() {
        match s_client(port, &args) {
            Ossl::Alert(_) => {}
            Ossl::NotOffered => eprintln!("note: this openssl cannot offer {name}; not tried on {what}"),
            other => panic!("{what}: openssl {name}: {other:?}"),
        }
    }
    let ca = ca.display().to_string();
    let mut args =
        vec!["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256", "-CAfile", &ca, "-verify_return_error"];
    args.extend_from_slice(client);
    let accepted = s_client(port, &args);
    assert_eq!(
        accepted,
        Ossl::Accepted { protocol: "TLSv1.2".into(), cipher: "ECDHE-ECDSA-AES128-GCM-SHA256".into() },
        "{what}: openssl control"
    );
}

// ---------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------

/// The cache's gRPC port (mutual TLS; roles from client certificates).
///
/// Each mutual-TLS test causes at most 16 failed handshakes from 127.0.0.1 (8 hand-made, 2
/// foreign certificates, up to 6 OpenSSL), under the 20 a minute that lock a peer out.
#[tokio::test(flavor = "multi_thread")]
async fn the_cache_grpc_port_refuses_old_tls_plaintext_weak_suites_and_foreign_certificates() {
    let (pki, foreign) = (Pki::new(), Pki::new());
    let (mut cache, grpc, _) = start_cache(&pki).await;
    let outreach = (pki.path("outreach.pem"), pki.path("outreach.key"));
    refuses_old_versions_weak_suites_and_plaintext("cache gRPC", grpc);
    serves_the_modern_suites("cache gRPC", grpc, &pki.path("ca.pem"), Some((&outreach.0, &outreach.1)));
    refuses_a_foreign_client_certificate("cache gRPC", grpc, &pki, &foreign);
    if have_openssl() {
        let (cert, key) = (pki.p("outreach.pem"), pki.p("outreach.key"));
        openssl_refused("cache gRPC", grpc, &pki.path("ca.pem"), &["-cert", &cert, "-key", &key]);
    }
    assert!(cache.running(), "the cache survived the probes");
    assert!(cache.stop().success());
}

/// The bridge's ledger port (gRPC over mutual TLS, for the outreach worker).
#[tokio::test(flavor = "multi_thread")]
async fn the_ledger_port_refuses_old_tls_plaintext_weak_suites_and_foreign_certificates() {
    let (pki, foreign) = (Pki::new(), Pki::new());
    let (mut bridge, ports) = start_bridge(&pki).await;
    let outreach = (pki.path("outreach.pem"), pki.path("outreach.key"));
    refuses_old_versions_weak_suites_and_plaintext("ledger", ports.grpc);
    serves_the_modern_suites("ledger", ports.grpc, &pki.path("ca.pem"), Some((&outreach.0, &outreach.1)));
    refuses_a_foreign_client_certificate("ledger", ports.grpc, &pki, &foreign);
    if have_openssl() {
        let (cert, key) = (pki.p("outreach.pem"), pki.p("outreach.key"));
        openssl_refused("ledger", ports.grpc, &pki.path("ca.pem"), &["-cert", &cert, "-key", &key]);
    }
    assert!(bridge.running(), "the bridge survived the probes");
    assert!(bridge.stop().success());
}

/// The bridge's HTTPS pages (no client certificates: patients' browsers).
#[tokio::test(flavor = "multi_thread")]
async fn the_https_pages_refuse_old_tls_plaintext_and_weak_suites() {
    let pki = Pki::new();
    let (mut bridge, ports) = start_bridge(&pki).await;
    refuses_old_versions_weak_suites_and_plaintext("pages", ports.https);
    serves_the_modern_suites("pages", ports.https, &pki.path("ca.pem"), None);
    if have_openssl() {
        openssl_refused("pages", ports.https, &pki.path("ca.pem"), &[]);
    }
    // And a client with rustls' safe defaults gets a page.
    let page = https_client(&pki.path("ca.pem"), ([127, 0, 0, 1], ports.https).into())
        .get(format!("https://localhost:{}/login", ports.https))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), reqwest::StatusCode::OK);
    assert!(bridge.running());
    assert!(bridge.stop().success());
}

/// The bridge's plain-HTTP port: a permanent redirect to the same path over HTTPS for
/// every method and path, over HTTP/1.1 and h2c, with no content and no cookie; the same
/// paths over HTTPS are real pages (so the check would see content if it leaked).
#[tokio::test(flavor = "multi_thread")]
async fn the_http_port_only_redirects_to_https() {
    let pki = Pki::new();
    let (mut bridge, ports) = start_bridge(&pki).await;
    let paths = [
        "/",
        "/login",
        "/s/6f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b",
        "/reports/report.json",
        "/assets/site.css",
        "/metrics",
    ];
    let h1 = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let h2c = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .http2_prior_knowledge()
        .build()
        .unwrap();
    for (client, version) in [(&h1, reqwest::Version::HTTP_11), (&h2c, reqwest::Version::HTTP_2)] {
        for path in paths {
            for method in [reqwest::Method::GET, reqwest::Method::POST, reqwest::Method::HEAD] {
                let url = format!("http://localhost:{}{path}", ports.http);
                let response = client
                    .request(method.clone(), &url)
                    .header("cookie", "session=x")
                    .form(&[("username", "a"), ("password", "b")])
                    .send()
                    .await
                    .unwrap();
                let what = format!("{method} {path} over {version:?}");
                assert_eq!(response.version(), version, "{what}");
                assert_eq!(response.status(), reqwest::StatusCode::PERMANENT_REDIRECT, "{what}");
                let location = response.headers()["location"].to_str().unwrap().to_string();
                assert_eq!(location, format!("https://localhost:{}{path}", ports.https), "{what}");
                assert!(response.headers().get("set-cookie").is_none(), "{what}");
                let body = response.bytes().await.unwrap();
                assert!(body.is_empty(), "{what}: {body:?}");
            }
        }
    }
    // The plaintext probe that gets alerts from the TLS ports sees service here.
    let answer = probe(ports.http, PLAINTEXT_HTTP1);
    assert!(matches!(&answer, Answer::Other(b) if b.starts_with(b"HTTP/1.1 308")), "{answer:?}");
    let answer = probe(ports.http, H2_PREFACE);
    assert!(
        matches!(&answer, Answer::Other(b) if b.len() >= 9 && b[3] == 4),
        "an h2c SETTINGS frame: {answer:?}"
    );
    // Over HTTPS the same paths are content.
    let https = https_client(&pki.path("ca.pem"), ([127, 0, 0, 1], ports.https).into());
    let login = https.get(format!("https://localhost:{}/login", ports.https)).send().await.unwrap();
    assert_eq!(login.status(), reqwest::StatusCode::OK);
    assert!(login.text().await.unwrap().contains("<form"));
    assert!(bridge.stop().success());
}

/// The Prometheus ports are plain HTTP on loopback by design (Prometheus scrapes them):
/// they answer `GET /metrics` and nothing else.
#[tokio::test(flavor = "multi_thread")]
async fn the_metrics_ports_serve_metrics_and_nothing_else() {
    let pki = Pki::new();
    let (_cache, cache_grpc, cache_metrics) = start_cache(&pki).await;
    let (_bridge, bridge) = start_bridge(&pki).await;
    std::fs::write(pki.state("suppression.key"), format!("{}\n", "5a".repeat(32))).unwrap();
    let worker_metrics = free_port();
    let (ca, cert, key) = (pki.p("ca.pem"), pki.p("outreach.pem"), pki.p("outreach.key"));
    let config = format!(
        r#"
database_url = "sqlite://{db}?mode=rwc"
key_file = "{suppression}"
metrics_listen = "127.0.0.1:{worker_metrics}"
[cache]
url = "https://127.0.0.1:{cache_grpc}"
ca = "{ca}"
cert = "{cert}"
key = "{key}"
[bridge]
url = "https://127.0.0.1:{ledger}"
ca = "{ca}"
cert = "{cert}"
key = "{key}"
public_url = "https://localhost:{https}"
# A channel is required; nothing is due, so nothing is sent.
[email]
host = "127.0.0.1"
port = 9
tls = "none"
from = "Clinic survey <survey@clinic.example.invalid>"
"#,
        db = pki.state("worker.db").display(),
        suppression = pki.state("suppression.key").display(),
        ledger = bridge.grpc,
        https = bridge.https,
    );
    std::fs::write(pki.state("worker.toml"), config).unwrap();
    let _worker = Daemon::spawn(
        "outreach-worker",
        &["--config".into(), pki.state("worker.toml").display().to_string()],
        &pki.state("worker.log"),
    );
    wait_for_port(worker_metrics, "worker metrics").await;
    let http = reqwest::Client::new();
    // The worker's page lists only the counters recorded so far, possibly none.
    let ports = [
        ("cache", cache_metrics, "cache_entries"),
        ("worker", worker_metrics, ""),
        ("bridge", bridge.metrics, "bridge_tls_certificate_expiry_timestamp_seconds"),
    ];
    for (what, port, metric) in ports {
        let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
        let page = http.get(url("/metrics")).send().await.unwrap();
        assert_eq!(page.status(), reqwest::StatusCode::OK, "{what}");
        let text = page.text().await.unwrap();
        assert!(text.contains(metric), "{what}: {text}");
        for path in ["/", "/s/6f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b", "/login", "/metrics/x", "/stats"] {
            let status = http.get(url(path)).send().await.unwrap().status();
            assert_eq!(status, reqwest::StatusCode::NOT_FOUND, "{what} {path}");
        }
        let status = http.post(url("/metrics")).send().await.unwrap().status();
        assert_eq!(status, reqwest::StatusCode::METHOD_NOT_ALLOWED, "{what} POST /metrics");
    }
}

/// The probes are able to fail: against `openssl s_server` allowing what the tier's
/// listeners refuse, the same hand-made hellos get a ServerHello and OpenSSL's client
/// completes its handshake.
#[tokio::test(flavor = "multi_thread")]
async fn the_probes_see_a_listener_that_allows_old_tls_or_weak_suites() {
    if !have_openssl() {
        return;
    }
    let pki = Pki::new();
    let (cert, key) = (pki.p("cache-server.pem"), pki.p("cache-server.key"));
    // Each server allows exactly one old version or weak suite family; the probes that the
    // tier's listeners refuse must see it accepted.
    let cases: Vec<(&str, Vec<&str>, Vec<u8>, u16)> = vec![
        ("TLS 1.0", vec!["-tls1", "-cipher", "ALL:@SECLEVEL=0"], client_hello(TLS10, &every_suite()), TLS10),
        (
            "TLS 1.1",
            vec!["-tls1_1", "-cipher", "ALL:@SECLEVEL=0"],
            client_hello(TLS11, &every_suite()),
            TLS11,
        ),
        (
            "AES-CBC",
            vec!["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA:@SECLEVEL=0"],
            client_hello(TLS12, &weak_tls12()),
            TLS12,
        ),
        (
            "TLS 1.3 AES-CCM",
            vec!["-tls1_3", "-ciphersuites", "TLS_AES_128_CCM_SHA256"],
            client_hello(TLS13, &CCM_TLS13),
            TLS13,
        ),
    ];
    let refusals = openssl_refusals();
    for (name, server_args, hello, version) in cases {
        let port = free_port();
        let server = Command::new("openssl")
            .args(["s_server", "-accept", &format!("127.0.0.1:{port}"), "-cert", &cert, "-key", &key, "-www"])
            .args(&server_args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let _server = KillOnDrop(server);
        wait_for_port(port, name).await;
        match probe(port, &hello) {
            Answer::ServerHello { version: v, suite } => {
                assert_eq!(v, version, "{name}");
                assert!(
                    !MODERN_TLS12.contains(&suite) && !MODERN_TLS13.contains(&suite),
                    "{name}: {suite:#06x}"
                );
            }
            other => panic!("{name}: the hand-made hello got {other:?} from a server that allows it"),
        }
        let (_, client_args) = refusals.iter().find(|(n, _)| *n == name).unwrap();
        let answer = s_client(port, client_args);
        assert!(matches!(answer, Ossl::Accepted { .. }), "{name}: openssl s_client got {answer:?}");
    }
}

/// Kills a child process when dropped.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The crypto provider every daemon builds its TLS configuration from (ring's default, see
/// `cache_server::tls` and `survey_bridge::https`) has only modern suites: TLS 1.3, and
/// ECDHE with AES-GCM or ChaCha20-Poly1305 for TLS 1.2; its key exchange groups are X25519,
/// P-256 and P-384. The probes above can only reach the ECDSA suites, since the
/// certificates are ECDSA; this covers the ECDHE-RSA ones that an RSA certificate would use.
#[test]
fn the_daemons_crypto_provider_has_only_modern_suites_and_groups() {
    let provider = ring::default_provider();
    let mut codes: Vec<u16> = provider.cipher_suites.iter().map(|s| u16::from(s.suite())).collect();
    codes.sort_unstable();
    let mut modern: Vec<u16> = MODERN_TLS12.iter().chain(&MODERN_TLS13).copied().collect();
    modern.sort_unstable();
    assert_eq!(codes, modern);
    for suite in &provider.cipher_suites {
        if let SupportedCipherSuite::Tls12(s) = suite {
            assert_eq!(s.kx, rustls::crypto::KeyExchangeAlgorithm::ECDHE, "{:?}", s.common.suite);
        }
    }
    let groups: Vec<String> = provider.kx_groups.iter().map(|g| format!("{:?}", g.name())).collect();
    assert_eq!(groups, ["X25519", "secp256r1", "secp384r1"]);
}
