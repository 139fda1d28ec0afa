//! The contact cache daemon: patients' contact details in locked, encrypted RAM under random
//! GUIDs, served over gRPC/TLS, forgotten after the retention period.
//!
//! Where to look:
//! - [`server::run`] starts everything and drains on shutdown; `main.rs` only parses flags.
//! - [`store`] holds the entries and their outreach state (the due queue); [`crypto`] seals
//!   them under day keys; [`validate`] checks what comes in; [`sweep`] erases what expired.
//! - [`service`] is the gRPC surface, [`error`] maps failures to statuses, [`tls`] accepts
//!   connections and identifies callers by certificate, [`serve`] serves HTTP/2 on them
//!   (and refuses requests over `store.max_message_bytes`), [`auth`] says which role may
//!   call what, [`audit`] writes the audit trail, [`throttle`] locks out callers that fail
//!   too often; [`reflection`] serves gRPC reflection v1 and v1alpha (the bridge's too).
//! - [`memory`] locks memory and disables core dumps; [`config`] reads settings; [`reload`]
//!   reads the certificates again and reopens the audit file on SIGHUP; [`certs`] makes a
//!   development PKI; [`telemetry`] sets up logs and metrics.

pub mod audit;
pub mod auth;
pub mod certs;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod denials;
pub mod error;
pub mod guid;
pub mod memory;
pub mod reflection;
pub mod reload;
pub mod serve;
pub mod server;
pub mod service;
pub mod store;
pub mod sweep;
pub mod telemetry;
pub mod throttle;
pub mod tls;
pub mod validate;

pub use server::{Listeners, RunError, run, run_with_audit, run_with_reloads};
