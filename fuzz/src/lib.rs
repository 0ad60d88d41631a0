//! Fixtures shared by the fuzz targets and the seed writer
//! (`examples/seeds.rs`): a small group made the same way every time, with
//! fixed keys, so that seeds written once keep meaning something to the
//! targets (a mutated change of the member below still carries the
//! member's actor, and the target signs it with the member's key).

use std::sync::{Arc, OnceLock};

use nestwork_core::{GroupId, Hash32, MemberId, MemberKey, SignedChange};
use nestwork_docs::engine::{RecordGate, Roll};
use nestwork_docs::ledger::{Ledger, NoProposals, Refusal};
use nestwork_docs::record::Admission;
use nestwork_docs::{Charter, GroupGenesis, GroupKind, NoLedger, RecordBody, SignedDoc, Writer};
use nestwork_net::topic::GroupSeal;

/// The fixtures' clock: every change is made at or just after this time.
pub const T0: u64 = 1_700_000_000_000;

/// The group's founder.
pub fn founder() -> MemberKey {
    MemberKey::from_secret([1; 32])
}

/// A member the founder admitted.
pub fn member() -> MemberKey {
    MemberKey::from_secret([2; 32])
}

/// The key of `id`, if it is one of the fixtures' members.
pub fn key_of(id: &MemberId) -> Option<MemberKey> {
    [founder(), member()].into_iter().find(|k| k.id() == *id)
}

/// The fixtures' group: its document after each step, and every change.
pub struct Fixture {
    /// The group document with only its genesis applied.
    pub genesis_only: SignedDoc,
    /// The group document with the member admitted: what the change
    /// target applies to.
    pub admitted: SignedDoc,
    /// Every change, in causal order: genesis, admission, the founder's
    /// description, the member's description.
    pub changes: Vec<SignedChange>,
    /// The encoded genesis record (what the gossip seal is derived from).
    pub genesis_record: Vec<u8>,
}

impl Fixture {
    /// The group id.
    pub fn group(&self) -> GroupId {
        self.admitted.group()
    }

    /// The group's gossip seal.
    pub fn seal(&self) -> GroupSeal {
        GroupSeal::new(&self.group(), &self.genesis_record)
    }
}

/// The fixture, built once per process.
pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(build)
}

fn build() -> Fixture {
    let founder_w = Writer::new(founder(), [1; 8]);
    let member_w = Writer::new(member(), [2; 8]);
    let genesis = GroupGenesis {
        name: "Riverside".into(),
        kind: GroupKind::Hub,
        parent: None,
        unit: "hours".into(),
        created_at_ms: T0,
        nonce: [7; 16],
        charter: Charter::default(),
    };
    let (mut doc, first) =
        SignedDoc::create_group(&founder_w, genesis, T0).expect("the fixture group is valid");
    let genesis_only = doc.clone();
    let group = doc.group();
    let genesis_record = doc
        .genesis()
        .map(|(r, _)| r.encode())
        .expect("the group has its genesis");
    let admission = Admission::self_issued(
        &founder(),
        &group,
        member().id(),
        Hash32::of(b"fuzz ticket"),
        T0 + 1_000,
    );
    let (_, admit) = doc
        .add_record(
            &founder_w,
            RecordBody::Admission(admission),
            &mut NoLedger,
            T0 + 1_000,
        )
        .expect("the founder admits the member");
    let admitted = doc.clone();
    let described = doc
        .set_description(&founder_w, "Neighbours sharing tools and time.", T0 + 2_000)
        .expect("the founder describes the group")
        .expect("the description changed");
    doc.set_writer(&member_w);
    let member_said = doc
        .set_description(
            &member_w,
            "Neighbours sharing tools, time and soup.",
            T0 + 3_000,
        )
        .expect("the member edits the description")
        .expect("the description changed");
    Fixture {
        genesis_only,
        admitted,
        changes: vec![first, admit, described, member_said],
        genesis_record,
    }
}

/// Let panics inside Automerge's change decoder pass quietly: the engine
/// runs that decoder under `catch_unwind` and rejects the change (Automerge
/// 0.12 panics on some malformed changes, e.g. an operation counter over
/// `u32::MAX`), which is what a node does too. libFuzzer's hook would abort
/// on the panic even though it is caught. Every other panic is still
/// printed, and one that escapes the target still aborts it (libfuzzer-sys
/// catches it and aborts), so a panic the node does not catch is still a
/// crash. `NESTWORK_FUZZ_SHOW_PANICS=1` prints the quiet ones too.
pub fn quiet_caught_decoder_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let show_all = std::env::var_os("NESTWORK_FUZZ_SHOW_PANICS").is_some();
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_automerge = info
                .location()
                .is_some_and(|l| l.file().contains("/automerge-"));
            if show_all || !in_automerge {
                default_hook(info);
            }
        }));
    });
}

/// A group's ledger as the gate of its period documents, as the node's
/// (without governance: no proposal has passed).
pub struct LedgerGate {
    /// The ledger.
    pub ledger: Ledger,
    /// The group's document, whose roll at the group heads a ledger record
    /// cites judges it.
    pub group: SignedDoc,
}

impl LedgerGate {
    /// The empty ledger of a group document with its genesis.
    pub fn of_group(doc: &SignedDoc) -> Option<LedgerGate> {
        let (record, genesis) = doc.genesis()?;
        Some(LedgerGate {
            ledger: Ledger::of_genesis(record.author, &genesis),
            group: doc.clone(),
        })
    }
}

impl RecordGate for LedgerGate {
    fn roll_at(&self, heads: &[Hash32]) -> Result<Arc<Roll>, Refusal> {
        self.group.roll_at_heads(heads).map_err(Refusal::Missing)
    }

    fn admit(&mut self, author: &MemberId, id: Hash32, body: &RecordBody) -> Result<(), Refusal> {
        self.ledger.admit(author, id, body, &NoProposals)
    }
}
