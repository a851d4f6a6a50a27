/*
 * testharness.js for the COS test shell.
 *
 * Our own implementation of the web-platform-tests testharness API (test,
 * promise_test, async_test, assert_*), written from the documented semantics;
 * it shares no code with the upstream WPT file.
 * SPDX-License-Identifier: MIT OR Apache-2.0
 *
 * Runs in any ES2020 realm that provides setTimeout/clearTimeout and Promise
 * (a QuickJS realm of the test shell, or a node:vm context in
 * check_testharness.mjs). It uses no DOM and no Node API.
 *
 * Host interface:
 *   globalThis.__testharness_results   array of {name, status, message}, appended
 *                                      as each test finishes; status is "PASS",
 *                                      "FAIL" or "TIMEOUT"; message is null on PASS.
 *   globalThis.__testharness_complete  promise resolving to that array once all
 *                                      tests are done and no more can be added.
 *   globalThis.__testharness_on_result(result)    called per result, if defined.
 *   globalThis.__testharness_on_complete(results) called once at the end, if defined.
 *   globalThis.__testharness_timeout_ms           per-test timeout in ms, read when each
 *                                                  test starts; setup({timeout}) wins over
 *                                                  it; default 10000.
 *   globalThis.__testharness_loaded               set by this file; a second evaluation
 *                                                  in the same realm does nothing.
 *
 * Every test (test, promise_test, async_test) goes into one queue. The queue
 * starts in a setTimeout(0) task scheduled when this file is evaluated, i.e.
 * after the test script that follows it has run, and runs strictly one test at
 * a time: a test starts only after the previous one finished, cleanups included.
 */
(function (global) {
  "use strict";
  if (global.__testharness_loaded) return;
  global.__testharness_loaded = true;

  const PromiseCtor = global.Promise;
  const setTimer = global.setTimeout;
  const clearTimer = global.clearTimeout;
  const DEFAULT_TIMEOUT_MS = 10000;

  // ---------------------------------------------------------------- values

  const sameValue = Object.is;

  function isObject(v) {
    return v !== null && (typeof v === "object" || typeof v === "function");
  }

  function isThenable(v) {
    try { return isObject(v) && typeof v.then === "function"; } catch (e) { return false; }
  }

  const ESCAPES = { '"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t" };

  function quoteString(s) {
    const max = 1000;
    const body = (s.length > max ? s.slice(0, max) : s).replace(/["\\\u0000-\u001f\u007f\u2028\u2029]/g,
      (c) => ESCAPES[c] || "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
    return '"' + body + (s.length > max ? "\u2026 (" + (s.length - max) + " more chars)" : "") + '"';
  }

  function safeString(v) {
    try { return String(v); } catch (e) { return "[unprintable]"; }
  }

  function errorLike(v) {
    try {
      return typeof v.name === "string" && typeof v.message === "string" &&
        (typeof v.stack === "string" || "code" in v || v instanceof Error ||
          Object.prototype.toString.call(v) === "[object Error]" ||
          (global.DOMException !== undefined && v instanceof global.DOMException));
    } catch (e) {
      return false;
    }
  }

  function ctorName(v) {
    try {
      return (typeof v.constructor === "function" && v.constructor.name) || "Object";
    } catch (e) {
      return "Object";
    }
  }

  function listItems(v, depth, seen) {
    const items = [];
    for (let i = 0; i < v.length && i < 50; i++) items.push(formatValue(v[i], depth + 1, seen));
    if (v.length > 50) items.push("\u2026 " + (v.length - 50) + " more");
    return "[" + items.join(", ") + "]";
  }

  // WPT-style value formatting: strings quoted, -0 kept, arrays and typed
  // arrays listed, plain objects as a short {k: v} repr, errors and
  // DOMExceptions as object "Name: message", other objects as object "String(v)".
  function formatValue(v, depth, seen) {
    depth = depth || 0;
    seen = seen || [];
    switch (typeof v) {
      case "string": return quoteString(v);
      case "number": return sameValue(v, -0) ? "-0" : String(v);
      case "bigint": return String(v) + "n";
      case "undefined": case "boolean": case "symbol": return safeString(v);
      case "function": {
        const src = safeString(v).replace(/\s+/g, " ");
        return 'function "' + (src.length > 80 ? src.slice(0, 77) + "..." : src) + '"';
      }
    }
    if (v === null) return "null";
    if (seen.indexOf(v) !== -1) return "[circular]";
    if (depth > 2) return Array.isArray(v) ? "[...]" : "{...}";
    seen = seen.concat([v]);
    try {
      if (Array.isArray(v)) return listItems(v, depth, seen);
      if (ArrayBuffer.isView(v) && typeof v.length === "number") return ctorName(v) + " " + listItems(v, depth, seen);
      if (errorLike(v)) return 'object "' + v.name + (v.message ? ": " + v.message : "") + '"';
      const proto = Object.getPrototypeOf(v);
      if (proto === null || (ctorName(v) === "Object" && Object.getPrototypeOf(proto) === null)) {
        const keys = Object.keys(v);
        const parts = keys.slice(0, 8).map(function (k) {
          const key = /^[A-Za-z_$][\w$]*$/.test(k) ? k : quoteString(k);
          return key + ": " + formatValue(v[k], depth + 1, seen);
        });
        if (keys.length > 8) parts.push("\u2026");
        return "{" + parts.join(", ") + "}";
      }
    } catch (e) {
      // Fall through to the generic form (proxies, throwing getters).
    }
    return 'object "' + safeString(v) + '"';
  }

  // ------------------------------------------------------------ assertions

  class AssertionError extends Error {
    constructor(message) {
      super(message);
      this.name = "AssertionError";
    }
  }

  // "<assertion>: <description> <detail>", the description left out when not given.
  function assertionError(assertion, description, detail) {
    const d = description === undefined || description === null || description === "" ? "" : description + " ";
    return new AssertionError(assertion + ": " + d + detail);
  }

  function fail(assertion, description, detail) {
    throw assertionError(assertion, description, detail);
  }

  function assert_equals(actual, expected, description) {
    if (sameValue(actual, expected)) return;
    // Like WPT, name the types when they differ: expected (number) 3 but got (string) "3".
    const typed = (v) => (typeof actual !== typeof expected ? "(" + typeof v + ") " : "") + formatValue(v);
    fail("assert_equals", description, "expected " + typed(expected) + " but got " + typed(actual));
  }

  function assert_not_equals(actual, expected, description) {
    if (sameValue(actual, expected)) {
      fail("assert_not_equals", description, "got disallowed value " + formatValue(actual));
    }
  }

  function assert_true(actual, description) {
    if (actual !== true) fail("assert_true", description, "expected true got " + formatValue(actual));
  }

  function assert_false(actual, description) {
    if (actual !== false) fail("assert_false", description, "expected false got " + formatValue(actual));
  }

  function assert_array_equals(actual, expected, description) {
    const name = "assert_array_equals";
    const arrayLike = (v) => isObject(v) && "length" in v;
    if (!arrayLike(actual)) fail(name, description, "value is " + formatValue(actual) + ", expected array");
    if (!arrayLike(expected)) fail(name, description, "expected " + formatValue(expected) + " is not an array");
    if (actual.length !== expected.length) {
      fail(name, description, "lengths differ, expected array " + formatValue(expected) +
        " length " + expected.length + ", got " + formatValue(actual) + " length " + actual.length);
    }
    const arrays = " (expected array " + formatValue(expected) + " got " + formatValue(actual) + ")";
    const presence = (o, i) => (i in o ? "present" : "missing");
    for (let i = 0; i < actual.length; i++) {
      if ((i in actual) !== (i in expected)) {
        fail(name, description, "expected property " + i + " to be " + presence(expected, i) +
          " but it is " + presence(actual, i) + arrays);
      }
      if (!sameValue(actual[i], expected[i])) {
        fail(name, description, "expected property " + i + " to be " + formatValue(expected[i]) +
          " but got " + formatValue(actual[i]) + arrays);
      }
    }
  }

  function assert_in_array(actual, expected, description) {
    // Strict equality, as WPT (indexOf): NaN is never found, 0 matches -0.
    if (Array.prototype.indexOf.call(expected, actual) === -1) {
      fail("assert_in_array", description, "value " + formatValue(actual) + " not in array " + formatValue(expected));
    }
  }

  function compare(name, relation, holds) {
    return function (actual, expected, description) {
      const t = typeof actual;
      if ((t !== "number" && t !== "bigint") || typeof expected !== t) {
        fail(name, description, "expected a " + (typeof expected === "bigint" ? "bigint" : "number") +
          " but got a " + t + " (" + formatValue(actual) + ")");
      }
      if (!holds(actual, expected)) {
        fail(name, description, "expected a number " + relation + " " + formatValue(expected) +
          " but got " + formatValue(actual));
      }
    };
  }
  const assert_greater_than = compare("assert_greater_than", "greater than", (a, b) => a > b);
  const assert_less_than = compare("assert_less_than", "less than", (a, b) => a < b);
  const assert_greater_than_equal = compare("assert_greater_than_equal", "greater than or equal to", (a, b) => a >= b);
  const assert_less_than_equal = compare("assert_less_than_equal", "less than or equal to", (a, b) => a <= b);

  function assert_approx_equals(actual, expected, epsilon, description) {
    if (typeof actual !== "number") {
      fail("assert_approx_equals", description, "expected a number but got a " + typeof actual);
    }
    if (!(Math.abs(actual - expected) <= epsilon)) {
      fail("assert_approx_equals", description,
        "expected " + formatValue(expected) + " +/- " + formatValue(epsilon) + " but got " + formatValue(actual));
    }
  }

  function assert_regexp_match(actual, expected, description) {
    if (!expected.test(actual)) {
      fail("assert_regexp_match", description, "expected " + safeString(expected) + " but got " + formatValue(actual));
    }
  }

  const hasOwn = (o, k) => Object.prototype.hasOwnProperty.call(o, k);

  function assert_own_property(object, property, description) {
    if (!hasOwn(object, property)) {
      fail("assert_own_property", description, "expected property " + formatValue(property) + " missing");
    }
  }

  function assert_not_own_property(object, property, description) {
    if (hasOwn(object, property)) {
      fail("assert_not_own_property", description, "unexpected property " + formatValue(property) + " found");
    }
  }

  function assert_unreached(description) {
    fail("assert_unreached", description, "Reached unreachable code");
  }

  // Checks a thrown/rejected value against an Error constructor of this realm.
  // `subject` is e.g. 'function "..." threw' or 'promise rejected with'.
  function checkJsError(name, description, subject, constructor, e) {
    if (!isObject(e)) {
      const type = e === null ? "null" : typeof e;
      fail(name, description, subject + " " + formatValue(e) + " with type " + type + ", not an object");
    }
    let c = constructor;
    while (typeof c === "function" && c.name !== "Error") c = Object.getPrototypeOf(c);
    if (typeof constructor !== "function" || typeof c !== "function") {
      fail(name, description, "Test bug: " + formatValue(constructor) + " is not an Error subtype");
    }
    if (e.constructor !== constructor || e.name !== constructor.name) {
      fail(name, description, subject + " " + formatValue(e) + " (" + formatValue(e.name) + ") expected instance of " +
        constructor.name + (e.name === constructor.name ? " from this realm" : ""));
    }
  }

  // DOMException names with their legacy codes (0: none), and legacy code names.
  const DOM_CODES = {
    IndexSizeError: 1, HierarchyRequestError: 3, WrongDocumentError: 4, InvalidCharacterError: 5,
    NoModificationAllowedError: 7, NotFoundError: 8, NotSupportedError: 9, InUseAttributeError: 10,
    InvalidStateError: 11, SyntaxError: 12, InvalidModificationError: 13, NamespaceError: 14,
    InvalidAccessError: 15, TypeMismatchError: 17, SecurityError: 18, NetworkError: 19, AbortError: 20,
    URLMismatchError: 21, QuotaExceededError: 22, TimeoutError: 23, InvalidNodeTypeError: 24,
    DataCloneError: 25, EncodingError: 0, NotReadableError: 0, UnknownError: 0, ConstraintError: 0,
    DataError: 0, TransactionInactiveError: 0, ReadOnlyError: 0, VersionError: 0, OperationError: 0,
    NotAllowedError: 0, OptOutError: 0,
  };
  const LEGACY_NAMES = {};
  for (const name of Object.keys(DOM_CODES)) {
    if (DOM_CODES[name] === 0) continue;
    const special = { InUseAttributeError: "INUSE_ATTRIBUTE", URLMismatchError: "URL_MISMATCH" }[name];
    const words = special || name.slice(0, -"Error".length).replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
    LEGACY_NAMES[words + "_ERR"] = name;
  }

  // Checks a thrown/rejected value against a DOMException name (or legacy
  // code name, or non-zero numeric code).
  function checkDomError(name, description, subject, type, constructor, e) {
    let expected = null;
    if (typeof type === "number") {
      for (const k in DOM_CODES) if (type !== 0 && DOM_CODES[k] === type) expected = k;
    } else if (typeof type === "string") {
      expected = hasOwn(LEGACY_NAMES, type) ? LEGACY_NAMES[type] : type;
      if (!hasOwn(DOM_CODES, expected)) expected = null;
    }
    if (expected === null) {
      fail(name, description, "Test bug: unrecognized DOMException name or code " + formatValue(type));
    }
    const what = subject + " " + formatValue(e) + (isObject(e) ? " that" : ", which") +
      " is not a DOMException " + expected;
    if (!isObject(e)) fail(name, description, what);
    if (e.name !== expected) {
      fail(name, description,
        what + ': property "name" is equal to ' + formatValue(e.name) + ", expected " + formatValue(expected));
    }
    const ctor = constructor || global.DOMException;
    if (typeof ctor === "function" && !(e instanceof ctor)) {
      fail(name, description, what + " (it has the right name but is not an instance of this realm's DOMException)");
    }
  }

  // Calls func; returns what it threw, or fails `name` when it returns normally.
  function thrownBy(name, description, func) {
    if (typeof func !== "function") fail(name, description, "Test bug: " + formatValue(func) + " is not a function");
    try { func(); } catch (e) { return e; }
    return fail(name, description, formatValue(func) + " did not throw");
  }

  function assert_throws_js(constructor, func, description) {
    const e = thrownBy("assert_throws_js", description, func);
    checkJsError("assert_throws_js", description, formatValue(func) + " threw", constructor, e);
  }

  // assert_throws_dom(type, func, description) or
  // assert_throws_dom(type, DOMExceptionConstructor, func, description).
  function assert_throws_dom(type, funcOrCtor, descOrFunc, maybeDesc) {
    let ctor = null, func = funcOrCtor, description = descOrFunc;
    if (typeof descOrFunc === "function") {
      ctor = funcOrCtor; func = descOrFunc; description = maybeDesc;
    }
    const e = thrownBy("assert_throws_dom", description, func);
    checkDomError("assert_throws_dom", description, formatValue(func) + " threw", type, ctor, e);
  }

  function assert_throws_exactly(exception, func, description) {
    const e = thrownBy("assert_throws_exactly", description, func);
    if (!sameValue(e, exception)) {
      fail("assert_throws_exactly", description,
        formatValue(func) + " threw " + formatValue(e) + " but we expected it to throw " + formatValue(exception));
    }
  }

  // Shared body of promise_rejects_*: the returned promise rejects with the
  // AssertionError on mismatch, and the failure is also recorded on `test`
  // right away, so a forgotten `await` cannot turn it into a PASS. In that
  // case the returned promise is marked handled (awaiting it still throws),
  // so hosts that treat unhandled rejections as fatal stay quiet.
  function rejects(name, test, promise, description, expectedLabel, check) {
    const report = function (err) {
      if (test instanceof Test) test.step(function () { throw err; });
      throw err;
    };
    const result = PromiseCtor.resolve(promise).then(function (value) {
      report(assertionError(name, description,
        "expected promise to reject with " + expectedLabel + " but it fulfilled with " + formatValue(value)));
    }, function (e) {
      try { check(e); } catch (err) { report(err); }
    });
    if (test instanceof Test) result.catch(function () {});
    return result;
  }

  function promise_rejects_js(test, constructor, promise, description) {
    const label = typeof constructor === "function" ? constructor.name : formatValue(constructor);
    return rejects("promise_rejects_js", test, promise, description, label, function (e) {
      checkJsError("promise_rejects_js", description, "promise rejected with", constructor, e);
    });
  }

  function promise_rejects_dom(test, type, promiseOrCtor, descOrPromise, maybeDesc) {
    let ctor = null, promise = promiseOrCtor, description = descOrPromise;
    if (isThenable(descOrPromise)) {
      ctor = promiseOrCtor; promise = descOrPromise; description = maybeDesc;
    }
    return rejects("promise_rejects_dom", test, promise, description, "DOMException " + type, function (e) {
      checkDomError("promise_rejects_dom", description, "promise rejected with", type, ctor, e);
    });
  }

  function promise_rejects_exactly(test, exception, promise, description) {
    return rejects("promise_rejects_exactly", test, promise, description, formatValue(exception), function (e) {
      if (!sameValue(e, exception)) {
        fail("promise_rejects_exactly", description,
          "promise rejected with " + formatValue(e) + " but we expected it to reject with " + formatValue(exception));
      }
    });
  }

  // ----------------------------------------------------------------- tests

  const NOT_STARTED = 0, STARTED = 1, HAS_RESULT = 2, CLEANING = 3, COMPLETE = 4;

  const settings = { timeout: null, explicit_done: false };
  let setupError = null;

  function timeoutMs() {
    if (typeof settings.timeout === "number" && settings.timeout >= 0) return settings.timeout;
    const host = global.__testharness_timeout_ms;
    if (typeof host === "number" && host >= 0) return host;
    return DEFAULT_TIMEOUT_MS;
  }

  // Calls fn after `ms`; Infinity means never. Returns a handle for clearTimer or null.
  const startTimer = (fn, ms) => (ms === Infinity ? null : setTimer(fn, ms));

  function messageOf(e) {
    if (e instanceof AssertionError) return e.message;
    if (errorLike(e)) return e.name + ": " + e.message;
    return "uncaught exception: " + formatValue(e);
  }

  class Test {
    constructor(name, kind, body) {
      this.name = name;
      this.kind = kind; // "sync" | "promise" | "async" | "setup" (promise_setup)
      this.phase = NOT_STARTED;
      this.status = null;
      this.message = null;
      this._body = body;
      this._started = false;
      this._cleanups = [];
      this._stepTimers = [];
      this._timer = null;
    }

    // Runs fn as a step: an exception fails the test. Ignored once the test
    // has a result (e.g. callbacks arriving after a TIMEOUT).
    step(fn, thisObj) {
      if (this.phase >= HAS_RESULT) return undefined;
      const args = Array.prototype.slice.call(arguments, 2);
      try {
        return fn.apply(thisObj === undefined ? this : thisObj, args);
      } catch (e) {
        this._setResult("FAIL", messageOf(e));
        return undefined;
      }
    }

    // Wraps fn so that each call runs as a step (`this` is the test unless given).
    step_func(fn, thisObj) {
      const test = this;
      const self = arguments.length > 1 ? thisObj : test;
      return function () {
        return test.step.apply(test, [fn, self].concat(Array.prototype.slice.call(arguments)));
      };
    }

    // Like step_func, then done(); fn may be omitted.
    step_func_done(fn, thisObj) {
      const test = this;
      const step = this.step_func(fn || function () {}, arguments.length > 1 ? thisObj : test);
      return function () {
        const r = step.apply(this, arguments);
        test.done();
        return r;
      };
    }

    unreached_func(description) {
      return this.step_func(function () { assert_unreached(description); });
    }

    step_timeout(fn, ms) {
      const test = this;
      const args = Array.prototype.slice.call(arguments, 2);
      const handle = setTimer(function () { test.step.apply(test, [fn, test].concat(args)); }, ms);
      this._stepTimers.push(handle);
      return handle;
    }

    add_cleanup(fn) { this._cleanups.push(fn); }

    done() { this._setResult("PASS", null); }

    force_timeout() { this._setResult("TIMEOUT", "Test timed out"); }

    _setResult(status, message) {
      if (this.phase >= HAS_RESULT) return;
      this.status = status;
      this.message = message;
      this.phase = HAS_RESULT;
      if (this._timer !== null) clearTimer(this._timer);
      // An async_test may finish before its turn; it is reported at its turn.
      if (this._started) this._runCleanups();
    }

    _start() {
      this._started = true;
      if (this.phase >= HAS_RESULT) return this._runCleanups();
      this.phase = STARTED;
      if (setupError !== null) return this._setResult("FAIL", "setup failed: " + setupError);
      this._timer = startTimer(() => this.force_timeout(), timeoutMs());
      if (this.kind === "async" && typeof this._body !== "function") return undefined;
      const value = this.step(this._body, this, this);
      if (this.phase >= HAS_RESULT || this.kind === "async") return undefined;
      if (this.kind === "sync") {
        if (!isThenable(value)) return this.done();
        return this._setResult("FAIL", "test: test body returned a thenable; use promise_test for asynchronous tests");
      }
      if (!isThenable(value)) {
        const received = " (received " + formatValue(value) + ")";
        return this._setResult("FAIL", "promise_test: test body must return a 'thenable' object" + received);
      }
      PromiseCtor.resolve(value).then(() => this.done(), (e) => this._setResult("FAIL",
        e instanceof AssertionError ? e.message : "promise_test: Unhandled rejection with value: " + formatValue(e)));
      return undefined;
    }

    _clearStepTimers() {
      for (const h of this._stepTimers) clearTimer(h);
      this._stepTimers = [];
    }

    // Cleanups run one after another in registration order; a returned
    // thenable is awaited before the next one. A throwing or rejecting cleanup
    // turns a PASS into a FAIL; the whole cleanup phase gets its own timeout.
    _runCleanups() {
      if (this.phase >= CLEANING) return;
      this.phase = CLEANING;
      this._clearStepTimers();
      let index = 0;
      let finished = false;
      const cleanupFailed = (status, message) => {
        if (this.status === "PASS") [this.status, this.message] = [status, message];
      };
      const finish = () => {
        if (finished) return;
        finished = true;
        if (timer !== null) clearTimer(timer);
        this._complete();
      };
      const timer = startTimer(() => {
        if (!finished) cleanupFailed("TIMEOUT", "Test timed out while running cleanup functions");
        finish();
      }, timeoutMs());
      const next = () => {
        while (!finished && index < this._cleanups.length) {
          let r;
          try {
            r = this._cleanups[index++]();
          } catch (e) {
            cleanupFailed("FAIL", "cleanup: " + messageOf(e));
            continue;
          }
          if (isThenable(r)) {
            PromiseCtor.resolve(r).then(next, (e) => {
              cleanupFailed("FAIL", "cleanup: " + messageOf(e));
              next();
            });
            return;
          }
        }
        finish();
      };
      next();
    }

    _complete() {
      this.phase = COMPLETE;
      this._clearStepTimers();
      if (this.kind !== "setup") {
        runner.finished(this, { name: this.name, status: this.status, message: this.message });
        return;
      }
      if (this.status !== "PASS" && setupError === null) setupError = this.message;
      runner.finished(this, null);
    }
  }

  // ---------------------------------------------------------------- runner

  const results = Array.isArray(global.__testharness_results) ? global.__testharness_results : [];
  global.__testharness_results = results;
  let resolveComplete;
  global.__testharness_complete = new PromiseCtor(function (resolve) { resolveComplete = resolve; });

  const resultCallbacks = [];
  const completionCallbacks = [];

  function warn(message) {
    if (global.console && typeof global.console.log === "function") global.console.log("testharness: " + message);
  }

  function callHook(fn, args) {
    if (typeof fn !== "function") return;
    try {
      fn.apply(undefined, args);
    } catch (e) {
      warn("callback threw " + formatValue(e));
    }
  }

  const runner = {
    queue: [],
    current: null,
    loaded: false,
    allRegistered: false, // set by the global done() (needed with explicit_done)
    completed: false,
    pumping: false,

    add(entry) {
      if (this.completed) {
        warn("test " + formatValue(entry.name) + " registered after all tests completed; ignored");
        return;
      }
      this.queue.push(entry);
      this.pump();
    },

    // Starts queued entries one at a time. A loop rather than recursion, so a
    // long run of synchronous tests does not grow the stack.
    pump() {
      if (!this.loaded || this.pumping || this.completed) return;
      this.pumping = true;
      try {
        while (this.current === null && this.queue.length > 0) {
          this.current = this.queue.shift();
          this.current._start();
        }
        if (this.current === null && (!settings.explicit_done || this.allRegistered)) {
          this.complete();
        }
      } finally {
        this.pumping = false;
      }
    },

    finished(entry, result) {
      if (result !== null) {
        results.push(result);
        callHook(global.__testharness_on_result, [result]);
        for (const cb of resultCallbacks) callHook(cb, [result]);
      }
      if (this.current === entry) this.current = null;
      this.pump();
    },

    complete() {
      this.completed = true;
      const status = { status: setupError === null ? 0 : 1, message: setupError };
      for (const cb of completionCallbacks) callHook(cb, [results, status]);
      callHook(global.__testharness_on_complete, [results]);
      resolveComplete(results);
    },
  };

  function testName(name, fn) {
    if (name !== undefined && name !== null && name !== "") return String(name);
    return (typeof fn === "function" && fn.name) || "Untitled";
  }

  function register(kind, fn, name) {
    const t = new Test(testName(name, fn), kind, fn);
    runner.add(t);
    return t;
  }

  // test(fn, name), promise_test(fn, name); the optional properties argument is ignored.
  const test = (fn, name) => register("sync", fn, name);
  const promise_test = (fn, name) => register("promise", fn, name);

  // async_test(name) or async_test(fn, name). The test may take steps before
  // its turn in the queue; its timeout starts at its turn.
  function async_test(fnOrName, name) {
    return typeof fnOrName === "function" ? register("async", fnOrName, name) : register("async", null, fnOrName);
  }

  // promise_setup(fn): an unreported promise test; if it fails or times out,
  // every later test FAILs with "setup failed: ...".
  function promise_setup(fn) {
    register("setup", fn, "promise_setup");
  }

  // setup(properties) or setup(fn, properties). Recognised properties:
  // timeout (ms per test), explicit_done; explicit_timeout and others are accepted and ignored.
  function setup(fnOrProps, maybeProps) {
    const fn = typeof fnOrProps === "function" ? fnOrProps : null;
    const props = (fn ? maybeProps : fnOrProps) || {};
    if (typeof props.timeout === "number" && !isNaN(props.timeout)) settings.timeout = props.timeout;
    if (props.explicit_done !== undefined) settings.explicit_done = !!props.explicit_done;
    if (fn) {
      try {
        fn();
      } catch (e) {
        if (setupError === null) setupError = messageOf(e);
      }
    }
  }

  // Global done(): with setup({explicit_done: true}), tells the harness that
  // every test has been registered.
  function done() {
    runner.allRegistered = true;
    runner.pump();
  }

  const add_result_callback = (fn) => { resultCallbacks.push(fn); };
  const add_completion_callback = (fn) => { completionCallbacks.push(fn); };

  function step_timeout(fn, ms) {
    const args = Array.prototype.slice.call(arguments, 2);
    return setTimer(function () { fn.apply(undefined, args); }, ms);
  }

  const exported = {
    test, promise_test, async_test, promise_setup, setup, done,
    add_result_callback, add_completion_callback, step_timeout,
    format_value: function (v) { return formatValue(v); },
    AssertionError,
    assert_equals, assert_not_equals, assert_true, assert_false,
    assert_array_equals, assert_in_array,
    assert_greater_than, assert_less_than, assert_greater_than_equal, assert_less_than_equal,
    assert_approx_equals, assert_regexp_match, assert_own_property, assert_not_own_property,
    assert_throws_js, assert_throws_dom, assert_throws_exactly, assert_unreached,
    promise_rejects_js, promise_rejects_dom, promise_rejects_exactly,
  };
  for (const k of Object.keys(exported)) global[k] = exported[k];

  // Start after the script that registers the tests has finished evaluating; in a document
  // still loading (an .html test), after its window's load event, when every script ran.
  const start = function () {
    runner.loaded = true;
    runner.pump();
  };
  if (global.document && global.document.readyState !== "complete" && typeof global.addEventListener === "function") {
    global.addEventListener("load", function () { setTimer(start, 0); });
  } else {
    setTimer(start, 0);
  }
})(globalThis);
