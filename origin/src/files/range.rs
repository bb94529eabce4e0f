//! The `Range` request header: parsing byte ranges and resolving them against a file size (RFC 9110 §14).

/// A syntactically valid `bytes=` range header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RangeHeader {
    /// Exactly one range: answered with 206.
    Single(Spec),
    /// Several ranges. We answer with the whole file (allowed by RFC 9110 §14.2), or 416
    /// when none of them is satisfiable; this keeps what decides that.
    Multiple {
        /// The smallest `first-pos` among the `a-b` / `a-` ranges.
        min_first: Option<u64>,
        /// The largest suffix length among the `-n` ranges (0 if none).
        max_suffix: u64,
    },
}

/// One range of a range set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Spec {
    /// `first-last` or `first-` (inclusive bounds).
    From { first: u64, last: Option<u64> },
    /// `-n`: the last n bytes.
    Suffix(u64),
}

/// What to send for a file of a known size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resolved {
    /// 200 with the whole file.
    Full,
    /// 206 with bytes `start..=end`.
    Partial { start: u64, end: u64 },
    /// 416.
    Unsatisfiable,
}

/// Parse a `Range` header value. `None` means "ignore it": another unit, or invalid syntax.
pub(crate) fn parse(value: &[u8]) -> Option<RangeHeader> {
    let value = trim(value);
    let (unit, set) = value.split_at(value.iter().position(|&b| b == b'=')?);
    if !unit.eq_ignore_ascii_case(b"bytes") {
        return None;
    }
    let set = set.get(1..)?;
    let mut single = None;
    let mut count = 0usize;
    let mut min_first: Option<u64> = None;
    let mut max_suffix = 0u64;
    // A list may contain empty elements (RFC 9110 §5.6.1); they are skipped.
    for element in set.split(|&b| b == b',').map(trim).filter(|e| !e.is_empty()) {
        let spec = parse_spec(element)?;
        match spec {
            Spec::From { first, .. } => {
                min_first = Some(min_first.map_or(first, |m| m.min(first)));
            }
            Spec::Suffix(n) => max_suffix = max_suffix.max(n),
        }
        single = Some(spec);
        count += 1;
    }
    match (count, single) {
        (1, Some(spec)) => Some(RangeHeader::Single(spec)),
        (0, _) | (_, None) => None,
        _ => Some(RangeHeader::Multiple { min_first, max_suffix }),
    }
}

fn parse_spec(element: &[u8]) -> Option<Spec> {
    let dash = element.iter().position(|&b| b == b'-')?;
    let (first, last) = (element.get(..dash)?, element.get(dash + 1..)?);
    if first.is_empty() {
        return Some(Spec::Suffix(digits(last)?));
    }
    let first = digits(first)?;
    if last.is_empty() {
        return Some(Spec::From { first, last: None });
    }
    let last = digits(last)?;
    // `last < first` makes the whole header invalid (RFC 9110 §14.1.1).
    (last >= first).then_some(Spec::From { first, last: Some(last) })
}

/// A non-empty run of ASCII digits; values past u64 saturate (they only ever mean "to the end").
fn digits(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &b| {
        b.is_ascii_digit().then(|| acc.saturating_mul(10).saturating_add(u64::from(b - b'0')))
    })
}

fn trim(s: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = s.iter().position(|b| !is_ows(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|b| !is_ows(b)).map_or(start, |i| i + 1);
    s.get(start..end).unwrap_or_default()
}

impl RangeHeader {
    /// Decide the response for a file of `size` bytes.
    pub(crate) fn resolve(self, size: u64) -> Resolved {
        match self {
            RangeHeader::Single(Spec::From { first, last }) => {
                if first >= size {
                    return Resolved::Unsatisfiable;
                }
                let end = last.map_or(size - 1, |l| l.min(size - 1));
                Resolved::Partial { start: first, end }
            }
            RangeHeader::Single(Spec::Suffix(n)) => {
                if n == 0 || size == 0 {
                    return Resolved::Unsatisfiable;
                }
                Resolved::Partial { start: size - n.min(size), end: size - 1 }
            }
            RangeHeader::Multiple { min_first, max_suffix } => {
                let satisfiable = min_first.is_some_and(|f| f < size) || (max_suffix > 0 && size > 0);
                if satisfiable {
                    Resolved::Full
                } else {
                    Resolved::Unsatisfiable
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn resolve(header: &str, size: u64) -> Option<Resolved> {
        parse(header.as_bytes()).map(|r| r.resolve(size))
    }

    fn part(start: u64, end: u64) -> Option<Resolved> {
        Some(Resolved::Partial { start, end })
    }

    #[test]
    fn single_ranges() {
        assert_eq!(resolve("bytes=0-0", 10), part(0, 0));
        assert_eq!(resolve("bytes=2-5", 10), part(2, 5));
        assert_eq!(resolve("bytes=2-", 10), part(2, 9));
        assert_eq!(resolve("bytes=2-100", 10), part(2, 9));
        assert_eq!(resolve("bytes=0-9", 10), part(0, 9));
        assert_eq!(resolve("bytes=9-9", 10), part(9, 9));
        assert_eq!(resolve("bytes=-3", 10), part(7, 9));
        assert_eq!(resolve("bytes=-10", 10), part(0, 9));
        assert_eq!(resolve("bytes=-1000", 10), part(0, 9));
        assert_eq!(resolve("Bytes = 1-2", 10), None);
        assert_eq!(resolve("BYTES=1-2", 10), part(1, 2));
        assert_eq!(resolve(" bytes= 1-2 ", 10), part(1, 2));
        assert_eq!(resolve("bytes=1-2,", 10), part(1, 2));
        assert_eq!(resolve("bytes=0-99999999999999999999999", 10), part(0, 9));
    }

    #[test]
    fn unsatisfiable() {
        assert_eq!(resolve("bytes=10-", 10), Some(Resolved::Unsatisfiable));
        assert_eq!(resolve("bytes=10-20", 10), Some(Resolved::Unsatisfiable));
        assert_eq!(resolve("bytes=-0", 10), Some(Resolved::Unsatisfiable));
        assert_eq!(resolve("bytes=0-", 0), Some(Resolved::Unsatisfiable));
        assert_eq!(resolve("bytes=-5", 0), Some(Resolved::Unsatisfiable));
        assert_eq!(resolve("bytes=99999999999999999999999-", 10), Some(Resolved::Unsatisfiable));
    }

    #[test]
    fn ignored() {
        for header in [
            "",
            "bytes",
            "bytes=",
            "bytes=,",
            "bytes=-",
            "bytes=5-2",
            "bytes=a-b",
            "bytes=1-2-3",
            "bytes=1 -2",
            "bytes=+1-2",
            "bytes=1-2,x",
            "items=0-1",
            "bytes 0-1",
            "bytes=0x1-2",
        ] {
            assert_eq!(parse(header.as_bytes()), None, "{header:?}");
        }
    }

    #[test]
    fn multiple_ranges() {
        assert_eq!(parse(b"bytes=0-1, 4-5"), Some(RangeHeader::Multiple { min_first: Some(0), max_suffix: 0 }));
        assert_eq!(resolve("bytes=0-1,4-5", 10), Some(Resolved::Full));
        assert_eq!(resolve("bytes=20-30,-2", 10), Some(Resolved::Full));
        assert_eq!(resolve("bytes=20-30,40-", 10), Some(Resolved::Unsatisfiable));
        assert_eq!(resolve("bytes=-0,-0", 10), Some(Resolved::Unsatisfiable));
        assert_eq!(resolve("bytes=0-1,2-3", 0), Some(Resolved::Unsatisfiable));
        assert_eq!(resolve("bytes=0-1,3-2", 10), None);
    }
}
