//! What members see: pure functions from a document to plain data. Two
//! nodes holding the same changes produce identical views.

use nestwork_core::{Hash32, MemberId};
use serde::{Deserialize, Serialize};

use crate::engine::SignedDoc;
use crate::record::{Article, GroupKind, Rules};

/// A group as shown by `group show` and `group list`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupView {
    /// The group id (hash of its genesis record).
    pub id: Hash32,
    /// Its name.
    pub name: String,
    /// Hub, region, ...
    pub kind: GroupKind,
    /// The parent tier, if any.
    pub parent: Option<Hash32>,
    /// Who founded it.
    pub creator: MemberId,
    /// When, by the creator's clock (ms since the Unix epoch).
    pub created_at_ms: u64,
    /// The member roll, sorted.
    pub members: Vec<MemberId>,
    /// The free-form description.
    pub description: String,
    /// The document's heads, sorted.
    pub heads: Vec<Hash32>,
    /// How many changes the document holds.
    pub changes: usize,
}

/// A charter as shown by `charter show`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CharterView {
    /// The group the charter belongs to.
    pub group: Hash32,
    /// The group's name.
    pub group_name: String,
    /// Articles, numbered from 1.
    pub articles: Vec<NumberedArticle>,
    /// The decision rules.
    pub rules: Rules,
    /// The member roll, sorted.
    pub members: Vec<MemberId>,
}

/// An article with its number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NumberedArticle {
    /// 1-based position.
    pub number: usize,
    /// Title.
    pub title: String,
    /// Ratified text.
    pub text: String,
}

impl GroupView {
    /// The view of a group document; `None` until its genesis has arrived.
    pub fn of(doc: &SignedDoc) -> Option<GroupView> {
        let (record, genesis) = doc.genesis()?;
        let mut heads = doc.heads();
        heads.sort();
        Some(GroupView {
            id: doc.id(),
            name: genesis.name,
            kind: genesis.kind,
            parent: genesis.parent,
            creator: record.author,
            created_at_ms: genesis.created_at_ms,
            members: doc.members().iter().copied().collect(),
            description: doc.description(),
            heads,
            changes: doc.change_count(),
        })
    }
}

impl CharterView {
    /// The charter of a group document; `None` until its genesis has arrived.
    pub fn of(doc: &SignedDoc) -> Option<CharterView> {
        let (_, genesis) = doc.genesis()?;
        Some(CharterView {
            group: doc.id(),
            group_name: genesis.name,
            articles: number(genesis.charter.articles),
            rules: genesis.charter.rules,
            members: doc.members().iter().copied().collect(),
        })
    }
}

fn number(articles: Vec<Article>) -> Vec<NumberedArticle> {
    articles
        .into_iter()
        .enumerate()
        .map(|(i, a)| NumberedArticle {
            number: i + 1,
            title: a.title,
            text: a.text,
        })
        .collect()
}
