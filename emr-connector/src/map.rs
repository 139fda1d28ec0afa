//! The GUID map: `row_id,guid,expires_at`, one line per pushed row, kept by the clinic.
//!
//! It is the only link between a row of the EMR and the GUID the tier knows the patient by,
//! so it is created readable by its owner only (0600), like a key, and should be stored apart
//! from the survey results. Each line is written as soon as its result arrives, in a single
//! write, so an interrupted run keeps every GUID it got; the file is synced when the run
//! ends. A row id already in the map is not pushed again: that is what keeps a re-run from
//! giving a patient a second GUID, and a second invitation.
//!
//! An entry is kept no longer than the cache keeps its contact: once its `expires_at` has
//! passed, the cache has forgotten the contact and the GUID can do nothing more at the
//! clinic, so each run drops it ([`prune`]), rewriting the map whole (a new owner-only file
//! beside it, synced, renamed over it). Its row is then no longer in the map, and pushing
//! it again would give it a new GUID.

use std::{
    collections::HashSet,
    ffi::OsString,
    fs::{self, File, OpenOptions},
    io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write},
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use cache_server::guid::Guid;
use jiff::Timestamp;

/// The map's header line.
pub const HEADER: &str = "row_id,guid,expires_at";

/// The map cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    /// Opening, reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The map file.
        path: String,
        /// Why.
        source: io::Error,
    },
    /// A line is not `row_id,guid,expires_at`.
    #[error("{path}:{line}: not a row_id,guid,expires_at line; fix or remove it")]
    Malformed {
        /// The map file.
        path: String,
        /// The line, from 1.
        line: u64,
    },
}

/// What an existing map holds, at the time of a run.
#[derive(Debug, Default)]
pub struct Existing {
    /// Row ids already pushed whose entries are still live.
    pub row_ids: HashSet<String>,
    /// Whether the file is readable by others than its owner (it should not be).
    pub too_open: bool,
    /// Entries whose `expires_at` has passed: [`prune`] drops them.
    pub expired: usize,
    /// Entries whose `expires_at` cannot be read (empty, or edited by hand): kept, since
    /// nothing says when their contact expires.
    pub undated: usize,
}

/// One entry of the map: its line as written, its row id, and when its contact expires.
struct Entry {
    text: String,
    row_id: String,
    expires_at: Option<Timestamp>,
}

impl Entry {
    /// Whether the cache has forgotten the contact at `now` (a contact is unreadable from
    /// its `expires_at` on).
    fn expired(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// Reads the map at `path`: whether others can read it, and its entries; `None` when there
/// is no map.
fn read(path: &Path) -> Result<Option<(bool, Vec<Entry>)>, MapError> {
    let io_err = |source| MapError::Io { path: path.display().to_string(), source };
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(e)),
    };
    let too_open = file.metadata().map_err(io_err)?.permissions().mode() & 0o077 != 0;
    let malformed = |line| MapError::Malformed { path: path.display().to_string(), line };
    // The map is written by this connector, never quoted (its fields hold no `,"` or line
    // break), so it is read line by line; a line end of CRLF and blank lines are tolerated.
    let mut entries = Vec::new();
    let mut header_seen = false;
    for (at, text) in BufReader::new(file).lines().enumerate() {
        let text = text.map_err(io_err)?;
        let line = at as u64 + 1;
        let text = text.trim_end_matches('\r');
        if text.trim().is_empty() {
            continue;
        }
        if !std::mem::replace(&mut header_seen, true) {
            if text != HEADER {
                return Err(malformed(line));
            }
            continue;
        }
        match text.split(',').collect::<Vec<_>>()[..] {
            [row_id, guid, expires_at] if !row_id.is_empty() && guid.parse::<Guid>().is_ok() => {
                entries.push(Entry {
                    text: text.to_string(),
                    row_id: row_id.to_string(),
                    expires_at: expires_at.parse().ok(),
                });
            }
            _ => return Err(malformed(line)),
        }
    }
    Ok(Some((too_open, entries)))
}

/// Reads the row ids of the map at `path` that are still live at `now`, and counts the
/// entries [`prune`] would drop; an absent map holds none.
pub fn existing(path: &Path, now: Timestamp) -> Result<Existing, MapError> {
    let Some((too_open, entries)) = read(path)? else { return Ok(Existing::default()) };
    let mut found = Existing { too_open, ..Existing::default() };
    for entry in entries {
        if entry.expired(now) {
            found.expired += 1;
            continue;
        }
        found.undated += usize::from(entry.expires_at.is_none());
        found.row_ids.insert(entry.row_id);
    }
    Ok(found)
}

/// Drops the entries of the map at `path` whose contacts have expired at `now`; returns
/// how many. The map is rewritten only when there is something to drop: the entries kept,
/// in their order, go to a new owner-only file in the same folder, which is synced and then
/// renamed over the map (and the folder synced), so that a crash leaves either the old map
/// or the new one, whole. An absent map is left absent.
pub fn prune(path: &Path, now: Timestamp) -> Result<usize, MapError> {
    let io_err = |source| MapError::Io { path: path.display().to_string(), source };
    let Some((_, entries)) = read(path)? else { return Ok(0) };
    let (dropped, kept): (Vec<Entry>, Vec<Entry>) = entries.into_iter().partition(|e| e.expired(now));
    if dropped.is_empty() {
        return Ok(0);
    }
    let mut text = format!("{HEADER}\n");
    for entry in &kept {
        text.push_str(&entry.text);
        text.push('\n');
    }
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let mut name = OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(format!(".{}.new", std::process::id()));
    let new = folder.join(name);
    let written = (|| {
        // A file left by a run that crashed here holds nothing the map does not.
        let _ = fs::remove_file(&new);
        let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&new)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        fs::rename(&new, path)?;
        File::open(folder)?.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&new);
        return Err(io_err(e));
    }
    Ok(dropped.len())
}

/// The map, open for appending.
#[derive(Debug)]
pub struct GuidMap {
    file: File,
    path: PathBuf,
}

impl GuidMap {
    /// Opens the map at `path` for appending, creating it owner-only (0600) with its header
    /// line if it does not exist or is empty.
    pub fn open(path: &Path) -> Result<GuidMap, MapError> {
        let io_err = |source| MapError::Io { path: path.display().to_string(), source };
        let mut file =
            OpenOptions::new().read(true).append(true).create(true).mode(0o600).open(path).map_err(io_err)?;
        let len = file.metadata().map_err(io_err)?.len();
        if len == 0 {
            file.write_all(format!("{HEADER}\n").as_bytes()).map_err(io_err)?;
        } else {
            // A file that does not end a line (edited by hand) gets one before ours.
            let mut last = [0u8];
            file.seek(SeekFrom::End(-1)).and_then(|_| file.read_exact(&mut last)).map_err(io_err)?;
            if last[0] != b'\n' {
                file.write_all(b"\n").map_err(io_err)?;
            }
        }
        Ok(GuidMap { file, path: path.to_path_buf() })
    }

    /// Appends one line, in one write, straight to the file (no buffer to lose).
    pub fn append(&mut self, row_id: &str, guid: &str, expires_at: &str) -> Result<(), MapError> {
        // Row ids were checked to hold none of `,"` or line breaks; GUIDs and times have none.
        let line = format!("{row_id},{guid},{expires_at}\n");
        self.file.write_all(line.as_bytes()).map_err(|source| self.io_err(source))
    }

    /// Makes what was written durable.
    pub fn sync(&self) -> Result<(), MapError> {
        self.file.sync_data().map_err(|source| self.io_err(source))
    }

    fn io_err(&self, source: io::Error) -> MapError {
        MapError::Io { path: self.path.display().to_string(), source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUID: &str = "0b6f6f43-52a2-4c1f-8f3e-0d1e2f3a4b5c";

    /// The time of the runs here: before the entries' `expires_at`.
    fn now() -> Timestamp {
        "2026-11-24T15:00:00Z".parse().unwrap()
    }

    #[test]
    fn a_new_map_is_owner_only_and_its_lines_are_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.csv");
        assert!(existing(&path, now()).unwrap().row_ids.is_empty());
        let mut map = GuidMap::open(&path).unwrap();
        map.append("R1", GUID, "2026-12-24T15:00:00Z").unwrap();
        map.sync().unwrap();
        drop(map);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        let mut map = GuidMap::open(&path).unwrap();
        map.append("R2", GUID, "2026-12-24T15:00:00Z").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text.lines().collect::<Vec<_>>(),
            [HEADER, &format!("R1,{GUID},2026-12-24T15:00:00Z"), &format!("R2,{GUID},2026-12-24T15:00:00Z")]
        );
        let found = existing(&path, now()).unwrap();
        assert_eq!(found.row_ids, ["R1".to_string(), "R2".to_string()].into_iter().collect());
        assert!(!found.too_open);
    }

    #[test]
    fn a_line_left_open_is_ended_before_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.csv");
        std::fs::write(&path, format!("{HEADER}\nR1,{GUID},2026-12-24T15:00:00Z")).unwrap();
        GuidMap::open(&path).unwrap().append("R2", GUID, "2026-12-24T15:00:00Z").unwrap();
        assert_eq!(existing(&path, now()).unwrap().row_ids.len(), 2);
    }

    #[test]
    fn a_map_readable_by_others_is_flagged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.csv");
        std::fs::write(&path, format!("{HEADER}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(existing(&path, now()).unwrap().too_open);
    }

    #[test]
    fn a_malformed_map_is_refused_by_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.csv");
        for (text, line) in [
            ("guid,row_id\n".to_string(), 1),
            (format!("{HEADER}\nR1,{GUID},x\nR2,not-a-guid,x\n"), 3),
            (format!("{HEADER}\nR1,{GUID}\n"), 2),
        ] {
            std::fs::write(&path, text).unwrap();
            match existing(&path, now()) {
                Err(MapError::Malformed { line: l, .. }) => assert_eq!(l, line),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn expired_entries_are_dropped_and_the_rest_kept_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.csv");
        let lines = [
            format!("OLD1,{GUID},2026-12-23T00:00:00Z"),
            format!("KEEP1,{GUID},2026-12-24T00:00:01Z"),
            format!("OLD2,{GUID},2026-12-24T00:00:00Z"),
            format!("ODD1,{GUID},"),
            format!("KEEP2,{GUID},2027-01-13T00:00:00Z"),
        ];
        let text =
            format!("{HEADER}\r\n{}\r\n\n{}\n{}\n{}\n{}", lines[0], lines[1], lines[2], lines[3], lines[4]);
        std::fs::write(&path, &text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();

        // Before anything expires: nothing to drop, and the file is not touched.
        assert_eq!(prune(&path, now()).unwrap(), 0);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);

        // At the expiry of OLD2 (a contact is unreadable from its expires_at on).
        let later: Timestamp = "2026-12-24T00:00:00Z".parse().unwrap();
        let found = existing(&path, later).unwrap();
        assert_eq!((found.expired, found.undated), (2, 1));
        let live: HashSet<String> = ["KEEP1", "ODD1", "KEEP2"].map(String::from).into_iter().collect();
        assert_eq!(found.row_ids, live);
        assert_eq!(prune(&path, later).unwrap(), 2);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("{HEADER}\n{}\n{}\n{}\n", lines[1], lines[3], lines[4]));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "rewritten owner-only");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["m.csv"], "nothing left beside it");
        assert_eq!(prune(&path, later).unwrap(), 0, "once");
        let found = existing(&path, later).unwrap();
        assert_eq!((found.expired, found.row_ids.len(), found.too_open), (0, 3, false));

        // Appending goes on after the rewrite.
        GuidMap::open(&path).unwrap().append("NEW1", GUID, "2027-01-23T00:00:00Z").unwrap();
        assert_eq!(existing(&path, later).unwrap().row_ids.len(), 4);
    }

    #[test]
    fn an_absent_map_is_left_absent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.csv");
        assert_eq!(prune(&path, now()).unwrap(), 0);
        assert!(!path.exists());
    }
}
