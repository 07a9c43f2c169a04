//! A Kubernetes/CI-style OpenID issuer on loopback: a small HTTP server serving a discovery
//! document and a JWKS of keys the test created, and tokens the test signs with them
//! (`jitssh_identity::testing`). It counts JWKS fetches so tests can see refreshes, and its
//! keys can be changed (rotation) while it runs.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use jitssh_identity::testing::{self as tokens, TestKey};
use serde_json::{Value, json};

/// A running issuer; stopped on drop.
pub struct Issuer {
    /// Its issuer URL (`http://127.0.0.1:PORT`), the `iss` of its tokens.
    pub url: String,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    jwks: Mutex<Value>,
    jwks_fetches: AtomicU64,
    stop: AtomicBool,
}

impl Issuer {
    /// Starts serving `keys` on a free loopback port.
    pub fn start(keys: &[&TestKey]) -> Issuer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the issuer");
        let port = listener.local_addr().expect("issuer address").port();
        let url = format!("http://127.0.0.1:{port}");
        let shared = Arc::new(Shared {
            jwks: Mutex::new(tokens::jwks(keys)),
            jwks_fetches: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let (serving, issuer) = (shared.clone(), url.clone());
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if serving.stop.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    serve(stream, &serving, &issuer);
                }
            }
        });
        Issuer {
            url,
            shared,
            thread: Some(thread),
        }
    }

    /// Serves these keys from now on (rotation).
    pub fn set_keys(&self, keys: &[&TestKey]) {
        *self.shared.jwks.lock().expect("jwks lock") = tokens::jwks(keys);
    }

    /// How many times the JWKS was fetched.
    pub fn jwks_fetches(&self) -> u64 {
        self.shared.jwks_fetches.load(Ordering::SeqCst)
    }

    /// Claims of a token from this issuer for `audience` and `sub`, valid for 5 minutes from
    /// now, with a fresh `jti`; `extra` claims are added (or replace these).
    pub fn claims(&self, audience: &str, sub: &str, extra: Value) -> Value {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs();
        let mut claims = json!({
            "iss": self.url, "aud": audience, "sub": sub,
            "iat": now, "nbf": now, "exp": now + 300,
            "jti": format!("jti-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst)),
        });
        if let (Some(into), Some(from)) = (claims.as_object_mut(), extra.as_object()) {
            for (name, value) in from {
                into.insert(name.clone(), value.clone());
            }
        }
        claims
    }
}

impl Drop for Issuer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.url.trim_start_matches("http://"));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Answers one HTTP/1.1 request (GET of discovery or JWKS) and closes.
fn serve(mut stream: TcpStream, shared: &Shared, issuer: &str) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 * 1024 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&request);
    let path = text.split_whitespace().nth(1).unwrap_or("/");
    let (status, body) = match path {
        "/.well-known/openid-configuration" => (
            "200 OK",
            json!({
                "issuer": issuer,
                "jwks_uri": format!("{issuer}/keys"),
                "token_endpoint": format!("{issuer}/token"),
                "response_types_supported": ["id_token"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256", "ES256"],
            }),
        ),
        "/keys" => {
            shared.jwks_fetches.fetch_add(1, Ordering::SeqCst);
            ("200 OK", shared.jwks.lock().expect("jwks lock").clone())
        }
        _ => ("404 Not Found", json!({"error": "not found"})),
    };
    let body = body.to_string();
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}
