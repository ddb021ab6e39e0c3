//! Where a key is in config text, for errors found after parsing (validate.rs): serde's
//! parser forgets positions once it has built the value, so the text is read again with one
//! that keeps them (saphyr's marked nodes).

use saphyr::{LoadableYamlNode, MarkedYaml, YamlData};

use super::Seg;

/// The line and column (both from 1) of the key at `at`; of the nearest enclosing node found
/// when the key is not written out (a default), or of the start when the text does not parse.
pub fn position(text: &str, at: &[Seg]) -> (usize, usize) {
    let Ok(documents) = MarkedYaml::load_from_str(text) else { return (1, 1) };
    let Some(mut node) = documents.first() else { return (1, 1) };
    let mut found = node.span.start;
    for seg in at {
        let next = match (seg, &node.data) {
            (Seg::Key(key), YamlData::Mapping(mapping)) => {
                mapping.iter().find(|(k, _)| k.data.as_str() == Some(*key)).map(|(k, v)| (k.span.start, v))
            }
            (Seg::Index(index), YamlData::Sequence(items)) => items.get(*index).map(|v| (v.span.start, v)),
            _ => None,
        };
        let Some((start, value)) = next else { break };
        found = start;
        node = value;
    }
    (found.line(), found.col() + 1)
}

#[cfg(test)]
mod tests {
    use super::{Seg, position};

    #[test]
    fn keys_are_found_in_block_and_flow_style() {
        let text = "dns:\n  ttlFloor: 2h\noutputs:\n  - type: stdout\n  - {type: file, path: /x, maxSize: 1}\n";
        assert_eq!(position(text, &[Seg::Key("dns"), Seg::Key("ttlFloor")]), (2, 3));
        let at = [Seg::Key("outputs"), Seg::Index(1), Seg::Key("maxSize")];
        assert_eq!(position(text, &at), (5, 28));
        // A key left to its default: the mapping it would be in.
        let at = [Seg::Key("outputs"), Seg::Index(0), Seg::Key("queue")];
        assert_eq!(position(text, &at), (4, 5));
        assert_eq!(position("[unclosed", &[Seg::Key("dns")]), (1, 1));
    }
}
