//! Ordering: a text makes an image, a photo with a caption edits it, `/video` sets up a video; each is priced
//! and shown with Confirm / Cancel; Confirm holds the price and queues the job (once, however often it is
//! pressed); the refusals of the money core become what the user can do about them.

use rei_adapters::telegram::{FileRef, Keyboard};
use rei_core::billing::BillingError;
use rei_core::generation::{AssetKey, GenerationRequest};
use rei_core::ids::{JobId, ProductId, QuoteId};
use rei_core::ledger::LedgerError;
use rei_core::money::{Money, round_to_kopeck};
use rei_core::pricing::{Quote, Tier};
use rei_core::routing::Capability;
use rei_http::webhooks::UpdateError;
use rust_decimal::Decimal;

use crate::i18n::{self, BreakdownItem, BreakdownLine, ButtonText, QuoteMode, Text};
use crate::keys::{Action, MenuItem};
use crate::state::{InputFile, Pending, State, VideoDraft};
use crate::{Bot, Ctx, callback, unavailable};

/// `/cancel`: forgets the video being set up and the quotes shown.
pub(crate) async fn reset(bot: &Bot, ctx: &Ctx) -> Result<(), UpdateError> {
    let mut state = bot.load_state(ctx.user).await?;
    state.video = None;
    state.pending.clear();
    bot.save_state(ctx.user, &state).await?;
    ctx.say(bot, Text::QuoteCancelled, Some(bot.menu(ctx.lang))).await
}

fn too_long(bot: &Bot, text: &str) -> bool {
    text.chars().count() > bot.config.prompt_chars_max
}

/// A plain text: a video prompt when `/video` is set up, else an image to generate.
pub(crate) async fn on_text(bot: &Bot, ctx: &Ctx, text: &str) -> Result<(), UpdateError> {
    if crate::broadcast::drafting(bot, ctx).await? {
        return crate::broadcast::draft_content(bot, ctx, text, None).await;
    }
    if too_long(bot, text) {
        return ctx.say(bot, Text::TooLong { max: bot.config.prompt_chars_max }, None).await;
    }
    let mut state = bot.load_state(ctx.user).await?;
    if let Some((request, product, what)) = ready_video(bot, ctx, &state, Capability::TextToVideo, text) {
        state.video = None;
        return offer(bot, ctx, &mut state, &product, request, Vec::new(), &what, QuoteMode::VideoText).await;
    }
    let image = &bot.config.catalog.images[0];
    let mut request = GenerationRequest::text(Capability::TextToImage, text);
    request.model.clone_from(&image.model);
    let (product, label) = (image.product.clone(), image.label.clone());
    offer(bot, ctx, &mut state, &product, request, Vec::new(), &label, QuoteMode::Generate).await
}

/// A photo or image document: a video from it when `/video` is set up, else an edit by its caption.
pub(crate) async fn on_image(
    bot: &Bot,
    ctx: &Ctx,
    _message_id: i64,
    file: FileRef,
    mime: &str,
    caption: Option<String>,
) -> Result<(), UpdateError> {
    if crate::broadcast::drafting(bot, ctx).await? {
        return crate::broadcast::draft_content(bot, ctx, caption.as_deref().unwrap_or(""), Some(file.file_id)).await;
    }
    if file.file_size.is_some_and(|s| s > bot.config.download_bytes_max) {
        let max_mb = bot.config.download_bytes_max / (1024 * 1024);
        return ctx.say(bot, Text::FileTooBig { max_mb }, None).await;
    }
    let caption = caption.unwrap_or_default();
    if too_long(bot, &caption) {
        return ctx.say(bot, Text::TooLong { max: bot.config.prompt_chars_max }, None).await;
    }
    let input = vec![InputFile { file_id: file.file_id, mime: mime.to_owned() }];
    let mut state = bot.load_state(ctx.user).await?;
    if let Some((request, product, what)) = ready_video(bot, ctx, &state, Capability::ImageToVideo, &caption) {
        state.video = None;
        return offer(bot, ctx, &mut state, &product, request, input, &what, QuoteMode::VideoImage).await;
    }
    if caption.trim().is_empty() {
        return ctx.say(bot, Text::PhotoNeedsCaption, None).await;
    }
    let image = &bot.config.catalog.images[0];
    let mut request = GenerationRequest::text(Capability::ImageEdit, &caption);
    request.model.clone_from(&image.model);
    let (product, label) = (image.product.clone(), image.label.clone());
    offer(bot, ctx, &mut state, &product, request, input, &label, QuoteMode::Edit).await
}

/// A video sent: one the bot made is continued (the provider's video-extend) once `/video` is set up; any other
/// cannot be, since the provider continues only its own videos.
pub(crate) async fn on_video_input(
    bot: &Bot,
    ctx: &Ctx,
    file: &FileRef,
    caption: Option<String>,
) -> Result<(), UpdateError> {
    let mut state = bot.load_state(ctx.user).await?;
    let Some(reference) = state.made(&file.file_unique_id).map(str::to_owned) else {
        return ctx.say(bot, Text::VideoInputUnknown, None).await;
    };
    let caption = caption.unwrap_or_default();
    if too_long(bot, &caption) {
        return ctx.say(bot, Text::TooLong { max: bot.config.prompt_chars_max }, None).await;
    }
    let Some((mut request, product, what)) = ready_video(bot, ctx, &state, Capability::VideoToVideo, &caption) else {
        // Known, but no model and duration yet: set them up first, then send it again.
        return video_start(bot, ctx).await;
    };
    request.source_video = Some(reference);
    state.video = None;
    offer(bot, ctx, &mut state, &product, request, Vec::new(), &what, QuoteMode::VideoVideo).await
}

/// The video set up, when model and duration are both picked: the request for `capability` with the provider's
/// model and the seconds, the product, and what the quote calls it.
fn ready_video(
    bot: &Bot,
    ctx: &Ctx,
    state: &State,
    capability: Capability,
    prompt: &str,
) -> Option<(GenerationRequest, ProductId, String)> {
    let draft = state.video.as_ref()?;
    let model = bot.config.catalog.video(draft.model.as_deref()?)?;
    let seconds = draft.seconds?;
    let product = model.durations.iter().find(|(s, _)| *s == seconds)?.1.clone();
    let mut request = GenerationRequest::text(capability, prompt);
    request.model = Some(model.model.clone());
    request.duration_s = Some(seconds);
    let what = format!("{} · {}", model.label, i18n::button(ctx.lang, ButtonText::Seconds(seconds)));
    Some((request, product, what))
}

/// Prices `request`, keeps it pending and shows the quote with its buttons.
#[expect(clippy::too_many_arguments, reason = "one quote's parts, each needed")]
async fn offer(
    bot: &Bot,
    ctx: &Ctx,
    state: &mut State,
    product: &ProductId,
    mut request: GenerationRequest,
    files: Vec<InputFile>,
    what: &str,
    mode: QuoteMode,
) -> Result<(), UpdateError> {
    let quote = match bot.parts.engine.billing().quote(ctx.user, product, 1, Tier::Basic).await {
        Ok(q) => q,
        Err(BillingError::Store(e)) => return Err(unavailable(e)),
        Err(e) => {
            tracing::error!(user = %ctx.user, %product, error = %e, "a catalogue product could not be priced");
            return ctx.say(bot, Text::TryLater, None).await;
        }
    };
    // The inputs are named now by where confirmation will put them, so that the request is whole as kept.
    request.images = files.iter().enumerate().filter_map(|(n, f)| input_key(quote.id, n, &f.mime)).collect();
    state.push(Pending { quote: hex(quote.id), request: request.encode(), files });
    bot.save_state(ctx.user, state).await?;
    let lines = breakdown(&quote);
    let minutes = quote.expires_at.as_millis().saturating_sub(bot.now().as_millis()).div_euclid(60_000).max(1);
    let minutes = u64::try_from(minutes).unwrap_or(1);
    let keyboard = Keyboard {
        rows: vec![vec![
            callback(ctx.lang, ButtonText::Confirm(quote.price), &Action::Confirm(quote.id)),
            callback(ctx.lang, ButtonText::Cancel, &Action::Cancel(quote.id)),
        ]],
    };
    ctx.say(bot, Text::Quote { what, mode, price: quote.price, breakdown: &lines, minutes }, Some(keyboard)).await
}

fn hex(quote: QuoteId) -> String {
    format!("{:032x}", quote.as_u128())
}

/// The quote's breakdown in kopecks for people: cost, the service's share (margin and rounding), the time of
/// day and the discount when they are not zero.
fn breakdown(quote: &Quote) -> Vec<BreakdownLine> {
    let b = &quote.breakdown;
    let line = |what, amount: Decimal| {
        round_to_kopeck(amount).ok().filter(|m: &Money| !m.is_zero()).map(|amount| BreakdownLine { what, amount })
    };
    [
        line(BreakdownItem::Cost, b.cost_total),
        line(BreakdownItem::Margin, b.margin_added + b.rounding_adjustment),
        line(BreakdownItem::Time, b.time_adjustment),
        line(BreakdownItem::Discount, -b.tier_discount_amount),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Confirm pressed: the pending request's inputs fetched, the price held and the job queued, once.
pub(crate) async fn confirm(
    bot: &Bot,
    ctx: &Ctx,
    query: &str,
    message_id: Option<i64>,
    quote: QuoteId,
) -> Result<(), UpdateError> {
    let mut state = bot.load_state(ctx.user).await?;
    let Some(pending) = state.take(&hex(quote)) else {
        return answer_stale(bot, ctx, query, quote).await;
    };
    let Ok(mut request) = GenerationRequest::decode(&pending.request) else {
        tracing::error!(user = %ctx.user, %quote, "a pending request could not be read");
        bot.save_state(ctx.user, &state).await?;
        return answer(bot, ctx, query, Text::QuoteGone).await;
    };
    request.images.clear();
    for (n, file) in pending.files.iter().enumerate() {
        match fetch(bot, quote, n, file).await {
            Ok(key) => request.images.push(key),
            Err(Fetch::TooBig) => {
                bot.save_state(ctx.user, &state).await?;
                let max_mb = bot.config.download_bytes_max / (1024 * 1024);
                return answer(bot, ctx, query, Text::FileTooBig { max_mb }).await;
            }
            Err(Fetch::Failed(why)) => {
                tracing::warn!(user = %ctx.user, %quote, why, "could not fetch an input image");
                return answer(bot, ctx, query, Text::TryLater).await;
            }
        }
    }
    match bot.parts.engine.order(ctx.user, quote, request, bot.config.priority).await {
        Ok(job) => {
            bot.save_state(ctx.user, &state).await?;
            tracing::info!(user = %ctx.user, job = %job.id, price = %job.price, "ordered");
            bot.answer(query, None).await;
            drop_buttons(bot, ctx, message_id).await;
            ctx.say(bot, Text::Working, None).await
        }
        Err(rei::EngineError::Confirm(e)) => refused(bot, ctx, query, &mut state, pending, e).await,
        Err(rei::EngineError::Request(e)) => {
            tracing::warn!(user = %ctx.user, %quote, error = %e, "a request that does not fit its model");
            bot.save_state(ctx.user, &state).await?;
            answer(bot, ctx, query, Text::TooLong { max: bot.config.prompt_chars_max }).await
        }
        Err(e) => {
            // The hold may be in place and the job stored but not queued: telling the user "nothing was charged"
            // could be untrue. The update is handed back instead (a 5xx to Telegram, which delivers it again),
            // and the repeat finishes the same order: every step is keyed by the quote.
            tracing::warn!(user = %ctx.user, %quote, error = %e, "an order did not complete; it is taken again");
            Err(unavailable(e))
        }
    }
}

/// The money core refused the hold: what the user can do about it. The quote stays pending where pressing again
/// can succeed (after a top-up, once a job ends).
async fn refused(
    bot: &Bot,
    ctx: &Ctx,
    query: &str,
    state: &mut State,
    pending: Pending,
    e: BillingError,
) -> Result<(), UpdateError> {
    let (text, keyboard) = match e {
        BillingError::Ledger(LedgerError::InsufficientFunds { available, required, .. }) => {
            state.push(pending);
            let top_up = callback(ctx.lang, ButtonText::TopUp, &Action::Menu(MenuItem::TopUp));
            (Text::NotEnough { available, required }, Some(Keyboard { rows: vec![vec![top_up]] }))
        }
        BillingError::Ledger(LedgerError::SpendCap(cap)) => {
            let daily = cap.scope != rei_core::caps::CapScope::UserHourly;
            (Text::CapReached { daily, cap: cap.cap }, None)
        }
        BillingError::Ledger(LedgerError::TooManyActiveHolds { max, .. }) => {
            state.push(pending);
            (Text::TooManyJobs { max }, None)
        }
        BillingError::QuoteExpired { .. } | BillingError::QuoteNotFound { .. } => (Text::QuoteExpired, None),
        BillingError::QuoteOwner { .. } => (Text::QuoteGone, None),
        // A store that could not be reached refused nothing: the update is handed back and delivered again.
        BillingError::Store(e) | BillingError::Ledger(LedgerError::Store(e)) => return Err(unavailable(e)),
        other => {
            tracing::error!(user = %ctx.user, error = %other, "a confirmation was refused");
            (Text::TryLater, None)
        }
    };
    bot.save_state(ctx.user, state).await?;
    bot.answer(query, None).await;
    ctx.say(bot, text, keyboard).await
}

/// A press of a quote no longer pending: confirmed before (its job exists) or gone.
async fn answer_stale(bot: &Bot, ctx: &Ctx, query: &str, quote: QuoteId) -> Result<(), UpdateError> {
    let job = bot.parts.engine.jobs().get(JobId::from(quote.as_u128())).await.map_err(unavailable)?;
    let text = match job {
        Some(job) if job.user == ctx.user => Text::AlreadyConfirmed,
        _ => Text::QuoteGone,
    };
    let rendered = i18n::text(ctx.lang, &text);
    bot.answer(query, Some(&rendered)).await;
    Ok(())
}

async fn answer(bot: &Bot, ctx: &Ctx, query: &str, text: Text<'_>) -> Result<(), UpdateError> {
    bot.answer(query, None).await;
    ctx.say(bot, text, None).await
}

/// Takes the buttons off an answered quote (best effort).
async fn drop_buttons(bot: &Bot, ctx: &Ctx, message_id: Option<i64>) {
    if let Some(id) = message_id
        && let Err(e) = bot.parts.api.edit_message_reply_markup(ctx.chat, id, None).await
    {
        tracing::debug!(error = %e, "could not take the buttons off a quote");
    }
}

/// Cancel pressed: the quote forgotten (nothing was held).
pub(crate) async fn cancel(
    bot: &Bot,
    ctx: &Ctx,
    query: &str,
    message_id: Option<i64>,
    quote: QuoteId,
) -> Result<(), UpdateError> {
    let mut state = bot.load_state(ctx.user).await?;
    if state.take(&hex(quote)).is_none() {
        return answer_stale(bot, ctx, query, quote).await;
    }
    bot.save_state(ctx.user, &state).await?;
    bot.answer(query, None).await;
    drop_buttons(bot, ctx, message_id).await;
    ctx.say(bot, Text::QuoteCancelled, None).await
}

enum Fetch {
    TooBig,
    Failed(String),
}

/// Downloads input `n` of `quote` from Telegram into the asset store.
async fn fetch(bot: &Bot, quote: QuoteId, n: usize, file: &InputFile) -> Result<AssetKey, Fetch> {
    let api = &bot.parts.api;
    let info = api.get_file(&file.file_id).await.map_err(|e| Fetch::Failed(e.to_string()))?;
    let max = bot.config.download_bytes_max;
    if info.file_size.is_some_and(|s| s > max) {
        return Err(Fetch::TooBig);
    }
    let path = info.file_path.ok_or_else(|| Fetch::Failed("Telegram gave no file path".to_owned()))?;
    let bytes = api.download_file(&path, max).await.map_err(|e| match e {
        rei_adapters::telegram::BotApiError::TooLarge { .. } => Fetch::TooBig,
        other => Fetch::Failed(other.to_string()),
    })?;
    let key = input_key(quote, n, &file.mime).ok_or_else(|| Fetch::Failed("an input key".to_owned()))?;
    bot.parts.assets.put(&key, bytes).await.map_err(|e| Fetch::Failed(e.to_string()))?;
    Ok(key)
}

/// Where input `n` of `quote` is kept.
fn input_key(quote: QuoteId, n: usize, mime: &str) -> Option<AssetKey> {
    let ext = match mime {
        "image/png" => "png",
        "image/webp" => "webp",
        _ => "jpg",
    };
    AssetKey::parse(&format!("inputs/{}-{n}.{ext}", hex(quote))).ok()
}

/// `/video`: the models.
pub(crate) async fn video_start(bot: &Bot, ctx: &Ctx) -> Result<(), UpdateError> {
    let mut state = bot.load_state(ctx.user).await?;
    state.video = Some(VideoDraft { model: None, seconds: None });
    bot.save_state(ctx.user, &state).await?;
    let rows = bot
        .config
        .catalog
        .videos
        .iter()
        .map(|m| {
            vec![rei_adapters::telegram::Button::Callback {
                text: m.label.clone(),
                data: Action::VideoModel(m.key.clone()).encode(),
            }]
        })
        .collect();
    ctx.say(bot, Text::VideoModel, Some(Keyboard { rows })).await
}

/// A video model picked: its durations.
pub(crate) async fn video_model(bot: &Bot, ctx: &Ctx, query: &str, key: &str) -> Result<(), UpdateError> {
    bot.answer(query, None).await;
    let Some(model) = bot.config.catalog.video(key) else { return ctx.say(bot, Text::QuoteGone, None).await };
    let mut state = bot.load_state(ctx.user).await?;
    state.video = Some(VideoDraft { model: Some(model.key.clone()), seconds: None });
    bot.save_state(ctx.user, &state).await?;
    let row = model
        .durations
        .iter()
        .map(|(s, _)| callback(ctx.lang, ButtonText::Seconds(*s), &Action::VideoSeconds(*s)))
        .collect();
    let label = model.label.clone();
    ctx.say(bot, Text::VideoDuration { model: &label }, Some(Keyboard { rows: vec![row] })).await
}

/// A duration picked: ask for the prompt or photo.
pub(crate) async fn video_seconds(bot: &Bot, ctx: &Ctx, query: &str, seconds: u32) -> Result<(), UpdateError> {
    bot.answer(query, None).await;
    let mut state = bot.load_state(ctx.user).await?;
    let model = state.video.as_ref().and_then(|v| v.model.clone()).and_then(|k| bot.config.catalog.video(&k).cloned());
    let Some(model) = model.filter(|m| m.durations.iter().any(|(s, _)| *s == seconds)) else {
        return ctx.say(bot, Text::QuoteGone, None).await;
    };
    state.video = Some(VideoDraft { model: Some(model.key.clone()), seconds: Some(seconds) });
    bot.save_state(ctx.user, &state).await?;
    ctx.say(bot, Text::VideoPrompt { model: &model.label, seconds }, None).await
}
