//! The request being served, as the edge knows it: who sent it ([`Peer`]), its parsed head and
//! id ([`Request`]), and the inputs of its signature check ([`SignedParts`]), gathered the same
//! way whichever kind of route it reached. Reads header values; decides nothing.

use std::net::IpAddr;
use std::time::Instant;

use super::head::Head;
use crate::checks::Inbound;
use crate::config::PublicUrl;
use crate::logging::RequestId;
use crate::outcome::Rejection;
use crate::signature::{self, RequestOrigin, SignedUrl};
use crate::snapshot::Snapshot;

/// What is known about the connection itself.
pub(super) struct Peer {
    pub ip: Option<IpAddr>,
    pub tls: bool,
}

/// The request being served: its parsed head, who sent it, the id its log lines and answer
/// carry, and when its head was complete.
pub(super) struct Request<'a> {
    pub head: &'a Head,
    pub peer: &'a Peer,
    pub id: RequestId,
    pub started: Instant,
}

/// The public URL Twilio signed, the request's signatures and settings header, and whether
/// its peer is a trusted proxy: what [`crate::checks`] verifies a body against.
pub(super) struct SignedParts<'h> {
    pub url: SignedUrl<'h>,
    /// The first two `X-Twilio-Signature` values (two are as bad as ten: refused either way).
    signatures: [&'h [u8]; 2],
    count: usize,
    pub settings: Option<&'h [u8]>,
    /// The peer is one of `trusted_proxies` (its `X-Forwarded-*` count).
    pub trusted: bool,
}

impl<'h> SignedParts<'h> {
    /// Reads them off `head_bytes`, with the route's `public_url` (or, without one,
    /// the URL rebuilt for one of its `allowed_hosts`).
    pub fn gather(
        snap: &Snapshot,
        public_url: Option<&'h PublicUrl>,
        allowed_hosts: &[String],
        request: &Request<'h>,
        head_bytes: &'h [u8],
    ) -> Result<Self, Rejection> {
        let head = request.head;
        let text = |name: &'static str| {
            head.value(head_bytes, name)
                .and_then(|v| std::str::from_utf8(v).ok())
        };
        let origin = RequestOrigin {
            raw_target: &head_bytes[head.target.clone()],
            host: text("host"),
            forwarded_proto: text("x-forwarded-proto"),
            forwarded_host: text("x-forwarded-host"),
            tls: request.peer.tls,
            trusted: snap.trusts(request.peer.ip),
        };
        let configured = public_url.map(PublicUrl::as_signed_url);
        let url = signature::public_url(configured, allowed_hosts, &origin)?;
        let mut signatures: [&[u8]; 2] = [&[], &[]];
        let mut count = 0;
        for value in head.values(head_bytes, "x-twilio-signature") {
            if count < 2 {
                signatures[count] = value;
            }
            count += 1;
        }
        Ok(SignedParts {
            url,
            signatures,
            count: count.min(2),
            settings: head.value(head_bytes, "x-twilio-webhooks-signature-settings"),
            trusted: origin.trusted,
        })
    }

    /// What the checks take, for `body`.
    pub fn inbound<'s>(&'s self, body: &'s [u8]) -> Inbound<'s> {
        Inbound {
            url: self.url,
            signatures: &self.signatures[..self.count],
            signature_settings: self.settings,
            body,
        }
    }
}
