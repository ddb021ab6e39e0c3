//! `capabilities:` of a grant: the Linux capabilities a task keeps where `agent-guard run`
//! confines it (the `landlock` level). Every capability a grant does not name is dropped from
//! all of the task's sets, its bounding set included, so that a root agent cannot kill, trace
//! or reprogram the guard (`CAP_KILL`, `CAP_SYS_PTRACE`, `CAP_BPF`, `CAP_SYS_ADMIN`, ...).

use std::{fmt, str::FromStr};

/// A capability's name as capabilities(7) writes it (`CAP_NET_BIND_SERVICE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CapabilityName(pub caps::Capability);

impl FromStr for CapabilityName {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.parse::<caps::Capability>()
            .map(CapabilityName)
            .map_err(|_| format!("{text:?} is not a Linux capability (write it as capabilities(7) does: CAP_CHOWN)"))
    }
}

impl fmt::Display for CapabilityName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl<'de> serde::Deserialize<'de> for CapabilityName {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let text = String::deserialize(de)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for CapabilityName {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        ser.collect_str(self)
    }
}

impl schemars::JsonSchema for CapabilityName {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Capability".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let names: std::collections::BTreeSet<String> = caps::all().into_iter().map(|c| c.to_string()).collect();
        schemars::json_schema!({ "type": "string", "enum": names })
    }
}

#[cfg(test)]
mod tests {
    use super::CapabilityName;

    #[test]
    fn names_parse_as_capabilities_7_writes_them() {
        let cap: CapabilityName = "CAP_NET_BIND_SERVICE".parse().unwrap();
        assert_eq!(cap.to_string(), "CAP_NET_BIND_SERVICE");
        assert!("cap_net_bind_service".parse::<CapabilityName>().is_err());
        assert!("CAP_EVERYTHING".parse::<CapabilityName>().is_err());
    }
}
