//! The HTTPS side of a test: a client for the bridge's pages and the CSRF token of a form.

use std::{net::SocketAddr, path::Path, sync::Arc};

use rustls_pki_types::{CertificateDer, pem::PemObject};

/// An HTTPS client that trusts only the CA in `ca_pem`, reaches `localhost` at `addr`,
/// follows no redirects and keeps no cookies.
pub fn https_client(ca_pem: &Path, addr: SocketAddr) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(ca_pem).expect("the CA")).expect("a usable CA");
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .resolve("localhost", addr)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client")
}

/// The hidden `csrf` value in a page.
pub fn csrf(page: &str) -> String {
    let at = page.find("name=\"csrf\"").expect("a csrf field");
    let window = &page[at.saturating_sub(200)..(at + 200).min(page.len())];
    let value = window.split("value=\"").nth(1).expect("a value");
    value[..value.find('"').expect("a closing quote")].to_string()
}
