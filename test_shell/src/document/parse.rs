//! HTML parsing for the shell's documents: html5ever (Servo's parser, the HTML standard's tree
//! construction) into a small arena of our own, handed to the page realm as JSON (`js/document.js`
//! builds its DOM from it). Runs in the renderer process: a document's bytes are the page's, not
//! the browser's, to interpret.

use std::borrow::Cow;
use std::cell::{Ref, RefCell};

use html5ever::tendril::{StrTendril, TendrilSink};
use html5ever::tree_builder::{ElementFlags, NodeOrText, QuirksMode, TreeSink};
use html5ever::{Attribute, QualName, local_name, ns, parse_document};
use serde_json::Value;

/// The most nodes a document's tree may have; the rest of a larger document is left out. A
/// page can only hurt its own renderer, but the JSON handed to the realm stays bounded all the
/// same (the browser bounds the markup itself).
pub(crate) const MAX_NODES: usize = 100_000;

/// An `<iframe>` of a parsed document, in document order: what the browser needs to create the
/// child frame.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IframeElement {
    /// The `src` attribute as written (the browser resolves it against the document's URL).
    pub src: Option<String>,
    /// The `allow` attribute (the child's Permissions Policy container).
    pub allow: Option<String>,
    /// The `name` attribute, else the `id` (how tests find an HTML-created child frame).
    pub name: Option<String>,
}

enum Kind {
    Document,
    /// A `<template>`'s contents: parsed, never part of the tree (inert, as in HTML).
    Fragment,
    Element {
        name: QualName,
        attributes: Vec<(String, String)>,
        template: Option<usize>,
    },
    Text(String),
    /// Comments, doctypes, processing instructions: kept out of the DOM.
    Other,
}

struct Node {
    kind: Kind,
    parent: Option<usize>,
    children: Vec<usize>,
}

/// A parsed document: nodes by index, the document at 0.
pub(crate) struct ParsedDocument {
    nodes: Vec<Node>,
}

/// Parses `html` as a whole document (an empty string gives `<html><head></head><body></body></html>`).
pub(crate) fn parse(html: &str) -> ParsedDocument {
    let sink = Sink { nodes: RefCell::new(vec![Node { kind: Kind::Document, parent: None, children: Vec::new() }]) };
    parse_document(sink, Default::default()).one(html)
}

impl ParsedDocument {
    /// The tree as JSON for `js/document.js`: an element is `[tag, [[name, value], ...], [children]]`,
    /// a text node a string; the document is its element children.
    pub(crate) fn to_json(&self) -> String {
        self.children_json(0).to_string()
    }

    fn children_json(&self, node: usize) -> Value {
        Value::Array(self.nodes[node].children.iter().filter_map(|&child| self.node_json(child)).collect())
    }

    fn node_json(&self, node: usize) -> Option<Value> {
        match &self.nodes[node].kind {
            Kind::Element { name, attributes, .. } => {
                let attributes =
                    attributes.iter().map(|(n, v)| Value::Array(vec![n.clone().into(), v.clone().into()])).collect();
                Some(Value::Array(vec![
                    name.local.to_string().into(),
                    Value::Array(attributes),
                    self.children_json(node),
                ]))
            }
            Kind::Text(text) => Some(Value::String(text.clone())),
            Kind::Document | Kind::Fragment | Kind::Other => None,
        }
    }

    /// Every `<iframe>` element of the tree (not of `<template>` contents), in document order.
    pub(crate) fn iframes(&self) -> Vec<IframeElement> {
        let mut found = Vec::new();
        let mut stack = vec![0];
        while let Some(node) = stack.pop() {
            if let Kind::Element { name, attributes, .. } = &self.nodes[node].kind
                && name.ns == ns!(html)
                && name.local == local_name!("iframe")
            {
                let attribute =
                    |wanted: &str| attributes.iter().find(|(n, _)| n == wanted).map(|(_, value)| value.clone());
                found.push(IframeElement {
                    src: attribute("src"),
                    allow: attribute("allow"),
                    name: attribute("name").or_else(|| attribute("id")),
                });
            }
            stack.extend(self.nodes[node].children.iter().rev());
        }
        found
    }
}

struct Sink {
    nodes: RefCell<Vec<Node>>,
}

impl Sink {
    fn push(&self, kind: Kind) -> usize {
        let mut nodes = self.nodes.borrow_mut();
        nodes.push(Node { kind, parent: None, children: Vec::new() });
        nodes.len() - 1
    }

    fn detach(&self, node: usize) {
        let mut nodes = self.nodes.borrow_mut();
        if let Some(parent) = nodes[node].parent.take() {
            nodes[parent].children.retain(|&c| c != node);
        }
    }

    /// Inserts `child` under `parent` at `position` (the end when `None`), joining adjacent text.
    fn insert(&self, parent: usize, position: Option<usize>, child: NodeOrText<usize>) {
        let at = position.unwrap_or_else(|| self.nodes.borrow()[parent].children.len());
        let node = match child {
            NodeOrText::AppendText(text) => {
                let mut nodes = self.nodes.borrow_mut();
                // Text right after text joins it, as the standard's "insert a character" does.
                if at > 0 {
                    let previous = nodes[parent].children[at - 1];
                    if let Kind::Text(existing) = &mut nodes[previous].kind {
                        existing.push_str(&text);
                        return;
                    }
                }
                if nodes.len() >= MAX_NODES {
                    return;
                }
                drop(nodes);
                self.push(Kind::Text(text.to_string()))
            }
            // Nodes made past the bound never join the tree (the tree builder still gets them).
            NodeOrText::AppendNode(node) if node >= MAX_NODES => return,
            NodeOrText::AppendNode(node) => {
                self.detach(node);
                node
            }
        };
        let mut nodes = self.nodes.borrow_mut();
        let at = at.min(nodes[parent].children.len());
        nodes[parent].children.insert(at, node);
        nodes[node].parent = Some(parent);
    }
}

impl TreeSink for Sink {
    type Handle = usize;
    type Output = ParsedDocument;
    type ElemName<'a> = Ref<'a, QualName>;

    fn finish(self) -> ParsedDocument {
        ParsedDocument { nodes: self.nodes.into_inner() }
    }

    fn parse_error(&self, _: Cow<'static, str>) {}

    fn get_document(&self) -> usize {
        0
    }

    fn elem_name<'a>(&'a self, target: &'a usize) -> Ref<'a, QualName> {
        Ref::map(self.nodes.borrow(), |nodes| match &nodes[*target].kind {
            Kind::Element { name, .. } => name,
            _ => panic!("the tree builder asked for the name of a node that is not an element"),
        })
    }

    fn create_element(&self, name: QualName, attributes: Vec<Attribute>, _: ElementFlags) -> usize {
        let template =
            (name.ns == ns!(html) && name.local == local_name!("template")).then(|| self.push(Kind::Fragment));
        let attributes = attributes.into_iter().map(|a| (a.name.local.to_string(), a.value.to_string())).collect();
        self.push(Kind::Element { name, attributes, template })
    }

    fn create_comment(&self, _: StrTendril) -> usize {
        self.push(Kind::Other)
    }

    fn create_pi(&self, _: StrTendril, _: StrTendril) -> usize {
        self.push(Kind::Other)
    }

    fn append(&self, parent: &usize, child: NodeOrText<usize>) {
        self.insert(*parent, None, child);
    }

    fn append_based_on_parent_node(&self, element: &usize, previous: &usize, child: NodeOrText<usize>) {
        if self.nodes.borrow()[*element].parent.is_some() {
            self.append_before_sibling(element, child);
        } else {
            self.append(previous, child);
        }
    }

    fn append_doctype_to_document(&self, _: StrTendril, _: StrTendril, _: StrTendril) {}

    fn get_template_contents(&self, target: &usize) -> usize {
        match &self.nodes.borrow()[*target].kind {
            Kind::Element { template: Some(contents), .. } => *contents,
            _ => panic!("the tree builder asked for the contents of a node that is not a template"),
        }
    }

    fn same_node(&self, x: &usize, y: &usize) -> bool {
        x == y
    }

    fn set_quirks_mode(&self, _: QuirksMode) {}

    fn append_before_sibling(&self, sibling: &usize, child: NodeOrText<usize>) {
        let parent = self.nodes.borrow()[*sibling].parent;
        let Some(parent) = parent else { return };
        let position = self.nodes.borrow()[parent].children.iter().position(|c| c == sibling);
        self.insert(parent, position, child);
    }

    fn add_attrs_if_missing(&self, target: &usize, added: Vec<Attribute>) {
        if let Kind::Element { attributes, .. } = &mut self.nodes.borrow_mut()[*target].kind {
            for attribute in added {
                let name = attribute.name.local.to_string();
                if !attributes.iter().any(|(n, _)| *n == name) {
                    attributes.push((name, attribute.value.to_string()));
                }
            }
        }
    }

    fn remove_from_parent(&self, target: &usize) {
        self.detach(*target);
    }

    fn reparent_children(&self, node: &usize, new_parent: &usize) {
        let children = std::mem::take(&mut self.nodes.borrow_mut()[*node].children);
        let mut nodes = self.nodes.borrow_mut();
        for &child in &children {
            nodes[child].parent = Some(*new_parent);
        }
        nodes[*new_parent].children.extend(children);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_parses_into_the_standard_tree() {
        let document = parse(
            "<!doctype html><title>T</title><p id=a class='x y'>one<b>two</b></p><!-- c --><script>1 < 2</script>",
        );
        assert_eq!(
            document.to_json(),
            r#"[["html",[],[["head",[],[["title",[],["T"]]]],["body",[],[["p",[["id","a"],["class","x y"]],["one",["b",[],["two"]]]],["script",[],["1 < 2"]]]]]]]"#
        );
    }

    #[test]
    fn an_empty_document_still_has_html_head_and_body() {
        assert_eq!(parse("").to_json(), r#"[["html",[],[["head",[],[]],["body",[],[]]]]]"#);
    }

    #[test]
    fn misnested_markup_is_repaired_as_browsers_do() {
        // The adoption agency algorithm and foster parenting move nodes around.
        let document = parse("<table><tr><td>cell</td></tr>stray</table><b>1<i>2</b>3</i>");
        assert_eq!(
            document.to_json(),
            r#"[["html",[],[["head",[],[]],["body",[],["stray",["table",[],[["tbody",[],[["tr",[],[["td",[],["cell"]]]]]]]],["b",[],["1",["i",[],["2"]]]],["i",[],["3"]]]]]]]"#
        );
    }

    #[test]
    fn iframes_are_listed_in_document_order_and_templates_stay_inert() {
        let document = parse(
            "<iframe src=a.html allow=cross-origin-storage name=first></iframe>\
             <template><iframe src=inert.html></iframe></template>\
             <div><iframe id=second src='https://b.example/'></iframe></div><iframe></iframe>",
        );
        let iframes = document.iframes();
        assert_eq!(
            iframes,
            vec![
                IframeElement {
                    src: Some("a.html".into()),
                    allow: Some("cross-origin-storage".into()),
                    name: Some("first".into())
                },
                IframeElement { src: Some("https://b.example/".into()), allow: None, name: Some("second".into()) },
                IframeElement { src: None, allow: None, name: None },
            ]
        );
        assert!(!document.to_json().contains("inert"), "template contents are not part of the tree");
    }

    #[test]
    fn a_huge_document_is_cut_at_the_node_bound() {
        let html = "<p>x</p>".repeat(MAX_NODES);
        let document = parse(&html);
        let json = document.to_json();
        let paragraphs = json.matches("[\"p\"").count();
        assert!(paragraphs > MAX_NODES / 4 && paragraphs < MAX_NODES / 2, "{paragraphs} paragraphs kept");
    }
}
