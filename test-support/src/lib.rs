//! Set-up shared by the workspace's tests (a dev-dependency only).
//!
//! [`grpc`] opens a tonic channel over mutual TLS with a role certificate of a development
//! PKI; [`https`] builds an HTTPS client that trusts the test CA and reads a page's CSRF
//! token; [`db`] makes the databases a storage test runs against (SQLite, and PostgreSQL
//! when configured); [`logrotate`] runs the shipped logrotate files; [`reflection`] asks a
//! server what it serves over gRPC reflection, v1 or v1alpha. Everything panics on failure,
//! as test set-up does, but [`reflection`], whose answers (statuses included) are what its
//! tests look at.

pub mod db;
pub mod grpc;
pub mod https;
pub mod logrotate;
pub mod reflection;

pub use db::databases;
pub use grpc::{mtls_channel, mtls_endpoint};
pub use https::{csrf, https_client};
pub use logrotate::{have_logrotate, rotate_now, user_and_group};
