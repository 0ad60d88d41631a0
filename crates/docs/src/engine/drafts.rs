//! Drafts of proposals, edited together before submission. A draft lives
//! in the free area as a map `draft:<id>` holding its kind, its fixed
//! arguments and an Automerge text, so concurrent edits by several members
//! merge. Submitting copies the text into a signed proposal, whose content
//! is frozen from then on; the draft is marked with the proposal's id.

use automerge::transaction::Transactable;
use automerge::{ObjId, ObjType, ReadDoc, ScalarValue, Value};
use serde::{Deserialize, Serialize};

use super::SignedDoc;
use crate::request::ProposeRequest;
use crate::rules::{RuleError, MAX_ARTICLE_TEXT_CHARS};
use crate::{Error, Writer};

const PREFIX: &str = "draft:";

/// A draft as members see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Draft {
    /// Its id.
    pub id: String,
    /// The proposal kind it will become.
    pub kind: String,
    /// The kind's arguments before the text.
    pub args: Vec<String>,
    /// The text, as edited so far.
    pub text: String,
    /// The proposal it became, once submitted.
    pub submitted: Option<String>,
}

// A draft stores its proposal as words (kind, fixed arguments, text), as
// synced documents have always held it; these two functions are the one
// place those words and the typed request meet.

impl Draft {
    /// The proposal this draft becomes when submitted, its text as it
    /// stands.
    pub fn request(&self) -> Result<ProposeRequest, RuleError> {
        let text = self.text.clone();
        let unfit = || {
            RuleError(format!(
                "draft {} holds a {} proposal whose fixed words {:?} do not fit it",
                self.id, self.kind, self.args
            ))
        };
        Ok(match (self.kind.as_str(), self.args.as_slice()) {
            ("add-article", []) => ProposeRequest::AddArticle { title: None, text },
            ("add-article", [title]) => ProposeRequest::AddArticle {
                title: Some(title.clone()),
                text,
            },
            ("amend-article", [n]) => ProposeRequest::AmendArticle {
                article: n.parse().map_err(|_| unfit())?,
                text,
            },
            ("ratify-treaty", []) => ProposeRequest::RatifyTreaty { treaty: text },
            ("ratify-treaty", [group, kind, duration]) => ProposeRequest::NewTreaty {
                group: group.clone(),
                treaty_kind: kind.parse().map_err(RuleError)?,
                duration_secs: humantime::parse_duration(duration)
                    .map_err(|_| unfit())?
                    .as_secs(),
                terms: text,
            },
            _ => return Err(unfit()),
        })
    }
}

impl ProposeRequest {
    /// The words a draft of this request stores: its kind, the fixed
    /// arguments, and the text members edit together. `None` for kinds
    /// without a text to draft.
    pub fn draft_words(&self) -> Option<(&'static str, Vec<String>, String)> {
        match self {
            ProposeRequest::AddArticle { title, text } => {
                Some(("add-article", title.iter().cloned().collect(), text.clone()))
            }
            ProposeRequest::AmendArticle { article, text } => {
                Some(("amend-article", vec![article.to_string()], text.clone()))
            }
            ProposeRequest::NewTreaty {
                group,
                treaty_kind,
                duration_secs,
                terms,
            } => Some((
                "ratify-treaty",
                vec![
                    group.clone(),
                    treaty_kind.as_str().to_string(),
                    humantime::format_duration(std::time::Duration::from_secs(*duration_secs))
                        .to_string(),
                ],
                terms.clone(),
            )),
            _ => None,
        }
    }
}

fn check_text(text: &str) -> Result<(), Error> {
    let n = text.chars().count();
    if n > MAX_ARTICLE_TEXT_CHARS {
        return Err(RuleError(format!(
            "the draft is {n} characters; the limit is {MAX_ARTICLE_TEXT_CHARS}"
        ))
        .into());
    }
    Ok(())
}

impl SignedDoc {
    fn member_writes(&self, writer: &Writer) -> Result<ObjId, Error> {
        if !self.members.contains(&writer.id()) {
            return Err(RuleError(format!("{} is not a member of this group", writer.id())).into());
        }
        self.free_exid()
            .ok_or_else(|| Error::Malformed(self.id.to_hex(), "no free area".into()))
    }

    /// Start a draft with id `id` (random, chosen by the caller).
    pub fn create_draft(
        &mut self,
        writer: &Writer,
        id: &str,
        kind: &str,
        args: &[String],
        text: &str,
        now_ms: u64,
    ) -> Result<Option<nestwork_core::SignedChange>, Error> {
        let free = self.member_writes(writer)?;
        check_text(text)?;
        let args = join_args(args);
        let key = format!("{PREFIX}{id}");
        self.local_change(writer, now_ms, |tx| {
            let d = tx.put_object(&free, key, ObjType::Map)?;
            tx.put(&d, "kind", kind)?;
            tx.put(&d, "args", args)?;
            let t = tx.put_object(&d, "text", ObjType::Text)?;
            tx.update_text(&t, text)?;
            Ok(())
        })
    }

    /// Replace a draft's text (merged with others' concurrent edits).
    pub fn edit_draft(
        &mut self,
        writer: &Writer,
        id: &str,
        text: &str,
        now_ms: u64,
    ) -> Result<Option<nestwork_core::SignedChange>, Error> {
        self.member_writes(writer)?;
        check_text(text)?;
        let (map, draft) = self.draft_obj(id)?;
        if draft.submitted.is_some() {
            return Err(
                RuleError("this draft was submitted; its proposal is frozen".into()).into(),
            );
        }
        let text_obj = match self.doc.get(&map, "text")? {
            Some((Value::Object(ObjType::Text), t)) => t,
            _ => {
                return Err(Error::Malformed(
                    self.id.to_hex(),
                    "draft without text".into(),
                ))
            }
        };
        self.local_change(writer, now_ms, |tx| tx.update_text(&text_obj, text))
    }

    /// Mark a draft as submitted as proposal `proposal`.
    pub fn mark_draft_submitted(
        &mut self,
        writer: &Writer,
        id: &str,
        proposal: &str,
        now_ms: u64,
    ) -> Result<Option<nestwork_core::SignedChange>, Error> {
        self.member_writes(writer)?;
        let (map, _) = self.draft_obj(id)?;
        self.local_change(writer, now_ms, |tx| tx.put(&map, "submitted", proposal))
    }

    /// Every draft, by id.
    pub fn drafts(&self) -> Vec<Draft> {
        let Some(free) = self.free_exid() else {
            return Vec::new();
        };
        let ids: Vec<String> = self
            .doc
            .map_range(&free, ..)
            .filter_map(|item| item.key.strip_prefix(PREFIX).map(str::to_string))
            .collect();
        ids.iter()
            .filter_map(|id| self.draft_obj(id).ok().map(|(_, d)| d))
            .collect()
    }

    /// A draft's object and contents.
    fn draft_obj(&self, id: &str) -> Result<(ObjId, Draft), Error> {
        let malformed = |why: &str| Error::Malformed(self.id.to_hex(), why.to_string());
        let free = self.free_exid().ok_or_else(|| malformed("no free area"))?;
        let map = match self.doc.get(&free, format!("{PREFIX}{id}"))? {
            Some((Value::Object(ObjType::Map), m)) => m,
            _ => return Err(RuleError(format!("no draft {id:?} in this group")).into()),
        };
        let string = |key: &str| -> Option<String> {
            match self.doc.get(&map, key).ok()?? {
                (Value::Scalar(s), _) => match s.as_ref() {
                    ScalarValue::Str(s) => Some(s.to_string()),
                    _ => None,
                },
                _ => None,
            }
        };
        let text = match self.doc.get(&map, "text")? {
            Some((Value::Object(ObjType::Text), t)) => self.doc.text(&t)?,
            _ => return Err(malformed("draft without text")),
        };
        let draft = Draft {
            id: id.to_string(),
            kind: string("kind").unwrap_or_default(),
            args: string("args")
                .map(|a| {
                    a.split('\u{1f}')
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            text,
            submitted: string("submitted"),
        };
        Ok((map, draft))
    }
}

/// Arguments joined with the unit separator (they never contain it: they
/// come from the command line, which cannot carry control characters here).
fn join_args(args: &[String]) -> String {
    args.iter()
        .map(|a| a.replace('\u{1f}', " "))
        .collect::<Vec<_>>()
        .join("\u{1f}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::governance::TreatyKind;

    #[test]
    fn a_draft_turns_into_the_request_it_was_made_from() {
        for req in [
            ProposeRequest::AddArticle {
                title: None,
                text: "Seeds are shared.".into(),
            },
            ProposeRequest::AddArticle {
                title: Some("Tools".into()),
                text: "Tools are lent.".into(),
            },
            ProposeRequest::AmendArticle {
                article: 4,
                text: "Anyone may leave.".into(),
            },
            ProposeRequest::NewTreaty {
                group: "North Valley".into(),
                treaty_kind: TreatyKind::MutualAid,
                duration_secs: 30 * 86_400,
                terms: "Help in floods.".into(),
            },
        ] {
            let (kind, args, text) = req.draft_words().expect("draftable");
            let draft = Draft {
                id: "d1".into(),
                kind: kind.into(),
                args,
                text,
                submitted: None,
            };
            assert_eq!(draft.request().expect("request"), req);
        }
        assert!(ProposeRequest::LeaveParent.draft_words().is_none());
    }

    #[test]
    fn a_draft_with_unfit_words_says_so() {
        let draft = Draft {
            id: "d1".into(),
            kind: "amend-article".into(),
            args: vec!["four".into()],
            text: "x".into(),
            submitted: None,
        };
        let err = draft.request().expect_err("unfit");
        assert!(err.0.contains("do not fit"), "{}", err.0);
    }
}
