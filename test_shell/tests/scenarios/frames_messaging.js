// META: script=resources/cos_helpers.js
// SPEC §10 item 32 (the frame part): a handle posted to a same-origin frame stays readable
// there; posted to another origin it never arrives: that frame gets `messageerror` (its
// deserialization failed with DataCloneError).

// Runs in a frame: resolves `globalThis.received` with the first message or message error.
function listen() {
  globalThis.received = new Promise((resolve) => {
    addEventListener("message", async (event) => {
      const text = event.data.handle ? await (await event.data.handle.getFile()).text() : null;
      resolve({ kind: "message", origin: event.origin, text });
      event.source.postMessage({ ack: location.origin }, event.origin);
    });
    addEventListener("messageerror", (event) => resolve({ kind: "messageerror", origin: event.origin }));
  });
}

promise_test(async () => {
  const top = (await shell.open("https://app.transfer.example/")).frame;
  const same = await top.appendIframe("https://app.transfer.example/inner");
  const sibling = await top.appendIframe("https://www.transfer.example/", { allow: "cross-origin-storage" });
  await same.eval(listen);
  await sibling.eval(listen);
  const digest = await top.eval(storeContent, "posted between frames " + Math.random(), {});
  const acks = await top.eval(async (digest) => {
    const acks = new Promise((resolve) => { onmessage = (event) => resolve(event.data.ack); });
    const handle = await navigator.crossOriginStorage.getFileHandle({ algorithm: "SHA-256", value: digest });
    frames[0].postMessage({ handle }, "*");
    frames[1].postMessage({ handle }, "*");
    return await acks;
  }, digest);
  assert_equals(acks, "https://app.transfer.example", "the same-origin frame answered through event.source");
  const inner = await same.eval(() => globalThis.received);
  assert_equals(inner.kind, "message");
  assert_equals(inner.origin, "https://app.transfer.example");
  assert_true(inner.text.startsWith("posted between frames"), "readable in the same-origin frame");
  const other = await sibling.eval(() => globalThis.received);
  assert_equals(other.kind, "messageerror", "another origin never receives the handle");
  assert_equals(other.origin, "https://app.transfer.example");
}, "a handle posted to a same-origin frame stays readable; another origin gets messageerror");

promise_test(async () => {
  const top = (await shell.open("https://host.transfer.example/")).frame;
  const child = await top.appendIframe("https://host.transfer.example/child");
  await top.eval(() => {
    globalThis.first = new Promise((resolve) => addEventListener("message", (event) => resolve(event.data)));
  });
  await child.eval(() => {
    parent.postMessage({ n: 1 }, "https://elsewhere.example");
    parent.postMessage({ n: 2 }, "*");
  });
  assert_equals((await top.eval(() => globalThis.first)).n, 2, "the message for another origin was dropped");
}, "parent.postMessage honours the target origin");
