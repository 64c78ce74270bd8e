//! Scoring, ranking and the price-checked failover plan.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use rust_decimal::Decimal;

use super::breaker::{Breaker, BreakerConfig, BreakerConfigError, BreakerState, Permit};
use super::catalogue::{Capability, Catalogue, Offer};
use super::stats::{ProviderStats, StatsConfig, StatsConfigError};
use crate::ids::ProviderId;
use crate::money::{Money, Ratio};
use crate::time::Timestamp;

/// How much each criterion counts in [`Weights::score`]. Invariant: each weight is in [0, 1] and not all are
/// zero, so a score is at most 4 and its arithmetic cannot overflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Weights {
    cost: Ratio,
    latency: Ratio,
    quality: Ratio,
    success: Ratio,
}

/// Why [`Weights`] are unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WeightsError {
    /// A weight outside [0, 1].
    #[error("weight {name} = {value} must be between 0 and 1")]
    OutOfRange {
        /// Which weight.
        name: &'static str,
        /// Its value.
        value: Ratio,
    },
    /// Every weight is zero, so every offer would score the same.
    #[error("at least one weight must be above zero")]
    AllZero,
}

impl Weights {
    /// Weights of cheapness, speed, the offer's quality and the provider's recent success rate.
    ///
    /// # Errors
    /// [`WeightsError::OutOfRange`] for a weight outside [0, 1], [`WeightsError::AllZero`] when all are zero.
    pub fn new(cost: Ratio, latency: Ratio, quality: Ratio, success: Ratio) -> Result<Weights, WeightsError> {
        let all = [("cost", cost), ("latency", latency), ("quality", quality), ("success", success)];
        for (name, value) in all {
            if value.value() < Decimal::ZERO || value.value() > Decimal::ONE {
                return Err(WeightsError::OutOfRange { name, value });
            }
        }
        if all.iter().all(|(_, w)| w.value().is_zero()) {
            return Err(WeightsError::AllZero);
        }
        Ok(Weights { cost, latency, quality, success })
    }

    /// The score of `offer` given its provider's `stats`, against the `spread` of the candidates it competes
    /// with. Higher is better; each term is in [0, 1]:
    ///
    /// ```text
    /// score = cost_w    * (cost_max - cost) / (cost_max - cost_min)        (1 when all costs are equal)
    ///       + latency_w * (lat_max - lat) / (lat_max - lat_min)            (1 when all equal, 1/2 if unmeasured)
    ///       + quality_w * quality / 100
    ///       + success_w * success_rate                                     (1 before the first outcome)
    /// ```
    ///
    /// An unmeasured latency scores 1/2 so that a new provider is neither preferred nor buried; an unknown
    /// success rate scores 1 because the breaker, not the score, protects against a bad newcomer. The
    /// arithmetic is `Decimal`: divisions round at 28 significant digits, the same way on every machine.
    #[must_use]
    pub fn score(&self, offer: &Offer, stats: &ProviderStats, spread: &Spread) -> Decimal {
        let cost = lower_is_better(offer.unit_cost().kopecks(), spread.cost);
        let latency = match stats.latency_ewma_ms() {
            Some(ms) => lower_is_better(Decimal::from(ms), spread.latency),
            None => Decimal::new(5, 1),
        };
        let quality = Decimal::from(offer.quality()) / Decimal::ONE_HUNDRED;
        let success = stats.success_rate().map_or(Decimal::ONE, Ratio::value);
        // Weights are at most 1 (checked in `new`) and every term at most 1: the sum cannot overflow.
        self.cost.value() * cost
            + self.latency.value() * latency
            + self.quality.value() * quality
            + self.success.value() * success
    }
}

/// `(max - v) / (max - min)` with `v` clamped into the range, so the result is in [0, 1]; 1 with no spread.
fn lower_is_better(v: Decimal, range: Option<(Decimal, Decimal)>) -> Decimal {
    match range {
        Some((lo, hi)) if hi > lo => (hi - v.clamp(lo, hi)) / (hi - lo),
        _ => Decimal::ONE,
    }
}

/// The smallest and largest unit cost and measured latency among the candidates, to normalise scores against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Spread {
    cost: Option<(Decimal, Decimal)>,
    latency: Option<(Decimal, Decimal)>,
}

impl Spread {
    /// The spread of `candidates`; providers without a latency EWMA do not widen the latency range.
    pub fn of<'a>(candidates: impl IntoIterator<Item = (&'a Offer, &'a ProviderStats)>) -> Spread {
        let widen =
            |r: Option<(Decimal, Decimal)>, v: Decimal| Some(r.map_or((v, v), |(lo, hi)| (lo.min(v), hi.max(v))));
        candidates.into_iter().fold(Spread::default(), |s, (offer, stats)| Spread {
            cost: widen(s.cost, offer.unit_cost().kopecks()),
            latency: match stats.latency_ewma_ms() {
                Some(ms) => widen(s.latency, Decimal::from(ms)),
                None => s.latency,
            },
        })
    }
}

/// An offer the router would try, with its score.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The offer.
    pub offer: Offer,
    /// Its [`Weights::score`] among the healthy offers for the capability.
    pub score: Decimal,
}

/// How a call to a provider ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It produced a result after `latency_ms`.
    Success {
        /// Time from submit to result.
        latency_ms: u64,
    },
    /// It failed (error, timeout, refused).
    Failure,
}

/// Everything a [`Router`] is configured with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouterConfig {
    /// Scoring weights.
    pub weights: Weights,
    /// Health statistics per provider.
    pub stats: StatsConfig,
    /// Circuit breaker per provider.
    pub breaker: BreakerConfig,
}

impl Default for RouterConfig {
    /// Cost counts most (0.4), then latency, quality and success (0.2 each); latency EWMA with alpha 0.3 and the
    /// success rate over the last 50 outcomes; a breaker that opens after 5 failures in a row, stays open 30 s,
    /// then lets one probe through and closes after 2 probe successes.
    fn default() -> RouterConfig {
        let r = Ratio::percent;
        RouterConfig {
            weights: Weights { cost: r(40), latency: r(20), quality: r(20), success: r(20) },
            stats: StatsConfig { alpha: r(30), window_len: 50 },
            breaker: BreakerConfig {
                trip: super::breaker::Trip::ConsecutiveFailures { failures_min: 5 },
                open_for: std::time::Duration::from_secs(30),
                probes_max: 1,
                successes_to_close: 2,
            },
        }
    }
}

/// Why a [`Router`] cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouterConfigError {
    /// Bad statistics settings.
    #[error(transparent)]
    Stats(#[from] StatsConfigError),
    /// Bad breaker settings.
    #[error(transparent)]
    Breaker(#[from] BreakerConfigError),
}

/// Why a provider operation of the [`Router`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouterError {
    /// The provider has no offer in the catalogue, so the router keeps no health for it.
    #[error("provider {provider} is not in the catalogue")]
    UnknownProvider {
        /// The provider asked about.
        provider: ProviderId,
    },
}

#[derive(Debug, Clone)]
struct Health {
    stats: ProviderStats,
    breaker: Breaker,
}

/// The catalogue with live health and a breaker per provider. A plain value with `&mut` methods; share it
/// behind a mutex.
#[derive(Debug, Clone)]
pub struct Router {
    catalogue: Catalogue,
    weights: Weights,
    health: BTreeMap<ProviderId, Health>,
}

impl Router {
    /// A router over `catalogue` with fresh stats and closed breakers for every provider in it.
    ///
    /// # Errors
    /// [`RouterConfigError`] naming the first invalid part of `config`.
    pub fn new(catalogue: Catalogue, config: RouterConfig) -> Result<Router, RouterConfigError> {
        let fresh = Health { stats: ProviderStats::new(config.stats)?, breaker: Breaker::new(config.breaker)? };
        let health = catalogue.providers().into_iter().map(|p| (p.clone(), fresh.clone())).collect();
        Ok(Router { catalogue, weights: config.weights, health })
    }

    /// The catalogue.
    #[must_use]
    pub fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    /// A provider's health statistics.
    #[must_use]
    pub fn stats(&self, provider: &ProviderId) -> Option<&ProviderStats> {
        self.health.get(provider).map(|h| &h.stats)
    }

    /// A provider's breaker.
    #[must_use]
    pub fn breaker(&self, provider: &ProviderId) -> Option<&Breaker> {
        self.health.get(provider).map(|h| &h.breaker)
    }

    /// The failover list for `capability` at `at`: offers whose breaker would admit a call, best score first,
    /// ties broken by provider id, then model name. A provider whose breaker is half-open and has a probe slot
    /// free comes first whatever its score: its stats still hold the failures that opened it, so on score alone
    /// it would never get the probe that can close it again. Ranking takes no probe slot; call
    /// [`Router::acquire`] before calling the provider.
    #[must_use]
    pub fn rank(&self, capability: Capability, at: Timestamp) -> Vec<Candidate> {
        let healthy: Vec<(&Offer, &ProviderStats, bool)> = self
            .catalogue
            .offers_for(capability)
            .filter_map(|o| self.health.get(o.provider()).map(|h| (o, h)))
            .filter(|(_, h)| h.breaker.is_available(at))
            .map(|(o, h)| (o, &h.stats, matches!(h.breaker.state_at(at), BreakerState::HalfOpen { .. })))
            .collect();
        let spread = Spread::of(healthy.iter().map(|(o, s, _)| (*o, *s)));
        let mut ranked: Vec<(bool, Candidate)> = healthy
            .into_iter()
            .map(|(o, s, probe)| (probe, Candidate { offer: o.clone(), score: self.weights.score(o, s, &spread) }))
            .collect();
        ranked.sort_by(|(pa, a), (pb, b)| {
            pb.cmp(pa)
                .then_with(|| b.score.cmp(&a.score))
                .then_with(|| a.offer.provider().cmp(b.offer.provider()))
                .then_with(|| a.offer.model().cmp(b.offer.model()))
        });
        ranked.into_iter().map(|(_, c)| c).collect()
    }

    /// Asks `provider`'s breaker for a call at `at`; a [`Permit::Probe`] MUST be followed by
    /// [`Router::record_outcome`].
    ///
    /// # Errors
    /// [`RouterError::UnknownProvider`] when the provider is not in the catalogue.
    pub fn acquire(&mut self, provider: &ProviderId, at: Timestamp) -> Result<Permit, RouterError> {
        Ok(self.health_mut(provider)?.breaker.allow(at))
    }

    /// Records how a call to `provider` ended, in its stats and its breaker together.
    ///
    /// # Errors
    /// [`RouterError::UnknownProvider`] when the provider is not in the catalogue.
    pub fn record_outcome(
        &mut self,
        provider: &ProviderId,
        outcome: Outcome,
        at: Timestamp,
    ) -> Result<(), RouterError> {
        let h = self.health_mut(provider)?;
        match outcome {
            Outcome::Success { latency_ms } => {
                h.stats.record_success(latency_ms, at);
                h.breaker.on_success(at);
            }
            Outcome::Failure => {
                h.stats.record_failure(at);
                h.breaker.on_failure(at);
            }
        }
        Ok(())
    }

    /// [`Router::rank`] followed by [`plan_failover`]: the failover list with each step's price checked against
    /// the money `held` for the job and the most the hold may be raised to.
    #[must_use]
    pub fn failover_plan(
        &self,
        capability: Capability,
        at: Timestamp,
        held: Money,
        can_raise_to: Option<Money>,
        price_of: impl Fn(&Offer) -> Option<Money>,
    ) -> FailoverPlan {
        plan_failover(self.rank(capability, at), held, can_raise_to, price_of)
    }

    fn health_mut(&mut self, provider: &ProviderId) -> Result<&mut Health, RouterError> {
        self.health.get_mut(provider).ok_or_else(|| RouterError::UnknownProvider { provider: provider.clone() })
    }
}

/// Whether the money held covers a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cover {
    /// The price is at most what is held.
    Covered,
    /// Dearer than the hold, but the hold may be raised to `to` (the price) first.
    NeedsRaise {
        /// The amount to raise the hold to.
        to: Money,
    },
}

/// One provider to try, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanStep {
    /// The ranked offer.
    pub candidate: Candidate,
    /// What the user pays if this offer runs the job.
    pub price: Money,
    /// How that price is covered.
    pub cover: Cover,
}

/// Why a ranked offer is left out of the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// `price_of` has no price for it (not sold, or the price overflowed).
    Unpriced,
    /// Dearer than the hold, and the hold cannot be raised that far.
    TooDear {
        /// Its price.
        price: Money,
    },
}

/// A ranked offer left out of the plan, kept so the caller can log why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The ranked offer.
    pub candidate: Candidate,
    /// Why it is left out.
    pub reason: SkipReason,
}

/// The price-checked failover list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FailoverPlan {
    /// Offers to try, best first.
    pub steps: Vec<PlanStep>,
    /// Offers left out, in rank order.
    pub skipped: Vec<Skipped>,
}

/// Checks each ranked candidate's price (from `price_of`, which the caller builds from pricing and the job's
/// units) against `held`, keeping rank order.
///
/// A step priced at most `held` is [`Cover::Covered`]. **A fallback dearer than the hold is skipped unless the
/// hold can be raised**: it becomes [`Cover::NeedsRaise`] only when `can_raise_to` is set and the price is at
/// most that, because the user confirmed a price and must never be charged past what they allowed.
pub fn plan_failover(
    ranked: Vec<Candidate>,
    held: Money,
    can_raise_to: Option<Money>,
    price_of: impl Fn(&Offer) -> Option<Money>,
) -> FailoverPlan {
    let mut plan = FailoverPlan::default();
    for candidate in ranked {
        let Some(price) = price_of(&candidate.offer) else {
            plan.skipped.push(Skipped { candidate, reason: SkipReason::Unpriced });
            continue;
        };
        let cover = match (price.cmp(&held), can_raise_to) {
            (Ordering::Less | Ordering::Equal, _) => Cover::Covered,
            (Ordering::Greater, Some(cap)) if price <= cap => Cover::NeedsRaise { to: price },
            (Ordering::Greater, _) => {
                plan.skipped.push(Skipped { candidate, reason: SkipReason::TooDear { price } });
                continue;
            }
        };
        plan.steps.push(PlanStep { candidate, price, cover });
    }
    plan
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::money::UnitPrice;
    use crate::routing::Trip;

    fn pid(s: &str) -> ProviderId {
        ProviderId::parse(s).expect("test id")
    }

    fn offer(provider: &str, model: &str, cost: &str, quality: u8) -> Offer {
        let price = UnitPrice::parse(cost).expect("test price");
        Offer::new(pid(provider), model, Capability::TextToImage, price, quality).expect("test offer")
    }

    fn router(offers: Vec<Offer>, weights: Weights) -> Router {
        let config = RouterConfig {
            weights,
            stats: StatsConfig { alpha: Ratio::percent(50), window_len: 10 },
            breaker: BreakerConfig {
                trip: Trip::ConsecutiveFailures { failures_min: 2 },
                open_for: Duration::from_secs(30),
                probes_max: 1,
                successes_to_close: 1,
            },
        };
        Router::new(Catalogue::new(offers).expect("test catalogue"), config).expect("test config")
    }

    fn only(cost: i64, latency: i64, quality: i64, success: i64) -> Weights {
        let r = Ratio::percent;
        Weights::new(r(cost), r(latency), r(quality), r(success)).expect("test weights")
    }

    fn order(ranked: &[Candidate]) -> Vec<(String, String)> {
        ranked.iter().map(|c| (c.offer.provider().to_string(), c.offer.model().to_owned())).collect()
    }

    const T0: Timestamp = Timestamp::from_millis(1_000_000);

    #[test]
    fn scoring_orders_by_weighted_criteria() {
        // Proves cost, quality and latency each move an offer up when they weigh, with the documented formula.
        let offers = vec![offer("a", "cheap", "1", 20), offer("b", "good", "3", 90), offer("c", "mid", "2", 50)];
        let by_cost = router(offers.clone(), only(100, 0, 0, 0)).rank(Capability::TextToImage, T0);
        assert_eq!(order(&by_cost)[0].1, "cheap");
        let scores: Vec<Decimal> = by_cost.iter().map(|c| c.score).collect();
        assert_eq!(scores, [Decimal::ONE, Decimal::new(5, 1), Decimal::ZERO]);
        let by_quality = router(offers.clone(), only(0, 0, 100, 0)).rank(Capability::TextToImage, T0);
        assert_eq!(order(&by_quality).iter().map(|(_, m)| m.as_str()).collect::<Vec<_>>(), ["good", "mid", "cheap"]);
        let mut r = router(offers, only(0, 100, 0, 0));
        r.record_outcome(&pid("a"), Outcome::Success { latency_ms: 900 }, T0).expect("known");
        r.record_outcome(&pid("b"), Outcome::Success { latency_ms: 100 }, T0).expect("known");
        let by_latency = r.rank(Capability::TextToImage, T0);
        // b is fastest (1), c is unmeasured (1/2), a is slowest (0).
        assert_eq!(order(&by_latency).iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(), ["b", "c", "a"]);
    }

    #[test]
    fn ties_break_by_provider_then_model() {
        // Proves equal scores come out in provider id order, then model order, whatever the catalogue order.
        let offers = vec![offer("b", "m", "1", 50), offer("a", "z", "1", 50), offer("a", "k", "1", 50)];
        let ranked = router(offers, only(50, 50, 50, 50)).rank(Capability::TextToImage, T0);
        let want = [("a", "k"), ("a", "z"), ("b", "m")].map(|(p, m)| (p.to_owned(), m.to_owned()));
        assert_eq!(order(&ranked), want);
    }

    #[test]
    fn open_providers_are_skipped_until_their_time_is_up() {
        // Proves a tripped provider leaves the ranking, returns half-open after open_for, and ranking takes no probe.
        let mut r = router(vec![offer("a", "m", "1", 90), offer("b", "m", "2", 10)], only(0, 0, 100, 0));
        for _ in 0..2 {
            r.record_outcome(&pid("a"), Outcome::Failure, T0).expect("known");
        }
        assert_eq!(order(&r.rank(Capability::TextToImage, T0)), [("b".to_owned(), "m".to_owned())]);
        assert_eq!(r.acquire(&pid("a"), T0), Ok(Permit::Refused));
        let later = T0.plus(Duration::from_secs(30));
        assert_eq!(r.rank(Capability::TextToImage, later).len(), 2);
        assert_eq!(r.rank(Capability::TextToImage, later).len(), 2, "ranking twice takes no probe slot");
        assert_eq!(r.acquire(&pid("a"), later), Ok(Permit::Probe));
        assert_eq!(r.rank(Capability::TextToImage, later).len(), 1, "the only probe slot is taken");
        assert_eq!(r.rank(Capability::ImageEdit, later), []);
        let ghost = pid("ghost");
        assert_eq!(r.acquire(&ghost, later), Err(RouterError::UnknownProvider { provider: ghost.clone() }));
    }

    #[test]
    fn a_half_open_provider_ranks_first_for_its_probe_then_by_score() {
        // Proves a recovered provider gets the probe that can close its breaker although its stats (the failures
        // that opened it) score it below the other, and ranks by score again once the probe slot is taken.
        let mut r = router(vec![offer("a", "m", "1", 90), offer("b", "m", "1", 50)], only(0, 0, 0, 100));
        for _ in 0..2 {
            r.record_outcome(&pid("a"), Outcome::Failure, T0).expect("known");
        }
        r.record_outcome(&pid("b"), Outcome::Success { latency_ms: 10 }, T0).expect("known");
        let later = T0.plus(Duration::from_secs(30));
        assert_eq!(order(&r.rank(Capability::TextToImage, later))[0].0, "a", "the half-open one is probed first");
        assert_eq!(r.acquire(&pid("a"), later), Ok(Permit::Probe));
        assert_eq!(order(&r.rank(Capability::TextToImage, later)), [("b".to_owned(), "m".to_owned())]);
        r.record_outcome(&pid("a"), Outcome::Success { latency_ms: 10 }, later).expect("known");
        assert_eq!(r.breaker(&pid("a")).map(Breaker::state), Some(BreakerState::Closed), "the probe closed it");
        assert_eq!(r.rank(Capability::TextToImage, later).len(), 2);
    }

    #[test]
    fn failover_marks_covered_raise_and_skips_dear_fallbacks() {
        // Proves each step is covered, needs a raise within the allowed cap, or is skipped as too dear or unpriced.
        let offers = vec![
            offer("a", "m", "1", 90),
            offer("b", "m", "1", 80),
            offer("c", "m", "1", 70),
            offer("d", "m", "1", 60),
        ];
        let r = router(offers, only(0, 0, 100, 0));
        let prices = |o: &Offer| match o.provider().as_str() {
            "a" => Some(Money::from_kopecks(10_000)),
            "b" => Some(Money::from_kopecks(12_000)),
            "c" => Some(Money::from_kopecks(15_000)),
            _ => None,
        };
        let held = Money::from_kopecks(10_000);
        let plan = r.failover_plan(Capability::TextToImage, T0, held, Some(Money::from_kopecks(13_000)), prices);
        let covers: Vec<Cover> = plan.steps.iter().map(|s| s.cover).collect();
        assert_eq!(covers, [Cover::Covered, Cover::NeedsRaise { to: Money::from_kopecks(12_000) }]);
        let reasons: Vec<SkipReason> = plan.skipped.iter().map(|s| s.reason).collect();
        assert_eq!(reasons, [SkipReason::TooDear { price: Money::from_kopecks(15_000) }, SkipReason::Unpriced]);
        let no_raise = r.failover_plan(Capability::TextToImage, T0, held, None, prices);
        assert_eq!(no_raise.steps.len(), 1);
        assert_eq!(no_raise.skipped.len(), 3);
    }

    #[test]
    fn bad_weights_are_refused() {
        // Proves weights outside [0, 1] or all zero cannot be made, so scores stay bounded.
        let (zero, one) = (Ratio::ZERO, Ratio::ONE);
        assert_eq!(Weights::new(zero, zero, zero, zero), Err(WeightsError::AllZero));
        let over = Ratio::percent(101);
        let err = WeightsError::OutOfRange { name: "quality", value: over };
        assert_eq!(Weights::new(one, one, over, one), Err(err));
        assert!(Weights::new(zero, zero, Ratio::percent(-1), one).is_err());
    }
}
