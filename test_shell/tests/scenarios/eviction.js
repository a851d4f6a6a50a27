// META: service.total-bytes=1000000
// META: service.grease=off
// META: script=resources/cos_helpers.js
// SPEC §10 item 38: under pressure, the least recently read entry goes first, and an origin over
// its share (a fifth of the store) never takes entries other origins store too.

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

promise_test(async (t) => {
  // The previous test left two entries of pressure.example; start from an empty store.
  await shell.clearSiteData("https://pressure.example");
  const other = (await shell.open("https://other-storer.example/")).frame;
  const greedy = (await shell.open("https://greedy.example/")).frame;
  const shared = await other.eval(storeContent, { length: 400000, fill: 4 });
  await greedy.eval(storeContent, { length: 400000, fill: 4 });
  const own = await greedy.eval(storeContent, { length: 400000, fill: 5 });
  // The shared entry is now the least recently read one.
  await new Promise((resolve) => setTimeout(resolve, 5));
  assert_equals(await greedy.eval(readSize, own), 400000);
  await greedy.eval(storeContent, { length: 400000, fill: 6 });
  assert_equals(await other.eval(readSize, shared), 400000, "another origin's entry is kept, though least recently read");
  await promise_rejects_dom(t, "NotFoundError", greedy.eval(readSize, own), "the over-share origin lost its own entry");
}, "an origin over its share evicts only entries it alone stores");
