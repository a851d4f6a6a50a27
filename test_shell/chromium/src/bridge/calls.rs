//! One binding call from a page: decode (decoding is validation), act on the context's own
//! objects, answer with a value or an error name.

use std::sync::Arc;

use cos_common::interface::WriteWarning;
use cos_common::{CosError, InvalidStateKind, NotAllowedKind, OriginsInput};
use cos_renderer::{CosHashDict, CosOptions, FileSystemFileHandle};
use serde::Deserialize;
use serde_json::{Value, json};

use super::context::{ContextState, MAX_TOKENS_PER_CONTEXT, Objects};
use crate::data_server::{Capability, WriterSlot};

/// The most hashes one `requestFileHandles` may name.
const MAX_HASHES: usize = 1024;

/// A hash dictionary as script converted it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HashArg {
    algorithm: String,
    value: String,
}

/// `origins` as script converted it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum OriginsArg {
    /// A lone string.
    Single(String),
    /// A sequence.
    List(Vec<String>),
}

/// What a page may ask.
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase", deny_unknown_fields)]
pub enum Call {
    /// `getFileHandle`.
    GetFileHandle {
        /// The hash.
        hash: HashArg,
        /// `create`.
        #[serde(default)]
        create: bool,
        /// `origins`.
        #[serde(default)]
        origins: Option<OriginsArg>,
    },
    /// `requestFileHandles`.
    RequestFileHandles {
        /// The hashes.
        hashes: Vec<HashArg>,
        /// `create`.
        #[serde(default)]
        create: bool,
        /// `origins`.
        #[serde(default)]
        origins: Option<OriginsArg>,
    },
    /// `getFile`.
    GetFile {
        /// The handle.
        handle: u64,
    },
    /// `createWritable`.
    CreateWritable {
        /// The handle.
        handle: u64,
    },
    /// `move`, `remove`, `createSyncAccessHandle`.
    HandleError {
        /// The handle.
        handle: u64,
        /// Which.
        operation: String,
    },
    /// `seek`.
    Seek {
        /// The writer.
        writer: u64,
        /// Where.
        position: u64,
    },
    /// `truncate`.
    Truncate {
        /// The writer.
        writer: u64,
        /// The size.
        size: u64,
    },
    /// `close`.
    Close {
        /// The writer.
        writer: u64,
    },
    /// `abort`.
    Abort {
        /// The writer.
        writer: u64,
    },
    /// The page dropped a handle.
    Release {
        /// The handle.
        handle: u64,
    },
}

fn options(create: bool, origins: Option<OriginsArg>) -> CosOptions {
    let origins = match origins {
        None => OriginsInput::Absent,
        Some(OriginsArg::Single(text)) => OriginsInput::Single(text),
        Some(OriginsArg::List(list)) => OriginsInput::Sequence(list),
    };
    CosOptions { create, origins }
}

fn closed() -> CosError {
    CosError::InvalidState(InvalidStateKind::StreamClosed)
}

fn handle_json(context: &ContextState, handle: FileSystemFileHandle) -> Value {
    let mut objects = context.objects.lock();
    let id = objects.id();
    let value = json!({ "handle": id, "name": handle.name(), "create": handle.is_create() });
    objects.handles.insert(id, handle);
    value
}

fn handle(context: &ContextState, id: u64) -> Result<FileSystemFileHandle, CosError> {
    context.objects.lock().handles.get(&id).cloned().ok_or_else(closed)
}

fn writer(context: &ContextState, id: u64) -> Result<WriterSlot, CosError> {
    context.objects.lock().writers.get(&id).map(|(slot, _)| slot.clone()).ok_or_else(closed)
}

/// Mints a capability for `context` unless it already holds [`MAX_TOKENS_PER_CONTEXT`] live
/// ones. Checked and taken under the one lock of the context's objects, so calls in flight at
/// once cannot all pass the check before any of them counts.
fn mint_within_cap(
    context: &ContextState,
    objects: &mut Objects,
    capability: Capability,
) -> Result<(String, String), CosError> {
    // Read tokens are single-use; forget the ones the page already spent (or let expire).
    objects.tokens.retain(|t| context.data.is_live(t));
    if objects.tokens.len() >= MAX_TOKENS_PER_CONTEXT {
        return Err(CosError::QuotaExceeded(cos_common::QuotaScope::Renderer));
    }
    let (token, url) = context.data.mint(&context.origin_text, capability);
    objects.tokens.push(token.clone());
    Ok((token, url))
}

/// Runs `call` for `context`.
pub async fn run(context: Arc<ContextState>, call: Call) -> Result<Value, CosError> {
    let Some(manager) = context.manager.clone() else {
        // No attribute in insecure contexts; the script is not installed there either.
        return Err(CosError::NotAllowed(NotAllowedKind::OpaqueOrigin));
    };
    match call {
        Call::GetFileHandle { hash, create, origins } => {
            let dict = CosHashDict { algorithm: hash.algorithm, value: hash.value };
            let handle = manager.get_file_handle(&dict, &options(create, origins)).await?;
            Ok(handle_json(&context, handle))
        }
        Call::RequestFileHandles { hashes, create, origins } => {
            if hashes.len() > MAX_HASHES {
                return Err(CosError::Type(cos_common::TypeErrorKind::InvalidWriteParams));
            }
            let dicts: Vec<_> =
                hashes.into_iter().map(|h| CosHashDict { algorithm: h.algorithm, value: h.value }).collect();
            let handles = manager.request_file_handles(&dicts, &options(create, origins)).await?;
            Ok(Value::Array(handles.into_iter().map(|h| handle_json(&context, h)).collect()))
        }
        Call::GetFile { handle: id } => {
            context.data.sweep_expired();
            let file = handle(&context, id)?.get_file().await?;
            let size = file.size();
            let mut objects = context.objects.lock();
            let url = mint_within_cap(&context, &mut objects, Capability::Read(Arc::new(file)))?.1;
            Ok(json!({ "url": url, "size": size }))
        }
        Call::CreateWritable { handle: id } => {
            context.data.sweep_expired();
            let stream = handle(&context, id)?.create_writable(false).await?;
            let slot: WriterSlot = Arc::new(parking_lot::Mutex::new(Some(stream)));
            let mut objects = context.objects.lock();
            // Over the cap, the stream is dropped here, which aborts it.
            let (token, url) = mint_within_cap(&context, &mut objects, Capability::Write(slot.clone()))?;
            let writer = objects.id();
            objects.writers.insert(writer, (slot, token));
            Ok(json!({ "writer": writer, "url": url }))
        }
        Call::HandleError { handle: id, operation } => {
            let handle = handle(&context, id)?;
            match operation.as_str() {
                "move" => handle.move_to(),
                "remove" => handle.remove(),
                _ => handle.create_sync_access_handle(),
            }?;
            Ok(Value::Null)
        }
        Call::Seek { writer: id, position } => {
            let slot = writer(&context, id)?;
            blocking(move || slot.lock().as_mut().ok_or_else(closed)?.seek(position)).await
        }
        Call::Truncate { writer: id, size } => {
            let slot = writer(&context, id)?;
            blocking(move || slot.lock().as_mut().ok_or_else(closed)?.truncate(size)).await
        }
        Call::Close { writer: id } | Call::Abort { writer: id } => {
            let abort = matches!(call, Call::Abort { .. });
            let Some((slot, token)) = context.objects.lock().writers.remove(&id) else { return Err(closed()) };
            context.data.revoke(&token);
            context.objects.lock().tokens.retain(|t| *t != token);
            // A close answers with the verdict's warnings (fixed texts, SPEC §5), which the
            // injected script prints with the page's `console.warn`.
            let work = move || {
                let stream = slot.lock().take().ok_or_else(closed)?;
                if abort {
                    stream.abort();
                    return Ok(Value::Null);
                }
                let warnings: Vec<&str> = stream.close()?.iter().map(WriteWarning::message).collect();
                Ok(json!({ "warnings": warnings }))
            };
            tokio::task::spawn_blocking(work).await.unwrap_or(Err(CosError::Unknown))
        }
        Call::Release { handle: id } => {
            context.objects.lock().handles.remove(&id);
            Ok(Value::Null)
        }
    }
}

/// Writer calls block on the data pipe: off the protocol's tasks.
async fn blocking(work: impl FnOnce() -> Result<(), CosError> + Send + 'static) -> Result<Value, CosError> {
    tokio::task::spawn_blocking(work).await.unwrap_or(Err(CosError::Unknown)).map(|()| Value::Null)
}
