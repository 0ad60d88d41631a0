//! Seal keys: the keys a group's gossip is sealed with, one per membership
//! epoch.
//!
//! Gossipsub has no access list, so a group's gossip is sealed. The first
//! key derives from the group's genesis record, which everyone ever on the
//! roll holds. Once someone has left or been removed, a new key is made by
//! a remaining member and written into the group document as a
//! [`SealKey`] record: the key sealed to each member on the roll
//! ([`nestwork_core::keybox`]), so a former member, who gets no box and no
//! longer syncs the group, cannot open what is said after. A member
//! admitted later gets the key in another record with the same key id and
//! a box for them.
//!
//! Which key to seal with is a function of the group document alone (see
//! [`keyring`]): a key's *holders* are the authors and recipients of every
//! record that carries it; a key is usable while all its holders are on the
//! roll (the genesis key, which everyone who got the founding change holds,
//! while nobody has left or been removed and no newcomer awaits an entry
//! vote); the usable key with the most holders
//! is the current one, the lowest key id among equals. A change is sealed
//! with the key current at its causal past, so the change that removes a
//! member still reaches them (they learn of their removal) and none after. Two members who make a key at the same time
//! therefore agree, once they hold each other's record, on which one to
//! use. Every key a member ever held stays in its keyring, so gossip sealed
//! with an older key (from a node that has not caught up) still opens.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use nestwork_core::keybox::{self, KEY_BOX_BYTES};
use nestwork_core::{GroupId, Hash32, MemberId, MemberKey};

use crate::error::RuleError;
pub use crate::record::seal::{KeyBox, SealKey};

/// Most boxes in one record (a larger roll takes several records with the
/// same key id; each record stays well under the record size limit).
pub const MAX_KEY_BOXES: usize = 400;

/// The id of `key` in `group`.
pub fn key_id(group: &GroupId, key: &[u8; 32]) -> Hash32 {
    Hash32::of_parts(&[b"nestwork/seal-key-id/v1", group.as_bytes(), key])
}

/// The first key of a group: derived from its genesis record (encoded),
/// which every member, and every invitee while they join, is sent.
pub fn genesis_key(group: &GroupId, genesis: &[u8]) -> [u8; 32] {
    Hash32::of_parts(&[b"nestwork/group-seal/v1", group.as_bytes(), genesis]).0
}

/// What a box is bound to: its group and its key's id.
fn context(group: &GroupId, key_id: &Hash32) -> Vec<u8> {
    [&group.as_bytes()[..], &key_id.0[..]].concat()
}

/// Check a seal key record's shape: 1 to [`MAX_KEY_BOXES`] boxes, in
/// strictly ascending member order, each of the right size, to a valid
/// key, with a valid one-time key.
pub fn check_record(k: &SealKey) -> Result<(), RuleError> {
    if k.boxes.is_empty() || k.boxes.len() > MAX_KEY_BOXES {
        return Err(RuleError(format!(
            "a seal key record holds 1 to {MAX_KEY_BOXES} boxes, this one {}",
            k.boxes.len()
        )));
    }
    for pair in k.boxes.windows(2) {
        if pair[0].member >= pair[1].member {
            return Err(RuleError(
                "a seal key record's boxes must be in ascending member order, one per member"
                    .into(),
            ));
        }
    }
    for b in &k.boxes {
        if b.member.verifying_key().is_err() {
            return Err(RuleError(format!(
                "a seal key box for {}, which is not a valid key",
                b.member
            )));
        }
        keybox::check(&b.sealed)
            .map_err(|e| RuleError(format!("the seal key box for {}: {e}", b.member)))?;
    }
    Ok(())
}

/// Seal `key` to each of `to` (one record per [`MAX_KEY_BOXES`] members).
pub fn seal_to(group: &GroupId, key: &[u8; 32], to: &BTreeSet<MemberId>) -> Vec<SealKey> {
    let id = key_id(group, key);
    let ctx = context(group, &id);
    let boxes: Vec<KeyBox> = to
        .iter()
        .filter_map(|m| {
            let sealed = keybox::seal(m, &ctx, key).ok()?;
            debug_assert_eq!(sealed.len(), KEY_BOX_BYTES);
            Some(KeyBox {
                member: *m,
                sealed: sealed.to_vec(),
            })
        })
        .collect();
    boxes
        .chunks(MAX_KEY_BOXES)
        .map(|c| SealKey {
            key_id: id,
            boxes: c.to_vec(),
        })
        .collect()
}

/// A group's keys as one member sees them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Keyring {
    /// Every key this member holds, by id.
    pub keys: BTreeMap<Hash32, [u8; 32]>,
    /// The key to seal with now, if this member holds it: `None` when no
    /// key is held by members only (someone left and no new key is known
    /// yet); gossip then waits and changes go by sync.
    pub current: Option<Hash32>,
    /// What the group lacks, if anything.
    pub need: Option<Need>,
}

/// A key record the group lacks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Need {
    /// Every key is held by someone off the roll: a new key for the roll.
    NewKey {
        /// The roll.
        to: BTreeSet<MemberId>,
        /// Who writes it first (the lowest member id on the roll); the
        /// others wait a moment before writing it themselves.
        first: MemberId,
    },
    /// The current key lacks members (admitted since it was made).
    Reissue {
        /// The key.
        key_id: Hash32,
        /// The members who lack it.
        to: BTreeSet<MemberId>,
        /// Who writes it first (the lowest member id among its holders).
        first: MemberId,
    },
}

impl Need {
    /// Who should write it first.
    pub fn first(&self) -> MemberId {
        match self {
            Need::NewKey { first, .. } | Need::Reissue { first, .. } => *first,
        }
    }
}

/// The keyring of `me` in `group`, from the group's genesis bytes, a roll
/// (`members`, and `outside`: everyone else who holds the founding change:
/// those who left or were removed, and newcomers awaiting an entry vote)
/// and the
/// group's seal key records (id, author, body). Boxes already
/// tried are remembered in `opened` (by record id), so each is opened
/// once.
pub fn keyring<'a>(
    group: &GroupId,
    genesis: &[u8],
    members: &BTreeSet<MemberId>,
    outside: &BTreeSet<MemberId>,
    records: impl Iterator<Item = (&'a Hash32, &'a MemberId, &'a SealKey)>,
    me: &MemberKey,
    opened: &mut HashMap<Hash32, Option<[u8; 32]>>,
) -> Keyring {
    let mine = me.id();
    let first_key = genesis_key(group, genesis);
    let first_id = key_id(group, &first_key);
    let mut keys = BTreeMap::from([(first_id, first_key)]);
    let mut holders: BTreeMap<Hash32, BTreeSet<MemberId>> = BTreeMap::new();
    // Everyone who holds the founding change holds the genesis key: those
    // on the roll, and those who left, were removed, or await an entry
    // vote. Usable while all of them are on the roll.
    if outside.is_empty() {
        holders.insert(first_id, members.clone());
    }
    for (id, author, k) in records {
        if k.key_id == first_id {
            // Nobody needs the genesis key sealed; such a record only says
            // who holds it, which everyone on the roll does.
            continue;
        }
        let h = holders.entry(k.key_id).or_default();
        h.insert(*author);
        h.extend(k.boxes.iter().map(|b| b.member));
        let key = opened.entry(*id).or_insert_with(|| {
            let b = k.boxes.iter().find(|b| b.member == mine)?;
            let key = keybox::open(me, &context(group, &k.key_id), &b.sealed).ok()?;
            (key_id(group, &key) == k.key_id).then_some(key)
        });
        if let Some(key) = key {
            keys.insert(k.key_id, *key);
        }
    }
    // The usable key with most holders; the lowest id among equals.
    let chosen = holders
        .iter()
        .filter(|(_, h)| h.is_subset(members))
        .max_by(|(a, ha), (b, hb)| ha.len().cmp(&hb.len()).then(b.cmp(a)))
        .map(|(id, h)| (*id, h));
    let need = match chosen {
        None => members.first().map(|first| Need::NewKey {
            to: members.clone(),
            first: *first,
        }),
        Some((id, h)) => {
            let missing: BTreeSet<MemberId> = members.difference(h).copied().collect();
            match (missing.is_empty(), h.first()) {
                (false, Some(first)) => Some(Need::Reissue {
                    key_id: id,
                    to: missing,
                    first: *first,
                }),
                _ => None,
            }
        }
    };
    Keyring {
        current: chosen.map(|(id, _)| id).filter(|id| keys.contains_key(id)),
        keys,
        need,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(seed: u8) -> MemberKey {
        MemberKey::from_secret([seed; 32])
    }

    fn roll(seeds: &[u8]) -> BTreeSet<MemberId> {
        seeds.iter().map(|s| member(*s).id()).collect()
    }

    /// `me`'s keyring; `ever`: everyone who got the founding change.
    fn ring(
        me: u8,
        members: &[u8],
        ever: &[u8],
        records: &[(Hash32, MemberId, SealKey)],
    ) -> Keyring {
        let former: BTreeSet<MemberId> = roll(ever).difference(&roll(members)).copied().collect();
        keyring(
            &GroupId::from(Hash32::of(b"g")),
            b"genesis",
            &roll(members),
            &former,
            records.iter().map(|(i, a, k)| (i, a, k)),
            &member(me),
            &mut HashMap::new(),
        )
    }

    #[test]
    fn the_genesis_key_serves_until_someone_leaves() {
        let r = ring(1, &[1, 2, 3], &[1, 2, 3], &[]);
        let g = GroupId::from(Hash32::of(b"g"));
        let first = key_id(&g, &genesis_key(&g, b"genesis"));
        assert_eq!(r.current, Some(first));
        assert_eq!(r.need, None);
        // 3 left: nobody may seal with a key 3 holds.
        let r = ring(1, &[1, 2], &[1, 2, 3], &[]);
        assert_eq!(r.current, None);
        assert_eq!(
            r.need,
            Some(Need::NewKey {
                to: roll(&[1, 2]),
                first: *roll(&[1, 2]).first().expect("one"),
            })
        );
    }

    #[test]
    fn a_new_key_opens_for_the_members_it_is_sealed_to_and_not_the_one_who_left() {
        let g = GroupId::from(Hash32::of(b"g"));
        let key = [42u8; 32];
        let recs: Vec<(Hash32, MemberId, SealKey)> = seal_to(&g, &key, &roll(&[1, 2]))
            .into_iter()
            .map(|k| (Hash32::of(b"rec"), member(1).id(), k))
            .collect();
        assert!(check_record(&recs[0].2).is_ok());
        for me in [1, 2] {
            let r = ring(me, &[1, 2], &[1, 2, 3], &recs);
            assert_eq!(r.current, Some(key_id(&g, &key)));
            assert_eq!(r.keys.get(&key_id(&g, &key)), Some(&key));
            assert_eq!(r.need, None);
        }
        let out = ring(3, &[1, 2], &[1, 2, 3], &recs);
        assert!(!out.keys.contains_key(&key_id(&g, &key)));
        assert_eq!(out.keys.len(), 1, "the genesis key only");
        // A newcomer lacks it until it is sealed to them too.
        let r = ring(1, &[1, 2, 4], &[1, 2, 3, 4], &recs);
        assert_eq!(r.current, Some(key_id(&g, &key)));
        match r.need {
            Some(Need::Reissue { key_id: k, to, .. }) => {
                assert_eq!(k, key_id(&g, &key));
                assert_eq!(to, roll(&[4]));
            }
            other => panic!("expected a reissue, got {other:?}"),
        }
    }

    #[test]
    fn a_newcomer_awaiting_an_entry_vote_takes_no_key_made_after() {
        let g = GroupId::from(Hash32::of(b"g"));
        // 4 was admitted by ticket and awaits the entry vote: it holds the
        // founding change, so the genesis key no longer serves.
        let r = ring(1, &[1, 2, 3], &[1, 2, 3, 4], &[]);
        assert_eq!(r.current, None);
        assert_eq!(
            r.need,
            Some(Need::NewKey {
                to: roll(&[1, 2, 3]),
                first: *roll(&[1, 2, 3]).first().expect("one"),
            })
        );
        // The new key is sealed to the roll; the newcomer opens none of it.
        let key = [7u8; 32];
        let recs: Vec<(Hash32, MemberId, SealKey)> = seal_to(&g, &key, &roll(&[1, 2, 3]))
            .into_iter()
            .map(|k| (Hash32::of(b"rec"), member(1).id(), k))
            .collect();
        let r = ring(2, &[1, 2, 3], &[1, 2, 3, 4], &recs);
        assert_eq!(r.current, Some(key_id(&g, &key)));
        let newcomer = ring(4, &[1, 2, 3], &[1, 2, 3, 4], &recs);
        assert!(!newcomer.keys.contains_key(&key_id(&g, &key)));
        assert_eq!(newcomer.current, None);
        // Voted in, it is on the roll: a key it can open serves again.
        let admitted = ring(4, &[1, 2, 3, 4], &[1, 2, 3, 4], &recs);
        let current = admitted.current.expect("a current key");
        assert!(admitted.keys.contains_key(&current));
    }

    #[test]
    fn concurrent_new_keys_resolve_alike_on_every_node() {
        let g = GroupId::from(Hash32::of(b"g"));
        let (k1, k2) = ([1u8; 32], [2u8; 32]);
        let mut recs: Vec<(Hash32, MemberId, SealKey)> = Vec::new();
        for (i, k) in [k1, k2].iter().enumerate() {
            for r in seal_to(&g, k, &roll(&[1, 2])) {
                recs.push((Hash32::of(&[i as u8]), member(i as u8 + 1).id(), r));
            }
        }
        let a = ring(1, &[1, 2], &[1, 2, 3], &recs);
        recs.reverse();
        let b = ring(2, &[1, 2], &[1, 2, 3], &recs);
        assert_eq!(a.current, b.current);
        assert_eq!(a.current, Some(key_id(&g, &k1).min(key_id(&g, &k2))));
    }

    #[test]
    fn a_key_sealed_to_someone_off_the_roll_is_not_used() {
        let g = GroupId::from(Hash32::of(b"g"));
        let recs: Vec<(Hash32, MemberId, SealKey)> = seal_to(&g, &[5; 32], &roll(&[1, 2, 3]))
            .into_iter()
            .map(|k| (Hash32::of(b"rec"), member(1).id(), k))
            .collect();
        let r = ring(1, &[1, 2], &[1, 2, 3], &recs);
        assert_eq!(r.current, None);
        assert!(matches!(r.need, Some(Need::NewKey { .. })));
    }

    #[test]
    fn a_box_whose_key_does_not_match_its_id_gives_nothing() {
        let g = GroupId::from(Hash32::of(b"g"));
        let mut k = seal_to(&g, &[5; 32], &roll(&[1, 2])).remove(0);
        k.key_id = Hash32::of(b"another id");
        let r = ring(
            1,
            &[1, 2],
            &[1, 2, 3],
            &[(Hash32::of(b"r"), member(2).id(), k)],
        );
        assert_eq!(r.keys.len(), 1);
        assert_eq!(r.current, None);
    }

    #[test]
    fn malformed_records_are_refused_with_a_reason() {
        let g = GroupId::from(Hash32::of(b"g"));
        let good = seal_to(&g, &[5; 32], &roll(&[1, 2, 3])).remove(0);
        let mut empty = good.clone();
        empty.boxes.clear();
        assert!(check_record(&empty).is_err());
        let mut unordered = good.clone();
        unordered.boxes.reverse();
        assert!(check_record(&unordered).is_err());
        let mut twice = good.clone();
        twice.boxes[1] = twice.boxes[0].clone();
        assert!(check_record(&twice).is_err());
        let mut short = good.clone();
        short.boxes[0].sealed.truncate(10);
        let e = check_record(&short).expect_err("short");
        assert!(e.0.contains("bytes"), "{e}");
        let mut many = good.clone();
        many.boxes = (0..=MAX_KEY_BOXES).map(|_| good.boxes[0].clone()).collect();
        assert!(check_record(&many).is_err());
    }
}
