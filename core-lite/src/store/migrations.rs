//! The schema: migrations keyed by SQLite's `user_version`, applied in order, each in its
//! own exclusive transaction; a database newer than this code is refused.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use super::error::StoreError;

/// The migrations, in order; index + 1 is the schema version.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: the whole schema of issue 2; payments (issue 6) get their own table later.
    r#"
    CREATE TABLE modules (
        name               TEXT PRIMARY KEY,
        version            TEXT NOT NULL,
        offering_template  TEXT NOT NULL,
        offering_hash      TEXT NOT NULL UNIQUE,
        access_template    TEXT NOT NULL,
        access_hash        TEXT NOT NULL UNIQUE,
        registered_at_ms   INTEGER NOT NULL
    );
    CREATE TABLE products (
        id             TEXT PRIMARY KEY,
        name           TEXT NOT NULL UNIQUE,
        module         TEXT NOT NULL REFERENCES modules(name),
        endpoint       TEXT,
        config         TEXT NOT NULL DEFAULT '{}',
        config_at_ms   INTEGER,
        created_at_ms  INTEGER NOT NULL
    );
    CREATE TABLE tokens (
        hash           TEXT PRIMARY KEY,
        role           TEXT NOT NULL CHECK (role IN ('admin', 'product', 'client')),
        product_id     TEXT REFERENCES products(id),
        created_at_ms  INTEGER NOT NULL,
        CHECK ((role = 'product') = (product_id IS NOT NULL))
    );
    CREATE TABLE offerings (
        hash                  TEXT PRIMARY KEY,
        product_id            TEXT NOT NULL REFERENCES products(id),
        template_hash         TEXT NOT NULL,
        signed                TEXT NOT NULL,
        supply                INTEGER NOT NULL,
        unit_price            INTEGER NOT NULL,
        setup_price           INTEGER NOT NULL,
        min_units             INTEGER NOT NULL,
        max_units             INTEGER NOT NULL,
        free_units            INTEGER NOT NULL,
        billing_type          TEXT NOT NULL,
        billing_interval      INTEGER NOT NULL,
        max_billing_unit_lag  INTEGER NOT NULL,
        max_suspend_time_s    INTEGER NOT NULL,
        max_inactive_time_s   INTEGER NOT NULL,
        additional_params     TEXT NOT NULL,
        created_at_ms         INTEGER NOT NULL
    );
    -- side 'agent': a sale (offering, password hash); side 'client': an imported access message.
    CREATE TABLE channels (
        id                TEXT PRIMARY KEY,
        side              TEXT NOT NULL CHECK (side IN ('agent', 'client')),
        offering_hash     TEXT REFERENCES offerings(hash),
        client_key        TEXT NOT NULL,
        password_hash     TEXT,
        access_message    TEXT,
        deposit           INTEGER NOT NULL DEFAULT 0,
        amount_paid       INTEGER NOT NULL DEFAULT 0,
        status            TEXT NOT NULL,
        status_since_ms   INTEGER NOT NULL,
        bytes_total       INTEGER NOT NULL DEFAULT 0,
        created_at_ms     INTEGER NOT NULL,
        UNIQUE (side, client_key),
        CHECK ((side = 'agent') = (offering_hash IS NOT NULL AND password_hash IS NOT NULL)),
        CHECK ((side = 'client') = (access_message IS NOT NULL))
    );
    CREATE INDEX channels_offering ON channels(offering_hash, status);
    CREATE TABLE status_history (
        id          INTEGER PRIMARY KEY,
        channel_id  TEXT NOT NULL REFERENCES channels(id),
        status      TEXT NOT NULL,
        at_ms       INTEGER NOT NULL,
        reason      TEXT NOT NULL
    );
    CREATE INDEX status_history_channel ON status_history(channel_id, id);
    CREATE TABLE sessions (
        id              TEXT PRIMARY KEY,
        channel_id      TEXT NOT NULL REFERENCES channels(id),
        connection_id   TEXT,
        client_addr     TEXT,
        vpn_addr        TEXT,
        started_at_ms   INTEGER NOT NULL,
        stopped_at_ms   INTEGER,
        updated_at_ms   INTEGER NOT NULL,
        bytes_in        INTEGER NOT NULL DEFAULT 0,
        bytes_out       INTEGER NOT NULL DEFAULT 0
    );
    CREATE UNIQUE INDEX sessions_one_open ON sessions(channel_id) WHERE stopped_at_ms IS NULL;
    CREATE INDEX sessions_channel ON sessions(channel_id, started_at_ms);
    "#,
    // 2: the market (issue 6): accepted offerings, client keys, cheques.
    r#"
    CREATE TABLE market_offerings (
        hash            TEXT PRIMARY KEY,
        market_url      TEXT NOT NULL,
        signed          TEXT NOT NULL,
        terms           TEXT NOT NULL,
        fetched_at_ms   INTEGER NOT NULL
    );
    -- agent: the client's key (cheques) and the accept nonce (idempotent accept);
    -- client: where the agent's market is, the agent's channel id, the offering.
    ALTER TABLE channels ADD COLUMN client_public_key TEXT;
    ALTER TABLE channels ADD COLUMN accept_nonce TEXT;
    ALTER TABLE channels ADD COLUMN cheque TEXT;
    ALTER TABLE channels ADD COLUMN market_url TEXT;
    ALTER TABLE channels ADD COLUMN remote_channel_id TEXT;
    ALTER TABLE channels ADD COLUMN market_offering TEXT REFERENCES market_offerings(hash);
    ALTER TABLE channels ADD COLUMN payments_paused INTEGER NOT NULL DEFAULT 0;
    CREATE UNIQUE INDEX channels_accept_nonce ON channels(accept_nonce) WHERE accept_nonce IS NOT NULL;
    CREATE TABLE cheques (
        id          INTEGER PRIMARY KEY,
        channel_id  TEXT NOT NULL REFERENCES channels(id),
        amount      INTEGER NOT NULL,
        signature   TEXT NOT NULL,
        at_ms       INTEGER NOT NULL
    );
    CREATE INDEX cheques_channel ON cheques(channel_id, id);
    "#,
    // 3: issue 11. The row `/health` rewrites to learn whether the storage takes writes
    // again after a fault. (From this version on, `channels.access_message` of the client
    // side holds the agent's signed access message, `SignedAccess` with its signed offering;
    // rows imported before hold a bare message, which is never served.)
    r#"
    CREATE TABLE health_probe (
        id     INTEGER PRIMARY KEY CHECK (id = 1),
        at_ms  INTEGER NOT NULL
    );
    "#,
    // 4: issue 15. Usage per channel over time at a fixed resolution (`width_ms`), for the
    // console's plot: written in batches by `crate::usage_series`, added to (never
    // replaced, so several core instances on one database add up), bounded in age.
    r#"
    CREATE TABLE usage_buckets (
        channel_id  TEXT NOT NULL REFERENCES channels(id),
        start_ms    BIGINT NOT NULL,
        width_ms    BIGINT NOT NULL,
        bytes_in    BIGINT NOT NULL,
        bytes_out   BIGINT NOT NULL,
        PRIMARY KEY (channel_id, start_ms)
    );
    CREATE INDEX usage_buckets_start ON usage_buckets(start_ms);
    "#,
    // 5: issue 13. The claim window of a channel accepted over the market: by this time it
    // must have paid what its billing type requires (prepaid: the first interval;
    // postpaid: been used), or it is closed and its supply returns. NULL once claimed.
    r#"
    ALTER TABLE channels ADD COLUMN claim_deadline_ms INTEGER;
    CREATE INDEX channels_claim ON channels(claim_deadline_ms) WHERE claim_deadline_ms IS NOT NULL;
    "#,
];

/// Brings the database to the newest version (refusing one newer than this code).
pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let current: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|source| StoreError::Migrate { version: 0, source })?;
    let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    if current > known {
        return Err(StoreError::TooNew {
            location: path.display().to_string(),
            found: current,
            known,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate() {
        let version = i64::try_from(i).unwrap_or(i64::MAX) + 1;
        if version <= current {
            continue;
        }
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Exclusive)
            .map_err(|source| StoreError::Migrate { version, source })?;
        tx.execute_batch(sql)
            .and_then(|()| tx.pragma_update(None, "user_version", version))
            .and_then(|()| tx.commit())
            .map_err(|source| StoreError::Migrate { version, source })?;
    }
    Ok(())
}
