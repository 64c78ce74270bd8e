//! The HTTP surface through the real router on a loopback socket: every `/v1` route and its documented
//! errors, the webhooks (YooKassa against the fake YooKassa, Telegram's secret token), health, metrics, the
//! OpenAPI document against the responses, and the Prometheus rules of `deploy/prometheus/` through promtool.

mod browser;
mod console;
mod harness;
mod openapi;
mod ops;
mod pg;
mod slo_rules;
mod stars;
mod support;
mod v1;
#[path = "../support/webdriver.rs"]
mod webdriver;
mod webhooks;
