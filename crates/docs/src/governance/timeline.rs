//! The governance timeline, kept from one view to the next (issue 15:
//! governance evaluated incrementally).
//!
//! [`Governance::at`] replays a group's records in (time, kind, id) order.
//! A [`Timeline`] keeps the records and a *checkpoint*: the replay up to the
//! first proposal that is not yet final. A view then replays only what
//! follows the checkpoint (the proposals still open or waiting for their
//! decision, and what comes after them), so its cost follows the group's
//! recent business, not its whole history.
//!
//! What the checkpoint holds never depends on the moment asked for, so
//! every view equals a replay from scratch:
//! - an admission, exit, founders' edit or submission is replayed into it
//!   only if the moment asked for is past it;
//! - a proposal is replayed into it only once *final*: its decision is held
//!   (or its proposer was off the roll), so no later moment judges it
//!   otherwise.
//!
//! A record that arrives later and belongs before the checkpoint's last
//! event, or an exit, founders' edit or delegation (which change how past
//! votes count), sets the checkpoint back to the start; it is rebuilt at
//! the next view. A vote or decision on a final proposal re-judges that
//! proposal alone, by what it was judged against at its submission: if
//! only the list of votes left out changes, it is updated in place (a
//! flood of late votes on old proposals costs one judgement each, not a
//! replay); if the outcome would change, the checkpoint is rebuilt.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use nestwork_core::{GroupId, Hash32, MemberId, ProposalId};

use super::{
    Action, CharterEdit, Counterpart, Decision, Delegation, Effect, Exit, Governance, IgnoredVote,
    Outcome, Proposal, ProposalState, Seat, Vote, DECISION_GRACE_MS,
};
use crate::record::{Admission, RecordBody};

/// A governance record with its id and signer.
#[derive(Clone)]
pub(super) struct Signed<T> {
    pub(super) id: Hash32,
    pub(super) author: MemberId,
    pub(super) body: T,
}

/// What decides proposals: votes and decision records by proposal, and
/// what a vote's weight depends on (exits, delegations); each in id order.
#[derive(Clone, Default)]
struct Ballots {
    votes: BTreeMap<ProposalId, BTreeMap<Hash32, Signed<Vote>>>,
    decisions: BTreeMap<ProposalId, BTreeMap<Hash32, Signed<Decision>>>,
    exits: BTreeMap<Hash32, Signed<Exit>>,
    delegations: BTreeMap<Hash32, Signed<Delegation>>,
}

/// A group's governance records by kind, each in id order.
#[derive(Clone, Default)]
struct Records {
    admissions: BTreeMap<Hash32, Signed<Admission>>,
    edits: BTreeMap<Hash32, Signed<CharterEdit>>,
    proposals: BTreeMap<Hash32, Signed<Proposal>>,
    counterparts: BTreeMap<Hash32, Signed<Counterpart>>,
    ballots: Ballots,
}

/// Something that happens on the timeline. The order of the variants is
/// the order of events at the same millisecond.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Admission,
    Edit,
    Exit,
    Decision,
    Submission,
}

/// An event's place on the timeline: (time, kind, record id).
type Key = (u64, Event, Hash32);

/// What a proposal is judged against: the group as it stood at its
/// submission.
#[derive(Clone)]
struct Terms {
    /// Who may vote (shared between proposals while the roll is unchanged).
    seats: Arc<BTreeSet<Seat>>,
    proposer_on_roll: bool,
    deadline_ms: u64,
    quorum_percent: u8,
    approval_percent: u8,
}

/// The replay's state between two events.
#[derive(Clone)]
struct Replay {
    g: Governance,
    next_article: u32,
    /// Someone other than the creator has joined: founders' edits stop.
    others_joined: bool,
    /// Tickets already used (a ticket admits once).
    used_tickets: BTreeSet<Hash32>,
    /// Members removed by a vote, who come back only by a vote.
    removed: BTreeSet<MemberId>,
    /// Each proposal submitted so far, as judged, with its terms.
    /// (Shared with the views made from it: a view copies no proposal.)
    states: BTreeMap<Hash32, (Arc<ProposalState>, Terms)>,
    /// The events still to come.
    queue: BTreeSet<Key>,
    /// The latest event replayed.
    last: Option<Key>,
    /// The seats of the latest submission (shared while unchanged).
    seats: Arc<BTreeSet<Seat>>,
}

/// A group's governance records and the replay of them up to the first
/// proposal not yet final (see the module's notes).
#[derive(Clone)]
pub struct Timeline {
    /// The group at its founding.
    founded: Governance,
    first_article: u32,
    records: Records,
    checkpoint: Replay,
    /// The checkpoint must be rebuilt before it is used.
    stale: bool,
}

impl Timeline {
    /// The timeline of a group founded by `creator` at `created_at_ms`
    /// with `charter`, under `parent`; no records yet.
    pub fn new(
        group: GroupId,
        creator: MemberId,
        created_at_ms: u64,
        charter: &crate::record::Charter,
        parent: Option<GroupId>,
    ) -> Timeline {
        let founded = Governance {
            group,
            now_ms: created_at_ms,
            creator,
            created_at_ms,
            articles: charter
                .articles
                .iter()
                .enumerate()
                .map(|(i, a)| super::ArticleState {
                    number: i as u32 + 1,
                    title: a.title.clone(),
                    text: a.text.clone(),
                    revised_at_ms: created_at_ms,
                    overdue: false,
                })
                .collect(),
            repealed: Vec::new(),
            rules: charter.rules.clone(),
            roll: BTreeMap::from([(creator, created_at_ms)]),
            awaiting_entry: BTreeSet::new(),
            former: BTreeMap::new(),
            parent,
            children: BTreeSet::new(),
            delegates: None,
            child_delegations: BTreeMap::new(),
            proposals: Vec::new(),
            treaties: BTreeMap::new(),
            lotteries: Vec::new(),
            cycle: (0, created_at_ms),
            revisited_this_cycle: 0,
            revisit_per_cycle: 0,
            ignored_edits: Vec::new(),
        };
        let first_article = charter.articles.len() as u32 + 1;
        let records = Records::default();
        let checkpoint = Replay::start(&founded, first_article, &records);
        Timeline {
            founded,
            first_article,
            records,
            checkpoint,
            stale: false,
        }
    }

    /// Add record `id`, signed by `author` (one already held is ignored;
    /// records that are not about governance are ignored).
    pub fn add(&mut self, id: Hash32, author: MemberId, body: &RecordBody) {
        let r = &mut self.records;
        // Which founders' edits count depends on every admission.
        let edits_held = !r.edits.is_empty();
        let new = match body {
            RecordBody::Admission(a) => put(&mut r.admissions, signed(id, author, a)),
            RecordBody::Proposal(p) => put(&mut r.proposals, signed(id, author, p)),
            RecordBody::Exit(e) => put(&mut r.ballots.exits, signed(id, author, e)),
            RecordBody::CharterEdit(e) => put(&mut r.edits, signed(id, author, e)),
            RecordBody::Delegation(d) => put(&mut r.ballots.delegations, signed(id, author, d)),
            RecordBody::Vote(v) => put(
                r.ballots.votes.entry(v.proposal).or_default(),
                signed(id, author, v),
            ),
            RecordBody::Decision(d) => put(
                r.ballots.decisions.entry(d.proposal).or_default(),
                signed(id, author, d),
            ),
            // Filed at each view.
            RecordBody::Counterpart(c) => put(&mut r.counterparts, signed(id, author, c)),
            _ => false,
        };
        if !new {
            return;
        }
        match body {
            RecordBody::Admission(a) => {
                self.schedule((a.admitted_at_ms, Event::Admission, id), edits_held)
            }
            RecordBody::Proposal(p) => {
                self.schedule((p.submitted_at_ms, Event::Submission, id), false)
            }
            // These change how votes already counted count.
            RecordBody::Exit(_) | RecordBody::CharterEdit(_) | RecordBody::Delegation(_) => {
                self.stale = true
            }
            RecordBody::Vote(Vote { proposal, .. })
            | RecordBody::Decision(Decision { proposal, .. }) => self.rejudge(proposal),
            _ => {}
        }
    }

    /// A new event at `key`: on the checkpoint's queue if it comes after
    /// what the checkpoint replayed, else the checkpoint is rebuilt.
    fn schedule(&mut self, key: Key, rebuild: bool) {
        if rebuild || self.checkpoint.last.is_some_and(|last| key < last) {
            self.stale = true;
        } else {
            self.checkpoint.queue.insert(key);
        }
    }

    /// A vote or decision on `proposal` arrived: if the checkpoint holds
    /// the proposal as final, judge it again alone.
    fn rejudge(&mut self, proposal: &ProposalId) {
        if self.stale {
            return;
        }
        let Some((old, terms)) = self.checkpoint.states.get(&proposal.hash32()) else {
            return;
        };
        let p = &self.records.proposals[&proposal.hash32()];
        // A final proposal is judged alike at every moment.
        let new = judge(p, terms, &self.records.ballots, u64::MAX);
        let same = is_final(&new, terms)
            && new.outcome == old.outcome
            && new.decided_at_ms == old.decided_at_ms
            && new.votes == old.votes;
        if !same {
            self.stale = true;
            return;
        }
        let effect = old.effect.clone();
        if let Some((state, _)) = self.checkpoint.states.get_mut(&proposal.hash32()) {
            *state = Arc::new(ProposalState { effect, ..new });
        }
    }

    /// The governance at `now_ms`, replaying only what follows the
    /// checkpoint (which first moves on to the first proposal not final
    /// at `now_ms`).
    pub fn at(&mut self, now_ms: u64) -> Governance {
        if self.stale {
            self.checkpoint = Replay::start(&self.founded, self.first_article, &self.records);
            self.stale = false;
        }
        if self.checkpoint.last.is_some_and(|last| last.0 > now_ms) {
            // A moment before the checkpoint (a clock set back): from the
            // start, leaving the checkpoint as it is.
            return self.from_start(now_ms);
        }
        self.checkpoint.advance(&self.records, now_ms);
        let mut tail = self.checkpoint.clone();
        tail.run(&self.records, now_ms);
        tail.finish(&self.records, now_ms)
    }

    /// How many proposals the checkpoint holds as final: what a view
    /// does not judge again.
    pub fn settled_proposals(&self) -> usize {
        if self.stale {
            0
        } else {
            self.checkpoint.states.len()
        }
    }

    /// The governance at `now_ms`, replayed from the start.
    pub fn from_start(&self, now_ms: u64) -> Governance {
        let mut replay = Replay::start(&self.founded, self.first_article, &self.records);
        replay.run(&self.records, now_ms);
        replay.finish(&self.records, now_ms)
    }
}

impl Replay {
    /// Nothing replayed yet: every record's event is to come.
    fn start(founded: &Governance, first_article: u32, records: &Records) -> Replay {
        let mut queue = BTreeSet::new();
        for a in records.admissions.values() {
            queue.insert((a.body.admitted_at_ms, Event::Admission, a.id));
        }
        for e in records.edits.values() {
            queue.insert((e.body.at_ms, Event::Edit, e.id));
        }
        for e in records.ballots.exits.values() {
            queue.insert((e.body.at_ms, Event::Exit, e.id));
        }
        for p in records.proposals.values() {
            queue.insert((p.body.submitted_at_ms, Event::Submission, p.id));
        }
        Replay {
            g: founded.clone(),
            next_article: first_article,
            others_joined: false,
            used_tickets: BTreeSet::new(),
            removed: BTreeSet::new(),
            states: BTreeMap::new(),
            queue,
            last: None,
            seats: Arc::default(),
        }
    }

    /// Replay every event up to `now_ms`.
    fn run(&mut self, records: &Records, now_ms: u64) {
        while let Some(&key) = self.queue.first() {
            if key.0 > now_ms {
                break;
            }
            self.queue.pop_first();
            let judged = (key.1 == Event::Submission).then(|| {
                let (p, terms) = self.submission(records, &key.2);
                let state = judge(p, &terms, &records.ballots, now_ms);
                (state, terms)
            });
            self.step(key, records, judged);
        }
    }

    /// Replay events up to `now_ms` as long as what is replayed cannot
    /// depend on `now_ms`: up to the first proposal not final then.
    fn advance(&mut self, records: &Records, now_ms: u64) {
        while let Some(&key) = self.queue.first() {
            if key.0 > now_ms {
                break;
            }
            let judged = if key.1 == Event::Submission {
                let (p, terms) = self.submission(records, &key.2);
                let state = judge(p, &terms, &records.ballots, now_ms);
                if !is_final(&state, &terms) {
                    break;
                }
                Some((state, terms))
            } else {
                None
            };
            self.queue.pop_first();
            self.step(key, records, judged);
        }
    }

    /// Proposal `id` and the terms it is judged by, now.
    fn submission<'a>(
        &mut self,
        records: &'a Records,
        id: &Hash32,
    ) -> (&'a Signed<Proposal>, Terms) {
        let p = &records.proposals[id];
        let g = &self.g;
        let mut seats: BTreeSet<Seat> = g.roll.keys().map(|m| Seat::Member(*m)).collect();
        seats.extend(g.children.iter().map(|c| Seat::Group(*c)));
        if *self.seats != seats {
            self.seats = Arc::new(seats);
        }
        let seats = self.seats.clone();
        let terms = Terms {
            seats,
            proposer_on_roll: g.roll.contains_key(&p.author),
            deadline_ms: p
                .body
                .submitted_at_ms
                .saturating_add(g.rules.voting_period_secs.saturating_mul(1000)),
            quorum_percent: g.rules.quorum_percent,
            approval_percent: g.rules.approval_percent,
        };
        (p, terms)
    }

    /// Replay the event at `key` (`judged`: for a submission, the
    /// proposal as judged, with its terms).
    fn step(&mut self, key: Key, records: &Records, judged: Option<(ProposalState, Terms)>) {
        self.last = self.last.max(Some(key));
        let (at, event, id) = key;
        let g = &mut self.g;
        match event {
            Event::Admission => {
                let a = &records.admissions[&id];
                let member = a.body.member;
                // The engine refuses these already; the timeline ignores
                // them too, so no stored history can make an admission
                // count that was not earned.
                if !g.roll.contains_key(&a.author)
                    || a.author == member
                    || !self.used_tickets.insert(a.body.ticket)
                {
                    return;
                }
                if member != g.creator {
                    self.others_joined = true;
                }
                if g.roll.contains_key(&member) {
                    return;
                }
                if g.rules.entry_needs_vote || self.removed.contains(&member) {
                    g.awaiting_entry.insert(member);
                } else {
                    g.roll.insert(member, at);
                    g.former.remove(&member);
                }
            }
            Event::Exit => {
                let member = records.ballots.exits[&id].body.member;
                if g.roll.remove(&member).is_some() || g.awaiting_entry.remove(&member) {
                    g.former.insert(member, at);
                }
            }
            Event::Edit => {
                let e = &records.edits[&id];
                // A founders' edit counts only if every admission follows
                // it (each lists those in its causal past): one made on a
                // branch that leaves the admissions out does not, whatever
                // time it claims.
                let followed_by_all = records
                    .admissions
                    .values()
                    .all(|a| a.body.founders_edits.contains(&e.id));
                let why = if e.author != g.creator {
                    Some("only the group's creator edits the charter directly".to_string())
                } else if self.others_joined {
                    Some("members had joined: the charter changes by proposals now".to_string())
                } else if !followed_by_all {
                    Some(
                        "made beside the admissions, not before them: the charter changes by proposals now"
                            .to_string(),
                    )
                } else {
                    g.apply(&e.body.action, e.id, at, &mut self.next_article, &[])
                        .err()
                };
                if let Some(why) = why {
                    g.ignored_edits.push((e.id, why));
                }
            }
            Event::Submission => {
                let Some((state, terms)) = judged else {
                    return;
                };
                if let Some(decided) = state.decided_at_ms {
                    self.queue.insert((decided, Event::Decision, id));
                }
                self.states.insert(id, (Arc::new(state), terms));
            }
            Event::Decision => {
                let Some((state, _)) = self.states.get(&id) else {
                    return;
                };
                if state.outcome != Outcome::Passed {
                    return;
                }
                let counted: Vec<Hash32> = state.votes.values().map(|(_, id)| *id).collect();
                let action = state.proposal.action.clone();
                let effect = g.apply(&action, id, at, &mut self.next_article, &counted);
                match (&action, &effect) {
                    (Action::RemoveMember { member }, Ok(())) => {
                        self.removed.insert(*member);
                    }
                    (Action::AdmitMember { member }, Ok(())) => {
                        self.removed.remove(member);
                    }
                    _ => {}
                }
                if let Some((s, _)) = self.states.get_mut(&id) {
                    Arc::make_mut(s).effect = Some(match effect {
                        Ok(()) => Effect::InEffect,
                        Err(why) => Effect::NotCarriedOut(why),
                    });
                }
            }
        }
    }

    /// The governance once replayed to `now_ms`: the proposals, and what
    /// is filed or settled at the moment itself.
    fn finish(self, records: &Records, now_ms: u64) -> Governance {
        let mut g = self.g;
        g.now_ms = now_ms;
        g.proposals = self.states.into_values().map(|(s, _)| s).collect();
        g.file_delegations(records.ballots.delegations.values());
        g.file_counterparts(records.counterparts.values());
        g.settle_treaties(now_ms);
        g.settle_cycle(now_ms);
        g
    }
}

/// Record `id` by `author`, with its body.
fn signed<T: Clone>(id: Hash32, author: MemberId, body: &T) -> Signed<T> {
    Signed {
        id,
        author,
        body: body.clone(),
    }
}

/// Put `record` in `map`; whether it is new.
fn put<T>(map: &mut BTreeMap<Hash32, Signed<T>>, record: Signed<T>) -> bool {
    match map.entry(record.id) {
        std::collections::btree_map::Entry::Occupied(_) => false,
        std::collections::btree_map::Entry::Vacant(e) => {
            e.insert(record);
            true
        }
    }
}

/// Whether proposal `state` is judged alike at every later moment and
/// stays so unless a vote or decision on it arrives: its proposer was off
/// the roll, or a decision on it is held.
fn is_final(state: &ProposalState, terms: &Terms) -> bool {
    !terms.proposer_on_roll || !state.decisions.is_empty()
}

/// Judge proposal `p` by `terms` (the group at its submission): its votes
/// and decision records, at `now_ms`.
fn judge(p: &Signed<Proposal>, terms: &Terms, ballots: &Ballots, now_ms: u64) -> ProposalState {
    let submitted = p.body.submitted_at_ms;
    let mut blank = ProposalState {
        id: ProposalId::from(p.id),
        proposer: p.author,
        proposal: p.body.clone(),
        deadline_ms: terms.deadline_ms,
        quorum_percent: terms.quorum_percent,
        approval_percent: terms.approval_percent,
        seats: terms.seats.len(),
        yes: 0,
        no: 0,
        abstain: 0,
        votes: BTreeMap::new(),
        outcome: Outcome::Open,
        decided_at_ms: None,
        effect: None,
        ignored: Vec::new(),
        decisions: Vec::new(),
        ignored_decisions: Vec::new(),
    };
    if !terms.proposer_on_roll {
        blank.outcome = Outcome::Failed;
        blank.decided_at_ms = Some(submitted);
        blank.effect = Some(Effect::ProposerOffRoll);
        return blank;
    }
    let count = Count {
        blank,
        seats: &terms.seats,
        ballots,
        votes: ballots
            .votes
            .get(&ProposalId::from(p.id))
            .into_iter()
            .flat_map(|v| v.values())
            .collect(),
    };
    let (valid, refused) = decisions_in_force(p, &count);
    let mut state = if valid.is_empty() {
        // Nothing is decided until a decision is held: this is the tally
        // so far, and what a decision would say.
        let mut s = count.all(now_ms);
        if s.decided_at_ms.is_some() {
            s.outcome = Outcome::Deciding;
        }
        s
    } else {
        count.as_decided(&valid, now_ms)
    };
    state.ignored_decisions = refused;
    state
}

/// The votes on one proposal, and what it takes to count them: its state
/// before any vote, the seats (as judged at its submission), the ballots.
struct Count<'a> {
    blank: ProposalState,
    seats: &'a BTreeSet<Seat>,
    ballots: &'a Ballots,
    votes: Vec<&'a Signed<Vote>>,
}

impl Count<'_> {
    /// Every vote, counted at `now_ms`.
    fn all(&self, now_ms: u64) -> ProposalState {
        self.tally(&mut self.votes.iter().copied(), now_ms)
    }

    /// The votes among `named`, counted at `now_ms`.
    fn named(&self, named: &BTreeSet<&Hash32>, now_ms: u64) -> ProposalState {
        self.tally(
            &mut self.votes.iter().copied().filter(|v| named.contains(&v.id)),
            now_ms,
        )
    }

    fn tally(&self, votes: &mut dyn Iterator<Item = &Signed<Vote>>, now_ms: u64) -> ProposalState {
        tally(self.blank.clone(), self.seats, votes, self.ballots, now_ms)
    }

    /// The proposal as the decisions in force (`valid`, not empty) settle
    /// it, whatever this clock (`now_ms`) says.
    fn as_decided(&self, valid: &[&Signed<Decision>], now_ms: u64) -> ProposalState {
        // Counted as of the latest of them.
        let at = valid
            .iter()
            .map(|d| d.body.decided_at_ms)
            .max()
            .unwrap_or(now_ms);
        let named: BTreeSet<&Hash32> = valid.iter().flat_map(|d| &d.body.counted).collect();
        let mut s = self.named(&named, at);
        if s.decided_at_ms.is_none() {
            // Side-by-side decisions whose votes together settle nothing
            // (only a modified node writes such): the earliest stands
            // alone.
            let first = valid
                .iter()
                .min_by_key(|d| (d.body.decided_at_ms, d.id))
                .expect("valid is not empty");
            let one: BTreeSet<&Hash32> = first.body.counted.iter().collect();
            s = self.named(&one, first.body.decided_at_ms);
        }
        // Every vote left out, with the reason a count of all of them
        // would give, if any.
        // (Counted as if every vote's time had come, so that a decided
        // proposal is shown alike at every moment.)
        let counted: BTreeSet<Hash32> = s.counted().into_iter().collect();
        let all = self.all(u64::MAX);
        for v in &self.votes {
            if counted.contains(&v.id) || s.ignored.iter().any(|i| i.vote == v.id) {
                continue;
            }
            let reason = all
                .ignored
                .iter()
                .find(|i| i.vote == v.id)
                .map_or("not counted by the decision", |i| i.reason.as_str());
            s.ignored.push(IgnoredVote {
                vote: v.id,
                voter: v.author,
                reason: reason.to_string(),
            });
        }
        s.decisions = valid.iter().map(|d| d.id).collect();
        s
    }
}

/// The decisions on proposal `p` in force, and those refused with why:
/// those naming votes on it that recount to what they say. A decision
/// held is final even where this clock is behind it (it claims no time
/// beyond the skew ahead of this clock, or it would still wait in the
/// engine).
fn decisions_in_force<'a>(
    p: &Signed<Proposal>,
    count: &Count<'a>,
) -> (Vec<&'a Signed<Decision>>, Vec<(Hash32, String)>) {
    let mut valid: Vec<&Signed<Decision>> = Vec::new();
    let mut refused = Vec::new();
    for d in count
        .ballots
        .decisions
        .get(&ProposalId::from(p.id))
        .into_iter()
        .flat_map(|d| d.values())
    {
        let named: BTreeSet<&Hash32> = d.body.counted.iter().collect();
        let recount = count.named(&named, d.body.decided_at_ms);
        let counted: Vec<Hash32> = recount.counted();
        if recount.decided_at_ms != Some(d.body.decided_at_ms)
            || (recount.outcome == Outcome::Passed) != d.body.passed
            || counted != d.body.counted
        {
            refused.push((
                d.id,
                "it does not match a recount of the votes it names".to_string(),
            ));
            continue;
        }
        valid.push(d);
    }
    // The proposer's node signs at once; another member's decision is a
    // fallback for when it is away: it counts only if signed after the
    // grace period, and only while none by the proposer is held. So a
    // member who votes late cannot add their vote by a decision of their
    // own beside the proposer's.
    let by_proposer = valid.iter().any(|d| d.author == p.author);
    valid.retain(|d| {
        let why = if d.author == p.author {
            return true;
        } else if d.body.signed_at_ms < d.body.decided_at_ms.saturating_add(DECISION_GRACE_MS) {
            "signed by another member before the proposer's node had its turn"
        } else if by_proposer {
            "the proposer's decision is held: it is the one in force"
        } else {
            return true;
        };
        refused.push((d.id, why.to_string()));
        false
    });
    (valid, refused)
}

/// Count `named` votes on `state`'s proposal (as judged at its
/// submission: `seats` may vote) at `now_ms`: each seat's last vote before
/// the proposal settled, or before its deadline.
fn tally(
    mut state: ProposalState,
    seats: &BTreeSet<Seat>,
    named: &mut dyn Iterator<Item = &Signed<Vote>>,
    ballots: &Ballots,
    now_ms: u64,
) -> ProposalState {
    let submitted = state.proposal.submitted_at_ms;
    let deadline = state.deadline_ms;
    let mut ordered: Vec<&Signed<Vote>> = named.collect();
    ordered.sort_by_key(|v| (v.body.cast_at_ms, v.id));
    let ignore = |state: &mut ProposalState, v: &Signed<Vote>, reason: String| {
        state.ignored.push(IgnoredVote {
            vote: v.id,
            voter: v.author,
            reason,
        })
    };
    for v in ordered {
        let at = v.body.cast_at_ms;
        if state.decided_at_ms.is_some() {
            ignore(&mut state, v, "cast after the proposal was decided".into());
            continue;
        }
        if at > now_ms {
            // Not yet, by this clock.
            continue;
        }
        if at < submitted {
            ignore(
                &mut state,
                v,
                "cast before the proposal was submitted".into(),
            );
            continue;
        }
        if at > deadline {
            ignore(&mut state, v, "cast after the deadline".into());
            continue;
        }
        let seat = match v.body.for_group {
            None => Seat::Member(v.author),
            Some(child) => Seat::Group(child),
        };
        if !seats.contains(&seat) {
            let reason = match seat {
                Seat::Member(_) => "the voter was not on the roll when it was submitted",
                Seat::Group(_) => "that group was not in this tier when it was submitted",
            };
            ignore(&mut state, v, reason.into());
            continue;
        }
        if ballots
            .exits
            .values()
            .any(|e| e.body.member == v.author && e.body.at_ms <= at)
        {
            ignore(&mut state, v, "the voter had left the group".into());
            continue;
        }
        if let Some(child) = v.body.for_group {
            let holds = ballots.delegations.values().any(|d| {
                d.body.child == child
                    && d.body.delegates.contains(&v.author)
                    && d.body.from_ms <= at
                    && at < d.body.until_ms
            });
            if !holds {
                ignore(
                    &mut state,
                    v,
                    format!("not a delegate of {} at the time", child.short()),
                );
                continue;
            }
        }
        state.votes.insert(seat, (v.body.choice, v.id));
        state.count();
        if let Some(passed) = state.settled() {
            state.decide(passed, at);
        }
    }
    if state.decided_at_ms.is_none() && deadline <= now_ms {
        let passed = state.passes(0, 0);
        state.decide(passed, deadline);
    }
    state
}
