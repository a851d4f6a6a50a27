// Output format of failures (snapshot-tested).
test(() => { assert_equals("model.onnx", "weights.onnx", "file name"); }, "a failing assertion");
promise_test(async () => { throw new TypeError("broken promise"); }, "a rejected promise");
setup({ timeout: 100 });
promise_test(() => new Promise(() => {}), "a test that never settles");
test(() => {}, "a passing test after them");
