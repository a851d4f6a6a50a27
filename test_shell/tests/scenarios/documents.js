// META: script=resources/cos_helpers.js
// SPEC §12: HTML documents in the shell — served by the origin servers, parsed with html5ever,
// scripts in HTML's order, module scripts and import(), iframes from HTML with their `allow`
// attribute and their own response headers, the minimal DOM and its events.
const missing = "00".repeat(32);

promise_test(async () => {
  const site = shell.server("https://order.example");
  site.add("/a.js", "log.push('a.js ' + document.currentScript.id);");
  site.add("/deferred.js", "log.push('defer ' + document.readyState);");
  site.add("/async.js", "log.push('async');");
  site.add("/lib/dep.js", "export const value = 'dep';");
  site.add("/lib/main.js", "import { value } from './dep.js'; log.push('module ' + value);");
  site.add("/index.html", `<!doctype html><html><head>
    <script>var log = ['inline ' + document.readyState];
      document.addEventListener('DOMContentLoaded', () => log.push('DOMContentLoaded'));
      addEventListener('load', () => log.push('load ' + document.readyState));</script>
    <script async src="async.js"></script>
    <script src="a.js" id="first"></script>
    <script type="module" src="lib/main.js"></script>
    <script defer src="deferred.js"></script>
    <script type="module">import { value } from './lib/dep.js';
      log.push('inline module ' + value);
      log.push('import() ' + (await import('./lib/dep.js')).value);</script>
    <script>log.push('inline again, ' + document.querySelectorAll('script').length + ' scripts');</script>
    </head><body></body></html>`);
  const page = (await shell.open("https://order.example/index.html")).frame;
  assert_array_equals(await page.eval(() => log), [
    "inline loading",
    "a.js first",
    "inline again, 7 scripts",
    "module dep",
    "defer interactive",
    "inline module dep",
    "import() dep",
    "DOMContentLoaded",
    "async",
    "load complete",
  ]);
  assert_equals(await page.eval(async () => (await import("/lib/dep.js")).value), "dep", "import() from frame.eval resolves against the document");
  const refused = await page.eval(async () => {
    try {
      await import("/lib/dep.js?control", { with: { integrity: "sha256-\n" } });
      return "imported";
    } catch (error) {
      return error.name;
    }
  });
  assert_equals(refused, "TypeError", "an attribute the browser would refuse as a bad message is refused in the renderer");
  assert_equals(await page.eval(() => log.length), 10, "and the renderer lives on");
}, "classic, defer, module and async scripts run in HTML's order, then DOMContentLoaded and load");

promise_test(async () => {
  const site = shell.server("https://dom.example");
  site.add("/", `<!doctype html><title>DOM</title><body>
    <div id="main" class="box wide" data-kind="x"><p>Hello <b>world</b></p><p class="note">two</p></div>
    <span data-kind="y">three</span>`, { contentType: "text/html" });
  const page = (await shell.open("https://dom.example/")).frame;
  const seen = await page.eval(() => ({
    url: document.URL,
    location: location.href,
    root: document.documentElement.tagName,
    head: document.head.children.map((e) => e.tagName),
    title: document.querySelector("title").textContent,
    byId: document.getElementById("main").getAttribute("data-kind"),
    classes: document.querySelectorAll(".box.wide p").length,
    attribute: document.querySelector("[data-kind=y]").textContent,
    quoted: document.querySelector('div[data-kind="x"] .note').textContent,
    descendant: document.querySelector("#main b").textContent,
    hasAttribute: document.querySelector("span").hasAttribute("data-kind"),
    children: document.getElementById("main").children.length,
    text: document.body.textContent.replace(/\s+/g, " ").trim(),
    list: document.querySelectorAll("b, span").map((e) => e.tagName),
  }));
  assert_equals(seen.url, "https://dom.example/");
  assert_equals(seen.location, "https://dom.example/");
  assert_equals(seen.root, "HTML");
  assert_array_equals(seen.head, ["TITLE"]);
  assert_equals(seen.title, "DOM");
  assert_equals(seen.byId, "x");
  assert_equals(seen.classes, 2);
  assert_equals(seen.attribute, "three");
  assert_equals(seen.quoted, "two");
  assert_equals(seen.descendant, "world");
  assert_true(seen.hasAttribute);
  assert_equals(seen.children, 2);
  assert_equals(seen.text, "Hello worldtwo three");
  assert_array_equals(seen.list, ["B", "SPAN"]);
  const set = await page.eval(() => {
    const element = document.querySelector("span");
    element.setAttribute("data-kind", "z");
    element.textContent = "replaced";
    return [document.querySelector("[data-kind=z]").textContent, document.querySelectorAll("[data-kind=y]").length];
  });
  assert_array_equals(set, ["replaced", 0]);
  const unsupported = await page.eval(() => {
    try {
      document.querySelector("div > p");
      return "no error";
    } catch (error) {
      return error.name;
    }
  });
  assert_equals(unsupported, "SyntaxError", "combinators beyond descendant are not supported");
}, "the minimal DOM: querySelector with simple selectors, attributes, text, children");

promise_test(async () => {
  const site = shell.server("https://events.example");
  site.add("/ok.js", "log.push('ok.js ran');");
  site.add("/style.css", "p { color: red }", { contentType: "text/css" });
  site.add("/index.html", `<!doctype html><head>
    <script>var log = []; addEventListener('error', (e) => log.push('window error: ' + e.message));
      // Scripts and links load with the realm's own fetch, captured before any page script.
      fetch = () => Promise.reject(new TypeError('the page replaced fetch'));</script>
    <script src="ok.js" onload="log.push('ok.js load')"></script>
    <script src="missing.js" onerror="log.push('missing.js error')" onload="log.push('missing.js load')"></script>
    <link rel="stylesheet" href="style.css" onload="log.push('style load')">
    <link rel="stylesheet" href="gone.css" onerror="log.push('gone.css error')">
    <script>document.querySelector('script[src="ok.js"]').addEventListener('load', () => log.push('too late'));
      throw new TypeError('thrown by a script');</script>
    <script>log.push('the next script still runs');</script></head>`);
  const page = (await shell.open("https://events.example/index.html")).frame;
  const log = await page.eval(() => log);
  // Links load in parallel with the scripts: their events come in any order.
  const links = (line) => /style|css/.test(line);
  assert_array_equals(log.filter((line) => !links(line)), [
    "ok.js ran",
    "ok.js load",
    "missing.js error",
    "window error: thrown by a script",
    "the next script still runs",
  ]);
  assert_array_equals(log.filter(links).sort(), ["gone.css error", "style load"]);
  const dynamic = await page.eval(async () => {
    const script = document.createElement("script");
    script.src = "ok.js";
    const loaded = new Promise((resolve) => script.addEventListener("load", () => resolve("load")));
    document.head.appendChild(script);
    const outcome = await loaded;
    const inline = document.createElement("script");
    inline.textContent = "log.push('inline inserted');";
    document.body.appendChild(inline);
    return [outcome, log.slice(-2)];
  });
  assert_equals(dynamic[0], "load");
  assert_array_equals(dynamic[1], ["ok.js ran", "inline inserted"]);
}, "load and error events of scripts and links; a throwing script is reported and the next one runs; inserted scripts load");

promise_test(async (t) => {
  const top = shell.server("https://frames-top.example");
  const embedded = shell.server("https://frames-embedded.example");
  embedded.add("/frame.html", "<script>var loadedAs = location.href</script>");
  embedded.add("/no-cos.html", "<p>blocked by its own header", { headers: { "Permissions-Policy": "cross-origin-storage=()" } });
  top.add("/same.html", "<script>var inner = 1</script>");
  top.add("/index.html", `<!doctype html><body>
    <iframe name="allowed" src="https://frames-embedded.example/frame.html" allow="cross-origin-storage"></iframe>
    <iframe id="bare" src="https://frames-embedded.example/frame.html"></iframe>
    <iframe name="own-header" src="https://frames-embedded.example/no-cos.html" allow="cross-origin-storage"></iframe>
    <iframe name="same" src="same.html"></iframe>
    <iframe name="blank"></iframe>
    <script>var names = frames.length;</script>`);
  const page = (await shell.open("https://frames-top.example/index.html")).frame;
  const children = page.children();
  assert_array_equals(children.map((c) => c.name), ["allowed", "bare", "own-header", "same"], "no frame for an iframe without src");
  assert_equals(await page.child("allowed").eval(() => loadedAs), "https://frames-embedded.example/frame.html");
  await promise_rejects_dom(t, "NotFoundError", page.child("allowed").eval(lookup, missing), "allow= lets the cross-origin child call");
  await promise_rejects_dom(t, "NotAllowedError", page.child("bare").eval(lookup, missing), "no allow: blocked");
  await promise_rejects_dom(t, "NotAllowedError", page.child("own-header").eval(lookup, missing), "the child's own response header");
  await promise_rejects_dom(t, "NotFoundError", page.child("same").eval(lookup, missing), "same origin inherits");
  assert_equals(await page.eval(() => names), 1, "window.frames: the same-site child shares the renderer");
  assert_equals(await page.child("same").eval(() => parent === window), false);
  assert_true(await page.eval(() => document.querySelector("iframe[name=same]").contentWindow !== null));
  assert_equals(await page.eval(() => document.querySelector("#bare").contentWindow), null, "a cross-site child lives in another renderer");
}, "iframes from HTML: allow= and the child's own headers feed the Permissions Policy");

promise_test(async (t) => {
  const blocked = shell.server("https://doc-headers.example");
  blocked.add("/blocked.html", "<p>no COS", { headers: { "Permissions-Policy": "cross-origin-storage=()" } });
  const page = (await shell.open("https://doc-headers.example/blocked.html")).frame;
  await promise_rejects_dom(t, "NotAllowedError", page.eval(lookup, missing), "the document's own Permissions-Policy");
  const overridden = (await shell.open("https://doc-headers.example/blocked.html", { headers: { "Permissions-Policy": "cross-origin-storage=*" } })).frame;
  await promise_rejects_dom(t, "NotFoundError", overridden.eval(lookup, missing), "options.headers win over the served header by name");

  const owner = shell.server("https://ceiling-owner.example");
  owner.add("/", "<p>owner", { headers: { "Cross-Origin-Storage-Allow-Origin": "https://ceiling-reader.example" } });
  const writer = (await shell.open("https://ceiling-owner.example/")).frame;
  await writer.activate(); // a list is recorded only after a user activation (SPEC §5)
  const text = "listed through the served ceiling " + Math.random();
  const digest = await writer.eval(storeContent, text, { origins: ["https://ceiling-reader.example", "https://ceiling-other.example"] });
  const reader = (await shell.open("https://ceiling-reader.example/")).frame;
  const other = (await shell.open("https://ceiling-other.example/")).frame;
  assert_equals(await reader.eval(readText, digest), text, "inside the served ceiling");
  await promise_rejects_dom(t, "NotFoundError", other.eval(readText, digest), "outside it");
}, "a document's response headers feed the frame table: Permissions-Policy and the Allow-Origin ceiling");

promise_test(async () => {
  const site = shell.server("https://recursive.example");
  site.add("/", "<iframe src='/'></iframe><iframe src='/'></iframe><script>var loaded = true</script>", { contentType: "text/html" });
  const page = (await shell.open("https://recursive.example/")).frame;
  assert_true(await page.eval(() => loaded));
  let frames = 0;
  const walk = (frame) => { for (const child of frame.children()) { frames += 1; walk(child); } };
  walk(page);
  assert_equals(frames, 64, "at most 64 frames from one document tree");
}, "a document that embeds itself stops at the frame bound");

promise_test(async () => {
  const page = (await shell.open("https://nothing-served.example/")).frame;
  assert_array_equals(await page.eval(() => [document.readyState, document.body.children.length, location.href]), ["complete", 0, "https://nothing-served.example/"]);
  const site = shell.server("https://plain.example");
  site.add("/data.txt", "<script>var ran = true</script>", { contentType: "text/plain" });
  const plain = (await shell.open("https://plain.example/data.txt")).frame;
  assert_equals(await plain.eval(() => typeof ran), "undefined", "only text/html is parsed");
}, "nothing served, or not HTML: an empty document");
