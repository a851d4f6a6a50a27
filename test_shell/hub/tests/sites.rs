//! The hub standing in for named sites on loopback (the test shell's origin servers): requests
//! routed to it by host (`open_via`, plain HTTP with the real `Host`), statuses, redirects,
//! directories from disk with `.headers` files, the echo resource, and `404` otherwise.

use cos_test_hub::{FileOptions, Hub, open_via};
use http::header::{HeaderName, HeaderValue};

fn get(hub: &Hub, url: &str) -> cos_test_hub::Response {
    let addr = format!("127.0.0.1:{}", hub.port()).parse().unwrap();
    open_via("GET", url, addr, &[("X-COS-Origin", "https://page.test")]).unwrap().into_response().unwrap()
}

#[test]
fn requests_routed_by_host_get_that_hosts_files() {
    let hub = Hub::start().unwrap();
    hub.add_for_host("a.test", "/x.txt", b"for a".to_vec());
    hub.add_for_host("b.test", "/x.txt", b"for b".to_vec());
    assert_eq!(get(&hub, "https://a.test/x.txt").body, b"for a");
    assert_eq!(get(&hub, "http://b.test:8080/x.txt").body, b"for b");
    assert_eq!(get(&hub, "https://c.test/x.txt").status, 404);
    let hosts: Vec<_> = hub.requests().into_iter().map(|r| r.host.unwrap()).collect();
    assert_eq!(hosts, ["a.test", "b.test", "c.test"]);
    assert_eq!(hub.bytes_served_to("https://page.test"), 10 + "404 Not Found\n".len() as u64);
}

#[test]
fn statuses_and_redirects() {
    let hub = Hub::start().unwrap();
    let options = FileOptions::default()
        .host("a.test")
        .status(404)
        .header(HeaderName::from_static("x-kind"), HeaderValue::from_static("missing"));
    hub.add_with("/gone", b"not here".to_vec(), &options);
    let gone = get(&hub, "https://a.test/gone");
    assert_eq!((gone.status, gone.body.as_slice(), gone.header("x-kind")), (404, &b"not here"[..], Some("missing")));
    // A status other than 200 ignores ranges.
    let addr = format!("127.0.0.1:{}", hub.port()).parse().unwrap();
    let ranged =
        open_via("GET", "https://a.test/gone", addr, &[("Range", "bytes=0-0")]).unwrap().into_response().unwrap();
    assert_eq!((ranged.status, ranged.body.len()), (404, 8));

    hub.add_redirect(Some("a.test"), "/old", "https://b.test/new", 302).unwrap();
    let moved = get(&hub, "https://a.test/old");
    assert_eq!((moved.status, moved.header("location")), (302, Some("https://b.test/new")));
    assert!(hub.add_redirect(None, "/bad", "a\nb", 301).is_err());
}

#[test]
fn directories_are_served_from_disk_with_headers_files() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("root");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("sub/data.json"), b"{\"a\":1}").unwrap();
    std::fs::write(dir.join("sub/data.json.headers"), "Cross-Origin-Storage-Allow-Origin: https://x.test\nX-Own: 1\n")
        .unwrap();
    std::fs::write(dir.join("sub/__dir__.headers"), "X-Dir: yes\n").unwrap();
    std::fs::write(dir.join("index.html"), b"<p>hi</p>").unwrap();
    std::fs::write(dir.parent().unwrap().join("secret.txt"), b"secret").unwrap();
    let hub = Hub::start().unwrap();
    hub.serve_directory(Some("wpt.test"), "/tests/", &dir);
    let data = get(&hub, "https://wpt.test/tests/sub/data.json");
    assert_eq!(data.body, b"{\"a\":1}");
    assert_eq!(data.header("content-type"), Some("application/json"));
    assert_eq!(data.header("cross-origin-storage-allow-origin"), Some("https://x.test"));
    assert_eq!((data.header("x-own"), data.header("x-dir")), (Some("1"), Some("yes")));
    assert_eq!(get(&hub, "https://wpt.test/tests/").body, b"<p>hi</p>");
    assert_eq!(get(&hub, "https://wpt.test/tests/sub/missing.js").status, 404);
    assert_eq!(get(&hub, "https://other.test/tests/sub/data.json").status, 404, "another host");
    for escape in ["https://wpt.test/tests/../secret.txt", "https://wpt.test/tests/%2e%2e/secret.txt"] {
        assert_eq!(get(&hub, escape).status, 404, "{escape}");
    }
    // An added file wins over the directory's.
    hub.add_for_host("wpt.test", "/tests/sub/data.json", b"added".to_vec());
    assert_eq!(get(&hub, "https://wpt.test/tests/sub/data.json").body, b"added");
}

#[test]
fn the_echo_resource_answers_what_the_query_asks() {
    let hub = Hub::start().unwrap();
    hub.add_echo(Some("a.test"), "/echo");
    let echoed = get(&hub, "https://a.test/echo?body=hello+world%21&content-type=text/x&status=201&header=X-A:%201");
    assert_eq!((echoed.status, echoed.body.as_slice()), (201, &b"hello world!"[..]));
    assert_eq!((echoed.header("content-type"), echoed.header("x-a")), (Some("text/x"), Some("1")));
    assert_eq!(get(&hub, "https://a.test/echo?status=700").status, 400);
    assert_eq!(get(&hub, "https://b.test/echo?body=x").status, 404, "only for its host");
}
