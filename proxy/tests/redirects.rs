//! Static files never redirect off the proxy's origin (issue 8, item 4): raw HTTP requests, as an
//! attacker sends them, and the exact `Location` the proxy answers.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use qys_proxy::platform::Platform;
use qys_proxy::proxy::{self, Paths, ProxyConfig, UpstreamMode};
use qys_proxy::store::{CallbackStore, RateLimit};
use qys_proxy::token::TokenKey;
use qys_proxy::{spawn_server, Secret};
use tokio::net::TcpListener;

/// A proxy serving the repository's `www/` at `/` and a scratch directory at `/js`
/// (`sub/index.html`, `sub/deeper/`); returns its `host:port`.
async fn static_proxy() -> (String, tempfile::TempDir) {
    let www = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../www");
    assert!(www.join("seed").is_dir(), "the repository's www/seed/ is the directory under test");
    let dir = tempfile::tempdir().unwrap();
    let js = dir.path().join("js");
    std::fs::create_dir_all(js.join("sub/deeper")).unwrap();
    std::fs::write(js.join("sub/index.html"), "<p>sub</p>").unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let cfg = ProxyConfig {
        public_url: format!("http://{addr}"),
        platform: Platform::new("http://127.0.0.1:1", "t", Secret::new("s"), Duration::from_secs(1), Duration::from_secs(1)),
        upstream_mode: UpstreamMode::PageUrl,
        miniprogram_env: "sandbox".into(),
        allowed_origins: Vec::new(),
        callback_url_allowlist: Vec::new(),
        token_key: TokenKey::derive_from_secret("s"),
        token_ttl: Duration::from_secs(60),
        paths: Paths::default(),
        store: CallbackStore::open(&dir.path().join("db.sqlite3")).unwrap(),
        unsigned_callback_window: Duration::ZERO,
        sdk_limit: RateLimit::OFF,
        flow_start_rate: qys_proxy::proxy::DEFAULT_FLOW_START_RATE,
        trusted_proxies: qys_proxy::proxy::TrustedProxies::NONE,
        static_dirs: vec![("/js".into(), js), ("/".into(), www)],
    };
    spawn_server(listener, proxy::router(cfg));
    (addr, dir)
}

/// Sends `METHOD target HTTP/1.1` byte for byte (no client normalises the target) and returns
/// the status and the `Location` header.
async fn raw(addr: &str, method: &str, target: &str) -> (u16, Option<String>) {
    let (addr, request) =
        (addr.to_owned(), format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"));
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(&addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer).into_owned();
        let head = answer.split("\r\n\r\n").next().unwrap_or("");
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let location = head.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("location").then(|| value.trim().to_owned())
        });
        (status, location)
    })
    .await
    .unwrap()
}

/// Whether a browser on the proxy's page would leave its origin following `location`.
fn leaves_origin(location: &str) -> bool {
    let base = url::Url::parse("http://proxy.invalid/page").unwrap();
    base.join(location).map_or(true, |u| u.origin() != base.origin())
}

#[tokio::test(flavor = "multi_thread")]
async fn static_files_never_redirect_off_origin() {
    let (addr, _dir) = static_proxy().await;
    // (request target, expected status, expected Location)
    let table: &[(&str, u16, Option<&str>)] = &[
        // A real directory without its slash: redirected, path-absolute, query kept.
        ("/seed", 307, Some("/seed/")),
        ("/seed?x=1", 307, Some("/seed/?x=1")),
        ("/./seed", 307, Some("/./seed/")),
        // Protocol-relative shapes: refused, never redirected (today: 307 //seed/ and ///seed/).
        ("//seed", 404, None),
        ("///seed", 404, None),
        ("//seed?x=1", 404, None),
        ("/.//seed", 404, None),
        ("//evil.example", 404, None),
        ("//evil.example/", 404, None),
        ("/\\evil.example", 404, None),
        ("/\\seed", 404, None),
        ("/%2F%2Fevil.example", 404, None),
        ("/%2fseed", 404, None),
        ("/%5cseed", 404, None),
        ("/%5C%5Cevil.example", 404, None),
        ("/seed//", 404, None),
        // Absolute-form target: the Location is never built from the request's authority
        // (today: 307 http://evil.example/seed/).
        ("http://evil.example/seed", 307, Some("/seed/")),
        ("http://evil.example//seed", 404, None),
        // A nested mount redirects under its own prefix (today: /sub/, and //sub/ for /js//sub).
        ("/js/sub", 307, Some("/js/sub/")),
        ("/js/sub/deeper?y=2", 307, Some("/js/sub/deeper/?y=2")),
        ("/js//sub", 404, None),
        ("/js/%2fsub", 404, None),
        // Files and directories with their slash are served as before.
        ("/", 200, None),
        ("/seed/personal-sign.html", 200, None),
        ("/js/sub/", 200, None),
        ("/js/sub/index.html", 200, None),
        ("/missing", 404, None),
        ("/seed/", 404, None),
    ];
    let mut wrong = Vec::new();
    for &(target, status, location) in table {
        for method in ["GET", "HEAD"] {
            let got = raw(&addr, method, target).await;
            if got != (status, location.map(str::to_owned)) {
                wrong.push(format!("{method} {target}: got {got:?}, want ({status}, {location:?})"));
            }
            if let (_, Some(l)) = &got {
                if leaves_origin(l) {
                    wrong.push(format!("{method} {target} redirects off the origin: {l}"));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}
