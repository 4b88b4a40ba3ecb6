//! `X-Forwarded-For`: who the client is, against a reference that walks the
//! whole chain as one list; and the chain sent upstream, which must be a
//! valid field value ending with the peer.
//!
//! Input: the socket peer's address line, a line of trusted networks
//! (comma-separated CIDRs or addresses), then one line per X-Forwarded-For
//! field as received (lines that are no valid field value are left out, as
//! the HTTP parser would have refused them).

use std::net::IpAddr;

use http::HeaderValue;
use ipnet::IpNet;

use super::input::lines;
use crate::request::forwarded::{append_xff, client_ip};

pub fn forwarded(data: &[u8]) {
    let mut input = lines(data);
    let peer: Option<IpAddr> = input
        .next()
        .and_then(|l| std::str::from_utf8(l).ok())
        .and_then(|l| l.trim().parse().ok());
    let trusted: Vec<IpNet> = input
        .next()
        .and_then(|l| std::str::from_utf8(l).ok())
        .map(|l| l.split(',').filter_map(|n| net(n.trim())).collect())
        .unwrap_or_default();
    let fields: Vec<HeaderValue> = input
        .filter_map(|l| HeaderValue::from_bytes(l.trim_ascii()).ok())
        .collect();
    let raw = || fields.iter().map(HeaderValue::as_bytes);

    let client = client_ip(peer, raw(), &trusted);
    assert_eq!(client, reference(peer, &fields, &trusted));

    let Some(peer) = peer else {
        return;
    };
    let sent = append_xff(raw(), peer);
    let sent = sent.as_bytes();
    assert!(
        sent.ends_with(peer.to_string().as_bytes()),
        "{:?} does not end with the peer {peer}",
        String::from_utf8_lossy(sent)
    );
    // What the chain said before is kept: every UTF-8 field, trimmed, in order.
    let kept: Vec<&[u8]> = raw()
        .filter(|f| std::str::from_utf8(f).is_ok())
        .map(<[u8]>::trim_ascii)
        .filter(|f| !f.is_empty())
        .collect();
    let mut expected = kept.join(&b", "[..]);
    if !expected.is_empty() {
        expected.extend_from_slice(b", ");
    }
    expected.extend_from_slice(peer.to_string().as_bytes());
    assert_eq!(sent, expected.as_slice());
}

fn net(text: &str) -> Option<IpNet> {
    text.parse()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

/// Right to left over every hop of every field, from the peer: believe a hop
/// only while the one after it is trusted; stop at anything that is no address.
fn reference(peer: Option<IpAddr>, fields: &[HeaderValue], trusted: &[IpNet]) -> Option<IpAddr> {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    let mut client = peer?;
    if !is_trusted(&client) {
        return Some(client);
    }
    let mut hops: Vec<Option<IpAddr>> = Vec::new();
    for field in fields {
        match std::str::from_utf8(field.as_bytes()) {
            Ok(text) => hops.extend(text.split(',').map(|h| hop(h.trim()))),
            // A field that is no text ends the chain there, read from the right.
            Err(_) => hops.push(None),
        }
    }
    for h in hops.into_iter().rev() {
        let Some(ip) = h else {
            return Some(client);
        };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    Some(client)
}

/// `1.2.3.4`, `1.2.3.4:80`, `::1`, `[::1]:80`.
fn hop(text: &str) -> Option<IpAddr> {
    if let Ok(ip) = text.parse() {
        return Some(ip);
    }
    match text.strip_prefix('[') {
        Some(rest) => rest.split_once(']')?.0.parse().ok(),
        None => text.rsplit_once(':')?.0.parse().ok(),
    }
}
