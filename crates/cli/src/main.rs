//! `nestwork`: one binary that runs the node (`nestwork run`) and talks to
//! it (every other command, over the local API).
//!
//! - [`cli`]: the command surface (clap);
//! - [`run`]: `nestwork run`, the node process;
//! - [`commands`]: the client commands, with [`governance`], [`ledger`]
//!   and [`distress`] for theirs;
//! - [`output`]: how they print (text or JSON, times);
//! - [`hint`]: what to type next, under an error.
//!
//! Exit codes: 0 done; 1 failed (the message says why); 2 bad usage;
//! 3 no node is running for this data directory.

mod cli;
mod commands;
mod distress;
mod governance;
mod hint;
mod ledger;
mod output;
mod proposal;
mod run;

use clap::Parser;

/// jemalloc rather than glibc's malloc: a node's many threads (the API's
/// blocking pool, sync, sled) each take a glibc arena, and what they free
/// stays there; a node under steady load grew without bound in resident
/// memory while its live heap stayed flat (issue 17). jemalloc hands freed
/// pages back to the system.
#[cfg(all(unix, not(target_env = "musl")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    let args = cli::Args::parse();
    match commands::dispatch(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if let Some(hint) = hint::for_error(&e) {
                eprintln!("hint: {hint}");
            }
            let not_running = e
                .downcast_ref::<nestwork_api::client::ClientError>()
                .is_some_and(|c| matches!(c, nestwork_api::client::ClientError::NotRunning { .. }));
            std::process::ExitCode::from(if not_running { 3 } else { 1 })
        }
    }
}
