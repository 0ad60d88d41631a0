//! `distress raise|ack|respond|resolve|list|watch`: calls for help.

use std::io::Write;

use nestwork_api::client::Client;
use nestwork_api::wire::{AnswerRequest, Answering, RaiseRequest, SignalItem};
use nestwork_docs::distress::{AnswerKind, SignalStatus};
use nestwork_node::DataDir;

use crate::cli::DistressCommand;
use crate::output::{when, Output};

/// Carry out one `distress` command.
pub fn distress(dir: &DataDir, out: &Output, action: DistressCommand) -> anyhow::Result<()> {
    let client = Client::connect(dir)?;
    match action {
        DistressCommand::Raise {
            group,
            category,
            severity,
            location,
            expires,
            text,
        } => {
            let req = RaiseRequest {
                category,
                severity,
                location,
                expires_secs: expires.map(|d| d.as_secs()),
                text,
            };
            let v = client.raise(&group, &req)?;
            out.print(&v, || {
                format!(
                    "Signal {} raised and sent to every member of the group.\nIt climbs to the next tier if nobody answers in time.",
                    v.id.short()
                )
            })
        }
        DistressCommand::Ack { signal, text } => {
            answer(&client, out, &signal, Answering::Ack, text, None)
        }
        DistressCommand::Respond { signal, eta, text } => answer(
            &client,
            out,
            &signal,
            Answering::Respond,
            text,
            eta.map(|d| d.as_secs()),
        ),
        DistressCommand::Resolve { signal, text } => {
            answer(&client, out, &signal, Answering::Resolve, text, None)
        }
        DistressCommand::List { group, all } => {
            let items = client.signals(group.as_deref(), all)?;
            out.print(&items, || {
                if items.is_empty() {
                    return "No open signals.".to_string();
                }
                items
                    .iter()
                    .map(signal_text)
                    .collect::<Vec<_>>()
                    .join("\n\n")
            })
        }
        DistressCommand::Watch => watch(&client, out),
    }
}

/// Print each signal as it arrives or changes, and each new answer to it,
/// until the node stops or the reader goes away.
fn watch(client: &Client, out: &Output) -> anyhow::Result<()> {
    if !out.json {
        eprintln!("Watching for distress signals; Ctrl-C to stop.");
    }
    let json = out.json;
    // Answers already printed, per signal: each event carries the
    // whole signal, and several answers can arrive at once.
    let mut printed: std::collections::HashMap<nestwork_core::SignalId, usize> = Default::default();
    let mut reader_gone = false;
    client.watch_signals(|data| {
        let Ok(item) = serde_json::from_str::<SignalItem>(data) else {
            return true;
        };
        let mut stdout = std::io::stdout().lock();
        let v = &item.view;
        let written = if json {
            writeln!(stdout, "{data}")
        } else {
            let mut text = String::new();
            let before = match printed.insert(v.id, v.answers.len()) {
                Some(n) => n,
                None => {
                    text.push_str(&alarm(&item));
                    text.push('\n');
                    0
                }
            };
            for a in v.answers.iter().skip(before) {
                text.push_str(&format!(
                    "  [{}] {}\n",
                    v.id.short(),
                    answer_line(a, &v.origin)
                ));
            }
            if text.is_empty() {
                Ok(())
            } else {
                writeln!(stdout, "{text}")
            }
        };
        // The reader went away (a closed pipe): stop watching.
        reader_gone = written.and_then(|_| stdout.flush()).is_err();
        !reader_gone
    })?;
    if !reader_gone {
        // The node ended the stream: it is stopping.
        eprintln!("The node stopped; no longer watching.");
    }
    Ok(())
}

fn answer(
    client: &Client,
    out: &Output,
    signal: &str,
    kind: Answering,
    text: Option<String>,
    eta_secs: Option<u64>,
) -> anyhow::Result<()> {
    let req = AnswerRequest {
        kind,
        text: text.unwrap_or_default(),
        eta_secs,
    };
    let v = client.answer(signal, &req)?;
    out.print(&v, || {
        format!(
            "Answer recorded on signal {} ({} answers).",
            v.id.short(),
            v.answers.len()
        )
    })
}

/// A new signal, made to stand out from everything else on the screen.
fn alarm(item: &SignalItem) -> String {
    let v = &item.view;
    let bar = "!".repeat(60);
    format!(
        "{bar}\n!!! DISTRESS [{}] {} in {}\n!!! {}\n{}!!! raised by {} at {}{}\n!!! answer: nestwork distress ack {}\n{bar}",
        v.signal.severity.as_str().to_uppercase(),
        v.signal.category.as_str(),
        item.origin_name.clone().unwrap_or_else(|| v.origin.short()),
        v.signal.text,
        v.signal
            .location
            .as_ref()
            .map(|l| format!("!!! where: {l}\n"))
            .unwrap_or_default(),
        v.raiser.short(),
        when(v.signal.raised_at_ms),
        if v.path.is_empty() {
            String::new()
        } else {
            format!(
                " (escalated via {})",
                v.path.iter().map(|g| g.short()).collect::<Vec<_>>().join(" > ")
            )
        },
        v.id.short()
    )
}

/// One answer: who, what, when they expect to be there, and, when it was
/// given in another group than the one the signal was raised in, where
/// (the tier above, a treaty partner).
fn answer_line(a: &nestwork_docs::distress::AnswerView, origin: &nestwork_core::GroupId) -> String {
    let eta = match a.answer {
        AnswerKind::Respond { eta_secs: Some(s) } => format!(
            " (eta {} min, about {})",
            s.div_ceil(60),
            when(a.at_ms.saturating_add(s.saturating_mul(1000)))
        ),
        _ => String::new(),
    };
    let place = if a.given_in == *origin {
        String::new()
    } else {
        format!(" in {}", a.given_in_name)
    };
    format!(
        "{}{}: {}{}{}",
        a.by.short(),
        place,
        a.answer.as_str(),
        eta,
        if a.text.is_empty() {
            String::new()
        } else {
            format!(" \"{}\"", a.text)
        }
    )
}

fn signal_text(item: &SignalItem) -> String {
    let v = &item.view;
    let status = match v.status {
        SignalStatus::Open => "OPEN, no answer yet",
        SignalStatus::Answered => "answered",
        SignalStatus::Resolved => "resolved",
        SignalStatus::Expired => "expired",
    };
    let mut text = format!(
        "{} [{}] {} in {}: {}\n  {} | raised by {} at {} | until {}",
        v.id.short(),
        v.signal.severity.as_str().to_uppercase(),
        v.signal.category.as_str(),
        item.origin_name.clone().unwrap_or_else(|| v.origin.short()),
        v.signal.text,
        status,
        v.raiser.short(),
        when(v.signal.raised_at_ms),
        when(v.signal.expires_at_ms)
    );
    if let Some(l) = &v.signal.location {
        text.push_str(&format!("\n  where: {l}"));
    }
    if !v.path.is_empty() {
        text.push_str(&format!(
            "\n  escalated via {}",
            v.path
                .iter()
                .map(|g| g.short())
                .collect::<Vec<_>>()
                .join(" > ")
        ));
    }
    for a in &v.answers {
        text.push_str(&format!("\n  {}", answer_line(a, &v.origin)));
    }
    text
}

#[cfg(test)]
mod tests {
    use nestwork_core::{GroupId, Hash32, MemberId};
    use nestwork_docs::distress::{AnswerKind, AnswerView};

    use super::answer_line;

    #[test]
    fn an_answer_from_another_group_says_where_and_when_help_arrives() {
        let hub = GroupId::from(Hash32([1; 32]));
        let region = GroupId::from(Hash32([2; 32]));
        let mut a = AnswerView {
            id: Hash32([3; 32]),
            by: MemberId([4; 32]),
            answer: AnswerKind::Respond {
                eta_secs: Some(15 * 60),
            },
            text: "on my way".into(),
            at_ms: 1_700_000_000_000,
            given_in: region,
            given_in_name: "North Valley".into(),
            carried_via: vec![region],
        };
        let line = answer_line(&a, &hub);
        assert!(
            line.contains(" in North Valley: on the way (eta 15 min, about "),
            "{line}"
        );
        assert!(line.ends_with("\"on my way\""), "{line}");
        // Given in the group it was raised in: no place named.
        a.given_in = hub;
        assert!(!answer_line(&a, &hub).contains(" in "));
    }
}
