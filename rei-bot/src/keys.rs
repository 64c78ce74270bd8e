//! The data of the bot's inline buttons: a short ASCII text (Telegram allows 64 bytes) that names one action.
//! Anything else a client sends is [`Action::parse`]'s `None`: a stale or forged press gets a clear answer and
//! changes nothing.

use rei_core::ids::QuoteId;
use rei_core::money::Money;

/// What a button does.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Action {
    /// Confirm a quote: hold its price and queue the job.
    Confirm(QuoteId),
    /// Cancel a quote before it is confirmed.
    Cancel(QuoteId),
    /// A menu entry.
    Menu(MenuItem),
    /// Top up by card this many kopecks.
    Card(Money),
    /// Top up in this many Stars.
    Stars(u32),
    /// The history page before this position.
    History(u64),
    /// Switch to a language (its code).
    Lang(String),
    /// Pick a video model (its key in the catalogue).
    VideoModel(String),
    /// Pick a video duration, in seconds.
    VideoSeconds(u32),
    /// Send the broadcast drafted.
    BroadcastSend,
    /// Drop the draft, or stop the broadcast running.
    BroadcastStop,
}

/// The menu's entries.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MenuItem {
    /// How to make an image.
    Image,
    /// `/video`.
    Video,
    /// `/balance`.
    Balance,
    /// `/topup`.
    TopUp,
    /// `/history`.
    History,
    /// `/lang`.
    Language,
    /// `/help`.
    Help,
}

const MENU: [(MenuItem, &str); 7] = [
    (MenuItem::Image, "img"),
    (MenuItem::Video, "vid"),
    (MenuItem::Balance, "bal"),
    (MenuItem::TopUp, "top"),
    (MenuItem::History, "his"),
    (MenuItem::Language, "lang"),
    (MenuItem::Help, "help"),
];

/// The longest key of a catalogue entry kept in button data.
const KEY_BYTES_MAX: usize = 24;

impl Action {
    /// The button data of the action (at most 64 bytes).
    #[must_use]
    pub fn encode(&self) -> String {
        match self {
            Action::Confirm(q) => format!("c:{}", hex(q.as_u128())),
            Action::Cancel(q) => format!("x:{}", hex(q.as_u128())),
            Action::Menu(item) => {
                let name = MENU.iter().find(|(i, _)| i == item).map_or("help", |(_, n)| n);
                format!("m:{name}")
            }
            Action::Card(amount) => format!("tc:{}", amount.kopecks()),
            Action::Stars(n) => format!("ts:{n}"),
            Action::History(before) => format!("h:{before}"),
            Action::Lang(code) => format!("l:{code}"),
            Action::VideoModel(key) => format!("vm:{key}"),
            Action::VideoSeconds(s) => format!("vd:{s}"),
            Action::BroadcastSend => "bs".to_owned(),
            Action::BroadcastStop => "bx".to_owned(),
        }
    }

    /// The action of button data, if it is one.
    #[must_use]
    pub fn parse(data: &str) -> Option<Action> {
        let (tag, rest) = data.split_once(':').unwrap_or((data, ""));
        let key_ok = |k: &str| {
            !k.is_empty()
                && k.len() <= KEY_BYTES_MAX
                && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
        };
        match tag {
            "c" => quote(rest).map(Action::Confirm),
            "x" => quote(rest).map(Action::Cancel),
            "m" => MENU.iter().find(|(_, n)| *n == rest).map(|(i, _)| Action::Menu(*i)),
            "tc" => rest.parse::<i64>().ok().filter(|k| *k > 0).map(|k| Action::Card(Money::from_kopecks(k))),
            "ts" => rest.parse::<u32>().ok().filter(|n| *n > 0).map(Action::Stars),
            "h" => rest.parse::<u64>().ok().map(Action::History),
            "l" if key_ok(rest) => Some(Action::Lang(rest.to_owned())),
            "vm" if key_ok(rest) => Some(Action::VideoModel(rest.to_owned())),
            "vd" => rest.parse::<u32>().ok().filter(|s| (1..=60).contains(s)).map(Action::VideoSeconds),
            "bs" if rest.is_empty() => Some(Action::BroadcastSend),
            "bx" if rest.is_empty() => Some(Action::BroadcastStop),
            _ => None,
        }
    }
}

fn hex(v: u128) -> String {
    format!("{v:032x}")
}

fn quote(text: &str) -> Option<QuoteId> {
    if text.len() != 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u128::from_str_radix(text, 16).ok().map(QuoteId::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_round_trips_within_telegrams_limit() {
        // Proves encode and parse are inverse and the data fits Telegram's 64 bytes.
        let all = [
            Action::Confirm(QuoteId::from(u128::MAX)),
            Action::Cancel(QuoteId::from(7)),
            Action::Menu(MenuItem::History),
            Action::Card(Money::from_kopecks(50_000)),
            Action::Stars(250),
            Action::History(u64::MAX),
            Action::Lang("en".into()),
            Action::VideoModel("kling-2.6".into()),
            Action::VideoSeconds(10),
            Action::BroadcastSend,
            Action::BroadcastStop,
        ];
        for action in all {
            let data = action.encode();
            assert!(data.len() <= 64, "{data}");
            assert_eq!(Action::parse(&data), Some(action));
        }
    }

    #[test]
    fn foreign_data_is_no_action() {
        // Proves forged or stale data parses to nothing rather than to a wrong action.
        for data in
            ["", "c:", "c:xyz", "c:0000", "tc:-5", "tc:0", "ts:x", "m:nope", "vd:0", "vd:61", "l:", "bs:1", "zz:1"]
        {
            assert_eq!(Action::parse(data), None, "{data}");
        }
    }
}
