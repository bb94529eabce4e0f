//! HTML directory listings in bounded memory: a capped number of names read, sorted in natural
//! order (`file-2` before `file-10`), and only the page asked for (`?page=N`) stat'ed and
//! rendered, with a breadcrumb path, a type column and modification times in UTC.
//!
//! Memory per listing being built: at most [`MAX_NAMES`] names of at most 255 bytes each
//! (`NAME_MAX`), about 24 bytes of bookkeeping plus the name apiece, so under 6 MiB in the worst
//! case and about 1 MiB for typical names; they are freed before the answer is sent. Plus one
//! rendered page of at most [`PAGE_SIZE`] rows of at most ~2.5 KiB each (a 255-byte name
//! percent-encoded in the link and HTML-escaped in the text), so under 2.5 MiB in the worst case
//! and about 200 KiB typically; the response holds that page until it is sent. The file server
//! builds at most [`super::CONCURRENT_LISTINGS`] listings at once.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use percent_encoding::{percent_encode, AsciiSet, NON_ALPHANUMERIC};
use rustix::fs::{AtFlags, Dir, FileType};

use super::path::{name_path, FileMeta, Kind, Root};
use super::{compress, mime};

/// Everything but RFC 3986 unreserved characters is encoded in links. That covers `/`, `?`,
/// `#`, `%`, quotes and `:` (so a name like `a:b` is never read as a URL scheme).
const LINK: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// At most this many names are read from one directory; a listing of a larger one says so.
pub(crate) const MAX_NAMES: usize = 20_000;
/// Entries per page.
pub(crate) const PAGE_SIZE: usize = 1_000;

/// The listing bounds: [`MAX_NAMES`] and [`PAGE_SIZE`], smaller in tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) max_names: usize,
    pub(crate) page_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_names: MAX_NAMES, page_size: PAGE_SIZE }
    }
}

/// A name read from the directory, with just enough to sort it. Stat'ed only if it lands on
/// the page asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Candidate {
    name: Box<[u8]>,
    is_dir: bool,
    /// A symlink (already resolved beneath the root and admitted): stat'ed through it.
    linked: bool,
}

/// One row of the page.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    name: Box<[u8]>,
    is_dir: bool,
    size: u64,
    mtime: i64,
}

/// Why a listing could not be built.
#[derive(Debug)]
pub(crate) enum ListError {
    Io(io::Error),
    /// The page asked for is past the last one (or 0).
    NoSuchPage,
}

impl From<io::Error> for ListError {
    fn from(e: io::Error) -> Self {
        ListError::Io(e)
    }
}

/// A `page` query parameter that is not a whole number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BadPage;

/// The `page` query parameter: 1 without one; [`BadPage`] when it is not a whole number (400).
/// Numbers too large for `usize` are simply past the last page.
pub(crate) fn page_param(query: Option<&str>) -> Result<usize, BadPage> {
    let Some(value) = query.into_iter().flat_map(|q| q.split('&')).find_map(|pair| pair.strip_prefix("page=")) else {
        return Ok(1);
    };
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BadPage);
    }
    Ok(value.parse().unwrap_or(usize::MAX))
}

/// Render page `page` (1-based) of the listing of the open directory `dir`, which is `rel`
/// below `root` and really at the canonical path `real`. Blocking: call it from the blocking
/// pool, holding a listing permit.
pub(crate) fn render(
    root: &Root,
    dir: OwnedFd,
    real: &Path,
    rel: &Path,
    page: usize,
    limits: Limits,
) -> Result<String, ListError> {
    let mut dir = Dir::new(dir).map_err(io::Error::from)?;
    let (mut names, truncated) = read_names(root, &mut dir, real, rel, limits.max_names)?;
    sort(&mut names);
    let total = names.len();
    let pages = total.div_ceil(limits.page_size).max(1);
    if page == 0 || page > pages {
        return Err(ListError::NoSuchPage);
    }
    let first = (page - 1) * limits.page_size;
    let last = total.min(first + limits.page_size);
    let on_page: Vec<Candidate> = names.drain(first..last).collect();
    drop(names);
    let entries = stat_page(root, dir.fd().map_err(io::Error::from)?, real, rel, on_page);
    let page = Page { number: page, pages, first: first + 1, last, total, truncated, max_names: limits.max_names };
    Ok(to_html(rel.as_os_str().as_bytes(), &page, &entries))
}

/// Read at most `max_names` names (the second value says whether there were more), keeping
/// those that may be listed: no dot-names (unless shown), not the certificates directory, only
/// files and directories, and symlinks only when they resolve beneath the root to something
/// that may be served. Only symlinks (and entries whose type the file system does not report)
/// cost a system call here; everything else is classified by what readdir says.
fn read_names(
    root: &Root,
    dir: &mut Dir,
    real: &Path,
    rel: &Path,
    max_names: usize,
) -> io::Result<(Vec<Candidate>, bool)> {
    let policy = root.policy();
    let mut names = Vec::new();
    let mut read = 0;
    while let Some(entry) = dir.read() {
        let entry = entry?;
        let name = entry.file_name();
        let bytes = name.to_bytes();
        if bytes == b"." || bytes == b".." {
            continue;
        }
        if read == max_names {
            return Ok((names, true));
        }
        read += 1;
        if !policy.shows_name(bytes) {
            continue;
        }
        let mut file_type = entry.file_type();
        if file_type == FileType::Unknown {
            // The entry may vanish between readdir and stat; then it simply isn't listed.
            match rustix::fs::statat(dir.fd()?, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(stat) => file_type = FileType::from_raw_mode(stat.st_mode),
                Err(_) => continue,
            }
        }
        let (is_dir, linked) = match file_type {
            FileType::Directory => (true, false),
            FileType::RegularFile => (false, false),
            FileType::Symlink => match resolve_link(root, &rel.join(name_path(bytes))) {
                Some(is_dir) => (is_dir, true),
                None => continue,
            },
            _ => continue,
        };
        if !linked && is_dir && policy.is_certs_dir(&real.join(name_path(bytes))) {
            continue;
        }
        names.push(Candidate { name: bytes.into(), is_dir, linked });
    }
    Ok((names, false))
}

/// Where a symlink in the listing leads: `Some(is_dir)` if it resolves beneath the root to a
/// file or directory that may be served; links leading out, nowhere, or to something hidden
/// are left out, as are sockets, FIFOs and devices, which are never served.
fn resolve_link(root: &Root, rel: &Path) -> Option<bool> {
    let fd = root.open_beneath(rel).ok()?;
    let is_dir = match FileMeta::of(&fd).ok()?.kind {
        Kind::Dir => true,
        Kind::File => false,
        Kind::Symlink | Kind::Other => return None,
    };
    root.admits(&fd, is_dir).map(|_| is_dir)
}

/// Stat the entries of one page. Entries that vanished or changed kind meanwhile, and
/// directories holding key material, are left out.
fn stat_page(root: &Root, dir: impl AsFd, real: &Path, rel: &Path, on_page: Vec<Candidate>) -> Vec<Entry> {
    let mut entries = Vec::with_capacity(on_page.len());
    for candidate in on_page {
        let name = name_path(&candidate.name);
        let meta = if candidate.linked {
            root.open_beneath(&rel.join(name)).and_then(FileMeta::of)
        } else {
            rustix::fs::statat(dir.as_fd(), name, AtFlags::SYMLINK_NOFOLLOW).map(|st| FileMeta::from_stat(&st))
        };
        let Ok(meta) = meta else { continue };
        let still_same = match meta.kind {
            Kind::Dir => candidate.is_dir && (candidate.linked || !root.is_key_dir(&real.join(name))),
            Kind::File => !candidate.is_dir,
            Kind::Symlink | Kind::Other => false,
        };
        if still_same {
            entries.push(Entry { name: candidate.name, is_dir: candidate.is_dir, size: meta.size, mtime: meta.mtime });
        }
    }
    entries
}

/// Directories first, then files; each group in natural order (runs of digits compare by
/// their value, so `file-2` comes before `file-10`), names equal that way by their bytes.
fn sort(names: &mut [Candidate]) {
    names.sort_unstable_by(|a, b| b.is_dir.cmp(&a.is_dir).then_with(|| natural(&a.name, &b.name)));
}

/// Natural order of two names. Names that are not UTF-8 are compared by their lossy text,
/// so the order stays total (a comparison falling back to bytes for some pairs only would
/// not be transitive, and sorting may panic on a comparison that is not).
fn natural(a: &[u8], b: &[u8]) -> Ordering {
    let (text_a, text_b) = (String::from_utf8_lossy(a), String::from_utf8_lossy(b));
    alphanumeric_sort::compare_str(&*text_a, &*text_b).then_with(|| a.cmp(b))
}

/// What a listed entry is, for its icon and type column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EntryKind {
    Folder,
    Video,
    Audio,
    Image,
    Subtitles,
    Text,
    File,
}

impl EntryKind {
    /// By the Content-Type the entry would be served with.
    fn of(name: &[u8], is_dir: bool) -> EntryKind {
        if is_dir {
            return EntryKind::Folder;
        }
        let path = Path::new(OsStr::from_bytes(name));
        let extension = path.extension().map(OsStr::as_bytes).unwrap_or_default();
        if [&b"ass"[..], b"ssa", b"sub"].iter().any(|e| extension.eq_ignore_ascii_case(e)) {
            return EntryKind::Subtitles;
        }
        let content_type = mime::content_type(path);
        let content_type = content_type.as_bytes();
        if content_type.starts_with(b"video/") {
            EntryKind::Video
        } else if content_type.starts_with(b"audio/") {
            EntryKind::Audio
        } else if content_type.starts_with(b"image/") {
            EntryKind::Image
        } else if content_type.starts_with(b"text/vtt") || content_type == b"application/x-subrip" {
            EntryKind::Subtitles
        } else if compress::compressible(content_type) {
            EntryKind::Text
        } else {
            EntryKind::File
        }
    }

    /// The icon and the word shown in the type column.
    fn label(self) -> (&'static str, &'static str) {
        match self {
            EntryKind::Folder => ("\u{1F4C1}", "folder"),
            EntryKind::Video => ("\u{1F39E}\u{FE0F}", "video"),
            EntryKind::Audio => ("\u{1F3B5}", "audio"),
            EntryKind::Image => ("\u{1F5BC}\u{FE0F}", "image"),
            EntryKind::Subtitles => ("\u{1F4AC}", "subtitles"),
            EntryKind::Text => ("\u{1F4C4}", "text"),
            EntryKind::File => ("\u{1F4E6}", "file"),
        }
    }
}

/// The breadcrumb of the directory `rel` (bytes, `/`-separated, empty for the root): one
/// `(href, name)` per level, the root first (named `/`), each href relative to the listing
/// itself (`../../`, `../`, `./`), so the links hold below any path prefix a route adds.
fn breadcrumb(rel: &[u8]) -> Vec<(String, Cow<'_, str>)> {
    let names: Vec<&[u8]> = rel.split(|&b| b == b'/').filter(|name| !name.is_empty()).collect();
    let depth = names.len();
    let up = |levels: usize| if levels == 0 { "./".to_owned() } else { "../".repeat(levels) };
    let mut crumbs = Vec::with_capacity(depth + 1);
    crumbs.push((up(depth), Cow::Borrowed("/")));
    for (i, name) in names.into_iter().enumerate() {
        crumbs.push((up(depth - i - 1), String::from_utf8_lossy(name)));
    }
    crumbs
}

/// Where a page sits in the whole listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Page {
    /// 1-based.
    number: usize,
    pages: usize,
    /// Positions (1-based, inclusive) of the page's first and last entries among `total`.
    first: usize,
    last: usize,
    total: usize,
    /// The directory has more names than `max_names`, the most that were read.
    truncated: bool,
    max_names: usize,
}

fn to_html(rel: &[u8], page: &Page, entries: &[Entry]) -> String {
    let mut title = String::with_capacity(rel.len() + 2);
    title.push('/');
    if !rel.is_empty() {
        title.push_str(&String::from_utf8_lossy(rel));
        title.push('/');
    }
    let mut out = String::with_capacity(2048 + entries.len() * 192);
    out.push_str(
        "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>Index of ",
    );
    escape_html(&mut out, &title);
    out.push_str(
        "</title>\n<style>\
         body{font-family:system-ui,sans-serif;margin:2em}\
         table{border-collapse:collapse}\
         th,td{padding:.2em 1.5em .2em 0;text-align:left}\
         td.size{text-align:right;white-space:nowrap}\
         td.type span{margin-right:.4em}\
         nav a{margin:0 1em}\
         h1 .crumbs a{margin:0 .15em;text-decoration:none}\
         </style>\n</head>\n<body>\n<h1>Index of <span class=\"crumbs\">",
    );
    for (i, (href, name)) in breadcrumb(rel).iter().enumerate() {
        if i > 1 {
            out.push('/');
        }
        let _ = write!(out, "<a href=\"{href}\">");
        escape_html(&mut out, name);
        out.push_str("</a>");
    }
    if !rel.is_empty() {
        out.push('/');
    }
    out.push_str("</span></h1>\n");
    if page.total == 0 {
        out.push_str("<p class=\"count\">no entries</p>\n");
    } else {
        let _ = writeln!(out, "<p class=\"count\">entries {}\u{2013}{} of {}</p>", page.first, page.last, page.total);
    }
    if page.truncated {
        let _ = writeln!(
            out,
            "<p class=\"more\">This folder has more entries than are listed: only the first {} names \
             the file system returned were read.</p>",
            page.max_names
        );
    }
    nav(&mut out, page);
    out.push_str(
        "<table>\n<thead><tr><th>Name</th><th>Type</th><th>Size</th><th>Last modified (UTC)</th></tr></thead>\n\
         <tbody>\n",
    );
    if !rel.is_empty() {
        out.push_str("<tr><td><a href=\"../\">../</a></td><td class=\"type\">parent folder</td><td class=\"size\">-</td><td></td></tr>\n");
    }
    for entry in entries {
        let slash = if entry.is_dir { "/" } else { "" };
        out.push_str("<tr><td><a href=\"");
        let _ = write!(out, "{}{slash}", percent_encode(&entry.name, LINK));
        out.push_str("\">");
        escape_html(&mut out, &String::from_utf8_lossy(&entry.name));
        out.push_str(slash);
        let (icon, word) = EntryKind::of(&entry.name, entry.is_dir).label();
        let _ = write!(out, "</a></td><td class=\"type\"><span aria-hidden=\"true\">{icon}</span>{word}</td>");
        out.push_str("<td class=\"size\"");
        if entry.is_dir {
            out.push_str(">-");
        } else {
            let _ = write!(out, " title=\"{} bytes\">", entry.size);
            human_size(&mut out, entry.size);
        }
        out.push_str("</td><td>");
        utc_time(&mut out, entry.mtime);
        out.push_str("</td></tr>\n");
    }
    out.push_str("</tbody>\n</table>\n");
    nav(&mut out, page);
    out.push_str("</body>\n</html>\n");
    out
}

/// Previous/next links, when there is more than one page.
fn nav(out: &mut String, page: &Page) {
    if page.pages < 2 {
        return;
    }
    out.push_str("<nav>");
    if page.number > 1 {
        let _ = write!(out, "<a href=\"?page={}\" rel=\"prev\">\u{2190} previous</a>", page.number - 1);
    }
    let _ = write!(out, "page {} of {}", page.number, page.pages);
    if page.number < page.pages {
        let _ = write!(out, "<a href=\"?page={}\" rel=\"next\">next \u{2192}</a>", page.number + 1);
    }
    out.push_str("</nav>\n");
}

/// Append `text` with `& < > " '` replaced by character references.
pub(crate) fn escape_html(out: &mut String, text: &str) {
    let mut rest = text;
    while let Some(i) = rest.find(['&', '<', '>', '"', '\'']) {
        let (plain, tail) = rest.split_at(i);
        out.push_str(plain);
        let mut chars = tail.chars();
        out.push_str(match chars.next() {
            Some('&') => "&amp;",
            Some('<') => "&lt;",
            Some('>') => "&gt;",
            Some('"') => "&quot;",
            _ => "&#39;",
        });
        rest = chars.as_str();
    }
    out.push_str(rest);
}

/// Sizes as people read them: `512 B`, `1.5 KiB`, `4.7 GiB`.
fn human_size(out: &mut String, bytes: u64) {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        let _ = write!(out, "{bytes} B");
        return;
    }
    #[allow(clippy::cast_precision_loss)]
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    let _ = write!(out, "{value:.1} {}", UNITS.get(unit).unwrap_or(&"B"));
}

/// `YYYY-MM-DD HH:MM` in UTC for seconds since the epoch.
fn utc_minutes(out: &mut String, secs: i64) {
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let of_day = secs.rem_euclid(86_400);
    let _ = write!(out, "{year:04}-{month:02}-{day:02} {:02}:{:02}", of_day / 3600, of_day % 3600 / 60);
}

/// A `<time>` element: [`utc_minutes`] as its text, ISO 8601 with `Z` as its `datetime`, so
/// the zone is stated for people and machines alike.
fn utc_time(out: &mut String, secs: i64) {
    let mut text = String::with_capacity(16);
    utc_minutes(&mut text, secs);
    let _ = write!(out, "<time datetime=\"{}Z\">{text}</time>", text.replacen(' ', "T", 1));
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn entry(name: &[u8], is_dir: bool) -> Entry {
        Entry { name: name.into(), is_dir, size: 1536, mtime: 784_111_777 }
    }

    fn candidate(name: &[u8], is_dir: bool) -> Candidate {
        Candidate { name: name.into(), is_dir, linked: false }
    }

    fn single(total: usize) -> Page {
        Page { number: 1, pages: 1, first: 1, last: total, total, truncated: false, max_names: MAX_NAMES }
    }

    #[test]
    fn escaping() {
        let mut out = String::new();
        escape_html(&mut out, "<b>&\"x'</b> été");
        assert_eq!(out, "&lt;b&gt;&amp;&quot;x&#39;&lt;/b&gt; été");
        let mut plain = String::new();
        escape_html(&mut plain, "plain");
        assert_eq!(plain, "plain");
    }

    #[test]
    fn link_encoding() {
        let enc = |s: &[u8]| percent_encode(s, LINK).to_string();
        assert_eq!(enc(b"a b"), "a%20b");
        assert_eq!(enc(b"#?%\""), "%23%3F%25%22");
        assert_eq!(enc("é".as_bytes()), "%C3%A9");
        assert_eq!(enc(b"a:b"), "a%3Ab");
        assert_eq!(enc(b"x-y_z.~"), "x-y_z.~");
        assert_eq!(enc(b"\xff"), "%FF");
    }

    #[test]
    fn dates_and_sizes() {
        let mut out = String::new();
        utc_minutes(&mut out, 0);
        out.push('|');
        utc_minutes(&mut out, 784_111_777);
        out.push('|');
        utc_minutes(&mut out, 951_782_400); // 2000-02-29
        out.push('|');
        utc_minutes(&mut out, -1);
        assert_eq!(out, "1970-01-01 00:00|1994-11-06 08:49|2000-02-29 00:00|1969-12-31 23:59");
        let mut sizes = String::new();
        for n in [0, 1023, 1024, 1536, 5 * 1024 * 1024, u64::MAX] {
            human_size(&mut sizes, n);
            sizes.push('|');
        }
        assert_eq!(sizes, "0 B|1023 B|1.0 KiB|1.5 KiB|5.0 MiB|16384.0 PiB|");
    }

    #[test]
    fn sorted_directories_first() {
        let mut names =
            vec![candidate(b"b.txt", false), candidate(b"z", true), candidate(b"a.txt", false), candidate(b"A", true)];
        sort(&mut names);
        let names: Vec<&[u8]> = names.iter().map(|c| &*c.name).collect();
        assert_eq!(names, [&b"A"[..], b"z", b"a.txt", b"b.txt"]);
    }

    #[test]
    fn natural_order() {
        let mut names: Vec<Candidate> = [
            &b"file-10.txt"[..],
            b"file-2.txt",
            b"file-1.txt",
            b"file-02.txt",
            b"Episode 10",
            b"Episode 9",
            b"file-1\xff.txt",
            b"file-1\xfe.txt",
            b"file-100.txt",
        ]
        .iter()
        .map(|n| candidate(n, false))
        .chain([candidate(b"season 10", true), candidate(b"season 2", true)])
        .collect();
        sort(&mut names);
        let names: Vec<String> = names.iter().map(|c| String::from_utf8_lossy(&c.name).into_owned()).collect();
        assert_eq!(
            names,
            [
                "season 2",
                "season 10",
                "Episode 9",
                "Episode 10",
                // Not UTF-8: by their lossy text (the crate puts characters past U+00FF
                // after a number first), then by their bytes.
                "file-1\u{FFFD}.txt",
                "file-1\u{FFFD}.txt",
                "file-1.txt",
                "file-2.txt",
                "file-02.txt",
                "file-10.txt",
                "file-100.txt",
            ]
        );
        assert_eq!(natural(b"file-1\xfe.txt", b"file-1\xff.txt"), Ordering::Less);
        assert_eq!(natural(b"x", b"x"), Ordering::Equal);
    }

    #[test]
    fn entry_kinds() {
        for (name, is_dir, want) in [
            (&b"Films"[..], true, EntryKind::Folder),
            (b"movie.mkv", true, EntryKind::Folder),
            (b"clip.mp4", false, EntryKind::Video),
            (b"CLIP.WEBM", false, EntryKind::Video),
            (b"song.mp3", false, EntryKind::Audio),
            (b"song.flac", false, EntryKind::Audio),
            (b"poster.png", false, EntryKind::Image),
            (b"logo.svg", false, EntryKind::Image),
            (b"clip.vtt", false, EntryKind::Subtitles),
            (b"clip.en.srt", false, EntryKind::Subtitles),
            (b"clip.ASS", false, EntryKind::Subtitles),
            (b"notes.txt", false, EntryKind::Text),
            (b"index.html", false, EntryKind::Text),
            (b"data.json", false, EntryKind::Text),
            (b"archive.zip", false, EntryKind::File),
            (b"noextension", false, EntryKind::File),
            (b"odd.\xff", false, EntryKind::File),
        ] {
            assert_eq!(EntryKind::of(name, is_dir), want, "{}", String::from_utf8_lossy(name));
        }
        assert_eq!(EntryKind::Video.label().1, "video");
    }

    #[test]
    fn breadcrumbs() {
        let crumbs = |rel: &[u8]| -> Vec<(String, String)> {
            breadcrumb(rel).into_iter().map(|(href, name)| (href, name.into_owned())).collect()
        };
        let pair = |h: &str, n: &str| (h.to_owned(), n.to_owned());
        assert_eq!(crumbs(b""), [pair("./", "/")]);
        assert_eq!(crumbs(b"films"), [pair("../", "/"), pair("./", "films")]);
        assert_eq!(
            crumbs(b"films/Classics/1902"),
            [pair("../../../", "/"), pair("../../", "films"), pair("../", "Classics"), pair("./", "1902")]
        );
        assert_eq!(crumbs("música/\u{e9}".as_bytes())[2], pair("./", "\u{e9}"));
        assert_eq!(crumbs(b"a\xffb")[1], pair("./", "a\u{FFFD}b"));
    }

    #[test]
    fn html_shape() {
        let html = to_html(b"", &single(2), &[entry(b"<b>&\"", false), entry(b"sub dir", true)]);
        assert!(!html.contains("href=\"../\""));
        assert!(html.contains("<title>Index of /</title>"));
        assert!(html.contains(
            "<a href=\"%3Cb%3E%26%22\">&lt;b&gt;&amp;&quot;</a></td><td class=\"type\"><span aria-hidden=\"true\">\u{1F4E6}</span>file</td>\
             <td class=\"size\" title=\"1536 bytes\">1.5 KiB</td><td><time datetime=\"1994-11-06T08:49Z\">1994-11-06 08:49</time></td>"
        ), "{html}");
        assert!(html.contains("<a href=\"sub%20dir/\">sub dir/</a></td><td class=\"type\"><span aria-hidden=\"true\">\u{1F4C1}</span>folder</td><td class=\"size\">-</td>"));
        assert!(html.contains("<th>Last modified (UTC)</th>"));
        assert!(html.contains("<h1>Index of <span class=\"crumbs\"><a href=\"./\">/</a></span></h1>"), "{html}");
        assert!(html.contains("<p class=\"count\">entries 1\u{2013}2 of 2</p>"));
        assert!(!html.contains("<nav>") && !html.contains("more entries than are listed"));
        let nested = to_html(b"a/<x>", &single(0), &[]);
        assert!(nested.contains("<a href=\"../\">../</a>"));
        assert!(nested.contains("<title>Index of /a/&lt;x&gt;/</title>"));
        assert!(
            nested.contains(
                "<h1>Index of <span class=\"crumbs\"><a href=\"../../\">/</a><a href=\"../\">a</a>/<a href=\"./\">&lt;x&gt;</a>/</span></h1>"
            ),
            "{nested}"
        );
        assert!(nested.contains("<p class=\"count\">no entries</p>"));
    }

    #[test]
    fn page_links() {
        let page = |number, pages| Page { number, pages, first: 1, last: 1, total: 1, truncated: false, max_names: 9 };
        let first = to_html(b"", &page(1, 3), &[]);
        assert!(first.contains("<nav>page 1 of 3<a href=\"?page=2\" rel=\"next\">"), "{first}");
        assert!(!first.contains("rel=\"prev\""));
        let middle = to_html(b"", &page(2, 3), &[]);
        assert!(middle.contains("<a href=\"?page=1\" rel=\"prev\">\u{2190} previous</a>page 2 of 3<a href=\"?page=3\""));
        let last = to_html(b"", &page(3, 3), &[]);
        assert!(last.contains("rel=\"prev\"") && !last.contains("rel=\"next\""));
        let capped = to_html(b"", &Page { truncated: true, ..page(1, 1) }, &[]);
        assert!(capped.contains("This folder has more entries than are listed: only the first 9 names"));
    }

    #[test]
    fn page_parameter() {
        assert_eq!(page_param(None), Ok(1));
        assert_eq!(page_param(Some("")), Ok(1));
        assert_eq!(page_param(Some("sort=name")), Ok(1));
        assert_eq!(page_param(Some("page=3")), Ok(3));
        assert_eq!(page_param(Some("x=1&page=007&page=9")), Ok(7));
        assert_eq!(page_param(Some("page=0")), Ok(0));
        assert_eq!(page_param(Some("page=99999999999999999999999999")), Ok(usize::MAX));
        for bad in ["page=", "page=abc", "page=-1", "page=+1", "page=1.5", "page=%31", "page= 1"] {
            assert_eq!(page_param(Some(bad)), Err(BadPage), "{bad}");
        }
    }
}
