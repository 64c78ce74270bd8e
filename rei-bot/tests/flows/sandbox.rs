//! A small sandbox run inside the test suite: the scenario `rei sandbox` plays, end to end.

use std::time::Duration;

use rei_adapters::telegram::Pacing;
use rei_bot::sandbox::{ScenarioOptions, Stack, StackOptions, play};
use rei_core::guards::RateLimitPolicy;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_scenario_ends_every_job_and_the_ledger_verifies() {
    // Proves the whole scenario: users join by referral, pay by card and Stars, order images, a photo edit and a
    // video; the main image provider fails and the reserve serves; a blocked prompt fails with the money back; an
    // admin refunds, adjusts and broadcasts; every job ends and the ledger verifies.
    let dir = tempfile::tempdir().unwrap();
    let fast = RateLimitPolicy::new(1_000, Duration::from_secs(1), 1_000).unwrap();
    let options = StackOptions { pacing: Pacing { per_chat: fast, global: fast }, ..StackOptions::new(dir.path()) };
    let stack = Stack::start(options).await.unwrap();
    let mut lines = Vec::new();
    let options = ScenarioOptions { users: 3, jobs: 6, deadline: Duration::from_secs(60) };
    let summary = play(&stack, options, |l| lines.push(l.to_owned())).await.unwrap();
    stack.stop().await;
    assert!(summary.ok(), "{}", summary.render());
    let steps: Vec<&String> = lines.iter().filter(|l| l.starts_with('[')).collect();
    assert_eq!(steps.len(), 7, "{lines:?}");
    assert!(lines.iter().any(|l| l.trim() == "6 of 6 jobs ended"), "{lines:?}");
    assert_eq!(summary.users, 4);
    assert_eq!(summary.jobs.succeeded + summary.jobs.failed, 6, "{}", summary.render());
    assert!(summary.jobs.failed >= 1, "the blocked prompt fails: {}", summary.render());
    let reserve = summary.providers.iter().find(|p| p.provider.as_str() == rei_bot::sandbox::RESERVE);
    assert!(reserve.is_some_and(|p| p.successes >= 1), "the reserve served: {}", summary.render());
    assert_eq!(summary.broadcast_sent, 4);
    assert!(summary.money.top_ups.is_positive() && summary.money.revenue.is_positive());
    let rendered = summary.render();
    assert!(rendered.contains("Ledger verify: CLEAN") && rendered.contains('█'), "{rendered}");
}
