//! The outreach worker: leases due invitations from the contact cache, sends them by SMS or
//! email, and acks the outcome.
//!
//! - [`worker`]: the loop: suppression check, reminder check, channel, quiet hours, ledger,
//!   send, Ack;
//! - [`app`]: building the worker from its [`config`] and running it until shutdown;
//! - [`suppression`]: the suppression list, as HMACs of phones and emails, in the worker's
//!   own database, and the contacts of sent messages remembered by GUID ([`suppression::sent`]);
//! - [`opt_outs`]: opt-outs reported by the bridge after the cache erased the contact;
//! - [`inbound`]: the inbound SMS webhook, where a STOP reply suppresses the number at once
//!   (Twilio's signature, the opt-out words, the HTTPS listener);
//! - [`sms`]: the SMS client for the Twilio Messages wire format, with retries, outcome
//!   classification and segment counting;
//! - [`email`]: email over SMTP, with one-click unsubscribe headers;
//! - [`templates`]: per-campaign, per-language message templates;
//! - [`quiet`]: quiet hours in the patient's time zone;
//! - [`clients`]: the gRPC clients of the cache and the bridge.

pub mod app;
pub mod clients;
pub mod config;
pub mod email;
pub mod inbound;
pub mod opt_outs;
pub mod quiet;
pub mod sites;
pub mod sms;
pub mod suppression;
pub mod templates;
pub mod worker;
