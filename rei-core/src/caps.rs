//! Spend caps: per-user hourly and daily caps over rolling windows, and per-provider daily budgets.
//!
//! The caps travel with a hold ([`crate::ledger::LedgerOp::Hold`]) so that the store checks them in the same
//! atomic step that places the hold: two concurrent holds cannot both slip under a cap.
//!
//! What counts is when each amount was held: a hold's first amount and every raise are [`Tranche`]s, each
//! counted in the windows it falls in, so a usage session that lives for hours is bound by every hourly
//! window it runs through. A captured hold counts what was captured, taken from its earliest tranches first
//! (the part given back is the latest, the reserve held ahead); a released or expired hold counts nothing.
//!
//! A user's windows are exact, down to the millisecond, computed from the user's own tranches. A provider's
//! budget, shared by every user, is kept per minute ([`BUCKET`]): its day is the current minute and the 1,439
//! before it, so that checking it reads at most 1,440 counters, however many holds the provider had.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::ids::{ProviderId, TxId};
use crate::ledger::{Hold, HoldState};
use crate::money::Money;
use crate::time::Timestamp;

/// The rolling window of the hourly cap.
pub const HOUR: Duration = Duration::from_secs(60 * 60);
/// The rolling window of the daily cap and of provider budgets.
pub const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// Caps that apply to one hold. `None` means no cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpendCaps {
    /// Most a user may spend in any rolling hour.
    pub user_hourly: Option<Money>,
    /// Most a user may spend in any rolling day.
    pub user_daily: Option<Money>,
    /// Most all users together may spend on the hold's provider in any rolling day.
    pub provider_daily: Option<Money>,
    /// Most holds the user may have active when this one is placed is one less than this: a limit on jobs
    /// running at once, checked with the hold (raises are not counted again).
    pub active_holds_max: Option<u32>,
}

impl SpendCaps {
    /// No caps at all.
    pub const NONE: SpendCaps =
        SpendCaps { user_hourly: None, user_daily: None, provider_daily: None, active_holds_max: None };

    /// `true` when no cap is set, so the store can skip computing usage.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.user_hourly.is_none()
            && self.user_daily.is_none()
            && self.provider_daily.is_none()
            && self.active_holds_max.is_none()
    }

    /// `true` when a user window (hourly or daily) is capped, so the store must load the user's tranches.
    #[must_use]
    pub fn has_user_windows(&self) -> bool {
        self.user_hourly.is_some() || self.user_daily.is_some()
    }

    /// Checks that spending `requested` more stays within every cap.
    ///
    /// # Errors
    /// [`CapExceeded`] naming the first cap (hourly, daily, provider) that `used + requested` would pass.
    pub fn check(&self, usage: &CapUsage, requested: Money) -> Result<(), CapExceeded> {
        let checks = [
            (CapScope::UserHourly, self.user_hourly, usage.user_hour),
            (CapScope::UserDaily, self.user_daily, usage.user_day),
            (CapScope::ProviderDaily, self.provider_daily, usage.provider_day),
        ];
        for (scope, cap, used) in checks {
            let Some(cap) = cap else { continue };
            let over = used.checked_add(requested).is_none_or(|total| total > cap);
            if over {
                return Err(CapExceeded { scope, cap, used, requested });
            }
        }
        Ok(())
    }
}

/// The caps of an engine: the users' hourly and daily caps, and a daily budget per provider. One value of it
/// configures every service that holds money, so a usage session is bound by the same caps as a generation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CapsConfig {
    /// Per-user caps (hourly, daily); their `provider_daily` is ignored: budgets are per provider.
    pub user: SpendCaps,
    /// Daily budgets by provider.
    pub provider_budgets: BTreeMap<ProviderId, Money>,
}

impl CapsConfig {
    /// The caps of a hold paying `provider`: the users' caps and that provider's budget.
    #[must_use]
    pub fn for_provider(&self, provider: Option<&ProviderId>) -> SpendCaps {
        SpendCaps { provider_daily: provider.and_then(|p| self.provider_budgets.get(p).copied()), ..self.user }
    }
}

/// What has been spent in each window, as the working set computes it with [`spend_since`] over the
/// user's tranches and from the provider's buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CapUsage {
    /// The user's spend in the last hour.
    pub user_hour: Money,
    /// The user's spend in the last day.
    pub user_day: Money,
    /// Everyone's spend on the provider in the last day.
    pub provider_day: Money,
}

/// Which cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CapScope {
    /// The user's hourly cap.
    UserHourly,
    /// The user's daily cap.
    UserDaily,
    /// The provider's daily budget.
    ProviderDaily,
}

/// A hold would pass a cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("spend cap {scope:?} of {cap} would be passed: {used} spent, {requested} requested")]
pub struct CapExceeded {
    /// Which cap.
    pub scope: CapScope,
    /// The cap.
    pub cap: Money,
    /// Spent within the window already.
    pub used: Money,
    /// Asked for now.
    pub requested: Money,
}

/// One amount held: a hold's first amount, or a raise of it, with when it was held. Its transaction names it
/// (a hold has one tranche per hold or raise transaction).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tranche {
    /// The hold or raise transaction.
    pub tx: TxId,
    /// When it was held.
    pub at: Timestamp,
    /// How much; positive.
    pub amount: Money,
}

/// What a hold counts as spent since `since` (exclusive), given its tranches held after `since` (any older ones
/// may be left out): while active, those tranches whole (the money is committed); once captured, what was
/// captured, taken from the earliest tranches first, of which the part that falls after `since`; nothing once
/// released or expired. Refunds do not lower spend: a cap limits what was consumed.
#[must_use]
pub fn spend_since(hold: &Hold, tranches: &[Tranche], since: Timestamp) -> Money {
    let after = tranches.iter().filter(|t| t.at > since).fold(0i128, |sum, t| sum + i128::from(t.amount.kopecks()));
    let spent = match hold.state {
        HoldState::Active => after,
        HoldState::Captured => {
            let before = i128::from(hold.amount.kopecks()) - after;
            (i128::from(hold.captured.kopecks()) - before).max(0)
        }
        HoldState::Released | HoldState::Expired => 0,
    };
    Money::from_kopecks(i64::try_from(spent).unwrap_or(i64::MAX))
}

/// How long one counter of a provider's budget spans.
pub const BUCKET: Duration = Duration::from_secs(60);

/// The start, in milliseconds, of the [`BUCKET`] that `at` falls in.
#[must_use]
pub fn bucket_of(at: Timestamp) -> i64 {
    let ms = at.as_millis();
    let width = i64::try_from(BUCKET.as_millis()).unwrap_or(60_000);
    ms - ms.rem_euclid(width)
}

/// The buckets a provider's day at `at` counts are those that start after this (the current one and the
/// 1,439 before it). Tranches held after it are all a store needs to load for any cap at `at`.
#[must_use]
pub fn day_floor(at: Timestamp) -> Timestamp {
    Timestamp::from_millis(bucket_of(at)).minus(DAY)
}

/// What a hold's end takes back from its provider's buckets: `released` (what went back to the user), taken
/// from the latest tranches first, as `(bucket, amount to take off)` pairs. A part older than the tranches
/// given falls in buckets no window counts any more, and is left out.
#[must_use]
pub fn released_by_bucket(tranches: &[Tranche], released: Money) -> Vec<(i64, Money)> {
    let mut rest = released;
    let mut sorted: Vec<&Tranche> = tranches.iter().collect();
    sorted.sort_by_key(|t| (t.at, t.tx));
    let mut out = Vec::new();
    for t in sorted.into_iter().rev() {
        if !rest.is_positive() {
            break;
        }
        let take = rest.min(t.amount);
        out.push((bucket_of(t.at), take));
        rest = rest.checked_sub(take).unwrap_or(Money::ZERO);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(k: i64) -> Money {
        Money::from_kopecks(k)
    }

    #[test]
    fn first_cap_passed_is_named() {
        // Proves the check names the cap that a request would pass and lets through one that fits exactly.
        let caps = SpendCaps { user_hourly: Some(m(1_000)), user_daily: Some(m(5_000)), ..SpendCaps::NONE };
        let usage = CapUsage { user_hour: m(900), user_day: m(4_950), ..CapUsage::default() };
        assert_eq!(caps.check(&usage, m(100)).map_err(|e| e.scope), Err(CapScope::UserDaily));
        assert_eq!(caps.check(&usage, m(50)), Ok(()));
        let usage = CapUsage { user_hour: m(950), ..usage };
        assert_eq!(caps.check(&usage, m(100)).map_err(|e| e.scope), Err(CapScope::UserHourly));
    }

    fn hold(state: HoldState, amount: i64, captured: i64) -> Hold {
        Hold {
            id: crate::ids::HoldId::from(1),
            user: crate::ids::UserId(1),
            provider: None,
            amount: m(amount),
            captured: m(captured),
            refunded: m(0),
            state,
            created_at: Timestamp::from_millis(0),
            expires_at: Timestamp::from_millis(1),
            budgeted: false,
        }
    }

    fn tranche(tx: u128, at_ms: i64, amount: i64) -> Tranche {
        Tranche { tx: TxId::from(tx), at: Timestamp::from_millis(at_ms), amount: m(amount) }
    }

    #[test]
    fn spend_counts_each_amount_when_it_was_held() {
        // Proves an active hold counts only its tranches after the window's start, a captured one counts its
        // capture from the earliest tranches on, and an ended one counts nothing.
        let ts = [tranche(1, 100, 30), tranche(2, 200, 50), tranche(3, 300, 20)];
        let at = |ms| Timestamp::from_millis(ms);
        assert_eq!(spend_since(&hold(HoldState::Active, 100, 0), &ts, at(150)), m(70));
        assert_eq!(spend_since(&hold(HoldState::Captured, 100, 60), &ts, at(150)), m(30), "60 = 30 old + 30 new");
        assert_eq!(spend_since(&hold(HoldState::Captured, 100, 20), &ts, at(150)), m(0), "all from the old 30");
        assert_eq!(spend_since(&hold(HoldState::Released, 100, 0), &ts, at(0)), m(0));
        // Tranches older than the window may be left out: the hold's amount says how much was held before.
        assert_eq!(spend_since(&hold(HoldState::Captured, 100, 60), &ts[1..], at(150)), m(30));
    }

    #[test]
    fn an_end_gives_back_the_latest_tranches_first() {
        // Proves what a hold's end releases is taken off its newest buckets first, and no more than released.
        let minute = 60_000;
        let ts = [tranche(1, 0, 30), tranche(2, minute, 50), tranche(3, 2 * minute + 5, 20)];
        assert_eq!(released_by_bucket(&ts, m(60)), vec![(2 * minute, m(20)), (minute, m(40))]);
        assert_eq!(released_by_bucket(&ts, m(0)), vec![]);
        assert_eq!(released_by_bucket(&ts, m(500)).iter().map(|(_, x)| x.kopecks()).sum::<i64>(), 100);
        assert_eq!(bucket_of(Timestamp::from_millis(2 * minute + 5)), 2 * minute);
        assert_eq!(bucket_of(Timestamp::from_millis(-1)), -minute, "before the epoch too");
    }

    proptest! {
        #[test]
        fn admitted_spend_never_exceeds_a_cap(cap in 0i64..10_000, used in 0i64..10_000, req in 1i64..10_000) {
            // Proves the check admits a request exactly when used + requested stays within the cap.
            let caps = SpendCaps { user_daily: Some(m(cap)), ..SpendCaps::NONE };
            let usage = CapUsage { user_day: m(used), ..CapUsage::default() };
            let ok = caps.check(&usage, m(req)).is_ok();
            prop_assert_eq!(ok, used + req <= cap);
        }

        #[test]
        fn no_caps_admit_everything(used in 0i64..i64::MAX / 2, req in 0i64..i64::MAX / 2) {
            // Proves an empty cap set never refuses.
            let usage = CapUsage { user_hour: m(used), user_day: m(used), provider_day: m(used) };
            prop_assert!(SpendCaps::NONE.check(&usage, m(req)).is_ok());
        }
    }
}
