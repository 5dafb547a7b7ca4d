//! The `qys-proxy` binary as a child process: started with a clean environment, its announce
//! line read from stdout, everything it prints (stdout and stderr) collected into a log, and
//! killed when the handle drops.
//!
//! Declared from `common/mod.rs` (`common::binary`); tests without `mod common` include it with
//! `#[path = "common/binary.rs"] mod binary;`. `QYS_PROXY_BIN` runs another binary than cargo's.
#![allow(dead_code)]

use std::any::Any;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A started binary; killed (and reaped) on drop.
pub struct Running {
    pub child: Child,
    /// The URL after the announce label.
    pub url: String,
    /// Everything the binary printed so far, stdout and stderr.
    pub log: Arc<Mutex<String>>,
    /// Kept alive until the child is killed (a temporary directory holding its database).
    keep: Vec<Box<dyn Any + Send>>,
}

impl Running {
    /// The captured log once `ready` holds for it, or after 10 s (the caller's asserts then say
    /// what is missing): no sleep that a loaded machine could outlast.
    pub fn log_when(&self, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log.lock().unwrap().clone();
            if ready(&log) || Instant::now() > deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Keeps `value` until the child has been killed.
    pub fn keep(mut self, value: impl Any + Send) -> Self {
        self.keep.push(Box::new(value));
        self
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `qys-proxy args…` (cargo's binary, or `QYS_PROXY_BIN`'s) with `RUST_LOG=rust_log` and `env`
/// only (a variable of `env` overrides `RUST_LOG`).
pub fn command(rust_log: &str, args: &[&str], env: &[(&str, &str)]) -> Command {
    let bin = std::env::var_os("QYS_PROXY_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_qys-proxy").into());
    let mut cmd = Command::new(bin);
    cmd.args(args).env_clear().env("RUST_LOG", rust_log);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Starts [`command`] and waits for the line announcing `label`.
pub fn start(rust_log: &str, args: &[&str], env: &[(&str, &str)], label: &str) -> Running {
    start_command(command(rust_log, args, env), label)
}

/// Starts `cmd` and waits for the stdout line starting with `label`; its first word after the
/// label is the URL. A binary that stops before announcing fails the test with what it printed.
pub fn start_command(mut cmd: Command, label: &str) -> Running {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let mut stderr = child.stderr.take().unwrap();
    let err_log = log.clone();
    let err_reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            err_log.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let Some(Ok(line)) = lines.next() else {
            let _ = child.wait();
            // Its last words on stderr, read to the end (bounded, should anything else hold it).
            let deadline = Instant::now() + Duration::from_secs(2);
            while !err_reader.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            panic!("the binary stopped before announcing {label:?}: {}", log.lock().unwrap());
        };
        push_line(&log, &line);
        if let Some(rest) = line.strip_prefix(label) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    let out_log = log.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            push_line(&out_log, &line);
        }
    });
    Running { child, url, log, keep: Vec::new() }
}

fn push_line(log: &Mutex<String>, line: &str) {
    let mut log = log.lock().unwrap();
    log.push_str(line);
    log.push('\n');
}
