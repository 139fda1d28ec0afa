//! Reading the EMR export: columns found by header name, each line checked with the cache's
//! own rules ([`cache_server::validate`]) and turned into a [`Contact`], or refused. Phone
//! numbers are read as EMRs write them and sent in E.164 ([`crate::phone`]).
//!
//! A refusal names the line, the row id (when it is usable) and the field, never the value.
//! Only an unreadable file or an unusable header stops [`read`]; a bad line does not.

use std::{
    collections::{HashMap, HashSet},
    fmt, io,
};

use cache_server::validate;
use csv::{ByteRecord, ReaderBuilder, Trim};
use jiff::{SignedDuration, Timestamp};
use proto::v1::{Channel, Contact};
use zeroize::Zeroizing;

use crate::phone::{self, Region};

/// The columns read, by header name. Any other column is ignored and never read.
pub const COLUMNS: [&str; 10] = [
    "row_id",
    "site_id",
    "provider_id",
    "campaign_id",
    "phone",
    "email",
    "language",
    "time_zone",
    "appointment_at",
    "channel",
];

/// The name each column is reported by: the `contactcache.v1` field it fills, or the column
/// itself when it fills none directly.
const FIELDS: [&str; 10] = [
    "row_id",
    "contact.site_id",
    "contact.provider_id",
    "contact.campaign_id",
    "contact.phone",
    "contact.email",
    "contact.language",
    "contact.time_zone",
    "appointment_at",
    "contact.channel",
];

const ROW_ID: usize = 0;
const SITE_ID: usize = 1;
const PROVIDER_ID: usize = 2;
const CAMPAIGN_ID: usize = 3;
const PHONE: usize = 4;
const EMAIL: usize = 5;
const LANGUAGE: usize = 6;
const TIME_ZONE: usize = 7;
const APPOINTMENT_AT: usize = 8;
const CHANNEL: usize = 9;

/// The longest retention a cache can have, in days: a send-after time further ahead than
/// this could never be honoured, whatever the cache's settings.
pub const MAX_RETENTION_DAYS: i64 = 30;

/// One good line: the contact to send and where it came from.
///
/// `Debug` shows phone and email only as present or absent ([`Contact`]'s own `Debug`), and
/// the contact's phone and email are zeroized when it is dropped.
#[derive(Debug)]
pub struct Row {
    /// The line the record starts on, from 1 (the header).
    pub line: u64,
    /// The clinic's id for the row.
    pub row_id: String,
    /// What is sent.
    pub contact: Contact,
}

/// One refused line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The line the record starts on, from 1 (the header).
    pub line: u64,
    /// The row's id, when it was usable.
    pub row_id: Option<String>,
    /// The field at fault: a `contactcache.v1` field (`contact.phone`), or a column that has
    /// none (`row_id`, `appointment_at`), or `record` for a line with too few fields.
    pub field: String,
    /// What is wrong; never the value.
    pub message: String,
}

impl fmt::Display for Refusal {
    /// `LINE: row ROW_ID: FIELD: message` (the caller puts the file name in front).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id = self.row_id.as_deref().unwrap_or("?");
        write!(f, "{}: row {id}: {}: {}", self.line, self.field, self.message)
    }
}

/// The header line is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Required columns are not in the header.
    #[error("missing column(s) {} (the header must name: {})", .0.join(", "), COLUMNS.join(", "))]
    Missing(Vec<&'static str>),
    /// A column is named twice, so which one to read is unclear.
    #[error("column {0} is named twice in the header")]
    Repeated(&'static str),
}

/// The file could not be read through.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The header is unusable.
    #[error(transparent)]
    Header(#[from] HeaderError),
    /// Reading failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The CSV reader failed otherwise.
    #[error("{0}")]
    Csv(String),
}

impl From<csv::Error> for ReadError {
    fn from(e: csv::Error) -> Self {
        if e.is_io_error() {
            match e.into_kind() {
                csv::ErrorKind::Io(e) => ReadError::Io(e),
                other => ReadError::Csv(format!("{other:?}")),
            }
        } else {
            ReadError::Csv(e.to_string())
        }
    }
}

/// Where each of [`COLUMNS`] is in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Columns([usize; 10]);

impl Columns {
    /// Finds every column of [`COLUMNS`] in `header`.
    pub fn from_header(header: &ByteRecord) -> Result<Columns, HeaderError> {
        let mut found = [None; 10];
        for (at, name) in header.iter().enumerate() {
            let name = String::from_utf8_lossy(name);
            let name = name.trim().trim_start_matches('\u{feff}').trim();
            if let Some(column) = COLUMNS.iter().position(|c| c.eq_ignore_ascii_case(name)) {
                if found[column].is_some() {
                    return Err(HeaderError::Repeated(COLUMNS[column]));
                }
                found[column] = Some(at);
            }
        }
        let missing: Vec<_> =
            COLUMNS.iter().zip(found).filter(|(_, at)| at.is_none()).map(|(c, _)| *c).collect();
        if !missing.is_empty() {
            return Err(HeaderError::Missing(missing));
        }
        Ok(Columns(found.map(|at| at.unwrap_or_default())))
    }

    /// The record's row id, checked (the id rules of the cache: 1 to 64 of
    /// `[A-Za-z0-9._:-]`, so it can be written to the map as it is).
    pub fn row_id(&self, record: &ByteRecord, line: u64) -> Result<String, Refusal> {
        let refuse = |message: &str| Refusal {
            line,
            row_id: None,
            field: FIELDS[ROW_ID].into(),
            message: message.into(),
        };
        let bytes =
            record.get(self.0[ROW_ID]).ok_or_else(|| refuse("is missing: the line has too few fields"))?;
        let id = std::str::from_utf8(bytes).map_err(|_| refuse("is not UTF-8 text"))?;
        validate::id(FIELDS[ROW_ID], id).map_err(|e| refuse(e.message))?;
        Ok(id.to_string())
    }

    /// The contact of the record with row id `row_id`, checked as the cache would check it;
    /// its phone number in E.164, read as a number of `region` when it has no country code.
    pub fn contact(
        &self,
        timing: &Timing,
        region: Region,
        record: &ByteRecord,
        line: u64,
        row_id: &str,
    ) -> Result<Contact, Refusal> {
        let refuse = |field: &str, message: &str| Refusal {
            line,
            row_id: Some(row_id.to_string()),
            field: field.into(),
            message: message.into(),
        };
        let need = self.0.iter().max().copied().unwrap_or_default() + 1;
        if record.len() < need {
            return Err(refuse(
                "record",
                &format!("has {} fields, too few for the columns of the header", record.len()),
            ));
        }
        let text = |column: usize| -> Result<&str, Refusal> {
            let bytes = record.get(self.0[column]).unwrap_or_default();
            std::str::from_utf8(bytes).map_err(|_| refuse(FIELDS[column], "is not UTF-8 text"))
        };

        let channel = match text(CHANNEL)? {
            "" => Channel::Unspecified,
            c if c.eq_ignore_ascii_case("sms") => Channel::Sms,
            c if c.eq_ignore_ascii_case("email") => Channel::Email,
            c if c.eq_ignore_ascii_case("any") => Channel::Any,
            _ => return Err(refuse(FIELDS[CHANNEL], "must be sms, email or any")),
        };
        let appointment: Timestamp = text(APPOINTMENT_AT)?.parse().map_err(|_| {
            refuse(
                FIELDS[APPOINTMENT_AT],
                "is not an RFC 3339 time with an offset, e.g. 2026-11-20T09:00:00-05:00",
            )
        })?;
        let send_after = timing
            .send_after(appointment)
            .ok_or_else(|| refuse(FIELDS[APPOINTMENT_AT], "is out of range"))?;

        let mut contact = Contact {
            site_id: text(SITE_ID)?.to_string(),
            provider_id: text(PROVIDER_ID)?.to_string(),
            campaign_id: text(CAMPAIGN_ID)?.to_string(),
            phone: phone::to_e164(text(PHONE)?, region).map_err(|e| refuse(FIELDS[PHONE], &e.to_string()))?,
            email: text(EMAIL)?.to_string(),
            language: text(LANGUAGE)?.to_string(),
            time_zone: text(TIME_ZONE)?.to_string(),
            send_after: Some(prost_types::Timestamp {
                seconds: send_after.as_second(),
                nanos: send_after.subsec_nanosecond(),
            }),
            channel: channel as i32,
        };
        validate::contact(&mut contact, timing.latest_send_after())
            .map_err(|e| refuse(e.field, e.message))?;
        Ok(contact)
    }
}

/// When invitations are due: the appointment plus a delay, never before now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Added to the appointment time.
    pub delay: SignedDuration,
    /// The time of the run.
    pub now: Timestamp,
}

impl Timing {
    /// `delay_hours` after each appointment, and not before `now`.
    pub fn new(delay_hours: u32, now: Timestamp) -> Timing {
        Timing { delay: SignedDuration::from_hours(i64::from(delay_hours)), now }
    }

    /// The send-after time for an appointment at `appointment`; none when out of range.
    pub fn send_after(&self, appointment: Timestamp) -> Option<Timestamp> {
        appointment.checked_add(self.delay).ok().map(|at| at.max(self.now))
    }

    /// The latest send-after time any cache could accept now.
    pub fn latest_send_after(&self) -> Timestamp {
        self.now.checked_add(SignedDuration::from_hours(24 * MAX_RETENTION_DAYS)).unwrap_or(Timestamp::MAX)
    }
}

/// What [`read`] found.
#[derive(Debug, Default)]
pub struct Input {
    /// Good rows not in the map yet, in file order.
    pub rows: Vec<Row>,
    /// Refused rows, in file order.
    pub refused: Vec<Refusal>,
    /// Rows whose row id was already pushed (in the map), not checked again.
    pub skipped: usize,
}

/// Reads the whole export from `input`: good rows to send, refused rows to report, and the
/// count of rows skipped because their row id is in `already_pushed`. Phone numbers without
/// a country code are numbers of [`phone::DEFAULT_REGION`] (CA): [`read_in`] reads them in
/// another region.
pub fn read(
    input: impl io::Read,
    timing: &Timing,
    already_pushed: &HashSet<String>,
) -> Result<Input, ReadError> {
    read_in(input, timing, phone::DEFAULT_REGION, already_pushed)
}

/// [`read`], with phone numbers written without a country code read as numbers of `region`.
///
/// A row id seen twice in the file is refused the second time (pushing it again would make a
/// second GUID, and a second invitation).
///
/// The file is read whole first (and zeroized when done): line numbers are counted from its
/// bytes, because the CSV reader's own count drifts on CRLF line ends and blank lines.
pub fn read_in(
    mut input: impl io::Read,
    timing: &Timing,
    region: Region,
    already_pushed: &HashSet<String>,
) -> Result<Input, ReadError> {
    let mut data = Zeroizing::new(Vec::new());
    input.read_to_end(&mut data)?;
    let mut lines = Lines { data: &data, counted: 0, line: 1 };
    let mut reader = ReaderBuilder::new().flexible(true).trim(Trim::All).from_reader(&data[..]);
    let columns = Columns::from_header(reader.byte_headers()?)?;
    let mut found = Input::default();
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut record = ByteRecord::new();
    while reader.read_byte_record(&mut record)? {
        let line = lines.at(record.position().map_or(0, |p| p.byte()));
        let row_id = match columns.row_id(&record, line) {
            Ok(id) => id,
            Err(refusal) => {
                found.refused.push(refusal);
                continue;
            }
        };
        if let Some(first) = seen.get(&row_id) {
            found.refused.push(Refusal {
                line,
                row_id: Some(row_id),
                field: FIELDS[ROW_ID].into(),
                message: format!("repeats the row id of line {first}"),
            });
            continue;
        }
        seen.insert(row_id.clone(), line);
        if already_pushed.contains(&row_id) {
            found.skipped += 1;
            continue;
        }
        match columns.contact(timing, region, &record, line, &row_id) {
            Ok(contact) => found.rows.push(Row { line, row_id, contact }),
            Err(refusal) => found.refused.push(refusal),
        }
    }
    Ok(found)
}

/// Line numbers of byte offsets, counted forward (offsets only grow); a line ends at LF,
/// CRLF or a lone CR.
struct Lines<'a> {
    data: &'a [u8],
    counted: usize,
    line: u64,
}

impl Lines<'_> {
    /// The line of the record the reader placed at `offset`: the reader may place it on the
    /// line ends before it, so those are skipped first.
    fn at(&mut self, offset: u64) -> u64 {
        let mut start = usize::try_from(offset).unwrap_or(usize::MAX).min(self.data.len());
        while matches!(self.data.get(start), Some(b'\r' | b'\n')) {
            start += 1;
        }
        if start > self.counted {
            self.line += line_ends(&self.data[self.counted..start]);
            self.counted = start;
        }
        self.line
    }
}

/// The line ends in `bytes`: LF, CRLF and lone CR each count once, as the CSV reader ends
/// records (and editors lines).
fn line_ends(bytes: &[u8]) -> u64 {
    let ends = bytes
        .iter()
        .enumerate()
        .filter(|&(at, &b)| b == b'\n' || (b == b'\r' && bytes.get(at + 1) != Some(&b'\n')))
        .count();
    u64::try_from(ends).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
