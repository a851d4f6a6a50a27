// META: service.total-bytes=1000000
// META: service.grease=off
// META: script=resources/cos_helpers.js
// SPEC §10 item 38: under pressure, the least recently read entry goes first.

promise_test(async (t) => {
  const page = (await shell.open("https://pressure.example/")).frame;
  const older = await page.eval(storeContent, { length: 400000, fill: 1 });
  const newer = await page.eval(storeContent, { length: 400000, fill: 2 });
  // Read the older one: now the newer one is the least recently read.
  await new Promise((resolve) => setTimeout(resolve, 5));
  assert_equals(await page.eval(readSize, older), 400000);
  await page.eval(storeContent, { length: 400000, fill: 3 });
  assert_equals(await page.eval(readSize, older), 400000, "recently read: kept");
  await promise_rejects_dom(t, "NotFoundError", page.eval(readSize, newer), "least recently read: evicted");
  const view = await shell.inspect();
  assert_equals(view.entries.length, 2);
}, "eviction takes the least recently read entry");
