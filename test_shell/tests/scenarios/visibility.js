// META: script=resources/cos_helpers.js
// SPEC §10 items 19-28 and 40: who sees what, across real renderer processes.
let a, sibling, b, c;

promise_test(async () => {
  a = (await shell.open("https://app.a.example/", { headers: { "Cross-Origin-Storage-Allow-Origin": "https://b.example" } })).frame;
  sibling = (await shell.open("https://www.a.example/")).frame;
  b = (await shell.open("https://b.example/")).frame;
  c = (await shell.open("https://c.example/")).frame;
  assert_equals(a.origin, "https://app.a.example");
  // Their users clicked in them: '*' and list writes are recorded (SPEC §5, user activation).
  await a.activate();
  await c.activate();
}, "pages open at their origins");

promise_test(async (t) => {
  const digest = await a.eval(storeContent, "same-site entry " + Math.random(), {});
  assert_equals(await a.eval(readText, digest), (await a.eval(readText, digest)));
  assert_true((await sibling.eval(readText, digest)).startsWith("same-site entry"));
  await promise_rejects_dom(t, "NotFoundError", b.eval(readText, digest));
  await promise_rejects_dom(t, "NotFoundError", b.eval(readText, digest), "every time");
}, "the storing origin and same-site siblings read; cross-site readers get NotFoundError");

promise_test(async (t) => {
  const digest = await a.eval(storeContent, "listed entry " + Math.random(), { origins: ["https://b.example", "https://c.example"] });
  assert_true((await b.eval(readText, digest)).startsWith("listed entry"));
  await promise_rejects_dom(t, "NotFoundError", c.eval(readText, digest), "outside the Allow-Origin ceiling");
}, "listed origins inside the ceiling read; others do not");

promise_test(async (t) => {
  const lister = (await shell.open("https://lister.example/", { headers: { "Cross-Origin-Storage-Allow-Origin": "https://a.site.example" } })).frame;
  await lister.activate();
  const listed = (await shell.open("https://a.site.example/")).frame;
  const sameSite = (await shell.open("https://b.site.example/")).frame;
  const other = (await shell.open("https://other.example/")).frame;
  const digest = await lister.eval(storeContent, "listed for a site " + Math.random(), { origins: ["https://a.site.example"] });
  assert_true((await listed.eval(readText, digest)).startsWith("listed for a site"));
  assert_true((await sameSite.eval(readText, digest)).startsWith("listed for a site"), "same-site with the listed origin");
  await promise_rejects_dom(t, "NotFoundError", other.eval(readText, digest));
}, "listing an origin also grants its same-site origins, and nobody else");

promise_test(async (t) => {
  const digest = await c.eval(storeContent, "c lists b, no header " + Math.random(), { origins: "https://b.example" });
  await promise_rejects_dom(t, "NotFoundError", b.eval(readText, digest), "no header: nobody");
  const global = await a.eval(storeContent, "global, not on any list " + Math.random(), { origins: "*" });
  await promise_rejects_dom(t, "NotFoundError", c.eval(readText, global), "no Public Hash List: fail closed");
}, "no ceiling header authorises nobody; '*' without a list is never disclosed");

promise_test(async (t) => {
  const text = "widened later " + Math.random();
  const digest = await a.eval(storeContent, text, {});
  await promise_rejects_dom(t, "NotFoundError", b.eval(readText, digest));
  await b.eval(storeContent, text, {});
  assert_equals(await b.eval(readText, digest), text, "b now stores it too");
  const view = await shell.inspect();
  const entry = view.entries.find((e) => e.hash === digest);
  assert_array_equals(entry.storingOrigins, ["https://app.a.example", "https://b.example"]);
}, "a non-storing origin that supplies the right bytes becomes a storing origin");

promise_test(async (t) => {
  const digest = await a.eval(storeContent, "survives a restart " + Math.random(), { origins: ["https://b.example"] });
  await shell.restartStorageService();
  assert_true((await a.eval(readText, digest)).startsWith("survives"));
  assert_true((await b.eval(readText, digest)).startsWith("survives"), "grants survive too");
}, "entries and grants survive a restart of the storage service");

promise_test(async (t) => {
  const text = "cleared " + Math.random();
  const shared = "shared and cleared " + Math.random();
  const alone = await a.eval(storeContent, text, {});
  const both = await a.eval(storeContent, shared, {});
  await b.eval(storeContent, shared, {});
  await shell.clearSiteData("https://app.a.example");
  await promise_rejects_dom(t, "NotFoundError", a.eval(readText, alone));
  assert_equals(await b.eval(readText, both), shared, "kept while another storer remains");
}, "clearing site data revokes the origin and collects what nobody stores");
