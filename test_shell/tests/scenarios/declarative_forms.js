// META: script=resources/cos_helpers.js
// META: service.public-hash-list=resources/declarative-phl.txt
// META: service.grease=off
// SPEC §12: the declarative forms — <script>/<link crossoriginstorage> and import attributes —
// go through the same lookup-then-store flow as fetch, keyed by integrity: a second site gets
// the file from COS without a network byte; an SRI failure fires error and stores nothing;
// every attribute spelling (none/empty = same-site, "*" = global, a list of origins).

// Served once, its hashes on the Public Hash List (a "*" entry reaches other sites only then).
const GLOBAL_SCRIPT = "globalThis.cdnScriptRuns = (globalThis.cdnScriptRuns || 0) + 1;\n";
const GLOBAL_MODULE = 'export const fromCdn = "a module stored for every site";\n';
const cdn = shell.server("https://cdn.declarative.example");

const sha256 = async (text) => new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
const hexOf = async (text) => [...(await sha256(text))].map((b) => b.toString(16).padStart(2, "0")).join("");
const integrityOf = async (text) => "sha256-" + btoa(String.fromCharCode(...(await sha256(text))));
const entryOf = async (text) => {
  const hex = await hexOf(text);
  return (await shell.inspect()).entries.find((entry) => entry.hash === hex);
};
// A page of `origin` whose document is `body` (HTML).
const page = async (origin, body) => {
  shell.server(origin).add("/index.html", `<!doctype html><script>var events = [];</script>${body}`);
  return (await shell.open(`${origin}/index.html`)).frame;
};
// Run in a frame: inserts an element (`tag` with `attributes`) and resolves with its event.
async function insert(tag, attributes) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, value);
  const outcome = new Promise((resolve) => {
    element.addEventListener("load", () => resolve("load"));
    element.addEventListener("error", () => resolve("error"));
  });
  document.head.appendChild(element);
  return outcome;
}
const scriptTag = (src, integrity, scope) =>
  `<script src="${src}" integrity="${integrity}" ${scope} onload="events.push('load')" onerror="events.push('error')"></script>`;

promise_test(async () => {
  const url = cdn.add("/global.js", GLOBAL_SCRIPT, { contentType: "text/javascript" });
  const integrity = await integrityOf(GLOBAL_SCRIPT);
  const writer = await page("https://global-writer.example", "");
  await writer.activate();
  assert_equals(await writer.eval(insert, "script", { src: url, integrity, crossoriginstorage: "*" }), "load");
  assert_equals(await writer.eval(() => globalThis.cdnScriptRuns), 1);
  assert_equals(shell.network.bytes("https://global-writer.example"), GLOBAL_SCRIPT.length, "the first site downloads it");
  assert_true((await entryOf(GLOBAL_SCRIPT)).global, "stored for every site");

  const reader = await page("https://global-reader.example", scriptTag(url, integrity, 'crossoriginstorage="*"'));
  assert_array_equals(await reader.eval(() => events), ["load"]);
  assert_equals(await reader.eval(() => globalThis.cdnScriptRuns), 1, "the script ran from COS");
  assert_equals(shell.network.bytes("https://global-reader.example"), 0, "the second site downloads nothing");
}, '<script crossoriginstorage="*">: stored after a user activation, a hit on another site with no network bytes');

promise_test(async () => {
  const text = `globalThis.sameSite = ${Math.random()};\n`;
  const url = cdn.add("/same-site.js", text, { contentType: "text/javascript" });
  const integrity = await integrityOf(text);
  const tag = scriptTag(url, integrity, "crossoriginstorage");
  const first = await page("https://one.declarative-site.example", tag);
  assert_array_equals(await first.eval(() => events), ["load"]);
  assert_equals(shell.network.bytes("https://one.declarative-site.example"), text.length);
  const entry = await entryOf(text);
  assert_false(entry.global);
  assert_array_equals(entry.storingOrigins, ["https://one.declarative-site.example"]);

  const sameSite = await page("https://two.declarative-site.example", tag);
  assert_array_equals(await sameSite.eval(() => events), ["load"]);
  assert_equals(shell.network.bytes("https://two.declarative-site.example"), 0, "same-site: a hit");

  const empty = await page("https://three.declarative-site.example", scriptTag(url, integrity, 'crossoriginstorage=""'));
  assert_array_equals(await empty.eval(() => events), ["load"]);
  assert_equals(shell.network.bytes("https://three.declarative-site.example"), 0, "an empty value is the same spelling");

  const otherSite = await page("https://declarative-elsewhere.example", tag);
  assert_array_equals(await otherSite.eval(() => events), ["load"]);
  assert_equals(shell.network.bytes("https://declarative-elsewhere.example"), text.length, "another site: a miss");
}, "crossoriginstorage with no value (or empty) is same-site");

promise_test(async () => {
  const text = `globalThis.listed = ${Math.random()};\n`;
  const url = cdn.add("/listed.js", text, {
    contentType: "text/javascript",
    headers: { "Cross-Origin-Storage-Allow-Origin": "https://list-reader.example" },
  });
  const integrity = await integrityOf(text);
  const writer = await page("https://list-writer.example", "");
  await writer.activate();
  const scope = "https://list-reader.example https://not-in-the-ceiling.example";
  assert_equals(await writer.eval(insert, "script", { src: url, integrity, crossoriginstorage: scope }), "load");
  assert_array_equals((await entryOf(text)).origins, ["https://list-reader.example"], "capped by the resource's own header");

  const reader = await page("https://list-reader.example", scriptTag(url, integrity, "crossoriginstorage"));
  assert_array_equals(await reader.eval(() => events), ["load"]);
  assert_equals(shell.network.bytes("https://list-reader.example"), 0, "a listed origin: a hit");
  const outside = await page("https://not-in-the-ceiling.example", scriptTag(url, integrity, "crossoriginstorage"));
  assert_equals(shell.network.bytes("https://not-in-the-ceiling.example"), text.length, "outside the ceiling: a miss");
}, "crossoriginstorage with a list of origins, capped by the resource's Cross-Origin-Storage-Allow-Origin");

promise_test(async () => {
  const text = `globalThis.tampered = true;\n`;
  const url = cdn.add("/tampered.js", text, { contentType: "text/javascript" });
  const claimed = "something else entirely";
  const tampered = await page("https://sri-failure.example", scriptTag(url, await integrityOf(claimed), 'crossoriginstorage="*"'));
  assert_array_equals(await tampered.eval(() => events), ["error"]);
  assert_equals(await tampered.eval(() => typeof globalThis.tampered), "undefined", "the script did not run");
  assert_equals(await entryOf(text), undefined, "nothing stored under the bytes' hash");
  assert_equals(await entryOf(claimed), undefined, "nor under the claimed one");
}, "an SRI failure fires error, runs nothing and stores nothing");

promise_test(async () => {
  const text = `globalThis.badList = 1;\n`;
  const url = cdn.add("/bad-list.js", text, { contentType: "text/javascript" });
  const integrity = await integrityOf(text);
  const bad = await page("https://bad-list.example", scriptTag(url, integrity, 'crossoriginstorage="https://fine.example not-an-origin"'));
  assert_array_equals(await bad.eval(() => events), ["load"], "the script still loads");
  assert_equals(await entryOf(text), undefined, "the attribute was ignored: COS not involved");
  const noIntegrity = await page("https://no-integrity.example", `<script src="${url}" crossoriginstorage onload="events.push('load')"></script>`);
  assert_array_equals(await noIntegrity.eval(() => events), ["load"]);
  assert_equals(await entryOf(text), undefined, "without integrity there is no hash to key by");
}, "a bad origin list, or no integrity: the attribute is ignored and the resource loads without COS");

promise_test(async () => {
  const text = `.from-cos { color: green } /* ${Math.random()} */\n`;
  const url = cdn.add("/style.css", text, { contentType: "text/css" });
  const integrity = await integrityOf(text);
  const links = ["stylesheet", "preload", "modulepreload"].map(
    (rel) => `<link rel="${rel}" as="style" href="${url}" integrity="${integrity}" crossoriginstorage onload="events.push('${rel}')">`,
  );
  const first = await page("https://a.declarative-links.example", links[0]);
  assert_array_equals(await first.eval(() => events), ["stylesheet"]);
  assert_equals(shell.network.bytes("https://a.declarative-links.example"), text.length);
  for (const [i, host] of ["b", "c"].entries()) {
    const next = await page(`https://${host}.declarative-links.example`, links[i + 1]);
    assert_array_equals(await next.eval(() => events), [["preload", "modulepreload"][i]]);
    assert_equals(shell.network.bytes(`https://${host}.declarative-links.example`), 0, `${["preload", "modulepreload"][i]}: a hit`);
  }
}, "<link rel=stylesheet|preload|modulepreload crossoriginstorage> load through COS");

promise_test(async () => {
  const url = cdn.add("/module.js", GLOBAL_MODULE, { contentType: "text/javascript" });
  const integrity = await integrityOf(GLOBAL_MODULE);
  const writer = await page("https://import-writer.example", "");
  await writer.activate();
  const imported = await writer.eval(
    async (url, integrity) => (await import(url, { with: { integrity, crossOriginStorage: "*" } })).fromCdn,
    url,
    integrity,
  );
  assert_equals(imported, "a module stored for every site");
  assert_true((await entryOf(GLOBAL_MODULE)).global);

  const reader = await page(
    "https://import-reader.example",
    `<script type="module">import { fromCdn } from "${url}" with { integrity: "${integrity}", crossOriginStorage: "*" };
      window.fromCdn = fromCdn;</script>`,
  );
  assert_equals(await reader.eval(() => window.fromCdn), "a module stored for every site");
  assert_equals(shell.network.bytes("https://import-reader.example"), 0, "the static import was a hit");
}, "import attributes: import() stores, a static import on another site hits with no network bytes");
