//! What a signed document says: its id, heads and changes, its records,
//! its roll and governance at a time, its description.

use super::*;

impl SignedDoc {
    /// For a ledger period document: its group and period number.
    pub fn ledger_period_of(&self) -> Option<(Hash32, u64)> {
        self.ledger
    }

    /// The document id.
    pub fn id(&self) -> Hash32 {
        self.id
    }

    /// The current heads.
    pub fn heads(&self) -> Vec<Hash32> {
        self.doc
            .get_heads()
            .into_iter()
            .map(|h| Hash32(h.0))
            .collect()
    }

    /// How many changes the document holds.
    pub fn change_count(&self) -> usize {
        self.signatures.len()
    }

    /// Every change the document has that is not in the history of `have`,
    /// with its signature, in causal order. Hashes in `have` that this
    /// document does not hold are ignored (the other side is ahead there).
    pub fn changes_since(&self, have: &[Hash32]) -> Vec<SignedChange> {
        let have: Vec<ChangeHash> = have
            .iter()
            .map(|h| ChangeHash(h.0))
            .filter(|h| self.has_change(h))
            .collect();
        self.doc
            .get_changes(&have)
            .into_iter()
            .filter(|change| {
                self.signatures
                    .get(&change.hash())
                    .is_some_and(|s| !s.is_empty())
            })
            .map(|mut change| {
                let hash = change.hash();
                SignedChange {
                    author: author_of(change.actor_id()).unwrap_or(MemberId([0; 32])),
                    doc: self.id,
                    hash: Hash32(hash.0),
                    change: change.bytes().into_owned(),
                    signature: self.signatures.get(&hash).cloned().unwrap_or_default(),
                }
            })
            .collect()
    }

    /// The verified records, by id.
    pub fn records(&self) -> &BTreeMap<Hash32, SignedRecord> {
        &self.records
    }

    /// The records that decide the roll and the group's decisions (see
    /// `engine/roll.rs`), decoded, in id order: what governance replays,
    /// without decoding every record again each time.
    pub fn roll_records(&self) -> impl Iterator<Item = (Hash32, MemberId, &RecordBody)> + '_ {
        self.records
            .keys()
            .filter_map(|id| self.roll.body(id).map(|(author, body)| (*id, author, body)))
    }

    /// The group's governance at `now_ms`, from the records held (as
    /// [`Governance::at`] would replay them); `None` until its genesis has
    /// arrived. The timeline is kept from one call to the next, so a call
    /// replays only the group's recent business (see
    /// `governance/timeline.rs`).
    pub fn governance_at(&self, now_ms: u64) -> Option<crate::governance::Governance> {
        let mut kept = self
            .timeline
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if kept.is_none() {
            let (record, genesis) = self.genesis()?;
            let timeline = crate::governance::Timeline::new(
                GroupId::from(self.id),
                record.author,
                genesis.created_at_ms,
                &genesis.charter,
                genesis.parent,
            );
            *kept = Some((0, timeline));
        }
        let (seen, timeline) = kept.as_mut()?;
        // The records that decide governance are those the roll index
        // decoded (`roll_records`).
        for id in &self.taken[*seen..] {
            if let Some((author, body)) = self.roll.body(id) {
                timeline.add(*id, author, body);
            }
        }
        *seen = self.taken.len();
        Some(timeline.at(now_ms))
    }

    /// The roll at the document's heads: who may write now.
    pub fn members(&self) -> &BTreeSet<MemberId> {
        &self.members
    }

    /// Who was on the roll just before `change` (at its dependencies):
    /// who may read it; and who else held the founding change there (left,
    /// removed, or awaiting an entry vote). `None` for a ledger period or
    /// a change this document does not hold.
    pub fn roll_before(
        &mut self,
        change: &Hash32,
    ) -> Option<(BTreeSet<MemberId>, BTreeSet<MemberId>)> {
        if self.ledger.is_some() {
            return None;
        }
        let deps = self
            .doc
            .get_change_by_hash(&ChangeHash(change.0))?
            .deps()
            .to_vec();
        let set = self.roll.union_of_deps(&deps, &HashMap::new())?;
        let roll = self.roll.roll(&self.id, set);
        let outside = roll.former.union(&roll.awaiting).copied().collect();
        Some((roll.members.clone(), outside))
    }

    /// The roll at this group document's `heads` (the heads a ledger
    /// record cites): who was on it there, as a change of this document
    /// depending on exactly those heads is judged. `Err` lists the heads
    /// this document does not hold (yet). A ledger period has no roll of
    /// its own: nobody is on it.
    pub fn roll_at_heads(&self, heads: &[Hash32]) -> Result<Arc<Roll>, Vec<Hash32>> {
        if self.ledger.is_some() {
            return Ok(Arc::new(Roll::default()));
        }
        let heads: Vec<ChangeHash> = heads.iter().map(|h| ChangeHash(h.0)).collect();
        self.roll
            .roll_of_cited(&self.id, &heads)
            .map_err(|missing| missing.into_iter().map(|h| Hash32(h.0)).collect())
    }

    /// Those ever on the roll who are not on it now (left, removed).
    pub fn former_members(&self) -> BTreeSet<MemberId> {
        self.ever.difference(&self.members).copied().collect()
    }

    /// Everyone who holds the group's founding change and is not on the
    /// roll at the heads: former members, and newcomers awaiting an entry
    /// vote.
    pub fn outside_members(&self) -> BTreeSet<MemberId> {
        let mut outside = self.former_members();
        outside.extend(self.awaiting.iter().copied());
        outside
    }

    /// The group's seal key records: id, author, body.
    pub fn seal_key_records(
        &self,
    ) -> impl Iterator<Item = (&Hash32, &MemberId, &crate::seal::SealKey)> {
        self.seal_keys.iter().map(|(id, (a, k))| (id, a, k))
    }

    /// Everyone ever on the roll, former members included (whose accounts
    /// stay on the books).
    pub fn ever_members(&self) -> &BTreeSet<MemberId> {
        &self.ever
    }

    /// The group's genesis, if this is a group document.
    pub fn genesis(&self) -> Option<(&SignedRecord, GroupGenesis)> {
        let record = self.records.get(&self.id)?;
        match RecordBody::decode(&record.body).ok()? {
            RecordBody::GroupGenesis(g) => Some((record, g)),
            _ => None,
        }
    }

    /// The free-form description text.
    pub fn description(&self) -> String {
        self.description_exid()
            .ok()
            .and_then(|d| self.doc.text(&d).ok())
            .unwrap_or_default()
    }

    /// Changes refused for forking their device's history, kept as proof
    /// against their author (see [`ApplyReport::forked`]).
    pub fn forks(&self) -> &[SignedChange] {
        &self.forks
    }

    /// `member`'s newest distress signal here: its number and id.
    pub fn signal_head(&self, member: &MemberId) -> Option<(u64, SignalId)> {
        self.distress.heads.get(member).copied()
    }

    /// The group this document belongs to: for a group's own document,
    /// the group it founds (its id is the group's); for a ledger period,
    /// the group whose ledger it is.
    pub fn group(&self) -> GroupId {
        GroupId::from(self.ledger.map_or(self.id, |(group, _)| group))
    }

    /// Recompute the roll at the heads (a ledger period has none of its own).
    /// Who is on the roll at `now_ms`, by this document's records: the
    /// group's view of its roll at that moment, replaying only the records
    /// that can change it. Empty for a ledger period.
    pub fn roll_at(&self, now_ms: u64) -> BTreeSet<MemberId> {
        if self.ledger.is_some() {
            return BTreeSet::new();
        }
        self.roll
            .roll_at(&self.id, &self.doc.get_heads(), now_ms)
            .map(|roll| roll.members)
            .unwrap_or_default()
    }

    /// The admission made with invite ticket `ticket`, if any.
    pub fn admission_by_ticket(&self, ticket: &Hash32) -> Option<crate::record::Admission> {
        self.records
            .values()
            .find_map(|r| match RecordBody::decode(&r.body) {
                Ok(RecordBody::Admission(a)) if a.ticket == *ticket => Some(a),
                _ => None,
            })
    }
}
