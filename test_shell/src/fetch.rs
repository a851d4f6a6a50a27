//! `fetch()` for page realms: real HTTP to the loopback hub, from a thread per request, with the
//! body streamed in chunks (bounded memory) and every request attributed to the page's origin
//! (the browser side sets the header; script cannot).

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Read;
use std::rc::Rc;

use crossbeam_channel::{Receiver, TryRecvError};
use rquickjs::{ArrayBuffer, Ctx, Function, Object, Promise, Value};

use crate::js::{OpsHandle, Settle, settle_err, settle_ok};

/// Body chunks in flight per response (each up to 1 MiB).
const CHUNKS_IN_FLIGHT: usize = 4;

enum Chunk {
    Data(Vec<u8>),
    End,
    Failed(String),
}

struct Head {
    status: u16,
    headers: Vec<(String, String)>,
}

#[derive(Default)]
struct Bodies {
    streams: HashMap<u32, Receiver<Chunk>>,
    next: u32,
}

/// Installs `__fetch` (`start(url)`, `read(id)`) in a realm whose documents have `origin`.
pub fn install(ctx: &Ctx<'_>, origin: String, ops: OpsHandle, realm: usize) -> rquickjs::Result<()> {
    let bodies = Rc::new(RefCell::new(Bodies::default()));
    let object = Object::new(ctx.clone())?;
    object.set("start", Function::new(ctx.clone(), start(origin, bodies.clone(), ops.clone(), realm))?)?;
    object.set("read", Function::new(ctx.clone(), read(bodies, ops, realm))?)?;
    ctx.globals().set("__fetch", object)?;
    Ok(())
}

/// A future that polls a channel (the event loop polls it after each wake-up).
struct Poll<T>(Receiver<T>);

impl<T> std::future::Future for Poll<T> {
    type Output = Option<T>;
    fn poll(self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<Option<T>> {
        match self.0.try_recv() {
            Ok(value) => std::task::Poll::Ready(Some(value)),
            Err(TryRecvError::Empty) => std::task::Poll::Pending,
            Err(TryRecvError::Disconnected) => std::task::Poll::Ready(None),
        }
    }
}

fn type_error(message: String) -> Settle {
    settle_err(move |ctx| {
        let constructor: rquickjs::Constructor = ctx.globals().get("TypeError")?;
        constructor.construct((message,))
    })
}

fn start(
    origin: String,
    bodies: Rc<RefCell<Bodies>>,
    ops: OpsHandle,
    realm: usize,
) -> impl for<'js> Fn(Ctx<'js>, String) -> rquickjs::Result<Promise<'js>> {
    move |ctx, url| {
        let (head_tx, head_rx) = crossbeam_channel::bounded::<Result<Head, String>>(1);
        let (body_tx, body_rx) = crossbeam_channel::bounded::<Chunk>(CHUNKS_IN_FLIGHT);
        let origin = origin.clone();
        let spawned = std::thread::Builder::new().name("shell-fetch".into()).spawn(move || {
            let headers = [(cos_test_hub::ORIGIN_HEADER, origin.as_str())];
            let mut reader = match cos_test_hub::open("GET", &url, &headers) {
                Ok(reader) => reader,
                Err(error) => {
                    let _ = head_tx.send(Err(format!("Failed to fetch {url}: {error}")));
                    return;
                }
            };
            let head = reader.head();
            let _ = head_tx.send(Ok(Head { status: head.status, headers: head.headers.clone() }));
            let mut buffer = vec![0u8; 1 << 20];
            loop {
                match reader.read(&mut buffer) {
                    Ok(0) => {
                        let _ = body_tx.send(Chunk::End);
                        return;
                    }
                    Ok(n) => {
                        if body_tx.send(Chunk::Data(buffer[..n].to_vec())).is_err() {
                            return; // the page dropped the body
                        }
                    }
                    Err(error) => {
                        let _ = body_tx.send(Chunk::Failed(error.to_string()));
                        return;
                    }
                }
            }
        });
        if let Err(error) = spawned {
            return Err(rquickjs::Exception::throw_internal(&ctx, &format!("cannot start a fetch: {error}")));
        }
        let id = {
            let mut table = bodies.borrow_mut();
            table.next += 1;
            let id = table.next;
            table.streams.insert(id, body_rx);
            id
        };
        ops.start(&ctx, realm, async move {
            match Poll(head_rx).await {
                Some(Ok(head)) => settle_ok(move |ctx| {
                    let info = Object::new(ctx.clone())?;
                    info.set("id", id)?;
                    info.set("status", head.status)?;
                    let headers = rquickjs::Array::new(ctx.clone())?;
                    for (index, (name, value)) in head.headers.into_iter().enumerate() {
                        let pair = rquickjs::Array::new(ctx.clone())?;
                        pair.set(0, name)?;
                        pair.set(1, value)?;
                        headers.set(index, pair)?;
                    }
                    info.set("headers", headers)?;
                    Ok(info.into_value())
                }),
                Some(Err(message)) => type_error(message),
                None => type_error("fetch failed".into()),
            }
        })
    }
}

fn read(
    bodies: Rc<RefCell<Bodies>>,
    ops: OpsHandle,
    realm: usize,
) -> impl for<'js> Fn(Ctx<'js>, u32) -> rquickjs::Result<Promise<'js>> {
    move |ctx, id| {
        let receiver = bodies.borrow().streams.get(&id).cloned();
        let bodies = bodies.clone();
        ops.start(&ctx, realm, async move {
            let Some(receiver) = receiver else { return type_error("the body was already consumed".into()) };
            match Poll(receiver).await {
                Some(Chunk::Data(bytes)) => {
                    settle_ok(move |ctx| Ok(ArrayBuffer::new(ctx.clone(), bytes)?.into_value()))
                }
                Some(Chunk::End) | None => {
                    bodies.borrow_mut().streams.remove(&id);
                    settle_ok(|ctx| Ok(Value::new_null(ctx.clone())))
                }
                Some(Chunk::Failed(message)) => {
                    bodies.borrow_mut().streams.remove(&id);
                    type_error(format!("network error while reading the body: {message}"))
                }
            }
        })
    }
}
