//! ISO BMFF boxes: reading a box header ([`read_box`]), iterating the boxes of a range or a
//! parent ([`Boxes`]), finding a child, reading big-endian fields with every length checked, and
//! changing a box's size field in place. Knows nothing of what any box means.

use super::Mp4Error;
use std::ops::Range;

/// One box: its type and where its header and body are in the buffer it was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoxRef {
    pub box_type: [u8; 4],
    pub start: usize,
    pub body: usize,
    pub end: usize,
}

impl BoxRef {
    pub fn range(&self) -> Range<usize> {
        self.start..self.end
    }
}

/// Iterates the boxes laid out back to back in `data[start..end]`.
pub struct Boxes<'a> {
    data: &'a [u8],
    pos: usize,
    end: usize,
    failed: bool,
}

impl<'a> Boxes<'a> {
    pub fn new(data: &'a [u8], range: Range<usize>) -> Self {
        let end = range.end.min(data.len());
        Boxes {
            data,
            pos: range.start,
            end,
            failed: false,
        }
    }

    /// The children of a box.
    pub fn children(data: &'a [u8], parent: &BoxRef) -> Self {
        Boxes::new(data, parent.body..parent.end)
    }
}

impl Iterator for Boxes<'_> {
    type Item = Result<BoxRef, Mp4Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.end {
            return None;
        }
        let r = read_box(self.data, self.pos, self.end);
        match r {
            Ok(b) => self.pos = b.end,
            Err(_) => self.failed = true,
        }
        Some(r)
    }
}

/// Reads the box header at `pos`; the box must end by `end`.
pub fn read_box(data: &[u8], pos: usize, end: usize) -> Result<BoxRef, Mp4Error> {
    let truncated = Mp4Error::Truncated {
        offset: pos,
        what: "a box header",
    };
    if end.saturating_sub(pos) < 8 {
        return Err(truncated);
    }
    let size32 = be32(data, pos).ok_or(truncated.clone())?;
    let mut box_type = [0u8; 4];
    box_type.copy_from_slice(&data[pos + 4..pos + 8]);
    let (size, header) = match size32 {
        0 => ((end - pos) as u64, 8usize),
        1 => {
            if end - pos < 16 {
                return Err(truncated);
            }
            (be64(data, pos + 8).ok_or(truncated)?, 16)
        }
        n => (u64::from(n), 8),
    };
    let bad = Mp4Error::BadBoxSize {
        offset: pos,
        box_type,
        size,
    };
    if size < header as u64 {
        return Err(bad);
    }
    let box_end = match usize::try_from(size).ok().and_then(|s| pos.checked_add(s)) {
        Some(e) if e <= end => e,
        Some(_) if end == data.len() => {
            return Err(Mp4Error::Truncated {
                offset: pos,
                what: "a box",
            })
        }
        _ => return Err(bad),
    };
    Ok(BoxRef {
        box_type,
        start: pos,
        body: pos + header,
        end: box_end,
    })
}

pub(super) fn be16(d: &[u8], at: usize) -> Option<u16> {
    let b = d.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

pub(super) fn be32(d: &[u8], at: usize) -> Option<u32> {
    let b = d.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

pub(super) fn be64(d: &[u8], at: usize) -> Option<u64> {
    let b = d.get(at..at.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    Some(u64::from_be_bytes(a))
}

pub(super) fn find_child(
    data: &[u8],
    parent: &BoxRef,
    t: &[u8; 4],
) -> Result<Option<BoxRef>, Mp4Error> {
    for b in Boxes::children(data, parent) {
        let b = b?;
        if &b.box_type == t {
            return Ok(Some(b));
        }
    }
    Ok(None)
}

pub(super) fn require_child(
    data: &[u8],
    parent: &BoxRef,
    t: &'static str,
    parent_name: &'static str,
) -> Result<BoxRef, Mp4Error> {
    let mut want = [0u8; 4];
    want.copy_from_slice(&t.as_bytes()[..4]);
    find_child(data, parent, &want)?.ok_or(Mp4Error::MissingBox {
        offset: parent.start,
        parent: parent_name,
        child: t,
    })
}

/// The box at `at`, which must be of type `t` and end exactly where `data` does: a piece that
/// should hold that one box and nothing after it. `expected` names the box for the error.
pub(super) fn expect_box(
    data: &[u8],
    at: usize,
    t: &[u8; 4],
    expected: &'static str,
) -> Result<BoxRef, Mp4Error> {
    let b = read_box(data, at, data.len())?;
    if &b.box_type != t {
        return Err(Mp4Error::UnexpectedBox {
            offset: at,
            found: b.box_type,
            expected,
        });
    }
    if b.end != data.len() {
        return Err(Mp4Error::TrailingBytes {
            offset: b.end,
            len: data.len() - b.end,
        });
    }
    Ok(b)
}

/// `v`, or an error naming `what` at `offset` when the field ran past the end.
pub(super) fn field<T>(v: Option<T>, offset: usize, what: &'static str) -> Result<T, Mp4Error> {
    v.ok_or(Mp4Error::Truncated { offset, what })
}

pub(super) fn put32(buf: &mut [u8], at: usize, value: u32) {
    if let Some(f) = buf.get_mut(at..at.saturating_add(4)) {
        f.copy_from_slice(&value.to_be_bytes());
    }
}

/// Where the size field of the box at `at` is, whether it is the 64-bit one, and what it would say
/// with the box `by` bytes longer; `None` when the box has no size to change (size 0: "to the
/// end") or the new size would not fit its field or its header.
pub(super) fn box_size_after(buf: &[u8], at: usize, by: i64) -> Option<(usize, bool, u64)> {
    let (field_at, wide, size, header) = match be32(buf, at)? {
        0 => return None,
        1 => {
            let field_at = at.checked_add(8)?;
            (field_at, true, be64(buf, field_at)?, 16)
        }
        n => (at, false, u64::from(n), 8),
    };
    let new = i128::from(size) + i128::from(by);
    let max = if wide {
        i128::from(u64::MAX)
    } else {
        i128::from(u32::MAX)
    };
    if new < header || new > max {
        return None;
    }
    Some((field_at, wide, u64::try_from(new).ok()?))
}

/// Makes the box at `at` `by` bytes longer (or shorter) in its size field, if it can say so.
pub(super) fn resize_box(buf: &mut [u8], at: usize, by: i64) {
    match box_size_after(buf, at, by) {
        Some((field_at, true, size)) => {
            if let Some(f) = buf.get_mut(field_at..field_at + 8) {
                f.copy_from_slice(&size.to_be_bytes());
            }
        }
        Some((field_at, false, size)) => put32(buf, field_at, size as u32),
        None => {}
    }
}
