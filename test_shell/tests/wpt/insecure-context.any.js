// SPEC §10 item 1: no attribute in insecure contexts (run at an http:// origin).
test(() => {
  assert_false("crossOriginStorage" in navigator);
  assert_equals(navigator.crossOriginStorage, undefined);
}, "navigator.crossOriginStorage is absent in an insecure context");
