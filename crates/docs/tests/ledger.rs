//! The pure ledger logic: verdicts that do not depend on delivery order,
//! limits held in the payer's causal past, equivocations caught.

use std::collections::{BTreeMap, BTreeSet};

use nestwork_core::{Hash32, MemberId, MemberKey, SignedRecord};
use nestwork_docs::ledger::{
    Account, CreditLimit, Ledger, Limits, NoProposals, Payment, PayoutGate, Refusal,
};
use nestwork_docs::RecordBody;
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

const FLOOR: i64 = -100;
const CEILING: i64 = 150;

fn keys(n: usize) -> Vec<MemberKey> {
    (0..n)
        .map(|i| MemberKey::from_secret([i as u8 + 1; 32]))
        .collect()
}

fn ledger(authority: MemberId) -> Ledger {
    Ledger::new(
        "hours",
        authority,
        Limits {
            floor: FLOOR,
            ceiling: CEILING,
        },
        5,
    )
}

fn everyone(_: &MemberId) -> bool {
    true
}

/// A signed payment record: its id and body.
fn sign(key: &MemberKey, p: Payment) -> (Hash32, MemberId, RecordBody) {
    sign_body(key, RecordBody::Payment(p))
}

fn sign_body(key: &MemberKey, body: RecordBody) -> (Hash32, MemberId, RecordBody) {
    let record = SignedRecord::sign(key, body.encode());
    (record.id(), key.id(), body)
}

/// Deliver records to a fresh ledger in the given order; records that wait
/// are retried whenever something new is accepted. Returns the ledger and
/// each record's verdict (`None` = still waiting at the end).
fn replay(
    authority: MemberId,
    records: &[(Hash32, MemberId, RecordBody)],
    order: &[usize],
) -> (Ledger, BTreeMap<Hash32, Option<bool>>) {
    let mut l = ledger(authority);
    let mut verdicts: BTreeMap<Hash32, Option<bool>> = BTreeMap::new();
    let mut waiting: Vec<usize> = Vec::new();
    for &i in order {
        let (id, author, body) = &records[i];
        if verdicts.get(id).is_some_and(|v| v.is_some()) {
            continue; // a duplicate
        }
        match l.admit(author, *id, body, &NoProposals) {
            Ok(()) => {
                verdicts.insert(*id, Some(true));
                // Retry everything waiting until nothing moves.
                loop {
                    let mut moved = false;
                    let mut still = Vec::new();
                    for &w in &waiting {
                        let (wid, wa, wb) = &records[w];
                        if verdicts.get(wid).is_some_and(|v| v.is_some()) {
                            continue;
                        }
                        match l.admit(wa, *wid, wb, &NoProposals) {
                            Ok(()) => {
                                verdicts.insert(*wid, Some(true));
                                moved = true;
                            }
                            Err(Refusal::Broken(_)) => {
                                verdicts.insert(*wid, Some(false));
                                moved = true;
                            }
                            Err(Refusal::Missing(_) | Refusal::History) => still.push(w),
                        }
                    }
                    waiting = still;
                    if !moved {
                        break;
                    }
                }
            }
            Err(Refusal::Broken(_)) => {
                verdicts.insert(*id, Some(false));
            }
            Err(Refusal::Missing(_) | Refusal::History) => {
                verdicts.insert(*id, None);
                waiting.push(i);
            }
        }
    }
    (l, verdicts)
}

/// Deliver records in causal order to a ledger that moves its base up
/// whenever it can; a record that needs history below the base makes it
/// reload every accepted record (as a node does) and stop rebasing.
fn replay_rebasing(
    authority: MemberId,
    records: &[(Hash32, MemberId, RecordBody)],
) -> (Ledger, BTreeMap<Hash32, Option<bool>>) {
    let mut l = ledger(authority);
    let mut verdicts: BTreeMap<Hash32, Option<bool>> = BTreeMap::new();
    let mut accepted: Vec<usize> = Vec::new();
    let mut rebasing = true;
    for (i, (id, author, body)) in records.iter().enumerate() {
        if verdicts.contains_key(id) {
            continue;
        }
        let mut verdict = l.admit(author, *id, body, &NoProposals);
        if verdict == Err(Refusal::History) {
            assert!(l.take_needs_history());
            l = ledger(authority);
            for &a in &accepted {
                let (aid, aa, ab) = &records[a];
                l.admit(aa, *aid, ab, &NoProposals)
                    .expect("accepted before");
            }
            rebasing = false;
            verdict = l.admit(author, *id, body, &NoProposals);
        }
        let v = match verdict {
            Ok(()) => {
                accepted.push(i);
                Some(true)
            }
            Err(Refusal::Broken(_)) => Some(false),
            // It cites a payment below the base, not held: it waits here,
            // and is refused where the history is held (it has not seen
            // the closing it cites). Counted nowhere either way.
            Err(Refusal::Missing(_)) => None,
            Err(Refusal::History) => panic!("reloaded, yet it needs history"),
        };
        verdicts.insert(*id, v);
        if rebasing {
            if let Some(base) = l.next_base() {
                l = l.rebased(base);
            }
        }
    }
    (l, verdicts)
}

/// A history made by members who each see only part of it: each member
/// keeps its own ledger, pays with `prepare` (so it cites what it has
/// seen), and now and then hears from another member. Some payments are
/// crafted to break rules, and some members sign twice at one sequence
/// number.
fn history(seed: u64, members: usize, steps: usize) -> Vec<(Hash32, MemberId, RecordBody)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let keys = keys(members);
    let authority = keys[0].id();
    let mut views: Vec<Ledger> = (0..members).map(|_| ledger(authority)).collect();
    let mut known: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); members];
    let mut records: Vec<(Hash32, MemberId, RecordBody)> = Vec::new();
    let publish = |records: &mut Vec<(Hash32, MemberId, RecordBody)>,
                   views: &mut Vec<Ledger>,
                   known: &mut Vec<BTreeSet<usize>>,
                   who: usize,
                   rec: (Hash32, MemberId, RecordBody)| {
        let (id, author, body) = &rec;
        if views[who].admit(author, *id, body, &NoProposals).is_ok() {
            known[who].insert(records.len());
        }
        records.push(rec);
    };
    for _ in 0..steps {
        let who = rng.gen_range(0..members);
        match rng.gen_range(0..10) {
            // Hear everything another member knows.
            0..=2 => {
                let from = rng.gen_range(0..members);
                let theirs = known[from].clone();
                let (l, _) = (&mut views[who], ());
                let mut added = Vec::new();
                for &i in &theirs {
                    let (id, a, b) = &records[i];
                    if l.admit(a, *id, b, &NoProposals).is_ok() {
                        added.push(i);
                    }
                }
                known[who].extend(added);
            }
            // An honest payment (after the closing of a full period, as a
            // node makes it; now and then a closing that lies).
            3..=7 => {
                if let Some(mut close) = views[who].close_due(Vec::new()) {
                    let lie = rng.gen_bool(0.1);
                    if lie {
                        match close.balances.first_mut() {
                            Some(b) => b.1 += 1,
                            None => close.payments += 1,
                        }
                    }
                    let rec = sign_body(&keys[who], RecordBody::PeriodClose(close));
                    publish(&mut records, &mut views, &mut known, who, rec);
                }
                let to = (who + rng.gen_range(1..members)) % members;
                let to = if rng.gen_bool(0.1) {
                    Account::Commons
                } else {
                    Account::Member(keys[to].id())
                };
                let amount = rng.gen_range(1..=60);
                if let Ok(p) = views[who].prepare(
                    &keys[who].id(),
                    Account::Member(keys[who].id()),
                    to,
                    amount,
                    "",
                    None,
                    0,
                    Vec::new(),
                    &everyone,
                    &NoProposals,
                ) {
                    let rec = sign(&keys[who], p);
                    publish(&mut records, &mut views, &mut known, who, rec);
                }
            }
            // A payment that ignores the limits, or a second payment at
            // the same sequence number (an equivocation).
            _ => {
                let me = Account::Member(keys[who].id());
                let ok = views[who].prepare(
                    &keys[who].id(),
                    me,
                    Account::Commons,
                    1,
                    "",
                    None,
                    0,
                    Vec::new(),
                    &everyone,
                    &NoProposals,
                );
                if let Ok(mut p) = ok {
                    if rng.gen_bool(0.5) {
                        p.amount = 500; // over the floor
                    } else if p.seq > 1 {
                        // Reuse the previous sequence number on another branch.
                        let prev = views[who].entry(&p.prev.expect("prev")).cloned();
                        if let Some(prev) = prev {
                            p = prev.payment.clone();
                            p.memo = "again".into();
                        }
                    }
                    records.push(sign(&keys[who], p));
                }
            }
        }
    }
    records
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_order_reaches_the_same_verdicts_and_balances(
        seed in any::<u64>(),
        members in 2usize..7,
        steps in 10usize..240,
        orders in prop::collection::vec(any::<u64>(), 3),
    ) {
        let records = history(seed, members, steps);
        let authority = keys(members)[0].id();
        let mut results = Vec::new();
        for o in orders {
            let mut rng = StdRng::seed_from_u64(o);
            let mut order: Vec<usize> = (0..records.len()).collect();
            // Duplicates: some records delivered twice.
            let extra: Vec<usize> = order.iter().copied().filter(|_| rng.gen_bool(0.3)).collect();
            order.extend(extra);
            order.shuffle(&mut rng);
            let (l, verdicts) = replay(authority, &records, &order);
            let sum: i128 = l.balances().values().sum();
            prop_assert_eq!(sum, 0, "balances sum to zero");
            results.push((verdicts, l.balances().clone(), l.equivocations()));
        }
        // In causal order, nothing waits.
        let causal: Vec<usize> = (0..records.len()).collect();
        let (l, verdicts) = replay(authority, &records, &causal);
        prop_assert!(verdicts.values().all(|v| v.is_some()), "nothing waits in causal order");
        for (v, b, e) in &results {
            prop_assert_eq!(v, &verdicts);
            prop_assert_eq!(b, l.balances());
            prop_assert_eq!(e, &l.equivocations());
        }
        // A node that counts from a base and drops what lies below it
        // reaches the same verdicts and balances (reloading everything
        // when a late record needs the history below its base).
        let (rebased, rebased_verdicts) = replay_rebasing(authority, &records);
        for (id, v) in &rebased_verdicts {
            let full = verdicts[id];
            prop_assert!(*v == full || (v.is_none() && full == Some(false)), "{v:?} vs {full:?}");
        }
        prop_assert_eq!(rebased.balances(), l.balances());
        prop_assert_eq!(rebased.len(), l.len());
        // No honest account goes below its floor: only an account that
        // equivocated can.
        for (account, balance) in l.balances() {
            if l.frozen(account).is_none() {
                let floor = if *account == Account::Commons { 0 } else { FLOOR };
                prop_assert!(*balance >= i128::from(floor), "{account} at {balance}");
            }
        }
    }
}

fn pay(l: &Ledger, key: &MemberKey, to: Account, amount: u64) -> Result<Payment, String> {
    l.prepare(
        &key.id(),
        Account::Member(key.id()),
        to,
        amount,
        "",
        None,
        0,
        Vec::new(),
        &everyone,
        &NoProposals,
    )
    .map_err(|e| e.0)
}

fn accept(l: &mut Ledger, key: &MemberKey, p: Payment) -> Hash32 {
    let (id, author, body) = sign(key, p);
    l.admit(&author, id, &body, &NoProposals).expect("valid");
    id
}

#[test]
fn the_floor_is_named_in_the_refusal() {
    let k = keys(2);
    let mut l = ledger(k[0].id());
    let to = Account::Member(k[1].id());
    let p = pay(&l, &k[0], to, 80).expect("first");
    accept(&mut l, &k[0], p);
    let err = pay(&l, &k[0], to, 40).expect_err("over the floor");
    assert_eq!(
        err,
        "would take you to -120 hours; your floor is -100 hours"
    );
    assert_eq!(l.balance(&Account::Member(k[0].id())), -80);
}

#[test]
fn the_ceiling_holds_for_one_payer_and_is_shown_when_passed_concurrently() {
    let k = keys(3);
    let target = Account::Member(k[2].id());
    let mut a = ledger(k[0].id());
    let mut b = ledger(k[0].id());
    // Two payers who have not seen each other each pay 90 to one payee.
    let pa = pay(&a, &k[0], target, 90).expect("a");
    let pb = pay(&b, &k[1], target, 90).expect("b");
    let ida = accept(&mut a, &k[0], pa.clone());
    let idb = accept(&mut b, &k[1], pb.clone());
    // Both are valid everywhere: each was within the ceiling in its past.
    accept(&mut a, &k[1], pb);
    accept(&mut b, &k[0], pa);
    assert_ne!(ida, idb);
    assert_eq!(a.balance(&target), 180);
    assert_eq!(b.balance(&target), 180);
    // Now the account receives nothing more until it is back under.
    let err = pay(&a, &k[0], target, 1).expect_err("over the ceiling");
    assert!(err.contains("ceiling is 150"), "{err}");
}

#[test]
fn bad_payments_are_refused_with_the_rule() {
    let k = keys(2);
    let l = ledger(k[0].id());
    let me = Account::Member(k[0].id());
    let to = Account::Member(k[1].id());
    let good = pay(&l, &k[0], to, 5).expect("good");
    let check = |p: &Payment, signer: &MemberKey| match l.check(&signer.id(), p, &NoProposals) {
        Err(Refusal::Broken(e)) => e.0,
        other => panic!("expected a refusal, got {other:?}"),
    };
    let zero = Payment {
        amount: 0,
        ..good.clone()
    };
    assert!(check(&zero, &k[0]).contains("more than zero"));
    let huge = Payment {
        amount: u64::MAX,
        ..good.clone()
    };
    assert!(check(&huge, &k[0]).contains("over the largest"));
    let myself = Payment {
        to: me,
        ..good.clone()
    };
    assert!(check(&myself, &k[0]).contains("cannot pay itself"));
    assert!(check(&good, &k[1]).contains("cannot pay out of"));
    let unchained = Payment {
        seq: 2,
        ..good.clone()
    };
    assert!(check(&unchained, &k[0]).contains("broken chain"));
    let commons = Payment {
        from: Account::Commons,
        proposal: Some(Hash32::of(b"p")),
        ..good.clone()
    };
    assert!(check(&commons, &k[0]).contains("no passed proposal"));
    let unsorted = Payment {
        seen: {
            let mut v = vec![Hash32::of(b"a"), Hash32::of(b"b")];
            v.sort();
            v.reverse();
            v
        },
        ..good.clone()
    };
    assert!(check(&unsorted, &k[0]).contains("sorted"));
    // A payee who is not a member is refused before signing.
    let nobody = MemberKey::from_secret([99; 32]).id();
    let err = l
        .prepare(
            &k[0].id(),
            me,
            Account::Member(nobody),
            5,
            "",
            None,
            0,
            Vec::new(),
            &|m: &MemberId| *m != nobody,
            &NoProposals,
        )
        .expect_err("not a member");
    assert!(err.0.contains("not a member"), "{}", err.0);
}

#[test]
fn an_equivocation_freezes_the_account_with_its_proof() {
    let k = keys(3);
    let mut l = ledger(k[0].id());
    let p1 = pay(&l, &k[0], Account::Member(k[1].id()), 10).expect("p1");
    let p2 = Payment {
        to: Account::Member(k[2].id()),
        ..p1.clone()
    };
    let a = accept(&mut l, &k[0], p1);
    let b = accept(&mut l, &k[0], p2);
    let proof = l.frozen(&Account::Member(k[0].id())).expect("frozen");
    let mut pair = [a, b];
    pair.sort();
    assert_eq!(proof.payments, pair);
    assert_eq!(proof.seq, 1);
    // Both stand; the sum is still zero.
    assert_eq!(l.balance(&Account::Member(k[0].id())), -20);
    let err = pay(&l, &k[0], Account::Member(k[1].id()), 1).expect_err("frozen");
    assert!(err.contains("frozen"), "{err}");
}

struct Passed(Hash32);

impl PayoutGate for Passed {
    fn authorizes(&self, proposal: &Hash32, _: &Account, _: u64) -> Result<(), Refusal> {
        if *proposal == self.0 {
            Ok(())
        } else {
            Err(Refusal::Broken(nestwork_docs::rules::RuleError(
                "not passed".into(),
            )))
        }
    }
}

#[test]
fn the_commons_pays_out_only_by_a_passed_proposal_once_and_within_its_funds() {
    let k = keys(2);
    let mut l = ledger(k[0].id());
    let gate = Passed(Hash32::of(b"fund the roof"));
    let p = pay(&l, &k[1], Account::Commons, 50).expect("into the commons");
    accept(&mut l, &k[1], p);
    let payout = |l: &Ledger, amount: u64| {
        l.prepare(
            &k[0].id(),
            Account::Commons,
            Account::Member(k[0].id()),
            amount,
            "roof",
            Some(gate.0),
            0,
            Vec::new(),
            &everyone,
            &gate,
        )
    };
    let err = payout(&l, 60).expect_err("more than the fund holds");
    assert!(err.0.contains("floor is 0"), "{}", err.0);
    let p = payout(&l, 30).expect("a passed proposal");
    let (id, author, body) = sign(&k[0], p);
    l.admit(&author, id, &body, &gate).expect("valid");
    assert_eq!(l.balance(&Account::Commons), 20);
    let err = payout(&l, 10).expect_err("paid once");
    assert!(err.0.contains("already been paid out"), "{}", err.0);
}

#[test]
fn limits_follow_the_limit_change_the_payer_cited() {
    let k = keys(2);
    let mut l = ledger(k[0].id());
    let change = CreditLimit {
        member: Some(k[1].id()),
        floor: -10,
        ceiling: 1_000,
        seq: 1,
        prev: None,
        proposal: None,
    };
    assert!(matches!(
        l.check_limit(&k[1].id(), &change, &NoProposals),
        Err(Refusal::Broken(_))
    ));
    l.check_limit(&k[0].id(), &change, &NoProposals)
        .expect("the authority");
    l.insert_limit(Hash32::of(b"limit 1"), change);
    let err = pay(&l, &k[1], Account::Member(k[0].id()), 11).expect_err("new floor");
    assert!(err.contains("floor is -10"), "{err}");
    // A payment made before the change (citing no limits) is judged by the
    // defaults it saw.
    let mut old = pay(&l, &k[1], Account::Member(k[0].id()), 5).expect("small");
    old.limits = None;
    old.amount = 50;
    assert!(l.check(&k[1].id(), &old, &NoProposals).is_ok());
    let set: BTreeSet<i64> = [l.limits_of(&Account::Member(k[1].id())).floor].into();
    assert_eq!(set, [-10].into());
    // Once a payment cited the change, the next one on the chain cannot go
    // back to citing none (and the looser defaults).
    let first = pay(&l, &k[1], Account::Member(k[0].id()), 5).expect("small");
    assert!(first.limits.is_some());
    accept(&mut l, &k[1], first);
    let mut escape = pay(&l, &k[1], Account::Member(k[0].id()), 1).expect("small");
    escape.limits = None;
    escape.amount = 50;
    let err = l
        .check(&k[1].id(), &escape, &NoProposals)
        .expect_err("older limits");
    assert!(
        matches!(&err, Refusal::Broken(e) if e.0.contains("older credit limits")),
        "{err:?}"
    );
}

#[test]
fn a_closing_is_checked_against_the_payments_it_covers() {
    let k = keys(3);
    let mut l = ledger(k[0].id());
    let to = Account::Member(k[1].id());
    for _ in 0..5 {
        let p = pay(&l, &k[0], to, 3).expect("pay");
        accept(&mut l, &k[0], p);
    }
    let close = l.close_due(Vec::new()).expect("period 0 is full");
    assert_eq!(close.period, 0);
    assert_eq!(close.payments, 5);
    let balances: BTreeMap<Account, i128> = close.balances.iter().copied().collect();
    assert_eq!(
        balances,
        BTreeMap::from([(Account::Member(k[0].id()), -15), (to, 15)])
    );
    // A closing that lies about a balance or the count is refused.
    let mut lie = close.clone();
    for b in &mut lie.balances {
        if b.0 == to {
            b.1 = 20;
        }
    }
    assert_eq!(
        l.check_close(&lie),
        Err(Refusal::Broken(nestwork_docs::rules::RuleError(format!(
            "the closing says {to} holds 20 hours; the payments it covers make it 15 hours"
        ))))
    );
    let mut lie = close.clone();
    lie.payments = 4;
    assert!(matches!(l.check_close(&lie), Err(Refusal::Broken(_))));
    // The next payment cites the closing and goes to period 1.
    let (cid, author, body) = sign_body(&k[2], RecordBody::PeriodClose(close));
    l.admit(&author, cid, &body, &NoProposals).expect("closing");
    let p = pay(&l, &k[1], Account::Member(k[0].id()), 2).expect("pay");
    assert_eq!((p.period, p.closing), (1, Some(cid)));
    // A payment in period 1 must cite a closing, and one that has not seen
    // the closing's cut is refused.
    let mut uncited = p.clone();
    uncited.closing = None;
    let (id, author, body) = sign(&k[1], uncited);
    assert!(matches!(
        l.admit(&author, id, &body, &NoProposals),
        Err(Refusal::Broken(_))
    ));
    let mut blind = p.clone();
    blind.seen.clear();
    let (id, author, body) = sign(&k[1], blind);
    match l.admit(&author, id, &body, &NoProposals) {
        Err(Refusal::Broken(e)) => assert!(e.0.contains("has not seen"), "{e}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    accept(&mut l, &k[1], p);
    assert_eq!(l.len(), 6);
}
