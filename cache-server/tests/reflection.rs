//! Server reflection on the cache's port, in both versions tools speak (v1: grpcurl; v1alpha:
//! Python's grpcio client, older grpcurl): exactly the services the port serves.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;

use common::start;
use test_support::reflection::{Version, file_containing_symbol, list_services};
use tonic::Code;

/// What the cache's port serves: the cache, health, and reflection in its two versions.
const SERVED: [&str; 4] = [
    "contactcache.v1.ContactCache",
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

#[tokio::test]
async fn both_versions_list_exactly_the_services_the_port_serves() {
    let server = start(|_| {}).await;
    let channel = server.try_channel(Some(server.identity("outreach"))).await.unwrap();
    let served: BTreeSet<String> = SERVED.iter().map(|s| s.to_string()).collect();
    for version in Version::ALL {
        let listed = list_services(channel.clone(), version).await.unwrap();
        assert_eq!(listed, served, "{version:?}");
    }
}

#[tokio::test]
async fn both_versions_describe_the_cache_and_know_nothing_of_the_ledger() {
    let server = start(|_| {}).await;
    let channel = server.try_channel(Some(server.identity("outreach"))).await.unwrap();
    for version in Version::ALL {
        let files = file_containing_symbol(channel.clone(), version, "contactcache.v1.ContactCache").await;
        let files = files.unwrap_or_else(|status| panic!("{version:?}: {status:?}"));
        assert_eq!(
            files,
            [("contactcache/v1/contactcache.proto".to_string(), vec!["ContactCache".to_string()])],
            "{version:?}"
        );
        // A method and a message resolve too, as grpcurl's `describe` asks.
        for symbol in ["contactcache.v1.ContactCache.PutContact", "contactcache.v1.Contact"] {
            let files = file_containing_symbol(channel.clone(), version, symbol).await.unwrap();
            assert_eq!(files[0].0, "contactcache/v1/contactcache.proto", "{version:?} {symbol}");
        }
        // The ledger is the bridge's: not served here, so not described here either.
        let ledger =
            file_containing_symbol(channel.clone(), version, "surveybridge.v1.InvitationLedger").await;
        assert_eq!(ledger.unwrap_err().code(), Code::NotFound, "{version:?}");
    }
}
