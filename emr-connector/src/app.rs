//! The `push` command: drop the map's entries whose contacts have expired, read and check
//! the CSV, skip what the map still holds, stream the rest, record each GUID as it arrives,
//! and count.
//!
//! Refused rows are reported on stderr as they are found, one line each; the caller prints
//! the [`Summary`] and picks the exit code from the [`Report`].

use std::{
    fmt,
    fs::File,
    io::{self, BufReader, IsTerminal, Write},
    path::{Path, PathBuf},
};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use jiff::Timestamp;
use proto::v1::DeleteContactRequest;

use crate::{
    config::ConnectorConfig,
    map::{self, GuidMap, MapError},
    push::{self, Outcome, PushError},
    rows::{self, ReadError, Timing},
};

/// Exit codes (sysexits.h), as the binary uses them.
pub mod exit {
    /// Every row was pushed or skipped.
    pub const OK: u8 = 0;
    /// Bad flags or configuration.
    pub const USAGE: u8 = 64;
    /// A row was refused, the header is unusable, or the map is malformed.
    pub const DATA: u8 = 65;
    /// The CSV cannot be read.
    pub const NO_INPUT: u8 = 66;
    /// The cache cannot be reached, stopped answering, or could not store some rows now.
    pub const UNAVAILABLE: u8 = 69;
    /// Anything else.
    pub const SOFTWARE: u8 = 70;
    /// The map cannot be written.
    pub const CANT_CREATE: u8 = 73;
    /// The cache refused this connector's certificate.
    pub const NO_PERM: u8 = 77;
}

/// Files with at least this many rows to send get a progress bar (on a terminal).
pub const PROGRESS_MIN_ROWS: usize = 100;

/// What to push, and where the GUIDs go.
#[derive(Debug, Clone)]
pub struct PushArgs {
    /// The EMR export.
    pub csv: PathBuf,
    /// The GUID map.
    pub map: PathBuf,
    /// The cache and the delay.
    pub config: ConnectorConfig,
    /// Check the rows and report, but send nothing and write no map.
    pub dry_run: bool,
}

/// The map's default place: `<csv>.guids.csv` beside the CSV.
pub fn default_map_path(csv: &Path) -> PathBuf {
    let mut name = csv.as_os_str().to_owned();
    name.push(".guids.csv");
    PathBuf::from(name)
}

/// The counts of one run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Rows stored and recorded in the map (with `dry_run`: rows that would be sent).
    pub pushed: usize,
    /// Rows whose row id was already in the map.
    pub skipped: usize,
    /// Rows refused, by this connector or by the cache.
    pub refused: usize,
    /// Good rows not stored: the cache was unreachable, stopped, or full.
    pub unsent: usize,
    /// Map entries dropped because their contacts had expired (with `dry_run`: that would
    /// be dropped).
    pub pruned: usize,
    /// Whether nothing was sent.
    pub dry_run: bool,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.dry_run { "would push" } else { "pushed" };
        write!(
            f,
            "{verb} {}, skipped {} (already in the map), refused {} (see above)",
            self.pushed, self.skipped, self.refused
        )?;
        if self.unsent > 0 {
            write!(f, ", not sent {} (run again to send them)", self.unsent)?;
        }
        if self.pruned > 0 {
            let verb = if self.dry_run { "would forget" } else { "forgot" };
            write!(f, ", {verb} {} expired map entries", self.pruned)?;
        }
        Ok(())
    }
}

/// Why a run stopped short.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The CSV cannot be opened or read.
    #[error("{path}: {source}")]
    CsvUnreadable {
        /// The CSV.
        path: String,
        /// Why.
        source: io::Error,
    },
    /// The CSV's header or format is unusable.
    #[error("{path}: {source}")]
    CsvInvalid {
        /// The CSV.
        path: String,
        /// Why.
        source: ReadError,
    },
    /// The map cannot be read or written.
    #[error(transparent)]
    Map(#[from] MapError),
    /// The cache could not be used.
    #[error(transparent)]
    Push(#[from] PushError),
}

impl Failure {
    /// The exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::CsvUnreadable { .. } => exit::NO_INPUT,
            Failure::CsvInvalid { .. } | Failure::Map(MapError::Malformed { .. }) => exit::DATA,
            Failure::Map(MapError::Io { .. }) => exit::CANT_CREATE,
            Failure::Push(PushError::Unreachable { .. } | PushError::Interrupted(_)) => exit::UNAVAILABLE,
            Failure::Push(PushError::NotAllowed(_)) => exit::NO_PERM,
            Failure::Push(PushError::Protocol(_) | PushError::Failed(_)) => exit::SOFTWARE,
        }
    }
}

/// The outcome of a run: the counts, and what stopped it if something did.
#[derive(Debug)]
pub struct Report {
    /// The counts.
    pub summary: Summary,
    /// What stopped the run early.
    pub failure: Option<Failure>,
}

impl Report {
    /// 0 if every row was pushed or skipped; the failure's code if the run stopped; 69 if
    /// some rows could not be stored for now; 65 if any row was refused.
    pub fn exit_code(&self) -> u8 {
        match &self.failure {
            Some(failure) => failure.exit_code(),
            None if self.summary.unsent > 0 => exit::UNAVAILABLE,
            None if self.summary.refused > 0 => exit::DATA,
            None => exit::OK,
        }
    }
}

/// Where the run speaks: report lines on stderr, above a progress bar when there is one.
pub struct Console {
    bar: ProgressBar,
}

impl fmt::Debug for Console {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Console").field("bar_hidden", &self.bar.is_hidden()).finish()
    }
}

impl Default for Console {
    fn default() -> Self {
        Console { bar: ProgressBar::hidden() }
    }
}

impl Console {
    /// Writes one line to stderr (above the progress bar, if one is drawn).
    pub fn say(&self, line: &str) {
        self.bar.suspend(|| {
            let _ = writeln!(io::stderr().lock(), "{line}");
        });
    }

    /// Draws a progress bar for `rows` rows if stderr is a terminal and there are many.
    fn start(&mut self, rows: usize) {
        if rows < PROGRESS_MIN_ROWS || !io::stderr().is_terminal() {
            return;
        }
        let style = ProgressStyle::with_template("{wide_bar} {pos}/{len} rows, {eta} left")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        self.bar =
            ProgressBar::with_draw_target(Some(rows as u64), ProgressDrawTarget::stderr()).with_style(style);
    }

    fn step(&self) {
        self.bar.inc(1);
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// Runs `push` as `args` say; `now` is the time of the run (send-after times are never
/// earlier, and map entries that expired by then are dropped first).
pub async fn push(args: &PushArgs, console: &mut Console, now: Timestamp) -> Report {
    let mut summary = Summary { dry_run: args.dry_run, ..Summary::default() };
    match push_inner(args, console, now, &mut summary).await {
        Ok(()) => Report { summary, failure: None },
        Err(failure) => Report { summary, failure: Some(failure) },
    }
}

async fn push_inner(
    args: &PushArgs,
    console: &mut Console,
    now: Timestamp,
    summary: &mut Summary,
) -> Result<(), Failure> {
    let csv_name = args.csv.display().to_string();
    let existing = map::existing(&args.map, now)?;
    if existing.too_open {
        console.say(&format!(
            "warning: {}: the GUID map is readable by others than its owner; `chmod 600` it",
            args.map.display()
        ));
    }
    if existing.undated > 0 {
        console.say(&format!(
            "warning: {}: {} entries have no readable expires_at and are kept; remove them once \
             their contacts have expired",
            args.map.display(),
            existing.undated
        ));
    }
    // The cache has forgotten these contacts: the map does not keep them longer.
    summary.pruned =
        if args.dry_run || existing.expired == 0 { existing.expired } else { map::prune(&args.map, now)? };

    let file =
        File::open(&args.csv).map_err(|source| Failure::CsvUnreadable { path: csv_name.clone(), source })?;
    let timing = Timing::new(args.config.send_after_hours, now);
    let region = args.config.default_region;
    let input =
        rows::read_in(BufReader::new(file), &timing, region, &existing.row_ids).map_err(|e| match e {
            ReadError::Io(source) => Failure::CsvUnreadable { path: csv_name.clone(), source },
            source => Failure::CsvInvalid { path: csv_name.clone(), source },
        })?;
    for refusal in &input.refused {
        console.say(&format!("{csv_name}:{refusal}"));
    }
    summary.skipped = input.skipped;
    summary.refused = input.refused.len();
    if args.dry_run {
        summary.pushed = input.rows.len();
        return Ok(());
    }
    if input.rows.is_empty() {
        return Ok(());
    }

    let to_send = input.rows.len();
    summary.unsent = to_send;
    let mut map = GuidMap::open(&args.map)?;
    let mut client = push::connect(&args.config.cache).await?;
    console.start(to_send);
    let mut results = push::put_contacts(&mut client, input.rows).await?;

    // Once the map cannot be written, every contact stored after is deleted again: a GUID
    // that is not in the map would be pushed a second time by the next run.
    let mut map_error: Option<MapError> = None;
    let outcome = loop {
        let (sent, outcome) = match results.next().await {
            Ok(Some(next)) => next,
            Ok(None) => break Ok(()),
            Err(e) => break Err(Failure::from(e)),
        };
        console.step();
        let at = format!("{csv_name}:{}: row {}", sent.line, sent.row_id);
        match outcome {
            Outcome::Stored { guid, expires_at } => {
                if map_error.is_none() {
                    let expires = expires_at.map(|t| t.to_string()).unwrap_or_default();
                    match map.append(&sent.row_id, &guid, &expires) {
                        Ok(()) => {
                            summary.pushed += 1;
                            summary.unsent -= 1;
                            continue;
                        }
                        Err(e) => map_error = Some(e),
                    }
                }
                let deleted = client.delete_contact(DeleteContactRequest { guid: guid.clone() }).await;
                if deleted.is_err() {
                    console.say(&format!(
                        "{at}: stored as {guid}, which could not be written to the map nor deleted: \
                         do not push this row again (it expires unused or is invited once)"
                    ));
                }
            }
            outcome @ Outcome::NotStored { .. } => {
                let refusal = outcome.is_refusal();
                if let Outcome::NotStored { code, field, message } = outcome {
                    if field.is_empty() {
                        console.say(&format!("{at}: not stored ({code:?}): {message}"));
                    } else {
                        console.say(&format!("{at}: {field}: {message}"));
                    }
                }
                if refusal {
                    summary.refused += 1;
                    summary.unsent -= 1;
                }
            }
        }
    };
    console.finish();
    let synced = map.sync();
    if let Some(e) = map_error {
        return Err(e.into());
    }
    outcome?;
    synced?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_line() {
        let s = Summary { pushed: 3, skipped: 2, refused: 1, unsent: 0, pruned: 0, dry_run: false };
        assert_eq!(s.to_string(), "pushed 3, skipped 2 (already in the map), refused 1 (see above)");
        let s = Summary { unsent: 4, ..s };
        assert!(s.to_string().ends_with(", not sent 4 (run again to send them)"));
        let s = Summary { pruned: 5, ..s };
        assert!(
            s.to_string().ends_with(", not sent 4 (run again to send them), forgot 5 expired map entries")
        );
        let s = Summary { dry_run: true, pruned: 2, ..Summary::default() };
        assert!(s.to_string().starts_with("would push 0,"));
        assert!(s.to_string().ends_with(", would forget 2 expired map entries"));
    }

    #[test]
    fn exit_codes() {
        let report = |summary, failure| Report { summary, failure }.exit_code();
        let clean = Summary::default();
        assert_eq!(report(clean, None), 0);
        assert_eq!(report(Summary { refused: 1, ..clean }, None), 65);
        assert_eq!(report(Summary { refused: 1, unsent: 1, ..clean }, None), 69);
        let down = Failure::Push(PushError::Unreachable { url: "u".into(), cause: "c".into() });
        assert_eq!(report(clean, Some(down)), 69);
        let unreadable = Failure::CsvUnreadable { path: "x".into(), source: io::ErrorKind::NotFound.into() };
        assert_eq!(report(clean, Some(unreadable)), 66);
        let map =
            Failure::Map(MapError::Io { path: "m".into(), source: io::ErrorKind::PermissionDenied.into() });
        assert_eq!(report(clean, Some(map)), 73);
    }

    #[test]
    fn the_map_sits_beside_the_csv() {
        assert_eq!(
            default_map_path(Path::new("exports/today.csv")),
            PathBuf::from("exports/today.csv.guids.csv")
        );
    }
}
