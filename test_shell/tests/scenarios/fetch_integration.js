// META: service.grease=off
// META: service.public-hash-list=resources/fetch-phl.txt
// META: script=resources/fetch_helpers.js
// SPEC §11: fetch(url, {integrity, crossOriginStorage}). The browser looks the integrity's
// sha256 up in COS for the requesting document (a hit answers without any network request); a
// miss goes to the network and, once SRI passed, stores what was fetched with the request's
// scope, capped by the resource's own Cross-Origin-Storage-Allow-Origin header. Stores that
// share beyond the site come from activated pages (the user-gesture rule).

const bytesOf = (origin) => shell.network.bytes(origin);

// Serves `body` at `path` of the CDN; its URL and integrity.
async function resource(path, body, options) {
  return { url: shell.server("https://cdn.example").add(path, body, options), integrity: await sri(body) };
}

promise_test(async () => {
  const body = "a library fetched once, then served from COS ".repeat(2000);
  const url = shell.server("https://cdn.example").add("/lib/one.js", body, { contentType: "text/javascript" });
  const integrity = await sri(body);
  const page = (await shell.open("https://app.example/")).frame;
  const miss = await page.eval(fetched, url, { integrity, crossOriginStorage: "" });
  assert_equals(miss.text, body);
  assert_equals(miss.contentType, "text/javascript", "a miss is the network's response");
  assert_equals(bytesOf("https://app.example"), body.length, "the miss went to the network");

  const hit = await page.eval(fetched, url, { integrity, crossOriginStorage: "" });
  assert_equals(bytesOf("https://app.example"), body.length, "no network request for the hit");
  assert_equals(hit.text, body);
  assert_equals(JSON.stringify([hit.status, hit.ok, hit.type, hit.url, hit.redirected]), JSON.stringify([200, true, "cors", url, false]));
  assert_equals(hit.contentType, null, "no Content-Type without contentType");
  assert_equals(hit.contentLength, String(body.length));

  const sibling = (await shell.open("https://www.app.example/")).frame;
  assert_equals((await sibling.eval(fetched, url, { integrity, crossOriginStorage: "" })).text, body);
  assert_equals(bytesOf("https://www.app.example"), 0, "'' reaches the same site from COS");
  const stranger = (await shell.open("https://stranger.example/")).frame;
  assert_equals((await stranger.eval(fetched, url, { integrity, crossOriginStorage: "" })).text, body);
  assert_equals(bytesOf("https://stranger.example"), body.length, "another site fetched from the network");
  const plain = await page.eval(fetched, url, { integrity });
  assert_equals(bytesOf("https://app.example"), 2 * body.length, "without crossOriginStorage COS is not involved");
  assert_equals(plain.contentType, "text/javascript");
}, "a miss fetches and stores, a hit answers from COS with no network request ('' is same-site)");

promise_test(async () => {
  const body = "fetch-integration global library v1";
  const { url, integrity } = await resource("/lib/global.js", body);
  const writer = (await shell.open("https://writer-global.example/")).frame;
  await writer.activate();
  await writer.eval(fetched, url, { integrity, crossOriginStorage: "*" });
  const reader = (await shell.open("https://reader-global.example/")).frame;
  const hit = await reader.eval(fetched, url, { integrity, crossOriginStorage: "*" });
  assert_equals(hit.text, body);
  assert_equals(bytesOf("https://reader-global.example"), 0, "'*' on the Public Hash List: from COS");
  const entry = (await shell.inspect()).entries.find((e) => e.size === body.length && e.global);
  assert_true(entry !== undefined, "stored with the global grant");
}, "'*' stores with the global grant");

promise_test(async () => {
  const body = "fetch-integration: stored before any user activation"; // on the Public Hash List
  const { url, integrity } = await resource("/lib/unactivated.js", body);
  const writer = (await shell.open("https://writer-unactivated.example/")).frame;
  const heard = await writer.eval(async (url, init) => {
    const lines = [];
    const warn = console.warn;
    console.warn = (text) => lines.push(String(text));
    try {
      await (await fetch(url, init)).text();
    } finally {
      console.warn = warn;
    }
    return lines;
  }, url, { integrity, crossOriginStorage: "*" });
  assert_equals(heard.length, 1, "the page's console is told why");
  assert_true(heard[0].includes("user activation"), heard[0]);
  const sibling = (await shell.open("https://www.writer-unactivated.example/")).frame;
  assert_equals((await sibling.eval(fetched, url, { integrity, crossOriginStorage: "*" })).text, body);
  assert_equals(bytesOf("https://www.writer-unactivated.example"), 0, "stored for its own site");
  const reader = (await shell.open("https://reader-unactivated.example/")).frame;
  assert_equals((await reader.eval(fetched, url, { integrity, crossOriginStorage: "*" })).text, body);
  assert_equals(bytesOf("https://reader-unactivated.example"), body.length, "not shared cross-site: the reader went to the network");
  // A hit never stores: once activated, the page's fetch is answered from COS and widens
  // nothing; a write of the bytes through the script API does.
  await writer.activate();
  await writer.eval(fetched, url, { integrity, crossOriginStorage: "*" });
  assert_equals(bytesOf("https://writer-unactivated.example"), body.length, "the writer's second fetch was a hit");
  const stillOut = (await shell.open("https://still-out.example/")).frame;
  assert_false(await stillOut.eval(visible, body), "a hit widened nothing");
  await writer.eval(async (text) => {
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
    const value = [...digest].map((b) => b.toString(16).padStart(2, "0")).join("");
    const handle = await navigator.crossOriginStorage.getFileHandle({ algorithm: "SHA-256", value }, { create: true, origins: "*" });
    const writable = await handle.createWritable();
    await writable.write(text);
    await writable.close();
  }, body);
  assert_true(await stillOut.eval(visible, body), "the activated page's script write widened it");
}, "without a user activation a '*' store is same-site only, and the page's console says why");

promise_test(async () => {
  const cdn = shell.server("https://cdn.example");
  const listed = "a listed resource, capped by its own header";
  const dict = "a listed resource with a declared content type";
  const header = { "Cross-Origin-Storage-Allow-Origin": "https://b.example" };
  const listedUrl = cdn.add("/lib/listed.js", listed, { headers: header });
  const dictUrl = cdn.add("/lib/dict.js", dict, { headers: header });
  // The document's own header admits c.example: it plays no part in what a fetch stores.
  const writer = (await shell.open("https://writer-list.example/", { headers: { "Cross-Origin-Storage-Allow-Origin": "https://c.example" } })).frame;
  await writer.activate();
  await writer.eval(fetched, listedUrl, { integrity: await sri(listed), crossOriginStorage: ["https://b.example", "https://c.example"] });
  await writer.eval(fetched, dictUrl, { integrity: await sri(dict), crossOriginStorage: { origins: ["https://b.example"], contentType: "text/javascript" } });
  const b = (await shell.open("https://b.example/")).frame;
  const c = (await shell.open("https://c.example/")).frame;
  const hit = await b.eval(fetched, listedUrl, { integrity: await sri(listed), crossOriginStorage: [] });
  assert_equals(hit.text, listed);
  assert_equals(bytesOf("https://b.example"), 0, "b.example reads the listed entry from COS");
  const typed = await b.eval(fetched, dictUrl, { integrity: await sri(dict), crossOriginStorage: { contentType: "text/javascript" } });
  assert_equals(typed.contentType, "text/javascript", "contentType gives the hit its Content-Type");
  assert_equals(bytesOf("https://b.example"), 0);
  assert_false(await c.eval(visible, listed), "c.example is outside the resource's ceiling");
  await c.eval(fetched, listedUrl, { integrity: await sri(listed), crossOriginStorage: "" });
  assert_equals(bytesOf("https://c.example"), listed.length, "so its fetch went to the network");
}, "a list (and the dictionary form) is capped by the resource's header, not the document's");

promise_test(async (t) => {
  const real = "the bytes the page expects";
  const url = shell.server("https://cdn.example").add("/lib/tampered.js", "the bytes a compromised CDN serves");
  const page = (await shell.open("https://sri.example/")).frame;
  const before = (await shell.inspect()).entries.length;
  await promise_rejects_js(t, TypeError, page.eval(fetched, url, { integrity: await sri(real), crossOriginStorage: "" }));
  assert_equals((await shell.inspect()).entries.length, before, "nothing stored");
  await promise_rejects_js(t, TypeError, page.eval(fetched, url, { integrity: await sri(real) }), "SRI without COS too");
}, "an SRI failure fails the fetch and stores nothing");

promise_test(async () => {
  const body = "an entry the app stored, which a refused document must not learn about";
  const { url, integrity } = await resource("/lib/secret.js", body);
  const app = (await shell.open("https://refusal.example/")).frame;
  await app.eval(fetched, url, { integrity, crossOriginStorage: "" });
  // The same origin in a cross-origin iframe without `allow`: Permissions Policy refuses COS.
  const host = (await shell.open("https://embedder.example/")).frame;
  const refused = await host.appendIframe("https://refusal.example/frame");
  const stranger = (await shell.open("https://miss.example/")).frame;
  const refusedShape = await refused.eval(fetched, url, { integrity, crossOriginStorage: "" });
  const missShape = await stranger.eval(fetched, url, { integrity, crossOriginStorage: "" });
  assert_equals(JSON.stringify(refusedShape), JSON.stringify(missShape), "the same response as a true miss");
  assert_equals(bytesOf("https://refusal.example"), 2 * body.length, "the refused fetch went to the network");
}, "a refusal is indistinguishable from a miss: same response, and the network fetch went ahead");

promise_test(async () => {
  const body = "fetched by a dedicated worker";
  const { url, integrity } = await resource("/lib/worker.js", body);
  const page = (await shell.open("https://workers.example/")).frame;
  await page.eval(fetched, url, { integrity, crossOriginStorage: "" });
  const viaWorker = await page.eval(async (url, integrity) => {
    const code = `onmessage = async (e) => { const r = await fetch(e.data.url, { integrity: e.data.integrity, crossOriginStorage: "" }); postMessage(await r.text()); };`;
    const worker = new Worker(URL.createObjectURL(new Blob([code])));
    return await new Promise((resolve) => { worker.onmessage = (e) => resolve(e.data); worker.postMessage({ url, integrity }); });
  }, url, integrity);
  assert_equals(viaWorker, body);
  assert_equals(bytesOf("https://workers.example"), body.length, "the worker's fetch was a hit");

  const fromServiceWorker = await page.eval(async (url, integrity) => {
    const code = `addEventListener("message", async (event) => {
        const r = await fetch(event.data.url, { integrity: event.data.integrity, crossOriginStorage: "" });
        event.source.postMessage(await r.text());
      });`;
    const registration = await navigator.serviceWorker.register(URL.createObjectURL(new Blob([code])));
    const reply = new Promise((resolve) => navigator.serviceWorker.addEventListener("message", (e) => resolve(e.data)));
    registration.active.postMessage({ url, integrity });
    return await reply;
  }, url, integrity);
  assert_equals(fromServiceWorker, body);
  assert_equals(bytesOf("https://workers.example"), 2 * body.length, "a service worker fails closed: the network");
}, "dedicated workers fetch as their page; service workers fail closed");

promise_test(async () => {
  const cdn = shell.server("https://cdn.example");
  const body = "a resource behind a redirect";
  const finalUrl = cdn.add("/lib/final.js", body);
  const oldUrl = cdn.add("/lib/old.js", "", { status: 302, headers: { Location: "/lib/final.js" } });
  const integrity = await sri(body);
  const page = (await shell.open("https://redirects.example/")).frame;
  const miss = await page.eval(fetched, oldUrl, { integrity, crossOriginStorage: "" });
  assert_equals(JSON.stringify([miss.url, miss.redirected, miss.text]), JSON.stringify([finalUrl, true, body]));
  const hit = await page.eval(fetched, oldUrl, { integrity, crossOriginStorage: "" });
  assert_equals(JSON.stringify([hit.url, hit.redirected, hit.text]), JSON.stringify([oldUrl, false, body]), "the lookup precedes the network");
  assert_equals(bytesOf("https://redirects.example"), body.length);
  // A 404 with the integrity of a stored entry: the lookup precedes the network.
  const missing = cdn.url("/lib/not-there.js");
  const fromCos = await page.eval(fetched, missing, { integrity, crossOriginStorage: "" });
  assert_equals(JSON.stringify([fromCos.status, fromCos.text]), JSON.stringify([200, body]));
  assert_equals(bytesOf("https://redirects.example"), body.length, "no request for the 404 either");
}, "redirects: the integrity applies to the final response; a hit answers for the request URL, even a 404's");

promise_test(async () => {
  const body = "checked with sha384 only";
  const url = shell.server("https://cdn.example").add("/lib/sha384.js", body);
  const page = (await shell.open("https://sha384.example/")).frame;
  const before = (await shell.inspect()).entries.length;
  const sha384 = "sha384-muJjpcb/jh1TbpKw8OO7KkDdpgSE2ef0GqrlcEsg+oBVn++k/EVLBhcnKbj8N2aP";
  assert_equals((await page.eval(fetched, url, { integrity: sha384, crossOriginStorage: "" })).text, body);
  assert_equals((await page.eval(fetched, url, { integrity: `${await sri(body)} ${sha384}`, crossOriginStorage: "" })).text, body, "sha384 is the strongest");
  assert_equals((await page.eval(fetched, url, { integrity: "sha1-AAAA md5-BBBB", crossOriginStorage: "" })).text, body, "unknown algorithms: no check");
  await page.eval(fetched, url, { crossOriginStorage: "" });
  assert_equals((await shell.inspect()).entries.length, before, "nothing stored");
  assert_equals(bytesOf("https://sha384.example"), 4 * body.length, "every one went to the network");
}, "without a sha256 integrity COS is not involved");

promise_test(async (t) => {
  const site = shell.server("https://site.example");
  site.serveDirectory("/", "resources/fetch_site");
  const page = (await shell.open("https://site.example/app/index.html")).frame;
  await page.activate();
  const body = "same-origin model bytes served from disk";
  const integrity = await sri(body);
  const first = await page.eval(fetched, "../data/model.bin", { integrity, crossOriginStorage: ["https://b.example"] });
  assert_equals(JSON.stringify([first.type, first.url, first.text]), JSON.stringify(["basic", "https://site.example/data/model.bin", body]));
  const b = (await shell.open("https://b.example/")).frame;
  assert_true(await b.eval(visible, body), "the .headers file's ceiling admitted b.example");
  await promise_rejects_js(t, TypeError, page.eval(fetched, "/data/model.bin", { integrity, crossOriginStorage: ["not an origin"] }));
  await promise_rejects_js(t, TypeError, page.eval(fetched, "/data/model.bin", { integrity, crossOriginStorage: { contentType: "a\nb" } }));
}, "a same-origin relative URL with a .headers file; invalid scopes are TypeErrors");

promise_test(async () => {
  const body = "still there after the service restarted";
  const { url, integrity } = await resource("/lib/restart.js", body);
  const page = (await shell.open("https://restart.example/")).frame;
  await page.eval(fetched, url, { integrity, crossOriginStorage: "" });
  await shell.restartStorageService();
  assert_equals((await page.eval(fetched, url, { integrity, crossOriginStorage: "" })).text, body);
  assert_equals(bytesOf("https://restart.example"), body.length, "the loader was rebound: a hit");
}, "the loader is rebound when the storage service restarts");
