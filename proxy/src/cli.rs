//! Command line and environment: what the operator sets, checked before anything starts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::platform::Platform;
use crate::proxy::{callback_allowlist_entry, Paths, ProxyConfig, TrustedProxies, UpstreamMode};
use crate::sandbox::world::Fixtures;
use crate::sandbox::{CallbackOrigins, SandboxConfig};
use crate::store::{CallbackStore, RateLimit, MAX_UNSIGNED_CALLBACK_DAYS};
use crate::token::TokenKey;
use crate::Secret;

/// Reference integrator proxy for qys-sdk-wasm, with a built-in sandbox of the 契约锁 platform.
///
/// Without QYS_SERVER_URL it starts the sandbox too (dev credentials generated in-process).
#[derive(Debug, Parser)]
#[command(name = "qys-proxy", version)]
pub struct Cli {
    /// `sandbox` runs only the sandbox platform.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Proxy listen address.
    #[arg(long, env = "QYS_LISTEN", default_value = "127.0.0.1:8080", global = true)]
    pub listen: SocketAddr,
    /// Base URL browsers and the platform use to reach the proxy (default: http://<listen>).
    #[arg(long, env = "QYS_PUBLIC_URL", global = true)]
    pub public_url: Option<String>,
    /// Platform base URL, e.g. https://openapi.qiyuesuo.cn. Unset: embedded sandbox.
    #[arg(long, env = "QYS_SERVER_URL", global = true)]
    pub server_url: Option<String>,
    /// Platform AppToken.
    #[arg(long, env = "QYS_ACCESS_TOKEN", hide_env_values = true, global = true)]
    pub access_token: Option<String>,
    /// Platform AppSecret (prefer QYS_ACCESS_SECRET_FILE).
    #[arg(long, env = "QYS_ACCESS_SECRET", hide_env_values = true, global = true)]
    pub access_secret: Option<String>,
    /// File holding the AppSecret.
    #[arg(long, env = "QYS_ACCESS_SECRET_FILE", global = true)]
    pub access_secret_file: Option<PathBuf>,
    /// Page origins allowed to call the proxy, comma-separated (the proxy's own is always allowed).
    #[arg(long, env = "QYS_ALLOWED_ORIGINS", value_delimiter = ',', global = true)]
    pub allowed_origins: Vec<String>,
    /// URL prefixes a browser-supplied callbackUrl must start with, comma-separated (default: none).
    #[arg(long, env = "QYS_CALLBACK_URL_ALLOWLIST", value_delimiter = ',', global = true)]
    pub callback_url_allowlist: Vec<String>,
    /// How iframe and redirect flows get their page URL (auto: ticket mode when a page-URL
    /// template is set or with the embedded sandbox, else the page-URL APIs).
    #[arg(long, env = "QYS_UPSTREAM_MODE", value_enum, default_value_t = Mode::Auto, global = true)]
    pub upstream_mode: Mode,
    /// Ticket mode: H5 page URL with {ticket} and {callbackPage} (sandbox default provided).
    #[arg(long, env = "QYS_PAGE_URL_TEMPLATE", global = true)]
    pub page_url_template: Option<String>,
    /// The mini-program plugin's environment sent with tickets (default: sandbox with the
    /// embedded sandbox, cn for a QYS_SERVER_URL host ending in .cn, else com).
    #[arg(long, env = "QYS_MINIPROGRAM_ENV", global = true)]
    pub miniprogram_env: Option<String>,
    /// Store of server callbacks: a file path (SQLite, one instance) or a postgres:// URL
    /// (PostgreSQL, shared by any number of instances).
    #[arg(long, env = "QYS_DATABASE", default_value = "qys-proxy.sqlite3", hide_env_values = true, global = true)]
    pub database: Database,
    // Server-callback storage limits (issue 8): per-source rate and retention.
    /// Server callbacks accepted per second from one address (IPv6: one /64), once its burst is
    /// spent; more get 429 and write nothing. The address is the client's that a reverse proxy in
    /// QYS_TRUSTED_PROXIES names (as for QYS_SDK_RATE). 0: no limit.
    #[arg(long, env = "QYS_CALLBACK_RATE", default_value_t = crate::store::quota::DEFAULT_PER_SECOND, global = true)]
    pub callback_rate: f64,
    /// Server callbacks one address may send at once (at least 4: the platform's tries of one callback).
    #[arg(long, env = "QYS_CALLBACK_BURST", default_value_t = crate::store::quota::DEFAULT_BURST, global = true)]
    pub callback_burst: u32,
    /// Flow starts, `outcome` calls and return-page confirmations (what spends the platform
    /// quota) accepted per second from one address (IPv6: one /64), once its burst is spent; more
    /// get 429 / 42900. Behind a reverse proxy in QYS_TRUSTED_PROXIES the address is the client's
    /// it names in X-Forwarded-For or X-Real-IP. 0: no limit.
    #[arg(long, env = "QYS_SDK_RATE", default_value_t = crate::proxy::DEFAULT_SDK_RATE, global = true)]
    pub sdk_rate: f64,
    /// Such requests one address may make at once (a new address starts with 10 and fills up at
    /// the rate; a loopback peer charged as itself starts full).
    #[arg(long, env = "QYS_SDK_BURST", default_value_t = crate::proxy::DEFAULT_SDK_BURST, global = true)]
    pub sdk_burst: u32,
    /// Reverse proxies and load balancers whose X-Forwarded-For (the right-most address not in
    /// this list) or else X-Real-IP names the client, for the per-address limits and the log:
    /// comma-separated addresses and CIDR blocks, or none. Any other peer is the client, whatever
    /// its headers say. Forwarded is not read. A forwarder on the host that does not append to
    /// X-Forwarded-For (frpc, stunnel, HAProxy in TCP mode) needs none.
    #[arg(long, env = "QYS_TRUSTED_PROXIES", default_value = crate::proxy::DEFAULT_TRUSTED_PROXIES, global = true)]
    pub trusted_proxies: String,
    /// Per instance: flows started per second at most, bursts as large, whatever their addresses
    /// (each flow start is a platform call); beyond, 429 / 42900.
    #[arg(long, env = "QYS_FLOW_START_RATE", default_value_t = crate::proxy::DEFAULT_FLOW_START_RATE, global = true)]
    pub flow_start_rate: u32,
    /// Days stored server callbacks, malformed-callback counters and samples are kept. A callback
    /// still to be forwarded is kept until it is delivered or parked as dead (then a retention
    /// period from parking).
    #[arg(long, env = "QYS_CALLBACK_RETENTION_DAYS", default_value_t = crate::store::DEFAULT_RETENTION_DAYS, global = true)]
    pub callback_retention_days: u32,
    /// Days after this version first started on the database (or the moment `callbacks
    /// require-sigs` set) during which a callback through an older version's URL, without `sig`,
    /// is still stored (at most 8 per flow): a company's manual review and the platform's retries.
    /// 0: never; at most 365.
    #[arg(long, env = "QYS_UNSIGNED_CALLBACK_DAYS", default_value_t = DEFAULT_UNSIGNED_CALLBACK_DAYS, global = true)]
    pub unsigned_callback_days: u32,
    /// Platform connect timeout in milliseconds.
    #[arg(long, env = "QYS_CONNECT_TIMEOUT_MS", default_value_t = 5_000, global = true)]
    pub connect_timeout_ms: u64,
    /// Platform total timeout in milliseconds.
    #[arg(long, env = "QYS_TIMEOUT_MS", default_value_t = 15_000, global = true)]
    pub timeout_ms: u64,
    /// Key of the return-page tokens (default: derived from the AppSecret). Share it across instances.
    #[arg(long, env = "QYS_STATE_KEY", hide_env_values = true, global = true)]
    pub state_key: Option<String>,
    /// Lifetime of a return-page token in seconds.
    #[arg(long, env = "QYS_RETURN_TOKEN_TTL", default_value_t = 1_800, global = true)]
    pub return_token_ttl: u64,
    /// Per instance: flows whose platform confirmation is kept (least recently used out first).
    #[arg(long, env = "QYS_CONFIRM_CACHE_ENTRIES", default_value_t = 10_000, global = true)]
    pub confirm_cache_entries: usize,
    /// Seconds a confirmation that is not a success (or that failed) is reused for its flow.
    #[arg(long, env = "QYS_CONFIRM_RECHECK_SECS", default_value_t = 5, global = true)]
    pub confirm_recheck_secs: u64,
    /// Per instance: confirmation calls per second at most (bursts as large), the return page's,
    /// `outcome`'s and the callback forwarder's together (the forwarder waits and leaves half the
    /// burst to the others: with QYS_FORWARD_URL, 1 is run as 2); beyond, 503.
    #[arg(long, env = "QYS_CONFIRM_RATE", default_value_t = 20, global = true)]
    pub confirm_rate: u32,
    /// SDK endpoint path.
    #[arg(long, env = "QYS_PROXY_PATH", default_value = "/qys/proxy", global = true)]
    pub proxy_path: String,
    /// Return page path.
    #[arg(long, env = "QYS_RETURN_PATH", default_value = "/qys/return", global = true)]
    pub return_path: String,
    /// Personal-auth server callback path.
    #[arg(long, env = "QYS_PERSONAL_CALLBACK_PATH", default_value = "/qys/callback/personal-auth", global = true)]
    pub personal_callback_path: String,
    /// Company-auth server callback path.
    #[arg(long, env = "QYS_COMPANY_CALLBACK_PATH", default_value = "/qys/callback/company-auth", global = true)]
    pub company_callback_path: String,
    /// Directory served at / (the demo page), if it exists.
    #[arg(long, env = "QYS_WWW_DIR", default_value = "www", global = true)]
    pub www_dir: PathBuf,
    /// Directory served at /js (the shipped files: classic script, ES module, .wasm), if it exists.
    #[arg(long, env = "QYS_JS_DIR", default_value = "dist", global = true)]
    pub js_dir: PathBuf,
    /// Sandbox listen address.
    #[arg(long, env = "QYS_SANDBOX_LISTEN", default_value = "127.0.0.1:8081", global = true)]
    pub sandbox_listen: SocketAddr,
    /// Sandbox fixtures (JSON; default: built-in).
    #[arg(long, env = "QYS_SANDBOX_FIXTURES", global = true)]
    pub sandbox_fixtures: Option<PathBuf>,
    /// Sandbox pause before the third server-callback try, in milliseconds.
    #[arg(long, env = "QYS_SANDBOX_RETRY_DELAY_MS", default_value_t = 60_000, global = true)]
    pub sandbox_retry_delay_ms: u64,
    /// Origins the sandbox's H5 pages may redirect to when they finish (callbackPage),
    /// comma-separated exact origins. Default: http loopback (127.0.0.0/8, localhost, [::1]) for
    /// `qys-proxy sandbox`; the proxy's own origin (plus these) for the embedded sandbox.
    #[arg(long, env = "QYS_SANDBOX_CALLBACK_ORIGINS", value_delimiter = ',', global = true)]
    pub sandbox_callback_origins: Vec<String>,
    /// Forwarding to the integrator's backend (issue 9): QYS_FORWARD_URL, QYS_FORWARD_SECRET, QYS_FORWARD_*.
    #[command(flatten)]
    pub forward: crate::forward::ForwardArgs,
    /// Connection limits: QYS_HEADER_TIMEOUT_MS, QYS_REQUEST_TIMEOUT_MS, QYS_IDLE_TIMEOUT_MS, QYS_MAX_CONNECTIONS.
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the sandbox platform alone (credentials from QYS_ACCESS_TOKEN / QYS_ACCESS_SECRET).
    Sandbox,
    /// The server-callback outbox: `list [--dead|--pending|--delivered]`, `show <id>`, `replay <id>|--dead`,
    /// `abandon <id>|--pending`;
    /// `require-sigs --at <now|RFC 3339> [--force]` after a rolling upgrade from a version without `sig`.
    #[command(subcommand)]
    Callbacks(crate::forward::admin::CallbacksCommand),
}

/// Upstream modes of iframe and redirect flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Ticket mode when a page-URL template is known (set, or the embedded sandbox's), else
    /// the page-URL APIs: server URL and credentials alone give a working proxy.
    Auto,
    /// Ticket exchange + page-URL template.
    Ticket,
    /// The platform's page-URL APIs.
    PageUrl,
}

/// Default `QYS_UNSIGNED_CALLBACK_DAYS`: a company's manual review takes days, the platform's
/// retries a minute.
pub const DEFAULT_UNSIGNED_CALLBACK_DAYS: u32 = 14;

/// The mini-program plugin environments: production, the test platform, this sandbox. The host
/// page (`miniprogram/pages/qys/qys.js`) refuses any other.
pub const MINIPROGRAM_ENVS: [&str; 3] = ["com", "cn", "sandbox"];

/// The plugin environment for a platform at `platform_url`: the sandbox's own, `cn` for the
/// test platform (`…qiyuesuo.cn`), else production's `com`.
pub fn default_miniprogram_env(platform_url: &str, embedded_sandbox: bool) -> &'static str {
    let host = url::Url::parse(platform_url).ok().and_then(|u| u.host_str().map(str::to_ascii_lowercase));
    match host {
        _ if embedded_sandbox => "sandbox",
        Some(host) if host.trim_end_matches('.').ends_with(".cn") => "cn",
        _ => "com",
    }
}

/// Sandbox page URL template used when the embedded sandbox is the platform.
pub fn sandbox_template(sandbox_url: &str) -> String {
    format!("{sandbox_url}/h5?ticket={{ticket}}&callbackPage={{callbackPage}}")
}

impl Cli {
    /// The AppSecret from the flag/env or its file; an error says what to fix.
    pub fn secret(&self) -> Result<Option<Secret>, String> {
        match (&self.access_secret, &self.access_secret_file) {
            (Some(_), Some(_)) => Err("set QYS_ACCESS_SECRET or QYS_ACCESS_SECRET_FILE, not both".into()),
            (Some(s), None) if s.is_empty() => Err("QYS_ACCESS_SECRET is empty".into()),
            (Some(s), None) => Ok(Some(Secret::new(s.clone()))),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read QYS_ACCESS_SECRET_FILE {}: {e}", path.display()))?;
                let secret = text.trim_end_matches(['\r', '\n']);
                if secret.is_empty() {
                    return Err(format!("QYS_ACCESS_SECRET_FILE {} is empty", path.display()));
                }
                Ok(Some(Secret::new(secret)))
            }
            (None, None) => Ok(None),
        }
    }

    /// Credentials required for the platform or a stand-alone sandbox.
    pub fn credentials(&self, why: &str) -> Result<(String, Secret), String> {
        let token = self.access_token.clone().filter(|t| !t.is_empty());
        match (token, self.secret()?) {
            (Some(token), Some(secret)) => Ok((token, secret)),
            (None, _) => Err(format!("QYS_ACCESS_TOKEN is required {why}")),
            (_, None) => Err(format!("QYS_ACCESS_SECRET or QYS_ACCESS_SECRET_FILE is required {why}")),
        }
    }

    /// Sandbox settings for a sandbox reachable at `public_url`.
    pub fn sandbox_config(&self, token: String, secret: Secret, public_url: String) -> Result<SandboxConfig, String> {
        let mut cfg = SandboxConfig::new(token, secret, public_url);
        if let Some(path) = &self.sandbox_fixtures {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read QYS_SANDBOX_FIXTURES {}: {e}", path.display()))?;
            cfg.fixtures = serde_json::from_str::<Fixtures>(&text)
                .map_err(|e| format!("QYS_SANDBOX_FIXTURES {} is not valid: {e}", path.display()))?;
        }
        cfg.callback_retry_delay = Duration::from_millis(self.sandbox_retry_delay_ms);
        cfg.callback_origins = self.sandbox_callback_origins(None)?;
        Ok(cfg)
    }

    /// `QYS_SANDBOX_CALLBACK_ORIGINS`, plus the origin of `proxy_url` for an embedded sandbox;
    /// with neither, http loopback.
    pub fn sandbox_callback_origins(&self, proxy_url: Option<&str>) -> Result<CallbackOrigins, String> {
        let mut exact = Vec::new();
        for entry in self.sandbox_callback_origins.iter().map(|o| o.trim()).filter(|o| !o.is_empty()) {
            let origin = CallbackOrigins::origin_of(entry)
                .map_err(|why| format!("QYS_SANDBOX_CALLBACK_ORIGINS entry {entry:?} {why}"))?;
            exact.push(origin);
        }
        if let Some(proxy_url) = proxy_url {
            let url = url::Url::parse(proxy_url).map_err(|e| format!("proxy URL {proxy_url:?}: {e}"))?;
            exact.push(url.origin().ascii_serialization());
        }
        Ok(if exact.is_empty() { CallbackOrigins::default() } else { CallbackOrigins { loopback: false, exact } })
    }

    /// Proxy settings; `platform_url` is the platform (or embedded sandbox) base URL and
    /// `bound` the address the proxy listener actually got.
    pub fn proxy_config(
        &self,
        platform_url: &str,
        token: &str,
        secret: Secret,
        bound: SocketAddr,
        embedded_sandbox: bool,
    ) -> Result<ProxyConfig, String> {
        let public_url = match &self.public_url {
            Some(u) => check_base_url("QYS_PUBLIC_URL", u)?,
            None => format!("http://{bound}"),
        };
        let mut allowed_origins = Vec::new();
        for origin in self.allowed_origins.iter().map(|o| o.trim()).filter(|o| !o.is_empty()) {
            if origin.contains('*') {
                return Err(format!("QYS_ALLOWED_ORIGINS entry {origin:?} must be an exact origin, not a wildcard"));
            }
            let parsed = url::Url::parse(origin)
                .map_err(|_| format!("QYS_ALLOWED_ORIGINS entry {origin:?} is not an origin like https://shop.example"))?;
            let canonical = parsed.origin().ascii_serialization();
            if canonical != origin.trim_end_matches('/') {
                return Err(format!(
                    "QYS_ALLOWED_ORIGINS entry {origin:?} must be an exact origin (scheme://host[:port]) without a path"
                ));
            }
            allowed_origins.push(canonical);
        }
        // Kept in the normalised form callback URLs are checked in (one function for both).
        let mut callback_url_allowlist = Vec::new();
        for prefix in self.callback_url_allowlist.iter().map(|p| p.trim()).filter(|p| !p.is_empty()) {
            let entry = callback_allowlist_entry(prefix)
                .map_err(|why| format!("QYS_CALLBACK_URL_ALLOWLIST entry {prefix:?} {why}"))?;
            callback_url_allowlist.push(entry.into());
        }
        let template = match (&self.page_url_template, embedded_sandbox) {
            (Some(t), _) => Some(t.clone()),
            (None, true) => Some(sandbox_template(platform_url)),
            (None, false) => None,
        };
        let upstream_mode = match (self.upstream_mode, template) {
            (Mode::PageUrl, _) | (Mode::Auto, None) => UpstreamMode::PageUrl,
            (Mode::Ticket, None) => {
                return Err("QYS_PAGE_URL_TEMPLATE is required with QYS_UPSTREAM_MODE=ticket and a real platform \
                            (or leave QYS_UPSTREAM_MODE at auto to use the page-URL APIs)"
                    .into())
            }
            (Mode::Ticket | Mode::Auto, Some(template)) => {
                if !template.contains("{ticket}") || url::Url::parse(&template.replace(['{', '}'], "")).is_err() {
                    return Err("QYS_PAGE_URL_TEMPLATE must be an absolute URL containing {ticket}".into());
                }
                UpstreamMode::Ticket { template }
            }
        };
        let miniprogram_env = match &self.miniprogram_env {
            Some(env) => env.clone(),
            None => default_miniprogram_env(platform_url, embedded_sandbox).to_owned(),
        };
        if !MINIPROGRAM_ENVS.contains(&miniprogram_env.as_str()) {
            return Err(format!(
                "QYS_MINIPROGRAM_ENV {miniprogram_env:?} must be one of {} (the environments the mini-program \
                 host page accepts)",
                MINIPROGRAM_ENVS.join(", ")
            ));
        }
        for (name, path) in [
            ("QYS_PROXY_PATH", &self.proxy_path),
            ("QYS_RETURN_PATH", &self.return_path),
            ("QYS_PERSONAL_CALLBACK_PATH", &self.personal_callback_path),
            ("QYS_COMPANY_CALLBACK_PATH", &self.company_callback_path),
        ] {
            if !path.starts_with('/') || path.contains(['?', '#', '{', '}']) {
                return Err(format!("{name} must be a plain path starting with /"));
            }
        }
        if self.connect_timeout_ms == 0 || self.timeout_ms == 0 || self.return_token_ttl == 0 {
            return Err("timeouts and QYS_RETURN_TOKEN_TTL must be greater than 0".into());
        }
        if self.confirm_cache_entries == 0 || self.confirm_rate == 0 || self.flow_start_rate == 0 {
            return Err("QYS_CONFIRM_CACHE_ENTRIES, QYS_CONFIRM_RATE and QYS_FLOW_START_RATE must be greater than 0".into());
        }
        // At 1 the forwarder keeps no call for the return page and `outcome` (it would get none
        // itself), so a backlog of callbacks would keep them busy until it has drained; at 2 one
        // call is theirs. Raised rather than refused, so a setting that started before still starts.
        let confirm_rate = if self.confirm_rate < 2 && self.forward_settings()?.is_some() {
            tracing::warn!(
                "QYS_CONFIRM_RATE=1 is run as 2 because QYS_FORWARD_URL is set: at 1 the forwarder could keep \
                 no confirmation call for the return page and `outcome`, so a backlog of callbacks would make \
                 them busy until it has drained. Set QYS_CONFIRM_RATE=2 (or more) to silence this warning"
            );
            2
        } else {
            self.confirm_rate
        };
        let confirm_limits = crate::proxy::ConfirmLimits {
            entries: self.confirm_cache_entries,
            recheck: Duration::from_secs(self.confirm_recheck_secs),
            per_second: confirm_rate,
        };
        if self.unsigned_callback_days > MAX_UNSIGNED_CALLBACK_DAYS {
            return Err(format!("QYS_UNSIGNED_CALLBACK_DAYS must be between 0 and {MAX_UNSIGNED_CALLBACK_DAYS}"));
        }
        let unsigned_callback_window = Duration::from_secs(u64::from(self.unsigned_callback_days) * 86_400);
        let store = self.callback_store()?;
        let sigs_required_since =
            store.require_sigs().map_err(|e| format!("cannot read or record when callback URLs began to carry sig: {e}"))?;
        let window_ms = i64::try_from(unsigned_callback_window.as_millis()).unwrap_or(i64::MAX);
        if window_ms > 0 && crate::store::now() < sigs_required_since.saturating_add(window_ms) {
            tracing::info!(
                "callbacks through URLs without sig (flows started before {}) are stored until {} (QYS_UNSIGNED_CALLBACK_DAYS)",
                crate::forward::admin::iso(sigs_required_since),
                crate::forward::admin::iso(sigs_required_since.saturating_add(window_ms)),
            );
        }
        let sdk_limit = crate::proxy::sdk_limit(self.sdk_rate, self.sdk_burst)?;
        let trusted_proxies = TrustedProxies::parse(&self.trusted_proxies).map_err(|e| e.to_string())?;
        // Said at start: the default trusts anything on the host, which a forwarder there that does
        // not append to X-Forwarded-For turns into "any client picks its address".
        tracing::info!(
            "X-Forwarded-For and X-Real-IP name the client only from QYS_TRUSTED_PROXIES: {trusted_proxies} \
             (a forwarder there must append to X-Forwarded-For; one that does not, such as frpc, stunnel \
             or HAProxy in TCP mode, needs QYS_TRUSTED_PROXIES=none)"
        );
        let token_key = match &self.state_key {
            Some(k) if k.len() < 32 => return Err("QYS_STATE_KEY must be at least 32 characters".into()),
            Some(k) => TokenKey::new(k.as_bytes()),
            None => TokenKey::derive_from_secret(secret.expose()),
        };
        let static_dirs = [("/js", &self.js_dir), ("/", &self.www_dir)]
            .into_iter()
            .filter(|(_, dir)| dir.is_dir())
            .map(|(mount, dir)| (mount.to_owned(), dir.clone()))
            .collect();
        Ok(ProxyConfig {
            public_url,
            platform: Platform::new(
                platform_url,
                token,
                secret,
                Duration::from_millis(self.connect_timeout_ms),
                Duration::from_millis(self.timeout_ms),
            )
            .with_confirm_limits(confirm_limits),
            upstream_mode,
            miniprogram_env,
            allowed_origins,
            callback_url_allowlist,
            token_key,
            token_ttl: Duration::from_secs(self.return_token_ttl),
            paths: Paths {
                proxy: self.proxy_path.clone(),
                return_page: self.return_path.clone(),
                personal_callback: self.personal_callback_path.clone(),
                company_callback: self.company_callback_path.clone(),
            },
            store,
            unsigned_callback_window,
            sdk_limit,
            flow_start_rate: self.flow_start_rate,
            trusted_proxies,
            static_dirs,
        })
    }
}

impl Cli {
    /// The callback store of `QYS_DATABASE` with its rate limit, its retention sweep started
    /// (now, then hourly, until the store is dropped).
    pub fn callback_store(&self) -> Result<CallbackStore, String> {
        let limit = RateLimit::new(self.callback_rate, self.callback_burst)
            .map_err(|e| format!("QYS_CALLBACK_RATE / QYS_CALLBACK_BURST: {e}"))?;
        if !(1..=36_500).contains(&self.callback_retention_days) {
            return Err("QYS_CALLBACK_RETENTION_DAYS must be between 1 and 36500".into());
        }
        let forwarding = self.forward_settings()?.is_some();
        let store = self.database.open()?.with_rate_limit(limit).with_forwarding(forwarding);
        if !forwarding {
            warn_of_unforwarded(&store);
        }
        let retention = Duration::from_secs(u64::from(self.callback_retention_days) * 86_400);
        store
            .spawn_sweeper(retention, crate::store::SWEEP_EVERY)
            .map_err(|e| format!("cannot start the callback retention sweep: {e}"))?;
        Ok(store)
    }
}

/// Warns when callbacks wait to be forwarded while forwarding is off (`QYS_FORWARD_URL` was
/// removed): the retention sweep keeps them, personal data included, however old.
fn warn_of_unforwarded(store: &CallbackStore) {
    match store.backend().outbox_counts() {
        Ok(counts) if counts.pending > 0 => tracing::warn!(
            pending = counts.pending,
            "{} stored callbacks are waiting to be forwarded, but QYS_FORWARD_URL is not set: they are kept \
             past QYS_CALLBACK_RETENTION_DAYS until they are forwarded or parked. Set QYS_FORWARD_URL and \
             QYS_FORWARD_SECRET again to deliver them (`qys-proxy callbacks list --pending` lists them), or give them up \
             with `qys-proxy callbacks abandon --pending` (the sweep then removes them)",
            counts.pending
        ),
        Ok(_) => {}
        Err(e) => tracing::error!(error = %e, "could not count the callbacks waiting to be forwarded"),
    }
}

// QYS_DATABASE (issue 9): a path (SQLite) or a postgres:// URL (PostgreSQL).

/// `QYS_DATABASE` as given: a file path (SQLite) or a `postgres://` / `postgresql://` URL
/// (PostgreSQL). Its `Debug` and [`display`](Self::display) never show a password, nor do the
/// errors of [`open`](Self::open).
#[derive(Clone)]
pub struct Database(std::ffi::OsString);

impl From<std::ffi::OsString> for Database {
    fn from(value: std::ffi::OsString) -> Self {
        Self(value)
    }
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Database({})", self.display())
    }
}

impl Database {
    /// The PostgreSQL URL, if it is one (`Err`: it looks like one but does not parse).
    pub fn postgres(&self) -> Option<Result<crate::store::postgres::PgUrl, String>> {
        let s = self.0.to_str().filter(|s| crate::store::postgres::PgUrl::is_postgres(s))?;
        Some(crate::store::postgres::PgUrl::parse(s))
    }

    /// How to name it in messages: the path, or the URL without its password.
    pub fn display(&self) -> String {
        match self.postgres() {
            Some(Ok(url)) => url.to_string(),
            Some(Err(_)) => "postgres://(invalid URL)".into(),
            None => std::path::Path::new(&self.0).display().to_string(),
        }
    }

    /// Opens the store (SQLite file created if missing; PostgreSQL schema migrated), with the
    /// default rate limit and no sweeper.
    pub fn open(&self) -> Result<CallbackStore, String> {
        let cannot = |e: crate::store::StoreError| format!("cannot open QYS_DATABASE {}: {e}", self.display());
        match self.postgres() {
            Some(Err(e)) => Err(format!("QYS_DATABASE: {e}")),
            Some(Ok(url)) => {
                let backend = crate::store::postgres::PostgresBackend::open(&url).map_err(cannot)?;
                Ok(CallbackStore::new(std::sync::Arc::new(backend), RateLimit::default()))
            }
            None => CallbackStore::open(std::path::Path::new(&self.0)).map_err(cannot),
        }
    }
}

/// Checks an absolute http(s) URL and returns it without a trailing slash.
pub fn check_base_url(name: &str, value: &str) -> Result<String, String> {
    match url::Url::parse(value) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
            Ok(value.trim_end_matches('/').to_owned())
        }
        _ => Err(format!("{name} {value:?} must be an absolute http(s) URL")),
    }
}

// Connection limits (issue 8): how long a client may take and how many may be connected.

/// Longest `QYS_HEADER_TIMEOUT_MS`: a client that sends nothing holds a connection this long.
pub const MAX_HEADER_TIMEOUT_MS: u64 = 10_000;
/// Shortest `QYS_HEADER_TIMEOUT_MS`: a real client on a slow link needs a moment for its headers.
pub const MIN_HEADER_TIMEOUT_MS: u64 = 100;
/// How much longer than the platform timeout `QYS_REQUEST_TIMEOUT_MS` must be, so that a slow
/// platform is answered 50400 rather than cut off with 408.
pub const REQUEST_TIMEOUT_MARGIN_MS: u64 = 1_000;
/// Largest `QYS_MAX_CONNECTIONS`.
pub const MAX_CONNECTIONS_LIMIT: usize = 1_000_000;

/// How long a client may take and how many may be connected, per listener (proxy and sandbox).
#[derive(Debug, clap::Args)]
pub struct LimitArgs {
    /// Milliseconds a client has to send a request's headers, from connecting or from the previous
    /// answer (so also how long an idle keep-alive connection stays open); also the longest pause
    /// allowed inside a request body (then 408). 100–10000.
    #[arg(long, env = "QYS_HEADER_TIMEOUT_MS", default_value_t = 10_000, global = true)]
    pub header_timeout_ms: u64,
    /// Milliseconds from a request's headers to its answer, body and platform call included (then
    /// 408); at least QYS_TIMEOUT_MS + 1000.
    #[arg(long, env = "QYS_REQUEST_TIMEOUT_MS", default_value_t = 30_000, global = true)]
    pub request_timeout_ms: u64,
    /// Milliseconds after which a connection on which nothing is read or written is closed (a
    /// client that stopped reading an answer); more than QYS_REQUEST_TIMEOUT_MS.
    #[arg(long, env = "QYS_IDLE_TIMEOUT_MS", default_value_t = 60_000, global = true)]
    pub idle_timeout_ms: u64,
    /// Connections open at once per listener; more are refused (closed at once, one warning per
    /// 10 s). Keep it well under the open-files limit (`ulimit -n`).
    #[arg(long, env = "QYS_MAX_CONNECTIONS", default_value_t = 768, global = true)]
    pub max_connections: usize,
}

impl Cli {
    /// The listeners' limits, checked against each other and against `QYS_TIMEOUT_MS`.
    pub fn server_limits(&self) -> Result<crate::ServerLimits, String> {
        let l = &self.limits;
        if !(MIN_HEADER_TIMEOUT_MS..=MAX_HEADER_TIMEOUT_MS).contains(&l.header_timeout_ms) {
            return Err(format!(
                "QYS_HEADER_TIMEOUT_MS must be between {MIN_HEADER_TIMEOUT_MS} and {MAX_HEADER_TIMEOUT_MS} \
                 (got {}): a client that sends nothing holds a connection this long",
                l.header_timeout_ms
            ));
        }
        if l.request_timeout_ms < self.timeout_ms.saturating_add(REQUEST_TIMEOUT_MARGIN_MS) {
            return Err(format!(
                "QYS_REQUEST_TIMEOUT_MS ({}) must be at least QYS_TIMEOUT_MS ({}) + {REQUEST_TIMEOUT_MARGIN_MS}, \
                 so that a slow platform is answered 50400 instead of being cut off with 408",
                l.request_timeout_ms, self.timeout_ms
            ));
        }
        if l.idle_timeout_ms <= l.request_timeout_ms {
            return Err(format!(
                "QYS_IDLE_TIMEOUT_MS ({}) must be greater than QYS_REQUEST_TIMEOUT_MS ({}): \
                 a connection waiting for its answer moves no bytes meanwhile",
                l.idle_timeout_ms, l.request_timeout_ms
            ));
        }
        if !(1..=MAX_CONNECTIONS_LIMIT).contains(&l.max_connections) {
            return Err(format!(
                "QYS_MAX_CONNECTIONS must be between 1 and {MAX_CONNECTIONS_LIMIT} (got {})",
                l.max_connections
            ));
        }
        Ok(crate::ServerLimits {
            header_timeout: Duration::from_millis(l.header_timeout_ms),
            request_timeout: Duration::from_millis(l.request_timeout_ms),
            idle_timeout: Duration::from_millis(l.idle_timeout_ms),
            max_connections: l.max_connections,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("qys-proxy").chain(args.iter().copied())).unwrap()
    }

    fn upstream(args: &[&str], embedded: bool) -> Result<UpstreamMode, String> {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db.sqlite3");
        let mut all = vec!["--database", db.to_str().unwrap()];
        all.extend_from_slice(args);
        let bound = "127.0.0.1:1".parse().unwrap();
        cli(&all).proxy_config("https://openapi.example", "t", Secret::new("s"), bound, embedded).map(|c| c.upstream_mode)
    }

    #[test]
    fn mini_program_env_follows_the_platform() {
        assert_eq!(default_miniprogram_env("https://openapi.qiyuesuo.cn", false), "cn");
        assert_eq!(default_miniprogram_env("HTTPS://OPENAPI.QIYUESUO.CN.", false), "cn");
        assert_eq!(default_miniprogram_env("https://openapi.qiyuesuo.com", false), "com");
        assert_eq!(default_miniprogram_env("https://cn.example.org", false), "com");
        assert_eq!(default_miniprogram_env("http://127.0.0.1:8081", true), "sandbox");
    }

    #[test]
    fn mini_program_env_is_one_the_host_page_accepts() {
        let env = |value: &str| {
            let dir = tempfile::tempdir().unwrap();
            let db = dir.path().join("db.sqlite3");
            let args = ["--database", db.to_str().unwrap(), "--miniprogram-env", value];
            let bound = "127.0.0.1:1".parse().unwrap();
            cli(&args).proxy_config("https://openapi.example", "t", Secret::new("s"), bound, false).map(|c| c.miniprogram_env)
        };
        for accepted in MINIPROGRAM_ENVS {
            assert_eq!(env(accepted).as_deref(), Ok(accepted));
        }
        for refused in ["", "Com", "com ", "test", "prod", "sandbox-2", "cn\n"] {
            let error = env(refused).unwrap_err();
            assert!(error.contains("must be one of com, cn, sandbox"), "{refused:?}: {error}");
        }
    }

    #[test]
    fn sandbox_callback_origins_default_to_loopback_alone_and_to_the_proxy_embedded() {
        let alone = cli(&[]).sandbox_callback_origins(None).unwrap();
        assert_eq!(alone, CallbackOrigins::default());
        let embedded = cli(&[]).sandbox_callback_origins(Some("https://proxy.example/base")).unwrap();
        assert_eq!(embedded, CallbackOrigins { loopback: false, exact: vec!["https://proxy.example".into()] });
        let listed = cli(&["--sandbox-callback-origins", "https://a.example, http://127.0.0.1:9/"]);
        assert_eq!(listed.sandbox_callback_origins(None).unwrap().exact, ["https://a.example", "http://127.0.0.1:9"]);
        let both = listed.sandbox_callback_origins(Some("http://127.0.0.1:8080")).unwrap();
        assert_eq!(both.exact, ["https://a.example", "http://127.0.0.1:9", "http://127.0.0.1:8080"]);
        assert!(!both.loopback);
        for bad in ["https://a.example/path", "*", "javascript:alert(1)", "https://u@a.example"] {
            let error = cli(&["--sandbox-callback-origins", bad]).sandbox_callback_origins(None).unwrap_err();
            assert!(error.starts_with("QYS_SANDBOX_CALLBACK_ORIGINS entry"), "{bad}: {error}");
        }
    }

    #[test]
    fn unsigned_callback_days_are_checked() {
        let window = |days: &str| {
            let dir = tempfile::tempdir().unwrap();
            let db = dir.path().join("db.sqlite3");
            let args = ["--database", db.to_str().unwrap(), "--unsigned-callback-days", days];
            let bound = "127.0.0.1:1".parse().unwrap();
            cli(&args).proxy_config("https://openapi.example", "t", Secret::new("s"), bound, false).map(|c| c.unsigned_callback_window)
        };
        assert_eq!(window("0"), Ok(Duration::ZERO));
        assert_eq!(window("365"), Ok(Duration::from_secs(365 * 86_400)));
        assert!(window("366").unwrap_err().contains("QYS_UNSIGNED_CALLBACK_DAYS must be between 0 and 365"));
    }

    #[test]
    fn auto_mode_uses_tickets_only_with_a_template() {
        let template = "--page-url-template=https://h5.example/sdk?ticket={ticket}";
        assert_eq!(upstream(&[], false), Ok(UpstreamMode::PageUrl));
        assert_eq!(
            upstream(&[template], false),
            Ok(UpstreamMode::Ticket { template: "https://h5.example/sdk?ticket={ticket}".into() })
        );
        assert!(matches!(upstream(&[], true), Ok(UpstreamMode::Ticket { template }) if template.starts_with("https://openapi.example/h5?")));
        assert_eq!(upstream(&["--upstream-mode=page-url", template], false), Ok(UpstreamMode::PageUrl));
        assert!(upstream(&["--upstream-mode=ticket"], false).unwrap_err().contains("QYS_PAGE_URL_TEMPLATE is required"));
    }
}
