//! Relay benchmarks: two baseline forwarders and a load generator (see scripts/bench-relay.sh).
//!
//! relay-bench fwd --mode tls|plain --listen ADDR [--cert PEM --key PEM]
//!     A minimal forwarder: pairs consecutive accepted connections (1st with 2nd, 3rd with 4th, ...)
//!     and copies bytes both ways with tokio's copy_bidirectional; with `tls`, it terminates TLS 1.3
//!     on both (rustls, ring) and so decrypts and re-encrypts every byte.
//! relay-bench load  --target relay|tls|plain --addr ADDR --pid PID [--pki DIR --home NAME]
//!     --sessions N --frame LEN --bytes TOTAL --label TEXT
//!     N sessions, each two clients; the first sends Lifeline SecureData frames of LEN bytes (header
//!     included) to the second, TOTAL bytes in all; prints one JSON line with the server's CPU time.
//! relay-bench latency ... --sessions N --interval-ms MS --secs S
//!     N active sessions, each sending one frame every MS carrying a send timestamp; p50/p99/p999.
//! relay-bench idle ... --sessions N --settle-secs S
//!     Opens N idle sessions and reports the server's VmRSS growth per session.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lifeline_core::wire::relay::RelayRepr;
use lifeline_core::wire::{Destination, FrameKind, HEADER_LEN, MemberId, RoutingHeader, emit_frame};
use lifeline_ticket::{Ticket, TicketRole, TicketSigner};
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Res<T> = Result<T, BoxError>;

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}
type Conn = Pin<Box<dyn Stream>>;

struct Args(HashMap<String, String>);

impl Args {
    fn parse() -> (String, Args) {
        let mut it = std::env::args().skip(1);
        let cmd = it.next().unwrap_or_default();
        let mut map = HashMap::new();
        while let Some(key) = it.next() {
            let value = it.next().unwrap_or_default();
            map.insert(key.trim_start_matches("--").to_owned(), value);
        }
        (cmd, Args(map))
    }
    fn get(&self, key: &str) -> String {
        self.0.get(key).cloned().unwrap_or_else(|| panic!("missing --{key}"))
    }
    fn or(&self, key: &str, default: &str) -> String {
        self.0.get(key).cloned().unwrap_or_else(|| default.to_owned())
    }
    fn num(&self, key: &str, default: u64) -> u64 {
        self.0.get(key).map_or(default, |v| v.parse().expect("a number"))
    }
}

fn main() -> Res<()> {
    let (cmd, args) = Args::parse();
    let threads = args.num("threads", 2) as usize;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()?;
    rt.block_on(async move {
        match cmd.as_str() {
            "fwd" => forwarder(&args).await,
            "load" => load(&args).await,
            "latency" => latency(&args).await,
            "idle" => idle(&args).await,
            _ => Err("usage: relay-bench fwd|load|latency|idle --key value ...".into()),
        }
    })
}

// ---------------------------------------------------------------- baselines

async fn forwarder(args: &Args) -> Res<()> {
    let listener = TcpListener::bind(args.get("listen")).await?;
    let acceptor = if args.get("mode") == "tls" {
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(args.get("cert"))?.collect::<Result<_, _>>()?;
        let key = PrivateKeyDer::from_pem_file(args.get("key"))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
        config.alpn_protocols = vec![b"lifeline/1".to_vec()];
        Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    } else {
        None
    };
    eprintln!("forwarder listening on {}", listener.local_addr()?);
    loop {
        let (a, _) = listener.accept().await?;
        let (b, _) = listener.accept().await?;
        a.set_nodelay(true)?;
        b.set_nodelay(true)?;
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let result: Res<()> = async {
                match acceptor {
                    Some(acceptor) => {
                        let (a, b) = tokio::try_join!(acceptor.accept(a), acceptor.accept(b))?;
                        let (mut a, mut b) = (a, b);
                        tokio::io::copy_bidirectional(&mut a, &mut b).await?;
                    }
                    None => {
                        let (mut a, mut b) = (a, b);
                        tokio::io::copy_bidirectional(&mut a, &mut b).await?;
                    }
                }
                Ok(())
            }
            .await;
            drop(result);
        });
    }
}

// ---------------------------------------------------------------- clients

struct Target {
    kind: String,
    addr: SocketAddr,
    tls: Option<tokio_rustls::TlsConnector>,
    signer: Option<TicketSigner>,
    home: String,
}

impl Target {
    fn new(args: &Args) -> Res<Target> {
        let kind = args.get("target");
        let addr: SocketAddr = args.get("addr").parse()?;
        let (tls, signer) = if kind == "plain" {
            (None, None)
        } else {
            let pki = PathBuf::from(args.get("pki"));
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(pki.join("ca.pem"))? {
                roots.add(cert?)?;
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut config = rustls::ClientConfig::builder_with_provider(provider)
                .with_protocol_versions(&[&rustls::version::TLS13])?
                .with_root_certificates(roots)
                .with_no_client_auth();
            config.alpn_protocols = vec![b"lifeline/1".to_vec()];
            let signer = if kind == "relay" {
                Some(TicketSigner::from_pem(&std::fs::read_to_string(pki.join("ticket-signing.key"))?)?)
            } else {
                None
            };
            (Some(tokio_rustls::TlsConnector::from(Arc::new(config))), signer)
        };
        Ok(Target { kind, addr, tls, signer, home: args.or("home", "local") })
    }

    async fn connect(&self) -> Res<Conn> {
        let tcp = TcpStream::connect(self.addr).await?;
        self.wrap(tcp).await
    }

    async fn wrap(&self, tcp: TcpStream) -> Res<Conn> {
        tcp.set_nodelay(true)?;
        Ok(match &self.tls {
            Some(tls) => Box::pin(tls.connect(ServerName::try_from("localhost")?, tcp).await?),
            None => Box::pin(tcp),
        })
    }

    /// Connects and (relay) admits one client; returns its member id.
    async fn join(&self, session: u64, role: TicketRole) -> Res<(Conn, u8)> {
        let mut conn = self.connect().await?;
        let Some(signer) = &self.signer else { return Ok((conn, 0)) };
        let expires = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() + 3600;
        let ticket = signer.mint(&Ticket::new(session, role, &self.home, expires)).ok_or("mint")?;
        let mut buf = vec![0u8; 1024];
        let len = RelayRepr::Admit { resume: None, ticket: &ticket }
            .emit_frame(session, Destination::Member(MemberId::RELAY), &mut buf)
            .map_err(|_| "emit")?;
        conn.write_all(&buf[..len]).await?;
        conn.flush().await?;
        let mut header = [0u8; HEADER_LEN];
        conn.read_exact(&mut header).await?;
        let parsed = RoutingHeader::parse(&header).map_err(|e| format!("{e:?}"))?;
        let mut body = vec![0u8; usize::from(parsed.body_len)];
        conn.read_exact(&mut body).await?;
        match RelayRepr::parse(&body) {
            Some(RelayRepr::Welcome { member }) => Ok((conn, member.0)),
            other => Err(format!("not admitted: {other:?}").into()),
        }
    }

    /// One session: (sender, receiver, the frame the sender sends).
    async fn session(&self, session: u64, frame_len: usize) -> Res<(Conn, Conn, Vec<u8>)> {
        let ((a, a_id), (b, b_id)) = if self.kind == "relay" {
            (self.join(session, TicketRole::Leader).await?, self.join(session, TicketRole::Member).await?)
        } else {
            // A forwarder pairs by accept order and handshakes both only once it has the pair.
            let a = TcpStream::connect(self.addr).await?;
            let b = TcpStream::connect(self.addr).await?;
            let (a, b) = tokio::try_join!(self.wrap(a), self.wrap(b))?;
            ((a, 0), (b, 1))
        };
        let body: Vec<u8> = (0..frame_len - HEADER_LEN).map(|i| (i as u32).wrapping_mul(2_654_435_761) as u8 ^ 0x5a).collect();
        let mut frame = vec![0u8; frame_len];
        emit_frame(FrameKind::SecureData, session, MemberId(a_id), Destination::Member(MemberId(b_id)), &body, &mut frame)
            .map_err(|_| "emit")?;
        Ok((a, b, frame))
    }
}

/// Opens `n` sessions: concurrently for the relay, one after the other for a forwarder (it pairs
/// connections by accept order).
async fn open_sessions(target: &Arc<Target>, n: u64, frame_len: usize, parallel: usize) -> Res<Vec<(Conn, Conn, Vec<u8>)>> {
    let base = 1_000_000 + u64::from(std::process::id()) * 100_000;
    if target.kind != "relay" {
        let mut out = Vec::new();
        for i in 0..n {
            out.push(target.session(base + i, frame_len).await?);
        }
        return Ok(out);
    }
    let sem = Arc::new(tokio::sync::Semaphore::new(parallel));
    let mut tasks = Vec::new();
    for i in 0..n {
        let (target, sem) = (target.clone(), sem.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire().await;
            target.session(base + i, frame_len).await
        }));
    }
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await??);
    }
    Ok(out)
}

// ---------------------------------------------------------------- measurement

/// (utime + stime) of a process in seconds (clock ticks of 1/100 s).
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / 100.0
}

fn self_cpu() -> f64 {
    cpu_secs(std::process::id())
}

/// (busy, total) jiffies of the whole machine.
fn machine() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<f64> = stat.lines().next().unwrap_or("").split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    let total: f64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0.0) + v.get(4).copied().unwrap_or(0.0);
    (total - idle, total)
}

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

struct Meter {
    pid: u32,
    start: Instant,
    server: f64,
    own: f64,
    machine: (f64, f64),
}

impl Meter {
    fn start(pid: u32) -> Meter {
        Meter { pid, start: Instant::now(), server: cpu_secs(pid), own: self_cpu(), machine: machine() }
    }
    /// (wall s, server CPU s, load generator CPU s, machine busy fraction of 2 cores... of all cores)
    fn stop(&self) -> (f64, f64, f64, f64) {
        let m = machine();
        let busy = (m.0 - self.machine.0) / (m.1 - self.machine.1).max(1.0);
        (self.start.elapsed().as_secs_f64(), cpu_secs(self.pid) - self.server, self_cpu() - self.own, busy)
    }
}

// ---------------------------------------------------------------- throughput

const WINDOW: u64 = 512 * 1024;

async fn load(args: &Args) -> Res<()> {
    let target = Arc::new(Target::new(args)?);
    let pid = args.num("pid", 0) as u32;
    let n = args.num("sessions", 1);
    let frame_len = args.num("frame", 1400) as usize;
    let total = args.num("bytes", 1 << 30);
    let per_session_frames = (total / n).div_ceil(frame_len as u64);
    let sessions = open_sessions(&target, n, frame_len, 32).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let meter = Meter::start(pid);
    let mut tasks = Vec::new();
    for (a, b, frame) in sessions {
        let received = Arc::new(AtomicU64::new(0));
        let notify = Arc::new(Notify::new());
        let want = per_session_frames * frame_len as u64;
        let (r2, n2) = (received.clone(), notify.clone());
        // Receiver: counts bytes; gives up after 3 s without any.
        tasks.push(tokio::spawn(async move {
            let (mut rd, _wr) = tokio::io::split(b);
            let mut buf = vec![0u8; 64 * 1024];
            let mut got = 0u64;
            while got < want {
                match tokio::time::timeout(Duration::from_secs(3), rd.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                    Ok(Ok(k)) => {
                        got += k as u64;
                        r2.store(got, Ordering::Release);
                        n2.notify_one();
                    }
                }
            }
            (0u64, got)
        }));
        // Sender: one write per frame; keeps at most WINDOW bytes unacknowledged by the receiver
        // so that the relay's 1 MiB per-connection data queue never overflows (no drops).
        tasks.push(tokio::spawn(async move {
            let (_rd, mut wr) = tokio::io::split(a);
            let mut sent = 0u64;
            for _ in 0..per_session_frames {
                while sent.saturating_sub(received.load(Ordering::Acquire)) > WINDOW {
                    if tokio::time::timeout(Duration::from_secs(3), notify.notified()).await.is_err() {
                        return (sent, 0);
                    }
                }
                if wr.write_all(&frame).await.is_err() {
                    break;
                }
                sent += frame.len() as u64;
            }
            let _ = wr.flush().await;
            // Keep the connection open until the receiver is done.
            tokio::time::sleep(Duration::from_millis(100)).await;
            (sent, 0)
        }));
    }
    let (mut sent, mut got) = (0u64, 0u64);
    let mut all = Vec::new();
    for t in tasks {
        all.push(t.await?);
    }
    let (wall, server, own, busy) = meter.stop();
    for (s, g) in all {
        sent += s;
        got += g;
    }
    let gb = got as f64 / 1e9;
    println!(
        "{{\"label\":\"{}\",\"target\":\"{}\",\"sessions\":{n},\"frame\":{frame_len},\"sent\":{sent},\"delivered\":{got},\"wall_s\":{wall:.3},\"server_cpu_s\":{server:.2},\"loadgen_cpu_s\":{own:.2},\"machine_busy\":{busy:.3},\"cpu_s_per_gb\":{:.3},\"mb_per_s\":{:.1}}}",
        args.or("label", ""),
        target.kind,
        server / gb,
        got as f64 / 1e6 / wall
    );
    Ok(())
}

// ---------------------------------------------------------------- latency

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

async fn latency(args: &Args) -> Res<()> {
    let target = Arc::new(Target::new(args)?);
    let pid = args.num("pid", 0) as u32;
    let n = args.num("sessions", 1000);
    let frame_len = args.num("frame", 1400) as usize;
    let interval = Duration::from_millis(args.num("interval-ms", 100));
    let secs = args.num("secs", 10);
    let warmup = Duration::from_secs(args.num("warmup-secs", 2));
    let _ = epoch();
    let sessions = open_sessions(&target, n, frame_len, 32).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + Duration::from_secs(secs);
    let meter_slot = Arc::new(std::sync::Mutex::new(None::<Meter>));
    let mut tasks = Vec::new();
    for (i, (a, b, frame)) in sessions.into_iter().enumerate() {
        let phase = interval.mul_f64((i as f64 * 0.618_033_988_7).fract());
        tasks.push(tokio::spawn(async move {
            let (_rd, mut wr) = tokio::io::split(a);
            let mut frame = frame;
            let mut tick = tokio::time::interval_at(tokio::time::Instant::from_std(start + phase), interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if Instant::now() >= end {
                    break;
                }
                let ns = epoch().elapsed().as_nanos() as u64;
                frame[HEADER_LEN..HEADER_LEN + 8].copy_from_slice(&ns.to_le_bytes());
                if wr.write_all(&frame).await.is_err() {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            Vec::new()
        }));
        tasks.push(tokio::spawn(async move {
            let (mut rd, _wr) = tokio::io::split(b);
            let mut buf = vec![0u8; frame_len];
            let mut samples = Vec::new();
            loop {
                match tokio::time::timeout(Duration::from_secs(3), rd.read_exact(&mut buf)).await {
                    Ok(Ok(_)) => {}
                    _ => break,
                }
                let now = Instant::now();
                let sent = u64::from_le_bytes(buf[HEADER_LEN..HEADER_LEN + 8].try_into().unwrap_or_default());
                let sent_at = epoch() + Duration::from_nanos(sent);
                if sent_at >= measure_from && sent_at < end {
                    samples.push(now.duration_since(sent_at).as_micros() as u64);
                }
                if sent_at >= end || now >= end + Duration::from_millis(500) {
                    break;
                }
            }
            samples
        }));
    }
    {
        let slot = meter_slot.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(tokio::time::Instant::from_std(measure_from)).await;
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(Meter::start(pid));
        });
    }
    tokio::time::sleep_until(tokio::time::Instant::from_std(end)).await;
    let stats = meter_slot.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(Meter::stop);
    let mut all: Vec<u64> = Vec::new();
    for t in tasks {
        all.extend(t.await?);
    }
    all.sort_unstable();
    let pct = |p: f64| all.get(((all.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(0);
    let expected = n as f64 * secs as f64 / interval.as_secs_f64();
    let (wall, server, own, busy) = stats.unwrap_or((0.0, 0.0, 0.0, 0.0));
    println!(
        "{{\"label\":\"{}\",\"target\":\"{}\",\"sessions\":{n},\"frame\":{frame_len},\"interval_ms\":{},\"samples\":{},\"expected\":{expected:.0},\"p50_us\":{},\"p90_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{},\"wall_s\":{wall:.2},\"server_cpu_s\":{server:.2},\"loadgen_cpu_s\":{own:.2},\"machine_busy\":{busy:.3}}}",
        args.or("label", ""),
        target.kind,
        interval.as_millis(),
        all.len(),
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(0.999),
        all.last().copied().unwrap_or(0)
    );
    Ok(())
}

// ---------------------------------------------------------------- idle

async fn idle(args: &Args) -> Res<()> {
    let target = Arc::new(Target::new(args)?);
    let pid = args.num("pid", 0) as u32;
    let n = args.num("sessions", 1000);
    let settle = Duration::from_secs(args.num("settle-secs", 3));
    let before = rss_kb(pid);
    let t0 = Instant::now();
    let sessions = open_sessions(&target, n, 1400, 64).await?;
    let open_s = t0.elapsed().as_secs_f64();
    tokio::time::sleep(settle).await;
    let after = rss_kb(pid);
    // One frame through the last session: the server still routes with all of them open.
    let mut sessions = sessions;
    let ok = match sessions.last_mut() {
        Some((a, b, frame)) => {
            let sent = a.write_all(frame).await.is_ok() && a.flush().await.is_ok();
            let mut buf = vec![0u8; frame.len()];
            sent && matches!(tokio::time::timeout(Duration::from_secs(5), b.read_exact(&mut buf)).await, Ok(Ok(_)))
                && buf == *frame
        }
        None => false,
    };
    let fds = std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0);
    let server_fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0);
    println!(
        "{{\"label\":\"{}\",\"target\":\"{}\",\"sessions\":{n},\"open_s\":{open_s:.1},\"rss_before_kb\":{before},\"rss_after_kb\":{after},\"kb_per_session\":{:.2},\"loadgen_fds\":{fds},\"server_fds\":{server_fds},\"ok\":{ok}}}",
        args.or("label", ""),
        target.kind,
        (after.saturating_sub(before)) as f64 / n as f64
    );
    drop(sessions);
    Ok(())
}
