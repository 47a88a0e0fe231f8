"""cloudflared's own tunnel transport, edge side: HTTP/2 with roles reversed plus Cap'n Proto RPC
on a control stream (docs/cloudflared.md). Sans-I/O cores (``rpc``, ``core``) and a thin asyncio
layer (``tunnel``)."""
