//! [`MemberStore`](rei_core::members::MemberStore) and [`PromoStore`](rei_core::members::PromoStore) over either
//! engine: `members`, `promo_codes` and `promo_redemptions`.
//!
//! Every member write is one statement. A join inserts (a user who exists inserts nothing, so of concurrent
//! joins exactly one creates) and otherwise refreshes. A redemption is one transaction that reads the code
//! locked (PostgreSQL's `FOR UPDATE`, SQLite's `BEGIN IMMEDIATE` write lock), so two redeems of one code are
//! decided one after the other: the earlier redemption, the expiry and the uses are read after the other one
//! committed.

use std::convert::Infallible;

use rei_core::ids::UserId;
use rei_core::members::{
    Audience, DEFAULT_LANGUAGE, Member, MemberBan, MemberStats, MemberStoreError, PROMO_LIST_LIMIT_MAX, Profile,
    PromoCode, PromoError, Redemption, check_ban, check_language, check_profile, check_promo, check_referral_code,
    normalize_code, page_limit, stats_windows, username_key,
};
use rei_core::time::Timestamp;
use sqlx::error::ErrorKind;

use super::engine::{Engine, EngineTx};
use super::fields::{Fields, RowError, SqlRow};

/// The columns of a `members` row, in the order [`member_from_row`] reads them.
macro_rules! member_columns {
    () => {
        "user_id, username, first_name, language, language_chosen, referral_code, referrer, joined_ms, \
         last_seen_ms, trial_granted, paid_ms, ban_reason, ban_until_ms, blocked_ms"
    };
}
pub(crate) use member_columns;

/// The columns of a `promo_codes` row.
macro_rules! promo_columns {
    () => {
        "code, amount, uses_max, uses, expires_ms, created_by, created_ms"
    };
}
pub(crate) use promo_columns;

/// The statements of the member store in one engine's dialect (placeholders numbered from 1).
pub(crate) struct MemberSql {
    /// Inserts user (1st), username (2nd), first name (3rd), language (4th), referral code (5th), referrer
    /// (6th), joined and seen at (7th); a user who exists inserts nothing.
    pub(crate) insert: &'static str,
    /// Refreshes user (1st): username (2nd), first name (3rd), language (4th; NULL, or chosen: kept), seen at
    /// (5th, never back), and clears the block.
    pub(crate) refresh: &'static str,
    /// The row of user (1st).
    pub(crate) get: &'static str,
    /// The row with referral code (1st).
    pub(crate) by_referral_code: &'static str,
    /// The row seen last whose lower-cased username is the 1st.
    pub(crate) by_username: &'static str,
    /// Moves user (1st)'s last seen to the 2nd (never back) and clears the block.
    pub(crate) seen: &'static str,
    /// Sets user (1st)'s language to the 2nd, chosen.
    pub(crate) set_language: &'static str,
    /// Marks user (1st)'s trial if unmarked.
    pub(crate) mark_trial: &'static str,
    /// Sets user (1st)'s first payment to the 2nd if unset.
    pub(crate) mark_paid: &'static str,
    /// Sets user (1st)'s ban reason (2nd; NULL: no ban) and end (3rd).
    pub(crate) set_ban: &'static str,
    /// Sets user (1st)'s block to the 2nd if unset.
    pub(crate) mark_blocked: &'static str,
    /// Up to the 5th user ids after the 1st (NULL: from the start), ascending, neither blocked nor banned at the
    /// 2nd, seen at or after the 3rd (NULL: any time), paid when the 4th is 1.
    pub(crate) audience: &'static str,
    /// The counts at the 1st, with the windows' starts a day (2nd), a week (3rd) and 30 days (4th) back.
    pub(crate) stats: &'static str,
    /// Up to the 2nd rows of the referees of the 1st, newest first.
    pub(crate) referees: &'static str,
    /// How many referees the 1st has (column `n`).
    pub(crate) referee_count: &'static str,
}

/// The statements of the promo store in one engine's dialect (placeholders numbered from 1).
pub(crate) struct PromoSql {
    /// Inserts code (1st), amount (2nd), uses max (3rd), expiry (4th), creator (5th), created at (6th) with no
    /// uses; a code that exists inserts nothing.
    pub(crate) create: &'static str,
    /// The row of code (1st).
    pub(crate) get: &'static str,
    /// Up to the 1st rows, newest first.
    pub(crate) list: &'static str,
    /// Opens a redemption's transaction.
    pub(crate) begin: &'static str,
    /// The row of code (1st), locked until the transaction ends.
    pub(crate) lock: &'static str,
    /// The `amount` of user (2nd)'s redemption of code (1st).
    pub(crate) redemption: &'static str,
    /// Records user (2nd)'s redemption of code (1st) for amount (3rd) at the 4th.
    pub(crate) record: &'static str,
    /// Counts one more use of code (1st).
    pub(crate) use_code: &'static str,
}

/// A constraint the database fired: a referral code clash is a conflict, a referrer who is not another member
/// (foreign key, check) is invalid; everything else is a failure to reach or use the store.
fn member_error(e: sqlx::Error) -> MemberStoreError {
    if let sqlx::Error::Database(db) = &e {
        match db.kind() {
            ErrorKind::UniqueViolation => return MemberStoreError::Conflict,
            ErrorKind::ForeignKeyViolation | ErrorKind::CheckViolation | ErrorKind::NotNullViolation => {
                return MemberStoreError::Invalid(db.message().to_owned());
            }
            _ => {}
        }
    }
    MemberStoreError::Unavailable { reason: e.to_string() }
}

/// A corrupt row is reported as unavailable: the port has no other failure, and the message names the column.
fn corrupt_member(e: RowError) -> MemberStoreError {
    MemberStoreError::Unavailable { reason: format!("corrupt member row: {e}") }
}

fn promo_unavailable(e: impl ToString) -> PromoError {
    PromoError::Unavailable { reason: e.to_string() }
}

/// A nullable text column, as it is.
fn text_or_null<R: SqlRow>(f: &Fields<'_, R>, column: &'static str) -> Result<Option<String>, RowError> {
    f.parsed_or_null(column, |t| Ok::<_, Infallible>(t.to_owned()))
}

/// A nullable time column.
fn time_or_null<R: SqlRow>(f: &Fields<'_, R>, column: &'static str) -> Result<Option<Timestamp>, RowError> {
    Ok(f.int_or_null(column)?.map(Timestamp::from_millis))
}

/// A 0/1 flag column (an integer in both engines, so one reader serves both).
fn flag<R: SqlRow>(f: &Fields<'_, R>, column: &'static str) -> Result<bool, RowError> {
    match f.int(column)? {
        0 => Ok(false),
        1 => Ok(true),
        n => Err(f.invalid(column, format!("{n} is not 0 or 1"))),
    }
}

/// Rebuilds a member from the [`member_columns`] of a row.
fn member_from_row<R: SqlRow>(row: &R) -> Result<Member, RowError> {
    let f = Fields::new("members", row);
    let ban_until = time_or_null(&f, "ban_until_ms")?;
    Ok(Member {
        user: UserId(f.int("user_id")?),
        username: text_or_null(&f, "username")?,
        first_name: f.text("first_name")?,
        language: f.text("language")?,
        language_chosen: flag(&f, "language_chosen")?,
        referral_code: f.text("referral_code")?,
        referrer: f.int_or_null("referrer")?.map(UserId),
        joined_at: f.time("joined_ms")?,
        last_seen_at: f.time("last_seen_ms")?,
        trial_granted: flag(&f, "trial_granted")?,
        paid_at: time_or_null(&f, "paid_ms")?,
        ban: text_or_null(&f, "ban_reason")?.map(|reason| MemberBan { until: ban_until, reason }),
        blocked_at: time_or_null(&f, "blocked_ms")?,
    })
}

/// Rebuilds a promo code from the [`promo_columns`] of a row.
fn promo_from_row<R: SqlRow>(row: &R) -> Result<PromoCode, RowError> {
    let f = Fields::new("promo_codes", row);
    Ok(PromoCode {
        code: f.text("code")?,
        amount: f.money("amount")?,
        uses_max: f.unsigned("uses_max")?,
        uses: f.unsigned("uses")?,
        expires_at: time_or_null(&f, "expires_ms")?,
        created_by: UserId(f.int("created_by")?),
        created_at: f.time("created_ms")?,
    })
}

/// The member of `sql`'s statement with the one value `key`, if any.
async fn member_by<'q, E: Engine>(
    db: &E,
    sql: &'q str,
    key: super::values::Value<'q>,
) -> Result<Option<Member>, MemberStoreError> {
    let row = db.fetch_optional(sql, vec![key]).await.map_err(member_error)?;
    row.as_ref().map(member_from_row).transpose().map_err(corrupt_member)
}

/// [`MemberStore::join`](rei_core::members::MemberStore::join).
pub(crate) async fn join<E: Engine>(
    db: &E,
    sql: &MemberSql,
    profile: &Profile,
    referral_code: &str,
    referrer: Option<UserId>,
    now: Timestamp,
) -> Result<(Member, bool), MemberStoreError> {
    check_profile(profile)?;
    check_referral_code(referral_code)?;
    let (user, username, first_name) = (profile.user.0, profile.username.as_deref(), profile.first_name.as_str());
    let language = profile.language.as_deref();
    let values = vec![
        user.into(),
        username.into(),
        first_name.into(),
        language.unwrap_or(DEFAULT_LANGUAGE).into(),
        referral_code.into(),
        referrer.map(|r| r.0).into(),
        now.as_millis().into(),
    ];
    let created = db.execute(sql.insert, values).await.map_err(member_error)? > 0;
    if !created {
        let values = vec![user.into(), username.into(), first_name.into(), language.into(), now.as_millis().into()];
        db.execute(sql.refresh, values).await.map_err(member_error)?;
    }
    let member = get(db, sql, profile.user)
        .await?
        .ok_or_else(|| MemberStoreError::Unavailable { reason: format!("member {user} neither inserted nor found") })?;
    Ok((member, created))
}

/// [`MemberStore::get`](rei_core::members::MemberStore::get).
pub(crate) async fn get<E: Engine>(db: &E, sql: &MemberSql, user: UserId) -> Result<Option<Member>, MemberStoreError> {
    member_by(db, sql.get, user.0.into()).await
}

/// [`MemberStore::by_referral_code`](rei_core::members::MemberStore::by_referral_code).
pub(crate) async fn by_referral_code<E: Engine>(
    db: &E,
    sql: &MemberSql,
    code: &str,
) -> Result<Option<Member>, MemberStoreError> {
    member_by(db, sql.by_referral_code, code.into()).await
}

/// [`MemberStore::by_username`](rei_core::members::MemberStore::by_username).
pub(crate) async fn by_username<E: Engine>(
    db: &E,
    sql: &MemberSql,
    username: &str,
) -> Result<Option<Member>, MemberStoreError> {
    member_by(db, sql.by_username, username_key(username).into()).await
}

/// Runs one of the member updates; how many rows it changed.
async fn update<'q, E: Engine>(
    db: &E,
    sql: &'q str,
    values: Vec<super::values::Value<'q>>,
) -> Result<u64, MemberStoreError> {
    db.execute(sql, values).await.map_err(member_error)
}

fn not_a_member(user: UserId) -> MemberStoreError {
    MemberStoreError::Invalid(format!("user {user} is not a member"))
}

/// [`MemberStore::seen`](rei_core::members::MemberStore::seen).
pub(crate) async fn seen<E: Engine>(
    db: &E,
    sql: &MemberSql,
    user: UserId,
    now: Timestamp,
) -> Result<(), MemberStoreError> {
    update(db, sql.seen, vec![user.0.into(), now.as_millis().into()]).await.map(drop)
}

/// [`MemberStore::set_language`](rei_core::members::MemberStore::set_language).
pub(crate) async fn set_language<E: Engine>(
    db: &E,
    sql: &MemberSql,
    user: UserId,
    language: &str,
) -> Result<(), MemberStoreError> {
    check_language(language)?;
    match update(db, sql.set_language, vec![user.0.into(), language.into()]).await? {
        0 => Err(not_a_member(user)),
        _ => Ok(()),
    }
}

/// [`MemberStore::mark_trial`](rei_core::members::MemberStore::mark_trial).
pub(crate) async fn mark_trial<E: Engine>(db: &E, sql: &MemberSql, user: UserId) -> Result<bool, MemberStoreError> {
    Ok(update(db, sql.mark_trial, vec![user.0.into()]).await? > 0)
}

/// [`MemberStore::mark_paid`](rei_core::members::MemberStore::mark_paid).
pub(crate) async fn mark_paid<E: Engine>(
    db: &E,
    sql: &MemberSql,
    user: UserId,
    now: Timestamp,
) -> Result<(), MemberStoreError> {
    update(db, sql.mark_paid, vec![user.0.into(), now.as_millis().into()]).await.map(drop)
}

/// [`MemberStore::set_ban`](rei_core::members::MemberStore::set_ban).
pub(crate) async fn set_ban<E: Engine>(
    db: &E,
    sql: &MemberSql,
    user: UserId,
    ban: Option<&MemberBan>,
) -> Result<(), MemberStoreError> {
    ban.map_or(Ok(()), check_ban)?;
    let reason = ban.map(|b| b.reason.as_str());
    let until = ban.and_then(|b| b.until).map(Timestamp::as_millis);
    match update(db, sql.set_ban, vec![user.0.into(), reason.into(), until.into()]).await? {
        0 => Err(not_a_member(user)),
        _ => Ok(()),
    }
}

/// [`MemberStore::mark_blocked`](rei_core::members::MemberStore::mark_blocked).
pub(crate) async fn mark_blocked<E: Engine>(
    db: &E,
    sql: &MemberSql,
    user: UserId,
    now: Timestamp,
) -> Result<(), MemberStoreError> {
    update(db, sql.mark_blocked, vec![user.0.into(), now.as_millis().into()]).await.map(drop)
}

/// [`MemberStore::audience`](rei_core::members::MemberStore::audience).
pub(crate) async fn audience<E: Engine>(
    db: &E,
    sql: &MemberSql,
    audience: &Audience,
    after: Option<UserId>,
    limit: u32,
    now: Timestamp,
) -> Result<Vec<UserId>, MemberStoreError> {
    let (since, paid) = match audience {
        Audience::All => (None, 0),
        Audience::ActiveSince(since) => (Some(since.as_millis()), 0),
        Audience::Paid => (None, 1),
    };
    let values = vec![
        after.map(|a| a.0).into(),
        now.as_millis().into(),
        since.into(),
        paid.into(),
        i64::from(page_limit(limit)).into(),
    ];
    let rows = db.fetch_all(sql.audience, values).await.map_err(member_error)?;
    let ids = rows.iter().map(|row| Fields::new("members", row).int("user_id").map(UserId));
    ids.collect::<Result<_, _>>().map_err(corrupt_member)
}

/// [`MemberStore::stats`](rei_core::members::MemberStore::stats).
pub(crate) async fn stats<E: Engine>(db: &E, sql: &MemberSql, now: Timestamp) -> Result<MemberStats, MemberStoreError> {
    let [day, week, month] = stats_windows(now).map(Timestamp::as_millis);
    let values = vec![now.as_millis().into(), day.into(), week.into(), month.into()];
    let row = db.fetch_optional(sql.stats, values).await.map_err(member_error)?;
    let row = row.ok_or_else(|| MemberStoreError::Unavailable { reason: "the counts came back empty".to_owned() })?;
    let f = Fields::new("members", &row);
    let read = || -> Result<MemberStats, RowError> {
        Ok(MemberStats {
            total: f.unsigned("total")?,
            joined_since_1d: f.unsigned("joined_1d")?,
            active_1d: f.unsigned("active_1d")?,
            active_7d: f.unsigned("active_7d")?,
            active_30d: f.unsigned("active_30d")?,
            paid: f.unsigned("paid")?,
            banned: f.unsigned("banned")?,
            blocked: f.unsigned("blocked")?,
        })
    };
    read().map_err(corrupt_member)
}

/// [`MemberStore::referees`](rei_core::members::MemberStore::referees).
pub(crate) async fn referees<E: Engine>(
    db: &E,
    sql: &MemberSql,
    referrer: UserId,
    limit: u32,
) -> Result<Vec<Member>, MemberStoreError> {
    let values = vec![referrer.0.into(), i64::from(page_limit(limit)).into()];
    let rows = db.fetch_all(sql.referees, values).await.map_err(member_error)?;
    rows.iter().map(member_from_row).collect::<Result<_, _>>().map_err(corrupt_member)
}

/// [`MemberStore::referee_count`](rei_core::members::MemberStore::referee_count).
pub(crate) async fn referee_count<E: Engine>(
    db: &E,
    sql: &MemberSql,
    referrer: UserId,
) -> Result<u64, MemberStoreError> {
    let row = db.fetch_optional(sql.referee_count, vec![referrer.0.into()]).await.map_err(member_error)?;
    let row = row.ok_or_else(|| MemberStoreError::Unavailable { reason: "the count came back empty".to_owned() })?;
    Fields::new("members", &row).unsigned("n").map_err(corrupt_member)
}

/// [`PromoStore::create`](rei_core::members::PromoStore::create).
pub(crate) async fn create<E: Engine>(db: &E, sql: &PromoSql, code: &PromoCode) -> Result<bool, PromoError> {
    check_promo(code)?;
    let values = vec![
        code.code.as_str().into(),
        code.amount.kopecks().into(),
        i64::from(code.uses_max).into(),
        code.expires_at.map(Timestamp::as_millis).into(),
        code.created_by.0.into(),
        code.created_at.as_millis().into(),
    ];
    Ok(db.execute(sql.create, values).await.map_err(promo_unavailable)? > 0)
}

/// [`PromoStore::get`](rei_core::members::PromoStore::get).
pub(crate) async fn get_promo<E: Engine>(db: &E, sql: &PromoSql, code: &str) -> Result<Option<PromoCode>, PromoError> {
    let Ok(code) = normalize_code(code) else { return Ok(None) };
    let row = db.fetch_optional(sql.get, vec![code.into()]).await.map_err(promo_unavailable)?;
    row.as_ref().map(promo_from_row).transpose().map_err(promo_unavailable)
}

/// [`PromoStore::list`](rei_core::members::PromoStore::list).
pub(crate) async fn list<E: Engine>(db: &E, sql: &PromoSql, limit: u32) -> Result<Vec<PromoCode>, PromoError> {
    let limit = i64::from(limit.min(PROMO_LIST_LIMIT_MAX));
    let rows = db.fetch_all(sql.list, vec![limit.into()]).await.map_err(promo_unavailable)?;
    rows.iter().map(promo_from_row).collect::<Result<_, _>>().map_err(promo_unavailable)
}

/// [`PromoStore::redeem`](rei_core::members::PromoStore::redeem): one transaction with the code's row locked.
/// Every way out but the commit drops the transaction, which rolls it back.
pub(crate) async fn redeem<E: Engine>(
    db: &E,
    sql: &PromoSql,
    code: &str,
    user: UserId,
    now: Timestamp,
) -> Result<Redemption, PromoError> {
    let code = normalize_code(code)?;
    let mut tx = db.transaction(sql.begin).await.map_err(promo_unavailable)?;
    let row = tx.fetch_optional(sql.lock, vec![code.as_str().into()]).await.map_err(promo_unavailable)?;
    let promo = promo_from_row(&row.ok_or(PromoError::Unknown)?).map_err(promo_unavailable)?;
    let key = || vec![code.as_str().into(), user.0.into()];
    if let Some(earlier) = tx.fetch_optional(sql.redemption, key()).await.map_err(promo_unavailable)? {
        let amount = Fields::new("promo_redemptions", &earlier).money("amount").map_err(promo_unavailable)?;
        return Ok(Redemption { amount, first: false });
    }
    if promo.is_expired(now) {
        return Err(PromoError::Expired);
    }
    if promo.uses >= promo.uses_max {
        return Err(PromoError::Exhausted);
    }
    let mut values = key();
    values.extend([promo.amount.kopecks().into(), now.as_millis().into()]);
    tx.execute(sql.record, values).await.map_err(promo_unavailable)?;
    tx.execute(sql.use_code, vec![code.as_str().into()]).await.map_err(promo_unavailable)?;
    tx.commit().await.map_err(promo_unavailable)?;
    Ok(Redemption { amount: promo.amount, first: true })
}

/// Defines an engine's member store `$members` and promo store `$promos` over a `$pool`.
macro_rules! member_stores {
    ($members:ident, $promos:ident, $pool:ty, $member_sql:expr, $promo_sql:expr, $engine:literal) => {
        $crate::sql::stores::engine::pool_store!(
            $members,
            $pool,
            concat!(
                "A [`MemberStore`](rei_core::members::MemberStore) over a ",
                $engine,
                " pool; the schema comes from [`super::migrate`]."
            )
        );
        $crate::sql::stores::engine::pool_store!(
            $promos,
            $pool,
            concat!(
                "A [`PromoStore`](rei_core::members::PromoStore) over a ",
                $engine,
                " pool; the schema comes from [`super::migrate`]."
            )
        );

        #[async_trait::async_trait]
        impl rei_core::members::MemberStore for $members {
            async fn join(
                &self,
                profile: &rei_core::members::Profile,
                referral_code: &str,
                referrer: Option<rei_core::ids::UserId>,
                now: rei_core::time::Timestamp,
            ) -> Result<(rei_core::members::Member, bool), rei_core::members::MemberStoreError> {
                $crate::sql::stores::members::join(&self.pool, &$member_sql, profile, referral_code, referrer, now)
                    .await
            }

            async fn get(
                &self,
                user: rei_core::ids::UserId,
            ) -> Result<Option<rei_core::members::Member>, rei_core::members::MemberStoreError> {
                $crate::sql::stores::members::get(&self.pool, &$member_sql, user).await
            }

            async fn by_referral_code(
                &self,
                code: &str,
            ) -> Result<Option<rei_core::members::Member>, rei_core::members::MemberStoreError> {
                $crate::sql::stores::members::by_referral_code(&self.pool, &$member_sql, code).await
            }

            async fn by_username(
                &self,
                username: &str,
            ) -> Result<Option<rei_core::members::Member>, rei_core::members::MemberStoreError> {
                $crate::sql::stores::members::by_username(&self.pool, &$member_sql, username).await
            }

            async fn seen(
                &self,
                user: rei_core::ids::UserId,
                now: rei_core::time::Timestamp,
            ) -> Result<(), rei_core::members::MemberStoreError> {
                $crate::sql::stores::members::seen(&self.pool, &$member_sql, user, now).await
            }

            async fn set_language(
                &self,
                user: rei_core::ids::UserId,
                language: &str,
            ) -> Result<(), rei_core::members::MemberStoreError> {
                $crate::sql::stores::members::set_language(&self.pool, &$member_sql, user, language).await
            }

            async fn mark_trial(
                &self,
                user: rei_core::ids::UserId,
            ) -> Result<bool, rei_core::members::MemberStoreError> {
                $crate::sql::stores::members::mark_trial(&self.pool, &$member_sql, user).await
            }

            async fn mark_paid(
                &self,
                user: rei_core::ids::UserId,
                now: rei_core::time::Timestamp,
            ) -> Result<(), rei_core::members::MemberStoreError> {
                $crate::sql::stores::members::mark_paid(&self.pool, &$member_sql, user, now).await
            }

            async fn set_ban(
                &self,
                user: rei_core::ids::UserId,
                ban: Option<&rei_core::members::MemberBan>,
            ) -> Result<(), rei_core::members::MemberStoreError> {
                $crate::sql::stores::members::set_ban(&self.pool, &$member_sql, user, ban).await
            }

            async fn mark_blocked(
                &self,
                user: rei_core::ids::UserId,
                now: rei_core::time::Timestamp,
            ) -> Result<(), rei_core::members::MemberStoreError> {
                $crate::sql::stores::members::mark_blocked(&self.pool, &$member_sql, user, now).await
            }

            async fn audience(
                &self,
                audience: &rei_core::members::Audience,
                after: Option<rei_core::ids::UserId>,
                limit: u32,
                now: rei_core::time::Timestamp,
            ) -> Result<Vec<rei_core::ids::UserId>, rei_core::members::MemberStoreError> {
                $crate::sql::stores::members::audience(&self.pool, &$member_sql, audience, after, limit, now).await
            }

            async fn stats(
                &self,
                now: rei_core::time::Timestamp,
            ) -> Result<rei_core::members::MemberStats, rei_core::members::MemberStoreError> {
                $crate::sql::stores::members::stats(&self.pool, &$member_sql, now).await
            }

            async fn referees(
                &self,
                referrer: rei_core::ids::UserId,
                limit: u32,
            ) -> Result<Vec<rei_core::members::Member>, rei_core::members::MemberStoreError> {
                $crate::sql::stores::members::referees(&self.pool, &$member_sql, referrer, limit).await
            }

            async fn referee_count(
                &self,
                referrer: rei_core::ids::UserId,
            ) -> Result<u64, rei_core::members::MemberStoreError> {
                $crate::sql::stores::members::referee_count(&self.pool, &$member_sql, referrer).await
            }
        }

        #[async_trait::async_trait]
        impl rei_core::members::PromoStore for $promos {
            async fn create(&self, code: &rei_core::members::PromoCode) -> Result<bool, rei_core::members::PromoError> {
                $crate::sql::stores::members::create(&self.pool, &$promo_sql, code).await
            }

            async fn get(
                &self,
                code: &str,
            ) -> Result<Option<rei_core::members::PromoCode>, rei_core::members::PromoError> {
                $crate::sql::stores::members::get_promo(&self.pool, &$promo_sql, code).await
            }

            async fn list(
                &self,
                limit: u32,
            ) -> Result<Vec<rei_core::members::PromoCode>, rei_core::members::PromoError> {
                $crate::sql::stores::members::list(&self.pool, &$promo_sql, limit).await
            }

            async fn redeem(
                &self,
                code: &str,
                user: rei_core::ids::UserId,
                now: rei_core::time::Timestamp,
            ) -> Result<rei_core::members::Redemption, rei_core::members::PromoError> {
                $crate::sql::stores::members::redeem(&self.pool, &$promo_sql, code, user, now).await
            }
        }
    };
}
pub(crate) use member_stores;
