// META: service.probe-budget=4
// META: service.availability-threshold=2
// META: service.grease=off
// META: script=resources/cos_helpers.js
// SPEC §10 items 33 (availability gating), 35 (probe budget) and 40 (a spent budget survives a
// restart), through real processes.

promise_test(async (t) => {
  const text = "popular model " + Math.random();
  const first = (await shell.open("https://first.example/")).frame;
  const second = (await shell.open("https://second.example/")).frame;
  const reader = (await shell.open("https://reader.example/")).frame;
  await first.activate();
  await second.activate();
  const digest = await first.eval(storeContent, text, { origins: "*" });
  await promise_rejects_dom(t, "NotFoundError", reader.eval(readText, digest), "one site stored it");
  await promise_rejects_dom(t, "NotFoundError", reader.eval(readText, digest), "reads never count");
  await second.eval(storeContent, text, { origins: "*" });
  assert_equals(await reader.eval(readText, digest), text, "two distinct sites stored it");
}, "availability gating discloses a global entry once K distinct sites stored it");

promise_test(async (t) => {
  const owner = (await shell.open("https://owner.example/")).frame;
  const other = (await shell.open("https://other-owner.example/")).frame;
  await owner.activate();
  await other.activate();
  const texts = [0, 1, 2, 3, 4].map((i) => `budget model ${i} ${Math.random()}`);
  const digests = [];
  for (const text of texts) {
    digests.push(await owner.eval(storeContent, text, { origins: "*" }));
    await other.eval(storeContent, text, { origins: "*" });
  }
  const prober = (await shell.open("https://prober.example/")).frame;
  for (let i = 0; i < 4; i++) assert_equals(await prober.eval(readText, digests[i]), texts[i]);
  assert_equals(await prober.eval(readText, digests[0]), texts[0], "a hash already probed stays free");
  await promise_rejects_dom(t, "NotFoundError", prober.eval(readText, digests[4]), "the fifth distinct hash is over budget");
  await shell.restartStorageService();
  await promise_rejects_dom(t, "NotFoundError", prober.eval(readText, digests[4]), "the spent budget survives a restart");
  assert_equals(await owner.eval(readText, digests[4]), texts[4], "storing origins are never charged");
  await prober.activate();
  assert_equals(await prober.eval(readText, digests[4]), texts[4], "a user activation replenishes the budget");
}, "the probe budget counts distinct hashes per top-level site");
