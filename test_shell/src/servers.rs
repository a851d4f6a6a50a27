//! The shell's origin servers: every http(s) URL whose host is a name (not an IP literal, not
//! `localhost`) is served by one loopback hub the browser owns, as Chromium's
//! `--host-resolver-rules` would send those names to a local server. The request keeps its real
//! host in `Host` (plain HTTP on loopback, whatever the scheme), and the hub answers with that
//! host's files ([`cos_test_hub::Hub::add_for_host`], directories, echo); anything else is `404`.
//! Files are kept per host, so `http://a.test` and `https://a.test:8443` share them.

use std::net::SocketAddr;
use std::sync::Arc;

use cos_test_hub::{Hub, HubError, ResponseReader};
use parking_lot::Mutex;

/// The origin servers of one browser: a hub started on first use (most runs never need it).
#[derive(Default)]
pub struct OriginServers {
    hub: Mutex<Option<Arc<Hub>>>,
}

impl OriginServers {
    /// The hub serving every named host, started on first use.
    pub fn hub(&self) -> std::io::Result<Arc<Hub>> {
        let mut hub = self.hub.lock();
        if let Some(hub) = &*hub {
            return Ok(hub.clone());
        }
        let started = Arc::new(Hub::start()?);
        *hub = Some(started.clone());
        Ok(started)
    }

    /// The hub if it was started.
    pub fn started(&self) -> Option<Arc<Hub>> {
        self.hub.lock().clone()
    }

    /// Response body bytes the origin servers sent for requests attributed to `origin`.
    pub fn bytes_served_to(&self, origin: &str) -> u64 {
        self.started().map_or(0, |hub| hub.bytes_served_to(origin))
    }

    /// Where a request for `url` goes: the origin servers for a named host, `None` (the URL's
    /// own address) for an IP literal or `localhost`.
    fn route(&self, url: &str) -> Result<Option<SocketAddr>, HubError> {
        let parsed = url::Url::parse(url).map_err(|e| HubError::InvalidUrl(format!("{url:?}: {e}")))?;
        match parsed.host() {
            Some(url::Host::Domain(name)) if !name.eq_ignore_ascii_case("localhost") => {
                let hub = self.hub()?;
                Ok(Some(SocketAddr::from(([127, 0, 0, 1], hub.port()))))
            }
            _ => Ok(None),
        }
    }

    /// Sends `method url` with `headers`: to the origin servers for a named host, to the URL's
    /// own address otherwise (the loopback model hub of a scenario or the demo).
    pub fn open(&self, method: &str, url: &str, headers: &[(&str, &str)]) -> Result<ResponseReader, HubError> {
        match self.route(url)? {
            Some(addr) => cos_test_hub::open_via(method, url, addr, headers),
            None => cos_test_hub::open(method, url, headers),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_hosts_go_to_the_origin_servers() {
        let servers = OriginServers::default();
        assert_eq!(servers.route("http://127.0.0.1:9/x").unwrap(), None);
        assert_eq!(servers.route("http://localhost:9/x").unwrap(), None);
        assert_eq!(servers.route("http://[::1]:9/x").unwrap(), None);
        assert!(servers.started().is_none(), "not started for addresses");
        let routed = servers.route("https://a.example/x").unwrap().unwrap();
        assert_eq!(routed.port(), servers.started().unwrap().port());
        servers.hub().unwrap().add_for_host("a.example", "/x", b"bytes".to_vec());
        let body = servers.open("GET", "https://a.example/x", &[]).unwrap().into_response().unwrap().body;
        assert_eq!(body, b"bytes");
        assert_eq!(servers.open("GET", "https://b.example/x", &[]).unwrap().status(), 404);
    }
}
