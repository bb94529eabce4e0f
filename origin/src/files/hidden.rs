//! What the file server never serves or lists: dot-names (unless `--show-hidden`), the origin's
//! own certificates directory, and any directory holding revmux key material.
//!
//! Every check is made on where the kernel actually resolved an open file (its path in
//! `/proc/self/fd`), so a symlink, a `..` spelling or an alias of the root changes nothing. A
//! *key directory* is one with an entry named `token` or `*-key.pem` (not itself a directory)
//! directly inside it: `p` writes its token and private keys that way, so a copy of a proxy's
//! `certs/` anywhere beneath the root is never handed out, whatever it is called. Finding out
//! costs a directory scan, so answers are remembered for [`KEY_DIR_FRESH_FOR`] in a small,
//! bounded cache; a key file that appears in a directory is noticed at most that late.

use std::collections::HashMap;
use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rustix::fs::{Dir, FileType};
use tracing::{debug, warn};

use super::path::Root;

/// How long a key-directory answer is trusted.
pub(crate) const KEY_DIR_FRESH_FOR: Duration = Duration::from_secs(1);
/// Bounds on the cache of answers; past them, stale answers go first, then everything.
const KEY_DIR_ENTRIES: usize = 4096;
const KEY_DIR_PATH_BYTES: usize = 1024 * 1024;

/// The rules, fixed at start.
#[derive(Debug, Default)]
pub(crate) struct Policy {
    /// Serve and list dot-files and dot-directories (`--show-hidden`).
    show_hidden: bool,
    /// The origin's certificates directory (canonical), if it lies beneath the root.
    certs: Option<PathBuf>,
    key_dirs: KeyDirs,
}

/// Whether a file name is hidden by the dot rule.
pub(crate) fn is_dot_name(name: &[u8]) -> bool {
    name.first() == Some(&b'.')
}

/// Whether an entry with this name marks its directory as holding key material.
pub(crate) fn is_key_name(name: &[u8]) -> bool {
    name == b"token" || name.ends_with(b"-key.pem")
}

impl Policy {
    pub(crate) fn set_show_hidden(&mut self, show: bool) {
        self.show_hidden = show;
    }

    pub(crate) fn set_certs(&mut self, canonical: PathBuf) {
        self.certs = Some(canonical);
    }

    /// Whether a listed name may appear, as far as its name tells.
    pub(crate) fn shows_name(&self, name: &[u8]) -> bool {
        self.show_hidden || !is_dot_name(name)
    }

    /// Whether a request path (relative, already decoded) names a dot-file or passes through a
    /// dot-directory; such requests are refused before anything is opened.
    pub(crate) fn refuses_request(&self, rel: &Path) -> bool {
        !self.show_hidden && has_dot_component(rel)
    }

    /// Whether `real` (a canonical path) is the certificates directory itself.
    pub(crate) fn is_certs_dir(&self, real: &Path) -> bool {
        self.certs.as_deref() == Some(real)
    }

    /// Where an opened file really is, if it may be served; `None` if it may not, or if the
    /// kernel cannot say where it is (better a 404 than a leaked key).
    pub(crate) fn admits(&self, root: &Root, fd: &OwnedFd, is_dir: bool) -> Option<PathBuf> {
        let real = match fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())) {
            Ok(real) => real,
            Err(e) => {
                if let Some(suppressed) = crate::logs::FILES.allow() {
                    warn!(error = %e, suppressed, "cannot tell where an opened file lies; refusing it");
                }
                return None;
            }
        };
        self.admits_path(root, &real, is_dir).then_some(real)
    }

    /// The rules on a canonical path: beneath the root, no dot component (unless shown), not in
    /// the certificates directory, and neither the root nor any directory down to `real`'s own
    /// (`real` itself, for a directory) holds key material.
    pub(crate) fn admits_path(&self, root: &Root, real: &Path, is_dir: bool) -> bool {
        let Ok(inside) = real.strip_prefix(root.path()) else {
            return false;
        };
        if !self.show_hidden && has_dot_component(inside) {
            return false;
        }
        if self.certs.as_deref().is_some_and(|certs| real.starts_with(certs)) {
            return false;
        }
        let dirs = if is_dir { inside } else { inside.parent().unwrap_or(Path::new("")) };
        let mut at = root.path().to_path_buf();
        if self.is_key_dir(root, &at) {
            return false;
        }
        for component in dirs.components() {
            at.push(component);
            if self.is_key_dir(root, &at) {
                return false;
            }
        }
        true
    }

    /// Whether the directory at the canonical path `real` (beneath the root) holds key
    /// material. One that cannot be read counts as holding some.
    pub(crate) fn is_key_dir(&self, root: &Root, real: &Path) -> bool {
        let now = Instant::now();
        if let Some(answer) = self.key_dirs.get(real, now) {
            return answer;
        }
        let answer = scan_for_keys(root, real);
        self.key_dirs.insert(real, answer, now);
        answer
    }
}

fn has_dot_component(rel: &Path) -> bool {
    rel.components().any(|c| match c {
        Component::Normal(name) => is_dot_name(name.as_bytes()),
        _ => false,
    })
}

/// Read the directory's names until one marks key material.
fn scan_for_keys(root: &Root, real: &Path) -> bool {
    let Ok(inside) = real.strip_prefix(root.path()) else { return true };
    let fd = match root.open_beneath(inside) {
        Ok(fd) => fd,
        Err(e) => {
            debug!(error = %e, dir = %real.display(), "cannot open a directory to look for key material; hiding it");
            return true;
        }
    };
    let mut dir = match Dir::new(fd) {
        Ok(dir) => dir,
        Err(e) => {
            debug!(error = %e, dir = %real.display(), "cannot read a directory to look for key material; hiding it");
            return true;
        }
    };
    while let Some(entry) = dir.read() {
        match entry {
            Ok(entry) => {
                if is_key_name(entry.file_name().to_bytes()) && entry.file_type() != FileType::Directory {
                    return true;
                }
            }
            Err(e) => {
                debug!(error = %e, dir = %real.display(), "cannot read a directory to look for key material; hiding it");
                return true;
            }
        }
    }
    false
}

/// Recent key-directory answers by canonical path, bounded in entries and path bytes.
#[derive(Debug, Default)]
struct KeyDirs {
    inner: Mutex<Answers>,
}

#[derive(Debug, Default)]
struct Answers {
    map: HashMap<PathBuf, (bool, Instant)>,
    bytes: usize,
}

impl KeyDirs {
    fn get(&self, path: &Path, now: Instant) -> Option<bool> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.map.get(path).filter(|(_, at)| now.duration_since(*at) < KEY_DIR_FRESH_FOR).map(|(answer, _)| *answer)
    }

    fn insert(&self, path: &Path, answer: bool, now: Instant) {
        let size = path.as_os_str().len();
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.map.len() >= KEY_DIR_ENTRIES || inner.bytes + size > KEY_DIR_PATH_BYTES {
            inner.map.retain(|_, (_, at)| now.duration_since(*at) < KEY_DIR_FRESH_FOR);
            inner.bytes = inner.map.keys().map(|p| p.as_os_str().len()).sum();
            if inner.map.len() >= KEY_DIR_ENTRIES || inner.bytes + size > KEY_DIR_PATH_BYTES {
                inner.map.clear();
                inner.bytes = 0;
            }
        }
        if inner.map.insert(path.to_owned(), (answer, now)).is_none() {
            inner.bytes += size;
        }
    }

    #[cfg(test)]
    fn len_and_bytes(&self) -> (usize, usize) {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        (inner.map.len(), inner.bytes)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for (name, dot, key) in [
            (".env", true, false),
            (".git", true, false),
            ("..x", true, false),
            ("env", false, false),
            ("token", false, true),
            ("token.txt", false, false),
            ("tokens", false, false),
            ("server-key.pem", false, true),
            ("ca-key.pem", false, true),
            ("-key.pem", false, true),
            ("key.pem", false, false),
            ("server-key.pem.bak", false, false),
        ] {
            assert_eq!(is_dot_name(name.as_bytes()), dot, "{name}");
            assert_eq!(is_key_name(name.as_bytes()), key, "{name}");
        }
    }

    #[test]
    fn dot_components_of_request_paths() {
        let policy = Policy::default();
        for (rel, refused) in [
            ("", false),
            ("a/b.txt", false),
            ("a.b/c..d", false),
            (".env", true),
            (".git/config", true),
            ("a/.ssh/id_rsa", true),
            ("a/b/.hidden/", true),
        ] {
            assert_eq!(policy.refuses_request(Path::new(rel)), refused, "{rel}");
        }
        let mut shown = Policy::default();
        shown.set_show_hidden(true);
        assert!(!shown.refuses_request(Path::new(".git/config")));
        assert!(shown.shows_name(b".env") && !policy.shows_name(b".env") && policy.shows_name(b"env"));
    }

    #[test]
    fn the_answer_cache_stays_within_its_bounds() {
        let cache = KeyDirs::default();
        let now = Instant::now();
        for i in 0..(KEY_DIR_ENTRIES + 10) {
            cache.insert(&PathBuf::from(format!("/srv/d{i}")), i % 2 == 0, now);
        }
        let (n, bytes) = cache.len_and_bytes();
        assert!(n <= KEY_DIR_ENTRIES && bytes <= KEY_DIR_PATH_BYTES, "{n} entries, {bytes} bytes");
        let long = "x".repeat(4000);
        for i in 0..400 {
            cache.insert(&PathBuf::from(format!("/{long}/{i}")), false, now);
        }
        let (n, bytes) = cache.len_and_bytes();
        assert!(n <= KEY_DIR_ENTRIES && bytes <= KEY_DIR_PATH_BYTES, "{n} entries, {bytes} bytes");
        // Answers expire.
        cache.insert(Path::new("/a"), true, now);
        assert_eq!(cache.get(Path::new("/a"), now), Some(true));
        assert_eq!(cache.get(Path::new("/a"), now + KEY_DIR_FRESH_FOR), None);
        assert_eq!(cache.get(Path::new("/b"), now), None);
        // Replacing an answer keeps the byte count.
        let before = cache.len_and_bytes();
        cache.insert(Path::new("/a"), false, now);
        assert_eq!(cache.len_and_bytes(), before);
    }
}
