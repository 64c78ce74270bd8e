//! Where a user's conversation stands, kept in the store ([`ConversationStore`](rei_core::chat::ConversationStore))
//! as JSON so that any bot process can take the next update: the video being set up, the quotes shown and not yet
//! answered (with what each one would make), an admin's broadcast draft.

use serde::{Deserialize, Serialize};

/// The most unanswered quotes kept per user; an older one's buttons answer that it is gone.
pub const PENDING_MAX: usize = 3;

/// One user's conversation.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct State {
    /// The video being set up by `/video`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video: Option<VideoDraft>,
    /// Quotes shown and not answered yet, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<Pending>,
    /// An admin's broadcast draft.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broadcast: Option<BroadcastDraft>,
    /// The videos the bot made for the user, newest last: sent back, one is continued.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub videos: Vec<MadeVideo>,
}

/// The most made videos remembered per user.
pub const VIDEOS_MAX: usize = 10;

/// A video the bot made and sent.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct MadeVideo {
    /// Telegram's `file_unique_id` of the video as sent.
    pub unique: String,
    /// The provider's id of it (what its video-extend takes).
    pub reference: String,
}

/// `/video`'s choices so far.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct VideoDraft {
    /// The model's catalogue key, once picked.
    pub model: Option<String>,
    /// The duration, once picked.
    pub seconds: Option<u32>,
}

/// A quote shown with its buttons.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Pending {
    /// The quote's id (32 hex digits).
    pub quote: String,
    /// The request it would run, in [`GenerationRequest::encode`](rei_core::generation::GenerationRequest::encode)'s
    /// form, without its input images.
    pub request: String,
    /// The input images in Telegram, downloaded on confirmation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<InputFile>,
}

/// An input image in Telegram.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct InputFile {
    /// Telegram's file id.
    pub file_id: String,
    /// Its media type.
    pub mime: String,
}

/// A broadcast being drafted by an admin.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct BroadcastDraft {
    /// `all`, `active7`, `active30` or `paid`.
    pub audience: String,
    /// The text, or the photo's caption.
    pub text: String,
    /// A photo's Telegram file id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub photo: Option<String>,
    /// An optional URL button: its label and link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub button: Option<(String, String)>,
}

impl State {
    /// The state of a stored text; a text this version cannot read starts afresh (it only loses unanswered
    /// buttons, never money).
    #[must_use]
    pub fn read(text: Option<&str>) -> State {
        text.and_then(|t| serde_json::from_str(t).ok()).unwrap_or_default()
    }

    /// The stored text, dropping the oldest pending quotes until it fits `max` bytes.
    #[must_use]
    pub fn write(&self, max: usize) -> String {
        let mut state = self.clone();
        loop {
            let text = serde_json::to_string(&state).unwrap_or_else(|_| "{}".to_owned());
            if text.len() <= max || state.pending.is_empty() {
                return if text.len() <= max { text } else { "{}".to_owned() };
            }
            state.pending.remove(0);
        }
    }

    /// Keeps `pending`, forgetting the oldest beyond [`PENDING_MAX`].
    pub fn push(&mut self, pending: Pending) {
        self.pending.push(pending);
        while self.pending.len() > PENDING_MAX {
            self.pending.remove(0);
        }
    }

    /// Takes the pending quote `quote` out.
    pub fn take(&mut self, quote: &str) -> Option<Pending> {
        let at = self.pending.iter().position(|p| p.quote == quote)?;
        Some(self.pending.remove(at))
    }

    /// Remembers a video made, forgetting the oldest beyond [`VIDEOS_MAX`].
    pub fn remember(&mut self, video: MadeVideo) {
        self.videos.retain(|v| v.unique != video.unique);
        self.videos.push(video);
        while self.videos.len() > VIDEOS_MAX {
            self.videos.remove(0);
        }
    }

    /// The provider's id of the video Telegram knows as `unique`, if the bot made it.
    #[must_use]
    pub fn made(&self, unique: &str) -> Option<&str> {
        self.videos.iter().find(|v| v.unique == unique).map(|v| v.reference.as_str())
    }

    /// `true` when nothing is kept.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.video.is_none() && self.pending.is_empty() && self.broadcast.is_none() && self.videos.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(n: usize, len: usize) -> Pending {
        Pending { quote: format!("{n:032x}"), request: "p".repeat(len), files: vec![] }
    }

    #[test]
    fn state_round_trips_and_bad_text_starts_afresh() {
        // Proves the stored form reads back, and an unreadable one is an empty state rather than an error.
        let mut s =
            State { video: Some(VideoDraft { model: Some("kling-2.6".into()), seconds: None }), ..State::default() };
        s.push(pending(1, 10));
        assert_eq!(State::read(Some(&s.write(4096))), s);
        assert_eq!(State::read(Some("{not json")), State::default());
        assert_eq!(State::read(None), State::default());
    }

    #[test]
    fn the_oldest_quotes_give_way_to_fit() {
        // Proves the bounds: at most PENDING_MAX quotes, and the text fits the store's limit by dropping the oldest.
        let mut s = State::default();
        for n in 0..5 {
            s.push(pending(n, 1500));
        }
        assert_eq!(s.pending.len(), PENDING_MAX);
        let text = s.write(4096);
        assert!(text.len() <= 4096);
        let back = State::read(Some(&text));
        assert_eq!(back.pending.last(), s.pending.last());
        assert!(back.pending.len() < PENDING_MAX);
        assert!(s.clone().take(&format!("{:032x}", 4)).is_some());
        assert_eq!(s.take(&format!("{:032x}", 0)), None);
    }
}
