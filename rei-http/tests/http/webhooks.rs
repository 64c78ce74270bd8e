//! The webhooks: YooKassa's fail-closed notices against the fake YooKassa, and Telegram's secret token.
