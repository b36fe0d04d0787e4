//! What the integration tests of every crate share, so that no test file keeps its own copy:
//! the native stack's addresses (overridable by the same variables the binaries read), a
//! bounded wait on a condition (tests never sleep to synchronise), and child processes that are
//! killed and reaped if a test fails, so none is left to compete with the next tests.

use std::future::Future;
use std::time::Duration;

pub fn bootstrap() -> String {
    std::env::var("KAFKA_BOOTSTRAP_SERVERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

pub fn registry_url() -> String {
    std::env::var("SCHEMA_REGISTRY_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:8081/apis/ccompat/v7".into())
}

/// A loopback port nothing listens on right now (for a role's HTTP address).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free loopback port")
}

/// A new, empty directory under the system's temporary directory, unique to this process
/// and call (`prefix` names what it is for).
pub fn scratch_dir(prefix: &str) -> std::path::PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!("{prefix}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    dir
}

/// Waits until `check` returns true, polling every 100 ms; panics naming `what` after `limit`.
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The synchronous [`wait_until`], for tests outside a runtime or helpers that need a value:
/// polls `check` every 20 ms until it gives one; panics naming `what` after `limit`.
pub fn poll_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let started = std::time::Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGTERM, then waits (bounded) for the process to exit; a clean stop exits 0.
pub fn terminate(child: &mut std::process::Child) {
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success(), "SIGTERM sent");
    let status = poll_for("the exit after SIGTERM", Duration::from_secs(60), || {
        child.try_wait().expect("wait for the child")
    });
    assert!(status.success(), "a SIGTERM ends with exit 0: {status}");
}

/// A child process that is killed and reaped when dropped.
pub struct Reaped(pub std::process::Child);

impl std::ops::Deref for Reaped {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// A throwaway HTTPS front (`tests/tls/https_proxy.py`) for the schema registry, whose
/// self-signed certificate a client trusts only when told to: `SSL_CERT_FILE=<ca>`.
pub struct HttpsRegistry {
    /// The registry's URL with the scheme, host and port of the HTTPS front.
    pub url: String,
    /// The front's certificate (its own CA), in PEM.
    pub ca: std::path::PathBuf,
    _proxy: Reaped,
}

impl HttpsRegistry {
    /// Makes `command` trust the front's certificate (`trusted`) or only the system's CA store.
    pub fn trust_in(&self, command: &mut std::process::Command, trusted: bool) {
        command.env_remove("SSL_CERT_DIR");
        if trusted {
            command.env("SSL_CERT_FILE", &self.ca);
        } else {
            command.env_remove("SSL_CERT_FILE");
        }
    }
}

/// Starts an HTTPS front for the registry at `registry` (`http://host:port/path`).
pub fn https_registry(registry: &str) -> HttpsRegistry {
    let rest = registry
        .strip_prefix("http://")
        .expect("the stack's registry URL is plain http");
    let (host_port, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    static FRONTS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let front = FRONTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("https-registry-{}-{front}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch folder");
    let (ca, key, port_file) = (dir.join("cert.pem"), dir.join("key.pem"), dir.join("port"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&ca)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run openssl (Debian's openssl package)");
    assert!(made.success(), "openssl made a self-signed certificate");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/tls/https_proxy.py"
    );
    let proxy = Reaped(
        std::process::Command::new("python3")
            .arg(script)
            .arg("--upstream")
            .arg(format!("http://{host_port}"))
            .arg("--cert")
            .arg(&ca)
            .arg("--key")
            .arg(&key)
            .arg("--port-file")
            .arg(&port_file)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start the HTTPS front (python3)"),
    );
    let port = poll_for("the HTTPS front to listen", Duration::from_secs(30), || {
        std::fs::read_to_string(&port_file).ok()
    });
    HttpsRegistry {
        url: format!("https://127.0.0.1:{}{path}", port.trim()),
        ca,
        _proxy: proxy,
    }
}
