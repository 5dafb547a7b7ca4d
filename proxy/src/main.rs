//! `qys-proxy` binary: proxy + embedded sandbox by default, or `qys-proxy sandbox`.

use std::io::{IsTerminal, Write};

use clap::Parser;
use qys_proxy::cli::{check_base_url, Cli, Command};
use qys_proxy::{proxy, sandbox, spawn_server_with, Secret, ServerLimits};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    if let Err(message) = run(Cli::parse()).await {
        eprintln!("qys-proxy: {message}");
        std::process::exit(2);
    }
}

async fn bind(name: &str, addr: std::net::SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr} ({name}): {e}"))
}

fn announce(line: String) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Files the process needs besides its client connections: listeners, platform connections, the
/// database, static files.
const FILES_BESIDES_CONNECTIONS: u64 = 128;

/// The soft limit on open files, where the system says it (Linux); `None` if unknown or unlimited.
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find_map(|l| l.strip_prefix("Max open files"))?;
    line.split_whitespace().next()?.parse().ok()
}

/// Raises the soft limit on open files to the hard one, so a low default `ulimit -n` (often
/// 1,024) does not cap the connections before `QYS_MAX_CONNECTIONS` does; logs the limit once.
#[cfg(unix)]
fn raise_open_files_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: both calls only read or write the `rlimit` passed, which outlives them.
    let raised = unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return;
        }
        let raised = limit.rlim_cur < limit.rlim_max
            && libc::setrlimit(libc::RLIMIT_NOFILE, &libc::rlimit { rlim_cur: limit.rlim_max, ..limit }) == 0;
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return;
        }
        raised
    };
    let shown = |n: libc::rlim_t| if n == libc::RLIM_INFINITY { "unlimited".to_owned() } else { n.to_string() };
    tracing::info!(
        "open files: at most {} (ulimit -n{}; hard limit {})",
        shown(limit.rlim_cur),
        if raised { ", raised to the hard limit" } else { "" },
        shown(limit.rlim_max)
    );
}

#[cfg(not(unix))]
fn raise_open_files_limit() {}

/// Warns when `QYS_MAX_CONNECTIONS` on each of `listeners` does not fit the open-files limit:
/// the process would run out of files (and stop accepting) before it refuses connections.
fn check_open_files(limits: &ServerLimits, listeners: u64) {
    let needed = listeners * limits.max_connections as u64 + FILES_BESIDES_CONNECTIONS;
    if let Some(allowed) = open_files_limit().filter(|&allowed| allowed < needed) {
        tracing::warn!(
            "QYS_MAX_CONNECTIONS={} on {listeners} listener(s) needs about {needed} open files but only {allowed} are \
             allowed (ulimit -n): raise the limit or lower QYS_MAX_CONNECTIONS",
            limits.max_connections
        );
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    if let Some(Command::Callbacks(command)) = &cli.command {
        return qys_proxy::forward::admin::run(&cli, command);
    }
    let limits = cli.server_limits()?;
    raise_open_files_limit();
    // The proxy's, and the embedded sandbox's when there is no QYS_SERVER_URL, each up to the cap.
    let listeners = match (&cli.command, &cli.server_url) {
        (Some(Command::Sandbox), _) | (_, Some(_)) => 1,
        _ => 2,
    };
    check_open_files(&limits, listeners);
    tracing::info!(
        "connections: headers within {} ms, answers within {} ms, idle for at most {} ms, at most {} at once",
        limits.header_timeout.as_millis(),
        limits.request_timeout.as_millis(),
        limits.idle_timeout.as_millis(),
        limits.max_connections
    );
    let mut tasks = Vec::new();
    if matches!(cli.command, Some(Command::Sandbox)) {
        let (token, secret) = cli.credentials("to run the sandbox alone")?;
        let listener = bind("sandbox", cli.sandbox_listen).await?;
        let url = format!("http://{}", listener.local_addr().map_err(|e| e.to_string())?);
        let cfg = cli.sandbox_config(token, secret, url.clone())?;
        tasks.push(spawn_server_with(listener, sandbox::router(cfg), limits));
        announce(format!("sandbox platform: {url}"));
    } else {
        let mut embedded_sandbox = None;
        let (platform_url, token, secret, embedded) = match &cli.server_url {
            Some(server) => {
                let server = check_base_url("QYS_SERVER_URL", server)?;
                let (token, secret) = cli.credentials("when QYS_SERVER_URL is set")?;
                (server, token, secret, false)
            }
            None => {
                let (token, secret) = match cli.credentials("") {
                    Ok(given) => given,
                    Err(_) if cli.access_token.is_none() && cli.secret()?.is_none() => (
                        format!("dev-{}", uuid::Uuid::new_v4().simple()),
                        Secret::new(uuid::Uuid::new_v4().simple().to_string()),
                    ),
                    Err(e) => return Err(e),
                };
                let listener = bind("sandbox", cli.sandbox_listen).await?;
                let url = format!("http://{}", listener.local_addr().map_err(|e| e.to_string())?);
                let cfg = cli.sandbox_config(token.clone(), secret.clone(), url.clone())?;
                embedded_sandbox = Some((listener, cfg)); // served once the proxy's origin is known
                announce(format!("sandbox platform: {url}"));
                (url, token, secret, true)
            }
        };
        let listener = bind("proxy", cli.listen).await?;
        let bound = listener.local_addr().map_err(|e| e.to_string())?;
        let cfg = cli.proxy_config(&platform_url, &token, secret, bound, embedded)?;
        if let Some(forward) = cli.forward_settings()? {
            tasks.push(qys_proxy::forward::spawn(forward, cfg.store.clone(), cfg.platform.clone(), cfg.token_key.clone()));
        }
        let (public_url, endpoint) = (cfg.public_url.clone(), cfg.paths.proxy.clone());
        let has_www = cfg.static_dirs.iter().any(|(mount, _)| mount == "/");
        if let Some((listener, mut sandbox_cfg)) = embedded_sandbox {
            // The embedded sandbox's pages redirect only to the proxy (its return page).
            sandbox_cfg.callback_origins = cli.sandbox_callback_origins(Some(&public_url))?;
            tasks.push(spawn_server_with(listener, sandbox::router(sandbox_cfg), limits));
        }
        tasks.push(spawn_server_with(listener, proxy::router(cfg), limits));
        announce(format!("proxy: {public_url} (SDK endpoint POST {endpoint})"));
        if has_www {
            announce(format!("demo page: {public_url}/"));
        }
    }
    tokio::select! {
        _ = tokio::signal::ctrl_c() => Ok(()),
        _ = futures_all(tasks) => Err("a server stopped".into()),
    }
}

async fn futures_all(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for task in tasks {
        let _ = task.await;
    }
}
