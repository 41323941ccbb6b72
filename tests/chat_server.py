"""A local OpenAI-compatible chat-completions server that answers with a real model (test-only).

It does what a vLLM server does for the generation backend: render the messages with the model's chat
template, generate (greedy at temperature 0, else seeded sampling) and answer in the chat-completions
wire format. ``fail_after`` answers HTTP 400 to every request after that many (a server that went
away mid-run); ``null_content`` answers 200 with ``content: null`` (a reasoning model's empty answer).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler

from tests.loopback import LoopbackServer


class ModelChatServer(LoopbackServer):
    def __init__(self, model, tokenizer, *, fail_after: int | None = None, null_content: bool = False):
        self.model, self.tokenizer = model, tokenizer
        self.fail_after, self.null_content = fail_after, null_content
        self.requests: list[dict] = []
        self.lock = threading.Lock()  # one generate at a time, like a single-GPU server's queue
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _send(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append(request)
                    count = len(server.requests)
                    if server.fail_after is not None and count > server.fail_after:
                        return self._send(400, {"error": {"message": "model is not loaded", "code": "bad_request"}})
                    text = None if server.null_content else server.reply(request)
                self._send(200, {"id": f"chatcmpl-{count}", "object": "chat.completion", "created": 0, "model": request["model"],
                                 "choices": [{"index": 0, "finish_reason": "length",
                                              "message": {"role": "assistant", "content": text}}],
                                 "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

        self.serve(Handler)

    def reply(self, request: dict) -> str:
        import torch

        text = self.tokenizer.apply_chat_template(request["messages"], tokenize=False, add_generation_prompt=True)
        ids = self.tokenizer(text, return_tensors="pt", add_special_tokens=False)
        sampling = float(request.get("temperature") or 0) > 0
        if sampling:
            torch.manual_seed(int(request.get("seed") or 0))
        with torch.no_grad():
            out = self.model.generate(**ids, max_new_tokens=int(request["max_tokens"]), do_sample=sampling,
                                      temperature=request.get("temperature") if sampling else None,
                                      top_p=request.get("top_p") if sampling else None, top_k=None)
        return self.tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
