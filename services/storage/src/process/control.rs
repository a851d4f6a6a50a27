//! The control loop: what the browser asks of the service as a whole (bind a renderer, clear
//! site data, inspect, scrub, reload the Public Hash List, shut down).

use std::sync::Arc;

use cos_common::interface::{BrowserToService, EntryInfo, InspectionItem, ScrubItem, ServiceToBrowser};
use cos_common::{CosError, Origin, Partition};
use cos_ipc::{Endpoint, IpcError, Pipe};

use super::renderer_session::RendererSession;
use super::{ControlPipe, Served, stop_all};
use crate::gates::{PublicHashList, PublicHashListBuilder};
use crate::service::StorageService;

pub(super) fn control_loop(service: &StorageService, control: &Arc<ControlPipe>) {
    let mut connections: Vec<Served> = Vec::new();
    serve_control(service, control, &mut connections);
    stop_all(connections);
}

fn serve_control(service: &StorageService, control: &Arc<ControlPipe>, connections: &mut Vec<Served>) {
    loop {
        // A message whose pipes do not match its fields does not decode: the browser is trusted,
        // so that is a broken browser, and the service stops.
        let message = match control.recv() {
            Ok(received) => received,
            Err(IpcError::Disconnected) => return,
            Err(error) => {
                tracing::error!(%error, "unreadable control message from the browser; exiting");
                return;
            }
        };
        match message {
            BrowserToService::BindRenderer { renderer, connection } => {
                let service = service.clone();
                let name = format!("cos-renderer-{}", renderer.0);
                let spawned = Served::spawn(name, connection.into_endpoint(), move |endpoint| {
                    RendererSession::new(service, renderer, endpoint).run();
                    release_freed_memory();
                });
                match spawned {
                    Ok(served) => {
                        connections.retain(|served| !served.thread.is_finished());
                        connections.push(served);
                    }
                    Err(error) => tracing::error!(%error, "could not start a renderer connection thread"),
                }
            }
            BrowserToService::ClearSiteData { request, partition, origin } => {
                let result = service.clear_site_data(partition, &origin).map(|_| ()).map_err(|e| e.to_web_error());
                let _ = control.send(ServiceToBrowser::Done { request, result });
            }
            BrowserToService::CloseOffTheRecord { profile } => service.close_off_the_record(profile),
            BrowserToService::Inspect { request, partition, stream } => {
                let result = stream_inspection(service, partition, stream.into_endpoint());
                let _ = control.send(ServiceToBrowser::Done { request, result });
            }
            BrowserToService::Scrub { request, partition, stream } => {
                let stream = stream.into_endpoint();
                // Minutes on a large store: off the control loop, which keeps answering.
                let (service, reply) = (service.clone(), control.clone());
                let spawned = std::thread::Builder::new().name("cos-scrub".into()).spawn(move || {
                    let result = scrub(&service, partition, stream);
                    let _ = reply.send(ServiceToBrowser::Done { request, result });
                });
                if let Err(error) = spawned {
                    tracing::error!(%error, "could not start a scrub thread");
                    let _ = control.send(ServiceToBrowser::Done { request, result: Err(CosError::Unknown) });
                }
            }
            BrowserToService::DeleteEntry { request, partition, hash } => {
                let result = service.delete_entry(partition, &hash).map(|_| ()).map_err(|e| e.to_web_error());
                let _ = control.send(ServiceToBrowser::Done { request, result });
            }
            BrowserToService::UserActivation { partition, top_level_site } => {
                service.notify_user_activation(partition, &top_level_site);
            }
            BrowserToService::ReloadPublicHashList { request, list } => {
                let builder = service.public_hash_list_builder();
                let result = receive_public_hash_list(&list.into_endpoint(), builder).map(|list| {
                    super::log_public_hash_list("Public Hash List reloaded", &list);
                    let counts = list.counts().clone();
                    service.set_public_hash_list(Some(list));
                    let _ = control.send(ServiceToBrowser::PublicHashListLoaded { request, counts });
                });
                let result = result.map_err(|message: String| {
                    tracing::error!(%message, "the Public Hash List was not reloaded; the old one stays");
                    CosError::Unknown
                });
                let _ = control.send(ServiceToBrowser::Done { request, result });
            }
            BrowserToService::Ping { request } => {
                let _ = control.send(ServiceToBrowser::Done { request, result: Ok(()) });
            }
            BrowserToService::Shutdown => return,
            BrowserToService::Configure(_) => tracing::warn!("ignoring a second Configure"),
        }
    }
}

/// Origin bytes (serialised) one inspection item carries at most, far below the transport's
/// message limit whatever else the item holds (a bounded provenance list and a few numbers).
const INSPECTION_ORIGIN_BYTES: usize = 32 * 1024;

/// Streams a partition's entries and origins to the browser, then `End`. An entry's origin lists
/// are cut into pieces ([`InspectionItem::EntryOrigins`]), so that no entry breaks the listing.
fn stream_inspection(service: &StorageService, partition: Partition, stream: Endpoint) -> Result<(), CosError> {
    let pipe: Pipe<InspectionItem, ()> = Pipe::new(stream);
    let entries = service.inspect_entries(partition).map_err(|e| e.to_web_error())?;
    let origins = service.inspect_origins(partition).map_err(|e| e.to_web_error())?;
    let items = entries.into_iter().flat_map(entry_items).chain(origins.into_iter().map(InspectionItem::Origin));
    for item in items.chain(std::iter::once(InspectionItem::End)) {
        pipe.send(item).map_err(|error| {
            tracing::warn!(%error, "inspection stream failed");
            CosError::Unknown
        })?;
    }
    Ok(())
}

/// One entry as inspection items: the entry with as many of its origins as fit
/// [`INSPECTION_ORIGIN_BYTES`], then the rest in pieces of that size.
fn entry_items(mut entry: EntryInfo) -> Vec<InspectionItem> {
    let mut storing = std::mem::take(&mut entry.storing_origins).into_iter().peekable();
    let mut listed = std::mem::take(&mut entry.listed_origins).into_iter().peekable();
    let mut next_piece = || {
        let (mut piece_storing, mut piece_listed, mut bytes) = (Vec::new(), Vec::new(), 0usize);
        let mut fits = |origin: &Origin| {
            // At least one origin per piece, however long: each came in one message.
            let size = origin.to_string().len() + 3;
            let fits = bytes == 0 || bytes + size <= INSPECTION_ORIGIN_BYTES;
            if fits {
                bytes += size;
            }
            fits
        };
        while let Some(origin) = storing.next_if(&mut fits) {
            piece_storing.push(origin);
        }
        while let Some(origin) = listed.next_if(&mut fits) {
            piece_listed.push(origin);
        }
        (piece_storing, piece_listed)
    };
    let (first_storing, first_listed) = next_piece();
    entry.storing_origins = first_storing.into_iter().collect();
    entry.listed_origins = first_listed;
    let mut items = vec![InspectionItem::Entry(entry)];
    loop {
        let (storing, listed) = next_piece();
        if storing.is_empty() && listed.is_empty() {
            return items;
        }
        items.push(InspectionItem::EntryOrigins { storing, listed });
    }
}

/// Runs a scrub, streaming its progress to the browser, then the end.
fn scrub(service: &StorageService, partition: Partition, stream: Endpoint) -> Result<(), CosError> {
    let pipe: Pipe<ScrubItem, ()> = Pipe::new(stream);
    let result = service.scrub(partition, |report, total| {
        let _ = pipe.send(ScrubItem::Progress { report: report.clone(), total });
    });
    let _ = pipe.send(ScrubItem::End);
    result.map(drop).map_err(|error| {
        tracing::error!(%error, "scrub failed");
        error.to_web_error()
    })
}

/// Reads a Public Hash List streamed by the browser: file bytes in messages, then an empty one.
fn receive_public_hash_list(stream: &Endpoint, mut builder: PublicHashListBuilder) -> Result<PublicHashList, String> {
    loop {
        let message = stream.recv().map_err(|e| format!("list stream: {e}"))?;
        if message.bytes.is_empty() {
            return builder.finish().map_err(|e| e.to_string());
        }
        builder.feed(&message.bytes).map_err(|e| e.to_string())?;
    }
}

/// Gives memory the allocator keeps after frees back to the system. A renderer's data-pipe
/// threads each leave their arena's buffers (MiB per writer) cached; when a renderer goes away
/// its share should go too, so the service returns to its baseline after load.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap memory to the kernel; it takes no pointers.
    unsafe {
        libc::malloc_trim(0);
    }
}
