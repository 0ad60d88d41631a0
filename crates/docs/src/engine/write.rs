//! A member's own writes: a record signed and added, the shared
//! description edited. Each is checked as a peer would check it before it
//! is made (see [`super::check`]).

use super::*;

impl SignedDoc {
    /// Add a signed record as a local change. The record is checked by the
    /// same rules a peer would apply. An admission is completed first with
    /// the founders' edits it follows (all those held).
    pub fn add_record(
        &mut self,
        writer: &Writer,
        body: RecordBody,
        gate: &mut dyn RecordGate,
        now_ms: u64,
    ) -> Result<(Hash32, SignedChange), Error> {
        let body = match body {
            RecordBody::Admission(a) => RecordBody::Admission(crate::record::Admission {
                founders_edits: self.held_founders_edits(),
                ..a
            }),
            other => other,
        };
        if self.ledger.is_none() && !self.members.contains(&writer.id()) {
            return Err(RuleError(format!("{} is not a member of this group", writer.id())).into());
        }
        rules::check_record(
            &body,
            &RecordContext {
                group: self.group(),
                author: writer.id(),
                in_genesis_change: false,
                ledger_period: self.ledger.map(|(_, period)| period),
            },
        )?;
        if self.ledger.is_some() {
            // Judged as peers will: by the group's roll at the heads cited.
            self.check_cited_roll(&writer.id(), &body, gate)
                .map_err(|hold| match hold {
                    Hold::Reject(why) => RuleError(why),
                    Hold::Wait => RuleError("it cites group heads this node does not hold".into()),
                })?;
        }
        self.check_references(
            &body,
            None,
            &writer.id(),
            &Pending::default(),
            &Pending::default(),
            Past::Document,
        )
        .map_err(RuleError)?;
        // Peers bound the time it claims by what it builds on: every head
        // here.
        let claim = roll::claimed_ms(&body).filter(|_| self.ledger.is_none());
        if let Some(claimed) = claim {
            let heads = self.doc.get_heads();
            if let Some(base) = self.roll.union_of_deps(&heads, &HashMap::new()) {
                check_claimed_time((claimed, body.kind_name()), self.roll.latest_ms(base), None)
                    .map_err(|why| {
                        RuleError(format!(
                            "{}; check this computer's clock",
                            why.unwrap_or_default()
                        ))
                    })?;
            }
        }
        let record = SignedRecord::sign(writer.key(), body.encode());
        let id = record.id();
        let is_roll_record = roll::is_roll_record(&body);
        if body.needs_gate() {
            gate.admit(&writer.id(), id, &body).map_err(|r| match r {
                Refusal::Broken(e) => Error::Rule(e),
                Refusal::Missing(ids) => Error::Rule(RuleError(format!(
                    "it relies on {} record(s) this node does not have",
                    ids.len()
                ))),
                Refusal::History => Error::Rule(RuleError(
                    "it relies on history this node is reloading; try again in a moment".into(),
                )),
            })?;
        }
        let signed = self.put_record(writer, &record, now_ms)?;
        if is_roll_record && self.ledger.is_none() {
            let hash = ChangeHash(signed.hash.0);
            if let Some(base) = self.roll.past_of(&hash) {
                let set = self.roll.with_records(base, std::slice::from_ref(&record));
                self.roll.set_past(hash, set);
            }
        }
        self.absorb_record(record);
        self.refresh_roll();
        Ok((id, signed))
    }

    /// Test hook: sign and add `body` as `writer` with none of the local
    /// checks, as a modified node would. It gives no power over anyone
    /// else: every receiving node checks every rule itself, which is what
    /// the tests of hostile members use this to show.
    #[doc(hidden)]
    pub fn sign_record_anyway(
        &mut self,
        writer: &Writer,
        body: RecordBody,
        now_ms: u64,
    ) -> Result<(Hash32, SignedChange), Error> {
        let record = SignedRecord::sign(writer.key(), body.encode());
        let id = record.id();
        let signed = self.put_record(writer, &record, now_ms)?;
        self.hold_record(record);
        Ok((id, signed))
    }

    /// Sign a change that puts `record` into the records map under its id.
    pub(super) fn put_record(
        &mut self,
        writer: &Writer,
        record: &SignedRecord,
        now_ms: u64,
    ) -> Result<SignedChange, Error> {
        let records = self.records_exid()?;
        self.local_change(writer, now_ms, |tx| {
            tx.put(
                &records,
                record.id().to_hex(),
                ScalarValue::Bytes(record.encode()),
            )
        })?
        .ok_or_else(|| Error::Malformed(self.id.to_hex(), "adding a record made no change".into()))
    }

    /// Test hook: edit the description as `writer` with no membership
    /// check (see [`SignedDoc::sign_record_anyway`]).
    #[doc(hidden)]
    pub fn set_description_anyway(
        &mut self,
        writer: &Writer,
        text: &str,
        now_ms: u64,
    ) -> Result<Option<SignedChange>, Error> {
        let description = self.description_exid()?;
        self.local_change(writer, now_ms, |tx| tx.update_text(&description, text))
    }

    /// Replace the group's free-form description (an Automerge text, so
    /// concurrent edits by several members merge). `None` when the text is
    /// already what was asked for.
    pub fn set_description(
        &mut self,
        writer: &Writer,
        text: &str,
        now_ms: u64,
    ) -> Result<Option<SignedChange>, Error> {
        if !self.members.contains(&writer.id()) {
            return Err(RuleError(format!("{} is not a member of this group", writer.id())).into());
        }
        rules::check_description(text)?;
        let description = self.description_exid()?;
        self.local_change(writer, now_ms, |tx| tx.update_text(&description, text))
    }

    pub(super) fn local_change(
        &mut self,
        writer: &Writer,
        now_ms: u64,
        f: impl FnOnce(
            &mut automerge::transaction::Transaction<'_>,
        ) -> Result<(), automerge::AutomergeError>,
    ) -> Result<Option<SignedChange>, Error> {
        self.doc.set_actor(writer.actor());
        let done = self
            .doc
            .transact_with(|_| CommitOptions::default().with_time(now_ms as i64), f)
            .map_err(|f| f.error)?;
        let Some(hash) = done.hash else {
            return Ok(None);
        };
        let change = self.doc.get_change_by_hash(&hash).ok_or_else(|| {
            Error::Malformed(self.id.to_hex(), "a new change went missing".into())
        })?;
        if self.ledger.is_none() {
            // Its own roll records, if any, are added by the caller.
            let set = self
                .roll
                .union_of_deps(change.deps(), &HashMap::new())
                .unwrap_or(roll::EMPTY);
            self.roll.set_past(hash, set);
        }
        self.note_seq(&change);
        let signed = sign_change(writer, self.id, change);
        self.signatures.insert(hash, signed.signature.clone());
        Ok(Some(signed))
    }
}
