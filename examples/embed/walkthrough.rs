//! The embedding walkthrough the `embed` example prints and the test suite runs: the README's snippet, with
//! the replays and the maintenance pass shown.

use rei::Engine;
use rei::core::ids::{PaymentId, ProductId, UserId};
use rei::core::money::Money;
use rei::core::pricing::Tier;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Opens an engine on a SQLite file in a fresh temporary directory, runs [`run`] on it, and removes the
/// directory whatever happened.
pub(crate) async fn run_on_temp_sqlite() -> Result<Vec<String>, Error> {
    let dir = tempfile::Builder::new().prefix("rei-embed-").tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("rei.db").display());
    let engine = Engine::open(&url).await?;
    let mut lines = vec![format!("opened {url}, applied migrations {:?}", engine.migrations_applied())];
    let walked = run(&engine).await;
    engine.close().await;
    dir.close()?;
    lines.extend(walked?);
    lines.push("removed the temporary directory".to_owned());
    Ok(lines)
}

/// Tops up a fresh user (twice, the second a replay), quotes an image, confirms it, captures the hold (twice,
/// the second a replay), verifies the ledger and runs one maintenance pass; returns what it did, line by line.
/// Fails when any outcome differs from the money rules.
pub(crate) async fn run(engine: &Engine) -> Result<Vec<String>, Error> {
    let billing = engine.billing();
    let mut lines = Vec::new();
    // A user and a payment of their own, so that the walkthrough can run again on the same database.
    let run_id = engine.ids().next_u128();
    let user = UserId(i64::try_from(run_id % (1 << 62))?);
    let payment = PaymentId::parse(&format!("embed-{run_id:032x}"))?;

    // A payment the gateway confirmed: credited once, however often the notice arrives.
    let paid = billing.top_up(user, Money::parse("500.00")?, payment.clone()).await?;
    let again = billing.top_up(user, Money::parse("500.00")?, payment.clone()).await?;
    lines.push(format!("top-up {} for user {user} (replayed: {})", paid.receipt.amount, paid.replayed));
    lines.push(format!("the same payment again: replayed: {}", again.replayed));
    if paid.replayed || !again.replayed {
        return Err("a payment notice delivered twice must credit once".into());
    }

    // A price with its breakdown and expiry; the user confirms and the price is held.
    let quote = billing.quote(user, &ProductId::parse("image.nano-banana")?, 1, Tier::Basic).await?;
    lines.push(format!("quote {}: {} RUB, valid until {}", quote.id, quote.price, quote.expires_at));
    let held = billing.confirm(user, quote.id, None).await?;
    let balance = billing.balance(user).await?;
    lines.push(format!("confirmed: held {}, available {}", balance.held, balance.available));

    // The generation succeeded: charge the hold, once (the key derives from the hold).
    let charged = billing.capture_hold(held.hold, quote.price).await?;
    let recharged = billing.capture_hold(held.hold, quote.price).await?;
    lines.push(format!("captured {} (replayed: {})", charged.receipt.amount, charged.replayed));
    lines.push(format!("captured again: replayed: {}", recharged.replayed));
    if charged.replayed || !recharged.replayed {
        return Err("a capture repeated must charge once".into());
    }

    let balance = billing.balance(user).await?;
    let expected = Money::parse("500.00")?.checked_sub(quote.price).ok_or("overflow")?;
    lines.push(format!("balance: held {}, available {}", balance.held, balance.available));
    if (balance.available, balance.held) != (expected, Money::ZERO) {
        return Err(format!("balance {balance:?}, expected {expected} available and nothing held").into());
    }
    let report = billing.verify().await?;
    lines.push(format!("verify: {} transactions, clean: {}", report.transactions, report.is_clean()));
    if !report.is_clean() {
        return Err(format!("the ledger does not verify: {report:?}").into());
    }
    let pass = engine.run_maintenance().await?;
    lines.push(format!("maintenance: {} holds expired, {} quotes purged", pass.holds_expired, pass.quotes_purged));
    Ok(lines)
}
