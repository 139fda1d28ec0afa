//! Who a patient page's client is, for the link-guessing throttle only (addresses are never
//! stored), and how that throttle counts.
//!
//! Behind a load balancer every request comes from the balancer's address. `trusted_proxies`
//! names the addresses whose word about the client is believed: a PROXY protocol v2 header
//! at the start of the connection (HAProxy's `send-proxy-v2`, AWS NLB), or else the
//! `X-Forwarded-For` header of each request (its rightmost address that is not itself a
//! trusted proxy). From any other peer both are ignored: the peer is the client.
//!
//! Even so, many patients can share one address (a carrier's NAT, a clinic's Wi-Fi). So bad
//! look-ups are counted per address *and per link prefix* (the first four hex digits of the
//! link, or "not a link at all"): whoever sends bad links is refused for that prefix, and a
//! patient behind the same address with a real link, almost surely of another prefix, still
//! gets in. Random guessing needs no throttle (a link is 122 random bits); what the prefix
//! buckets slow down is the guess that matters, completing a link seen in part.

use std::{
    io,
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use axum::{
    extract::{ConnectInfo, FromRequestParts},
    http::{HeaderMap, request::Parts},
};
use ipnet::IpNet;
use tokio::{io::AsyncReadExt, net::TcpStream};

use crate::https::ClientAddr;

/// The addresses whose PROXY header or `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// From `trusted_proxies` entries: an address (`10.0.0.7`, `::1`) or a network
    /// (`10.0.0.0/8`). The error names the entry that is neither.
    pub fn parse(entries: &[String]) -> Result<TrustedProxies, String> {
        entries
            .iter()
            .map(|entry| {
                let entry = entry.trim();
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("trusted_proxies: {entry:?} is not an address or a network"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(TrustedProxies)
    }

    /// Whether `ip` is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client of a request on connection `conn`: the connection's client (its PROXY
    /// header's source, when a trusted proxy sent one); else, when the peer is trusted, the
    /// rightmost `X-Forwarded-For` address that is not itself a trusted proxy.
    pub fn client(&self, conn: &ClientAddr, headers: &HeaderMap) -> IpAddr {
        if conn.proxied || !self.contains(conn.peer.ip()) {
            return conn.client;
        }
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .filter_map(|hop| hop.trim().parse::<IpAddr>().ok())
            .collect::<Vec<_>>();
        forwarded.into_iter().rev().find(|&ip| !self.contains(ip)).unwrap_or(conn.client)
    }
}

/// The first bytes of every PROXY protocol v2 header.
const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// Reads a PROXY protocol v2 header off `tcp` if the connection starts with one; returns
/// the client it names (`None`: no header, or a `LOCAL` one, as a health check sends).
/// Call only for trusted peers, before the TLS handshake.
pub async fn read_proxy_header(tcp: &mut TcpStream) -> io::Result<Option<SocketAddr>> {
    let mut start = [0u8; 16];
    let mut seen = 0;
    // The signature may arrive in pieces: peek until 16 bytes are there, or it is not one.
    while seen < start.len() {
        seen = tcp.peek(&mut start).await?;
        if seen == 0 || start[..seen.min(12)] != SIGNATURE[..seen.min(12)] {
            return Ok(None);
        }
        if seen < start.len() {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }
    let length = usize::from(u16::from_be_bytes([start[14], start[15]]));
    let mut header = vec![0u8; 16 + length];
    tcp.read_exact(&mut header).await?;
    let parsed = ppp::v2::Header::try_from(header.as_slice())
        .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, format!("PROXY header: {err}")))?;
    if parsed.command == ppp::v2::Command::Local {
        return Ok(None);
    }
    Ok(match parsed.addresses {
        ppp::v2::Addresses::IPv4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        ppp::v2::Addresses::IPv6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        _ => None,
    })
}

/// The throttle's bucket for a bad link `text`: its first four hex digits, or one bucket
/// for anything that does not start like a link.
pub fn bucket(text: &str) -> u32 {
    text.get(..4).and_then(|head| u32::from_str_radix(head, 16).ok()).unwrap_or(1 << 16)
}

/// A request's client address, as [`TrustedProxies::client`] tells it.
#[derive(Debug, Clone, Copy)]
pub struct Client(pub IpAddr);

/// What holds the trusted proxies, for the [`Client`] extractor.
pub trait HasTrustedProxies {
    /// The trusted proxies.
    fn trusted_proxies(&self) -> &TrustedProxies;
}

impl<S: HasTrustedProxies + Send + Sync> FromRequestParts<Arc<S>> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<S>) -> Result<Self, Self::Rejection> {
        let conn = parts.extensions.get::<ConnectInfo<ClientAddr>>().map(|ConnectInfo(conn)| *conn);
        let ip = match conn {
            Some(conn) => state.trusted_proxies().client(&conn, &parts.headers),
            None => IpAddr::from([0, 0, 0, 0]),
        };
        Ok(Client(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(peer: &str, client: Option<&str>) -> ClientAddr {
        let peer: SocketAddr = peer.parse().unwrap();
        match client {
            Some(client) => ClientAddr { peer, client: client.parse().unwrap(), proxied: true },
            None => ClientAddr { peer, client: peer.ip(), proxied: false },
        }
    }

    fn forwarded(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", value.parse().unwrap());
        headers
    }

    #[test]
    fn forwarded_for_is_believed_only_from_a_trusted_proxy() {
        let trusted = TrustedProxies::parse(&["127.0.0.2".into(), "10.0.0.0/8".into()]).unwrap();
        let via = conn("127.0.0.2:4000", None);
        // The rightmost hop that is not a proxy of ours: a client cannot forge its way past.
        let h = forwarded("203.0.113.9, 198.51.100.7, 10.1.2.3");
        assert_eq!(trusted.client(&via, &h), "198.51.100.7".parse::<IpAddr>().unwrap());
        assert_eq!(trusted.client(&via, &HeaderMap::new()), "127.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(trusted.client(&via, &forwarded("junk")), "127.0.0.2".parse::<IpAddr>().unwrap());
        // From an untrusted peer, the header is the client's own claim: ignored.
        let direct = conn("127.0.0.9:4000", None);
        assert_eq!(trusted.client(&direct, &h), "127.0.0.9".parse::<IpAddr>().unwrap());
        // A PROXY header already named the client: that stands.
        let proxied = conn("127.0.0.2:4000", Some("192.0.2.44"));
        assert_eq!(trusted.client(&proxied, &h), "192.0.2.44".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn entries_are_addresses_or_networks_and_a_bad_one_is_named() {
        assert!(
            TrustedProxies::parse(&["::1".into(), "fd00::/8".into()])
                .unwrap()
                .contains("fd12::1".parse().unwrap())
        );
        let err = TrustedProxies::parse(&["10.0.0.0/8".into(), "lb.example".into()]).unwrap_err();
        assert!(err.contains("\"lb.example\""), "{err}");
    }

    #[test]
    fn buckets_are_four_hex_digits_or_not_a_link() {
        assert_eq!(bucket("3f2a9c1e-0000-4000-8000-000000000000"), 0x3f2a);
        assert_eq!(bucket("3F2A"), 0x3f2a);
        assert_eq!(bucket("zz"), 1 << 16);
        assert_eq!(bucket("../../etc/passwd"), 1 << 16);
        assert_eq!(bucket("é1234"), 1 << 16, "not a char boundary: no panic");
    }
}
