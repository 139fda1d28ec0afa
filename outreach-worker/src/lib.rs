//! The outreach worker: leases due invitations from the cache, sends them by SMS or email,
//! and acks the outcome. This first slice holds two parts:
//!
//! - [`suppression`]: the suppression list, as HMACs of phones and emails, in the worker's
//!   own database;
//! - [`sms`]: the SMS client for the Twilio Messages wire format, with retries, outcome
//!   classification and segment counting.

pub mod sms;
pub mod suppression;
