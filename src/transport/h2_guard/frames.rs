//! Counting a client's HTTP/2 control frames as the bytes arrive, and the
//! budget they are spent from. Pure: no I/O, the clock is passed in.

use std::time::Instant;

/// RFC 9113 §3.4: what an HTTP/2 client sends first.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// RFC 9113 §4.1: length (24 bits), type, flags, stream identifier.
const FRAME_HEADER: usize = 9;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
/// RFC 9113 §6.5 and §6.7: the flag that makes SETTINGS and PING a reply.
const ACK: u8 = 0x1;

/// Walks the client-to-server byte stream frame by frame, without buffering
/// payloads, and counts the SETTINGS and PING frames that each make the
/// server answer (those without ACK).
#[derive(Debug)]
pub struct ControlFrameCounter {
    /// Preface bytes still to skip.
    preface_left: usize,
    head: [u8; FRAME_HEADER],
    head_len: usize,
    /// Payload bytes of the current frame still to skip.
    payload_left: usize,
}

impl Default for ControlFrameCounter {
    fn default() -> Self {
        ControlFrameCounter {
            preface_left: PREFACE.len(),
            head: [0; FRAME_HEADER],
            head_len: 0,
            payload_left: 0,
        }
    }
}

impl ControlFrameCounter {
    /// Feeds the next bytes read; returns how many control frames they
    /// completed the header of.
    pub fn feed(&mut self, mut bytes: &[u8]) -> u32 {
        let skip = self.preface_left.min(bytes.len());
        self.preface_left -= skip;
        bytes = &bytes[skip..];
        let mut control = 0;
        while !bytes.is_empty() {
            if self.payload_left > 0 {
                let n = self.payload_left.min(bytes.len());
                self.payload_left -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (FRAME_HEADER - self.head_len).min(bytes.len());
            self.head[self.head_len..self.head_len + n].copy_from_slice(&bytes[..n]);
            self.head_len += n;
            bytes = &bytes[n..];
            if self.head_len == FRAME_HEADER {
                let h = &self.head;
                self.payload_left = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
                if matches!(h[3], SETTINGS | PING) && h[4] & ACK == 0 {
                    control += 1;
                }
                self.head_len = 0;
            }
        }
        control
    }
}

/// A token bucket of control frames: `burst` at once, refilled at `per_sec`.
#[derive(Debug)]
pub struct ControlBudget {
    tokens: f64,
    burst: f64,
    per_sec: f64,
    last: Instant,
}

impl ControlBudget {
    pub fn new(burst: u32, per_sec: u32, now: Instant) -> Self {
        ControlBudget {
            tokens: f64::from(burst),
            burst: f64::from(burst),
            per_sec: f64::from(per_sec),
            last: now,
        }
    }

    /// Spends `n` frames; `false` once the client has sent more than its
    /// budget allows.
    pub fn spend(&mut self, n: u32, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.burst) - f64::from(n);
        self.tokens >= 0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn frame(kind: u8, flags: u8, payload_len: usize) -> Vec<u8> {
        let l = payload_len as u32;
        let mut f = vec![
            (l >> 16) as u8,
            (l >> 8) as u8,
            l as u8,
            kind,
            flags,
            0,
            0,
            0,
            0,
        ];
        f.resize(FRAME_HEADER + payload_len, 0xab);
        f
    }

    #[test]
    fn counts_settings_and_pings_but_not_acks_or_other_frames() {
        let mut bytes = PREFACE.to_vec();
        bytes.extend(frame(SETTINGS, 0, 6));
        bytes.extend(frame(SETTINGS, ACK, 0));
        bytes.extend(frame(PING, 0, 8));
        bytes.extend(frame(PING, ACK, 8));
        bytes.extend(frame(0x1, 0x4, 20)); // HEADERS
                                           // A DATA payload that happens to look like a PING frame header.
        let mut data = frame(0x0, 0, 9);
        data[FRAME_HEADER..].copy_from_slice(&frame(PING, 0, 0));
        bytes.extend(data);
        let mut c = ControlFrameCounter::default();
        assert_eq!(c.feed(&bytes), 2);
    }

    #[test]
    fn frames_split_across_reads_count_once() {
        let mut bytes = PREFACE.to_vec();
        for _ in 0..10 {
            bytes.extend(frame(PING, 0, 8));
        }
        for chunk in [1, 2, 5, 9, 13] {
            let mut c = ControlFrameCounter::default();
            let total: u32 = bytes.chunks(chunk).map(|b| c.feed(b)).sum();
            assert_eq!(total, 10, "chunks of {chunk}");
        }
    }

    #[test]
    fn the_budget_allows_a_burst_then_a_rate() {
        let t0 = Instant::now();
        let mut b = ControlBudget::new(10, 5, t0);
        assert!(b.spend(10, t0));
        assert!(!b.spend(1, t0));
        // One second refills five, never more than the burst.
        let mut b = ControlBudget::new(10, 5, t0);
        assert!(b.spend(10, t0));
        assert!(b.spend(5, t0 + Duration::from_secs(1)));
        assert!(!b.spend(1, t0 + Duration::from_secs(1)));
        let mut b = ControlBudget::new(10, 5, t0);
        assert!(!b.spend(11, t0 + Duration::from_secs(3600)));
    }
}
