//! What a chat bot keeps in the store rather than in process memory, so that several bot processes behind one
//! webhook behave as one:
//!
//! - [`UpdateLog`]: each update id is handled once (Telegram redelivers an update until it gets a 2xx, and two
//!   instances may both receive it).
//! - [`ConversationStore`]: where each user's conversation stands (the model picked, the duration asked for),
//!   as an opaque text the bot writes and reads.

use async_trait::async_trait;

use crate::ids::UserId;
use crate::time::Timestamp;

/// The longest conversation state kept, in bytes.
pub const STATE_BYTES_MAX: usize = 4096;

/// A chat store failed.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum ChatStoreError {
    /// A state over [`STATE_BYTES_MAX`] bytes.
    #[error("a conversation state is at most {STATE_BYTES_MAX} bytes, not {0}")]
    TooLarge(usize),
    /// The store could not be reached.
    #[error("chat store unavailable: {reason}")]
    Unavailable {
        /// What went wrong.
        reason: String,
    },
}

/// The updates already taken.
///
/// Contract: of any number of concurrent `claim`s of one id, exactly one gets `true` (until it is released).
#[async_trait]
pub trait UpdateLog: Send + Sync {
    /// Takes update `id` at `now`: `true` the first time, `false` when it was taken before.
    ///
    /// # Errors
    /// [`ChatStoreError::Unavailable`].
    async fn claim(&self, id: i64, now: Timestamp) -> Result<bool, ChatStoreError>;

    /// Gives a taken update back (its handling failed; the redelivery handles it).
    ///
    /// # Errors
    /// [`ChatStoreError::Unavailable`].
    async fn release(&self, id: i64) -> Result<(), ChatStoreError>;

    /// Forgets up to `limit` updates taken before `before`; returns how many.
    ///
    /// # Errors
    /// [`ChatStoreError::Unavailable`].
    async fn purge(&self, before: Timestamp, limit: usize) -> Result<usize, ChatStoreError>;
}

/// Where a user's conversation stands.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Conversation {
    /// The bot's own text form of the state.
    pub state: String,
    /// When it was written.
    pub updated_at: Timestamp,
}

/// Each user's conversation.
#[async_trait]
pub trait ConversationStore: Send + Sync {
    /// The user's conversation, if any.
    ///
    /// # Errors
    /// [`ChatStoreError::Unavailable`].
    async fn get(&self, user: UserId) -> Result<Option<Conversation>, ChatStoreError>;

    /// Writes the user's conversation (the last write wins).
    ///
    /// # Errors
    /// [`ChatStoreError::TooLarge`]; [`ChatStoreError::Unavailable`].
    async fn put(&self, user: UserId, state: &str, now: Timestamp) -> Result<(), ChatStoreError>;

    /// Ends the user's conversation.
    ///
    /// # Errors
    /// [`ChatStoreError::Unavailable`].
    async fn clear(&self, user: UserId) -> Result<(), ChatStoreError>;
}
