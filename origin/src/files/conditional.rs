//! Validators (a strong ETag and Last-Modified) and conditional request headers, evaluated in RFC 9110 §13.2.2 order.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue};

use super::path::FileMeta;

/// The last second an HTTP-date can carry (9999-12-31T23:59:59Z); httpdate panics past it.
const MAX_HTTP_SECS: u64 = 253_402_300_799;

/// A strong entity tag from inode, size and modification time to the nanosecond.
pub(crate) fn etag(meta: &FileMeta) -> String {
    let mut tag = String::with_capacity(48);
    // Writing to a String cannot fail.
    let _ = write!(tag, "\"{:x}-{:x}-{:x}.{:x}\"", meta.ino, meta.size, meta.mtime, meta.mtime_nsec);
    tag
}

/// The modification time in whole seconds, clamped to what an HTTP-date can express.
pub(crate) fn mtime_secs(meta: &FileMeta) -> u64 {
    u64::try_from(meta.mtime).unwrap_or(0).min(MAX_HTTP_SECS)
}

/// Format whole seconds since the epoch (already clamped by [`mtime_secs`]) as an HTTP-date.
pub(crate) fn http_date(secs: u64) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs.min(MAX_HTTP_SECS)))
}

/// The conditional headers of one request, parsed before the file is opened.
#[derive(Debug, Default)]
pub(crate) struct Conditions {
    if_match: Option<HeaderValue>,
    if_unmodified_since: Option<u64>,
    if_none_match: Option<HeaderValue>,
    if_modified_since: Option<u64>,
    if_range: Option<IfRange>,
}

#[derive(Debug)]
enum IfRange {
    Tag(HeaderValue),
    Date(u64),
    /// Neither an entity tag nor a date: the Range header must then be ignored.
    Invalid,
}

/// The result of evaluating the preconditions against the current file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Serve the file; `use_range` is false when If-Range did not match.
    Proceed { use_range: bool },
    /// 304.
    NotModified,
    /// 412.
    PreconditionFailed,
}

impl Conditions {
    pub(crate) fn from_headers(headers: &HeaderMap) -> Conditions {
        if headers.is_empty() {
            return Conditions::default();
        }
        // A date in the future is not a valid If-Modified-Since (RFC 9110 §13.1.3).
        let if_modified_since = http_date_secs(headers, header::IF_MODIFIED_SINCE).filter(|&secs| secs <= now_secs());
        let if_range = headers.get(header::IF_RANGE).map(|value| {
            let bytes = trim(value.as_bytes());
            if bytes.starts_with(b"\"") || bytes.starts_with(b"W/") {
                IfRange::Tag(value.clone())
            } else {
                parse_date(value).map_or(IfRange::Invalid, IfRange::Date)
            }
        });
        Conditions {
            if_match: joined(headers, header::IF_MATCH),
            if_unmodified_since: http_date_secs(headers, header::IF_UNMODIFIED_SINCE),
            if_none_match: joined(headers, header::IF_NONE_MATCH),
            if_modified_since,
            if_range,
        }
    }

    /// Evaluate against the file's `etag` and modification time `mtime` (whole seconds).
    /// Only GET and HEAD reach here, so a matching If-None-Match always means 304.
    pub(crate) fn evaluate(&self, etag: &str, mtime: u64) -> Verdict {
        if let Some(list) = &self.if_match {
            if !list_matches(list.as_bytes(), etag, false) {
                return Verdict::PreconditionFailed;
            }
        } else if let Some(date) = self.if_unmodified_since {
            if mtime > date {
                return Verdict::PreconditionFailed;
            }
        }
        if let Some(list) = &self.if_none_match {
            if list_matches(list.as_bytes(), etag, true) {
                return Verdict::NotModified;
            }
        } else if let Some(date) = self.if_modified_since {
            if mtime <= date {
                return Verdict::NotModified;
            }
        }
        let use_range = match &self.if_range {
            None => true,
            // Strong comparison: a weak tag can never equal our strong one.
            Some(IfRange::Tag(tag)) => trim(tag.as_bytes()) == etag.as_bytes(),
            Some(IfRange::Date(date)) => *date == mtime,
            Some(IfRange::Invalid) => false,
        };
        Verdict::Proceed { use_range }
    }
}

/// Does the If-Match / If-None-Match `list` match our strong `etag`?
/// `*` matches any existing file. With `weak` set, `W/"x"` matches `"x"` (weak comparison);
/// otherwise a weak tag never matches (strong comparison). A malformed member ends the scan.
fn list_matches(list: &[u8], etag: &str, weak: bool) -> bool {
    let mut rest = trim(list);
    if rest == b"*" {
        return true;
    }
    let ours = etag.as_bytes();
    loop {
        let start = rest.iter().position(|&b| !matches!(b, b' ' | b'\t' | b',')).unwrap_or(rest.len());
        rest = rest.get(start..).unwrap_or_default();
        if rest.is_empty() {
            return false;
        }
        let is_weak = rest.starts_with(b"W/");
        if is_weak {
            rest = rest.get(2..).unwrap_or_default();
        }
        if !rest.starts_with(b"\"") {
            return false;
        }
        let Some(close) = rest.iter().skip(1).position(|&b| b == b'"') else {
            return false;
        };
        // `close` counts from after the opening quote; the tag spans both quotes.
        let (tag, after) = rest.split_at(close + 2);
        if (weak || !is_weak) && tag == ours {
            return true;
        }
        rest = after;
    }
}

/// The field's value; several field lines are combined with ", " as HTTP allows for lists.
fn joined(headers: &HeaderMap, name: HeaderName) -> Option<HeaderValue> {
    let mut values = headers.get_all(&name).iter();
    let first = values.next()?;
    let Some(second) = values.next() else {
        return Some(first.clone());
    };
    let mut all = first.as_bytes().to_vec();
    for value in std::iter::once(second).chain(values) {
        all.extend_from_slice(b", ");
        all.extend_from_slice(value.as_bytes());
    }
    HeaderValue::from_bytes(&all).ok()
}

fn http_date_secs(headers: &HeaderMap, name: HeaderName) -> Option<u64> {
    parse_date(headers.get(name)?)
}

/// An HTTP-date as seconds since the epoch; `None` if it isn't one (the header is then ignored).
fn parse_date(value: &HeaderValue) -> Option<u64> {
    let text = std::str::from_utf8(trim(value.as_bytes())).ok()?;
    let time = httpdate::parse_http_date(text).ok()?;
    Some(time.duration_since(UNIX_EPOCH).ok()?.as_secs())
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn trim(s: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = s.iter().position(|b| !is_ows(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|b| !is_ows(b)).map_or(start, |i| i + 1);
    s.get(start..end).unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::path::Kind;
    use super::*;

    const TAG: &str = "\"1-2-3.4\"";
    /// Sun, 06 Nov 1994 08:49:37 GMT
    const T: u64 = 784_111_777;

    fn conditions(pairs: &[(&'static str, &str)]) -> Conditions {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_str(value).unwrap());
        }
        Conditions::from_headers(&headers)
    }

    fn verdict(pairs: &[(&'static str, &str)], mtime: u64) -> Verdict {
        conditions(pairs).evaluate(TAG, mtime)
    }

    const GO: Verdict = Verdict::Proceed { use_range: true };
    const NO_RANGE: Verdict = Verdict::Proceed { use_range: false };
    const DATE: &str = "Sun, 06 Nov 1994 08:49:37 GMT";

    #[test]
    fn etag_and_date_formatting() {
        let meta = FileMeta { kind: Kind::File, size: 255, mtime: 16, mtime_nsec: 1, ino: 10, dev: 1 };
        assert_eq!(etag(&meta), "\"a-ff-10.1\"");
        let other = FileMeta { mtime_nsec: 2, ..meta };
        assert_ne!(etag(&meta), etag(&other));
        assert_eq!(http_date(T), DATE);
        let old = FileMeta { mtime: -5, ..meta };
        assert_eq!(mtime_secs(&old), 0);
        let far = FileMeta { mtime: i64::MAX, ..meta };
        assert_eq!(http_date(mtime_secs(&far)), "Fri, 31 Dec 9999 23:59:59 GMT");
    }

    #[test]
    fn tag_lists() {
        assert!(list_matches(TAG.as_bytes(), TAG, false));
        assert!(list_matches(b"*", TAG, false));
        assert!(list_matches(b" * ", TAG, true));
        assert!(list_matches(b"\"x\", \"1-2-3.4\"", TAG, false));
        assert!(list_matches(b"\"x\",W/\"1-2-3.4\"", TAG, true));
        assert!(!list_matches(b"W/\"1-2-3.4\"", TAG, false));
        assert!(!list_matches(b"\"1-2-3.5\"", TAG, true));
        assert!(!list_matches(b"1-2-3.4", TAG, true));
        assert!(!list_matches(b"\"1-2-3.4", TAG, true));
        assert!(!list_matches(b"", TAG, true));
        assert!(!list_matches(b"\"\"", TAG, true));
    }

    #[test]
    fn if_match_and_if_unmodified_since() {
        assert_eq!(verdict(&[("if-match", TAG)], T), GO);
        assert_eq!(verdict(&[("if-match", "*")], T), GO);
        assert_eq!(verdict(&[("if-match", "\"other\"")], T), Verdict::PreconditionFailed);
        assert_eq!(verdict(&[("if-match", "W/\"1-2-3.4\"")], T), Verdict::PreconditionFailed);
        // Several field lines are one list.
        assert_eq!(verdict(&[("if-match", "\"a\""), ("if-match", TAG)], T), GO);
        assert_eq!(verdict(&[("if-unmodified-since", DATE)], T), GO);
        assert_eq!(verdict(&[("if-unmodified-since", DATE)], T + 1), Verdict::PreconditionFailed);
        // If-Match takes precedence over If-Unmodified-Since.
        assert_eq!(verdict(&[("if-match", TAG), ("if-unmodified-since", DATE)], T + 1), GO);
        // An invalid date is ignored.
        assert_eq!(verdict(&[("if-unmodified-since", "yesterday")], T), GO);
    }

    #[test]
    fn if_none_match_and_if_modified_since() {
        assert_eq!(verdict(&[("if-none-match", TAG)], T), Verdict::NotModified);
        assert_eq!(verdict(&[("if-none-match", "W/\"1-2-3.4\"")], T), Verdict::NotModified);
        assert_eq!(verdict(&[("if-none-match", "*")], T), Verdict::NotModified);
        assert_eq!(verdict(&[("if-none-match", "\"old\"")], T), GO);
        assert_eq!(verdict(&[("if-modified-since", DATE)], T), Verdict::NotModified);
        assert_eq!(verdict(&[("if-modified-since", DATE)], T - 1), Verdict::NotModified);
        assert_eq!(verdict(&[("if-modified-since", DATE)], T + 1), GO);
        // If-None-Match present: If-Modified-Since is not looked at.
        assert_eq!(verdict(&[("if-none-match", "\"old\""), ("if-modified-since", DATE)], T), GO);
        // A date in the future is invalid, hence ignored.
        assert_eq!(verdict(&[("if-modified-since", "Fri, 31 Dec 9999 23:59:59 GMT")], T), GO);
        // A failed If-Match wins over a matching If-None-Match.
        assert_eq!(verdict(&[("if-match", "\"x\""), ("if-none-match", TAG)], T), Verdict::PreconditionFailed);
    }

    #[test]
    fn if_range() {
        assert_eq!(verdict(&[("if-range", TAG)], T), GO);
        assert_eq!(verdict(&[("if-range", "\"other\"")], T), NO_RANGE);
        assert_eq!(verdict(&[("if-range", "W/\"1-2-3.4\"")], T), NO_RANGE);
        assert_eq!(verdict(&[("if-range", DATE)], T), GO);
        assert_eq!(verdict(&[("if-range", DATE)], T + 1), NO_RANGE);
        assert_eq!(verdict(&[("if-range", "garbage")], T), NO_RANGE);
        assert_eq!(verdict(&[], T), GO);
    }
}
