// The harness realm's `shell` object (run by `test_shell run`): scenarios open pages at
// origins, add iframes, evaluate code in frames (in their renderer processes), and inspect or
// disturb the browser. Built on the natives of src/harness.rs. MIT OR Apache-2.0.
(() => {
  "use strict";
  const native = globalThis.__shellNative;
  delete globalThis.__shellNative;

  const flatHeaders = (headers) => {
    const flat = [];
    for (const [name, value] of Object.entries(headers || {})) flat.push(String(name), String(value));
    return flat;
  };
  const rebuildError = (text) => {
    const colon = text.indexOf(": ");
    const name = colon > 0 ? text.slice(0, colon) : "Error";
    const message = colon > 0 ? text.slice(colon + 2) : text;
    if (name === "TypeError") return new TypeError(message);
    if (name === "RangeError") return new RangeError(message);
    if (name === "Error" || name === "SyntaxError" || name === "ReferenceError") {
      const error = new Error(message);
      error.name = name;
      return error;
    }
    return new DOMException(message, name);
  };

  class Frame {
    constructor(id, url) {
      this.id = id;
      this.url = url;
      this.origin = native.originOf(url);
    }
    // Runs fn(...args) in the frame's realm and resolves with the structured (JSON) result; a
    // rejection re-rejects with the same name and message.
    async eval(fn, ...args) {
      const expression = `(${fn.toString()})(...${JSON.stringify(args)})`;
      const text = native.evaluate(this.id, expression);
      if (text[0] !== "+") throw rebuildError(text.slice(1));
      return JSON.parse(text.slice(1));
    }
    async appendIframe(url, options = {}) {
      const id = native.appendIframe(this.id, String(url), options.allow === undefined ? null : String(options.allow), flatHeaders(options.headers));
      return new Frame(id, String(url));
    }
    async activate() { native.activate(this.id); }
    // The child frames this frame's document made from its <iframe> elements, in document order.
    children() { return native.children(this.id).map(([id, url, name]) => Object.assign(new Frame(Number(id), url), { name })); }
    // One of them, by position or by the element's name (else id).
    child(which) {
      const children = this.children();
      const found = typeof which === "number" ? children[which] : children.find((c) => c.name === String(which));
      if (!found) throw new Error(`no child frame ${String(which)}`);
      return found;
    }
  }
  class Page {
    constructor(frame) { this.frame = frame; }
    async close() { native.close(this.frame.id); }
  }

  const shell = {
    async open(url, options = {}) {
      const process = options.process === undefined ? null : String(options.process);
      const id = native.open(String(url), flatHeaders(options.headers), Boolean(options.offTheRecord), process);
      return new Page(new Frame(id, String(url)));
    },
    async clearSiteData(origin) { native.clearSiteData(String(origin)); },
    async inspect() { return JSON.parse(native.inspect()); },
    async restartStorageService() { native.restartStorageService(); },
    async crashRenderer(page) { native.crashRenderer(page.frame.id); },
    hub: {
      url: (path) => native.hubUrl(String(path)),
      async add(path, bytes) {
        const [sha256, size] = native.hubAdd(String(path), typeof bytes === "string" ? new TextEncoder().encode(bytes) : bytes);
        return { sha256, size, url: native.hubUrl(String(path)) };
      },
    },
    network: { bytes: (origin) => native.networkBytes(String(origin)) },
    // The origin server of `origin`'s host: the browser sends every named host's requests to
    // it (plain HTTP on loopback, the real host kept). Paths not added are 404.
    server(origin) {
      const base = native.originOf(String(origin));
      if (!base) throw new TypeError(`not an http(s) origin: ${origin}`);
      const url = (path) => base + (String(path).startsWith("/") ? String(path) : `/${path}`);
      return {
        origin: base,
        url,
        // Serves bytes (or a string as UTF-8) at `path`; options: {headers, status, contentType}.
        add(path, bytes, options = {}) {
          const data = typeof bytes === "string" ? new TextEncoder().encode(bytes) : bytes;
          const status = options.status === undefined ? null : Number(options.status);
          const type = options.contentType === undefined ? null : String(options.contentType);
          return native.serverAdd(base, String(path), data, flatHeaders(options.headers), status, type);
        },
        // Serves a directory (relative to the scenario) at `prefix`, `<file>.headers` included.
        serveDirectory(prefix, dir) { native.serveDirectory(base, String(prefix), String(dir)); },
        // A URL of the echo resource answering with {body, contentType, status, headers}.
        echo(answer = {}) {
          native.serverEcho(base);
          const query = [];
          const put = (key, value) => query.push(`${encodeURIComponent(key)}=${encodeURIComponent(value)}`);
          if (answer.body !== undefined) put("body", answer.body);
          if (answer.contentType !== undefined) put("content-type", answer.contentType);
          if (answer.status !== undefined) put("status", answer.status);
          for (const [name, value] of Object.entries(answer.headers || {})) put("header", `${name}: ${value}`);
          return url(`/echo?${query.join("&")}`);
        },
      };
    },
  };
  Object.defineProperty(globalThis, "shell", { value: shell, writable: false, configurable: false });
})();
