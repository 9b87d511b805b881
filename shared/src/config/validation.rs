//! `[validation]`: the gates a capture must pass and what each does with a lead that fails.
//! The lists are normalised once at load, so that the gates compare exactly on the hot path.

use std::collections::HashSet;

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Validator};

/// What a validation gate does with a lead that fails it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GatePolicy {
    /// Answer 400 and store nothing.
    Refuse,
    /// Accept, flag, and route to `review_queue` instead of by the rules.
    Review,
    /// Accept, flag, and qualify into the lowest tier; routed by the rules.
    Nurture,
    /// Accept, and flag the lead so the alert and routing can see it.
    Flag,
    /// Skip the check.
    Allow,
}

impl GatePolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            GatePolicy::Refuse => "refuse",
            GatePolicy::Review => "review",
            GatePolicy::Nurture => "nurture",
            GatePolicy::Flag => "flag",
            GatePolicy::Allow => "allow",
        }
    }
}

/// A contact field `[validation] required_fields` may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContactField {
    Name,
    Phone,
    Company,
    JobTitle,
}

impl ContactField {
    /// The capture field it names, as the chatbot posts it.
    pub fn as_str(self) -> &'static str {
        match self {
            ContactField::Name => "name",
            ContactField::Phone => "phone",
            ContactField::Company => "company",
            ContactField::JobTitle => "job_title",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValidationConfig {
    /// RFC 2606 / 6761 names such as example.com or *.test.
    pub reserved_domains: GatePolicy,
    pub disposable_domains: GatePolicy,
    /// Obvious junk such as test@test.com.
    pub junk_addresses: GatePolicy,
    /// Disposable-mailbox domains beyond the maintained list that is always checked.
    pub disposable_domain_list: Vec<String>,
    pub junk_address_list: Vec<String>,
    /// Addresses of a role or a group (info@, sales@, noreply@, ...) rather than a person.
    pub role_addresses: GatePolicy,
    /// Local parts beyond the maintained list ([`crate::lists`]) that count as roles.
    pub role_address_list: Vec<String>,
    /// Local parts on the maintained list that this team treats as people (`ceo`, say).
    pub role_address_exempt: Vec<String>,
    /// Competitors' domains (`competitor_domain_list`; subdomains count).
    pub competitor_domains: GatePolicy,
    pub competitor_domain_list: Vec<String>,
    /// Our own company's domains (`own_domain_list`; subdomains count): colleagues testing
    /// the chatbot, not prospects.
    pub own_domains: GatePolicy,
    pub own_domain_list: Vec<String>,
    /// E-mail domains with a label that mixes scripts (a Cyrillic `а` among Latin letters):
    /// look-alikes of a real company's domain.
    pub mixed_script_domains: GatePolicy,
    /// Captures without one of `required_fields`.
    pub missing_fields: GatePolicy,
    pub required_fields: Vec<ContactField>,
    /// Where `review` sends a lead instead of to a rep; must be a configured queue, and is
    /// required once any gate is set to `review`.
    pub review_queue: Option<Spanned<String>>,
}

impl ValidationConfig {
    /// Each gate's key and policy, for the checks that apply to every gate.
    pub fn policies(&self) -> [(&'static str, GatePolicy); 8] {
        [
            ("reserved_domains", self.reserved_domains),
            ("disposable_domains", self.disposable_domains),
            ("junk_addresses", self.junk_addresses),
            ("role_addresses", self.role_addresses),
            ("competitor_domains", self.competitor_domains),
            ("own_domains", self.own_domains),
            ("mixed_script_domains", self.mixed_script_domains),
            ("missing_fields", self.missing_fields),
        ]
    }
}

impl Default for ValidationConfig {
    fn default() -> Self {
        ValidationConfig {
            reserved_domains: GatePolicy::Flag,
            disposable_domains: GatePolicy::Refuse,
            junk_addresses: GatePolicy::Refuse,
            disposable_domain_list: Vec::new(),
            junk_address_list: ["test@test.com", "asdf@asdf.com", "foo@bar.com"]
                .map(String::from)
                .to_vec(),
            // No default sends anything to review: that needs a review queue, which a
            // configuration without one would then fail to load for.
            role_addresses: GatePolicy::Flag,
            role_address_list: Vec::new(),
            role_address_exempt: Vec::new(),
            competitor_domains: GatePolicy::Flag,
            competitor_domain_list: Vec::new(),
            own_domains: GatePolicy::Refuse,
            own_domain_list: Vec::new(),
            mixed_script_domains: GatePolicy::Flag,
            missing_fields: GatePolicy::Flag,
            required_fields: Vec::new(),
            review_queue: None,
        }
    }
}

impl ValidationConfig {
    /// The review queue exists and is set when a gate needs it; the lists are lower-cased and
    /// trimmed once here, so that the gates compare exactly on the hot path.
    pub(super) fn check(
        &mut self,
        v: &Validator<'_>,
        queue_ids: &HashSet<String>,
    ) -> Result<(), ConfigError> {
        self.check_review_queue(v, queue_ids)?;
        self.normalise_domains(v)?;
        // Entries in the form the gates compare addresses in (crate::cleaning).
        for entry in self.junk_address_list.iter_mut() {
            let trimmed = entry.trim();
            *entry = match trimmed.rsplit_once('@') {
                Some((local, domain)) => format!(
                    "{}@{}",
                    crate::cleaning::normalise_local_part(local),
                    crate::cleaning::normalise_host(domain)
                        .unwrap_or_else(|| domain.to_lowercase())
                ),
                None => trimmed.to_lowercase(),
            };
        }
        for list in [&mut self.role_address_list, &mut self.role_address_exempt] {
            for entry in list.iter_mut() {
                *entry = crate::cleaning::normalise_local_part(entry.trim());
            }
        }
        Ok(())
    }

    fn check_review_queue(
        &self,
        v: &Validator<'_>,
        queue_ids: &HashSet<String>,
    ) -> Result<(), ConfigError> {
        match &self.review_queue {
            Some(queue) if !queue_ids.contains(queue.get_ref()) => Err(v.invalid(
                queue.span(),
                "validation.review_queue",
                format!("unknown queue {:?}", queue.get_ref()),
            )),
            Some(_) => Ok(()),
            None => match self
                .policies()
                .into_iter()
                .find(|(_, policy)| *policy == GatePolicy::Review)
            {
                Some((gate, _)) => Err(v.invalid(
                    0..0,
                    format!("validation.{gate}"),
                    "\"review\" needs validation.review_queue, the queue such leads go to",
                )),
                None => Ok(()),
            },
        }
    }

    /// Each domain list entry in the form the gates compare e-mail domains in (IDNA to ASCII,
    /// lower case).
    fn normalise_domains(&mut self, v: &Validator<'_>) -> Result<(), ConfigError> {
        let domain_lists = [
            ("disposable_domain_list", &mut self.disposable_domain_list),
            ("competitor_domain_list", &mut self.competitor_domain_list),
            ("own_domain_list", &mut self.own_domain_list),
        ];
        for (key, list) in domain_lists {
            for (index, entry) in list.iter_mut().enumerate() {
                match crate::cleaning::normalise_host(entry) {
                    Some(host) if host.contains('.') => *entry = host,
                    _ => {
                        return Err(v.invalid(
                            0..0,
                            format!("validation.{key}[{index}]"),
                            format!("{:?} is not a domain", entry.trim()),
                        ))
                    }
                }
            }
        }
        Ok(())
    }
}
