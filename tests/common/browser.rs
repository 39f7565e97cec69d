//! Headless chromium driven over WebDriver (fantoccini): a `chromedriver` started on a free
//! loopback port and ended by PID, one browser session on it. A missing chromedriver fails the
//! test (CI installs Debian's `chromium` and `chromium-driver`).

use fantoccini::{Client, ClientBuilder};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Browser {
    driver: Child,
    pub client: Client,
    _profile: tempfile::TempDir,
}

fn chromedriver() -> String {
    let bin = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
    let found = Command::new(&bin).arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(found, "`{bin}` not found: install Debian's chromium and chromium-driver (.ci/install-deps)");
    bin
}

impl Browser {
    pub async fn start() -> Browser {
        let bin = chromedriver();
        let port = crate::common::listening::free_port();
        let driver = Command::new(bin)
            .args([format!("--port={port}"), "--allowed-ips=127.0.0.1".into()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
        let waited = tokio::task::spawn_blocking(move || {
            crate::common::listening::wait_listening(addr, Duration::from_secs(30))
        });
        let profile = tempfile::tempdir().expect("profile dir");
        let mut driver = Some(driver);
        if waited.await.is_err() {
            if let Some(mut d) = driver.take() {
                let _ = d.kill();
                let _ = d.wait();
            }
            panic!("chromedriver did not listen on {addr}");
        }
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1400,1000", format!("--user-data-dir={}", profile.path().display())],
            }),
        );
        let client =
            ClientBuilder::rustls().expect("rustls").capabilities(caps).connect(&format!("http://{addr}")).await;
        let driver = driver.take().expect("driver");
        match client {
            Ok(client) => Browser { driver, client, _profile: profile },
            Err(e) => {
                let mut d = driver;
                let _ = d.kill();
                let _ = d.wait();
                panic!("WebDriver session: {e}");
            }
        }
    }

    /// Runs `script` (a function body returning a value) in the page.
    pub async fn js(&self, script: &str) -> serde_json::Value {
        self.client.execute(script, vec![]).await.unwrap_or_else(|e| panic!("{script}: {e}"))
    }

    /// Polls `script` until it returns `true`; panics with `what` after `timeout`. A script that
    /// fails (the page is still navigating, an element is not there yet) counts as not yet.
    pub async fn wait_for(&self, script: &str, timeout: Duration, what: &str) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let last = match self.client.execute(script, vec![]).await {
                Ok(serde_json::Value::Bool(true)) => return,
                Ok(v) => v.to_string(),
                Err(e) => e.to_string(),
            };
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what} (last: {last})");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Ends the session and the driver (by PID).
    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // chromedriver ends its chromium when it exits.
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
