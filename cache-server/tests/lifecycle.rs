//! Start-up, the scheduled sweep, graceful shutdown and restart.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{contact, start, test_config};
use jiff::SignedDuration;
use proto::v1::{GetContactRequest, PutContactRequest, StatsRequest};
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

#[tokio::test]
async fn health_and_reflection_are_served_on_the_same_port() {
    let server = start(|_| {}).await;
    let channel = server.channel().await;
    let mut health = HealthClient::new(channel.clone());
    let status = health
        .check(HealthCheckRequest { service: "contactcache.v1.ContactCache".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.status(), ServingStatus::Serving);

    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses =
        reflection.server_reflection_info(tokio_stream::iter(vec![request])).await.unwrap().into_inner();
    let response = responses.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"contactcache.v1.ContactCache"), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");
}

#[tokio::test]
async fn unknown_services_and_methods_answer_unimplemented() {
    let server = start(|_| {}).await;
    let channel = server.channel().await;
    for path in ["/contactcache.v1.ContactCache/NoSuchMethod", "/no.such.v1.Service/Call"] {
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        grpc.ready().await.unwrap();
        let codec = proto::codec::Codec1K::<StatsRequest, StatsRequest>::default();
        let path = http::uri::PathAndQuery::from_static(path);
        let status = grpc.unary(tonic::Request::new(StatsRequest {}), path.clone(), codec).await.unwrap_err();
        assert_eq!(status.code(), Code::Unimplemented, "{path}");
    }
}

#[tokio::test]
async fn the_scheduled_sweep_erases_expired_contacts() {
    // Every second, so the test need not wait for midnight; the clock it judges by is moved.
    let server = start(|c| c.store.sweep_schedule = "* * * * * *".into()).await;
    let mut c = server.clients().await;
    let old = c.put(contact(1)).await;
    server.clock.advance(SignedDuration::from_hours(24 * 20));
    let young = c.put(contact(2)).await;
    server.clock.advance(SignedDuration::from_hours(24 * 11));

    let mut stats = c.admin.stats(StatsRequest {}).await.unwrap().into_inner();
    for _ in 0..300 {
        if stats.last_sweep_at.is_some_and(|_| stats.entries == 1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        stats = c.admin.stats(StatsRequest {}).await.unwrap().into_inner();
    }
    assert_eq!(stats.entries, 1, "the old contact was swept");
    assert_eq!(stats.day_keys, 1, "its day key was destroyed");
    let status = c.outreach.get_contact(GetContactRequest { guid: old }).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    c.outreach.get_contact(GetContactRequest { guid: young }).await.unwrap();
}

#[tokio::test]
async fn a_request_in_flight_finishes_after_the_shutdown_signal() {
    let mut server = start(|_| {}).await;
    let mut c = server.clients().await;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut results = c
        .emr("site-1001")
        .put_contacts(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    tx.send(PutContactRequest { contact: Some(contact(1)) }).await.unwrap();
    assert!(results.message().await.unwrap().unwrap().error.is_none());

    server.signal_shutdown();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The stream opened before the signal still takes items and answers them.
    tx.send(PutContactRequest { contact: Some(contact(2)) }).await.unwrap();
    let second = results.message().await.unwrap().unwrap();
    assert_eq!(second.index, 1);
    assert!(second.error.is_none());
    drop(tx);
    assert!(results.message().await.unwrap().is_none());

    server.stop().await.unwrap();
}

#[tokio::test]
async fn new_calls_are_refused_while_draining_and_run_returns() {
    let server = start(|_| {}).await;
    let channel = server.try_channel(Some(server.identity("admin"))).await.unwrap();
    server.stop().await.unwrap();
    let mut admin = proto::v1::contact_cache_client::ContactCacheClient::new(channel);
    assert!(admin.stats(StatsRequest {}).await.is_err());
}

#[tokio::test]
async fn a_restart_starts_empty_with_a_new_epoch() {
    let (config, dir, ca) = test_config();
    let first = common::start_with(config.clone(), dir.clone(), ca.clone()).await;
    let mut c = first.clients().await;
    let guid = c.put(contact(1)).await;
    let before = c.admin.stats(StatsRequest {}).await.unwrap().into_inner();
    assert_eq!(before.entries, 1);
    first.stop().await.unwrap();

    let second = common::start_with(config, dir, ca).await;
    let mut c = second.clients().await;
    let after = c.admin.stats(StatsRequest {}).await.unwrap().into_inner();
    assert_eq!(after.entries, 0);
    assert_ne!(after.instance_epoch, before.instance_epoch);
    let status = c.outreach.get_contact(GetContactRequest { guid }).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn memory_is_locked_after_start_up_when_run_as_root() {
    let server = start(|c| c.memory.allow_unlocked = false).await;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        // Without CAP_IPC_LOCK the daemon must refuse to start rather than run unlocked.
        let refused = server.stop().await;
        assert!(matches!(refused, Err(cache_server::RunError::Memory(_))), "{refused:?}");
        eprintln!("not root: checked the refusal instead of VmLck");
        return;
    }
    let mut c = server.clients().await;
    assert!(c.admin.stats(StatsRequest {}).await.unwrap().into_inner().memory_locked);
    let locked = cache_server::memory::locked_kib().unwrap();
    assert!(locked > 0, "VmLck is {locked} kB");
}
