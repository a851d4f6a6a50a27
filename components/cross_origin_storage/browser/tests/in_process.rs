//! The whole stack in one process over the in-process transport: `cos_renderer`'s API as a DOM
//! binding calls it, through a broker stub, to the storage service's request loop.

use cos_browser::{CosHost, FrameInfo};
use cos_common::interface::{FrameId, RendererId, ServiceProcessConfig, WriteWarning, WriteWarnings};
use cos_common::{AllowOriginCeiling, CosError, OffTheRecordProfileId, Origin, OriginsInput, Partition};
use cos_ipc::Endpoint;
use cos_renderer::{
    CosHashDict, CosOptions, CrossOriginStorageManager, FileSystemFileHandle, PermissionMode, PermissionState,
    RendererConnection, ScriptContext, block_on,
};
use cos_test_support::callers::sha256_hex as hex;
use cos_test_support::fixture::BrowserFixture;

struct World {
    host: CosHost,
    _profile: tempfile::TempDir,
}

impl World {
    fn new() -> Self {
        Self::with_limit(1 << 30)
    }

    fn with_limit(per_origin_bytes: u64) -> Self {
        Self::with(|config| config.per_origin_bytes = per_origin_bytes)
    }

    /// The service on threads of this process, with the fixture's configuration (4 GiB in all)
    /// adjusted by `adjust`.
    fn with(adjust: impl FnOnce(&mut ServiceProcessConfig)) -> Self {
        let BrowserFixture { host, profile } = BrowserFixture::start_in_process(|config| {
            config.total_bytes = 1 << 32;
            adjust(config);
        });
        Self { host, _profile: profile }
    }

    /// A renderer hosting one frame; returns its manager.
    fn frame(&self, renderer: u64, frame: u64, info: impl FnOnce(&mut FrameInfo)) -> CrossOriginStorageManager {
        self.frame_with_context(renderer, frame, info, |_| {})
    }

    fn frame_with_context(
        &self,
        renderer: u64,
        frame: u64,
        info: impl FnOnce(&mut FrameInfo),
        context: impl FnOnce(&mut ScriptContext),
    ) -> CrossOriginStorageManager {
        let mut frame_info = FrameInfo::top_level(RendererId(renderer), Origin::from_url("https://a.example").unwrap());
        info(&mut frame_info);
        self.host.frames().insert(FrameId(frame), frame_info);
        let (browser_end, renderer_end) = Endpoint::pair_in_process();
        self.host.register_renderer(RendererId(renderer), browser_end, || {});
        let mut script = ScriptContext {
            frame: FrameId(frame),
            secure_context: true,
            policy_allows: true,
            service_worker: false,
            opaque_origin: false,
        };
        context(&mut script);
        CrossOriginStorageManager::new(RendererConnection::new(renderer_end).unwrap(), script).unwrap()
    }
}

fn origin_of(url: &str) -> impl FnOnce(&mut FrameInfo) {
    let origin = Origin::from_url(url).unwrap();
    move |info| *info = FrameInfo::top_level(info.renderer, origin)
}

fn create() -> CosOptions {
    CosOptions { create: true, origins: OriginsInput::Absent }
}

fn store(
    manager: &CrossOriginStorageManager,
    bytes: &[u8],
    options: CosOptions,
) -> Result<FileSystemFileHandle, CosError> {
    block_on(async {
        let handle = manager.get_file_handle(&CosHashDict::sha256(hex(bytes)), &options).await?;
        let mut writer = handle.create_writable(false).await?;
        writer.write(bytes)?;
        writer.close()?;
        Ok(handle)
    })
}

fn read(manager: &CrossOriginStorageManager, bytes: &[u8]) -> Result<Vec<u8>, CosError> {
    block_on(async {
        let handle = manager.get_file_handle(&CosHashDict::sha256(hex(bytes)), &CosOptions::default()).await?;
        handle.get_file().await?.read_all()
    })
}

fn name(result: Result<impl Sized, CosError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(error) => error.name(),
    }
}

#[test]
fn insecure_contexts_have_no_attribute() {
    let (_, renderer_end) = Endpoint::pair_in_process();
    let connection = RendererConnection::new(renderer_end).unwrap();
    let context = ScriptContext {
        frame: FrameId(1),
        secure_context: false,
        policy_allows: true,
        service_worker: false,
        opaque_origin: false,
    };
    assert!(CrossOriginStorageManager::new(connection, context).is_none());
}

#[test]
fn invalid_input_is_a_type_error_for_reads_and_creates() {
    let world = World::new();
    let manager = world.frame(1, 1, |_| {});
    let value = hex(b"x");
    let bad_hashes = [
        CosHashDict { algorithm: "md5".into(), value: value.clone() },
        CosHashDict { algorithm: "SHA-1".into(), value: value.clone() },
        CosHashDict::sha256(&value[..63]),
        CosHashDict::sha256(format!("{value}0")),
        CosHashDict::sha256(value.to_uppercase()),
        CosHashDict::sha256(format!("{}g", &value[..63])),
    ];
    for hash in &bad_hashes {
        for options in [CosOptions::default(), create()] {
            assert_eq!(name(block_on(manager.get_file_handle(hash, &options))), "TypeError", "{hash:?}");
        }
    }
    let too_many = OriginsInput::Sequence((0..101).map(|i| format!("https://o{i}.example")).collect());
    for origins in
        [OriginsInput::Single("data:text/plain,x".into()), OriginsInput::Single("not a url".into()), too_many]
    {
        for create in [false, true] {
            let options = CosOptions { create, origins: origins.clone() };
            assert_eq!(name(block_on(manager.get_file_handle(&CosHashDict::sha256(&value), &options))), "TypeError");
        }
    }
    // A failed validation created nothing.
    assert_eq!(name(read(&manager, b"x")), "NotFoundError");
}

#[test]
fn lowercase_algorithm_names_the_same_entry() {
    let world = World::new();
    let manager = world.frame(1, 1, |_| {});
    store(&manager, b"case", create()).unwrap();
    let lower = CosHashDict { algorithm: "sha-256".into(), value: hex(b"case") };
    let handle = block_on(manager.get_file_handle(&lower, &CosOptions::default())).unwrap();
    assert_eq!(block_on(handle.get_file()).unwrap().read_all().unwrap(), b"case");
}

#[test]
fn who_may_call_is_checked_before_validation() {
    let world = World::new();
    let blocked = world.frame_with_context(1, 1, |_| {}, |c| c.policy_allows = false);
    let invalid = CosHashDict { algorithm: "md5".into(), value: "nope".into() };
    assert_eq!(name(block_on(blocked.get_file_handle(&invalid, &CosOptions::default()))), "NotAllowedError");
    let worker = world.frame_with_context(2, 2, |_| {}, |c| c.service_worker = true);
    assert_eq!(name(block_on(worker.get_file_handle(&invalid, &create()))), "NotAllowedError");
    let opaque = world.frame_with_context(3, 3, |_| {}, |c| c.opaque_origin = true);
    assert_eq!(name(block_on(opaque.get_file_handle(&invalid, &create()))), "NotAllowedError");
}

#[test]
fn the_broker_enforces_the_policy_even_if_the_renderer_lies() {
    let world = World::new();
    // The renderer believes the feature is enabled; the browser's frame table says otherwise.
    let lying = world.frame(1, 1, |info| info.cos_allowed = false);
    assert_eq!(name(store(&lying, b"x", create())), "NotAllowedError");
    let service_worker = world.frame(2, 2, |info| info.kind = cos_browser::ContextKind::ServiceWorker);
    assert_eq!(name(read(&service_worker, b"x")), "NotAllowedError");
    let opaque = world.frame(3, 3, |info| info.origin = cos_browser::FrameOrigin::Opaque);
    assert_eq!(name(read(&opaque, b"x")), "NotAllowedError");
}

#[test]
fn handle_surface() {
    let world = World::new();
    let manager = world.frame(1, 1, |_| {});
    let created = store(&manager, b"surface", create()).unwrap();
    let read_handle =
        block_on(manager.get_file_handle(&CosHashDict::sha256(hex(b"surface")), &CosOptions::default())).unwrap();
    assert_eq!(read_handle.kind(), "file");
    assert_eq!(read_handle.name(), hex(b"surface"));
    assert!(read_handle.is_same_entry(&created));
    assert_eq!(read_handle.query_permission(PermissionMode::Read), PermissionState::Granted);
    assert_eq!(read_handle.query_permission(PermissionMode::ReadWrite), PermissionState::Denied);
    assert_eq!(read_handle.request_permission(PermissionMode::ReadWrite), PermissionState::Denied);
    assert_eq!(created.query_permission(PermissionMode::ReadWrite), PermissionState::Granted);
    assert_eq!(name(read_handle.move_to()), "NotAllowedError");
    assert_eq!(name(read_handle.remove()), "NotAllowedError");
    assert_eq!(name(read_handle.create_sync_access_handle()), "InvalidStateError");
    assert_eq!(read(&manager, b"surface").unwrap(), b"surface", "move/remove left the entry alone");
    assert_eq!(name(block_on(read_handle.create_writable(false))), "NotAllowedError");
}

#[test]
fn create_handles_read_only_after_their_own_verified_write() {
    let world = World::new();
    let manager = world.frame(1, 1, |_| {});
    block_on(async {
        let handle = manager.get_file_handle(&CosHashDict::sha256(hex(b"mine")), &create()).await.unwrap();
        assert_eq!(name(handle.get_file().await), "NotAllowedError");
        let mut writer = handle.create_writable(true).await.unwrap();
        writer.write(b"mine").unwrap();
        // In flight: nobody can read it yet.
        assert_eq!(name(read(&manager, b"mine")), "NotFoundError");
        writer.close().unwrap();
        let file = handle.get_file().await.unwrap();
        assert_eq!((file.size(), file.name()), (4, hex(b"mine").as_str()));
        assert_eq!(file.read_range(1, 2).unwrap(), b"in");
    });
}

#[test]
fn verification_errors_and_retries() {
    let world = World::new();
    let manager = world.frame(1, 1, |_| {});
    block_on(async {
        let handle = manager.get_file_handle(&CosHashDict::sha256(hex(b"right")), &create()).await.unwrap();
        // keepExistingData still starts empty: closing at once is a DataError.
        assert_eq!(name(handle.create_writable(true).await.unwrap().close()), "DataError");
        let mut wrong = handle.create_writable(false).await.unwrap();
        wrong.write(b"wrong").unwrap();
        assert_eq!(name(wrong.close()), "DataError");
        assert_eq!(name(read(&manager, b"right")), "NotFoundError");
        // Seeks, overwrites and truncates: only the final bytes count.
        let mut writer = handle.create_writable(false).await.unwrap();
        writer.write(b"rXght, and more").unwrap();
        writer.write_at(1, b"i").unwrap();
        writer.truncate(5).unwrap();
        writer.seek(5).unwrap();
        writer.close().unwrap();
        assert_eq!(read(&manager, b"right").unwrap(), b"right");
    });
}

#[test]
fn write_errors_surface_on_later_calls() {
    let world = World::with_limit(1000);
    let manager = world.frame(1, 1, |_| {});
    block_on(async {
        let handle = manager.get_file_handle(&CosHashDict::sha256(hex(b"big")), &create()).await.unwrap();
        let mut writer = handle.create_writable(false).await.unwrap();
        writer.write_at(5000, b"x").unwrap(); // queued; the service refuses it
        assert_eq!(name(writer.close()), "QuotaExceededError");
    });
}

#[test]
fn request_file_handles_is_all_or_nothing() {
    let world = World::new();
    let manager = world.frame(1, 1, |_| {});
    store(&manager, b"one", create()).unwrap();
    store(&manager, b"two", create()).unwrap();
    let both = [CosHashDict::sha256(hex(b"one")), CosHashDict::sha256(hex(b"two"))];
    let handles = block_on(manager.request_file_handles(&both, &CosOptions::default())).unwrap();
    assert_eq!(handles.len(), 2);
    let with_miss = [CosHashDict::sha256(hex(b"one")), CosHashDict::sha256(hex(b"missing"))];
    assert_eq!(name(block_on(manager.request_file_handles(&with_miss, &CosOptions::default()))), "NotFoundError");
    let with_invalid = [CosHashDict::sha256(hex(b"one")), CosHashDict::sha256("zz")];
    assert_eq!(name(block_on(manager.request_file_handles(&with_invalid, &CosOptions::default()))), "TypeError");
    let alias = block_on(manager.request_file_handle(&both[0], &CosOptions::default())).unwrap();
    assert_eq!(alias.name(), hex(b"one"));
}

#[test]
fn visibility_across_origins_through_the_broker() {
    let world = World::new();
    let writer = world.frame(1, 1, |info| {
        *info = FrameInfo::top_level(info.renderer, Origin::from_url("https://a.example").unwrap());
        info.allow_origin_ceiling = AllowOriginCeiling::from_header(Some("https://b.example"));
    });
    let sibling = world.frame(2, 2, origin_of("https://www.a.example"));
    let listed = world.frame(3, 3, origin_of("https://b.example"));
    let stranger = world.frame(4, 4, origin_of("https://c.example"));
    let options = CosOptions {
        create: true,
        origins: OriginsInput::Sequence(vec!["https://b.example".into(), "https://c.example".into()]),
    };
    world.host.notify_user_activation(FrameId(1));
    store(&writer, b"shared", options).unwrap();
    assert_eq!(read(&sibling, b"shared").unwrap(), b"shared");
    assert_eq!(read(&listed, b"shared").unwrap(), b"shared");
    assert_eq!(name(read(&stranger, b"shared")), "NotFoundError");
    // The browser clears a's data: the only storer is gone, so is the entry.
    world.host.clear_site_data(Partition::Regular, &Origin::from_url("https://a.example").unwrap()).unwrap();
    assert_eq!(name(read(&listed, b"shared")), "NotFoundError");
}

#[test]
fn off_the_record_frames_use_their_own_store() {
    let world = World::new();
    let regular = world.frame(1, 1, |_| {});
    let private = world.frame(2, 2, |info| info.partition = Partition::OffTheRecord(OffTheRecordProfileId(7)));
    store(&regular, b"on disk", create()).unwrap();
    store(&private, b"in memory", create()).unwrap();
    assert_eq!(name(read(&private, b"on disk")), "NotFoundError");
    assert_eq!(name(read(&regular, b"in memory")), "NotFoundError");
    assert_eq!(read(&private, b"in memory").unwrap(), b"in memory");
    world.host.close_off_the_record(OffTheRecordProfileId(7));
    world.host.ping().unwrap();
    assert_eq!(name(read(&private, b"in memory")), "NotFoundError");
}

#[test]
fn the_public_hash_list_reloads_through_the_host() {
    let world = World::new();
    let owner = world.frame(1, 1, origin_of("https://owner.example"));
    let stranger = world.frame(2, 2, origin_of("https://stranger.example"));
    let options = CosOptions { create: true, origins: OriginsInput::Single("*".into()) };
    // The owner's page had a user activation: its '*' is recorded (SPEC §5).
    world.host.notify_user_activation(FrameId(1));
    store(&owner, b"popular model", options).unwrap();
    assert_eq!(name(read(&stranger, b"popular model")), "NotFoundError", "no list: fail closed");
    let list = world._profile.path().join("phl.txt");
    std::fs::write(&list, format!("// ===BEGIN SHA-256===\n{}\n", hex(b"popular model"))).unwrap();
    world.host.reload_public_hash_list(&list).unwrap();
    assert_eq!(read(&stranger, b"popular model").unwrap(), b"popular model");
    std::fs::write(&list, "not a digest\n").unwrap();
    assert!(world.host.reload_public_hash_list(&list).is_err(), "a broken list is refused");
    assert_eq!(read(&stranger, b"popular model").unwrap(), b"popular model", "and the old one stays");
}

#[test]
fn a_user_activation_replenishes_the_probe_budget() {
    let world = World::with(|config| config.probe_budget = 1);
    let prober = world.frame(1, 1, origin_of("https://prober.example"));
    assert_eq!(name(read(&prober, b"first probe")), "NotFoundError");
    let owner = world.frame(2, 2, origin_of("https://owner.example"));
    let list = world._profile.path().join("phl.txt");
    std::fs::write(&list, format!("{}\n", hex(b"listed"))).unwrap();
    world.host.reload_public_hash_list(&list).unwrap();
    world.host.notify_user_activation(FrameId(2));
    store(&owner, b"listed", CosOptions { create: true, origins: OriginsInput::Single("*".into()) }).unwrap();
    assert_eq!(name(read(&prober, b"listed")), "NotFoundError", "over budget");
    world.host.notify_user_activation(FrameId(1));
    world.host.ping().unwrap();
    assert_eq!(read(&prober, b"listed").unwrap(), b"listed");
}

#[test]
fn the_browser_inspects_and_deletes_through_the_host() {
    let world = World::new();
    let long_url = format!("https://a.example/app?{}", "q".repeat(5000));
    let writer = world.frame(1, 1, |info| info.url = Some(long_url.clone()));
    let other = world.frame(2, 2, origin_of("https://b.example"));
    store(&writer, b"first", create()).unwrap();
    store(&writer, b"shared", create()).unwrap();
    store(&other, b"shared", create()).unwrap();
    read(&writer, b"first").unwrap();

    let (entries, origins) = world.host.inspect(Partition::Regular).unwrap();
    assert_eq!(entries.len(), 2);
    let first = entries.iter().find(|e| e.hash.to_hex() == hex(b"first")).unwrap();
    assert_eq!(first.size, 5);
    assert_eq!(first.read_count, 1);
    assert!(!first.global && !first.on_public_hash_list);
    assert_eq!(first.storing_origins.iter().map(ToString::to_string).collect::<Vec<_>>(), ["https://a.example"]);
    let url = first.provenance[0].document_url.as_deref().unwrap();
    assert!(long_url.starts_with(url) && url.len() == cos_common::interface::MAX_PROVENANCE_URL_BYTES, "cut");
    let shared = entries.iter().find(|e| e.hash.to_hex() == hex(b"shared")).unwrap();
    assert_eq!(shared.storing_origins.len(), 2);
    let charged: Vec<(String, u64, u64)> =
        origins.iter().map(|o| (o.origin.to_string(), o.charged_bytes, o.entries)).collect();
    assert_eq!(charged, [("https://a.example".to_owned(), 11, 2), ("https://b.example".to_owned(), 6, 1)]);

    world.host.delete_entry(Partition::Regular, &shared.hash).unwrap();
    assert_eq!(name(read(&other, b"shared")), "NotFoundError");
    let (entries, origins) = world.host.inspect(Partition::Regular).unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(origins.len(), 1, "b stores nothing any more");
    assert!(world.host.inspect(Partition::OffTheRecord(OffTheRecordProfileId(9))).unwrap().0.is_empty());
}

/// Dropping a renderer's connection (a single-process embedder closing a renderer) ends its
/// broker, which forgets the renderer's frames and releases its handles in the service — as a
/// renderer process exit does. (Found by the `renderer_actions` fuzz target: each dropped
/// connection used to leave its reader thread and its broker thread behind.)
#[test]
fn dropping_a_renderer_connection_ends_its_broker() {
    let world = World::new();
    let manager = world.frame(7, 70, |_| {});
    let handle = block_on(manager.get_file_handle(&CosHashDict::sha256(hex(b"x")), &create())).unwrap();
    drop(handle);
    drop(manager);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while world.host.frames().get(FrameId(70)).is_some() {
        assert!(std::time::Instant::now() < deadline, "the broker never noticed the renderer was gone");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// The browser's scrub re-hashes every blob through the service and deletes a damaged one.
#[test]
fn scrub_through_the_host_deletes_a_damaged_blob() {
    let world = World::new();
    let manager = world.frame(1, 1, |_| {});
    let (damaged, intact) = (b"damaged on disk".as_slice(), b"left alone".as_slice());
    store(&manager, damaged, create()).unwrap();
    store(&manager, intact, create()).unwrap();
    let hex = hex(damaged);
    let blob = world._profile.path().join("cos/blobs").join(&hex[..2]).join(&hex);
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&blob, bytes).unwrap();
    let mut heard = 0;
    let report = world.host.scrub(Partition::Regular, |_, total| {
        assert_eq!(total, 2);
        heard += 1;
    });
    let report = report.unwrap();
    assert_eq!((report.entries_checked, report.corrupt_removed, report.missing_removed), (2, 1, 0));
    assert_eq!(heard, 2, "progress after each entry");
    assert_eq!(read(&manager, damaged), Err(CosError::NotFound));
    assert_eq!(read(&manager, intact).unwrap(), intact);
}

/// Stores `bytes` and returns the warnings the close verdict carried for the page's console.
fn store_warned(manager: &CrossOriginStorageManager, bytes: &[u8], origins: OriginsInput) -> WriteWarnings {
    block_on(async {
        let options = CosOptions { create: true, origins };
        let handle = manager.get_file_handle(&CosHashDict::sha256(hex(bytes)), &options).await.unwrap();
        let mut writer = handle.create_writable(false).await.unwrap();
        writer.write(bytes).unwrap();
        writer.close().unwrap()
    })
}

#[test]
fn a_wide_scope_without_a_user_activation_is_stored_same_site_with_a_warning() {
    let world = World::new();
    let list = world._profile.path().join("phl.txt");
    std::fs::write(&list, format!("{}\n{}\n", hex(b"early"), hex(b"late"))).unwrap();
    world.host.reload_public_hash_list(&list).unwrap();
    let ceiling = |info: &mut FrameInfo| {
        *info = FrameInfo::top_level(info.renderer, Origin::from_url("https://app.a.example").unwrap());
        info.allow_origin_ceiling = AllowOriginCeiling::from_header(Some("https://b.example"));
    };
    let writer = world.frame(1, 1, ceiling);
    let sibling = world.frame(2, 2, origin_of("https://www.a.example"));
    let stranger = world.frame(3, 3, origin_of("https://b.example"));
    let star = || OriginsInput::Single("*".into());
    let listed = || OriginsInput::Single("https://b.example".into());

    assert_eq!(store_warned(&writer, b"early", star()), WriteWarning::NoUserActivation.into());
    assert_eq!(store_warned(&writer, b"early list", listed()), WriteWarning::NoUserActivation.into());
    assert_eq!(store_warned(&writer, b"same-site", OriginsInput::Absent), WriteWarnings::none());
    assert_eq!(read(&sibling, b"early").unwrap(), b"early", "stored for the site");
    assert_eq!(name(read(&stranger, b"early")), "NotFoundError", "on the Public Hash List, yet not global");
    assert_eq!(name(read(&stranger, b"early list")), "NotFoundError", "the list was not recorded");

    // The browser saw a click in the writer's page (the renderer has no say in this).
    world.host.notify_user_activation(FrameId(1));
    assert_eq!(store_warned(&writer, b"late", star()), WriteWarnings::none());
    assert_eq!(store_warned(&writer, b"late list", listed()), WriteWarnings::none());
    assert_eq!(read(&stranger, b"late").unwrap(), b"late");
    assert_eq!(read(&stranger, b"late list").unwrap(), b"late list");
    // An activation later does not widen what was stored before it.
    assert_eq!(name(read(&stranger, b"early")), "NotFoundError");

    // A new document in the same place starts without activation.
    world
        .host
        .frames()
        .insert(FrameId(1), FrameInfo::top_level(RendererId(1), Origin::from_url("https://app.a.example").unwrap()));
    assert_eq!(store_warned(&writer, b"after navigation", star()), WriteWarning::NoUserActivation.into());
}

#[test]
fn a_full_origins_list_keeps_its_origins_and_warns_about_the_new_ones() {
    let world = World::new();
    let hundred: Vec<String> = (0..100).map(|i| format!("https://l{i}.example")).collect();
    let header = format!("{}, https://late.example", hundred.join(", "));
    let writer = world.frame(1, 1, |info| info.allow_origin_ceiling = AllowOriginCeiling::from_header(Some(&header)));
    world.host.notify_user_activation(FrameId(1));
    let bytes = b"a popular list";
    assert_eq!(store_warned(&writer, bytes, OriginsInput::Sequence(hundred.clone())), WriteWarnings::none());
    let more = vec!["https://l7.example".to_owned(), "https://late.example".to_owned()];
    assert_eq!(store_warned(&writer, bytes, OriginsInput::Sequence(more)), WriteWarning::OriginsListFull.into());
    let old = world.frame(2, 2, origin_of("https://l99.example"));
    let late = world.frame(3, 3, origin_of("https://late.example"));
    assert_eq!(read(&old, bytes).unwrap(), bytes, "the older origins are kept");
    assert_eq!(name(read(&late, bytes)), "NotFoundError", "the new one was dropped");
}

#[test]
fn a_reloaded_list_reports_its_sections_and_the_hugging_face_switch_reaches_the_service() {
    let three_sections = |core: &[u8], hub: &[u8], manual: &[u8]| {
        format!(
            "// Public Hash List (PHL)\n// VERSION: v1\n// COMMIT: abc1234\n// ===BEGIN SHA-256===\n{}\n// ===END SHA-256===\n\
             // ===BEGIN SHA-256 HUGGING-FACE===\n{}\n// ===END SHA-256 HUGGING-FACE===\n\
             // ===BEGIN SHA-256 MANUAL===\n{}\n// ===END SHA-256 MANUAL===\n",
            hex(core),
            hex(hub),
            hex(manual)
        )
    };
    for hugging_face in [true, false] {
        let world = World::with(|config| {
            config.public_hash_list_hugging_face = hugging_face;
            config.grease_for_tests = Some(false);
        });
        let owner = world.frame(1, 1, origin_of("https://owner.example"));
        let stranger = world.frame(2, 2, origin_of("https://stranger.example"));
        world.host.notify_user_activation(FrameId(1));
        for bytes in [&b"core"[..], b"hub model", b"manual"] {
            store(&owner, bytes, CosOptions { create: true, origins: OriginsInput::Single("*".into()) }).unwrap();
        }
        let list = world._profile.path().join("phl.dat");
        std::fs::write(&list, three_sections(b"core", b"hub model", b"manual")).unwrap();
        let counts = world.host.reload_public_hash_list(&list).unwrap();
        assert_eq!((counts.core, counts.hugging_face, counts.manual), (1, 1, 1));
        assert_eq!(counts.hugging_face_used, hugging_face);
        assert_eq!(counts.distinct, if hugging_face { 3 } else { 2 });
        assert_eq!((counts.version.as_deref(), counts.commit.as_deref()), (Some("v1"), Some("abc1234")));
        assert_eq!(read(&stranger, b"core").unwrap(), b"core");
        assert_eq!(read(&stranger, b"manual").unwrap(), b"manual");
        assert_eq!(read(&stranger, b"hub model").is_ok(), hugging_face, "the switch decides");
        std::fs::write(&list, "// ===BEGIN SHA-256 WHATEVER===\n").unwrap();
        assert!(world.host.reload_public_hash_list(&list).is_err(), "an unknown section is refused");
        assert_eq!(read(&stranger, b"core").unwrap(), b"core", "and the old list stays");
    }
}

/// After its first lookup (which asks the broker for the document's binding), a document's
/// lookups, reads and releases go to the service without the broker reading a message.
#[test]
fn lookups_go_to_the_service_without_the_broker() {
    let world = World::new();
    let manager = world.frame(1, 1, |_| {});
    let bytes = b"looked up in one hop".as_slice();
    store(&manager, bytes, create()).unwrap();
    assert_eq!(read(&manager, bytes).unwrap(), bytes, "the first lookup binds the document");
    let before = world.host.broker_messages_read(RendererId(1)).unwrap();
    for _ in 0..20 {
        assert_eq!(read(&manager, bytes).unwrap(), bytes);
        assert_eq!(read(&manager, b"never stored"), Err(CosError::NotFound));
    }
    assert_eq!(world.host.broker_messages_read(RendererId(1)), Some(before), "the broker read nothing");
    // A create still asks the broker (its options depend on the document's user activation).
    store(&manager, b"a second file", create()).unwrap();
    assert!(world.host.broker_messages_read(RendererId(1)).unwrap() > before);
}

/// A navigation closes the document's binding: a handle it issued answers `AbortError`, never
/// the new document; the new document's lookups bind anew. Clearing the origin's data keeps the
/// binding (the context is unchanged): the handles it revokes answer `NotFoundError`, like a miss.
#[test]
fn a_navigation_closes_the_binding_and_its_handles_and_cleared_site_data_revokes_them() {
    let world = World::new();
    let manager = world.frame(1, 1, |_| {});
    let bytes = b"read across a navigation".as_slice();
    store(&manager, bytes, create()).unwrap();
    let lookup = || block_on(manager.get_file_handle(&CosHashDict::sha256(hex(bytes)), &CosOptions::default()));
    let handle = lookup().unwrap();
    // The embedder registers the new document (a new record of the same frame).
    world
        .host
        .frames()
        .insert(FrameId(1), FrameInfo::top_level(RendererId(1), Origin::from_url("https://a.example").unwrap()));
    assert_eq!(block_on(handle.get_file()).err(), Some(CosError::Abort));
    let fresh = lookup().unwrap();
    assert_eq!(block_on(async { fresh.get_file().await?.read_all() }).unwrap(), bytes);

    let broker_read = world.host.broker_messages_read(RendererId(1)).unwrap();
    world.host.clear_site_data(Partition::Regular, &Origin::from_url("https://a.example").unwrap()).unwrap();
    assert_eq!(block_on(fresh.get_file()).err(), Some(CosError::NotFound), "revoked, like a miss");
    assert_eq!(lookup().unwrap_err(), CosError::NotFound, "cleared");
    assert_eq!(world.host.broker_messages_read(RendererId(1)), Some(broker_read), "still bound");
}

/// A renderer that sends on its document's binding what a well-behaved one never sends is
/// terminated by the browser, on the service's report.
#[test]
fn a_hostile_renderer_on_its_binding_is_terminated() {
    use cos_common::interface::{CallResult, RendererToBroker, Reply, RequestId};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let world = World::new();
    world
        .host
        .frames()
        .insert(FrameId(5), FrameInfo::top_level(RendererId(5), Origin::from_url("https://a.example").unwrap()));
    let (browser_end, renderer_end) = Endpoint::pair_in_process();
    let terminated = Arc::new(AtomicBool::new(false));
    let flag = terminated.clone();
    world.host.register_renderer(RendererId(5), browser_end, move || flag.store(true, Ordering::SeqCst));
    let broker: cos_ipc::Pipe<RendererToBroker, Reply> = cos_ipc::Pipe::new(renderer_end);
    broker.send(RendererToBroker::Bind { request: RequestId(1), frame: FrameId(5) }).unwrap();
    let reply = broker.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
    let CallResult::Bound { pipe } = reply.result else { panic!("{:?}", reply.result) };
    let binding = pipe.into_endpoint();
    binding.send(&[0xff, 0x00, 0x13], vec![]).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !terminated.load(Ordering::SeqCst) {
        assert!(std::time::Instant::now() < deadline, "the renderer was not terminated");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
