//! Who may see and do what in the console. Three roles:
//!
//! - **rep**: the leads they hold or held (routed to them, escalated to them, claimed by them)
//!   and their own availability;
//! - **manager**: the leads and reps of their team, and their team's figures;
//! - **operator**: everything, including dead letters, the configuration and the what-if.
//!
//! A lead belongs to a team through whoever holds it: a rep's team, a pool's team, the team
//! whose queue it sits in. Prospect data (name, e-mail, the conversation) is shown only on a
//! lead the viewer may see; figures over leads they may not see are never computed for them.

use crate::config::{Config, ConsoleAccount, Role};
use crate::model::{Lead, Owner};

/// A signed-in person, as the console's pages see them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Viewer {
    pub login: String,
    pub name: String,
    pub role: Role,
    /// The rep this person is (a rep always; a manager or operator when they also take leads).
    pub rep: Option<String>,
    /// The team a manager manages.
    pub team: Option<String>,
}

impl Viewer {
    pub fn of(account: &ConsoleAccount) -> Self {
        Viewer {
            login: account.login.clone(),
            name: account.display_name().to_owned(),
            role: account.role,
            rep: account.rep.clone(),
            team: account.team.clone(),
        }
    }

    pub fn is_operator(&self) -> bool {
        self.role == Role::Operator
    }

    /// Whether the viewer may open this lead, its conversation and its timeline.
    pub fn sees_lead(&self, lead: &Lead, config: &Config) -> bool {
        match self.role {
            Role::Operator => true,
            Role::Manager => {
                let team = self.team.as_deref();
                team.is_some() && lead_teams(lead, config).any(|t| Some(t) == team)
            }
            Role::Rep => self.rep.as_deref().is_some_and(|rep| holds(lead, rep)),
        }
    }

    /// Whether the viewer may re-route or close this lead: an operator any, a manager their
    /// team's. A rep acts on their own leads through claim, the activity buttons and Not mine.
    pub fn acts_on_lead(&self, lead: &Lead, config: &Config) -> bool {
        self.role != Role::Rep && self.sees_lead(lead, config)
    }

    /// Whether the viewer may see and set this rep's availability.
    pub fn manages_rep(&self, rep: &str, config: &Config) -> bool {
        match self.role {
            Role::Operator => config.rep(rep).is_some(),
            Role::Manager => {
                let team = config.rep(rep).and_then(|r| r.team.as_deref());
                team.is_some() && team == self.team.as_deref()
            }
            Role::Rep => self.rep.as_deref() == Some(rep) && config.rep(rep).is_some(),
        }
    }

    /// The reps this viewer may see, in configuration order.
    pub fn visible_reps<'a>(&self, config: &'a Config) -> Vec<&'a str> {
        config
            .reps
            .iter()
            .map(|r| r.get_ref().id.as_str())
            .filter(|rep| self.manages_rep(rep, config))
            .collect()
    }
}

/// Whether `rep` holds or held the lead: routed to, escalated to or from, or claimed by them.
pub fn holds(lead: &Lead, rep: &str) -> bool {
    holders(lead).any(|owner| matches!(owner, Owner::Rep(id) if id == rep))
        || lead.claim.as_ref().is_some_and(|c| c.rep == rep)
}

fn holders(lead: &Lead) -> impl Iterator<Item = &Owner> {
    lead.assignment
        .as_ref()
        .map(|a| &a.owner)
        .into_iter()
        .chain(lead.escalations.iter().flat_map(|e| [&e.from, &e.to]))
}

/// The teams a lead belongs to, through each owner that held it and its claimer.
pub fn lead_teams<'a>(lead: &'a Lead, config: &'a Config) -> impl Iterator<Item = &'a str> {
    let claimer = lead.claim.as_ref().map(|c| Owner::Rep(c.rep.clone()));
    holders(lead)
        .cloned()
        .chain(claimer)
        .filter_map(move |owner| owner_team(&owner, config))
}

/// The team of an owner: a rep's, a pool's, or the team whose queue it is.
pub fn owner_team<'a>(owner: &Owner, config: &'a Config) -> Option<&'a str> {
    match owner {
        Owner::Rep(id) => config.rep(id).and_then(|r| r.team.as_deref()),
        Owner::Pool(id) => config.pool(id).and_then(|p| p.team.as_deref()),
        Owner::Queue(id) => config
            .teams
            .iter()
            .map(|t| t.get_ref())
            .find(|t| t.queue.as_deref() == Some(id))
            .map(|t| t.id.as_str()),
    }
}
