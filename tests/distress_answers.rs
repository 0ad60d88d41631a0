//! Help is coming (issue 18), on real nodes: an answer given in the region
//! a call for help climbed to, or at a mutual-aid treaty partner it crossed
//! to, is carried back down to the hub where it was raised, so the person
//! who called learns who is coming, from where, and when; a resolution
//! there resolves it in the hub; a forged answer carried down by a hub
//! member who is not in the region is refused.
//!
//! Node 1 founds a region, a hub under it and a partner group bound to the
//! hub by a mutual-aid treaty; node 2 belongs only to the hub (it raises
//! the calls), node 3 only to the region, node 4 only to the partner.

use std::time::Duration;

use nestwork_core::{GroupId, Hash32, SignalId};
use nestwork_docs::distress::{Answer, AnswerKind, CarriedAnswer, SignalStatus, SignalView};
use nestwork_docs::{RecordBody, SignedDoc, Writer};
use nestwork_node::distress::Answering;
use nestwork_testkit::distress::{answer, nest, seen};
use nestwork_testkit::{key, wait_until, TestNode};

const LIMIT: Duration = Duration::from_secs(60);

/// The answer `by` gave, as node `n` shows the signal across its groups.
fn answer_from(n: &TestNode, signal: &Hash32, by: &TestNode, kind: &str) -> Option<SignalView> {
    seen(n, None, signal).filter(|v| {
        v.answers
            .iter()
            .any(|a| a.by == by.member() && a.answer.as_str() == kind)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn answers_in_the_region_and_at_a_treaty_partner_reach_the_caller() {
    let nest = nest().await;
    let [_, caller, in_region, at_partner] = &nest.nodes[..] else {
        panic!("four nodes");
    };
    let signal = nest.raise_and_climb("Fell from the roof, leg broken").await;
    assert!(
        seen(caller, None, &signal).is_some_and(|v| v.answers.is_empty()),
        "nobody has answered yet"
    );

    // Seen in the region: the caller learns who saw it, and where.
    answer(in_region, &signal, Answering::Ack, None);
    wait_until("the region's ack on the caller's node", LIMIT, || {
        answer_from(caller, &signal, in_region, "seen").is_some()
    })
    .await;
    let v = seen(caller, Some(&nest.hub), &signal).expect("in the hub");
    assert_eq!(v.status, SignalStatus::Answered);
    let ack = &v.answers[0];
    assert_eq!(
        (ack.given_in, ack.given_in_name.as_str()),
        (GroupId::from(nest.region), "North Valley")
    );
    assert_eq!(ack.carried_via, vec![GroupId::from(nest.region)]);

    // On the way, with an estimate.
    answer(in_region, &signal, Answering::Respond, Some(15 * 60));
    wait_until("the region's response on the caller's node", LIMIT, || {
        answer_from(caller, &signal, in_region, "on the way").is_some()
    })
    .await;
    let v = seen(caller, Some(&nest.hub), &signal).expect("in the hub");
    let on_way = v
        .answers
        .iter()
        .find(|a| matches!(a.answer, AnswerKind::Respond { .. }))
        .expect("response");
    assert_eq!(
        on_way.answer,
        AnswerKind::Respond {
            eta_secs: Some(900)
        }
    );
    assert_eq!(on_way.given_in, GroupId::from(nest.region));

    // Resolved in the region by the responder: resolved in the hub.
    answer(in_region, &signal, Answering::Resolve, None);
    wait_until(
        "the resolution in the hub on the caller's node",
        LIMIT,
        || {
            seen(caller, Some(&nest.hub), &signal)
                .is_some_and(|v| v.status == SignalStatus::Resolved)
        },
    )
    .await;
    // Every answer is one answer on every node, however many carried it.
    for n in &nest.nodes[..3] {
        let v = seen(n, None, &signal).expect("held");
        assert_eq!(v.answers.len(), 3, "ack, response, resolve once each");
    }

    // A second call, answered at the treaty partner.
    let second = nest.raise_and_climb("Out of water at the camp").await;
    answer(at_partner, &second, Answering::Respond, Some(600));
    wait_until("the partner's response on the caller's node", LIMIT, || {
        answer_from(caller, &second, at_partner, "on the way").is_some()
    })
    .await;
    let v = seen(caller, Some(&nest.hub), &second).expect("in the hub");
    assert_eq!(v.answers[0].given_in_name, "Hillside");
    assert_eq!(v.answers[0].given_in, GroupId::from(nest.partner));
    // ... and carried on up into the region, so it stops climbing there too.
    wait_until("the partner's answer in the region", LIMIT, || {
        seen(in_region, Some(&nest.region), &second).is_some_and(|v| !v.answers.is_empty())
    })
    .await;

    // The caller resolves it: the resolution reaches every group it
    // travelled to, including those the caller does not belong to.
    answer(caller, &second, Answering::Resolve, None);
    wait_until(
        "the caller's resolution in the region and at the partner",
        LIMIT,
        || {
            seen(in_region, Some(&nest.region), &second)
                .is_some_and(|v| v.status == SignalStatus::Resolved)
                && seen(at_partner, Some(&nest.partner), &second)
                    .is_some_and(|v| v.status == SignalStatus::Resolved)
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_forged_answer_carried_down_by_someone_not_in_the_region_is_refused() {
    let nest = nest().await;
    let [liaison, caller, in_region, _] = &nest.nodes[..] else {
        panic!("four nodes");
    };
    let signal = nest.raise_and_climb("Bailiffs at the door").await;
    answer(in_region, &signal, Answering::Ack, None);
    wait_until("the real ack on the caller's node", LIMIT, || {
        answer_from(caller, &signal, in_region, "seen").is_some()
    })
    .await;
    // The real carried ack, as the hub holds it: its proof of membership
    // in the region is what a forger would copy.
    let hub_doc = {
        let mut d = SignedDoc::empty(nest.hub);
        d.apply(
            liaison
                .node
                .export(&nest.hub.to_hex())
                .expect("export")
                .changes,
        );
        d
    };
    let real = hub_doc
        .records()
        .values()
        .find_map(|r| match RecordBody::decode(&r.body) {
            Ok(RecordBody::CarriedAnswer(c)) => Some(c),
            _ => None,
        })
        .expect("the carried ack");

    // The caller's node, modified: it signs an answer "on my way" in the
    // name of a responder it made up, claims it was given in the region,
    // and files it in the hub with the real ack's proof.
    let made_up = key(99);
    let fake = nestwork_core::SignedRecord::sign(
        &made_up,
        RecordBody::Answer(Answer {
            signal: SignalId::from(signal),
            kind: AnswerKind::Respond { eta_secs: Some(60) },
            text: "help from the region".into(),
            at_ms: nestwork_node::Clock::default().now_ms(),
        })
        .encode(),
    );
    let forged = RecordBody::CarriedAnswer(CarriedAnswer {
        answer: fake.encode(),
        ..real.clone()
    });
    // The same, signed as the caller itself (a hub member, not in the region).
    let own = nestwork_core::SignedRecord::sign(
        &key(caller.seed),
        RecordBody::Answer(Answer {
            signal: SignalId::from(signal),
            kind: AnswerKind::Ack,
            text: "the region saw it".into(),
            at_ms: nestwork_node::Clock::default().now_ms(),
        })
        .encode(),
    );
    let as_self = RecordBody::CarriedAnswer(CarriedAnswer {
        answer: own.encode(),
        ..real
    });
    let writer = Writer::new(key(caller.seed), [0x42; 8]);
    let now = nestwork_node::Clock::default().now_ms();
    for body in [forged, as_self] {
        let (_, change) = hub_doc
            .clone()
            .sign_record_anyway(&writer, body, now)
            .expect("sign");
        let report = liaison
            .node
            .apply_remote(GroupId::from(nest.hub).doc(), vec![change.clone()], false)
            .expect("judged");
        assert_eq!(report.rejected.len(), 1, "{:?}", report.applied);
        assert!(
            report.rejected[0]
                .reason
                .contains("not shown to be a member of North Valley"),
            "{}",
            report.rejected[0].reason
        );
    }
    let v = seen(liaison, Some(&nest.hub), &signal).expect("held");
    assert_eq!(v.answers.len(), 1, "only the real ack: {:?}", v.answers);
}
