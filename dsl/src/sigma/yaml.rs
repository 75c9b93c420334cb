//! A YAML document as a tree whose every node knows its line and column,
//! so that a Sigma rule's errors point into the file (`yaml-rust2`'s event
//! parser gives the marks; its own tree drops them).

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Where a node starts: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mark {
    pub line: usize,
    pub column: usize,
}

impl Mark {
    fn of(m: Marker) -> Mark {
        Mark {
            line: m.line(),
            column: m.col() + 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// A scalar, and whether it was quoted (a quoted `null` or `1` is text).
    Scalar {
        text: String,
        quoted: bool,
        at: Mark,
    },
    Seq(Vec<Node>, Mark),
    /// Keys in the order written.
    Map(Vec<(Node, Node)>, Mark),
}

/// A scalar's meaning under YAML's core schema (unquoted only).
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Str(&'a str),
}

impl Node {
    pub fn at(&self) -> Mark {
        match self {
            Node::Scalar { at, .. } | Node::Seq(_, at) | Node::Map(_, at) => *at,
        }
    }

    /// The text of a scalar.
    pub fn text(&self) -> Option<&str> {
        match self {
            Node::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    pub fn scalar(&self) -> Option<Scalar<'_>> {
        let Node::Scalar { text, quoted, .. } = self else {
            return None;
        };
        if *quoted {
            return Some(Scalar::Str(text));
        }
        Some(match text.as_str() {
            "" | "~" | "null" | "Null" | "NULL" => Scalar::Null,
            "true" | "True" | "TRUE" => Scalar::Bool(true),
            "false" | "False" | "FALSE" => Scalar::Bool(false),
            t => match t.parse::<i64>() {
                Ok(i) if !t.starts_with('+') => Scalar::Int(i),
                _ => Scalar::Str(t),
            },
        })
    }

    /// The value of `key` in a map.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Map(entries, _) => entries
                .iter()
                .find(|(k, _)| k.text() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// A scalar or a list of scalars, as strings.
    pub fn strings(&self) -> Vec<String> {
        match self {
            Node::Scalar { text, .. } => vec![text.clone()],
            Node::Seq(items, _) => items
                .iter()
                .filter_map(|i| i.text().map(str::to_string))
                .collect(),
            Node::Map(..) => Vec::new(),
        }
    }
}

#[derive(Debug)]
pub struct YamlError {
    pub at: Mark,
    pub message: String,
}

/// Parses one YAML document (the first, if several). Anchors and aliases
/// are refused: Sigma rules do not use them, and an alias bomb should not
/// cost memory.
pub fn parse(text: &str) -> Result<Node, YamlError> {
    parse_all(text)?.into_iter().next().ok_or(YamlError {
        at: Mark { line: 1, column: 1 },
        message: "the file holds no YAML document".into(),
    })
}

/// Every document of a YAML stream (`---` separated), at most 256.
pub fn parse_all(text: &str) -> Result<Vec<Node>, YamlError> {
    let mut b = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut b, true).map_err(|e| YamlError {
        at: Mark::of(*e.marker()),
        message: e.info().to_string(),
    })?;
    if let Some(e) = b.error {
        return Err(e);
    }
    if b.docs.is_empty() {
        return Err(YamlError {
            at: Mark { line: 1, column: 1 },
            message: "the file holds no YAML document".into(),
        });
    }
    Ok(b.docs)
}

/// Deepest nesting accepted.
const MAX_DEPTH: usize = 64;

#[derive(Default)]
struct Builder {
    /// Open collections: a sequence, or a map with its pending key.
    stack: Vec<(Node, Option<Node>)>,
    docs: Vec<Node>,
    error: Option<YamlError>,
}

impl Builder {
    fn push_value(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => {
                if self.docs.len() >= 256 {
                    self.error = Some(YamlError {
                        at: node.at(),
                        message: "more than 256 documents in one file".into(),
                    });
                } else {
                    self.docs.push(node);
                }
            }
            Some((Node::Seq(items, _), _)) => items.push(node),
            Some((Node::Map(entries, _), key)) => match key.take() {
                None => *key = Some(node),
                Some(k) => entries.push((k, node)),
            },
            Some((Node::Scalar { .. }, _)) => {}
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        let at = Mark::of(mark);
        match ev {
            Event::Scalar(text, style, anchor, _) => {
                if anchor > 0 {
                    self.error = Some(YamlError {
                        at,
                        message: "YAML anchors are not supported in rules".into(),
                    });
                    return;
                }
                let quoted = !matches!(style, TScalarStyle::Plain);
                self.push_value(Node::Scalar { text, quoted, at });
            }
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                if self.stack.len() >= MAX_DEPTH {
                    self.error = Some(YamlError {
                        at,
                        message: format!("nested deeper than {MAX_DEPTH} levels"),
                    });
                    return;
                }
                let node = if matches!(ev, Event::SequenceStart(..)) {
                    Node::Seq(Vec::new(), at)
                } else {
                    Node::Map(Vec::new(), at)
                };
                self.stack.push((node, None));
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((node, _)) = self.stack.pop() {
                    self.push_value(node);
                }
            }
            Event::Alias(_) => {
                self.error = Some(YamlError {
                    at,
                    message: "YAML aliases are not supported in rules".into(),
                });
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_know_where_they_are() {
        let doc = parse(
            "title: x\ndetection:\n    sel:\n        Image|endswith: '/curl'\n    condition: sel\n",
        )
        .unwrap();
        let det = doc.get("detection").unwrap();
        let sel = det.get("sel").unwrap();
        let Node::Map(entries, _) = sel else { panic!() };
        assert_eq!(entries[0].0.text(), Some("Image|endswith"));
        assert_eq!(entries[0].0.at(), Mark { line: 4, column: 9 });
        assert_eq!(entries[0].1.scalar(), Some(Scalar::Str("/curl")));
        assert_eq!(det.get("condition").unwrap().at().line, 5);
    }

    #[test]
    fn scalars_follow_the_core_schema_unless_quoted() {
        let doc = parse("a: null\nb: 'null'\nc: 12\nd: '12'\ne: true\nf: ~\ng:\n").unwrap();
        assert_eq!(doc.get("a").unwrap().scalar(), Some(Scalar::Null));
        assert_eq!(doc.get("b").unwrap().scalar(), Some(Scalar::Str("null")));
        assert_eq!(doc.get("c").unwrap().scalar(), Some(Scalar::Int(12)));
        assert_eq!(doc.get("d").unwrap().scalar(), Some(Scalar::Str("12")));
        assert_eq!(doc.get("e").unwrap().scalar(), Some(Scalar::Bool(true)));
        assert_eq!(doc.get("f").unwrap().scalar(), Some(Scalar::Null));
        assert_eq!(doc.get("g").unwrap().scalar(), Some(Scalar::Null));
    }

    #[test]
    fn bad_yaml_and_aliases_are_errors_with_a_place() {
        let e = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(e.at.line >= 1, "{e:?}");
        let e = parse("a: &x 1\nb: *x\n").unwrap_err();
        assert!(e.message.contains("not supported"), "{e:?}");
    }
}
