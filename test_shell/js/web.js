// The Web APIs of a page realm in the COS test shell, written on a few natives:
// __host (sha256, randomBytes, utf8Encode, utf8Decode, generatedBytes, urlParse, formDecode,
// formEncode) and, where the attribute exists,
// __cos (navigator.crossOriginStorage). Our own implementation (MIT OR Apache-2.0).
(() => {
  "use strict";
  const host = globalThis.__host;
  const cos = globalThis.__cos;
  delete globalThis.__host;
  delete globalThis.__cos;
  const define = (name, value) =>
    Object.defineProperty(globalThis, name, { value, writable: true, configurable: true, enumerable: false });

  // ---- encoding ------------------------------------------------------------------------------
  class TextEncoder {
    get encoding() { return "utf-8"; }
    encode(input = "") { return new Uint8Array(host.utf8Encode(String(input))); }
  }
  class TextDecoder {
    get encoding() { return "utf-8"; }
    decode(input) {
      if (input === undefined) return "";
      return host.utf8Decode(input);
    }
  }
  define("TextEncoder", TextEncoder);
  define("TextDecoder", TextDecoder);

  const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  define("btoa", (data) => {
    const s = String(data);
    let out = "";
    for (let i = 0; i < s.length; i += 3) {
      const c = [s.charCodeAt(i), s.charCodeAt(i + 1), s.charCodeAt(i + 2)];
      if (c.some((x) => x > 255)) throw new DOMException("The string contains characters outside Latin1.", "InvalidCharacterError");
      const n = (c[0] << 16) | ((c[1] || 0) << 8) | (c[2] || 0);
      out += B64[(n >> 18) & 63] + B64[(n >> 12) & 63];
      out += i + 1 < s.length ? B64[(n >> 6) & 63] : "=";
      out += i + 2 < s.length ? B64[n & 63] : "=";
    }
    return out;
  });
  define("atob", (data) => {
    const s = String(data).replace(/[\t\n\f\r ]/g, "").replace(/=+$/, "");
    if (s.length % 4 === 1 || /[^A-Za-z0-9+/]/.test(s)) throw new DOMException("Invalid base64.", "InvalidCharacterError");
    let out = "", bits = 0, value = 0;
    for (const ch of s) {
      value = (value << 6) | B64.indexOf(ch);
      bits += 6;
      if (bits >= 8) { bits -= 8; out += String.fromCharCode((value >> bits) & 255); }
    }
    return out;
  });

  // ---- bytes helpers ---------------------------------------------------------------------------
  const toBytes = (part) => {
    if (part instanceof ArrayBuffer) return new Uint8Array(part.slice(0));
    if (ArrayBuffer.isView(part)) return new Uint8Array(part.buffer.slice(part.byteOffset, part.byteOffset + part.byteLength));
    return new TextEncoder().encode(String(part));
  };
  const concat = (chunks) => {
    const total = chunks.reduce((n, c) => n + c.byteLength, 0);
    const out = new Uint8Array(total);
    let at = 0;
    for (const c of chunks) { out.set(c, at); at += c.byteLength; }
    return out;
  };

  // ---- crypto ------------------------------------------------------------------------------------
  const subtle = {
    async digest(algorithm, data) {
      const name = typeof algorithm === "string" ? algorithm : algorithm && algorithm.name;
      if (String(name).toUpperCase() !== "SHA-256") throw new DOMException("Only SHA-256 is supported here.", "NotSupportedError");
      return host.sha256(data);
    },
  };
  define("crypto", {
    subtle,
    getRandomValues(array) {
      if (!ArrayBuffer.isView(array)) throw new TypeError("getRandomValues needs an integer typed array");
      const bytes = new Uint8Array(host.randomBytes(array.byteLength));
      new Uint8Array(array.buffer, array.byteOffset, array.byteLength).set(bytes);
      return array;
    },
    randomUUID() {
      const b = new Uint8Array(host.randomBytes(16));
      b[6] = (b[6] & 0x0f) | 0x40; b[8] = (b[8] & 0x3f) | 0x80;
      const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
      return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
    },
  });

  // `internals`: the shell's own helpers for its pages, as content_shell gives web tests
  // `window.internals`. Not a web API.
  define("internals", {
    // `length` pseudo-random bytes from `seed`, made natively (benchmarks need hundreds of MiB).
    generatedBytes(length, seed) { return new Uint8Array(host.generatedBytes(length, seed)); },
  });

  // ---- Blob and File -----------------------------------------------------------------------------
  const SOURCE = Symbol("source");
  // A source reads bytes [start, end): in memory, or lazily from a COS file's data pipe.
  const memorySource = (bytes) => ({ size: bytes.byteLength, read: (s, e) => bytes.slice(s, e) });

  class Blob {
    constructor(parts = [], options = {}) {
      const chunks = [];
      for (const part of parts) chunks.push(part instanceof Blob ? part[SOURCE].read(0, part.size) : toBytes(part));
      this[SOURCE] = { source: memorySource(concat(chunks)), start: 0 };
      this[SOURCE] = wrap(memorySource(concat(chunks)), 0, undefined);
      this._type = options && options.type ? String(options.type).toLowerCase() : "";
    }
    get size() { return this[SOURCE].size; }
    get type() { return this._type; }
    slice(start = 0, end = this.size, type = "") {
      const size = this.size;
      const clamp = (v) => (v < 0 ? Math.max(size + v, 0) : Math.min(v, size));
      const [s, e] = [clamp(start), clamp(end)];
      const blob = Object.create(Blob.prototype);
      blob[SOURCE] = wrap(this[SOURCE], s, Math.max(e, s));
      blob._type = String(type).toLowerCase();
      return blob;
    }
    async arrayBuffer() { return this[SOURCE].read(0, this.size).buffer; }
    async bytes() { return this[SOURCE].read(0, this.size); }
    async text() { return new TextDecoder().decode(this[SOURCE].read(0, this.size)); }
    stream() {
      const blob = this;
      let offset = 0;
      const chunk = 1 << 20;
      return new ReadableStream({
        pull(controller) {
          if (offset >= blob.size) { controller.close(); return; }
          const end = Math.min(offset + chunk, blob.size);
          controller.enqueue(blob[SOURCE].read(offset, end));
          offset = end;
        },
      });
    }
  }
  // A view [start, end) of a source.
  function wrap(source, start, end) {
    const limit = end === undefined ? source.size : end;
    return { size: limit - start, read: (s, e) => source.read(start + s, start + e) };
  }
  class File extends Blob {
    constructor(bits, name, options = {}) {
      super(bits, options);
      this._name = String(name);
      this._lastModified = options.lastModified === undefined ? Date.now() : Number(options.lastModified);
    }
    get name() { return this._name; }
    get lastModified() { return this._lastModified; }
  }
  define("Blob", Blob);
  define("File", File);

  // ---- minimal streams ---------------------------------------------------------------------------
  class ReadableStream {
    constructor(source = {}) {
      this._queue = [];
      this._closed = false;
      this._error = undefined;
      this._source = source;
      const controller = {
        enqueue: (chunk) => this._queue.push(chunk),
        close: () => { this._closed = true; },
        error: (e) => { this._error = e; },
      };
      this._controller = controller;
      if (source.start) source.start(controller);
    }
    getReader() {
      const stream = this;
      return {
        async read() {
          while (stream._queue.length === 0 && !stream._closed && stream._error === undefined) {
            if (!stream._source.pull) break;
            await stream._source.pull(stream._controller);
          }
          if (stream._error !== undefined) throw stream._error;
          if (stream._queue.length > 0) return { value: stream._queue.shift(), done: false };
          return { value: undefined, done: true };
        },
        releaseLock() {},
        cancel: async () => { stream._closed = true; },
      };
    }
    async pipeTo(destination) {
      const reader = this.getReader();
      const writer = destination.getWriter ? destination.getWriter() : destination;
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          await writer.write(value);
        }
        await writer.close();
      } catch (error) {
        if (writer.abort) await writer.abort(error);
        throw error;
      }
    }
  }
  define("ReadableStream", ReadableStream);

  // A minimal WritableStream: an underlying sink's start/write/close/abort, writes run one after
  // another in order, one writer at a time.
  class WritableStream {
    constructor(sink = {}) {
      this._sink = sink;
      this._writer = null;
      this._controller = { error: (e) => { this._error = e; } };
      this._pending = Promise.resolve(sink.start ? sink.start(this._controller) : undefined);
    }
    get locked() { return this._writer !== null; }
    _enqueue(step) {
      const next = this._pending.then(() => {
        if (this._error !== undefined) throw this._error;
        return step();
      });
      // A failed step fails the stream for every later one.
      this._pending = next.catch((error) => { this._error = error; });
      return next;
    }
    getWriter() {
      if (this._writer) throw new TypeError("The stream is locked to another writer.");
      const stream = this;
      const writer = {
        get ready() { return Promise.resolve(); },
        write: (chunk) => stream._enqueue(() => stream._sink.write && stream._sink.write(chunk, stream._controller)),
        close: () => stream._enqueue(() => stream._sink.close && stream._sink.close()),
        abort: (reason) => stream._enqueue(() => stream._sink.abort && stream._sink.abort(reason)),
        releaseLock: () => { stream._writer = null; },
      };
      this._writer = writer;
      return writer;
    }
    async close() { return this.getWriter().close(); }
    async abort(reason) { return this.getWriter().abort(reason); }
  }
  define("WritableStream", WritableStream);

  // ---- structuredClone (data only) -----------------------------------------------------------------
  define("structuredClone", (value) => {
    const seen = new Map();
    const clone = (v) => {
      if (v === null || typeof v !== "object") {
        if (typeof v === "function" || typeof v === "symbol") throw new DOMException("The object could not be cloned.", "DataCloneError");
        return v;
      }
      if (seen.has(v)) return seen.get(v);
      let out;
      if (Array.isArray(v)) { out = []; seen.set(v, out); v.forEach((x, i) => { out[i] = clone(x); }); return out; }
      if (v instanceof ArrayBuffer) { out = v.slice(0); seen.set(v, out); return out; }
      if (ArrayBuffer.isView(v)) { out = new v.constructor(v); seen.set(v, out); return out; }
      if (v instanceof Date) return new Date(v.getTime());
      if (v instanceof Map) { out = new Map(); seen.set(v, out); for (const [k, x] of v) out.set(clone(k), clone(x)); return out; }
      if (v instanceof Set) { out = new Set(); seen.set(v, out); for (const x of v) out.add(clone(x)); return out; }
      if (v instanceof Error) { const e = new v.constructor(v.message); e.name = v.name; return e; }
      if (v instanceof Blob) return v;
      // Through the global: in an insecure context the class below is never initialised, and
      // naming its binding would throw.
      if (typeof globalThis.FileSystemFileHandle === "function" && v instanceof globalThis.FileSystemFileHandle) return v;
      if (typeof v.then === "function" || (v.constructor && v.constructor !== Object && !(v instanceof Object))) {
        throw new DOMException("The object could not be cloned.", "DataCloneError");
      }
      out = {};
      seen.set(v, out);
      for (const key of Object.keys(v)) out[key] = clone(v[key]);
      return out;
    };
    return clone(value);
  });

  // ---- fetch, Response, Headers (to the loopback hub) -------------------------------------------------
  const net = globalThis.__fetch;
  delete globalThis.__fetch;
  class Headers {
    constructor(init) {
      this._map = new Map();
      if (init instanceof Headers) init = [...init._map];
      else if (init && !Array.isArray(init)) init = Object.entries(init);
      for (const [name, value] of init || []) this.append(name, value);
    }
    append(name, value) {
      const key = String(name).toLowerCase();
      const old = this._map.get(key);
      this._map.set(key, old === undefined ? String(value) : `${old}, ${value}`);
    }
    set(name, value) { this._map.set(String(name).toLowerCase(), String(value)); }
    get(name) { const v = this._map.get(String(name).toLowerCase()); return v === undefined ? null : v; }
    has(name) { return this._map.has(String(name).toLowerCase()); }
    delete(name) { this._map.delete(String(name).toLowerCase()); }
    forEach(callback) { for (const [k, v] of this._map) callback(v, k, this); }
    entries() { return this._map.entries(); }
    keys() { return this._map.keys(); }
    values() { return this._map.values(); }
    [Symbol.iterator]() { return this._map.entries(); }
  }
  class Response {
    constructor(body = null, init = {}) {
      init = init || {};
      this.status = init.status === undefined ? 200 : Number(init.status);
      this.statusText = init.statusText === undefined ? "" : String(init.statusText);
      this.headers = new Headers(init.headers);
      this.url = "";
      this.type = "default";
      this.redirected = false;
      this._blob = body === null || body === undefined ? null : body instanceof Blob ? body : new Blob([body]);
      this._net = undefined;
      this._used = false;
      this._stream = undefined;
    }
    get ok() { return this.status >= 200 && this.status < 300; }
    get bodyUsed() { return this._used; }
    get body() {
      if (this._stream === undefined) {
        if (this._net !== undefined) {
          const id = this._net;
          this._stream = new ReadableStream({
            async pull(controller) {
              const chunk = await net.read(id);
              if (chunk === null) controller.close();
              else controller.enqueue(new Uint8Array(chunk));
            },
          });
        } else {
          this._stream = this._blob ? this._blob.stream() : null;
        }
      }
      return this._stream;
    }
    async bytes() {
      if (this._used) throw new TypeError("Body has already been consumed.");
      this._used = true;
      if (this._net === undefined) return this._blob ? this._blob.bytes() : new Uint8Array(0);
      const reader = this.body.getReader();
      const chunks = [];
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        chunks.push(value);
      }
      return concat(chunks);
    }
    async arrayBuffer() { return (await this.bytes()).buffer; }
    async text() { return new TextDecoder().decode(await this.bytes()); }
    async json() { return JSON.parse(await this.text()); }
    async blob() { return new Blob([await this.bytes()], { type: this.headers.get("content-type") || "" }); }
  }
  // A request: URL (absolute after construction), integrity and crossOriginStorage (SPEC §11).
  class Request {
    constructor(input, init = {}) {
      init = init || {};
      const base = input instanceof Request ? input : { url: String(input), integrity: "", crossOriginStorage: undefined };
      this.url = resolveUrl(base.url);
      this.method = "GET";
      this.integrity = init.integrity !== undefined ? String(init.integrity) : base.integrity;
      this.crossOriginStorage = init.crossOriginStorage !== undefined ? init.crossOriginStorage : base.crossOriginStorage;
      this.headers = new Headers(init.headers || (input instanceof Request ? input.headers : undefined));
    }
  }
  // Relative URLs resolve against the realm's URL (a worker's is its page's).
  const resolveUrl = (url) => {
    const base = globalThis.location ? globalThis.location.href : undefined;
    let parsed;
    try { parsed = new URL(String(url), base); } catch (_) { throw new TypeError(`fetch: not a valid URL: ${url}`); }
    if (parsed.protocol !== "http:" && parsed.protocol !== "https:") throw new TypeError(`fetch: only http(s) URLs are supported here: ${url}`);
    return parsed.href;
  };
  // crossOriginStorage: '' | '*' | [origins] | {origins, contentType} → the native's argument.
  const cosArgument = (scope) => {
    if (scope === undefined) return null;
    let origins = scope, contentType = null;
    if (scope !== null && typeof scope === "object" && !Array.isArray(scope)) {
      origins = scope.origins === undefined ? "" : scope.origins;
      contentType = scope.contentType === undefined ? null : String(scope.contentType);
    }
    if (Array.isArray(origins)) return { kind: "sequence", values: origins.map(String), contentType };
    if (origins !== null && typeof origins === "object" && typeof origins[Symbol.iterator] === "function") return { kind: "sequence", values: [...origins].map(String), contentType };
    return { kind: "single", values: [String(origins)], contentType };
  };
  async function fetch(input, init = {}) {
    const request = new Request(input, init);
    const head = await net.start(request.url, request.integrity || null, cosArgument(request.crossOriginStorage));
    // The browser stored the response with warnings (SPEC §5): looked up at call time, so a page
    // (or a test) replacing console.warn hears them.
    for (const text of head.warnings) globalThis.console.warn(text);
    const response = Object.create(Response.prototype);
    const sameOrigin = new URL(head.url).origin === (globalThis.location ? globalThis.location.origin : "");
    Object.assign(response, { status: head.status, statusText: "", headers: new Headers(head.headers), url: head.url });
    response.type = sameOrigin ? "basic" : "cors";
    response.redirected = head.redirected;
    response._blob = null;
    response._net = head.id;
    response._used = false;
    response._stream = undefined;
    return response;
  }
  if (net) {
    define("fetch", fetch);
  }
  define("Headers", Headers);
  define("Response", Response);
  define("Request", Request);

  // ---- blob: URLs, dedicated workers, messages ---------------------------------------------------------
  const workerNative = globalThis.__worker;
  const inWorker = globalThis.__workerScope === true;
  const inServiceWorker = globalThis.__serviceWorkerScope === true;
  delete globalThis.__serviceWorkerScope;
  const frameNative = globalThis.__frames;
  delete globalThis.__worker;
  delete globalThis.__workerScope;
  delete globalThis.__frames;
  const blobUrls = new Map();

  // URL and URLSearchParams: the parsing is the `url` crate's WHATWG parser (host.urlParse);
  // the classes only keep its answer and rebuild the URL when its query changes.
  const parseUrl = (url, base) => {
    const parts = host.urlParse(String(url), base === undefined || base === null ? null : String(base));
    return parts == null ? null : parts;
  };
  const paramsState = new WeakMap();
  const urlState = new WeakMap();
  const pairsOf = (flat) => {
    const pairs = [];
    for (let i = 0; i + 1 < flat.length; i += 2) pairs.push([flat[i], flat[i + 1]]);
    return pairs;
  };
  class URLSearchParams {
    constructor(init = "") {
      let pairs = [];
      if (init instanceof URLSearchParams) {
        pairs = paramsState.get(init).pairs.map(([k, v]) => [k, v]);
      } else if (init !== null && typeof init === "object" && typeof init[Symbol.iterator] === "function") {
        for (const item of init) {
          const pair = [...item];
          if (pair.length !== 2) throw new TypeError("URLSearchParams: each pair needs a name and a value");
          pairs.push([String(pair[0]), String(pair[1])]);
        }
      } else if (init !== null && typeof init === "object") {
        for (const key of Object.keys(init)) pairs.push([key, String(init[key])]);
      } else {
        const text = String(init);
        pairs = pairsOf(host.formDecode(text.startsWith("?") ? text.slice(1) : text));
      }
      paramsState.set(this, { pairs, url: null });
    }
    get size() { return paramsState.get(this).pairs.length; }
    append(name, value) { this.#change((pairs) => pairs.push([String(name), String(value)])); }
    delete(name, value) {
      const [n, v] = [String(name), value === undefined ? undefined : String(value)];
      this.#change((pairs) => {
        const kept = pairs.filter(([k, x]) => !(k === n && (v === undefined || x === v)));
        pairs.splice(0, pairs.length, ...kept);
      });
    }
    get(name) {
      const found = paramsState.get(this).pairs.find(([k]) => k === String(name));
      return found ? found[1] : null;
    }
    getAll(name) { return paramsState.get(this).pairs.filter(([k]) => k === String(name)).map(([, v]) => v); }
    has(name, value) {
      const [n, v] = [String(name), value === undefined ? undefined : String(value)];
      return paramsState.get(this).pairs.some(([k, x]) => k === n && (v === undefined || x === v));
    }
    set(name, value) {
      const [n, v] = [String(name), String(value)];
      this.#change((pairs) => {
        const first = pairs.findIndex(([k]) => k === n);
        if (first < 0) return void pairs.push([n, v]);
        pairs[first][1] = v;
        const kept = pairs.filter(([k], i) => k !== n || i === first);
        pairs.splice(0, pairs.length, ...kept);
      });
    }
    sort() {
      // A stable sort by code units, as the standard asks.
      this.#change((pairs) => pairs.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
    }
    forEach(callback, thisArg) {
      for (const [k, v] of this.entries()) callback.call(thisArg, v, k, this);
    }
    *entries() { for (const [k, v] of paramsState.get(this).pairs) yield [k, v]; }
    *keys() { for (const [k] of this.entries()) yield k; }
    *values() { for (const [, v] of this.entries()) yield v; }
    [Symbol.iterator]() { return this.entries(); }
    toString() { return host.formEncode(paramsState.get(this).pairs.flat()); }
    // Mutations of a URL's searchParams rewrite that URL's query.
    #change(mutate) {
      const state = paramsState.get(this);
      mutate(state.pairs);
      if (state.url) urlState.get(state.url).setQuery(this.toString());
    }
  }
  const PARTS = ["href", "origin", "protocol", "username", "password", "host", "hostname", "port", "pathname", "search", "hash"];
  class URL {
    constructor(url, base) {
      if (arguments.length === 0) throw new TypeError("URL: a URL is required");
      const parts = parseUrl(url, base);
      if (!parts) throw new TypeError(`URL: ${String(url)}${base === undefined ? "" : ` (against ${String(base)})`} is not a valid URL`);
      const params = new URLSearchParams(parts[9]);
      paramsState.get(params).url = this;
      const state = {
        parts,
        params,
        setHref: (href) => {
          const next = parseUrl(href);
          if (!next) throw new TypeError(`URL: ${String(href)} is not a valid URL`);
          state.parts = next;
          paramsState.get(params).pairs = pairsOf(host.formDecode(next[9].slice(1)));
        },
        setQuery: (query) => {
          const [href, , , , , , , , , search, hash] = state.parts;
          const stem = href.slice(0, href.length - search.length - hash.length);
          const next = parseUrl(stem + (query ? `?${query}` : "") + hash);
          if (next) state.parts = next;
        },
      };
      urlState.set(this, state);
    }
    static canParse(url, base) { return parseUrl(url, base) !== null; }
    static parse(url, base) { return parseUrl(url, base) === null ? null : new URL(url, base); }
    static createObjectURL(blob) {
      if (!(blob instanceof Blob)) throw new TypeError("createObjectURL needs a Blob");
      const url = `blob:${globalThis.location ? globalThis.location.origin : "null"}/${crypto.randomUUID()}`;
      blobUrls.set(url, blob);
      return url;
    }
    static revokeObjectURL(url) { blobUrls.delete(String(url)); }
    set href(value) { urlState.get(this).setHref(value); }
    set search(value) {
      const text = String(value);
      const query = text.startsWith("?") ? text.slice(1) : text;
      const state = urlState.get(this);
      state.setQuery(query);
      paramsState.get(state.params).pairs = pairsOf(host.formDecode(query));
    }
    set hash(value) {
      const text = String(value);
      const [href, , , , , , , , , , hash] = urlState.get(this).parts;
      const stem = href.slice(0, href.length - hash.length);
      urlState.get(this).setHref(stem + (text === "" ? "" : text.startsWith("#") ? text : `#${text}`));
    }
    get searchParams() { return urlState.get(this).params; }
    toString() { return this.href; }
    toJSON() { return this.href; }
  }
  PARTS.forEach((name, index) => {
    const existing = Object.getOwnPropertyDescriptor(URL.prototype, name) || {};
    Object.defineProperty(URL.prototype, name, {
      get() { return urlState.get(this).parts[index]; },
      set: existing.set,
      enumerable: true,
      configurable: true,
    });
  });
  define("URL", URL);
  define("URLSearchParams", URLSearchParams);

  // Messages are JSON; a COS handle travels as a reference to the sender's native table. A
  // page's workers share that table (same origin, same COS view); a frame adopts the handle into
  // its own table, which the renderer allows only for the sender's origin (else DataCloneError).
  const HANDLE_TAG = "\u0000cosHandle";
  let handleToWire = () => undefined;
  let wireToHandle = () => {
    throw new DOMException("The handle could not be transferred.", "DataCloneError");
  };
  const serialize = (data) => {
    structuredClone(data); // the same DataCloneError rules as everywhere else
    return JSON.stringify(data, (key, value) => {
      const wire = handleToWire(value);
      return wire === undefined ? value : wire;
    });
  };
  // `sender`: the frame that posted it, or undefined for a message between a page and its worker.
  const deserialize = (json, sender) =>
    JSON.parse(json, (key, value) =>
      value && typeof value === "object" && HANDLE_TAG in value ? wireToHandle(value, sender) : value,
    );

  const listeners = (target, type = "message") => {
    target._listeners = target._listeners || {};
    target._listeners[type] = target._listeners[type] || [];
    return target._listeners[type];
  };
  const deliver = (target, data, extra = {}, type = "message") => {
    const event = { type, data, target, origin: "", source: null, ...extra };
    if (typeof target["on" + type] === "function") target["on" + type](event);
    for (const listener of listeners(target, type)) listener(event);
  };
  const addListener = (target) => (type, listener) => {
    if (type === "message" || type === "messageerror") listeners(target, type).push(listener);
  };
  const removeListener = (target) => (type, listener) => {
    if (target._listeners && target._listeners[type]) target._listeners[type] = target._listeners[type].filter((l) => l !== listener);
  };
  const workers = new Map();
  class Worker {
    constructor(url, options = {}) {
      const blob = blobUrls.get(String(url));
      if (!blob) throw new DOMException("Workers here load blob: URLs created by this page.", "SecurityError");
      if (options && options.type === "module") throw new TypeError("module workers are not supported");
      this._id = workerNative.create(new TextDecoder().decode(blob[SOURCE].read(0, blob.size)), false);
      this.onmessage = null;
      workers.set(this._id, this);
    }
    postMessage(data) { workerNative.post(this._id, serialize(data)); }
    addEventListener(type, listener) { addListener(this)(type, listener); }
    removeEventListener(type, listener) { removeListener(this)(type, listener); }
    terminate() { workerNative.terminate(this._id); workers.delete(this._id); }
  }
  if (workerNative && !inWorker) define("Worker", Worker);
  if (inWorker) {
    globalThis.onmessage = null;
    if (!inServiceWorker) define("postMessage", (data) => workerNative.postToParent(serialize(data)));
    define("addEventListener", addListener(globalThis));
    define("removeEventListener", removeListener(globalThis));
  }

  // Frames of this renderer reach each other through `parent` and `frames`. HTML semantics: a
  // target origin that does not match drops the message; a message that cannot be deserialized
  // (a handle from another origin) fires `messageerror` instead of `message`.
  class WindowProxy {
    constructor(id) { this._id = id; }
    postMessage(data, targetOrigin = "/") {
      const target = targetOrigin === "/" ? globalThis.location.origin : String(targetOrigin);
      if (!frameNative.post(this._id, serialize(data), target)) {
        console.log("postMessage: the target frame is not in this renderer process; nothing was delivered");
      }
    }
  }
  if (frameNative && !inWorker) {
    globalThis.onmessage = null;
    globalThis.onmessageerror = null;
    define("parent", frameNative.parent === undefined || frameNative.parent === null ? globalThis : new WindowProxy(frameNative.parent));
    Object.defineProperty(globalThis, "frames", { get: () => frameNative.children().map((id) => new WindowProxy(id)), configurable: true });
    define("postMessage", (data, targetOrigin) => new WindowProxy(frameNative.self).postMessage(data, targetOrigin));
    define("addEventListener", addListener(globalThis));
    define("removeEventListener", removeListener(globalThis));
  }

  define("__deliverMessage", (json, from) => {
    if (from < 0) {
      const sender = -from;
      const extra = { origin: frameNative.originOf(sender) || "", source: new WindowProxy(sender) };
      let data;
      try {
        data = deserialize(json, sender);
      } catch (error) {
        deliver(globalThis, null, extra, "messageerror");
        return;
      }
      deliver(globalThis, data, extra);
      return;
    }
    const data = deserialize(json);
    // A service worker answers its client through `event.source`.
    const client = { postMessage: (reply) => workerNative.postToParent(serialize(reply)) };
    if (inWorker) deliver(globalThis, data, inServiceWorker ? { source: client } : {});
    else if (workers.has(from)) deliver(workers.get(from), data);
  });

  // ---- navigator.crossOriginStorage ------------------------------------------------------------------
  const navigator = {};
  define("navigator", navigator);
  // Service workers: registered from a blob: URL of the page (the shell has no same-origin script
  // server); `registration.active.postMessage` reaches the worker's `message` event, whose
  // `event.source.postMessage` answers `navigator.serviceWorker`'s `message` event.
  if (workerNative && !inWorker) {
    const container = {
      controller: null,
      onmessage: null,
      addEventListener(type, listener) { addListener(this)(type, listener); },
      removeEventListener(type, listener) { removeListener(this)(type, listener); },
      async register(url) {
        const blob = blobUrls.get(String(url));
        if (!blob) throw new DOMException("Service workers here load blob: URLs created by this page.", "SecurityError");
        const id = workerNative.create(new TextDecoder().decode(blob[SOURCE].read(0, blob.size)), true);
        workers.set(id, container);
        const active = {
          state: "activated",
          scriptURL: String(url),
          postMessage: (data) => workerNative.post(id, serialize(data)),
        };
        return {
          active,
          scope: `${globalThis.location.origin}/`,
          async unregister() {
            workerNative.terminate(id);
            workers.delete(id);
            return true;
          },
        };
      },
    };
    navigator.serviceWorker = container;
  }
  if (!cos) return;

  const ID = Symbol("id");
  class FileSystemHandle {
    constructor() { throw new TypeError("Illegal constructor"); }
  }
  class FileSystemFileHandle extends FileSystemHandle {
    get kind() { return "file"; }
    get name() { return this._name; }
    async getFile() {
      const { id, size } = await cos.getFile(this[ID]);
      const file = Object.create(File.prototype);
      file[SOURCE] = wrap({ size, read: (s, e) => new Uint8Array(cos.read(id, s, e)) }, 0, size);
      file._type = "";
      file._name = this._name;
      file._lastModified = Date.now();
      return file;
    }
    async createWritable(options = {}) {
      const id = await cos.createWritable(this[ID], Boolean(options && options.keepExistingData));
      const stream = Object.create(FileSystemWritableFileStream.prototype);
      stream[ID] = id;
      stream._locked = false;
      return stream;
    }
    async isSameEntry(other) { return other instanceof FileSystemFileHandle && cos.isSameEntry(this[ID], other[ID]); }
    async queryPermission(descriptor = {}) { return cos.permission(this[ID], descriptor.mode || "read"); }
    async requestPermission(descriptor = {}) { return cos.permission(this[ID], descriptor.mode || "read"); }
    async move() { cos.handleError(this[ID], "move"); }
    async remove() { cos.handleError(this[ID], "remove"); }
    async createSyncAccessHandle() { cos.handleError(this[ID], "createSyncAccessHandle"); }
  }
  // The native handle goes when its object does (the page's open handles are those it holds).
  const handleFinalizer = new FinalizationRegistry((id) => cos.dropHandle(id));
  const makeHandle = ({ id, name }) => {
    const handle = Object.create(FileSystemFileHandle.prototype);
    handle[ID] = id;
    handle._name = name;
    handleFinalizer.register(handle, id);
    return handle;
  };

  const chunkBytes = async (data) => {
    if (data instanceof Blob) return data.bytes();
    if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) return data;
    if (typeof data === "string") return new TextEncoder().encode(data);
    throw new TypeError("write() needs a BufferSource, Blob, string or WriteParams");
  };
  class FileSystemWritableFileStream extends WritableStream {
    constructor() {
      super();
      throw new TypeError("Illegal constructor");
    }
    get locked() { return false; }
    async write(data) {
      if (data && typeof data === "object" && !(data instanceof Blob) && !(data instanceof ArrayBuffer) && !ArrayBuffer.isView(data)) {
        switch (data.type) {
          case "write": {
            const bytes = await chunkBytes(data.data);
            if (data.position === undefined || data.position === null) cos.write(this[ID], undefined, bytes);
            else cos.write(this[ID], Number(data.position), bytes);
            return;
          }
          case "seek": return cos.seek(this[ID], Number(data.position));
          case "truncate": return cos.truncate(this[ID], Number(data.size));
          default: throw new TypeError("Unknown WriteParams type");
        }
      }
      const bytes = await chunkBytes(data);
      // Large chunks go in pieces so a write never holds more than a few MiB twice.
      const view = bytes instanceof ArrayBuffer ? new Uint8Array(bytes) : new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      cos.write(this[ID], undefined, view);
    }
    async seek(position) { cos.seek(this[ID], Number(position)); }
    async truncate(size) { cos.truncate(this[ID], Number(size)); }
    async close() {
      // The write succeeded; what it could not do goes to the console, looked up now so that a
      // page (or a test) replacing console.warn hears it.
      for (const text of cos.close(this[ID])) globalThis.console.warn(text);
    }
    async abort() { cos.abort(this[ID]); }
    getWriter() {
      return { write: (c) => this.write(c), close: () => this.close(), abort: () => this.abort(), releaseLock() {} };
    }
  }

  const hashArgs = (hash) => {
    if (hash === null || typeof hash !== "object") throw new TypeError("The hash must be a dictionary {algorithm, value}.");
    if (hash.algorithm === undefined || hash.value === undefined) {
      throw new TypeError("The hash dictionary requires 'algorithm' and 'value' strings.");
    }
    return [String(hash.algorithm), String(hash.value)];
  };
  class CrossOriginStorageManager {
    constructor() { throw new TypeError("Illegal constructor"); }
    async getFileHandle(hash, options = {}) {
      const [algorithm, value] = hashArgs(hash);
      options = options || {};
      return makeHandle(await cos.getFileHandle(algorithm, value, Boolean(options.create), options.origins));
    }
    async requestFileHandle(hash, options = {}) { return this.getFileHandle(hash, options); }
    async requestFileHandles(hashes, options = {}) {
      const list = [...hashes].map(hashArgs);
      options = options || {};
      const settled = await Promise.allSettled(
        list.map(([algorithm, value]) => cos.getFileHandle(algorithm, value, Boolean(options.create), options.origins)),
      );
      const failure = settled.find((s) => s.status === "rejected");
      if (failure) throw failure.reason;
      return settled.map((s) => makeHandle(s.value));
    }
  }
  handleToWire = (value) => {
    if (!(value instanceof FileSystemFileHandle)) return undefined;
    const pinned = cos.pinHandle(value[ID]);
    if (pinned === undefined) throw new DOMException("The handle could not be transferred.", "DataCloneError");
    return { [HANDLE_TAG]: pinned };
  };
  wireToHandle = (wire, sender) => {
    if (sender !== undefined) {
      const adopted = frameNative.adopt(sender, wire[HANDLE_TAG]);
      if (!adopted) throw new DOMException("The handle could not be transferred.", "DataCloneError");
      return makeHandle({ id: Number(adopted[0]), name: adopted[1] });
    }
    const described = cos.describe(wire[HANDLE_TAG]);
    if (!described) throw new DOMException("The handle could not be transferred.", "DataCloneError");
    return makeHandle({ id: wire[HANDLE_TAG], name: described[0] });
  };
  const manager = Object.create(CrossOriginStorageManager.prototype);
  Object.defineProperty(navigator, "crossOriginStorage", { get: () => manager, enumerable: true, configurable: true });
  define("CrossOriginStorageManager", CrossOriginStorageManager);
  define("FileSystemHandle", FileSystemHandle);
  define("FileSystemFileHandle", FileSystemFileHandle);
  define("FileSystemWritableFileStream", FileSystemWritableFileStream);
})();
