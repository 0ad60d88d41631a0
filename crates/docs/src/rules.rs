//! The rules a record must satisfy before it enters a document, whoever
//! made it. The same functions run on a local command before it signs and
//! on every change received from elsewhere, so the node never signs what a
//! peer would reject.

use crate::record::{Charter, GroupGenesis, RecordBody, Rules};

/// Longest group name, in characters.
pub const MAX_GROUP_NAME_CHARS: usize = 80;
/// Most articles in a charter.
pub const MAX_ARTICLES: usize = 200;
/// Longest article title, in characters.
pub const MAX_ARTICLE_TITLE_CHARS: usize = 200;
/// Longest article text, in characters.
pub const MAX_ARTICLE_TEXT_CHARS: usize = 8_000;
/// Longest group description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 20_000;

/// How far a member's clock may be off. A record may claim a time up to
/// this much earlier than the latest time claimed in its causal past (what
/// its author had seen), and a record that claims a time more than this
/// ahead of a node's clock waits there until then.
pub const CLOCK_SKEW_MS: u64 = 5 * 60 * 1000;

/// Most edits a founder makes to the charter before anyone else joins
/// (each admission lists them all).
pub const MAX_FOUNDERS_EDITS: usize = 256;

/// A broken rule, in words a member can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RuleError(pub String);

fn broken<T>(msg: impl Into<String>) -> Result<T, RuleError> {
    Err(RuleError(msg.into()))
}

/// Where a record is being added.
pub struct RecordContext {
    /// The document's group (for a ledger period, its group).
    pub group: nestwork_core::Hash32,
    /// Who signed the record.
    pub author: nestwork_core::MemberId,
    /// True only for the first change of a document.
    pub in_genesis_change: bool,
    /// In a ledger period document: its period.
    pub ledger_period: Option<u64>,
}

/// The group-document heads a ledger record cites (the roll its author
/// and payee are judged by): 1 to [`crate::ledger::MAX_GROUP_HEADS`],
/// sorted and distinct.
fn check_group_heads(heads: &[nestwork_core::Hash32], kind: &str) -> Result<(), RuleError> {
    let most = crate::ledger::MAX_GROUP_HEADS;
    if heads.is_empty() {
        return broken(format!(
            "a {kind} must cite the group document's heads its author held (the roll it is judged by); it cites none"
        ));
    }
    if heads.len() > most {
        return broken(format!(
            "a {kind} may cite at most {most} heads of the group document; it cites {}",
            heads.len()
        ));
    }
    if heads.windows(2).any(|w| w[0] >= w[1]) {
        return broken(format!(
            "the group heads a {kind} cites are not sorted and distinct"
        ));
    }
    Ok(())
}

/// Check a record body against its kind's rules.
pub fn check_record(body: &RecordBody, ctx: &RecordContext) -> Result<(), RuleError> {
    match body {
        RecordBody::LegacyAdmission(_) => broken(
            "an admission without its ticket's signature (written by an older node): \
             the inviter must admit again",
        ),
        RecordBody::GroupGenesis(_) | RecordBody::Admission(_) | RecordBody::CreditLimit(_)
            if ctx.ledger_period.is_some() =>
        {
            broken(format!(
                "a {} has no place in a ledger period",
                body.kind_name()
            ))
        }
        RecordBody::Proposal(_)
        | RecordBody::Vote(_)
        | RecordBody::Decision(_)
        | RecordBody::Exit(_)
        | RecordBody::CharterEdit(_)
        | RecordBody::Delegation(_)
        | RecordBody::Counterpart(_) => {
            if ctx.ledger_period.is_some() || ctx.in_genesis_change {
                return broken(format!(
                    "a {} belongs in the group document, after its founding change",
                    body.kind_name()
                ));
            }
            crate::governance::check_record(body, &ctx.group, &ctx.author)
        }
        RecordBody::Signal(_)
        | RecordBody::Answer(_)
        | RecordBody::Escalation(_)
        | RecordBody::CarriedAnswer(_) => {
            if ctx.ledger_period.is_some() || ctx.in_genesis_change {
                return broken(format!(
                    "a {} belongs in the group document, after its founding change",
                    body.kind_name()
                ));
            }
            crate::distress::check_record(body, &ctx.group)
        }
        RecordBody::SealKey(k) => {
            if ctx.ledger_period.is_some() || ctx.in_genesis_change {
                return broken(format!(
                    "a {} belongs in the group document, after its founding change",
                    body.kind_name()
                ));
            }
            crate::seal::check_record(k)
        }
        RecordBody::Payment(_) | RecordBody::PeriodClose(_) if ctx.ledger_period.is_none() => {
            broken(format!(
                "a {} belongs in a ledger period, not the group document",
                body.kind_name()
            ))
        }
        RecordBody::Payment(p) => match ctx.ledger_period {
            Some(period) if period != p.period => broken(format!(
                "a payment for period {} filed in period {period}",
                p.period
            )),
            _ => check_group_heads(&p.group_heads, "payment"),
        },
        // Checked: the period number is the sender's, and the largest one
        // closes into a period that cannot exist.
        RecordBody::PeriodClose(c) => match (ctx.ledger_period, c.period.checked_add(1)) {
            (_, None) => broken(format!("period {} can never be closed", c.period)),
            (Some(period), Some(next)) if period != next => broken(format!(
                "the closing of period {} filed in period {period}; it opens period {next}",
                c.period
            )),
            _ => check_group_heads(&c.group_heads, "period closing"),
        },
        RecordBody::CreditLimit(_) => {
            if ctx.in_genesis_change {
                return broken("a credit limit cannot be part of a group's founding change");
            }
            Ok(())
        }
        RecordBody::GroupGenesis(g) => {
            if !ctx.in_genesis_change {
                return broken("a group genesis record may only appear in a group's first change");
            }
            check_genesis(g)
        }
        RecordBody::Admission(a) => {
            if ctx.in_genesis_change {
                return broken("an admission cannot be part of a group's founding change");
            }
            // Admissions are earned: someone else, already a member (the
            // engine checks the roll at the change's causal past), vouches
            // with a ticket they issued for this group.
            if a.member == ctx.author {
                return broken("nobody admits themselves");
            }
            if a.founders_edits.len() > MAX_FOUNDERS_EDITS
                || a.founders_edits.windows(2).any(|w| w[0] >= w[1])
            {
                return broken(format!(
                    "an admission lists at most {MAX_FOUNDERS_EDITS} founders' edits, each once, in order"
                ));
            }
            a.check_ticket(&ctx.group, &ctx.author).map_err(RuleError)
        }
    }
}

/// A group name: trimmed, 1 to [`MAX_GROUP_NAME_CHARS`] characters, no
/// control characters.
pub fn check_group_name(name: &str) -> Result<(), RuleError> {
    let chars = name.chars().count();
    if name.trim().is_empty() {
        return broken("the group name is empty");
    }
    if name.trim() != name {
        return broken("the group name starts or ends with spaces");
    }
    if chars > MAX_GROUP_NAME_CHARS {
        return broken(format!(
            "the group name is {chars} characters long; the limit is {MAX_GROUP_NAME_CHARS}"
        ));
    }
    if name.chars().any(char::is_control) {
        return broken("the group name contains control characters");
    }
    Ok(())
}

fn check_genesis(g: &GroupGenesis) -> Result<(), RuleError> {
    check_group_name(&g.name)?;
    check_unit(&g.unit)?;
    check_charter(&g.charter)
}

/// Longest ledger unit name, in characters.
pub const MAX_UNIT_CHARS: usize = 24;

/// A ledger unit: 1 to [`MAX_UNIT_CHARS`] characters, letters and spaces.
pub fn check_unit(unit: &str) -> Result<(), RuleError> {
    let chars = unit.chars().count();
    if chars == 0 || chars > MAX_UNIT_CHARS || unit.trim() != unit {
        return broken(format!(
            "the ledger unit must be 1 to {MAX_UNIT_CHARS} characters with no spaces around it"
        ));
    }
    if unit.chars().any(|c| c.is_control() || c.is_ascii_digit()) {
        return broken("the ledger unit may not contain digits or control characters");
    }
    Ok(())
}

/// A charter's articles and rules are within bounds.
pub fn check_charter(c: &Charter) -> Result<(), RuleError> {
    if c.articles.len() > MAX_ARTICLES {
        return broken(format!(
            "the charter has {} articles; the limit is {MAX_ARTICLES}",
            c.articles.len()
        ));
    }
    for (i, a) in c.articles.iter().enumerate() {
        let n = i + 1;
        if a.text.trim().is_empty() {
            return broken(format!("article {n} has no text"));
        }
        if a.title.chars().count() > MAX_ARTICLE_TITLE_CHARS {
            return broken(format!(
                "article {n}'s title is over {MAX_ARTICLE_TITLE_CHARS} characters"
            ));
        }
        if a.text.chars().count() > MAX_ARTICLE_TEXT_CHARS {
            return broken(format!(
                "article {n} is over {MAX_ARTICLE_TEXT_CHARS} characters"
            ));
        }
    }
    check_rules(&c.rules)
}

/// Rules are within the ranges that make sense.
pub fn check_rules(r: &Rules) -> Result<(), RuleError> {
    for (name, v) in [
        ("quorum_percent", r.quorum_percent),
        ("approval_percent", r.approval_percent),
        ("revision_share_percent", r.revision_share_percent),
    ] {
        if v > 100 {
            return broken(format!("rule {name} is {v}; a share is at most 100"));
        }
    }
    if r.approval_percent == 0 {
        return broken("rule approval_percent is 0: every proposal would pass");
    }
    if r.voting_period_secs == 0 || r.revision_cycle_secs == 0 || r.distress_escalation_secs == 0 {
        return broken(
            "voting period, revision cycle and escalation time must be longer than zero",
        );
    }
    if r.default_credit_floor > 0 {
        return broken("the default credit floor must be zero or below");
    }
    if r.default_credit_ceiling < 0 {
        return broken("the default credit ceiling must be zero or above");
    }
    if r.ledger_period_payments == 0 {
        return broken("a ledger period must hold at least one payment");
    }
    Ok(())
}

/// The description is free text within a size bound.
pub fn check_description(text: &str) -> Result<(), RuleError> {
    let chars = text.chars().count();
    if chars > MAX_DESCRIPTION_CHARS {
        return broken(format!(
            "the description is {chars} characters; the limit is {MAX_DESCRIPTION_CHARS}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names() {
        assert!(check_group_name("Riverside Commons").is_ok());
        assert!(check_group_name("").is_err());
        assert!(check_group_name("   ").is_err());
        assert!(check_group_name(" padded").is_err());
        assert!(check_group_name(&"x".repeat(81)).is_err());
        assert!(check_group_name(&"é".repeat(80)).is_ok());
        assert!(check_group_name("bell\u{7}").is_err());
    }

    #[test]
    fn default_charter_is_valid() {
        assert!(check_charter(&Charter::default()).is_ok());
    }

    #[test]
    fn bad_rules() {
        let r = Rules {
            quorum_percent: 101,
            ..Rules::default()
        };
        assert!(check_rules(&r).is_err());
        let r = Rules {
            default_credit_floor: 5,
            ..Rules::default()
        };
        assert!(check_rules(&r).is_err());
    }
}
