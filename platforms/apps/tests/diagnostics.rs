//! Diagnostics collected on this machine, sent as report parts and put back together.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use lifeline_apps::diagnostics::{Assembled, Assembler, Report, collect, encode_reply};
use lifeline_core::app::diagnostics::{DiagnosticsRepr, MAX_VALUE_LEN, RefusalReason, Section, Sections};
use lifeline_core::wire::MAX_PAYLOAD_LEN;

#[test]
fn this_machine_reports_what_linux_exposes() {
    let report = collect(Sections::ALL);
    let get =
        |section: Section, key: &str| report.sections[&section].iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    assert_eq!(get(Section::System, "os.family").as_deref(), Some("linux"));
    assert!(get(Section::System, "kernel.release").is_some());
    let total: u64 = get(Section::Memory, "mem.total_kib").unwrap().parse().unwrap();
    assert!(total > 1024, "{total} KiB");
    assert!(get(Section::Cpu, "cpu.count").is_some());
    let me = format!("proc.{}", std::process::id());
    assert!(report.sections[&Section::Processes].iter().any(|(k, _)| *k == me), "this test process is listed");
    assert!(report.sections[&Section::Network].iter().any(|(k, _)| k.starts_with("if.lo.")), "loopback is listed");
    assert!(get(Section::Logs, "log.source").is_some(), "the log section says where its lines come from");
    assert!(report.sections.contains_key(&Section::Counters), "a section with nothing to say is still answered");
    assert!(report.to_text().contains("[memory]\nmem.total_kib = "));
}

#[test]
fn only_the_asked_sections_are_collected() {
    let report = collect(Sections::EMPTY.with(Section::Memory));
    assert_eq!(report.sections.keys().copied().collect::<Vec<_>>(), [Section::Memory]);
}

#[test]
fn a_large_reply_is_split_and_put_back_together() {
    let mut report = Report::default();
    let big: Vec<(String, String)> = (0..50).map(|n| (format!("proc.{n}"), "x".repeat(MAX_VALUE_LEN))).collect();
    report.sections.insert(Section::Processes, big.clone());
    report.sections.insert(Section::System, vec![("os.name".into(), "Zoë OS ✓".into())]);
    let asked = Sections::EMPTY.with(Section::Processes).with(Section::System);
    let payloads = encode_reply(9, &report);
    assert!(payloads.len() > 2, "the processes section needs several parts");
    assert!(payloads.iter().all(|p| p.len() <= MAX_PAYLOAD_LEN));

    let mut assembler = Assembler::new(9, asked);
    assert_eq!(
        DiagnosticsRepr::parse(&assembler.query()),
        Some(DiagnosticsRepr::Query { request: 9, sections: asked })
    );
    // A reply to another query, and a part out of order, are ignored.
    let other = encode_reply(8, &report);
    assert_eq!(assembler.handle(&other[0]), Assembled::Ignored);
    assert_eq!(assembler.handle(&payloads[2]), Assembled::Ignored, "processes part 1 before part 0");
    let mut outcome = Assembled::Ignored;
    for payload in &payloads {
        outcome = assembler.handle(payload);
    }
    assert_eq!(outcome, Assembled::Complete);
    assert_eq!(assembler.report(), &report);
}

#[test]
fn a_refusal_ends_the_wait() {
    let mut assembler = Assembler::new(3, Sections::ALL);
    let mut out = [0u8; 8];
    let len = DiagnosticsRepr::Refused { request: 3, reason: RefusalReason::Busy }.emit(&mut out).unwrap();
    assert_eq!(assembler.handle(&out[..len]), Assembled::Refused);
    assert_eq!(assembler.handle(b"\x02garbage"), Assembled::Ignored);
}
