//! The honest renderer's calls through the web-facing API (`cos_renderer`), with hash and
//! `origins` strings of any shape, and the final check that it still stores and reads.

use cos_common::interface::{DATA_CHUNK_BYTES, FrameId};
use cos_common::{AllowOriginCeiling, ContentHash, CosError, OriginsOption, Partition};
use cos_renderer::{CosOptions, CrossOriginStorageManager, ScriptContext, block_on};
use cos_test_support::callers;

use super::driver::World;
use super::input::{HashText, HonestOrigins};
use super::{CONTENTS, Caller, HASHES, HONEST_FRAMES};

impl World {
    fn honest_manager(&self, second: bool) -> (CrossOriginStorageManager, Caller) {
        let (frame, url) = HONEST_FRAMES[usize::from(second)];
        let context = ScriptContext {
            frame: FrameId(frame),
            secure_context: true,
            policy_allows: true,
            service_worker: false,
            opaque_origin: false,
        };
        let manager = CrossOriginStorageManager::new(self.honest.clone(), context).expect("a secure context");
        let caller = Caller {
            origin: callers::origin(url),
            partition: Partition::Regular,
            ceiling: AllowOriginCeiling::empty(),
        };
        (manager, caller)
    }

    pub(super) fn honest_store(&mut self, second: bool, content: usize, origins: &HonestOrigins, hash: &HashText) {
        let (manager, caller) = self.honest_manager(second);
        let dict = hash.dict();
        let input = origins.input();
        let parsed_hash = ContentHash::parse(&dict.algorithm, &dict.value);
        let parsed_origins = OriginsOption::parse(&input);
        let bytes = &CONTENTS[content];
        let outcome = block_on(async {
            let options = CosOptions { create: true, origins: input };
            let handle = manager.get_file_handle(&dict, &options).await?;
            let mut writer = handle.create_writable(false).await?;
            for piece in bytes.chunks(DATA_CHUNK_BYTES) {
                writer.write(piece)?;
            }
            writer.close()?;
            handle.get_file().await?.read_all()
        });
        let (Ok(hash), Ok(requested)) = (parsed_hash, parsed_origins) else {
            assert!(matches!(outcome, Err(CosError::Type(_))), "invalid input must be a TypeError: {outcome:?}");
            return;
        };
        match outcome {
            Ok(read) => {
                assert_eq!(hash, HASHES[content], "a write verified against another hash");
                assert!(read == *bytes, "a verified entry reads back other bytes");
                self.model.commit(&caller, content, &requested);
            }
            Err(CosError::Data(_)) => assert_ne!(hash, HASHES[content], "the right bytes failed to verify"),
            Err(CosError::QuotaExceeded(_) | CosError::NotFound) => {}
            Err(other) => panic!("honest store: {other:?}"),
        }
    }

    pub(super) fn honest_read(&mut self, second: bool, hash: &HashText) {
        let (manager, caller) = self.honest_manager(second);
        let dict = hash.dict();
        let outcome = block_on(async {
            let handle = manager.get_file_handle(&dict, &CosOptions::default()).await?;
            handle.get_file().await?.read_all()
        });
        let Ok(hash) = ContentHash::parse(&dict.algorithm, &dict.value) else {
            assert!(matches!(outcome, Err(CosError::Type(_))), "an invalid hash must be a TypeError: {outcome:?}");
            return;
        };
        match outcome {
            Ok(bytes) => {
                assert_eq!(callers::hash_of(&bytes), hash, "a read returned bytes of another hash");
                let c = (0..4).find(|&c| HASHES[c] == hash).expect("only contents can be stored");
                assert!(self.model.may_read(Partition::Regular, c, &caller.origin), "read outside the grants");
            }
            Err(CosError::NotFound) => {}
            Err(other) => panic!("honest read: {other:?}"),
        }
    }

    /// After the sequence: the service answers, and the honest renderer stores and reads.
    pub(super) fn still_works(&mut self) {
        self.host.ping().expect("the service still answers");
        self.honest_store(false, 1, &HonestOrigins::Absent, &HashText::Content(1));
        let (manager, _) = self.honest_manager(false);
        let dict = HashText::Content(1).dict();
        let read = block_on(async {
            manager.get_file_handle(&dict, &CosOptions::default()).await?.get_file().await?.read_all()
        });
        assert_eq!(read.as_deref(), Ok(CONTENTS[1].as_slice()), "the honest renderer reads what it stored");
    }
}
