// META: script=resources/helpers.js
// The stream plumbing web apps use with COS: blob.stream(), response.body, pipeTo into a
// FileSystemWritableFileStream (a WritableStream), and WritableStream sinks of their own.
test(() => {
  assert_equals(typeof queueMicrotask, "function");
  assert_equals(self, globalThis);
  assert_equals(typeof WritableStream, "function");
  assert_true(FileSystemWritableFileStream.prototype instanceof WritableStream);
}, "stream globals");

promise_test(async () => {
  const chunks = [];
  await new Blob(["abc", "def"]).stream().pipeTo(new WritableStream({ write(chunk) { chunks.push(chunk); } }));
  assert_equals(chunks.map((chunk) => new TextDecoder().decode(chunk)).join(""), "abcdef");
}, "blob.stream() pipes into a WritableStream");

promise_test(async (t) => {
  const sink = new WritableStream({ write(chunk) { if (chunk === "bad") throw new RangeError("refused"); } });
  const writer = sink.getWriter();
  assert_true(sink.locked);
  assert_throws_js(TypeError, () => sink.getWriter(), "one writer at a time");
  await writer.write("good");
  await promise_rejects_js(t, RangeError, writer.write("bad"));
  await promise_rejects_js(t, RangeError, writer.write("later"), "a failed stream stays failed");
}, "a sink's error fails the stream");

promise_test(async () => {
  const bytes = uniqueBytes("piped into COS");
  const hash = await hashOf(bytes);
  const handle = await navigator.crossOriginStorage.getFileHandle(hash, { create: true });
  const writable = await handle.createWritable();
  assert_true(writable instanceof WritableStream);
  await new Blob([bytes]).stream().pipeTo(writable);
  const stored = await navigator.crossOriginStorage.getFileHandle(hash);
  assert_array_equals(new Uint8Array(await (await stored.getFile()).arrayBuffer()), bytes);
}, "pipeTo a FileSystemWritableFileStream stores and verifies the entry");
