//! The emulated board: building the firmware, booting it on QEMU, talking to its UART console,
//! and the loopback forwarder that stands between the guest's network and the relay.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How long the firmware may take for anything the harness waits for (a 2048-bit SRP join under
/// QEMU's TCG on a shared CI core included).
pub const BOARD_LIMIT: Duration = Duration::from_secs(60);

/// The address the firmware is told for the relay: QEMU forwards connections to it (and only
/// to it) out of the guest.
pub const GUEST_RELAY: &str = "10.0.2.100";
/// The guest ports forwarded; the firmware tries them in this order.
pub const GUEST_PORTS: [u16; 2] = [8200, 443];

fn appliance_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../platforms/appliance")
}

/// Builds the firmware once per test binary (its own workspace and target dir); the ELF path.
pub fn firmware() -> &'static Path {
    static ELF: OnceLock<PathBuf> = OnceLock::new();
    ELF.get_or_init(|| {
        let dir = appliance_dir();
        // `platforms/appliance/target`, or `$CARGO_TARGET_DIR/appliance` when the host build
        // has its own target dir (shared machines: one target dir per person).
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| dir.join("target"), |host| PathBuf::from(host).join("appliance"));
        let started = Instant::now();
        let status = Command::new(env!("CARGO"))
            .current_dir(&dir)
            // The whole firmware workspace, as scripts/test.sh builds it: building one package
            // alone unifies features differently and would compile everything a second time.
            .args(["build", "--release", "--locked", "--target-dir"])
            .arg(&target)
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .status()
            .expect("run cargo for the firmware");
        assert!(status.success(), "the firmware did not build");
        eprintln!("firmware built in {:.1?}", started.elapsed());
        target.join("thumbv7em-none-eabihf/release/lifeline-appliance-mps2-an386")
    })
}

/// A loopback TCP forwarder whose destination can change (or be cut): QEMU's `guestfwd` runs
/// `socat` to it for every guest connection, and it passes the bytes to the current relay.
pub struct Forwarder {
    pub port: u16,
    target: Arc<Mutex<Option<SocketAddr>>>,
    /// Live connections, aborted (both sockets closed) when the target is cut.
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    task: JoinHandle<()>,
}

impl Forwarder {
    pub async fn start(target: Option<SocketAddr>) -> Forwarder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let target = Arc::new(Mutex::new(target));
        let connections = Arc::new(Mutex::new(Vec::new()));
        let (shared, live) = (Arc::clone(&target), Arc::clone(&connections));
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let to = *shared.lock().unwrap();
                let connection = tokio::spawn(async move {
                    let Some(to) = to else { return };
                    let Ok(mut outbound) = TcpStream::connect(to).await else { return };
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                });
                live.lock().unwrap().push(connection);
            }
        });
        Forwarder { port, target, connections, task }
    }

    /// New connections go to `target`; `None` refuses them and closes the live ones (as a
    /// relay host that went down would).
    pub fn point_to(&self, target: Option<SocketAddr>) {
        *self.target.lock().unwrap() = target;
        if target.is_none() {
            for connection in self.connections.lock().unwrap().drain(..) {
                connection.abort();
            }
        }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.task.abort();
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }
}

/// The firmware running on QEMU, with its console.
pub struct Board {
    child: Child,
    stdin: ChildStdin,
    lines: Arc<Mutex<Vec<String>>>,
    cursor: usize,
}

impl Board {
    /// Boots the firmware; guest connections to 10.0.2.100:8200 go to the forwarder on
    /// `relay_port` (443 is forwarded too, to a port nothing listens on, so the firmware's port
    /// list is exercised). QEMU's user networking is restricted: the guest reaches nothing else.
    pub fn boot(relay_port: u16) -> Board {
        Board::boot_with_ports(relay_port, closed_port())
    }

    /// Boots with guest port 8200 going to `first` and 443 to `second` (loopback ports).
    pub fn boot_with_ports(first: u16, second: u16) -> Board {
        let (relay_port, closed) = (first, second);
        let elf = firmware();
        let nic = format!(
            "user,model=lan9118,restrict=on,\
             guestfwd=tcp:{GUEST_RELAY}:{}-cmd:socat - TCP:127.0.0.1:{relay_port},\
             guestfwd=tcp:{GUEST_RELAY}:{}-cmd:socat - TCP:127.0.0.1:{closed}",
            GUEST_PORTS[0], GUEST_PORTS[1]
        );
        let mut child = Command::new("qemu-system-arm")
            .args(["-machine", "mps2-an386", "-nographic", "-monitor", "none", "-serial", "stdio", "-kernel"])
            .arg(elf)
            .args(["-nic", &nic])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start qemu-system-arm (bash scripts/setup-hil.sh installs it)");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::clone(&lines);
        let booted = Instant::now();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let line = line.trim_end_matches('\r').to_owned();
                if std::env::var_os("HIL_ECHO").is_some() {
                    eprintln!("{:>7.3}s board| {line}", booted.elapsed().as_secs_f64());
                }
                shared.lock().unwrap().push(line);
            }
        });
        let mut board = Board { child, stdin, lines, cursor: 0 };
        board.expect("@ready");
        board
    }

    /// Types a line on the console.
    pub fn send(&mut self, line: &str) {
        self.stdin.write_all(line.as_bytes()).unwrap();
        self.stdin.write_all(b"\r").unwrap();
        self.stdin.flush().unwrap();
    }

    /// Waits for the next line (after the last one matched) that starts with `prefix`; the line.
    pub fn expect(&mut self, prefix: &str) -> String {
        self.expect_within(prefix, BOARD_LIMIT)
    }

    pub fn expect_within(&mut self, prefix: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            {
                let lines = self.lines.lock().unwrap();
                while self.cursor < lines.len() {
                    let line = &lines[self.cursor];
                    self.cursor += 1;
                    if line.starts_with(prefix) {
                        return line.clone();
                    }
                    if line.starts_with("@panic") {
                        panic!("the firmware panicked: {line}\n{}", lines.join("\n"));
                    }
                }
            }
            if Instant::now() > deadline {
                panic!("no console line starting with {prefix:?} within {limit:?}; console:\n{}", self.transcript());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("QEMU exited ({status}) waiting for {prefix:?}; console:\n{}", self.transcript());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Every line so far, from the start.
    pub fn transcript(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Whether any line so far starts with `prefix`.
    pub fn saw(&self, prefix: &str) -> bool {
        self.lines.lock().unwrap().iter().any(|line| line.starts_with(prefix))
    }

    /// Lines starting with `prefix`, from the start.
    pub fn lines_with(&self, prefix: &str) -> Vec<String> {
        self.lines.lock().unwrap().iter().filter(|line| line.starts_with(prefix)).cloned().collect()
    }
}

impl Drop for Board {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
