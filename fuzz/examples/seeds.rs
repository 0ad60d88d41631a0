//! Writes the committed seed corpora, `fuzz/corpus/<target>/`: a handful
//! of real encoded values per target, from the fixtures' group, each with
//! the mode byte its target reads first. Run from `fuzz/` with
//! `cargo run --example seeds`; the output is the same every time except
//! for the sealed gossip (a seal's nonce is random).

// Links libFuzzer's coverage callbacks when built with the fuzz targets'
// instrumentation (so it reuses their build).
extern crate libfuzzer_sys;

use std::path::{Path, PathBuf};

use nestwork_core::{encoding, ChangeBundle, Hash32, MemberId, PeriodChanges, SignedChange};
use nestwork_docs::engine::ledger_period_id;
use nestwork_docs::ledger::{Account, NoProposals};
use nestwork_docs::{RecordBody, SignedDoc, Writer};
use nestwork_fuzz::{fixture, founder, member, Fixture, T0};
use nestwork_net::protocol::{Request, Response};
use nestwork_net::Ticket;

fn write(dir: &Path, target: &str, name: &str, mode: Option<u8>, bytes: &[u8]) {
    let dir = dir.join(target);
    std::fs::create_dir_all(&dir).expect("make the corpus directory");
    let mut out = mode.map(|m| vec![m]).unwrap_or_default();
    out.extend_from_slice(bytes);
    std::fs::write(dir.join(name), out).expect("write a seed");
}

fn framed(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

/// The fixture's four changes, in causal order.
struct Changes {
    genesis: SignedChange,
    admit: SignedChange,
    described: SignedChange,
    member_said: SignedChange,
}

fn main() {
    let dir: PathBuf = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus"));
    let f = fixture();
    let group = f.group();
    let [genesis, admit, described, member_said] = <[SignedChange; 4]>::try_from(f.changes.clone())
        .unwrap_or_else(|_| panic!("the fixture has four changes"));
    let c = Changes {
        genesis,
        admit,
        described,
        member_said,
    };
    let ticket = Ticket::issue(
        &founder(),
        f.group(),
        "Riverside",
        vec![
            "/ip4/192.0.2.1/tcp/4001".into(),
            "/ip4/192.0.2.1/udp/4001/quic-v1".into(),
        ],
        T0 + 86_400_000,
    );
    sync_frame(&dir, f, &c, &ticket);
    gossip_open(&dir, f, &c);

    // ticket: text as pasted.
    write(&dir, "ticket", "ticket", None, ticket.to_text().as_bytes());
    let expired = Ticket::issue(&founder(), group, "Riverside", vec![], T0 - 1);
    write(
        &dir,
        "ticket",
        "expired",
        None,
        format!("  {}\n", expired.to_text()).as_bytes(),
    );

    change_apply(&dir, &c);
    bundle_import(&dir, f, &c);
    record_decode(&dir, f);
    let _ = f.genesis_only.heads();
    println!("seeds written under {}", dir.display());
}

/// sync_frame: mode bit 0 request/response, bit 1 body only.
fn sync_frame(dir: &Path, f: &Fixture, c: &Changes, ticket: &Ticket) {
    let group = f.group();
    let requests = [
        (
            "sync",
            Request::Sync {
                doc: group.doc(),
                heads: vec![Hash32(c.genesis.hash.0)],
                changes: vec![c.admit.clone(), c.described.clone()],
                more: false,
            },
        ),
        (
            "sync-empty",
            Request::Sync {
                doc: f.group().doc(),
                heads: vec![],
                changes: vec![],
                more: false,
            },
        ),
        (
            "join",
            Request::Join {
                ticket: ticket.clone(),
            },
        ),
    ];
    for (name, req) in &requests {
        write_frame(dir, &format!("req-{name}"), 0, &encoding::encode(req));
    }
    let responses = [
        (
            "sync",
            Response::Sync {
                heads: vec![c.member_said.hash],
                changes: vec![c.described.clone(), c.member_said.clone()],
                more: true,
            },
        ),
        (
            "joined",
            Response::Joined {
                changes: f.changes.clone(),
            },
        ),
        (
            "refused",
            Response::Refused {
                reason: "unknown document".into(),
            },
        ),
    ];
    for (name, res) in &responses {
        write_frame(dir, &format!("res-{name}"), 1, &encoding::encode(res));
    }
}

/// A sync_frame seed twice: framed as on the wire (mode `mode`), and the
/// body alone (mode bit 1 set, file name ending `-body`).
fn write_frame(dir: &Path, name: &str, mode: u8, body: &[u8]) {
    write(dir, "sync_frame", name, Some(mode), &framed(body));
    write(
        dir,
        "sync_frame",
        &format!("{name}-body"),
        Some(mode | 2),
        body,
    );
}

/// gossip_open: mode even sealed, odd plaintext.
fn gossip_open(dir: &Path, f: &Fixture, c: &Changes) {
    let seal = f.seal();
    for (name, batch) in [
        ("one", vec![c.described.clone()]),
        ("two", vec![c.described.clone(), c.member_said.clone()]),
    ] {
        let plain = encoding::encode(&batch);
        write(
            dir,
            "gossip_open",
            &format!("sealed-{name}"),
            Some(0),
            // Sealed at the fuzz target's clock, so its seal time passes.
            &seal.seal(&plain, 1_800_000_000_000),
        );
        write(
            dir,
            "gossip_open",
            &format!("plain-{name}"),
            Some(1),
            &plain,
        );
    }
}

/// change_apply: 0 one envelope, 1 a batch, 2 raw Automerge bytes.
fn change_apply(dir: &Path, c: &Changes) {
    for (name, change) in [
        ("genesis", &c.genesis),
        ("admission", &c.admit),
        ("founder-description", &c.described),
        ("member-description", &c.member_said),
    ] {
        write(
            dir,
            "change_apply",
            &format!("one-{name}"),
            Some(0),
            &change.encode(),
        );
        write(
            dir,
            "change_apply",
            &format!("raw-{name}"),
            Some(2),
            &change.change,
        );
    }
    write(
        dir,
        "change_apply",
        "batch",
        Some(1),
        &encoding::encode(&vec![c.member_said.clone(), c.described.clone()]),
    );
}

/// bundle_import: a file as `group export` writes it, with and without a
/// ledger period.
fn bundle_import(dir: &Path, f: &Fixture, c: &Changes) {
    let group = f.group().hash32();
    write(
        dir,
        "bundle_import",
        "group",
        None,
        &ChangeBundle::of_group(group, f.changes.clone()).encode(),
    );
    write(
        dir,
        "bundle_import",
        "genesis-only",
        None,
        &ChangeBundle::of_group(group, vec![c.genesis.clone()]).encode(),
    );
    let (period, paid) = founder_pays_member(f);
    write(
        dir,
        "bundle_import",
        "group-with-ledger",
        None,
        &ChangeBundle {
            doc: group,
            changes: f.changes.clone(),
            periods: vec![PeriodChanges {
                period,
                doc: ledger_period_id(&group, period),
                changes: vec![paid],
            }],
        }
        .encode(),
    );
}

/// A ledger period in which the founder pays the member: its number and
/// the payment's change.
fn founder_pays_member(f: &Fixture) -> (u64, SignedChange) {
    let mut gate = nestwork_fuzz::LedgerGate::of_group(&f.admitted).expect("genesis");
    let members = gate.group.members().clone();
    let mut heads = gate.group.heads();
    heads.sort_unstable();
    let payment = gate
        .ledger
        .prepare(
            &founder().id(),
            Account::Member(founder().id()),
            Account::Member(member().id()),
            3,
            "soup",
            None,
            T0 + 4_000,
            heads,
            &|m: &MemberId| members.contains(m),
            &NoProposals,
        )
        .expect("a payment within the rules");
    let period = payment.period;
    let founder_w = Writer::new(founder(), [1; 8]);
    let mut period_doc = SignedDoc::ledger_period(f.group().hash32(), period).expect("period");
    period_doc.set_writer(&founder_w);
    let (_, paid) = period_doc
        .add_record(
            &founder_w,
            RecordBody::Payment(payment),
            &mut gate,
            T0 + 4_000,
        )
        .expect("the founder pays");
    (period, paid)
}

/// record_decode: bit 0 clear a signed record, set a body alone; bit 1
/// as if in a document's first change.
fn record_decode(dir: &Path, f: &Fixture) {
    for (i, record) in f.admitted.records().values().enumerate() {
        let genesis_bit = match RecordBody::decode(&record.body) {
            Ok(RecordBody::GroupGenesis(_)) => 2,
            _ => 0,
        };
        write(
            dir,
            "record_decode",
            &format!("record-{i}"),
            Some(genesis_bit),
            &record.encode(),
        );
        write(
            dir,
            "record_decode",
            &format!("body-{i}"),
            Some(1 | genesis_bit),
            &record.body,
        );
    }
}
