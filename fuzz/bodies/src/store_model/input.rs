//! The operations a `store_model` sequence is made of, how fuzzer bytes choose them, and the
//! stream calls each one stands for.

use arbitrary::{Arbitrary, Unstructured};

use super::{CONTENTS, MAX_ENTRY_BYTES, ORIGINS, READ_SLOTS, SLOTS};

#[derive(Debug, Clone, Copy)]
pub(super) enum Requested {
    Omitted,
    /// A list of the origins in the bit mask (never empty).
    List(u8),
    Global,
}

/// What a `Write` op writes, relative to the slot's target content.
#[derive(Debug, Clone, Copy)]
pub(super) enum Payload {
    Exact,
    FlipLast,
    ExtraByte,
    DropLast,
    Other(usize),
    /// Longer than any entry may be.
    Oversized,
}

/// How the payload is written; the number picks the split point (modulo `len + 1`).
#[derive(Debug, Clone, Copy)]
pub(super) enum Split {
    /// One `write(data)` at the cursor.
    Whole,
    /// `write(head)`, `write(tail)` at the cursor.
    InOrder(usize),
    /// `write({position: k, data: tail})`, then `write({position: 0, data: head})`.
    OutOfOrder(usize),
}

#[derive(Debug, Clone)]
pub(super) enum Op {
    /// `getFileHandle(hash, {create: true, origins})` by `origin` under an Allow-Origin ceiling
    /// (bit mask), then `createWritable()`.
    Create {
        slot: usize,
        origin: usize,
        content: usize,
        origins: Requested,
        ceiling: u8,
    },
    /// The common client pattern (SPEC §9): `Create`, a `Write` of the exact bytes, `Close`.
    Store {
        slot: usize,
        origin: usize,
        content: usize,
        origins: Requested,
        ceiling: u8,
        split: Split,
    },
    /// A fresh `createWritable()` on the slot's handle (the previous writer, if any, is dropped).
    NewWritable {
        slot: usize,
    },
    Write {
        slot: usize,
        payload: Payload,
        split: Split,
    },
    /// Writes `target[start..start + len]` (clamped, possibly empty) at `start` or at the cursor.
    Patch {
        slot: usize,
        start: usize,
        len: usize,
        at_cursor: bool,
    },
    Seek {
        slot: usize,
        pos: u64,
    },
    Truncate {
        slot: usize,
        len: u64,
    },
    Close {
        slot: usize,
    },
    Abort {
        slot: usize,
    },
    /// `getFileHandle(hash)` by `origin`, then `getFile()`.
    Read {
        origin: usize,
        content: usize,
    },
    /// `getFile()` on the slot's create handle.
    ReadViaCreateHandle {
        slot: usize,
    },
    /// `getFileHandle(hash)` by `origin`, kept in a read slot (replacing what it held).
    OpenRead {
        slot: usize,
        origin: usize,
        content: usize,
    },
    /// `getFile()` on a kept read handle.
    ReadViaReadHandle {
        slot: usize,
    },
    ClearSiteData {
        origin: usize,
    },
    /// Drops every handle and writer, then the service (after a clean shutdown, or as in a
    /// crash), and reopens the same directory.
    Restart {
        clean: bool,
    },
}

/// Builds a sequence from fuzzer bytes, with the proptest's weights (`tests.rs`). Positions
/// and sizes are mostly small, where the contents live, and now and then anything a `u64` holds.
impl<'a> Arbitrary<'a> for Op {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let slot = u.choose_index(SLOTS)?;
        let origin = u.choose_index(ORIGINS.len())?;
        let content = u.choose_index(CONTENTS.len())?;
        Ok(match u.int_in_range(0u8..=42)? {
            0..=3 => Op::Create { slot, origin, content, origins: requested(u)?, ceiling: ceiling(u)? },
            4..=7 => {
                Op::Store { slot, origin, content, origins: requested(u)?, ceiling: ceiling(u)?, split: split(u)? }
            }
            8 => Op::NewWritable { slot },
            9..=16 => Op::Write { slot, payload: payload(u)?, split: split(u)? },
            17..=18 => Op::Patch {
                slot,
                start: u.int_in_range(0..=23)?,
                len: u.int_in_range(0..=3)?,
                at_cursor: u.arbitrary()?,
            },
            19..=20 => Op::Seek { slot, pos: position(u, 31)? },
            21..=22 => Op::Truncate { slot, len: position(u, 27)? },
            23..=27 => Op::Close { slot },
            28 => Op::Abort { slot },
            29..=34 => Op::Read { origin, content },
            35..=36 => Op::ReadViaCreateHandle { slot },
            37 => Op::ClearSiteData { origin },
            38..=39 => Op::OpenRead { slot: slot % READ_SLOTS, origin, content },
            40..=41 => Op::ReadViaReadHandle { slot: slot % READ_SLOTS },
            _ => Op::Restart { clean: u.arbitrary()? },
        })
    }
}

pub(super) fn requested(u: &mut Unstructured<'_>) -> arbitrary::Result<Requested> {
    Ok(match u.int_in_range(0u8..=4)? {
        0..=1 => Requested::Omitted,
        2..=3 => Requested::List(u.int_in_range(1..=31)?),
        _ => Requested::Global,
    })
}

pub(super) fn ceiling(u: &mut Unstructured<'_>) -> arbitrary::Result<u8> {
    Ok(match u.int_in_range(0u8..=2)? {
        0 => 0b1_1111,
        1 => 0,
        _ => u.int_in_range(0..=31)?,
    })
}

pub(super) fn payload(u: &mut Unstructured<'_>) -> arbitrary::Result<Payload> {
    Ok(match u.int_in_range(0u8..=12)? {
        0..=7 => Payload::Exact,
        8 => Payload::FlipLast,
        9 => Payload::ExtraByte,
        10 => Payload::DropLast,
        11 => Payload::Other(u.choose_index(CONTENTS.len())?),
        _ => Payload::Oversized,
    })
}

pub(super) fn split(u: &mut Unstructured<'_>) -> arbitrary::Result<Split> {
    Ok(match u.int_in_range(0u8..=3)? {
        0..=1 => Split::Whole,
        2 => Split::InOrder(u.int_in_range(0..=31)?),
        _ => Split::OutOfOrder(u.int_in_range(0..=31)?),
    })
}

pub(super) fn position(u: &mut Unstructured<'_>, small: u64) -> arbitrary::Result<u64> {
    if u.ratio(1u8, 16)? { u.arbitrary() } else { u.int_in_range(0..=small) }
}

/// Compound ops as the primitive ops they stand for.
pub(super) fn expand(op: &Op) -> Vec<Op> {
    match *op {
        Op::Store { slot, origin, content, origins, ceiling, split } => vec![
            Op::Create { slot, origin, content, origins, ceiling },
            Op::Write { slot, payload: Payload::Exact, split },
            Op::Close { slot },
        ],
        ref other => vec![other.clone()],
    }
}

/// One call on a writable stream.
#[derive(Debug, Clone)]
pub(super) enum Step {
    Write(Vec<u8>),
    WriteAt(u64, Vec<u8>),
    Seek(u64),
    Truncate(u64),
}

fn payload_bytes(target: usize, payload: Payload) -> Vec<u8> {
    let exact = CONTENTS[target].to_vec();
    match payload {
        Payload::Exact => exact,
        Payload::FlipLast => {
            let mut bytes = exact;
            match bytes.last_mut() {
                Some(last) => *last ^= 1,
                None => bytes.push(b'Z'),
            }
            bytes
        }
        Payload::ExtraByte => [exact.as_slice(), b"!"].concat(),
        Payload::DropLast => exact[..exact.len().saturating_sub(1)].to_vec(),
        Payload::Other(c) => CONTENTS[c].to_vec(),
        Payload::Oversized => vec![b'z'; MAX_ENTRY_BYTES as usize + 2],
    }
}

/// The stream calls an op makes on the writer of a slot whose target is `target`. Zero-length
/// writes are included on purpose: past the end they still zero-fill (File System Standard).
pub(super) fn steps(op: &Op, target: usize) -> Vec<Step> {
    match *op {
        Op::Write { payload, split, .. } => {
            let bytes = payload_bytes(target, payload);
            match split {
                Split::Whole => vec![Step::Write(bytes)],
                Split::InOrder(n) => {
                    let k = n % (bytes.len() + 1);
                    vec![Step::Write(bytes[..k].to_vec()), Step::Write(bytes[k..].to_vec())]
                }
                Split::OutOfOrder(n) => {
                    let k = n % (bytes.len() + 1);
                    vec![Step::WriteAt(k as u64, bytes[k..].to_vec()), Step::WriteAt(0, bytes[..k].to_vec())]
                }
            }
        }
        Op::Patch { start, len, at_cursor, .. } => {
            let content = CONTENTS[target];
            let start = start.min(content.len());
            let piece = content[start..(start + len).min(content.len())].to_vec();
            vec![if at_cursor { Step::Write(piece) } else { Step::WriteAt(start as u64, piece) }]
        }
        Op::Seek { pos, .. } => vec![Step::Seek(pos)],
        Op::Truncate { len, .. } => vec![Step::Truncate(len)],
        _ => Vec::new(),
    }
}
