// META: service.public-hash-list=resources/grease-phl.txt
// META: service.grease=off
// META: script=resources/cos_helpers.js
// SPEC §5, the user-gesture rule: a '*' or list write is recorded only when the writing document
// had a user activation since it loaded (judged by the browser, never the page); without one it
// is stored for the writer's site, and the page's console says why. And SPEC §5's full list: the
// new origins are dropped with a console warning, the older ones kept.

// Stores `text` with `origins` (omitted when null), catching what console.warn says
// meanwhile; returns the digest and the warnings. Self-contained: `frame.eval` ships only it.
async function storeWarned(text, origins) {
  const heard = [];
  const original = console.warn;
  console.warn = (...args) => heard.push(args.join(" "));
  try {
    const bytes = new TextEncoder().encode(text);
    const digest = [...new Uint8Array(await crypto.subtle.digest("SHA-256", bytes))].map((b) => b.toString(16).padStart(2, "0")).join("");
    const options = origins == null ? { create: true } : { create: true, origins };
    const handle = await navigator.crossOriginStorage.getFileHandle({ algorithm: "SHA-256", value: digest }, options);
    const writable = await handle.createWritable();
    await writable.write(bytes);
    await writable.close();
    return { digest, heard };
  } finally {
    console.warn = original;
  }
}

const NO_ACTIVATION =
  "Cross-Origin Storage: the file was stored for this site only; sharing it with other origins needs a user activation of the page first.";
const LIST_FULL = "Cross-Origin Storage: the file's origins list is full; origins not already on it were not added.";

promise_test(async (t) => {
  // The first line of grease-phl.txt is this text's SHA-256: on the Public Hash List.
  const text = "grease small public file";
  const writer = (await shell.open("https://writer.example/", { headers: { "Cross-Origin-Storage-Allow-Origin": "https://listed.example" } })).frame;
  const sibling = (await shell.open("https://www.writer.example/")).frame;
  const stranger = (await shell.open("https://stranger.example/")).frame;
  const listed = (await shell.open("https://listed.example/")).frame;

  const early = await writer.eval(storeWarned, text, "*");
  assert_array_equals(early.heard, [NO_ACTIVATION]);
  assert_equals(await sibling.eval(readText, early.digest), text, "stored for the site");
  await promise_rejects_dom(t, "NotFoundError", stranger.eval(readText, early.digest), "on the list, yet not global");
  const list = await writer.eval(storeWarned, "listed before a click " + Math.random(), ["https://listed.example"]);
  assert_array_equals(list.heard, [NO_ACTIVATION]);
  await promise_rejects_dom(t, "NotFoundError", listed.eval(readText, list.digest), "the list was not recorded");
  assert_array_equals((await writer.eval(storeWarned, "same-site " + Math.random(), null)).heard, [], "no scope, no warning");

  await writer.activate();
  const late = await writer.eval(storeWarned, text, "*");
  assert_array_equals(late.heard, []);
  assert_equals(await stranger.eval(readText, late.digest), text, "with an activation the '*' is recorded");
  const listedLate = await writer.eval(storeWarned, "listed after a click " + Math.random(), ["https://listed.example"]);
  assert_true((await listed.eval(readText, listedLate.digest)).startsWith("listed after"));
}, "a '*' or list write without a user activation is stored same-site only, with a console warning");

promise_test(async (t) => {
  const text = "a new document " + Math.random();
  const first = await shell.open("https://navigating.example/");
  await first.frame.activate();
  await first.close();
  const second = (await shell.open("https://navigating.example/")).frame;
  const stored = await second.eval(storeWarned, text, "*");
  assert_array_equals(stored.heard, [NO_ACTIVATION], "the activation belonged to the previous document");
}, "a new document starts without activation");

promise_test(async (t) => {
  const page = (await shell.open("https://worker-owner.example/")).frame;
  await page.activate();
  const stranger = (await shell.open("https://worker-reader.example/")).frame;
  // A dedicated worker writes with its owner document's activation.
  const digest = await page.eval(async () => {
    const source = `
      onmessage = async () => {
        const bytes = new TextEncoder().encode("grease small public file");
        const hash = [...new Uint8Array(await crypto.subtle.digest("SHA-256", bytes))].map((b) => b.toString(16).padStart(2, "0")).join("");
        const handle = await navigator.crossOriginStorage.getFileHandle({ algorithm: "SHA-256", value: hash }, { create: true, origins: "*" });
        const writable = await handle.createWritable();
        await writable.write(bytes);
        await writable.close();
        postMessage(hash);
      };`;
    const worker = new Worker(URL.createObjectURL(new Blob([source])));
    return await new Promise((resolve) => {
      worker.onmessage = (event) => resolve(event.data);
      worker.postMessage("go");
    });
  });
  assert_equals(await stranger.eval(readText, digest), "grease small public file");
}, "a dedicated worker writes with its owner document's activation");

promise_test(async (t) => {
  const origins = Array.from({ length: 100 }, (_, i) => `https://l${i}.example`);
  const header = [...origins, "https://late.example"].join(", ");
  const writer = (await shell.open("https://full-list.example/", { headers: { "Cross-Origin-Storage-Allow-Origin": header } })).frame;
  await writer.activate();
  const text = "a full list " + Math.random();
  assert_array_equals((await writer.eval(storeWarned, text, origins)).heard, []);
  const more = await writer.eval(storeWarned, text, ["https://l7.example", "https://late.example"]);
  assert_array_equals(more.heard, [LIST_FULL]);
  const old = (await shell.open("https://l99.example/")).frame;
  const late = (await shell.open("https://late.example/")).frame;
  assert_equals(await old.eval(readText, more.digest), text, "the older origins still read");
  await promise_rejects_dom(t, "NotFoundError", late.eval(readText, more.digest), "the new one was dropped");
}, "a full origins list keeps its origins, drops the new ones and warns the writing page");
