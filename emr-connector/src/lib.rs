//! A reference EMR connector: reads an appointment export (CSV), checks each row with the
//! cache's own rules, streams the good ones to the contact cache with `PutContacts` over
//! mutual TLS as the `emr` caller of one site, and keeps the GUID each row got in a map file
//! that stays at the clinic.
//!
//! Where to look:
//! - [`rows`] reads the CSV: columns by header name, one [`rows::Row`] per good line and one
//!   [`rows::Refusal`] (line, row id, field, message; never the value) per bad one.
//! - [`phone`] reads phone numbers as EMRs write them (`(613) 555-0101`) into E.164, in the
//!   configured default region.
//! - [`map`] is the GUID map file (`row_id,guid,expires_at`, owner-only, appended as results
//!   arrive, its expired entries dropped at each run) and the row ids it still holds.
//! - [`push`] connects to the cache and pairs each streamed result with its row.
//! - [`app`] puts them together for the `push` command: counts, progress, exit codes.
//! - [`config`] reads settings (TOML file, `EMR_CONNECTOR_*` environment, flags).
//!
//! # The input
//!
//! A CSV file with a header line. Columns are found by name (case and surrounding spaces
//! ignored); other columns are ignored and never read, so an export may carry more than
//! this connector needs. Values are trimmed.
//!
//! | column | value |
//! |---|---|
//! | `row_id` | the clinic's own id for the row, 1 to 64 of `[A-Za-z0-9._:-]`, unique in the file; it is the key of the GUID map, so it must not be a name or a health card number |
//! | `site_id` | the clinic site, e.g. `site-1001`; must be the site of the connector's certificate |
//! | `provider_id` | the provider seen, same form |
//! | `campaign_id` | the survey campaign, same form |
//! | `phone` | a phone number as the EMR writes it (`613-555-0101`, `(613) 555-0101`, `1 613 555 0101`, `+1 613 555 0101`), sent in E.164 (`+16135550101`); without a country code, a number of `default_region` (CA); or empty |
//! | `email` | an address or empty; at least one of phone and email |
//! | `language` | `en` or `fr` |
//! | `time_zone` | an IANA name, e.g. `America/Toronto` |
//! | `appointment_at` | RFC 3339 with an offset, e.g. `2026-11-20T09:00:00-05:00` |
//! | `channel` | `sms`, `email` or `any` (empty means `any`) |
//!
//! The invitation is due at `appointment_at` plus a delay (`send_after_hours`, 2 by
//! default: invitations go out after the visit), and never before the row is pushed.
//!
//! # What is reported
//!
//! Each refused row is one line, `FILE:LINE: row ROW_ID: FIELD: message`, where `FIELD` is
//! the `contactcache.v1` field at fault (`contact.phone` for the `phone` column; `contact`
//! alone when neither phone nor email is given) or a column of the file that has no field
//! of its own (`row_id`, `appointment_at`). Messages never repeat the value: it may be a
//! phone number or an email. [`rows::Row`]'s `Debug` shows phone and email only as present
//! or absent.

pub mod app;
pub mod config;
pub mod map;
pub mod phone;
pub mod push;
pub mod rows;
