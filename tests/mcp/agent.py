#!/usr/bin/env python3
"""An agent that asks for access through `agent-guard mcp`, driven by the official MCP Python
SDK (PyPI `mcp`), for tests/tests/approvals.rs. It runs inside an agent-guard task and prints
one line per step, which the test checks:

    agent.py AGENT_GUARD SOCKET FILE DIR SECS REASON
"""
import json
import subprocess
import sys
import time

import anyio
from mcp import Client, StdioServerParameters


def read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except PermissionError:
        return "DENIED"


async def main(ag: str, socket: str, file: str, directory: str, secs: int, reason: str) -> int:
    params = StdioServerParameters(command=ag, args=["--socket", socket, "mcp"])
    async with Client(params, read_timeout_seconds=90) as client:
        print("protocol", client.protocol_version, flush=True)
        tools = sorted(t.name for t in (await client.list_tools()).tools)
        print("tools", ",".join(tools), flush=True)
        grant = await client.call_tool("get_grant", {})
        requestable = grant.structured_content["requestable"]
        print("requestable", "yes" if any(directory in r for r in requestable) else json.dumps(requestable), flush=True)
        print("before", read(file), flush=True)
        step = await client.call_tool("declare_intent", {"intent": "reconciling Q3 figures"})
        print("intent", "error" if step.is_error else "ok", flush=True)
        outside = await client.call_tool(
            "request_access", {"read": ["/etc/shadow"], "duration_secs": 5, "reason": "just because"}
        )
        print("outside", "refused" if outside.is_error else "NOT REFUSED", flush=True)
        asked = await client.call_tool(
            "request_access",
            {"read": [directory + "/**"], "duration_secs": secs, "reason": reason, "wait_secs": 60},
        )
        approval = asked.structured_content
        print("request", approval["id"], approval["state"], flush=True)
        # Approving its own request from inside the task: refused by the daemon.
        own = subprocess.run([ag, "--socket", socket, "approve", str(approval["id"])], capture_output=True, text=True)
        print("self-approval", "refused" if own.returncode != 0 else "ACCEPTED", flush=True)
        print("during", read(file), flush=True)
        time.sleep(secs + 2)
        print("after", read(file), flush=True)
        listed = await client.call_tool("list_requests", {})
        states = [r["state"] for r in listed.structured_content["requests"] if r["id"] == approval["id"]]
        print("listed", ",".join(states), flush=True)
    return 0


if __name__ == "__main__":
    ag, socket, file, directory, secs, reason = sys.argv[1:7]
    sys.exit(anyio.run(main, ag, socket, file, directory, int(secs), reason))
