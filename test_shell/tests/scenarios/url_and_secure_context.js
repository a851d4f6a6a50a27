// `URL` (the WHATWG parser of the `url` crate) in the harness realm and in pages, and
// `isSecureContext`: true for "potentially trustworthy" origins (https, loopback hosts).

test(() => {
  const url = new URL("HTTPS://user:pw@Example.COM:443/a/../b%20c?x=1&y=a+b&x=2#frag");
  assert_equals(url.href, "https://user:pw@example.com/b%20c?x=1&y=a+b&x=2#frag");
  assert_equals(url.origin, "https://example.com");
  assert_equals(url.protocol, "https:");
  assert_equals(url.username, "user");
  assert_equals(url.password, "pw");
  assert_equals(url.host, "example.com");
  assert_equals(url.hostname, "example.com");
  assert_equals(url.port, "");
  assert_equals(url.pathname, "/b%20c");
  assert_equals(url.search, "?x=1&y=a+b&x=2");
  assert_equals(url.hash, "#frag");
  assert_equals(url.searchParams.get("y"), "a b");
  assert_array_equals(url.searchParams.getAll("x"), ["1", "2"]);
  assert_equals(String(url), url.href);
  assert_equals(JSON.stringify({ url }), `{"url":"${url.href}"}`);
}, "a URL's parts");

test(() => {
  const url = new URL("c/d?q#h", "http://host.test:8080/a/b");
  assert_equals(url.href, "http://host.test:8080/a/c/d?q#h");
  assert_equals(url.host, "host.test:8080");
  assert_equals(url.port, "8080");
  assert_equals(new URL("http://h.test:80/").port, "", "a default port is not shown");
  assert_equals(new URL("https://βόλος.test/").hostname, "xn--nxasmm1c.test");
}, "relative URLs, ports and international hosts");

test(() => {
  assert_throws_js(TypeError, () => new URL("not a url"));
  assert_throws_js(TypeError, () => new URL("/relative"));
  assert_throws_js(TypeError, () => new URL("http://exa mple.test/"));
  assert_false(URL.canParse("not a url"));
  assert_true(URL.canParse("/relative", "https://a.test/"));
  assert_equals(URL.parse("nope"), null);
}, "bad input throws TypeError; URL.canParse says so without throwing");

test(() => {
  const url = new URL("https://a.test/p?a=1");
  url.searchParams.append("b", "x y");
  assert_equals(url.href, "https://a.test/p?a=1&b=x+y");
  url.searchParams.delete("a");
  assert_equals(url.search, "?b=x+y");
  url.search = "?c=3";
  assert_equals(url.searchParams.get("c"), "3");
  url.hash = "top";
  assert_equals(url.href, "https://a.test/p?c=3#top");
  const params = new URLSearchParams({ z: "1", a: "2" });
  params.sort();
  assert_equals(params.toString(), "a=2&z=1");
  assert_equals(params.size, 2);
}, "searchParams follow the URL, and the URL follows them");

promise_test(async () => {
  const cases = [
    ["https://secure.test/", true],
    ["http://plain.test/", false],
    ["http://localhost:8000/", true],
    ["http://app.localhost/", true],
    ["http://127.0.0.1:8000/", true],
    ["http://[::1]/", true],
  ];
  for (const [url, secure] of cases) {
    const page = (await shell.open(url)).frame;
    const seen = await page.eval(() => ({ secure: isSecureContext, origin: new URL(location.href).origin }));
    assert_equals(seen.secure, secure, url);
    assert_equals(seen.origin, new URL(url).origin, url);
  }
}, "isSecureContext in pages: https and loopback hosts only");

test(() => {
  assert_true(isSecureContext, "the harness realm is the browser's own");
  assert_equals(new URL("../x?y#z", "https://harness.test/a/b").href, "https://harness.test/x?y#z");
}, "isSecureContext and URL in the harness realm");

// What a realm sees: isSecureContext, and a URL parsed against its location.
const REALM_PROBE = `({ secure: isSecureContext, origin: new URL("./w?q", location.href).origin, href: new URL("b/../c", "https://x.test/a/").href })`;

promise_test(async () => {
  for (const [url, secure] of [["https://worker-realm.test/", true], ["http://plain-worker.test/", false]]) {
    const page = (await shell.open(url)).frame;
    const seen = await page.eval(async (probe) => {
      const worker = new Worker(URL.createObjectURL(new Blob([`onmessage = () => postMessage(${probe});`])));
      return await new Promise((resolve) => {
        worker.onmessage = (event) => resolve(event.data);
        worker.postMessage("go");
      });
    }, REALM_PROBE);
    assert_equals(seen.secure, secure, url);
    assert_equals(seen.origin, new URL(url).origin, url);
    assert_equals(seen.href, "https://x.test/a/c");
  }
}, "isSecureContext and URL in dedicated workers");

promise_test(async () => {
  const page = (await shell.open("https://service-worker-realm.test/")).frame;
  const seen = await page.eval(async (probe) => {
    const code = `addEventListener("message", (event) => event.source.postMessage(${probe}));`;
    const registration = await navigator.serviceWorker.register(URL.createObjectURL(new Blob([code])));
    const reply = new Promise((resolve) => navigator.serviceWorker.addEventListener("message", (e) => resolve(e.data)));
    registration.active.postMessage("go");
    return await reply;
  }, REALM_PROBE);
  assert_true(seen.secure);
  assert_equals(seen.origin, "https://service-worker-realm.test");
  assert_equals(seen.href, "https://x.test/a/c");
}, "isSecureContext and URL in service workers");
