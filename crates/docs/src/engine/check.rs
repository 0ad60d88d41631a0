//! Whether a change may be applied: its envelope and signature, its ops
//! (only new signed records, and edits of the free area), and each record's
//! rules, references and claimed time against what its author had.

use super::*;

/// Whether a record's claimed time (with its kind) is bounded as the
/// rules ask: not more than [`CLOCK_SKEW_MS`] before `latest`, the latest time claimed in its
/// causal past (`Err(Some(why))`), and not ahead of `now_ms` by more than
/// the skew (`Err(None)`: it waits).
pub(super) fn check_claimed_time(
    (claimed, kind): (u64, &str),
    latest: u64,
    now_ms: Option<u64>,
) -> Result<(), Option<String>> {
    if claimed < latest.saturating_sub(rules::CLOCK_SKEW_MS) {
        return Err(Some(format!(
            "a {kind} claims a time {} s before the latest record it builds on; a clock may be off \
             by at most {} s (backdated, or its author's clock is wrong)",
            (latest - claimed) / 1000,
            rules::CLOCK_SKEW_MS / 1000
        )));
    }
    if now_ms.is_some_and(|now| claimed > now.saturating_add(rules::CLOCK_SKEW_MS)) {
        return Err(None);
    }
    Ok(())
}

/// The record id and bytes an op on the record map puts: nothing else
/// (a delete, a list op, another value) is ever allowed there.
pub(super) fn record_put(op: &automerge::legacy::Op) -> Result<(Hash32, &[u8]), String> {
    let key = match &op.key {
        Key::Map(k) => k.to_string(),
        Key::Seq(_) => return Err("malformed op on the record map".into()),
    };
    let bytes = match &op.action {
        OpType::Delete => return Err(format!("the change deletes signed record {key}")),
        OpType::Put(ScalarValue::Bytes(b)) if !op.insert => b,
        _ => {
            return Err(format!(
                "the change writes something other than a signed record at {key}"
            ))
        }
    };
    let id: Hash32 = key
        .parse()
        .map_err(|_| format!("record key {key:?} is not a record id"))?;
    Ok((id, bytes))
}

/// What a record being checked may refer to: the records of the document,
/// of the batch and of its change so far, as far as the record's causal
/// past reaches (a record refers only to what its author had).
pub(super) struct Refs<'a> {
    doc: &'a SignedDoc,
    batch: &'a Pending,
    pending: &'a Pending,
    past: Past<'a>,
}

impl Refs<'_> {
    /// Record `id`, wherever it is held (in the causal past or not).
    fn find(&self, id: &Hash32) -> Option<&SignedRecord> {
        self.doc
            .records
            .get(id)
            .or(self.batch.records.get(id))
            .or(self.pending.records.get(id))
    }

    fn in_past(&self, id: &Hash32) -> bool {
        match self.past {
            Past::Set(index, set) => index.contains(set, id),
            Past::Document => self.doc.records.contains_key(id),
        }
    }

    /// Whether a decision on `proposal` is in the causal past.
    fn decided(&self, proposal: &Hash32) -> bool {
        match self.past {
            Past::Set(index, set) => index.decided_in(set, proposal),
            Past::Document => self
                .doc
                .roll
                .decisions_on(proposal)
                .any(|(_, id)| self.doc.records.contains_key(id)),
        }
    }

    /// The record `id` in the causal past, decoded, if it is there.
    fn body_in_past(&self, id: &Hash32) -> Option<RecordBody> {
        if !self.in_past(id) {
            return None;
        }
        self.find(id).and_then(|r| RecordBody::decode(&r.body).ok())
    }

    fn proposal_in_past(&self, id: &Hash32) -> bool {
        matches!(self.body_in_past(id), Some(RecordBody::Proposal(_)))
    }

    /// The founders' edits in the causal past, in id order.
    fn founders_edits(&self) -> Vec<Hash32> {
        match self.past {
            Past::Set(index, set) => index.founders_edits_in(set),
            Past::Document => self.doc.held_founders_edits(),
        }
    }

    /// Whether anyone had been admitted in the causal past.
    fn admitted(&self) -> bool {
        match self.past {
            Past::Set(index, set) => index.admitted_in(set),
            Past::Document => self
                .doc
                .roll
                .admissions()
                .any(|id| self.doc.records.contains_key(id)),
        }
    }

    /// A vote is for a proposal its voter saw, not yet decided.
    fn check_vote(&self, v: &Vote) -> Result<(), String> {
        if !self.proposal_in_past(&v.proposal.hash32()) {
            return Err(format!(
                "a vote for {}, which is not a proposal of this group in the vote's causal past",
                v.proposal.short()
            ));
        }
        if self.decided(&v.proposal.hash32()) {
            return Err(format!(
                "a vote for {} cast after its decision: it can count for nothing",
                v.proposal.short()
            ));
        }
        Ok(())
    }

    /// A decision names a proposal and votes on it, all in its causal past.
    fn check_decision(&self, d: &Decision) -> Result<(), String> {
        if !self.proposal_in_past(&d.proposal.hash32()) {
            return Err(format!(
                "a decision on {}, which is not a proposal of this group in its causal past",
                d.proposal.short()
            ));
        }
        for id in &d.counted {
            let on_it = matches!(
                self.body_in_past(id),
                Some(RecordBody::Vote(v)) if v.proposal == d.proposal
            );
            if !on_it {
                return Err(format!(
                    "a decision counts {}, which is not a vote on its proposal in its causal past",
                    id.short()
                ));
            }
        }
        Ok(())
    }

    /// Only the creator edits the charter directly, a few times, and only
    /// before anyone else has joined.
    fn check_charter_edit(&self, author: &MemberId) -> Result<(), String> {
        match self.find(&self.doc.id) {
            Some(genesis) if genesis.author == *author => {}
            _ => return Err("only the group's creator edits the charter directly".into()),
        }
        if self.founders_edits().len() >= rules::MAX_FOUNDERS_EDITS {
            return Err(format!(
                "the founder has made {} direct edits; the charter changes by proposals from here",
                rules::MAX_FOUNDERS_EDITS
            ));
        }
        // Whatever time it claims, an edit made once the founder had
        // admitted someone is too late.
        if self.admitted() {
            return Err(
                "members had joined when this edit was made: the charter changes by proposals now"
                    .into(),
            );
        }
        Ok(())
    }

    /// A signal continues its raiser's chain, within the group's rate.
    fn check_signal(
        &self,
        s: &crate::distress::Signal,
        id: Option<&Hash32>,
        author: &MemberId,
    ) -> Result<(), String> {
        let per_hour = self
            .doc
            .genesis()
            .map_or(10, |(_, g)| g.charter.rules.distress_per_hour);
        // Another signal with this number (this one put again on another
        // branch is no fork).
        let taken = [
            &self.doc.distress,
            &self.batch.distress,
            &self.pending.distress,
        ]
        .iter()
        .any(|d| {
            d.chain
                .get(&(*author, s.seq))
                .is_some_and(|held| Some(&held.hash32()) != id)
        });
        let lookup = |id: &SignalId| match self
            .find(&id.hash32())
            .map(|r| (r.author, RecordBody::decode(&r.body)))
        {
            Some((who, Ok(RecordBody::Signal(s)))) => Some((who, s)),
            _ => None,
        };
        crate::distress::check_chain(author, s, per_hour, taken, &lookup).map_err(|e| e.0)
    }
}

impl SignedDoc {
    pub(super) fn check_envelope(
        &self,
        signed: &SignedChange,
        verdict: nestwork_core::Result<()>,
    ) -> Result<Change, String> {
        if signed.doc != self.id {
            return Err(format!(
                "the change belongs to document {}, not {}",
                signed.doc.short(),
                self.id.short()
            ));
        }
        // Size first: nothing larger than the store reads back is looked at.
        signed.check_size().map_err(|e| e.to_string())?;
        verdict.map_err(|e| e.to_string())?;
        let change = parse_change(&signed.change)?;
        if change.hash().0 != signed.hash.0 {
            return Err(
                "the change's bytes do not match its signed hash (corrupted or tampered)".into(),
            );
        }
        match author_of(change.actor_id()) {
            Some(a) if a == signed.author => Ok(change),
            _ => Err(format!(
                "the change's actor id does not belong to its signer {}",
                signed.author
            )),
        }
    }

    /// Check one change against the document, what the batch has added so
    /// far (`batch`, and the roll sets of its accepted changes in
    /// `batch_past`), and the gate. Returns what the change adds and, in a
    /// group document, the roll records in its causal past.
    pub(super) fn check_change(
        &self,
        author: MemberId,
        change: &Change,
        batch: &Pending,
        gate: &mut dyn RecordGate,
        roll_index: &mut roll::RollIndex,
        batch_past: &HashMap<ChangeHash, roll::SetId>,
    ) -> Result<(Pending, Option<roll::SetId>), Hold> {
        let mut pending = Pending::default();
        let is_first = change.deps().is_empty();
        if is_first && (!self.doc.get_heads().is_empty() || batch.genesis_seen) {
            return Err(Hold::Reject(
                "a second first change: the document already has its genesis".into(),
            ));
        }
        let mut past = None;
        if self.ledger.is_none() {
            // Membership at the change's causal past: the same verdict on
            // every node, whatever else it holds.
            let base = roll_index
                .union_of_deps(change.deps(), batch_past)
                .ok_or_else(|| {
                    Hold::Reject("the engine lost track of a dependency's roll (a bug)".into())
                })?;
            if !is_first && !roll_index.roll(&self.id, base).members.contains(&author) {
                return Err(Hold::Reject(format!(
                    "{author} is not a member of this group at the change's causal past \
                     (never admitted, awaiting an entry vote, left or removed)"
                )));
            }
            past = Some(base);
        }
        let refer = match past {
            Some(base) => Past::Set(roll_index, base),
            None => Past::Document,
        };
        self.check_ops(author, change, is_first, batch, &mut pending, refer)
            .map_err(Hold::Reject)?;
        if self.ledger.is_some() {
            // A ledger period's roll is the group's, at the group heads its
            // record cites.
            if pending.cited.is_empty() {
                return Err(Hold::Reject(
                    "a change to a ledger period must carry a payment or a period closing: \
                     nothing else is written there, and only they name the group roll \
                     their author is judged by"
                        .into(),
                ));
            }
            for body in &pending.cited {
                self.check_cited_roll(&author, body, gate)?;
            }
        }
        if let Some(base) = past {
            let latest = roll_index.latest_ms(base);
            for claim in &pending.claims {
                match check_claimed_time(*claim, latest, gate.now_ms()) {
                    Ok(()) => {}
                    Err(None) => {
                        tracing::debug!(doc = %self.id.short(), kind = claim.1, "a record waits: it claims a time still to come by this node's clock");
                        return Err(Hold::Wait);
                    }
                    Err(Some(why)) => return Err(Hold::Reject(why)),
                }
            }
        }
        match pending.gated.len() {
            0 => {}
            1 => {
                let (id, body) = &pending.gated[0];
                gate.admit(&author, *id, body).map_err(|r| match r {
                    Refusal::Missing(missing) => {
                        tracing::debug!(doc = %self.id.short(), record = %id.short(), kind = body.kind_name(), missing = ?missing.iter().map(|m| m.short()).collect::<Vec<_>>(), "a record waits for records this node lacks");
                        Hold::Wait
                    }
                    Refusal::History => {
                        tracing::debug!(doc = %self.id.short(), record = %id.short(), kind = body.kind_name(), "a record waits for the ledger history below the base");
                        Hold::Wait
                    }
                    Refusal::Broken(e) => Hold::Reject(e.0),
                })?;
            }
            _ => {
                return Err(Hold::Reject(
                    "a change may carry at most one ledger record".into(),
                ))
            }
        }
        let past = past.map(|base| roll_index.with_records(base, &pending.roll_records));
        Ok((pending, past))
    }

    pub(super) fn check_ops(
        &self,
        author: MemberId,
        change: &Change,
        is_first: bool,
        batch: &Pending,
        pending: &mut Pending,
        past: Past<'_>,
    ) -> Result<(), String> {
        let expanded = catch_unwind(AssertUnwindSafe(|| change.decode()))
            .map_err(|_| "the change's operations cannot be decoded".to_string())?;
        let start = change.start_op().get();
        let actor = change.actor_id().clone();
        for (i, op) in expanded.operations.iter().enumerate() {
            let op_key: OpKey = (start + i as u64, actor.clone());
            match &op.obj {
                ObjectId::Root => {
                    if !is_first {
                        return Err("the change rewrites the document's top level".into());
                    }
                    let is_map =
                        matches!(op.action, OpType::Make(ObjType::Map)) && op.pred.is_empty();
                    match &op.key {
                        Key::Map(k)
                            if is_map && k == RECORDS_KEY && pending.records_obj.is_none() =>
                        {
                            pending.records_obj = Some(op_key)
                        }
                        Key::Map(k) if is_map && k == FREE_KEY && pending.free_obj.is_none() => {
                            pending.free_obj = Some(op_key)
                        }
                        _ => {
                            return Err(
                                "the first change may only create the records and free parts"
                                    .into(),
                            )
                        }
                    }
                }
                ObjectId::Id(o) => {
                    let obj: OpKey = (o.counter(), o.actor().clone());
                    let records = self
                        .records_obj
                        .as_ref()
                        .or(batch.records_obj.as_ref())
                        .or(pending.records_obj.as_ref());
                    if records == Some(&obj) {
                        self.check_record_op(author, is_first, op, batch, pending, past)?;
                    } else if self.is_free_object(&obj, batch) || self.is_free_object(&obj, pending)
                    {
                        if matches!(op.action, OpType::Make(_)) {
                            pending.free_objects.insert(op_key);
                        }
                    } else {
                        return Err("the change writes outside the records and free parts".into());
                    }
                }
            }
        }
        if is_first && !pending.genesis_seen {
            return Err("the first change does not carry this group's genesis record".into());
        }
        Ok(())
    }

    /// A put on the record map: a new signed record by the change's
    /// author, valid by its kind's rules at the change's causal past, or
    /// one already held put again with the same bytes.
    pub(super) fn check_record_op(
        &self,
        author: MemberId,
        is_first: bool,
        op: &automerge::legacy::Op,
        batch: &Pending,
        pending: &mut Pending,
        past: Past<'_>,
    ) -> Result<(), String> {
        let (id, bytes) = record_put(op)?;
        if let Some(existing) = self
            .records
            .get(&id)
            .or(batch.records.get(&id))
            .or(pending.records.get(&id))
        {
            // The same record put concurrently by two devices is harmless
            // (identical values); anything else is an overwrite.
            if !op.pred.is_empty() || existing.encode() != *bytes {
                return Err(format!(
                    "the change overwrites signed record {}",
                    id.short()
                ));
            }
            // Put again on another branch, it is judged against this
            // change's causal past as if it were new: otherwise the verdict
            // would depend on whether the receiver already held it (a
            // record valid where it was first put, replayed on a branch
            // where it claims a time too early, or names what is not there).
            if existing.author != author {
                return Err(format!(
                    "record signed by {} was put in by {author}",
                    existing.author
                ));
            }
            let body = RecordBody::decode(&existing.body).map_err(|e| e.to_string())?;
            let existing = existing.clone();
            return self.check_in_past(&id, &existing, &body, batch, pending, past);
        }
        if !op.pred.is_empty() {
            return Err(format!(
                "the change overwrites signed record {}",
                id.short()
            ));
        }
        let record = SignedRecord::decode_verified(bytes).map_err(|e| e.to_string())?;
        if record.id() != id {
            return Err(format!(
                "record stored under {} is not the record with that id",
                id.short()
            ));
        }
        if record.author != author {
            return Err(format!(
                "record signed by {} was put in by {author}",
                record.author
            ));
        }
        let body = RecordBody::decode(&record.body).map_err(|e| e.to_string())?;
        rules::check_record(
            &body,
            &RecordContext {
                group: self.group(),
                author,
                in_genesis_change: is_first,
                ledger_period: self.ledger.map(|(_, period)| period),
            },
        )
        .map_err(|e| e.0)?;
        self.check_in_past(&id, &record, &body, batch, pending, past)?;
        match body {
            RecordBody::GroupGenesis(_) => {
                if id != self.id {
                    return Err(format!(
                        "the genesis record of group {} in document {}",
                        id.short(),
                        self.id.short()
                    ));
                }
                pending.genesis_seen = true;
            }
            _ => pending.note(id, author, body),
        }
        pending.records.insert(id, record);
        Ok(())
    }

    /// Check a record `author` would add now by every rule a peer applies
    /// that needs no gate, without signing or changing anything (a cheap
    /// refusal before any other work).
    pub fn precheck(&self, author: &MemberId, body: &RecordBody) -> Result<(), RuleError> {
        rules::check_record(
            body,
            &RecordContext {
                group: self.group(),
                author: *author,
                in_genesis_change: false,
                ledger_period: self.ledger.map(|(_, period)| period),
            },
        )?;
        self.check_references(
            body,
            None,
            author,
            &Pending::default(),
            &Pending::default(),
            Past::Document,
        )
        .map_err(RuleError)
    }

    /// The founders' edits this document holds, in id order.
    pub(super) fn held_founders_edits(&self) -> Vec<Hash32> {
        self.roll
            .founders_edits(|_, id| self.records.contains_key(id))
    }

    /// Rules that look at the records a governance record names: a vote's
    /// proposal must be in the document (the voter saw it, so it is in the
    /// vote's causal past), and only the creator edits the charter
    /// directly. `id` is the record's own id once it is signed.
    pub(super) fn check_references(
        &self,
        body: &RecordBody,
        id: Option<&Hash32>,
        author: &MemberId,
        batch: &Pending,
        pending: &Pending,
        past: Past<'_>,
    ) -> Result<(), String> {
        let refs = Refs {
            doc: self,
            batch,
            pending,
            past,
        };
        match body {
            RecordBody::Vote(v) => refs.check_vote(v),
            RecordBody::Decision(d) => refs.check_decision(d),
            RecordBody::Admission(a) => {
                // The charter the newcomer joins: the founders' edits in
                // the admission's causal past, exactly.
                let before = refs.founders_edits();
                if a.founders_edits != before {
                    return Err(format!(
                        "the admission lists {} founders' edit(s), but its causal past holds {}",
                        a.founders_edits.len(),
                        before.len()
                    ));
                }
                Ok(())
            }
            RecordBody::CharterEdit(_) => refs.check_charter_edit(author),
            RecordBody::Signal(s) => refs.check_signal(s, id, author),
            RecordBody::Answer(a) => self.check_answer(a, author, batch, pending),
            // A carried answer is judged as its answerer's own answer would
            // be here: a signal this group holds, a resolve only by the
            // raiser or someone whose response is held.
            RecordBody::CarriedAnswer(c) => {
                let k = c.check().map_err(|e| e.0)?;
                self.check_answer(&k.answer, &k.by, batch, pending)
            }
            _ => Ok(()),
        }
    }

    /// What a record a change puts is judged by against the change's
    /// causal past, whether or not this document already holds it: the
    /// records it names, and the time it claims (noted for the check
    /// against what it builds on); a roll record joins the change's set.
    pub(super) fn check_in_past(
        &self,
        id: &Hash32,
        record: &SignedRecord,
        body: &RecordBody,
        batch: &Pending,
        pending: &mut Pending,
        past: Past<'_>,
    ) -> Result<(), String> {
        self.check_references(body, Some(id), &record.author, batch, pending, past)?;
        if let Some(claimed) = roll::claimed_ms(body) {
            pending.claims.push((claimed, body.kind_name()));
        }
        if self.ledger.is_some() && body.group_heads().is_some() {
            pending.cited.push(body.clone());
        }
        if roll::is_roll_record(body) {
            pending.roll_records.push(record.clone());
        }
        Ok(())
    }

    /// A ledger record's author, and a payment's payee, must be on the
    /// group's roll at the group heads it cites: the same verdict on every
    /// node that holds those heads, whatever order anything arrived in. A
    /// record citing heads not held here waits for them.
    pub(super) fn check_cited_roll(
        &self,
        author: &MemberId,
        body: &RecordBody,
        gate: &dyn RecordGate,
    ) -> Result<(), Hold> {
        let Some(heads) = body.group_heads() else {
            return Err(Hold::Reject(format!(
                "a {} has no place in a ledger period",
                body.kind_name()
            )));
        };
        let roll = match gate.roll_at(heads) {
            Ok(roll) => roll,
            Err(Refusal::Missing(missing)) => {
                tracing::debug!(doc = %self.id.short(), kind = body.kind_name(), missing = ?missing.iter().map(|m| m.short()).collect::<Vec<_>>(), "a ledger record waits for the group changes it cites");
                return Err(Hold::Wait);
            }
            Err(Refusal::History) => return Err(Hold::Wait),
            Err(Refusal::Broken(e)) => return Err(Hold::Reject(e.0)),
        };
        let kind = body.kind_name();
        if !roll.contains(author) {
            return Err(Hold::Reject(format!(
                "{author} is not on the group's roll at the group heads their {kind} cites \
                 (never admitted, awaiting an entry vote, left or removed there)"
            )));
        }
        if let RecordBody::Payment(p) = body {
            if let crate::ledger::Account::Member(payee) = &p.to {
                if !roll.contains(payee) {
                    return Err(Hold::Reject(format!(
                        "the payee {payee} is not on the group's roll at the group heads the \
                         payment cites (never admitted, awaiting an entry vote, left or removed there)"
                    )));
                }
            }
        }
        Ok(())
    }

    pub(super) fn check_answer(
        &self,
        a: &crate::distress::Answer,
        author: &MemberId,
        batch: &Pending,
        pending: &Pending,
    ) -> Result<(), String> {
        let raiser = [&self.distress, &batch.distress, &pending.distress]
            .iter()
            .find_map(|d| d.signals.get(&a.signal).copied());
        let Some(raiser) = raiser else {
            return Err(format!(
                "an answer to {}, which is not a signal this group holds",
                a.signal.short()
            ));
        };
        let responded = [&self.distress, &batch.distress, &pending.distress]
            .iter()
            .any(|d| d.responders.contains(&(a.signal, *author)));
        if a.kind == crate::distress::AnswerKind::Resolve && raiser != *author && !responded {
            return Err("only the raiser or someone who responded may resolve a signal".into());
        }
        Ok(())
    }

    pub(super) fn is_free_object(&self, obj: &OpKey, pending: &Pending) -> bool {
        if self.free_obj.as_ref().or(pending.free_obj.as_ref()) == Some(obj)
            || pending.free_objects.contains(obj)
            || self.free_objects.contains(obj)
        {
            return true;
        }
        let (Some(free), Ok(exid)) = (self.free_exid(), self.exid_of(obj)) else {
            return false;
        };
        match self.doc.parents(&exid) {
            Ok(mut parents) => parents.any(|p| p.obj == free),
            Err(_) => false,
        }
    }
}
