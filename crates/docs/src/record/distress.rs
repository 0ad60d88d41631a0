//! Distress records: calls for help, answers, escalations and answers
//! carried in from other groups. How they are judged and shown is in
//! [`crate::distress`].

use nestwork_core::{GroupId, SignalId};
use serde::{Deserialize, Serialize};

use super::proof::MemberProof;

/// What kind of help is needed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    /// Injury or illness.
    Medical,
    /// Danger to people.
    Safety,
    /// A roof for the night.
    Shelter,
    /// Food or water. (The aliases are what people type; names in the
    /// canonical encoding are not stored, only the variant's index.)
    #[serde(alias = "food/water", alias = "food", alias = "water")]
    FoodWater,
    /// Losing a home.
    Eviction,
    /// Police, courts, papers.
    Legal,
    /// Anything else.
    Other,
}

/// How urgent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// When someone can.
    Low,
    /// Soon.
    High,
    /// Now.
    Critical,
}

/// A call for help, signed by the member who raises it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signal {
    /// The group it is raised in.
    pub group: GroupId,
    /// What kind of help.
    pub category: Category,
    /// How urgent.
    pub severity: Severity,
    /// What is happening.
    pub text: String,
    /// A coarse location, if the raiser gives one.
    pub location: Option<String>,
    /// When, by the raiser's clock.
    pub raised_at_ms: u64,
    /// When it stops asking for help.
    pub expires_at_ms: u64,
    /// Position on the raiser's chain of signals in this group, from 1.
    pub seq: u64,
    /// The raiser's previous signal (`None` only for seq 1).
    pub prev: Option<SignalId>,
}

/// How someone answers a signal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AnswerKind {
    /// "Seen": stops escalation.
    Ack,
    /// "On my way", with an estimate.
    Respond {
        /// Seconds until they expect to be there.
        eta_secs: Option<u64>,
    },
    /// Help arrived or is no longer needed (the raiser or a responder).
    Resolve,
}

/// An answer to a signal, signed by the member who gives it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// The signal (the id of the raiser's record).
    pub signal: SignalId,
    /// Seen, on my way, or resolved.
    pub kind: AnswerKind,
    /// A few words.
    pub text: String,
    /// When, by the answerer's clock.
    pub at_ms: u64,
}

/// A signal carried into this group from another (a child tier, or a
/// mutual-aid treaty partner) by a member of both, because nobody there
/// answered in time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Escalation {
    /// The raiser's signed record, as it was.
    pub signal: Vec<u8>,
    /// The group it was raised in (the one the signal names).
    pub origin: GroupId,
    /// That the raiser was admitted there.
    pub raiser: MemberProof,
    /// The groups it passed through, from the origin to the one it came
    /// from.
    pub path: Vec<GroupId>,
    /// When, by the escalating member's clock.
    pub at_ms: u64,
}

/// An answer (seen, on my way, resolved) given in another group a signal
/// travelled to (the tier it climbed to, the tier it came from, or a
/// mutual-aid treaty partner), carried into this group by a member of
/// both, so that the person who called for help, and their group, learn
/// that help is coming. It carries what a node holding only this group
/// needs to check it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CarriedAnswer {
    /// The answerer's signed answer record, as it was.
    pub answer: Vec<u8>,
    /// The group where it was given (its founding record) and the
    /// answerer's admissions there (none when the founder answered).
    pub given_in: MemberProof,
    /// The groups it was carried through, from the one where it was given
    /// to the one it came from.
    pub path: Vec<GroupId>,
    /// When, by the carrying member's clock.
    pub at_ms: u64,
}
