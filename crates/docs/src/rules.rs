//! The rules a record must satisfy before it enters a document, whoever
//! made it. The same functions run on a local command before it signs and
//! on every change received from elsewhere, so the node never signs what a
//! peer would reject.

pub use crate::charter::{
    check_charter, check_description, check_group_name, check_rules, check_unit, MAX_ARTICLES,
    MAX_ARTICLE_TEXT_CHARS, MAX_ARTICLE_TITLE_CHARS, MAX_DESCRIPTION_CHARS, MAX_GROUP_NAME_CHARS,
    MAX_UNIT_CHARS,
};
use crate::error::broken;
pub use crate::error::RuleError;
use crate::record::{Admission, GroupGenesis, RecordBody};

/// How far a member's clock may be off. A record may claim a time up to
/// this much earlier than the latest time claimed in its causal past (what
/// its author had seen), and a record that claims a time more than this
/// ahead of a node's clock waits there until then.
pub const CLOCK_SKEW_MS: u64 = 5 * 60 * 1000;

/// Most edits a founder makes to the charter before anyone else joins
/// (each admission lists them all).
pub const MAX_FOUNDERS_EDITS: usize = 256;

/// Where a record is being added.
pub struct RecordContext {
    /// The document's group (for a ledger period, its group).
    pub group: nestwork_core::GroupId,
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
            in_group_document(body, ctx)?;
            crate::governance::check_record(body, &ctx.group, &ctx.author)
        }
        RecordBody::Signal(_)
        | RecordBody::Answer(_)
        | RecordBody::Escalation(_)
        | RecordBody::CarriedAnswer(_) => {
            in_group_document(body, ctx)?;
            crate::distress::check_record(body, &ctx.group)
        }
        RecordBody::SealKey(k) => {
            in_group_document(body, ctx)?;
            crate::seal::check_record(k)
        }
        RecordBody::Payment(_) | RecordBody::PeriodClose(_) => check_ledger_record(body, ctx),
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
        RecordBody::Admission(a) => check_admission(a, ctx),
    }
}

/// Governance, distress and seal records belong in the group document,
/// after its founding change.
fn in_group_document(body: &RecordBody, ctx: &RecordContext) -> Result<(), RuleError> {
    if ctx.ledger_period.is_some() || ctx.in_genesis_change {
        return broken(format!(
            "a {} belongs in the group document, after its founding change",
            body.kind_name()
        ));
    }
    Ok(())
}

/// A payment or a period's closing: filed in the ledger period it names
/// (a closing in the period it opens), citing group heads in order.
fn check_ledger_record(body: &RecordBody, ctx: &RecordContext) -> Result<(), RuleError> {
    if ctx.ledger_period.is_none() {
        return broken(format!(
            "a {} belongs in a ledger period, not the group document",
            body.kind_name()
        ));
    }
    match body {
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
        _ => Ok(()),
    }
}

/// Admissions are earned: someone else, already a member (the engine
/// checks the roll at the change's causal past), vouches with a ticket
/// they issued for this group.
fn check_admission(a: &Admission, ctx: &RecordContext) -> Result<(), RuleError> {
    if ctx.in_genesis_change {
        return broken("an admission cannot be part of a group's founding change");
    }
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

fn check_genesis(g: &GroupGenesis) -> Result<(), RuleError> {
    check_group_name(&g.name)?;
    check_unit(&g.unit)?;
    check_charter(&g.charter)
}
