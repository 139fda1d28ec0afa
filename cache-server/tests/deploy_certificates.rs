//! The `sh` blocks of CERTIFICATES.md, run with openssl (required with
//! DEPLOY_REQUIRE_OPENSSL=1), make certificates the cache serves with and accepts each
//! caller by, with the right role and site.
#![allow(clippy::unwrap_used)]

mod common;
mod deploy;

use std::{fs, os::unix::fs::PermissionsExt, process::Command};

use cache_server::auth::{Role, caller_from_certificate};
use deploy::{deploy, have, read, run};
use proto::v1::{LeaseDueRequest, PutContactRequest, StatsRequest, contact_cache_client::ContactCacheClient};
use tonic::{Code, transport::Identity};

// ---------------------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------------------

/// The `sh` blocks of CERTIFICATES.md, in order.
fn certificate_script() -> String {
    let text = read(&deploy("CERTIFICATES.md"));
    let mut script = String::new();
    let mut inside = false;
    for line in text.lines() {
        match (inside, line.trim_end()) {
            (false, "```sh") => inside = true,
            (true, "```") => inside = false,
            (true, _) => {
                script.push_str(line);
                script.push('\n');
            }
            _ => {}
        }
    }
    assert!(!inside, "CERTIFICATES.md: an sh block is not closed");
    script
}

#[tokio::test]
async fn the_openssl_recipe_makes_certificates_the_cache_serves_with_and_accepts() {
    if !have("openssl", "DEPLOY_REQUIRE_OPENSSL") {
        return;
    }
    let script = certificate_script();
    assert!(script.contains("openssl x509 -req"), "CERTIFICATES.md lost its openssl blocks");
    let pki = tempfile::tempdir().unwrap();
    run(Command::new("bash").args(["-euo", "pipefail", "-c", &script]).current_dir(pki.path()));
    let path = |name: &str| pki.path().join(name);
    for key in ["ca.key", "cache-server.key", "emr-site-1001.key", "outreach.key"] {
        let mode = fs::metadata(path(key)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{key}");
    }

    // Each client certificate names its caller as the cache reads it.
    for (name, role, site) in [
        ("emr-site-1001", Role::Emr, Some("site-1001")),
        ("outreach", Role::Outreach, None),
        ("bridge", Role::Bridge, None),
        ("admin", Role::Admin, None),
    ] {
        let der = cache_server::tls::load_certs("client", &path(&format!("{name}.pem"))).unwrap();
        let caller = caller_from_certificate(&der[0]).unwrap_or_else(|e| panic!("{name}.pem: {e}"));
        assert_eq!((caller.role, caller.site.as_deref(), caller.name.as_str()), (role, site, name));
    }

    // The cache serves with them and takes each caller for what its certificate says.
    let (mut config, dir, _) = common::test_config();
    config.tls.cert = path("cache-server.pem");
    config.tls.key = path("cache-server.key");
    config.tls.client_ca = path("ca.pem");
    let server = common::start_with(config, dir, read(&path("ca.pem"))).await;
    let client = |name: &str| {
        let identity =
            Identity::from_pem(read(&path(&format!("{name}.pem"))), read(&path(&format!("{name}.key"))));
        let server = &server;
        async move { ContactCacheClient::new(server.try_channel(Some(identity)).await.unwrap()) }
    };

    let mut emr = client("emr-site-1001").await;
    emr.put_contact(PutContactRequest { contact: Some(common::contact(1)) }).await.unwrap();
    let mut other_site = common::contact(2);
    other_site.site_id = "site-1002".into();
    let refused = emr.put_contact(PutContactRequest { contact: Some(other_site) }).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);

    let due =
        client("outreach").await.lease_due(LeaseDueRequest { max: 10, lease_seconds: 60 }).await.unwrap();
    assert_eq!(due.into_inner().contacts.len(), 1);
    let stats = client("admin").await.stats(StatsRequest {}).await.unwrap().into_inner();
    assert_eq!(stats.entries, 1);
    let denied = client("bridge").await.stats(StatsRequest {}).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    server.stop().await.unwrap();
}
