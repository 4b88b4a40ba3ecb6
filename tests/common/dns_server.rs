//! A tiny authoritative DNS server for tests: answers A queries over UDP from
//! a table the test can change, NXDOMAIN for names it does not hold, and an
//! empty answer for every other type (so AAAA lookups find nothing).
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

pub struct DnsServer {
    pub addr: SocketAddr,
    records: Arc<Mutex<HashMap<String, Vec<Ipv4Addr>>>>,
    task: JoinHandle<()>,
}

/// The TTL every answer carries.
pub const TTL: u32 = 300;

impl DnsServer {
    pub async fn start() -> DnsServer {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        let records: Arc<Mutex<HashMap<String, Vec<Ipv4Addr>>>> = Arc::default();
        let table = records.clone();
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            while let Ok((n, from)) = sock.recv_from(&mut buf).await {
                let reply = answer(&buf[..n], &table.lock().unwrap());
                if let Some(reply) = reply {
                    let _ = sock.send_to(&reply, from).await;
                }
            }
        });
        DnsServer {
            addr,
            records,
            task,
        }
    }

    /// Sets the A records of `name` (no trailing dot).
    pub fn set(&self, name: &str, addrs: &[Ipv4Addr]) {
        self.records
            .lock()
            .unwrap()
            .insert(name.to_ascii_lowercase(), addrs.to_vec());
    }

    /// Stops answering: queries go unanswered from now on.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The reply to one query (RFC 1035 §4.1), or `None` for a malformed one.
fn answer(q: &[u8], table: &HashMap<String, Vec<Ipv4Addr>>) -> Option<Vec<u8>> {
    if q.len() < 12 || u16::from_be_bytes([q[4], q[5]]) != 1 {
        return None;
    }
    // The question: labels up to the root, then type and class.
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = *q.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(q.get(i..i + len)?).to_ascii_lowercase());
        i += len;
    }
    let qtype = u16::from_be_bytes([*q.get(i)?, *q.get(i + 1)?]);
    let question_end = i + 4;
    q.get(..question_end)?;
    let name = labels.join(".");
    let records = table.get(&name);
    let answers: &[Ipv4Addr] = match (records, qtype) {
        (Some(a), 1) => a,
        _ => &[],
    };
    let rcode = if records.is_none() { 3 } else { 0 };
    let mut r = Vec::with_capacity(question_end + answers.len() * 16);
    r.extend_from_slice(&q[0..2]);
    // QR, the query's opcode and RD, AA; RA and the rcode.
    r.push(0x80 | (q[2] & 0x79) | 0x04);
    r.push(0x80 | rcode);
    r.extend_from_slice(&[0, 1]);
    r.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    r.extend_from_slice(&[0, 0, 0, 0]);
    r.extend_from_slice(&q[12..question_end]);
    for a in answers {
        r.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1]);
        r.extend_from_slice(&TTL.to_be_bytes());
        r.extend_from_slice(&[0, 4]);
        r.extend_from_slice(&a.octets());
    }
    Some(r)
}
