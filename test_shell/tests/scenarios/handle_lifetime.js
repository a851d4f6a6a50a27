// META: script=resources/cos_helpers.js
// A page's open handles are the ones it still holds: a handle object script can no longer reach
// gives its handle back, so a page looking entries up again and again never reaches the
// renderer's 16,384 open handles (SPEC §7), while a handle it keeps stays usable throughout, and
// a handle posted to a worker and dropped by its sender arrives.

async function lookUpAgainAndAgain(times) {
  const bytes = new TextEncoder().encode("looked up again and again");
  const hex = (buffer) => [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, "0")).join("");
  const value = hex(await crypto.subtle.digest("SHA-256", bytes));
  const dict = { algorithm: "SHA-256", value };
  const kept = await navigator.crossOriginStorage.getFileHandle(dict, { create: true });
  const writable = await kept.createWritable();
  await writable.write(bytes);
  await writable.close();
  // More lookups than the renderer may hold handles at once, each handle dropped at once.
  for (let i = 0; i < times; i++) {
    await navigator.crossOriginStorage.getFileHandle(dict);
  }
  const text = await (await kept.getFile()).text();
  // A temporary handle posted to a worker: the sender's object is gone before the worker reads.
  const source = "onmessage = async (event) => postMessage(await (await event.data.getFile()).text());";
  const worker = new Worker(URL.createObjectURL(new Blob([source], { type: "text/javascript" })));
  const echoed = new Promise((resolve) => { worker.onmessage = (event) => resolve(event.data); });
  worker.postMessage(await navigator.crossOriginStorage.getFileHandle(dict));
  return [text, await echoed];
}

promise_test(async () => {
  const page = (await shell.open("https://lookups.example/")).frame;
  const [kept, posted] = await page.eval(lookUpAgainAndAgain, 17000);
  assert_equals(kept, "looked up again and again", "the kept handle still reads");
  assert_equals(posted, "looked up again and again", "a dropped handle posted to a worker arrives");
}, "handles a page dropped are given back, so repeated lookups never run out of handles");
