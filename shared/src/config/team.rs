//! Who takes leads: teams with their hours and after-hours policy, reps with their own hours,
//! capacity, leave and alert channels, pools with their fairness policy, and queues. Where
//! leads go among them is `[routing]` ([`super::rules`]).

use secrecy::SecretString;
use serde::Deserialize;
use toml::Spanned;

use super::load::Env;
use super::notify::{check_hubspot_id, check_url};
use super::rules::{Known, TargetConfig};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamConfig {
    pub id: String,
    pub name: String,
    /// IANA time zone of the team's working hours and holidays, such as `Europe/Berlin`.
    pub timezone: String,
    /// Opening hours, such as `["mon-fri 09:00-17:30"]`; reps inherit them unless they set
    /// their own.
    #[serde(default)]
    pub hours: Vec<String>,
    /// Days the team is closed (`YYYY-MM-DD`, in the team's time zone).
    #[serde(default)]
    pub holidays: Vec<String>,
    /// The team queue: the fallback-chain step after a rep and their backup.
    #[serde(default)]
    pub queue: Option<String>,
    /// What happens to a lead for this team while it is closed.
    #[serde(default)]
    pub after_hours: AfterHoursPolicy,
    /// Where `after_hours = "on_call"` sends leads.
    #[serde(default)]
    pub on_call: Option<Spanned<TargetConfig>>,
    /// With `[notify.slack]`: the team's Slack channel id (`C0123ABCD`), where its reps'
    /// alerts are posted with the owner @-mentioned instead of in each rep's DM.
    #[serde(default)]
    pub slack_channel: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AfterHoursPolicy {
    /// Reps off shift are skipped like any unavailable rep: backup, then team queue.
    #[default]
    Fallback,
    /// Route at once to the team's `on_call` target (a follow-the-sun pool, an on-call rep).
    OnCall,
    /// Keep the usual owner; hold their alert until the next opening, where the SLA starts.
    Hold,
}

impl AfterHoursPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            AfterHoursPolicy::Fallback => "fallback",
            AfterHoursPolicy::OnCall => "on_call",
            AfterHoursPolicy::Hold => "hold",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Weighted round robin over the pool's ledger.
    #[default]
    RoundRobin,
    /// Fewest open leads; the ledger breaks ties.
    LeastLoaded,
    /// Every available member is alerted; the first to claim owns the lead.
    Broadcast,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::RoundRobin => "round_robin",
            Strategy::LeastLoaded => "least_loaded",
            Strategy::Broadcast => "broadcast",
        }
    }
}

/// When a pool's ledger starts again from zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResetPeriod {
    Never,
    Daily,
    #[default]
    Weekly,
    Monthly,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    pub id: String,
    pub name: String,
    /// The team whose hours, after-hours policy and queue apply to this pool.
    #[serde(default)]
    pub team: Option<String>,
    #[serde(default)]
    pub strategy: Strategy,
    pub members: Vec<Spanned<MemberConfig>>,
    /// A member back from leave is owed the leads they missed (true), or starts level (false).
    #[serde(default)]
    pub catch_up: bool,
    #[serde(default)]
    pub reset: ResetPeriod,
    /// Leads a member gets by account ownership count as their turns.
    #[serde(default)]
    pub count_account_owned: bool,
    /// Where leads go when no member can take one; defaults to the team queue.
    #[serde(default)]
    pub overflow_queue: Option<String>,
    /// Who may claim the pool's leads (`owner`, `team`, `anyone`).
    #[serde(default)]
    pub claim: Option<super::ClaimPolicy>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberConfig {
    pub rep: String,
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepConfig {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub email: Option<String>,
    /// Alert the rep (and, as a queue manager, their queues' leads) by e-mail at `email`;
    /// needs `[notify.email]`.
    #[serde(default)]
    pub alert_email: bool,
    #[serde(default)]
    pub slack_webhook_url: Option<SecretString>,
    /// An environment variable (on AWS: an SSM SecureString) holding the Slack webhook URL.
    #[serde(default)]
    pub slack_webhook_url_env: Option<String>,
    /// The rep's Slack member id (`U0123ABCD`): who they are when they press Claim, and who
    /// `[notify.slack]` alerts (without it, the rep is found by `email`).
    #[serde(default)]
    pub slack_user_id: Option<String>,
    /// With `[notify.slack]`: a channel id to post the rep's alerts in (with an @-mention)
    /// instead of the team's channel or the rep's DM.
    #[serde(default)]
    pub slack_channel: Option<String>,
    /// A Teams Workflows ("Post to a channel when a webhook request is received") URL.
    #[serde(default)]
    pub teams_webhook_url: Option<SecretString>,
    #[serde(default)]
    pub teams_webhook_url_env: Option<String>,
    /// The rep's mobile number in E.164 (`+447700900123`), for tier-1 SMS alerts.
    #[serde(default)]
    pub phone: Option<String>,
    /// The rep's HubSpot owner id, set on the contact when `[notify.hubspot]` is configured.
    #[serde(default)]
    pub hubspot_owner_id: Option<String>,
    /// The rep's Salesforce user id (`005…`): the owner of their Leads and Tasks when
    /// `[notify.salesforce]` is configured.
    #[serde(default)]
    pub salesforce_user_id: Option<String>,
    /// The team whose hours, holidays, after-hours policy and queue apply.
    #[serde(default)]
    pub team: Option<String>,
    /// The rep's own IANA time zone; defaults to the team's.
    #[serde(default)]
    pub timezone: Option<String>,
    /// The rep's own working hours (`["mon-thu 08:00-16:00"]`); default to the team's.
    #[serde(default)]
    pub hours: Option<Vec<String>>,
    /// Most open leads the rep holds at once; skipped by routing at the cap.
    #[serde(default)]
    pub capacity: Option<u32>,
    /// Who takes the rep's leads while they cannot.
    #[serde(default)]
    pub backup: Option<String>,
    /// Dates away, each `YYYY-MM-DD` or `YYYY-MM-DD..YYYY-MM-DD` (inclusive, rep's time zone).
    #[serde(default)]
    pub out_of_office: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    pub id: String,
    pub name: String,
    /// The rep alerted when a lead lands in this queue.
    #[serde(default)]
    pub manager: Option<Spanned<String>>,
    #[serde(default)]
    pub slack_webhook_url: Option<SecretString>,
    #[serde(default)]
    pub slack_webhook_url_env: Option<String>,
    #[serde(default)]
    pub teams_webhook_url: Option<SecretString>,
    #[serde(default)]
    pub teams_webhook_url_env: Option<String>,
    /// With `[notify.slack]`: the queue's Slack channel id, where its leads are posted.
    #[serde(default)]
    pub slack_channel: Option<String>,
    /// Who may claim a lead while it sits in this queue (`owner`: the manager only; `team`;
    /// `anyone`).
    #[serde(default)]
    pub claim: Option<super::ClaimPolicy>,
    /// With `[notify.hubspot]`: the HubSpot owner id the queue's leads are given (a shared
    /// inbox user, the queue's manager); else `[notify.hubspot] default_owner_id`.
    #[serde(default)]
    pub hubspot_owner_id: Option<String>,
    /// With `[notify.hubspot]`: the HubSpot team id (`hubspot_team_id`) the queue's contacts
    /// are given, so the team sees them while nobody owns them yet.
    #[serde(default)]
    pub hubspot_team_id: Option<String>,
    /// The Salesforce queue (`00G…`) that owns the Leads of this queue when
    /// `[notify.salesforce]` is configured.
    #[serde(default)]
    pub salesforce_queue_id: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Validation: every reference resolves, every schedule parses, no pool is empty, and every
// alert channel a rep or queue names resolves.

use std::collections::HashSet;
use std::ops::Range;

use super::{Config, ConfigError, Validator};
use crate::calendar::{parse_date_range, parse_time_zone, WeeklyHours};

impl Validator<'_> {
    /// Teams, then the reps' calendars and backups, then pools.
    pub(super) fn check_team(&self, config: &Config, known: &Known<'_>) -> Result<(), ConfigError> {
        let team_ids = self.check_teams(&config.teams, known)?;
        for (index, rep) in config.reps.iter().enumerate() {
            self.check_rep(rep, index, &team_ids, known.reps)?;
        }
        self.check_pools(&config.pools, &team_ids, known)
    }

    /// Ids unique, calendars valid, queues known; then the on-call targets, which may name a
    /// pool.
    fn check_teams(
        &self,
        teams: &[Spanned<TeamConfig>],
        known: &Known<'_>,
    ) -> Result<HashSet<String>, ConfigError> {
        let mut team_ids = HashSet::new();
        for (index, team) in teams.iter().enumerate() {
            let span = team.span();
            let t = team.get_ref();
            let key = format!("teams[{index}] ({:?})", t.id);
            if !team_ids.insert(t.id.clone()) {
                return Err(self.invalid(
                    span,
                    format!("{key}.id"),
                    format!("duplicate team id {:?}", t.id),
                ));
            }
            parse_time_zone(&t.timezone)
                .map_err(|m| self.invalid(span.clone(), format!("{key}.timezone"), m))?;
            WeeklyHours::parse(&t.hours)
                .map_err(|m| self.invalid(span.clone(), format!("{key}.hours"), m))?;
            for (n, day) in t.holidays.iter().enumerate() {
                parse_date_range(day)
                    .map_err(|m| self.invalid(span.clone(), format!("{key}.holidays[{n}]"), m))?;
            }
            if let Some(queue) = &t.queue {
                if !known.queues.contains(queue) {
                    return Err(self.invalid(
                        span,
                        format!("{key}.queue"),
                        format!("unknown queue {queue:?}"),
                    ));
                }
            }
            self.check_after_hours(t, span, &key)?;
        }
        for (index, team) in teams.iter().enumerate() {
            let t = team.get_ref();
            if let Some(target) = &t.on_call {
                let key = format!("teams[{index}] ({:?}).on_call", t.id);
                self.check_target(target, &key, known)?;
            }
        }
        Ok(team_ids)
    }

    /// `after_hours = "on_call"` needs a target, and an on-call target is never the account
    /// owner.
    fn check_after_hours(
        &self,
        t: &TeamConfig,
        span: Range<usize>,
        key: &str,
    ) -> Result<(), ConfigError> {
        match (&t.after_hours, &t.on_call) {
            (AfterHoursPolicy::OnCall, None) => Err(self.invalid(
                span,
                format!("{key}.on_call"),
                "after_hours = \"on_call\" needs an on_call target (rep, pool or queue)",
            )),
            (_, Some(target)) if target.get_ref().account_owner.is_some() => Err(self.invalid(
                target.span(),
                format!("{key}.on_call"),
                "on_call takes a rep, pool or queue",
            )),
            _ => Ok(()),
        }
    }

    /// A rep's team, own calendar, capacity and backup.
    fn check_rep(
        &self,
        rep: &Spanned<RepConfig>,
        index: usize,
        team_ids: &HashSet<String>,
        rep_ids: &HashSet<String>,
    ) -> Result<(), ConfigError> {
        let span = rep.span();
        let r = rep.get_ref();
        let key = format!("reps[{index}] ({:?})", r.id);
        if let Some(team) = &r.team {
            if !team_ids.contains(team) {
                return Err(self.invalid(
                    span,
                    format!("{key}.team"),
                    format!("unknown team {team:?}"),
                ));
            }
        }
        if let Some(tz) = &r.timezone {
            parse_time_zone(tz)
                .map_err(|m| self.invalid(span.clone(), format!("{key}.timezone"), m))?;
        }
        if let Some(hours) = &r.hours {
            WeeklyHours::parse(hours)
                .map_err(|m| self.invalid(span.clone(), format!("{key}.hours"), m))?;
        }
        for (n, days) in r.out_of_office.iter().enumerate() {
            parse_date_range(days)
                .map_err(|m| self.invalid(span.clone(), format!("{key}.out_of_office[{n}]"), m))?;
        }
        if r.capacity == Some(0) {
            return Err(self.invalid(
                span,
                format!("{key}.capacity"),
                "must be above 0 (leave it out for no cap)",
            ));
        }
        if let Some(backup) = &r.backup {
            if !rep_ids.contains(backup) {
                return Err(self.invalid(
                    span,
                    format!("{key}.backup"),
                    format!("unknown rep {backup:?}"),
                ));
            }
            if backup == &r.id {
                return Err(self.invalid(
                    span,
                    format!("{key}.backup"),
                    "a rep cannot be their own backup",
                ));
            }
        }
        Ok(())
    }

    /// Ids unique, members known reps (once each, weighted above 0), team and overflow known.
    fn check_pools(
        &self,
        pools: &[Spanned<PoolConfig>],
        team_ids: &HashSet<String>,
        known: &Known<'_>,
    ) -> Result<(), ConfigError> {
        let mut seen_pools = HashSet::new();
        for (index, pool) in pools.iter().enumerate() {
            let span = pool.span();
            let p = pool.get_ref();
            let key = format!("pools[{index}] ({:?})", p.id);
            if !seen_pools.insert(p.id.clone()) {
                return Err(self.invalid(
                    span,
                    format!("{key}.id"),
                    format!("duplicate pool id {:?}", p.id),
                ));
            }
            self.check_members(p, span.clone(), &key, known.reps)?;
            if let Some(team) = &p.team {
                if !team_ids.contains(team) {
                    return Err(self.invalid(
                        span,
                        format!("{key}.team"),
                        format!("unknown team {team:?}"),
                    ));
                }
            }
            if let Some(queue) = &p.overflow_queue {
                if !known.queues.contains(queue) {
                    return Err(self.invalid(
                        span,
                        format!("{key}.overflow_queue"),
                        format!("unknown queue {queue:?}"),
                    ));
                }
            }
        }
        Ok(())
    }

    fn check_members(
        &self,
        p: &PoolConfig,
        span: Range<usize>,
        key: &str,
        rep_ids: &HashSet<String>,
    ) -> Result<(), ConfigError> {
        if p.members.is_empty() {
            return Err(self.invalid(
                span,
                format!("{key}.members"),
                "a pool needs at least one member",
            ));
        }
        let mut members = HashSet::new();
        for (n, member) in p.members.iter().enumerate() {
            let m = member.get_ref();
            if !rep_ids.contains(&m.rep) {
                return Err(self.invalid(
                    member.span(),
                    format!("{key}.members[{n}]"),
                    format!("unknown rep {:?}", m.rep),
                ));
            }
            if !members.insert(m.rep.clone()) {
                return Err(self.invalid(
                    member.span(),
                    format!("{key}.members[{n}]"),
                    format!("{:?} is listed twice", m.rep),
                ));
            }
            if m.weight == 0 {
                return Err(self.invalid(
                    member.span(),
                    format!("{key}.members[{n}].weight"),
                    format!(
                        "{:?}: weight must be above 0 (remove the member instead)",
                        m.rep
                    ),
                ));
            }
        }
        Ok(())
    }
}

// The reps' and queues' alert channels, checked before `[notify]` and the ids (the order
// errors have always been reported in).

impl Validator<'_> {
    /// E-mail alerts need `[notify.email]` and the rep's address; Slack and Teams URLs
    /// resolve (inline or from a variable); phones are E.164.
    pub(super) fn resolve_channels(
        &self,
        config: &mut Config,
        env: Env<'_>,
    ) -> Result<(), ConfigError> {
        let has_email = config.notify.email.is_some();
        for (index, rep) in config.reps.iter().enumerate() {
            self.check_alert_email(rep, index, has_email)?;
        }
        let has_slack_app = config.notify.slack.is_some();
        let channels =
            config
                .reps
                .iter()
                .enumerate()
                .map(|(i, r)| (r.span(), format!("reps[{i}]"), &r.get_ref().slack_channel))
                .chain(
                    config.teams.iter().enumerate().map(|(i, t)| {
                        (t.span(), format!("teams[{i}]"), &t.get_ref().slack_channel)
                    }),
                )
                .chain(
                    config.queues.iter().enumerate().map(|(i, q)| {
                        (q.span(), format!("queues[{i}]"), &q.get_ref().slack_channel)
                    }),
                );
        for (span, key, channel) in channels {
            if let Some(channel) = channel {
                let key = format!("{key}.slack_channel");
                if !has_slack_app {
                    return Err(self.invalid(span, key, "needs a [notify.slack] section"));
                }
                if !is_slack_id(channel) {
                    return Err(self.invalid(
                        span,
                        key,
                        format!("{channel:?} is not a Slack channel id such as C0123ABCD"),
                    ));
                }
            }
        }
        for (index, rep) in config.reps.iter_mut().enumerate() {
            let span = rep.span();
            let key = format!("reps[{index}]");
            let rep = rep.get_mut();
            self.resolve_webhook_urls(
                (
                    &mut rep.slack_webhook_url,
                    rep.slack_webhook_url_env.as_deref(),
                ),
                (
                    &mut rep.teams_webhook_url,
                    rep.teams_webhook_url_env.as_deref(),
                ),
                span.clone(),
                &key,
                env,
            )?;
            if let Some(phone) = &rep.phone {
                if !super::phone::is_e164(phone) {
                    return Err(self.invalid_phone(span, &key, phone));
                }
            }
        }
        for (index, queue) in config.queues.iter_mut().enumerate() {
            let span = queue.span();
            let queue = queue.get_mut();
            self.resolve_webhook_urls(
                (
                    &mut queue.slack_webhook_url,
                    queue.slack_webhook_url_env.as_deref(),
                ),
                (
                    &mut queue.teams_webhook_url,
                    queue.teams_webhook_url_env.as_deref(),
                ),
                span,
                &format!("queues[{index}]"),
                env,
            )?;
        }
        Ok(())
    }

    fn check_alert_email(
        &self,
        rep: &Spanned<RepConfig>,
        index: usize,
        has_email: bool,
    ) -> Result<(), ConfigError> {
        let r = rep.get_ref();
        if !r.alert_email {
            return Ok(());
        }
        let key = format!("reps[{index}].alert_email");
        if !has_email {
            return Err(self.invalid(rep.span(), key, "needs a [notify.email] section"));
        }
        let valid = r
            .email
            .as_deref()
            .is_some_and(|e| crate::email::Mailbox::new(None, e).is_ok());
        if !valid {
            return Err(self.invalid(rep.span(), key, "needs a valid `email` for the rep"));
        }
        Ok(())
    }

    /// A Slack and a Teams webhook URL, each inline or from its variable (`key` names the rep
    /// or queue); the Teams one must be http(s) (the Slack one is checked with the ids).
    fn resolve_webhook_urls(
        &self,
        slack: (&mut Option<SecretString>, Option<&str>),
        teams: (&mut Option<SecretString>, Option<&str>),
        span: Range<usize>,
        key: &str,
        env: Env<'_>,
    ) -> Result<(), ConfigError> {
        let slack_key = format!("{key}.slack_webhook_url_env");
        *slack.0 = self.resolve_url(slack.0.take(), slack.1, span.clone(), &slack_key, env)?;
        let teams_key = format!("{key}.teams_webhook_url_env");
        *teams.0 = self.resolve_url(teams.0.take(), teams.1, span.clone(), &teams_key, env)?;
        check_url(teams.0.as_ref())
            .map_err(|m| self.invalid(span, format!("{key}.teams_webhook_url"), m))
    }

    /// An inline URL, or the one the named variable holds.
    fn resolve_url(
        &self,
        inline: Option<SecretString>,
        variable: Option<&str>,
        span: Range<usize>,
        key: &str,
        env: Env<'_>,
    ) -> Result<Option<SecretString>, ConfigError> {
        match (inline, variable) {
            (Some(_), Some(_)) => {
                let inline = key.strip_suffix("_env").unwrap_or(key);
                let inline = inline.rsplit('.').next().unwrap_or(inline);
                Err(self.invalid(span, key, format!("set {inline} or {inline}_env, not both")))
            }
            (inline, None) => Ok(inline),
            (None, Some(name)) => env
                .require(name)
                .map(|url| Some(SecretString::from(url)))
                .map_err(|message| self.invalid(span, key, message)),
        }
    }

    /// Rep ids are unique, and their Slack URLs (resolved by now) http(s); returns the ids.
    pub(super) fn check_rep_ids(
        &self,
        reps: &[Spanned<RepConfig>],
    ) -> Result<HashSet<String>, ConfigError> {
        let mut rep_ids = HashSet::new();
        for (index, rep) in reps.iter().enumerate() {
            if !rep_ids.insert(rep.get_ref().id.clone()) {
                return Err(self.invalid(
                    rep.span(),
                    format!("reps[{index}].id"),
                    format!("duplicate rep id {:?}", rep.get_ref().id),
                ));
            }
            check_url(rep.get_ref().slack_webhook_url.as_ref()).map_err(|m| {
                self.invalid(rep.span(), format!("reps[{index}].slack_webhook_url"), m)
            })?;
            if let Some(id) = &rep.get_ref().hubspot_owner_id {
                check_hubspot_id(id).map_err(|m| {
                    self.invalid(rep.span(), format!("reps[{index}].hubspot_owner_id"), m)
                })?;
            }
        }
        Ok(rep_ids)
    }

    /// Queue ids are unique, managers are reps, Slack URLs http(s); returns the ids.
    pub(super) fn check_queue_ids(
        &self,
        queues: &[Spanned<QueueConfig>],
        rep_ids: &HashSet<String>,
    ) -> Result<HashSet<String>, ConfigError> {
        let mut queue_ids = HashSet::new();
        for (index, queue) in queues.iter().enumerate() {
            let q = queue.get_ref();
            if !queue_ids.insert(q.id.clone()) {
                return Err(self.invalid(
                    queue.span(),
                    format!("queues[{index}].id"),
                    format!("duplicate queue id {:?}", q.id),
                ));
            }
            if let Some(manager) = &q.manager {
                if !rep_ids.contains(manager.get_ref()) {
                    return Err(self.invalid(
                        manager.span(),
                        format!("queues[{index}].manager"),
                        format!("unknown rep {:?}", manager.get_ref()),
                    ));
                }
            }
            check_url(q.slack_webhook_url.as_ref()).map_err(|m| {
                self.invalid(
                    queue.span(),
                    format!("queues[{index}].slack_webhook_url"),
                    m,
                )
            })?;
            for (key, id) in [
                ("hubspot_owner_id", &q.hubspot_owner_id),
                ("hubspot_team_id", &q.hubspot_team_id),
            ] {
                if let Some(id) = id {
                    check_hubspot_id(id).map_err(|m| {
                        self.invalid(queue.span(), format!("queues[{index}].{key}"), m)
                    })?;
                }
            }
        }
        Ok(queue_ids)
    }
}

/// A Slack conversation or user id: a capital letter, then capitals and digits (`C0123ABCD`).
/// Only ids are accepted: a channel's name can change, and it would be posted into JSON as is.
pub(crate) fn is_slack_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && id.len() <= 32
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}
