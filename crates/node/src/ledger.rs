//! A group's ledger as members use it on this node: pay, set limits, and
//! see balances and the history. The ledger itself and its period
//! documents ([`GroupLedger`]), and the gate through which records reach
//! it ([`Gate`]), are pure and live in `nestwork_docs::group_ledger`.

use nestwork_core::{GroupId, Hash32, MemberId, ProposalId, SignedChange};
use nestwork_docs::decisions::Decisions;
use nestwork_docs::ledger::{Account, CreditLimit};
use nestwork_docs::{GroupView, RecordBody, SignedDoc};

use crate::error::{Lookup, NodeError};
use crate::node::{Node, Staged, Write};
use crate::state::State;
use crate::views::{account_view, payment_view, MAX_REQUEST_ID_CHARS};

pub use crate::views::{
    AccountView, BalanceView, LedgerView, LimitRequest, PayRequest, PaymentView,
};
pub use nestwork_docs::group_ledger::{
    group_heads_to_cite, period_id, Gate, GroupLedger, PaymentOrder, CHECKPOINT_EVERY,
};

impl Node {
    /// Pay `req.amount` from this member's account in group `sel`. The
    /// payment cites what this node has seen and is checked by the rules
    /// every peer applies before it is signed; it is durable before this
    /// returns.
    pub fn pay(&self, sel: &str, req: &PayRequest) -> Result<PaymentView, NodeError> {
        let me = self.member();
        let (group, to) = self.with_doc(sel, |doc| {
            let to = account_of(doc.ever_members(), &req.to)?;
            // Someone who left (or was removed) neither pays nor is paid.
            // (The roll alone, not the whole governance: this runs for
            // every payment.)
            let roll = doc.roll_at(self.now_ms());
            if !roll.contains(&me) {
                return Err(NodeError::Invalid(
                    "you are not on this group's roll (you left or were removed), so you cannot pay".into(),
                ));
            }
            if let Account::Member(m) = to {
                if !roll.contains(&m) {
                    return Err(NodeError::Invalid(format!(
                        "{m} is no longer on this group's roll"
                    )));
                }
            }
            Ok((doc.group(), to))
        })?;
        let request = req
            .request_id
            .as_deref()
            .map(|r| request_mark(&group, r))
            .transpose()?;
        self.make_payment_for(
            group,
            Account::Member(me),
            to,
            req.amount,
            &req.memo,
            None,
            request,
        )
    }

    /// Sign a payment out of `from` (this member's account, or the commons
    /// on a passed proposal), closing a full period first.
    pub(crate) fn make_payment(
        &self,
        group: GroupId,
        from: Account,
        to: Account,
        amount: u64,
        memo: &str,
        proposal: Option<ProposalId>,
    ) -> Result<PaymentView, NodeError> {
        self.make_payment_for(group, from, to, amount, memo, proposal, None)
    }

    /// [`Node::make_payment`] for a client's request noted at `request`
    /// (see [`request_mark`]): made once, whatever the retries.
    #[allow(clippy::too_many_arguments)]
    fn make_payment_for(
        &self,
        group: GroupId,
        from: Account,
        to: Account,
        amount: u64,
        memo: &str,
        proposal: Option<ProposalId>,
        request: Option<Hash32>,
    ) -> Result<PaymentView, NodeError> {
        let now = self.now_ms();
        let order = PaymentOrder {
            from,
            to,
            amount,
            memo,
            proposal: proposal.map(|p| p.hash32()),
            made_at_ms: now,
        };
        let paid = self.commit(
            |docs| {
                if let Some(mark) = &request {
                    if let Some(made) = self.store.mark(mark)? {
                        let view = repeated_payment(docs, group, &made, amount, &to)?;
                        return Ok(Staged::local(Paid::Before(view), Vec::new()));
                    }
                }
                self.sign_payment(docs, group, order, request, now)
            },
            |docs, paid| {
                let id = match paid {
                    Paid::Before(view) => return Ok(Ok((view, false))),
                    Paid::Refused(e) => return Ok(Err(e)),
                    Paid::Made(id) => id,
                };
                self.tend_ledger(docs, group)?;
                docs.ensure_ledger(group, &self.writer);
                let l = docs
                    .ledgers
                    .get(&group)
                    .ok_or_else(|| NodeError::not_found(Lookup::Group, group))?;
                let entry = l
                    .ledger
                    .entry(&id)
                    .ok_or_else(|| NodeError::Invalid("the payment went missing".into()))?;
                let view = payment_view(&l.ledger, entry.id, entry.signer, &entry.payment);
                Ok(Ok((view, true)))
            },
        )?;
        let (view, made) = paid?;
        if made {
            tracing::info!(payment = %view.id.short(), to = %view.to, amount = view.amount, "payment made");
        }
        Ok(view)
    }

    /// Sign `order` in group `group`'s ledger as this member (see
    /// `GroupLedger::sign_payment`), noting the payment at `request`.
    fn sign_payment(
        &self,
        state: &mut State,
        group: GroupId,
        order: PaymentOrder<'_>,
        request: Option<Hash32>,
        now: u64,
    ) -> Result<Staged<Paid>, NodeError> {
        let me = self.member();
        let group_doc = state
            .groups
            .get(&group)
            .ok_or_else(|| NodeError::not_found(Lookup::Group, group))?;
        if !group_doc.members().contains(&me) {
            // Others would refuse it: off the roll at the heads cited.
            return Err(NodeError::Invalid(format!(
                "{me} is not a member of this group (never admitted, left or removed): \
                 nobody would accept a payment from it"
            )));
        }
        let decisions = Decisions::of(Some(group_doc), now);
        let l = state
            .ledgers
            .get_mut(&group)
            .ok_or_else(|| NodeError::not_found(Lookup::Group, group))?;
        let signed = l.sign_payment(
            group,
            &self.writer,
            group_doc,
            order,
            &mut state.periods,
            &decisions,
            now,
        )?;
        let (id, period, change) = match signed.payment {
            Ok(made) => made,
            // A closing made on the way stays: it is valid on its own.
            Err(e) => {
                let Some((close_period, close)) = signed.closing else {
                    return Err(e.into());
                };
                let write = Write::to(period_id(&group, close_period), vec![close]);
                return Ok(Staged::local(Paid::Refused(e.into()), vec![write]));
            }
        };
        let mut changes: Vec<SignedChange> = signed.closing.into_iter().map(|(_, c)| c).collect();
        changes.push(change);
        Ok(Staged {
            writes: vec![Write::to(period_id(&group, period), changes)],
            note: request.map(|mark| (mark, id.0.to_vec())),
            local: true,
            value: Paid::Made(id),
        })
    }

    /// Set credit limits in group `sel` directly (its creator only; the
    /// group changes them by `set-limits` proposals).
    pub fn set_limit(&self, sel: &str, req: &LimitRequest) -> Result<BalanceView, NodeError> {
        let (group, member) = {
            let docs = self.lock();
            let (group, doc) = self.resolve_doc(&docs.groups, sel)?;
            let member = match &req.member {
                None => None,
                Some(m) => match account_of(doc.members(), m)? {
                    Account::Member(m) => Some(m),
                    Account::Commons => {
                        return Err(NodeError::Invalid(
                            "the commons' limits are fixed: it cannot go below zero".into(),
                        ))
                    }
                },
            };
            (group, member)
        };
        self.write_limit(group, member, req.floor, req.ceiling, None)?;
        self.balance(&group.to_hex(), req.member.as_deref())
    }

    /// Sign the next change of credit limits into `group`'s limit chain,
    /// directly (the creator) or on a passed proposal.
    pub(crate) fn write_limit(
        &self,
        group: GroupId,
        member: Option<MemberId>,
        floor: i64,
        ceiling: i64,
        proposal: Option<ProposalId>,
    ) -> Result<(), NodeError> {
        let now = self.now_ms();
        self.commit(
            |state| {
                let decisions = Decisions::of(state.groups.get(&group), now).resolved();
                let doc = state
                    .groups
                    .get_mut(&group)
                    .ok_or_else(|| NodeError::not_found(Lookup::Group, group))?;
                let l = state
                    .ledgers
                    .get_mut(&group)
                    .ok_or_else(|| NodeError::not_found(Lookup::Group, group))?;
                let head = l.ledger.limit_head();
                let seq = head
                    .and_then(|_| l.ledger.limit_seq_of_head())
                    .map_or(1, |s| s + 1);
                let body = RecordBody::CreditLimit(CreditLimit {
                    member,
                    floor,
                    ceiling,
                    seq,
                    prev: head,
                    proposal: proposal.map(|p| p.hash32()),
                });
                let mut gate = Gate {
                    ledger: Some(&mut l.ledger),
                    group: None,
                    decisions: &decisions,
                    now_ms: now,
                };
                let (_, change) = doc.add_record(&self.writer, body, &mut gate, now)?;
                Ok(Staged::local(
                    (),
                    vec![Write::to(group.doc(), vec![change])],
                ))
            },
            |_, ()| Ok(()),
        )
    }

    /// Group `sel`'s id, document and ledger.
    pub(crate) fn group_and_ledger<'a>(
        &self,
        docs: &'a State,
        sel: &str,
    ) -> Result<(GroupId, &'a SignedDoc, &'a GroupLedger), NodeError> {
        let (group, doc) = self.resolve_doc(&docs.groups, sel)?;
        let l = docs
            .ledgers
            .get(&group)
            .ok_or_else(|| NodeError::not_found(Lookup::Group, sel))?;
        Ok((group, doc, l))
    }

    /// Balances in group `sel`: one account, or every member's and the
    /// commons'.
    pub fn balance(&self, sel: &str, account: Option<&str>) -> Result<BalanceView, NodeError> {
        let docs = self.lock();
        let (group, doc, l) = self.group_and_ledger(&docs, sel)?;
        let accounts: Vec<Account> = match account {
            Some(a) => vec![account_of(doc.ever_members(), a)?],
            None => {
                let mut all: Vec<Account> = doc
                    .ever_members()
                    .iter()
                    .map(|m| Account::Member(*m))
                    .collect();
                all.push(Account::Commons);
                all
            }
        };
        Ok(BalanceView {
            group,
            group_name: GroupView::of(doc).map(|v| v.name).unwrap_or_default(),
            unit: l.ledger.unit().to_string(),
            accounts: accounts
                .iter()
                .map(|a| account_view(&l.ledger, a))
                .collect(),
            total: l.ledger.balances().values().sum(),
            payments: l.ledger.len(),
            equivocations: l.ledger.equivocations(),
        })
    }

    /// A page of group `sel`'s payments, newest first; only those touching
    /// `account` when given. The recent periods are in memory; a page that
    /// reaches further back reads the older periods from the store.
    pub fn ledger(
        &self,
        sel: &str,
        account: Option<&str>,
        skip: usize,
        limit: usize,
    ) -> Result<LedgerView, NodeError> {
        let docs = self.lock();
        let (group, doc, l) = self.group_and_ledger(&docs, sel)?;
        let account = account
            .map(|a| account_of(doc.ever_members(), a))
            .transpose()?;
        let limit = limit.min(1_000);
        let touches =
            |p: &nestwork_docs::ledger::Payment| account.is_none_or(|a| p.from == a || p.to == a);
        let mut payments: Vec<PaymentView> = l
            .ledger
            .history(account.as_ref(), skip, limit)
            .into_iter()
            .map(|e| payment_view(&l.ledger, e.id, e.signer, &e.payment))
            .collect();
        if payments.len() < limit && l.ledger.len() > l.ledger.held() {
            let in_memory = l.ledger.history(account.as_ref(), 0, usize::MAX).len();
            let mut older_skip = skip.saturating_sub(in_memory);
            let mut numbers: Vec<u64> = l.periods.keys().chain(l.cold.keys()).copied().collect();
            numbers.sort_unstable_by(|a, b| b.cmp(a));
            numbers.dedup();
            for period in numbers {
                if payments.len() == limit {
                    break;
                }
                let loaded;
                let period_doc = match l.periods.get(&period) {
                    Some(d) => d,
                    None => {
                        let id = period_id(&group, period);
                        let stored = self.store.changes(&id.hash32())?;
                        loaded = SignedDoc::load_ledger_period(group.hash32(), period, stored)?;
                        &loaded
                    }
                };
                // Payments past the base are listed from memory above.
                let mut older: Vec<(Hash32, MemberId, nestwork_docs::ledger::Payment)> = period_doc
                    .records()
                    .iter()
                    .filter(|(id, _)| l.ledger.entry(id).is_none())
                    .filter_map(|(id, r)| match RecordBody::decode(&r.body) {
                        Ok(RecordBody::Payment(p)) if touches(&p) => Some((*id, r.author, p)),
                        _ => None,
                    })
                    .collect();
                older.sort_by(|a, b| b.2.made_at_ms.cmp(&a.2.made_at_ms).then(b.0.cmp(&a.0)));
                for (id, signer, p) in older {
                    if older_skip > 0 {
                        older_skip -= 1;
                        continue;
                    }
                    payments.push(payment_view(&l.ledger, id, signer, &p));
                    if payments.len() == limit {
                        break;
                    }
                }
            }
        }
        Ok(LedgerView {
            group,
            group_name: GroupView::of(doc).map(|v| v.name).unwrap_or_default(),
            unit: l.ledger.unit().to_string(),
            payments,
            total: l.ledger.len(),
            listed: l.ledger.len(),
            periods: l.ledger.periods().iter().map(|(k, v)| (*k, *v)).collect(),
            equivocations: l.ledger.equivocations(),
        })
    }
}

/// Where the payment made for a client's request id is noted in the store.
fn request_mark(group: &GroupId, request_id: &str) -> Result<Hash32, NodeError> {
    if request_id.is_empty()
        || request_id.chars().count() > MAX_REQUEST_ID_CHARS
        || request_id.chars().any(char::is_control)
    {
        return Err(NodeError::Invalid(format!(
            "a request id is 1 to {MAX_REQUEST_ID_CHARS} characters, without control characters"
        )));
    }
    Ok(Hash32::of_parts(&[
        b"nestwork/pay-request/v1",
        group.as_bytes(),
        request_id.as_bytes(),
    ]))
}

/// An account named on the command line: "commons", a member id, or a
/// unique start (4+ characters) of the id of a member on the roll.
fn account_of(
    members: &std::collections::BTreeSet<MemberId>,
    sel: &str,
) -> Result<Account, NodeError> {
    let sel = sel.trim();
    if let Ok(a) = sel.parse::<Account>() {
        return match a {
            Account::Member(m) if !members.contains(&m) => Err(NodeError::Invalid(format!(
                "{m} is not a member of this group"
            ))),
            a => Ok(a),
        };
    }
    let found: Vec<&MemberId> = if sel.len() >= 4 {
        members
            .iter()
            .filter(|m| m.to_string().starts_with(sel))
            .collect()
    } else {
        Vec::new()
    };
    match found.as_slice() {
        [one] => Ok(Account::Member(**one)),
        [] => Err(NodeError::not_found(Lookup::Member, sel)),
        _ => Err(NodeError::ambiguous(Lookup::Member, sel, Vec::new())),
    }
}

/// The answer to a payment request made before: the payment noted for it,
/// if it is the same payment.
fn repeated_payment(
    docs: &State,
    group: GroupId,
    made: &[u8],
    amount: u64,
    to: &Account,
) -> Result<PaymentView, NodeError> {
    let id = <[u8; 32]>::try_from(made)
        .map(Hash32)
        .map_err(|_| NodeError::Invalid("the note of this request is damaged".into()))?;
    let l = docs
        .ledgers
        .get(&group)
        .ok_or_else(|| NodeError::not_found(Lookup::Group, group))?;
    match l.ledger.entry(&id) {
        Some(e) if e.payment.amount == amount && e.payment.to == *to => {
            Ok(payment_view(&l.ledger, e.id, e.signer, &e.payment))
        }
        Some(_) => Err(NodeError::Invalid(
            "this request id was already used for a different payment".into(),
        )),
        None => Err(NodeError::Invalid(format!(
            "this request was already carried out as payment {}",
            id.short()
        ))),
    }
}

/// What became of a payment under the lock.
enum Paid {
    /// Made before, for the same client request.
    Before(PaymentView),
    /// Refused by the rules (a closing signed on the way is still stored).
    Refused(NodeError),
    /// Signed, with its id.
    Made(Hash32),
}
