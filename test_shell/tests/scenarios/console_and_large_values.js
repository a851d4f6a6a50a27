// What a user of the shell sees: console lines of the harness, pages, frames and workers are
// printed with their realm's origin (tests/run.rs checks the output, and that --quiet hides
// them); `frame.eval` arguments and results larger than one IPC message arrive whole.

promise_test(async () => { console.log("visible"); const p = await shell.open("https://a.test/"); await p.frame.eval((s) => s.length, "x".repeat(1 << 20)); }, "a 1 MiB argument reaches the frame");

promise_test(async () => {
  const page = (await shell.open("https://a.test/")).frame;
  assert_equals(await page.eval((s) => s.length, "x".repeat(1 << 20)), 1 << 20);
}, "the frame sees all of a 1 MiB argument");

promise_test(async () => {
  const page = (await shell.open("https://large.test/")).frame;
  const { text, digest } = await page.eval(async (kib) => {
    // Each KiB starts with its number, so a lost, doubled or reordered piece changes the text;
    // multi-byte characters check that pieces may split a character's encoding.
    const block = "é😀abcdefghijklmnopqrstuvwxyz".repeat(40).slice(0, 1020);
    const parts = [];
    for (let i = 0; i < kib; i++) parts.push(i.toString(36).padStart(4, "0") + block);
    const text = parts.join("");
    const bytes = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
    return { text, digest: [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("") };
  }, 2048);
  assert_equals(text.length, 2048 * 1024);
  const mine = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
  assert_equals([...mine].map((b) => b.toString(16).padStart(2, "0")).join(""), digest);
}, "a 2 MiB result comes back intact");

promise_test(async () => {
  const page = (await shell.open("https://console.test/")).frame;
  await page.eval(() => {
    console.log("from the page");
    console.info("an info line");
    console.debug("a debug line");
    console.warn("a page warning");
    console.error("a page error");
  });
  const frame = await page.appendIframe("https://framed.test/");
  await frame.eval(() => console.log("from a cross-site frame"));
  await page.eval(() => new Promise((resolve) => {
    const worker = new Worker(URL.createObjectURL(new Blob(['console.log("from a worker"); postMessage("done");'])));
    worker.onmessage = () => resolve();
  }));
  console.log("after the pages");
}, "pages, frames and workers write to the console");
