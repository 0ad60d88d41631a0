//! Invite tickets as a person pastes them: the text parsed, then the
//! signature and expiry checked. A ticket that parses must come back the
//! same from its own text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nestwork_fuzz::T0;
use nestwork_net::Ticket;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(ticket) = Ticket::from_text(text) else {
        return;
    };
    let _ = ticket.verify(T0);
    let _ = ticket.id();
    let again = ticket.to_text();
    if again.len() <= nestwork_core::limits::MAX_TICKET_CHARS {
        assert_eq!(
            Ticket::from_text(&again).as_ref(),
            Ok(&ticket),
            "a ticket's own text parses back to it"
        );
    }
});
