//! The actions a `renderer_actions` input is made of, as [`arbitrary`] builds them from fuzzer
//! bytes: what the compromised renderer sends, what the honest renderer calls, what the browser
//! does.

use arbitrary::Arbitrary;
use cos_common::OriginsInput;
use cos_renderer::CosHashDict;

#[cfg(doc)]
use super::ATTACKER_SLOTS;
use super::{HASHES, ORIGIN_POOL};

#[derive(Debug, Arbitrary)]
pub(super) enum FrameChoice {
    /// One of the attacker's own documents (slot modulo [`ATTACKER_SLOTS`]).
    Own(u8),
    /// A document of the honest renderer.
    Foreign(bool),
    /// A frame id nobody registered.
    Unknown(u32),
}

#[derive(Debug, Arbitrary)]
pub(super) enum HashChoice {
    Content(u8),
    Raw([u8; 32]),
}

#[derive(Debug, Arbitrary)]
pub(super) enum OriginsChoice {
    Omitted,
    Global,
    /// Pool indices (duplicates removed; empty means omitted).
    List(Vec<u8>),
}

#[derive(Debug, Arbitrary)]
pub(super) enum HandleChoice {
    /// A handle this incarnation received (index modulo their number).
    Received(u8),
    /// Any id at all.
    Any(u64),
}

#[derive(Debug, Clone, Copy, Arbitrary)]
pub(super) enum Position {
    Small(u16),
    Any(u64),
}

impl Position {
    pub(super) fn get(self) -> u64 {
        match self {
            Self::Small(n) => u64::from(n),
            Self::Any(n) => n,
        }
    }
}

#[derive(Debug, Arbitrary)]
pub(super) enum DataChoice {
    /// A piece of a content.
    Piece { content: u8, start: u16, len: u16 },
    /// Bytes of the fuzzer's choosing.
    Bytes(Vec<u8>),
    /// One byte more than a data frame may carry: a protocol violation.
    Oversized,
}

#[derive(Debug, Arbitrary)]
pub(super) enum HashText {
    /// The content's hex digest, as clients send it.
    Content(u8),
    /// The content's digest in upper case.
    Upper(u8),
    /// Any value.
    Text(String),
    /// Any algorithm name with a content's digest.
    Algorithm(String, u8),
}

impl HashText {
    pub(super) fn dict(&self) -> CosHashDict {
        let hex = |c: &u8| HASHES[usize::from(*c) % 4].to_hex();
        match self {
            Self::Content(c) => CosHashDict::sha256(hex(c)),
            Self::Upper(c) => CosHashDict::sha256(hex(c).to_uppercase()),
            Self::Text(text) => CosHashDict::sha256(text.clone()),
            Self::Algorithm(algorithm, c) => CosHashDict { algorithm: algorithm.clone(), value: hex(c) },
        }
    }
}

#[derive(Debug, Arbitrary)]
pub(super) enum HonestOrigins {
    Absent,
    Star,
    Pool(Vec<u8>),
    Strings(Vec<String>),
}

impl HonestOrigins {
    pub(super) fn input(&self) -> OriginsInput {
        match self {
            Self::Absent => OriginsInput::Absent,
            Self::Star => OriginsInput::Single("*".into()),
            Self::Pool(indices) => OriginsInput::Sequence(
                indices.iter().map(|&i| ORIGIN_POOL[usize::from(i) % ORIGIN_POOL.len()].to_owned()).collect(),
            ),
            Self::Strings(strings) if strings.len() == 1 => OriginsInput::Single(strings[0].clone()),
            Self::Strings(strings) => OriginsInput::Sequence(strings.clone()),
        }
    }
}

#[derive(Debug, Arbitrary)]
pub(super) enum Action {
    GetFileHandle {
        frame: FrameChoice,
        hash: HashChoice,
        create: bool,
        origins: OriginsChoice,
    },
    GetFile {
        handle: HandleChoice,
        frame: FrameChoice,
    },
    CreateWritable {
        handle: HandleChoice,
        frame: FrameChoice,
    },
    ReleaseHandle {
        handle: HandleChoice,
    },
    Write {
        writer: u8,
        position: Option<Position>,
        data: DataChoice,
    },
    /// Writes the handle's whole content at the cursor, chunk by chunk.
    WriteContent {
        writer: u8,
    },
    Seek {
        writer: u8,
        position: Position,
    },
    Truncate {
        writer: u8,
        size: Position,
    },
    Close {
        writer: u8,
    },
    Abort {
        writer: u8,
    },
    DropWriter {
        writer: u8,
    },
    RawWriterFrame {
        writer: u8,
        bytes: Vec<u8>,
    },
    Read {
        reader: u8,
        offset: Position,
        len: Position,
    },
    RawReaderMessage {
        reader: u8,
        bytes: Vec<u8>,
    },
    DropReader {
        reader: u8,
    },
    RawBrokerMessage(Vec<u8>),
    MessageWithAttachment,
    /// `n` requests without waiting for answers.
    Flood {
        n: u16,
    },
    /// The renderer process goes away (a new one takes its place at the next attacker action).
    Disconnect,
    /// The storage service crashes; the browser restarts it and binds every broker again.
    RestartService,
    UserActivation {
        frame: FrameChoice,
    },
    ClearSiteData {
        origin: u8,
    },
    HonestStore {
        frame: bool,
        content: u8,
        origins: HonestOrigins,
        hash: HashText,
    },
    HonestRead {
        frame: bool,
        hash: HashText,
    },
}
