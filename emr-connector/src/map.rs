//! The GUID map: `row_id,guid,expires_at`, one line per pushed row, kept by the clinic.
//!
//! It is the only link between a row of the EMR and the GUID the tier knows the patient by,
//! so it is created readable by its owner only (0600), like a key, and should be stored apart
//! from the survey results. Each line is written as soon as its result arrives, in a single
//! write, so an interrupted run keeps every GUID it got; the file is synced when the run
//! ends. A row id already in the map is not pushed again: that is what keeps a re-run from
//! giving a patient a second GUID, and a second invitation.

use std::{
    collections::HashSet,
    fs::{File, OpenOptions},
    io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write},
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use cache_server::guid::Guid;

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

/// What an existing map holds.
#[derive(Debug, Default)]
pub struct Existing {
    /// Row ids already pushed.
    pub row_ids: HashSet<String>,
    /// Whether the file is readable by others than its owner (it should not be).
    pub too_open: bool,
}

/// Reads the row ids of the map at `path`; an absent map holds none.
pub fn existing(path: &Path) -> Result<Existing, MapError> {
    let io_err = |source| MapError::Io { path: path.display().to_string(), source };
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Existing::default()),
        Err(e) => return Err(io_err(e)),
    };
    let too_open = file.metadata().map_err(io_err)?.permissions().mode() & 0o077 != 0;
    let malformed = |line| MapError::Malformed { path: path.display().to_string(), line };
    // The map is written by this connector, never quoted (its fields hold no `,"` or line
    // break), so it is read line by line; a line end of CRLF and blank lines are tolerated.
    let mut row_ids = HashSet::new();
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
            [row_id, guid, _expires_at] if !row_id.is_empty() && guid.parse::<Guid>().is_ok() => {
                row_ids.insert(row_id.to_string());
            }
            _ => return Err(malformed(line)),
        }
    }
    Ok(Existing { row_ids, too_open })
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

    #[test]
    fn a_new_map_is_owner_only_and_its_lines_are_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.csv");
        assert!(existing(&path).unwrap().row_ids.is_empty());
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
        let found = existing(&path).unwrap();
        assert_eq!(found.row_ids, ["R1".to_string(), "R2".to_string()].into_iter().collect());
        assert!(!found.too_open);
    }

    #[test]
    fn a_line_left_open_is_ended_before_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.csv");
        std::fs::write(&path, format!("{HEADER}\nR1,{GUID},2026-12-24T15:00:00Z")).unwrap();
        GuidMap::open(&path).unwrap().append("R2", GUID, "2026-12-24T15:00:00Z").unwrap();
        assert_eq!(existing(&path).unwrap().row_ids.len(), 2);
    }

    #[test]
    fn a_map_readable_by_others_is_flagged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.csv");
        std::fs::write(&path, format!("{HEADER}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(existing(&path).unwrap().too_open);
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
            match existing(&path) {
                Err(MapError::Malformed { line: l, .. }) => assert_eq!(l, line),
                other => panic!("{other:?}"),
            }
        }
    }
}
