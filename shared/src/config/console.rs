//! `[console]`: the web console's accounts and sessions. Without the section the console is
//! not served (its paths answer 404).

use serde::Deserialize;

/// What an account may see and do (see `console::access`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Rep,
    Manager,
    Operator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Rep => "rep",
            Role::Manager => "manager",
            Role::Operator => "operator",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// A session ends this many hours after sign-in, whatever happens in between.
    #[serde(default = "twelve")]
    pub session_hours: u32,
    /// `[[console.accounts]]`: who may sign in.
    #[serde(default)]
    pub accounts: Vec<ConsoleAccount>,
}

/// `[[console.accounts]]`: one person who signs in with a password.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleAccount {
    /// What they type to sign in (usually their e-mail address); unique, compared exactly.
    pub login: String,
    /// Shown in the console; the login when absent.
    pub name: Option<String>,
    pub role: Role,
    /// The rep this person is: required for a rep, optional for the others.
    pub rep: Option<String>,
    /// The team a manager manages: required for a manager.
    pub team: Option<String>,
    /// The password's Argon2id hash as a PHC string (`$argon2id$v=19$m=...`), made by
    /// `leadrelay console hash-password`. Never the password itself.
    pub password_hash: String,
}

impl std::fmt::Debug for ConsoleAccount {
    // The hash stays out of logs and error messages all the same.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleAccount")
            .field("login", &self.login)
            .field("role", &self.role)
            .field("rep", &self.rep)
            .field("team", &self.team)
            .finish_non_exhaustive()
    }
}

fn twelve() -> u32 {
    12
}

impl ConsoleAccount {
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.login)
    }
}

impl ConsoleConfig {
    pub fn account(&self, login: &str) -> Option<&ConsoleAccount> {
        self.accounts.iter().find(|a| a.login == login)
    }

    /// Checks each account against the reps and teams; the error names the key, never a hash.
    pub(super) fn check(
        &self,
        rep_exists: impl Fn(&str) -> bool,
        team_exists: impl Fn(&str) -> bool,
    ) -> Result<(), (String, String)> {
        if !(1..=168).contains(&self.session_hours) {
            return Err((
                "console.session_hours".into(),
                "must be between 1 and 168 (a week)".into(),
            ));
        }
        for (n, account) in self.accounts.iter().enumerate() {
            let key = |name: &str| format!("console.accounts[{n}].{name}");
            let login = account.login.trim();
            if login.is_empty() || login.len() > 200 || login != account.login {
                return Err((
                    key("login"),
                    "must be 1 to 200 characters without leading or trailing spaces".into(),
                ));
            }
            if self.accounts[..n].iter().any(|a| a.login == account.login) {
                return Err((
                    key("login"),
                    format!("{:?} is used by an earlier account", account.login),
                ));
            }
            match (account.role, &account.rep, &account.team) {
                (Role::Rep, None, _) => {
                    return Err((key("rep"), "a rep's account names the rep it is".into()))
                }
                (Role::Manager, _, None) => {
                    return Err((
                        key("team"),
                        "a manager's account names the team they manage".into(),
                    ))
                }
                _ => {}
            }
            if let Some(rep) = &account.rep {
                if !rep_exists(rep) {
                    return Err((key("rep"), format!("{rep:?} is not a configured rep")));
                }
            }
            if let Some(team) = &account.team {
                if !team_exists(team) {
                    return Err((key("team"), format!("{team:?} is not a configured team")));
                }
            }
            if !is_argon2id_phc(&account.password_hash) {
                return Err((
                    key("password_hash"),
                    "is not an Argon2id hash ($argon2id$v=19$...): make one with \
                     `leadrelay console hash-password`"
                        .into(),
                ));
            }
        }
        Ok(())
    }
}

/// The shape of an Argon2id PHC string: `$argon2id$v=19$m=..,t=..,p=..$<salt>$<hash>`. The
/// console's adapter parses it fully when someone signs in.
fn is_argon2id_phc(text: &str) -> bool {
    let parts: Vec<&str> = text.split('$').collect();
    parts.len() == 6
        && parts[0].is_empty()
        && parts[1] == "argon2id"
        && parts[2].starts_with("v=")
        && parts[3].starts_with("m=")
        && parts[4..].iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
        })
}

#[cfg(test)]
mod tests {
    use super::is_argon2id_phc;

    #[test]
    fn only_argon2id_phc_strings_pass() {
        assert!(is_argon2id_phc(
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$6kFbtwYkWbYmA0xM5X7kJ7w0Ww9mZ3tO2PtH1lQ3bXk"
        ));
        assert!(!is_argon2id_phc("hunter2"));
        assert!(!is_argon2id_phc(
            "$argon2i$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA"
        ));
        assert!(!is_argon2id_phc("$argon2id$v=19$m=19456,t=2,p=1$$aGFzaA"));
    }
}
