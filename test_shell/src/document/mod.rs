//! HTML documents in the shell (SPEC §12). The browser side (`navigation`) loads a frame's
//! document through the network as `fetch` is made, keeps its response headers for the frame
//! table and creates the frames of its `<iframe>`s; the renderer side parses it (`parse`, with
//! html5ever), builds the page realm's DOM (`js/document.js`) and runs its scripts, module
//! scripts through the renderer's module loader (`modules`).

pub(crate) mod modules;
pub(crate) mod navigation;
mod parse;

use std::rc::Rc;
use std::sync::Arc;

use cos_ipc::Endpoint;
use rquickjs::{Ctx, Function, Object, Value};

pub use parse::IframeElement;

use crate::js::{JsError, JsHost, Realm};
use modules::Modules;

/// The page realm's DOM and document loader, run after `js/web.js`.
const DOCUMENT_JS: &str = include_str!("../../js/document.js");

/// Where a page realm's document comes from and goes to.
pub(crate) struct DocumentContext<'a> {
    /// The renderer's module state.
    pub(crate) modules: &'a Rc<Modules>,
    /// The frame.
    pub(crate) frame: u64,
    /// The renderer's network pipe.
    pub(crate) network: Arc<Endpoint>,
    /// The document's URL.
    pub(crate) url: &'a str,
}

/// Parses `html` into `realm`'s `document` (before any page script runs) and returns its
/// `<iframe>` elements for the browser to create. The scripts run later, in [`run`]'s order,
/// once the browser made the child frames.
pub(crate) fn install(
    js: &JsHost,
    realm: &Realm,
    context: &DocumentContext<'_>,
    html: &str,
) -> Result<Vec<IframeElement>, JsError> {
    let parsed = parse::parse(html);
    let modules = context.modules.clone();
    js.with_realm(realm, |ctx| -> rquickjs::Result<()> {
        modules.register_realm(&ctx, context.frame, context.network.clone(), context.url);
        let native = Object::new(ctx.clone())?;
        native.set("tree", parsed.to_json())?;
        native.set("url", context.url)?;
        native.set("evalClassic", Function::new(ctx.clone(), eval_classic)?)?;
        native.set(
            "registerInlineModule",
            Function::new(ctx.clone(), move |name: String, source: String| modules.register_inline(name, source))?,
        )?;
        ctx.globals().set("__documentNative", native)?;
        Ok(())
    })?;
    js.eval(realm, "document.js", DOCUMENT_JS)?;
    Ok(parsed.iframes())
}

/// The expression that runs a document's scripts to its `load` event, given the browser's
/// frame ids of its `<iframe>`s in document order (`None`: no child frame was made).
pub(crate) fn run_expression(children: &[Option<u64>]) -> String {
    let ids: Vec<String> = children.iter().map(|id| id.map_or("null".to_owned(), |id| id.to_string())).collect();
    format!("__runDocument([{}])", ids.join(","))
}

/// Runs a classic script in the realm's global scope under `name` (its URL, for stacks and
/// `import()` bases); answers `{error}` with what it threw, or nothing.
fn eval_classic<'js>(ctx: Ctx<'js>, source: String, name: String) -> rquickjs::Result<Value<'js>> {
    let mut options = rquickjs::context::EvalOptions::default();
    options.global = true;
    options.strict = false;
    options.filename = Some(name);
    match ctx.eval_with_options::<Value, _>(source, options) {
        Ok(_) => Ok(Value::new_undefined(ctx)),
        Err(rquickjs::Error::Exception) => {
            let threw = Object::new(ctx.clone())?;
            threw.set("error", ctx.catch())?;
            Ok(threw.into_value())
        }
        Err(error) => Err(error),
    }
}
