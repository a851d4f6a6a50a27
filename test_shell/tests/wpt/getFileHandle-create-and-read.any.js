// META: script=resources/helpers.js
// SPEC §10 items 1-4, 9-10, 13, 16-18: the surface, round trips and per-handle readability.

test(() => {
  assert_true("crossOriginStorage" in navigator);
  assert_equals(navigator.crossOriginStorage, navigator.crossOriginStorage, "[SameObject]");
}, "navigator.crossOriginStorage is present in a secure context");

promise_test(async (t) => {
  const bytes = uniqueBytes("never stored");
  await promise_rejects_dom(t, "NotFoundError", navigator.crossOriginStorage.getFileHandle(await hashOf(bytes)));
  await promise_rejects_dom(t, "NotFoundError", navigator.crossOriginStorage.getFileHandle(await hashOf(bytes), {}));
}, "a never-stored hash is NotFoundError, {} options are a read");

promise_test(async () => {
  const bytes = uniqueBytes("round trip");
  const hash = await hashOf(bytes);
  await storeBytes(bytes);
  const handle = await navigator.crossOriginStorage.getFileHandle(hash);
  assert_true(handle instanceof FileSystemFileHandle);
  assert_equals(handle.kind, "file");
  assert_equals(handle.name, hash.value);
  const file = await handle.getFile();
  assert_true(file instanceof File);
  assert_equals(file.size, bytes.byteLength);
  assert_array_equals(new Uint8Array(await file.arrayBuffer()), bytes);
  assert_equals(await file.slice(0, 10).text(), new TextDecoder().decode(bytes.slice(0, 10)));
}, "create, write, close, read round-trips the exact bytes");

promise_test(async (t) => {
  const bytes = uniqueBytes("per handle");
  const hash = await hashOf(bytes);
  const handle = await navigator.crossOriginStorage.getFileHandle(hash, { create: true });
  await promise_rejects_dom(t, "NotAllowedError", handle.getFile());
  const writable = await handle.createWritable();
  await writable.write(bytes);
  await promise_rejects_dom(t, "NotFoundError", navigator.crossOriginStorage.getFileHandle(hash), "in flight");
  await writable.close();
  assert_equals((await handle.getFile()).size, bytes.byteLength);
  const other = await navigator.crossOriginStorage.getFileHandle(hash, { create: true });
  await promise_rejects_dom(t, "NotAllowedError", other.getFile(), "another create handle never wrote");
}, "create handles are readable only after their own verified write");

promise_test(async (t) => {
  const bytes = uniqueBytes("keep existing data");
  const handle = await navigator.crossOriginStorage.getFileHandle(await hashOf(bytes), { create: true });
  const writable = await handle.createWritable({ keepExistingData: true });
  await promise_rejects_dom(t, "DataError", writable.close());
}, "createWritable starts empty; closing with nothing written is DataError");

promise_test(async (t) => {
  const bytes = uniqueBytes("surface");
  const hash = await hashOf(bytes);
  await storeBytes(bytes);
  const handle = await navigator.crossOriginStorage.getFileHandle(hash);
  const again = await navigator.crossOriginStorage.getFileHandle(hash);
  assert_true(await handle.isSameEntry(again));
  assert_equals(await handle.queryPermission({ mode: "read" }), "granted");
  assert_equals(await handle.queryPermission({ mode: "readwrite" }), "denied");
  assert_equals(await handle.requestPermission({ mode: "readwrite" }), "denied");
  await promise_rejects_dom(t, "NotAllowedError", handle.move("elsewhere"));
  await promise_rejects_dom(t, "NotAllowedError", handle.remove());
  await promise_rejects_dom(t, "InvalidStateError", handle.createSyncAccessHandle());
  assert_equals((await (await navigator.crossOriginStorage.getFileHandle(hash)).getFile()).size, bytes.byteLength);
}, "handle surface: isSameEntry, permissions never prompt, move/remove/sync access rejected");
