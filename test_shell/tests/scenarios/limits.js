// META: service.per-origin-bytes=100000
// META: service.grease=off
// SPEC §10 items 14 (identical rewrites are free), 36 (per-origin limit) and 37 (clear site data).
async function storeSized(size, fill) {
  const bytes = new Uint8Array(size).fill(fill);
  const digest = [...new Uint8Array(await crypto.subtle.digest("SHA-256", bytes))].map((b) => b.toString(16).padStart(2, "0")).join("");
  const handle = await navigator.crossOriginStorage.getFileHandle({ algorithm: "SHA-256", value: digest }, { create: true });
  const writable = await handle.createWritable();
  await writable.write(bytes);
  await writable.close();
  return digest;
}

async function exists(digest) {
  await navigator.crossOriginStorage.getFileHandle({ algorithm: "SHA-256", value: digest });
  return true;
}

promise_test(async (t) => {
  const page = (await shell.open("https://quota.example/")).frame;
  const first = await page.eval(storeSized, 60000, 1);
  await page.eval(storeSized, 60000, 1);
  let view = await shell.inspect();
  assert_equals(view.origins.find((o) => o.origin === "https://quota.example").bytes, 60000, "rewrites are free");
  await promise_rejects_dom(t, "QuotaExceededError", page.eval(storeSized, 60000, 2));
  view = await shell.inspect();
  assert_equals(view.entries.length, 1, "nothing was stored by the refused write");
  assert_true(await page.eval(exists, first));
}, "over the per-origin limit, close() rejects QuotaExceededError and stores nothing");
