//! [`ProviderBoard`](rei_core::routing::ProviderBoard) over either engine: `provider_status` and
//! `model_switches` (migration 0013).

use rei_core::ids::ProviderId;
use rei_core::routing::{BoardError, BreakerView, ModelSwitch, ProviderStatus, check_model, check_status};
use rei_core::time::Timestamp;
use rust_decimal::Decimal;

use super::engine::Engine;
use super::fields::{Fields, SqlRow};

/// The statements of the board in one engine's dialect (placeholders numbered from 1).
pub(crate) struct BoardSql {
    /// Writes a status: provider, breaker, open until, score, latency, successes, outcomes, reporter, time;
    /// replacing the provider's row.
    pub(crate) publish: &'static str,
    /// Every status, by provider.
    pub(crate) statuses: &'static str,
    /// Writes a switch: provider, model, enabled (0 or 1), time; replacing the model's row.
    pub(crate) set_model: &'static str,
    /// Every switch, by provider and model.
    pub(crate) models: &'static str,
}

/// The most rows one read returns: far more providers and models than a deployment has.
pub(crate) const ROWS_MAX: i64 = 1_000;

fn unavailable(e: impl ToString) -> BoardError {
    BoardError::Unavailable(e.to_string())
}

/// [`ProviderBoard::publish`](rei_core::routing::ProviderBoard::publish).
pub(crate) async fn publish<E: Engine>(db: &E, sql: &BoardSql, statuses: &[ProviderStatus]) -> Result<(), BoardError> {
    statuses.iter().try_for_each(check_status)?;
    for s in statuses {
        let until = match s.breaker {
            BreakerView::Open { until } => Some(until.as_millis()),
            _ => None,
        };
        let latency = s.latency_ewma_ms.map(|l| i64::try_from(l).unwrap_or(i64::MAX));
        let values = vec![
            s.provider.as_str().into(),
            s.breaker.as_str().into(),
            until.into(),
            s.score.map(|d| d.to_string()).into(),
            latency.into(),
            i64::from(s.successes).into(),
            i64::from(s.outcomes).into(),
            s.reported_by.as_str().into(),
            s.at.as_millis().into(),
        ];
        db.execute(sql.publish, values).await.map_err(unavailable)?;
    }
    Ok(())
}

fn status_of<R: SqlRow>(row: &R) -> Result<ProviderStatus, BoardError> {
    let f = Fields::new("provider_status", row);
    let bad = |e| BoardError::Unavailable(format!("corrupt provider_status row: {e}"));
    let breaker = match f.text("breaker").map_err(bad)?.as_str() {
        "closed" => BreakerView::Closed,
        "half_open" => BreakerView::HalfOpen,
        "open" => BreakerView::Open {
            until: Timestamp::from_millis(f.int_or_null("open_until_ms").map_err(bad)?.unwrap_or(0)),
        },
        other => return Err(BoardError::Unavailable(format!("corrupt provider_status row: breaker {other:?}"))),
    };
    let score = f.parsed_or_null("score", |t: &str| t.parse::<Decimal>()).map_err(bad)?;
    let latency = f.int_or_null("latency_ms").map_err(bad)?.map(|l| u64::try_from(l).unwrap_or(0));
    Ok(ProviderStatus {
        provider: f.parsed("provider", ProviderId::parse).map_err(bad)?,
        breaker,
        score,
        latency_ewma_ms: latency,
        successes: f.unsigned("successes").map_err(bad)?,
        outcomes: f.unsigned("outcomes").map_err(bad)?,
        reported_by: f.text("reported_by").map_err(bad)?,
        at: f.time("at_ms").map_err(bad)?,
    })
}

/// [`ProviderBoard::statuses`](rei_core::routing::ProviderBoard::statuses).
pub(crate) async fn statuses<E: Engine>(db: &E, sql: &BoardSql) -> Result<Vec<ProviderStatus>, BoardError> {
    let rows = db.fetch_all(sql.statuses, vec![ROWS_MAX.into()]).await.map_err(unavailable)?;
    rows.iter().map(status_of).collect()
}

/// [`ProviderBoard::set_model`](rei_core::routing::ProviderBoard::set_model).
pub(crate) async fn set_model<E: Engine>(
    db: &E,
    sql: &BoardSql,
    provider: &ProviderId,
    model: &str,
    enabled: bool,
    now: Timestamp,
) -> Result<(), BoardError> {
    check_model(model)?;
    let values = vec![provider.as_str().into(), model.into(), i64::from(enabled).into(), now.as_millis().into()];
    db.execute(sql.set_model, values).await.map_err(unavailable)?;
    Ok(())
}

/// [`ProviderBoard::models`](rei_core::routing::ProviderBoard::models).
pub(crate) async fn models<E: Engine>(db: &E, sql: &BoardSql) -> Result<Vec<ModelSwitch>, BoardError> {
    let rows = db.fetch_all(sql.models, vec![ROWS_MAX.into()]).await.map_err(unavailable)?;
    rows.iter()
        .map(|row| {
            let f = Fields::new("model_switches", row);
            let bad = |e| BoardError::Unavailable(format!("corrupt model_switches row: {e}"));
            Ok(ModelSwitch {
                provider: f.parsed("provider", ProviderId::parse).map_err(bad)?,
                model: f.text("model").map_err(bad)?,
                enabled: f.int("enabled").map_err(bad)? != 0,
                at: f.time("at_ms").map_err(bad)?,
            })
        })
        .collect()
}

/// Defines an engine's board `$store` over a `$pool`.
macro_rules! board_store {
    ($store:ident, $pool:ty, $sql:expr, $engine:literal) => {
        $crate::sql::stores::engine::pool_store!(
            $store,
            $pool,
            concat!(
                "A [`ProviderBoard`](rei_core::routing::ProviderBoard) over a ",
                $engine,
                " pool; the schema comes from [`super::migrate`]."
            )
        );

        #[async_trait::async_trait]
        impl rei_core::routing::ProviderBoard for $store {
            async fn publish(
                &self,
                statuses: &[rei_core::routing::ProviderStatus],
            ) -> Result<(), rei_core::routing::BoardError> {
                $crate::sql::stores::board::publish(&self.pool, &$sql, statuses).await
            }

            async fn statuses(&self) -> Result<Vec<rei_core::routing::ProviderStatus>, rei_core::routing::BoardError> {
                $crate::sql::stores::board::statuses(&self.pool, &$sql).await
            }

            async fn set_model(
                &self,
                provider: &rei_core::ids::ProviderId,
                model: &str,
                enabled: bool,
                now: rei_core::time::Timestamp,
            ) -> Result<(), rei_core::routing::BoardError> {
                $crate::sql::stores::board::set_model(&self.pool, &$sql, provider, model, enabled, now).await
            }

            async fn models(&self) -> Result<Vec<rei_core::routing::ModelSwitch>, rei_core::routing::BoardError> {
                $crate::sql::stores::board::models(&self.pool, &$sql).await
            }
        }
    };
}
pub(crate) use board_store;
