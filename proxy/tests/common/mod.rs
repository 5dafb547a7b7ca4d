//! Shared test harness: a sandbox and a proxy on ephemeral loopback ports, and a client that
//! clicks through the sandbox's H5 pages like a browser and reads the return page's message.
#![allow(dead_code)]

pub mod binary;
pub mod forwarding;

use std::path::PathBuf;
use std::time::Duration;

use qys_proxy::platform::Platform;
use qys_proxy::proxy::{self, ConfirmLimits, Paths, ProxyConfig, UpstreamMode};
use qys_proxy::sandbox::{self, SandboxConfig};
use qys_proxy::store::{CallbackStore, RateLimit};
use qys_proxy::token::TokenKey;
use qys_proxy::{cli, spawn_server, Secret};
use serde_json::{json, Value};
use tokio::net::TcpListener;

pub const TOKEN: &str = "test-app-token";
pub const SECRET: &str = "test-app-secret-5f1d0c";
/// An origin allowed to embed the SDK in these tests.
pub const PAGE_ORIGIN: &str = "http://127.0.0.1:9";

/// Knobs of one test stack.
pub struct Options {
    pub mode: UpstreamMode,
    pub platform_url: Option<String>,
    pub timeout: Duration,
    pub callback_allowlist: Vec<String>,
    pub retry_delay: Duration,
    pub database: Option<PathBuf>,
    pub allowed_origins: Vec<String>,
    pub token_ttl: Duration,
    pub miniprogram_env: String,
    pub confirm: ConfirmLimits,
    /// `QYS_SDK_RATE` / `QYS_SDK_BURST`: the production defaults unless a test sets its own.
    pub sdk_limit: RateLimit,
    /// `QYS_FLOW_START_RATE`: the production default unless a test sets its own.
    pub flow_start_rate: u32,
    /// `QYS_CALLBACK_RATE` / `QYS_CALLBACK_BURST` of the proxy's receivers: the defaults unless a
    /// test sets its own.
    pub callback_limit: RateLimit,
    /// `QYS_TRUSTED_PROXIES`: the production default (loopback) unless a test sets its own.
    pub trusted_proxies: proxy::TrustedProxies,
    /// `QYS_UNSIGNED_CALLBACK_DAYS` as a duration: the default unless a test sets its own.
    pub unsigned_callback_window: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            mode: UpstreamMode::PageUrl,
            platform_url: None,
            timeout: Duration::from_secs(15),
            callback_allowlist: Vec::new(),
            retry_delay: Duration::from_millis(300),
            database: None,
            allowed_origins: vec![PAGE_ORIGIN.into()],
            token_ttl: Duration::from_secs(600),
            miniprogram_env: "sandbox".into(),
            // Tests ask `outcome`, finish the flow and ask again at once: no reuse of a
            // "pending" here (production keeps one for 5 s; tests/return_cache.rs covers it).
            confirm: ConfirmLimits { recheck: Duration::ZERO, ..ConfirmLimits::default() },
            sdk_limit: proxy::sdk_limit(proxy::DEFAULT_SDK_RATE, proxy::DEFAULT_SDK_BURST).unwrap(),
            flow_start_rate: proxy::DEFAULT_FLOW_START_RATE,
            callback_limit: RateLimit::default(),
            trusted_proxies: proxy::TrustedProxies::default(),
            unsigned_callback_window: Duration::from_secs(u64::from(cli::DEFAULT_UNSIGNED_CALLBACK_DAYS) * 86_400),
        }
    }
}

/// A running sandbox + proxy.
pub struct Stack {
    pub sandbox: String,
    pub proxy: String,
    pub store: CallbackStore,
    pub client: reqwest::Client,
    _dir: tempfile::TempDir,
}

pub async fn bind() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    (listener, url)
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

impl Stack {
    pub async fn start() -> Self {
        Self::with(Options::default()).await
    }

    pub async fn ticket_mode() -> Self {
        Self::with(Options { mode: UpstreamMode::Ticket { template: String::new() }, ..Options::default() }).await
    }

    pub async fn with(opts: Options) -> Self {
        let (sandbox_listener, sandbox_url) = bind().await;
        let mut sandbox_cfg = SandboxConfig::new(TOKEN.into(), Secret::new(SECRET), sandbox_url.clone());
        sandbox_cfg.callback_retry_delay = opts.retry_delay;
        spawn_server(sandbox_listener, sandbox::router(sandbox_cfg));

        let dir = tempfile::tempdir().unwrap();
        let db = opts.database.clone().unwrap_or_else(|| dir.path().join("callbacks.sqlite3"));
        let store = CallbackStore::open(&db).unwrap().with_rate_limit(opts.callback_limit);
        let (proxy_listener, proxy_url) = bind().await;
        let platform_url = opts.platform_url.clone().unwrap_or_else(|| sandbox_url.clone());
        let mode = match opts.mode {
            UpstreamMode::Ticket { template } if template.is_empty() => {
                UpstreamMode::Ticket { template: cli::sandbox_template(&sandbox_url) }
            }
            other => other,
        };
        // As the binary does when it builds its config.
        store.require_sigs().unwrap();
        let cfg = ProxyConfig {
            public_url: proxy_url.clone(),
            platform: Platform::new(&platform_url, TOKEN, Secret::new(SECRET), Duration::from_secs(5), opts.timeout)
                .with_confirm_limits(opts.confirm),
            upstream_mode: mode,
            miniprogram_env: opts.miniprogram_env,
            allowed_origins: opts.allowed_origins,
            callback_url_allowlist: opts.callback_allowlist,
            token_key: TokenKey::derive_from_secret(SECRET),
            token_ttl: opts.token_ttl,
            paths: Paths::default(),
            store: store.clone(),
            unsigned_callback_window: opts.unsigned_callback_window,
            sdk_limit: opts.sdk_limit,
            flow_start_rate: opts.flow_start_rate,
            trusted_proxies: opts.trusted_proxies,
            static_dirs: Vec::new(),
        };
        spawn_server(proxy_listener, proxy::router(cfg));
        Stack { sandbox: sandbox_url, proxy: proxy_url, store, client: client(), _dir: dir }
    }

    /// POSTs an SDK request as the SDK does (form, `requestData`), from [`PAGE_ORIGIN`].
    pub async fn call(&self, action: &str, state: &str, params: Value) -> (u16, Value) {
        let response = sdk_request(&self.client, &self.proxy, PAGE_ORIGIN, action, state, params).await;
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    /// POSTs a whole envelope as the SDK does, from `origin`; `(status, body)`.
    pub async fn send(&self, origin: &str, envelope: Value) -> (u16, Value) {
        let response = send_envelope(&self.client, &self.proxy, origin, &envelope).await;
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    /// Asks `outcome` for a flow, from `origin`; `(status, body)`.
    pub async fn outcome(&self, origin: &str, state: &str, flow: &str) -> (u16, Value) {
        self.send(origin, json!({"v": 1, "action": "outcome", "state": state, "params": {"flow": flow}})).await
    }

    /// Like [`Self::call`], asserting success; returns the page URL.
    pub async fn page_url(&self, action: &str, state: &str, params: Value) -> String {
        let (status, body) = self.call(action, state, params).await;
        assert_eq!((status, body["code"].clone()), (200, json!(0)), "{body}");
        assert_eq!(body["result"]["returnOrigin"], self.proxy.as_str());
        body["result"]["pageUrl"].as_str().unwrap().to_owned()
    }
}

/// POSTs an SDK request to the proxy at `proxy` as the SDK does (form, `requestData`, the page's
/// query), from `origin`.
pub async fn sdk_request(
    client: &reqwest::Client,
    proxy: &str,
    origin: &str,
    action: &str,
    state: &str,
    params: Value,
) -> reqwest::Response {
    let envelope = json!({"v": 1, "action": action, "state": state, "params": params});
    send_envelope(client, proxy, origin, &envelope).await
}

/// POSTs `envelope` to the proxy at `proxy` as the SDK does, from `origin`.
pub async fn send_envelope(client: &reqwest::Client, proxy: &str, origin: &str, envelope: &Value) -> reqwest::Response {
    client
        .post(format!("{proxy}/qys/proxy?a=1&token=ab1234"))
        .header("origin", origin)
        .form(&[("requestData", envelope.to_string())])
        .send()
        .await
        .unwrap()
}

/// A page as the browser sees it.
pub struct Page {
    pub url: String,
    pub status: u16,
    pub html: String,
}

impl Page {
    pub fn has(&self, id: &str) -> bool {
        [format!("id={id} "), format!("id={id}>"), format!("id=\"{id}\"")].iter().any(|p| self.html.contains(p.as_str()))
    }

    /// Hidden inputs of the page's form.
    fn hidden(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for part in self.html.split("<input type=hidden ").skip(1) {
            let name = between(part, "name=", " ").to_owned();
            let value = html_unescape(between(part, "value=\"", "\""));
            out.push((name, value));
        }
        out
    }
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> &'a str {
    let from = s.find(start).map(|i| i + start.len()).unwrap_or(0);
    let rest = &s[from..];
    &rest[..rest.find(end).unwrap_or(rest.len())]
}

fn html_unescape(s: &str) -> String {
    s.replace("&quot;", "\"").replace("&#39;", "'").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

pub async fn open(client: &reqwest::Client, url: &str) -> Page {
    let response = client.get(url).send().await.unwrap();
    let status = response.status().as_u16();
    Page { url: url.to_owned(), status, html: response.text().await.unwrap() }
}

/// Clicks the button whose `op` value is `op`, sending `fields`, and follows redirects like a
/// browser; returns the final page (the proxy's return page when the flow finishes).
pub async fn click(client: &reqwest::Client, page: &Page, op: &str, fields: &[(&str, &str)]) -> Page {
    let base = url::Url::parse(&page.url).unwrap().origin().ascii_serialization();
    let mut form = page.hidden();
    form.push(("op".into(), op.into()));
    for (k, v) in fields {
        form.push(((*k).into(), (*v).into()));
    }
    let mut url = format!("{base}{}", between(&page.html, "<form method=post action=", ">"));
    let mut response = client.post(&url).form(&form).send().await.unwrap();
    while response.status().as_u16() == 303 {
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        url = if location.starts_with('/') { format!("{base}{location}") } else { location };
        response = client.get(&url).send().await.unwrap();
    }
    let status = response.status().as_u16();
    Page { url, status, html: response.text().await.unwrap() }
}

/// The message the return page posts, and its targetOrigin; `None` if it posts nothing.
pub fn posted_message(page: &Page) -> Option<(Value, Value)> {
    let at = page.html.find("postMessage(")? + "postMessage(".len();
    let rest = &page.html[at..];
    let mut values = serde_json::Deserializer::from_str(rest).into_iter::<Value>();
    let message = values.next()?.ok()?;
    let after = rest[values.byte_offset()..].strip_prefix(',')?;
    let origin = serde_json::Deserializer::from_str(after).into_iter::<Value>().next()?.ok()?;
    Some((message, origin))
}

/// `path_query` with the `sig` a proxy whose token key comes from the AppSecret `secret` puts
/// in the callback URLs it hands the platform (a [`Stack`]'s: [`SECRET`]), as the platform's
/// deliveries carry it.
pub fn signed_callback(secret: &str, path_query: &str) -> String {
    let (path, query) = path_query.split_once('?').unwrap_or((path_query, ""));
    let param = |name: &str| form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
    let kind = path.rsplit('/').next().unwrap();
    let sig = TokenKey::derive_from_secret(secret).callback_sig(kind, &param("flow").unwrap_or_default(), &param("t").unwrap_or_default());
    format!("{path_query}{}sig={sig}", if query.is_empty() { "?" } else { "&" })
}

/// A state value as the SDK makes them.
pub fn state(tag: &str) -> String {
    format!("{tag:_<16}0123456789")
}
