//! The bodies of signed records, and the group's genesis with its charter.
//!
//! Bodies are encoded canonically (see `nestwork_core::encoding`) and signed
//! inside a `SignedRecord`. New document kinds add variants at the end of
//! [`RecordBody`]; existing variants change shape only with the store's
//! format (`nestwork_store::FORMAT_VERSION`): format 2 added the group
//! heads a payment and a period closing cite.

use nestwork_core::{encoding, Hash32};
use serde::{Deserialize, Serialize};

// The records of each domain, defined here below the rules that judge them
// (`crate::ledger`, `crate::governance`, ...), which import them: the rules
// depend on the records, never the other way.
pub(crate) mod distress;
pub(crate) mod governance;
mod group;
pub(crate) mod ledger;
pub(crate) mod proof;
pub(crate) mod seal;

pub use group::{
    ticket_message, Admission, Article, Charter, GroupGenesis, GroupKind, LegacyAdmission, Rules,
};

/// Largest encoded record body.
pub const MAX_BODY_BYTES: usize = nestwork_core::signed::MAX_RECORD_BYTES;

/// Every kind of insert-only record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecordBody {
    /// The founding record of a group; its record id is the group id.
    GroupGenesis(GroupGenesis),
    /// An admission as nodes before the trust rules of issue 13 wrote it,
    /// with no proof of the ticket. Kept so old bytes still decode; no node
    /// accepts a new one and none counts toward the roll.
    LegacyAdmission(LegacyAdmission),
    /// A payment on the group's ledger (stored in a ledger period document).
    Payment(ledger::Payment),
    /// A change of credit limits (stored in the group document).
    CreditLimit(ledger::CreditLimit),
    /// The close of a ledger period (stored first in the next period).
    PeriodClose(ledger::PeriodClose),
    /// A proposal put to the group's vote.
    Proposal(governance::Proposal),
    /// A vote on a proposal.
    Vote(governance::Vote),
    /// A member leaves.
    Exit(governance::Exit),
    /// The creator edits the charter before anyone else joins.
    CharterEdit(governance::CharterEdit),
    /// A child group's delegates, filed in the parent tier.
    Delegation(governance::Delegation),
    /// The other party's decision on a treaty, filed in this party.
    Counterpart(governance::Counterpart),
    /// A call for help.
    Signal(distress::Signal),
    /// An answer to a call for help.
    Answer(distress::Answer),
    /// A call for help carried in from another group.
    Escalation(distress::Escalation),
    /// A member admits a newcomer who presented one of their invite
    /// tickets; the record carries the ticket's signed id.
    Admission(Admission),
    /// An answer to a call for help given in another group the call
    /// travelled to, carried in with the proof that its answerer is a
    /// member there.
    CarriedAnswer(distress::CarriedAnswer),
    /// The group's gossip seal key for a new membership epoch (or the
    /// current one for members admitted since), sealed to each member.
    SealKey(seal::SealKey),
    /// The decision on a proposal: the votes it counted and the outcome.
    Decision(governance::Decision),
}

impl RecordBody {
    /// Canonical bytes.
    pub fn encode(&self) -> Vec<u8> {
        encoding::encode(self)
    }

    /// Decode untrusted bytes.
    pub fn decode(bytes: &[u8]) -> nestwork_core::Result<Self> {
        encoding::decode("record body", bytes, MAX_BODY_BYTES)
    }

    /// Whether the node's gate judges it besides the engine's checks (the
    /// ledger's records; signals, which wait while they claim a time still
    /// to come by the node's clock).
    pub fn needs_gate(&self) -> bool {
        matches!(
            self,
            RecordBody::Payment(_)
                | RecordBody::CreditLimit(_)
                | RecordBody::PeriodClose(_)
                | RecordBody::Signal(_)
        )
    }

    /// The group-document heads a ledger record cites (a payment, a
    /// period closing): the roll its author, and a payment's payee, are
    /// judged by. `None` for every other kind.
    pub fn group_heads(&self) -> Option<&[Hash32]> {
        match self {
            RecordBody::Payment(p) => Some(&p.group_heads),
            RecordBody::PeriodClose(c) => Some(&c.group_heads),
            _ => None,
        }
    }

    /// A word for logs and errors.
    pub fn kind_name(&self) -> &'static str {
        match self {
            RecordBody::GroupGenesis(_) => "group genesis",
            RecordBody::Admission(_) => "admission",
            RecordBody::LegacyAdmission(_) => "admission without ticket proof",
            RecordBody::Payment(_) => "payment",
            RecordBody::CreditLimit(_) => "credit limit",
            RecordBody::PeriodClose(_) => "period closing",
            RecordBody::Proposal(_) => "proposal",
            RecordBody::Vote(_) => "vote",
            RecordBody::Exit(_) => "exit",
            RecordBody::CharterEdit(_) => "founders' charter edit",
            RecordBody::Delegation(_) => "delegation",
            RecordBody::Counterpart(_) => "treaty counterpart",
            RecordBody::Signal(_) => "distress signal",
            RecordBody::Answer(_) => "answer to a distress signal",
            RecordBody::Escalation(_) => "distress escalation",
            RecordBody::CarriedAnswer(_) => "answer carried in from another group",
            RecordBody::SealKey(_) => "seal key",
            RecordBody::Decision(_) => "decision",
        }
    }
}
