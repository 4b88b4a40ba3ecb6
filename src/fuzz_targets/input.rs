//! How the targets read their bytes: as lines, or as a stream of integers.

/// The input as lines, split on `\n` only: any other byte, `\r` included, is
/// part of a line so the targets see it.
pub(super) fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    data.split(|b| *b == b'\n')
}

/// A reader of the bytes that drive the binary-shaped targets: past the end
/// every read is zero, so every input decodes to something.
pub(super) struct Bytes<'a>(pub(super) &'a [u8]);

impl Bytes<'_> {
    pub(super) fn u8(&mut self) -> u8 {
        match self.0 {
            [first, rest @ ..] => {
                self.0 = rest;
                *first
            }
            [] => 0,
        }
    }

    pub(super) fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
