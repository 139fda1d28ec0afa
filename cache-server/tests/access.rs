//! Callers, roles and the audit trail over real mutual TLS, with certificates made in the
//! test.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    io,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use cache_server::{
    auth::{self, Role, Rpc},
    certs::DevPki,
};
use common::{Switchable, TestServer, contact, start, start_with_audit_sink};
use jiff::SignedDuration;
use proto::v1::{
    AckOutcome, AckRequest, DeleteContactRequest, GetContactRequest, LeaseDueRequest, OptOutRequest,
    PutContactRequest, StatsRequest, contact_cache_client::ContactCacheClient,
};
use serde_json::Value;
use tonic::{Code, Status, transport::Channel};
use tonic_types::StatusExt;

/// The policy as the issue states it, written out independently of `auth::POLICY`.
fn expected(role: Role, rpc: Rpc) -> bool {
    use Rpc::*;
    match role {
        Role::Emr => matches!(rpc, PutContact | PutContacts | DeleteContact),
        Role::Outreach => matches!(rpc, GetContact | LeaseDue | Ack),
        // Least privilege: the bridge opts contacts out; it never erases one outright.
        Role::Bridge => matches!(rpc, OptOut),
        Role::Admin => matches!(rpc, Stats),
    }
}

fn identity_name(role: Role) -> &'static str {
    match role {
        Role::Emr => "emr-site-1001",
        Role::Outreach => "outreach",
        Role::Bridge => "bridge",
        Role::Admin => "admin",
    }
}

/// Calls `rpc` once with a well-formed request.
async fn call(client: &mut ContactCacheClient<Channel>, rpc: Rpc, guid: &str) -> Result<(), Status> {
    let guid = guid.to_string();
    match rpc {
        Rpc::PutContact => {
            client.put_contact(PutContactRequest { contact: Some(contact(7)) }).await.map(drop)
        }
        Rpc::PutContacts => {
            let items = vec![PutContactRequest { contact: Some(contact(8)) }];
            let mut results = client.put_contacts(tokio_stream::iter(items)).await?.into_inner();
            while results.message().await?.is_some() {}
            Ok(())
        }
        Rpc::GetContact => client.get_contact(GetContactRequest { guid }).await.map(drop),
        Rpc::DeleteContact => client.delete_contact(DeleteContactRequest { guid }).await.map(drop),
        Rpc::OptOut => client.opt_out(OptOutRequest { guid }).await.map(drop),
        Rpc::Stats => client.stats(StatsRequest {}).await.map(drop),
        Rpc::LeaseDue => client.lease_due(LeaseDueRequest { max: 10, lease_seconds: 60 }).await.map(drop),
        Rpc::Ack => client
            .ack(AckRequest { guid, outcome: AckOutcome::FailedPermanent as i32, ..Default::default() })
            .await
            .map(drop),
    }
}

async fn put_one(server: &TestServer, site: &str, n: u32) -> String {
    let mut emr = server.client_as(&format!("emr-{site}")).await;
    let mut c = contact(n);
    c.site_id = site.into();
    emr.put_contact(PutContactRequest { contact: Some(c) }).await.unwrap().into_inner().guid
}

fn lines_with<'a>(lines: &'a [Value], action: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["action"] == action).collect()
}

#[tokio::test]
async fn the_role_by_rpc_matrix_is_enforced() {
    let server = start(|_| {}).await;
    let mut denied = 0;
    for role in Role::ALL {
        let mut client = server.client_as(identity_name(role)).await;
        for rpc in Rpc::ALL {
            assert_eq!(auth::allowed(role, rpc), expected(role, rpc), "the code's table: {role} {rpc:?}");
            // A fresh GUID each time, so a delete or opt-out never hits a missing one.
            let guid = put_one(&server, "site-1001", 1).await;
            let result = call(&mut client, rpc, &guid).await;
            if expected(role, rpc) {
                let code = result.as_ref().err().map(Status::code);
                assert!(
                    !matches!(code, Some(Code::PermissionDenied | Code::Unauthenticated)),
                    "{role} may call {rpc:?}: {result:?}"
                );
            } else {
                let status = result.expect_err("denied");
                assert_eq!(status.code(), Code::PermissionDenied, "{role} {rpc:?}");
                assert!(status.message().contains(rpc.as_str()));
                denied += 1;
            }
        }
    }
    let lines = server.audit_lines();
    let denials = lines_with(&lines, "PERMISSION_DENIED");
    assert_eq!(denials.len(), denied, "one audit line per denial");
    assert!(denials.iter().all(|l| l["result"] == "permission_denied" && l["rpc"].is_string()));
}

#[tokio::test]
async fn no_certificate_or_no_role_is_unauthenticated() {
    let (config, dir, pki) = common::test_config_with_pki();
    let server = common::start_with(config, dir, pki.ca.cert.clone()).await;
    let guid = put_one(&server, "site-1001", 1).await;

    let mut anonymous = ContactCacheClient::new(server.channel().await);
    for rpc in Rpc::ALL {
        let status = call(&mut anonymous, rpc, &guid).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{rpc:?}");
    }

    // Certificates from the right CA that name no role, or two, identify nobody.
    for uris in [
        vec!["https://example.org/not-a-role".to_string()],
        vec!["spiffe://contactcache/admin".into(), "spiffe://contactcache/outreach".into()],
        vec!["spiffe://contactcache/superuser".into()],
    ] {
        let pem = pki.issue_client_with_uris("odd", &uris).unwrap();
        let channel =
            server.try_channel(Some(tonic::transport::Identity::from_pem(pem.cert, pem.key))).await.unwrap();
        let status = ContactCacheClient::new(channel).stats(StatsRequest {}).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{uris:?}");
    }

    // One peer, one window: the first refusal is written as it happens, the others only
    // counted (until the peer's next window; see the test below).
    let lines = server.audit_lines();
    let failed = lines_with(&lines, "AUTH_FAILED");
    assert_eq!(failed.len(), 1);
    assert!(failed.iter().all(|l| l["result"] == "unauthenticated" && l["peer"].is_string()));
    assert_eq!(failed[0]["detail"], "no client certificate");
}

#[tokio::test]
async fn ten_thousand_calls_without_a_certificate_leave_a_bounded_audit_file_and_a_certified_caller_unharmed()
{
    let server = start(|_| {}).await;
    // A certified caller, connected as services stay connected.
    let mut admin = server.client_as("admin").await;
    admin.stats(StatsRequest {}).await.unwrap();
    let before = std::fs::metadata(server.path("audit.jsonl")).unwrap().len();

    let mut anonymous = ContactCacheClient::new(server.channel().await);
    for _ in 0..10_000 {
        let status = anonymous.stats(StatsRequest {}).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
    }
    // The certified caller is served as before.
    admin.stats(StatsRequest {}).await.unwrap();
    let lines = server.audit_lines();
    assert_eq!(lines_with(&lines, "AUTH_FAILED").len(), 1, "the first refusal of the window");
    assert_eq!(lines_with(&lines, "PEER_THROTTLED").len(), 1, "the lock-out, once");
    let grown = std::fs::metadata(server.path("audit.jsonl")).unwrap().len() - before;
    assert!(grown < 4_096, "10,000 refusals wrote {grown} bytes of audit");
    // Locked out: a new connection from the address is refused, certificate or not...
    let refused = match server.try_channel(None).await {
        Err(_) => true,
        Ok(channel) => ContactCacheClient::new(channel).stats(StatsRequest {}).await.is_err(),
    };
    assert!(refused, "the peer is locked out");

    // ...until its window has passed; its next refusal writes the count of the rest.
    server.clock.advance(SignedDuration::from_secs(61));
    let status = anonymous.stats(StatsRequest {}).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let lines = server.audit_lines();
    let failed = lines_with(&lines, "AUTH_FAILED");
    assert_eq!(failed.len(), 3, "{failed:?}");
    assert_eq!(failed[1]["count"], 9_999, "the refusals not written one by one");
    assert!(failed[1]["peer"].as_str().unwrap().starts_with("127.0.0.1"));
    assert_eq!(failed[2]["rpc"], "Stats");
    admin.stats(StatsRequest {}).await.unwrap();
}

#[tokio::test]
async fn another_sites_connector_cannot_store_or_erase_for_this_site() {
    let server = start(|_| {}).await;
    let mut c = server.clients().await;
    let guid = put_one(&server, "site-1001", 1).await;

    // Storing for another site: refused, naming the field.
    let status =
        c.emr("site-1002").put_contact(PutContactRequest { contact: Some(contact(2)) }).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(status.get_details_bad_request().unwrap().field_violations[0].field, "contact.site_id");

    // Erasing another site's GUID: NOT_FOUND, word for word what an unknown GUID gets.
    let cross =
        c.emr("site-1002").delete_contact(DeleteContactRequest { guid: guid.clone() }).await.unwrap_err();
    let unknown = c
        .emr("site-1002")
        .delete_contact(DeleteContactRequest { guid: "0b7c5e1a-3d2f-4e6a-9c8b-7a6f5e4d3c2b".into() })
        .await
        .unwrap_err();
    assert_eq!(cross.code(), Code::NotFound);
    assert_eq!(cross.message(), unknown.message());
    assert_eq!(cross.details(), unknown.details());

    // The contact is untouched, and its own site can erase it.
    c.outreach.get_contact(GetContactRequest { guid: guid.clone() }).await.unwrap();
    c.emr("site-1001").delete_contact(DeleteContactRequest { guid: guid.clone() }).await.unwrap();
    let status = c.outreach.get_contact(GetContactRequest { guid }).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused() {
    let server = start(|_| {}).await;
    let foreign = DevPki::generate(&["localhost".into()]).unwrap();
    let admin = foreign.issue_client("admin", Role::Admin, None).unwrap();
    let identity = tonic::transport::Identity::from_pem(admin.cert, admin.key);
    let refused = match server.try_channel(Some(identity)).await {
        Err(_) => true,
        Ok(channel) => ContactCacheClient::new(channel).stats(StatsRequest {}).await.is_err(),
    };
    assert!(refused);
    let lines = wait_for(&server, "AUTH_FAILED", 1).await;
    let failed = lines_with(&lines, "AUTH_FAILED");
    assert_eq!(failed[0]["detail"], "tls handshake failed");
    assert!(failed[0]["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(lines_with(&lines, "STATS_READ").is_empty());
}

/// Polls the audit log until it has `n` lines of `action`.
async fn wait_for(server: &TestServer, action: &str, n: usize) -> Vec<Value> {
    for _ in 0..200 {
        let lines = server.audit_lines();
        if lines_with(&lines, action).len() >= n {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no {n} {action} lines in the audit log: {:?}", server.audit_lines());
}

#[tokio::test]
async fn each_operation_writes_its_audit_line_and_none_holds_contact_data() {
    let server = start(|c| c.store.sweep_schedule = "* * * * * *".into()).await;
    let mut c = server.clients().await;
    let mut planted = Vec::new();
    let mut guids = Vec::new();
    for n in 0..3 {
        let sent = contact(100 + n);
        planted.extend([sent.phone.clone(), sent.email.clone()]);
        guids.push(c.put(sent).await);
    }
    c.outreach.get_contact(GetContactRequest { guid: guids[0].clone() }).await.unwrap();
    c.bridge.opt_out(OptOutRequest { guid: guids[1].clone() }).await.unwrap();
    c.emr("site-1001").delete_contact(DeleteContactRequest { guid: guids[2].clone() }).await.unwrap();
    c.admin.stats(StatsRequest {}).await.unwrap();
    let _ = c.outreach.get_contact(GetContactRequest { guid: guids[2].clone() }).await.unwrap_err();

    let lines = server.audit_lines();
    let start_line = &lines_with(&lines, "SERVER_START")[0];
    assert_eq!(start_line["role"], "system");
    assert_eq!(start_line["detail"].as_str().unwrap().len(), 64, "a SHA-256 of the configuration");

    let expect = |action: &str, guid: &str, role: &str, result: &str| {
        let hash = server.guid_hmac(guid);
        let found = lines.iter().any(|l| {
            l["action"] == action
                && l["guid_hmac"] == hash.as_str()
                && l["role"] == role
                && l["result"] == result
        });
        assert!(found, "no {action} {result} line by {role} for the GUID: {lines:#?}");
    };
    for guid in &guids {
        expect("CONTACT_PUT", guid, "emr", "ok");
    }
    expect("CONTACT_GET", &guids[0], "outreach", "ok");
    expect("OPT_OUT", &guids[1], "bridge", "ok");
    expect("CONTACT_DELETE", &guids[2], "emr", "ok");
    expect("CONTACT_GET", &guids[2], "outreach", "not_found");
    let put = lines.iter().find(|l| l["action"] == "CONTACT_PUT").unwrap();
    assert_eq!(put["site"], "site-1001");
    assert_eq!(put["caller"], "emr-site-1001");
    assert!(put["time"].as_str().unwrap().starts_with("2026-11-24T15:00:00"));
    let stats = &lines_with(&lines, "STATS_READ")[0];
    assert_eq!(stats["caller"], "admin");

    // The sweep: the day's contacts expire, the scheduled sweep erases them and shreds the key.
    server.clock.advance(SignedDuration::from_hours(24 * 31));
    let lines = wait_for(&server, "DAY_KEY_DESTROYED", 1).await;
    let swept = lines_with(&lines, "SWEEP_COMPLETED");
    assert!(swept.iter().any(|l| l["count"] == 2), "two entries were left to sweep: {swept:?}");
    assert_eq!(lines_with(&lines, "DAY_KEY_DESTROYED")[0]["detail"], "2026-11-24");

    let raw = std::fs::read_to_string(server.path("audit.jsonl")).unwrap();
    for value in planted.iter().chain(&guids) {
        assert!(!raw.contains(value.as_str()), "the audit log holds a planted value or a raw GUID");
    }
}

#[tokio::test]
async fn the_stop_is_audited() {
    let server = start(|_| {}).await;
    let path = server.path("audit.jsonl");
    let dir = server.dir.clone();
    server.stop().await.unwrap();
    let text = std::fs::read_to_string(path).unwrap();
    let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["action"], "SERVER_STOP");
    drop(dir);
}

#[tokio::test]
async fn too_many_unknown_guids_lock_a_caller_out_for_a_while() {
    let server = start(|c| {
        c.lockout.max_not_found = 3;
        c.lockout.not_found_window_seconds = 60;
    })
    .await;
    let mut c = server.clients().await;
    let known = put_one(&server, "site-1001", 1).await;
    let unknown = "7e3b1c9a-5d4f-4a2b-8c6d-1e0f9a8b7c6d";

    for _ in 0..4 {
        let status = c.outreach.get_contact(GetContactRequest { guid: unknown.into() }).await.unwrap_err();
        assert_eq!(status.code(), Code::NotFound);
    }
    // Locked out now, even for a GUID that exists.
    let status = c.outreach.get_contact(GetContactRequest { guid: known.clone() }).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    let lines = server.audit_lines();
    let throttled = lines_with(&lines, "CALLER_THROTTLED");
    assert_eq!(throttled.len(), 1);
    assert_eq!(throttled[0]["caller"], "outreach");
    assert!(lines.iter().any(|l| l["action"] == "CONTACT_GET" && l["detail"] == "caller throttled"));

    // Other callers are not affected.
    c.admin.stats(StatsRequest {}).await.unwrap();
    c.bridge.opt_out(OptOutRequest { guid: put_one(&server, "site-1001", 2).await }).await.unwrap();

    // The lock-out ends with its window.
    server.clock.advance(SignedDuration::from_secs(61));
    c.outreach.get_contact(GetContactRequest { guid: known }).await.unwrap();
}

#[tokio::test]
async fn repeated_failed_handshakes_lock_a_peer_out_for_a_while() {
    let server = start(|c| {
        c.lockout.max_handshake_failures = 2;
        c.lockout.handshake_window_seconds = 60;
    })
    .await;
    let foreign = DevPki::generate(&["localhost".into()]).unwrap();
    let admin = foreign.issue_client("admin", Role::Admin, None).unwrap();
    for n in 1..=3 {
        let identity = tonic::transport::Identity::from_pem(&admin.cert, &admin.key);
        if let Ok(channel) = server.try_channel(Some(identity)).await {
            let _ = ContactCacheClient::new(channel).stats(StatsRequest {}).await;
        }
        wait_for(&server, "AUTH_FAILED", n).await;
    }
    let lines = wait_for(&server, "PEER_THROTTLED", 1).await;
    assert!(lines_with(&lines, "PEER_THROTTLED")[0]["peer"].as_str().unwrap().starts_with("127.0.0.1:"));

    // Now even a good certificate from this address is turned away...
    let refused = match server.try_channel(Some(server.identity("admin"))).await {
        Err(_) => true,
        Ok(channel) => ContactCacheClient::new(channel).stats(StatsRequest {}).await.is_err(),
    };
    assert!(refused, "the peer is locked out");
    // ...until the window has passed.
    server.clock.advance(SignedDuration::from_secs(61));
    let mut admin = server.client_as("admin").await;
    admin.stats(StatsRequest {}).await.unwrap();
}

#[tokio::test]
async fn when_the_audit_sink_fails_requests_fail_closed() {
    let sink = Switchable::default();
    let server = start_with_audit_sink(|_| {}, Box::new(sink.clone())).await;
    let mut c = server.clients().await;
    let kept = c.put(contact(1)).await;
    assert!(String::from_utf8(sink.written.lock().unwrap().clone()).unwrap().contains("CONTACT_PUT"));

    sink.failing.store(true, Ordering::SeqCst);
    let put =
        c.emr("site-1001").put_contact(PutContactRequest { contact: Some(contact(2)) }).await.unwrap_err();
    assert_eq!(put.code(), Code::Unavailable);
    let get = c.outreach.get_contact(GetContactRequest { guid: kept.clone() }).await.unwrap_err();
    assert_eq!(get.code(), Code::Unavailable, "no contact is handed out unaudited");
    let stats = c.admin.stats(StatsRequest {}).await.unwrap_err();
    assert_eq!(stats.code(), Code::Unavailable);
    let denied = c.admin.get_contact(GetContactRequest { guid: kept.clone() }).await.unwrap_err();
    assert_eq!(denied.code(), Code::Unavailable, "even a denial must be on record");

    sink.failing.store(false, Ordering::SeqCst);
    let stats = c.admin.stats(StatsRequest {}).await.unwrap().into_inner();
    assert_eq!(stats.entries, 1, "the put that could not be audited was not kept");
    c.outreach.get_contact(GetContactRequest { guid: kept }).await.unwrap();
}

#[tokio::test]
async fn plaintext_is_refused_and_tls_1_2_is_the_floor() {
    let server = start(|_| {}).await;

    // gRPC without TLS.
    let plain = Channel::from_shared(format!("http://127.0.0.1:{}", server.addr.port())).unwrap();
    let result = match plain.connect().await {
        Err(_) => Err(()),
        Ok(channel) => ContactCacheClient::new(channel).stats(StatsRequest {}).await.map(drop).map_err(drop),
    };
    assert!(result.is_err());
    wait_for(&server, "AUTH_FAILED", 1).await;

    // TLS 1.2 alone is accepted.
    let version = handshake_version(&server, &[&rustls::version::TLS12]).await.unwrap();
    assert_eq!(version, rustls::ProtocolVersion::TLSv1_2);
    let version = handshake_version(&server, &[&rustls::version::TLS13]).await.unwrap();
    assert_eq!(version, rustls::ProtocolVersion::TLSv1_3);

    // TLS 1.1 and 1.0: rustls cannot speak them; OpenSSL can be made to.
    for flag in ["-tls1_1", "-tls1"] {
        let before = lines_with(&server.audit_lines(), "AUTH_FAILED").len();
        let out = tokio::process::Command::new("openssl")
            .args(["s_client", flag, "-cipher", "DEFAULT@SECLEVEL=0", "-connect"])
            .arg(format!("127.0.0.1:{}", server.addr.port()))
            .stdin(std::process::Stdio::null())
            .output()
            .await;
        let Ok(out) = out else {
            eprintln!("openssl is not installed: {flag} not tried");
            continue;
        };
        assert!(!out.status.success(), "{flag} handshake succeeded");
        // The ClientHello reached the server and was refused there.
        wait_for(&server, "AUTH_FAILED", before + 1).await;
    }
}

async fn handshake_version(
    server: &TestServer,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<rustls::ProtocolVersion, io::Error> {
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(server.ca_pem.as_bytes()).unwrap()).unwrap();
    let cert = CertificateDer::from_pem_file(server.path("admin.pem")).unwrap();
    let key = PrivateKeyDer::from_pem_file(server.path("admin.key")).unwrap();
    let config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(vec![cert], key)
            .unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(server.addr).await?;
    let tls = connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await?;
    Ok(tls.get_ref().1.protocol_version().unwrap())
}
