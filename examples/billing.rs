//! Embedding REI's billing engine in a few lines, on the in-memory adapters: top up a wallet, quote an image,
//! confirm (hold), capture on success, read the balance, and verify the ledger.
//!
//! Run: `cargo run --example billing --features testing`
#![expect(clippy::print_stdout, reason = "an example shows what it does")]

use std::sync::Arc;

use rei::adapters::system::{SystemClock, TimeOrderedIds};
use rei::core::billing::{BillingConfig, BillingService};
use rei::core::ids::{IdempotencyKey, PaymentId, ProductId, UserId};
use rei::core::money::Money;
use rei::core::pricing::{Pricer, PricingConfig, Tier};
use rei::core::testing::billing::MemoryQuotes;
use rei::core::testing::ledger::MemoryLedger;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let billing = BillingService::new(
        Arc::new(MemoryLedger::new()),
        Arc::new(MemoryQuotes::new()),
        Arc::new(SystemClock::new()),
        Arc::new(TimeOrderedIds::new()),
        Pricer::new(PricingConfig::example()),
        BillingConfig::default(),
    );
    let user = UserId(42);

    // A payment notification, confirmed with the gateway: credit it (the payment id makes it idempotent).
    billing.top_up(user, Money::parse("500.00")?, PaymentId::parse("2f1e9a3c-000f-5000-9000-1b2c3d4e5f60")?).await?;

    // Show a price, with its breakdown and expiry.
    let quote = billing.quote(user, &ProductId::parse("image.nano-banana")?, 1, Tier::Basic).await?;
    println!("quote {}: {} RUB for 1 image, valid until {}", quote.id, quote.price, quote.expires_at);
    let b = &quote.breakdown;
    println!(
        "  in kopecks: cost {} + margin {} + time {} - tier {} + rounding {}",
        b.cost_total, b.margin_added, b.time_adjustment, b.tier_discount_amount, b.rounding_adjustment
    );

    // The user confirms: the price is held.
    let confirmation = billing.confirm(user, quote.id, None).await?;
    let balance = billing.balance(user).await?;
    println!("confirmed: held {}, available {}", balance.held, balance.available);

    // The job succeeded: capture exactly once (the key makes a retry harmless).
    let key = IdempotencyKey::derived("capture", confirmation.hold)?;
    let first = billing.capture(confirmation.hold, quote.price, key.clone()).await?;
    let again = billing.capture(confirmation.hold, quote.price, key).await?;
    println!(
        "captured {} (replayed: {}), then again (replayed: {})",
        first.receipt.amount, first.replayed, again.replayed
    );

    let balance = billing.balance(user).await?;
    let report = billing.verify().await?;
    println!("captured: held {}, available {}", balance.held, balance.available);
    println!("verify: {} transactions, clean = {}", report.transactions, report.is_clean());
    if !report.is_clean() {
        return Err("ledger drift".into());
    }
    Ok(())
}
