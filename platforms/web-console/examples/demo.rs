//! The console with a simulated session behind it, to look at and click through by hand:
//! `cargo run -p lifeline-web-console --example demo`, then open the printed URL.
//!
//! It does what `lifeline support` will do, with a pretend customer: chat lines are "sent" and
//! answered, capability requests are granted after a moment, uploads become transfers with
//! progress, diagnostics queries get a report, "End session" ends it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lifeline_web_console::{
    Capability, ChatLine, ConnectionState, Consent, ConsentState, ConsoleCommand, ConsoleConfig, ConsoleEvent,
    DiagnosticsReport, DiagnosticsSection, Direction, Member, Publisher, Role, SessionInfo, Transfer, TransferId,
    TransferState, WebConsole,
};

#[tokio::main]
async fn main() {
    let (console, mut commands) = WebConsole::start(ConsoleConfig::default()).await.expect("start the console");
    println!("Provider console: {}", console.url());
    println!("(Ctrl-C or 'End session' in the page to stop)");

    let events = console.publisher();
    events.publish(ConsoleEvent::Session(SessionInfo {
        session_number: 123_456_789,
        pin: Some("482913".into()),
        short_auth_string: Some("4F7 2C1".into()),
        provider: Some("Ada Lovelace, Helpdesk Ltd".into()),
    }));
    events.publish(ConsoleEvent::Connection { state: ConnectionState::Connected, detail: Some("demo".into()) });
    let mut consent: Vec<Consent> = Vec::new();
    publish_members(&events, &consent);
    events.publish(chat("Grace", "Hello? The printer says it is offline.", false));

    let mut next_transfer = 1;
    let mut next_report = 1;
    loop {
        let command = tokio::select! {
            command = commands.recv() => command,
            _ = tokio::signal::ctrl_c() => None,
        };
        let Some(command) = command else { break };
        println!("command: {command:?}");
        match command {
            ConsoleCommand::SendChat { text } => {
                events.publish(chat("Ada Lovelace", &text, true));
                let events = events.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(800)).await;
                    events.publish(chat("Grace", "OK, one moment…", false));
                });
            }
            ConsoleCommand::RequestCapability { capability } => {
                set(&mut consent, capability, ConsentState::Pending);
                publish_members(&events, &consent);
                tokio::time::sleep(Duration::from_secs(1)).await;
                set(&mut consent, capability, ConsentState::Granted);
                publish_members(&events, &consent);
                events.publish(ConsoleEvent::Notice { message: format!("Grace allowed {capability:?}"), at_ms: now() });
            }
            ConsoleCommand::SendFile { name, path, size } => {
                let id = TransferId(next_transfer);
                next_transfer += 1;
                let events = events.clone();
                tokio::spawn(async move {
                    let transfer = |state| {
                        ConsoleEvent::Transfer(Transfer {
                            id,
                            direction: Direction::ToCustomer,
                            name: name.clone(),
                            size: Some(size),
                            state,
                        })
                    };
                    for step in 0..=20u64 {
                        events.publish(transfer(TransferState::InProgress { bytes: size * step / 20 }));
                        tokio::time::sleep(Duration::from_millis(150)).await;
                    }
                    events.publish(transfer(TransferState::Completed { sha256: "0".repeat(64), saved_to: None }));
                    let _ = tokio::fs::remove_file(path).await;
                });
            }
            ConsoleCommand::FetchFile { name } => {
                let id = TransferId(next_transfer);
                next_transfer += 1;
                events.publish(ConsoleEvent::Transfer(Transfer {
                    id,
                    direction: Direction::FromCustomer,
                    name,
                    size: Some(48_213),
                    state: TransferState::Offered,
                }));
            }
            ConsoleCommand::AcceptFile { transfer } | ConsoleCommand::DeclineFile { transfer } => {
                events.publish(ConsoleEvent::Notice {
                    message: format!("transfer {} answered", transfer.0),
                    at_ms: now(),
                });
            }
            ConsoleCommand::QueryDiagnostics { sections } => {
                let record = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
                let all = vec![
                    DiagnosticsSection {
                        name: "os".into(),
                        records: vec![record(&[("name", "Debian GNU/Linux 12"), ("kernel", "6.1.0")])],
                    },
                    DiagnosticsSection {
                        name: "processes".into(),
                        records: vec![
                            record(&[("pid", "1"), ("name", "systemd")]),
                            record(&[("pid", "812"), ("name", "cupsd")]),
                        ],
                    },
                ];
                let wanted = all.into_iter().filter(|s| sections.is_empty() || sections.contains(&s.name)).collect();
                events.publish(ConsoleEvent::Diagnostics(DiagnosticsReport {
                    id: next_report,
                    at_ms: now(),
                    sections: wanted,
                }));
                next_report += 1;
            }
            ConsoleCommand::EndSession => {
                events.publish(ConsoleEvent::Ended { reason: "the provider ended the session".into() });
                tokio::time::sleep(Duration::from_secs(1)).await;
                break;
            }
            _ => {}
        }
    }
    console.shutdown().await;
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn chat(from: &str, text: &str, local: bool) -> ConsoleEvent {
    ConsoleEvent::Chat(ChatLine {
        from: from.into(),
        member: Some(u32::from(!local)),
        text: text.into(),
        local,
        at_ms: now(),
    })
}

fn set(consent: &mut Vec<Consent>, capability: Capability, state: ConsentState) {
    match consent.iter_mut().find(|c| c.capability == capability) {
        Some(entry) => entry.state = state,
        None => consent.push(Consent { capability, state }),
    }
}

fn publish_members(events: &Publisher, consent: &[Consent]) {
    events.publish(ConsoleEvent::Members {
        members: vec![
            Member {
                id: 0,
                name: "Ada Lovelace".into(),
                role: Role::Provider,
                organisation: Some("Helpdesk Ltd".into()),
                you: true,
                consent: vec![],
            },
            Member {
                id: 1,
                name: "Grace".into(),
                role: Role::Customer,
                organisation: None,
                you: false,
                consent: consent.to_vec(),
            },
        ],
    });
}
