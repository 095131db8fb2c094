//! The command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::exit::EXIT_CODES_HELP;

const AFTER_HELP: &str = "\
Development mode (--dev DIR): DIR is a folder made by `lifeline-relay pki init DIR` or
`lifeline-relay dev --dir DIR`. The relay's certificate is checked against DIR/ca.pem, admission
tickets are minted locally with DIR/ticket-signing.key for the relay named \"local\", and the
relay is 127.0.0.1 on ports 8200 and 8443 unless --relay says otherwise.

With a broker (--broker https://HOST:PORT, as `lifeline-broker dev` runs on 127.0.0.1:8600):
`support` logs in (--email; the password from $LIFELINE_PASSWORD, else asked without echo) and
creates the session there; `join` resolves the session number there. The broker names the
relay and issues the admission ticket; the PIN never leaves the two endpoints.

Without --dev or --broker, give --relay, and --ticket with a ticket minted elsewhere (e.g. by
`lifeline-relay ticket mint`). Certificates (relay and broker) are checked against --ca, or the
built-in Mozilla root certificates.

HTTP proxy: --proxy, else the https_proxy / HTTPS_PROXY environment variables (no_proxy honoured).";

/// Lifeline: end-to-end encrypted remote support.
#[derive(Parser, Debug)]
#[command(name = "lifeline", version, after_help = EXIT_CODES_HELP)]
pub(crate) struct Cli {
    /// Log level on stderr: error, warn, info, debug or trace (default: $LIFELINE_LOG, else warn).
    #[arg(long, global = true, value_name = "LEVEL")]
    pub(crate) log: Option<String>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Start a support session as the provider.
    ///
    /// Prints the session number and PIN to give the customer and the web console's address,
    /// then chat: lines typed go to the customer. Commands: /request view|control|files|diagnostics,
    /// /send PATH, /fetch NAME, /accept N, /decline N, /diag [SECTION…], /who, /status, /quit.
    #[command(after_help = format!("{AFTER_HELP}\n\n{EXIT_CODES_HELP}"))]
    Support(SupportArgs),
    /// Join a support session as the customer.
    ///
    /// Asks for the session number and PIN the provider gave you (unless given), then a
    /// full-screen view on a terminal (status line, consent prompts: a = Allow, d = Deny;
    /// F2/Ctrl-R take back everything; F10/Ctrl-E end), else lines (--plain). Commands:
    /// /allow X, /deny X, /revoke X|all, /accept N, /decline N, /send PATH, /sent, /who,
    /// /status, /end. End of input also ends the session.
    #[command(after_help = format!("{AFTER_HELP}\n\n{EXIT_CODES_HELP}"))]
    Join(JoinArgs),
}

/// How to reach the relay; shared by both commands.
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct ConnectArgs {
    /// Relay HOST[:PORT[,PORT…]] (repeatable; tried in order, and on a relay's GoAway).
    /// Ports default to 8200,443,80 (127.0.0.1:8200,8443 with --dev).
    #[arg(long = "relay", value_name = "HOST[:PORTS]")]
    pub(crate) relays: Vec<String>,
    /// CA certificate(s) (PEM) the relay's certificate must chain to (default: DIR/ca.pem with
    /// --dev, else the built-in Mozilla roots).
    #[arg(long, value_name = "FILE")]
    pub(crate) ca: Option<PathBuf>,
    /// Development mode: use DIR/ca.pem and mint tickets with DIR/ticket-signing.key.
    #[arg(long, value_name = "DIR")]
    pub(crate) dev: Option<PathBuf>,
    /// An admission ticket in hex (from the broker, or `lifeline-relay ticket mint`).
    #[arg(long, value_name = "HEX")]
    pub(crate) ticket: Option<String>,
    /// The broker's API, https://HOST:PORT: the session, its relay and the ticket come from it.
    #[arg(long, value_name = "URL", conflicts_with = "ticket")]
    pub(crate) broker: Option<String>,
    /// With --dev: the name of the relay the minted tickets are for.
    #[arg(long, value_name = "NAME", default_value = "local")]
    pub(crate) home_relay: String,
    /// The name the relay's certificate must carry, if it is not the --relay host.
    #[arg(long, value_name = "NAME")]
    pub(crate) tls_name: Option<String>,
    /// HTTP proxy URL, http://[user:password@]host[:port] (default: $https_proxy / $HTTPS_PROXY).
    #[arg(long, value_name = "URL")]
    pub(crate) proxy: Option<String>,
    /// Connect directly even if a proxy is set in the environment.
    #[arg(long, conflicts_with = "proxy")]
    pub(crate) no_proxy: bool,
}

#[derive(Args, Debug, Clone)]
pub(crate) struct SupportArgs {
    #[command(flatten)]
    pub(crate) connect: ConnectArgs,
    /// Your name as the customer sees it (at most 32 bytes).
    #[arg(long, default_value = "Provider")]
    pub(crate) name: String,
    /// With --broker: your login email (the password comes from $LIFELINE_PASSWORD, else the
    /// terminal).
    #[arg(long, value_name = "EMAIL", requires = "broker")]
    pub(crate) email: Option<String>,
    /// Where files the customer sends are saved (default: ~/Downloads, else this folder).
    #[arg(long, value_name = "DIR")]
    pub(crate) downloads: Option<PathBuf>,
    /// Do not serve the web console (the terminal only).
    #[arg(long)]
    pub(crate) no_web_console: bool,
}

#[derive(Args, Debug, Clone)]
pub(crate) struct JoinArgs {
    #[command(flatten)]
    pub(crate) connect: ConnectArgs,
    /// The session number the provider gave you (asked on the terminal if not given).
    #[arg(long, value_name = "N")]
    pub(crate) session: Option<String>,
    /// The PIN the provider gave you (asked on the terminal if not given; prefer that: a PIN
    /// on the command line is visible to other users of this computer).
    #[arg(long, value_name = "PIN")]
    pub(crate) pin: Option<String>,
    /// Your name as the provider sees it (at most 32 bytes).
    #[arg(long, default_value = "Customer")]
    pub(crate) name: String,
    /// Where files the provider sends are saved, after you accept each (default: ~/Downloads,
    /// else this folder).
    #[arg(long, value_name = "DIR")]
    pub(crate) downloads: Option<PathBuf>,
    /// A folder the provider may fetch files from (by name, only files directly inside it),
    /// once you allow file transfer. Nothing is shared without it.
    #[arg(long, value_name = "DIR")]
    pub(crate) share: Option<PathBuf>,
    /// Lines in, lines out, even on a terminal (the full-screen view runs only when stdin and
    /// stdout are terminals).
    #[arg(long)]
    pub(crate) plain: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn dev_join_parses() {
        let cli = Cli::parse_from(["lifeline", "join", "--dev", "dev", "--session", "123456789", "--pin", "1234"]);
        let Command::Join(args) = cli.command else { panic!("join expected") };
        assert_eq!(args.connect.dev, Some(PathBuf::from("dev")));
        assert_eq!(args.session.as_deref(), Some("123456789"));
        assert_eq!(args.name, "Customer");
    }
}
