// META: script=resources/helpers.js
// SPEC §10 items 5-8, 11-12, 14-15, 22: validation and verification.

promise_test(async (t) => {
  const { value } = await hashOf(uniqueBytes("validation"));
  const cases = [
    { algorithm: "md5", value },
    { algorithm: "SHA-1", value },
    { algorithm: "SHA-256", value: value.slice(0, 63) },
    { algorithm: "SHA-256", value: value + "0" },
    { algorithm: "SHA-256", value: value.toUpperCase() },
    { algorithm: "SHA-256", value: value.slice(0, 63) + "g" },
  ];
  for (const hash of cases) {
    await promise_rejects_js(t, TypeError, navigator.crossOriginStorage.getFileHandle(hash), JSON.stringify(hash));
    await promise_rejects_js(t, TypeError, navigator.crossOriginStorage.getFileHandle(hash, { create: true }));
  }
}, "bad algorithms and values are TypeError for reads and creates");

promise_test(async (t) => {
  const bytes = uniqueBytes("origins");
  const hash = await hashOf(bytes);
  const tooMany = Array.from({ length: 101 }, (_, i) => `https://o${i}.example`);
  for (const origins of ["data:text/plain,x", "not a url", tooMany, ["https://ok.example", "file:///x"]]) {
    await promise_rejects_js(t, TypeError, navigator.crossOriginStorage.getFileHandle(hash, { create: true, origins }));
    await promise_rejects_js(t, TypeError, navigator.crossOriginStorage.getFileHandle(hash, { origins }));
  }
  await promise_rejects_dom(t, "NotFoundError", navigator.crossOriginStorage.getFileHandle(hash), "nothing was created");
  await storeBytes(bytes, { origins: "https://one.example" });
  await storeBytes(uniqueBytes("empty list"), { origins: [] });
}, "bad origins are TypeError and create nothing; a lone string and [] are accepted");

promise_test(async () => {
  const bytes = uniqueBytes("lowercase algorithm");
  const hash = await hashOf(bytes);
  await storeBytes(bytes);
  const handle = await navigator.crossOriginStorage.getFileHandle({ algorithm: "sha-256", value: hash.value });
  assert_equals((await handle.getFile()).size, bytes.byteLength);
}, "sha-256 in lower case names the same entry");

promise_test(async (t) => {
  const bytes = uniqueBytes("mismatch");
  const hash = await hashOf(bytes);
  const handle = await navigator.crossOriginStorage.getFileHandle(hash, { create: true });
  const wrong = await handle.createWritable();
  await wrong.write(uniqueBytes("other bytes"));
  await promise_rejects_dom(t, "DataError", wrong.close());
  await promise_rejects_dom(t, "NotFoundError", navigator.crossOriginStorage.getFileHandle(hash));
  const right = await handle.createWritable();
  await right.write(bytes);
  await right.close();
  assert_equals((await handle.getFile()).size, bytes.byteLength);
}, "a mismatch is DataError and stores nothing; a later correct write succeeds");

promise_test(async () => {
  const bytes = uniqueBytes("seek and truncate");
  const hash = await hashOf(bytes);
  const handle = await navigator.crossOriginStorage.getFileHandle(hash, { create: true });
  const writable = await handle.createWritable();
  await writable.write(new Uint8Array(bytes.byteLength + 5));
  await writable.truncate(bytes.byteLength);
  await writable.seek(0);
  await writable.write({ type: "write", position: 3, data: bytes.slice(3) });
  await writable.write({ type: "write", position: 0, data: bytes.slice(0, 3) });
  await writable.close();
  assert_array_equals(new Uint8Array(await (await handle.getFile()).arrayBuffer()), bytes);
}, "verification covers seeks, positioned writes and truncates");

promise_test(async () => {
  const bytes = uniqueBytes("identical rewrite");
  await storeBytes(bytes);
  await storeBytes(bytes);
  await storeBytes(new Blob([bytes]).size ? bytes : bytes);
}, "rewriting identical bytes succeeds");

promise_test(async (t) => {
  const bytes = uniqueBytes("concurrent");
  const hash = await hashOf(bytes);
  const a = await (await navigator.crossOriginStorage.getFileHandle(hash, { create: true })).createWritable();
  const b = await (await navigator.crossOriginStorage.getFileHandle(hash, { create: true })).createWritable();
  await a.write(uniqueBytes("wrong"));
  await b.write(bytes);
  await promise_rejects_dom(t, "DataError", a.close());
  await b.close();
  assert_equals((await (await navigator.crossOriginStorage.getFileHandle(hash)).getFile()).size, bytes.byteLength);
}, "concurrent wrong and right writers are judged alone");

promise_test(async () => {
  const bytes = uniqueBytes("requestFileHandles");
  const hash = await hashOf(bytes);
  await storeBytes(bytes);
  const [handle] = await navigator.crossOriginStorage.requestFileHandles([hash]);
  assert_equals(handle.name, hash.value);
  const single = await navigator.crossOriginStorage.requestFileHandle(hash);
  assert_equals(single.name, hash.value);
}, "deprecated aliases requestFileHandle(s) still work");

promise_test(async (t) => {
  const stored = uniqueBytes("present");
  await storeBytes(stored);
  await promise_rejects_dom(t, "NotFoundError",
    navigator.crossOriginStorage.requestFileHandles([await hashOf(stored), await hashOf(uniqueBytes("absent"))]));
}, "requestFileHandles is all or nothing");
