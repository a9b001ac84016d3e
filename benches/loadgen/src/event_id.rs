//! Event ids as the load generator understands them: a hash that names the event across clients
//! (for the fan-out spread), and, when the id has a known shape, the numbers inside it (for gap,
//! duplicate and latency checks). It does no I/O and keeps no per-client state.
//!
//! Known shapes:
//! - ssecast: `<sequence>.<unix ms when the fragment went live>`, e.g. `1234.1732400000123`;
//! - nchan: `<unix seconds>:<tag>`, e.g. `1732400000:0` — ordered, but neither contiguous nor
//!   precise enough for latency, so only duplicates are checked.
//!
//! Anything else is opaque: it is counted and used for the spread, nothing more.

/// What an id says, as far as the load generator can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdShape {
    /// `<seq>.<ms>`: contiguous sequence numbers and the wall-clock time the event went live.
    SeqMillis {
        seq: u64,
        millis: u64,
    },
    /// `<time>:<tag>`: ordered by (time, tag).
    TimeTag {
        time: u64,
        tag: u64,
    },
    Opaque,
}

/// One received event id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventId {
    /// FNV-1a hash of the id's bytes: the same id on every client gives the same hash.
    pub hash: u64,
    pub shape: IdShape,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Longest id whose shape is parsed; longer ids are still hashed whole but are opaque
/// (two 20-digit numbers and a separator fit).
pub const SHAPE_MAX: usize = 48;

/// Builds an [`EventId`] from an id value that may arrive in several pieces. It keeps only the
/// first [`SHAPE_MAX`] bytes, so memory per client stays fixed whatever the server sends.
#[derive(Clone)]
pub struct IdBuilder {
    hash: u64,
    len: usize,
    head: [u8; SHAPE_MAX],
}

impl Default for IdBuilder {
    fn default() -> Self {
        IdBuilder {
            hash: FNV_OFFSET,
            len: 0,
            head: [0; SHAPE_MAX],
        }
    }
}

impl IdBuilder {
    pub fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.hash = (self.hash ^ u64::from(b)).wrapping_mul(FNV_PRIME);
        }
        if self.len < SHAPE_MAX {
            let take = bytes.len().min(SHAPE_MAX - self.len);
            self.head[self.len..self.len + take].copy_from_slice(&bytes[..take]);
        }
        self.len = self.len.saturating_add(bytes.len());
    }

    pub fn finish(&self) -> EventId {
        let shape = if self.len <= SHAPE_MAX {
            parse_shape(&self.head[..self.len])
        } else {
            IdShape::Opaque
        };
        EventId {
            hash: self.hash,
            shape,
        }
    }
}

/// The shape of a complete id value.
pub fn parse_shape(id: &[u8]) -> IdShape {
    let Some(sep) = id.iter().position(|&b| b == b'.' || b == b':') else {
        return IdShape::Opaque;
    };
    let (Some(a), Some(b)) = (parse_u64(&id[..sep]), parse_u64(&id[sep + 1..])) else {
        return IdShape::Opaque;
    };
    if id[sep] == b'.' {
        IdShape::SeqMillis { seq: a, millis: b }
    } else {
        IdShape::TimeTag { time: a, tag: b }
    }
}

/// Decimal digits only (no sign, no spaces), at least one, no overflow.
fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        if !d.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> EventId {
        let mut b = IdBuilder::default();
        b.push(s.as_bytes());
        b.finish()
    }

    #[test]
    fn ssecast_ids_give_sequence_and_millis() {
        assert_eq!(
            parse_shape(b"1234.1732400000123"),
            IdShape::SeqMillis {
                seq: 1234,
                millis: 1_732_400_000_123
            }
        );
        assert_eq!(
            parse_shape(b"0.0"),
            IdShape::SeqMillis { seq: 0, millis: 0 }
        );
    }

    #[test]
    fn nchan_ids_give_time_and_tag() {
        assert_eq!(
            parse_shape(b"1732400000:3"),
            IdShape::TimeTag {
                time: 1_732_400_000,
                tag: 3
            }
        );
    }

    #[test]
    fn other_ids_are_opaque() {
        for s in [
            "",
            "abc",
            "12",
            "12.",
            ".12",
            "1.2.3",
            "1:2:3",
            "-1.2",
            " 1.2",
            "1.2 ",
            "99999999999999999999.1",
            "1732400000:[0]",
            "1,2:3,4",
        ] {
            assert_eq!(parse_shape(s.as_bytes()), IdShape::Opaque, "{s:?}");
        }
    }

    #[test]
    fn pieces_give_the_same_id_as_the_whole() {
        let whole = id("1234.1732400000123");
        for split in 0..=18 {
            let (a, b) = "1234.1732400000123".split_at(split);
            let mut builder = IdBuilder::default();
            builder.push(a.as_bytes());
            builder.push(b.as_bytes());
            assert_eq!(builder.finish(), whole, "split at {split}");
        }
    }

    #[test]
    fn different_ids_hash_differently_and_long_ids_are_opaque() {
        assert_ne!(id("1.5").hash, id("2.5").hash);
        let long = "7".repeat(SHAPE_MAX + 1);
        assert_eq!(id(&long).shape, IdShape::Opaque);
        assert_ne!(id(&long).hash, id(&long[..SHAPE_MAX]).hash);
    }
}
