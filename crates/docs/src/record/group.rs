//! A group's founding record with its charter and rules, and the
//! admissions that bring members in.

use nestwork_core::{GroupId, Hash32, MemberId};
use serde::{Deserialize, Serialize};

/// What a group is in the nest of tiers. (Renaming is safe for the
/// canonical encoding, which stores the variant's index, not its name.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupKind {
    /// A local group.
    Hub,
    /// A group of hubs.
    Region,
    /// Any wider tier.
    Federation,
}

impl GroupKind {
    /// Lowercase name used on the command line and in JSON.
    pub fn as_str(&self) -> &'static str {
        match self {
            GroupKind::Hub => "hub",
            GroupKind::Region => "region",
            GroupKind::Federation => "federation",
        }
    }
}

impl std::str::FromStr for GroupKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "hub" => Ok(GroupKind::Hub),
            "region" => Ok(GroupKind::Region),
            "federation" => Ok(GroupKind::Federation),
            other => Err(format!(
                "unknown group kind {other:?}: expected hub, region or federation"
            )),
        }
    }
}

/// The founding record of a group. Its author is the creator and first
/// member; the hash of the signed record is the group id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupGenesis {
    /// The group's name, 1 to 80 characters.
    pub name: String,
    /// Hub, region or wider tier.
    pub kind: GroupKind,
    /// The group this one belongs to, if any.
    pub parent: Option<GroupId>,
    /// The unit of the group's ledger ("hours"); amounts are integers of it.
    pub unit: String,
    /// Milliseconds since the Unix epoch, from the creator's clock.
    pub created_at_ms: u64,
    /// Random bytes so that two groups with the same name differ.
    pub nonce: [u8; 16],
    /// The founding charter.
    pub charter: Charter,
}

/// A charter: ratified articles and the rules for making decisions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Charter {
    /// Numbered articles, in order.
    pub articles: Vec<Article>,
    /// How decisions are made.
    pub rules: Rules,
}

/// One article of a charter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Article {
    /// A short title.
    pub title: String,
    /// The ratified text.
    pub text: String,
}

/// The rules of a charter. Shares are in percent, durations in seconds,
/// amounts in the ledger's minor units.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rules {
    /// Share of members who must vote for a decision to count.
    pub quorum_percent: u8,
    /// Share of yes among yes + no needed to pass.
    pub approval_percent: u8,
    /// How long a proposal stays open.
    pub voting_period_secs: u64,
    /// Length of the revision cycle.
    pub revision_cycle_secs: u64,
    /// Share of articles to amend or reaffirm each cycle.
    pub revision_share_percent: u8,
    /// How long a distress signal waits for an acknowledgement before it
    /// climbs to the parent tier.
    pub distress_escalation_secs: u64,
    /// Default lowest balance of an account (zero or below).
    pub default_credit_floor: i64,
    /// Default highest balance of an account (zero or above).
    pub default_credit_ceiling: i64,
    /// Whether admitting a member needs a vote besides an invite.
    pub entry_needs_vote: bool,
    /// What becomes of a leaver's balance: when true, a positive balance
    /// is paid into the commons as they leave; a debt stays on the books.
    pub exit_credit_to_commons: bool,
    /// How many distress signals one member may raise per hour.
    pub distress_per_hour: u32,
    /// Payments per ledger period: a period's document is closed to new
    /// payments once it holds this many (concurrent payers may overfill it
    /// slightly), and the next period opens.
    pub ledger_period_payments: u32,
}

impl Default for Rules {
    fn default() -> Self {
        const DAY: u64 = 24 * 60 * 60;
        Rules {
            quorum_percent: 50,
            approval_percent: 60,
            voting_period_secs: 7 * DAY,
            revision_cycle_secs: 28 * DAY,
            revision_share_percent: 25,
            distress_escalation_secs: 5 * 60,
            default_credit_floor: -10_000,
            default_credit_ceiling: 50_000,
            entry_needs_vote: false,
            exit_credit_to_commons: true,
            distress_per_hour: 10,
            ledger_period_payments: 1_000,
        }
    }
}

impl Default for Charter {
    /// The short default charter every new group starts from: voluntary
    /// entry and exit, non-coercion, periodic revision.
    fn default() -> Self {
        let article = |title: &str, text: &str| Article {
            title: title.to_string(),
            text: text.to_string(),
        };
        Charter {
            articles: vec![
                article(
                    "Voluntary entry",
                    "Anyone invited by a member may join. No one is a member against their will.",
                ),
                article(
                    "Free exit",
                    "Any member may leave at any time by their own signed word. No one can block it.",
                ),
                article(
                    "Non-coercion",
                    "Members decide together by the rules of this charter. No member compels another.",
                ),
                article(
                    "Periodic revision",
                    "Each revision cycle a share of these articles is amended or reaffirmed; none stands unexamined forever.",
                ),
            ],
            rules: Rules::default(),
        }
    }
}

/// The old shape of an admission (no ticket proof). Never accepted in a
/// new change; kept so that stored bytes still decode.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegacyAdmission {
    /// The newcomer.
    pub member: MemberId,
    /// The id of the ticket they presented.
    pub ticket: Hash32,
    /// When, by the admitting member's clock.
    pub admitted_at_ms: u64,
}

/// Domain of what an invite ticket's issuer signs.
const TICKET_DOMAIN: &[u8] = b"nestwork/ticket-id/v1\0";

/// What the issuer of invite ticket `ticket` for `group` signs: the group
/// and the ticket's id (a hash of the ticket's fields). An admission
/// carries this signature, so every node can check that the member who
/// admits is the member who issued the ticket, for this group.
pub fn ticket_message(group: &GroupId, ticket: &Hash32) -> Vec<u8> {
    [TICKET_DOMAIN, group.as_bytes(), &ticket.0].concat()
}

/// A newcomer admitted to the group by the member who signs this record
/// (the one whose invite ticket they presented).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Admission {
    /// The newcomer.
    pub member: MemberId,
    /// The id of the ticket they presented (each ticket admits once).
    pub ticket: Hash32,
    /// The issuer's signature over [`ticket_message`] of this group and
    /// `ticket`: the issuer must be the admission's signer.
    pub ticket_signature: Vec<u8>,
    /// When, by the admitting member's clock (ms since the Unix epoch).
    pub admitted_at_ms: u64,
    /// The founders' edits in its causal past, in id order: the charter
    /// the newcomer joins. A founders' edit counts only if every admission
    /// lists it, so one made on a branch that leaves out the admissions
    /// (by the founder's second device) counts for nothing. The engine
    /// checks the list against the causal past; `SignedDoc::add_record`
    /// fills it in.
    pub founders_edits: Vec<Hash32>,
}

impl Admission {
    /// An admission of `member` to `group` with a ticket `ticket` that
    /// `inviter` signs here and now (tests and tools; a node admits with
    /// the signature of the ticket the newcomer presented).
    pub fn self_issued(
        inviter: &nestwork_core::MemberKey,
        group: &GroupId,
        member: MemberId,
        ticket: Hash32,
        admitted_at_ms: u64,
    ) -> Admission {
        Admission {
            member,
            ticket,
            ticket_signature: inviter.sign(&ticket_message(group, &ticket)).to_vec(),
            admitted_at_ms,
            founders_edits: Vec::new(),
        }
    }

    /// Whether `issuer` signed the ticket for `group`.
    pub fn check_ticket(&self, group: &GroupId, issuer: &MemberId) -> Result<(), String> {
        nestwork_core::signed::verify_signature(
            issuer,
            &ticket_message(group, &self.ticket),
            &self.ticket_signature,
            "invite ticket",
        )
        .map_err(|_| {
            format!(
                "the admission's ticket {} was not issued by its signer {issuer} for this group",
                self.ticket.short()
            )
        })
    }
}
