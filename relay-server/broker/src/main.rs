//! `lifeline-broker`: run the broker, administer it, or run the one-command local deployment
//! (broker and relay together).

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use lifeline_broker::store::{AccountUpdate, AuditEntry, NewAccount, Role, Store};
use lifeline_broker::{Config, Server, StartError, SystemClock, open_broker, password};
use zeroize::Zeroizing;

/// Exit code for a configuration problem.
const EXIT_CONFIG: u8 = 2;

#[derive(Parser, Debug)]
#[command(name = "lifeline-broker", version, about = "Lifeline service broker: accounts, sessions, tickets, reports")]
struct Cli {
    /// Log level: error, warn, info, debug or trace (default: $LIFELINE_LOG, else info).
    #[arg(long, global = true)]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the broker.
    Run {
        /// The TOML configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Administer the store directly (on the broker's host): accounts, relays, audit, reports.
    Admin {
        /// The broker's configuration file (for the store URL).
        #[arg(long)]
        config: PathBuf,
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// One-command local deployment: a dev PKI in DIR (if missing), a broker on 127.0.0.1:8600
    /// with development accounts, and a relay "local" on 127.0.0.1:8200 and :8443 reporting to it.
    Dev {
        /// Where the PKI, configs, database and development logins live.
        #[arg(long, default_value = "./dev")]
        dir: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum AdminCommand {
    /// Create an account. The password is read from $LIFELINE_PASSWORD, else from stdin.
    CreateAccount {
        /// Login email.
        #[arg(long)]
        email: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// Role.
        #[arg(long, value_enum, default_value = "provider")]
        role: RoleArg,
        /// Subscription data.
        #[arg(long, default_value = "")]
        subscription: String,
        /// The organisation the provider works for (customers see it, with the name, as the
        /// broker's word on who is asking).
        #[arg(long, default_value = "")]
        organisation: String,
    },
    /// List accounts.
    ListAccounts,
    /// Change an account's role, name, subscription or organisation.
    UpdateAccount {
        /// Login email.
        #[arg(long)]
        email: String,
        /// New role.
        #[arg(long, value_enum)]
        role: Option<RoleArg>,
        /// New display name.
        #[arg(long)]
        name: Option<String>,
        /// New subscription data.
        #[arg(long)]
        subscription: Option<String>,
        /// New organisation.
        #[arg(long)]
        organisation: Option<String>,
    },
    /// Set an account's password ($LIFELINE_PASSWORD, else stdin); revokes its tokens.
    SetPassword {
        /// Login email.
        #[arg(long)]
        email: String,
    },
    /// Clear an account's lockout.
    Unlock {
        /// Login email.
        #[arg(long)]
        email: String,
    },
    /// Delete an account (its session reports stay).
    DeleteAccount {
        /// Login email.
        #[arg(long)]
        email: String,
    },
    /// Register a relay.
    RegisterRelay {
        /// Relay name (as in its certificate and in tickets).
        #[arg(long)]
        name: String,
        /// Endpoint address host:port (repeatable, preferred first).
        #[arg(long = "address")]
        addresses: Vec<String>,
        /// Pin this certificate (PEM): its reports must present exactly it.
        #[arg(long)]
        cert: Option<PathBuf>,
    },
    /// Pin a relay's new certificate (rotation), or unpin with no --cert.
    RotateRelayCert {
        /// Relay name.
        #[arg(long)]
        name: String,
        /// The new certificate (PEM).
        #[arg(long)]
        cert: Option<PathBuf>,
    },
    /// Remove a relay.
    DeleteRelay {
        /// Relay name.
        #[arg(long)]
        name: String,
    },
    /// Fleet health: every relay and its last report.
    ListRelays,
    /// Print the audit log (newest first).
    Audit {
        /// CSV instead of JSON.
        #[arg(long)]
        csv: bool,
        /// Entries.
        #[arg(long, default_value_t = 1000)]
        limit: i64,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum RoleArg {
    Provider,
    AccountAdmin,
    NetworkAdmin,
}

impl From<RoleArg> for Role {
    fn from(role: RoleArg) -> Role {
        match role {
            RoleArg::Provider => Role::Provider,
            RoleArg::AccountAdmin => Role::AccountAdmin,
            RoleArg::NetworkAdmin => Role::NetworkAdmin,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    lifeline_relay::init_logging(cli.log_level.as_deref());
    match cli.command {
        Command::Run { config } => match Config::load(&config) {
            Ok(config) => runtime(run(config)),
            Err(error) => fail(EXIT_CONFIG, &error.to_string()),
        },
        Command::Admin { config, command } => match Config::load(&config) {
            Ok(config) => match lifeline_broker::store::open(&config.store) {
                Ok(store) => match admin(store.as_ref(), command) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(message) => fail(1, &message),
                },
                Err(error) => fail(EXIT_CONFIG, &error.to_string()),
            },
            Err(error) => fail(EXIT_CONFIG, &error.to_string()),
        },
        Command::Dev { dir } => runtime(dev(dir)),
    }
}

fn runtime(work: impl Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime.block_on(work),
        Err(error) => fail(1, &format!("cannot start the async runtime: {error}")),
    }
}

async fn run(config: Config) -> ExitCode {
    let server = match start(&config).await {
        Ok(server) => server,
        Err(code) => return code,
    };
    let handle = server.shutdown_handle();
    tokio::spawn(async move {
        lifeline_relay::shutdown_signal().await;
        handle.shutdown();
    });
    server.run().await;
    ExitCode::SUCCESS
}

async fn start(config: &Config) -> Result<Server, ExitCode> {
    let store_config = config.clone();
    let opened = tokio::task::spawn_blocking(move || open_broker(&store_config, Arc::new(SystemClock))).await;
    let broker = match opened {
        Ok(Ok(broker)) => broker,
        Ok(Err(error)) => return Err(fail(EXIT_CONFIG, &error.to_string())),
        Err(error) => return Err(fail(1, &error.to_string())),
    };
    match Server::bind(config, Arc::new(broker)).await {
        Ok(server) => {
            let addr = server.local_addr().map_or_else(String::new, |a| a.to_string());
            println!("lifeline-broker ready: https://{addr}");
            Ok(server)
        }
        Err(error @ StartError::Config(_)) => Err(fail(EXIT_CONFIG, &error.to_string())),
        Err(error) => Err(fail(1, &error.to_string())),
    }
}

fn read_password() -> Result<Zeroizing<String>, String> {
    if let Ok(password) = std::env::var("LIFELINE_PASSWORD") {
        return Ok(Zeroizing::new(password));
    }
    eprintln!("password (one line on stdin):");
    let mut line = Zeroizing::new(String::new());
    std::io::stdin().lock().read_line(&mut line).map_err(|e| format!("stdin: {e}"))?;
    Ok(Zeroizing::new(line.trim_end_matches(['\r', '\n']).to_owned()))
}

fn now() -> i64 {
    lifeline_broker::Clock::now_unix(&SystemClock)
}

fn audit(store: &dyn Store, action: &str, target: &str) -> Result<(), String> {
    let entry = AuditEntry {
        at: now(),
        actor: "cli".into(),
        source: "local".into(),
        action: action.into(),
        target: target.into(),
        outcome: "ok".into(),
    };
    store.audit(&entry).map_err(|e| e.to_string())
}

fn account_id(store: &dyn Store, email: &str) -> Result<i64, String> {
    store
        .account_by_email(&email.trim().to_lowercase())
        .map_err(|e| e.to_string())?
        .map(|a| a.id)
        .ok_or_else(|| format!("no account {email}"))
}

fn fingerprint(path: &Path) -> Result<String, String> {
    let certs = lifeline_broker::tls::read_certs(path)?;
    let leaf = certs.first().ok_or_else(|| format!("{}: no certificate", path.display()))?;
    let digest = ring::digest::digest(&ring::digest::SHA256, leaf.as_ref());
    Ok(digest.as_ref().iter().map(|b| format!("{b:02x}")).collect())
}

fn print_json(value: &impl serde::Serialize) -> Result<(), String> {
    println!("{}", serde_json::to_string_pretty(value).map_err(|e| e.to_string())?);
    Ok(())
}

fn admin(store: &dyn Store, command: AdminCommand) -> Result<(), String> {
    let text = |e: lifeline_broker::store::StoreError| e.to_string();
    match command {
        AdminCommand::CreateAccount { email, name, role, subscription, organisation } => {
            check_text("--name", &name, 1)?;
            check_text("--organisation", &organisation, 0)?;
            let password = read_password()?;
            password::check_policy(&password).map_err(|e| e.to_string())?;
            let email = email.trim().to_lowercase();
            let account = NewAccount {
                email: email.clone(),
                name,
                role: role.into(),
                subscription,
                organisation,
                password_hash: password::hash(&password).map_err(|e| e.to_string())?,
                created_at: now(),
            };
            let id = store.create_account(&account).map_err(text)?;
            audit(store, "account_create", &email)?;
            println!("account {id} created: {email} ({})", Role::from(role).as_str());
        }
        AdminCommand::ListAccounts => print_json(&store.list_accounts().map_err(text)?)?,
        AdminCommand::UpdateAccount { email, role, name, subscription, organisation } => {
            let id = account_id(store, &email)?;
            if let Some(name) = &name {
                check_text("--name", name, 1)?;
            }
            if let Some(organisation) = &organisation {
                check_text("--organisation", organisation, 0)?;
            }
            let update = AccountUpdate { name, role: role.map(Role::from), subscription, organisation };
            store.update_account(id, &update).map_err(text)?;
            audit(store, "account_update", &email)?;
            println!("account {email} updated");
        }
        AdminCommand::SetPassword { email } => {
            let id = account_id(store, &email)?;
            let password = read_password()?;
            password::check_policy(&password).map_err(|e| e.to_string())?;
            store.set_password(id, &password::hash(&password).map_err(|e| e.to_string())?).map_err(text)?;
            audit(store, "password_reset", &email)?;
            println!("password of {email} set; its tokens are revoked");
        }
        AdminCommand::Unlock { email } => {
            store.unlock(account_id(store, &email)?).map_err(text)?;
            audit(store, "account_unlock", &email)?;
            println!("{email} unlocked");
        }
        AdminCommand::DeleteAccount { email } => {
            store.delete_account(account_id(store, &email)?).map_err(text)?;
            audit(store, "account_delete", &email)?;
            println!("{email} deleted");
        }
        AdminCommand::RegisterRelay { name, addresses, cert } => {
            if !lifeline_ticket::valid_relay_name(&name) {
                return Err(format!("relay name {name:?}: use 1 to 64 of a-z 0-9 - . _"));
            }
            let pin = cert.as_deref().map(fingerprint).transpose()?;
            store.register_relay(&name, &addresses, pin.as_deref(), now()).map_err(text)?;
            audit(store, "relay_register", &name)?;
            println!("relay {name} registered");
        }
        AdminCommand::RotateRelayCert { name, cert } => {
            let pin = cert.as_deref().map(fingerprint).transpose()?;
            if !store.set_relay_cert(&name, pin.as_deref()).map_err(text)? {
                return Err(format!("no relay {name}"));
            }
            audit(store, "relay_cert_rotate", &name)?;
            println!("relay {name}: pinned certificate {}", pin.as_deref().unwrap_or("(none)"));
        }
        AdminCommand::DeleteRelay { name } => {
            if !store.delete_relay(&name).map_err(text)? {
                return Err(format!("no relay {name}"));
            }
            audit(store, "relay_delete", &name)?;
            println!("relay {name} deleted");
        }
        AdminCommand::ListRelays => print_json(&store.list_relays().map_err(text)?)?,
        AdminCommand::Audit { csv, limit } => {
            let entries = store.audit_log(limit).map_err(text)?;
            if csv {
                println!("at,actor,source,action,target,outcome");
                for e in entries {
                    let fields = [e.at.to_string(), e.actor, e.source, e.action, e.target, e.outcome];
                    let quoted: Vec<String> =
                        fields.iter().map(|f| format!("\"{}\"", f.replace('"', "\"\""))).collect();
                    println!("{}", quoted.join(","));
                }
            } else {
                print_json(&entries)?;
            }
        }
    }
    Ok(())
}

/// The development logins file: one `role email password` per line, mode 0600.
const DEV_LOGINS: &str = "logins.txt";

async fn dev(dir: PathBuf) -> ExitCode {
    use lifeline_relay::pki;
    if !dir.join(pki::CA_CERT).exists() {
        let sans = pki::DEFAULT_SANS.map(String::from).to_vec();
        if let Err(error) = pki::init(&dir, &["local".to_owned()], &sans) {
            return fail(1, &error.to_string());
        }
        println!("created a development PKI in {}", dir.display());
    }
    // The broker's config first: the relay's [broker] table points at its listener.
    let broker_path = dir.join("broker.toml");
    if !broker_path.exists() {
        let text = format!(
            "# Written by `lifeline-broker dev`. Paths are relative to this file.\n\
             listen = \"127.0.0.1:8600\"\nstore = \"sqlite:broker.db\"\n\n\
             [tls]\ncert = \"{}\"\nkey = \"{}\"\nca = \"{}\"\n\n\
             [tickets]\nsigning_key = \"{}\"\n",
            pki::BROKER_CERT,
            pki::BROKER_KEY,
            pki::CA_CERT,
            pki::TICKET_SIGNING_KEY,
        );
        if let Err(error) = std::fs::write(&broker_path, text) {
            return fail(1, &format!("{}: {error}", broker_path.display()));
        }
    }
    let broker_config = match Config::load(&broker_path) {
        Ok(config) => config,
        Err(error) => return fail(EXIT_CONFIG, &error.to_string()),
    };
    let broker_addr = broker_config.listen;
    let relay_path = dir.join("relay.toml");
    let relay_text = match std::fs::read_to_string(&relay_path) {
        Ok(text) => text,
        Err(_) => format!(
            "# Written by `lifeline-broker dev`. Paths are relative to this file.\n\
             name = \"local\"\n\
             listen = [\"127.0.0.1:8200\", \"127.0.0.1:8443\"]\n\
             metrics_listen = \"127.0.0.1:9200\"\n\n\
             [tls]\ncert = \"{}\"\nkey = \"{}\"\nca = \"{}\"\n\n\
             [tickets]\nverify_key = \"{}\"\n",
            pki::relay_cert_file("local"),
            pki::relay_key_file("local"),
            pki::CA_CERT,
            pki::TICKET_VERIFY_KEY,
        ),
    };
    if !relay_text.contains("[broker]") {
        let text = format!("{relay_text}\n[broker]\nurl = \"https://{broker_addr}\"\ninterval_secs = 2\n");
        if let Err(error) = std::fs::write(&relay_path, text) {
            return fail(1, &format!("{}: {error}", relay_path.display()));
        }
    }
    let relay_config = match lifeline_relay::Config::load(&relay_path) {
        Ok(config) => config,
        Err(error) => return fail(EXIT_CONFIG, &error.to_string()),
    };
    let seed_config = broker_config.clone();
    let seed_dir = dir.clone();
    match tokio::task::spawn_blocking(move || seed_dev(&seed_config, &seed_dir)).await {
        Ok(Ok(())) => {}
        Ok(Err(message)) => return fail(1, &message),
        Err(error) => return fail(1, &error.to_string()),
    }
    let server = match start(&broker_config).await {
        Ok(server) => server,
        Err(code) => return code,
    };
    let relay = match lifeline_relay::Relay::bind(relay_config).await {
        Ok(relay) => relay,
        Err(error) => return fail(1, &error.to_string()),
    };
    let endpoints: Vec<String> = relay.endpoint_addrs().iter().map(ToString::to_string).collect();
    println!("lifeline-relay local ready: endpoints {}", endpoints.join(","));
    let ca = dir.join(pki::CA_CERT);
    println!(
        "\nDevelopment logins (role, email, password) are in {logins}.\nNext, in two more terminals:\n  \
         # the provider (password from {logins}):\n  \
         cargo run --release -p lifeline-desktop -- support --broker https://{broker_addr} --ca {ca} --email provider@dev.local\n  \
         # the customer:\n  \
         cargo run --release -p lifeline-desktop -- join --broker https://{broker_addr} --ca {ca}\n  \
         # administration: cargo run -p lifeline-broker -- admin --config {config} list-relays\n  \
         # stop with Ctrl-C",
        logins = dir.join(DEV_LOGINS).display(),
        ca = ca.display(),
        config = broker_path.display(),
    );
    let broker_handle = server.shutdown_handle();
    let relay_handle = relay.shutdown_handle();
    let broker_task = tokio::spawn(server.run());
    let relay_task = tokio::spawn(relay.run());
    lifeline_relay::shutdown_signal().await;
    relay_handle.shutdown();
    let _ = relay_task.await;
    broker_handle.shutdown();
    let _ = broker_task.await;
    ExitCode::SUCCESS
}

/// Creates the development accounts (random passwords, written to `logins.txt`, mode 0600) and
/// registers the relay `local`, unless already done.
/// Names and organisations are shown to customers: 1..=100 (or 0..=100) characters, no control
/// characters (as the API checks them).
fn check_text(option: &str, text: &str, min: usize) -> Result<(), String> {
    let length = text.chars().count();
    if length < min || length > 100 || text.chars().any(char::is_control) {
        return Err(format!("{option}: {min} to 100 characters, no control characters"));
    }
    Ok(())
}

fn seed_dev(config: &Config, dir: &Path) -> Result<(), String> {
    let store = lifeline_broker::store::open(&config.store).map_err(|e| e.to_string())?;
    let logins_path = dir.join(DEV_LOGINS);
    if !logins_path.exists() {
        let mut lines = String::from("# Development logins made by `lifeline-broker dev`: role email password\n");
        for (role, email, name) in [
            (Role::Provider, "provider@dev.local", "Ada (Helpdesk)"),
            (Role::AccountAdmin, "accounts@dev.local", "Account administrator"),
            (Role::NetworkAdmin, "network@dev.local", "Network administrator"),
        ] {
            let password = dev_password()?;
            let account = NewAccount {
                email: email.into(),
                name: name.into(),
                role,
                subscription: "development".into(),
                organisation: if role == Role::Provider {
                    "Example Helpdesk (development)".into()
                } else {
                    String::new()
                },
                password_hash: password::hash(&password).map_err(|e| e.to_string())?,
                created_at: now(),
            };
            match store.create_account(&account) {
                Ok(_) => {}
                Err(lifeline_broker::store::StoreError::Conflict) => {
                    let id = account_id(store.as_ref(), email)?;
                    store.set_password(id, &account.password_hash).map_err(|e| e.to_string())?;
                }
                Err(error) => return Err(error.to_string()),
            }
            lines.push_str(&format!("{} {email} {}\n", role.as_str(), password.as_str()));
        }
        write_secret(&logins_path, lines.as_bytes())?;
    }
    if !store.list_relays().map_err(|e| e.to_string())?.iter().any(|r| r.name == "local") {
        let addresses = ["127.0.0.1:8200".to_owned(), "127.0.0.1:8443".to_owned()];
        store.register_relay("local", &addresses, None, now()).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// A random password that passes the policy: 16 characters of a-z and 2-9, with a digit.
fn dev_password() -> Result<Zeroizing<String>, String> {
    use rand_core::TryRng as _;
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let mut bytes = Zeroizing::new([0u8; 16]);
    getrandom::SysRng.try_fill_bytes(&mut bytes[..]).map_err(|e| e.to_string())?;
    let mut password: String = bytes.iter().map(|b| char::from(ALPHABET[usize::from(b & 31)])).collect();
    password.replace_range(0..1, "7");
    password.replace_range(1..2, "k");
    Ok(Zeroizing::new(password))
}

fn write_secret(path: &Path, contents: &[u8]) -> Result<(), String> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    file.write_all(contents).map_err(|e| format!("{}: {e}", path.display()))
}

fn fail(code: u8, message: &str) -> ExitCode {
    eprintln!("lifeline-broker: {message}");
    ExitCode::from(code)
}
