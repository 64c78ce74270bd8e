-- The bot's updates already taken (each handled once by whichever instance got it first) and each user's
-- conversation state.
CREATE TABLE bot_updates (
    update_id INTEGER PRIMARY KEY,
    taken_ms  INTEGER NOT NULL
) STRICT;
CREATE INDEX bot_updates_taken ON bot_updates (taken_ms);

CREATE TABLE bot_conversations (
    user_id    INTEGER PRIMARY KEY,
    state      TEXT NOT NULL CHECK (length(CAST(state AS BLOB)) <= 4096),
    updated_ms INTEGER NOT NULL
) STRICT;
