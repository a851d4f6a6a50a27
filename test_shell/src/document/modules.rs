//! Module scripts and `import()` for page realms: the renderer's one rquickjs module loader.
//! A module is fetched over the realm's network pipe, like `fetch`, attributed to its frame by
//! the browser; its import attributes (`integrity`, `crossOriginStorage`) ride along, so an
//! `import … with {integrity, crossOriginStorage}` goes through the same COS lookup-then-store
//! path as `fetch(url, {integrity, crossOriginStorage})` (SPEC §12).
//!
//! The loader is synchronous (QuickJS links a module graph in one call), so a module fetch
//! blocks this renderer's event loop until its bytes are in. The browser does the network work
//! (and any COS lookup) on its own threads, so nothing waits on this loop meanwhile.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use cos_ipc::Endpoint;
use rquickjs::loader::{ImportAttributes, Loader, Resolver};
use rquickjs::module::Declared;
use rquickjs::{Ctx, Exception, Function, Module, Object};

use cos_common::{OriginsInput, OriginsOption};

use crate::fetch::{Outgoing, ask_browser};
use crate::protocol::{FetchResponse, FetchScope, RequestText};

/// The largest module source the loader accepts.
const MAX_MODULE_BYTES: usize = 64 << 20;

/// What every loader error message starts with: `js/document.js` tells a module script's load
/// failure (its element's `error` event) from an exception its code threw by it.
const LOAD_FAILED: &str = "Failed to load module script";

/// Where a realm's modules come from: its frame and network pipe, and the document URL that
/// specifiers of scripts without a URL of their own resolve against.
#[derive(Clone)]
struct RealmNet {
    frame: u64,
    network: Arc<Endpoint>,
    url: String,
}

/// The module state of one renderer: its realms (by QuickJS context) and inline module sources.
#[derive(Default)]
pub(crate) struct Modules {
    realms: RefCell<HashMap<usize, RealmNet>>,
    inline: RefCell<HashMap<String, String>>,
}

fn key(ctx: &Ctx<'_>) -> usize {
    ctx.as_raw().as_ptr() as usize
}

impl Modules {
    /// Lets the realm of `ctx` load modules for `frame` over `network`, relative to `url`.
    pub(crate) fn register_realm(&self, ctx: &Ctx<'_>, frame: u64, network: Arc<Endpoint>, url: &str) {
        self.realms.borrow_mut().insert(key(ctx), RealmNet { frame, network, url: url.to_owned() });
    }

    /// An inline `<script type=module>`'s source, loaded under `name` (the document URL with a
    /// fragment of its own, so its relative imports resolve against the document).
    pub(crate) fn register_inline(&self, name: String, source: String) {
        self.inline.borrow_mut().insert(name, source);
    }
}

/// The COS scope of a declarative spelling (an import attribute `crossOriginStorage`, or the
/// `crossoriginstorage` attribute): empty = same-site, `*` = global, else a list of origins
/// separated by ASCII whitespace, validated as `origins` is (SPEC §2). `None` for an invalid
/// list: then the attribute is ignored, with a warning.
pub(crate) fn parse_scope(value: &str) -> Option<OriginsOption> {
    match value.trim_matches(|c: char| c.is_ascii_whitespace()) {
        "" => Some(OriginsOption::Omitted),
        "*" => Some(OriginsOption::Global),
        list => {
            let input = OriginsInput::Sequence(list.split_ascii_whitespace().map(str::to_owned).collect());
            OriginsOption::parse(&input).ok()
        }
    }
}

/// What an import's attributes ask of the fetch.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ModuleFetch {
    /// The `integrity` attribute (SRI metadata).
    pub(crate) integrity: Option<String>,
    /// The `crossOriginStorage` attribute, when valid and keyed by a sha256 `integrity`.
    pub(crate) cross_origin_storage: Option<OriginsOption>,
}

impl ModuleFetch {
    /// Reads import attributes: `integrity` and `crossOriginStorage`; any other key (`type`
    /// included: the shell has JavaScript modules only) is a `TypeError`. Warnings (an ignored
    /// `crossOriginStorage`) go to `warn`.
    fn from_attributes(attributes: Option<&ImportAttributes<'_>>, warn: impl Fn(&str)) -> Result<ModuleFetch, String> {
        let mut fetch = ModuleFetch::default();
        let Some(attributes) = attributes else { return Ok(fetch) };
        let mut scope = None;
        for name in attributes.keys() {
            let name = name.map_err(|e| e.to_string())?;
            let value = attributes.get(&name).map_err(|e| e.to_string())?.unwrap_or_default();
            match name.as_str() {
                "integrity" => fetch.integrity = Some(value),
                "crossOriginStorage" => scope = Some(value),
                other => return Err(format!("the import attribute {other:?} is not supported")),
            }
        }
        if let Some(value) = scope {
            let keyed = fetch
                .integrity
                .as_deref()
                .is_some_and(|i| i.split_ascii_whitespace().any(|t| t.starts_with("sha256-")));
            match parse_scope(&value) {
                _ if !keyed => {
                    warn("crossOriginStorage needs an integrity: \"sha256-...\" import attribute; it is ignored")
                }
                None => warn(&format!(
                    "crossOriginStorage: {value:?} is not \"*\" or a list of http(s) origins; it is ignored"
                )),
                parsed => fetch.cross_origin_storage = parsed,
            }
        }
        Ok(fetch)
    }
}

/// Installs the loader in `js`'s runtime; returns the state the renderer registers realms in.
pub(crate) fn install(js: &crate::js::JsHost) -> Rc<Modules> {
    let modules = Rc::new(Modules::default());
    js.set_module_loader(ShellResolver(modules.clone()), ShellLoader(modules.clone()));
    modules
}

fn type_error(ctx: &Ctx<'_>, message: &str) -> rquickjs::Error {
    Exception::throw_type(ctx, &format!("{LOAD_FAILED}: {message}"))
}

/// URL resolution as HTML's "resolve a module specifier" without import maps: absolute URLs,
/// and `/`, `./`, `../` against the importing module (or, from a script without a URL of its
/// own, the document); a bare specifier is a `TypeError`.
struct ShellResolver(Rc<Modules>);

impl Resolver for ShellResolver {
    fn resolve<'js>(
        &mut self,
        ctx: &Ctx<'js>,
        base: &str,
        name: &str,
        _: Option<ImportAttributes<'js>>,
    ) -> rquickjs::Result<String> {
        if ["/", "./", "../"].iter().any(|prefix| name.starts_with(prefix)) {
            let document = self.0.realms.borrow().get(&key(ctx)).map(|realm| realm.url.clone());
            let resolved = url::Url::parse(base).ok().or_else(|| document.and_then(|url| url::Url::parse(&url).ok()));
            return resolved
                .and_then(|resolved| resolved.join(name).ok())
                .map(String::from)
                .ok_or_else(|| type_error(ctx, &format!("cannot resolve {name:?} against {base:?}")));
        }
        match url::Url::parse(name) {
            Ok(url) => Ok(url.into()),
            Err(_) => Err(type_error(ctx, &format!("{name:?} is a bare specifier (the shell has no import maps)"))),
        }
    }
}

struct ShellLoader(Rc<Modules>);

impl Loader for ShellLoader {
    fn load<'js>(
        &mut self,
        ctx: &Ctx<'js>,
        name: &str,
        attributes: Option<ImportAttributes<'js>>,
    ) -> rquickjs::Result<Module<'js, Declared>> {
        let inline = self.0.inline.borrow().get(name).cloned();
        if let Some(source) = inline {
            return Module::declare(ctx.clone(), name, source);
        }
        let realm = self.0.realms.borrow().get(&key(ctx)).cloned();
        let Some(realm) = realm else { return Err(type_error(ctx, "this realm cannot load modules")) };
        let request = ModuleFetch::from_attributes(attributes.as_ref(), |text| warn(ctx, text))
            .map_err(|message| type_error(ctx, &message))?;
        let (source, warnings) = fetch_module(&realm, name, &request).map_err(|message| type_error(ctx, &message))?;
        for text in warnings {
            warn(ctx, text);
        }
        Module::declare(ctx.clone(), name, source)
    }
}

fn warn(ctx: &Ctx<'_>, text: &str) {
    let console = ctx.globals().get::<_, Object>("console");
    if let Ok(warn) = console.and_then(|console| console.get::<_, Function>("warn")) {
        let _ = warn.call::<_, ()>((format!("import: {text}"),));
    }
}

/// Fetches a module's source over the realm's network pipe. The browser checks its integrity
/// (a mismatch fails the response) and, with a scope, looks it up in COS first and stores a
/// verified miss, exactly as for `fetch` (SPEC §11). Also answers what the browser's store of
/// the module warns the page's console about (fixed texts, SPEC §5).
fn fetch_module(realm: &RealmNet, url: &str, request: &ModuleFetch) -> Result<(Vec<u8>, Vec<&'static str>), String> {
    if !url.starts_with("https://") && !url.starts_with("http://") {
        return Err(format!("{url} is not an http(s) URL"));
    }
    let (status, body, warnings) = fetch_blocking(&realm.network, realm.frame, url, request)?;
    if !(200..300).contains(&status) {
        return Err(format!("{url} answered {status}"));
    }
    Ok((body, warnings))
}

/// One request over the network pipe, waited for: status, the whole body and the store's warnings.
type Fetched = (u16, Vec<u8>, Vec<&'static str>);

fn fetch_blocking(network: &Endpoint, frame: u64, url: &str, fetch: &ModuleFetch) -> Result<Fetched, String> {
    // What the browser would refuse as a bad message is refused here, as a TypeError.
    let integrity = match &fetch.integrity {
        Some(text) => Some(RequestText::new(text.clone()).ok_or("the integrity attribute is not header text")?),
        None => None,
    };
    let scope = fetch.cross_origin_storage.clone().map(|origins| FetchScope { origins, content_type: None });
    let mine = ask_browser(network, frame, &Outgoing { url: url.to_owned(), integrity, scope })?;
    let mut status = None;
    let mut body = Vec::new();
    let mut warnings = Vec::new();
    loop {
        let message = mine.recv().map_err(|e| format!("the browser went away: {e}"))?;
        match cos_ipc::decode::<FetchResponse>(&message.bytes).map_err(|_| "a malformed response".to_owned())? {
            FetchResponse::Head { status: code, .. } => status = Some(code),
            FetchResponse::Body(bytes) => {
                if body.len() + bytes.len() > MAX_MODULE_BYTES {
                    return Err(format!("the module is larger than {MAX_MODULE_BYTES} bytes"));
                }
                body.extend_from_slice(&bytes);
            }
            FetchResponse::StoreWarnings(stored) => warnings.extend(stored.iter().map(|w| w.message())),
            FetchResponse::End => break,
            FetchResponse::Failed(error) => return Err(error),
        }
    }
    status.map(|status| (status, body, warnings)).ok_or_else(|| "the response had no head".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_declarative_scope_spellings() {
        assert_eq!(parse_scope(""), Some(OriginsOption::Omitted));
        assert_eq!(parse_scope("  "), Some(OriginsOption::Omitted));
        assert_eq!(parse_scope("*"), Some(OriginsOption::Global));
        let origin = |url: &str| cos_common::Origin::from_url(url).unwrap();
        assert_eq!(
            parse_scope(" https://a.example  http://b.example:8080/path "),
            Some(OriginsOption::List(vec![origin("https://a.example"), origin("http://b.example:8080")]))
        );
        for bad in ["* https://a.example", "a.example", "data:text/plain,x", "https://a.example ftp://b.example"] {
            assert_eq!(parse_scope(bad), None, "{bad}");
        }
        let too_many: Vec<String> = (0..101).map(|i| format!("https://s{i}.example")).collect();
        assert_eq!(parse_scope(&too_many.join(" ")), None);
    }
}
