//! Who the client is, and the `X-Forwarded-*` headers sent upstream.
//!
//! `X-Forwarded-For` is a list anyone can write to, so it is believed only as
//! far as it was written by proxies we trust: starting from the socket peer,
//! walk the list right to left while each hop is in `trusted_proxies`; the
//! first untrusted hop is the client (the approach of nginx's realip module
//! with `real_ip_recursive on`, and of MDN's guidance on XFF).

use std::fmt::Write;
use std::net::IpAddr;

use ipnet::IpNet;
use pingora_http::RequestHeader;

fn trusted(ip: &IpAddr, nets: &[IpNet]) -> bool {
    nets.iter().any(|n| n.contains(ip))
}

/// The client's address as the gateway should believe it.
pub fn client_ip<'a>(
    peer: Option<IpAddr>,
    xff: impl DoubleEndedIterator<Item = &'a [u8]>,
    trusted_proxies: &[IpNet],
) -> Option<IpAddr> {
    let peer = peer?;
    if !trusted(&peer, trusted_proxies) {
        return Some(peer);
    }
    let mut client = peer;
    // Later header fields come after earlier ones (RFC 9110 §5.3 combines them in order).
    for field in xff.rev() {
        let Ok(text) = std::str::from_utf8(field) else {
            return Some(client);
        };
        for hop in text.rsplit(',') {
            let hop = hop.trim();
            let Some(ip) = parse_hop(hop) else {
                // Garbage in the chain: stop believing it here.
                return Some(client);
            };
            client = ip;
            if !trusted(&ip, trusted_proxies) {
                return Some(client);
            }
        }
    }
    Some(client)
}

/// A hop may be `1.2.3.4`, `1.2.3.4:567`, `::1` or `[::1]:567`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse() {
        return Some(ip);
    }
    if let Some(rest) = hop.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    hop.rsplit_once(':')?.0.parse().ok()
}

/// The `X-Forwarded-For` value to send upstream: the incoming chain (every
/// field, in order) with the socket peer appended.
pub fn append_xff<'a>(incoming: impl Iterator<Item = &'a [u8]>, peer: IpAddr) -> String {
    let mut value = String::new();
    for field in incoming {
        let Ok(text) = std::str::from_utf8(field) else {
            continue;
        };
        let text = text.trim();
        if !text.is_empty() {
            value.push_str(text);
            value.push_str(", ");
        }
    }
    let _ = write!(value, "{peer}");
    value
}

/// Sets the forwarding headers of the request sent upstream: `X-Forwarded-For`
/// is the incoming chain with the socket peer appended; `X-Forwarded-Proto` is
/// the scheme the client used, unless a trusted proxy already said which.
pub fn set_forwarding_headers<'a>(
    upstream: &mut RequestHeader,
    incoming_xff: impl Iterator<Item = &'a [u8]>,
    peer: IpAddr,
    trusted_proxies: &[IpNet],
    tls: bool,
) -> pingora_core::Result<()> {
    upstream.insert_header("x-forwarded-for", append_xff(incoming_xff, peer))?;
    if !trusted(&peer, trusted_proxies) || !upstream.headers.contains_key("x-forwarded-proto") {
        upstream.insert_header("x-forwarded-proto", if tls { "https" } else { "http" })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_xff_says() {
        let xff = [b"6.6.6.6".as_slice()];
        assert_eq!(
            client_ip(ip("9.9.9.9"), xff.into_iter(), &nets(&["127.0.0.1/32"])),
            ip("9.9.9.9")
        );
    }

    #[test]
    fn trusted_peer_hands_over_to_the_rightmost_untrusted_hop() {
        let t = nets(&["127.0.0.1/32", "10.0.0.0/8"]);
        let xff = [b"6.6.6.6, 1.2.3.4".as_slice(), b"10.1.1.1".as_slice()];
        assert_eq!(
            client_ip(ip("127.0.0.1"), xff.into_iter(), &t),
            ip("1.2.3.4")
        );
        let only_trusted = [b"10.0.0.2".as_slice()];
        assert_eq!(
            client_ip(ip("127.0.0.1"), only_trusted.into_iter(), &t),
            ip("10.0.0.2")
        );
        let garbage = [b"x, 1.2.3.4".as_slice()];
        assert_eq!(
            client_ip(ip("127.0.0.1"), garbage.into_iter(), &t),
            ip("1.2.3.4")
        );
        let ports = [b"[2001:db8::1]:443".as_slice()];
        assert_eq!(
            client_ip(ip("127.0.0.1"), ports.into_iter(), &t),
            ip("2001:db8::1")
        );
    }

    #[test]
    fn forwarding_headers_trust_only_trusted_proxies() {
        let t = nets(&["127.0.0.1/32"]);
        let mut up = RequestHeader::build("GET", b"/", None).unwrap();
        up.insert_header("x-forwarded-proto", "https").unwrap();
        let chain = [b"1.1.1.1".as_slice(), b"2.2.2.2".as_slice()];
        set_forwarding_headers(
            &mut up,
            chain.into_iter(),
            "127.0.0.1".parse().unwrap(),
            &t,
            false,
        )
        .unwrap();
        assert_eq!(up.headers["x-forwarded-for"], "1.1.1.1, 2.2.2.2, 127.0.0.1");
        assert_eq!(
            up.headers["x-forwarded-proto"], "https",
            "kept from a trusted proxy"
        );

        let mut up = RequestHeader::build("GET", b"/", None).unwrap();
        up.insert_header("x-forwarded-proto", "https").unwrap();
        set_forwarding_headers(
            &mut up,
            std::iter::empty(),
            "9.9.9.9".parse().unwrap(),
            &t,
            false,
        )
        .unwrap();
        assert_eq!(up.headers["x-forwarded-for"], "9.9.9.9");
        assert_eq!(
            up.headers["x-forwarded-proto"], "http",
            "an untrusted client cannot claim https"
        );
    }

    #[test]
    fn appends_the_peer() {
        assert_eq!(
            append_xff(std::iter::empty(), "1.1.1.1".parse().unwrap()),
            "1.1.1.1"
        );
        assert_eq!(
            append_xff(
                [b"2.2.2.2".as_slice()].into_iter(),
                "1.1.1.1".parse().unwrap()
            ),
            "2.2.2.2, 1.1.1.1"
        );
    }
}
