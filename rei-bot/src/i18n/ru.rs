//! Русский каталог.

use std::fmt::Write as _;

use super::{AudienceName, BreakdownItem, ButtonText, HistoryKind, QuoteMode, Text, rub};

pub(super) fn text(text: &Text<'_>) -> String {
    match text {
        Text::Welcome { name, balance } => format!(
            "Привет, {name}! Я рисую картинки (Nano Banana) и снимаю видео (Kling).\n\n\
             Напишите, что нарисовать, или пришлите фото с подписью — я его отредактирую. \
             Для видео — /video.\n\nБаланс: {}",
            rub(*balance)
        ),
        Text::TrialGranted { amount } => format!("🎁 Подарок новичку: {} на баланс.", rub(*amount)),
        Text::ReferralJoined { bonus: Some(bonus) } => {
            format!("🎉 По вашей ссылке пришёл новый пользователь. Бонус: {}.", rub(*bonus))
        }
        Text::ReferralJoined { bonus: None } => "🎉 По вашей ссылке пришёл новый пользователь.".to_owned(),
        Text::ReferralTopUp { bonus } => format!("💸 Ваш приглашённый пополнил баланс. Ваш бонус: {}.", rub(*bonus)),
        Text::Balance { available, held, referral_link, referees } => {
            let mut out = format!("💰 Баланс: {}", rub(*available));
            if !held.is_zero() {
                let _ = write!(out, "\nЗарезервировано под задачи: {}", rub(*held));
            }
            let _ = write!(out, "\n\nВаша реферальная ссылка: {referral_link}\nПриглашено: {referees}");
            out
        }
        Text::TopUpChoose => "Выберите сумму пополнения: картой (ЮKassa) или звёздами Telegram.".to_owned(),
        Text::TopUpLink { amount } => {
            format!("Счёт на {} создан. Оплатите по кнопке — баланс пополнится сам.", rub(*amount))
        }
        Text::TopUpStarsSent { stars, amount } => format!("Счёт на {stars} ⭐ ({}) отправлен.", rub(*amount)),
        Text::StarsCredited { amount, stars } => format!("✅ Баланс пополнен на {} ({stars} ⭐).", rub(*amount)),
        Text::CardCredited { amount } => format!("✅ Баланс пополнен на {}.", rub(*amount)),
        Text::TopUpUnavailable => "Этот способ оплаты сейчас не подключён. Попробуйте другой.".to_owned(),
        Text::TopUpFailed => "Платёжный сервис не ответил. Деньги не списаны — попробуйте через минуту.".to_owned(),
        Text::HistoryEmpty => "История пуста: операций ещё не было.".to_owned(),
        Text::History { lines } => {
            let mut out = "📜 Операции (новые сверху):".to_owned();
            for line in *lines {
                let kind = match line.kind {
                    HistoryKind::TopUp => "пополнение",
                    HistoryKind::Hold => "резерв",
                    HistoryKind::Charge => "оплата генерации",
                    HistoryKind::Release => "возврат резерва",
                    HistoryKind::Refund => "возврат",
                    HistoryKind::CardRefund => "возврат на карту",
                    HistoryKind::Adjust => "начисление",
                };
                let sign = if line.amount.is_negative() { "" } else { "+" };
                let _ = write!(out, "\n{} · {kind} · {sign}{}", line.when, rub(line.amount));
            }
            out
        }
        Text::LangChoose => "Выберите язык / Choose a language:".to_owned(),
        Text::LangSet => "Готово: теперь я говорю по-русски.".to_owned(),
        Text::Help => "Как пользоваться:\n\
             • напишите, что нарисовать — пришлю цену и после подтверждения картинку;\n\
             • пришлите фото с подписью — отредактирую его;\n\
             • /video — видео из текста или фото (Kling 3.0, 2.6, 1.5; 5 или 10 секунд);\n\
             • /balance — баланс и реферальная ссылка, /topup — пополнить, /history — операции;\n\
             • /promo КОД — промокод, /lang — язык.\n\n\
             Деньги списываются только за готовый результат; при ошибке резерв возвращается."
            .to_owned(),
        Text::ShortHelp => {
            "Я понимаю текст (что нарисовать), фото с подписью (что изменить) и команды: /help.".to_owned()
        }
        Text::Quote { what, mode, price, breakdown, minutes } => {
            let mode = match mode {
                QuoteMode::Generate => "генерация изображения",
                QuoteMode::Edit => "редактирование фото",
                QuoteMode::VideoText => "видео по описанию",
                QuoteMode::VideoImage => "видео из фото",
                QuoteMode::VideoVideo => "продолжение видео",
            };
            let mut out = format!("🧾 {what}: {mode}\nЦена: {}", rub(*price));
            for line in *breakdown {
                let name = match line.what {
                    BreakdownItem::Cost => "стоимость модели",
                    BreakdownItem::Margin => "сервис",
                    BreakdownItem::Time => "время суток",
                    BreakdownItem::Discount => "скидка",
                };
                let _ = write!(out, "\n  {name}: {}", rub(line.amount));
            }
            let _ = write!(out, "\nЦена действует {minutes} мин. Списание — только за готовый результат.");
            out
        }
        Text::Working => "⏳ Принято, работаю. Пришлю результат, как только он будет готов.".to_owned(),
        Text::Delivered => "✨ Готово!".to_owned(),
        Text::Failed { reason } => format!("😔 Не получилось: {reason}. Деньги вернулись на баланс."),
        Text::JobCancelled => "Задача отменена, деньги вернулись на баланс.".to_owned(),
        Text::QuoteCancelled => "Отменено. Ничего не списано.".to_owned(),
        Text::QuoteGone => "Эта кнопка уже не действует. Пришлите запрос заново.".to_owned(),
        Text::QuoteExpired => "Цена устарела. Пришлите запрос заново — я посчитаю новую.".to_owned(),
        Text::AlreadyConfirmed => "Уже подтверждено — работаю над этим.".to_owned(),
        Text::NotEnough { available, required } => {
            format!("Не хватает денег: нужно {}, на балансе {}. Пополните баланс.", rub(*required), rub(*available))
        }
        Text::CapReached { daily: true, cap } => {
            format!("Достигнут дневной лимит трат ({}). Он обновится в течение суток.", rub(*cap))
        }
        Text::CapReached { daily: false, cap } => {
            format!("Достигнут часовой лимит трат ({}). Он обновится в течение часа.", rub(*cap))
        }
        Text::TooManyJobs { max } => {
            format!("Сейчас выполняется {max} задач(и) — это максимум. Дождитесь результата одной из них.")
        }
        Text::RateLimited { seconds } => format!("Слишком часто. Подождите, пожалуйста, {seconds} с."),
        Text::TryLater => "Что-то пошло не так на нашей стороне. Ничего не списано — попробуйте ещё раз.".to_owned(),
        Text::TooLong { max } => format!("Слишком длинное сообщение: не больше {max} символов."),
        Text::FileTooBig { max_mb } => format!("Файл слишком большой: не больше {max_mb} МБ."),
        Text::NotAnImage => "Этот файл не изображение. Пришлите JPG, PNG или WEBP.".to_owned(),
        Text::VideoModel => "🎬 Выберите модель Kling:".to_owned(),
        Text::VideoDuration { model } => format!("{model}: выберите длительность."),
        Text::VideoPrompt { model, seconds } => format!(
            "{model}, {seconds} с. Пришлите описание видео, фото (оживлю его) или видео, которое я сделал раньше \
             (продолжу его)."
        ),
        Text::VideoInputUnknown => {
            "Я могу продолжить только видео, которое сделал сам. Пришлите описание или фото.".to_owned()
        }
        Text::PromoUsage => "Пришлите код так: /promo КОД".to_owned(),
        Text::PromoRedeemed { amount } => format!("🎁 Промокод принят: {} на баланс.", rub(*amount)),
        Text::PromoAgain => "Этот промокод вы уже использовали.".to_owned(),
        Text::PromoUnknown => "Такого промокода нет.".to_owned(),
        Text::PromoExpired => "Срок действия промокода истёк.".to_owned(),
        Text::PromoExhausted => "Промокод закончился.".to_owned(),
        Text::NotAdmin => "Эта команда только для администраторов.".to_owned(),
        Text::AdminUsage { usage } => format!("Использование: {usage}"),
        Text::AdminDone { what } => format!("✅ {what}"),
        Text::AdminFailed { why } => format!("❌ {why}"),
        Text::BroadcastPreview { audience } => {
            let who = match audience {
                AudienceName::All => "всем пользователям",
                AudienceName::Active7 => "активным за 7 дней",
                AudienceName::Active30 => "активным за 30 дней",
                AudienceName::Paid => "платившим пользователям",
            };
            format!("Так будет выглядеть рассылка {who}. Отправить?")
        }
        Text::BroadcastProgress { sent, failed, blocked, done, cancelled } => {
            let state = match (done, cancelled) {
                (_, true) => "Рассылка остановлена",
                (true, false) => "Рассылка завершена",
                (false, false) => "Рассылка идёт",
            };
            format!("📣 {state}: отправлено {sent}, ошибок {failed}, заблокировали бота {blocked}.")
        }
        Text::PhotoNeedsCaption => "Добавьте к фото подпись: что в нём изменить.".to_owned(),
        Text::UserNotFound => "Пользователь не найден.".to_owned(),
        Text::AdminAdjusted { user, amount, balance } => {
            format!("✅ Баланс {user} изменён на {}. Теперь: {}.", rub(*amount), rub(*balance))
        }
        Text::AdminRefunded { job, amount } => format!("✅ Возврат {} по задаче {job}.", rub(*amount)),
        Text::AdminJobCancelled { job } => format!("✅ Задача {job} отменена, резерв возвращён."),
        Text::AdminJobs { state, lines } => {
            let mut out = format!("Задачи ({state}): {}", lines.len());
            for l in *lines {
                let _ = write!(out, "\n{} · {} · {} · {} · {} мин", l.id, l.user, l.product, rub(l.price), l.minutes);
            }
            out
        }
        Text::AdminBanned { user, until: Some(until) } => format!("✅ {user} заблокирован до {until}."),
        Text::AdminBanned { user, until: None } => format!("✅ {user} заблокирован бессрочно."),
        Text::AdminUnbanned { user } => format!("✅ {user} разблокирован."),
        Text::AdminUser {
            user,
            username,
            name,
            language,
            joined,
            seen,
            available,
            held,
            referrer,
            referees,
            paid,
            banned,
            code,
        } => {
            let mut out = format!("👤 {name} ({user}");
            if let Some(u) = username {
                let _ = write!(out, ", @{u}");
            }
            let _ = write!(
                out,
                ")\nЯзык: {language}\nС нами с {joined}, был(а) {seen}\nБаланс: {}, в резерве {}\n\
                 Реферальный код: {code}, пригласил(а): {referees}",
                rub(*available),
                rub(*held)
            );
            if let Some(r) = referrer {
                let _ = write!(out, "\nПриглашён(а): {r}");
            }
            let _ = write!(out, "\nПлатил(а): {}\nЗаблокирован(а): {}", yes(*paid), yes(*banned));
            out
        }
        Text::AdminVerify { clean, transactions, drifts, unbalanced, below_floor, total } => format!(
            "{} Проверка журнала: {transactions} транзакций, расхождений {drifts}, несбалансированных {unbalanced}, \
             ниже порога {below_floor}, сумма счетов {}.",
            if *clean { "✅" } else { "🚨" },
            rub(*total)
        ),
        Text::AdminSlo { lines } => {
            let mut out = "SLO (за 3 дня):".to_owned();
            for l in *lines {
                let alerts = if l.alerts.is_empty() {
                    "нет тревог".to_owned()
                } else {
                    format!("тревоги: {}", l.alerts)
                };
                let _ = write!(out, "\n{}: {} из {} хороших, {alerts}", l.name, l.good, l.total);
            }
            out
        }
        Text::AdminStats { members, jobs, money, held } => format!(
            "📊 Пользователи: {} (новых за сутки {}), активных 1/7/30 дн.: {}/{}/{}, платили {}, заблокированы {}, \
             заблокировали бота {}\nЗа сутки: задач {} готово, {} ошибок, {} в очереди, {} выполняется\n\
             Пополнения {} ({}), выручка {}, возвраты {}, себестоимость {}, маржа {}\nВ резерве сейчас: {}",
            members.total,
            members.joined_since_1d,
            members.active_1d,
            members.active_7d,
            members.active_30d,
            members.paid,
            members.banned,
            members.blocked,
            jobs.succeeded,
            jobs.failed,
            jobs.queued,
            jobs.running,
            rub(money.top_ups),
            money.top_up_count,
            rub(money.revenue),
            rub(money.refunds),
            rub(money.provider_cost),
            rub(money.margin()),
            rub(*held)
        ),
        Text::AdminPromo { code, amount, uses } => format!("✅ Промокод {code}: {} × {uses}.", rub(*amount)),
        Text::BroadcastAsk => "Пришлите текст рассылки или фото с подписью.".to_owned(),
        Text::BroadcastDropped => "Черновик рассылки удалён.".to_owned(),
        Text::Button(label) => button(*label),
    }
}

fn button(label: ButtonText) -> String {
    match label {
        ButtonText::Image => "🖼 Картинка".to_owned(),
        ButtonText::Video => "🎬 Видео".to_owned(),
        ButtonText::Balance => "💰 Баланс".to_owned(),
        ButtonText::TopUp => "➕ Пополнить".to_owned(),
        ButtonText::History => "📜 История".to_owned(),
        ButtonText::Language => "🌐 Язык".to_owned(),
        ButtonText::Help => "❓ Помощь".to_owned(),
        ButtonText::Confirm(price) => format!("✅ Подтвердить · {}", rub(price)),
        ButtonText::Cancel => "❌ Отмена".to_owned(),
        ButtonText::Card(amount) => format!("💳 {}", rub(amount)),
        ButtonText::Stars(stars) => format!("⭐ {stars}"),
        ButtonText::Pay => "Оплатить".to_owned(),
        ButtonText::Older => "⬅️ Раньше".to_owned(),
        ButtonText::Send => "📣 Отправить".to_owned(),
        ButtonText::Stop => "⏹ Остановить".to_owned(),
        ButtonText::Seconds(s) => format!("{s} с"),
    }
}

fn yes(b: bool) -> &'static str {
    if b { "да" } else { "нет" }
}
