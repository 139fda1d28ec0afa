//! The connection threads: each connection is served on one of `connection_threads` event
//! loops, and stopping the daemon stops them, closing what is still open after the drain
//! deadline. (A file of its own: it counts this process's threads by name.)
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{contact, start};
use proto::v1::{PutContactRequest, StatsRequest, contact_cache_client::ContactCacheClient};

/// The names of this process's threads that serve connections.
fn connection_threads() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_string())
        .filter(|name| name.starts_with("cache-conn-"))
        .collect();
    names.sort();
    names
}

/// Waits (up to ten seconds) until no connection thread is left.
async fn wait_for_no_connection_threads() {
    for _ in 0..500 {
        if connection_threads().is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("still running: {:?}", connection_threads());
}

// One test function for both cases: they count this process's threads, so they must not
// run side by side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_threads_serve_every_connection_and_stop_with_the_daemon() {
    connections_are_served_by_the_configured_threads_which_stop_with_the_daemon().await;
    a_call_still_open_at_the_drain_deadline_is_closed_when_the_daemon_stops().await;
}

async fn connections_are_served_by_the_configured_threads_which_stop_with_the_daemon() {
    let server = start(|c| c.connection_threads = 3).await;
    // More connections than threads: each is dealt to one in turn, and each is served.
    let mut clients = Vec::new();
    for _ in 0..7 {
        clients
            .push(ContactCacheClient::new(server.try_channel(Some(server.identity("admin"))).await.unwrap()));
    }
    for client in &mut clients {
        assert_eq!(client.stats(StatsRequest {}).await.unwrap().into_inner().entries, 0);
    }
    assert_eq!(connection_threads(), ["cache-conn-0", "cache-conn-1", "cache-conn-2"]);
    drop(clients);

    server.stop().await.unwrap();
    wait_for_no_connection_threads().await;
}

async fn a_call_still_open_at_the_drain_deadline_is_closed_when_the_daemon_stops() {
    let mut server = start(|c| {
        c.connection_threads = 1;
        c.shutdown_grace_seconds = 1;
    })
    .await;
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

    // The stream stays open past the one-second drain: the daemon stops anyway, and the call
    // ends (it does not hang on a connection nobody serves).
    server.signal_shutdown();
    let ended = tokio::time::timeout(Duration::from_secs(20), results.message()).await;
    assert!(matches!(ended, Ok(Err(_)) | Ok(Ok(None))), "{ended:?}");
    server.stop().await.unwrap();
    wait_for_no_connection_threads().await;
    drop(tx);
}
