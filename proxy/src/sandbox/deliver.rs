//! Server callbacks as seed 004 §4/§7 describe: a failed delivery is retried once at once, then
//! twice more after a pause (one minute on the platform): four tries in all.

use std::time::Duration;

/// Tries per callback.
pub const TRIES: usize = 4;

/// Pause before try `n` (0-based): none, none, `delay`, none.
pub fn pause_before(n: usize, delay: Duration) -> Duration {
    if n == 2 {
        delay
    } else {
        Duration::ZERO
    }
}

/// Delivers `form` to `url` in the background until the receiver answers `{"code":0}`.
pub fn spawn(http: reqwest::Client, url: String, form: Vec<(String, String)>, delay: Duration) {
    tokio::spawn(async move {
        for n in 0..TRIES {
            tokio::time::sleep(pause_before(n, delay)).await;
            match try_once(&http, &url, &form).await {
                Ok(()) => {
                    tracing::info!(try_no = n + 1, "sandbox delivered a server callback");
                    return;
                }
                Err(reason) => tracing::info!(try_no = n + 1, %reason, "sandbox server callback failed"),
            }
        }
        tracing::warn!("sandbox gave up a server callback after {TRIES} tries");
    });
}

async fn try_once(http: &reqwest::Client, url: &str, form: &[(String, String)]) -> Result<(), String> {
    let response = http.post(url).form(form).send().await.map_err(|e| e.without_url().to_string())?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.map_err(|_| format!("HTTP {status}, not JSON"))?;
    if status.is_success() && body["code"] == 0 {
        Ok(())
    } else {
        Err(format!("HTTP {status}, code {}", body["code"]))
    }
}
