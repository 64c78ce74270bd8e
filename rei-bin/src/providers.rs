//! The providers a worker calls and the catalogue the router ranks them in, from the command line (or the
//! environment, under the names the original bot used): Gemini for images, Kling for video. Every base URL,
//! key and timeout is configuration; the costs are the shipped defaults of each adapter.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rei::adapters::gemini::{GeminiConfig, GeminiProvider};
use rei::adapters::kling::{DEFAULT_MODELS, KlingConfig, KlingProvider};
use rei::core::generation::GenerationProvider;
use rei::core::money::{Money, UnitPrice};
use rei::core::routing::{Capability, Catalogue, Offer};
use rei::core::time::Clock;

/// How to reach the providers.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct ProviderArgs {
    /// Gemini API key for the Nano Banana image models (also read from GEMINI_API_KEY); without it no image
    /// provider runs.
    #[arg(long, env = "NANO_BANANA_API_KEY", hide_env_values = true)]
    pub(crate) gemini_api_key: Option<String>,
    /// Gemini's base URL: Google's, or a proxy or reseller that mirrors the native API.
    #[arg(long, env = "GEMINI_BASE_URL", default_value = rei::adapters::gemini::DEFAULT_BASE_URL)]
    pub(crate) gemini_base_url: String,
    /// A second Gemini account (another key, another project or a reseller), ranked below the first: the router
    /// fails over to it when the first one's breaker opens. Its provider id is `gemini-reserve`.
    #[arg(long, env = "GEMINI_RESERVE_API_KEY", hide_env_values = true)]
    pub(crate) gemini_reserve_api_key: Option<String>,
    /// The reserve account's base URL.
    #[arg(long, env = "GEMINI_RESERVE_BASE_URL", default_value = rei::adapters::gemini::DEFAULT_BASE_URL)]
    pub(crate) gemini_reserve_base_url: String,
    /// Kling access key (video); with the secret key, enables Kling.
    #[arg(long, env = "KLING_ACCESS_KEY", hide_env_values = true)]
    pub(crate) kling_access_key: Option<String>,
    /// Kling secret key.
    #[arg(long, env = "KLING_SECRET_KEY", hide_env_values = true)]
    pub(crate) kling_secret_key: Option<String>,
    /// Kling's base URL.
    #[arg(long, env = "KLING_BASE_URL", default_value = rei::adapters::kling::DEFAULT_BASE_URL)]
    pub(crate) kling_base_url: String,
    /// Where Kling posts task updates (optional; the worker polls either way).
    #[arg(long, env = "KLING_CALLBACK_URL")]
    pub(crate) kling_callback_url: Option<String>,
    /// Kopecks per Kling unit (what a unit of a resource pack cost), for the cost side of margins.
    #[arg(long, env = "KLING_UNIT_COST_KOPECKS", default_value_t = 1_150)]
    pub(crate) kling_unit_cost_kopecks: i64,
    /// The longest one provider call may take, in seconds.
    #[arg(long, env = "REI_PROVIDER_TIMEOUT_SECONDS", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub(crate) provider_timeout_seconds: u64,
}

/// Our cost per second of Kling video by model, in kopecks (a 5 s std video of Kling 2.6 costs about 29 ₽), and
/// the quality score the router weighs.
const KLING_COSTS: [(&str, i64, u8); 3] = [("kling-v3", 900, 95), ("kling-v2-6", 580, 85), ("kling-v1-5", 400, 70)];
/// The Gemini image models offered, with the quality score the router weighs.
pub(crate) const GEMINI_MODELS: [(&str, u8); 2] = [("gemini-2.5-flash-image", 75), ("gemini-3-pro-image-preview", 95)];

/// The provider id of the reserve Gemini account.
pub(crate) const RESERVE: &str = "gemini-reserve";

/// Every model the shipped providers offer, by provider id (with Gemini's and Kling's default ids), for the
/// console's switches.
pub(crate) fn known_models() -> Vec<(rei::core::ids::ProviderId, String)> {
    let gemini = GeminiConfig::new("-").provider_id;
    let kling = KlingConfig::new("-", "-", UnitPrice::from_money(Money::ZERO)).provider_id;
    let mut models: Vec<_> = GEMINI_MODELS.iter().map(|(m, _)| (gemini.clone(), (*m).to_owned())).collect();
    if let Ok(reserve) = rei::core::ids::ProviderId::parse(RESERVE) {
        models.extend(GEMINI_MODELS.iter().map(|(m, _)| (reserve.clone(), (*m).to_owned())));
    }
    models.extend(DEFAULT_MODELS.iter().map(|m| (kling.clone(), m.model_name.to_owned())));
    models
}

/// The providers and their catalogue. At least one provider must be configured.
///
/// # Errors
/// No provider configured, a half-configured Kling, or an adapter that cannot be built.
pub(crate) fn build(
    args: &ProviderArgs,
    clock: Arc<dyn Clock>,
) -> Result<(Vec<Arc<dyn GenerationProvider>>, Catalogue)> {
    let timeout = Duration::from_secs(args.provider_timeout_seconds);
    let mut providers: Vec<Arc<dyn GenerationProvider>> = Vec::new();
    let mut offers = Vec::new();
    let gemini_key =
        args.gemini_api_key.clone().or_else(|| std::env::var("GEMINI_API_KEY").ok().filter(|k| !k.is_empty()));
    if let Some(key) = &gemini_key {
        let config = GeminiConfig { base_url: args.gemini_base_url.clone(), timeout, ..GeminiConfig::new(key) };
        for (model, quality) in GEMINI_MODELS {
            let cost = config.price(model, None).with_context(|| format!("no price for {model}"))?;
            for capability in [Capability::TextToImage, Capability::ImageEdit] {
                offers.push(offer(&config.provider_id, model, capability, cost, quality)?);
            }
        }
        providers.push(Arc::new(GeminiProvider::new(config).context("failed to set up Gemini")?));
    }
    if let Some(key) = &args.gemini_reserve_api_key {
        let provider_id = rei::core::ids::ProviderId::parse(RESERVE).context("the reserve's provider id")?;
        let config = GeminiConfig {
            base_url: args.gemini_reserve_base_url.clone(),
            timeout,
            provider_id,
            ..GeminiConfig::new(key)
        };
        for (model, quality) in GEMINI_MODELS {
            let cost = config.price(model, None).with_context(|| format!("no price for {model}"))?;
            for capability in [Capability::TextToImage, Capability::ImageEdit] {
                offers.push(offer(&config.provider_id, model, capability, cost, quality.saturating_sub(20))?);
            }
        }
        providers.push(Arc::new(GeminiProvider::new(config).context("failed to set up the reserve Gemini")?));
    }
    match (&args.kling_access_key, &args.kling_secret_key) {
        (Some(access), Some(secret)) => {
            let unit_cost = UnitPrice::from_money(Money::from_kopecks(args.kling_unit_cost_kopecks));
            let config = KlingConfig {
                base_url: args.kling_base_url.clone(),
                request_timeout: timeout,
                callback_url: args.kling_callback_url.clone(),
                ..KlingConfig::new(access, secret, unit_cost)
            };
            for model in DEFAULT_MODELS {
                let (_, per_second, quality) = KLING_COSTS
                    .iter()
                    .copied()
                    .find(|(name, _, _)| *name == model.model_name)
                    .with_context(|| format!("no cost for {}", model.model_name))?;
                for capability in [Capability::TextToVideo, Capability::ImageToVideo, Capability::VideoToVideo] {
                    let cost = Money::from_kopecks(per_second);
                    offers.push(offer(&config.provider_id, model.model_name, capability, cost, quality)?);
                }
            }
            providers.push(Arc::new(KlingProvider::new(config, clock).context("failed to set up Kling")?));
        }
        (None, None) => {}
        _ => bail!("Kling needs both KLING_ACCESS_KEY and KLING_SECRET_KEY"),
    }
    if providers.is_empty() {
        bail!(
            "no provider configured: set NANO_BANANA_API_KEY (images) and/or KLING_ACCESS_KEY + KLING_SECRET_KEY (video)"
        );
    }
    let catalogue = Catalogue::new(offers).context("the provider catalogue is invalid")?;
    Ok((providers, catalogue))
}

fn offer(
    provider: &rei::core::ids::ProviderId,
    model: &str,
    capability: Capability,
    cost: Money,
    quality: u8,
) -> Result<Offer> {
    Offer::new(provider.clone(), model, capability, UnitPrice::from_money(cost), quality)
        .with_context(|| format!("offer {provider}/{model}"))
}
