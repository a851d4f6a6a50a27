// META: script=resources/cos_helpers.js
// A handle never comes to mean another one: not after a restart of the storage service, not in
// another page of the same renderer process, not after clearing site data. Ordinary pages only:
// y keeps a handle, v stores a secret for x alone, the service restarts, x opens the secret. Had
// the service numbered x's new handle like y's old one, y would now read x's secret.

// Keeps a handle on `digest` in this page (`globalThis.kept`) and returns its name.
async function keepHandle(digest, create) {
  globalThis.kept = await navigator.crossOriginStorage.getFileHandle({ algorithm: "SHA-256", value: digest }, { create });
  return globalThis.kept.name;
}

// Reads the kept handle's entry as text.
async function readKept() {
  return await (await globalThis.kept.getFile()).text();
}

// Opens a writer on the kept handle.
async function writeKept() {
  await globalThis.kept.createWritable();
}

const ANY = "0".repeat(64);

// y, v and x are pages (`{ frame, close }`); v may list x. Runs the scenario and checks it.
async function staleHandleAcrossARestart(t, y, v, x) {
  await y.frame.eval(keepHandle, ANY, true);
  await v.frame.activate();
  const secret = await v.frame.eval(storeContent, "the secret " + Math.random(), { origins: [x.frame.origin] });
  await promise_rejects_dom(t, "NotFoundError", y.frame.eval(readText, secret), "y may not read it");
  await shell.restartStorageService();
  assert_equals(await x.frame.eval(keepHandle, secret, false), secret, "x opens the secret after the restart");
  await promise_rejects_dom(t, "AbortError", y.frame.eval(readKept), "y's old handle names nothing now");
  await promise_rejects_dom(t, "AbortError", y.frame.eval(writeKept), "not even for writing");
  // Dropping y's stale handle (its page goes away) must not release x's live one.
  await y.close();
  assert_true((await x.frame.eval(readKept)).startsWith("the secret"), "x still reads through its handle");
}

promise_test(async (t) => {
  const together = { process: "one-process-for-three-sites" };
  const y = await shell.open("https://y-site.example/", together);
  const v = await shell.open("https://v-site.example/", {
    ...together,
    headers: { "Cross-Origin-Storage-Allow-Origin": "https://x-site.example" },
  });
  const x = await shell.open("https://x-site.example/", together);
  await staleHandleAcrossARestart(t, y, v, x);
}, "cross-site pages sharing a renderer: a handle from before a restart never reads another origin's entry");

promise_test(async (t) => {
  // The default layout: y and x are same-site, so they share their site's renderer; y is off the
  // record (listing x grants x's whole site, but only in x's partition), so y may not read the
  // secret.
  const y = await shell.open("https://y.shared-site.example/", { offTheRecord: true });
  const v = await shell.open("https://v.lister.example/", {
    headers: { "Cross-Origin-Storage-Allow-Origin": "https://x.shared-site.example" },
  });
  const x = await shell.open("https://x.shared-site.example/");
  await staleHandleAcrossARestart(t, y, v, x);
}, "same-site pages in their site's renderer: a handle from before a restart never reads another origin's entry");

promise_test(async (t) => {
  // The owner keeps a handle, clears its own site data while another site still stores the
  // bytes: the old handle must not go on answering whether anyone else stores them.
  const owner = (await shell.open("https://owner.revoked.example/")).frame;
  const other = (await shell.open("https://other-storer.example/")).frame;
  const text = "stored twice " + Math.random();
  const digest = await owner.eval(storeContent, text, {});
  await other.eval(storeContent, text, {});
  await owner.eval(keepHandle, digest, false);
  assert_equals(await owner.eval(readKept), text);
  await shell.clearSiteData("https://owner.revoked.example");
  for (let i = 0; i < 3; i++) {
    await promise_rejects_dom(t, "NotFoundError", owner.eval(readKept), "revoked with its grant, like a miss");
  }
  assert_equals(await other.eval(readText, digest), text, "the other storer keeps its entry");
}, "a handle is revoked with the grant it was issued on");
