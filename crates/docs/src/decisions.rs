//! Which proposals of a group have passed, as the ledger asks when a
//! commons payout or a limit change comes: [`Decisions`], the
//! [`PayoutGate`] a node hands the ledger. Judged as of a time the caller
//! passes in.

use std::cell::OnceCell;

use nestwork_core::{Hash32, ProposalId};

use crate::governance::{Action, Governance, Outcome};
use crate::ledger::{Account, CreditLimit, PayoutGate, Refusal};
use crate::rules::RuleError;
use crate::view::governance_of;
use crate::SignedDoc;

/// Which proposals have passed, for the ledger's payout and limit checks.
/// Computed from the group document only when a record needs it.
pub struct Decisions<'a> {
    doc: Option<&'a SignedDoc>,
    now_ms: u64,
    gov: OnceCell<Option<Governance>>,
}

impl<'a> Decisions<'a> {
    /// The decisions of group document `doc` as of `now_ms`.
    pub fn of(doc: Option<&'a SignedDoc>, now_ms: u64) -> Decisions<'a> {
        Decisions {
            doc,
            now_ms,
            gov: OnceCell::new(),
        }
    }

    /// Computed now, so that the document may change while they are used.
    pub fn resolved(self) -> Decisions<'static> {
        let gov = self.governance().cloned();
        Decisions {
            doc: None,
            now_ms: self.now_ms,
            gov: OnceCell::from(gov),
        }
    }

    fn governance(&self) -> Option<&Governance> {
        self.gov
            .get_or_init(|| self.doc.and_then(|d| governance_of(d, self.now_ms)))
            .as_ref()
    }

    /// `Ok` if `proposal` passed and its action satisfies `wanted`; a
    /// proposal not known or not decided here yet means wait.
    fn decided(&self, proposal: &Hash32, wanted: impl Fn(&Action) -> bool) -> Result<(), Refusal> {
        let Some(p) = self
            .governance()
            .and_then(|g| g.proposal(&ProposalId::from(*proposal)))
        else {
            return Err(Refusal::Missing(vec![*proposal]));
        };
        if !wanted(&p.proposal.action) {
            return Err(Refusal::Broken(RuleError(format!(
                "proposal {} orders something else ({})",
                proposal.short(),
                p.proposal.action.describe()
            ))));
        }
        match p.outcome {
            Outcome::Passed => Ok(()),
            // Not decided here until its decision record is held.
            Outcome::Open | Outcome::Deciding => Err(Refusal::Missing(vec![*proposal])),
            Outcome::Failed => Err(Refusal::Broken(RuleError(format!(
                "proposal {} failed",
                proposal.short()
            )))),
        }
    }
}

impl PayoutGate for Decisions<'_> {
    fn authorizes(&self, proposal: &Hash32, to: &Account, amount: u64) -> Result<(), Refusal> {
        self.decided(
            proposal,
            |a| matches!(a, Action::Payout { to: t, amount: x, .. } if t == to && *x == amount),
        )
    }

    fn authorizes_limits(&self, proposal: &Hash32, c: &CreditLimit) -> Result<(), Refusal> {
        self.decided(proposal, |a| {
            matches!(a, Action::SetLimits { member, floor, ceiling }
                if *member == c.member && *floor == c.floor && *ceiling == c.ceiling)
        })
    }
}
