//! Durable ledger checkpoints: a versioned, checksummed envelope around any serde state,
//! written atomically, and loaded only when every byte checks out.
//!
//! # File format (version 1)
//!
//! ```text
//! jobcarbon-checkpoint 1 <body length in bytes> <SHA-256 of the body, hex>\n
//! <body: JSON {"version":1,"last_booked":…,"written_at":…,"state":{…}}>
//! ```
//!
//! Everything that matters (the last booked time and the state) lives in the body, which the
//! header's length and SHA-256 cover; the header's own fields are each checked on load, so a
//! truncation or a flipped byte anywhere in the file is detected (`sha256sum` can verify the
//! body by hand: `tail -n +2 FILE | sha256sum`).
//!
//! # Durability
//!
//! [`CheckpointFile::save`] streams the checkpoint into a temp file in the same directory
//! (the state is serialised twice from a borrow: once into a hashing counter for the header's
//! length and SHA-256, once through a `BufWriter` into the file, hashed again and checked;
//! the checkpoint's bytes are never all in memory), fsyncs it, moves the
//! current checkpoint to `FILE.prev`, renames the temp file to `FILE` and fsyncs the
//! directory. A crash at any point leaves either the new checkpoint, or the previous one
//! (as `FILE` or `FILE.prev`), each complete.
//!
//! # What the ledger does with a bad checkpoint
//!
//! A corrupt, truncated or wrong-version checkpoint is never used. Because the ledger
//! backfills from Prometheus history, an older good checkpoint loses nothing (as long as the
//! history is retained), so [`CheckpointFile::load`] falls back to `FILE.prev` when `FILE` is
//! bad and says so ([`Restored::from`] = [`Generation::Previous`], with the reason, for a log
//! line and the `jobcarbon_checkpoint_recoveries_total` metric). When neither generation is
//! good the ledger refuses to start, naming the file and the reason; the operator either
//! repairs the file or restarts with `--reset-state`, which moves the bad files aside
//! ([`CheckpointFile::quarantine`], kept as evidence) and starts from an empty ledger. Starting
//! fresh silently would overwrite the published product EPC with a smaller number, which is
//! worse for an SRE than a crash loop with a clear message.

use jobcarbon_core::Seconds;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// The format this build writes and the only one it reads.
pub const FORMAT_VERSION: u32 = 1;
const MAGIC: &str = "jobcarbon-checkpoint";
/// A header is short; anything longer before the first newline is not a checkpoint.
const MAX_HEADER_LEN: usize = 160;

/// The envelope around the ledger state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint<S> {
    /// Format version of the file ([`FORMAT_VERSION`] when written by this build).
    pub version: u32,
    /// End of the last interval whose carbon is in `state` (seconds since the Unix epoch):
    /// the backfill after a restart starts here, so no interval is booked twice.
    pub last_booked: Seconds,
    /// Wall-clock time of the write, for operators.
    pub written_at: Seconds,
    /// The ledger state at `last_booked`.
    pub state: S,
}

impl<S> Checkpoint<S> {
    /// A checkpoint of `state` as of `last_booked`, written at `written_at` (format version [`FORMAT_VERSION`]).
    pub fn new(last_booked: Seconds, written_at: Seconds, state: S) -> Self {
        Self {
            version: FORMAT_VERSION,
            last_booked,
            written_at,
            state,
        }
    }
}

/// Why a checkpoint could not be written or read. [`CheckpointError::kind`] is a metric label.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint {path}: cannot {op}: {source}")]
    /// The file could not be read, written or renamed.
    Io {
        /// The file.
        path: PathBuf,
        /// What was attempted (`read`, `write`, `rename`, ...).
        op: &'static str,
        /// The I/O error.
        source: std::io::Error,
    },
    #[error("checkpoint {path}: not a jobcarbon checkpoint: {reason}")]
    /// The header is not a jobcarbon checkpoint header.
    BadHeader {
        /// The file.
        path: PathBuf,
        /// What is wrong with the header.
        reason: String,
    },
    #[error(
        "checkpoint {path}: truncated or padded: header announces {expected} body bytes, file has {found}"
    )]
    /// The body is shorter than its header says.
    Truncated {
        /// The file.
        path: PathBuf,
        /// Body length the header declares, bytes.
        expected: usize,
        /// Body length found, bytes.
        found: usize,
    },
    #[error(
        "checkpoint {path}: corrupt: body SHA-256 is {actual}, header says {expected} (the file was changed after it was written)"
    )]
    /// The body does not match the header's checksum.
    ChecksumMismatch {
        /// The file.
        path: PathBuf,
        /// Checksum in the header.
        expected: String,
        /// Checksum of the body as read.
        actual: String,
    },
    #[error("checkpoint {path}: format version {found}, this build reads only version {supported}")]
    /// Written by a format version this build cannot read.
    VersionMismatch {
        /// The file.
        path: PathBuf,
        /// Version in the header.
        found: String,
        /// The version this build reads.
        supported: u32,
    },
    #[error("checkpoint {path}: body does not decode at {place}: {reason}")]
    /// The body is not a valid ledger state.
    Payload {
        /// The file.
        path: PathBuf,
        /// Where in the body decoding failed.
        place: String,
        /// The decoder's message.
        reason: String,
    },
    #[error("checkpoint {path}: cannot encode state: {reason}")]
    /// The state could not be encoded.
    Encode {
        /// The file it was meant for.
        path: PathBuf,
        /// The encoder's message.
        reason: String,
    },
}

impl CheckpointError {
    /// A short stable name of the error kind (metric label).
    pub fn kind(&self) -> &'static str {
        match self {
            CheckpointError::Io { .. } => "io",
            CheckpointError::BadHeader { .. } => "bad_header",
            CheckpointError::Truncated { .. } => "truncated",
            CheckpointError::ChecksumMismatch { .. } => "checksum_mismatch",
            CheckpointError::VersionMismatch { .. } => "version_mismatch",
            CheckpointError::Payload { .. } => "payload",
            CheckpointError::Encode { .. } => "encode",
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Forwards writes to `inner`, counting and hashing the bytes that pass.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    len: usize,
}

impl<W> Hashing<W> {
    fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }

    /// Bytes written and their SHA-256, hex.
    fn finish(self) -> (usize, String) {
        (self.len, hex(&self.hasher.finalize()))
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        let written = buf.get(..n).unwrap_or(buf);
        self.hasher.update(written);
        self.len += written.len();
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A serde_json error while writing to `path`: the writer's own I/O error, or an encoding one.
fn write_error(e: serde_json::Error, path: &Path) -> CheckpointError {
    if e.is_io() {
        CheckpointError::Io {
            path: path.to_owned(),
            op: "write temp file",
            source: io::Error::from(e),
        }
    } else {
        CheckpointError::Encode {
            path: path.to_owned(),
            reason: e.to_string(),
        }
    }
}

/// Stream a checkpoint in the on-disk format into `out`, holding none of its bytes: the body
/// is serialised once to learn its length and SHA-256 (the header comes first), then again
/// into `out`, hashed on the way and checked against the first pass. `path` is only used in
/// error messages.
pub(crate) fn write_to<S: Serialize, W: Write>(
    checkpoint: &Checkpoint<S>,
    path: &Path,
    out: W,
) -> Result<(), CheckpointError> {
    let mut counted = Hashing::new(io::sink());
    serde_json::to_writer(&mut counted, checkpoint).map_err(|e| write_error(e, path))?;
    let (len, digest) = counted.finish();
    let mut out = out;
    writeln!(out, "{MAGIC} {} {len} {digest}", checkpoint.version).map_err(|source| {
        CheckpointError::Io {
            path: path.to_owned(),
            op: "write temp file",
            source,
        }
    })?;
    let mut body = Hashing::new(out);
    serde_json::to_writer(&mut body, checkpoint).map_err(|e| write_error(e, path))?;
    if body.finish() != (len, digest) {
        return Err(CheckpointError::Encode {
            path: path.to_owned(),
            reason: "the state serialised differently on the second pass".to_owned(),
        });
    }
    Ok(())
}

/// Serialise a checkpoint into the on-disk format, in memory (tests, tools; the ledger
/// streams with `write_to`). `path` is only used in error messages.
pub fn encode<S: Serialize>(
    checkpoint: &Checkpoint<S>,
    path: &Path,
) -> Result<Vec<u8>, CheckpointError> {
    let mut out = Vec::new();
    write_to(checkpoint, path, &mut out)?;
    Ok(out)
}

/// The header's body length and checksum, each field checked. `header`: the first line,
/// without its newline.
fn parse_header<'h>(header: &'h [u8], path: &Path) -> Result<(usize, &'h str), CheckpointError> {
    let bad = |reason: String| CheckpointError::BadHeader {
        path: path.to_owned(),
        reason,
    };
    let header = std::str::from_utf8(header).map_err(|_| bad("header is not UTF-8".to_owned()))?;
    let fields: Vec<&str> = header.split(' ').collect();
    let [magic, version, len, digest] = fields.as_slice() else {
        return Err(bad(format!(
            "header {header:?} should be \"{MAGIC} VERSION LENGTH SHA256\""
        )));
    };
    if *magic != MAGIC {
        return Err(bad(format!("header starts with {magic:?}, not {MAGIC:?}")));
    }
    if *version != FORMAT_VERSION.to_string() {
        return Err(CheckpointError::VersionMismatch {
            path: path.to_owned(),
            found: (*version).to_owned(),
            supported: FORMAT_VERSION,
        });
    }
    let expected_len: usize = len
        .parse()
        .ok()
        .filter(|_| len.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| bad(format!("body length {len:?} is not a number")))?;
    if digest.len() != 64
        || !digest
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(bad(format!(
            "checksum {digest:?} is not 64 lowercase hex digits"
        )));
    }
    Ok((expected_len, *digest))
}

/// Where the header line ends: the index of its newline.
fn header_end(bytes: &[u8], file_len: usize, path: &Path) -> Result<usize, CheckpointError> {
    bytes
        .iter()
        .take(MAX_HEADER_LEN)
        .position(|&b| b == b'\n')
        .ok_or_else(|| CheckpointError::BadHeader {
            path: path.to_owned(),
            reason: format!(
                "no header line in the first {} bytes (file is {file_len} bytes)",
                MAX_HEADER_LEN.min(file_len),
            ),
        })
}

/// Parse and verify the on-disk format. `path` is only used in error messages.
pub fn decode<S: DeserializeOwned>(
    bytes: &[u8],
    path: &Path,
) -> Result<Checkpoint<S>, CheckpointError> {
    let newline = header_end(bytes, bytes.len(), path)?;
    let (expected_len, digest) = parse_header(&bytes[..newline], path)?;
    let body = &bytes[newline + 1..];
    if body.len() != expected_len {
        return Err(CheckpointError::Truncated {
            path: path.to_owned(),
            expected: expected_len,
            found: body.len(),
        });
    }
    let actual = hex(&Sha256::digest(body));
    if actual != digest {
        return Err(CheckpointError::ChecksumMismatch {
            path: path.to_owned(),
            expected: digest.to_owned(),
            actual,
        });
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let checkpoint: Checkpoint<S> =
        serde_path_to_error::deserialize(&mut de).map_err(|e| CheckpointError::Payload {
            path: path.to_owned(),
            place: e.path().to_string(),
            reason: e.inner().to_string(),
        })?;
    if checkpoint.version != FORMAT_VERSION {
        return Err(CheckpointError::VersionMismatch {
            path: path.to_owned(),
            found: checkpoint.version.to_string(),
            supported: FORMAT_VERSION,
        });
    }
    Ok(checkpoint)
}

/// Which generation a checkpoint was restored from.
#[derive(Debug)]
pub enum Generation {
    /// The current file.
    Current,
    /// `FILE.prev`, because the current file was missing or bad (`None`: missing, the
    /// crash window between the two renames of a save).
    Previous {
        /// Why the current file was not used (`None`: it was missing).
        current_error: Option<CheckpointError>,
    },
}

/// A verified checkpoint and where it came from.
#[derive(Debug)]
pub struct Restored<S> {
    /// The verified checkpoint.
    pub checkpoint: Checkpoint<S>,
    /// Which file it came from.
    pub from: Generation,
}

/// Neither generation could be trusted: the ledger must not start from it.
#[derive(Debug, thiserror::Error)]
#[error(
    "{current}; previous generation: {previous}. Refusing to start from an untrusted checkpoint: repair the file, or restart with --reset-state to move it aside and start an empty ledger"
)]
pub struct Untrusted {
    /// Why the current file was not used.
    pub current: CheckpointError,
    /// `None` when there is no previous generation.
    pub previous: PreviousGeneration,
}

/// The state of `FILE.prev` when the current file was bad.
#[derive(Debug)]
pub enum PreviousGeneration {
    /// There is no previous file either.
    Missing(PathBuf),
    /// The previous file is bad too.
    Bad(CheckpointError),
}

impl std::fmt::Display for PreviousGeneration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PreviousGeneration::Missing(p) => write!(f, "{} does not exist", p.display()),
            PreviousGeneration::Bad(e) => write!(f, "{e}"),
        }
    }
}

/// A local checkpoint file with its previous generation beside it.
#[derive(Debug, Clone)]
pub struct CheckpointFile {
    path: PathBuf,
}

impl CheckpointFile {
    /// The checkpoint at `path` (its previous generation is `path` + `.prev`).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The current file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `FILE.prev`: the checkpoint before the current one.
    pub fn previous_path(&self) -> PathBuf {
        sibling(&self.path, ".prev")
    }

    fn temp_path(&self) -> PathBuf {
        sibling(&self.path, ".tmp")
    }

    fn dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        }
    }

    /// Write atomically: temp file (streamed through a `BufWriter`), fsync, keep the old one
    /// as `FILE.prev`, rename, fsync dir.
    pub fn save<S: Serialize>(&self, checkpoint: &Checkpoint<S>) -> Result<(), CheckpointError> {
        let tmp = self.temp_path();
        let io = |op: &'static str, path: &Path| {
            let path = path.to_owned();
            move |source| CheckpointError::Io { path, op, source }
        };
        {
            let file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)
                .map_err(io("create temp file", &tmp))?;
            let mut out = BufWriter::with_capacity(WRITE_BUFFER, file);
            write_to(checkpoint, &tmp, &mut out)?;
            let file = out
                .into_inner()
                .map_err(|e| io("write temp file", &tmp)(e.into_error()))?;
            file.sync_all().map_err(io("fsync temp file", &tmp))?;
        }
        // Only a checkpoint that verifies becomes the previous generation: a bad current file
        // must not push out the last good one.
        if verify_file(&self.path).is_ok() {
            fs::rename(&self.path, self.previous_path())
                .map_err(io("keep previous generation", &self.path))?;
        }
        fs::rename(&tmp, &self.path).map_err(io("rename temp file into place", &self.path))?;
        let dir = self.dir();
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io("fsync directory", &dir))?;
        Ok(())
    }

    /// Load the newest checkpoint that verifies. `Ok(None)`: no checkpoint at all (first
    /// start). `Err`: checkpoints exist but none can be trusted.
    pub fn load<S: DeserializeOwned>(&self) -> Result<Option<Restored<S>>, Box<Untrusted>> {
        let current = self.read_generation(&self.path);
        let current_error = match current {
            Ok(None) => None,
            Ok(Some(checkpoint)) => {
                return Ok(Some(Restored {
                    checkpoint,
                    from: Generation::Current,
                }));
            }
            Err(e) => Some(e),
        };
        let prev_path = self.previous_path();
        match (self.read_generation(&prev_path), current_error) {
            (Ok(Some(checkpoint)), current_error) => Ok(Some(Restored {
                checkpoint,
                from: Generation::Previous { current_error },
            })),
            (Ok(None), None) => Ok(None),
            (Ok(None), Some(current)) => Err(Box::new(Untrusted {
                current,
                previous: PreviousGeneration::Missing(prev_path),
            })),
            (Err(previous), Some(current)) => Err(Box::new(Untrusted {
                current,
                previous: PreviousGeneration::Bad(previous),
            })),
            // The current file is missing but a bad previous one exists: nothing trusted is
            // left, and starting empty would hide that.
            (Err(previous), None) => Err(Box::new(Untrusted {
                current: CheckpointError::Io {
                    path: self.path.clone(),
                    op: "read",
                    source: std::io::Error::from(std::io::ErrorKind::NotFound),
                },
                previous: PreviousGeneration::Bad(previous),
            })),
        }
    }

    fn read_generation<S: DeserializeOwned>(
        &self,
        path: &Path,
    ) -> Result<Option<Checkpoint<S>>, CheckpointError> {
        match fs::read(path) {
            Ok(bytes) => decode(&bytes, path).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(CheckpointError::Io {
                path: path.to_owned(),
                op: "read",
                source,
            }),
        }
    }

    /// `--reset-state`: move every generation aside as `FILE.corrupt-<at>` (and
    /// `FILE.prev.corrupt-<at>`) so the ledger starts empty and the evidence is kept.
    /// Returns the paths the files were moved to.
    pub fn quarantine(&self, at: Seconds) -> Result<Vec<PathBuf>, CheckpointError> {
        let suffix = format!(".corrupt-{}", at.value() as i64);
        let mut moved = Vec::new();
        for path in [self.path.clone(), self.previous_path(), self.temp_path()] {
            if !path.exists() {
                continue;
            }
            let to = sibling(&path, &suffix);
            fs::rename(&path, &to).map_err(|source| CheckpointError::Io {
                path: path.clone(),
                op: "move aside",
                source,
            })?;
            moved.push(to);
        }
        Ok(moved)
    }
}

/// Buffer between the serialiser and the temp file.
const WRITE_BUFFER: usize = 256 * 1024;

/// Whether the file at `path` is a whole checkpoint as [`CheckpointFile::save`] wrote it:
/// header fields, body length and body SHA-256 all check out. Streams the file (its bytes are
/// never all in memory); the body's JSON is not parsed again, as the checksum proves it is the
/// body a save serialised.
fn verify_file(path: &Path) -> Result<(), CheckpointError> {
    let io = |op: &'static str| {
        move |source| CheckpointError::Io {
            path: path.to_owned(),
            op,
            source,
        }
    };
    let file = File::open(path).map_err(io("read"))?;
    let file_len = file.metadata().map_err(io("read"))?.len() as usize;
    let mut reader = BufReader::new(file);
    let mut header = Vec::with_capacity(MAX_HEADER_LEN);
    (&mut reader)
        .take(MAX_HEADER_LEN as u64)
        .read_until(b'\n', &mut header)
        .map_err(io("read"))?;
    let newline = header_end(&header, file_len, path)?;
    let (expected_len, digest) = parse_header(&header[..newline], path)?;
    let mut body = Hashing::new(io::sink());
    io::copy(&mut reader, &mut body).map_err(io("read"))?;
    let (found, actual) = body.finish();
    if found != expected_len {
        return Err(CheckpointError::Truncated {
            path: path.to_owned(),
            expected: expected_len,
            found,
        });
    }
    if actual != digest {
        return Err(CheckpointError::ChecksumMismatch {
            path: path.to_owned(),
            expected: digest.to_owned(),
            actual,
        });
    }
    Ok(())
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct State {
        epc: BTreeMap<String, f64>,
        pools: Vec<f64>,
    }

    fn state(seed: f64) -> State {
        State {
            epc: [
                ("bert".to_owned(), 1234.5 + seed),
                ("wiki".to_owned(), 0.25),
            ]
            .into_iter()
            .collect(),
            pools: vec![seed, 2.0 * seed],
        }
    }

    fn sample() -> Vec<u8> {
        encode(
            &Checkpoint::new(
                Seconds(1_700_000_030.0),
                Seconds(1_700_000_031.0),
                state(1.0),
            ),
            Path::new("s"),
        )
        .unwrap()
    }

    #[test]
    fn round_trips() {
        let cp = Checkpoint::new(Seconds(1_700_000_030.0), Seconds(1.0), state(3.5));
        let bytes = encode(&cp, Path::new("s")).unwrap();
        assert_eq!(decode::<State>(&bytes, Path::new("s")).unwrap(), cp);
    }

    #[test]
    fn body_checksum_is_plain_sha256_of_everything_after_the_header() {
        let bytes = sample();
        let nl = bytes.iter().position(|&b| b == b'\n').unwrap();
        let header = std::str::from_utf8(&bytes[..nl]).unwrap();
        assert!(header.ends_with(&hex(&Sha256::digest(&bytes[nl + 1..]))));
        assert!(header.starts_with("jobcarbon-checkpoint 1 "));
    }

    #[test]
    fn truncation_is_reported_with_lengths() {
        let bytes = sample();
        let err =
            decode::<State>(&bytes[..bytes.len() - 10], Path::new("/var/s.ckpt")).unwrap_err();
        assert_eq!(err.kind(), "truncated");
        let msg = err.to_string();
        assert!(
            msg.contains("/var/s.ckpt") && msg.contains("truncated"),
            "{msg}"
        );
    }

    #[test]
    fn future_version_is_refused_not_guessed() {
        let bytes = sample();
        let mut text = String::from_utf8(bytes).unwrap();
        text = text.replacen("jobcarbon-checkpoint 1 ", "jobcarbon-checkpoint 2 ", 1);
        let err = decode::<State>(text.as_bytes(), Path::new("s")).unwrap_err();
        assert_eq!(err.kind(), "version_mismatch");
        assert!(err.to_string().contains("version 2"), "{err}");
    }

    #[test]
    fn state_of_another_shape_names_the_place() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Other {
            epc: BTreeMap<String, String>,
        }
        let err = decode::<Other>(&sample(), Path::new("s")).unwrap_err();
        assert_eq!(err.kind(), "payload");
        assert!(err.to_string().contains("state.epc"), "{err}");
    }

    #[test]
    fn save_keeps_previous_generation_and_load_takes_newest() {
        let dir = tempfile::tempdir().unwrap();
        let file = CheckpointFile::new(dir.path().join("ledger.ckpt"));
        assert!(file.load::<State>().unwrap().is_none());
        file.save(&Checkpoint::new(Seconds(30.0), Seconds(31.0), state(1.0)))
            .unwrap();
        file.save(&Checkpoint::new(Seconds(60.0), Seconds(61.0), state(2.0)))
            .unwrap();
        let r = file.load::<State>().unwrap().unwrap();
        assert!(matches!(r.from, Generation::Current));
        assert_eq!(r.checkpoint.last_booked, Seconds(60.0));
        assert!(file.previous_path().exists());
        assert!(!file.temp_path().exists());
    }

    #[test]
    fn corrupt_current_falls_back_to_previous_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let file = CheckpointFile::new(dir.path().join("ledger.ckpt"));
        file.save(&Checkpoint::new(Seconds(30.0), Seconds(31.0), state(1.0)))
            .unwrap();
        file.save(&Checkpoint::new(Seconds(60.0), Seconds(61.0), state(2.0)))
            .unwrap();
        let bytes = fs::read(file.path()).unwrap();
        fs::write(file.path(), &bytes[..bytes.len() / 2]).unwrap();
        let r = file.load::<State>().unwrap().unwrap();
        assert_eq!(r.checkpoint.last_booked, Seconds(30.0));
        match r.from {
            Generation::Previous {
                current_error: Some(e),
            } => assert_eq!(e.kind(), "truncated"),
            other => panic!("expected fallback, got {other:?}"),
        }
        // A save after a bad current file must not push the good previous one out.
        file.save(&Checkpoint::new(Seconds(90.0), Seconds(91.0), state(3.0)))
            .unwrap();
        let prev: Checkpoint<State> =
            decode(&fs::read(file.previous_path()).unwrap(), Path::new("p")).unwrap();
        assert_eq!(prev.last_booked, Seconds(30.0));
    }

    #[test]
    fn crash_between_renames_restores_previous() {
        let dir = tempfile::tempdir().unwrap();
        let file = CheckpointFile::new(dir.path().join("ledger.ckpt"));
        file.save(&Checkpoint::new(Seconds(30.0), Seconds(31.0), state(1.0)))
            .unwrap();
        file.save(&Checkpoint::new(Seconds(60.0), Seconds(61.0), state(2.0)))
            .unwrap();
        // What a crash after "current → prev" and before "tmp → current" leaves behind.
        fs::rename(file.path(), file.temp_path()).unwrap();
        let r = file.load::<State>().unwrap().unwrap();
        assert!(matches!(
            r.from,
            Generation::Previous {
                current_error: None
            }
        ));
        assert_eq!(r.checkpoint.last_booked, Seconds(30.0));
    }

    #[test]
    fn both_generations_bad_is_refused_until_quarantined() {
        let dir = tempfile::tempdir().unwrap();
        let file = CheckpointFile::new(dir.path().join("ledger.ckpt"));
        file.save(&Checkpoint::new(Seconds(30.0), Seconds(31.0), state(1.0)))
            .unwrap();
        file.save(&Checkpoint::new(Seconds(60.0), Seconds(61.0), state(2.0)))
            .unwrap();
        fs::write(file.path(), b"jobcarbon-checkpoint 1 3 ab\n{}").unwrap();
        fs::write(file.previous_path(), b"").unwrap();
        let err = file.load::<State>().unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("--reset-state") && msg.contains("ledger.ckpt"),
            "{msg}"
        );
        let moved = file.quarantine(Seconds(1000.0)).unwrap();
        assert_eq!(moved.len(), 2);
        assert!(moved.iter().all(|p| p.exists()));
        assert!(file.load::<State>().unwrap().is_none());
    }

    #[test]
    fn bad_previous_with_missing_current_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = CheckpointFile::new(dir.path().join("ledger.ckpt"));
        fs::write(file.previous_path(), b"garbage").unwrap();
        assert!(file.load::<State>().is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn any_truncation_is_detected(cut in 0usize..10_000) {
            let bytes = sample();
            let cut = cut % bytes.len();
            prop_assert!(decode::<State>(&bytes[..cut], Path::new("s")).is_err());
        }

        #[test]
        fn any_byte_change_is_detected(pos in 0usize..10_000, xor in 1u8..=255) {
            let mut bytes = sample();
            let pos = pos % bytes.len();
            bytes[pos] ^= xor;
            prop_assert!(decode::<State>(&bytes, Path::new("s")).is_err());
        }

        #[test]
        fn any_appended_bytes_are_detected(tail in prop::collection::vec(any::<u8>(), 1..64)) {
            let mut bytes = sample();
            bytes.extend_from_slice(&tail);
            prop_assert!(decode::<State>(&bytes, Path::new("s")).is_err());
        }

        #[test]
        fn any_state_round_trips(epc in prop::collection::btree_map("[a-z-]{1,12}", 0.0..1e12f64, 0..20),
                                 pools in prop::collection::vec(-1e6..1e6f64, 0..20),
                                 at in 0.0..4e9f64) {
            let cp = Checkpoint::new(Seconds(at), Seconds(at), State { epc, pools });
            let bytes = encode(&cp, Path::new("s")).unwrap();
            prop_assert_eq!(decode::<State>(&bytes, Path::new("s")).unwrap(), cp);
        }
    }
}
