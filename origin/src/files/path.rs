//! Request-path decoding and opening paths strictly beneath the served root (openat2, with a canonicalize fallback).

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::{fs, io};

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags, Stat};
use rustix::io::Errno;
use tracing::{debug, warn};

use super::hidden::Policy;
use super::Reject;

/// Flags for every open below the root. `NONBLOCK` keeps a FIFO placed in the tree from
/// hanging a blocking thread (it has no effect on reads of regular files); `NOCTTY` keeps
/// a terminal device from becoming our controlling terminal.
const OPEN_FLAGS: OFlags = OFlags::RDONLY.union(OFlags::CLOEXEC).union(OFlags::NONBLOCK).union(OFlags::NOCTTY);

/// Resolution stays below the root fd and never follows /proc-style magic links.
const RESOLVE: ResolveFlags = ResolveFlags::BENEATH.union(ResolveFlags::NO_MAGICLINKS);

/// How often openat2 is retried when the kernel asks us to (EAGAIN after a concurrent
/// rename, or EINTR) before we give up with a 500.
const OPEN_RETRIES: u32 = 8;

/// A request path after percent-decoding and validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// Relative to the root, segments joined by `/`; empty for the root itself.
    pub(crate) rel: PathBuf,
    /// The raw path ended in `/` (directories must be asked for that way).
    pub(crate) trailing_slash: bool,
}

/// Decode a URI path (the part before `?`) into a validated relative path.
///
/// Empty and `.` segments vanish; a `..` segment, or a segment that decodes to something
/// containing `/`, `\` or NUL, is refused. Bytes that are not UTF-8 are kept as they are
/// (file names on unix are bytes).
pub(crate) fn decode(raw: &str) -> Result<Target, Reject> {
    let bytes = raw.as_bytes();
    let Some(rest) = bytes.strip_prefix(b"/") else {
        return Err(Reject::BadPath);
    };
    let mut out = Vec::with_capacity(rest.len());
    for segment in rest.split(|&b| b == b'/') {
        if segment.is_empty() {
            continue;
        }
        let mark = out.len();
        if mark != 0 {
            out.push(b'/');
        }
        let start = out.len();
        decode_segment(segment, &mut out)?;
        let name = out.get(start..).unwrap_or_default();
        if name == b"." {
            out.truncate(mark);
        } else if name == b".." {
            return Err(Reject::DotDot);
        } else if name.iter().any(|&b| matches!(b, b'/' | b'\\' | 0)) {
            return Err(Reject::BadSegment);
        }
    }
    Ok(Target { rel: PathBuf::from(OsString::from_vec(out)), trailing_slash: bytes.ends_with(b"/") })
}

/// Append the percent-decoded `segment` to `out`; a `%` not followed by two hex digits is malformed.
fn decode_segment(segment: &[u8], out: &mut Vec<u8>) -> Result<(), Reject> {
    let mut bytes = segment.iter().copied();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hi = bytes.next().and_then(hex_value);
            let lo = bytes.next().and_then(hex_value);
            match (hi, lo) {
                (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                _ => return Err(Reject::BadPercent),
            }
        } else {
            out.push(b);
        }
    }
    Ok(())
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Map a failed open to the status the client sees; unexpected errors are logged here.
pub(crate) fn reject_for(err: Errno, rel: &Path) -> Reject {
    match err {
        Errno::NOENT | Errno::NOTDIR | Errno::NAMETOOLONG => Reject::NotFound,
        Errno::XDEV => {
            debug!(path = %rel.display(), "refused a path that leaves the root");
            Reject::LeavesRoot
        }
        Errno::LOOP => {
            debug!(path = %rel.display(), "refused a symlink loop or magic link");
            Reject::Loop
        }
        Errno::ACCESS | Errno::PERM => Reject::Denied,
        _ => {
            if let Some(suppressed) = crate::logs::FILES.allow() {
                warn!(error = %err, path = %rel.display(), suppressed, "could not open file");
            }
            Reject::Internal
        }
    }
}

/// The served directory: its canonical path, an fd that every lookup starts from, and the
/// rules on what beneath it is never served ([`Policy`]).
pub(crate) struct Root {
    dir: PathBuf,
    fd: OwnedFd,
    /// False when the kernel lacks openat2; then every open canonicalizes and checks the prefix.
    openat2: AtomicBool,
    policy: Policy,
}

impl Root {
    /// Canonicalize `path`, require a directory, open it, and probe for openat2 once.
    pub(crate) fn open(path: &Path) -> io::Result<Root> {
        let dir = fs::canonicalize(path)
            .map_err(|e| io::Error::new(e.kind(), format!("file server root {}: {e}", path.display())))?;
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let fd = match rustix::fs::open(&dir, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOTDIR) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("file server root {} is not a directory", path.display()),
                ))
            }
            Err(e) => {
                return Err(io::Error::new(
                    io::Error::from(e).kind(),
                    format!("file server root {}: {e}", path.display()),
                ))
            }
        };
        let openat2 = rustix::fs::openat2(&fd, ".", OPEN_FLAGS, Mode::empty(), RESOLVE).is_ok();
        if !openat2 {
            debug!(root = %dir.display(), "openat2 unavailable, checking canonical paths instead");
        }
        Ok(Root { dir, fd, openat2: AtomicBool::new(openat2), policy: Policy::default() })
    }

    /// Never serve or list `dir` or anything in it, if it lies beneath the root.
    pub(crate) fn hide(&mut self, dir: &Path) {
        let Ok(path) = fs::canonicalize(dir) else { return };
        if path.starts_with(&self.dir) {
            self.policy.set_certs(path);
        }
    }

    /// Serve and list dot-files and dot-directories too (key directories stay hidden).
    pub(crate) fn show_hidden(&mut self, show: bool) {
        self.policy.set_show_hidden(show);
    }

    /// The rules on what is never served.
    pub(crate) fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Where an opened file or directory really is, if it may be served (see [`Policy::admits`]).
    pub(crate) fn admits(&self, fd: &OwnedFd, is_dir: bool) -> Option<PathBuf> {
        self.policy.admits(self, fd, is_dir)
    }

    /// Whether the directory at the canonical path `real` holds key material (cached briefly).
    pub(crate) fn is_key_dir(&self, real: &Path) -> bool {
        self.policy.is_key_dir(self, real)
    }

    /// The canonical root directory.
    pub(crate) fn path(&self) -> &Path {
        &self.dir
    }

    /// Behave as on a kernel without openat2 (to test the fallback).
    #[cfg(test)]
    pub(crate) fn force_fallback(&self) {
        self.openat2.store(false, Ordering::Relaxed);
    }

    /// Open `rel` (a [`Target::rel`], or one joined with a single file name) for reading,
    /// never resolving to anything outside the root.
    pub(crate) fn open_beneath(&self, rel: &Path) -> Result<OwnedFd, Errno> {
        let rel = if rel.as_os_str().is_empty() { Path::new(".") } else { rel };
        if self.openat2.load(Ordering::Relaxed) {
            match self.openat2(rel) {
                Err(Errno::NOSYS) => self.openat2.store(false, Ordering::Relaxed),
                Err(Errno::XDEV) => return self.reopen_canonical(rel),
                other => return other,
            }
        }
        self.open_checked(rel)
    }

    fn openat2(&self, rel: &Path) -> Result<OwnedFd, Errno> {
        let mut tries = 0;
        loop {
            match rustix::fs::openat2(&self.fd, rel, OPEN_FLAGS, Mode::empty(), RESOLVE) {
                Err(Errno::AGAIN | Errno::INTR) if tries < OPEN_RETRIES => tries += 1,
                result => return result,
            }
        }
    }

    /// openat2 refused a walk that stepped outside the root, which also happens for an
    /// absolute symlink whose target is inside it. Resolve the whole path; if it ends up
    /// inside, open its symlink-free relative form, again with openat2, so that a link
    /// swapped in meanwhile still cannot lead out.
    fn reopen_canonical(&self, rel: &Path) -> Result<OwnedFd, Errno> {
        let real = self.canonical(rel)?;
        match real.strip_prefix(&self.dir) {
            Ok(inside) if inside.as_os_str().is_empty() => self.openat2(Path::new(".")),
            Ok(inside) => self.openat2(inside),
            Err(_) => Err(Errno::XDEV),
        }
    }

    /// Without openat2: canonicalize, insist on the root prefix, open the resolved path.
    /// (A symlink swapped between the check and the open is not caught here.)
    fn open_checked(&self, rel: &Path) -> Result<OwnedFd, Errno> {
        let real = self.canonical(rel)?;
        if !real.starts_with(&self.dir) {
            return Err(Errno::XDEV);
        }
        rustix::fs::open(&real, OPEN_FLAGS, Mode::empty())
    }

    fn canonical(&self, rel: &Path) -> Result<PathBuf, Errno> {
        fs::canonicalize(self.dir.join(rel)).map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::IO))
    }
}

/// What a file is, for the purposes of serving it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Dir,
    Symlink,
    Other,
}

/// The parts of `struct stat` the server uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileMeta {
    pub(crate) kind: Kind,
    pub(crate) size: u64,
    pub(crate) mtime: i64,
    pub(crate) mtime_nsec: u32,
    pub(crate) ino: u64,
    pub(crate) dev: u64,
}

impl FileMeta {
    /// fstat an open file.
    pub(crate) fn of(fd: impl AsFd) -> Result<FileMeta, Errno> {
        rustix::fs::fstat(fd).map(|st| FileMeta::from_stat(&st))
    }

    // The field types of `Stat` differ between targets; the conversions are identities on some.
    #[allow(clippy::useless_conversion)]
    pub(crate) fn from_stat(st: &Stat) -> FileMeta {
        let kind = match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => Kind::File,
            FileType::Directory => Kind::Dir,
            FileType::Symlink => Kind::Symlink,
            _ => Kind::Other,
        };
        FileMeta {
            kind,
            size: u64::try_from(i64::from(st.st_size)).unwrap_or(0),
            mtime: i64::from(st.st_mtime),
            mtime_nsec: u32::try_from(u64::from(st.st_mtime_nsec)).unwrap_or(0),
            ino: u64::from(st.st_ino),
            dev: u64::from(st.st_dev),
        }
    }
}

/// A single file name as a path component (for joining a listed entry onto its directory).
pub(crate) fn name_path(name: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(name))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> (Vec<u8>, bool) {
        let t = decode(raw).unwrap();
        (t.rel.into_os_string().into_vec(), t.trailing_slash)
    }

    #[test]
    fn plain_and_empty_segments() {
        assert_eq!(ok("/"), (b"".to_vec(), true));
        assert_eq!(ok("/a/b.txt"), (b"a/b.txt".to_vec(), false));
        assert_eq!(ok("//a///b/"), (b"a/b".to_vec(), true));
        assert_eq!(ok("/./a/./b"), (b"a/b".to_vec(), false));
        assert_eq!(ok("/%2e/a"), (b"a".to_vec(), false));
        assert_eq!(ok("/..."), (b"...".to_vec(), false));
        assert_eq!(ok("/a..b"), (b"a..b".to_vec(), false));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(ok("/a%20b"), (b"a b".to_vec(), false));
        assert_eq!(ok("/%C3%A9t%c3%a9"), ("été".as_bytes().to_vec(), false));
        assert_eq!(ok("/%23%3F%25%22"), (b"#?%\"".to_vec(), false));
        // Not UTF-8: kept as raw bytes.
        assert_eq!(ok("/%FF%fe"), (vec![0xff, 0xfe], false));
    }

    #[test]
    fn malformed() {
        assert_eq!(decode(""), Err(Reject::BadPath));
        assert_eq!(decode("a/b"), Err(Reject::BadPath));
        assert_eq!(decode("*"), Err(Reject::BadPath));
        assert_eq!(decode("/a%2"), Err(Reject::BadPercent));
        assert_eq!(decode("/a%zz"), Err(Reject::BadPercent));
        assert_eq!(decode("/%"), Err(Reject::BadPercent));
    }

    #[test]
    fn traversal_and_separators() {
        assert_eq!(decode("/.."), Err(Reject::DotDot));
        assert_eq!(decode("/../x"), Err(Reject::DotDot));
        assert_eq!(decode("/a/../../x"), Err(Reject::DotDot));
        assert_eq!(decode("/%2e%2e/x"), Err(Reject::DotDot));
        assert_eq!(decode("/%2E%2E"), Err(Reject::DotDot));
        assert_eq!(decode("/.%2e/x"), Err(Reject::DotDot));
        assert_eq!(decode("/a%2f..%2f..%2fx"), Err(Reject::BadSegment));
        assert_eq!(decode("/%2F"), Err(Reject::BadSegment));
        assert_eq!(decode("/%5c.."), Err(Reject::BadSegment));
        assert_eq!(decode("/a\\..\\x"), Err(Reject::BadSegment));
        assert_eq!(decode("/x%00"), Err(Reject::BadSegment));
        assert_eq!(decode("/x%00.txt"), Err(Reject::BadSegment));
    }

    #[test]
    fn errno_mapping() {
        let p = Path::new("x");
        assert_eq!(reject_for(Errno::NOENT, p), Reject::NotFound);
        assert_eq!(reject_for(Errno::NOTDIR, p), Reject::NotFound);
        assert_eq!(reject_for(Errno::XDEV, p), Reject::LeavesRoot);
        assert_eq!(reject_for(Errno::LOOP, p), Reject::Loop);
        assert_eq!(reject_for(Errno::ACCESS, p), Reject::Denied);
        assert_eq!(reject_for(Errno::IO, p), Reject::Internal);
    }

    #[test]
    fn root_must_be_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs::write(&file, b"x").unwrap();
        let err = Root::open(&file).err().expect("a file is not a root");
        assert!(err.to_string().contains("is not a directory"), "{err}");
        let err = Root::open(&dir.path().join("missing")).err().expect("missing root");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("missing"), "{err}");
        let root = Root::open(dir.path()).unwrap();
        assert_eq!(root.path(), fs::canonicalize(dir.path()).unwrap());
    }
}
