//! The broker's API logic, independent of HTTP: a [`Request`] in, a [`Response`] out. The HTTPS
//! server ([`crate::server`]) fills in the request from the connection (source address, the
//! relay's verified client certificate) and runs [`Broker::handle`] on a blocking thread, since
//! password hashing and the store are synchronous.
//!
//! Every request is checked in this order: body size (by the server), content type, route,
//! authentication, role, then the body's JSON. Nothing is stored for a request that fails any
//! check, except its audit entry.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use lifeline_ticket::{Ticket, TicketRole, TicketSigner, TicketVerifier};
use rand_core::TryRng as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use zeroize::{Zeroize, Zeroizing};

use crate::clock::Clock;
use crate::config::Config;
use crate::password::{self, hex, unhex};
use crate::store::{
    Account, AccountUpdate, AuditEntry, Charge, NewAccount, RelayLoad, RelayRecord, Role, SessionEvent, SessionRecord,
    Store, StoreError,
};

/// Prefix of API tokens (helps secret scanners; not a secret).
pub const TOKEN_PREFIX: &str = "llt_";
/// Most events one consent-receipt post may carry.
pub const MAX_EVENTS_PER_POST: usize = 64;
/// Most events a session keeps (later posts are refused).
pub const MAX_EVENTS_PER_SESSION: usize = 4096;
/// Most member tickets one session number resolves to (a relay seats at most 253 members).
pub const MAX_MEMBER_TICKETS_PER_SESSION: usize = 256;

/// Every route: method and path template (`{x}` is a path parameter). `docs/broker-openapi.yaml`
/// describes exactly these (a test checks both ways, and that each is routed).
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/health"),
    ("POST", "/v1/login"),
    ("POST", "/v1/logout"),
    ("GET", "/v1/me"),
    ("POST", "/v1/me/password"),
    ("POST", "/v1/sessions"),
    ("POST", "/v1/sessions/resolve"),
    ("POST", "/v1/sessions/{session}/end"),
    ("POST", "/v1/sessions/{session}/events"),
    ("GET", "/v1/reports"),
    ("GET", "/v1/reports/{session}"),
    ("GET", "/v1/admin/accounts"),
    ("POST", "/v1/admin/accounts"),
    ("PATCH", "/v1/admin/accounts/{id}"),
    ("DELETE", "/v1/admin/accounts/{id}"),
    ("POST", "/v1/admin/accounts/{id}/unlock"),
    ("POST", "/v1/admin/accounts/{id}/password"),
    ("GET", "/v1/admin/audit"),
    ("GET", "/v1/admin/relays"),
    ("POST", "/v1/admin/relays"),
    ("POST", "/v1/admin/relays/{name}/cert"),
    ("DELETE", "/v1/admin/relays/{name}"),
    ("POST", "/v1/relay/report"),
];

/// One API request.
pub struct Request {
    /// `GET`, `POST`, `PATCH`, `DELETE`.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Query string, if any.
    pub query: Option<String>,
    /// The `Authorization` header (zeroized on drop).
    pub authorization: Option<Zeroizing<String>>,
    /// The `Content-Type` header.
    pub content_type: Option<String>,
    /// The body (zeroized on drop: it may hold a password).
    pub body: Zeroizing<Vec<u8>>,
    /// The client's address.
    pub source: IpAddr,
    /// The client certificate (DER, leaf), already verified against the fleet CA by TLS.
    pub client_cert: Option<Vec<u8>>,
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Request({} {} from {})", self.method, self.path, self.source)
    }
}

impl Request {
    /// A request with no body, no credentials, from 127.0.0.1 (tests and tools).
    pub fn new(method: &str, path: &str) -> Request {
        let (path, query) = match path.split_once('?') {
            Some((path, query)) => (path.to_owned(), Some(query.to_owned())),
            None => (path.to_owned(), None),
        };
        Request {
            method: method.to_owned(),
            path,
            query,
            authorization: None,
            content_type: None,
            body: Zeroizing::new(Vec::new()),
            source: IpAddr::from([127, 0, 0, 1]),
            client_cert: None,
        }
    }

    /// With a JSON body.
    pub fn json(mut self, body: &Value) -> Request {
        self.content_type = Some("application/json".to_owned());
        self.body = Zeroizing::new(body.to_string().into_bytes());
        self
    }

    /// With `Authorization: Bearer TOKEN`.
    pub fn bearer(mut self, token: &str) -> Request {
        self.authorization = Some(Zeroizing::new(format!("Bearer {token}")));
        self
    }
}

/// One API response.
#[derive(Clone, Debug)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// `application/json` or `text/csv; charset=utf-8`.
    pub content_type: &'static str,
    /// Body.
    pub body: Vec<u8>,
}

impl Response {
    /// The body as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// An API error: status, stable code, message for humans.
#[derive(Clone, Debug)]
pub struct ApiError {
    status: u16,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into() }
    }
    fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "bad_request", message)
    }
    /// The one answer to every failed authentication: it never says why.
    fn unauthorized() -> ApiError {
        ApiError::new(401, "unauthorized", "invalid credentials")
    }
    fn forbidden() -> ApiError {
        ApiError::new(403, "forbidden", "your role does not allow this")
    }
    fn not_found() -> ApiError {
        ApiError::new(404, "not_found", "no such resource")
    }
    fn throttled() -> ApiError {
        ApiError::new(429, "throttled", "too many attempts from your address; try again later")
    }
    fn internal() -> ApiError {
        ApiError::new(500, "internal", "internal error")
    }
    /// Status code (for tests and the server).
    pub fn status(&self) -> u16 {
        self.status
    }
    /// The payload-too-large error the server sends before reading a body.
    pub fn too_large(limit: usize) -> Response {
        ApiError::new(413, "too_large", format!("request body over {limit} bytes")).into_response()
    }
    /// Converts to a JSON response.
    pub fn into_response(self) -> Response {
        let body = json!({ "error": self.code, "message": self.message });
        Response { status: self.status, content_type: JSON, body: body.to_string().into_bytes() }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        match error {
            StoreError::Conflict => ApiError::new(409, "conflict", "already exists"),
            StoreError::Backend(message) => {
                tracing::error!(%message, "store error");
                ApiError::internal()
            }
        }
    }
}

const JSON: &str = "application/json";
const CSV: &str = "text/csv; charset=utf-8";

type ApiResult = Result<Response, ApiError>;

/// A string that is zeroized when dropped (passwords in request bodies).
#[derive(Deserialize)]
#[serde(transparent)]
struct Secret(String);

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// The policy values the broker applies.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Consecutive failures before the lockout.
    pub max_failures: i64,
    /// Lockout length.
    pub lockout_secs: i64,
    /// API token lifetime.
    pub token_ttl_secs: i64,
    /// Failed logins per source per minute.
    pub failures_per_source_per_min: f64,
    /// Burst.
    pub failures_per_source_burst: f64,
    /// Ticket lifetime.
    pub ticket_ttl_secs: i64,
    /// Join window.
    pub join_window_secs: i64,
    /// Resolve misses per source per minute.
    pub resolve_misses_per_source_per_min: f64,
    /// Relay staleness.
    pub relay_stale_after_secs: i64,
}

impl Policy {
    /// The policy in a configuration.
    pub fn from_config(config: &Config) -> Policy {
        Policy {
            max_failures: config.auth.max_failures,
            lockout_secs: config.auth.lockout_secs,
            token_ttl_secs: config.auth.token_ttl_secs,
            failures_per_source_per_min: config.auth.failures_per_source_per_min,
            failures_per_source_burst: config.auth.failures_per_source_burst,
            ticket_ttl_secs: config.tickets.ttl_secs,
            join_window_secs: config.sessions.join_window_secs,
            resolve_misses_per_source_per_min: config.sessions.resolve_misses_per_source_per_min,
            relay_stale_after_secs: config.relays.stale_after_secs,
        }
    }
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            max_failures: 5,
            lockout_secs: 300,
            token_ttl_secs: 8 * 3600,
            failures_per_source_per_min: 20.0,
            failures_per_source_burst: 20.0,
            ticket_ttl_secs: 12 * 3600,
            join_window_secs: 3600,
            resolve_misses_per_source_per_min: 30.0,
            relay_stale_after_secs: 30,
        }
    }
}

/// The broker: store, clock, ticket key and policy.
pub struct Broker {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    signer: TicketSigner,
    verifier: TicketVerifier,
    policy: Policy,
    login_throttle: Throttle,
    resolve_throttle: Throttle,
}

impl fmt::Debug for Broker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Broker(..)")
    }
}

impl Broker {
    /// A broker over `store`, reading time from `clock`, signing tickets with `signer`.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, signer: TicketSigner, policy: Policy) -> Broker {
        let login_throttle = Throttle::new(policy.failures_per_source_per_min / 60.0, policy.failures_per_source_burst);
        let resolve_throttle = Throttle::new(
            policy.resolve_misses_per_source_per_min / 60.0,
            policy.resolve_misses_per_source_per_min.max(1.0),
        );
        let verifier = signer.verifier();
        Broker { store, clock, signer, verifier, policy, login_throttle, resolve_throttle }
    }

    /// The store (the admin CLI and tests use it directly).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The ticket verification key relays need.
    pub fn ticket_verifier(&self) -> &TicketVerifier {
        &self.verifier
    }

    /// Answers one request. Never panics on input.
    pub fn handle(&self, request: &Request) -> Response {
        match self.route(request) {
            Ok(response) => response,
            Err(error) => error.into_response(),
        }
    }

    fn route(&self, request: &Request) -> ApiResult {
        if !request.body.is_empty() && !is_json(request.content_type.as_deref()) {
            return Err(ApiError::new(415, "unsupported_media_type", "request bodies must be application/json"));
        }
        let segments: Vec<&str> = request.path.trim_end_matches('/').split('/').skip(1).collect();
        let method = request.method.as_str();
        match (method, segments.as_slice()) {
            ("GET", ["v1", "health"]) => ok(&json!({ "ok": true })),
            ("POST", ["v1", "login"]) => self.login(request),
            ("POST", ["v1", "logout"]) => self.logout(request),
            ("GET", ["v1", "me"]) => {
                let account = self.authenticate(request)?;
                ok(&account_json(&account))
            }
            ("POST", ["v1", "me", "password"]) => self.change_password(request),
            ("POST", ["v1", "sessions"]) => self.create_session(request),
            ("POST", ["v1", "sessions", "resolve"]) => self.resolve_session(request),
            ("POST", ["v1", "sessions", number, "end"]) => self.end_session(request, number),
            ("POST", ["v1", "sessions", number, "events"]) => self.session_events(request, number),
            ("GET", ["v1", "reports"]) => self.reports(request, None),
            ("GET", ["v1", "reports", number]) => self.reports(request, Some(number)),
            ("GET", ["v1", "admin", "accounts"]) => self.list_accounts(request),
            ("POST", ["v1", "admin", "accounts"]) => self.create_account(request),
            ("PATCH", ["v1", "admin", "accounts", id]) => self.update_account(request, id),
            ("DELETE", ["v1", "admin", "accounts", id]) => self.delete_account(request, id),
            ("POST", ["v1", "admin", "accounts", id, "unlock"]) => self.unlock_account(request, id),
            ("POST", ["v1", "admin", "accounts", id, "password"]) => self.reset_password(request, id),
            ("GET", ["v1", "admin", "audit"]) => self.audit_log(request),
            ("GET", ["v1", "admin", "relays"]) => self.list_relays(request),
            ("POST", ["v1", "admin", "relays"]) => self.register_relay(request),
            ("POST", ["v1", "admin", "relays", name, "cert"]) => self.rotate_relay_cert(request, name),
            ("DELETE", ["v1", "admin", "relays", name]) => self.delete_relay(request, name),
            ("POST", ["v1", "relay", "report"]) => self.relay_report(request),
            (_, ["v1", ..]) if known_path(&segments) => {
                Err(ApiError::new(405, "method_not_allowed", "method not allowed on this path"))
            }
            _ => Err(ApiError::not_found()),
        }
    }

    // -- authentication

    fn login(&self, request: &Request) -> ApiResult {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Body {
            email: String,
            password: Secret,
        }
        let body: Body = parse_json(request)?;
        let now = self.clock.now_unix();
        let email = normalize_email(&body.email);
        let source = request.source;
        let audit = |outcome: &str, actor: String| self.audit(actor, source, "login", &email, outcome);
        if !self.login_throttle.allowed(source, now) {
            audit("throttled", "anonymous".into());
            return Err(ApiError::throttled());
        }
        let account = if email.len() <= 254 { self.store.account_by_email(&email)? } else { None };
        let Some(account) = account else {
            let _ = password::verify(&body.password.0, password::dummy_hash());
            self.login_throttle.charge(source, now);
            audit("unknown_account", "anonymous".into());
            return Err(ApiError::unauthorized());
        };
        let actor = format!("account:{}", account.id);
        match self.store.charge_login(account.id, now, self.policy.max_failures, self.policy.lockout_secs)? {
            Charge::Locked { .. } => {
                let _ = password::verify(&body.password.0, password::dummy_hash());
                self.login_throttle.charge(source, now);
                audit("locked", actor);
                Err(ApiError::unauthorized())
            }
            Charge::Allowed => {
                if !password::verify(&body.password.0, &account.password_hash) {
                    self.login_throttle.charge(source, now);
                    audit("bad_password", actor);
                    return Err(ApiError::unauthorized());
                }
                self.store.login_succeeded(account.id)?;
                let token = self.issue_token(account.id, now)?;
                audit("ok", actor);
                ok(&json!({
                    "token": token.as_str(),
                    "expires_at": now + self.policy.token_ttl_secs,
                    "account": account_json(&account),
                }))
            }
        }
    }

    fn issue_token(&self, account: i64, now: i64) -> Result<Zeroizing<String>, ApiError> {
        let mut raw = Zeroizing::new([0u8; 32]);
        getrandom::SysRng.try_fill_bytes(&mut raw[..]).map_err(|_| ApiError::internal())?;
        let token = Zeroizing::new(format!("{TOKEN_PREFIX}{}", hex(&raw[..])));
        self.store.insert_token(&sha256(token.as_bytes()), account, now + self.policy.token_ttl_secs)?;
        Ok(token)
    }

    /// The account behind the bearer token. Tokens are looked up by their SHA-256: the database
    /// never holds a usable token, and the index lookup compares hashes, not secrets.
    fn authenticate(&self, request: &Request) -> Result<Account, ApiError> {
        let token = bearer(request).ok_or_else(ApiError::unauthorized)?;
        self.store.token_account(&sha256(token.as_bytes()), self.clock.now_unix())?.ok_or_else(ApiError::unauthorized)
    }

    fn require(&self, request: &Request, roles: &[Role], action: &str) -> Result<Account, ApiError> {
        let account = self.authenticate(request)?;
        if roles.contains(&account.role) {
            Ok(account)
        } else {
            self.audit(format!("account:{}", account.id), request.source, action, "", "forbidden");
            Err(ApiError::forbidden())
        }
    }

    fn logout(&self, request: &Request) -> ApiResult {
        let account = self.authenticate(request)?;
        if let Some(token) = bearer(request) {
            self.store.delete_token(&sha256(token.as_bytes()))?;
        }
        self.audit(format!("account:{}", account.id), request.source, "logout", &account.email, "ok");
        ok(&json!({ "ok": true }))
    }

    fn change_password(&self, request: &Request) -> ApiResult {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Body {
            current_password: Secret,
            new_password: Secret,
        }
        let account = self.authenticate(request)?;
        let body: Body = parse_json(request)?;
        let actor = format!("account:{}", account.id);
        let now = self.clock.now_unix();
        // The current password is checked under the same lockout and throttle as a login, so a
        // stolen token is no way around them.
        if !self.login_throttle.allowed(request.source, now) {
            self.audit(actor, request.source, "password_change", &account.email, "throttled");
            return Err(ApiError::throttled());
        }
        let charge = self.store.charge_login(account.id, now, self.policy.max_failures, self.policy.lockout_secs)?;
        if charge != Charge::Allowed || !password::verify(&body.current_password.0, &account.password_hash) {
            self.login_throttle.charge(request.source, now);
            let outcome = if charge == Charge::Allowed { "bad_password" } else { "locked" };
            self.audit(actor, request.source, "password_change", &account.email, outcome);
            return Err(ApiError::unauthorized());
        }
        self.store.login_succeeded(account.id)?;
        let hash = policy_hash(&body.new_password.0)?;
        self.store.set_password(account.id, &hash)?;
        self.audit(actor, request.source, "password_change", &account.email, "ok");
        ok(&json!({ "ok": true, "note": "every token of this account is revoked; log in again" }))
    }

    // -- sessions

    fn create_session(&self, request: &Request) -> ApiResult {
        let account = self.require(request, &[Role::Provider], "session_create")?;
        if !request.body.is_empty() {
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields)]
            struct Body {}
            let _: Body = parse_json(request)?;
        }
        let now = self.clock.now_unix();
        let actor = format!("account:{}", account.id);
        let Some(relay) = self.store.assign_relay(now, self.policy.relay_stale_after_secs)? else {
            self.audit(actor, request.source, "session_create", "", "no_relay");
            return Err(ApiError::new(503, "no_relay", "no healthy relay is available; try again shortly"));
        };
        let mut number = 0;
        for _ in 0..8 {
            let candidate = random_session_number()?;
            match self.store.create_session(candidate, account.id, &relay.name, now, now + self.policy.join_window_secs)
            {
                Ok(()) => {
                    number = candidate;
                    break;
                }
                Err(StoreError::Conflict) => continue,
                Err(error) => return Err(error.into()),
            }
        }
        if number == 0 {
            return Err(ApiError::internal());
        }
        let (ticket, expires) = self.mint(number, TicketRole::Leader, &relay.name, now)?;
        self.audit(actor, request.source, "session_create", &number.to_string(), "ok");
        created(&json!({
            "session": number,
            "relay": relay_json(&relay),
            "ticket": ticket,
            "ticket_expires_at": expires,
        }))
    }

    fn resolve_session(&self, request: &Request) -> ApiResult {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Body {
            session: u64,
        }
        let body: Body = parse_json(request)?;
        let now = self.clock.now_unix();
        let source = request.source;
        let target = body.session.to_string();
        if !self.resolve_throttle.allowed(source, now) {
            self.audit("anonymous".into(), source, "session_resolve", &target, "throttled");
            return Err(ApiError::throttled());
        }
        let session = i64::try_from(body.session).ok().map(|n| self.store.session(n)).transpose()?.flatten();
        let Some(session) = session.filter(|s| s.ended_at.is_none() && now <= s.expires_at) else {
            self.resolve_throttle.charge(source, now);
            self.audit("anonymous".into(), source, "session_resolve", &target, "unknown");
            return Err(ApiError::new(404, "no_session", "no open session with this number"));
        };
        let issued = self.store.session_events(session.number)?.iter().filter(|e| e.kind == "ticket_member").count();
        if issued >= MAX_MEMBER_TICKETS_PER_SESSION {
            self.audit("anonymous".into(), source, "session_resolve", &target, "too_many_tickets");
            return Err(ApiError::new(409, "too_many_tickets", "this session has issued all its member tickets"));
        }
        let relay = self.store.list_relays()?.into_iter().find(|r| r.name == session.relay);
        // Who is asking, as the broker knows the account (null if it was deleted since).
        let provider = self.store.account_by_id(session.provider_id)?;
        let (ticket, expires) = self.mint(session.number, TicketRole::Member, &session.relay, now)?;
        self.audit(format!("customer:{}", session.number), source, "session_resolve", &target, "ok");
        ok(&json!({
            "session": session.number,
            "relay": relay.as_ref().map_or_else(|| json!({ "name": session.relay, "addresses": [] }), relay_json),
            "ticket": ticket,
            "ticket_expires_at": expires,
            "provider": provider.map(|p| json!({ "name": p.name, "organisation": p.organisation })),
        }))
    }

    fn mint(&self, session: i64, role: TicketRole, relay: &str, now: i64) -> Result<(String, i64), ApiError> {
        let expires = now + self.policy.ticket_ttl_secs;
        let ticket =
            Ticket::new(u64::try_from(session).map_err(|_| ApiError::internal())?, role, relay, expires.unsigned_abs());
        let bytes = self.signer.mint(&ticket).ok_or_else(ApiError::internal)?;
        let kind = if role == TicketRole::Leader { "ticket_leader" } else { "ticket_member" };
        self.store.add_events(&[SessionEvent {
            session,
            kind: kind.into(),
            detail: hex(&ticket.id),
            value: 0,
            at: now,
            received_at: now,
        }])?;
        Ok((hex(&bytes), expires))
    }

    fn end_session(&self, request: &Request, number: &str) -> ApiResult {
        let account = self.require(request, &[Role::Provider, Role::AccountAdmin], "session_end")?;
        let session = self.owned_session(&account, number, request.source)?;
        let now = self.clock.now_unix();
        let ended = self.store.end_session(session.number, now)?;
        if ended {
            self.store.add_events(&[SessionEvent {
                session: session.number,
                kind: "ended".into(),
                detail: String::new(),
                value: 0,
                at: now,
                received_at: now,
            }])?;
        }
        self.audit(format!("account:{}", account.id), request.source, "session_end", number, "ok");
        ok(&json!({ "session": session.number, "ended": true }))
    }

    /// A session the caller may see: its own (provider) or any (account administrator). Another
    /// provider's session is reported as not found, not forbidden: numbers are not confirmed.
    fn owned_session(&self, account: &Account, number: &str, source: IpAddr) -> Result<SessionRecord, ApiError> {
        let number: i64 = number.parse().map_err(|_| ApiError::not_found())?;
        let session = self.store.session(number)?.ok_or_else(ApiError::not_found)?;
        if account.role == Role::AccountAdmin || session.provider_id == account.id {
            Ok(session)
        } else {
            self.audit(format!("account:{}", account.id), source, "session_read", &number.to_string(), "not_owner");
            Err(ApiError::not_found())
        }
    }

    /// Consent receipts and counters from the customer's endpoint, authorised by its ticket.
    fn session_events(&self, request: &Request, number: &str) -> ApiResult {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Event {
            kind: String,
            #[serde(default)]
            capability: String,
            #[serde(default)]
            value: i64,
            at: i64,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Body {
            events: Vec<Event>,
        }
        let now = self.clock.now_unix();
        let ticket_hex = request
            .authorization
            .as_deref()
            .and_then(|value| value.strip_prefix("Ticket "))
            .ok_or_else(ApiError::unauthorized)?;
        let ticket_bytes = unhex(ticket_hex.trim()).ok_or_else(ApiError::unauthorized)?;
        let ticket = self.verifier.verify(&ticket_bytes, now.unsigned_abs()).map_err(|_| ApiError::unauthorized())?;
        if ticket.role != TicketRole::Member || number.parse::<u64>().ok() != Some(ticket.session) {
            return Err(ApiError::forbidden());
        }
        let session_number = i64::try_from(ticket.session).map_err(|_| ApiError::not_found())?;
        let body: Body = parse_json(request)?;
        if body.events.is_empty() || body.events.len() > MAX_EVENTS_PER_POST {
            return Err(ApiError::bad_request(format!("events: 1 to {MAX_EVENTS_PER_POST}")));
        }
        let mut events = Vec::with_capacity(body.events.len());
        for event in &body.events {
            let kind = match event.kind.as_str() {
                kind @ ("joined" | "left" | "granted" | "revoked" | "bytes") => kind,
                _ => return Err(ApiError::bad_request("events[].kind: joined, left, granted, revoked or bytes")),
            };
            let needs_capability = matches!(kind, "granted" | "revoked");
            if needs_capability == event.capability.is_empty() || !valid_capability(&event.capability) {
                return Err(ApiError::bad_request(
                    "events[].capability: 1 to 32 of a-z 0-9 _, for granted and revoked only",
                ));
            }
            if !(0..=1 << 50).contains(&event.value) || !(0..=1 << 40).contains(&event.at) {
                return Err(ApiError::bad_request("events[].value or at: out of range"));
            }
            events.push(SessionEvent {
                session: session_number,
                kind: kind.to_owned(),
                detail: event.capability.clone(),
                value: event.value,
                at: event.at,
                received_at: now,
            });
        }
        self.store.session(session_number)?.ok_or_else(ApiError::not_found)?;
        if self.store.session_events(session_number)?.len() + events.len() > MAX_EVENTS_PER_SESSION {
            return Err(ApiError::new(409, "too_many_events", "this session's event log is full"));
        }
        self.store.add_events(&events)?;
        self.audit(format!("customer:{session_number}"), request.source, "consent_receipt", number, "ok");
        created(&json!({ "stored": events.len() }))
    }

    // -- reports

    fn reports(&self, request: &Request, number: Option<&str>) -> ApiResult {
        let account = self.require(request, &[Role::Provider, Role::AccountAdmin], "report_read")?;
        let sessions = match number {
            Some(number) => vec![self.owned_session(&account, number, request.source)?],
            None => {
                let limit = query_param(request, "limit").and_then(|v| v.parse().ok()).unwrap_or(1000).clamp(1, 10_000);
                let provider = (account.role == Role::Provider).then_some(account.id);
                self.store.list_sessions(provider, limit)?
            }
        };
        let mut reports = Vec::with_capacity(sessions.len());
        for session in sessions {
            let events = self.store.session_events(session.number)?;
            reports.push(SessionReport::new(session, &events));
        }
        if query_param(request, "format").as_deref() == Some("csv") {
            let mut csv =
                String::from("session,provider,relay,created_at,ended_at,member_tickets,joined,consent,bytes\r\n");
            for r in &reports {
                let consent: Vec<String> =
                    r.consent.iter().map(|c| format!("{} {} at {}", c.action, c.capability, c.at)).collect();
                csv_row(
                    &mut csv,
                    &[
                        &r.session.to_string(),
                        &r.provider,
                        &r.relay,
                        &r.created_at.to_string(),
                        &r.ended_at.map(|t| t.to_string()).unwrap_or_default(),
                        &r.member_tickets.to_string(),
                        &r.joined.to_string(),
                        &consent.join("; "),
                        &r.bytes.to_string(),
                    ],
                );
            }
            return Ok(Response { status: 200, content_type: CSV, body: csv.into_bytes() });
        }
        match number {
            Some(_) => ok(&reports.first()),
            None => ok(&json!({ "reports": reports })),
        }
    }

    // -- account administration

    fn list_accounts(&self, request: &Request) -> ApiResult {
        self.require(request, &[Role::AccountAdmin], "account_list")?;
        let accounts: Vec<Value> = self.store.list_accounts()?.iter().map(account_json).collect();
        ok(&json!({ "accounts": accounts }))
    }

    fn create_account(&self, request: &Request) -> ApiResult {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Body {
            email: String,
            name: String,
            password: Secret,
            #[serde(default)]
            subscription: String,
            #[serde(default)]
            organisation: String,
        }
        let admin = self.require(request, &[Role::AccountAdmin], "account_create")?;
        let body: Body = parse_json(request)?;
        let email = normalize_email(&body.email);
        validate_email(&email)?;
        validate_text("name", &body.name, 1, 100)?;
        validate_text("subscription", &body.subscription, 0, 200)?;
        validate_text("organisation", &body.organisation, 0, 100)?;
        let hash = policy_hash(&body.password.0)?;
        let new = NewAccount {
            email: email.clone(),
            name: body.name.clone(),
            // Account administrators manage support-provider accounts; administrators are made
            // with the admin CLI on the broker's host.
            role: Role::Provider,
            subscription: body.subscription.clone(),
            organisation: body.organisation.clone(),
            password_hash: hash,
            created_at: self.clock.now_unix(),
        };
        let actor = format!("account:{}", admin.id);
        let id = match self.store.create_account(&new) {
            Ok(id) => id,
            Err(error) => {
                self.audit(actor, request.source, "account_create", &email, "conflict");
                return Err(error.into());
            }
        };
        self.audit(actor, request.source, "account_create", &email, "ok");
        let account = self.store.account_by_id(id)?.ok_or_else(ApiError::internal)?;
        created(&account_json(&account))
    }

    /// A provider account an account administrator may manage.
    fn managed_account(&self, id: &str) -> Result<Account, ApiError> {
        let id: i64 = id.parse().map_err(|_| ApiError::not_found())?;
        let account = self.store.account_by_id(id)?.ok_or_else(ApiError::not_found)?;
        if account.role != Role::Provider {
            return Err(ApiError::new(403, "forbidden", "administrator accounts are managed with the admin CLI"));
        }
        Ok(account)
    }

    fn update_account(&self, request: &Request, id: &str) -> ApiResult {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Body {
            name: Option<String>,
            subscription: Option<String>,
            organisation: Option<String>,
        }
        let admin = self.require(request, &[Role::AccountAdmin], "account_update")?;
        let account = self.managed_account(id)?;
        let body: Body = parse_json(request)?;
        if let Some(name) = &body.name {
            validate_text("name", name, 1, 100)?;
        }
        if let Some(subscription) = &body.subscription {
            validate_text("subscription", subscription, 0, 200)?;
        }
        if let Some(organisation) = &body.organisation {
            validate_text("organisation", organisation, 0, 100)?;
        }
        let update = AccountUpdate {
            name: body.name.clone(),
            role: None,
            subscription: body.subscription.clone(),
            organisation: body.organisation.clone(),
        };
        self.store.update_account(account.id, &update)?;
        self.audit(format!("account:{}", admin.id), request.source, "account_update", &account.email, "ok");
        ok(&account_json(&self.store.account_by_id(account.id)?.ok_or_else(ApiError::not_found)?))
    }

    fn delete_account(&self, request: &Request, id: &str) -> ApiResult {
        let admin = self.require(request, &[Role::AccountAdmin], "account_delete")?;
        let account = self.managed_account(id)?;
        self.store.delete_account(account.id)?;
        self.audit(format!("account:{}", admin.id), request.source, "account_delete", &account.email, "ok");
        ok(&json!({ "deleted": account.id }))
    }

    fn unlock_account(&self, request: &Request, id: &str) -> ApiResult {
        let admin = self.require(request, &[Role::AccountAdmin], "account_unlock")?;
        let account = self.managed_account(id)?;
        self.store.unlock(account.id)?;
        self.audit(format!("account:{}", admin.id), request.source, "account_unlock", &account.email, "ok");
        ok(&json!({ "unlocked": account.id }))
    }

    fn reset_password(&self, request: &Request, id: &str) -> ApiResult {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Body {
            password: Secret,
        }
        let admin = self.require(request, &[Role::AccountAdmin], "password_reset")?;
        let account = self.managed_account(id)?;
        let body: Body = parse_json(request)?;
        let hash = policy_hash(&body.password.0)?;
        self.store.set_password(account.id, &hash)?;
        self.audit(format!("account:{}", admin.id), request.source, "password_reset", &account.email, "ok");
        ok(&json!({ "ok": true }))
    }

    fn audit_log(&self, request: &Request) -> ApiResult {
        self.require(request, &[Role::AccountAdmin, Role::NetworkAdmin], "audit_read")?;
        let limit = query_param(request, "limit").and_then(|v| v.parse().ok()).unwrap_or(1000).clamp(1, 100_000);
        let entries = self.store.audit_log(limit)?;
        if query_param(request, "format").as_deref() == Some("csv") {
            let mut csv = String::from("at,actor,source,action,target,outcome\r\n");
            for e in &entries {
                csv_row(&mut csv, &[&e.at.to_string(), &e.actor, &e.source, &e.action, &e.target, &e.outcome]);
            }
            return Ok(Response { status: 200, content_type: CSV, body: csv.into_bytes() });
        }
        ok(&json!({ "entries": entries }))
    }

    // -- network administration

    fn list_relays(&self, request: &Request) -> ApiResult {
        self.require(request, &[Role::NetworkAdmin], "relay_list")?;
        let now = self.clock.now_unix();
        let relays: Vec<Value> = self
            .store
            .list_relays()?
            .iter()
            .map(|r| {
                let alive = r.healthy && r.last_report.is_some_and(|t| t >= now - self.policy.relay_stale_after_secs);
                json!({
                    "name": r.name, "addresses": r.addresses, "cert_sha256": r.cert_sha256,
                    "registered_at": r.registered_at, "last_report": r.last_report, "healthy": r.healthy,
                    "assignable": alive, "sessions": r.sessions, "members": r.members,
                    "connections": r.connections, "assigned_since_report": r.assigned_since_report,
                })
            })
            .collect();
        ok(&json!({ "relays": relays }))
    }

    fn register_relay(&self, request: &Request) -> ApiResult {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Body {
            name: String,
            addresses: Vec<String>,
            cert_sha256: Option<String>,
        }
        let admin = self.require(request, &[Role::NetworkAdmin], "relay_register")?;
        let body: Body = parse_json(request)?;
        if !lifeline_ticket::valid_relay_name(&body.name) {
            return Err(ApiError::bad_request("name: 1 to 64 of a-z 0-9 - . _"));
        }
        validate_addresses(&body.addresses)?;
        let cert = body.cert_sha256.as_deref().map(validate_fingerprint).transpose()?;
        let actor = format!("account:{}", admin.id);
        if let Err(error) =
            self.store.register_relay(&body.name, &body.addresses, cert.as_deref(), self.clock.now_unix())
        {
            self.audit(actor, request.source, "relay_register", &body.name, "conflict");
            return Err(error.into());
        }
        self.audit(actor, request.source, "relay_register", &body.name, "ok");
        created(&json!({ "name": body.name }))
    }

    fn rotate_relay_cert(&self, request: &Request, name: &str) -> ApiResult {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Body {
            cert_sha256: Option<String>,
        }
        let admin = self.require(request, &[Role::NetworkAdmin], "relay_cert_rotate")?;
        let body: Body = parse_json(request)?;
        let cert = body.cert_sha256.as_deref().map(validate_fingerprint).transpose()?;
        if !self.store.set_relay_cert(name, cert.as_deref())? {
            return Err(ApiError::not_found());
        }
        self.audit(format!("account:{}", admin.id), request.source, "relay_cert_rotate", name, "ok");
        ok(&json!({ "name": name, "cert_sha256": cert }))
    }

    fn delete_relay(&self, request: &Request, name: &str) -> ApiResult {
        let admin = self.require(request, &[Role::NetworkAdmin], "relay_delete")?;
        if !self.store.delete_relay(name)? {
            return Err(ApiError::not_found());
        }
        self.audit(format!("account:{}", admin.id), request.source, "relay_delete", name, "ok");
        ok(&json!({ "deleted": name }))
    }

    /// A relay's health and load, over mutual TLS: its client certificate chains to the fleet CA
    /// (checked by TLS), is valid for the relay name it reports as, and, if the network
    /// administrator pinned one, is that certificate.
    fn relay_report(&self, request: &Request) -> ApiResult {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Body {
            name: String,
            healthy: bool,
            sessions: i64,
            members: i64,
            connections: i64,
            #[serde(default)]
            addresses: Vec<String>,
        }
        let Some(cert) = &request.client_cert else {
            return Err(ApiError::new(401, "unauthorized", "relay reports need a fleet client certificate"));
        };
        let body: Body = parse_json(request)?;
        let refuse = |outcome: &str| {
            self.audit(format!("relay:{}", body.name), request.source, "relay_report", &body.name, outcome);
            Err(ApiError::forbidden())
        };
        if !lifeline_ticket::valid_relay_name(&body.name) || !crate::tls::certificate_names(cert, &body.name) {
            return refuse("certificate_name");
        }
        validate_addresses(&body.addresses)?;
        let Some(registered) = self.store.list_relays()?.into_iter().find(|r| r.name == body.name) else {
            return refuse("not_registered");
        };
        if let Some(pinned) = &registered.cert_sha256
            && *pinned != hex(&sha256(cert))
        {
            return refuse("certificate_not_pinned");
        }
        let load = RelayLoad {
            healthy: body.healthy,
            sessions: body.sessions.max(0),
            members: body.members.max(0),
            connections: body.connections.max(0),
            addresses: body.addresses.clone(),
        };
        self.store.record_relay_report(&body.name, &load, self.clock.now_unix())?;
        ok(&json!({ "ok": true }))
    }

    fn audit(&self, actor: String, source: IpAddr, action: &str, target: &str, outcome: &str) {
        let entry = AuditEntry {
            at: self.clock.now_unix(),
            actor,
            source: source.to_string(),
            action: action.to_owned(),
            target: target.chars().take(254).collect(),
            outcome: outcome.to_owned(),
        };
        if let Err(error) = self.store.audit(&entry) {
            tracing::error!(%error, action, "audit entry not stored");
        }
    }
}

/// A session's report.
#[derive(Clone, Debug, Serialize)]
pub struct SessionReport {
    /// Session number.
    pub session: i64,
    /// Provider email.
    pub provider: String,
    /// Home relay.
    pub relay: String,
    /// Created.
    pub created_at: i64,
    /// Ended.
    pub ended_at: Option<i64>,
    /// Member (customer) tickets issued.
    pub member_tickets: usize,
    /// Members the customer's endpoint reported as joined.
    pub joined: usize,
    /// Consent grants and revocations as the customer's endpoint reported them.
    pub consent: Vec<ConsentChange>,
    /// Largest byte count reported.
    pub bytes: i64,
}

/// One consent change.
#[derive(Clone, Debug, Serialize)]
pub struct ConsentChange {
    /// `granted` or `revoked`.
    pub action: String,
    /// The capability.
    pub capability: String,
    /// When (the customer endpoint's clock).
    pub at: i64,
}

impl SessionReport {
    fn new(session: SessionRecord, events: &[SessionEvent]) -> SessionReport {
        let count = |kind: &str| events.iter().filter(|e| e.kind == kind).count();
        SessionReport {
            session: session.number,
            provider: session.provider_email,
            relay: session.relay,
            created_at: session.created_at,
            ended_at: session.ended_at,
            member_tickets: count("ticket_member"),
            joined: count("joined"),
            consent: events
                .iter()
                .filter(|e| e.kind == "granted" || e.kind == "revoked")
                .map(|e| ConsentChange { action: e.kind.clone(), capability: e.detail.clone(), at: e.at })
                .collect(),
            bytes: events.iter().filter(|e| e.kind == "bytes").map(|e| e.value).max().unwrap_or(0),
        }
    }
}

/// Per-source token buckets (IPv6 per /64) on the broker's clock. Per broker instance: several
/// brokers behind a balancer each allow the rate (documented in `docs/broker.md`).
struct Throttle {
    per_sec: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, i64)>>,
}

impl Throttle {
    fn new(per_sec: f64, burst: f64) -> Throttle {
        Throttle { per_sec, burst, buckets: Mutex::new(HashMap::new()) }
    }

    fn key(source: IpAddr) -> IpAddr {
        match source {
            IpAddr::V6(v6) => {
                let mut octets = v6.octets();
                octets[8..].fill(0);
                IpAddr::from(octets)
            }
            v4 => v4,
        }
    }

    fn level(&self, buckets: &mut HashMap<IpAddr, (f64, i64)>, source: IpAddr, now: i64) -> f64 {
        let entry = buckets.entry(Self::key(source)).or_insert((self.burst, now));
        let elapsed = (now - entry.1).max(0) as f64;
        entry.0 = (entry.0 + elapsed * self.per_sec).min(self.burst);
        entry.1 = now;
        entry.0
    }

    fn allowed(&self, source: IpAddr, now: i64) -> bool {
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        self.level(&mut buckets, source, now) >= 1.0
    }

    fn charge(&self, source: IpAddr, now: i64) {
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() > 100_000 {
            buckets.clear();
        }
        self.level(&mut buckets, source, now);
        if let Some(entry) = buckets.get_mut(&Self::key(source)) {
            entry.0 -= 1.0;
        }
    }
}

// -- helpers

fn ok<T: Serialize>(value: &T) -> ApiResult {
    respond(200, value)
}

fn created<T: Serialize>(value: &T) -> ApiResult {
    respond(201, value)
}

fn respond<T: Serialize>(status: u16, value: &T) -> ApiResult {
    let body = serde_json::to_vec(value).map_err(|_| ApiError::internal())?;
    Ok(Response { status, content_type: JSON, body })
}

fn is_json(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|value| {
        let essence = value.split(';').next().unwrap_or("").trim();
        essence.eq_ignore_ascii_case("application/json")
    })
}

fn parse_json<T: for<'de> Deserialize<'de>>(request: &Request) -> Result<T, ApiError> {
    if !is_json(request.content_type.as_deref()) {
        return Err(ApiError::new(415, "unsupported_media_type", "request bodies must be application/json"));
    }
    // The message names the kind and place of the error, never a value: bodies may hold passwords.
    serde_json::from_slice(&request.body).map_err(|e| {
        let kind = match e.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => "malformed JSON",
            serde_json::error::Category::Data => "unexpected, missing or mistyped field",
            serde_json::error::Category::Io => "unreadable body",
        };
        ApiError::bad_request(format!("{kind} at line {} column {}", e.line(), e.column()))
    })
}

fn bearer(request: &Request) -> Option<&str> {
    let token = request.authorization.as_deref()?.strip_prefix("Bearer ")?.trim();
    (token.starts_with(TOKEN_PREFIX) && token.len() == TOKEN_PREFIX.len() + 64).then_some(token)
}

fn query_param(request: &Request, name: &str) -> Option<String> {
    request.query.as_deref()?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| value.to_owned())
    })
}

fn known_path(segments: &[&str]) -> bool {
    matches!(
        segments,
        ["v1", "health" | "login" | "logout" | "me" | "sessions" | "reports"]
            | ["v1", "me", "password"]
            | ["v1", "sessions", _]
            | ["v1", "sessions", _, "end" | "events"]
            | ["v1", "reports", _]
            | ["v1", "admin", "accounts" | "audit" | "relays"]
            | ["v1", "admin", "accounts" | "relays", _]
            | ["v1", "admin", "accounts", _, "unlock" | "password"]
            | ["v1", "admin", "relays", _, "cert"]
            | ["v1", "relay", "report"]
    )
}

/// SHA-256.
pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

fn validate_email(email: &str) -> Result<(), ApiError> {
    let valid = (3..=254).contains(&email.len())
        && email.split_once('@').is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
        && !email.chars().any(|c| c.is_whitespace() || c.is_control() || "\"'<>,;()\\".contains(c));
    if valid { Ok(()) } else { Err(ApiError::bad_request("email: not a valid address")) }
}

fn validate_text(field: &str, value: &str, min: usize, max: usize) -> Result<(), ApiError> {
    let chars = value.chars().count();
    if chars < min || chars > max || value.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!("{field}: {min} to {max} characters, no control characters")));
    }
    Ok(())
}

fn validate_addresses(addresses: &[String]) -> Result<(), ApiError> {
    let valid = addresses.len() <= 8
        && addresses.iter().all(|a| {
            (3..=255).contains(&a.len())
                && a.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
                && a.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
        });
    if valid { Ok(()) } else { Err(ApiError::bad_request("addresses: up to 8 of host:port")) }
}

fn validate_fingerprint(fingerprint: &str) -> Result<String, ApiError> {
    let lower = fingerprint.to_ascii_lowercase().replace(':', "");
    if lower.len() == 64 && unhex(&lower).is_some() {
        Ok(lower)
    } else {
        Err(ApiError::bad_request("cert_sha256: 64 hex digits"))
    }
}

fn valid_capability(capability: &str) -> bool {
    capability.len() <= 32 && capability.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn policy_hash(password: &str) -> Result<String, ApiError> {
    password::check_policy(password).map_err(|e| ApiError::new(400, "weak_password", e.to_string()))?;
    password::hash(password).map_err(|_| ApiError::internal())
}

fn random_session_number() -> Result<i64, ApiError> {
    let mut bytes = [0u8; 8];
    getrandom::SysRng.try_fill_bytes(&mut bytes).map_err(|_| ApiError::internal())?;
    // Nine digits, never starting with 0 (easy to read out on the phone); modulo bias is 2^-34.
    let offset = u64::from_le_bytes(bytes) % 900_000_000;
    i64::try_from(100_000_000 + offset).map_err(|_| ApiError::internal())
}

fn account_json(account: &Account) -> Value {
    json!({
        "id": account.id, "email": account.email, "name": account.name, "role": account.role,
        "subscription": account.subscription, "organisation": account.organisation,
        "failed_logins": account.failed_logins,
        "locked_until": account.locked_until, "created_at": account.created_at,
    })
}

fn relay_json(relay: &RelayRecord) -> Value {
    json!({ "name": relay.name, "addresses": relay.addresses })
}

/// Appends one CSV row (RFC 4180: every field quoted, quotes doubled). A field that a spreadsheet
/// would run as a formula (starting with `= + - @`, tab or CR) gets a leading `'`.
fn csv_row(out: &mut String, fields: &[&str]) {
    for (index, field) in fields.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        out.push('"');
        if field.starts_with(['=', '+', '-', '@', '\t', '\r']) {
            out.push('\'');
        }
        out.push_str(&field.replace('"', "\"\""));
        out.push('"');
    }
    out.push_str("\r\n");
}
