//! Diagnostics both ways (protocol: `docs/PROTOCOL.md` §10.4, messages in
//! [`lifeline_core::app::diagnostics`]).
//!
//! - The customer's side answers a query with [`collect`] (what this machine is: Linux `/proc`,
//!   `/sys` and `/etc/os-release`, the `ip` tool and the journal when present) and
//!   [`encode_reply`], which splits every section into report parts that fit one payload. The
//!   same [`Report`] is what the customer app shows as "what was sent".
//! - The provider's side puts parts back together with [`Assembler`].
//!
//! Nothing here runs a shell: the two external programs (`ip`, `journalctl`) are run directly
//! with fixed arguments, with a time limit, and only read.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lifeline_core::app::diagnostics::{
    DiagnosticsRepr, MAX_KEY_LEN, MAX_VALUE_LEN, RecordWriter, Records as WireRecords, Section, Sections,
};
use lifeline_core::wire::MAX_PAYLOAD_LEN;

/// Most processes listed (largest resident memory first).
pub const MAX_PROCESSES: usize = 400;
/// Log lines sent.
pub const LOG_LINES: usize = 100;

/// Key/value records per section: what a customer's machine reports, and what it showed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Records in section order, each in collection order.
    pub sections: BTreeMap<Section, Vec<(String, String)>>,
}

impl Report {
    /// Every record, as `section key = value` lines (what the customer is shown).
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for (section, records) in &self.sections {
            out.push_str(&format!("[{}]\n", section.name()));
            for (key, value) in records {
                out.push_str(&format!("{key} = {value}\n"));
            }
        }
        out
    }
}

/// Collects the asked sections of this machine's picture. Sections that cannot be read here are
/// present and empty (or say why in a `*.source` record).
pub fn collect(sections: Sections) -> Report {
    let mut report = Report::default();
    for section in sections.iter() {
        let mut records = Collected::default();
        match section {
            Section::System => system(&mut records),
            Section::Cpu => cpu(&mut records),
            Section::Memory => memory(&mut records),
            Section::Disks => disks(&mut records),
            Section::Network => network(&mut records),
            Section::Routes => routes(&mut records),
            Section::Processes => processes(&mut records),
            Section::Logs => logs(&mut records),
            _ => {}
        }
        report.sections.insert(section, records.0);
    }
    report
}

#[derive(Default)]
struct Collected(Vec<(String, String)>);

impl Collected {
    fn push(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let mut key = key.into();
        let mut value = value.into();
        truncate(&mut key, MAX_KEY_LEN);
        truncate(&mut value, MAX_VALUE_LEN);
        if !key.is_empty() {
            self.0.push((key, value));
        }
    }
}

/// Cuts `text` to at most `max` bytes, at a character boundary.
fn truncate(text: &mut String, max: usize) {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
}

fn read(path: impl AsRef<Path>) -> Option<String> {
    fs::read_to_string(path).ok().map(|text| text.trim_end().to_owned())
}

fn system(records: &mut Collected) {
    records.push("os.family", std::env::consts::OS);
    records.push("os.arch", std::env::consts::ARCH);
    if let Some(release) = read("/etc/os-release") {
        for line in release.lines() {
            if let Some((key, value)) = line.split_once('=') {
                let value = value.trim_matches('"');
                match key {
                    "PRETTY_NAME" => records.push("os.name", value),
                    "VERSION_ID" => records.push("os.version", value),
                    _ => {}
                }
            }
        }
    }
    if let Some(kernel) = read("/proc/sys/kernel/osrelease") {
        records.push("kernel.release", kernel);
    }
    if let Some(host) = read("/proc/sys/kernel/hostname") {
        records.push("host.name", host);
    }
    if let Some(uptime) = read("/proc/uptime").and_then(|text| text.split_whitespace().next().map(str::to_owned)) {
        records.push("uptime_s", uptime.split('.').next().unwrap_or_default());
    }
}

fn cpu(records: &mut Collected) {
    if let Ok(count) = std::thread::available_parallelism() {
        records.push("cpu.count", count.get().to_string());
    }
    if let Some(info) = read("/proc/cpuinfo")
        && let Some(model) = info.lines().find_map(|line| line.strip_prefix("model name").map(str::to_owned))
    {
        records.push("cpu.model", model.trim_start_matches([' ', '\t', ':']));
    }
    if let Some(load) = read("/proc/loadavg") {
        let fields: Vec<&str> = load.split_whitespace().collect();
        for (key, value) in ["load.1m", "load.5m", "load.15m"].iter().zip(&fields) {
            records.push(*key, *value);
        }
    }
}

fn memory(records: &mut Collected) {
    let Some(info) = read("/proc/meminfo") else { return };
    for line in info.lines() {
        let Some((key, value)) = line.split_once(':') else { continue };
        let name = match key {
            "MemTotal" => "mem.total_kib",
            "MemAvailable" => "mem.available_kib",
            "SwapTotal" => "swap.total_kib",
            "SwapFree" => "swap.free_kib",
            _ => continue,
        };
        records.push(name, value.trim().trim_end_matches(" kB"));
    }
}

fn disks(records: &mut Collected) {
    // Block-device file systems from the mount table; sizes from `df`-like statistics are not
    // available without a C call, so the mount table and the kernel's block devices are listed.
    if let Some(mounts) = read("/proc/mounts") {
        for line in mounts.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [device, mount, fs_type, options, ..] = fields[..] else { continue };
            if !device.starts_with("/dev/") {
                continue;
            }
            let mode = if options.split(',').any(|o| o == "ro") { "ro" } else { "rw" };
            records.push(format!("mount.{mount}"), format!("{device} {fs_type} {mode}"));
        }
    }
    if let Ok(entries) = fs::read_dir("/sys/block") {
        let mut names: Vec<String> = entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        for name in names {
            // 512-byte sectors, whatever the device's own sector size.
            if let Some(sectors) = read(format!("/sys/block/{name}/size")).and_then(|s| s.parse::<u64>().ok()) {
                records.push(format!("block.{name}.size_bytes"), (sectors * 512).to_string());
            }
        }
    }
}

fn network(records: &mut Collected) {
    if let Ok(entries) = fs::read_dir("/sys/class/net") {
        let mut names: Vec<String> = entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        for name in names {
            let base = format!("/sys/class/net/{name}");
            if let Some(state) = read(format!("{base}/operstate")) {
                records.push(format!("if.{name}.state"), state);
            }
            if let Some(mac) = read(format!("{base}/address")) {
                records.push(format!("if.{name}.mac"), mac);
            }
            if let Some(mtu) = read(format!("{base}/mtu")) {
                records.push(format!("if.{name}.mtu"), mtu);
            }
        }
    }
    match run(&["ip", "-o", "addr", "show"]) {
        Some(out) => {
            for line in out.lines() {
                let fields: Vec<&str> = line.split_whitespace().collect();
                if let [_, name, family, address, ..] = fields[..] {
                    records.push(format!("if.{name}.{family}"), address);
                }
            }
        }
        None => records.push("addresses.source", "the ip tool is not available"),
    }
}

fn routes(records: &mut Collected) {
    // /proc/net/route: destination, gateway and mask are little-endian hex IPv4 addresses.
    let Some(table) = read("/proc/net/route") else { return };
    for (n, line) in table.lines().skip(1).enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [iface, destination, gateway, _, _, _, metric, mask, ..] = fields[..] else { continue };
        let (Some(destination), Some(gateway), Some(mask)) = (ipv4(destination), ipv4(gateway), ipv4(mask)) else {
            continue;
        };
        let prefix = u32::from_be_bytes(mask.octets()).count_ones();
        records.push(format!("route.{n}"), format!("{destination}/{prefix} via {gateway} dev {iface} metric {metric}"));
    }
}

fn ipv4(hex: &str) -> Option<std::net::Ipv4Addr> {
    let value = u32::from_str_radix(hex, 16).ok()?;
    Some(std::net::Ipv4Addr::from(value.to_le_bytes()))
}

fn processes(records: &mut Collected) {
    let Ok(entries) = fs::read_dir("/proc") else { return };
    let page_kib = 4; // Linux x86-64 and aarch64 with 4 KiB pages; statm counts pages.
    let mut list: Vec<(u64, u32, String, char)> = Vec::new();
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Some(stat) = read(format!("/proc/{pid}/stat")) else { continue };
        // "pid (comm) state ...": comm may hold spaces and parentheses; it ends at the last ')'.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        let name = stat[open + 1..close].to_owned();
        let state = stat[close + 1..].trim_start().chars().next().unwrap_or('?');
        let rss_pages = read(format!("/proc/{pid}/statm"))
            .and_then(|statm| statm.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()))
            .unwrap_or(0);
        list.push((rss_pages * page_kib, pid, name, state));
    }
    list.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    records.push("process.count", list.len().to_string());
    for (rss_kib, pid, name, state) in list.into_iter().take(MAX_PROCESSES) {
        records.push(format!("proc.{pid}"), format!("{name} state={state} rss_kib={rss_kib}"));
    }
}

fn logs(records: &mut Collected) {
    let lines = LOG_LINES.to_string();
    if let Some(out) = run(&["journalctl", "-n", &lines, "--no-pager", "-o", "short-iso", "-q"])
        && !out.trim().is_empty()
    {
        records.push("log.source", "journal");
        push_lines(records, &out);
        return;
    }
    for path in ["/var/log/syslog", "/var/log/messages"] {
        if let Some(text) = read(path) {
            records.push("log.source", path);
            let tail: Vec<&str> = text.lines().rev().take(LOG_LINES).collect();
            push_lines(records, &tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
            return;
        }
    }
    records.push("log.source", "none readable (no journal, /var/log/syslog or /var/log/messages)");
}

fn push_lines(records: &mut Collected, text: &str) {
    for (n, line) in text.lines().enumerate() {
        records.push(format!("log.{n:03}"), line);
    }
}

/// Runs a program (no shell) with a 5 s limit; its standard output if it succeeded.
fn run(argv: &[&str]) -> Option<String> {
    let (program, args) = argv.split_first()?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut stdout = child.stdout.take()?;
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.by_ref().take(1 << 20).read_to_end(&mut out);
        out
    });
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let out = reader.join().ok()?;
                return status.success().then(|| String::from_utf8_lossy(&out).into_owned());
            }
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// Encodes the reply to query `request`: every section of `report` in parts that fit one payload
/// each, the last part of each section marked. Each element is one payload.
pub fn encode_reply(request: u16, report: &Report) -> Vec<Vec<u8>> {
    let mut payloads = Vec::new();
    let mut records = vec![0u8; MAX_PAYLOAD_LEN];
    let mut out = vec![0u8; MAX_PAYLOAD_LEN];
    for (section, entries) in &report.sections {
        let mut writer = RecordWriter::new(&mut records);
        let mut part = 0u16;
        let mut emit = |writer: &RecordWriter<'_>, part: u16, last: bool| {
            let repr = DiagnosticsRepr::Report { request, section: *section, part, last, records: writer.records() };
            if let Some(len) = repr.emit(&mut out) {
                payloads.push(out[..len].to_vec());
            }
        };
        for (key, value) in entries {
            if !writer.push(key, value) {
                emit(&writer, part, false);
                part = part.wrapping_add(1);
                writer.clear();
                // Keys and values were cut to their limits when collected, so one record always
                // fits an empty part.
                let _ = writer.push(key, value);
            }
        }
        emit(&writer, part, true);
    }
    payloads
}

/// Puts a reply back together on the provider's side.
#[derive(Debug)]
pub struct Assembler {
    request: u16,
    asked: Sections,
    report: Report,
    finished: Sections,
    next_part: BTreeMap<Section, u16>,
}

/// What one payload did to an [`Assembler`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Assembled {
    /// Taken; more parts to come.
    Partial,
    /// The reply is complete.
    Complete,
    /// The customer's endpoint refused the query.
    Refused,
    /// Not for this query, malformed, or out of order: ignored.
    Ignored,
}

impl Assembler {
    /// Waits for the reply to query `request` for `asked`.
    pub fn new(request: u16, asked: Sections) -> Assembler {
        Assembler { request, asked, report: Report::default(), finished: Sections::EMPTY, next_part: BTreeMap::new() }
    }

    /// The query payload to send.
    pub fn query(&self) -> Vec<u8> {
        let mut out = [0u8; 8];
        let len = DiagnosticsRepr::Query { request: self.request, sections: self.asked }.emit(&mut out).unwrap_or(0);
        out[..len].to_vec()
    }

    /// Takes one `Diagnostics` payload from the customer's endpoint.
    pub fn handle(&mut self, payload: &[u8]) -> Assembled {
        match DiagnosticsRepr::parse(payload) {
            Some(DiagnosticsRepr::Report { request, section, part, last, records })
                if request == self.request && self.asked.contains(section) && !self.finished.contains(section) =>
            {
                let expected = self.next_part.entry(section).or_insert(0);
                if part != *expected {
                    return Assembled::Ignored;
                }
                *expected = expected.wrapping_add(1);
                self.add(section, records);
                if last {
                    self.finished = self.finished.with(section);
                }
                if self.finished == self.asked { Assembled::Complete } else { Assembled::Partial }
            }
            Some(DiagnosticsRepr::Refused { request, .. }) if request == self.request => Assembled::Refused,
            _ => Assembled::Ignored,
        }
    }

    fn add(&mut self, section: Section, records: WireRecords<'_>) {
        let entries = self.report.sections.entry(section).or_default();
        entries.extend(records.iter().map(|(key, value)| (key.to_owned(), value.to_owned())));
    }

    /// What has arrived so far.
    pub fn report(&self) -> &Report {
        &self.report
    }
}
