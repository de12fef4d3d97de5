//! Certificates and the rustls server configuration.
//!
//! [`load`] reads and checks the PEM files (missing, unreadable, empty, mismatched, expired:
//! each an error naming the file), so the master can refuse to start before forking.
//! [`server_config`] builds the rustls config inside the front process: TLS 1.3 and 1.2 only,
//! the Mozilla "intermediate" suites, ALPN `http/1.1`, tickets and a server-side session
//! cache both bounded by `session_timeout`. Connections live in [`super::conn`].

use std::collections::{HashMap, VecDeque};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::crypto::ring as provider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ProducesTickets, StoresServerSessions};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use super::FrontSettings;

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

/// A checked certificate chain and key, plus what the log should say about it.
pub struct Loaded {
    pub key: Arc<CertifiedKey>,
    /// The leaf's serial number in hex, logged on start and reload.
    pub serial: String,
    /// Non-fatal findings (a key readable by others).
    pub warnings: Vec<String>,
}

/// Read and check `certfile` and `keyfile`.
pub fn load(certfile: &Path, keyfile: &Path) -> Result<Loaded, TlsError> {
    let cert_pem = std::fs::read(certfile).map_err(|source| TlsError::ReadCert {
        path: certfile.to_path_buf(),
        source,
    })?;
    let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|err| TlsError::ParseCert {
            path: certfile.to_path_buf(),
            reason: err.to_string(),
        })?;
    let leaf = chain.first().ok_or_else(|| TlsError::NoCertificate {
        path: certfile.to_path_buf(),
    })?;
    let serial = check_validity(certfile, leaf)?;

    let mut warnings = Vec::new();
    let key_pem = std::fs::read(keyfile).map_err(|source| TlsError::ReadKey {
        path: keyfile.to_path_buf(),
        source,
    })?;
    if let Ok(meta) = std::fs::metadata(keyfile) {
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            warnings.push(format!(
                "key file {} is accessible by group or others (mode {:o}); chmod 600 it",
                keyfile.display(),
                mode & 0o777
            ));
        }
    }
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .ok()
        .flatten()
        .ok_or_else(|| TlsError::NoKey {
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
    Ok(Loaded {
        key: Arc::new(certified),
        serial,
        warnings,
    })
}

/// Refuse an expired or not yet valid leaf; return its serial in hex.
fn check_validity(path: &Path, leaf: &CertificateDer<'_>) -> Result<String, TlsError> {
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
    Ok(cert.raw_serial_as_string())
}

/// The rustls server configuration for `settings`, with `loaded` as its certificate.
pub fn server_config(
    settings: &FrontSettings,
    loaded: &Loaded,
) -> Result<Arc<ServerConfig>, TlsError> {
    // rustls's ring suites are exactly Mozilla's "intermediate" list: TLS 1.3 AES-GCM and
    // ChaCha20, TLS 1.2 ECDHE with AES-GCM and ChaCha20; no CBC, no RSA key exchange.
    let provider = Arc::new(provider::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SingleCert(loaded.key.clone())));
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
    // Mozilla intermediate: ssl_prefer_server_ciphers off (every suite offered is strong).
    config.ignore_client_order = false;
    Ok(Arc::new(config))
}

#[derive(Debug)]
struct SingleCert(Arc<CertifiedKey>);

impl rustls::server::ResolvesServerCert for SingleCert {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
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
