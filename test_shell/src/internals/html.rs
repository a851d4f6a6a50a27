//! HTML output with escaping built in: the page's only way to write markup. Text and attribute
//! values go through [`Html::text`] / [`Html::attr`], which escape them; literal markup can only
//! come from `&'static str` (the program's own string literals), never from a runtime value. An
//! origin, a provenance URL or a site name therefore cannot open a tag or leave an attribute,
//! whichever view shows it.

use std::fmt::Write;

/// An HTML document or fragment being written.
#[derive(Debug, Default)]
pub struct Html(String);

impl Html {
    /// An empty fragment.
    pub fn new() -> Self {
        Self::default()
    }

    /// Literal markup from the program itself.
    pub fn raw(&mut self, markup: &'static str) -> &mut Self {
        self.0.push_str(markup);
        self
    }

    /// Text content, escaped.
    pub fn text(&mut self, text: &str) -> &mut Self {
        escape_into(&mut self.0, text);
        self
    }

    /// A number as text (nothing to escape, but kept on the same path).
    pub fn number(&mut self, value: impl std::fmt::Display) -> &mut Self {
        let _ = write!(self.0, "{value}");
        self
    }

    /// ` name="value"`, the value escaped (the name is the program's own).
    pub fn attr(&mut self, name: &'static str, value: &str) -> &mut Self {
        self.0.push(' ');
        self.0.push_str(name);
        self.0.push_str("=\"");
        escape_into(&mut self.0, value);
        self.0.push('"');
        self
    }

    /// Appends another fragment (already safe: it was written through this type).
    pub fn append(&mut self, other: &Html) -> &mut Self {
        self.0.push_str(&other.0);
        self
    }

    /// The markup.
    pub fn into_string(self) -> String {
        self.0
    }
}

/// Escapes `&`, `<`, `>`, `"` and `'` (enough for text and for double- or single-quoted
/// attribute values).
pub fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// `text`, escaped.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    escape_into(&mut out, text);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_attributes_are_escaped() {
        let mut html = Html::new();
        html.raw("<p").attr("title", "\"><script>x</script>").raw(">").text("<b>&'").raw("</p>");
        assert_eq!(html.into_string(), "<p title=\"&quot;&gt;&lt;script&gt;x&lt;/script&gt;\">&lt;b&gt;&amp;&#39;</p>");
    }
}
