// SPEC §10 items 31 and 32 (same-origin part): dedicated workers share the page's COS view,
// and a handle posted between them stays usable; service workers are refused.
promise_test(async () => {
  const page = (await shell.open("https://worker.example/")).frame;
  const result = await page.eval(async () => {
    const code = `
      onmessage = async (event) => {
        const bytes = new TextEncoder().encode(event.data.text);
        const digest = [...new Uint8Array(await crypto.subtle.digest("SHA-256", bytes))].map((b) => b.toString(16).padStart(2, "0")).join("");
        const handle = await navigator.crossOriginStorage.getFileHandle({ algorithm: "SHA-256", value: digest }, { create: true });
        const writable = await handle.createWritable();
        await writable.write(bytes);
        await writable.close();
        postMessage({ digest, handle });
      };`;
    const worker = new Worker(URL.createObjectURL(new Blob([code])));
    const reply = await new Promise((resolve) => { worker.onmessage = (e) => resolve(e.data); worker.postMessage({ text: "from a worker " + Math.random() }); });
    const mine = await navigator.crossOriginStorage.getFileHandle({ algorithm: "SHA-256", value: reply.digest });
    const transferred = await (await reply.handle.getFile()).text();
    return { name: mine.name, same: await mine.isSameEntry(reply.handle), transferred };
  });
  assert_true(result.same);
  assert_true(result.transferred.startsWith("from a worker"));
}, "a dedicated worker shares its page's entries and hands over a readable handle");

promise_test(async (t) => {
  const page = (await shell.open("https://worker.example/other")).frame;
  const outcome = await page.eval(async () => {
    try {
      new Worker("https://elsewhere.example/worker.js");
      return "constructed";
    } catch (error) {
      return error.name;
    }
  });
  assert_equals(outcome, "SecurityError");
}, "workers load blob: URLs of their own page only");

promise_test(async () => {
  const page = (await shell.open("https://service-worker.example/")).frame;
  const outcome = await page.eval(async () => {
    const code = `
      addEventListener("message", async (event) => {
        const names = [];
        for (const create of [false, true]) {
          try {
            await navigator.crossOriginStorage.getFileHandle({ algorithm: "SHA-256", value: event.data }, { create });
            names.push("resolved");
          } catch (error) {
            names.push(error.name);
          }
        }
        event.source.postMessage({ present: "crossOriginStorage" in navigator, names });
      });`;
    const registration = await navigator.serviceWorker.register(URL.createObjectURL(new Blob([code])));
    const reply = new Promise((resolve) => navigator.serviceWorker.addEventListener("message", (e) => resolve(e.data)));
    registration.active.postMessage("ab".repeat(32));
    return await reply;
  });
  assert_true(outcome.present, "the API is exposed");
  assert_array_equals(outcome.names, ["NotAllowedError", "NotAllowedError"]);
}, "in a service worker every call rejects NotAllowedError");
