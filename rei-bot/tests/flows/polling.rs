//! Long polling: the same bot takes its updates with getUpdates, each once, and stops when asked.

use std::time::Duration;

use rei_adapters::fakes::telegram::updates;
use rei_core::money::Money;

use crate::support::{Rig, en};

#[tokio::test]
async fn the_bot_polls_its_updates_handles_each_once_and_stops() {
    // Proves polling: pushed updates are answered, one pushed twice (same update_id) has one effect, and the
    // poller ends on its stop signal.
    let rig = Rig::start().await;
    let user = en(50_001);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let bot = rig.stack.bot.clone();
    let poller = tokio::spawn(rei_bot::poll::run(bot, async { drop(stopped.await) }, Duration::from_secs(1)));
    let start = updates::text_message_from(900_001, &user, "/start");
    rig.stack.telegram.push_update(start.clone());
    rig.stack.telegram.push_update(updates::text_message_from(900_002, &user, "/balance"));
    rig.wait_messages(&user, 3).await;
    // The same update again (a redelivery after a restart): not handled again.
    rig.stack.telegram.push_update(start);
    rig.stack.telegram.push_update(updates::text_message_from(900_003, &user, "/help"));
    rig.wait_messages(&user, 4).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let welcomes = rig
        .stack
        .telegram
        .sent_to(user.id)
        .iter()
        .filter(|m| m.text.as_deref().is_some_and(|t| t.starts_with("Hi,")))
        .count();
    assert_eq!(welcomes, 1);
    assert_eq!(rig.balance(&user).await.0, Money::from_kopecks(3_000));
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), poller).await.unwrap().unwrap();
    rig.stop().await;
}
