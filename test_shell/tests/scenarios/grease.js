// META: service.grease=on
// META: service.public-hash-list=resources/grease-phl.txt
// META: script=resources/cos_helpers.js
// SPEC §10 item 34: GREASE (here forced on for every eligible read by the test seam) never hits
// storing, same-site or listed origins, nor entries of 500 KiB or more.

promise_test(async (t) => {
  const owner = (await shell.open("https://owner.example/", { headers: { "Cross-Origin-Storage-Allow-Origin": "https://listed.example" } })).frame;
  await owner.activate();
  const small = await owner.eval(storeContent, "grease small public file", { origins: "https://listed.example" });
  await owner.eval(storeContent, "grease small public file", { origins: "*" });
  const large = await owner.eval(storeContent, { length: 600 * 1024, fill: 7 }, { origins: "*" });
  const sibling = (await shell.open("https://www.owner.example/")).frame;
  const listed = (await shell.open("https://listed.example/")).frame;
  const stranger = (await shell.open("https://stranger.example/")).frame;
  assert_equals(await owner.eval(readSize, small), 24, "storing origin");
  assert_equals(await sibling.eval(readSize, small), 24, "same site");
  assert_equals(await listed.eval(readSize, small), 24, "listed");
  assert_equals(await stranger.eval(readSize, large), 600 * 1024, "an entry of 500 KiB or more");
  await promise_rejects_dom(t, "NotFoundError", stranger.eval(readSize, small), "a small entry through the global grant");
}, "GREASE only ever strikes small entries read through the global grant");
