// META: service.per-origin-bytes=100000
// META: service.grease=off
// META: script=resources/cos_helpers.js
// SPEC §10 items 14 (identical rewrites are free), 36 (per-origin limit) and 37 (clear site data).
async function exists(digest) {
  await navigator.crossOriginStorage.getFileHandle({ algorithm: "SHA-256", value: digest });
  return true;
}

promise_test(async (t) => {
  const page = (await shell.open("https://quota.example/")).frame;
  const first = await page.eval(storeContent, { length: 60000, fill: 1 });
  await page.eval(storeContent, { length: 60000, fill: 1 });
  let view = await shell.inspect();
  assert_equals(view.origins.find((o) => o.origin === "https://quota.example").bytes, 60000, "rewrites are free");
  await promise_rejects_dom(t, "QuotaExceededError", page.eval(storeContent, { length: 60000, fill: 2 }));
  view = await shell.inspect();
  assert_equals(view.entries.length, 1, "nothing was stored by the refused write");
  assert_true(await page.eval(exists, first));
}, "over the per-origin limit, close() rejects QuotaExceededError and stores nothing");
