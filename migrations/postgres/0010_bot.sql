-- The bot's updates already taken (each handled once by whichever instance got it first) and each user's
-- conversation state.
CREATE TABLE bot_updates (
    update_id BIGINT PRIMARY KEY,
    taken_ms  BIGINT NOT NULL
);
CREATE INDEX bot_updates_taken ON bot_updates (taken_ms);

CREATE TABLE bot_conversations (
    user_id    BIGINT PRIMARY KEY,
    state      TEXT NOT NULL CHECK (octet_length(state) <= 4096),
    updated_ms BIGINT NOT NULL
);
