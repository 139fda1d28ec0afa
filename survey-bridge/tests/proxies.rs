//! The link-guessing throttle behind a load balancer: `trusted_proxies`, whose
//! `X-Forwarded-For` or PROXY protocol v2 header names the client, and buckets per address
//! and link prefix, so that whoever sends bad links is throttled and another patient behind
//! the same address still gets in.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{Bridge, guid, sqlite, start};
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A GUID that starts with `prefix` (four hex digits), as a guess completing a link seen in
/// part would.
fn with_prefix(prefix: &str) -> String {
    format!("{prefix}{}", &guid()[4..])
}

async fn status(bridge: &Bridge, path: &str, forwarded_for: Option<&str>) -> StatusCode {
    let mut request = bridge.http().get(bridge.url(path));
    if let Some(client) = forwarded_for {
        request = request.header("x-forwarded-for", client);
    }
    request.send().await.unwrap().status()
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_guesser_is_throttled_and_its_neighbour_gets_in() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = start(&sqlite(dir.path()), |c| {
        c.max_bad_links_per_minute = 3;
        // The test's client plays the load balancer.
        c.trusted_proxies = vec!["127.0.0.1".into()];
    })
    .await;
    let patient = with_prefix("3f2a");
    bridge.invite(&patient, "prov-a1", "en").await;
    // Client A, forwarded by the proxy, completes a link seen in part: throttled.
    for _ in 0..4 {
        let bad = format!("/s/{}", with_prefix("3f2a"));
        assert_eq!(status(&bridge, &bad, Some("198.51.100.1")).await, StatusCode::NOT_FOUND);
    }
    let bad = format!("/s/{}", with_prefix("3f2a"));
    assert_eq!(status(&bridge, &bad, Some("198.51.100.1")).await, StatusCode::TOO_MANY_REQUESTS);
    // Client B, behind the same proxy, opens its link, even of that very prefix.
    let link = format!("/s/{patient}");
    assert_eq!(status(&bridge, &link, Some("198.51.100.2")).await, StatusCode::OK);
    // A cannot pass itself off as B by putting B first: the rightmost hop is believed.
    let spoofed = "198.51.100.2, 198.51.100.1";
    assert_eq!(status(&bridge, &link, Some(spoofed)).await, StatusCode::TOO_MANY_REQUESTS);
    bridge.stop().await.unwrap();
}

#[tokio::test]
async fn from_an_untrusted_peer_forwarded_for_is_ignored_and_sharing_an_address_locks_nobody_out() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = start(&sqlite(dir.path()), |c| c.max_bad_links_per_minute = 3).await;
    // A guesser that claims a new address with each guess is still one client.
    for n in 0..4 {
        let bad = format!("/s/{}", with_prefix("3f2a"));
        let claimed = format!("203.0.113.{n}");
        assert_eq!(status(&bridge, &bad, Some(&claimed)).await, StatusCode::NOT_FOUND);
    }
    let bad = format!("/s/{}", with_prefix("3f2a"));
    assert_eq!(status(&bridge, &bad, Some("203.0.113.99")).await, StatusCode::TOO_MANY_REQUESTS);
    // Patients behind the same address (a carrier's NAT) with their own links still get in.
    for _ in 0..5 {
        let mut other = guid();
        while other.starts_with("3f2a") {
            other = guid();
        }
        bridge.invite(&other, "prov-a1", "en").await;
        assert_eq!(status(&bridge, &format!("/s/{other}"), None).await, StatusCode::OK);
    }
    bridge.stop().await.unwrap();
}

/// Sends `GET path` over TLS on a connection that starts with a PROXY protocol v2 header
/// naming `client`; returns the status code.
async fn get_via_proxy_protocol(bridge: &Bridge, client: std::net::SocketAddrV4, path: &str) -> u16 {
    let mut tcp = tokio::net::TcpStream::connect(bridge.https).await.unwrap();
    let std::net::SocketAddr::V4(server) = bridge.https else { panic!("IPv4 loopback") };
    let header = ppp::v2::Builder::with_addresses(
        ppp::v2::Version::Two | ppp::v2::Command::Proxy,
        ppp::v2::Protocol::Stream,
        ppp::v2::IPv4::new(*client.ip(), *server.ip(), client.port(), server.port()),
    )
    .build()
    .unwrap();
    tcp.write_all(&header).await.unwrap();
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(bridge.dir.path().join("ca.pem")).unwrap();
    for cert in <rustls_pki_types::CertificateDer as rustls_pki_types::pem::PemObject>::pem_slice_iter(&ca) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response);
    text.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_proxy_protocol_header_from_a_trusted_proxy_names_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = start(&sqlite(dir.path()), |c| {
        c.max_bad_links_per_minute = 3;
        c.trusted_proxies = vec!["127.0.0.0/8".into()];
    })
    .await;
    let guesser = "192.0.2.10:40000".parse().unwrap();
    for _ in 0..4 {
        let bad = format!("/s/{}", with_prefix("3f2a"));
        assert_eq!(get_via_proxy_protocol(&bridge, guesser, &bad).await, 404);
    }
    let bad = format!("/s/{}", with_prefix("3f2a"));
    assert_eq!(get_via_proxy_protocol(&bridge, guesser, &bad).await, 429);
    // Another client through the same proxy, and the proxy's own address: not blocked.
    let neighbour = "192.0.2.11:40000".parse().unwrap();
    assert_eq!(get_via_proxy_protocol(&bridge, neighbour, &bad).await, 404);
    assert_eq!(status(&bridge, &bad, None).await, StatusCode::NOT_FOUND);
    bridge.stop().await.unwrap();
}
