// Run with `--message-limit 100000` (tests/run.rs): an argument or a result over the limit
// fails that call with an error saying so, and the page stays usable.

promise_test(async () => {
  const page = (await shell.open("https://limit.test/")).frame;
  const failure = async (call) => {
    try {
      await call();
    } catch (error) {
      return String(error.message);
    }
    return "no error";
  };
  assert_regexp_match(await failure(() => page.eval((s) => s.length, "x".repeat(200000))), /exceeds the limit of 100000 bytes/);
  assert_regexp_match(await failure(() => page.eval((n) => "y".repeat(n), 200000)), /exceeds the limit of 100000 bytes/);
  assert_equals(await page.eval(() => "still here"), "still here");
}, "a value over the message limit fails its call, not the page");
