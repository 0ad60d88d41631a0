//! What a member's node must sign (`nestwork_docs::due`) is a function of
//! the documents it holds and the time it is given: no clock, store or
//! network. A passed limit change is due from its proposer's node once
//! the decision is held, and no longer once the change is signed.

use std::collections::BTreeMap;

use nestwork_core::{GroupId, MemberId, ProposalId, SignalId};
use nestwork_docs::due::{due, Due};
use nestwork_docs::governance::{Action, Choice, Proposal, Vote};
use nestwork_docs::ledger::CreditLimit;
use nestwork_docs::{Charter, GroupGenesis, GroupKind, NoLedger, RecordBody, SignedDoc};

mod common;
use common::writer;

const T0: u64 = 1_700_000_000_000;
/// Long after every voting period.
const LATER: u64 = T0 + 30 * 24 * 3600 * 1000;

/// What `me` must sign at `now`, holding `doc` alone (signals held since
/// now).
fn due_at(doc: &SignedDoc, me: &MemberId, now: u64) -> Vec<Due> {
    let groups = BTreeMap::from([(doc.group(), doc.clone())]);
    due(
        &groups,
        &BTreeMap::new(),
        me,
        now,
        &mut |_: &GroupId, _: &SignalId| now,
    )
}

/// [`due_at`] in words, to compare (Due is plain data).
fn due_of(doc: &SignedDoc, me: &MemberId, now: u64) -> Vec<String> {
    due_at(doc, me, now)
        .iter()
        .map(|d| format!("{d:?}"))
        .collect()
}

#[test]
fn a_passed_limit_change_is_due_from_its_proposer_once_decided_until_signed() {
    let founder = writer(1);
    let me = founder.id();
    let genesis = GroupGenesis {
        name: "Riverside".into(),
        kind: GroupKind::Hub,
        parent: None,
        unit: "hours".into(),
        created_at_ms: T0,
        nonce: [1; 16],
        charter: Charter::default(),
    };
    let (mut doc, _) = SignedDoc::create_group(&founder, genesis, T0).expect("found");
    let sign = |doc: &mut SignedDoc, body: RecordBody| {
        doc.add_record(&founder, body, &mut NoLedger, T0)
            .expect("signed")
            .0
    };
    let action = Action::SetLimits {
        member: None,
        floor: -50,
        ceiling: 50,
    };
    let submitted_at_ms = T0 + 1;
    let p = sign(
        &mut doc,
        RecordBody::Proposal(Proposal {
            action,
            submitted_at_ms,
        }),
    );
    let vote = Vote {
        proposal: ProposalId::from(p),
        choice: Choice::Yes,
        cast_at_ms: T0 + 2,
        for_group: None,
    };
    sign(&mut doc, RecordBody::Vote(vote));

    // Voting over: the proposer's node signs the decision, nothing else
    // yet; the same answer every time it is asked; nothing for a stranger.
    let first = due_of(&doc, &me, LATER);
    assert_eq!(first, due_of(&doc, &me, LATER));
    assert_eq!(first.len(), 1, "{first:?}");
    assert!(first[0].contains("Decision"), "{first:?}");
    assert!(due_of(&doc, &writer(9).id(), LATER).is_empty());
    let Due::File { body, .. } = due_at(&doc, &me, LATER).remove(0) else {
        panic!("a record to file");
    };
    sign(&mut doc, *body);

    // Decided: the limit change it orders is due, once.
    let after = due_of(&doc, &me, LATER);
    assert_eq!(after.len(), 1, "{after:?}");
    assert!(after[0].starts_with("Limit"), "{after:?}");
    assert!(
        after[0].contains(&format!("{:?}", ProposalId::from(p))),
        "{after:?}"
    );
    let limit = CreditLimit {
        member: None,
        floor: -50,
        ceiling: 50,
        seq: 1,
        prev: None,
        proposal: Some(p),
    };
    doc.sign_record_anyway(&founder, RecordBody::CreditLimit(limit), T0)
        .expect("limit");
    assert!(due_of(&doc, &me, LATER).is_empty());
}
