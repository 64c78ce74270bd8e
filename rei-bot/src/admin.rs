//! The admin commands of the owner and the admins (`ADMIN_IDS`). Every money action goes through the money
//! core's audit path under a key derived from the update that asked for it, so a redelivered command moves money
//! once; a non-admin's money command is refused there (and the refusal audited), any other is refused here.

use std::time::Duration;

use rei_core::billing::{AdminError, AdminRequest};
use rei_core::guards::{Reason, Role};
use rei_core::ids::{IdempotencyKey, JobId, UserId};
use rei_core::jobs::JobState;
use rei_core::members::{GrowthError, Member};
use rei_core::money::Money;
use rei_core::slo::{Slo, evaluate};
use rei_http::webhooks::UpdateError;

use crate::i18n::{JobLine, SloLine, Text};
use crate::{Bot, Ctx, unavailable};

/// Every admin command, with its usage.
const COMMANDS: [(&str, &str); 14] = [
    ("add", "/add <user> <amount> [reason]"),
    ("sub", "/sub <user> <amount> [reason]"),
    ("admin_adjust", "/admin_adjust <user> <±amount> <reason>"),
    ("admin_refund", "/admin_refund <job> [amount]"),
    ("admin_cancel_job", "/admin_cancel_job <job>"),
    ("admin_jobs", "/admin_jobs [running|queued|failed|unknown]"),
    ("ban", "/ban <user> [days]"),
    ("unban", "/unban <user>"),
    ("admin_user", "/admin_user <id|@username|referral code>"),
    ("admin_verify", "/admin_verify"),
    ("admin_slo", "/admin_slo"),
    ("admin_stats", "/admin_stats"),
    ("admin_promo", "/admin_promo <CODE> <amount> <uses> [days]"),
    ("broadcast", "/broadcast <all|active7|active30|paid> [button text | https://link]"),
];

/// `true` for an admin command's name.
pub(crate) fn is_admin_command(name: &str) -> bool {
    COMMANDS.iter().any(|(n, _)| *n == name)
}

fn usage(name: &str) -> &'static str {
    COMMANDS.iter().find(|(n, _)| *n == name).map_or("", |(_, u)| u)
}

/// The commands that move money: refused by the money core itself for a non-admin, so that the attempt is
/// audited.
const MONEY: [&str; 4] = ["add", "sub", "admin_adjust", "admin_refund"];

/// Runs admin command `name`.
pub(crate) async fn command(bot: &Bot, ctx: &Ctx, name: &str, args: &str) -> Result<(), UpdateError> {
    if ctx.role == Role::User && !MONEY.contains(&name) {
        tracing::warn!(user = %ctx.user, command = name, "an admin command from a non-admin: refused");
        return ctx.say(bot, Text::NotAdmin, None).await;
    }
    let words: Vec<&str> = args.split_whitespace().collect();
    let result = match name {
        "add" | "sub" | "admin_adjust" => adjust(bot, ctx, name, &words).await,
        "admin_refund" => refund(bot, ctx, &words).await,
        "admin_cancel_job" => cancel_job(bot, ctx, &words).await,
        "admin_jobs" => jobs(bot, ctx, &words).await,
        "ban" => ban(bot, ctx, &words).await,
        "unban" => unban(bot, ctx, &words).await,
        "admin_user" => user_card(bot, ctx, &words).await,
        "admin_verify" => verify(bot, ctx).await,
        "admin_slo" => slo(bot, ctx).await,
        "admin_stats" => stats(bot, ctx).await,
        "admin_promo" => promo(bot, ctx, &words).await,
        "broadcast" => crate::broadcast::begin(bot, ctx, args).await,
        _ => Err(Outcome::Usage),
    };
    match result {
        Ok(()) => Ok(()),
        Err(Outcome::Usage) => ctx.say(bot, Text::AdminUsage { usage: usage(name) }, None).await,
        Err(Outcome::NotAdmin) => ctx.say(bot, Text::NotAdmin, None).await,
        Err(Outcome::NoUser) => ctx.say(bot, Text::UserNotFound, None).await,
        Err(Outcome::Failed(why)) => ctx.say(bot, Text::AdminFailed { why: &why }, None).await,
        Err(Outcome::Update(e)) => Err(e),
    }
}

/// How a command ended other than done.
pub(crate) enum Outcome {
    /// Wrong arguments.
    Usage,
    /// Refused by role.
    NotAdmin,
    /// The user named is not known.
    NoUser,
    /// The money core refused; the reason for the operator.
    Failed(String),
    /// The update could not be handled now.
    Update(UpdateError),
}

impl From<UpdateError> for Outcome {
    fn from(e: UpdateError) -> Outcome {
        Outcome::Update(e)
    }
}

fn admin_failed(e: AdminError) -> Outcome {
    match e {
        AdminError::Forbidden(_) => Outcome::NotAdmin,
        AdminError::Audit(e) => Outcome::Update(unavailable(e)),
        AdminError::Billing(rei_core::billing::BillingError::Store(e)) => Outcome::Update(unavailable(e)),
        other => Outcome::Failed(other.to_string()),
    }
}

fn growth_failed(e: GrowthError) -> Outcome {
    match e {
        GrowthError::Admin(e) => admin_failed(e),
        GrowthError::Store(e) => Outcome::Update(unavailable(e)),
        other => Outcome::Failed(other.to_string()),
    }
}

/// The request of this update: its actor, role, reason and the key derived from the update's id.
fn request(ctx: &Ctx, reason: &str) -> Result<AdminRequest, Outcome> {
    let reason = Reason::parse(reason).map_err(|e| Outcome::Failed(e.to_string()))?;
    let key = IdempotencyKey::derived("telegram-update", ctx.update_id.to_string())
        .map_err(|e| Outcome::Failed(e.to_string()))?;
    Ok(AdminRequest { actor: ctx.user, role: ctx.role, reason, key })
}

/// The member named by an id, `@username` or a referral code.
async fn find(bot: &Bot, who: &str) -> Result<Member, Outcome> {
    let members = bot.parts.growth.members();
    let found = if let Ok(id) = who.parse::<i64>() {
        members.get(UserId(id)).await
    } else if let Some(name) = who.strip_prefix('@') {
        members.by_username(name).await
    } else {
        members.by_referral_code(who).await
    };
    found.map_err(|e| Outcome::Update(unavailable(e)))?.ok_or(Outcome::NoUser)
}

fn amount(text: &str) -> Result<Money, Outcome> {
    Money::parse(text.trim_start_matches('+')).map_err(|_| Outcome::Usage)
}

async fn adjust(bot: &Bot, ctx: &Ctx, name: &str, words: &[&str]) -> Result<(), Outcome> {
    let (who, value, reason) = match words {
        [who, value, reason @ ..] => (*who, amount(value)?, reason.join(" ")),
        _ => return Err(Outcome::Usage),
    };
    if name == "admin_adjust" && reason.is_empty() {
        return Err(Outcome::Usage);
    }
    let value = match name {
        "sub" => value.checked_neg().filter(|_| value.is_positive()).ok_or(Outcome::Usage)?,
        "add" if !value.is_positive() => return Err(Outcome::Usage),
        _ => value,
    };
    let member = find(bot, who).await?;
    let reason = if reason.is_empty() { format!("telegram /{name}") } else { reason };
    let req = request(ctx, &reason)?;
    bot.parts.engine.admin().adjust(&req, member.user, value).await.map_err(admin_failed)?;
    let balance = bot.parts.engine.billing().balance(member.user).await.map_err(|e| Outcome::Update(unavailable(e)))?;
    let text = Text::AdminAdjusted { user: member.user.0, amount: value, balance: balance.available };
    ctx.say(bot, text, None).await.map_err(Outcome::from)
}

async fn job_of(bot: &Bot, text: &str) -> Result<rei_core::jobs::Job, Outcome> {
    let id = JobId::parse(text).map_err(|_| Outcome::Usage)?;
    bot.parts.engine.jobs().get(id).await.map_err(|e| Outcome::Update(unavailable(e)))?.ok_or(Outcome::Usage)
}

async fn refund(bot: &Bot, ctx: &Ctx, words: &[&str]) -> Result<(), Outcome> {
    let (job, value) = match words {
        [job] => (job_of(bot, job).await?, None),
        [job, value] => (job_of(bot, job).await?, Some(amount(value)?)),
        _ => return Err(Outcome::Usage),
    };
    let value = value.unwrap_or(job.price);
    let req = request(ctx, &format!("telegram /admin_refund {}", job.id))?;
    bot.parts.engine.admin().refund(&req, job.hold, value).await.map_err(admin_failed)?;
    ctx.say(bot, Text::AdminRefunded { job: &job.id.to_string(), amount: value }, None).await.map_err(Outcome::from)
}

async fn cancel_job(bot: &Bot, ctx: &Ctx, words: &[&str]) -> Result<(), Outcome> {
    let [job] = words else { return Err(Outcome::Usage) };
    let job = job_of(bot, job).await?;
    let req = request(ctx, &format!("telegram /admin_cancel_job {}", job.id))?;
    bot.parts.engine.cancel_job(&req, job.id).await.map_err(admin_failed)?;
    ctx.say(bot, Text::AdminJobCancelled { job: &job.id.to_string() }, None).await.map_err(Outcome::from)
}

async fn jobs(bot: &Bot, ctx: &Ctx, words: &[&str]) -> Result<(), Outcome> {
    let state = match words.first().copied().unwrap_or("running") {
        "running" => JobState::Running,
        "queued" => JobState::Queued,
        "failed" => JobState::Failed,
        "unknown" => JobState::Unknown,
        _ => return Err(Outcome::Usage),
    };
    let list = bot.parts.engine.jobs().list(state, None, 20).await.map_err(|e| Outcome::Update(unavailable(e)))?;
    let now = bot.now();
    let lines: Vec<JobLine> = list
        .iter()
        .map(|j| JobLine {
            id: j.id.to_string(),
            user: j.user.0,
            product: j.product.to_string(),
            price: j.price,
            minutes: u64::try_from((now.as_millis() - j.created_at.as_millis()).max(0) / 60_000).unwrap_or(0),
        })
        .collect();
    let state = state.to_string();
    ctx.say(bot, Text::AdminJobs { state: &state, lines: &lines }, None).await.map_err(Outcome::from)
}

async fn ban(bot: &Bot, ctx: &Ctx, words: &[&str]) -> Result<(), Outcome> {
    let (who, days) = match words {
        [who] => (*who, None),
        [who, days] => {
            (*who, Some(days.parse::<u64>().ok().filter(|d| (1..=3_650).contains(d)).ok_or(Outcome::Usage)?))
        }
        _ => return Err(Outcome::Usage),
    };
    let member = find(bot, who).await?;
    if bot.config.role(member.user) != Role::User {
        return Err(Outcome::Failed("admins are not banned: remove them from ADMIN_IDS first".to_owned()));
    }
    let until = days.map(|d| bot.now().plus(Duration::from_secs(d * 86_400)));
    let req = request(ctx, &format!("telegram /ban {}", member.user))?;
    bot.parts.growth.ban(&req, member.user, until).await.map_err(growth_failed)?;
    let until = until.map(|t| bot.local_time(t));
    ctx.say(bot, Text::AdminBanned { user: member.user.0, until: until.as_deref() }, None).await.map_err(Outcome::from)
}

async fn unban(bot: &Bot, ctx: &Ctx, words: &[&str]) -> Result<(), Outcome> {
    let [who] = words else { return Err(Outcome::Usage) };
    let member = find(bot, who).await?;
    let req = request(ctx, &format!("telegram /unban {}", member.user))?;
    bot.parts.growth.unban(&req, member.user).await.map_err(growth_failed)?;
    ctx.say(bot, Text::AdminUnbanned { user: member.user.0 }, None).await.map_err(Outcome::from)
}

async fn user_card(bot: &Bot, ctx: &Ctx, words: &[&str]) -> Result<(), Outcome> {
    let [who] = words else { return Err(Outcome::Usage) };
    let m = find(bot, who).await?;
    let up = |e: &dyn std::fmt::Display| Outcome::Update(unavailable(e));
    let balance = bot.parts.engine.billing().balance(m.user).await.map_err(|e| up(&e))?;
    let referees = bot.parts.growth.members().referee_count(m.user).await.map_err(|e| up(&e))?;
    let now = bot.now();
    let card = Text::AdminUser {
        user: m.user.0,
        username: m.username.as_deref(),
        name: &m.first_name,
        language: &m.language,
        joined: &bot.local_time(m.joined_at),
        seen: &bot.local_time(m.last_seen_at),
        available: balance.available,
        held: balance.held,
        referrer: m.referrer.map(|r| r.0),
        referees,
        paid: m.paid_at.is_some(),
        banned: m.is_banned(now),
        code: &m.referral_code,
    };
    ctx.say(bot, card, None).await.map_err(Outcome::from)
}

async fn verify(bot: &Bot, ctx: &Ctx) -> Result<(), Outcome> {
    let report = bot.parts.engine.billing().verify().await.map_err(|e| Outcome::Update(unavailable(e)))?;
    let text = Text::AdminVerify {
        clean: report.is_clean(),
        transactions: report.transactions,
        drifts: report.drifts.len(),
        unbalanced: report.unbalanced.len(),
        below_floor: report.below_floor.len(),
        total: report.total,
    };
    ctx.say(bot, text, None).await.map_err(Outcome::from)
}

async fn slo(bot: &Bot, ctx: &Ctx) -> Result<(), Outcome> {
    let windows =
        bot.parts.engine.reports().slo_windows(bot.now()).await.map_err(|e| Outcome::Update(unavailable(e)))?;
    let [job_success, payment_success, job_latency] = Slo::defaults();
    let lines: Vec<SloLine> = [
        (job_success, &windows.job_success),
        (payment_success, &windows.payment_success),
        (job_latency, &windows.job_latency),
    ]
    .into_iter()
    .map(|(slo, counts)| {
        let day = counts.get(rei_core::slo::Window::ALL[rei_core::slo::Window::ALL.len() - 1]);
        let alerts = evaluate(&slo, counts);
        SloLine {
            name: slo.name().to_owned(),
            good: day.good(),
            total: day.total(),
            alerts: alerts.iter().map(|a| format!("{:?}", a.rule.severity())).collect::<Vec<_>>().join(", "),
        }
    })
    .collect();
    ctx.say(bot, Text::AdminSlo { lines: &lines }, None).await.map_err(Outcome::from)
}

async fn stats(bot: &Bot, ctx: &Ctx) -> Result<(), Outcome> {
    let now = bot.now();
    let up = |e: &dyn std::fmt::Display| Outcome::Update(unavailable(e));
    let members = bot.parts.growth.members().stats(now).await.map_err(|e| up(&e))?;
    let day = now.minus(Duration::from_secs(86_400));
    let reports = bot.parts.engine.reports();
    let jobs = reports.jobs(day, now.plus(Duration::from_millis(1))).await.map_err(|e| up(&e))?;
    let money = reports.money(day, now.plus(Duration::from_millis(1))).await.map_err(|e| up(&e))?;
    let totals = reports.ledger_totals().await.map_err(|e| up(&e))?;
    let text = Text::AdminStats { members: &members, jobs: &jobs, money: &money, held: totals.held };
    ctx.say(bot, text, None).await.map_err(Outcome::from)
}

async fn promo(bot: &Bot, ctx: &Ctx, words: &[&str]) -> Result<(), Outcome> {
    let (code, value, uses, days) = match words {
        [code, value, uses] => (*code, amount(value)?, *uses, None),
        [code, value, uses, days] => (*code, amount(value)?, *uses, Some(*days)),
        _ => return Err(Outcome::Usage),
    };
    let uses = uses.parse::<u32>().ok().filter(|u| *u > 0).ok_or(Outcome::Usage)?;
    let days =
        days.map(|d| d.parse::<u64>().ok().filter(|d| (1..=3_650).contains(d)).ok_or(Outcome::Usage)).transpose()?;
    let expires = days.map(|d| bot.now().plus(Duration::from_secs(d * 86_400)));
    let req = request(ctx, &format!("telegram /admin_promo {code}"))?;
    let made = bot.parts.growth.create_promo(&req, code, value, uses, expires).await.map_err(growth_failed)?;
    let text = Text::AdminPromo { code: &made.code, amount: made.amount, uses: made.uses_max };
    ctx.say(bot, text, None).await.map_err(Outcome::from)
}
