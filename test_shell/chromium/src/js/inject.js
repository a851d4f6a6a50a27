// navigator.crossOriginStorage for a Chromium page or worker, injected by the bridge before any
// page script runs. The bridge replaces __COS_BINDING__ and __COS_REPLY__ with the names it
// chose. Control calls go through the binding; bytes go over loopback HTTP on single-purpose
// capability URLs the bridge mints. The bridge treats every payload as hostile: nothing here is
// a security boundary, it only shapes the Web API.
(() => {
  "use strict";
  const BINDING = __COS_BINDING__;
  const REPLY = __COS_REPLY__;
  const g = globalThis;
  const send = g[BINDING];
  // Page script must not call the binding itself; a second evaluation finds it gone and stops.
  try { delete g[BINDING]; } catch (_) { /* not configurable: leave it */ }
  if (typeof send !== "function") return;
  if (!g.isSecureContext) return;

  // Captured now, so page script replacing globals later cannot intercept the API's own calls.
  const fetchFn = g.fetch.bind(g);
  const BlobCtor = g.Blob;
  const FileCtor = g.File;
  const WritableStreamCtor = g.WritableStream;
  const DOMExceptionCtor = g.DOMException;
  const TypeErrorCtor = g.TypeError;
  const stringify = JSON.stringify;
  const MapCtor = Map;

  // Payload bound (characters); the bridge refuses larger ones outright.
  const MAX_PAYLOAD_CHARS = 64 * 1024;
  // Bytes per POST to a writer's capability URL (the bridge's bound).
  const SLICE_BYTES = 8 * 1024 * 1024;

  const pending = new MapCtor();
  let nextId = 1;
  const toError = (error) => {
    const name = error && typeof error.name === "string" ? error.name : "UnknownError";
    const message = error && typeof error.message === "string" ? error.message : "";
    return name === "TypeError" ? new TypeErrorCtor(message) : new DOMExceptionCtor(message, name);
  };
  // The bridge fetches this once per context (and removes it from the global) to reply.
  Object.defineProperty(g, REPLY, {
    configurable: true,
    enumerable: false,
    value: (id, ok, value) => {
      const waiting = pending.get(id);
      if (!waiting) return;
      pending.delete(id);
      if (ok) waiting.resolve(value);
      else waiting.reject(toError(value));
    },
  });
  const call = (op, args) => {
    const payload = stringify({ ...args, op });
    if (payload.length > MAX_PAYLOAD_CHARS) return Promise.reject(new TypeErrorCtor("The arguments are too large."));
    const id = nextId++;
    return new Promise((resolve, reject) => {
      pending.set(id, { resolve, reject });
      send(`${id}:${payload}`);
    });
  };
  // Fire and forget (id 0 gets no reply).
  const notify = (op, args) => send(`0:${stringify({ ...args, op })}`);

  const define = (name, value) =>
    Object.defineProperty(g, name, { value, writable: true, configurable: true, enumerable: false });

  const ID = Symbol("id");
  const NAME = Symbol("name");
  const CREATE = Symbol("create");
  // Handles the page dropped are released in the service.
  const released = new FinalizationRegistry((handle) => notify("release", { handle }));

  class FileSystemHandle {
    constructor() { throw new TypeErrorCtor("Illegal constructor"); }
  }
  class FileSystemFileHandle extends FileSystemHandle {
    get kind() { return "file"; }
    get name() { return this[NAME]; }
    async getFile() {
      const { url } = await call("getFile", { handle: this[ID] });
      let blob;
      try {
        const response = await fetchFn(url, { credentials: "omit", cache: "no-store" });
        if (!response.ok) throw new TypeErrorCtor("refused");
        blob = await response.blob();
      } catch (_) {
        // A read that fails part-way (the blob was found damaged) is the grant going away.
        throw new DOMExceptionCtor("The requested file could not be found.", "NotFoundError");
      }
      return new FileCtor([blob], this[NAME], { type: "" });
    }
    async createWritable(options = {}) {
      const { writer, url } = await call("createWritable", { handle: this[ID] });
      return makeStream(writer, url);
    }
    async isSameEntry(other) { return other instanceof FileSystemFileHandle && other[NAME] === this[NAME]; }
    async queryPermission(descriptor = {}) {
      const mode = descriptor && descriptor.mode === "readwrite" ? "readwrite" : "read";
      return mode === "readwrite" && !this[CREATE] ? "denied" : "granted";
    }
    async requestPermission(descriptor = {}) { return this.queryPermission(descriptor); }
    async move() { await call("handleError", { handle: this[ID], operation: "move" }); }
    async remove() { await call("handleError", { handle: this[ID], operation: "remove" }); }
    async createSyncAccessHandle() {
      await call("handleError", { handle: this[ID], operation: "createSyncAccessHandle" });
    }
  }
  const makeHandle = ({ handle, name, create }) => {
    const object = Object.create(FileSystemFileHandle.prototype);
    object[ID] = handle;
    object[NAME] = name;
    object[CREATE] = Boolean(create);
    released.register(object, handle);
    return object;
  };

  const toU64 = (value) => {
    const n = Math.trunc(Number(value));
    return Number.isFinite(n) && n > 0 ? Math.min(n, Number.MAX_SAFE_INTEGER) : 0;
  };
  const isBytes = (data) => data instanceof ArrayBuffer || ArrayBuffer.isView(data);
  const toBlob = (data) => {
    if (data instanceof BlobCtor) return data;
    if (isBytes(data) || typeof data === "string") return new BlobCtor([data]);
    throw new TypeErrorCtor("write() needs a BufferSource, Blob, string or WriteParams");
  };
  const postBytes = async (url, blob, position) => {
    let offset = 0;
    do {
      const piece = blob.slice(offset, offset + SLICE_BYTES);
      const query = position === undefined ? "" : `?pos=${position + offset}`;
      let result;
      try {
        const response = await fetchFn(url + query, { method: "POST", body: piece, credentials: "omit" });
        result = await response.json();
      } catch (_) {
        throw new DOMExceptionCtor("The write could not be completed.", "UnknownError");
      }
      if (result && result.error) throw toError(result.error);
      offset += piece.size;
    } while (offset < blob.size);
  };
  const writeChunk = async (writer, url, chunk) => {
    if (chunk !== null && typeof chunk === "object" && !(chunk instanceof BlobCtor) && !isBytes(chunk)) {
      switch (chunk.type) {
        case "write": {
          const position = chunk.position === undefined || chunk.position === null ? undefined : toU64(chunk.position);
          return postBytes(url, toBlob(chunk.data), position);
        }
        case "seek": return call("seek", { writer, position: toU64(chunk.position) });
        case "truncate": return call("truncate", { writer, size: toU64(chunk.size) });
        default: throw new TypeErrorCtor("Unknown WriteParams type");
      }
    }
    return postBytes(url, toBlob(chunk), undefined);
  };

  let constructing = false;
  class FileSystemWritableFileStream extends WritableStreamCtor {
    constructor(sink) {
      if (!constructing) throw new TypeErrorCtor("Illegal constructor");
      super(sink);
    }
    // Through a writer of the stream itself, so these queue behind earlier writes.
    write(data) {
      const writer = this.getWriter();
      try { return writer.write(data); } finally { writer.releaseLock(); }
    }
    seek(position) { return this.write({ type: "seek", position }); }
    truncate(size) { return this.write({ type: "truncate", size }); }
  }
  const makeStream = (writer, url) => {
    constructing = true;
    try {
      return new FileSystemWritableFileStream({
        write: (chunk) => writeChunk(writer, url, chunk),
        // The verdict's warnings (fixed texts) go to the page's console, looked up at call time.
        close: () => call("close", { writer }).then((verdict) => {
          for (const text of (verdict && verdict.warnings) || []) g.console.warn(String(text));
        }),
        abort: () => call("abort", { writer }),
      });
    } finally {
      constructing = false;
    }
  };

  const hashArgs = (hash) => {
    if (hash === null || typeof hash !== "object") throw new TypeErrorCtor("The hash must be a dictionary {algorithm, value}.");
    if (hash.algorithm === undefined || hash.value === undefined) {
      throw new TypeErrorCtor("The hash dictionary requires 'algorithm' and 'value' strings.");
    }
    return { algorithm: String(hash.algorithm), value: String(hash.value) };
  };
  // (DOMString or sequence<DOMString>), as WebIDL converts it.
  const originsArg = (origins) => {
    if (origins === undefined) return undefined;
    if (typeof origins === "string") return { single: origins };
    if (Array.isArray(origins)) return { list: origins.map((item) => String(item)) };
    return { single: String(origins) };
  };
  class CrossOriginStorageManager {
    constructor() { throw new TypeErrorCtor("Illegal constructor"); }
    async getFileHandle(hash, options = {}) {
      const dict = hashArgs(hash);
      options = options || {};
      return makeHandle(await call("getFileHandle", {
        hash: dict, create: Boolean(options.create), origins: originsArg(options.origins),
      }));
    }
    async requestFileHandle(hash, options = {}) { return this.getFileHandle(hash, options); }
    async requestFileHandles(hashes, options = {}) {
      const list = [...hashes].map(hashArgs);
      options = options || {};
      const handles = await call("requestFileHandles", {
        hashes: list, create: Boolean(options.create), origins: originsArg(options.origins),
      });
      return handles.map(makeHandle);
    }
  }
  const manager = Object.create(CrossOriginStorageManager.prototype);
  Object.defineProperty(g.navigator, "crossOriginStorage", { get: () => manager, enumerable: true, configurable: true });
  define("CrossOriginStorageManager", CrossOriginStorageManager);
  define("FileSystemHandle", FileSystemHandle);
  define("FileSystemFileHandle", FileSystemFileHandle);
  define("FileSystemWritableFileStream", FileSystemWritableFileStream);
})();
