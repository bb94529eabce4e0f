//! Secrets that must never reach a log, and their constant-time comparison.

use std::fmt;
use subtle::ConstantTimeEq;

/// A token or other secret. `Debug` and `Display` print `***`, so a secret can be a field of any
/// struct that gets logged without leaking.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for putting on the wire. Never pass the result to a log macro.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Compares in time that depends only on the lengths, never on where the bytes differ.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        self.0.as_bytes().ct_eq(candidate).into()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hides_value_in_formatting() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
    }

    #[test]
    fn compares_exactly() {
        let s = Secret::new("abc123");
        assert!(s.matches(b"abc123"));
        assert!(!s.matches(b"abc124"));
        assert!(!s.matches(b"abc12"));
        assert!(!s.matches(b""));
    }
}
