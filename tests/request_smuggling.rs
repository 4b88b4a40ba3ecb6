//! Request smuggling: raw requests whose framing or fields could be read two
//! ways, sent byte for byte through the real gateway to a backend that
//! records every byte it receives. Each case names the RFC 9112 / 9110 rule
//! it guards and is either refused (400, then the connection closed) or
//! normalised, so that the backend reads exactly one request per client
//! request, with one framing, and never a byte of the request hidden behind
//! it (`GET /smuggled`).

mod common;
#[path = "common/raw_backend.rs"]
mod raw_backend;

use std::time::Duration;

use common::Gateway;
use raw_backend::RawBackend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What a misframing would make the next request.
const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    /// 400, then the connection closes; the backend sees none of it.
    Refused,
    /// Refused once the body turns out malformed: the head may have reached
    /// the backend, but no request completes there and that backend
    /// connection is never used again.
    RefusedInBody,
    /// Forwarded once with this body; `open`: the client connection stays
    /// usable for another request.
    Forwarded { body: &'static [u8], open: bool },
}

struct Case {
    name: &'static str,
    /// The rule, by RFC section.
    rfc: &'static str,
    /// `{p}` stands for the case's path.
    request: String,
    expect: Expect,
}

fn case(name: &'static str, rfc: &'static str, request: &str, expect: Expect) -> Case {
    Case {
        name,
        rfc,
        request: request.to_string(),
        expect,
    }
}

fn cases() -> Vec<Case> {
    use Expect::*;
    let s = SMUGGLED;
    vec![
        case(
            "content_length_and_transfer_encoding",
            "RFC 9112 §6.1 ¶15, §6.3 rule 3: chunked wins, Content-Length goes, the connection closes",
            &format!("POST {{p}} HTTP/1.1\r\nHost: x\r\nContent-Length: 48\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n{s}"),
            Forwarded { body: b"hello", open: false },
        ),
        case(
            "transfer_encoding_before_content_length",
            "RFC 9112 §6.1 ¶15, §6.3 rule 3",
            &format!("POST {{p}} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n5\r\nhello\r\n0\r\n\r\n{s}"),
            Forwarded { body: b"hello", open: false },
        ),
        case(
            "duplicate_equal_content_length",
            "RFC 9110 §8.6: duplicates must be refused or made one field",
            &format!("POST {{p}} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello{s}"),
            Refused,
        ),
        case(
            "content_length_list",
            "RFC 9110 §8.6: a list is duplicates in one field",
            &format!("POST {{p}} HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nhello{s}"),
            Refused,
        ),
        case(
            "differing_content_length",
            "RFC 9112 §6.3 rule 5: differing lengths are unrecoverable",
            &format!("POST {{p}} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 41\r\n\r\nhello{s}"),
            Refused,
        ),
        case(
            "content_length_plus_sign",
            "RFC 9110 §8.6: Content-Length = 1*DIGIT",
            &format!("POST {{p}} HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc{s}"),
            Refused,
        ),
        case(
            "content_length_negative",
            "RFC 9110 §8.6: Content-Length = 1*DIGIT",
            &format!("POST {{p}} HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n{s}"),
            Refused,
        ),
        case(
            "content_length_hex",
            "RFC 9110 §8.6: Content-Length = 1*DIGIT",
            &format!("POST {{p}} HTTP/1.1\r\nHost: x\r\nContent-Length: 0x3\r\n\r\nabc{s}"),
            Refused,
        ),
        case(
            "content_length_two_numbers",
            "RFC 9110 §8.6: Content-Length = 1*DIGIT",
            &format!("POST {{p}} HTTP/1.1\r\nHost: x\r\nContent-Length: 3 4\r\n\r\nabc{s}"),
            Refused,
        ),
        case(
            "last_coding_not_chunked",
            "RFC 9112 §6.3 rule 4: chunked must be the final coding, else 400 and close",
            &format!("POST {{p}} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n5\r\nhello\r\n0\r\n\r\n{s}"),
            Refused,
        ),
        case(
            "identity_coding_with_content_length",
            "RFC 9112 §6.3 rule 4",
            &format!("POST {{p}} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\nContent-Length: 5\r\n\r\nhello{s}"),
            Refused,
        ),
        case(
            "chunked_twice",
            "RFC 9112 §6.1 ¶10: chunked is applied once; a backend would decode it twice",
            &format!("POST {{p}} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n{s}"),
            Refused,
        ),
        case(
            "chunked_in_two_fields",
            "RFC 9112 §6.1 ¶10, RFC 9110 §5.3: two fields are one list",
            &format!("POST {{p}} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n{s}"),
            Refused,
        ),
        case(
            "coding_before_chunked",
            "RFC 9112 §6.1 ¶13: a coding the gateway does not apply is not forwarded as framing",
            &format!("POST {{p}} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n{s}"),
            Refused,
        ),
        case(
            "coding_in_a_second_field",
            "RFC 9112 §6.1, RFC 9110 §5.3",
            &format!("POST {{p}} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n{s}"),
            Refused,
        ),
        case(
            "empty_transfer_encoding",
            "RFC 9112 §6.3 rule 4",
            &format!("POST {{p}} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \r\nContent-Length: 5\r\n\r\nhello{s}"),
            Refused,
        ),
        case(
            "transfer_encoding_on_http10",
            "RFC 9112 §6.1 ¶16: faulty framing, 400 and close",
            &format!("POST {{p}} HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n{s}"),
            Refused,
        ),
        case(
            "uppercase_chunked",
            "RFC 9112 §7: coding names are case-insensitive",
            "POST {p} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            Forwarded { body: b"hello", open: true },
        ),
        case(
            "chunk_size_not_hex",
            "RFC 9112 §7.1: chunk-size = 1*HEXDIG",
            &format!("POST {{p}} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n{s}"),
            RefusedInBody,
        ),
        case(
            "chunk_size_negative",
            "RFC 9112 §7.1",
            &format!("POST {{p}} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n{s}"),
            RefusedInBody,
        ),
        case(
            "chunk_size_with_0x",
            "RFC 9112 §7.1",
            &format!("POST {{p}} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n{s}"),
            RefusedInBody,
        ),
        case(
            "chunk_size_overflowing",
            "RFC 9112 §7.1: a size past 64 bits must not wrap to a small one",
            &format!("POST {{p}} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000005\r\nhello\r\n0\r\n\r\n{s}"),
            RefusedInBody,
        ),
        case(
            "chunk_data_longer_than_its_size",
            "RFC 9112 §7.1: chunk-data is followed by CRLF",
            &format!("POST {{p}} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n{s}"),
            RefusedInBody,
        ),
        case(
            "chunk_lines_ending_in_bare_lf",
            "RFC 9112 §7.1: chunk lines end in CRLF (Pingora refuses a bare LF there)",
            &format!("POST {{p}} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\n0\n\n{s}"),
            RefusedInBody,
        ),
        case(
            "chunk_extension",
            "RFC 9112 §7.1.1: extensions are the gateway's to drop",
            "POST {p} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;a=\"b\"\r\nhello\r\n0;z\r\n\r\n",
            Forwarded { body: b"hello", open: true },
        ),
        case(
            "trailer_fields",
            "RFC 9112 §7.1.2: the trailer ends at its empty line, not before",
            "POST {p} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
            Forwarded { body: b"hello", open: true },
        ),
        case(
            "whitespace_before_colon",
            "RFC 9112 §5.1: no whitespace between name and colon, 400",
            &format!("POST {{p}} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\nhello{s}"),
            Refused,
        ),
        case(
            "tab_before_colon",
            "RFC 9112 §5.1",
            "GET {p} HTTP/1.1\r\nHost\t: x\r\n\r\n",
            Refused,
        ),
        case(
            "obsolete_line_folding",
            "RFC 9112 §5.2: obs-fold is refused or replaced by SP",
            &format!("POST {{p}} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nX-Folded: a\r\n b\r\n\r\nhello{s}"),
            Refused,
        ),
        case(
            "folded_transfer_encoding",
            "RFC 9112 §5.2",
            &format!("POST {{p}} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding:\r\n chunked\r\n\r\nhello{s}"),
            Refused,
        ),
        case(
            "bare_lf_line_ends",
            "RFC 9112 §2.2: a bare LF may end a line; what is forwarded uses CRLF",
            "POST {p} HTTP/1.1\nHost: x\nContent-Length: 5\n\nhello",
            Forwarded { body: b"hello", open: true },
        ),
        case(
            "bare_cr_in_a_field",
            "RFC 9112 §2.2: a bare CR is invalid or replaced by SP",
            &format!("POST {{p}} HTTP/1.1\r\nHost: x\r\nX-A: a\rContent-Length: 40\r\nContent-Length: 5\r\n\r\nhello{s}"),
            Refused,
        ),
        case(
            "nul_in_a_field",
            "RFC 9110 §5.5: CR, LF and NUL in a field value are invalid and dangerous",
            "GET {p} HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n",
            Refused,
        ),
        case(
            "control_in_a_field",
            "RFC 9110 §5.5: field-value is VCHAR, SP, HTAB and obs-text",
            "GET {p} HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n",
            Refused,
        ),
        case(
            "delete_in_a_field",
            "RFC 9110 §5.5",
            "GET {p} HTTP/1.1\r\nHost: x\r\nX-A: a\x7fb\r\n\r\n",
            Refused,
        ),
        case(
            "control_in_a_name",
            "RFC 9110 §5.1: field-name is a token",
            "GET {p} HTTP/1.1\r\nHost: x\r\nX\x01A: b\r\n\r\n",
            Refused,
        ),
        case(
            "two_host_fields",
            "RFC 9112 §3.2: more than one Host field line, 400",
            "GET {p} HTTP/1.1\r\nHost: x\r\nHost: other.example\r\n\r\n",
            Refused,
        ),
        case(
            "absolute_form_authority_differs_from_host",
            "RFC 9112 §3.2.2: the target's authority wins; a Host that disagrees is refused",
            "GET http://other.example{p} HTTP/1.1\r\nHost: x\r\n\r\n",
            Refused,
        ),
        case(
            "absolute_form_with_its_host",
            "RFC 9112 §3.2.2",
            "GET http://x{p} HTTP/1.1\r\nHost: x\r\n\r\n",
            Forwarded { body: b"", open: true },
        ),
    ]
}

/// A response read from the client side: its status, and whether the
/// gateway closed the connection after it (within a bound).
#[derive(Debug)]
struct Answer {
    status: Option<u16>,
    closed: bool,
}

/// Reads one response (its head, then a Content-Length body, or to the end
/// of the connection without one); then, if `expect_close`, waits up to 5 s
/// for the end of the connection.
async fn read_answer(s: &mut TcpStream, expect_close: bool) -> Answer {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut eof = false;
    let mut status = None;
    let mut wanted = None;
    while tokio::time::Instant::now() < deadline {
        if let Some(total) = wanted {
            if buf.len() >= total {
                break;
            }
        }
        let n = match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Ok(Ok(n)) => n,
            Ok(Err(_)) => 0,
            Err(_) => break,
        };
        if n == 0 {
            eof = true;
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if wanted.is_none() {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            if let Ok(httparse::Status::Complete(head)) = resp.parse(&buf) {
                status = resp.code;
                let length = resp
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| {
                        std::str::from_utf8(h.value)
                            .ok()?
                            .trim()
                            .parse::<usize>()
                            .ok()
                    });
                wanted = Some(length.map_or(usize::MAX, |l| head + l));
            }
        }
    }
    if expect_close && !eof {
        let mut rest = [0u8; 256];
        eof = matches!(
            tokio::time::timeout(Duration::from_secs(5), s.read(&mut rest)).await,
            Ok(Ok(0) | Err(_))
        );
    }
    Answer {
        status,
        closed: eof,
    }
}

async fn send(s: &mut TcpStream, bytes: &[u8]) {
    // The gateway may close before it has read everything.
    let _ = s.write_all(bytes).await;
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")
}

/// Runs one case against its own backend; returns what went wrong.
async fn run(case: &Case, port: u16, path: &str, backend: &RawBackend) -> Vec<String> {
    let mut problems = Vec::new();
    let request = case.request.replace("{p}", path);
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    send(&mut s, request.as_bytes()).await;
    let closes = !matches!(case.expect, Expect::Forwarded { open: true, .. });
    let answer = read_answer(&mut s, closes).await;
    let status_ok = match case.expect {
        Expect::Refused | Expect::RefusedInBody => answer.status == Some(400),
        Expect::Forwarded { .. } => answer.status == Some(200),
    };
    if !status_ok || answer.closed != closes {
        problems.push(format!("client got {answer:?}, expected {:?}", case.expect));
    }
    let mut expected_targets = Vec::new();
    if let Expect::Forwarded { open, .. } = case.expect {
        expected_targets.push(path.to_string());
        if open && !answer.closed {
            let second = format!("{path}second");
            send(&mut s, get(&second).as_bytes()).await;
            let again = read_answer(&mut s, false).await;
            if again.status != Some(200) {
                problems.push(format!("the next request on the connection got {again:?}"));
            }
            expected_targets.push(second);
        }
    }
    drop(s);
    // A fresh connection afterwards: if the backend connection of a refused
    // body were reused, this request would land inside that body.
    let probe = format!("{path}probe");
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    send(&mut s, get(&probe).as_bytes()).await;
    let answer = read_answer(&mut s, false).await;
    if answer.status != Some(200) {
        problems.push(format!("a request after the case got {answer:?}"));
    }
    expected_targets.push(probe);

    let streams = backend.streams();
    let seen: Vec<_> = streams.iter().flat_map(|s| &s.requests).collect();
    // An absolute-form target may be forwarded as it came.
    let targets: Vec<String> = seen
        .iter()
        .map(|r| r.target.trim_start_matches("http://x").to_string())
        .collect();
    if targets != expected_targets {
        problems.push(format!(
            "backend saw {targets:?}, expected {expected_targets:?}"
        ));
    }
    for stream in &streams {
        match (&stream.rest, case.expect) {
            (None, _) => {}
            (Some(r), Expect::RefusedInBody)
                if r.starts_with("incomplete") && stream.requests.is_empty() => {}
            (Some(r), _) => problems.push(format!("backend connection left unread: {r}")),
        }
    }
    if let (Expect::Forwarded { body, .. }, Some(first)) = (case.expect, seen.first()) {
        if first.body != body {
            problems.push(format!(
                "backend got the body {:?}, expected {:?}",
                String::from_utf8_lossy(&first.body),
                String::from_utf8_lossy(body)
            ));
        }
        let framing =
            first.header("content-length").len() + first.header("transfer-encoding").len();
        if framing > 1 {
            problems.push("backend got two framing fields".into());
        }
    }
    if problems.is_empty() {
        return problems;
    }
    problems.push(format!("backend bytes: {:?}", backend.raw()));
    problems
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_ambiguous_request_is_refused_or_forwarded_with_one_framing() {
    let cases = cases();
    let mut backends = Vec::new();
    let mut sections = String::from("upstreams:\n");
    for i in 0..=cases.len() {
        let (addr, backend) = RawBackend::start().await;
        sections.push_str(&format!("  u{i}:\n    backends: [{addr}]\n"));
        backends.push(backend);
    }
    sections.push_str("routes:\n");
    for i in 0..cases.len() {
        sections.push_str(&format!("  - {{ path_prefix: /c{i}/, upstream: u{i} }}\n"));
    }
    // Anything the gateway itself reads as a second request lands here.
    let trap = cases.len();
    sections.push_str(&format!("  - {{ path_prefix: /, upstream: u{trap} }}\n"));
    let gw = Gateway::start(&sections).await;

    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let problems = run(case, gw.port, &format!("/c{i}/"), &backends[i]).await;
        if !problems.is_empty() {
            failures.push(format!(
                "{} ({}):\n  {}",
                case.name,
                case.rfc,
                problems.join("\n  ")
            ));
        }
    }
    let trapped = backends[trap].requests();
    if !trapped.is_empty() {
        failures.push(format!(
            "the gateway read a hidden request: {:?}",
            trapped.iter().map(|r| &r.target).collect::<Vec<_>>()
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_recording_backend_reads_strictly() {
    use raw_backend::read_stream;
    let two = read_stream(
        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi",
    );
    assert_eq!(two.requests.len(), 2);
    assert_eq!(two.requests[1].body, b"hi");
    assert!(two.rest.is_none());
    let chunked =
        read_stream(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n");
    assert_eq!(chunked.requests[0].body, b"hi");
    let both =
        read_stream(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n");
    assert!(both.rest.unwrap().starts_with("ambiguous"));
    let twice = read_stream(b"POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nhi");
    assert!(twice.rest.unwrap().starts_with("ambiguous"));
    let bare = read_stream(b"GET / HTTP/1.1\nHost: x\n\n");
    assert_eq!(bare.rest.as_deref(), Some("a bare LF in the head"));
    let cut = read_stream(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhi");
    assert!(cut.rest.unwrap().starts_with("incomplete"));
    let bad_chunk = read_stream(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
    assert!(bad_chunk.rest.unwrap().starts_with("chunk size"));
}
