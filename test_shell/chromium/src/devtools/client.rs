//! The protocol client: numbered commands, a reader thread that answers them and fans events
//! out to subscribers (losslessly: the bridge must see every context it will be called from).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use super::DevToolsError;
use super::chromium::{ChromiumProcess, StderrTail};

/// The longest a command may go unanswered: a guard against hangs only.
pub const COMMAND_GUARD: Duration = Duration::from_secs(60);

/// The largest message accepted from Chromium (events carry console text and headers).
const MAX_INCOMING: u64 = 64 << 20;

/// A protocol event.
#[derive(Debug, Clone)]
pub struct Event {
    /// `Domain.event`.
    pub method: String,
    /// Its parameters.
    pub params: Value,
    /// The session it came from (`None`: the browser target).
    pub session_id: Option<String>,
}

type Answer = Result<Value, DevToolsError>;

struct Inner {
    writer: std::sync::mpsc::Sender<Vec<u8>>,
    next_id: AtomicU64,
    pending: Mutex<HashMap<u64, oneshot::Sender<Answer>>>,
    subscribers: Mutex<Vec<mpsc::UnboundedSender<Arc<Event>>>>,
    closed: AtomicBool,
    stderr: StderrTail,
}

impl Inner {
    fn died(&self) -> DevToolsError {
        DevToolsError::Died { stderr_tail: self.stderr.text() }
    }
}

/// A connection to Chromium's browser target. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl Client {
    /// Takes `process`'s protocol pipes and starts the reader and writer threads.
    pub fn connect(process: &mut ChromiumProcess) -> Result<Self, DevToolsError> {
        let mut commands =
            process.commands.take().ok_or_else(|| DevToolsError::Io(std::io::ErrorKind::NotFound.into()))?;
        let events = process.events.take().ok_or_else(|| DevToolsError::Io(std::io::ErrorKind::NotFound.into()))?;
        let (writer, queue) = std::sync::mpsc::channel::<Vec<u8>>();
        let inner = Arc::new(Inner {
            writer,
            next_id: AtomicU64::new(1),
            pending: Mutex::new(HashMap::new()),
            subscribers: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
            stderr: process.stderr.clone(),
        });
        // Writes on their own thread: a busy Chromium must not block a tokio worker.
        std::thread::Builder::new()
            .name("devtools-write".into())
            .spawn(move || {
                for message in queue {
                    if commands.write_all(&message).is_err() {
                        return;
                    }
                }
            })
            .map_err(DevToolsError::Io)?;
        let reader = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name("devtools-read".into())
            .spawn(move || {
                let mut events = BufReader::with_capacity(1 << 20, events);
                let mut message = Vec::new();
                loop {
                    message.clear();
                    let read = (&mut events).take(MAX_INCOMING).read_until(0, &mut message);
                    let Some(inner) = reader.upgrade() else { return };
                    match read {
                        Ok(n) if n > 0 && message.last() == Some(&0) => {
                            message.pop();
                            dispatch(&inner, &message);
                        }
                        Ok(n) if n as u64 == MAX_INCOMING => {
                            // A page can make Chromium send a huge message (a console line of
                            // many MiB): skip it to its end rather than lose the browser. A
                            // command whose answer it was fails on its hang guard.
                            tracing::warn!(limit = MAX_INCOMING, "skipped an oversized DevTools message");
                            let mut skipped = Vec::new();
                            loop {
                                skipped.clear();
                                match (&mut events).take(MAX_INCOMING).read_until(0, &mut skipped) {
                                    Ok(n) if n > 0 && skipped.last() == Some(&0) => break,
                                    Ok(n) if n as u64 == MAX_INCOMING => continue,
                                    _ => break,
                                }
                            }
                        }
                        _ => {
                            inner.closed.store(true, Ordering::SeqCst);
                            let pending: Vec<_> = inner.pending.lock().drain().collect();
                            for (_, answer) in pending {
                                let _ = answer.send(Err(inner.died()));
                            }
                            inner.subscribers.lock().clear();
                            return;
                        }
                    }
                }
            })
            .map_err(DevToolsError::Io)?;
        Ok(Self { inner })
    }

    /// Every event from now on, in order.
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<Arc<Event>> {
        let (sender, receiver) = mpsc::unbounded_channel();
        self.inner.subscribers.lock().push(sender);
        receiver
    }

    /// Hands `event` to every subscriber as if Chromium had sent it: a test plays a renderer that
    /// reports what a real one never would (a context of another site), which no page script can
    /// make Chromium say.
    /// Only with the `testing` feature: never in a build that drives a browser for real.
    #[cfg(feature = "testing")]
    pub fn inject_event_for_testing(&self, event: Event) {
        let event = Arc::new(event);
        self.inner.subscribers.lock().retain(|subscriber| subscriber.send(event.clone()).is_ok());
    }

    /// Whether Chromium has gone away.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::SeqCst)
    }

    /// Sends a command to the browser target (`session_id: None`) or a session and waits for its
    /// result.
    pub async fn send(&self, method: &str, params: Value, session_id: Option<&str>) -> Result<Value, DevToolsError> {
        let (answer, answered) = oneshot::channel();
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        self.inner.pending.lock().insert(id, answer);
        self.post(id, method, params, session_id)?;
        match tokio::time::timeout(COMMAND_GUARD, answered).await {
            Ok(Ok(answer)) => answer.map_err(|error| match error {
                DevToolsError::Command { message, .. } => DevToolsError::Command { method: method.to_owned(), message },
                other => other,
            }),
            Ok(Err(_)) => Err(self.inner.died()),
            Err(_) => {
                self.inner.pending.lock().remove(&id);
                Err(DevToolsError::Timeout { method: method.to_owned(), seconds: COMMAND_GUARD.as_secs() })
            }
        }
    }

    /// Sends a command without waiting for its answer (usable outside the runtime, e.g. from a
    /// broker's terminate callback).
    pub fn send_detached(&self, method: &str, params: Value, session_id: Option<&str>) {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let _ = self.post(id, method, params, session_id);
    }

    fn post(&self, id: u64, method: &str, params: Value, session_id: Option<&str>) -> Result<(), DevToolsError> {
        if self.is_closed() {
            self.inner.pending.lock().remove(&id);
            return Err(self.inner.died());
        }
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session_id {
            message["sessionId"] = Value::String(session.to_owned());
        }
        let mut bytes = serde_json::to_vec(&message).map_err(|e| DevToolsError::Io(e.into()))?;
        bytes.push(0);
        self.inner.writer.send(bytes).map_err(|_| self.inner.died())
    }
}

fn dispatch(inner: &Inner, message: &[u8]) {
    let Ok(mut value) = serde_json::from_slice::<Value>(message) else {
        tracing::warn!("undecodable DevTools message ignored");
        return;
    };
    if let Some(id) = value.get("id").and_then(Value::as_u64) {
        let Some(answer) = inner.pending.lock().remove(&id) else { return };
        let result = match value.get_mut("error") {
            Some(error) => Err(DevToolsError::Command {
                method: String::new(),
                message: error.get("message").and_then(Value::as_str).unwrap_or("error").to_owned(),
            }),
            None => Ok(value.get_mut("result").map(Value::take).unwrap_or(Value::Null)),
        };
        let _ = answer.send(result);
        return;
    }
    let Some(method) = value.get("method").and_then(Value::as_str).map(str::to_owned) else { return };
    let event = Arc::new(Event {
        method,
        params: value.get_mut("params").map(Value::take).unwrap_or(Value::Null),
        session_id: value.get("sessionId").and_then(Value::as_str).map(str::to_owned),
    });
    inner.subscribers.lock().retain(|subscriber| subscriber.send(event.clone()).is_ok());
}
