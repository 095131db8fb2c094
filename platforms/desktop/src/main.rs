//! `lifeline`: the desktop app. `lifeline support` starts a session as the provider (with its
//! web console on 127.0.0.1, `lifeline-web-console`); `lifeline join` joins one as the customer.
//! Chat, consent, file transfer and diagnostics (`lifeline-apps`, glued in `apps`) run in the
//! terminal; everything between the two is end-to-end encrypted by `lifeline-core`, carried by
//! `lifeline-transport-tokio` through a relay.
//!
//! Exit codes are listed in [`exit`] and in `lifeline --help`.

mod apps;
mod cli;
mod console;
mod exit;
mod screen;
mod setup;
mod text;
mod tui;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log.as_deref());
    let result = match cli.command {
        Command::Support(args) => setup::support(&args).and_then(|plan| console::run(plan, false)),
        // The full-screen UI only on a terminal (stdin and stdout), unless --plain.
        Command::Join(args) => {
            let full_screen = !args.plain && tui::usable();
            setup::join(&args).and_then(|plan| console::run(plan, full_screen))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("lifeline: {failure}");
            ExitCode::from(failure.code())
        }
    }
}

/// Log lines go to stderr, warnings and errors only unless `--log` or `LIFELINE_LOG` asks for
/// more. No log line carries a PIN, a key or a ticket.
fn init_logging(level: Option<&str>) {
    let level = level.map(str::to_owned).or_else(|| std::env::var("LIFELINE_LOG").ok()).unwrap_or_default();
    let level = level.parse::<tracing::Level>().unwrap_or(tracing::Level::WARN);
    // Through `tui::log_writer`: stderr, or the full-screen view's log while it runs.
    tracing_subscriber::fmt().with_max_level(level).with_writer(tui::log_writer).with_target(false).init();
}
