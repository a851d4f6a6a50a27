// META: service.grease=off
// META: service.probe-budget=2
// META: service.public-hash-list=resources/fetch-phl.txt
// META: script=resources/fetch_helpers.js
// SPEC §11: every fetch-integration lookup is a probe, charged to the top-level site's budget
// like a getFileHandle lookup (one budget for every surface): once a site spent it on fetches,
// a global entry on the Public Hash List looks like a miss to fetch and to getFileHandle alike.

promise_test(async () => {
  const cdn = shell.server("https://cdn.example");
  const library = "fetch-integration budget library v1";
  const libraryUrl = cdn.add("/lib/budget.js", library);
  const owner = (await shell.open("https://owner.example/")).frame;
  await owner.activate();
  await owner.eval(fetched, libraryUrl, { integrity: await sri(library), crossOriginStorage: "*" });

  const prober = (await shell.open("https://prober.example/")).frame;
  for (const name of ["first", "second"]) {
    const body = `a probe for ${name}`;
    const url = cdn.add(`/probe/${name}.js`, body);
    await prober.eval(fetched, url, { integrity: await sri(body), crossOriginStorage: "" });
  }
  const spent = shell.network.bytes("https://prober.example");
  assert_false(await prober.eval(visible, library), "getFileHandle: the budget was spent by fetch lookups");
  const overBudget = await prober.eval(fetched, libraryUrl, { integrity: await sri(library), crossOriginStorage: "*" });
  assert_equals(overBudget.text, library);
  assert_equals(shell.network.bytes("https://prober.example"), spent + library.length, "fetch: over budget, from the network");

  const fresh = (await shell.open("https://fresh.example/")).frame;
  assert_equals((await fresh.eval(fetched, libraryUrl, { integrity: await sri(library), crossOriginStorage: "*" })).text, library);
  assert_equals(shell.network.bytes("https://fresh.example"), 0, "another site's budget: from COS");
}, "fetch lookups spend the probe budget that getFileHandle shares");
