//! Every flow of the bot end to end: updates into the real webhook over HTTP, the real bot, worker and money
//! core on SQLite, and the fake Bot API, YooKassa, Gemini and Kling, with snapshots of what users read; and the
//! metrics that `deploy/` queries, on the live `/metrics`.

#![expect(clippy::unwrap_used, reason = "tests")]
#![expect(clippy::inconsistent_digit_grouping, reason = "kopecks written as roubles_kopecks: 30_00 is 30.00 ₽")]

mod account;
mod admin;
mod dashboards;
mod order;
mod polling;
mod sandbox;
mod support;
