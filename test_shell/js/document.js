// A page realm's document (docs/spec.md §12): a minimal DOM built from the tree the renderer
// parsed with html5ever (src/document/parse.rs), and the loading of its scripts and links in
// the standard's order. Runs right after web.js and before any page script, so the `fetch` it
// captures is the realm's own. Natives (__documentNative): tree (JSON), url, evalClassic,
// registerInlineModule. Our own implementation (MIT OR Apache-2.0).
(() => {
  "use strict";
  const native = globalThis.__documentNative;
  delete globalThis.__documentNative;
  if (!native) return;
  const define = (name, value) =>
    Object.defineProperty(globalThis, name, { value, writable: true, configurable: true, enumerable: false });
  // The realm's own fetch, before any page script can replace it.
  const realmFetch = globalThis.fetch;
  const documentUrl = String(native.url);

  // ---- events ------------------------------------------------------------------------------------
  class Event {
    constructor(type, init = {}) {
      this.type = String(type);
      this.bubbles = Boolean(init && init.bubbles);
      this.target = null;
      this.currentTarget = null;
      this.defaultPrevented = false;
      this._stopped = false;
    }
    preventDefault() { this.defaultPrevented = true; }
    stopPropagation() { this._stopped = true; }
  }
  class ErrorEvent extends Event {
    constructor(type, init = {}) {
      super(type, init);
      this.message = init.message === undefined ? "" : String(init.message);
      this.error = init.error;
      this.filename = init.filename === undefined ? "" : String(init.filename);
    }
  }
  const LISTENERS = Symbol("listeners");
  const listenersOf = (target, type) => {
    if (!target[LISTENERS]) Object.defineProperty(target, LISTENERS, { value: new Map() });
    if (!target[LISTENERS].has(type)) target[LISTENERS].set(type, []);
    return target[LISTENERS].get(type);
  };
  // A listener that throws is reported, as a browser's console does, and the others still run.
  const report = (error) => {
    console.error(`Uncaught ${error && error.name ? `${error.name}: ${error.message}` : String(error)}`);
  };
  const invoke = (target, event) => {
    event.currentTarget = target;
    const handler = target["on" + event.type];
    const call = (listener) => {
      try {
        if (typeof listener === "function") listener.call(target, event);
        else if (listener && typeof listener.handleEvent === "function") listener.handleEvent(event);
      } catch (error) {
        report(error);
      }
    };
    if (typeof handler === "function") call(handler);
    else if (target instanceof Element && target.hasAttribute("on" + event.type)) {
      // An event handler content attribute (`onload="..."`), compiled when first needed.
      try {
        call(new Function("event", target.getAttribute("on" + event.type)));
      } catch (error) {
        report(error);
      }
    }
    for (const listener of [...listenersOf(target, event.type)]) call(listener);
  };
  const eventTarget = {
    addEventListener(type, listener) {
      const list = listenersOf(this, String(type));
      if (listener && !list.includes(listener)) list.push(listener);
    },
    removeEventListener(type, listener) {
      const list = listenersOf(this, String(type));
      const at = list.indexOf(listener);
      if (at >= 0) list.splice(at, 1);
    },
    dispatchEvent(event) {
      event.target = this;
      const path = [this];
      if (event.bubbles) for (let node = this.parentNode; node; node = node.parentNode) path.push(node);
      if (event.bubbles && path[path.length - 1] === document) path.push(globalThis);
      for (const target of path) {
        if (event._stopped) break;
        invoke(target, event);
      }
      return !event.defaultPrevented;
    },
  };

  // The window keeps web.js's message listeners and gains every other event type.
  const windowAdd = globalThis.addEventListener;
  const windowRemove = globalThis.removeEventListener;
  const isMessage = (type) => type === "message" || type === "messageerror";
  define("addEventListener", (type, listener) =>
    isMessage(type) ? windowAdd(type, listener) : eventTarget.addEventListener.call(globalThis, type, listener));
  define("removeEventListener", (type, listener) =>
    isMessage(type) ? windowRemove(type, listener) : eventTarget.removeEventListener.call(globalThis, type, listener));
  define("dispatchEvent", (event) => eventTarget.dispatchEvent.call(globalThis, event));
  define("Event", Event);
  define("ErrorEvent", ErrorEvent);
  define("window", globalThis);
  for (const type of ["onload", "onerror"]) globalThis[type] = null;

  // ---- nodes -------------------------------------------------------------------------------------
  class Node {
    constructor() { throw new TypeError("Illegal constructor"); }
    get parentNode() { return this._parent || null; }
    get parentElement() { return this._parent instanceof Element ? this._parent : null; }
    get childNodes() { return [...this._children]; }
    get firstChild() { return this._children[0] || null; }
    get lastChild() { return this._children[this._children.length - 1] || null; }
    get children() { return this._children.filter((n) => n instanceof Element); }
    get firstElementChild() { return this.children[0] || null; }
    get isConnected() {
      let node = this;
      while (node._parent) node = node._parent;
      return node === document;
    }
    get textContent() {
      if (this instanceof Text) return this._data;
      return this._children.map((n) => n.textContent).join("");
    }
    set textContent(value) {
      if (this instanceof Text) { this._data = String(value); return; }
      for (const child of this._children) child._parent = null;
      this._children = [];
      if (value !== null && value !== undefined && String(value) !== "") this.appendChild(makeText(String(value)));
    }
    appendChild(child) { return this.insertBefore(child, null); }
    insertBefore(child, reference) {
      if (!(child instanceof Node)) throw new TypeError("appendChild: the argument is not a Node");
      for (let node = this; node; node = node._parent) {
        if (node === child) throw new DOMException("The new child is an ancestor of the parent.", "HierarchyRequestError");
      }
      if (child._parent) child._parent.removeChild(child);
      const at = reference ? this._children.indexOf(reference) : -1;
      if (at >= 0) this._children.splice(at, 0, child);
      else this._children.push(child);
      child._parent = this;
      if (child.isConnected) connected(child);
      return child;
    }
    removeChild(child) {
      const at = this._children.indexOf(child);
      if (at < 0) throw new DOMException("The node is not a child of this node.", "NotFoundError");
      this._children.splice(at, 1);
      child._parent = null;
      return child;
    }
    remove() { if (this._parent) this._parent.removeChild(this); }
    contains(other) {
      for (let node = other; node; node = node._parent) if (node === this) return true;
      return false;
    }
    querySelectorAll(selectors) {
      const match = compileSelectors(selectors);
      const found = [];
      const walk = (node) => {
        for (const child of node._children) {
          if (!(child instanceof Element)) continue;
          if (match(child)) found.push(child);
          walk(child);
        }
      };
      walk(this);
      return found;
    }
    querySelector(selectors) { return this.querySelectorAll(selectors)[0] || null; }
    getElementsByTagName(name) { return this.querySelectorAll(String(name)); }
  }
  Object.assign(Node.prototype, eventTarget);
  class Text extends Node {
    get nodeType() { return 3; }
    get nodeName() { return "#text"; }
    get data() { return this._data; }
    set data(value) { this._data = String(value); }
  }
  const makeText = (data) => {
    const text = Object.create(Text.prototype);
    Object.assign(text, { _parent: null, _children: [], _data: data });
    return text;
  };

  class Element extends Node {
    get nodeType() { return 1; }
    get nodeName() { return this.tagName; }
    get tagName() { return this._local.toUpperCase(); }
    get localName() { return this._local; }
    get attributes() { return this._attributes.map(([name, value]) => ({ name, value })); }
    getAttribute(name) {
      const found = this._attributes.find(([n]) => n === String(name).toLowerCase());
      return found ? found[1] : null;
    }
    hasAttribute(name) { return this.getAttribute(name) !== null; }
    getAttributeNames() { return this._attributes.map(([name]) => name); }
    setAttribute(name, value) {
      const key = String(name).toLowerCase();
      const found = this._attributes.find(([n]) => n === key);
      if (found) found[1] = String(value);
      else this._attributes.push([key, String(value)]);
    }
    removeAttribute(name) {
      const key = String(name).toLowerCase();
      this._attributes = this._attributes.filter(([n]) => n !== key);
    }
    toggleAttribute(name, force) {
      const present = this.hasAttribute(name);
      const wanted = force === undefined ? !present : Boolean(force);
      if (wanted && !present) this.setAttribute(name, "");
      if (!wanted && present) this.removeAttribute(name);
      return wanted;
    }
    get id() { return this.getAttribute("id") || ""; }
    set id(value) { this.setAttribute("id", value); }
    get className() { return this.getAttribute("class") || ""; }
    set className(value) { this.setAttribute("class", value); }
    get classList() {
      const names = this.className.split(/[\t\n\f\r ]+/).filter(Boolean);
      return { contains: (name) => names.includes(String(name)), length: names.length, [Symbol.iterator]: () => names[Symbol.iterator]() };
    }
    matches(selectors) { return compileSelectors(selectors)(this); }
    closest(selectors) {
      const match = compileSelectors(selectors);
      for (let node = this; node instanceof Element; node = node._parent) if (match(node)) return node;
      return null;
    }
  }
  // Reflected attributes: URLs resolve against the document, booleans are presence.
  const reflect = (cls, names, kind = "string") => {
    for (const name of names) {
      const attribute = name.toLowerCase();
      Object.defineProperty(cls.prototype, name, {
        configurable: true,
        get() {
          const value = this.getAttribute(attribute);
          if (kind === "boolean") return value !== null;
          if (kind === "url") {
            if (value === null) return "";
            try { return new URL(value, documentUrl).href; } catch { return value; }
          }
          return value === null ? "" : value;
        },
        set(value) {
          if (kind === "boolean") this.toggleAttribute(attribute, Boolean(value));
          else this.setAttribute(attribute, value);
        },
      });
    }
  };
  class HTMLElement extends Element {}
  class HTMLScriptElement extends HTMLElement {
    get text() { return this.textContent; }
    set text(value) { this.textContent = value; }
  }
  reflect(HTMLScriptElement, ["src"], "url");
  reflect(HTMLScriptElement, ["type", "integrity", "crossOrigin", "crossOriginStorage"]);
  reflect(HTMLScriptElement, ["async", "defer", "noModule"], "boolean");
  class HTMLLinkElement extends HTMLElement {}
  reflect(HTMLLinkElement, ["href"], "url");
  reflect(HTMLLinkElement, ["rel", "as", "integrity", "crossOrigin", "crossOriginStorage"]);
  class HTMLIFrameElement extends HTMLElement {
    // The child frame when it lives in this renderer process (web.js's `frames`), else null.
    get contentWindow() {
      const id = this._frame;
      if (id === undefined || id === null) return null;
      return [...globalThis.frames].find((proxy) => proxy._id === id) || null;
    }
  }
  reflect(HTMLIFrameElement, ["src"], "url");
  reflect(HTMLIFrameElement, ["allow", "name"]);
  const CLASSES = { script: HTMLScriptElement, link: HTMLLinkElement, iframe: HTMLIFrameElement };
  const makeElement = (local, attributes) => {
    const element = Object.create((CLASSES[local] || HTMLElement).prototype);
    Object.assign(element, { _parent: null, _children: [], _local: local, _attributes: attributes });
    for (const type of ["onload", "onerror"]) element[type] = null;
    return element;
  };

  // ---- selectors: compounds of tag, #id, .class, [attr], [attr=value], joined by descendant
  // combinators, in comma-separated lists. Anything else is a SyntaxError, as in a browser.
  const compileSelectors = (text) => {
    const source = String(text);
    const invalid = () => new DOMException(`'${source}' is not a valid selector.`, "SyntaxError");
    const IDENT = "[A-Za-z_\\-][\\w\\-]*";
    const TOKEN = new RegExp(`^(?:(\\*|${IDENT})|#(${IDENT})|\\.(${IDENT})|\\[\\s*(${IDENT})\\s*(?:=\\s*(?:"([^"]*)"|'([^']*)'|(${IDENT}|[\\w\\-.:/]+))\\s*)?\\])`);
    const compound = (part) => {
      const tests = [];
      let rest = part;
      while (rest.length) {
        const m = TOKEN.exec(rest);
        if (!m) throw invalid();
        const [all, tag, id, cls, attr, dq, sq, bare] = m;
        if (tag !== undefined && tag !== "*") tests.push((e) => e._local === tag.toLowerCase());
        if (id !== undefined) tests.push((e) => e.getAttribute("id") === id);
        if (cls !== undefined) tests.push((e) => e.classList.contains(cls));
        if (attr !== undefined) {
          const value = dq !== undefined ? dq : sq !== undefined ? sq : bare;
          tests.push(value === undefined ? (e) => e.hasAttribute(attr) : (e) => e.getAttribute(attr) === value);
        }
        rest = rest.slice(all.length);
      }
      if (!tests.length && part !== "*") throw invalid();
      return (e) => tests.every((t) => t(e));
    };
    const alternatives = source.split(",").map((alternative) => {
      const parts = alternative.trim().split(/\s+/).filter(Boolean);
      if (!parts.length) throw invalid();
      const compounds = parts.map(compound);
      // The last compound matches the element, each earlier one some ancestor, in order.
      return (element) => {
        if (!compounds[compounds.length - 1](element)) return false;
        let node = element._parent;
        for (let i = compounds.length - 2; i >= 0; i--) {
          while (node instanceof Element && !compounds[i](node)) node = node._parent;
          if (!(node instanceof Element)) return false;
          node = node._parent;
        }
        return true;
      };
    });
    return (element) => alternatives.some((matches) => matches(element));
  };

  // ---- the document ------------------------------------------------------------------------------
  class Document extends Node {
    get nodeType() { return 9; }
    get documentElement() { return this.children[0] || null; }
    get head() { return this.querySelector("head"); }
    get body() { return this.querySelector("body"); }
    get URL() { return documentUrl; }
    get documentURI() { return documentUrl; }
    get location() { return globalThis.location; }
    get defaultView() { return globalThis; }
    get readyState() { return state.readyState; }
    get currentScript() { return state.currentScript; }
    getElementById(id) { return this.querySelectorAll("*").find((e) => e.getAttribute("id") === String(id)) || null; }
    createElement(name) { return makeElement(String(name).toLowerCase(), []); }
    createTextNode(data) { return makeText(String(data)); }
  }
  const document = Object.create(Document.prototype);
  Object.assign(document, { _parent: null, _children: [] });
  const build = (parent, nodes) => {
    for (const node of nodes) {
      const child = typeof node === "string" ? makeText(node) : makeElement(node[0], node[1]);
      child._parent = parent;
      parent._children.push(child);
      if (typeof node !== "string") build(child, node[2]);
    }
  };
  build(document, JSON.parse(native.tree));
  define("document", document);
  for (const [name, cls] of Object.entries({ Node, Text, Element, HTMLElement, HTMLScriptElement, HTMLLinkElement, HTMLIFrameElement, Document })) {
    define(name, cls);
  }
  const state = { readyState: "loading", currentScript: null, pending: [], parsed: false };
  // Every <iframe> of the parsed document, in order, gets its child frame's id (or null).
  const iframes = document.querySelectorAll("iframe");

  // ---- crossoriginstorage: no value or empty = same-site (""), "*" = global, else a list of
  // origins. A list with anything but http(s) URLs is ignored with a warning (the resource still
  // loads, without COS), and so is the attribute without a sha256 integrity to key it by.
  const cosScope = (element, what) => {
    const raw = element.getAttribute("crossoriginstorage");
    if (raw === null) return undefined;
    const value = raw.trim();
    const integrity = element.getAttribute("integrity");
    if (!integrity || !/(^|\s)sha256-/.test(integrity)) {
      console.warn(`${what}: crossoriginstorage needs an integrity="sha256-..." attribute; it is ignored`);
      return undefined;
    }
    if (value === "" || value === "*") return value;
    const list = value.split(/[\t\n\f\r ]+/);
    const valid = list.length <= 100 && list.every((token) => {
      try {
        const url = new URL(token);
        return url.protocol === "https:" || url.protocol === "http:";
      } catch {
        return false;
      }
    });
    if (!valid) {
      console.warn(`${what}: crossoriginstorage="${raw}" is not "*" or a list of http(s) origins; it is ignored`);
      return undefined;
    }
    return list;
  };
  const fetchOptions = (element, what) => {
    const options = {};
    const integrity = element.getAttribute("integrity");
    if (integrity !== null) options.integrity = integrity;
    const scope = cosScope(element, what);
    if (scope !== undefined) options.crossOriginStorage = scope;
    return options;
  };
  // Import attributes carry the same scope as one string ("" / "*" / "origin origin").
  const importAttributes = (element, what) => {
    const attributes = fetchOptions(element, what);
    if (Array.isArray(attributes.crossOriginStorage)) attributes.crossOriginStorage = attributes.crossOriginStorage.join(" ");
    return attributes;
  };
  const resolve = (url) => new URL(url, documentUrl).href;
  const fire = (target, type) => target.dispatchEvent(new Event(type));
  const uncaught = (error, filename) => {
    report(error);
    const message = error && error.message !== undefined ? String(error.message) : String(error);
    globalThis.dispatchEvent(new ErrorEvent("error", { message, error, filename }));
  };
  const fetchText = async (element, url, what) => {
    const response = await realmFetch(url, fetchOptions(element, what));
    if (!response.ok) throw new TypeError(`${what}: ${url} answered ${response.status}`);
    return response.text();
  };

  // ---- scripts -----------------------------------------------------------------------------------
  const kindOf = (script) => {
    const type = (script.getAttribute("type") || "").trim().toLowerCase();
    if (type === "module") return "module";
    const classic = ["", "text/javascript", "application/javascript", "text/ecmascript", "application/ecmascript", "module-less"];
    return classic.includes(type) ? "classic" : null;
  };
  const runClassic = (script, source, name) => {
    state.currentScript = script;
    try {
      const threw = native.evalClassic(source, name);
      if (threw) uncaught(threw.error, name);
    } finally {
      state.currentScript = null;
    }
  };
  // Loads and runs one script element; resolves when it ran (or failed) and its event fired.
  const inlineModules = { next: 0 };
  const execute = async (script) => {
    const kind = kindOf(script);
    const src = script.getAttribute("src");
    if (kind === null) return;
    const what = `<script${src === null ? "" : ` src="${src}"`}>`;
    if (kind === "classic") {
      if (src === null) return runClassic(script, script.textContent, documentUrl);
      let source;
      try {
        source = await fetchText(script, resolve(src), what);
      } catch (error) {
        console.error(`${what} failed to load: ${error && error.message}`);
        return fire(script, "error");
      }
      runClassic(script, source, resolve(src));
      return fire(script, "load");
    }
    // A module script is the module graph of an import() with the element's attributes.
    let url;
    if (src === null) {
      inlineModules.next += 1;
      url = `${documentUrl.split("#")[0]}#inline-module-${inlineModules.next}`;
      native.registerInlineModule(url, script.textContent);
    } else {
      try {
        url = resolve(src);
      } catch (error) {
        console.error(`${what}: ${error.message}`);
        return fire(script, "error");
      }
    }
    try {
      const attributes = src === null ? {} : importAttributes(script, what);
      await (Object.keys(attributes).length ? import(url, { with: attributes }) : import(url));
    } catch (error) {
      // The loader's failures (fetch, integrity) are the element's `error`; anything the module
      // threw is reported and the element still loads, as in HTML.
      if (error && String(error.message).startsWith("Failed to load module script")) {
        console.error(`${what}: ${error.message}`);
        return src === null ? undefined : fire(script, "error");
      }
      uncaught(error, url);
    }
    if (src !== null) fire(script, "load");
  };

  // ---- links: stylesheet, preload and modulepreload are fetched (through COS when asked); the
  // shell applies no style and preloads fill no cache but COS.
  const LINK_RELS = ["stylesheet", "preload", "modulepreload"];
  const loadLink = async (link) => {
    const rels = (link.getAttribute("rel") || "").toLowerCase().split(/\s+/);
    const href = link.getAttribute("href");
    if (href === null || !rels.some((rel) => LINK_RELS.includes(rel))) return;
    const what = `<link rel="${link.getAttribute("rel")}" href="${href}">`;
    try {
      await fetchText(link, resolve(href), what);
    } catch (error) {
      console.error(`${what} failed to load: ${error && error.message}`);
      return fire(link, "error");
    }
    fire(link, "load");
  };

  // Elements inserted by script load as a browser's would: a script runs (an external one once
  // fetched), a link loads; the window's `load` waits for what started before it.
  const connected = (node) => {
    if (!state.parsed) return;
    const elements = node instanceof Element ? [node, ...node.querySelectorAll("*")] : [];
    for (const element of elements) {
      if (element._started) continue;
      element._started = true;
      let loading = null;
      if (element instanceof HTMLScriptElement) loading = execute(element);
      else if (element instanceof HTMLLinkElement) loading = loadLink(element);
      if (loading) state.pending.push(loading.catch(report));
    }
  };

  // The document's scripts in the standard's order: parser-blocking classic scripts, then
  // `defer` and module scripts, DOMContentLoaded, then `async` scripts (in document order: the
  // shell's simplification), then the window's `load` once every link and script settled.
  const run = async (children) => {
    iframes.forEach((iframe, i) => { iframe._frame = children[i] === undefined ? null : children[i]; });
    const all = document.querySelectorAll("script, link");
    for (const element of all) element._started = true;
    const scripts = all.filter((e) => e instanceof HTMLScriptElement);
    const isAsync = (s) => s.hasAttribute("async") && (kindOf(s) === "module" || s.hasAttribute("src"));
    const isDeferred = (s) => !isAsync(s) && (kindOf(s) === "module" || (s.hasAttribute("defer") && s.hasAttribute("src")));
    // As the parser reaches them: a link starts loading, a parser-blocking script runs.
    const links = [];
    for (const element of all) {
      if (element instanceof HTMLLinkElement) links.push(loadLink(element).catch(report));
      else if (!isAsync(element) && !isDeferred(element)) await execute(element);
    }
    state.parsed = true;
    state.readyState = "interactive";
    for (const script of scripts.filter(isDeferred)) await execute(script);
    document.dispatchEvent(new Event("DOMContentLoaded", { bubbles: true }));
    for (const script of scripts.filter(isAsync)) await execute(script);
    await Promise.all(links);
    // Scripts may insert more while these settle; wait for those too.
    while (state.pending.length) await state.pending.shift();
    state.readyState = "complete";
    fire(globalThis, "load");
  };
  define("__runDocument", (children) => {
    delete globalThis.__runDocument;
    return run(children);
  });
})();
