// META: script=resources/cos_helpers.js
// SPEC §10 items 29-30 (Permissions Policy in iframes), 39 (off-the-record), 41 (service crash).
async function invalidCall() {
  return navigator.crossOriginStorage.getFileHandle({ algorithm: "md5", value: "nope" });
}

const missing = "00".repeat(32);

promise_test(async (t) => {
  const top = (await shell.open("https://top.example/")).frame;
  const blocked = await top.appendIframe("https://embedded.example/");
  const allowed = await top.appendIframe("https://embedded.example/other", { allow: "cross-origin-storage" });
  const sameOrigin = await top.appendIframe("https://top.example/inner");
  await promise_rejects_dom(t, "NotAllowedError", blocked.eval(lookup, missing), "cross-origin iframe without allow");
  await promise_rejects_dom(t, "NotFoundError", allowed.eval(lookup, missing), "with allow: the normal path");
  await promise_rejects_dom(t, "NotFoundError", sameOrigin.eval(lookup, missing), "same-origin iframe inherits");
}, "a cross-origin iframe needs allow=\"cross-origin-storage\"");

promise_test(async (t) => {
  const page = (await shell.open("https://no-cos.example/", { headers: { "Permissions-Policy": "cross-origin-storage=()" } })).frame;
  await promise_rejects_dom(t, "NotAllowedError", page.eval(lookup, missing));
  await promise_rejects_dom(t, "NotAllowedError", page.eval(invalidCall), "even for invalid input");
}, "Permissions-Policy: cross-origin-storage=() blocks even same-origin documents");

promise_test(async (t) => {
  const regular = (await shell.open("https://private.example/")).frame;
  const digest = await regular.eval(storeContent, "on disk " + Math.random());
  const incognito = (await shell.open("https://private.example/", { offTheRecord: true })).frame;
  await promise_rejects_dom(t, "NotFoundError", incognito.eval(lookup, digest), "off the record sees nothing on disk");
  const secret = await incognito.eval(storeContent, "in memory " + Math.random());
  assert_equals(await incognito.eval(lookup, secret), secret);
  await promise_rejects_dom(t, "NotFoundError", regular.eval(lookup, secret), "and leaves nothing on disk");
}, "off-the-record pages have their own store");

promise_test(async (t) => {
  const page = (await shell.open("https://crash.example/")).frame;
  const text = "cut short by a crash " + Math.random();
  const digest = await page.eval(async (text) => {
    const bytes = new TextEncoder().encode(text);
    const digest = [...new Uint8Array(await crypto.subtle.digest("SHA-256", bytes))].map((b) => b.toString(16).padStart(2, "0")).join("");
    const handle = await navigator.crossOriginStorage.getFileHandle({ algorithm: "SHA-256", value: digest }, { create: true });
    globalThis.halfWritten = await handle.createWritable();
    await globalThis.halfWritten.write(bytes.slice(0, 5));
    return digest;
  }, text);
  await shell.restartStorageService();
  const finish = page.eval(async (text) => {
    await globalThis.halfWritten.write(new TextEncoder().encode(text).slice(5));
    await globalThis.halfWritten.close();
  }, text);
  await promise_rejects_dom(t, "AbortError", finish, "the write in flight is aborted");
  await promise_rejects_dom(t, "NotFoundError", page.eval(lookup, digest), "no partial entry");
  assert_equals(await page.eval(storeContent, text), digest, "the next call works");
  assert_equals(await page.eval(lookup, digest), digest);
}, "a storage service crash mid-write: AbortError, nothing partial, then calls work again");

promise_test(async (t) => {
  const page = await shell.open("https://closing.example/");
  assert_equals(await page.frame.eval(() => location.origin), "https://closing.example");
  await page.close();
  await promise_rejects_js(t, Error, page.frame.eval(() => 1), "a closed page runs nothing");
  const again = await shell.open("https://closing.example/");
  assert_equals(await again.frame.eval(() => 40 + 2), 42, "the site's renderer still serves new pages");
}, "page.close() discards the page");

promise_test(async (t) => {
  const one = await shell.open("https://one-site.example/", { process: "together" });
  const two = await shell.open("https://two-site.example/", { process: "together" });
  const apart = await shell.open("https://apart-site.example/");
  await shell.crashRenderer(one);
  await promise_rejects_js(t, Error, two.frame.eval(() => 1), "it shared the crashed process");
  assert_equals(await apart.frame.eval(() => 1 + 1), 2, "a page in its site's own process lives on");
}, "pages opened with the same process name share one renderer process");
