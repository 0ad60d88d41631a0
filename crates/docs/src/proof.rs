//! Facts that cross from one group into another, with what a node holding
//! only the receiving group needs to check them (`DESIGN.md` §1a).
//!
//! A group's id is the hash of its founding record, and every admission
//! carries an invite ticket signed by the admitting member for that group.
//! So a chain of admissions from the founder to a member shows, to anyone
//! who knows only the group's id, that the member was admitted there
//! ([`MemberProof`]). A decision of another group is shown by its signed
//! proposal and its signed decision record, both by members shown that
//! way ([`DecisionProof`]).
//!
//! What these cannot show, because only the other group's full records
//! could: that a member has not left since, and that a decision would
//! survive the other group's own recount (a member of that group can sign
//! a decision its own nodes ignore). They do stop everyone who never was a
//! member there.

use std::collections::{BTreeMap, BTreeSet};

use nestwork_core::{GroupId, Hash32, MemberId, ProposalId, SignedRecord};

use crate::error::{broken, RuleError};
use crate::record::governance::{Action, Decision, Proposal};
pub use crate::record::proof::{DecisionProof, MemberProof};
use crate::record::RecordBody;

/// Most admissions a proof may cite (far more than fit in one record).
pub const MAX_PROOF_ADMISSIONS: usize = 1_000;
/// Most admissions a proof of one member may cite (the length of the
/// chain of invitations from the group's founder to them).
pub const MAX_ADMISSION_CHAIN: usize = 32;

/// What a [`MemberProof`] shows, once checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProvenGroup {
    /// The group's id.
    pub id: GroupId,
    /// Its name, from its founding record.
    pub name: String,
    /// The founder and everyone the admissions lead to.
    pub members: BTreeSet<MemberId>,
}

impl ProvenGroup {
    /// Refuse unless `member` is shown to be a member; `who` says in what
    /// role (for the message).
    pub fn vouch(&self, member: &MemberId, who: &str) -> Result<(), RuleError> {
        if self.members.contains(member) {
            return Ok(());
        }
        broken(format!(
            "{who} {} is not shown to be a member of {}",
            member.short(),
            self.name
        ))
    }
}

impl MemberProof {
    /// Check every signature, that `founding` founds a group, and that each
    /// admission is signed by someone already shown to be a member, for a
    /// ticket they issued for that group.
    pub fn check(&self) -> Result<ProvenGroup, RuleError> {
        let genesis = SignedRecord::decode_verified(&self.founding)
            .map_err(|e| RuleError(format!("the founding record cited does not verify: {e}")))?;
        let Ok(RecordBody::GroupGenesis(founding)) = RecordBody::decode(&genesis.body) else {
            return broken("a proof must cite the group's founding record");
        };
        if self.admissions.len() > MAX_PROOF_ADMISSIONS {
            return broken(format!(
                "a proof cites at most {MAX_PROOF_ADMISSIONS} admissions"
            ));
        }
        // A group's id is its founding record's.
        let id = GroupId::from(genesis.id());
        let mut members = BTreeSet::from([genesis.author]);
        for bytes in &self.admissions {
            let admission = SignedRecord::decode_verified(bytes)
                .map_err(|e| RuleError(format!("an admission cited does not verify: {e}")))?;
            let Ok(RecordBody::Admission(a)) = RecordBody::decode(&admission.body) else {
                return broken("a proof cites a record that is not an admission");
            };
            if !members.contains(&admission.author) {
                return broken(format!(
                    "an admission cited was signed by {}, who is not shown to be a member of {}",
                    admission.author.short(),
                    founding.name
                ));
            }
            a.check_ticket(&id, &admission.author).map_err(RuleError)?;
            members.insert(a.member);
        }
        Ok(ProvenGroup {
            id,
            name: founding.name,
            members,
        })
    }

    /// Check a proof of one member, `member` (`who` says in what role):
    /// at most [`MAX_ADMISSION_CHAIN`] admissions, leading to them.
    pub fn check_one(&self, member: &MemberId, who: &str) -> Result<ProvenGroup, RuleError> {
        if self.admissions.len() > MAX_ADMISSION_CHAIN {
            return broken(format!(
                "a proof of one member cites at most {MAX_ADMISSION_CHAIN} admissions"
            ));
        }
        let group = self.check()?;
        group.vouch(member, who)?;
        Ok(group)
    }

    /// The proof that `member` was admitted to `group` that
    /// [`MemberProof::check_one`] accepts, if the group's records hold one.
    pub fn of_one(
        group: &GroupId,
        records: &BTreeMap<Hash32, SignedRecord>,
        member: &MemberId,
    ) -> Option<MemberProof> {
        Self::of(group, records, &[*member]).filter(|p| p.admissions.len() <= MAX_ADMISSION_CHAIN)
    }

    /// The proof that `members` were admitted to `group`, from the group's
    /// own records: its founding record and, for each member, the
    /// admissions from the founder to them, each cited once, signers
    /// before those they admitted. `None` when a member's admissions are
    /// not all held.
    pub fn of(
        group: &GroupId,
        records: &BTreeMap<Hash32, SignedRecord>,
        members: &[MemberId],
    ) -> Option<MemberProof> {
        let genesis = records.get(&group.hash32())?;
        let founder = genesis.author;
        let admissions: Vec<(&SignedRecord, MemberId)> = records
            .values()
            .filter_map(|r| match RecordBody::decode(&r.body) {
                Ok(RecordBody::Admission(a)) if a.check_ticket(group, &r.author).is_ok() => {
                    Some((r, a.member))
                }
                _ => None,
            })
            .collect();
        // Who admitted whom, outward from the founder, so every signer is
        // known before the admission it signed.
        let mut admitted_by: BTreeMap<MemberId, (usize, &SignedRecord)> = BTreeMap::new();
        let mut grew = true;
        while grew
            && members
                .iter()
                .any(|m| *m != founder && !admitted_by.contains_key(m))
        {
            grew = false;
            for (r, newcomer) in &admissions {
                let signer_known = r.author == founder || admitted_by.contains_key(&r.author);
                if signer_known && *newcomer != founder && !admitted_by.contains_key(newcomer) {
                    let depth = admitted_by.get(&r.author).map_or(0, |(d, _)| d + 1);
                    admitted_by.insert(*newcomer, (depth, r));
                    grew = true;
                }
            }
        }
        let mut cited: BTreeMap<(usize, Hash32), &SignedRecord> = BTreeMap::new();
        for member in members {
            let mut cursor = *member;
            while cursor != founder {
                let (depth, r) = admitted_by.get(&cursor)?;
                if cited.insert((*depth, r.id()), r).is_some() {
                    break;
                }
                cursor = r.author;
            }
        }
        if cited.len() > MAX_PROOF_ADMISSIONS {
            return None;
        }
        Some(MemberProof {
            founding: genesis.encode(),
            admissions: cited.values().map(|r| r.encode()).collect(),
        })
    }
}

/// What a [`DecisionProof`] shows, once checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProvenDecision {
    /// The group that decided.
    pub group: ProvenGroup,
    /// The proposal's id.
    pub proposal_id: ProposalId,
    /// The proposal.
    pub proposal: Proposal,
    /// The decision.
    pub decision: Decision,
}

impl DecisionProof {
    /// Check the signatures, that the proposal and the decision were
    /// signed by members shown by the admissions, that the decision is on
    /// that proposal, and that it passed.
    pub fn check(&self) -> Result<ProvenDecision, RuleError> {
        let group = self.members.check()?;
        let proposal = SignedRecord::decode_verified(&self.proposal)
            .map_err(|e| RuleError(format!("the proposal cited does not verify: {e}")))?;
        let Ok(RecordBody::Proposal(p)) = RecordBody::decode(&proposal.body) else {
            return broken("a decision proof must cite a proposal");
        };
        group.vouch(&proposal.author, "the proposer")?;
        let decision = SignedRecord::decode_verified(&self.decision)
            .map_err(|e| RuleError(format!("the decision cited does not verify: {e}")))?;
        let Ok(RecordBody::Decision(d)) = RecordBody::decode(&decision.body) else {
            return broken("a decision proof must cite a decision record");
        };
        group.vouch(&decision.author, "the decision's signer")?;
        if d.proposal != ProposalId::from(proposal.id()) {
            return broken("the decision cited is on another proposal");
        }
        if !d.passed {
            return broken(format!(
                "the decision cited shows that {} did not pass the proposal",
                group.name
            ));
        }
        Ok(ProvenDecision {
            group,
            proposal_id: ProposalId::from(proposal.id()),
            proposal: p,
            decision: d,
        })
    }

    /// Check the proof and that it shows `group` deciding by `proposal`,
    /// with effect from `at_ms`, an action `decides` accepts; `what` names
    /// the record that cites it (for the message).
    pub fn check_cited(
        &self,
        what: &str,
        group: &GroupId,
        proposal: &ProposalId,
        at_ms: u64,
        decides: impl Fn(&Action) -> bool,
    ) -> Result<(), RuleError> {
        let shown = self.check()?;
        if shown.group.id != *group
            || shown.proposal_id != *proposal
            || !decides(&shown.proposal.action)
            || shown.decision.decided_at_ms != at_ms
        {
            return broken(format!(
                "the {what} does not match the decision it cites: {} did not decide this by proposal {} at that time",
                shown.group.name,
                proposal.short()
            ));
        }
        Ok(())
    }
}
