//! Certificates and the rustls server configuration.
//!
//! [`load_all`] reads and checks the PEM files (missing, unreadable, empty, mismatched,
//! expired: each an error naming the file), so the master can refuse to start before
//! forking. [`server_config`] builds the rustls config inside the front process: TLS 1.3
//! and 1.2 only, the Mozilla "intermediate" suites, ALPN `http/1.1`, the certificate chosen
//! by the client's SNI name, tickets and a server-side session cache both bounded by
//! `session_timeout`. Connections live in [`super::transport`].

use std::collections::{HashMap, VecDeque};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::crypto::aws_lc_rs as provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ProducesTickets, StoresServerSessions};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use super::settings::{CertificatePaths, FrontSettings};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read certificate file {path}: {source}")]
    ReadCert {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("certificate file {path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("certificate file {path}: cannot parse the certificate: {reason}")]
    ParseCert { path: PathBuf, reason: String },
    #[error("certificate file {path} expired on {not_after}")]
    Expired { path: PathBuf, not_after: String },
    #[error("certificate file {path} is not valid before {not_before}")]
    NotYetValid { path: PathBuf, not_before: String },
    #[error("cannot read key file {path}: {source}")]
    ReadKey {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key file {path} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey { path: PathBuf },
    #[error("key file {path}: unsupported private key: {reason}")]
    UnsupportedKey { path: PathBuf, reason: String },
    #[error("key file {key} does not match certificate file {cert}")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("cannot build the TLS configuration: {0}")]
    Config(rustls::Error),
}

/// A checked certificate chain and key, and what the log and the SNI choice need.
pub struct Loaded {
    pub key: Arc<CertifiedKey>,
    /// The leaf's serial number in hex, logged on start and reload.
    pub serial: String,
    /// The DNS names the leaf is for (its subjectAltName, else its common name),
    /// lowercased; `*.example.com` for a wildcard.
    pub names: Vec<String>,
}

/// Every certificate of the front, the default first, and non-fatal findings (a key
/// readable by others).
pub struct Certificates {
    pub all: Vec<Loaded>,
    pub warnings: Vec<String>,
}

impl Certificates {
    /// For the log: `certificate serial 01`, or with several
    /// `certificates serial 01 (example.com), serial 02 (www.example.org)`.
    pub fn summary(&self) -> String {
        match self.all.as_slice() {
            [one] => format!("certificate serial {}", one.serial),
            all => {
                let each: Vec<String> = all
                    .iter()
                    .map(|c| format!("serial {} ({})", c.serial, c.names.join(", ")))
                    .collect();
                format!("certificates {}", each.join(", "))
            }
        }
    }
}

/// Read and check every certificate and key.
pub fn load_all(paths: &[CertificatePaths]) -> Result<Certificates, TlsError> {
    let mut all = Vec::with_capacity(paths.len());
    let mut warnings = Vec::new();
    for p in paths {
        let (loaded, warning) = load(&p.certfile, &p.keyfile)?;
        warnings.extend(warning);
        all.push(loaded);
    }
    Ok(Certificates { all, warnings })
}

/// Read and check `certfile` and `keyfile`; the second value warns about a key that
/// others can read.
pub fn load(certfile: &Path, keyfile: &Path) -> Result<(Loaded, Option<String>), TlsError> {
    let cert_pem = std::fs::read(certfile).map_err(|source| TlsError::ReadCert {
        path: certfile.to_path_buf(),
        source,
    })?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|err| TlsError::ParseCert {
            path: certfile.to_path_buf(),
            reason: err.to_string(),
        })?;
    let leaf = chain.first().ok_or_else(|| TlsError::NoCertificate {
        path: certfile.to_path_buf(),
    })?;
    let (serial, names) = check_leaf(certfile, leaf)?;

    let key_pem = std::fs::read(keyfile).map_err(|source| TlsError::ReadKey {
        path: keyfile.to_path_buf(),
        source,
    })?;
    let warning = std::fs::metadata(keyfile)
        .ok()
        .map(|meta| meta.permissions().mode())
        .filter(|mode| mode & 0o077 != 0)
        .map(|mode| {
            format!(
                "key file {} is accessible by group or others (mode {:o}); chmod 600 it",
                keyfile.display(),
                mode & 0o777
            )
        });
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::NoKey {
        path: keyfile.to_path_buf(),
    })?;
    let signing =
        provider::sign::any_supported_type(&key).map_err(|err| TlsError::UnsupportedKey {
            path: keyfile.to_path_buf(),
            reason: err.to_string(),
        })?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(_) => {
            return Err(TlsError::KeyMismatch {
                cert: certfile.to_path_buf(),
                key: keyfile.to_path_buf(),
            })
        }
    }
    let loaded = Loaded {
        key: Arc::new(certified),
        serial,
        names,
    };
    Ok((loaded, warning))
}

/// Refuse an expired or not yet valid leaf; return its serial in hex and its names.
fn check_leaf(path: &Path, leaf: &CertificateDer<'_>) -> Result<(String, Vec<String>), TlsError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(leaf.as_ref()).map_err(|err| TlsError::ParseCert {
            path: path.to_path_buf(),
            reason: err.to_string(),
        })?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let validity = cert.validity();
    if validity.not_after.timestamp() < now {
        return Err(TlsError::Expired {
            path: path.to_path_buf(),
            not_after: validity.not_after.to_string(),
        });
    }
    if validity.not_before.timestamp() > now {
        return Err(TlsError::NotYetValid {
            path: path.to_path_buf(),
            not_before: validity.not_before.to_string(),
        });
    }
    let mut names: Vec<String> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                x509_parser::extensions::GeneralName::DNSName(name) => {
                    Some(name.to_ascii_lowercase())
                }
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    if names.is_empty() {
        names.extend(
            cert.subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok())
                .map(str::to_ascii_lowercase),
        );
    }
    Ok((cert.raw_serial_as_string(), names))
}

/// The rustls server configuration for `settings`, with `loaded` as its certificate.
pub fn server_config(
    settings: &FrontSettings,
    certificates: &Certificates,
) -> Result<Arc<ServerConfig>, TlsError> {
    // rustls's default suites are exactly Mozilla's "intermediate" list: TLS 1.3 AES-GCM
    // and ChaCha20, TLS 1.2 ECDHE with AES-GCM and ChaCha20; no CBC, no RSA key exchange.
    let mut provider = provider::default_provider();
    provider
        .cipher_suites
        .sort_by_key(|suite| suite_rank(suite.suite()));
    let provider = Arc::new(provider);
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(ByName::new(certificates)));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.session_storage = Arc::new(SessionCache::new(
        settings.session_cache_size,
        settings.session_timeout,
    ));
    let ticketer = provider::Ticketer::new().map_err(TlsError::Config)?;
    config.ticketer = Arc::new(TimedTickets {
        inner: ticketer,
        timeout: settings.session_timeout,
    });
    // Our order, not the client's (see `suite_rank`).
    config.ignore_client_order = true;
    Ok(Arc::new(config))
}

/// The server's order of preference: AES-128-GCM first (Mozilla's order, and Chrome's and
/// Firefox's), then AES-256-GCM, then ChaCha20. Every suite here is strong; AES-128's use
/// SHA-256, which x86's SHA extensions compute several times faster than the SHA-384 of
/// AES-256's, and a TLS 1.3 handshake hashes its transcript and derives its keys with it:
/// OpenSSL-based clients (curl, Python, wrk) list AES-256 first and would cost the front
/// about 15% more CPU per full handshake. A client without AES instructions that puts
/// ChaCha20 first gets AES-GCM all the same (it offers it): rustls 0.23 has no equivalent
/// of OpenSSL's ChaCha20 prioritisation.
fn suite_rank(suite: rustls::CipherSuite) -> u8 {
    use rustls::CipherSuite as S;
    match suite {
        S::TLS13_AES_128_GCM_SHA256
        | S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        | S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => 0,
        S::TLS13_AES_256_GCM_SHA384
        | S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
        | S::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => 1,
        _ => 2,
    }
}

/// The certificate for the name the client asks for (SNI): an exact name first, then a
/// wildcard one level up (`*.example.com` for `www.example.com`), else the default (the
/// first), as nginx serves its default server's certificate.
#[derive(Debug)]
struct ByName {
    certs: Vec<(Vec<String>, Arc<CertifiedKey>)>,
}

impl ByName {
    fn new(certificates: &Certificates) -> ByName {
        ByName {
            certs: certificates
                .all
                .iter()
                .map(|c| (c.names.clone(), c.key.clone()))
                .collect(),
        }
    }

    fn choose(&self, name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let found = name.and_then(|name| {
            let name = name.to_ascii_lowercase();
            let wildcard = name
                .split_once('.')
                .map(|(_, parent)| format!("*.{parent}"));
            let has = |wanted: &str| {
                self.certs
                    .iter()
                    .find(|(names, _)| names.iter().any(|n| n == wanted))
            };
            has(&name).or_else(|| wildcard.as_deref().and_then(has))
        });
        found.or(self.certs.first()).map(|(_, key)| key.clone())
    }
}

impl rustls::server::ResolvesServerCert for ByName {
    fn resolve(&self, hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.choose(hello.server_name())
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// rustls's rotating ticketer with `session_timeout` enforced: the issue time is sealed
/// inside the ticket, and an older ticket decrypts to nothing (a full handshake).
#[derive(Debug)]
struct TimedTickets {
    inner: Arc<dyn ProducesTickets>,
    timeout: Duration,
}

impl ProducesTickets for TimedTickets {
    fn enabled(&self) -> bool {
        self.inner.enabled()
    }

    fn lifetime(&self) -> u32 {
        u32::try_from(self.timeout.as_secs()).unwrap_or(u32::MAX)
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let mut sealed = Vec::with_capacity(8 + plain.len());
        sealed.extend_from_slice(&unix_now().to_be_bytes());
        sealed.extend_from_slice(plain);
        self.inner.encrypt(&sealed)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        let sealed = self.inner.decrypt(cipher)?;
        let issued = u64::from_be_bytes(sealed.get(..8)?.try_into().ok()?);
        if unix_now().saturating_sub(issued) > self.timeout.as_secs() {
            return None;
        }
        Some(sealed[8..].to_vec())
    }
}

/// The server-side session cache (TLS 1.2 session ids, and TLS 1.3 when tickets are off):
/// bounded in entries, each valid for `session_timeout`.
#[derive(Debug)]
struct SessionCache {
    inner: Mutex<CacheInner>,
    capacity: usize,
    timeout: Duration,
}

#[derive(Debug, Default)]
struct CacheInner {
    entries: HashMap<Vec<u8>, (Vec<u8>, u64)>,
    order: VecDeque<Vec<u8>>,
}

impl SessionCache {
    fn new(capacity: usize, timeout: Duration) -> SessionCache {
        SessionCache {
            inner: Mutex::new(CacheInner::default()),
            capacity,
            timeout,
        }
    }

    fn fresh(&self, stored: u64) -> bool {
        unix_now().saturating_sub(stored) <= self.timeout.as_secs()
    }
}

impl StoresServerSessions for SessionCache {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        if self.capacity == 0 {
            return false;
        }
        let Ok(mut inner) = self.inner.lock() else {
            return false;
        };
        while inner.entries.len() >= self.capacity {
            match inner.order.pop_front() {
                Some(old) => {
                    inner.entries.remove(&old);
                }
                None => break,
            }
        }
        if inner
            .entries
            .insert(key.clone(), (value, unix_now()))
            .is_none()
        {
            inner.order.push_back(key);
        }
        true
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        let inner = self.inner.lock().ok()?;
        let (value, stored) = inner.entries.get(key)?;
        self.fresh(*stored).then(|| value.clone())
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        let mut inner = self.inner.lock().ok()?;
        let (value, stored) = inner.entries.remove(key)?;
        if let Some(pos) = inner.order.iter().position(|k| k.as_slice() == key) {
            inner.order.remove(pos);
        }
        self.fresh(stored).then_some(value)
    }

    fn can_cache(&self) -> bool {
        self.capacity > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sni_picks_the_exact_name_then_a_wildcard_then_the_default() {
        let key = |names: &[&str]| {
            let signing = provider::sign::any_supported_type(&PrivateKeyDer::from(
                rustls::pki_types::PrivatePkcs8KeyDer::from(
                    rcgen::KeyPair::generate().expect("key").serialize_der(),
                ),
            ))
            .expect("signing key");
            (
                names.iter().map(|n| n.to_string()).collect(),
                Arc::new(CertifiedKey::new(Vec::new(), signing)),
            )
        };
        let by_name = ByName {
            certs: vec![
                key(&["localhost"]),
                key(&["www.example.org", "example.org"]),
                key(&["*.example.com"]),
            ],
        };
        let chosen = |name: Option<&str>| {
            let key = by_name.choose(name).expect("a certificate");
            by_name
                .certs
                .iter()
                .position(|(_, k)| Arc::ptr_eq(k, &key))
                .expect("one of them")
        };
        assert_eq!(chosen(Some("WWW.example.org")), 1);
        assert_eq!(chosen(Some("example.org")), 1);
        assert_eq!(chosen(Some("api.example.com")), 2);
        assert_eq!(
            chosen(Some("a.b.example.com")),
            0,
            "a wildcard is one level"
        );
        assert_eq!(chosen(Some("example.com")), 0);
        assert_eq!(chosen(None), 0);
    }

    #[test]
    fn session_cache_is_bounded_and_expires() {
        let cache = SessionCache::new(2, Duration::from_secs(600));
        assert!(cache.put(b"a".to_vec(), b"1".to_vec()));
        assert!(cache.put(b"b".to_vec(), b"2".to_vec()));
        assert!(cache.put(b"c".to_vec(), b"3".to_vec()));
        assert_eq!(cache.get(b"a"), None);
        assert_eq!(cache.get(b"c"), Some(b"3".to_vec()));
        assert_eq!(cache.take(b"b"), Some(b"2".to_vec()));
        assert_eq!(cache.get(b"b"), None);
        let expired = SessionCache::new(2, Duration::ZERO);
        expired.put(b"a".to_vec(), b"1".to_vec());
        // Same second is still "fresh" with a zero timeout; older would not be.
        assert!(!expired.fresh(unix_now() - 1));
    }

    #[test]
    fn tickets_carry_their_age() {
        let tickets = TimedTickets {
            inner: provider::Ticketer::new().expect("ticketer"),
            timeout: Duration::from_secs(600),
        };
        let sealed = tickets.encrypt(b"state").expect("encrypt");
        assert_eq!(tickets.decrypt(&sealed), Some(b"state".to_vec()));
        assert_eq!(tickets.lifetime(), 600);
        let short = TimedTickets {
            inner: provider::Ticketer::new().expect("ticketer"),
            timeout: Duration::ZERO,
        };
        let mut old = (unix_now() - 5).to_be_bytes().to_vec();
        old.extend_from_slice(b"state");
        let cipher = short.inner.encrypt(&old).expect("encrypt");
        assert_eq!(short.decrypt(&cipher), None);
    }
}
