"""A small local server speaking the OpenAI chat-completions wire format, with scripted faults.

The user prompt chooses the behaviour: ``score:NN`` answers with logprobs centred on NN;
``[text]`` answers words, ``[refusal]`` answers REFUSAL, ``[nologprobs]`` omits logprobs,
``[malformed]`` sends a body that is not JSON, and ``[429-once]``, ``[500-once]``,
``[timeout-once]`` fail the first request for that prompt and succeed after.

``scripts`` maps a marker to the answers (status, body bytes) served, in turn, to the
prompts that hold it (the last one repeats), e.g. a real server's body from
``shared/fixtures/real_world/judge_responses``. The judge's setup probe ("reply with 85")
is answered with one token "85", or with "8", "5" when ``digits`` is set (a tokenizer that
spells numbers digit by digit); ``probe_delay`` holds that answer back. ``rater`` (prompt ->
``[(token, probability), ...]`` or None) answers the prompts it knows with those top logprobs.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from http.server import BaseHTTPRequestHandler

from tests.loopback import LoopbackServer


def _entry(token, probability):
    return {"token": token, "logprob": math.log(probability), "bytes": None}


def completion_body(top):
    return {
        "id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": "fake-judge",
        "choices": [{
            "index": 0, "finish_reason": "length",
            "message": {"role": "assistant", "content": top[0][0]},
            "logprobs": {"content": [{**_entry(*top[0]), "top_logprobs": [_entry(t, p) for t, p in top]}]},
        }],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def probe_body(digits: bool) -> dict:
    tokens = ["8", "5"] if digits else ["85"]
    body = completion_body([(tokens[0], 0.99), ("9", 0.01)])
    body["choices"][0]["message"]["content"] = "".join(tokens)
    body["choices"][0]["logprobs"]["content"] = [{**_entry(t, 0.99), "top_logprobs": [_entry(t, 0.99)]} for t in tokens]
    return body


class FakeJudgeServer(LoopbackServer):
    def __init__(self, latency: float = 0.0, *, digits: bool = False, scripts: dict | None = None, probe_delay: float = 0.0,
                 rater=None):
        from steering_assets.judge.openai_judge import PROBE_PROMPT

        self.latency = latency
        self.digits = digits
        self.scripts = scripts or {}
        self.probe_delay = probe_delay
        self.rater = rater
        self.offset = 0  # added to every "score:NN" centre: a judge whose scores drifted
        self.prompts: list[str] = []
        self.calls = 0
        self.probes = 0
        self.seen: dict[str, int] = {}
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real servers do
            disable_nagle_algorithm = True  # no 40 ms Nagle/delayed-ACK stalls between headers and body

            def log_message(self, *args):
                pass

            def _send(self, status, body: bytes, headers=None):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                prompt = request["messages"][-1]["content"]
                with server.lock:
                    if prompt == PROBE_PROMPT:
                        server.probes += 1
                    else:
                        server.calls += 1
                        server.prompts.append(prompt)
                    attempt = server.seen.get(prompt, 0)
                    server.seen[prompt] = attempt + 1
                if server.latency:
                    time.sleep(server.latency)
                for marker, answers in server.scripts.items():
                    if marker in prompt:
                        status, body = answers[min(attempt, len(answers) - 1)]
                        return self._send(status, body, {"retry-after-ms": "10"})
                top = server.rater(prompt) if server.rater is not None and prompt != PROBE_PROMPT else None
                if top is not None:
                    return self._send(200, json.dumps(completion_body(top)).encode())
                if prompt == PROBE_PROMPT:
                    time.sleep(server.probe_delay)
                    return self._send(200, json.dumps(probe_body(server.digits)).encode())
                if "[429-once]" in prompt and attempt == 0:
                    return self._send(429, b'{"error": {"message": "rate limited"}}', {"retry-after-ms": "10"})
                if "[500-once]" in prompt and attempt == 0:
                    return self._send(500, b'{"error": {"message": "boom"}}')
                if "[timeout-once]" in prompt and attempt == 0:
                    time.sleep(1.5)
                if "[malformed]" in prompt:
                    return self._send(200, b'{"choices": [ this is not json')
                if "[text]" in prompt:
                    return self._send(200, json.dumps(completion_body([("The", 0.5), ("I", 0.3), ("It", 0.15), ("7", 0.05)])).encode())
                if "[refusal]" in prompt:
                    return self._send(200, json.dumps(completion_body([("REFUSAL", 0.9), ("50", 0.05)])).encode())
                if "[nologprobs]" in prompt:
                    body = completion_body([("50", 1.0)])
                    body["choices"][0]["logprobs"] = None
                    return self._send(200, json.dumps(body).encode())
                match = re.search(r"score:(\d+)", prompt)
                centre = max(0, min(100, (int(match.group(1)) if match else 50) + server.offset))
                top = [(str(centre), 0.6), (str(min(100, centre + 10)), 0.3), ("Hello", 0.1)]
                return self._send(200, json.dumps(completion_body(top)).encode())

        self.serve(Handler)


if __name__ == "__main__":
    # Run as its own process (the benchmark does), printing the base URL once it listens.
    import argparse
    import sys

    parser = argparse.ArgumentParser()
    parser.add_argument("--latency", type=float, default=0.0)
    options = parser.parse_args()
    with FakeJudgeServer(latency=options.latency) as running:
        print(running.base_url, flush=True)
        sys.stdin.read()  # serve until the parent closes our stdin
