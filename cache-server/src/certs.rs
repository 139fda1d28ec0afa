//! A development PKI: a CA, the daemon's certificate and a certificate per caller role,
//! made with rcgen, so the tier runs on a fresh machine with no other tool. Not for
//! production: see `deploy/` for real certificates.

use std::{fs, io, io::Write, os::unix::fs::OpenOptionsExt, path::Path};

use rand::TryRng;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, date_time_ymd,
};

use crate::auth::{Role, identity_uri};

/// Making or writing the development PKI failed.
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    /// rcgen refused.
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// A file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: io::Error,
    },
}

/// A PEM certificate and its PEM private key.
#[derive(Clone)]
pub struct Pem {
    /// The certificate.
    pub cert: String,
    /// The private key (PKCS#8).
    pub key: String,
}

impl std::fmt::Debug for Pem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pem { key: <secret>, .. }")
    }
}

/// A development CA and a server certificate it signed; it can issue caller certificates.
#[derive(Debug)]
pub struct DevPki {
    /// The CA: clients trust its certificate, and the server trusts callers it signed.
    pub ca: Pem,
    /// The server's certificate, valid for the hosts it was made for.
    pub server: Pem,
    hosts: Vec<String>,
    issuer: Issuer<'static, KeyPair>,
}

fn validity(params: &mut CertificateParams) {
    let today = jiff::tz::TimeZone::UTC.to_datetime(jiff::Timestamp::now()).date();
    let from = today.yesterday().unwrap_or(today);
    params.not_before = date_time_ymd(i32::from(from.year()), from.month() as u8, from.day() as u8);
    params.not_after =
        date_time_ymd(i32::from(today.year()) + 2, today.month() as u8, today.day().min(28) as u8);
}

impl DevPki {
    /// A new CA and a server certificate for `hosts` (DNS names or IP addresses).
    pub fn generate(hosts: &[String]) -> Result<DevPki, CertsError> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca_params.distinguished_name.push(DnType::CommonName, "contact cache development CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        validity(&mut ca_params);
        let ca_key = KeyPair::generate()?;
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let ca = Pem { cert: ca_cert.pem(), key: ca_key.serialize_pem() };
        let issuer = Issuer::new(ca_params, ca_key);

        let server = issue_server(&issuer, "cache-server", hosts)?;
        Ok(DevPki { ca, server, hosts: hosts.to_vec(), issuer })
    }

    /// Another server certificate, for `name`, valid for the same hosts.
    pub fn issue_server(&self, name: &str) -> Result<Pem, CertsError> {
        issue_server(&self.issuer, name, &self.hosts)
    }

    /// A client certificate for a caller named `name` with `role` (and `site` for `emr`):
    /// the identity URI as its subject alternative name, `name` as its common name.
    pub fn issue_client(&self, name: &str, role: Role, site: Option<&str>) -> Result<Pem, CertsError> {
        self.issue_client_with_uris(name, &[identity_uri(role, site)])
    }

    /// A client certificate with any URI subject alternative names (tests use this for
    /// certificates that name no role, or two).
    pub fn issue_client_with_uris(&self, name: &str, uris: &[String]) -> Result<Pem, CertsError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        for uri in uris {
            params.subject_alt_names.push(SanType::URI(uri.as_str().try_into()?));
        }
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        validity(&mut params);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Pem { cert: cert.pem(), key: key.serialize_pem() })
    }

    /// Writes the CA, the servers' certificates (cache-server, survey-bridge), a caller
    /// certificate for each role (an `emr-<site>` one per site), and new random keys (the
    /// audit key, the bridge's secret) unless they exist, into `dir`.
    pub fn write_all(&self, dir: &Path, sites: &[String]) -> Result<(), CertsError> {
        self.write_to(dir)?;
        let mut callers = vec![
            ("outreach".to_string(), Role::Outreach, None),
            ("bridge".to_string(), Role::Bridge, None),
            ("admin".to_string(), Role::Admin, None),
        ];
        for site in sites {
            callers.push((format!("emr-{site}"), Role::Emr, Some(site.as_str())));
        }
        for (name, role, site) in callers {
            let pem = self.issue_client(&name, role, site)?;
            write(&dir.join(format!("{name}.pem")), &pem.cert, 0o644)?;
            write(&dir.join(format!("{name}.key")), &pem.key, 0o600)?;
        }
        let bridge = self.issue_server("survey-bridge")?;
        write(&dir.join("survey-bridge.pem"), &bridge.cert, 0o644)?;
        write(&dir.join("survey-bridge.key"), &bridge.key, 0o600)?;
        write_new_key(&dir.join("audit.key"))?;
        write_new_key(&dir.join("survey-bridge-secret.key"))?;
        Ok(())
    }

    /// Writes `ca.pem`, `ca.key`, `cache-server.pem` and `cache-server.key` into `dir`
    /// (keys readable by the owner only).
    pub fn write_to(&self, dir: &Path) -> Result<(), CertsError> {
        fs::create_dir_all(dir)
            .map_err(|source| CertsError::Io { path: dir.display().to_string(), source })?;
        write(&dir.join("ca.pem"), &self.ca.cert, 0o644)?;
        write(&dir.join("ca.key"), &self.ca.key, 0o600)?;
        write(&dir.join("cache-server.pem"), &self.server.cert, 0o644)?;
        write(&dir.join("cache-server.key"), &self.server.key, 0o600)?;
        Ok(())
    }
}

fn issue_server(issuer: &Issuer<'static, KeyPair>, name: &str, hosts: &[String]) -> Result<Pem, CertsError> {
    let mut params = CertificateParams::new(hosts.to_vec())?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    validity(&mut params);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, issuer)?;
    Ok(Pem { cert: cert.pem(), key: key.serialize_pem() })
}

/// Writes a new random 256-bit key as 64 hex digits (owner-only), unless `path` exists.
fn write_new_key(path: &Path) -> Result<(), CertsError> {
    if path.exists() {
        return Ok(());
    }
    let mut key = zeroize::Zeroizing::new([0u8; 32]);
    rand::rngs::SysRng.try_fill_bytes(&mut key[..]).map_err(|e| CertsError::Io {
        path: path.display().to_string(),
        source: io::Error::other(e.to_string()),
    })?;
    write(path, &format!("{}\n", hex::encode(&key[..])), 0o600)
}

fn write(path: &Path, contents: &str, mode: u32) -> Result<(), CertsError> {
    let io_err = |source| CertsError::Io { path: path.display().to_string(), source };
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(io_err)?;
    file.write_all(contents.as_bytes()).map_err(io_err)
}
