//! JSON-RPC 2.0 over stdio (one message per line) and the MCP lifecycle, as the specification
//! of 2026-07-28 has it (<https://modelcontextprotocol.io/specification/2026-07-28>):
//! - `server/discover` opens a 2026-07-28 session: every result then carries
//!   `resultType: complete`, and list results their cache hints (`ttlMs`, `cacheScope`);
//! - a client of 2025-11-25 or earlier opens with `initialize` (answered with its own version
//!   when known, else 2025-11-25) and `notifications/initialized`;
//! - `tools/list`, `tools/call`, `ping`; anything else is answered -32601 at once, and
//!   notifications (`notifications/cancelled` among them) are never answered.
//!
//! A tool that fails (the daemon refused, a bad argument) is a result with `isError: true` and
//! the reason as text, for the model to read; an unknown tool or malformed parameters are
//! JSON-RPC errors.

use std::io::{BufRead, Write};

use serde_json::{Value, json};

/// The newest protocol version, answered to `server/discover`.
pub const MODERN: &str = "2026-07-28";
/// The `initialize` versions, newest first.
pub const LEGACY: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;
const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;
/// A line longer than this is refused (the messages here are small).
const MAX_LINE: usize = 1 << 20;

/// What a tool call gives back.
pub enum ToolResult {
    /// The structured result (an object), and the text shown to the model.
    Done { structured: Value, text: String },
    /// The tool ran and failed: the reason, for the model.
    Failed(String),
}

/// The tools a server offers.
pub trait Tools {
    /// `tools/list` entries: `name`, `description`, `inputSchema` (an object schema), ...
    fn list(&self) -> Vec<Value>;
    /// Runs tool `name`; None when there is no such tool.
    fn call(&mut self, name: &str, arguments: &Value) -> Option<ToolResult>;
}

/// A JSON-RPC error.
struct RpcError {
    code: i64,
    message: String,
    data: Option<Value>,
}

fn error(code: i64, message: impl Into<String>) -> RpcError {
    RpcError { code, message: message.into(), data: None }
}

/// Serves `input` until it ends (the client closed the pipe).
pub fn serve(input: impl BufRead, mut output: impl Write, tools: &mut impl Tools) -> std::io::Result<()> {
    // Set by `server/discover`: results carry the 2026-07-28 fields.
    let mut modern = false;
    for line in input.split(b'\n') {
        let line = line?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let reply = if line.len() > MAX_LINE {
            Some(answer(&Value::Null, Err(error(INVALID_REQUEST, "message too long")), modern))
        } else {
            match serde_json::from_slice::<Value>(&line) {
                Err(err) => Some(answer(&Value::Null, Err(error(PARSE_ERROR, err.to_string())), modern)),
                Ok(message) => handle(&message, tools, &mut modern),
            }
        };
        if let Some(reply) = reply {
            let mut text = serde_json::to_string(&reply).expect("JSON values serialize");
            text.push('\n');
            output.write_all(text.as_bytes())?;
            output.flush()?;
        }
    }
    Ok(())
}

/// The reply to one message, if it needs one.
fn handle(message: &Value, tools: &mut impl Tools, modern: &mut bool) -> Option<Value> {
    let method = message.get("method").and_then(Value::as_str);
    let Some(id) = message.get("id").filter(|id| id.is_string() || id.is_number()) else {
        // A notification (initialized, cancelled, ...) or a response: never answered.
        return None;
    };
    let Some(method) = method else {
        return Some(answer(id, Err(error(INVALID_REQUEST, "a request names its method")), *modern));
    };
    let params = message.get("params").cloned().unwrap_or(Value::Null);
    let result = match method {
        "server/discover" => discover(&params).inspect(|_| *modern = true),
        "initialize" => Ok(initialize(&params)),
        "ping" => Ok(json!({})),
        "tools/list" => Ok(if *modern {
            json!({"tools": tools.list(), "ttlMs": 0, "cacheScope": "private"})
        } else {
            json!({"tools": tools.list()})
        }),
        "tools/call" => call(&params, tools),
        other => Err(RpcError { code: METHOD_NOT_FOUND, message: "Method not found".into(), data: Some(json!(other)) }),
    };
    Some(answer(id, result, *modern))
}

fn answer(id: &Value, result: Result<Value, RpcError>, modern: bool) -> Value {
    match result {
        Ok(mut value) => {
            if modern && let Some(object) = value.as_object_mut() {
                object.insert("resultType".into(), json!("complete"));
            }
            json!({"jsonrpc": "2.0", "id": id, "result": value})
        }
        Err(err) => {
            let mut error = json!({"code": err.code, "message": err.message});
            if let Some(data) = err.data {
                error["data"] = data;
            }
            json!({"jsonrpc": "2.0", "id": id, "error": error})
        }
    }
}

fn server_info() -> Value {
    json!({"name": "agent-guard", "version": env!("CARGO_PKG_VERSION")})
}

const INSTRUCTIONS: &str = "You run inside an agent-guard task: the kernel allows only what your grant names, \
    for a limited time. get_grant shows it and what you may request; request_access asks a human for more, \
    with a reason, and never grants anything by itself.";

/// `server/discover`: the 2026-07-28 handshake.
fn discover(params: &Value) -> Result<Value, RpcError> {
    let requested = params.pointer("/_meta/io.modelcontextprotocol~1protocolVersion").and_then(Value::as_str);
    if requested != Some(MODERN) {
        let mut supported = vec![MODERN];
        supported.extend(LEGACY);
        return Err(RpcError {
            code: UNSUPPORTED_PROTOCOL_VERSION,
            message: "Unsupported protocol version".into(),
            data: Some(json!({"supported": supported, "requested": requested})),
        });
    }
    Ok(json!({
        "supportedVersions": [MODERN],
        "capabilities": {"tools": {}},
        "ttlMs": 0,
        "cacheScope": "private",
        "instructions": INSTRUCTIONS,
        "_meta": {"io.modelcontextprotocol/serverInfo": server_info()},
    }))
}

/// `initialize`: the handshake of 2025-11-25 and earlier.
fn initialize(params: &Value) -> Value {
    let requested = params.get("protocolVersion").and_then(Value::as_str);
    let version = requested.filter(|v| LEGACY.contains(v)).unwrap_or(LEGACY[0]);
    json!({
        "protocolVersion": version,
        "capabilities": {"tools": {}},
        "serverInfo": server_info(),
        "instructions": INSTRUCTIONS,
    })
}

fn call(params: &Value, tools: &mut impl Tools) -> Result<Value, RpcError> {
    let name =
        params.get("name").and_then(Value::as_str).ok_or_else(|| error(INVALID_PARAMS, "tools/call needs a name"))?;
    let arguments = params.get("arguments").cloned().unwrap_or_else(|| json!({}));
    if !arguments.is_object() {
        return Err(error(INVALID_PARAMS, "arguments must be an object"));
    }
    match tools.call(name, &arguments) {
        None => Err(error(INVALID_PARAMS, format!("Unknown tool: {name}"))),
        Some(ToolResult::Done { structured, text }) => Ok(json!({
            "content": [{"type": "text", "text": text}],
            "structuredContent": structured,
            "isError": false,
        })),
        Some(ToolResult::Failed(reason)) => Ok(json!({
            "content": [{"type": "text", "text": reason}],
            "isError": true,
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo;

    impl Tools for Echo {
        fn list(&self) -> Vec<Value> {
            vec![json!({"name": "echo", "inputSchema": {"type": "object"}})]
        }

        fn call(&mut self, name: &str, arguments: &Value) -> Option<ToolResult> {
            (name == "echo").then(|| ToolResult::Done { structured: arguments.clone(), text: arguments.to_string() })
        }
    }

    fn run(lines: &[&str]) -> Vec<Value> {
        let mut out = Vec::new();
        serve(lines.join("\n").as_bytes(), &mut out, &mut Echo).unwrap();
        String::from_utf8(out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    #[test]
    fn a_2026_session_carries_result_type_and_cache_hints() {
        let meta = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}"#;
        let replies = run(&[
            &format!(r#"{{"jsonrpc":"2.0","id":1,"method":"server/discover","params":{{{meta}}}}}"#),
            &format!(r#"{{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{{{meta}}}}}"#),
            r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":2}}"#,
            &format!(
                r#"{{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{{"name":"echo","arguments":{{"a":1}},{meta}}}}}"#
            ),
            r#"{"jsonrpc":"2.0","id":4,"method":"resources/list"}"#,
        ]);
        assert_eq!(replies.len(), 4, "the notification is not answered: {replies:?}");
        assert_eq!(replies[0]["result"]["supportedVersions"][0], MODERN);
        assert_eq!(replies[0]["result"]["resultType"], "complete");
        assert_eq!(replies[1]["result"]["ttlMs"], 0);
        assert_eq!(replies[1]["result"]["resultType"], "complete");
        assert_eq!(replies[2]["result"]["structuredContent"]["a"], 1);
        assert_eq!(replies[3]["error"]["code"], METHOD_NOT_FOUND);
    }

    #[test]
    fn an_older_client_gets_its_own_version_or_the_newest_legacy_one() {
        let replies = run(&[
            r#"{"jsonrpc":"2.0","id":1,"method":"server/discover","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2099-01-01"}}}"#,
            r#"{"jsonrpc":"2.0","id":"a","method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{}}}"#,
            r#"{"jsonrpc":"2.0","id":2,"method":"initialize","params":{"protocolVersion":"1999-01-01"}}"#,
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"nope"}}"#,
            "not json",
        ]);
        assert_eq!(replies[0]["error"]["code"], UNSUPPORTED_PROTOCOL_VERSION);
        assert_eq!(replies[1]["id"], "a");
        assert_eq!(replies[1]["result"]["protocolVersion"], "2025-06-18");
        assert!(replies[1]["result"].get("resultType").is_none());
        assert_eq!(replies[2]["result"]["protocolVersion"], "2025-11-25");
        assert_eq!(replies[3]["error"]["code"], INVALID_PARAMS);
        assert_eq!(replies[4]["error"]["code"], PARSE_ERROR);
    }
}
