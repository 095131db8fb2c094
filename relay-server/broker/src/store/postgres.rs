//! PostgreSQL, for several brokers sharing one database. A small pool of synchronous clients
//! (the `postgres` crate); operations that must be atomic across brokers lock their rows with
//! `SELECT ... FOR UPDATE` inside a transaction. Connections are plain TCP or a Unix socket:
//! run the database on the broker's host or a private network (see `docs/broker.md`).

use std::sync::{Mutex, MutexGuard};

use postgres::error::SqlState;
use postgres::{Client, GenericClient, NoTls, Row};

use super::{
    Account, AccountUpdate, AuditEntry, Charge, MIGRATIONS, NewAccount, RelayLoad, RelayRecord, Role, SCORE_SQL,
    SessionEvent, SessionRecord, Store, StoreError, StoreResult, migration_sql,
};

/// Idle connections kept.
const POOL_SIZE: usize = 16;

/// PostgreSQL by URL.
pub struct PostgresStore {
    url: String,
    idle: Mutex<Vec<Client>>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password.
        f.write_str("PostgresStore(..)")
    }
}

fn backend(error: postgres::Error) -> StoreError {
    if error.code() == Some(&SqlState::UNIQUE_VIOLATION) {
        return StoreError::Conflict;
    }
    StoreError::Backend(error.to_string())
}

const ACCOUNT_COLUMNS: &str =
    "id, email, name, role, subscription, password_hash, failed_logins, locked_until, created_at, organisation";
const RELAY_COLUMNS: &str = "name, addresses, cert_sha256, registered_at, last_report, healthy, members, sessions, \
                             connections, assigned_since_report";
const SESSION_COLUMNS: &str = "number, provider_id, provider_email, relay, created_at, ended_at, expires_at";

fn account(row: &Row) -> StoreResult<Account> {
    let role: String = get(row, 3)?;
    Ok(Account {
        id: get(row, 0)?,
        email: get(row, 1)?,
        name: get(row, 2)?,
        role: Role::parse(&role).unwrap_or(Role::Provider),
        subscription: get(row, 4)?,
        password_hash: get(row, 5)?,
        failed_logins: get(row, 6)?,
        locked_until: get(row, 7)?,
        created_at: get(row, 8)?,
        organisation: get(row, 9)?,
    })
}

fn relay(row: &Row) -> StoreResult<RelayRecord> {
    let addresses: String = get(row, 1)?;
    Ok(RelayRecord {
        name: get(row, 0)?,
        addresses: addresses.split(',').filter(|a| !a.is_empty()).map(str::to_owned).collect(),
        cert_sha256: get(row, 2)?,
        registered_at: get(row, 3)?,
        last_report: get(row, 4)?,
        healthy: get::<i64>(row, 5)? != 0,
        members: get(row, 6)?,
        sessions: get(row, 7)?,
        connections: get(row, 8)?,
        assigned_since_report: get(row, 9)?,
    })
}

fn session(row: &Row) -> StoreResult<SessionRecord> {
    Ok(SessionRecord {
        number: get(row, 0)?,
        provider_id: get(row, 1)?,
        provider_email: get(row, 2)?,
        relay: get(row, 3)?,
        created_at: get(row, 4)?,
        ended_at: get(row, 5)?,
        expires_at: get(row, 6)?,
    })
}

fn get<'a, T: postgres::types::FromSql<'a>>(row: &'a Row, index: usize) -> StoreResult<T> {
    row.try_get(index).map_err(backend)
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user:password@host:port/db` or key=value form) and runs
    /// the migrations (under an advisory lock, so brokers starting together migrate once).
    pub fn open(url: &str) -> StoreResult<PostgresStore> {
        let store = PostgresStore { url: url.to_owned(), idle: Mutex::new(Vec::new()) };
        store.with(|client| {
            let mut tx = client.transaction().map_err(backend)?;
            tx.batch_execute(
                "SELECT pg_advisory_xact_lock(7311985); \
                 CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY)",
            )
            .map_err(backend)?;
            let done: i64 =
                tx.query_one("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[]).map_err(backend)?.get(0);
            for (index, sql) in MIGRATIONS.iter().enumerate() {
                let version = i64::try_from(index).unwrap_or(i64::MAX) + 1;
                if version > done {
                    tx.batch_execute(&migration_sql(sql, true)).map_err(backend)?;
                    tx.execute("INSERT INTO schema_migrations (version) VALUES ($1)", &[&version]).map_err(backend)?;
                }
            }
            tx.commit().map_err(backend)
        })?;
        Ok(store)
    }

    fn pool(&self) -> MutexGuard<'_, Vec<Client>> {
        self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `work` with a pooled connection (a new one if none is idle).
    fn with<T>(&self, work: impl FnOnce(&mut Client) -> StoreResult<T>) -> StoreResult<T> {
        let pooled = self.pool().pop();
        let mut client = match pooled {
            Some(client) if !client.is_closed() => client,
            _ => Client::connect(&self.url, NoTls).map_err(backend)?,
        };
        let result = work(&mut client);
        if !client.is_closed() {
            let mut idle = self.pool();
            if idle.len() < POOL_SIZE {
                idle.push(client);
            }
        }
        result
    }
}

fn rows<T>(
    client: &mut impl GenericClient,
    sql: &str,
    params: &[&(dyn postgres::types::ToSql + Sync)],
    map: fn(&Row) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    client.query(sql, params).map_err(backend)?.iter().map(map).collect()
}

fn one<T>(
    client: &mut impl GenericClient,
    sql: &str,
    params: &[&(dyn postgres::types::ToSql + Sync)],
    map: fn(&Row) -> StoreResult<T>,
) -> StoreResult<Option<T>> {
    client.query_opt(sql, params).map_err(backend)?.as_ref().map(map).transpose()
}

impl Store for PostgresStore {
    fn create_account(&self, a: &NewAccount) -> StoreResult<i64> {
        self.with(|c| {
            let row = c
                .query_one(
                    "INSERT INTO accounts (email, name, role, subscription, password_hash, created_at, organisation) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                    &[
                        &a.email,
                        &a.name,
                        &a.role.as_str(),
                        &a.subscription,
                        &a.password_hash,
                        &a.created_at,
                        &a.organisation,
                    ],
                )
                .map_err(backend)?;
            get(&row, 0)
        })
    }

    fn account_by_email(&self, email: &str) -> StoreResult<Option<Account>> {
        self.with(|c| one(c, &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE email = $1"), &[&email], account))
    }

    fn account_by_id(&self, id: i64) -> StoreResult<Option<Account>> {
        self.with(|c| one(c, &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1"), &[&id], account))
    }

    fn list_accounts(&self) -> StoreResult<Vec<Account>> {
        self.with(|c| rows(c, &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY id"), &[], account))
    }

    fn update_account(&self, id: i64, u: &AccountUpdate) -> StoreResult<bool> {
        self.with(|c| {
            let mut tx = c.transaction().map_err(backend)?;
            if tx.query_opt("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE", &[&id]).map_err(backend)?.is_none() {
                return Ok(false);
            }
            if let Some(name) = &u.name {
                tx.execute("UPDATE accounts SET name = $1 WHERE id = $2", &[name, &id]).map_err(backend)?;
            }
            if let Some(role) = u.role {
                tx.execute("UPDATE accounts SET role = $1 WHERE id = $2", &[&role.as_str(), &id]).map_err(backend)?;
                tx.execute("DELETE FROM api_tokens WHERE account_id = $1", &[&id]).map_err(backend)?;
            }
            if let Some(subscription) = &u.subscription {
                tx.execute("UPDATE accounts SET subscription = $1 WHERE id = $2", &[subscription, &id])
                    .map_err(backend)?;
            }
            if let Some(organisation) = &u.organisation {
                tx.execute("UPDATE accounts SET organisation = $1 WHERE id = $2", &[organisation, &id])
                    .map_err(backend)?;
            }
            tx.commit().map_err(backend)?;
            Ok(true)
        })
    }

    fn delete_account(&self, id: i64) -> StoreResult<bool> {
        self.with(|c| {
            let mut tx = c.transaction().map_err(backend)?;
            tx.execute("DELETE FROM api_tokens WHERE account_id = $1", &[&id]).map_err(backend)?;
            let deleted = tx.execute("DELETE FROM accounts WHERE id = $1", &[&id]).map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(deleted > 0)
        })
    }

    fn set_password(&self, id: i64, password_hash: &str) -> StoreResult<bool> {
        self.with(|c| {
            let mut tx = c.transaction().map_err(backend)?;
            let updated = tx
                .execute("UPDATE accounts SET password_hash = $1 WHERE id = $2", &[&password_hash, &id])
                .map_err(backend)?;
            tx.execute("DELETE FROM api_tokens WHERE account_id = $1", &[&id]).map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(updated > 0)
        })
    }

    fn charge_login(&self, id: i64, now: i64, max_failures: i64, lockout_secs: i64) -> StoreResult<Charge> {
        self.with(|c| {
            let mut tx = c.transaction().map_err(backend)?;
            let Some(row) = tx
                .query_opt("SELECT failed_logins, locked_until FROM accounts WHERE id = $1 FOR UPDATE", &[&id])
                .map_err(backend)?
            else {
                return Ok(Charge::Locked { until: now });
            };
            let mut failed: i64 = get(&row, 0)?;
            let locked_until: Option<i64> = get(&row, 1)?;
            let (charge, locked_now) = match locked_until {
                Some(until) if until > now => (Charge::Locked { until }, Some(until)),
                _ => {
                    if locked_until.is_some() {
                        failed = 0;
                    }
                    failed += 1;
                    (Charge::Allowed, (failed >= max_failures).then_some(now.saturating_add(lockout_secs)))
                }
            };
            tx.execute(
                "UPDATE accounts SET failed_logins = $1, locked_until = $2 WHERE id = $3",
                &[&failed, &locked_now, &id],
            )
            .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(charge)
        })
    }

    fn login_succeeded(&self, id: i64) -> StoreResult<()> {
        self.unlock(id).map(|_| ())
    }

    fn unlock(&self, id: i64) -> StoreResult<bool> {
        self.with(|c| {
            let updated = c
                .execute("UPDATE accounts SET failed_logins = 0, locked_until = NULL WHERE id = $1", &[&id])
                .map_err(backend)?;
            Ok(updated > 0)
        })
    }

    fn insert_token(&self, token_sha256: &[u8], account: i64, expires_at: i64) -> StoreResult<()> {
        self.with(|c| {
            c.execute("DELETE FROM api_tokens WHERE expires_at <= $1", &[&(expires_at - 86_400 * 30)])
                .map_err(backend)?;
            c.execute(
                "INSERT INTO api_tokens (token_sha256, account_id, expires_at) VALUES ($1, $2, $3)",
                &[&token_sha256, &account, &expires_at],
            )
            .map_err(backend)?;
            Ok(())
        })
    }

    fn token_account(&self, token_sha256: &[u8], now: i64) -> StoreResult<Option<Account>> {
        let columns = ACCOUNT_COLUMNS.split(", ").map(|c| format!("a.{c}")).collect::<Vec<_>>().join(", ");
        self.with(|c| {
            one(
                c,
                &format!(
                    "SELECT {columns} FROM api_tokens t JOIN accounts a ON a.id = t.account_id \
                     WHERE t.token_sha256 = $1 AND t.expires_at > $2"
                ),
                &[&token_sha256, &now],
                account,
            )
        })
    }

    fn delete_token(&self, token_sha256: &[u8]) -> StoreResult<()> {
        self.with(|c| {
            c.execute("DELETE FROM api_tokens WHERE token_sha256 = $1", &[&token_sha256]).map_err(backend)?;
            Ok(())
        })
    }

    fn register_relay(&self, name: &str, addresses: &[String], cert: Option<&str>, now: i64) -> StoreResult<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO relays (name, addresses, cert_sha256, registered_at) VALUES ($1, $2, $3, $4)",
                &[&name, &addresses.join(","), &cert, &now],
            )
            .map_err(backend)?;
            Ok(())
        })
    }

    fn set_relay_cert(&self, name: &str, cert: Option<&str>) -> StoreResult<bool> {
        self.with(|c| {
            Ok(c.execute("UPDATE relays SET cert_sha256 = $1 WHERE name = $2", &[&cert, &name]).map_err(backend)? > 0)
        })
    }

    fn delete_relay(&self, name: &str) -> StoreResult<bool> {
        self.with(|c| Ok(c.execute("DELETE FROM relays WHERE name = $1", &[&name]).map_err(backend)? > 0))
    }

    fn list_relays(&self) -> StoreResult<Vec<RelayRecord>> {
        self.with(|c| rows(c, &format!("SELECT {RELAY_COLUMNS} FROM relays ORDER BY name"), &[], relay))
    }

    fn record_relay_report(&self, name: &str, load: &RelayLoad, now: i64) -> StoreResult<bool> {
        self.with(|c| {
            let updated = c
                .execute(
                    "UPDATE relays SET last_report = $1, healthy = $2, members = $3, sessions = $4, connections = $5, \
                     assigned_since_report = 0 WHERE name = $6",
                    &[&now, &i64::from(load.healthy), &load.members, &load.sessions, &load.connections, &name],
                )
                .map_err(backend)?;
            if updated > 0 && !load.addresses.is_empty() {
                c.execute("UPDATE relays SET addresses = $1 WHERE name = $2", &[&load.addresses.join(","), &name])
                    .map_err(backend)?;
            }
            Ok(updated > 0)
        })
    }

    fn assign_relay(&self, now: i64, stale_secs: i64) -> StoreResult<Option<RelayRecord>> {
        self.with(|c| {
            let mut tx = c.transaction().map_err(backend)?;
            let chosen = one(
                &mut tx,
                &format!(
                    "SELECT {RELAY_COLUMNS} FROM relays WHERE healthy = 1 AND last_report IS NOT NULL \
                     AND last_report >= $1 ORDER BY {SCORE_SQL}, name LIMIT 1 FOR UPDATE"
                ),
                &[&(now - stale_secs)],
                relay,
            )?;
            if let Some(relay) = &chosen {
                tx.execute(
                    "UPDATE relays SET assigned_since_report = assigned_since_report + 1 WHERE name = $1",
                    &[&relay.name],
                )
                .map_err(backend)?;
            }
            tx.commit().map_err(backend)?;
            Ok(chosen)
        })
    }

    fn create_session(&self, number: i64, provider: i64, relay: &str, now: i64, expires_at: i64) -> StoreResult<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO sessions (number, provider_id, provider_email, relay, created_at, expires_at) \
                 SELECT $1, id, email, $2, $3, $4 FROM accounts WHERE id = $5",
                &[&number, &relay, &now, &expires_at, &provider],
            )
            .map_err(backend)?;
            Ok(())
        })
    }

    fn session(&self, number: i64) -> StoreResult<Option<SessionRecord>> {
        self.with(|c| one(c, &format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE number = $1"), &[&number], session))
    }

    fn end_session(&self, number: i64, now: i64) -> StoreResult<bool> {
        self.with(|c| {
            let updated = c
                .execute("UPDATE sessions SET ended_at = $1 WHERE number = $2 AND ended_at IS NULL", &[&now, &number])
                .map_err(backend)?;
            Ok(updated > 0)
        })
    }

    fn list_sessions(&self, provider: Option<i64>, limit: i64) -> StoreResult<Vec<SessionRecord>> {
        self.with(|c| {
            rows(
                c,
                &format!(
                    "SELECT {SESSION_COLUMNS} FROM sessions WHERE ($1::BIGINT IS NULL OR provider_id = $1) \
                     ORDER BY created_at DESC, number LIMIT $2"
                ),
                &[&provider, &limit],
                session,
            )
        })
    }

    fn add_events(&self, events: &[SessionEvent]) -> StoreResult<()> {
        self.with(|c| {
            let mut tx = c.transaction().map_err(backend)?;
            for e in events {
                tx.execute(
                    "INSERT INTO session_events (session, kind, detail, value, at, received_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                    &[&e.session, &e.kind, &e.detail, &e.value, &e.at, &e.received_at],
                )
                .map_err(backend)?;
            }
            tx.commit().map_err(backend)
        })
    }

    fn session_events(&self, number: i64) -> StoreResult<Vec<SessionEvent>> {
        self.with(|c| {
            rows(
                c,
                "SELECT session, kind, detail, value, at, received_at FROM session_events WHERE session = $1 ORDER BY id",
                &[&number],
                |r| {
                    Ok(SessionEvent {
                        session: get(r, 0)?,
                        kind: get(r, 1)?,
                        detail: get(r, 2)?,
                        value: get(r, 3)?,
                        at: get(r, 4)?,
                        received_at: get(r, 5)?,
                    })
                },
            )
        })
    }

    fn audit(&self, e: &AuditEntry) -> StoreResult<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO audit_log (at, actor, source, action, target, outcome) VALUES ($1, $2, $3, $4, $5, $6)",
                &[&e.at, &e.actor, &e.source, &e.action, &e.target, &e.outcome],
            )
            .map_err(backend)?;
            Ok(())
        })
    }

    fn audit_log(&self, limit: i64) -> StoreResult<Vec<AuditEntry>> {
        self.with(|c| {
            rows(
                c,
                "SELECT at, actor, source, action, target, outcome FROM audit_log ORDER BY id DESC LIMIT $1",
                &[&limit],
                |r| {
                    Ok(AuditEntry {
                        at: get(r, 0)?,
                        actor: get(r, 1)?,
                        source: get(r, 2)?,
                        action: get(r, 3)?,
                        target: get(r, 4)?,
                        outcome: get(r, 5)?,
                    })
                },
            )
        })
    }
}
