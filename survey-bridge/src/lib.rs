//! The survey bridge: what a patient sees after clicking an invitation link, and where the
//! answers become anonymous counts.
//!
//! Where to look:
//! - [`server::run`] starts everything; `main.rs` only parses flags.
//! - [`ledger`] records invitations for the outreach worker (gRPC over mutual TLS, with
//!   gRPC health and reflection on the same port).
//! - [`pages`] serves the consent and survey pages ([`html`] renders them, [`https`] accepts
//!   their connections); [`questionnaire`] is the built-in survey; [`unsubscribe`] is the
//!   email unsubscribe page and its one-click POST (RFC 8058).
//! - [`results`] takes answers from external surveys (a signed webhook) and reconciles
//!   them; [`import`] does the same for a CSV export; [`redirect`] is the plain-HTTP port.
//! - [`accounts`] and [`portal`] sign report readers in (argon2id, TOTP) and serve the
//!   reports, whose numbers [`report`] builds and renders with small cells suppressed.
//! - [`telemetry`] serves the Prometheus metrics; [`reload`] reads the certificates again
//!   and reopens the audit file on SIGHUP; [`probes`] answers `/healthz` and `/readyz` on
//!   the HTTPS port.
//! - [`fold`] counts the answers waiting in the pool, a whole group at a time, apart from
//!   their invitations.
//! - [`outbox`] forwards declines to the cache's `OptOut`, retrying while it is down.
//! - [`db`] keeps the ledger and the aggregates (SQLite or PostgreSQL); [`keys`] derives
//!   the keys that hash GUIDs and sign forms; [`config`] reads settings.
//! - [`periods`] says which months, quarters and years are released to the reports.
//! - [`report`] turns aggregate counts into providers' reports (HTML, CSV, JSON), small
//!   cells suppressed.

pub mod accounts;
pub mod client;
pub mod config;
pub mod db;
pub mod fold;
pub mod html;
pub mod https;
pub mod import;
pub mod keys;
pub mod ledger;
pub mod outbox;
pub mod pages;
pub mod periods;
pub mod portal;
pub mod probes;
pub mod questionnaire;
pub mod redirect;
pub mod reload;
pub mod report;
pub mod results;
pub mod routes;
pub mod server;
pub mod telemetry;
pub mod unsubscribe;

pub use server::{Listeners, RunError, check, run, run_with_reloads};
