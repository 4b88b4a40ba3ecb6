//! Who the client is, and the `X-Forwarded-*` headers sent upstream.
//!
//! `X-Forwarded-For` is a list anyone can write to, so it is believed only as
//! far as it was written by proxies we trust: starting from the socket peer,
//! walk the list right to left while each hop is in `trusted_proxies`; the
//! first untrusted hop is the client (the approach of nginx's realip module
//! with `real_ip_recursive on`, and of MDN's guidance on XFF).

use std::fmt::Write;
use std::net::IpAddr;

use http::{HeaderName, HeaderValue};
use ipnet::IpNet;
use pingora_http::RequestHeader;
use smallvec::SmallVec;

fn trusted(ip: &IpAddr, nets: &[IpNet]) -> bool {
    nets.iter().any(|n| n.contains(ip))
}

/// Whether the connection's peer is one of `trusted_proxies`, whose word on
/// the client (its address, its priority) the gateway takes.
pub fn peer_is_trusted(peer: Option<IpAddr>, trusted_proxies: &[IpNet]) -> bool {
    peer.is_some_and(|p| trusted(&p, trusted_proxies))
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
pub fn append_xff<'a>(incoming: impl Iterator<Item = &'a [u8]>, peer: IpAddr) -> HeaderValue {
    let mut value = SmallVec::<[u8; 64]>::new();
    for field in incoming {
        if std::str::from_utf8(field).is_err() {
            continue;
        }
        let text = field.trim_ascii();
        if !text.is_empty() {
            value.extend_from_slice(text);
            value.extend_from_slice(b", ");
        }
    }
    push_ip(&mut value, peer);
    // The incoming fields were valid header values and an address is ASCII,
    // so this holds; if not, the peer alone still is.
    HeaderValue::from_bytes(&value).unwrap_or_else(|_| {
        let mut alone = SmallVec::<[u8; 64]>::new();
        push_ip(&mut alone, peer);
        HeaderValue::from_bytes(&alone).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
    })
}

/// Writes an address as `Display` would; IPv4, the common case, without the
/// formatting machinery.
fn push_ip(out: &mut SmallVec<[u8; 64]>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                if octet >= 100 {
                    out.push(b'0' + octet / 100);
                }
                if octet >= 10 {
                    out.push(b'0' + octet / 10 % 10);
                }
                out.push(b'0' + octet % 10);
            }
        }
        IpAddr::V6(v6) => {
            struct W<'a>(&'a mut SmallVec<[u8; 64]>);
            impl Write for W<'_> {
                fn write_str(&mut self, s: &str) -> std::fmt::Result {
                    self.0.extend_from_slice(s.as_bytes());
                    Ok(())
                }
            }
            let _ = write!(W(out), "{v6}");
        }
    }
}

/// Header names for lookups, built once instead of parsed per request.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

const HTTP: HeaderValue = HeaderValue::from_static("http");
const HTTPS: HeaderValue = HeaderValue::from_static("https");

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
    if !trusted(&peer, trusted_proxies) || !upstream.headers.contains_key(X_FORWARDED_PROTO) {
        upstream.insert_header("x-forwarded-proto", if tls { HTTPS } else { HTTP })?;
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

    proptest::proptest! {
        #[test]
        fn the_peer_is_written_as_display_writes_it(v4: [u8; 4], v6: [u16; 8]) {
            for ip in [IpAddr::from(v4), IpAddr::from(v6)] {
                let written = append_xff(std::iter::empty(), ip);
                proptest::prop_assert_eq!(written.to_str().unwrap(), ip.to_string());
            }
        }
    }

    #[test]
    fn appends_the_peer() {
        assert_eq!(
            append_xff(std::iter::empty(), "1.1.1.1".parse().unwrap()),
            "1.1.1.1"
        );
        for ip in [
            "0.0.0.0",
            "10.20.30.40",
            "255.255.255.255",
            "192.168.0.9",
            "::1",
            "2001:db8::7:1",
        ] {
            assert_eq!(append_xff(std::iter::empty(), ip.parse().unwrap()), ip);
        }
        assert_eq!(
            append_xff(
                [b"2.2.2.2".as_slice()].into_iter(),
                "1.1.1.1".parse().unwrap()
            ),
            "2.2.2.2, 1.1.1.1"
        );
    }
}
