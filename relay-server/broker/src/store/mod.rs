//! The broker's store: accounts, API tokens, relays, sessions, session events and the audit log.
//!
//! [`Store`] has two implementations: [`SqliteStore`] (embedded, the default; one broker) and
//! [`PostgresStore`] (several brokers sharing one database). Both run their migrations on open
//! (table `schema_migrations`). The trait is synchronous; the HTTP layer calls it from
//! `spawn_blocking`. Every operation whose correctness depends on concurrent callers (charging a
//! login attempt, picking a relay) is one transaction with the row locked.

mod postgres;
mod sqlite;

use std::fmt;

use serde::Serialize;

pub use self::postgres::PostgresStore;
pub use self::sqlite::SqliteStore;

/// The three account roles (customers have no account).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Role {
    /// Creates, modifies and deletes support-provider accounts; subscription data; audit log.
    AccountAdmin,
    /// Registers relays, rotates their certificates, sees fleet health.
    NetworkAdmin,
    /// Starts sessions and sees its own reports.
    Provider,
}

impl Role {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::AccountAdmin => "account_admin",
            Role::NetworkAdmin => "network_admin",
            Role::Provider => "provider",
        }
    }

    /// Parses [`Role::as_str`].
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "account_admin" => Some(Role::AccountAdmin),
            "network_admin" => Some(Role::NetworkAdmin),
            "provider" => Some(Role::Provider),
            _ => None,
        }
    }
}

/// An account row.
#[derive(Clone, Debug, Serialize)]
pub struct Account {
    /// Id.
    pub id: i64,
    /// Login email (stored lower case).
    pub email: String,
    /// Display name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Subscription data (plan name, free text).
    pub subscription: String,
    /// The organisation the provider works for, as an account administrator entered it; the
    /// customer is shown it (with the name) as the broker's word on who is asking.
    pub organisation: String,
    /// The Argon2id hash; never serialised.
    #[serde(skip)]
    pub password_hash: String,
    /// Consecutive failed logins (attempts charged).
    pub failed_logins: i64,
    /// Locked until (Unix seconds), if locked.
    pub locked_until: Option<i64>,
    /// Created (Unix seconds).
    pub created_at: i64,
}

/// A new account.
#[derive(Clone, Debug)]
pub struct NewAccount {
    /// Email (lower case).
    pub email: String,
    /// Display name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Subscription data.
    pub subscription: String,
    /// Organisation (may be empty).
    pub organisation: String,
    /// Argon2id hash.
    pub password_hash: String,
    /// Now.
    pub created_at: i64,
}

/// Fields an account administrator may change (`None`: unchanged).
#[derive(Clone, Debug, Default)]
pub struct AccountUpdate {
    /// Display name.
    pub name: Option<String>,
    /// Role.
    pub role: Option<Role>,
    /// Subscription data.
    pub subscription: Option<String>,
    /// Organisation.
    pub organisation: Option<String>,
}

/// The outcome of charging a login attempt against an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Charge {
    /// The attempt may be checked; it is already counted as a failure until
    /// [`Store::login_succeeded`] clears it.
    Allowed,
    /// The account is locked until this time: the password must not be checked.
    Locked {
        /// Unix seconds.
        until: i64,
    },
}

/// A registered relay and its last report.
#[derive(Clone, Debug, Serialize)]
pub struct RelayRecord {
    /// Relay name (as in tickets and its certificate).
    pub name: String,
    /// Endpoint addresses (`host:port`), the first preferred.
    pub addresses: Vec<String>,
    /// SHA-256 of the relay's pinned client certificate (hex), if pinned.
    pub cert_sha256: Option<String>,
    /// Registered (Unix seconds).
    pub registered_at: i64,
    /// Last report (Unix seconds).
    pub last_report: Option<i64>,
    /// Healthy at the last report.
    pub healthy: bool,
    /// Members connected at the last report.
    pub members: i64,
    /// Sessions at the last report.
    pub sessions: i64,
    /// Endpoint connections at the last report.
    pub connections: i64,
    /// Sessions assigned since the last report.
    pub assigned_since_report: i64,
}

/// What a relay reports.
#[derive(Clone, Debug, Default, serde::Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RelayLoad {
    /// Whether the relay considers itself able to take sessions (false while draining).
    pub healthy: bool,
    /// Sessions served.
    pub sessions: i64,
    /// Members admitted.
    pub members: i64,
    /// Endpoint connections.
    pub connections: i64,
    /// Endpoint addresses to give out (empty: keep the registered ones).
    #[serde(default)]
    pub addresses: Vec<String>,
}

/// A session row.
#[derive(Clone, Debug, Serialize)]
pub struct SessionRecord {
    /// Session number.
    pub number: i64,
    /// Provider account id.
    pub provider_id: i64,
    /// Provider email (joined in when read).
    pub provider_email: String,
    /// Home relay name.
    pub relay: String,
    /// Created (Unix seconds).
    pub created_at: i64,
    /// Ended (Unix seconds).
    pub ended_at: Option<i64>,
    /// Expires (Unix seconds): no ticket is issued after this.
    pub expires_at: i64,
}

/// One thing that happened in a session.
#[derive(Clone, Debug, Serialize)]
pub struct SessionEvent {
    /// Session number.
    pub session: i64,
    /// `ticket_leader`, `ticket_member`, `joined`, `left`, `granted`, `revoked`, `bytes`, `ended`.
    pub kind: String,
    /// Capability (for `granted`/`revoked`), ticket id (for tickets), or empty.
    pub detail: String,
    /// A number (bytes, member id), 0 if none.
    pub value: i64,
    /// When it happened, as reported by whoever reported it (Unix seconds).
    pub at: i64,
    /// When the broker received it (Unix seconds).
    pub received_at: i64,
}

/// One audit log entry.
#[derive(Clone, Debug, Serialize)]
pub struct AuditEntry {
    /// Unix seconds.
    pub at: i64,
    /// Who: `account:ID`, `relay:NAME`, `customer:SESSION`, `cli`, or `anonymous`.
    pub actor: String,
    /// Source address, if any.
    pub source: String,
    /// What: `login_ok`, `login_failed`, `account_created`, ...
    pub action: String,
    /// On what (an email, a session number, a relay name).
    pub target: String,
    /// `ok`, or why not.
    pub outcome: String,
}

/// A store operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// A unique key already exists (email, relay name, session number).
    Conflict,
    /// The database failed.
    Backend(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Conflict => f.write_str("already exists"),
            StoreError::Backend(message) => write!(f, "store: {message}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// Result of a store operation.
pub type StoreResult<T> = Result<T, StoreError>;

/// The broker's persistent state.
pub trait Store: Send + Sync + 'static {
    // -- accounts
    /// Creates an account; [`StoreError::Conflict`] if the email is taken.
    fn create_account(&self, account: &NewAccount) -> StoreResult<i64>;
    /// The account with this (lower-case) email.
    fn account_by_email(&self, email: &str) -> StoreResult<Option<Account>>;
    /// The account with this id.
    fn account_by_id(&self, id: i64) -> StoreResult<Option<Account>>;
    /// Every account, by id.
    fn list_accounts(&self) -> StoreResult<Vec<Account>>;
    /// Changes an account; false if there is none.
    fn update_account(&self, id: i64, update: &AccountUpdate) -> StoreResult<bool>;
    /// Deletes an account and its tokens; false if there is none. Its sessions stay for reports.
    fn delete_account(&self, id: i64) -> StoreResult<bool>;
    /// Sets a new password hash and revokes the account's tokens.
    fn set_password(&self, id: i64, password_hash: &str) -> StoreResult<bool>;
    /// In one transaction with the account row locked: if locked, [`Charge::Locked`]; otherwise
    /// (an expired lock first resets the count) counts one failed attempt, locks the account
    /// until `now + lockout_secs` when the count reaches `max_failures`, and allows the check.
    fn charge_login(&self, id: i64, now: i64, max_failures: i64, lockout_secs: i64) -> StoreResult<Charge>;
    /// The password matched: clears the failure count and any lock.
    fn login_succeeded(&self, id: i64) -> StoreResult<()>;
    /// Clears the failure count and lock (administrator action).
    fn unlock(&self, id: i64) -> StoreResult<bool>;

    // -- API tokens (stored as SHA-256 of the token)
    /// Stores a token hash.
    fn insert_token(&self, token_sha256: &[u8], account: i64, expires_at: i64) -> StoreResult<()>;
    /// The account of an unexpired token.
    fn token_account(&self, token_sha256: &[u8], now: i64) -> StoreResult<Option<Account>>;
    /// Deletes a token.
    fn delete_token(&self, token_sha256: &[u8]) -> StoreResult<()>;

    // -- relays
    /// Registers a relay; [`StoreError::Conflict`] if the name is taken.
    fn register_relay(&self, name: &str, addresses: &[String], cert_sha256: Option<&str>, now: i64) -> StoreResult<()>;
    /// Pins a new certificate fingerprint (rotation); false if no such relay.
    fn set_relay_cert(&self, name: &str, cert_sha256: Option<&str>) -> StoreResult<bool>;
    /// Removes a relay; false if none.
    fn delete_relay(&self, name: &str) -> StoreResult<bool>;
    /// Every relay, by name.
    fn list_relays(&self) -> StoreResult<Vec<RelayRecord>>;
    /// Records a relay's report; false if the relay is not registered.
    fn record_relay_report(&self, name: &str, load: &RelayLoad, now: i64) -> StoreResult<bool>;
    /// In one transaction: the healthy relay with a report newer than `now - stale_secs` and the
    /// least load (members reported plus two per session assigned since), counting the new
    /// session against it.
    fn assign_relay(&self, now: i64, stale_secs: i64) -> StoreResult<Option<RelayRecord>>;

    // -- sessions
    /// Creates a session; [`StoreError::Conflict`] if the number is taken.
    fn create_session(&self, number: i64, provider: i64, relay: &str, now: i64, expires_at: i64) -> StoreResult<()>;
    /// A session by number.
    fn session(&self, number: i64) -> StoreResult<Option<SessionRecord>>;
    /// Marks a session ended (if not already); false if none or already ended.
    fn end_session(&self, number: i64, now: i64) -> StoreResult<bool>;
    /// Sessions, newest first; of one provider if given.
    fn list_sessions(&self, provider: Option<i64>, limit: i64) -> StoreResult<Vec<SessionRecord>>;
    /// Appends session events.
    fn add_events(&self, events: &[SessionEvent]) -> StoreResult<()>;
    /// A session's events, in order received.
    fn session_events(&self, number: i64) -> StoreResult<Vec<SessionEvent>>;

    // -- audit
    /// Appends an audit entry.
    fn audit(&self, entry: &AuditEntry) -> StoreResult<()>;
    /// The newest `limit` audit entries, newest first.
    fn audit_log(&self, limit: i64) -> StoreResult<Vec<AuditEntry>>;
}

/// Opens the store a URL names: `sqlite:PATH` (or `sqlite::memory:`), or
/// `postgres://...`/`postgresql://...`. Runs the migrations.
pub fn open(url: &str) -> StoreResult<Box<dyn Store>> {
    if let Some(path) = url.strip_prefix("sqlite:") {
        Ok(Box::new(SqliteStore::open(path)?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") || url.starts_with("host=") {
        Ok(Box::new(PostgresStore::open(url)?))
    } else {
        Err(StoreError::Backend("store url: use sqlite:PATH or postgres://...".into()))
    }
}

/// The schema, one migration per entry, shared by both backends: only portable SQL (`BIGINT`,
/// `TEXT`, `BYTEA`/`BLOB` are spelled per backend by [`migration_sql`]).
const MIGRATIONS: &[&str] = &[
    // 1: the whole first schema.
    "CREATE TABLE accounts (
        id {ID_PK},
        email TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        role TEXT NOT NULL,
        subscription TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        failed_logins BIGINT NOT NULL DEFAULT 0,
        locked_until BIGINT,
        created_at BIGINT NOT NULL
    );
    CREATE TABLE api_tokens (
        token_sha256 {BYTES} PRIMARY KEY,
        account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        expires_at BIGINT NOT NULL
    );
    CREATE INDEX api_tokens_account ON api_tokens(account_id);
    CREATE TABLE relays (
        name TEXT PRIMARY KEY,
        addresses TEXT NOT NULL,
        cert_sha256 TEXT,
        registered_at BIGINT NOT NULL,
        last_report BIGINT,
        healthy BIGINT NOT NULL DEFAULT 0,
        members BIGINT NOT NULL DEFAULT 0,
        sessions BIGINT NOT NULL DEFAULT 0,
        connections BIGINT NOT NULL DEFAULT 0,
        assigned_since_report BIGINT NOT NULL DEFAULT 0
    );
    CREATE TABLE sessions (
        number BIGINT PRIMARY KEY,
        provider_id BIGINT NOT NULL,
        provider_email TEXT NOT NULL,
        relay TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        ended_at BIGINT,
        expires_at BIGINT NOT NULL
    );
    CREATE INDEX sessions_provider ON sessions(provider_id, created_at);
    CREATE TABLE session_events (
        id {ID_PK},
        session BIGINT NOT NULL,
        kind TEXT NOT NULL,
        detail TEXT NOT NULL,
        value BIGINT NOT NULL,
        at BIGINT NOT NULL,
        received_at BIGINT NOT NULL
    );
    CREATE INDEX session_events_session ON session_events(session, id);
    CREATE TABLE audit_log (
        id {ID_PK},
        at BIGINT NOT NULL,
        actor TEXT NOT NULL,
        source TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        outcome TEXT NOT NULL
    );",
    // 2: the provider's organisation, shown to customers beside the name (issue 6).
    "ALTER TABLE accounts ADD COLUMN organisation TEXT NOT NULL DEFAULT '';",
];

/// A migration with the backend's spelling of an auto-increment key and of bytes.
fn migration_sql(sql: &str, postgres: bool) -> String {
    let (id, bytes) =
        if postgres { ("BIGSERIAL PRIMARY KEY", "BYTEA") } else { ("INTEGER PRIMARY KEY AUTOINCREMENT", "BLOB") };
    sql.replace("{ID_PK}", id).replace("{BYTES}", bytes)
}

/// Load score of a relay: members plus two per session assigned since its last report.
pub(crate) const SCORE_SQL: &str = "members + 2 * assigned_since_report";
