//! Which tokens admit which origin names. Without a config file one token admits every name;
//! a config file gives each origin (or group of origins) its own token, so a leaked token
//! admits only the names it was given to.

use crate::origins::Tunnel;
use common::protocol;
use common::Secret;

/// The names one token admits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Names {
    Any,
    Only(Vec<String>),
}

impl Names {
    fn admits(&self, name: &str) -> bool {
        match self {
            Names::Any => true,
            Names::Only(names) => names.iter().any(|n| n == name),
        }
    }
}

/// Every token the proxy accepts and what each admits.
#[derive(Debug, Clone)]
pub struct Credentials {
    entries: Vec<(Secret, Names)>,
}

impl Credentials {
    /// One token for every name (zero-config).
    pub fn single(token: Secret) -> Self {
        Credentials { entries: vec![(token, Names::Any)] }
    }

    /// Tokens and the names each admits; a token listed twice admits the union.
    pub fn new(entries: Vec<(Secret, Names)>) -> Self {
        Credentials { entries }
    }

    /// Whether a live tunnel is still admitted (after a reload).
    pub fn still_admits(&self, tunnel: &Tunnel) -> bool {
        protocol::Credentials::admits(self, tunnel.token().expose().as_bytes(), &tunnel.origin) == Some(true)
    }
}

impl protocol::Credentials for Credentials {
    fn admits(&self, token: &[u8], name: &str) -> Option<bool> {
        // Every entry is compared, in constant time each: the time taken says nothing about
        // which token matched or how far.
        let mut known = false;
        let mut admitted = false;
        for (secret, names) in &self.entries {
            if secret.matches(token) {
                known = true;
                admitted |= names.admits(name);
            }
        }
        known.then_some(admitted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::protocol::Credentials as _;

    #[test]
    fn tokens_admit_their_names_only() {
        let creds = Credentials::new(vec![
            (Secret::new("a"), Names::Only(vec!["media".into()])),
            (Secret::new("a"), Names::Only(vec!["photos".into()])),
            (Secret::new("b"), Names::Any),
        ]);
        assert_eq!(creds.admits(b"a", "media"), Some(true));
        assert_eq!(creds.admits(b"a", "photos"), Some(true));
        assert_eq!(creds.admits(b"a", "other"), Some(false));
        assert_eq!(creds.admits(b"b", "other"), Some(true));
        assert_eq!(creds.admits(b"c", "media"), None);
        assert_eq!(Credentials::single(Secret::new("t")).admits(b"t", "x"), Some(true));
    }
}
