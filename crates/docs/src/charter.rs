//! What a group's name, description, charter and rules must satisfy: the
//! checks the group's founding record, a founders' edit and a decided
//! change of rules share.

use crate::error::{broken, RuleError};
use crate::record::{Charter, Rules};

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

/// Longest ledger unit name, in characters.
pub const MAX_UNIT_CHARS: usize = 24;

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
