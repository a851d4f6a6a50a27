//! The loader (SPEC §11) against the real storage service on threads of this process: lookups
//! as an embedder's network stack makes them for a document, stores of fetched resources, and
//! that every refusal is the same `None` as a miss.

use cos_browser::{ContextKind, CosHost, FrameInfo, FrameOrigin, Loader, LoaderError};
use cos_common::interface::{FrameId, RendererId, ServiceProcessConfig, WriteWarning, WriteWarnings};
use cos_common::{CosError, Origin, OriginsOption, Partition};
use cos_test_support::callers::{hash_of, origin, sha256_hex as hex};
use cos_test_support::fixture::BrowserFixture;

struct World {
    host: CosHost,
    loader: Loader,
    profile: tempfile::TempDir,
}

impl World {
    fn new() -> Self {
        Self::with(|_| {})
    }

    fn with(adjust: impl FnOnce(&mut ServiceProcessConfig)) -> Self {
        let BrowserFixture { host, profile } = BrowserFixture::start_in_process(adjust);
        let loader = host.loader();
        Self { host, loader, profile }
    }

    /// Registers document `frame` of `url`'s origin (a top-level window the user has interacted
    /// with, so that its `'*'` and list stores are recorded: SPEC §5) after `adjust`.
    fn document(&self, frame: u64, url: &str, adjust: impl FnOnce(&mut FrameInfo)) -> FrameId {
        let mut info = FrameInfo::top_level(RendererId(frame), origin(url));
        info.url = Some(url.to_owned());
        info.sticky_activation = true;
        adjust(&mut info);
        self.host.frames().insert(FrameId(frame), info);
        FrameId(frame)
    }

    /// A fetch that missed and stored `bytes` with `scope` (the resource's header `header`).
    fn store(
        &self,
        frame: FrameId,
        bytes: &[u8],
        scope: OriginsOption,
        header: Option<&str>,
    ) -> Result<WriteWarnings, LoaderError> {
        let mut sink = self.loader.store(frame, hash_of(bytes), scope, header).expect("a store begins");
        for piece in bytes.chunks(7) {
            sink.write(piece);
        }
        sink.finish()
    }

    /// What a lookup streams, or `None`.
    fn lookup(&self, frame: FrameId, bytes: &[u8]) -> Option<Vec<u8>> {
        let body = self.loader.lookup(frame, hash_of(bytes))?;
        let mut out = Vec::new();
        let size = body.size();
        body.stream(|piece| {
            out.extend_from_slice(piece);
            true
        })
        .unwrap();
        assert_eq!(size, out.len() as u64);
        Some(out)
    }

    fn entries(&self) -> usize {
        self.host.inspect(Partition::Regular).unwrap().0.len()
    }

    fn public_hash_list(&self, entries: &[&[u8]]) {
        let list = self.profile.path().join("phl.txt");
        let lines: Vec<String> = entries.iter().map(|bytes| hex(bytes)).collect();
        std::fs::write(&list, format!("// ===BEGIN SHA-256===\n{}\n", lines.join("\n"))).unwrap();
        self.host.reload_public_hash_list(&list).unwrap();
    }
}

#[test]
fn a_miss_then_a_store_then_a_hit_streaming_the_bytes() {
    let world = World::new();
    let page = world.document(1, "https://app.example/index.html", |_| {});
    let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    assert!(world.lookup(page, &bytes).is_none(), "a miss");
    world.store(page, &bytes, OriginsOption::Omitted, None).unwrap();
    assert_eq!(world.lookup(page, &bytes).unwrap(), bytes);
    let same_site = world.document(2, "https://cdn.app.example/", |_| {});
    assert_eq!(world.lookup(same_site, &bytes).unwrap(), bytes, "'' is same-site");
    let other = world.document(3, "https://other.example/", |_| {});
    assert!(world.lookup(other, &bytes).is_none(), "another site: out of scope");
    let (entries, _) = world.host.inspect(Partition::Regular).unwrap();
    assert_eq!(entries[0].provenance[0].document_url.as_deref(), Some("https://app.example/index.html"));
}

#[test]
fn a_body_stops_when_its_consumer_goes_away() {
    let world = World::new();
    let page = world.document(1, "https://app.example/", |_| {});
    let bytes = vec![5u8; 400_000];
    world.store(page, &bytes, OriginsOption::Omitted, None).unwrap();
    let body = world.loader.lookup(page, hash_of(&bytes)).unwrap();
    assert_eq!(body.stream(|_| false), Err(LoaderError::ConsumerGone));
    assert_eq!(world.lookup(page, &bytes).unwrap(), bytes, "the next lookup still works");
}

#[test]
fn a_refusal_is_the_same_none_as_a_miss_and_skips_the_store() {
    let world = World::new();
    let owner = world.document(1, "https://app.example/", |_| {});
    let bytes = b"stored by the owner".to_vec();
    world.store(owner, &bytes, OriginsOption::Omitted, None).unwrap();
    type Refusal = (&'static str, fn(&mut FrameInfo));
    let refused: [Refusal; 3] = [
        ("service worker", |info| info.kind = ContextKind::ServiceWorker),
        ("Permissions Policy", |info| info.cos_allowed = false),
        ("opaque origin", |info| info.origin = FrameOrigin::Opaque),
    ];
    for (frame, (why, adjust)) in (10..).zip(refused) {
        let document = world.document(frame, "https://app.example/", adjust);
        assert!(world.loader.lookup(document, hash_of(&bytes)).is_none(), "{why}: looks like a miss");
        assert!(world.loader.store(document, hash_of(b"new"), OriginsOption::Global, None).is_none(), "{why}");
    }
    assert!(world.loader.lookup(FrameId(99), hash_of(&bytes)).is_none(), "an unknown frame");
    assert_eq!(world.entries(), 1, "nothing stored by a refused document");
}

#[test]
fn an_aborted_or_mismatching_store_stores_nothing() {
    let world = World::new();
    let page = world.document(1, "https://app.example/", |_| {});
    let mut sink = world.loader.store(page, hash_of(b"the real bytes"), OriginsOption::Omitted, None).unwrap();
    sink.write(b"the real bytes");
    sink.abort();
    let mut sink = world.loader.store(page, hash_of(b"the real bytes"), OriginsOption::Omitted, None).unwrap();
    sink.write(b"tampered bytes");
    assert!(matches!(sink.finish(), Err(LoaderError::Service(CosError::Data(_)))));
    drop(world.loader.store(page, hash_of(b"dropped"), OriginsOption::Omitted, None).unwrap());
    assert_eq!(world.entries(), 0);
    assert!(world.lookup(page, b"the real bytes").is_none());
}

#[test]
fn a_list_is_capped_by_the_resources_header_not_the_documents() {
    let world = World::new();
    let writer = world.document(1, "https://writer.example/", |info| {
        // The document's own ceiling admits c.example: it plays no part in a fetch store.
        info.allow_origin_ceiling = cos_common::AllowOriginCeiling::from_header(Some("https://c.example"));
    });
    let list = OriginsOption::List(vec![origin("https://b.example"), origin("https://c.example")]);
    world.store(writer, b"listed resource", list.clone(), Some("https://b.example")).unwrap();
    let b = world.document(2, "https://b.example/", |_| {});
    let c = world.document(3, "https://c.example/", |_| {});
    assert_eq!(world.lookup(b, b"listed resource").unwrap(), b"listed resource");
    assert!(world.lookup(c, b"listed resource").is_none(), "outside the resource's ceiling");
    world.store(writer, b"no header", list, None).unwrap();
    assert!(world.lookup(b, b"no header").is_none(), "no header: the list authorises nobody");
    let (entries, _) = world.host.inspect(Partition::Regular).unwrap();
    let listed: Vec<Vec<Origin>> = entries.iter().map(|e| e.listed_origins.clone()).collect();
    assert!(listed.contains(&vec![origin("https://b.example")]) && listed.contains(&vec![]));
}

#[test]
fn every_lookup_is_a_probe_charged_to_the_top_level_site() {
    let world = World::with(|config| config.probe_budget = 2);
    let owner = world.document(1, "https://owner.example/", |_| {});
    world.public_hash_list(&[b"popular library"]);
    world.store(owner, b"popular library", OriginsOption::Global, None).unwrap();
    let prober = world.document(2, "https://prober.example/", |_| {});
    assert_eq!(world.lookup(prober, b"popular library").unwrap(), b"popular library", "first probe");
    assert!(world.lookup(prober, b"a missing file").is_none(), "second probe (a miss)");
    let fresh = world.document(4, "https://fresh.example/", |_| {});
    world.store(owner, b"second library", OriginsOption::Global, None).unwrap();
    world.public_hash_list(&[b"popular library", b"second library"]);
    assert!(world.lookup(prober, b"second library").is_none(), "the budget is spent: a hit looks like a miss");
    assert_eq!(world.lookup(fresh, b"second library").unwrap(), b"second library", "another site's budget");
    assert_eq!(world.lookup(owner, b"second library").unwrap(), b"second library", "storers are not charged");
}

#[test]
fn stores_count_against_the_origins_limit() {
    let world = World::with(|config| config.per_origin_bytes = 100_000);
    let page = world.document(1, "https://app.example/", |_| {});
    let big = vec![1u8; 300_000];
    let mut sink = world.loader.store(page, hash_of(&big), OriginsOption::Omitted, None).unwrap();
    for piece in big.chunks(16 * 1024) {
        sink.write(piece);
    }
    assert!(matches!(sink.finish(), Err(LoaderError::Service(CosError::QuotaExceeded(_)))));
    assert_eq!(world.entries(), 0);
    world.store(page, b"small", OriginsOption::Omitted, None).unwrap();
}

#[test]
fn a_wide_store_needs_the_documents_user_activation() {
    let world = World::new();
    world.public_hash_list(&[b"public runtime"]);
    let page = world.document(1, "https://app.example/", |info| info.sticky_activation = false);
    let warnings = world.store(page, b"public runtime", OriginsOption::Global, None).unwrap();
    assert!(warnings.contains(WriteWarning::NoUserActivation), "the page is told why");
    let other = world.document(2, "https://other.example/", |_| {});
    let same_site = world.document(3, "https://cdn.app.example/", |_| {});
    assert!(world.lookup(other, b"public runtime").is_none(), "not shared cross-site, even on the list");
    assert_eq!(world.lookup(same_site, b"public runtime").unwrap(), b"public runtime", "same-site only");
    // The user interacts with the page: its next store of the same resource widens the entry.
    world.host.notify_user_activation(page);
    let warnings = world.store(page, b"public runtime", OriginsOption::Global, None).unwrap();
    assert!(warnings.is_empty());
    assert_eq!(world.lookup(other, b"public runtime").unwrap(), b"public runtime");
}
