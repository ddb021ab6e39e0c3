//! A file or exec rule: a path pattern, and what to do when it matches. Written as the bare
//! pattern (`"/srv/tickets/**"`, action `allow`) or as a map
//! (`{path: "/etc/ssh/**", action: ask}`: hold the action until a human approves or denies it).

use std::fmt;

use serde::{
    Deserialize, Deserializer, Serialize, Serializer,
    de::{self, MapAccess, Visitor, value::MapAccessDeserializer},
};

use super::PathPattern;

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RuleAction {
    #[default]
    Allow,
    /// Hold the action in the kernel and ask a human (needs BPF LSM; elsewhere it is reported
    /// as out of scope).
    Ask,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRule {
    pub pattern: PathPattern,
    pub action: RuleAction,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Detailed {
    path: PathPattern,
    #[serde(default)]
    action: RuleAction,
}

impl<'de> Deserialize<'de> for FileRule {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct RuleVisitor;
        impl<'de> Visitor<'de> for RuleVisitor {
            type Value = FileRule;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a path pattern, or {path: PATTERN, action: allow|ask}")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<FileRule, E> {
                let pattern = text.parse().map_err(E::custom)?;
                Ok(FileRule { pattern, action: RuleAction::Allow })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<FileRule, A::Error> {
                let d = Detailed::deserialize(MapAccessDeserializer::new(map))?;
                Ok(FileRule { pattern: d.path, action: d.action })
            }
        }
        de.deserialize_any(RuleVisitor)
    }
}

impl Serialize for FileRule {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        match self.action {
            RuleAction::Allow => self.pattern.serialize(ser),
            action => Detailed { path: self.pattern.clone(), action }.serialize(ser),
        }
    }
}

impl schemars::JsonSchema for FileRule {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "FileRule".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let pattern = generator.subschema_for::<PathPattern>();
        let action = generator.subschema_for::<RuleAction>();
        schemars::json_schema!({
            "anyOf": [
                pattern,
                {
                    "type": "object",
                    "properties": {"path": pattern, "action": action},
                    "required": ["path"],
                    "additionalProperties": false
                }
            ]
        })
    }
}
