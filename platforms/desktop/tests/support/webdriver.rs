//! A tiny, blocking W3C WebDriver client for ChromeDriver driving Debian's headless Chromium
//! (after `platforms/web-console/tests/browser.rs`, which has the async original).
//! `LIFELINE_CHROMIUM` and `LIFELINE_CHROMEDRIVER` override the paths.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{free_port, http_request};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub fn tool(variable: &str, default: &str) -> PathBuf {
    let path = std::env::var_os(variable).map_or_else(|| PathBuf::from(default), PathBuf::from);
    assert!(
        path.is_file(),
        "{} not found: install chromium and chromium-driver (scripts/setup-browser.sh)",
        path.display()
    );
    path
}

pub struct Driver {
    port: u16,
    session: String,
    process: Child,
}

impl Driver {
    pub fn start(profile: &Path) -> Driver {
        let chromium = tool("LIFELINE_CHROMIUM", "/usr/bin/chromium");
        let chromedriver = tool("LIFELINE_CHROMEDRIVER", "/usr/bin/chromedriver");
        let port = free_port();
        let process = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let started = Instant::now();
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                && call(port, "GET", "/status", None)["value"]["ready"] == json!(true)
            {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(20), "chromedriver did not become ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium.to_str().unwrap(),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1280,1250",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        }}});
        let reply = call(port, "POST", "/session", Some(capabilities));
        let session = reply["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {reply}")).to_owned();
        Driver { port, session, process }
    }

    /// Any command of this session (`path` after `/session/ID`); the reply's `value`.
    pub fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let reply = call(self.port, method, &format!("/session/{}{path}", self.session), body);
        assert!(reply["value"].get("error").is_none(), "{method} {path}: {reply}");
        reply["value"].clone()
    }

    pub fn navigate(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })));
    }

    pub fn script(&self, script: &str) -> Value {
        self.cmd("POST", "/execute/sync", Some(json!({ "script": script, "args": [] })))
    }

    pub fn find(&self, selector: &str) -> String {
        let found = self.cmd("POST", "/element", Some(json!({ "using": "css selector", "value": selector })));
        found[ELEMENT].as_str().unwrap_or_else(|| panic!("no element {selector}: {found}")).to_owned()
    }

    pub fn type_into(&self, selector: &str, text: &str) {
        let element = self.find(selector);
        self.cmd("POST", &format!("/element/{element}/value"), Some(json!({ "text": text })));
    }

    pub fn click(&self, selector: &str) {
        let element = self.find(selector);
        self.cmd("POST", &format!("/element/{element}/click"), Some(json!({})));
    }

    /// Waits until the element with this id contains the text.
    pub fn wait_text(&self, id: &str, text: &str) {
        let script = format!(
            "const e = document.getElementById({}); return e ? e.innerText : null",
            serde_json::to_string(id).unwrap()
        );
        let started = Instant::now();
        loop {
            let shown = self.script(&script);
            if shown.as_str().is_some_and(|shown| shown.contains(text)) {
                return;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "#{id} never showed {text:?}; it shows {shown}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn screenshot(&self, path: &Path) {
        use base64::Engine as _;
        self.script("window.scrollTo(0, 0); return null");
        let png = self.cmd("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap()).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = http_request(self.port, "DELETE", &format!("/session/{}", self.session), &[], "");
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

fn call(port: u16, method: &str, path: &str, body: Option<Value>) -> Value {
    let body = body.map(|body| body.to_string()).unwrap_or_default();
    let headers: &[(&str, &str)] = if body.is_empty() { &[] } else { &[("Content-Type", "application/json")] };
    let (status, reply) = http_request(port, method, path, headers, &body);
    serde_json::from_str(&reply).unwrap_or_else(|_| panic!("{method} {path}: {status} {reply}"))
}
