//! Real processes on loopback: the `lifeline-relay` binary with a throw-away dev PKI, and
//! `lifeline support` / `lifeline join` with piped standard streams.
//!
//! The relay binary is the workspace's own: `LIFELINE_RELAY_BIN` if set, else it is built once
//! per test binary with `cargo build -p lifeline-relay --profile test` (the cargo running the
//! tests, same target folder and profile as this test binary), a no-op when it is fresh.
//! So a test never depends on a relay or a session a developer happens to have running.
#![allow(dead_code, unreachable_pub, missing_docs)]

pub mod screen;
pub mod terminal;
pub mod webdriver;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub const LIMIT: Duration = Duration::from_secs(40);
/// The size of the pseudo-terminals the apps run on.
pub const PTY_ROWS: usize = 30;
pub const PTY_COLUMNS: usize = 110;

/// The `lifeline` binary under test: `LIFELINE_BIN` if set (scripts/bench-transfer.sh compares
/// two builds with it), else the one cargo built with this test.
pub fn lifeline_bin() -> PathBuf {
    std::env::var_os("LIFELINE_BIN")
        .filter(|path| !path.is_empty())
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_lifeline")), PathBuf::from)
}

/// The `lifeline-relay` binary, built on first use.
pub fn relay_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(path) = std::env::var_os("LIFELINE_RELAY_BIN") {
            return PathBuf::from(path);
        }
        // This test runs from <target>/<profile dir>/deps/; cargo puts binaries one level up.
        let exe = std::env::current_exe().expect("test binary path");
        let profile_dir = exe.parent().and_then(Path::parent).expect("target profile folder").to_owned();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        build.args(["build", "--quiet", "-p", "lifeline-relay", "--bin", "lifeline-relay"]);
        // Cargo sets these for the test process; a build script that tracks one (ring tracks
        // CARGO_MANIFEST_DIR) would otherwise see it change between this build and the outer
        // one, and both would rebuild every time.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            let per_crate = ["CARGO_MANIFEST_", "CARGO_PKG_", "CARGO_BIN_", "CARGO_CRATE_", "CARGO_PRIMARY_PACKAGE"]
                .iter()
                .any(|prefix| name.starts_with(prefix));
            if per_crate || name == "CARGO_TARGET_TMPDIR" || name == "CARGO_RUSTC_CURRENT_DIR" {
                build.env_remove(name.as_ref());
            }
        }
        // The profile this test was built with, so the relay shares its compiled dependencies
        // (the `test` profile writes to the same `debug` folder as `dev`).
        if profile_dir.file_name().is_some_and(|name| name == "release") {
            build.arg("--release");
        } else {
            build.args(["--profile", "test"]);
        }
        let status = build.status().expect("run cargo build for lifeline-relay");
        assert!(status.success(), "cargo build -p lifeline-relay failed");
        let bin = profile_dir.join(format!("lifeline-relay{}", std::env::consts::EXE_SUFFIX));
        assert!(bin.is_file(), "no relay binary at {}", bin.display());
        bin
    })
    .clone()
}

/// A folder under the system temp folder, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("lifeline-desktop-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A development PKI made by `lifeline-relay pki init`.
pub fn dev_pki(parent: &Path, name: &str) -> PathBuf {
    let dir = parent.join(name);
    let output = Command::new(relay_bin()).arg("pki").arg("init").arg(&dir).output().unwrap();
    assert!(output.status.success(), "pki init: {}", String::from_utf8_lossy(&output.stderr));
    dir
}

/// A relay named "local" on two loopback ports, with the dev PKI in `dir`.
pub struct Relay {
    pub ports: [u16; 2],
    /// Its Prometheus metrics (`GET /metrics`, plain HTTP on loopback).
    pub metrics_port: u16,
    config: PathBuf,
    child: Option<Child>,
    pub output: Output,
}

impl Relay {
    pub fn start(dir: &Path) -> Relay {
        Relay::start_with(dir, "")
    }

    /// Starts with `extra` appended to its config (a `[broker]` table, say).
    pub fn start_with(dir: &Path, extra: &str) -> Relay {
        let ports = [free_port(), free_port()];
        let metrics_port = free_port();
        let config = dir.join("test-relay.toml");
        std::fs::write(
            &config,
            format!(
                "name = \"local\"\nlisten = [\"127.0.0.1:{}\", \"127.0.0.1:{}\"]\nmetrics_listen = \"127.0.0.1:{}\"\n\n\
                 [tls]\ncert = \"relay-local.pem\"\nkey = \"relay-local.key\"\nca = \"ca.pem\"\n\n\
                 [tickets]\nverify_key = \"ticket-verify.pem\"\n{extra}",
                ports[0], ports[1], metrics_port
            ),
        )
        .unwrap();
        let mut relay = Relay { ports, metrics_port, config, child: None, output: Output::default() };
        relay.spawn();
        relay
    }

    fn spawn(&mut self) {
        let mut child = Command::new(relay_bin())
            .arg("run")
            .arg("--config")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        self.output = Output::capture(&mut child);
        self.child = Some(child);
        self.output.expect_stdout("ready", LIMIT);
    }

    /// A counter from its metrics, e.g. `lifeline_relay_bytes_in_total`.
    pub fn metric(&self, name: &str) -> u64 {
        let body = http_get(self.metrics_port, "/metrics", &[]).1;
        body.lines()
            .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .and_then(|value| value.trim().parse::<f64>().ok())
            .map_or_else(|| panic!("no metric {name} in:\n{body}"), |value| value as u64)
    }

    /// The relay process's id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `--relay` for these ports.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{},{}", self.ports[0], self.ports[1])
    }

    /// Kills the relay (no GoAway: as a crash would), then starts it again on the same ports.
    pub fn restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.spawn();
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Lines a child writes, read on background threads.
#[derive(Default)]
pub struct Output {
    lines: Option<Receiver<(Stream, String)>>,
    /// Everything read so far (both streams), for failure messages.
    pub transcript: Arc<Mutex<Vec<String>>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Output {
    fn capture(child: &mut Child) -> Output {
        let (sender, receiver) = channel();
        let transcript = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>);
        let stderr = child.stderr.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>);
        for (stream, reader) in [(Stream::Stdout, stdout), (Stream::Stderr, stderr)] {
            let Some(reader) = reader else { continue };
            let (sender, transcript) = (sender.clone(), Arc::clone(&transcript));
            std::thread::spawn(move || {
                for line in BufReader::new(reader).lines() {
                    let Ok(line) = line else { break };
                    transcript.lock().unwrap().push(format!("{stream:?}: {line}"));
                    if sender.send((stream, line)).is_err() {
                        break;
                    }
                }
            });
        }
        Output { lines: Some(receiver), transcript }
    }

    /// Waits for a line on `stream` containing `needle`; returns it.
    pub fn expect(&self, stream: Stream, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        let lines = self.lines.as_ref().expect("captured output");
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok((from, line)) if from == stream && line.contains(needle) => return line,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => panic!(
                    "no {stream:?} line with {needle:?} within {limit:?}; transcript:\n{}",
                    self.transcript.lock().unwrap().join("\n")
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "output ended before a {stream:?} line with {needle:?}; transcript:\n{}",
                    self.transcript.lock().unwrap().join("\n")
                ),
            }
        }
    }

    /// Waits until both streams are closed (the process exited) and returns the whole
    /// transcript, each line prefixed with its stream.
    pub fn finish(&self, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        if let Some(lines) = &self.lines {
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match lines.recv_timeout(left) {
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }
        self.transcript.lock().unwrap().join("\n")
    }

    pub fn expect_stdout(&self, needle: &str, limit: Duration) -> String {
        self.expect(Stream::Stdout, needle, limit)
    }

    pub fn expect_stderr(&self, needle: &str, limit: Duration) -> String {
        self.expect(Stream::Stderr, needle, limit)
    }
}

/// A running `lifeline` process.
pub struct App {
    child: Child,
    stdin: Option<ChildStdin>,
    pub output: Output,
}

impl App {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn start<I, S>(args: I) -> App
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        App::start_with_env(args, &[])
    }

    /// Starts with extra environment variables.
    pub fn start_with_env<I, S>(args: I, envs: &[(&str, &str)]) -> App
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut child = Command::new(lifeline_bin())
            .args(args)
            .envs(envs.iter().copied())
            .env_remove("https_proxy")
            .env_remove("HTTPS_PROXY")
            .env("LIFELINE_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let output = Output::capture(&mut child);
        App { child, stdin, output }
    }

    /// Starts `lifeline` with its files limited to `kib` KiB each (`ulimit -f`, with SIGXFSZ
    /// ignored so that a write past it fails with EFBIG, as on a full disk, instead of killing it).
    pub fn start_with_file_limit(args: &[&str], kib: u64) -> App {
        let mut child = Command::new("bash")
            .arg("-c")
            .arg(format!("trap '' XFSZ; ulimit -f {kib}; exec \"$0\" \"$@\""))
            .arg(lifeline_bin())
            .args(args)
            .env_remove("https_proxy")
            .env_remove("HTTPS_PROXY")
            .env("LIFELINE_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let output = Output::capture(&mut child);
        App { child, stdin, output }
    }

    /// Starts `lifeline` on a pseudo-terminal (util-linux `script`), as a person at a terminal
    /// would run it: prompts read from the terminal, the PIN without echo. What is typed goes
    /// through the terminal (and is echoed, as on a real one, unless echo is off).
    pub fn start_in_pty(args: &[&str]) -> App {
        let mut child = App::pty_command(args).spawn().expect("util-linux `script` runs the app on a pseudo-terminal");
        let stdin = child.stdin.take();
        let output = Output::capture(&mut child);
        App { child, stdin, output }
    }

    /// Like [`App::start_in_pty`], for a full-screen program: what it writes is kept as raw
    /// bytes (see [`terminal::RawOutput`]), not as lines.
    pub fn start_in_pty_raw(args: &[&str]) -> (App, terminal::RawOutput) {
        let mut child = App::pty_command(args).spawn().expect("util-linux `script` runs the app on a pseudo-terminal");
        let stdin = child.stdin.take();
        let raw = terminal::RawOutput::capture(child.stdout.take().unwrap());
        (App { child, stdin, output: Output::default() }, raw)
    }

    /// `script` running lifeline on a new pseudo-terminal of [`PTY_ROWS`] × [`PTY_COLUMNS`].
    fn pty_command(args: &[&str]) -> Command {
        let quote = |arg: &str| format!("'{}'", arg.replace('\'', "'\\''"));
        let mut command_line = format!("stty rows {PTY_ROWS} cols {PTY_COLUMNS}; exec ");
        command_line.push_str(&quote(&lifeline_bin().display().to_string()));
        for arg in args {
            command_line.push(' ');
            command_line.push_str(&quote(arg));
        }
        let mut command = Command::new("script");
        command
            .args(["-qfec", &command_line, "/dev/null"])
            .env_remove("https_proxy")
            .env_remove("HTTPS_PROXY")
            .env("LIFELINE_LOG", "warn")
            .env("TERM", "dumb")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    /// Types bytes as they are (keys on a terminal in raw mode: `\r` is Enter).
    pub fn type_bytes(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).unwrap();
        stdin.flush().unwrap();
    }

    /// Types a line.
    pub fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    pub fn expect(&self, needle: &str) -> String {
        self.output.expect_stdout(needle, LIMIT)
    }

    pub fn expect_error(&self, needle: &str) -> String {
        self.output.expect_stderr(needle, LIMIT)
    }

    /// Waits for the process to exit.
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!(
                    "lifeline did not exit within {limit:?}; transcript:\n{}",
                    self.output.transcript.lock().unwrap().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The digits of a line such as "    Session number:  123 456 789".
pub fn digits_after(line: &str, label: &str) -> String {
    let (_, rest) = line.split_once(label).unwrap_or(("", line));
    rest.chars().filter(char::is_ascii_digit).collect()
}

/// A plain HTTP/1.1 GET on 127.0.0.1:`port`; returns the status code and the body.
pub fn http_get(port: u16, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    http_request(port, "GET", path, headers, "")
}

/// A plain HTTP/1.1 request on 127.0.0.1:`port` (connection closed after it).
pub fn http_request(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).unwrap();
    // Read until the body is complete by its Content-Length (a server may keep the connection
    // open despite `Connection: close`), or until the server closes it.
    let mut response = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&response[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .and_then(|value| value.trim().parse::<usize>().ok());
            if length.is_some_and(|length| response.len() >= end + 4 + length) {
                break;
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => response.extend_from_slice(&chunk[..n]),
        }
    }
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default();
    (status, body)
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> String {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    let mut file = std::fs::File::open(path).unwrap();
    std::io::copy(&mut file, &mut hasher).unwrap();
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A file of `len` pseudo-random bytes (a simple generator: content, not secrecy).
pub fn random_file(path: &Path, len: usize) {
    let mut state = 0x9E37_79B9_7F4A_7C15_u64 ^ len as u64;
    let mut data = Vec::with_capacity(len);
    while data.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        data.extend_from_slice(&state.to_le_bytes());
    }
    data.truncate(len);
    std::fs::write(path, data).unwrap();
}

/// Digits in groups of three ("123 456 789"), as the apps show them.
pub fn group3(digits: &str) -> String {
    digits.as_bytes().chunks(3).map(|chunk| String::from_utf8_lossy(chunk).into_owned()).collect::<Vec<_>>().join(" ")
}

/// A provider whose session number and PIN have been read from its output.
#[allow(dead_code)] // each test crate uses some of the fields
pub struct Provider {
    pub app: App,
    pub session: String,
    pub pin: String,
}

impl Provider {
    /// `lifeline support --dev DEV --relay RELAY --name "Ada (Helpdesk)"` plus `extra`.
    pub fn start(dev: &Path, relay: &Relay, extra: &[&str]) -> Provider {
        let mut args: Vec<std::ffi::OsString> = vec![
            "support".into(),
            "--dev".into(),
            dev.as_os_str().to_owned(),
            "--relay".into(),
            relay.address().into(),
            "--name".into(),
            "Ada (Helpdesk)".into(),
        ];
        args.extend(extra.iter().map(std::ffi::OsString::from));
        let app = App::start(args);
        let session = digits_after(&app.expect("Session number:"), "Session number:");
        let pin = digits_after(&app.expect("PIN:"), "PIN:");
        Provider { app, session, pin }
    }
}

/// A provider ("Ada (Helpdesk)", `lifeline support --dev`) and a customer ("Grace",
/// `lifeline join --dev` on X display `display`) joined in one session through `relay`: the
/// screen-sharing tests' start. Returns the provider, the customer and the provider's web
/// console URL (with its token).
pub fn join_on_display(dev: &Path, relay: &Relay, display: &str) -> (App, App, String) {
    let Provider { app: provider, session, pin } = Provider::start(dev, relay, &[]);
    let url = provider.expect("http://127.0.0.1:").trim().to_owned();
    let dev = dev.to_str().unwrap();
    let mut customer = App::start_with_env(
        ["join", "--dev", dev, "--relay", &relay.address(), "--name", "Grace"],
        &[("DISPLAY", display)],
    );
    customer.type_line(&session);
    customer.type_line(&pin);
    customer.expect("Connected to Ada (Helpdesk)");
    provider.expect("Grace (Customer) joined");
    (provider, customer, url)
}
