//! The money audit after a load: for every simulated user, what the user lived (the top-ups acknowledged, the
//! jobs confirmed, the results seen) against what the stores say (the ledger's transactions, the jobs, the
//! balance), and `verify` over the whole ledger.
//!
//! Money errors, each named in [`Audit::problems`]:
//! - a top-up acknowledged (its notice answered 200) but not credited, or credited other than once;
//! - a confirmed generation with no job, or a Confirm (tapped once or twice) that made more than one job;
//! - a succeeded job not captured exactly once at its price; an ended job without success that was captured;
//! - a hold left at the end (every job ended, so nothing may stay held);
//! - a balance other than top-ups − captures + grants;
//! - `verify` not clean.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, Result};
use rei::Engine;
use rei::core::ids::{HoldId, UserId};
use rei::core::jobs::{Job, JobState};
use rei::core::ledger::{Account, OpKind, Transaction};

use super::user::{End, Record};

/// What the audit found.
#[derive(Debug, Default)]
pub(crate) struct Audit {
    pub(crate) users: u64,
    pub(crate) jobs: u64,
    pub(crate) succeeded: u64,
    pub(crate) failed: u64,
    pub(crate) cancelled: u64,
    pub(crate) jobs_not_ended: u64,
    pub(crate) topups: u64,
    pub(crate) deliveries_missing: u64,
    pub(crate) deliveries_doubled: u64,
    pub(crate) verify_clean: bool,
    /// REI's own time from the Confirm's answer to the result in the chat, minus the provider's time (from the
    /// first attempt's dispatch to the last one's end), sorted, microseconds.
    pub(crate) own_us: Vec<u64>,
    /// Every money error, one line each.
    pub(crate) problems: Vec<String>,
}

impl Audit {
    pub(crate) fn money_errors(&self) -> u64 {
        self.problems.len() as u64 + u64::from(!self.verify_clean)
    }
}

/// The change a transaction made to the user's money (available plus held).
fn effect(tx: &Transaction, user: UserId) -> i64 {
    tx.postings
        .iter()
        .filter(|p| matches!(p.account, Account::Available(u) | Account::Held(u) if u == user))
        .map(|p| p.amount.kopecks())
        .sum()
}

async fn transactions(engine: &Engine, user: UserId) -> Result<Vec<Transaction>> {
    let mut all = Vec::new();
    let mut before = None;
    loop {
        let page = engine.ledger().history(user, before, 500).await.context("the ledger's history")?;
        let Some(last) = page.last() else { break };
        before = Some(last.position);
        let full = page.len() < 500;
        all.extend(page.into_iter().map(|e| e.transaction));
        if full {
            break;
        }
    }
    Ok(all)
}

async fn jobs(engine: &Engine, user: UserId) -> Result<Vec<Job>> {
    let mut all = Vec::new();
    let mut before = None;
    loop {
        let page = engine.jobs().list_for_user(user, before, 500).await.context("the user's jobs")?;
        let Some(last) = page.last() else { break };
        before = Some(last.id);
        let full = page.len() < 500;
        all.extend(page);
        if full {
            break;
        }
    }
    // Oldest first, in the order the user confirmed them.
    all.sort_by_key(|j| (j.created_at, j.id));
    Ok(all)
}

/// Audits every user of `records` in the database at `database_url`.
pub(crate) async fn audit(database_url: &str, records: &[Record]) -> Result<Audit> {
    let engine = Engine::builder().database_url(database_url).open().await.context("failed to open the database")?;
    let mut a = Audit::default();
    for record in records {
        let user = UserId(record.id);
        a.users += 1;
        let txs = transactions(&engine, user).await?;
        let jobs = jobs(&engine, user).await?;
        let mut problem = |what: String| a.problems.push(format!("user {}: {what}", record.id));

        // Top-ups: what was acknowledged is what was credited.
        let credited: Vec<i64> = txs.iter().filter(|t| t.kind == OpKind::TopUp).map(|t| effect(t, user)).collect();
        let acknowledged: i64 = record.topped_up.iter().sum();
        if credited.iter().sum::<i64>() != acknowledged || credited.len() != record.topped_up.len() {
            problem(format!(
                "{} top-ups acknowledged ({acknowledged} kopecks), {} credited ({} kopecks)",
                record.topped_up.len(),
                credited.len(),
                credited.iter().sum::<i64>()
            ));
        }

        // Jobs: one per confirmed generation, each ended, charged once on success and never otherwise.
        if jobs.len() != record.generations.len() {
            problem(format!("{} generations confirmed, {} jobs made", record.generations.len(), jobs.len()));
        }
        let mut captures: HashMap<HoldId, Vec<i64>> = HashMap::new();
        for tx in txs.iter().filter(|t| t.kind == OpKind::Capture) {
            if let Some(hold) = tx.hold {
                captures.entry(hold).or_default().push(-effect(tx, user));
            }
        }
        let mut captured_total = 0;
        let mut succeeded = 0u64;
        for job in &jobs {
            a.jobs += 1;
            let charged = captures.get(&job.hold).cloned().unwrap_or_default();
            match job.state {
                JobState::Succeeded => {
                    a.succeeded += 1;
                    succeeded += 1;
                    if charged != [job.price.kopecks()] {
                        problem(format!("job {} succeeded at {} but was charged {charged:?}", job.id, job.price));
                    }
                }
                JobState::Failed | JobState::Cancelled => {
                    if job.state == JobState::Failed {
                        a.failed += 1;
                    } else {
                        a.cancelled += 1;
                    }
                    if !charged.is_empty() {
                        problem(format!("job {} ended {:?} but was charged {charged:?}", job.id, job.state));
                    }
                }
                other => {
                    a.jobs_not_ended += 1;
                    problem(format!("job {} did not end: {other:?}", job.id));
                }
            }
            captured_total += charged.iter().sum::<i64>();
        }

        // The balance: top-ups − captures + grants, nothing left held.
        let grants: i64 = txs.iter().filter(|t| t.kind == OpKind::Adjust).map(|t| effect(t, user)).sum();
        let refunds: i64 = txs
            .iter()
            .filter(|t| matches!(t.kind, OpKind::Refund | OpKind::RefundToCard))
            .map(|t| effect(t, user))
            .sum();
        let balance = engine.billing().balance(user).await.context("a balance")?;
        let expected = acknowledged - captured_total + grants + refunds;
        let have = balance.available.kopecks() + balance.held.kopecks();
        if have != expected {
            problem(format!(
                "balance {have} kopecks, expected {expected} (top-ups {acknowledged} − captures {captured_total} + grants \
                 {grants} + refunds {refunds})"
            ));
        }
        if balance.held.is_positive() {
            problem(format!("{} still held with every job ended", balance.held));
        }
        a.topups += record.topped_up.len() as u64;

        // Deliveries: each success reached the chat once.
        let delivered = record.generations.iter().filter(|g| matches!(g.ended, Some((_, End::Delivered)))).count()
            as u64
            + record.stray_ends.iter().filter(|e| **e == End::Delivered).count() as u64;
        a.deliveries_missing += succeeded.saturating_sub(delivered);
        a.deliveries_doubled += delivered.saturating_sub(succeeded);

        // REI's own time per delivered generation: the wait minus the provider's attempts.
        for (generation, job) in record.generations.iter().zip(&jobs) {
            let Some((at, End::Delivered)) = generation.ended else { continue };
            if job.state != JobState::Succeeded {
                continue;
            }
            // The provider's time runs from the first attempt's dispatch to the last one's end: a failed attempt's
            // retry wait is the provider's doing too.
            let attempts = engine.attempts().for_job(job.id).await.context("the job's attempts")?;
            let first = attempts.iter().map(|r| r.started_at).min();
            let last = attempts.iter().filter_map(|r| r.ended_at).max();
            let provider = match (first, last) {
                (Some(first), Some(last)) => last.since(first),
                _ => Duration::ZERO,
            };
            let wait = at.saturating_duration_since(generation.answered);
            a.own_us.push(u64::try_from(wait.saturating_sub(provider).as_micros()).unwrap_or(u64::MAX));
        }
    }
    a.own_us.sort_unstable();
    let report = engine.billing().verify().await.context("verify")?;
    a.verify_clean = report.is_clean();
    if !a.verify_clean {
        tracing::error!(?report, "the ledger does not verify after the load");
    }
    engine.close().await;
    Ok(a)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use rei::core::ids::PaymentId;
    use rei::core::money::Money;

    use super::*;
    use crate::load::user::Generation;

    async fn ledger_with_one_top_up(dir: &std::path::Path) -> String {
        let url = format!("sqlite://{}", dir.join("audit.db").display());
        let engine = Engine::builder().database_url(&url).open().await.expect("engine");
        let payment = PaymentId::parse("audit-1").expect("id");
        engine.billing().top_up(UserId(7), Money::from_kopecks(50_000), payment).await.expect("top-up");
        engine.close().await;
        url
    }

    #[tokio::test]
    async fn what_the_user_lived_and_the_ledger_agree_or_the_audit_says_where_not() {
        // Proves the audit passes a user whose one acknowledged top-up is the ledger's one credit, and names a
        // top-up acknowledged but not credited and a confirmed generation with no job.
        let dir = tempfile::tempdir().expect("dir");
        let url = ledger_with_one_top_up(dir.path()).await;
        let honest = Record { id: 7, topped_up: vec![50_000], ..Record::default() };
        let a = audit(&url, std::slice::from_ref(&honest)).await.expect("audit");
        assert_eq!((a.money_errors(), a.topups, a.jobs, a.verify_clean), (0, 1, 0, true), "{:?}", a.problems);

        let lost = Record {
            id: 7,
            topped_up: vec![50_000, 50_000],
            generations: vec![Generation { answered: Instant::now(), ended: None }],
            ..Record::default()
        };
        let a = audit(&url, &[lost]).await.expect("audit");
        assert_eq!(a.money_errors(), 3, "{:?}", a.problems);
        assert!(a.problems[0].contains("2 top-ups acknowledged (100000 kopecks), 1 credited"), "{:?}", a.problems);
        assert!(a.problems[1].contains("1 generations confirmed, 0 jobs made"), "{:?}", a.problems);
        assert!(a.problems[2].contains("balance 50000 kopecks, expected 100000"), "{:?}", a.problems);
    }
}
