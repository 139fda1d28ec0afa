//! Reads another process's memory and finds planted values in it.
//!
//! Every readable mapping in `/proc/<pid>/maps` is read through `/proc/<pid>/mem` in chunks
//! (a mapping that cannot be read, such as a guard page, is counted and skipped) and
//! searched for every needle in one pass. Reading a non-dumpable process's memory needs
//! root (CAP_SYS_PTRACE), as in CI.
//!
//! Shared by `cache-server/tests/privacy.rs` and `outreach-worker/tests/memory.rs`
//! (included there by `#[path]`).

use std::{collections::BTreeMap, fmt, fs::File, os::unix::fs::FileExt};

use aho_corasick::AhoCorasick;

/// How much of a mapping is read at once.
const CHUNK: usize = 1 << 20;

/// Random decimal digits from the OS random source, to make planted values unique to a run
/// (so that nothing but the process under test can have put them in its memory).
pub fn random_digits(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    File::open("/dev/urandom").and_then(|f| f.read_exact_at(&mut bytes, 0)).expect("/dev/urandom");
    bytes.iter().map(|b| char::from(b'0' + b % 10)).collect()
}

/// A value to look for, under a label that says what it is (the label, not the value, goes
/// into reports).
#[derive(Debug, Clone)]
pub struct Needle {
    /// What the value is, e.g. "phone 3 (national digits)".
    pub label: String,
    /// The bytes to find.
    pub bytes: Vec<u8>,
}

/// The encodings a planted phone can take in memory: its national digits, which are inside
/// the E.164 text (`+1613...`), the digits without `+` and the URL-encoded form (`%2B1613...`).
pub fn phone_needles(n: usize, e164: &str) -> Vec<Needle> {
    let digits = e164.trim_start_matches('+');
    let national = digits.strip_prefix('1').unwrap_or(digits);
    vec![Needle { label: format!("phone {n} (digits)"), bytes: national.as_bytes().to_vec() }]
}

/// The encodings a planted email can take: as sent, and lowercased (as normalised).
pub fn email_needles(n: usize, email: &str) -> Vec<Needle> {
    let mut needles =
        vec![Needle { label: format!("email {n} (as sent)"), bytes: email.as_bytes().to_vec() }];
    let lower = email.to_ascii_lowercase();
    if lower != email {
        needles.push(Needle { label: format!("email {n} (lowercase)"), bytes: lower.into_bytes() });
    }
    // The local part alone, in case the address was split.
    let local = email.split('@').next().unwrap_or(email);
    needles.push(Needle { label: format!("email {n} (local part)"), bytes: local.as_bytes().to_vec() });
    needles
}

/// One mapping of the process.
#[derive(Debug, Clone)]
pub struct Region {
    pub start: u64,
    pub end: u64,
    pub perms: String,
    /// The mapped file, `[heap]`, `[stack]`, or `[anon]`.
    pub name: String,
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}-{:x} {} {}", self.start, self.end, self.perms, self.name)
    }
}

/// A needle found.
#[derive(Debug, Clone)]
pub struct Hit {
    pub label: String,
    pub address: u64,
    pub region: String,
    /// The bytes around the hit, escaped (shown with `MEMSCAN_CONTEXT=1`, to find what
    /// holds it).
    pub context: String,
}

/// What one scan read and found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Readable mappings read.
    pub regions: usize,
    /// Readable mappings that could not be read (guard pages and the like).
    pub unreadable: usize,
    /// Bytes read.
    pub bytes: u64,
    pub hits: Vec<Hit>,
}

impl Scan {
    /// Hits by region, for a report: "region: label, label, ...".
    pub fn by_region(&self) -> String {
        if std::env::var("MEMSCAN_CONTEXT").is_ok_and(|v| v == "1") {
            for hit in &self.hits {
                eprintln!("{:x} {} {}: {}", hit.address, hit.region, hit.label, hit.context);
            }
        }
        let mut map: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for hit in &self.hits {
            map.entry(&hit.region).or_default().push(&hit.label);
        }
        map.iter()
            .map(|(region, labels)| format!("{region}: {} hits: {}", labels.len(), labels.join(", ")))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// One line of figures.
    pub fn summary(&self) -> String {
        format!(
            "{} hits in {} regions ({} MiB read, {} unreadable regions)",
            self.hits.len(),
            self.regions,
            self.bytes >> 20,
            self.unreadable
        )
    }
}

/// The readable mappings of `pid`.
pub fn regions(pid: u32) -> Vec<Region> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("read /proc/<pid>/maps");
    maps.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let range = fields.next()?;
            let perms = fields.next()?.to_string();
            let name = fields.nth(3).map_or_else(|| "[anon]".to_string(), str::to_string);
            let (start, end) = range.split_once('-')?;
            let region = Region {
                start: u64::from_str_radix(start, 16).ok()?,
                end: u64::from_str_radix(end, 16).ok()?,
                perms,
                name,
            };
            (region.perms.starts_with('r') && region.name != "[vsyscall]" && region.name != "[vvar]")
                .then_some(region)
        })
        .collect()
}

/// Reads every readable mapping of `pid` and finds every needle in it.
pub fn scan(pid: u32, needles: &[Needle]) -> Scan {
    let matcher = AhoCorasick::new(needles.iter().map(|n| &n.bytes)).expect("needles");
    let overlap = needles.iter().map(|n| n.bytes.len()).max().unwrap_or(1).saturating_sub(1);
    let mem = File::open(format!("/proc/{pid}/mem")).expect("open /proc/<pid>/mem (needs root)");
    let mut result = Scan::default();
    let mut buf = vec![0u8; CHUNK + overlap];
    for region in regions(pid) {
        let mut at = region.start;
        let mut carried = 0usize;
        let mut read_any = false;
        while at < region.end {
            let want = usize::try_from(region.end - at).unwrap_or(CHUNK).min(CHUNK);
            let got = match mem.read_at(&mut buf[carried..carried + want], at) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            read_any = true;
            result.bytes += got as u64;
            let window = &buf[..carried + got];
            let window_start = at - carried as u64;
            // Matches wholly inside the carried tail were counted with the previous chunk.
            for m in matcher.find_overlapping_iter(window).filter(|m| m.end() > carried) {
                let around = &window[m.start().saturating_sub(48)..(m.end() + 48).min(window.len())];
                result.hits.push(Hit {
                    label: needles[m.pattern().as_usize()].label.clone(),
                    address: window_start + m.start() as u64,
                    region: region.to_string(),
                    context: around.escape_ascii().to_string(),
                });
            }
            // Keep the tail so that a value across two chunks is found.
            let len = window.len();
            let keep = overlap.min(len);
            buf.copy_within(len - keep..len, 0);
            carried = keep;
            at += got as u64;
        }
        if read_any {
            result.regions += 1;
        } else {
            result.unreadable += 1;
        }
    }
    result
}

/// Open TCP connections of `pid` to `port` (from `/proc/<pid>/net/tcp*`, matched to the
/// process's socket descriptors).
pub fn connections_to(pid: u32, port: u16) -> usize {
    let inodes: std::collections::BTreeSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| {
            fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
                .filter_map(|target| {
                    let target = target.to_string_lossy().into_owned();
                    Some(target.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    let mut count = 0;
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(remote), Some(inode)) = (fields.get(2), fields.get(9)) else { continue };
            let remote_port = remote.rsplit_once(':').and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            if remote_port == Some(port) && inodes.contains(*inode) {
                count += 1;
            }
        }
    }
    count
}
