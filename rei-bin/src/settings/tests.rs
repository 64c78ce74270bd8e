use std::fmt::Write as _;

use jiff::civil::Weekday;
use rei_core::billing::BillingConfig;
use rei_core::ids::{ProductId, ProviderId};
use rei_core::money::{Money, Ratio, UnitPrice};
use rei_core::pricing::{PeakWindow, PricingConfig, PricingSpec, ProductPricing, TierDiscounts, Weekdays};
use rei_core::stars::StarsConfig;
use rust_decimal::Decimal;

use super::*;

fn parse(text: &str) -> Result<Settings, SettingsError> {
    Settings::parse(text, "test.toml")
}

/// The shipped file with `find` (which must occur exactly once) replaced by `replace`.
fn shipped_with(find: &str, replace: &str) -> String {
    assert_eq!(SHIPPED.matches(find).count(), 1, "{find:?} must occur once in the shipped file");
    SHIPPED.replacen(find, replace, 1)
}

fn product(id: &str) -> ProductId {
    ProductId::parse(id).expect("product id")
}

fn money(text: &str) -> Money {
    Money::parse(text).expect("amount")
}

// Writes settings out as a file, the way an operator would write them, for the round trips.

fn render(s: &Settings) -> String {
    let mut out = String::new();
    render_pricing(&mut out, &s.pricing);
    render_billing(&mut out, &s.billing);
    render_bot(&mut out, &s.bot);
    render_growth(&mut out, &s.growth);
    render_stars(&mut out, &s.stars);
    out
}

fn render_pricing(out: &mut String, pricing: &PricingConfig) {
    let spec = pricing.spec();
    let d = &spec.tier_discounts;
    let _ = writeln!(out, "[pricing]\ntime_zone = {:?}", spec.time_zone);
    let _ = writeln!(out, "margin_floor_percent = \"{}\"", percent_of(spec.margin_floor));
    let _ = writeln!(out, "refuse_below_floor = {}", spec.refuse_below_floor);
    let _ = writeln!(out, "off_peak_multiplier = \"{}\"", spec.off_peak_multiplier);
    let _ = writeln!(out, "quote_ttl_seconds = {}", spec.quote_ttl.as_secs());
    let _ = writeln!(out, "[pricing.tier_discount_percent]");
    for (tier, ratio) in [("basic", d.basic), ("pro", d.pro), ("enterprise", d.enterprise)] {
        let _ = writeln!(out, "{tier} = \"{}\"", percent_of(ratio));
    }
    let _ = writeln!(out, "[pricing.products]");
    for (id, p) in &spec.products {
        let margin = percent_of(p.target_margin);
        let _ = writeln!(
            out,
            "{:?} = {{ cost = \"{}\", margin_percent = \"{margin}\", unit = {:?} }}",
            id.as_str(),
            p.cost,
            p.unit
        );
    }
    let names = [
        (Weekday::Monday, "mon"),
        (Weekday::Tuesday, "tue"),
        (Weekday::Wednesday, "wed"),
        (Weekday::Thursday, "thu"),
        (Weekday::Friday, "fri"),
        (Weekday::Saturday, "sat"),
        (Weekday::Sunday, "sun"),
    ];
    for w in &spec.peak_windows {
        let days: Vec<String> =
            names.iter().filter(|(d, _)| w.days.contains(*d)).map(|(_, n)| format!("{n:?}")).collect();
        let _ = writeln!(out, "[[pricing.peak_windows]]\ndays = [{}]", days.join(", "));
        let _ = writeln!(out, "start = \"{:02}:{:02}\"", w.start.hour(), w.start.minute());
        let _ = writeln!(out, "end = \"{:02}:{:02}\"", w.end.hour(), w.end.minute());
        let _ = writeln!(out, "multiplier = \"{}\"", w.multiplier);
    }
}

fn render_billing(out: &mut String, b: &BillingSettings) {
    let _ = writeln!(out, "[billing]\nhold_ttl_seconds = {}", b.hold_ttl.as_secs());
    if let Some(n) = b.jobs_running_max {
        let _ = writeln!(out, "jobs_running_max = {n}");
    }
    if let Some(m) = b.user_hourly {
        let _ = writeln!(out, "user_hourly = \"{m}\"");
    }
    if let Some(m) = b.user_daily {
        let _ = writeln!(out, "user_daily = \"{m}\"");
    }
    let _ = writeln!(out, "[billing.provider_budgets]");
    for (provider, m) in &b.provider_budgets {
        let _ = writeln!(out, "{provider} = \"{m}\"");
    }
}

fn render_bot(out: &mut String, b: &BotSettings) {
    let cards: Vec<String> = b.card_amounts.iter().map(|m| format!("\"{m}\"")).collect();
    let stars: Vec<String> = b.star_amounts.iter().map(u32::to_string).collect();
    let _ = writeln!(out, "[bot]\ncard_amounts = [{}]\nstar_amounts = [{}]", cards.join(", "), stars.join(", "));
    let _ = writeln!(out, "prompt_chars_max = {}\ndownload_mb_max = {}", b.prompt_chars_max, b.download_mb_max);
    let _ = writeln!(out, "updates_per_minute = {}\nupdate_burst = {}", b.updates_per_minute, b.update_burst);
    let _ = writeln!(out, "history_page = {}\ntime_zone = {:?}", b.history_page, b.time_zone);
    for i in &b.images {
        let _ = writeln!(
            out,
            "[[bot.images]]\nkey = {:?}\nlabel = {:?}\nproduct = {:?}",
            i.key,
            i.label,
            i.product.as_str()
        );
        if let Some(model) = &i.model {
            let _ = writeln!(out, "model = {model:?}");
        }
    }
    for v in &b.videos {
        let durations: Vec<String> = v.durations.iter().map(|(s, p)| format!("{s} = {:?}", p.as_str())).collect();
        let _ = writeln!(out, "[[bot.videos]]\nkey = {:?}\nlabel = {:?}\nmodel = {:?}", v.key, v.label, v.model);
        let _ = writeln!(out, "durations = {{ {} }}", durations.join(", "));
    }
}

fn render_growth(out: &mut String, g: &GrowthSettings) {
    let share = Decimal::new(i64::from(g.referral_percent_bp), 2).normalize();
    let _ = writeln!(out, "[growth]\ntrial = \"{}\"\nreferral_join_bonus = \"{}\"", g.trial, g.referral_join_bonus);
    let _ = writeln!(out, "referral_percent = \"{share}\"");
}

fn render_stars(out: &mut String, s: &StarsConfig) {
    let _ = writeln!(out, "[stars]\nrub_per_star = \"{}\"\nmin_stars = {}", s.rub_per_star, s.min_stars);
    let _ = writeln!(out, "max_stars = {}\ntitle = {:?}\ndescription = {:?}", s.max_stars, s.title, s.description);
}

fn round_trip(s: &Settings) -> Settings {
    let text = render(s);
    parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[test]
fn shipped_pricing_is_the_example_price_list() {
    // Proves the shipped rei.toml reproduces PricingConfig::example() exactly: products, costs, margins, units,
    // windows, discounts, floor, time zone and quote TTL.
    assert_eq!(Settings::shipped().pricing, PricingConfig::example());
}

#[test]
fn every_shipped_catalogue_product_is_priced() {
    // Proves each image and each video duration the shipped bot offers has a price in the shipped price list,
    // and that the catalogue is Nano Banana and Kling 3.0, 2.6 and 1.5 at 5 and 10 s.
    let s = Settings::shipped();
    let priced = &s.pricing.spec().products;
    let mut sold = 0;
    for image in &s.bot.images {
        assert!(priced.contains_key(&image.product), "{}", image.product);
        sold += 1;
    }
    for video in &s.bot.videos {
        for (_, p) in &video.durations {
            assert!(priced.contains_key(p), "{p}");
            sold += 1;
        }
    }
    assert_eq!(sold, 7);
    assert_eq!(
        s.bot.images,
        vec![ImageEntry {
            key: "nano-banana".into(),
            label: "Nano Banana".into(),
            product: product("image.nano-banana"),
            model: None
        }]
    );
    let video = |key: &str, label: &str, model: &str, v: &str| VideoEntry {
        key: key.into(),
        label: label.into(),
        model: model.into(),
        durations: vec![(5, product(&format!("video.kling-{v}.5s"))), (10, product(&format!("video.kling-{v}.10s")))],
    };
    assert_eq!(
        s.bot.videos,
        vec![
            video("kling-3.0", "Kling 3.0", "kling-v3", "3.0"),
            video("kling-2.6", "Kling 2.6", "kling-v2-6", "2.6"),
            video("kling-1.5", "Kling 1.5", "kling-v1-5", "1.5"),
        ]
    );
}

#[test]
fn shipped_sections_are_the_documented_defaults() {
    // Proves the shipped billing is BillingConfig::default() written out, the Stars section StarsConfig::default(),
    // and the bot's limits and growth grants the values the original bot used.
    let s = Settings::shipped();
    assert_eq!(s.billing.config(), BillingConfig::default());
    assert_eq!(s.stars, StarsConfig::default());
    assert_eq!(
        s.growth,
        GrowthSettings { trial: money("30.00"), referral_join_bonus: money("10.00"), referral_percent_bp: 1_000 }
    );
    let b = &s.bot;
    assert_eq!(b.card_amounts, ["100", "300", "500", "1000"].map(money));
    assert_eq!(b.star_amounts, [50, 100, 250]);
    assert_eq!((b.prompt_chars_max, b.download_mb_max), (1_000, 20));
    assert_eq!((b.updates_per_minute, b.update_burst, b.history_page), (20, 10, 10));
    assert_eq!(b.time_zone, "Europe/Moscow");
    assert_eq!(Settings::load(None).expect("shipped"), s);
}

#[test]
fn pricing_round_trips() {
    // Proves a price list unlike the shipped one (sub-kopeck cost, fractional percents, a refusing floor, one
    // window crossing midnight) reads back as written.
    let mut s = Settings::shipped();
    let mut products = s.pricing.spec().products.clone();
    let pricing = ProductPricing {
        cost: UnitPrice::parse("0.015").expect("rate"),
        target_margin: Ratio::percent(125),
        unit: "second".into(),
    };
    products.insert(product("usage.voice"), pricing);
    let spec = PricingSpec {
        products,
        margin_floor: Ratio::new(Decimal::new(125, 3)),
        refuse_below_floor: true,
        time_zone: "Asia/Tokyo".into(),
        peak_windows: vec![PeakWindow {
            days: Weekdays::of(&[Weekday::Sunday, Weekday::Wednesday]),
            start: jiff::civil::Time::constant(22, 30, 0, 0),
            end: jiff::civil::Time::constant(1, 15, 0, 0),
            multiplier: Ratio::new(Decimal::new(1375, 3)),
        }],
        off_peak_multiplier: Ratio::new(Decimal::new(95, 2)),
        tier_discounts: TierDiscounts {
            basic: Ratio::percent(5),
            pro: Ratio::percent(5),
            enterprise: Ratio::new(Decimal::new(275, 3)),
        },
        quote_ttl: std::time::Duration::from_secs(90),
    };
    s.pricing = PricingConfig::new(spec).expect("valid");
    assert_eq!(round_trip(&s).pricing, s.pricing);
}

#[test]
fn billing_round_trips() {
    // Proves caps, budgets and a running-jobs limit read back as written, and that leaving them out means none.
    let mut s = Settings::shipped();
    s.billing = BillingSettings {
        hold_ttl: std::time::Duration::from_secs(7_200),
        user_hourly: Some(money("500.50")),
        user_daily: Some(money("2000")),
        jobs_running_max: Some(5),
        provider_budgets: [("kling", "20000"), ("gemini", "1500.25")]
            .map(|(p, m)| (ProviderId::parse(p).expect("id"), money(m)))
            .into(),
    };
    assert_eq!(round_trip(&s).billing, s.billing);
    s.billing = BillingSettings {
        user_hourly: None,
        user_daily: None,
        jobs_running_max: None,
        provider_budgets: BTreeMap::new(),
        ..s.billing
    };
    assert_eq!(round_trip(&s).billing, s.billing);
}

#[test]
fn bot_round_trips() {
    // Proves a bot unlike the shipped one (two images, one with its model; a video of three durations written out
    // of order; other limits) reads back as written, durations shortest first.
    let mut s = Settings::shipped();
    s.bot = BotSettings {
        card_amounts: vec![money("150.50"), money("99")],
        star_amounts: vec![1_000, 10],
        prompt_chars_max: 4_096,
        download_mb_max: 2_000,
        updates_per_minute: 60,
        update_burst: 1,
        history_page: 50,
        time_zone: "UTC".into(),
        images: vec![
            ImageEntry {
                key: "pro".into(),
                label: "Nano Banana Pro ✨".into(),
                product: product("image.nano-banana-pro"),
                model: Some("gemini-3-pro-image-preview".into()),
            },
            ImageEntry {
                key: "nano-banana".into(),
                label: "Nano Banana".into(),
                product: product("image.nano-banana"),
                model: None,
            },
        ],
        videos: vec![VideoEntry {
            key: "kling_2.6".into(),
            label: "Клинг 2.6".into(),
            model: "kling-v2-6".into(),
            durations: vec![
                (5, product("video.kling-2.6.5s")),
                (7, product("video.kling-2.6.5s")),
                (10, product("video.kling-2.6.10s")),
            ],
        }],
    };
    assert_eq!(round_trip(&s).bot, s.bot);
    let reordered = render(&s).replace(
        r#"durations = { 5 = "video.kling-2.6.5s", 7 = "video.kling-2.6.5s", 10 = "video.kling-2.6.10s" }"#,
        r#"durations = { 10 = "video.kling-2.6.10s", 5 = "video.kling-2.6.5s", 7 = "video.kling-2.6.5s" }"#,
    );
    assert!(reordered.contains("10 = \"video.kling-2.6.10s\", 5"), "the replacement applied");
    assert_eq!(parse(&reordered).expect("valid").bot, s.bot);
    s.bot.videos.clear();
    assert_eq!(round_trip(&s).bot.videos, []);
}

#[test]
fn growth_round_trips() {
    // Proves grants of zero (none) and a referral share in hundredths of a percent read back as written.
    let mut s = Settings::shipped();
    s.growth = GrowthSettings { trial: Money::ZERO, referral_join_bonus: money("12.34"), referral_percent_bp: 1_234 };
    assert_eq!(round_trip(&s).growth, s.growth);
    s.growth.referral_percent_bp = 10_000;
    assert_eq!(round_trip(&s).growth, s.growth);
}

#[test]
fn stars_round_trip() {
    // Proves a Stars rate, limits and invoice text unlike the default read back as written.
    let mut s = Settings::shipped();
    s.stars = StarsConfig {
        rub_per_star: money("1.79"),
        min_stars: 10,
        max_stars: 10_000,
        title: "Top-up \"quoted\"".into(),
        description: "Stars → roubles".into(),
    };
    s.bot.star_amounts = vec![10, 10_000];
    assert_eq!(round_trip(&s).stars, s.stars);
}

#[test]
fn each_wrong_value_names_its_key_and_what_is_wrong() {
    // Proves every validation rule refuses a file with an error that names the file, the key and what is wrong.
    let videos: String = (0..14)
        .map(|i| format!("[[bot.videos]]\nkey = \"v{i}\"\nlabel = \"V{i}\"\nmodel = \"kling-v3\"\ndurations = {{ 5 = \"video.kling-3.0.5s\" }}\n\n"))
        .collect();
    let cases: Vec<(&str, String, &str)> = vec![
        // [pricing]
        (
            r#"cost = "3.20""#,
            r#"cost = "3,20""#.into(),
            r#"pricing.products."image.nano-banana".cost: "3,20" is not an amount in roubles (write "3.20")"#,
        ),
        (
            r#"cost = "3.20""#,
            r#"cost = "3.20 ₽""#.into(),
            r#"pricing.products."image.nano-banana".cost: "3.20 ₽" is not an amount in roubles (write "3.20")"#,
        ),
        (
            r#"cost = "3.20""#,
            r#"cost = "lots""#.into(),
            r#"pricing.products."image.nano-banana".cost: "lots" is not an amount in roubles (write roubles as "3.20")"#,
        ),
        (
            r#"cost = "3.20""#,
            "cost = 3.20".into(),
            r#"pricing.products."image.nano-banana".cost: 3.2 is a float: write amounts as strings ("3.20")"#,
        ),
        (
            r#"cost = "3.20""#,
            r#"cost = "0""#.into(),
            r#"pricing.products."image.nano-banana".cost: "0" must be above zero"#,
        ),
        (
            r#"cost = "3.20""#,
            r#"cost = "-3.20""#.into(),
            r#"pricing.products."image.nano-banana".cost: "-3.20" must be above zero"#,
        ),
        (
            "margin_percent = 100",
            "margin_percent = -5".into(),
            r#"pricing.products."image.nano-banana".margin_percent: -5 % is negative"#,
        ),
        (
            "margin_percent = 100",
            "margin_percent = 1.5".into(),
            r#"pricing.products."image.nano-banana".margin_percent: 1.5 is a float: write it as an integer or a string ("1.5")"#,
        ),
        (
            r#"margin_percent = 100, unit = "image""#,
            r#"margin_percent = 100, unit = """#.into(),
            r#"pricing.products."image.nano-banana".unit: a unit name must be 1 to 32 characters"#,
        ),
        (
            r#""image.nano-banana-pro" ="#,
            r#""image nano" ="#.into(),
            r#"pricing.products."image nano": "image nano" is not a product id"#,
        ),
        (
            "margin_floor_percent = 20",
            r#"margin_floor_percent = "x""#.into(),
            r#"pricing.margin_floor_percent: "x" is not a number (write 10 or "12.5")"#,
        ),
        (
            "margin_floor_percent = 20",
            "margin_floor_percent = -1".into(),
            "pricing.margin_floor_percent: -1 % is negative",
        ),
        (
            r#"time_zone = "Europe/Moscow"
# The lowest"#,
            r#"time_zone = "Europe/Mosow"
# The lowest"#
                .into(),
            r#"pricing.time_zone: "Europe/Mosow" is not an IANA time zone"#,
        ),
        (
            "quote_ttl_seconds = 600",
            "quote_ttl_seconds = 0".into(),
            "pricing.quote_ttl_seconds: 0 s must be 1 to 86400 s",
        ),
        (
            "quote_ttl_seconds = 600",
            "quote_ttl_seconds = -1".into(),
            "pricing.quote_ttl_seconds: invalid value: integer `-1`, expected u64",
        ),
        (
            r#"off_peak_multiplier = "1""#,
            r#"off_peak_multiplier = "-1""#.into(),
            "pricing.off_peak_multiplier: -1 must be above zero",
        ),
        (
            "enterprise = 20",
            "enterprise = 100".into(),
            "pricing.tier_discount_percent.enterprise: 100 % must be at least 0 and below 100",
        ),
        (
            "pro = 10",
            "pro = 30".into(),
            "pricing.tier_discount_percent: basic 0 %, pro 30 %, enterprise 20 %: a higher tier must not get less off",
        ),
        (
            r#"days = ["fri", "sat"]"#,
            r#"days = ["fri", "saturday"]"#.into(),
            r#"pricing.peak_windows[1].days: "saturday" is not a day (write mon, tue, wed, thu, fri, sat or sun)"#,
        ),
        (
            r#"days = ["fri", "sat"]"#,
            r#"days = ["fri", "fri"]"#.into(),
            r#"pricing.peak_windows[1].days: "fri" is listed twice"#,
        ),
        (
            r#"days = ["fri", "sat"]"#,
            "days = []".into(),
            "pricing.peak_windows[1].days: no days: the window would never apply",
        ),
        (
            r#"end = "02:00""#,
            r#"end = "2am""#.into(),
            r#"pricing.peak_windows[1].end: "2am" is not a time of day (write "19:00")"#,
        ),
        (r#"end = "02:00""#, r#"end = "24:00""#.into(), r#"pricing.peak_windows[1].end: "24:00" is not a time of day"#),
        (
            r#"multiplier = "0.90""#,
            r#"multiplier = "0""#.into(),
            "pricing.peak_windows[2].multiplier: 0 must be above zero",
        ),
        // [billing]
        ("hold_ttl_seconds = 3600", "hold_ttl_seconds = 0".into(), "billing.hold_ttl_seconds: 0 s is not a duration"),
        (
            "hold_ttl_seconds = 3600",
            "hold_ttl_seconds = 604801".into(),
            "billing.hold_ttl_seconds: 604801 s is longer than the limit of 604800 s",
        ),
        ("jobs_running_max = 2", "jobs_running_max = 0".into(), "billing.jobs_running_max: 0 must be 1 to 1000"),
        (
            r#"# user_hourly = "1000.00""#,
            r#"user_hourly = "-1""#.into(),
            r#"billing.user_hourly: "-1" must be above zero"#,
        ),
        (
            r#"# user_hourly = "1000.00"
# user_daily = "5000.00""#,
            "user_hourly = \"500\"\nuser_daily = \"100\"".into(),
            "billing.user_hourly: 500.00 is above user_daily 100.00",
        ),
        (
            r#"# kling = "20000.00""#,
            r#"klign = "1.00""#.into(),
            r#"billing.provider_budgets.klign: "klign" is not a provider (one of gemini, kling)"#,
        ),
        (
            r#"# kling = "20000.00""#,
            r#"kling = "0.00""#.into(),
            r#"billing.provider_budgets.kling: "0.00" must be above zero"#,
        ),
        // [bot]
        (r#""100.00", "300.00""#, r#""100.00", "100""#.into(), "bot.card_amounts[1]: 100.00 is listed twice"),
        (
            r#""100.00", "300.00""#,
            r#""100.001", "300.00""#.into(),
            r#"bot.card_amounts[0]: "100.001" has more than two decimals"#,
        ),
        (
            r#""100.00", "300.00""#,
            r#""100.00", "2000000""#.into(),
            "bot.card_amounts[1]: 2000000.00 is above the limit of 1000000.00",
        ),
        (
            r#"card_amounts = ["100.00", "300.00", "500.00", "1000.00"]"#,
            "card_amounts = []".into(),
            "bot.card_amounts: 0 amounts: must list 1 to 8",
        ),
        (
            "star_amounts = [50, 100, 250]",
            "star_amounts = [50, 0]".into(),
            "bot.star_amounts[1]: 0 Stars is not a top-up",
        ),
        (
            "star_amounts = [50, 100, 250]",
            "star_amounts = [50, 100, 250000]".into(),
            "bot.star_amounts[2]: 250000 Stars is outside stars.min_stars to stars.max_stars (1 to 100000)",
        ),
        ("prompt_chars_max = 1000", "prompt_chars_max = 0".into(), "bot.prompt_chars_max: 0 must be 1 to 4096"),
        (
            "prompt_chars_max = 1000",
            r#"prompt_chars_max = "many""#.into(),
            r#"bot.prompt_chars_max: invalid type: string "many", expected usize"#,
        ),
        ("download_mb_max = 20", "download_mb_max = 5000".into(), "bot.download_mb_max: 5000 must be 1 to 2000"),
        ("updates_per_minute = 20", "updates_per_minute = 0".into(), "bot.updates_per_minute: 0 must be 1 to 10000"),
        ("update_burst = 10", "update_burst = 0".into(), "bot.update_burst: 0 must be 1 to 1000"),
        ("history_page = 10", "history_page = 100".into(), "bot.history_page: 100 must be 1 to 50"),
        (
            r#"shows.
time_zone = "Europe/Moscow""#,
            r#"shows.
time_zone = "Moscow""#
                .into(),
            r#"bot.time_zone: "Moscow" is not an IANA time zone"#,
        ),
        (
            r#"key = "nano-banana""#,
            r#"key = "Nano Banana""#.into(),
            r#"bot.images[0].key: "Nano Banana" must be 1 to 32 characters of a-z 0-9 . - _"#,
        ),
        (
            r#"key = "kling-2.6""#,
            r#"key = "kling-3.0""#.into(),
            r#"bot.videos[1].key: "kling-3.0" is already the key of bot.videos[0].key"#,
        ),
        (
            r#"key = "kling-2.6""#,
            r#"key = "nano-banana""#.into(),
            r#"bot.videos[1].key: "nano-banana" is already the key of bot.images[0].key"#,
        ),
        (
            r#"label = "Kling 1.5""#,
            r#"label = " ""#.into(),
            r#"bot.videos[2].label: " " must be 1 to 64 characters, not blank"#,
        ),
        (r#"label = "Kling 1.5""#, format!("label = {:?}", "x".repeat(65)), "bot.videos[2].label: \"xxxxx"),
        (
            r#"model = "kling-v1-5""#,
            r#"model = "kling-v9""#.into(),
            r#"bot.videos[2].model: "kling-v9" is not a Kling model the worker runs (kling-v3, kling-v2-6, kling-v1-5)"#,
        ),
        (
            r#"product = "image.nano-banana""#,
            "product = \"image.nano-banana\"\nmodel = \"dall-e\"".into(),
            r#"bot.images[0].model: "dall-e" is not a Gemini model the worker runs (gemini-2.5-flash-image, gemini-3-pro-image-preview)"#,
        ),
        (
            r#"product = "image.nano-banana""#,
            r#"product = "image.x""#.into(),
            r#"bot.images[0].product: image.x is not priced: pricing.products."image.x" is missing"#,
        ),
        (
            r#"product = "image.nano-banana""#,
            r#"product = "image x""#.into(),
            r#"bot.images[0].product: "image x" is not a product id"#,
        ),
        (
            r#"{ 5 = "video.kling-2.6.5s""#,
            r#"{ 0 = "video.kling-2.6.5s""#.into(),
            "bot.videos[1].durations: 0 s is not a duration",
        ),
        (
            r#"10 = "video.kling-1.5.10s""#,
            r#"ten = "video.kling-1.5.10s""#.into(),
            r#"bot.videos[2].durations: "ten" is not a number of seconds"#,
        ),
        (
            r#"10 = "video.kling-1.5.10s""#,
            r#"1000 = "video.kling-1.5.10s""#.into(),
            "bot.videos[2].durations: 1000 s is longer than the limit of 600 s",
        ),
        (
            r#"10 = "video.kling-1.5.10s""#,
            r#"05 = "video.kling-1.5.10s""#.into(),
            "bot.videos[2].durations: 5 s is listed twice",
        ),
        (
            r#"10 = "video.kling-1.5.10s""#,
            r#"10 = "video.kling-1.5.20s""#.into(),
            r#"bot.videos[2].durations.10: video.kling-1.5.20s is not priced: pricing.products."video.kling-1.5.20s" is missing"#,
        ),
        (
            r#"durations = { 5 = "video.kling-1.5.5s", 10 = "video.kling-1.5.10s" }"#,
            "durations = {}".into(),
            "bot.videos[2].durations: 0 durations: must list 1 to 8",
        ),
        ("[growth]", format!("{videos}[growth]"), "bot.videos: 17 video models: must list 0 to 16"),
        // [growth]
        (r#"trial = "30.00""#, r#"trial = "-1""#.into(), r#"growth.trial: "-1" is negative ("0" for none)"#),
        (
            r#"trial = "30.00""#,
            "trial = 30".into(),
            r#"growth.trial: 30 is a number: write amounts as strings ("30.00")"#,
        ),
        ("referral_percent = 10", "referral_percent = 101".into(), "growth.referral_percent: 101 must be 0 to 100"),
        (
            "referral_percent = 10",
            r#"referral_percent = "12.345""#.into(),
            "growth.referral_percent: 12.345 must be 0 to 100 in steps of at most 0.01",
        ),
        // [stars]
        (
            r#"rub_per_star = "1.50""#,
            r#"rub_per_star = "0""#.into(),
            "stars.rub_per_star: 0.00 must be above 0 and at most 1000000.00",
        ),
        (
            "min_stars = 1",
            "min_stars = 200000".into(),
            "stars.min_stars: 200000 to 100000: must be at least 1 and at most max_stars",
        ),
        (r#"title = "Пополнение баланса""#, r#"title = """#.into(), "stars.title: 0 characters: must be 1 to 32"),
    ];
    let mut failures = Vec::new();
    for (find, replace, expected) in &cases {
        let text = shipped_with(find, replace);
        match parse(&text) {
            Ok(_) => failures.push(format!("{replace:?} was accepted")),
            Err(e) => {
                let e = e.to_string();
                if !e.starts_with("test.toml: ") || !e.contains(expected) {
                    failures.push(format!("{replace:?}:\n  got      {e}\n  expected {expected}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn unknown_keys_are_refused_where_they_are() {
    // Proves a key REI does not know is an error naming the table it is in and its line, at every depth: the
    // document, a section, an inline table and an array of tables.
    for (find, replace, expected) in [
        (
            "[bot]",
            "[bot]\ncolour = \"red\"",
            "test.toml: bot.colour: unknown key `colour`, expected one of `card_amounts`",
        ),
        ("[growth]", "[extra]\na = 1\n\n[growth]", "test.toml: extra: unknown key `extra`"),
        (
            r#"margin_percent = 100, unit = "image" }"#,
            r#"margin_percent = 100, unit = "image", vat = 20 }"#,
            r#"test.toml: pricing.products."image.nano-banana".vat: unknown key `vat`"#,
        ),
        (
            r#"model = "kling-v3""#,
            "model = \"kling-v3\"\nmode = \"pro\"",
            "test.toml: bot.videos[0].mode: unknown key `mode`",
        ),
        ("pro = 10", "pro = 10\nvip = 30", "test.toml: pricing.tier_discount_percent.vip: unknown key `vip`"),
    ] {
        let text = shipped_with(find, replace);
        let e = parse(&text).expect_err(replace).to_string();
        assert!(e.starts_with(expected), "{replace:?}: {e}");
        assert!(e.contains("(line "), "names the line: {e}");
    }
}

#[test]
fn a_missing_key_or_broken_toml_is_named() {
    // Proves a required key left out names its table, and text that is not TOML names its line.
    let e = parse(&shipped_with("history_page = 10\n", "")).expect_err("missing").to_string();
    assert!(e.starts_with("test.toml: bot: missing key `history_page`"), "{e}");
    let e = parse(&shipped_with("[bot]", "[bot")).expect_err("syntax").to_string();
    let line = SHIPPED.lines().position(|l| l == "[bot]").expect("a [bot] line") + 1;
    assert!(e.starts_with(&format!("test.toml: line {line}: ")), "{e}");
    let e = parse(&shipped_with("history_page = 10\n", "history_page = 10\nhistory_page = 11\n")).expect_err("twice");
    let line = SHIPPED.lines().position(|l| l == "history_page = 10").expect("the line") + 2;
    assert!(e.to_string().starts_with(&format!("test.toml: line {line}: ")), "{e}");
}

#[test]
fn load_names_the_file_it_cannot_read_and_refuses_a_huge_one() {
    // Proves a missing file and a file over 1 MiB are errors naming the path, and a valid file loads.
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("missing.toml");
    let e = format!("{:#}", Settings::load(Some(&missing)).expect_err("missing"));
    assert!(e.contains("failed to read the settings file") && e.contains(&missing.display().to_string()), "{e}");
    let huge = dir.path().join("huge.toml");
    std::fs::write(&huge, format!("{SHIPPED}\n{}", "#".repeat(1024 * 1024))).expect("write");
    let e = format!("{:#}", Settings::load(Some(&huge)).expect_err("huge"));
    assert!(e.contains("huge.toml: larger than the limit of 1048576 bytes"), "{e}");
    let good = dir.path().join("good.toml");
    std::fs::write(&good, shipped_with("trial = \"30.00\"", "trial = \"5\"")).expect("write");
    assert_eq!(Settings::load(Some(&good)).expect("valid").growth.trial, money("5.00"));
}

#[test]
fn summary_prints_each_off_peak_basic_price_and_the_limits() {
    // Proves `rei config check` shows each product's off-peak basic price (cost x (1 + margin)), the models and the
    // limits of the shipped file.
    let text = summary("rei.toml", &Settings::shipped());
    assert!(text.starts_with("rei.toml: valid\n"), "{text}");
    for (product, price) in [
        ("image.nano-banana", "6.40 RUB"),
        ("image.nano-banana-pro", "19.80 RUB"),
        ("video.kling-2.6.5s", "49.30 RUB"),
        ("video.kling-3.0.10s", "153.00 RUB"),
        ("video.kling-1.5.5s", "34.00 RUB"),
    ] {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{product} ")))
            .unwrap_or_else(|| panic!("{product}: {text}"));
        assert!(line.contains(price), "{line}");
    }
    for part in [
        "nano-banana      \"Nano Banana\"        image.nano-banana (any model)",
        "kling-2.6        \"Kling 2.6\"          kling-v2-6: 5 s video.kling-2.6.5s, 10 s video.kling-2.6.10s",
        "up to 1000 characters",
        "up to 20 MB",
        "20 a minute per user, 10 at once",
        "card 100.00, 300.00, 500.00, 1000.00 RUB; Stars 50, 100, 250",
        "jobs running per user: at most 2",
        "trial 30.00 RUB, join bonus 10.00 RUB, referrals 10 %",
    ] {
        assert!(text.contains(part), "{part:?} in\n{text}");
    }
}
