// The testharness API under QuickJS, as the shell runs it: ordering, async steps, cleanups,
// DOMException-style assertions. Every test here must pass.
const log = [];

test(() => { log.push("sync 1"); assert_equals(1 + 1, 2); }, "synchronous tests run");

promise_test(async (t) => {
  t.add_cleanup(() => log.push("cleanup 2"));
  await new Promise((resolve) => t.step_timeout(resolve, 10));
  log.push("async 2");
}, "promise tests wait for timers");

promise_test(async () => {
  assert_array_equals(log, ["sync 1", "async 2", "cleanup 2"]);
}, "tests run in order, cleanups after their test");

test(() => {
  assert_throws_js(TypeError, () => { null.property; });
  assert_array_equals(new Uint8Array([1, 2]), [1, 2]);
  assert_in_array(2, [1, 2, 3]);
  assert_greater_than(2, 1);
  assert_less_than(1, 2);
  assert_not_equals(NaN, 0);
  assert_equals(NaN, NaN);
}, "assertions");

promise_test(async (t) => {
  const error = new DOMException("no entry", "NotFoundError");
  assert_equals(error.code, 8);
  assert_true(error instanceof Error);
  await promise_rejects_dom(t, "NotFoundError", Promise.reject(error));
  await promise_rejects_js(t, TypeError, Promise.reject(new TypeError("bad")));
}, "promise rejections by name");

promise_test(async () => {
  let ran = false;
  queueMicrotask(() => { ran = true; });
  await null;
  await null;
  assert_true(ran);
  assert_equals(self, globalThis);
}, "microtasks and self");
