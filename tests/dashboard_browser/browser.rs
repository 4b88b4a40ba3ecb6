//! Headless Chromium through chromedriver, for the dashboard test: one
//! session on a fresh profile, ended with its process group on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};

use crate::common::{client, free_port};

fn chromium() -> String {
    std::env::var("SLUICE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

fn chromedriver() -> String {
    std::env::var("SLUICE_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into())
}

/// chromedriver on a free port and one Chromium session; both end on drop.
pub struct Browser {
    driver: Child,
    client: Option<Client>,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub async fn start() -> Browser {
        let runs = |program: &str| {
            Command::new(program)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        assert!(
            runs(&chromium()) && runs(&chromedriver()),
            "headless Chromium is needed for the dashboard test but `{}` or `{}` does not run: \
             `bash scripts/setup.sh` installs Debian's chromium and chromium-driver \
             (scripts/test.sh runs it first)",
            chromium(),
            chromedriver()
        );
        let profile = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = std::fs::File::create(profile.path().join("chromedriver.log")).unwrap();
        let mut cmd = Command::new(chromedriver());
        cmd.arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(log);
        // Its own process group, so that drop ends Chromium with it.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let driver = cmd.spawn().expect("start chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = client()
                .get(format!("{url}/status"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium(),
                // Without the background-networking flags Chromium keeps
                // trying to reach its update and sync services.
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1280,1400",
                    format!("--user-data-dir={}", profile.path().join("profile").display()),
                ],
            }),
        );
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&url)
            .await
            .expect("a Chromium session");
        Browser {
            driver,
            client: Some(client),
            _profile: profile,
        }
    }

    pub fn client(&self) -> &Client {
        self.client.as_ref().unwrap()
    }

    /// Evaluates `script` (a function body; `arguments` are `args`) in the page.
    pub async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        tokio::time::timeout(Duration::from_secs(20), self.client().execute(script, args))
            .await
            .expect("the browser answers a script within 20 s")
            .unwrap()
    }

    /// The text of the first element matching `css` that is not hidden.
    pub async fn text(&self, css: &str) -> Option<String> {
        let v = self
            .js(
                "const e = document.querySelector(arguments[0]);
                 return e && !e.closest('[hidden]') ? e.textContent.trim() : null;",
                vec![json!(css)],
            )
            .await;
        v.as_str().map(String::from)
    }

    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client().screenshot().await.unwrap();
        let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
        std::fs::write(&path, png).unwrap();
        eprintln!("screenshot: {}", path.display());
        path
    }

    pub async fn log_in(&self, token: &str) {
        let input = self.client().find(Locator::Css("#token")).await.unwrap();
        input.send_keys(token).await.unwrap();
        self.client()
            .find(Locator::Css("#login-submit"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }

    pub async fn close(mut self) {
        if let Some(c) = self.client.take() {
            // Ending the session is a courtesy; drop kills what is left.
            let _ = tokio::time::timeout(Duration::from_secs(5), c.close()).await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // chromedriver leads its own process group; Chromium is in it.
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{}", self.driver.id())])
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
