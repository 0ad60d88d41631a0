//! What to type next, after an error. The node and its API say what went
//! wrong; which command shows what a selector could have named, or which
//! flag overrides a refusal, is this CLI's to say, so it is said here.

use nestwork_api::client::ClientError;
use nestwork_api::wire::Lookup;
use nestwork_node::identity::IdentityError;

/// A line to print under the error, if one helps.
pub(crate) fn for_error(e: &anyhow::Error) -> Option<String> {
    if let Some(e) = e.downcast_ref::<ClientError>() {
        return match e {
            ClientError::NotRunning { dir } => {
                Some(format!("start one with: nestwork run --data-dir {dir}"))
            }
            ClientError::Api {
                lookup: Some(what), ..
            } => Some(where_to_find(*what).to_string()),
            _ => None,
        };
    }
    match e.downcast_ref::<IdentityError>()? {
        IdentityError::NotInitialised(_) => Some("create one with: nestwork init".into()),
        IdentityError::WouldReplace { .. } => Some("add --force to replace it".into()),
        IdentityError::WouldOverwrite(_) => Some("add --force to overwrite it".into()),
        _ => None,
    }
}

/// The command that lists what a selector of this kind can name.
fn where_to_find(what: Lookup) -> &'static str {
    match what {
        Lookup::Group => "`nestwork group list` shows your groups",
        Lookup::Member => "`nestwork group show GROUP` lists its members",
        Lookup::Treaty => "`nestwork treaty list` shows them",
        Lookup::Proposal => "`nestwork proposals GROUP` lists them",
        Lookup::Signal => "`nestwork distress list --all` shows them",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_selector_that_named_nothing_points_at_the_listing_command() {
        let e = anyhow::Error::new(ClientError::Api {
            status: 404,
            message: "no group matches \"x\"".into(),
            lookup: Some(Lookup::Group),
        });
        assert_eq!(
            for_error(&e).as_deref(),
            Some("`nestwork group list` shows your groups")
        );
        let plain = anyhow::Error::new(ClientError::Api {
            status: 422,
            message: "not enough credit".into(),
            lookup: None,
        });
        assert_eq!(for_error(&plain), None);
    }
}
