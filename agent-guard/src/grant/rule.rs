//! A rule: a target (a path pattern, or a network destination) and what to do when it matches.
//! Written as the bare target (`"/srv/tickets/**"`, action `allow`) or as a map naming the
//! action (`{path: "/etc/ssh/**", action: ask}`, `{to: "10.0.0.0/8:443", action: flag}`).
//!
//! When several rules of a grant match one action, the most restrictive wins:
//! `deny` > `ask` > `flag` > `allow`. A narrow `deny` or `ask` can so carve an exception out of
//! a broad `allow`, and a broad `allow` can never hide one.

use std::{fmt, marker::PhantomData, str::FromStr};

use serde::{
    Deserialize, Deserializer, Serialize, Serializer,
    de::{self, MapAccess, Visitor},
    ser::SerializeMap,
};

/// Ordered from least to most restrictive (the order `max` relies on).
#[derive(
    Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum RuleAction {
    /// The action proceeds.
    #[default]
    Allow,
    /// The action proceeds and is reported (`decision: flagged`).
    Flag,
    /// Hold the action in the kernel and ask a human (files and exec, with BPF LSM; elsewhere
    /// it is reported as out of scope).
    Ask,
    /// Refuse the action even where another rule allows it.
    Deny,
}

impl RuleAction {
    /// As written in policy files.
    pub fn name(self) -> &'static str {
        match self {
            RuleAction::Allow => "allow",
            RuleAction::Flag => "flag",
            RuleAction::Ask => "ask",
            RuleAction::Deny => "deny",
        }
    }
}

/// What a rule applies to; `KEY` names it in the map form.
pub trait RuleTarget: FromStr<Err: fmt::Display> + fmt::Display + Clone + schemars::JsonSchema {
    const KEY: &'static str;
}

/// One rule of a grant list: a target and what happens when it matches.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Rule<T> {
    pub target: T,
    pub action: RuleAction,
}

impl<'de, T: RuleTarget> Deserialize<'de> for Rule<T> {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct RuleVisitor<T>(PhantomData<T>);
        impl<'de, T: RuleTarget> Visitor<'de> for RuleVisitor<T> {
            type Value = Rule<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a {}, or {{{}: ..., action: allow|flag|ask|deny}}", T::schema_name(), T::KEY)
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Rule<T>, E> {
                Ok(Rule { target: text.parse().map_err(E::custom)?, action: RuleAction::Allow })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Rule<T>, A::Error> {
                let (mut target, mut action) = (None, None);
                while let Some(key) = map.next_key::<String>()? {
                    if key == T::KEY && target.is_none() {
                        let text: String = map.next_value()?;
                        target = Some(text.parse().map_err(A::Error::custom)?);
                    } else if key == "action" && action.is_none() {
                        action = Some(map.next_value()?);
                    } else if key == T::KEY || key == "action" {
                        return Err(A::Error::duplicate_field(if key == "action" { "action" } else { T::KEY }));
                    } else {
                        return Err(A::Error::unknown_field(&key, &[T::KEY, "action"]));
                    }
                }
                let target = target.ok_or_else(|| A::Error::missing_field(T::KEY))?;
                Ok(Rule { target, action: action.unwrap_or_default() })
            }
        }
        use de::Error as _;
        de.deserialize_any(RuleVisitor(PhantomData))
    }
}

impl<T: RuleTarget> Serialize for Rule<T> {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        match self.action {
            RuleAction::Allow => ser.collect_str(&self.target),
            action => {
                let mut map = ser.serialize_map(Some(2))?;
                map.serialize_entry(T::KEY, &self.target.to_string())?;
                map.serialize_entry("action", &action)?;
                map.end()
            }
        }
    }
}

impl<T: RuleTarget> schemars::JsonSchema for Rule<T> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        format!("{}Rule", T::schema_name()).into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let target = generator.subschema_for::<T>();
        let action = generator.subschema_for::<RuleAction>();
        let mut properties = serde_json::Map::new();
        properties.insert(T::KEY.into(), target.clone().into());
        properties.insert("action".into(), action.into());
        schemars::json_schema!({
            "anyOf": [
                target,
                {
                    "type": "object",
                    "properties": properties,
                    "required": [T::KEY],
                    "additionalProperties": false
                }
            ]
        })
    }
}
