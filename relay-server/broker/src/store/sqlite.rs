//! The embedded store: one SQLite database file (WAL mode), one connection behind a mutex.
//! Every write is serialised by the mutex, and multi-statement operations are `IMMEDIATE`
//! transactions, so they are atomic also against another process opening the same file.

use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension as _, Row, TransactionBehavior, params};

use super::{
    Account, AccountUpdate, AuditEntry, Charge, MIGRATIONS, NewAccount, RelayLoad, RelayRecord, Role, SCORE_SQL,
    SessionEvent, SessionRecord, Store, StoreError, StoreResult, migration_sql,
};

/// SQLite, embedded.
#[derive(Debug)]
pub struct SqliteStore {
    connection: Mutex<Connection>,
}

fn backend(error: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(code, _) = &error
        && code.code == rusqlite::ErrorCode::ConstraintViolation
    {
        return StoreError::Conflict;
    }
    StoreError::Backend(error.to_string())
}

const ACCOUNT_COLUMNS: &str =
    "id, email, name, role, subscription, password_hash, failed_logins, locked_until, created_at, organisation";
const RELAY_COLUMNS: &str = "name, addresses, cert_sha256, registered_at, last_report, healthy, members, sessions, \
                             connections, assigned_since_report";
const SESSION_COLUMNS: &str = "number, provider_id, provider_email, relay, created_at, ended_at, expires_at";

fn account(row: &Row<'_>) -> rusqlite::Result<Account> {
    let role: String = row.get(3)?;
    Ok(Account {
        id: row.get(0)?,
        email: row.get(1)?,
        name: row.get(2)?,
        role: Role::parse(&role).unwrap_or(Role::Provider),
        subscription: row.get(4)?,
        password_hash: row.get(5)?,
        failed_logins: row.get(6)?,
        locked_until: row.get(7)?,
        created_at: row.get(8)?,
        organisation: row.get(9)?,
    })
}

fn relay(row: &Row<'_>) -> rusqlite::Result<RelayRecord> {
    let addresses: String = row.get(1)?;
    Ok(RelayRecord {
        name: row.get(0)?,
        addresses: addresses.split(',').filter(|a| !a.is_empty()).map(str::to_owned).collect(),
        cert_sha256: row.get(2)?,
        registered_at: row.get(3)?,
        last_report: row.get(4)?,
        healthy: row.get::<_, i64>(5)? != 0,
        members: row.get(6)?,
        sessions: row.get(7)?,
        connections: row.get(8)?,
        assigned_since_report: row.get(9)?,
    })
}

fn session(row: &Row<'_>) -> rusqlite::Result<SessionRecord> {
    Ok(SessionRecord {
        number: row.get(0)?,
        provider_id: row.get(1)?,
        provider_email: row.get(2)?,
        relay: row.get(3)?,
        created_at: row.get(4)?,
        ended_at: row.get(5)?,
        expires_at: row.get(6)?,
    })
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` (`:memory:` for a private in-memory
    /// one) and runs the migrations.
    pub fn open(path: &str) -> StoreResult<SqliteStore> {
        let connection = Connection::open(path).map_err(backend)?;
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
                 PRAGMA busy_timeout = 5000;",
            )
            .map_err(backend)?;
        let store = SqliteStore { connection: Mutex::new(connection) };
        store.migrate()?;
        Ok(store)
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (transactions roll back).
        self.connection.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn migrate(&self) -> StoreResult<()> {
        let mut connection = self.lock();
        let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
        tx.execute_batch("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY)")
            .map_err(backend)?;
        let done: i64 = tx
            .query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |r| r.get(0))
            .map_err(backend)?;
        for (index, sql) in MIGRATIONS.iter().enumerate() {
            let version = i64::try_from(index).unwrap_or(i64::MAX) + 1;
            if version > done {
                tx.execute_batch(&migration_sql(sql, false)).map_err(backend)?;
                tx.execute("INSERT INTO schema_migrations (version) VALUES (?1)", [version]).map_err(backend)?;
            }
        }
        tx.commit().map_err(backend)
    }
}

impl Store for SqliteStore {
    fn create_account(&self, a: &NewAccount) -> StoreResult<i64> {
        let connection = self.lock();
        connection
            .execute(
                "INSERT INTO accounts (email, name, role, subscription, password_hash, created_at, organisation) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    a.email,
                    a.name,
                    a.role.as_str(),
                    a.subscription,
                    a.password_hash,
                    a.created_at,
                    a.organisation
                ],
            )
            .map_err(backend)?;
        Ok(connection.last_insert_rowid())
    }

    fn account_by_email(&self, email: &str) -> StoreResult<Option<Account>> {
        self.lock()
            .query_row(&format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE email = ?1"), [email], account)
            .optional()
            .map_err(backend)
    }

    fn account_by_id(&self, id: i64) -> StoreResult<Option<Account>> {
        self.lock()
            .query_row(&format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ?1"), [id], account)
            .optional()
            .map_err(backend)
    }

    fn list_accounts(&self) -> StoreResult<Vec<Account>> {
        let connection = self.lock();
        let mut statement =
            connection.prepare(&format!("SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY id")).map_err(backend)?;
        statement.query_map([], account).map_err(backend)?.collect::<Result<_, _>>().map_err(backend)
    }

    fn update_account(&self, id: i64, u: &AccountUpdate) -> StoreResult<bool> {
        let mut connection = self.lock();
        let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
        let exists =
            tx.query_row("SELECT 1 FROM accounts WHERE id = ?1", [id], |_| Ok(())).optional().map_err(backend)?;
        if exists.is_none() {
            return Ok(false);
        }
        if let Some(name) = &u.name {
            tx.execute("UPDATE accounts SET name = ?1 WHERE id = ?2", params![name, id]).map_err(backend)?;
        }
        if let Some(role) = u.role {
            tx.execute("UPDATE accounts SET role = ?1 WHERE id = ?2", params![role.as_str(), id]).map_err(backend)?;
            // A role change revokes the account's tokens: privileges are read per request, but a
            // demoted admin should log in again anyway.
            tx.execute("DELETE FROM api_tokens WHERE account_id = ?1", [id]).map_err(backend)?;
        }
        if let Some(subscription) = &u.subscription {
            tx.execute("UPDATE accounts SET subscription = ?1 WHERE id = ?2", params![subscription, id])
                .map_err(backend)?;
        }
        if let Some(organisation) = &u.organisation {
            tx.execute("UPDATE accounts SET organisation = ?1 WHERE id = ?2", params![organisation, id])
                .map_err(backend)?;
        }
        tx.commit().map_err(backend)?;
        Ok(true)
    }

    fn delete_account(&self, id: i64) -> StoreResult<bool> {
        let mut connection = self.lock();
        let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
        tx.execute("DELETE FROM api_tokens WHERE account_id = ?1", [id]).map_err(backend)?;
        let deleted = tx.execute("DELETE FROM accounts WHERE id = ?1", [id]).map_err(backend)?;
        tx.commit().map_err(backend)?;
        Ok(deleted > 0)
    }

    fn set_password(&self, id: i64, password_hash: &str) -> StoreResult<bool> {
        let mut connection = self.lock();
        let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
        let updated = tx
            .execute("UPDATE accounts SET password_hash = ?1 WHERE id = ?2", params![password_hash, id])
            .map_err(backend)?;
        tx.execute("DELETE FROM api_tokens WHERE account_id = ?1", [id]).map_err(backend)?;
        tx.commit().map_err(backend)?;
        Ok(updated > 0)
    }

    fn charge_login(&self, id: i64, now: i64, max_failures: i64, lockout_secs: i64) -> StoreResult<Charge> {
        let mut connection = self.lock();
        let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
        let Some((mut failed, locked_until)) = tx
            .query_row("SELECT failed_logins, locked_until FROM accounts WHERE id = ?1", [id], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, Option<i64>>(1)?))
            })
            .optional()
            .map_err(backend)?
        else {
            return Ok(Charge::Locked { until: now });
        };
        let (charge, failed_now, locked_now) = match locked_until {
            Some(until) if until > now => (Charge::Locked { until }, failed, Some(until)),
            _ => {
                if locked_until.is_some() {
                    failed = 0;
                }
                failed += 1;
                let lock = (failed >= max_failures).then_some(now.saturating_add(lockout_secs));
                (Charge::Allowed, failed, lock)
            }
        };
        tx.execute(
            "UPDATE accounts SET failed_logins = ?1, locked_until = ?2 WHERE id = ?3",
            params![failed_now, locked_now, id],
        )
        .map_err(backend)?;
        tx.commit().map_err(backend)?;
        Ok(charge)
    }

    fn login_succeeded(&self, id: i64) -> StoreResult<()> {
        self.lock()
            .execute("UPDATE accounts SET failed_logins = 0, locked_until = NULL WHERE id = ?1", [id])
            .map_err(backend)?;
        Ok(())
    }

    fn unlock(&self, id: i64) -> StoreResult<bool> {
        let updated = self
            .lock()
            .execute("UPDATE accounts SET failed_logins = 0, locked_until = NULL WHERE id = ?1", [id])
            .map_err(backend)?;
        Ok(updated > 0)
    }

    fn insert_token(&self, token_sha256: &[u8], account: i64, expires_at: i64) -> StoreResult<()> {
        let connection = self.lock();
        // Expired tokens are swept on every login.
        connection
            .execute("DELETE FROM api_tokens WHERE expires_at <= ?1", [expires_at - 86_400 * 30])
            .map_err(backend)?;
        connection
            .execute(
                "INSERT INTO api_tokens (token_sha256, account_id, expires_at) VALUES (?1, ?2, ?3)",
                params![token_sha256, account, expires_at],
            )
            .map_err(backend)?;
        Ok(())
    }

    fn token_account(&self, token_sha256: &[u8], now: i64) -> StoreResult<Option<Account>> {
        let columns = ACCOUNT_COLUMNS.split(", ").map(|c| format!("a.{c}")).collect::<Vec<_>>().join(", ");
        self.lock()
            .query_row(
                &format!(
                    "SELECT {columns} FROM api_tokens t JOIN accounts a ON a.id = t.account_id \
                     WHERE t.token_sha256 = ?1 AND t.expires_at > ?2"
                ),
                params![token_sha256, now],
                account,
            )
            .optional()
            .map_err(backend)
    }

    fn delete_token(&self, token_sha256: &[u8]) -> StoreResult<()> {
        self.lock().execute("DELETE FROM api_tokens WHERE token_sha256 = ?1", [token_sha256]).map_err(backend)?;
        Ok(())
    }

    fn register_relay(&self, name: &str, addresses: &[String], cert: Option<&str>, now: i64) -> StoreResult<()> {
        self.lock()
            .execute(
                "INSERT INTO relays (name, addresses, cert_sha256, registered_at) VALUES (?1, ?2, ?3, ?4)",
                params![name, addresses.join(","), cert, now],
            )
            .map_err(backend)?;
        Ok(())
    }

    fn set_relay_cert(&self, name: &str, cert: Option<&str>) -> StoreResult<bool> {
        let updated = self
            .lock()
            .execute("UPDATE relays SET cert_sha256 = ?1 WHERE name = ?2", params![cert, name])
            .map_err(backend)?;
        Ok(updated > 0)
    }

    fn delete_relay(&self, name: &str) -> StoreResult<bool> {
        Ok(self.lock().execute("DELETE FROM relays WHERE name = ?1", [name]).map_err(backend)? > 0)
    }

    fn list_relays(&self) -> StoreResult<Vec<RelayRecord>> {
        let connection = self.lock();
        let mut statement =
            connection.prepare(&format!("SELECT {RELAY_COLUMNS} FROM relays ORDER BY name")).map_err(backend)?;
        statement.query_map([], relay).map_err(backend)?.collect::<Result<_, _>>().map_err(backend)
    }

    fn record_relay_report(&self, name: &str, load: &RelayLoad, now: i64) -> StoreResult<bool> {
        let connection = self.lock();
        let updated = connection
            .execute(
                "UPDATE relays SET last_report = ?1, healthy = ?2, members = ?3, sessions = ?4, connections = ?5, \
                 assigned_since_report = 0 WHERE name = ?6",
                params![now, i64::from(load.healthy), load.members, load.sessions, load.connections, name],
            )
            .map_err(backend)?;
        if updated > 0 && !load.addresses.is_empty() {
            connection
                .execute("UPDATE relays SET addresses = ?1 WHERE name = ?2", params![load.addresses.join(","), name])
                .map_err(backend)?;
        }
        Ok(updated > 0)
    }

    fn assign_relay(&self, now: i64, stale_secs: i64) -> StoreResult<Option<RelayRecord>> {
        let mut connection = self.lock();
        let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
        let chosen = tx
            .query_row(
                &format!(
                    "SELECT {RELAY_COLUMNS} FROM relays WHERE healthy = 1 AND last_report IS NOT NULL \
                     AND last_report >= ?1 ORDER BY {SCORE_SQL}, name LIMIT 1"
                ),
                [now - stale_secs],
                relay,
            )
            .optional()
            .map_err(backend)?;
        if let Some(relay) = &chosen {
            tx.execute(
                "UPDATE relays SET assigned_since_report = assigned_since_report + 1 WHERE name = ?1",
                [&relay.name],
            )
            .map_err(backend)?;
        }
        tx.commit().map_err(backend)?;
        Ok(chosen)
    }

    fn create_session(&self, number: i64, provider: i64, relay: &str, now: i64, expires_at: i64) -> StoreResult<()> {
        let connection = self.lock();
        connection
            .execute(
                "INSERT INTO sessions (number, provider_id, provider_email, relay, created_at, expires_at) \
                 SELECT ?1, id, email, ?2, ?3, ?4 FROM accounts WHERE id = ?5",
                params![number, relay, now, expires_at, provider],
            )
            .map_err(backend)?;
        Ok(())
    }

    fn session(&self, number: i64) -> StoreResult<Option<SessionRecord>> {
        self.lock()
            .query_row(&format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE number = ?1"), [number], session)
            .optional()
            .map_err(backend)
    }

    fn end_session(&self, number: i64, now: i64) -> StoreResult<bool> {
        let updated = self
            .lock()
            .execute("UPDATE sessions SET ended_at = ?1 WHERE number = ?2 AND ended_at IS NULL", params![now, number])
            .map_err(backend)?;
        Ok(updated > 0)
    }

    fn list_sessions(&self, provider: Option<i64>, limit: i64) -> StoreResult<Vec<SessionRecord>> {
        let connection = self.lock();
        let mut statement = connection
            .prepare(&format!(
                "SELECT {SESSION_COLUMNS} FROM sessions WHERE (?1 IS NULL OR provider_id = ?1) \
                 ORDER BY created_at DESC, number LIMIT ?2"
            ))
            .map_err(backend)?;
        statement
            .query_map(params![provider, limit], session)
            .map_err(backend)?
            .collect::<Result<_, _>>()
            .map_err(backend)
    }

    fn add_events(&self, events: &[SessionEvent]) -> StoreResult<()> {
        let mut connection = self.lock();
        let tx = connection.transaction().map_err(backend)?;
        for e in events {
            tx.execute(
                "INSERT INTO session_events (session, kind, detail, value, at, received_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![e.session, e.kind, e.detail, e.value, e.at, e.received_at],
            )
            .map_err(backend)?;
        }
        tx.commit().map_err(backend)
    }

    fn session_events(&self, number: i64) -> StoreResult<Vec<SessionEvent>> {
        let connection = self.lock();
        let mut statement = connection
            .prepare(
                "SELECT session, kind, detail, value, at, received_at FROM session_events WHERE session = ?1 ORDER BY id",
            )
            .map_err(backend)?;
        statement
            .query_map([number], |r| {
                Ok(SessionEvent {
                    session: r.get(0)?,
                    kind: r.get(1)?,
                    detail: r.get(2)?,
                    value: r.get(3)?,
                    at: r.get(4)?,
                    received_at: r.get(5)?,
                })
            })
            .map_err(backend)?
            .collect::<Result<_, _>>()
            .map_err(backend)
    }

    fn audit(&self, e: &AuditEntry) -> StoreResult<()> {
        self.lock()
            .execute(
                "INSERT INTO audit_log (at, actor, source, action, target, outcome) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![e.at, e.actor, e.source, e.action, e.target, e.outcome],
            )
            .map_err(backend)?;
        Ok(())
    }

    fn audit_log(&self, limit: i64) -> StoreResult<Vec<AuditEntry>> {
        let connection = self.lock();
        let mut statement = connection
            .prepare("SELECT at, actor, source, action, target, outcome FROM audit_log ORDER BY id DESC LIMIT ?1")
            .map_err(backend)?;
        statement
            .query_map([limit], |r| {
                Ok(AuditEntry {
                    at: r.get(0)?,
                    actor: r.get(1)?,
                    source: r.get(2)?,
                    action: r.get(3)?,
                    target: r.get(4)?,
                    outcome: r.get(5)?,
                })
            })
            .map_err(backend)?
            .collect::<Result<_, _>>()
            .map_err(backend)
    }
}
