//! Bundles: a whole group (its document and every ledger period) exported
//! to a file, and imported all or nothing through the path a peer's
//! changes take.

use std::collections::BTreeSet;

use nestwork_core::signed::MAX_BUNDLE_BYTES;
use nestwork_core::{ChangeBundle, DocId, GroupId, PeriodChanges, SignedChange};
use nestwork_docs::group_ledger::{period_id, GroupLedger};
use nestwork_docs::{ApplyReport, GroupView, SignedDoc};

use crate::error::{Lookup, NodeError};
use crate::ledger_marks;
use crate::node::{Node, Staged, Write};
use crate::state::{period_kind, State};
use crate::views::ImportReport;

/// Most rounds an import makes over a bundle's documents: a change that
/// waits on a record of a later document (a limit change on a proposal
/// that passes in the same bundle, a payment on that limit) is tried again
/// in the next round, as the next sync with a peer would. A bundle
/// exported by a node settles in two or three.
const MAX_IMPORT_ROUNDS: usize = 16;

impl Node {
    /// Every change of a group with its signature: the group document and
    /// every ledger period document (those kept on disk only are read from
    /// the store), so that a bundle carries the whole group.
    pub fn export(&self, sel: &str) -> Result<ChangeBundle, NodeError> {
        let bundle = {
            let docs = self.lock();
            let (group, doc) = self.resolve_doc(&docs.groups, sel)?;
            let mut bundle = ChangeBundle::of_group(group.hash32(), doc.changes_since(&[]));
            if let Some(l) = docs.ledgers.get(&group) {
                let numbers: BTreeSet<u64> =
                    l.periods.keys().chain(l.cold.keys()).copied().collect();
                for period in numbers {
                    let id = period_id(&group, period);
                    let changes = match l.periods.get(&period) {
                        Some(d) => d.changes_since(&[]),
                        None => self.store.changes(&id.hash32())?,
                    };
                    if !changes.is_empty() {
                        bundle.periods.push(PeriodChanges {
                            period,
                            doc: id.hash32(),
                            changes,
                        });
                    }
                }
            }
            bundle
        };
        let size = bundle.encoded_len();
        if size > MAX_BUNDLE_BYTES {
            return Err(NodeError::Invalid(format!(
                "this group's bundle would be {size} bytes, over the {MAX_BUNDLE_BYTES}-byte limit of a bundle; a new member can get it by syncing with a peer instead"
            )));
        }
        Ok(bundle)
    }

    /// Import a bundle all or nothing, through the path a peer's changes
    /// take: the group document first (its genesis, roll and limits), then
    /// the ledger periods in order, every payment judged by the ledger's
    /// gate as in a sync. It is judged on a copy of the group's state; if
    /// any change is refused, or depends on something neither the bundle
    /// nor this node has, nothing is stored and nothing changes. What is
    /// already held is skipped, and what is new merges with it.
    pub fn import(&self, bundle: ChangeBundle) -> Result<ImportReport, NodeError> {
        let group = GroupId::from(bundle.doc);
        let queue = import_queue(bundle)?;
        let periods = queue.len() - 1;
        let now = self.now_ms();
        self.commit(
            |docs| self.judge_bundle(docs, group, queue, now),
            |docs, judged| {
                if judged.applied > 0 {
                    // Durable: the checked copy becomes the group's state.
                    let mut cand = judged.cand;
                    if let Some(mut doc) = cand.groups.remove(&group) {
                        doc.set_writer(&self.writer);
                        docs.groups.insert(group, doc);
                    }
                    if let Some(l) = cand.ledgers.remove(&group) {
                        docs.ledgers.insert(group, l);
                    }
                    docs.periods.extend(cand.periods);
                    self.tend_ledger(docs, group)?;
                    docs.ensure_ledger(group, &self.writer);
                }
                Ok(ImportReport {
                    doc: group.doc(),
                    group_name: judged.name,
                    applied: judged.applied,
                    duplicates: judged.duplicates,
                    periods,
                    payments: docs.ledgers.get(&group).map_or(0, |l| l.ledger.len()),
                })
            },
        )
    }

    /// Judge a bundle's documents (`queue`, see [`import_queue`]) on a copy
    /// of group `group`'s state: refused whole if any change is refused or
    /// waits on something neither the bundle nor this node has. What is
    /// new is staged to store, with the copy to swap in once it is.
    fn judge_bundle(
        &self,
        docs: &mut State,
        group: GroupId,
        mut queue: Vec<Queued>,
        now: u64,
    ) -> Result<Staged<Judged>, NodeError> {
        let mut cand = docs.candidate_of(group);
        let (applied, duplicates, reloaded) =
            self.import_rounds(&mut cand, group, &mut queue, now)?;
        if let Some((_, period, waiting)) = queue.iter().find(|(_, _, c)| !c.is_empty()) {
            let total: usize = queue.iter().map(|(_, _, c)| c.len()).sum();
            let first = waiting.first().map(|c| c.hash.short()).unwrap_or_default();
            return Err(NodeError::Invalid(format!(
                "the bundle was refused and nothing was stored: {total} of its changes (the first, {first}, in {}) depend on changes or records that are neither in the bundle nor on this node",
                what_of(*period)
            )));
        }
        let name = cand
            .groups
            .get(&group)
            .and_then(GroupView::of)
            .map(|v| v.name)
            .unwrap_or_default();
        let writes: Vec<Write> = queue
            .iter()
            .zip(applied)
            .filter(|(_, changes)| !changes.is_empty())
            .map(|((doc, period, _), changes)| Write {
                doc: *doc,
                changes,
                kind: Some(match period {
                    None => "group".to_string(),
                    Some(p) => period_kind(&group, *p),
                }),
            })
            .collect();
        if !writes.is_empty() && reloaded {
            // The stored base, the marks of the periods cooled under it and
            // the checkpoints were counted without the late payments:
            // dropped, as the node's own reload does, so that the next
            // start counts the ledger again.
            let periods = cand.ledgers.get(&group).map_or(Vec::new(), |l| {
                l.periods.keys().chain(l.cold.keys()).copied().collect()
            });
            ledger_marks::forget_counts(&*self.store, &group, periods)?;
        }
        let judged = Judged {
            applied: writes.iter().map(|w| w.changes.len()).sum(),
            cand,
            name,
            duplicates,
        };
        Ok(Staged::local(judged, writes))
    }

    /// Apply the queued changes to `cand` in rounds until nothing more
    /// applies: the changes applied to each queued document, the
    /// duplicates, and whether the ledger was counted again for a late
    /// payment. What still waits is left in `queue`.
    fn import_rounds(
        &self,
        cand: &mut State,
        group: GroupId,
        queue: &mut [Queued],
        now: u64,
    ) -> Result<(Vec<Vec<SignedChange>>, usize, bool), NodeError> {
        let mut applied: Vec<Vec<SignedChange>> = vec![Vec::new(); queue.len()];
        let mut duplicates = 0;
        let mut reloaded = false;
        for _ in 0..MAX_IMPORT_ROUNDS {
            let mut progress = false;
            for (i, (doc, period, changes)) in queue.iter_mut().enumerate() {
                if changes.is_empty() {
                    continue;
                }
                let r = if period.is_none() {
                    self.import_group_changes(cand, group, std::mem::take(changes), now)?
                } else {
                    if cand.group_of(doc).is_none() {
                        // Not open yet: the periods before it open it.
                        continue;
                    }
                    self.warm(cand, doc)?;
                    cand.apply(*doc, std::mem::take(changes), now)
                        .ok_or_else(|| {
                            NodeError::Invalid(format!("{} cannot be opened", what_of(*period)))
                        })?
                };
                if !r.rejected.is_empty() {
                    return Err(NodeError::BundleRefused {
                        what: what_of(*period),
                        rejections: r.rejected,
                    });
                }
                duplicates += r.duplicates;
                progress |= !r.applied.is_empty();
                applied[i].extend(r.applied);
                *changes = r.missing_deps;
                cand.ensure_ledger(group, &self.writer);
                if cand
                    .ledgers
                    .get(&group)
                    .is_some_and(GroupLedger::history_needed)
                {
                    // A late payment needs the history below the base:
                    // count it again from every period, as the node does
                    // for a peer's, and try the waiting ones again.
                    self.warm_all(cand, group)?;
                    if let Some(l) = cand.ledgers.get_mut(&group) {
                        l.reload();
                    }
                    progress |= !reloaded;
                    reloaded = true;
                }
            }
            if cand
                .groups
                .get(&group)
                .is_none_or(|d| d.genesis().is_none())
            {
                return Err(NodeError::Invalid(
                    "the bundle was refused and nothing was stored: it does not hold the group's founding change (its genesis)".into(),
                ));
            }
            if !progress || queue.iter().all(|(_, _, c)| c.is_empty()) {
                break;
            }
        }
        Ok((applied, duplicates, reloaded))
    }

    /// Apply a bundle's changes to the group document in `cand`, as
    /// [`Node::apply_remote`] does: for a group new here, its genesis
    /// first, so that its ledger exists to judge limit changes among the
    /// rest.
    fn import_group_changes(
        &self,
        cand: &mut State,
        group: GroupId,
        changes: Vec<SignedChange>,
        now: u64,
    ) -> Result<ApplyReport, NodeError> {
        if cand.groups.contains_key(&group) {
            return cand
                .apply(group.doc(), changes, now)
                .ok_or_else(|| NodeError::not_found(Lookup::Group, group));
        }
        cand.groups.insert(group, SignedDoc::empty(group.hash32()));
        let (first, rest): (Vec<_>, Vec<_>) = changes
            .into_iter()
            .partition(|c| nestwork_docs::engine::is_first_change(&c.change));
        let mut report = cand.apply(group.doc(), first, now).unwrap_or_default();
        if cand
            .groups
            .get(&group)
            .is_none_or(|d| d.genesis().is_none())
        {
            cand.groups.remove(&group);
            // Whatever builds on the missing genesis waits; the caller
            // refuses the bundle.
            report.missing_deps.extend(rest);
            return Ok(report);
        }
        if let Some(d) = cand.groups.get_mut(&group) {
            d.set_writer(&self.writer);
        }
        cand.ensure_ledger(group, &self.writer);
        let more = cand.apply(group.doc(), rest, now).unwrap_or_default();
        report.merge(more);
        Ok(report)
    }

    /// Load every unloaded (cold) period of `group` in `docs` back from
    /// the store.
    fn warm_all(&self, docs: &mut State, group: GroupId) -> Result<(), NodeError> {
        let cold: Vec<u64> = docs
            .ledgers
            .get(&group)
            .map(|l| l.cold.keys().copied().collect())
            .unwrap_or_default();
        for period in cold {
            self.warm(docs, &period_id(&group, period))?;
        }
        Ok(())
    }
}

/// A document of a bundle still to import: its id, its ledger period
/// (`None` for the group document), and the changes not applied yet.
type Queued = (DocId, Option<u64>, Vec<SignedChange>);

/// A bundle judged on a copy of its group's state.
struct Judged {
    /// The copy, to swap in once the new changes are durable.
    cand: State,
    /// The group's name.
    name: String,
    /// New changes, over every document.
    applied: usize,
    /// Changes already held.
    duplicates: usize,
}

/// What a queued document is, in words.
fn what_of(period: Option<u64>) -> String {
    match period {
        None => "the group document".to_string(),
        Some(p) => format!("ledger period {p}"),
    }
}

/// A bundle's documents in the order they are imported: the group
/// document first, then the ledger periods in order. Refused if a period
/// document is not the one its number names, or is listed twice.
fn import_queue(bundle: ChangeBundle) -> Result<Vec<Queued>, NodeError> {
    let group = GroupId::from(bundle.doc);
    let mut numbers = BTreeSet::new();
    for p in &bundle.periods {
        if p.doc != period_id(&group, p.period).hash32() {
            return Err(NodeError::Invalid(format!(
                "the bundle was refused and nothing was stored: its document {} is not ledger period {} of group {}",
                p.doc.short(),
                p.period,
                group.short()
            )));
        }
        if !numbers.insert(p.period) {
            return Err(NodeError::Invalid(format!(
                "the bundle was refused and nothing was stored: it lists ledger period {} twice",
                p.period
            )));
        }
    }
    let mut periods = bundle.periods;
    periods.sort_by_key(|p| p.period);
    Ok(std::iter::once((group.doc(), None, bundle.changes))
        .chain(
            periods
                .into_iter()
                .map(|p| (DocId::from(p.doc), Some(p.period), p.changes)),
        )
        .collect())
}
