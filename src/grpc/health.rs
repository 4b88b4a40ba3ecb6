//! The two messages of `grpc.health.v1.Health/Check`, encoded by hand: the
//! gateway needs exactly these and no protobuf toolchain.
//!
//! ```proto
//! message HealthCheckRequest { string service = 1; }
//! message HealthCheckResponse { ServingStatus status = 1; }  // SERVING = 1
//! ```
//! Each travels in a gRPC length-prefixed frame: a compressed flag byte, a
//! 4-byte big-endian length, the message.

use bytes::{BufMut, Bytes, BytesMut};

pub const PATH: &str = "/grpc.health.v1.Health/Check";

/// `ServingStatus.SERVING`.
const SERVING: u64 = 1;

/// The framed `HealthCheckRequest` for `service` ("" = the whole server).
pub fn request(service: &str) -> Bytes {
    let mut msg = BytesMut::new();
    if !service.is_empty() {
        msg.put_u8(0x0a); // field 1, length-delimited
        put_varint(&mut msg, service.len() as u64);
        msg.put_slice(service.as_bytes());
    }
    let mut frame = BytesMut::with_capacity(5 + msg.len());
    frame.put_u8(0);
    frame.put_u32(msg.len() as u32);
    frame.put_slice(&msg);
    frame.freeze()
}

/// The `status` of a framed `HealthCheckResponse` (0, UNKNOWN, when absent),
/// or an error saying what is wrong with the bytes.
pub fn serving_status(body: &[u8]) -> Result<u64, &'static str> {
    let [flag, l0, l1, l2, l3, msg @ ..] = body else {
        return Err("response shorter than a gRPC frame header");
    };
    if *flag != 0 {
        return Err("compressed response (none was offered)");
    }
    let len = u32::from_be_bytes([*l0, *l1, *l2, *l3]) as usize;
    let mut msg = msg.get(..len).ok_or("truncated response message")?;
    let mut status = 0;
    while let Some((&key, rest)) = msg.split_first() {
        msg = rest;
        let (field, wire) = (key >> 3, key & 7);
        match wire {
            0 => {
                let v = take_varint(&mut msg)?;
                if field == 1 {
                    status = v;
                }
            }
            2 => {
                let n = take_varint(&mut msg)? as usize;
                msg = msg.get(n..).ok_or("truncated field")?;
            }
            _ => return Err("unexpected field type in response"),
        }
    }
    Ok(status)
}

/// Whether a health response says the service is serving.
pub fn is_serving(body: &[u8]) -> Result<bool, &'static str> {
    serving_status(body).map(|s| s == SERVING)
}

fn put_varint(buf: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

fn take_varint(buf: &mut &[u8]) -> Result<u64, &'static str> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = buf.split_first().ok_or("truncated varint")?;
        *buf = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Ok(v);
        }
    }
    Err("varint too long")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_service_is_an_empty_message() {
        assert_eq!(&request("")[..], &[0, 0, 0, 0, 0]);
    }

    #[test]
    fn a_named_service_is_field_one() {
        assert_eq!(&request("ab")[..], &[0, 0, 0, 0, 4, 0x0a, 2, b'a', b'b']);
    }

    #[test]
    fn statuses_decode() {
        assert_eq!(is_serving(&[0, 0, 0, 0, 2, 0x08, 1]), Ok(true));
        assert_eq!(is_serving(&[0, 0, 0, 0, 2, 0x08, 2]), Ok(false));
        // proto3 leaves out a default value: UNKNOWN.
        assert_eq!(serving_status(&[0, 0, 0, 0, 0]), Ok(0));
        // An unknown length-delimited field is skipped.
        assert_eq!(
            serving_status(&[0, 0, 0, 0, 5, 0x12, 1, b'x', 0x08, 1]),
            Ok(1)
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(serving_status(&[0, 0]).is_err());
        assert!(serving_status(&[1, 0, 0, 0, 0]).is_err());
        assert!(serving_status(&[0, 0, 0, 0, 9, 0x08]).is_err());
        assert!(serving_status(&[0, 0, 0, 0, 1, 0x08]).is_err());
        assert!(serving_status(&[0, 0, 0, 0, 2, 0x0b, 1]).is_err());
    }
}
