//! `lifeline-relay`: run a relay, make a development PKI, mint development tickets, or run the
//! one-command local deployment.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use lifeline_relay::{Config, Relay, StartError, pki};
use lifeline_ticket::{Ticket, TicketRole, TicketSigner};

/// Exit code for a configuration problem (bad or missing config, certificate or key file).
const EXIT_CONFIG: u8 = 2;

#[derive(Parser, Debug)]
#[command(name = "lifeline-relay", version, about = "Lifeline relay: routes end-to-end encrypted frames")]
struct Cli {
    /// Log level: error, warn, info, debug or trace (default: $LIFELINE_LOG, else info).
    #[arg(long, global = true)]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a relay.
    Run {
        /// The TOML configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Development PKI.
    Pki {
        #[command(subcommand)]
        command: PkiCommand,
    },
    /// Development tickets (the broker issues real ones).
    Ticket {
        #[command(subcommand)]
        command: TicketCommand,
    },
    /// One-command local deployment: a dev PKI in DIR (if missing), a config, and a relay named
    /// "local" on 127.0.0.1:8200 and :8443, metrics on 127.0.0.1:9200.
    Dev {
        /// Where the PKI and config live.
        #[arg(long, default_value = "./dev")]
        dir: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum PkiCommand {
    /// Create a development CA, relay and broker certificates, and the ticket keys in DIR.
    Init {
        /// The folder to create the files in (must not hold a PKI already).
        dir: PathBuf,
        /// A relay name to issue a certificate for (repeatable; default "local").
        #[arg(long = "relay")]
        relays: Vec<String>,
        /// An extra DNS name or IP address for every relay and broker certificate (repeatable;
        /// default localhost and 127.0.0.1).
        #[arg(long = "san")]
        sans: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
enum TicketCommand {
    /// Sign a ticket with a development key and print it in hex.
    Mint {
        /// The ticket signing key (PKCS#8 PEM), e.g. dev/ticket-signing.key.
        #[arg(long)]
        key: PathBuf,
        /// The session number.
        #[arg(long)]
        session: u64,
        /// The role the ticket grants.
        #[arg(long, value_enum)]
        role: RoleArg,
        /// The name of the session's home relay.
        #[arg(long)]
        home: String,
        /// Lifetime in seconds (at most 86400).
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum RoleArg {
    Leader,
    Member,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    lifeline_relay::init_logging(cli.log_level.as_deref());
    match cli.command {
        Command::Run { config } => match Config::load(&config) {
            Ok(config) => run(config, None),
            Err(error) => fail(EXIT_CONFIG, &error.to_string()),
        },
        Command::Pki { command: PkiCommand::Init { dir, relays, sans } } => {
            let relays = if relays.is_empty() { vec!["local".to_owned()] } else { relays };
            let sans = if sans.is_empty() { pki::DEFAULT_SANS.map(String::from).to_vec() } else { sans };
            match pki::init(&dir, &relays, &sans) {
                Ok(()) => {
                    println!("development PKI written to {}", dir.display());
                    ExitCode::SUCCESS
                }
                Err(error) => fail(1, &error.to_string()),
            }
        }
        Command::Ticket { command: TicketCommand::Mint { key, session, role, home, ttl } } => {
            mint(&key, session, role, &home, ttl)
        }
        Command::Dev { dir } => dev(&dir),
    }
}

fn run(config: Config, banner: Option<String>) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => return fail(1, &format!("cannot start the async runtime: {error}")),
    };
    runtime.block_on(async move {
        let relay = match Relay::bind(config).await {
            Ok(relay) => relay,
            Err(error @ StartError::Credentials(_)) => return fail(EXIT_CONFIG, &error.to_string()),
            Err(error) => return fail(1, &error.to_string()),
        };
        let endpoints: Vec<String> = relay.endpoint_addrs().iter().map(ToString::to_string).collect();
        let metrics = relay.metrics_addr().map_or_else(String::new, |addr| addr.to_string());
        let mesh = relay.mesh_addr().map_or_else(|| "off".to_owned(), |addr| addr.to_string());
        println!(
            "lifeline-relay {} ready: endpoints {} metrics {metrics} mesh {mesh}",
            relay.name(),
            endpoints.join(",")
        );
        if let Some(banner) = banner {
            println!("{banner}");
        }
        let handle = relay.shutdown_handle();
        tokio::spawn(async move {
            lifeline_relay::shutdown_signal().await;
            handle.shutdown();
        });
        relay.run().await;
        ExitCode::SUCCESS
    })
}

fn mint(key: &Path, session: u64, role: RoleArg, home: &str, ttl: u64) -> ExitCode {
    let pem = match std::fs::read_to_string(key) {
        Ok(pem) => pem,
        Err(error) => return fail(EXIT_CONFIG, &format!("{}: {error}", key.display())),
    };
    let signer = match TicketSigner::from_pem(&pem) {
        Ok(signer) => signer,
        Err(error) => return fail(EXIT_CONFIG, &format!("{}: {error}", key.display())),
    };
    if session == 0 {
        return fail(EXIT_CONFIG, "--session: must not be 0");
    }
    if ttl == 0 || ttl > lifeline_ticket::MAX_LIFETIME_SECS {
        return fail(EXIT_CONFIG, &format!("--ttl: between 1 and {}", lifeline_ticket::MAX_LIFETIME_SECS));
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let role = match role {
        RoleArg::Leader => TicketRole::Leader,
        RoleArg::Member => TicketRole::Member,
    };
    let Some(bytes) = signer.mint(&Ticket::new(session, role, home, now + ttl)) else {
        return fail(EXIT_CONFIG, &format!("--home {home:?}: use 1 to 64 of a-z 0-9 - . _"));
    };
    println!("{}", hex(&bytes));
    ExitCode::SUCCESS
}

fn dev(dir: &Path) -> ExitCode {
    if !dir.join(pki::CA_CERT).exists() {
        let sans = pki::DEFAULT_SANS.map(String::from).to_vec();
        if let Err(error) = pki::init(dir, &["local".to_owned()], &sans) {
            return fail(1, &error.to_string());
        }
        println!("created a development PKI in {}", dir.display());
    }
    let config_path = dir.join("relay.toml");
    if !config_path.exists() {
        let text = format!(
            "# Written by `lifeline-relay dev`. Paths are relative to this file.\n\
             name = \"local\"\n\
             listen = [\"127.0.0.1:8200\", \"127.0.0.1:8443\"]\n\
             metrics_listen = \"127.0.0.1:9200\"\n\n\
             [tls]\ncert = \"{}\"\nkey = \"{}\"\nca = \"{}\"\n\n\
             [tickets]\nverify_key = \"{}\"\n",
            pki::relay_cert_file("local"),
            pki::relay_key_file("local"),
            pki::CA_CERT,
            pki::TICKET_VERIFY_KEY,
        );
        if let Err(error) = std::fs::write(&config_path, text) {
            return fail(1, &format!("{}: {error}", config_path.display()));
        }
    }
    let config = match Config::load(&config_path) {
        Ok(config) => config,
        Err(error) => return fail(EXIT_CONFIG, &error.to_string()),
    };
    let key = dir.join(pki::TICKET_SIGNING_KEY);
    let banner = format!(
        "\nNext, in two other terminals:\n  \
         lifeline support --dev {dir}     # the provider: prints a session number and a PIN\n  \
         lifeline join --dev {dir}        # the customer: asks for both\n  \
         # (cargo run --release -p lifeline-desktop -- support --dev {dir}, if not installed)\n  \
         # or mint tickets by hand, a leader (provider) and a member (customer) one:\n  \
         lifeline-relay ticket mint --key {key} --session 123456789 --role leader --home local\n  \
         lifeline-relay ticket mint --key {key} --session 123456789 --role member --home local\n  \
         # endpoints connect to 127.0.0.1:8200 or 127.0.0.1:8443 (TLS 1.3, ALPN lifeline/1),\n  \
         # trusting {ca}; metrics: curl http://127.0.0.1:9200/metrics\n  \
         # stop with Ctrl-C (the relay sends GoAway and waits for endpoints to leave)",
        key = key.display(),
        ca = dir.join(pki::CA_CERT).display(),
        dir = dir.display(),
    );
    run(config, Some(banner))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    bytes
        .iter()
        .flat_map(|b| [char::from(DIGITS[usize::from(b >> 4)]), char::from(DIGITS[usize::from(b & 0xF)])])
        .collect()
}

fn fail(code: u8, message: &str) -> ExitCode {
    eprintln!("lifeline-relay: {message}");
    ExitCode::from(code)
}
