//! What members ask the node for and what it shows them: the requests
//! and views that the CLI and the local API carry. Plain data; the
//! operations that take and make them are in the files beside this one.

use nestwork_core::{DocId, GroupId, Hash32, MemberId};
use nestwork_docs::distress::{Category, Severity, SignalView};
use nestwork_docs::governance::{Choice, LotteryPick, ProposalState, TreatyState};
use nestwork_docs::ledger::{Account, Equivocation, Ledger, Payment};
use nestwork_docs::GroupKind;
use serde::{Deserialize, Serialize};

/// What `group create` asks for. `Default` leaves every choice to the
/// charter's defaults (a hub, in hours, no parent).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CreateGroup {
    /// The name.
    pub name: String,
    /// hub, region or federation (default hub).
    #[serde(default)]
    pub kind: Option<GroupKind>,
    /// The parent group (id, id prefix or name of a group this node has).
    #[serde(default)]
    pub parent: Option<String>,
    /// An optional first description.
    #[serde(default)]
    pub description: Option<String>,
    /// The ledger's unit (default "hours").
    #[serde(default)]
    pub unit: Option<String>,
    /// The default credit floor (zero or below; the charter's default if
    /// not given).
    #[serde(default)]
    pub floor: Option<i64>,
    /// The default credit ceiling (zero or above).
    #[serde(default)]
    pub ceiling: Option<i64>,
}

/// What `pay` asks for.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PayRequest {
    /// A member id (or a unique start of one on the roll), or "commons".
    pub to: String,
    /// Minor units.
    pub amount: u64,
    /// Optional memo.
    #[serde(default)]
    pub memo: String,
    /// An id the client picks for this request (1 to
    /// [`MAX_REQUEST_ID_CHARS`] characters): a payment retried with the
    /// same id is made once, and the retry is answered with it.
    #[serde(default)]
    pub request_id: Option<String>,
}

/// Longest client request id.
pub const MAX_REQUEST_ID_CHARS: usize = 64;

/// What `limit` asks for.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LimitRequest {
    /// A member (id or unique start of one), or none for the group default.
    #[serde(default)]
    pub member: Option<String>,
    /// Lowest balance allowed (zero or below).
    pub floor: i64,
    /// Highest balance allowed (zero or above).
    pub ceiling: i64,
}

/// Node health, for `nestwork status`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Status {
    /// This node's member id.
    pub member: String,
    /// The software version.
    pub version: String,
    /// The data directory.
    pub data_dir: String,
    /// Groups held.
    pub groups: usize,
    /// Changes stored, over all documents.
    pub changes: usize,
    /// Store size on disk.
    pub store_bytes: u64,
    /// Seconds since the node started.
    pub uptime_secs: u64,
    /// How long opening the store and loading documents took.
    pub load_ms: u64,
    /// Payments accepted, over all groups.
    pub payments: usize,
    /// Of those, payments held in memory (past each ledger's base); the
    /// rest are counted in the base and stay on disk.
    pub payments_in_memory: usize,
    /// Ledger period documents loaded.
    pub periods_loaded: usize,
    /// Ledger period documents kept on disk only.
    pub periods_on_disk: usize,
    /// Frozen accounts (two payments with one sequence number), by group.
    pub equivocations: Vec<(GroupId, Equivocation)>,
    /// Per group: articles overdue for revision and proposals open.
    #[serde(default)]
    pub charters: Vec<CharterStatus>,
    /// Documents found damaged in the store when the node started, and
    /// what was done about them.
    #[serde(default)]
    pub damaged: Vec<Damaged>,
    /// What the node holds in memory.
    #[serde(default)]
    pub memory: MemoryStatus,
}

/// What the node holds in memory, counted by the node itself (beside the
/// resident size the system gives), for `status`: everything here must
/// follow the recent ledger periods, not the whole history.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryStatus {
    /// Resident memory of the node's process, in bytes (Linux; 0 where the
    /// system does not say).
    pub rss_bytes: u64,
    /// Documents loaded: group documents and open ledger periods.
    pub documents_loaded: usize,
    /// Signed changes held by the loaded documents.
    pub changes_loaded: usize,
    /// Records held by the loaded documents.
    pub records_loaded: usize,
    /// Entries of the ledgers' indexes (payments past the base, chain
    /// positions, prefix sums, closings, balances).
    pub ledger_index_entries: usize,
    /// The most the store may cache, in bytes.
    pub store_cache_bytes: u64,
    /// Ledger period documents read back from disk since start-up because
    /// a late record needed the history below the base.
    #[serde(default)]
    pub periods_reread: u64,
}

/// A document whose stored entries were found damaged at start-up.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Damaged {
    /// The document (a group, or a ledger period of one).
    pub doc: DocId,
    /// The group's name, where what is left shows it.
    pub name: Option<String>,
    /// What was found and done, in plain words.
    pub what: String,
}

/// A group's charter at a glance, for `status`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CharterStatus {
    /// The group.
    pub group: GroupId,
    /// Its name.
    pub name: String,
    /// Articles not revisited within a revision cycle.
    pub overdue: Vec<u32>,
    /// Proposals still open.
    pub open_proposals: usize,
}

/// The outcome of importing a bundle.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImportReport {
    /// The group.
    pub doc: DocId,
    /// The group's name.
    pub group_name: String,
    /// New changes stored, over the group document and its ledger periods.
    pub applied: usize,
    /// Changes already held.
    pub duplicates: usize,
    /// Ledger period documents the bundle carried.
    #[serde(default)]
    pub periods: usize,
    /// Payments the group's ledger holds after the import.
    #[serde(default)]
    pub payments: usize,
}

/// One account, for `balance`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccountView {
    /// A member id, or "commons".
    pub account: String,
    /// Received minus paid, over every accepted payment.
    pub balance: i128,
    /// Lowest balance allowed.
    pub floor: i64,
    /// Highest balance allowed.
    pub ceiling: i64,
    /// Over its ceiling (two payers who had not seen each other can pass
    /// it together); it receives nothing more until back under.
    pub over_ceiling: bool,
    /// Why the account is frozen, if it is: two payments with one sequence
    /// number, kept as proof.
    pub frozen: Option<Equivocation>,
}

/// Balances of a group, for `balance`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BalanceView {
    /// The group.
    pub group: GroupId,
    /// The group's name.
    pub group_name: String,
    /// The ledger's unit.
    pub unit: String,
    /// The accounts asked for.
    pub accounts: Vec<AccountView>,
    /// The sum of every balance in the group (always zero).
    pub total: i128,
    /// Payments accepted.
    pub payments: usize,
    /// Every frozen account in the group, with its proof.
    pub equivocations: Vec<Equivocation>,
}

/// One payment, for `ledger` and `pay`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PaymentView {
    /// The payment id.
    pub id: Hash32,
    /// Paid from.
    pub from: String,
    /// Paid to.
    pub to: String,
    /// Minor units.
    pub amount: u64,
    /// The memo.
    pub memo: String,
    /// Position on the payer's chain.
    pub seq: u64,
    /// The ledger period that stores it.
    pub period: u64,
    /// When, by the payer's clock.
    pub made_at_ms: u64,
    /// Who signed it.
    pub signer: MemberId,
    /// Part of an equivocation (same payer, same sequence number).
    pub equivocation: bool,
}

/// A page of a group's history, for `ledger`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LedgerView {
    /// The group.
    pub group: GroupId,
    /// The group's name.
    pub group_name: String,
    /// The ledger's unit.
    pub unit: String,
    /// Payments, newest first.
    pub payments: Vec<PaymentView>,
    /// How many payments the ledger holds in all.
    pub total: usize,
    /// How many of them can be listed (all: the recent periods from
    /// memory, older ones read from the store).
    pub listed: usize,
    /// Periods and how many payments each holds.
    pub periods: Vec<(u64, u64)>,
    /// Every frozen account, with its proof.
    pub equivocations: Vec<Equivocation>,
}

/// The view of one accepted payment.
pub fn payment_view(ledger: &Ledger, id: Hash32, signer: MemberId, p: &Payment) -> PaymentView {
    let equivocation = ledger
        .frozen(&p.from)
        .is_some_and(|q| q.payments.contains(&id));
    PaymentView {
        id,
        from: p.from.to_string(),
        to: p.to.to_string(),
        amount: p.amount,
        memo: p.memo.clone(),
        seq: p.seq,
        period: p.period,
        made_at_ms: p.made_at_ms,
        signer,
        equivocation,
    }
}

/// The view of one account.
pub fn account_view(ledger: &Ledger, account: &Account) -> AccountView {
    let limits = ledger.limits_of(account);
    let balance = ledger.balance(account);
    AccountView {
        account: account.to_string(),
        balance,
        floor: limits.floor,
        ceiling: limits.ceiling,
        over_ceiling: *account != Account::Commons && balance > i128::from(limits.ceiling),
        frozen: ledger.frozen(account),
    }
}

/// What `propose` (and `charter edit`, `draft new`) asks for: defined in
/// docs, where drafts turn into it.
pub use nestwork_docs::ProposeRequest;

/// What `vote` asks for.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VoteRequest {
    /// yes, no or abstain.
    pub choice: Choice,
    /// As a delegate: the child group voted for.
    #[serde(default)]
    pub for_group: Option<String>,
}

/// One proposal, for `propose`, `vote` and `proposals`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProposalView {
    /// The group.
    pub group: GroupId,
    /// The group's name.
    pub group_name: String,
    /// What it asks for, in words.
    pub summary: String,
    /// The proposal, its tally and outcome.
    #[serde(flatten)]
    pub state: ProposalState,
}

/// A group's proposals, for `proposals`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProposalsView {
    /// The group.
    pub group: GroupId,
    /// The group's name.
    pub group_name: String,
    /// Open ones first, then decided ones, newest first.
    pub proposals: Vec<ProposalView>,
    /// Lotteries drawn.
    pub lotteries: Vec<LotteryPick>,
    /// When this view holds.
    pub now_ms: u64,
}

/// What leaving does, for `group leave`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LeaveView {
    /// The group.
    pub group: GroupId,
    /// The group's name.
    pub group_name: String,
    /// The leaver's balance.
    pub balance: i128,
    /// The ledger's unit.
    pub unit: String,
    /// What happens to it, by the charter's rule.
    pub consequence: String,
    /// Whether the exit was signed (false: this is what would happen).
    pub done: bool,
}

/// A treaty, for `treaty list` and `treaty show`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TreatyView {
    /// The group this view is from.
    pub group: GroupId,
    /// Its name.
    pub group_name: String,
    /// The other party's name, if this node holds it.
    pub other_name: Option<String>,
    /// Days until the end in force.
    pub days_left: u64,
    /// The treaty and where it stands.
    #[serde(flatten)]
    pub state: TreatyState,
}

/// What `distress raise` asks for.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RaiseRequest {
    /// medical, safety, shelter, food-water, eviction, legal, other.
    pub category: Category,
    /// low, high or critical.
    pub severity: Severity,
    /// A coarse location.
    #[serde(default)]
    pub location: Option<String>,
    /// How long it asks for help, in seconds (default a day).
    #[serde(default)]
    pub expires_secs: Option<u64>,
    /// What is happening.
    pub text: String,
}

/// What `distress ack|respond|resolve` asks for.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AnswerRequest {
    /// ack, respond or resolve.
    pub kind: Answering,
    /// A few words.
    #[serde(default)]
    pub text: String,
    /// For respond: seconds until there.
    #[serde(default)]
    pub eta_secs: Option<u64>,
}

/// Which answer an [`AnswerRequest`] gives; with its `eta_secs`, it makes
/// the record's `AnswerKind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Answering {
    /// Seen.
    Ack,
    /// On my way.
    Respond,
    /// Help came.
    Resolve,
}

/// A signal with the name of the group it is seen in.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SignalItem {
    /// The origin group's name, if this node holds it.
    pub origin_name: Option<String>,
    /// When this node first held it where it is seen (noted on the tick
    /// after it arrived); its escalation time counts from then.
    #[serde(default)]
    pub held_since_ms: Option<u64>,
    /// The signal as seen here.
    #[serde(flatten)]
    pub view: SignalView,
}
