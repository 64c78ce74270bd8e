//! The `rei` binary: thin wiring over the library. Subcommands arrive with the parts they run; today it
//! prices products with the built-in example price list.
#![expect(clippy::print_stdout, reason = "a command-line tool prints its results")]

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use rei_core::ids::{ProductId, QuoteId};
use rei_core::pricing::{Pricer, PricingConfig, Tier};
use rei_core::time::{Clock, Timestamp};

#[derive(Parser)]
#[command(name = "rei", version, about = "Billing and routing engine for AI-generation chat bots")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Prices a product with the example price list and prints the breakdown.
    Price {
        /// Product id, e.g. image.nano-banana or video.kling-2.6.5s.
        #[arg(long)]
        product: String,
        /// How many units.
        #[arg(long, default_value_t = 1)]
        units: u64,
        /// The buyer's tier.
        #[arg(long, value_enum, default_value_t = TierArg::Basic)]
        tier: TierArg,
        /// When to price, RFC 3339 (default: now).
        #[arg(long)]
        at: Option<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum TierArg {
    Basic,
    Pro,
    Enterprise,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Price { product, units, tier, at } => price(&product, units, tier, at.as_deref()),
    }
}

fn price(product: &str, units: u64, tier: TierArg, at: Option<&str>) -> Result<()> {
    let product = ProductId::parse(product).context("failed to read --product")?;
    let tier = match tier {
        TierArg::Basic => Tier::Basic,
        TierArg::Pro => Tier::Pro,
        TierArg::Enterprise => Tier::Enterprise,
    };
    let at = match at {
        Some(text) => {
            let t: jiff::Timestamp = text.parse().context("failed to read --at as RFC 3339")?;
            Timestamp::from_millis(t.as_millisecond())
        }
        None => rei_adapters::system::SystemClock::new().now(),
    };
    let pricer = Pricer::new(PricingConfig::example());
    let quote = pricer.quote(&product, units, tier, at, QuoteId::from(0)).context("failed to price")?;
    let b = &quote.breakdown;
    println!("product      {}", quote.product);
    println!("units        {units} x {}", b.unit);
    println!("price        {} RUB", quote.price);
    println!("cost         {} kop", b.cost_total.normalize());
    println!("margin       +{} kop ({})", b.margin_added.normalize(), b.target_margin);
    println!("time         {:+} kop (x{})", b.time_adjustment.normalize(), b.time_multiplier);
    println!("tier         -{} kop ({})", b.tier_discount_amount.normalize(), b.tier_discount);
    println!("rounding     {:+} kop", b.rounding_adjustment.normalize());
    if let Some(alert) = &quote.margin_alert {
        println!("MARGIN ALERT effective margin {} below floor {}", alert.effective_margin, alert.floor);
    }
    Ok(())
}
