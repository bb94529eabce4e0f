//! HTML directory listings: entries read on the blocking pool, sorted, with percent-encoded links and escaped names.

use std::fmt::Write as _;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use percent_encoding::{percent_encode, AsciiSet, NON_ALPHANUMERIC};
use rustix::fs::{AtFlags, Dir};

use super::path::{name_path, FileMeta, Kind, Root};

/// Everything but RFC 3986 unreserved characters is encoded in links. That covers `/`, `?`,
/// `#`, `%`, quotes and `:` (so a name like `a:b` is never read as a URL scheme).
const LINK: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    name: Vec<u8>,
    is_dir: bool,
    size: u64,
    mtime: i64,
}

/// Render the listing of the open directory `dir`, which is `rel` below `root`.
/// Blocking: call it from the blocking pool.
pub(crate) fn render(root: &Root, dir: OwnedFd, rel: &Path) -> io::Result<String> {
    let entries = read_entries(root, dir, rel)?;
    Ok(to_html(rel.as_os_str().as_bytes(), &entries))
}

/// Read, stat and sort the entries. Symlinks are shown as what they point to, but only when
/// that resolves beneath the root; links leading out (or nowhere) are left out, as are
/// sockets, FIFOs and devices, which are never served.
fn read_entries(root: &Root, dir: OwnedFd, rel: &Path) -> io::Result<Vec<Entry>> {
    let mut dir = Dir::new(dir)?;
    let mut entries = Vec::new();
    while let Some(entry) = dir.read() {
        let entry = entry?;
        let name = entry.file_name();
        let bytes = name.to_bytes();
        if bytes == b"." || bytes == b".." {
            continue;
        }
        // The entry may vanish between readdir and stat; then it simply isn't listed.
        let Ok(stat) = rustix::fs::statat(dir.fd()?, name, AtFlags::SYMLINK_NOFOLLOW) else {
            continue;
        };
        let mut meta = FileMeta::from_stat(&stat);
        if meta.kind == Kind::Symlink {
            let target = root.open_beneath(&rel.join(name_path(bytes))).and_then(FileMeta::of);
            match target {
                Ok(resolved) => meta = resolved,
                Err(_) => continue,
            }
        }
        if root.hides(&meta) {
            continue;
        }
        let is_dir = match meta.kind {
            Kind::Dir => true,
            Kind::File => false,
            Kind::Symlink | Kind::Other => continue,
        };
        entries.push(Entry { name: bytes.to_vec(), is_dir, size: meta.size, mtime: meta.mtime });
    }
    sort(&mut entries);
    Ok(entries)
}

/// Directories first, then files; each group by name (byte order).
fn sort(entries: &mut [Entry]) {
    entries.sort_unstable_by(|a, b| b.is_dir.cmp(&a.is_dir).then_with(|| a.name.cmp(&b.name)));
}

fn to_html(rel: &[u8], entries: &[Entry]) -> String {
    let mut title = String::with_capacity(rel.len() + 2);
    title.push('/');
    if !rel.is_empty() {
        title.push_str(&String::from_utf8_lossy(rel));
        title.push('/');
    }
    let mut out = String::with_capacity(1024 + entries.len() * 192);
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
         </style>\n</head>\n<body>\n<h1>Index of ",
    );
    escape_html(&mut out, &title);
    out.push_str("</h1>\n<table>\n<thead><tr><th>Name</th><th>Size</th><th>Last modified</th></tr></thead>\n<tbody>\n");
    if !rel.is_empty() {
        out.push_str("<tr><td><a href=\"../\">../</a></td><td class=\"size\">-</td><td></td></tr>\n");
    }
    for entry in entries {
        let slash = if entry.is_dir { "/" } else { "" };
        out.push_str("<tr><td><a href=\"");
        let _ = write!(out, "{}{slash}", percent_encode(&entry.name, LINK));
        out.push_str("\">");
        escape_html(&mut out, &String::from_utf8_lossy(&entry.name));
        out.push_str(slash);
        out.push_str("</a></td><td class=\"size\"");
        if entry.is_dir {
            out.push_str(">-");
        } else {
            let _ = write!(out, " title=\"{} bytes\">", entry.size);
            human_size(&mut out, entry.size);
        }
        out.push_str("</td><td>");
        utc_minutes(&mut out, entry.mtime);
        out.push_str("</td></tr>\n");
    }
    out.push_str("</tbody>\n</table>\n</body>\n</html>\n");
    out
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
        Entry { name: name.to_vec(), is_dir, size: 1536, mtime: 784_111_777 }
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
        let mut entries = vec![entry(b"b.txt", false), entry(b"z", true), entry(b"a.txt", false), entry(b"A", true)];
        sort(&mut entries);
        let names: Vec<&[u8]> = entries.iter().map(|e| e.name.as_slice()).collect();
        assert_eq!(names, [&b"A"[..], b"z", b"a.txt", b"b.txt"]);
    }

    #[test]
    fn html_shape() {
        let html = to_html(b"", &[entry(b"<b>&\"", false), entry(b"sub dir", true)]);
        assert!(!html.contains("href=\"../\""));
        assert!(html.contains("<title>Index of /</title>"));
        assert!(html.contains(
            "<a href=\"%3Cb%3E%26%22\">&lt;b&gt;&amp;&quot;</a></td><td class=\"size\" title=\"1536 bytes\">1.5 KiB</td><td>1994-11-06 08:49</td>"
        ));
        assert!(html.contains("<a href=\"sub%20dir/\">sub dir/</a></td><td class=\"size\">-</td>"));
        let nested = to_html(b"a/<x>", &[]);
        assert!(nested.contains("<a href=\"../\">../</a>"));
        assert!(nested.contains("<h1>Index of /a/&lt;x&gt;/</h1>"));
    }
}
