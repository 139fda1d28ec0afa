//! A lean gRPC client for unary calls: protobuf in a gRPC frame, sent on an `h2` stream over
//! tokio-rustls with the role certificate, the status read from the trailers. No tower
//! buffer, no hyper, no tonic codec: about what `redis-benchmark` is to Redis, so that the
//! client's own CPU time (the client shares the machine's cores) takes less from the server.
//!
//! Only what the load generator needs: PutContact and GetContact, one message each way.

use std::{net::SocketAddr, path::Path, sync::Arc};

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use tokio::net::TcpStream;
use tokio_rustls::{TlsConnector, rustls};

use crate::conn::BoxError;

/// One HTTP/2 connection to the cache, over mutual TLS.
#[derive(Debug, Clone)]
pub struct H2Client {
    send: h2::client::SendRequest<Bytes>,
    authority: String,
}

/// Opens `connections` connections presenting `certs/<name>.pem`.
pub async fn connect(
    addr: SocketAddr,
    domain: &str,
    certs: &Path,
    name: &str,
    connections: usize,
) -> Result<Vec<H2Client>, BoxError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(certs.join("ca.pem"))? {
        roots.add(cert?)?;
    }
    let chain =
        CertificateDer::pem_file_iter(certs.join(format!("{name}.pem")))?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(certs.join(format!("{name}.key")))?;
    let mut config =
        rustls::ClientConfig::builder().with_root_certificates(roots).with_client_auth_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = TlsConnector::from(Arc::new(config));
    let server_name = ServerName::try_from(domain.to_string())?;
    let mut clients = Vec::with_capacity(connections);
    for _ in 0..connections.max(1) {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let tls = connector.connect(server_name.clone(), tcp).await?;
        let (send, connection) = h2::client::Builder::new()
            .initial_window_size(1 << 20)
            .initial_connection_window_size(1 << 24)
            .handshake::<_, Bytes>(tls)
            .await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        clients.push(H2Client { send, authority: domain.to_string() });
    }
    Ok(clients)
}

impl H2Client {
    /// Calls `method` (e.g. `PutContact`) with `request`; Ok when the status is OK.
    pub async fn unary(&mut self, method: &str, request: &impl Message) -> Result<(), String> {
        let len = request.encoded_len();
        let mut frame = BytesMut::with_capacity(5 + len);
        frame.put_u8(0);
        frame.put_u32(u32::try_from(len).map_err(|_| "request too large")?);
        request.encode(&mut frame).map_err(|e| e.to_string())?;
        let http = http::Request::builder()
            .method("POST")
            .uri(format!("https://{}/contactcache.v1.ContactCache/{method}", self.authority))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .map_err(|e| e.to_string())?;
        let send = &mut self.send;
        std::future::poll_fn(|cx| send.poll_ready(cx)).await.map_err(|e| e.to_string())?;
        let (response, mut body) = self.send.send_request(http, false).map_err(|e| e.to_string())?;
        body.send_data(frame.freeze(), true).map_err(|e| e.to_string())?;
        let response = response.await.map_err(|e| e.to_string())?;
        // A trailers-only answer (an error) carries its status in the headers.
        if let Some(status) = response.headers().get("grpc-status") {
            return grpc_status(status, response.headers());
        }
        let mut body = response.into_body();
        let mut received = 0usize;
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(|e| e.to_string())?;
            received += chunk.len();
            let _ = body.flow_control().release_capacity(chunk.len());
        }
        let trailers = body.trailers().await.map_err(|e| e.to_string())?.ok_or("no trailers")?;
        let status = trailers.get("grpc-status").ok_or("no grpc-status")?;
        grpc_status(status, &trailers)?;
        if received < 5 {
            return Err("an OK answer without a message".into());
        }
        Ok(())
    }
}

fn grpc_status(status: &http::HeaderValue, headers: &http::HeaderMap) -> Result<(), String> {
    if status.as_bytes() == b"0" {
        return Ok(());
    }
    let message = headers.get("grpc-message").and_then(|m| m.to_str().ok()).unwrap_or("");
    Err(format!("grpc-status {}: {message}", status.to_str().unwrap_or("?")))
}
