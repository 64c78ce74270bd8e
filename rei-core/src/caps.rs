//! Spend caps: per-user hourly and daily caps over rolling windows, and per-provider daily budgets.
//!
//! The caps travel with a hold ([`crate::ledger::LedgerOp::Hold`]) so that the store checks them in the same
//! atomic step that places the hold: two concurrent holds cannot both slip under a cap.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::ids::ProviderId;
use crate::ledger::{Hold, HoldState};
use crate::money::Money;

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
}

impl SpendCaps {
    /// No caps at all.
    pub const NONE: SpendCaps = SpendCaps { user_hourly: None, user_daily: None, provider_daily: None };

    /// `true` when no cap is set, so the store can skip computing usage.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.user_hourly.is_none() && self.user_daily.is_none() && self.provider_daily.is_none()
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

/// What has been spent in each window, as the store computes it with [`hold_spend`] over the holds placed
/// within the window.
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

/// What a hold counts as spent: its whole amount while active (the money is committed), what was captured once
/// captured, nothing once released or expired. Refunds do not lower spend: a cap limits what was consumed.
#[must_use]
pub fn hold_spend(hold: &Hold) -> Money {
    match hold.state {
        HoldState::Active => hold.amount,
        HoldState::Captured => hold.captured,
        HoldState::Released | HoldState::Expired => Money::ZERO,
    }
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
        let caps = SpendCaps { user_hourly: Some(m(1_000)), user_daily: Some(m(5_000)), provider_daily: None };
        let usage = CapUsage { user_hour: m(900), user_day: m(4_950), provider_day: m(0) };
        assert_eq!(caps.check(&usage, m(100)).map_err(|e| e.scope), Err(CapScope::UserDaily));
        assert_eq!(caps.check(&usage, m(50)), Ok(()));
        let usage = CapUsage { user_hour: m(950), ..usage };
        assert_eq!(caps.check(&usage, m(100)).map_err(|e| e.scope), Err(CapScope::UserHourly));
    }

    proptest! {
        #[test]
        fn admitted_spend_never_exceeds_a_cap(cap in 0i64..10_000, used in 0i64..10_000, req in 1i64..10_000) {
            // Proves the check admits a request exactly when used + requested stays within the cap.
            let caps = SpendCaps { user_hourly: None, user_daily: Some(m(cap)), provider_daily: None };
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
