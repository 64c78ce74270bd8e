//! The worker's side of the bot: [`TelegramMessenger`] sends each finished job to its user — an image as a photo
//! and as the original file, a video as a video — or says that it failed or was cancelled and that the money is
//! back.
//!
//! The final messages of a job go out at most once however often the job service repeats them (it does after a
//! crash): each is claimed first in the update log, under a negative id of its own (Telegram's update ids are
//! positive, so the two never meet), and given back when sending failed in a way worth repeating.

use std::sync::Arc;

use async_trait::async_trait;
use rei_adapters::telegram::{BotApi, BotApiError, Media};
use rei_core::chat::UpdateLog;
use rei_core::generation::{AssetStore, MediaKind, Messenger, MessengerError, UserMessage};
use rei_core::ids::{JobId, UserId};
use rei_core::members::MemberStore;
use rei_core::time::Clock;

use crate::i18n::{self, Lang, Text};

/// The largest photo Telegram takes from a bot; a bigger image goes as a file only.
const PHOTO_BYTES_MAX: usize = 10 * 1024 * 1024;

/// Sends job results and failures through the Bot API.
pub struct TelegramMessenger {
    /// The bot's API.
    pub api: Arc<BotApi>,
    /// Where results are.
    pub assets: Arc<dyn AssetStore>,
    /// Whose language to speak.
    pub members: Arc<dyn MemberStore>,
    /// Where each final message is claimed once.
    pub once: Arc<dyn UpdateLog>,
    /// Where the videos made are remembered, to be continued when sent back.
    pub conversations: Arc<dyn rei_core::chat::ConversationStore>,
    /// The claims' time.
    pub clock: Arc<dyn Clock>,
}

/// The claim id of a one-time message: `kind` and the bytes that name what it is about, hashed (FNV-1a, then a
/// 64-bit finaliser) into a negative id.
pub(crate) fn once_id(kind: u8, about: &[u8]) -> i64 {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for b in std::iter::once(&kind).chain(about) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01B3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    h ^= h >> 33;
    -i64::try_from(h >> 1).unwrap_or(i64::MAX) - 1
}

/// The claim id of `job`'s final message `kind`.
fn claim_id(job: JobId, kind: u8) -> i64 {
    once_id(kind, &job.as_u128().to_le_bytes())
}

fn failed(e: &BotApiError) -> MessengerError {
    if e.is_blocked() {
        MessengerError::Unreachable { reason: e.to_string() }
    } else {
        match e {
            BotApiError::Api { code, .. } if *code < 500 && *code != 429 => {
                MessengerError::Unreachable { reason: e.to_string() }
            }
            _ => MessengerError::Unavailable { reason: e.to_string() },
        }
    }
}

impl TelegramMessenger {
    /// Remembers the video sent as `unique` with the provider's id of it, so that the user can send it back to
    /// have it continued (best effort: without it, only that continuation is refused).
    async fn remember(&self, user: UserId, key: &rei_core::generation::AssetKey, unique: Option<String>) {
        let Some(unique) = unique else { return };
        let reference = match self.assets.get(&key.provider_ref()).await {
            Ok(Some(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
            _ => return,
        };
        let stored = self.conversations.get(user).await.ok().flatten();
        let mut state = crate::state::State::read(stored.as_ref().map(|c| c.state.as_str()));
        state.remember(crate::state::MadeVideo { unique, reference });
        let text = state.write(rei_core::chat::STATE_BYTES_MAX);
        if let Err(e) = self.conversations.put(user, &text, self.clock.now()).await {
            tracing::warn!(user = %user, error = %e, "could not remember a video made");
        }
    }

    async fn lang(&self, user: UserId) -> Lang {
        match self.members.get(user).await {
            Ok(Some(m)) => Lang::from_code(Some(&m.language)),
            _ => Lang::Ru,
        }
    }

    async fn deliver(&self, user: UserId, lang: Lang, message: &UserMessage) -> Result<(), MessengerError> {
        let chat = user.0;
        let say = |text: Text<'_>| i18n::text(lang, &text);
        match message {
            UserMessage::Delivered { job, asset: Some(key), kind } => {
                let bytes = self
                    .assets
                    .get(key)
                    .await
                    .map_err(|e| MessengerError::Unavailable { reason: e.to_string() })?
                    .ok_or_else(|| MessengerError::Unreachable { reason: format!("the result {key} is gone") })?;
                let caption = say(Text::Delivered);
                let name = format!("rei-{job}.{}", key.as_str().rsplit('.').next().unwrap_or("bin"));
                let upload =
                    |bytes: Vec<u8>| Media::Upload { bytes, file_name: name.clone(), mime: key.mime().to_owned() };
                match kind {
                    MediaKind::Image => {
                        if bytes.len() <= PHOTO_BYTES_MAX {
                            self.api
                                .send_photo(chat, &upload(bytes.clone()), Some(&caption), None)
                                .await
                                .map_err(|e| failed(&e))?;
                        }
                        // The photo is recompressed by Telegram; the file keeps the original.
                        self.api.send_document(chat, &upload(bytes), None).await.map_err(|e| failed(&e))?;
                    }
                    MediaKind::Video => {
                        let sent =
                            self.api.send_video(chat, &upload(bytes), Some(&caption)).await.map_err(|e| failed(&e))?;
                        self.remember(user, key, sent.file_unique_id).await;
                    }
                    MediaKind::File => {
                        self.api.send_document(chat, &upload(bytes), Some(&caption)).await.map_err(|e| failed(&e))?;
                    }
                }
                Ok(())
            }
            UserMessage::Delivered { asset: None, .. } => {
                self.api.send_message(chat, &say(Text::Delivered), None).await.map(drop).map_err(|e| failed(&e))
            }
            UserMessage::Failed { reason, .. } => {
                let text = say(Text::Failed { reason: reason.as_str() });
                self.api.send_message(chat, &text, None).await.map(drop).map_err(|e| failed(&e))
            }
            UserMessage::Cancelled { .. } => {
                self.api.send_message(chat, &say(Text::JobCancelled), None).await.map(drop).map_err(|e| failed(&e))
            }
            UserMessage::Working { .. } | UserMessage::Progress { .. } => Ok(()),
        }
    }
}

#[async_trait]
impl Messenger for TelegramMessenger {
    async fn send(&self, user: UserId, message: UserMessage) -> Result<(), MessengerError> {
        let kind = match &message {
            // The bot said it is working when the order was confirmed; progress is not worth a message each.
            UserMessage::Working { .. } | UserMessage::Progress { .. } => return Ok(()),
            UserMessage::Delivered { .. } => 1,
            UserMessage::Failed { .. } => 2,
            UserMessage::Cancelled { .. } => 3,
        };
        let id = claim_id(message.job(), kind);
        let unavailable = |e: rei_core::chat::ChatStoreError| MessengerError::Unavailable { reason: e.to_string() };
        if !self.once.claim(id, self.clock.now()).await.map_err(unavailable)? {
            tracing::debug!(job = %message.job(), "a final message sent before: not again");
            return Ok(());
        }
        let lang = self.lang(user).await;
        match self.deliver(user, lang, &message).await {
            Err(MessengerError::Unavailable { reason }) => {
                if let Err(e) = self.once.release(id).await {
                    tracing::error!(job = %message.job(), error = %e, "could not give a message claim back");
                }
                Err(MessengerError::Unavailable { reason })
            }
            Err(MessengerError::Unreachable { reason }) => {
                tracing::info!(user = %user, job = %message.job(), reason, "a user could not be reached");
                if let Err(e) = self.members.mark_blocked(user, self.clock.now()).await {
                    tracing::warn!(error = %e, "could not mark an unreachable user");
                }
                Err(MessengerError::Unreachable { reason })
            }
            Ok(()) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_ids_are_negative_and_distinct_per_message() {
        // Proves the claims never meet Telegram's positive update ids and differ per job and per message kind.
        let mut seen = std::collections::HashSet::new();
        for job in [0u128, 1, 2, u128::MAX, 1 << 64, (1 << 64) + 1] {
            for kind in 1..=3 {
                let id = claim_id(JobId::from(job), kind);
                assert!(id < 0, "{id}");
                assert!(seen.insert(id));
            }
        }
    }
}

/// A messenger set after the engine is built (the Telegram messenger needs the engine's own stores): until it is
/// set, every message is "unavailable", so the job service keeps the notice and repeats it.
#[derive(Default)]
pub struct Relay {
    inner: std::sync::OnceLock<Arc<dyn Messenger>>,
}

impl Relay {
    /// An empty relay.
    #[must_use]
    pub fn new() -> Arc<Relay> {
        Arc::new(Relay::default())
    }

    /// Sets the messenger (once; a second call is ignored and returns `false`).
    pub fn set(&self, messenger: Arc<dyn Messenger>) -> bool {
        self.inner.set(messenger).is_ok()
    }
}

#[async_trait]
impl Messenger for Relay {
    async fn send(&self, user: UserId, message: UserMessage) -> Result<(), MessengerError> {
        match self.inner.get() {
            Some(m) => m.send(user, message).await,
            None => Err(MessengerError::Unavailable { reason: "the messenger is not set up yet".to_owned() }),
        }
    }
}
