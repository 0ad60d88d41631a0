//! Invite tickets: a short text (and a QR code) that lets someone join a
//! group. Signed by the inviting member, carrying where to reach them, and
//! an expiry. A ticket admits one newcomer.

use nestwork_core::signed::verify_signature;
use nestwork_core::{encoding, GroupId, Hash32, MemberId, MemberKey};
use nestwork_docs::record::ticket_message;
use serde::{Deserialize, Serialize};

/// Text prefix, with the format version (2: the signature is over the
/// ticket's id, which the admission record carries).
const PREFIX: &str = "nwinvite2";
const DOMAIN: &[u8] = b"nestwork/ticket/v1\0";
pub use nestwork_core::limits::MAX_TICKET_CHARS;
/// Most addresses a ticket carries.
pub const MAX_TICKET_ADDRS: usize = 8;

/// An invitation to a group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    /// The group.
    pub group: GroupId,
    /// Its name, so the invitee sees what they are joining.
    pub group_name: String,
    /// The inviting member; also the peer to contact.
    pub inviter: MemberId,
    /// Multiaddrs where the inviter's node listens.
    pub addrs: Vec<String>,
    /// Expiry, ms since the Unix epoch.
    pub expires_at_ms: u64,
    /// Makes every ticket distinct.
    pub nonce: [u8; 16],
    /// The inviter's signature over the group and the ticket's id (a hash
    /// of everything above), as [`nestwork_docs::record::ticket_message`]
    /// lays it out; the admission record carries it, so every node can
    /// check who issued the ticket.
    pub signature: Vec<u8>,
}

/// Why a ticket is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    /// Not a ticket at all, or damaged.
    #[error("this is not a valid invite ticket ({0})")]
    Malformed(String),
    /// The signature does not match (tampered or forged).
    #[error("the invite ticket's signature does not match: it was altered or forged")]
    BadSignature,
    /// Past its expiry.
    #[error("the invite ticket expired {0} ago; ask for a new one")]
    Expired(String),
}

#[derive(Serialize)]
struct Signed<'a> {
    group: &'a GroupId,
    group_name: &'a str,
    inviter: &'a MemberId,
    addrs: &'a [String],
    expires_at_ms: u64,
    nonce: &'a [u8; 16],
}

impl Ticket {
    /// Issue a ticket as `key`.
    pub fn issue(
        key: &MemberKey,
        group: GroupId,
        group_name: &str,
        addrs: Vec<String>,
        expires_at_ms: u64,
    ) -> Ticket {
        let mut t = Ticket {
            group,
            group_name: group_name.to_string(),
            inviter: key.id(),
            addrs: addrs.into_iter().take(MAX_TICKET_ADDRS).collect(),
            expires_at_ms,
            nonce: rand::random(),
            signature: Vec::new(),
        };
        t.signature = key.sign(&t.message()).to_vec();
        t
    }

    /// What the inviter signs.
    fn message(&self) -> Vec<u8> {
        ticket_message(&self.group, &self.id())
    }

    /// The ticket's id: a hash of its signed fields, what the inviter signs
    /// and an admission record cites.
    pub fn id(&self) -> Hash32 {
        let signed = Signed {
            group: &self.group,
            group_name: &self.group_name,
            inviter: &self.inviter,
            addrs: &self.addrs,
            expires_at_ms: self.expires_at_ms,
            nonce: &self.nonce,
        };
        Hash32::of_parts(&[DOMAIN, &encoding::encode(&signed)])
    }

    /// Check the signature and, at `now_ms`, the expiry.
    pub fn verify(&self, now_ms: u64) -> Result<(), TicketError> {
        if self.addrs.len() > MAX_TICKET_ADDRS {
            return Err(TicketError::Malformed("too many addresses".into()));
        }
        verify_signature(&self.inviter, &self.message(), &self.signature, "ticket")
            .map_err(|_| TicketError::BadSignature)?;
        if now_ms >= self.expires_at_ms {
            let ago = std::time::Duration::from_secs((now_ms - self.expires_at_ms) / 1000);
            return Err(TicketError::Expired(humanise(ago)));
        }
        Ok(())
    }

    /// The text form: `nwinvite2` then base58.
    pub fn to_text(&self) -> String {
        format!(
            "{PREFIX}{}",
            bs58::encode(encoding::encode(self)).into_string()
        )
    }

    /// Parse the text form (whitespace around it is ignored). The signature
    /// and expiry are checked by [`Ticket::verify`].
    pub fn from_text(text: &str) -> Result<Ticket, TicketError> {
        let text = text.trim();
        if text.len() > MAX_TICKET_CHARS {
            return Err(TicketError::Malformed("too long".into()));
        }
        let body = text
            .strip_prefix(PREFIX)
            .ok_or_else(|| TicketError::Malformed(format!("it does not start with {PREFIX}")))?;
        let bytes = bs58::decode(body)
            .into_vec()
            .map_err(|_| TicketError::Malformed("damaged text".into()))?;
        encoding::decode("ticket", &bytes, MAX_TICKET_CHARS)
            .map_err(|e| TicketError::Malformed(e.to_string()))
    }

    /// The text as a QR code drawn with Unicode half blocks, for a terminal.
    pub fn to_qr(&self) -> String {
        match qrcode::QrCode::with_error_correction_level(
            self.to_text().as_bytes(),
            qrcode::EcLevel::L,
        ) {
            Ok(code) => code
                .render::<qrcode::render::unicode::Dense1x2>()
                .quiet_zone(true)
                .build(),
            Err(e) => format!("(no QR code: {e})"),
        }
    }
}

fn humanise(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        7200..=172_799 => format!("{} h", s / 3600),
        _ => format!("{} days", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket(expires: u64) -> Ticket {
        Ticket::issue(
            &MemberKey::from_secret([3; 32]),
            GroupId::from(Hash32::of(b"group")),
            "Riverside",
            vec!["/ip4/127.0.0.1/tcp/4001".into()],
            expires,
        )
    }

    #[test]
    fn round_trip_and_verify() {
        let t = ticket(10_000);
        let text = t.to_text();
        assert!(text.len() < 400, "tickets stay short: {}", text.len());
        let back = Ticket::from_text(&format!("  {text}\n")).expect("parse");
        assert_eq!(back, t);
        assert_eq!(back.verify(5_000), Ok(()));
        assert!(matches!(back.verify(10_000), Err(TicketError::Expired(_))));
        assert!(t.to_qr().lines().count() > 10);
    }

    #[test]
    fn tampering_is_detected() {
        let mut t = ticket(10_000);
        t.expires_at_ms = 99_999_999;
        assert_eq!(t.verify(5_000), Err(TicketError::BadSignature));
        let mut t = ticket(10_000);
        t.addrs = vec!["/ip4/6.6.6.6/tcp/1".into()];
        assert_eq!(t.verify(5_000), Err(TicketError::BadSignature));
        let text = ticket(10_000).to_text();
        let mut chars: Vec<char> = text.chars().collect();
        let i = chars.len() - 10;
        chars[i] = if chars[i] == 'a' { 'b' } else { 'a' };
        let altered: String = chars.into_iter().collect();
        assert!(Ticket::from_text(&altered)
            .map(|t| t.verify(5_000))
            .map_or(true, |r| r.is_err()));
        assert!(Ticket::from_text("hello").is_err());
        assert!(Ticket::from_text("nwinvite1000").is_err());
    }
}
