//! [`ApiKeyStore`](rei_core::access::ApiKeyStore) and [`ReplayStore`](rei_core::access::ReplayStore) over
//! either engine: `api_keys` and `http_replays`.

use rei_core::access::{AccessStoreError, ApiKeyRecord, ReplayBegin, ReplaySlot, Scope, StoredResponse};
use rei_core::guards::ApiKeyId;
use rei_core::time::Timestamp;

use super::engine::Engine;
use super::fields::{Fields, RowError, SqlRow};
use super::values::Value;

/// The columns of `api_keys`, in the order [`key_values`] lists them.
pub(crate) const KEY_COLUMNS: &str = "id, name, secret_hash, scopes, rate_per_minute, created_ms, revoked_ms";

/// The statements of the access stores in one engine's dialect (placeholders numbered from 1).
pub(crate) struct AccessSql {
    /// Inserts a key from [`key_values`]; a clash on the id inserts nothing.
    pub(crate) insert_key: &'static str,
    /// After `SELECT {KEY_COLUMNS} FROM api_keys`: the key whose id is the 1st value.
    pub(crate) key_by_id: &'static str,
    /// Sets `revoked_ms` (2nd) of the key (1st) if it is not revoked.
    pub(crate) revoke: &'static str,
    /// Inserts a slot: api key, idempotency key, fingerprint, created, locked until; a clash inserts nothing.
    pub(crate) claim: &'static str,
    /// Claims again a slot whose lock ran out: api key, key, fingerprint, now (created), locked until, now.
    pub(crate) reclaim: &'static str,
    /// The slot's fingerprint, status, content type and body: api key, key.
    pub(crate) slot: &'static str,
    /// Stores the response: status, content type, body, api key, key, fingerprint (PostgreSQL batches its own).
    #[cfg_attr(not(feature = "sqlite"), expect(dead_code, reason = "PostgreSQL stores responses in batches"))]
    pub(crate) finish: &'static str,
    /// Removes an unfinished slot: api key, key, fingerprint.
    pub(crate) abandon: &'static str,
    /// Removes up to the 2nd value of the slots created before the 1st.
    pub(crate) purge: &'static str,
}

fn unavailable(e: impl ToString) -> AccessStoreError {
    AccessStoreError::Unavailable { reason: e.to_string() }
}

fn scopes_text(scopes: &[Scope]) -> String {
    scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")
}

fn key_from_row<R: SqlRow>(row: &R) -> Result<ApiKeyRecord, RowError> {
    let f = Fields::new("api_keys", row);
    Ok(ApiKeyRecord {
        id: f.parsed("id", ApiKeyId::parse)?,
        name: f.text("name")?,
        secret_hash: f.text("secret_hash")?,
        scopes: f.parsed("scopes", Scope::parse_list)?,
        rate_per_minute: f.unsigned("rate_per_minute")?,
        created_at: f.time("created_ms")?,
        revoked_at: f.int_or_null("revoked_ms")?.map(Timestamp::from_millis),
    })
}

fn key_values(k: &ApiKeyRecord) -> Vec<Value<'_>> {
    vec![
        k.id.as_str().into(),
        k.name.as_str().into(),
        k.secret_hash.as_str().into(),
        scopes_text(&k.scopes).into(),
        i64::from(k.rate_per_minute).into(),
        k.created_at.as_millis().into(),
        k.revoked_at.map(Timestamp::as_millis).into(),
    ]
}

/// [`ApiKeyStore::create`](rei_core::access::ApiKeyStore::create).
pub(crate) async fn create<E: Engine>(db: &E, sql: &AccessSql, key: &ApiKeyRecord) -> Result<(), AccessStoreError> {
    let inserted = db.execute(sql.insert_key, key_values(key)).await.map_err(unavailable)?;
    if inserted == 0 { Err(AccessStoreError::Exists(key.id.as_str().to_owned())) } else { Ok(()) }
}

/// [`ApiKeyStore::get`](rei_core::access::ApiKeyStore::get).
pub(crate) async fn get<E: Engine>(
    db: &E,
    sql: &AccessSql,
    id: &ApiKeyId,
) -> Result<Option<ApiKeyRecord>, AccessStoreError> {
    let select = format!("SELECT {KEY_COLUMNS} FROM api_keys {}", sql.key_by_id);
    let row = db.fetch_optional(&select, vec![id.as_str().into()]).await.map_err(unavailable)?;
    row.as_ref().map(key_from_row).transpose().map_err(unavailable)
}

/// [`ApiKeyStore::list`](rei_core::access::ApiKeyStore::list).
pub(crate) async fn list<E: Engine>(db: &E) -> Result<Vec<ApiKeyRecord>, AccessStoreError> {
    let select = format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_ms, id LIMIT 10000");
    let rows = db.fetch_all(&select, Vec::new()).await.map_err(unavailable)?;
    rows.iter().map(|r| key_from_row(r).map_err(unavailable)).collect()
}

/// [`ApiKeyStore::revoke`](rei_core::access::ApiKeyStore::revoke).
pub(crate) async fn revoke<E: Engine>(
    db: &E,
    sql: &AccessSql,
    id: &ApiKeyId,
    at: Timestamp,
) -> Result<bool, AccessStoreError> {
    let n = db.execute(sql.revoke, vec![id.as_str().into(), at.as_millis().into()]).await.map_err(unavailable)?;
    Ok(n > 0)
}

fn slot_values(slot: &ReplaySlot) -> Vec<Value<'_>> {
    vec![slot.api_key.as_str().into(), slot.key.as_str().into(), slot.fingerprint.as_str().into()]
}

/// [`ReplayStore::begin`](rei_core::access::ReplayStore::begin): a claim is one insert, or one conditional
/// update of a slot whose lock ran out, so concurrent callers cannot both start.
pub(crate) async fn begin<E: Engine>(
    db: &E,
    sql: &AccessSql,
    slot: &ReplaySlot,
    now: Timestamp,
    locked_until: Timestamp,
) -> Result<ReplayBegin, AccessStoreError> {
    // A slot removed between the reads (abandoned, purged) is claimed on the next round.
    for _ in 0..3 {
        let mut values = slot_values(slot);
        values.extend([now.as_millis().into(), locked_until.as_millis().into()]);
        if db.execute(sql.claim, values).await.map_err(unavailable)? > 0 {
            return Ok(ReplayBegin::Started);
        }
        let mut values = slot_values(slot);
        values.extend([now.as_millis().into(), locked_until.as_millis().into(), now.as_millis().into()]);
        if db.execute(sql.reclaim, values).await.map_err(unavailable)? > 0 {
            return Ok(ReplayBegin::Started);
        }
        let row = db
            .fetch_optional(sql.slot, vec![slot.api_key.as_str().into(), slot.key.as_str().into()])
            .await
            .map_err(unavailable)?;
        let Some(row) = row else { continue };
        let f = Fields::new("http_replays", &row);
        if f.text("fingerprint").map_err(unavailable)? != slot.fingerprint {
            return Ok(ReplayBegin::Mismatch);
        }
        return match f.int_or_null("status").map_err(unavailable)? {
            None => Ok(ReplayBegin::InProgress),
            Some(status) => Ok(ReplayBegin::Replay(StoredResponse {
                status: u16::try_from(status).map_err(|_| unavailable("http_replays.status out of range"))?,
                content_type: f.text("content_type").map_err(unavailable)?,
                body: row.bytes("body").map_err(unavailable)?,
            })),
        };
    }
    Ok(ReplayBegin::InProgress)
}

/// [`ReplayStore::finish`](rei_core::access::ReplayStore::finish).
#[cfg(feature = "sqlite")]
pub(crate) async fn finish<E: Engine>(
    db: &E,
    sql: &AccessSql,
    slot: &ReplaySlot,
    response: &StoredResponse,
) -> Result<(), AccessStoreError> {
    let mut values: Vec<Value<'_>> = vec![
        i64::from(response.status).into(),
        response.content_type.as_str().into(),
        Value::Bytes(response.body.clone()),
    ];
    values.extend(slot_values(slot));
    db.execute(sql.finish, values).await.map_err(unavailable)?;
    Ok(())
}

/// [`ReplayStore::abandon`](rei_core::access::ReplayStore::abandon).
pub(crate) async fn abandon<E: Engine>(db: &E, sql: &AccessSql, slot: &ReplaySlot) -> Result<(), AccessStoreError> {
    db.execute(sql.abandon, slot_values(slot)).await.map_err(unavailable)?;
    Ok(())
}

/// [`ReplayStore::purge`](rei_core::access::ReplayStore::purge).
pub(crate) async fn purge<E: Engine>(
    db: &E,
    sql: &AccessSql,
    before: Timestamp,
    limit: usize,
) -> Result<usize, AccessStoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let n = db.execute(sql.purge, vec![before.as_millis().into(), limit.into()]).await.map_err(unavailable)?;
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

/// Defines an engine's API key store `$keys` and replay store `$replays` over a `$pool`.
#[cfg(feature = "sqlite")]
macro_rules! access_stores {
    ($keys:ident, $replays:ident, $pool:ty, $sql:expr, $engine:literal) => {
        $crate::sql::stores::access::api_key_store!($keys, $pool, $sql, $engine);
        $crate::sql::stores::access::replay_store!($replays, $pool, $sql, $engine);
    };
}
#[cfg(feature = "sqlite")]
pub(crate) use access_stores;

/// Defines an engine's API key store `$keys` over a `$pool`.
macro_rules! api_key_store {
    ($keys:ident, $pool:ty, $sql:expr, $engine:literal) => {
        $crate::sql::stores::engine::pool_store!(
            $keys,
            $pool,
            concat!(
                "An [`ApiKeyStore`](rei_core::access::ApiKeyStore) over a ",
                $engine,
                " pool; the schema comes from [`super::migrate`]."
            )
        );
        #[async_trait::async_trait]
        impl rei_core::access::ApiKeyStore for $keys {
            async fn create(
                &self,
                key: &rei_core::access::ApiKeyRecord,
            ) -> Result<(), rei_core::access::AccessStoreError> {
                $crate::sql::stores::access::create(&self.pool, &$sql, key).await
            }

            async fn get(
                &self,
                id: &rei_core::guards::ApiKeyId,
            ) -> Result<Option<rei_core::access::ApiKeyRecord>, rei_core::access::AccessStoreError> {
                $crate::sql::stores::access::get(&self.pool, &$sql, id).await
            }

            async fn list(&self) -> Result<Vec<rei_core::access::ApiKeyRecord>, rei_core::access::AccessStoreError> {
                $crate::sql::stores::access::list(&self.pool).await
            }

            async fn revoke(
                &self,
                id: &rei_core::guards::ApiKeyId,
                at: rei_core::time::Timestamp,
            ) -> Result<bool, rei_core::access::AccessStoreError> {
                $crate::sql::stores::access::revoke(&self.pool, &$sql, id, at).await
            }
        }
    };
}
pub(crate) use api_key_store;

/// Defines an engine's replay store `$replays` over a `$pool`, one statement per call.
#[cfg(feature = "sqlite")]
macro_rules! replay_store {
    ($replays:ident, $pool:ty, $sql:expr, $engine:literal) => {
        $crate::sql::stores::engine::pool_store!(
            $replays,
            $pool,
            concat!(
                "A [`ReplayStore`](rei_core::access::ReplayStore) over a ",
                $engine,
                " pool; the schema comes from [`super::migrate`]."
            )
        );

        #[async_trait::async_trait]
        impl rei_core::access::ReplayStore for $replays {
            async fn begin(
                &self,
                slot: &rei_core::access::ReplaySlot,
                now: rei_core::time::Timestamp,
                locked_until: rei_core::time::Timestamp,
            ) -> Result<rei_core::access::ReplayBegin, rei_core::access::AccessStoreError> {
                $crate::sql::stores::access::begin(&self.pool, &$sql, slot, now, locked_until).await
            }

            async fn finish(
                &self,
                slot: &rei_core::access::ReplaySlot,
                response: &rei_core::access::StoredResponse,
            ) -> Result<(), rei_core::access::AccessStoreError> {
                $crate::sql::stores::access::finish(&self.pool, &$sql, slot, response).await
            }

            async fn abandon(
                &self,
                slot: &rei_core::access::ReplaySlot,
            ) -> Result<(), rei_core::access::AccessStoreError> {
                $crate::sql::stores::access::abandon(&self.pool, &$sql, slot).await
            }

            async fn purge(
                &self,
                before: rei_core::time::Timestamp,
                limit: usize,
            ) -> Result<usize, rei_core::access::AccessStoreError> {
                $crate::sql::stores::access::purge(&self.pool, &$sql, before, limit).await
            }
        }
    };
}
#[cfg(feature = "sqlite")]
pub(crate) use replay_store;
