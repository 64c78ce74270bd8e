//! [`PgReplays`]: the HTTP replay slots in PostgreSQL, with the two statements every POST makes (the claim and
//! the stored response) grouped across concurrent requests: writer tasks take whatever claims and responses are
//! waiting and write each kind in one statement (`UNNEST` of arrays), so a burst of requests costs a few round
//! trips instead of two each. A claim the batch did not insert (the slot exists, or a twin in the same batch
//! came first) is decided alone by the same steps as the unbatched store, so the port's contract holds.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use rei_core::access::{AccessStoreError, ReplayBegin, ReplaySlot, ReplayStore, StoredResponse};
use rei_core::time::Timestamp;
use sqlx::Row;
use sqlx::postgres::PgPool;
use tokio::sync::{Mutex, mpsc, oneshot};

use super::access::SQL;
use crate::sql::stores::access;

/// Most claims or responses one statement writes.
const BATCH_MAX: usize = 256;
/// Writer tasks.
const WRITERS: usize = 2;

enum Work {
    Claim { slot: ReplaySlot, now: Timestamp, locked_until: Timestamp, reply: oneshot::Sender<Result<bool, String>> },
    Finish { slot: ReplaySlot, response: StoredResponse, reply: oneshot::Sender<Result<(), String>> },
}

/// A [`ReplayStore`] over a PostgreSQL pool (migrated), batching claims and responses.
#[derive(Debug, Clone)]
pub struct PgReplays {
    pool: PgPool,
    queue: mpsc::Sender<Work>,
}

impl std::fmt::Debug for Work {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Work::Claim { .. } => "Claim",
            Work::Finish { .. } => "Finish",
        })
    }
}

impl PgReplays {
    /// A store over `pool`, with its writer tasks spawned on the current tokio runtime (they stop when the last
    /// clone of the store is dropped).
    ///
    /// # Panics
    /// Outside a tokio runtime.
    #[must_use]
    pub fn new(pool: PgPool) -> PgReplays {
        let (tx, rx) = mpsc::channel(16_384);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..WRITERS {
            tokio::spawn(writer(pool.clone(), rx.clone()));
        }
        PgReplays { pool, queue: tx }
    }
}

fn unavailable(e: impl ToString) -> AccessStoreError {
    AccessStoreError::Unavailable { reason: e.to_string() }
}

async fn writer(pool: PgPool, rx: Arc<Mutex<mpsc::Receiver<Work>>>) {
    loop {
        let mut batch = Vec::new();
        {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else { return };
            batch.push(first);
            while batch.len() < BATCH_MAX {
                match rx.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
        }
        let mut claims = Vec::new();
        let mut finishes = Vec::new();
        for work in batch {
            match work {
                Work::Claim { slot, now, locked_until, reply } => claims.push((slot, now, locked_until, reply)),
                Work::Finish { slot, response, reply } => finishes.push((slot, response, reply)),
            }
        }
        if !claims.is_empty() {
            claim_all(&pool, claims).await;
        }
        if !finishes.is_empty() {
            finish_all(&pool, finishes).await;
        }
    }
}

type Claim = (ReplaySlot, Timestamp, Timestamp, oneshot::Sender<Result<bool, String>>);

/// Inserts the batch's claims in one statement; answers `true` to each one inserted, `false` to the others (a
/// twin of an earlier claim of the same batch is not sent, so that which of them was inserted is never in doubt).
async fn claim_all(pool: &PgPool, claims: Vec<Claim>) {
    let mut seen = HashSet::new();
    let (mut keys, mut idems, mut prints, mut nows, mut locks) = (vec![], vec![], vec![], vec![], vec![]);
    let mut sent = Vec::with_capacity(claims.len());
    for (slot, now, until, _) in &claims {
        let first = seen.insert((slot.api_key.as_str().to_owned(), slot.key.clone()));
        sent.push(first);
        if first {
            keys.push(slot.api_key.as_str().to_owned());
            idems.push(slot.key.clone());
            prints.push(slot.fingerprint.clone());
            nows.push(now.as_millis());
            locks.push(until.as_millis());
        }
    }
    let inserted = sqlx::query(
        "INSERT INTO http_replays (api_key, idem_key, fingerprint, created_ms, locked_until_ms) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[]) \
         ON CONFLICT (api_key, idem_key) DO NOTHING RETURNING api_key, idem_key",
    )
    .bind(&keys)
    .bind(&idems)
    .bind(&prints)
    .bind(&nows)
    .bind(&locks)
    .fetch_all(pool)
    .await;
    match inserted {
        Ok(rows) => {
            let won: HashSet<(String, String)> = rows
                .iter()
                .filter_map(|r| {
                    Some((r.try_get::<String, _>("api_key").ok()?, r.try_get::<String, _>("idem_key").ok()?))
                })
                .collect();
            for ((slot, _, _, reply), first) in claims.into_iter().zip(sent) {
                let key = (slot.api_key.as_str().to_owned(), slot.key);
                let _ = reply.send(Ok(first && won.contains(&key)));
            }
        }
        Err(e) => {
            for (_, _, _, reply) in claims {
                let _ = reply.send(Err(e.to_string()));
            }
        }
    }
}

type Finish = (ReplaySlot, StoredResponse, oneshot::Sender<Result<(), String>>);

/// Stores the batch's responses in one statement.
async fn finish_all(pool: &PgPool, finishes: Vec<Finish>) {
    let (mut keys, mut idems, mut prints, mut statuses, mut types, mut bodies) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for (slot, response, _) in &finishes {
        keys.push(slot.api_key.as_str().to_owned());
        idems.push(slot.key.clone());
        prints.push(slot.fingerprint.clone());
        statuses.push(i64::from(response.status));
        types.push(response.content_type.clone());
        bodies.push(response.body.clone());
    }
    let done = sqlx::query(
        "UPDATE http_replays r SET status = v.status, content_type = v.content_type, body = v.body \
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::bytea[]) \
              AS v(api_key, idem_key, fingerprint, status, content_type, body) \
         WHERE r.api_key = v.api_key AND r.idem_key = v.idem_key AND r.fingerprint = v.fingerprint",
    )
    .bind(&keys)
    .bind(&idems)
    .bind(&prints)
    .bind(&statuses)
    .bind(&types)
    .bind(&bodies)
    .execute(pool)
    .await;
    let outcome = done.map(|_| ()).map_err(|e| e.to_string());
    for (_, _, reply) in finishes {
        let _ = reply.send(outcome.clone());
    }
}

#[async_trait]
impl ReplayStore for PgReplays {
    async fn begin(
        &self,
        slot: &ReplaySlot,
        now: Timestamp,
        locked_until: Timestamp,
    ) -> Result<ReplayBegin, AccessStoreError> {
        let (reply, answer) = oneshot::channel();
        let work = Work::Claim { slot: slot.clone(), now, locked_until, reply };
        self.queue.send(work).await.map_err(|_| unavailable("the replay writer stopped"))?;
        match answer.await.map_err(|_| unavailable("the replay writer stopped"))? {
            Ok(true) => Ok(ReplayBegin::Started),
            // The slot exists (or a twin came first): decide it alone, as the unbatched store does.
            Ok(false) => access::begin(&self.pool, &SQL, slot, now, locked_until).await,
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn finish(&self, slot: &ReplaySlot, response: &StoredResponse) -> Result<(), AccessStoreError> {
        let (reply, answer) = oneshot::channel();
        let work = Work::Finish { slot: slot.clone(), response: response.clone(), reply };
        self.queue.send(work).await.map_err(|_| unavailable("the replay writer stopped"))?;
        answer.await.map_err(|_| unavailable("the replay writer stopped"))?.map_err(unavailable)
    }

    async fn abandon(&self, slot: &ReplaySlot) -> Result<(), AccessStoreError> {
        access::abandon(&self.pool, &SQL, slot).await
    }

    async fn purge(&self, before: Timestamp, limit: usize) -> Result<usize, AccessStoreError> {
        access::purge(&self.pool, &SQL, before, limit).await
    }
}
