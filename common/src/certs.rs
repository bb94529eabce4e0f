//! Zero-configuration TLS material: on first start the proxy creates a local CA, a server
//! certificate signed by it, and a random origin token in its certificates directory.

use crate::secret::Secret;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub const CA_CERT_FILE: &str = "ca.pem";
pub const CA_KEY_FILE: &str = "ca-key.pem";
pub const SERVER_CERT_FILE: &str = "server.pem";
pub const SERVER_KEY_FILE: &str = "server-key.pem";
pub const TOKEN_FILE: &str = "token";

/// Names every generated server certificate covers, besides `--hostname`s.
pub const DEFAULT_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot create {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is empty: it should hold the origin token")]
    EmptyToken { path: PathBuf },
    #[error("CA key {path} is unusable: {source}")]
    CaKey { path: PathBuf, source: rcgen::Error },
    #[error("CA certificate {path} is unusable: {source}; move it and its key away to create a new CA (origins then need the new ca.pem)")]
    CaCert { path: PathBuf, source: rcgen::Error },
    #[error("cannot issue a certificate for {names:?}: {source}")]
    Issue { names: Vec<String>, source: rcgen::Error },
}

/// Paths of the proxy's server certificate, its key and the CA that signed it.
#[derive(Debug, Clone)]
pub struct ServerCert {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
    /// True when this call created the CA (a first start).
    pub created_ca: bool,
    /// The names and addresses the server certificate covers.
    pub names: Vec<String>,
}

/// Make sure `dir` holds a CA (created once, kept across restarts so origins keep trusting it)
/// and issue a fresh server certificate for the default names plus `hostnames`.
///
/// The server certificate is issued anew at every start: it is cheap, always matches the
/// current `--hostname` list and never expires under a long-running deployment.
pub fn ensure_server_cert(dir: &Path, hostnames: &[String]) -> Result<ServerCert, CertError> {
    create_private_dir(dir)?;
    let ca_cert_path = dir.join(CA_CERT_FILE);
    let ca_key_path = dir.join(CA_KEY_FILE);
    let (issuer, created_ca) = if ca_cert_path.exists() && ca_key_path.exists() {
        let pem = read_to_string(&ca_key_path)?;
        let key = KeyPair::from_pem(&pem).map_err(|source| CertError::CaKey { path: ca_key_path.clone(), source })?;
        // The issuer's name and key identifier come from the stored CA certificate, so a CA
        // made by an older version (one fixed subject for all) keeps issuing valid leaves.
        let ca_pem = read_to_string(&ca_cert_path)?;
        let issuer = Issuer::from_ca_cert_pem(&ca_pem, key)
            .map_err(|source| CertError::CaCert { path: ca_cert_path.clone(), source })?;
        (issuer, false)
    } else {
        let params = ca_params(&ca_suffix());
        let key = KeyPair::generate().map_err(|source| issue_err(&["revmux local CA"], source))?;
        let cert = params.self_signed(&key).map_err(|source| issue_err(&["revmux local CA"], source))?;
        write_private(&ca_key_path, key.serialize_pem().as_bytes())?;
        write_public(&ca_cert_path, cert.pem().as_bytes())?;
        (Issuer::new(params, key), true)
    };

    let mut names: Vec<String> = DEFAULT_NAMES.iter().map(|s| s.to_string()).collect();
    for name in hostnames {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    let mut params = CertificateParams::new(names.clone()).map_err(|source| issue_err(&names, source))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, names[0].clone());
    params.distinguished_name = dn;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, 5);
    let key = KeyPair::generate().map_err(|source| issue_err(&names, source))?;
    let cert = params.signed_by(&key, &issuer).map_err(|source| issue_err(&names, source))?;
    let cert_path = dir.join(SERVER_CERT_FILE);
    let key_path = dir.join(SERVER_KEY_FILE);
    write_private(&key_path, key.serialize_pem().as_bytes())?;
    write_public(&cert_path, cert.pem().as_bytes())?;
    Ok(ServerCert { cert: cert_path, key: key_path, ca: ca_cert_path, created_ca, names })
}

/// Read the token from `dir/token`, creating a random one (mode 0600) if there is none.
/// Returns the token and whether it was created now.
pub fn ensure_token(dir: &Path) -> Result<(Secret, PathBuf, bool), CertError> {
    create_private_dir(dir)?;
    let path = dir.join(TOKEN_FILE);
    if path.exists() {
        return Ok((read_token_file(&path)?, path, false));
    }
    let token = generate_token();
    write_private(&path, format!("{token}\n").as_bytes())?;
    Ok((Secret::new(token), path, true))
}

/// Read a token file: its contents with surrounding white space removed.
pub fn read_token_file(path: &Path) -> Result<Secret, CertError> {
    let text = read_to_string(path)?;
    let token = text.trim();
    if token.is_empty() {
        return Err(CertError::EmptyToken { path: path.to_owned() });
    }
    Ok(Secret::new(token))
}

/// 256 random bits as 64 hex digits.
pub fn generate_token() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A random tag for a new CA's subject. Every generated CA has its own name, so an origin
/// holding another proxy's ca.pem fails with `UnknownIssuer` (no CA of that name), not with
/// `BadSignature` (a CA of that name whose key does not match).
fn ca_suffix() -> String {
    let bytes: [u8; 4] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn ca_params(suffix: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("revmux local CA {suffix}"));
    dn.push(DnType::OrganizationName, "revmux");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    set_validity(&mut params, 20);
    params
}

/// From the start of last year (so clock skew never makes a new certificate "not yet valid")
/// to `years` after.
fn set_validity(params: &mut CertificateParams, years: i32) {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let year = 1970 + (secs / 31_556_952) as i32;
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + years, 1, 1);
}

fn issue_err(names: &[impl ToString], source: rcgen::Error) -> CertError {
    CertError::Issue { names: names.iter().map(|n| n.to_string()).collect(), source }
}

fn create_private_dir(dir: &Path) -> Result<(), CertError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| CertError::Write { path: dir.to_owned(), source })
}

fn read_to_string(path: &Path) -> Result<String, CertError> {
    fs::read_to_string(path).map_err(|source| CertError::Read { path: path.to_owned(), source })
}

/// Write through a temporary file and rename, so a crash never leaves half a key behind.
fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), CertError> {
    let err = |source| CertError::Write { path: path.to_owned(), source };
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut file = fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp).map_err(err)?;
    file.write_all(contents).map_err(err)?;
    file.sync_all().map_err(err)?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)).map_err(err)?;
    fs::rename(&tmp, path).map_err(err)
}

fn write_private(path: &Path, contents: &[u8]) -> Result<(), CertError> {
    write_file(path, contents, 0o600)
}

fn write_public(path: &Path, contents: &[u8]) -> Result<(), CertError> {
    write_file(path, contents, 0o644)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn creates_material_once_and_keeps_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let certs_dir = dir.path().join("certs");
        let first = ensure_server_cert(&certs_dir, &["example.test".into()]).unwrap();
        assert!(first.created_ca);
        let ca_before = fs::read(&first.ca).unwrap();
        let second = ensure_server_cert(&certs_dir, &[]).unwrap();
        assert!(!second.created_ca);
        assert_eq!(ca_before, fs::read(&second.ca).unwrap(), "the CA must survive restarts");
        let key_mode = fs::metadata(&second.key).unwrap().permissions().mode() & 0o777;
        assert_eq!(key_mode, 0o600);

        let (token, path, created) = ensure_token(&certs_dir).unwrap();
        assert!(created);
        assert_eq!(token.expose().len(), 64);
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let (again, _, created) = ensure_token(&certs_dir).unwrap();
        assert!(!created);
        assert_eq!(token, again);
    }

    /// What an origin uses to check the proxy: a verifier that trusts only the CAs in `ca`.
    fn verifier_trusting(ca: &Path) -> std::sync::Arc<rustls::client::WebPkiServerVerifier> {
        let mut roots = rustls::RootCertStore::empty();
        for c in crate::tls::load_certs(ca).unwrap() {
            roots.add(c).unwrap();
        }
        rustls::client::WebPkiServerVerifier::builder_with_provider(roots.into(), crate::tls::provider())
            .build()
            .unwrap()
    }

    #[test]
    fn issued_certificate_verifies_against_the_ca() {
        use rustls::client::danger::ServerCertVerifier;
        let dir = tempfile::tempdir().unwrap();
        let _first = ensure_server_cert(dir.path(), &["media.example.test".into()]).unwrap();
        // Issue again so the leaf is signed by a CA loaded from disk, not the one just made.
        let issued = ensure_server_cert(dir.path(), &["media.example.test".into()]).unwrap();
        let verifier = verifier_trusting(&issued.ca);
        let leaf = crate::tls::load_certs(&issued.cert).unwrap();
        let now = rustls_pki_types::UnixTime::now();
        for name in ["localhost", "127.0.0.1", "::1", "media.example.test"] {
            let server_name = rustls_pki_types::ServerName::try_from(name).unwrap();
            verifier
                .verify_server_cert(&leaf[0], &[], &server_name, &[], now)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let other = rustls_pki_types::ServerName::try_from("evil.test").unwrap();
        assert!(verifier.verify_server_cert(&leaf[0], &[], &other, &[], now).is_err());
    }

    #[test]
    fn another_proxys_ca_reads_unknown_issuer() {
        use rustls::client::danger::ServerCertVerifier;
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let ours = ensure_server_cert(a.path(), &[]).unwrap();
        let theirs = ensure_server_cert(b.path(), &[]).unwrap();
        assert_ne!(fs::read(&ours.ca).unwrap(), fs::read(&theirs.ca).unwrap());
        let verifier = verifier_trusting(&theirs.ca);
        let leaf = crate::tls::load_certs(&ours.cert).unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let err = verifier
            .verify_server_cert(&leaf[0], &[], &name, &[], rustls_pki_types::UnixTime::now())
            .expect_err("signed by another CA");
        assert_eq!(err, rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer));
    }

    #[test]
    fn empty_token_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        fs::write(&path, "  \n").unwrap();
        assert!(matches!(read_token_file(&path), Err(CertError::EmptyToken { .. })));
    }
}
