// The browser sends every named host's requests to its origin servers (plain HTTP on loopback,
// the real host kept), which serve per host what the scenario adds: files with statuses and
// headers, redirects, a directory from disk with `.headers` files, the echo resource; anything
// else is 404. Bytes count for the requesting frame's origin.
promise_test(async () => {
  const a = shell.server("https://a.example");
  const url = a.add("/lib.js", "export default 1;", { headers: { "X-Extra": "1" }, contentType: "text/javascript" });
  assert_equals(url, "https://a.example/lib.js");
  shell.server("https://b.example").add("/lib.js", "for b");
  const page = (await shell.open("https://page.example/")).frame;
  const got = await page.eval(async (url) => {
    const response = await fetch(url);
    return { status: response.status, type: response.headers.get("content-type"), extra: response.headers.get("x-extra"), text: await response.text() };
  }, url);
  assert_equals(JSON.stringify(got), JSON.stringify({ status: 200, type: "text/javascript", extra: "1", text: "export default 1;" }));
  assert_equals(await page.eval(async () => (await fetch("https://b.example/lib.js")).text()), "for b", "files are per host");
  assert_equals(await page.eval(async () => (await fetch("https://c.example/lib.js")).status), 404, "an unknown host");
  assert_equals(await page.eval(async () => (await fetch("https://a.example/none")).status), 404, "an unknown path");
  assert_equals(shell.network.bytes("https://page.example"), 17 + 5 + 2 * "404 Not Found\n".length);
}, "named hosts are served per host by the origin servers");

promise_test(async () => {
  const a = shell.server("https://a.example");
  a.add("/gone", "missing", { status: 410 });
  a.add("/moved", "", { status: 302, headers: { Location: "https://a.example/gone" } });
  a.serveDirectory("/static/", "resources/site");
  const page = (await shell.open("https://a.example/")).frame;
  const result = await page.eval(async (echo) => {
    const gone = await fetch("https://a.example/gone");
    const moved = await fetch("https://a.example/moved");
    const disk = await fetch("https://a.example/static/data.json");
    const echoed = await fetch(echo);
    return {
      gone: [gone.status, await gone.text()],
      moved: [moved.status, moved.redirected, moved.url],
      disk: [await disk.json(), disk.headers.get("cross-origin-storage-allow-origin"), disk.headers.get("x-from-headers-file")],
      echoed: [echoed.status, echoed.headers.get("content-type"), echoed.headers.get("x-a"), await echoed.text()],
    };
  }, a.echo({ body: "hi there", contentType: "text/x", status: 203, headers: { "X-A": "b" } }));
  assert_array_equals(result.gone, [410, "missing"]);
  assert_array_equals(result.moved, [410, true, "https://a.example/gone"], "the browser follows redirects");
  assert_equals(result.disk[0].served, "from disk");
  assert_array_equals(result.disk.slice(1), ["https://b.example", "yes"]);
  assert_array_equals(result.echoed, [203, "text/x", "b", "hi there"]);
}, "statuses, redirects, directories with .headers files and the echo resource");
