//! Test support shared by the worker's integration tests.
#![allow(dead_code, clippy::unwrap_used)]

pub mod email;
pub mod smtp;
pub mod tier;
pub mod twilio;
