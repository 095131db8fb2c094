//! From the command line to a ready session: trust anchors, relays, proxy, ticket, session
//! number and PIN. Nothing here touches the network, except the calls to the broker when
//! `--broker` is given (log in and create, or resolve).

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use lifeline_broker::{BrokerClient, ClientError};
use lifeline_core::session::{Config, Pin};
use lifeline_core::wire::MemberId;
use lifeline_core::wire::handshake::Role;
use lifeline_ticket::{Ticket, TicketRole, TicketSigner};
use lifeline_transport_tokio::rng::uniform_below;
use lifeline_transport_tokio::{
    HttpProxy, Join, RelayAddress, SessionSpec, TransportConfig, TrustAnchors, client_config, os_rng,
};
use zeroize::{Zeroize as _, Zeroizing};

use crate::cli::{ConnectArgs, JoinArgs, SupportArgs};
use crate::exit::Failure;
use crate::text::{certificate_problem, group_digits};

/// The ports of the relay `lifeline-relay dev` runs.
const DEV_RELAY: &str = "127.0.0.1:8200,8443";
/// Lifetime of the tickets minted in development mode.
const DEV_TICKET_TTL_SECS: u64 = 8 * 3600;
/// Typing attempts for the session number on the terminal.
const PROMPT_ATTEMPTS: usize = 3;

/// Everything a session needs, ready to run.
pub(crate) struct Plan {
    pub(crate) transport: TransportConfig,
    pub(crate) spec: SessionSpec,
    pub(crate) session: u64,
    pub(crate) role: Role,
    /// Provider: the PIN to show its user, once.
    pub(crate) pin_to_show: Option<Pin>,
    /// The relays, for messages.
    pub(crate) relay_text: String,
    /// The `--dev` folder, for hints.
    pub(crate) dev_dir: Option<PathBuf>,
    /// Customer with `--broker`: where its consent receipts go.
    pub(crate) receipts: Option<Receipts>,
    /// Provider with `--broker`: the login, to tell the broker when the session ends.
    pub(crate) broker_login: Option<BrokerLogin>,
    /// Where received files go.
    pub(crate) downloads: PathBuf,
    /// Customer: the folder the provider may fetch files from.
    pub(crate) share: Option<PathBuf>,
    /// Provider: serve the web console.
    pub(crate) web_console: bool,
    /// Customer with `--broker`: the provider who created the session as the broker has the
    /// account (`NAME, ORGANISATION`), not as the provider's app announces itself.
    pub(crate) verified_provider: Option<String>,
}

/// The provider's broker session: ends the session there (report) and logs out at the end.
pub(crate) struct BrokerLogin {
    pub(crate) client: BrokerClient,
    pub(crate) token: Zeroizing<String>,
    pub(crate) session: u64,
}

/// The broker and the customer's ticket, for consent receipts (`POST /v1/sessions/N/events`).
#[derive(Clone)]
pub(crate) struct Receipts {
    pub(crate) client: BrokerClient,
    pub(crate) ticket: Vec<u8>,
    pub(crate) session: u64,
}

/// `lifeline support`: a new session with a fresh session number (in dev mode) and PIN.
pub(crate) fn support(args: &SupportArgs) -> Result<Plan, Failure> {
    let connect = &args.connect;
    let dev = dev_folder(connect)?;
    let mut broker_relays = Vec::new();
    let mut broker_login = None;
    let (session, ticket) = match (&connect.ticket, &dev) {
        (None, _) if connect.broker.is_some() => {
            let client = broker_client(connect, dev.as_ref())?;
            let email = args.email.as_deref().ok_or_else(|| Failure::Config("--broker needs --email".into()))?;
            let password = broker_password(email)?;
            let (token, grant) = block_on(async {
                let token = Zeroizing::new(client.login(email, &password).await?);
                let grant = client.create_session(&token).await?;
                Ok((token, grant))
            })?;
            broker_relays = grant.addresses;
            broker_login = Some(BrokerLogin { client, token, session: grant.session });
            (grant.session, grant.ticket)
        }
        (Some(hex), _) => {
            let ticket = decode_ticket(hex)?;
            let parsed = Ticket::parse_unverified(&ticket).map_err(|e| Failure::Config(format!("--ticket: {e}")))?;
            if parsed.role != TicketRole::Leader {
                return Err(Failure::Config(
                    "--ticket: this is a member ticket; the provider needs a leader ticket".into(),
                ));
            }
            (parsed.session, ticket)
        }
        (None, Some(dev)) => {
            // The broker will hand out session numbers; until then, nine random digits.
            let session = 100_000_000 + uniform_below(900_000_000);
            (session, dev.mint(session, TicketRole::Leader, &connect.home_relay)?)
        }
        (None, None) => return Err(Failure::Config("give --ticket (or --dev DIR to mint one)".into())),
    };
    let pin = Pin::generate(&mut os_rng());
    let config = Config::new(session, MemberId::LEADER, Role::Provider, &args.name);
    let spec = SessionSpec { config, join: Join::Leader(pin.clone()), ticket };
    let mut plan = plan(connect, dev, spec, Role::Provider, Some(pin), broker_relays)?;
    plan.broker_login = broker_login;
    plan.downloads = downloads_dir(args.downloads.as_deref())?;
    plan.web_console = !args.no_web_console;
    Ok(plan)
}

/// `lifeline join`: the session number and PIN from the command line or the terminal.
pub(crate) fn join(args: &JoinArgs) -> Result<Plan, Failure> {
    let connect = &args.connect;
    let dev = dev_folder(connect)?;
    let given_session = args.session.as_deref().map(parse_session).transpose()?;
    let ticket = connect.ticket.as_deref().map(decode_ticket).transpose()?;
    let mut broker_relays = Vec::new();
    let mut receipts = None;
    let mut verified_provider = None;
    let (session, ticket) = match (ticket, &dev) {
        (None, _) if connect.broker.is_some() => {
            let client = broker_client(connect, dev.as_ref())?;
            let session = match given_session {
                Some(session) => session,
                None => prompt_session()?,
            };
            let grant = block_on(client.resolve(session))?;
            broker_relays = grant.addresses;
            verified_provider = grant.provider.map(|provider| match provider.organisation.trim() {
                "" => provider.name,
                organisation => format!("{}, {organisation}", provider.name),
            });
            receipts = Some(Receipts { client, ticket: grant.ticket.clone(), session: grant.session });
            (grant.session, grant.ticket)
        }
        (Some(ticket), _) => {
            let parsed = Ticket::parse_unverified(&ticket).map_err(|e| Failure::Config(format!("--ticket: {e}")))?;
            if parsed.role != TicketRole::Member {
                return Err(Failure::Config(
                    "--ticket: this is a leader ticket; the customer needs a member ticket".into(),
                ));
            }
            if given_session.is_some_and(|session| session != parsed.session) {
                return Err(Failure::Config("--session does not match the session of --ticket".into()));
            }
            (parsed.session, ticket)
        }
        (None, Some(dev)) => {
            let session = match given_session {
                Some(session) => session,
                None => prompt_session()?,
            };
            (session, dev.mint(session, TicketRole::Member, &connect.home_relay)?)
        }
        (None, None) => return Err(Failure::Config("give --ticket (or --dev DIR to mint one)".into())),
    };
    let pin = match &args.pin {
        Some(pin) => Pin::from_str_truncated(pin),
        None => prompt_pin()?,
    };
    if pin.as_str().is_empty() {
        return Err(Failure::Config("no PIN given".into()));
    }
    let config = Config::new(session, MemberId(1), Role::Customer, &args.name);
    let spec = SessionSpec { config, join: Join::Member(pin), ticket };
    let mut plan = plan(connect, dev, spec, Role::Customer, None, broker_relays)?;
    plan.receipts = receipts;
    plan.verified_provider = verified_provider;
    plan.downloads = downloads_dir(args.downloads.as_deref())?;
    if let Some(share) = &args.share {
        if !share.is_dir() {
            return Err(Failure::Config(format!("--share {}: not a folder", share.display())));
        }
        plan.share = Some(share.clone());
    }
    Ok(plan)
}

fn plan(
    connect: &ConnectArgs,
    dev: Option<DevFolder>,
    spec: SessionSpec,
    role: Role,
    pin_to_show: Option<Pin>,
    broker_relays: Vec<String>,
) -> Result<Plan, Failure> {
    let tls = client_config(&anchors(connect, dev.as_ref())).map_err(|e| Failure::Config(e.to_string()))?;
    let mut relay_texts: Vec<&str> = connect.relays.iter().map(String::as_str).collect();
    if relay_texts.is_empty() {
        // The broker's relay (its addresses, preferred first) unless --relay says otherwise.
        relay_texts.extend(broker_relays.iter().map(String::as_str));
    }
    if relay_texts.is_empty() {
        if dev.is_none() {
            return Err(Failure::Config("give --relay HOST[:PORTS] (or --dev DIR for the local dev relay)".into()));
        }
        relay_texts.push(DEV_RELAY);
    }
    let mut relays = Vec::new();
    for text in &relay_texts {
        let mut relay = RelayAddress::parse(text).map_err(|e| Failure::Config(format!("--relay: {e}")))?;
        relay.tls_name.clone_from(&connect.tls_name);
        relays.push(relay);
    }
    let proxy = if connect.no_proxy {
        None
    } else if let Some(url) = &connect.proxy {
        Some(HttpProxy::parse(url).map_err(|e| Failure::Config(format!("--proxy: {e}")))?)
    } else {
        HttpProxy::from_env().map_err(|e| Failure::Config(format!("https_proxy: {e}")))?
    };
    let session = spec.config.session;
    let mut transport = TransportConfig::new(relays, tls);
    transport.proxy = proxy;
    transport.probe_relays = relay_texts.len() > 1;
    Ok(Plan {
        transport,
        spec,
        session,
        role,
        pin_to_show,
        relay_text: relay_texts.join(" or "),
        dev_dir: dev.map(|dev| dev.dir),
        receipts: None,
        broker_login: None,
        downloads: PathBuf::from("."),
        share: None,
        web_console: false,
        verified_provider: None,
    })
}

/// `--downloads DIR` (made if missing), else `~/Downloads` if it exists, else this folder.
fn downloads_dir(given: Option<&Path>) -> Result<PathBuf, Failure> {
    if let Some(dir) = given {
        std::fs::create_dir_all(dir).map_err(|e| Failure::Config(format!("--downloads {}: {e}", dir.display())))?;
        return Ok(dir.to_path_buf());
    }
    let home = std::env::var_os("HOME").map(|home| PathBuf::from(home).join("Downloads"));
    Ok(home.filter(|dir| dir.is_dir()).unwrap_or_else(|| PathBuf::from(".")))
}

fn anchors(connect: &ConnectArgs, dev: Option<&DevFolder>) -> TrustAnchors {
    match (&connect.ca, dev) {
        (Some(ca), _) => TrustAnchors::CaFile(ca.clone()),
        (None, Some(dev)) => TrustAnchors::CaFile(dev.ca.clone()),
        (None, None) => TrustAnchors::Mozilla,
    }
}

/// The broker client for `--broker`, trusting what the relay connection trusts.
fn broker_client(connect: &ConnectArgs, dev: Option<&DevFolder>) -> Result<BrokerClient, Failure> {
    let url = connect.broker.as_deref().unwrap_or_default();
    let tls = client_config(&anchors(connect, dev)).map_err(|e| Failure::Config(e.to_string()))?;
    BrokerClient::from_tls_config(url, &tls).map_err(|e| Failure::Config(format!("--broker: {e}")))
}

/// The provider's password: `$LIFELINE_PASSWORD`, else typed without echo.
fn broker_password(email: &str) -> Result<Zeroizing<String>, Failure> {
    if let Ok(password) = std::env::var("LIFELINE_PASSWORD") {
        return Ok(Zeroizing::new(password));
    }
    rpassword::prompt_password(format!("Password for {email} (not shown): "))
        .map(Zeroizing::new)
        .map_err(|e| Failure::Internal(format!("cannot read the password: {e}")))
}

/// Runs one broker exchange to completion on a small runtime of its own (setup runs before
/// the session's runtime starts).
fn block_on<T>(work: impl Future<Output = Result<T, ClientError>>) -> Result<T, Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Internal(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(work).map_err(|error| match error {
        ClientError::Api { status: 401, .. } => Failure::Refused("the broker refused the login".into()),
        ClientError::Api { status: 404, .. } => {
            Failure::Refused("the broker knows no open session with this number".into())
        }
        ClientError::Api { .. } => Failure::Refused(error.to_string()),
        ClientError::Transport(message) if message.contains("certificate") || message.contains("Certificate") => {
            tracing::debug!(%message, "broker certificate refused");
            Failure::Certificate(format!(
                "the broker's TLS certificate is not trusted: {}. Check --ca (the CA file your provider or \
                 administrator uses; dev/ca.pem for the development deployment) and the --broker address.",
                certificate_problem(&message)
            ))
        }
        ClientError::Transport(_) => Failure::Unreachable(error.to_string()),
        other => Failure::Config(other.to_string()),
    })
}

/// A development PKI folder made by `lifeline-relay pki init` / `lifeline-relay dev`.
struct DevFolder {
    dir: PathBuf,
    ca: PathBuf,
    signing_key: PathBuf,
}

impl DevFolder {
    fn mint(&self, session: u64, role: TicketRole, home_relay: &str) -> Result<Vec<u8>, Failure> {
        let bad = |detail: String| {
            Failure::Config(format!(
                "bad dev folder {}: {detail} (make one with `lifeline-relay pki init DIR`)",
                self.dir.display()
            ))
        };
        let pem = std::fs::read_to_string(&self.signing_key)
            .map_err(|e| bad(format!("cannot read {}: {e}", self.signing_key.display())))?;
        let signer = TicketSigner::from_pem(&pem).map_err(|e| bad(format!("{}: {e}", self.signing_key.display())))?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs());
        signer
            .mint(&Ticket::new(session, role, home_relay, now + DEV_TICKET_TTL_SECS))
            .ok_or_else(|| Failure::Config(format!("--home-relay {home_relay:?}: use 1 to 64 of a-z 0-9 - . _")))
    }
}

fn dev_folder(connect: &ConnectArgs) -> Result<Option<DevFolder>, Failure> {
    let Some(dir) = &connect.dev else { return Ok(None) };
    let bad = |detail: &str| {
        Failure::Config(format!(
            "bad dev folder {}: {detail} (make one with `lifeline-relay pki init {}` or `lifeline-relay dev --dir {}`)",
            dir.display(),
            dir.display(),
            dir.display()
        ))
    };
    if !dir.is_dir() {
        return Err(bad("not a folder"));
    }
    let folder = DevFolder { dir: dir.clone(), ca: dir.join("ca.pem"), signing_key: dir.join("ticket-signing.key") };
    for (file, needed) in [
        (&folder.ca, connect.ca.is_none()),
        (&folder.signing_key, connect.ticket.is_none() && connect.broker.is_none()),
    ] {
        if needed && !file.is_file() {
            return Err(bad(&format!("{} is missing", file_name(file))));
        }
    }
    Ok(Some(folder))
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |name| name.to_string_lossy().into_owned())
}

fn decode_ticket(hex: &str) -> Result<Vec<u8>, Failure> {
    let hex = hex.trim();
    let bad = || Failure::Config("--ticket: not a hex string".into());
    if !hex.len().is_multiple_of(2) {
        return Err(bad());
    }
    (0..hex.len())
        .step_by(2)
        .map(|index| hex.get(index..index + 2).and_then(|pair| u8::from_str_radix(pair, 16).ok()).ok_or_else(bad))
        .collect()
}

/// A session number as people type it: digits, with any spaces or dashes.
fn parse_session(text: &str) -> Result<u64, Failure> {
    let digits: String = text.chars().filter(|c| !c.is_whitespace() && *c != '-').collect();
    match digits.parse::<u64>() {
        Ok(session) if session != 0 && digits.bytes().all(|b| b.is_ascii_digit()) => Ok(session),
        _ => Err(Failure::Config(format!("{text:?} is not a session number"))),
    }
}

fn prompt_session() -> Result<u64, Failure> {
    for _ in 0..PROMPT_ATTEMPTS {
        let line = prompt_line("Session number: ")?;
        match parse_session(&line) {
            Ok(session) => {
                println!("Session {}.", group_digits(&session.to_string(), 3));
                return Ok(session);
            }
            Err(_) => println!("That is not a session number: type the digits the provider gave you."),
        }
    }
    Err(Failure::Config("no valid session number given".into()))
}

fn prompt_pin() -> Result<Pin, Failure> {
    if std::io::stdin().is_terminal() {
        // Typed without echo, so the PIN does not stay on the screen.
        let typed = rpassword::prompt_password("PIN (not shown): ")
            .map_err(|e| Failure::Internal(format!("cannot read the PIN: {e}")))?;
        return Ok(Pin::from_str_truncated(&typed));
    }
    let mut line = prompt_line("PIN: ")?;
    let pin = Pin::from_str_truncated(&line);
    // The Pin is zeroized on drop; so is this copy.
    line.zeroize();
    Ok(pin)
}

fn prompt_line(label: &str) -> Result<String, Failure> {
    print!("{label}");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    match std::io::stdin().lock().read_line(&mut line) {
        Ok(0) => Err(Failure::Config("input ended before the session number and PIN were given".into())),
        Ok(_) => Ok(line.trim().to_owned()),
        Err(error) => Err(Failure::Internal(format!("cannot read the terminal: {error}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_numbers_as_typed() {
        assert_eq!(parse_session("123 456 789"), Ok(123_456_789));
        assert_eq!(parse_session("123-456-789\n"), Ok(123_456_789));
        assert!(parse_session("0").is_err());
        assert!(parse_session("12a").is_err());
        assert!(parse_session("+5").is_err());
        assert!(parse_session("").is_err());
    }

    #[test]
    fn tickets_decode_from_hex() {
        assert_eq!(decode_ticket("00ff10"), Ok(vec![0, 255, 16]));
        assert!(decode_ticket("0").is_err());
        assert!(decode_ticket("zz").is_err());
    }

    #[test]
    fn a_missing_dev_folder_is_a_configuration_error() {
        let args = ConnectArgs { dev: Some("/nonexistent/dev".into()), ..ConnectArgs::default() };
        let Err(failure) = dev_folder(&args) else { panic!("must fail") };
        assert_eq!(failure.code(), 3);
        assert!(failure.to_string().contains("bad dev folder"));
    }
}
