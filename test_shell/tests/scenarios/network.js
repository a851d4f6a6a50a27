// `fetch` goes through the browser process, which attributes every request to the frame's own
// origin (the hub counts bytes per origin by it); a worker's requests count for its page.
promise_test(async () => {
  const file = await shell.hub.add("org/model/resolve/main/weights.bin", new Uint8Array(300000).fill(3));
  const page = (await shell.open("https://fetcher.example/")).frame;
  const child = await page.appendIframe("https://embedded-fetcher.example/");
  const fetched = await page.eval(async (url) => (await (await fetch(url)).arrayBuffer()).byteLength, file.url);
  assert_equals(fetched, 300000);
  assert_equals(shell.network.bytes("https://fetcher.example"), 300000, "the page's bytes");
  await child.eval(async (url) => (await fetch(url)).arrayBuffer(), file.url);
  assert_equals(shell.network.bytes("https://embedded-fetcher.example"), 300000, "the iframe's own origin");
  const viaWorker = await page.eval(async (url) => {
    const code = `onmessage = async (event) => postMessage((await (await fetch(event.data)).arrayBuffer()).byteLength);`;
    const worker = new Worker(URL.createObjectURL(new Blob([code])));
    return await new Promise((resolve) => { worker.onmessage = (e) => resolve(e.data); worker.postMessage(url); });
  }, file.url);
  assert_equals(viaWorker, 300000);
  assert_equals(shell.network.bytes("https://fetcher.example"), 600000, "a worker's bytes count for its page");
}, "fetch is made by the browser process for the frame's origin");

promise_test(async (t) => {
  const page = (await shell.open("https://offline.example/")).frame;
  await promise_rejects_js(t, TypeError, page.eval(async () => fetch("http://127.0.0.1:9/nothing-listens-here")));
}, "a request that cannot connect rejects with TypeError");
