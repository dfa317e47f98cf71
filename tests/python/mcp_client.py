"""An agent's side of micro's MCP server, with the official Python SDK (`mcp`).

    mcp_client.py http URL TOKEN
    mcp_client.py stdio PROGRAM ARG...

Connects (the SDK negotiates the newest protocol it shares with the server), then prints one
JSON object a line: the tools it lists; the results of calling `helloworld.Greeter.SayHello`
with {"name": "John"}, `tester.Tester.Echo` with a message and with a failing code; `listening`
once a `subscriptions/listen` stream for tool-list changes is acknowledged; and `changed`, with
the tools listed again, when the server says the list changed (within 60 s).
"""

import json
import sys

import anyio
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


def say(**fields):
    print(json.dumps(fields), flush=True)


def result(r):
    text = [c.text for c in r.content if getattr(c, "type", "") == "text"]
    return {"error": bool(r.is_error), "text": text, "structured": r.structured_content}


async def scenario(client):
    say(event="connected", protocol=client.protocol_version)
    tools = (await client.list_tools()).tools
    say(event="tools", tools={t.name: {"input": t.input_schema, "output": t.output_schema,
                                        "description": t.description} for t in tools})
    say(event="hello", **result(await client.call_tool("helloworld.Greeter.SayHello", {"name": "John"})))
    say(event="echo", **result(await client.call_tool("tester.Tester.Echo", {"message": "hi"})))
    say(event="fail", **result(await client.call_tool("tester.Tester.Echo", {"message": "no", "failCode": 404})))
    async with client.listen(tools_list_changed=True) as sub:
        say(event="listening", honored=sub.honored.model_dump(exclude_none=True, by_alias=True))
        with anyio.fail_after(60):
            async for _ in sub:
                names = sorted(t.name for t in (await client.list_tools()).tools)
                say(event="changed", tools=names)
                return


async def main():
    mode = sys.argv[1]
    if mode == "http":
        url, token = sys.argv[2], sys.argv[3]
        http = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
        async with http, Client(streamable_http_client(url, http_client=http)) as client:
            await scenario(client)
    else:
        params = StdioServerParameters(command=sys.argv[2], args=sys.argv[3:])
        async with Client(params) as client:
            await scenario(client)


anyio.run(main)
