// Checker for testharness.js (the COS test shell's own implementation of the
// WPT testharness API). SPDX-License-Identifier: MIT OR Apache-2.0
//
// Usage: node test_shell/js/check_testharness.mjs [--qjs PATH_TO_QJS]
//
// Each case evaluates testharness.js and a small test script in a fresh
// node:vm context that has only what the shell's QuickJS realms have
// (setTimeout, clearTimeout, queueMicrotask, console, DOMException, its own
// Promise), awaits __testharness_complete and compares the results with the
// expected [name, status, messageSubstring?] list. Prints PASS/FAIL per case
// and "N passed, M failed"; exits 1 on any failure.
//
// With --qjs, each case runs instead in a quickjs-ng `qjs` process (the engine
// under rquickjs), timers taken from its qjs:os module.

import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import vm from "node:vm";

const HARNESS_PATH = fileURLToPath(new URL("./testharness.js", import.meta.url));
const HARNESS = readFileSync(HARNESS_PATH, "utf8");
const CASE_DEADLINE_MS = 5000;
const SETTLE_MS = 150;
const qjsFlag = process.argv.indexOf("--qjs");
const QJS = qjsFlag === -1 ? null : process.argv[qjsFlag + 1];

// Rejections a test deliberately leaves unobserved (e.g. a promise_rejects_*
// that is not awaited) must not kill the checker.
const unhandled = [];
process.on("unhandledRejection", (reason) => unhandled.push(reason));

const cases = [
  {
    name: "sync tests pass and fail",
    script: `
      test(() => {}, "empty passes");
      test(() => { assert_true(true); assert_equals(1 + 1, 2); }, "asserts pass");
      test(() => { throw new Error("boom"); }, "throwing fails");
      test(() => { throw "plain string"; }, "throwing a non-error fails");
      test(() => { assert_true(false, "desc"); }, "assertion fails");
      test(function named_fn() {}, undefined);`,
    expect: [
      ["empty passes", "PASS"],
      ["asserts pass", "PASS"],
      ["throwing fails", "FAIL", "Error: boom"],
      ["throwing a non-error fails", "FAIL", 'uncaught exception: "plain string"'],
      ["assertion fails", "FAIL", "assert_true: desc expected true got false"],
      ["named_fn", "PASS"],
    ],
  },
  {
    name: "strict ordering of sync and promise tests, cleanups included",
    script: `
      promise_test(async (t) => {
        t.add_cleanup(() => new Promise((r) => setTimeout(() => { log("p1 cleanup"); r(); }, 20)));
        log("p1 start");
        await new Promise((r) => setTimeout(r, 30));
        log("p1 end");
      }, "p1");
      test(() => log("s2"), "s2");
      promise_test(async () => { log("p3 start"); await null; log("p3 end"); }, "p3");
      async_test((t) => { log("a4"); t.step_timeout(() => { log("a4 done"); t.done(); }, 5); }, "a4");
      test(() => log("s5"), "s5");
      log("script end");`,
    expect: [["p1", "PASS"], ["s2", "PASS"], ["p3", "PASS"], ["a4", "PASS"], ["s5", "PASS"]],
    log: ["script end", "p1 start", "p1 end", "p1 cleanup", "s2", "p3 start", "p3 end", "a4", "a4 done", "s5"],
  },
  {
    name: "assert_equals / assert_not_equals (SameValue)",
    script: `
      test(() => assert_equals(NaN, NaN), "NaN equals NaN");
      test(() => assert_equals(0, -0, "zero"), "0 vs -0");
      test(() => assert_equals(-0, 0), "-0 vs 0");
      test(() => assert_equals(4, 3, "sum"), "numbers differ");
      test(() => assert_equals("3", 3), "types differ");
      test(() => assert_equals('a"b\\n', "x"), "string quoting");
      test(() => assert_equals({a: 1, b: [1, "x"]}, {a: 1}), "objects by identity");
      test(() => assert_equals(new DOMException("gone", "NotFoundError"), null), "DOMException format");
      test(() => assert_equals(new TypeError("bad"), undefined), "Error format");
      test(() => assert_equals(1n, 2n), "bigint");
      test(() => assert_not_equals(1, 2), "not_equals pass");
      test(() => assert_not_equals(0, -0), "not_equals 0 -0 pass");
      test(() => assert_not_equals(NaN, NaN, "nan"), "not_equals NaN fail");
      test(() => assert_not_equals("s", "s"), "not_equals string fail");`,
    expect: [
      ["NaN equals NaN", "PASS"],
      ["0 vs -0", "FAIL", "assert_equals: zero expected -0 but got 0"],
      ["-0 vs 0", "FAIL", "assert_equals: expected 0 but got -0"],
      ["numbers differ", "FAIL", "assert_equals: sum expected 3 but got 4"],
      ["types differ", "FAIL", 'assert_equals: expected (number) 3 but got (string) "3"'],
      ["string quoting", "FAIL", 'expected "x" but got "a\\"b\\n"'],
      ["objects by identity", "FAIL", 'expected {a: 1} but got {a: 1, b: [1, "x"]}'],
      ["DOMException format", "FAIL", 'assert_equals: expected null but got object "NotFoundError: gone"'],
      ["Error format", "FAIL", 'but got (object) object "TypeError: bad"'],
      ["bigint", "FAIL", "expected 2n but got 1n"],
      ["not_equals pass", "PASS"],
      ["not_equals 0 -0 pass", "PASS"],
      ["not_equals NaN fail", "FAIL", "assert_not_equals: nan got disallowed value NaN"],
      ["not_equals string fail", "FAIL", 'assert_not_equals: got disallowed value "s"'],
    ],
  },
  {
    name: "assert_true / assert_false / assert_unreached",
    script: `
      test(() => assert_true(true), "true");
      test(() => assert_true(1, "truthy"), "truthy is not true");
      test(() => assert_false(false), "false");
      test(() => assert_false(0), "falsy is not false");
      test(() => assert_false(true, "d"), "true is not false");
      test(() => assert_unreached("should not get here"), "unreached");
      test(() => assert_unreached(), "unreached no description");`,
    expect: [
      ["true", "PASS"],
      ["truthy is not true", "FAIL", "assert_true: truthy expected true got 1"],
      ["false", "PASS"],
      ["falsy is not false", "FAIL", "assert_false: expected false got 0"],
      ["true is not false", "FAIL", "assert_false: d expected false got true"],
      ["unreached", "FAIL", "assert_unreached: should not get here Reached unreachable code"],
      ["unreached no description", "FAIL", "assert_unreached: Reached unreachable code"],
    ],
  },
  {
    name: "assert_array_equals (SameValue, typed arrays, array-likes)",
    script: `
      test(() => assert_array_equals([1, "a", null], [1, "a", null]), "equal");
      test(() => assert_array_equals([1, 2], [1, 3], "elems"), "element differs");
      test(() => assert_array_equals([1, 2, 3], [1, 2]), "length differs");
      test(() => assert_array_equals(new Float64Array([NaN, 1.5]), [NaN, 1.5]), "typed NaN");
      test(() => assert_array_equals(new Float64Array([-0]), [0]), "typed -0");
      test(() => assert_array_equals(new Uint8Array([1, 2, 3]), new Uint8Array([1, 2, 3])), "typed equal");
      test(() => assert_array_equals(new Uint8Array([1, 2, 4]), new Uint8Array([1, 2, 3])), "typed differs");
      test(() => assert_array_equals({length: 2, 0: "a", 1: "b"}, ["a", "b"]), "array-like");
      test(() => assert_array_equals("ab", ["a", "b"]), "string is not an array");
      test(() => assert_array_equals(null, []), "null is not an array");
      test(() => assert_array_equals([1, , 3], [1, undefined, 3]), "hole vs undefined");`,
    expect: [
      ["equal", "PASS"],
      ["element differs", "FAIL", "assert_array_equals: elems expected property 1 to be 3 but got 2 (expected array [1, 3] got [1, 2])"],
      ["length differs", "FAIL", "lengths differ, expected array [1, 2] length 2, got [1, 2, 3] length 3"],
      ["typed NaN", "PASS"],
      ["typed -0", "FAIL", "expected property 0 to be 0 but got -0"],
      ["typed equal", "PASS"],
      ["typed differs", "FAIL", "expected property 2 to be 3 but got 4 (expected array Uint8Array [1, 2, 3] got Uint8Array [1, 2, 4])"],
      ["array-like", "PASS"],
      ["string is not an array", "FAIL", 'value is "ab", expected array'],
      ["null is not an array", "FAIL", "value is null, expected array"],
      ["hole vs undefined", "FAIL", "expected property 1 to be present but it is missing"],
    ],
  },
  {
    name: "assert_in_array / comparisons / misc assertions",
    script: `
      test(() => assert_in_array(2, [1, 2, 3]), "in array");
      test(() => assert_in_array(4, [1, 2, 3], "where"), "not in array");
      test(() => assert_in_array("2", [1, 2]), "string not in number array");
      test(() => assert_greater_than(2, 1), "gt pass");
      test(() => assert_greater_than(1, 2, "g"), "gt fail");
      test(() => assert_greater_than(2, 2), "gt equal fails");
      test(() => assert_greater_than("3", 2), "gt not a number");
      test(() => assert_less_than(1, 2), "lt pass");
      test(() => assert_less_than(3, 2, "l"), "lt fail");
      test(() => assert_less_than(5n, 6n), "lt bigint");
      test(() => assert_greater_than_equal(2, 2), "gte pass");
      test(() => assert_less_than_equal(3, 2), "lte fail");
      test(() => assert_approx_equals(1.05, 1, 0.1), "approx pass");
      test(() => assert_approx_equals(1.5, 1, 0.1), "approx fail");
      test(() => assert_regexp_match("abc", /^a/), "regexp pass");
      test(() => assert_own_property({x: 1}, "y"), "own property fail");`,
    expect: [
      ["in array", "PASS"],
      ["not in array", "FAIL", "assert_in_array: where value 4 not in array [1, 2, 3]"],
      ["string not in number array", "FAIL", 'value "2" not in array [1, 2]'],
      ["gt pass", "PASS"],
      ["gt fail", "FAIL", "assert_greater_than: g expected a number greater than 2 but got 1"],
      ["gt equal fails", "FAIL", "expected a number greater than 2 but got 2"],
      ["gt not a number", "FAIL", 'assert_greater_than: expected a number but got a string ("3")'],
      ["lt pass", "PASS"],
      ["lt fail", "FAIL", "assert_less_than: l expected a number less than 2 but got 3"],
      ["lt bigint", "PASS"],
      ["gte pass", "PASS"],
      ["lte fail", "FAIL", "assert_less_than_equal: expected a number less than or equal to 2 but got 3"],
      ["approx pass", "PASS"],
      ["approx fail", "FAIL", "assert_approx_equals: expected 1 +/- 0.1 but got 1.5"],
      ["regexp pass", "PASS"],
      ["own property fail", "FAIL", 'assert_own_property: expected property "y" missing'],
    ],
  },
  {
    name: "assert_throws_js",
    script: `
      test(() => assert_throws_js(TypeError, () => null.x), "right type");
      test(() => assert_throws_js(TypeError, () => { throw new RangeError("r"); }, "wt"), "wrong type");
      test(() => assert_throws_js(TypeError, () => {}, "nt"), "no throw");
      test(() => assert_throws_js(TypeError, () => { throw "str"; }), "throws a string");
      test(() => assert_throws_js(TypeError, () => { throw new ForeignTypeError("other realm"); }), "other realm");
      test(() => assert_throws_js(Object, () => { throw new TypeError(); }), "not an Error subtype");
      test(() => assert_throws_js(TypeError, () => { assert_true(false, "inner"); }), "inner assertion");
      test(() => assert_throws_js(Error, () => { throw new TypeError("sub"); }), "subclass is not the class");
      test(() => assert_throws_js(SyntaxError, () => JSON.parse("{")), "SyntaxError");`,
    expect: [
      ["right type", "PASS"],
      ["wrong type", "FAIL", 'assert_throws_js: wt function "() => { throw new RangeError("r"); }" threw object "RangeError: r" ("RangeError") expected instance of TypeError'],
      ["no throw", "FAIL", 'assert_throws_js: nt function "() => {}" did not throw'],
      ["throws a string", "FAIL", 'threw "str" with type string, not an object'],
      ["other realm", "FAIL", "expected instance of TypeError from this realm"],
      ["not an Error subtype", "FAIL", "is not an Error subtype"],
      ["inner assertion", "FAIL", "threw object \"AssertionError: assert_true: inner expected true got false\""],
      ["subclass is not the class", "FAIL", "expected instance of Error"],
      ["SyntaxError", "PASS"],
    ],
  },
  {
    name: "assert_throws_dom",
    script: `
      const thrower = (name) => () => { throw new DOMException("msg " + name, name); };
      test(() => assert_throws_dom("NotFoundError", thrower("NotFoundError")), "right name");
      test(() => assert_throws_dom("NotFoundError", thrower("NotAllowedError"), "wn"), "wrong name");
      test(() => assert_throws_dom("NotFoundError", () => { throw new TypeError("t"); }), "TypeError is not a DOMException");
      test(() => assert_throws_dom("NotFoundError", () => { throw {name: "NotFoundError", message: "fake"}; }), "plain object is not a DOMException");
      test(() => assert_throws_dom("DataError", () => {}, "nt"), "no throw");
      test(() => assert_throws_dom("NOT_FOUND_ERR", thrower("NotFoundError")), "legacy code name");
      test(() => assert_throws_dom(8, thrower("NotFoundError")), "numeric code");
      test(() => assert_throws_dom("BogusError", thrower("BogusError")), "unknown name");
      test(() => assert_throws_dom("QuotaExceededError", DOMException, thrower("QuotaExceededError"), "ctor form"), "constructor form");
      for (const n of ["NotAllowedError", "DataError", "QuotaExceededError", "InvalidStateError", "DataCloneError", "AbortError"]) {
        test(() => assert_throws_dom(n, thrower(n)), "name " + n);
      }`,
    expect: [
      ["right name", "PASS"],
      ["wrong name", "FAIL", 'assert_throws_dom: wn function "() => { throw new DOMException("msg " + name, name); }" threw object "NotAllowedError: msg NotAllowedError" that is not a DOMException NotFoundError: property "name" is equal to "NotAllowedError", expected "NotFoundError"'],
      ["TypeError is not a DOMException", "FAIL", 'threw object "TypeError: t" that is not a DOMException NotFoundError: property "name" is equal to "TypeError"'],
      ["plain object is not a DOMException", "FAIL", "not an instance of this realm's DOMException"],
      ["no throw", "FAIL", 'assert_throws_dom: nt function "() => {}" did not throw'],
      ["legacy code name", "PASS"],
      ["numeric code", "PASS"],
      ["unknown name", "FAIL", 'Test bug: unrecognized DOMException name or code "BogusError"'],
      ["constructor form", "PASS"],
      ["name NotAllowedError", "PASS"],
      ["name DataError", "PASS"],
      ["name QuotaExceededError", "PASS"],
      ["name InvalidStateError", "PASS"],
      ["name DataCloneError", "PASS"],
      ["name AbortError", "PASS"],
    ],
  },
  {
    name: "promise_rejects_js / promise_rejects_dom",
    script: `
      const dom = (name) => Promise.reject(new DOMException("m", name));
      promise_test((t) => promise_rejects_dom(t, "NotFoundError", dom("NotFoundError")), "dom right name");
      promise_test((t) => promise_rejects_dom(t, "NotFoundError", dom("AbortError"), "wn"), "dom wrong name");
      promise_test((t) => promise_rejects_dom(t, "NotFoundError", Promise.resolve(5), "res"), "dom resolves");
      promise_test((t) => promise_rejects_dom(t, "NotFoundError", Promise.reject(new TypeError("x"))), "dom gets TypeError");
      promise_test((t) => promise_rejects_js(t, TypeError, Promise.reject(new TypeError("x"))), "js right type");
      promise_test((t) => promise_rejects_js(t, TypeError, Promise.reject(new RangeError("x")), "wt"), "js wrong type");
      promise_test((t) => promise_rejects_js(t, TypeError, Promise.resolve("ok"), "res"), "js resolves");
      promise_test(async (t) => {
        promise_rejects_dom(t, "DataError", Promise.resolve(1), "not awaited");
        await new Promise((r) => setTimeout(r, 20));
      }, "not awaited still fails");
      promise_test(async (t) => {
        await promise_rejects_dom(t, "DataError", dom("DataError"));
        await promise_rejects_js(t, RangeError, (async () => { throw new RangeError(); })());
        log("after awaits");
      }, "awaited chain passes");`,
    expect: [
      ["dom right name", "PASS"],
      ["dom wrong name", "FAIL", 'promise_rejects_dom: wn promise rejected with object "AbortError: m" that is not a DOMException NotFoundError: property "name" is equal to "AbortError", expected "NotFoundError"'],
      ["dom resolves", "FAIL", "promise_rejects_dom: res expected promise to reject with DOMException NotFoundError but it fulfilled with 5"],
      ["dom gets TypeError", "FAIL", 'promise rejected with object "TypeError: x" that is not a DOMException NotFoundError'],
      ["js right type", "PASS"],
      ["js wrong type", "FAIL", 'promise_rejects_js: wt promise rejected with object "RangeError: x" ("RangeError") expected instance of TypeError'],
      ["js resolves", "FAIL", 'promise_rejects_js: res expected promise to reject with TypeError but it fulfilled with "ok"'],
      ["not awaited still fails", "FAIL", "promise_rejects_dom: not awaited expected promise to reject"],
      ["awaited chain passes", "PASS"],
    ],
    log: ["after awaits"],
  },
  {
    name: "cleanups: order, after failure, async, throwing",
    script: `
      test((t) => {
        t.add_cleanup(() => log("s1 c1"));
        t.add_cleanup(() => log("s1 c2"));
        log("s1 body");
      }, "sync cleanup order");
      test((t) => {
        t.add_cleanup(() => log("s2 c1"));
        assert_equals(1, 2);
      }, "cleanup after failure");
      promise_test(async (t) => {
        t.add_cleanup(async () => { await new Promise((r) => setTimeout(r, 10)); log("p3 c1"); });
        t.add_cleanup(() => log("p3 c2"));
        throw new RangeError("p3 fails");
      }, "async cleanups after rejection");
      test((t) => {
        t.add_cleanup(() => { throw new Error("cleanup broke"); });
        t.add_cleanup(() => log("s4 c2 still runs"));
      }, "throwing cleanup fails a passing test");
      promise_test(async (t) => {
        t.add_cleanup(() => Promise.reject(new Error("async cleanup broke")));
      }, "rejecting cleanup fails a passing test");
      test(() => log("s6"), "next test after cleanups");`,
    expect: [
      ["sync cleanup order", "PASS"],
      ["cleanup after failure", "FAIL", "assert_equals: expected 2 but got 1"],
      ["async cleanups after rejection", "FAIL", 'promise_test: Unhandled rejection with value: object "RangeError: p3 fails"'],
      ["throwing cleanup fails a passing test", "FAIL", "cleanup: Error: cleanup broke"],
      ["rejecting cleanup fails a passing test", "FAIL", "cleanup: Error: async cleanup broke"],
      ["next test after cleanups", "PASS"],
    ],
    log: ["s1 body", "s1 c1", "s1 c2", "s2 c1", "p3 c1", "p3 c2", "s4 c2 still runs", "s6"],
  },
  {
    name: "step_timeout, step_func_done, unreached_func",
    script: `
      async_test((t) => { t.step_timeout(() => { assert_true(true); t.done(); }, 10); }, "step_timeout done");
      async_test((t) => { t.step_timeout(() => assert_equals("a", "b"), 10); }, "step_timeout assertion fails");
      promise_test((t) => new Promise((resolve) => {
        t.step_timeout((x) => { assert_equals(x, 7); resolve(); }, 5, 7);
      }), "step_timeout args in promise_test");
      async_test((t) => {
        const f = t.step_func_done((v) => assert_equals(v, 3));
        setTimeout(() => f(3), 5);
      }, "step_func_done");
      const early = async_test("async_test finishing before its turn");
      setTimeout(early.step_func_done(() => log("early done")), 0);
      async_test((t) => { setTimeout(t.unreached_func("never"), 5); }, "unreached_func");
      async_test((t) => { t.step_timeout(() => log("cleared timer ran"), 30); t.done(); }, "timers cleared at completion");
      promise_test(() => new Promise((r) => setTimeout(r, 60)), "wait");`,
    expect: [
      ["step_timeout done", "PASS"],
      ["step_timeout assertion fails", "FAIL", 'assert_equals: expected "b" but got "a"'],
      ["step_timeout args in promise_test", "PASS"],
      ["step_func_done", "PASS"],
      ["async_test finishing before its turn", "PASS"],
      ["unreached_func", "FAIL", "assert_unreached: never Reached unreachable code"],
      ["timers cleared at completion", "PASS"],
      ["wait", "PASS"],
    ],
    log: ["early done"],
  },
  {
    name: "timeout then the next test passes",
    script: `
      setup({timeout: 50});
      promise_test((t) => {
        t.add_cleanup(() => log("hang cleanup"));
        return new Promise(() => {});
      }, "never settles");
      promise_test(() => new Promise((resolve, reject) => {
        setTimeout(() => { log("late settle"); reject(new Error("too late")); }, 120);
      }), "settles too late");
      async_test((t) => { t.step_timeout(() => log("late step ignored"), 80); }, "async never done");
      promise_test(async () => { log("next runs"); }, "next passes");
      promise_test(() => new Promise((r) => setTimeout(r, 150)), "outlives late settlements");`,
    expect: [
      ["never settles", "TIMEOUT", "Test timed out"],
      ["settles too late", "TIMEOUT", "Test timed out"],
      ["async never done", "TIMEOUT", "Test timed out"],
      ["next passes", "PASS"],
      ["outlives late settlements", "TIMEOUT"],
    ],
    log: ["hang cleanup", "next runs", "late settle"],
  },
  {
    name: "host timeout (__testharness_timeout_ms)",
    globals: { __testharness_timeout_ms: 40 },
    script: `
      promise_test(() => new Promise(() => {}), "host timeout applies");
      promise_test(() => new Promise((r) => setTimeout(r, 10)), "fast passes");`,
    expect: [["host timeout applies", "TIMEOUT"], ["fast passes", "PASS"]],
  },
  {
    name: "setup({timeout}) takes precedence over the host timeout",
    globals: { __testharness_timeout_ms: 60000 },
    script: `
      setup({timeout: 40});
      promise_test(() => new Promise(() => {}), "setup timeout applies");`,
    expect: [["setup timeout applies", "TIMEOUT"]],
  },
  {
    name: "promise_test body must return a thenable",
    script: `
      promise_test(() => 42, "returns a number");
      promise_test(() => {}, "returns undefined");
      promise_test(() => ({then: (ok) => ok()}), "custom thenable passes");
      promise_test(() => { throw new TypeError("sync throw"); }, "throws synchronously");
      test(() => Promise.resolve(), "sync test returning a promise");`,
    expect: [
      ["returns a number", "FAIL", "promise_test: test body must return a 'thenable' object (received 42)"],
      ["returns undefined", "FAIL", "promise_test: test body must return a 'thenable' object (received undefined)"],
      ["custom thenable passes", "PASS"],
      ["throws synchronously", "FAIL", "TypeError: sync throw"],
      ["sync test returning a promise", "FAIL", "use promise_test"],
    ],
  },
  {
    name: "zero tests completes with an empty array",
    script: `log("nothing registered");`,
    expect: [],
    log: ["nothing registered"],
  },
  {
    name: "exception inside t.step_func fails the test",
    script: `
      async_test((t) => {
        setTimeout(t.step_func(() => { throw new TypeError("oops in callback"); }), 5);
      }, "async_test step_func throws");
      promise_test((t) => {
        setTimeout(t.step_func(() => { null.boom; }), 5);
        return new Promise(() => {}); // never settles: the step failure ends the test
      }, "promise_test step_func throws");
      test((t) => { t.step(() => assert_equals(1, 1)); t.step(() => { throw new Error("in step"); }); log("after failing step"); }, "t.step throws");
      test(() => log("next"), "next after step failures");`,
    expect: [
      ["async_test step_func throws", "FAIL", "TypeError: oops in callback"],
      ["promise_test step_func throws", "FAIL", "TypeError"],
      ["t.step throws", "FAIL", "Error: in step"],
      ["next after step failures", "PASS"],
    ],
    log: ["after failing step", "next"],
  },
  {
    name: "host hooks and callbacks",
    hooks: true,
    script: `
      add_result_callback((r) => log("result " + r.name + " " + r.status));
      add_completion_callback((results, status) => log("complete " + results.length + " " + status.status));
      test(() => {}, "dup");
      test(() => assert_true(false), "dup");
      promise_test(async () => {}, "third");`,
    expect: [["dup", "PASS"], ["dup", "FAIL", "assert_true"], ["third", "PASS"]],
    log: [
      "host result dup PASS", "result dup PASS",
      "host result dup FAIL", "result dup FAIL",
      "host result third PASS", "result third PASS",
      "complete 3 0", "host complete 3",
    ],
  },
  {
    name: "tests added while running, explicit_done, setup failure",
    script: `
      setup({explicit_done: true});
      test(() => { test(() => log("nested ran"), "nested"); log("outer"); }, "outer");
      setTimeout(() => {
        promise_test(async () => log("late registered"), "registered from a timer");
        done();
      }, 30);`,
    expect: [["outer", "PASS"], ["nested", "PASS"], ["registered from a timer", "PASS"]],
    log: ["outer", "nested ran", "late registered"],
  },
  {
    name: "setup function throwing fails every test",
    script: `
      setup(() => { throw new Error("setup broke"); });
      test(() => {}, "a");
      promise_test(async () => {}, "b");`,
    expect: [["a", "FAIL", "setup failed: Error: setup broke"], ["b", "FAIL", "setup failed"]],
  },
  {
    name: "promise_setup runs before later tests",
    script: `
      let ready = false;
      promise_setup(() => new Promise((r) => setTimeout(() => { ready = true; r(); }, 10)));
      promise_test(async () => assert_true(ready), "sees setup");`,
    expect: [["sees setup", "PASS"]],
  },
  {
    name: "failing promise_setup fails every later test",
    script: `
      promise_setup(async () => { throw new Error("no database"); });
      promise_test(async () => {}, "x");`,
    expect: [["x", "FAIL", 'setup failed: promise_test: Unhandled rejection with value: object "Error: no database"']],
  },
  {
    name: "hanging cleanup times out, next test still runs",
    script: `
      setup({timeout: 50});
      promise_test(async (t) => { t.add_cleanup(() => new Promise(() => {})); }, "cleanup hangs");
      test((t) => { t.add_cleanup(() => { throw new Error("x"); }); assert_true(false, "first"); }, "failure kept over cleanup error");
      test(() => log("after"), "after");`,
    expect: [
      ["cleanup hangs", "TIMEOUT", "Test timed out while running cleanup functions"],
      ["failure kept over cleanup error", "FAIL", "assert_true: first expected true got false"],
      ["after", "PASS"],
    ],
    log: ["after"],
  },
  {
    name: "steps after done are ignored; force_timeout; default names",
    script: `
      async_test((t) => {
        t.done();
        t.step(() => assert_true(false, "after done"));
        t.done();
      }, "step after done ignored");
      async_test((t) => { t.force_timeout(); }, "forced timeout");
      test(() => {});
      promise_test((t) => promise_rejects_dom(t, "AbortError", DOMException,
        Promise.reject(new DOMException("a", "AbortError"))), "promise_rejects_dom constructor form");
      promise_test(async () => {
        setTimeout(() => test(() => {}, "too late"), 0);
      }, "last");`,
    expect: [
      ["step after done ignored", "PASS"],
      ["forced timeout", "TIMEOUT", "Test timed out"],
      ["Untitled", "PASS"],
      ["promise_rejects_dom constructor form", "PASS"],
      ["last", "PASS"],
    ],
    consoleLog: ['testharness: test "too late" registered after all tests completed; ignored'],
  },
  {
    name: "many synchronous tests do not grow the stack",
    script: `for (let i = 0; i < 20000; i++) test(() => {}, "t" + i);`,
    expectCount: 20000,
  },
];

// Engine-neutral setup evaluated in the context before testharness.js: the
// `log` helper the scripts use, host globals and, for `hooks`, the host hooks.
function prelude(c) {
  return `
    globalThis.__log = globalThis.__log || [];
    globalThis.log = (s) => { __log.push(String(s)); };
    Object.assign(globalThis, ${JSON.stringify(c.globals || {})});
    ${c.hooks ? `
    globalThis.__testharness_on_result = (r) => { __log.push("host result " + r.name + " " + r.status); };
    globalThis.__testharness_on_complete = (rs) => { __log.push("host complete " + rs.length); };` : ""}`;
}

// Runs one case in a fresh node:vm context; returns what compare() checks.
async function runInVm(c) {
  const log = [];
  const ctx = vm.createContext({
    setTimeout, clearTimeout, queueMicrotask, DOMException,
    console: { log: (...args) => log.push("console: " + args.join(" ")) },
    ForeignTypeError: TypeError, // the checker's realm, not the context's
    __log: log,
  });
  vm.runInContext(prelude(c), ctx, { filename: "prelude.js" });
  vm.runInContext(HARNESS, ctx, { filename: "testharness.js" });
  vm.runInContext(c.script, ctx, { filename: "test.js" });
  let timer;
  const deadline = new Promise((resolve) => {
    timer = setTimeout(() => resolve("deadline"), CASE_DEADLINE_MS);
  });
  const results = await Promise.race([ctx.__testharness_complete, deadline]);
  clearTimeout(timer);
  if (results === "deadline") return { deadline: true };
  // Let late timers of timed-out tests fire, to prove they are ignored.
  await new Promise((r) => setTimeout(r, SETTLE_MS));
  return {
    results: JSON.parse(JSON.stringify(results)),
    log,
    same: results === ctx.__testharness_results,
    countAfterSettle: ctx.__testharness_results.length,
  };
}

// Runs one case in a QuickJS process (`--qjs PATH`, a quickjs-ng qjs binary):
// the same engine as the shell's rquickjs realms. Timers come from qjs:os.
function runInQjs(c) {
  const program = `
    import * as os from "qjs:os";
    globalThis.setTimeout = os.setTimeout;
    globalThis.clearTimeout = os.clearTimeout;
    globalThis.__log = [];
    const print = console.log;
    globalThis.console = { log: (...args) => { __log.push("console: " + args.join(" ")); } };
    globalThis.ForeignTypeError = class TypeError extends Error {
      constructor(message) { super(message); this.name = "TypeError"; }
    };
    (0, eval)(${JSON.stringify(prelude(c))});
    (0, eval)(${JSON.stringify(HARNESS)});
    (0, eval)(${JSON.stringify(c.script)});
    // No top-level await: qjs's await loop runs one job per (blocking) timer poll.
    globalThis.__testharness_complete.then((results) => setTimeout(() => {
      print(JSON.stringify({ results, log: __log, same: results === globalThis.__testharness_results,
        countAfterSettle: globalThis.__testharness_results.length }));
    }, ${SETTLE_MS}));
  `;
  const dir = mkdtempSync(join(tmpdir(), "check-testharness-"));
  const file = join(dir, "case.mjs");
  writeFileSync(file, program);
  try {
    const out = execFileSync(QJS, ["-m", file], {
      encoding: "utf8", timeout: CASE_DEADLINE_MS + 5000, maxBuffer: 64 << 20,
    });
    return JSON.parse(out.trim().split("\n").pop());
  } catch (e) {
    if (e.signal === "SIGTERM") return { deadline: true };
    throw new Error(`qjs failed: ${e.stderr || e.message}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function compare(c, run) {
  if (run.deadline) return [`__testharness_complete did not resolve within ${CASE_DEADLINE_MS} ms`];
  const { results, log } = run;
  const problems = [];
  if (!Array.isArray(results)) return ["__testharness_complete did not resolve with an array"];
  if (!run.same) problems.push("resolved value is not __testharness_results");
  if (run.countAfterSettle !== results.length) problems.push("results grew after completion");
  if (c.expectCount !== undefined) {
    if (results.length !== c.expectCount) problems.push(`expected ${c.expectCount} results, got ${results.length}`);
    if (results.some((r) => r.status !== "PASS")) problems.push("not all PASS");
    return problems;
  }
  const n = Math.max(results.length, c.expect.length);
  for (let i = 0; i < n; i++) {
    const got = results[i];
    const want = c.expect[i];
    if (!got) { problems.push(`missing result #${i} ${JSON.stringify(want)}`); continue; }
    if (!want) { problems.push(`unexpected result #${i} ${JSON.stringify(got)}`); continue; }
    const [name, status, sub] = want;
    const keys = Object.keys(got).sort().join(",");
    if (keys !== "message,name,status") problems.push(`result #${i} has keys ${keys}`);
    if (got.name !== name || got.status !== status) {
      problems.push(`result #${i}: want ${name}/${status}, got ${got.name}/${got.status} (${got.message})`);
    } else if (status === "PASS" && got.message !== null) {
      problems.push(`result #${i} ${name}: PASS with non-null message ${JSON.stringify(got.message)}`);
    } else if (status !== "PASS" && typeof got.message !== "string") {
      problems.push(`result #${i} ${name}: ${status} without a message`);
    } else if (sub !== undefined && !got.message.includes(sub)) {
      problems.push(`result #${i} ${name}: message ${JSON.stringify(got.message)} lacks ${JSON.stringify(sub)}`);
    }
  }
  for (const line of c.consoleLog || []) {
    if (!log.includes("console: " + line)) problems.push(`console.log never printed ${JSON.stringify(line)}`);
  }
  if (c.log) {
    const seen = log.filter((l) => !l.startsWith("console:"));
    if (JSON.stringify(seen) !== JSON.stringify(c.log)) {
      problems.push(`log ${JSON.stringify(seen)} != expected ${JSON.stringify(c.log)}`);
    }
  }
  return problems;
}

let passed = 0;
let failed = 0;
for (const c of cases) {
  let problems;
  const unhandledBefore = unhandled.length;
  try {
    problems = compare(c, QJS ? runInQjs(c) : await runInVm(c));
  } catch (e) {
    problems = [`checker error: ${e && e.stack ? e.stack : e}`];
  }
  for (const reason of unhandled.slice(unhandledBefore)) {
    problems.push(`unhandled rejection: ${reason && reason.message ? reason.message : reason}`);
  }
  if (problems.length === 0) {
    passed++;
    console.log(`PASS ${c.name}`);
  } else {
    failed++;
    console.log(`FAIL ${c.name}`);
    for (const p of problems) console.log(`    ${p}`);
  }
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
