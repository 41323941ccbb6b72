"""Token text in every spelling servers send: markers in ``token``, in ``bytes``, or in both.

Some OpenAI-compatible servers fill ``bytes`` with the UTF-8 of the token as the vocabulary
spells it (``Ġ85``, ``▁85``, ``<0x38>``), not of its text. One recorded answer per judge kind is
served in each spelling, through the real client: the setup probe must accept the server and the
scores must equal the plain answer's to 1e-9.

The spellings are made here independently of the code under test: GPT-2's ``bytes_to_unicode``
as openai/gpt-2's encoder.py writes it, SentencePiece's ``▁`` for a space and ``<0xNN>`` for a
byte with no piece of its own.
"""

import json
import math

import pytest

from steering_assets.judge.judgments import JudgeConfigurationError, JudgmentCache
from steering_assets.judge.logprobs import (
    BYTE_FALLBACK,
    BYTE_LEVEL,
    SENTENCEPIECE,
    TEXT,
    read_answer,
    read_token,
    undo_markers,
)
from steering_assets.judge.openai_judge import PROBE_PROMPT, OpenAIJudge
from tests.vetting.fake_openai import FakeJudgeServer


def bytes_to_unicode():
    """GPT-2's byte-level alphabet (openai/gpt-2, src/encoder.py)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(2 ** 8):
        if b not in bs:
            bs.append(b)
            cs.append(2 ** 8 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


GPT2 = bytes_to_unicode()


def gpt2(text):
    return "".join(GPT2[b] for b in text.encode())


def sentencepiece(text):
    """A single byte that is not a letter as byte fallback (``<0x0A>``, ``<0x38>``), else ``▁`` for spaces."""
    if len(text.encode()) == 1 and not text.isalpha():
        return f"<0x{ord(text):02X}>"
    return text.replace(" ", "▁")


def utf8(text):
    return list(text.encode())


# Each spelling: plain text -> the (token, bytes) fields a server in that spelling sends.
SPELLINGS = {
    "plain text": lambda t: (t, utf8(t)),
    "plain text, no bytes": lambda t: (t, None),
    "GPT-2 bytes as marker": lambda t: (t, utf8(gpt2(t))),
    "GPT-2 markers in token and bytes": lambda t: (gpt2(t), utf8(gpt2(t))),
    "GPT-2 markers in token, no bytes": lambda t: (gpt2(t), None),
    "SentencePiece markers in token": lambda t: (t.replace(" ", "▁"), utf8(t)),
    "SentencePiece markers in bytes": lambda t: (t, utf8(t.replace(" ", "▁"))),
    "SentencePiece byte fallback in token": lambda t: (sentencepiece(t), utf8(t)),
    "SentencePiece byte fallback in bytes": lambda t: (t, utf8(sentencepiece(t))),
    "SentencePiece byte fallback in both": lambda t: (sentencepiece(t), utf8(sentencepiece(t))),
}
# What the judge's setup metadata says was undone, per spelling (None: nothing). The byte fallback
# spellings also spell the probe's " 85" or " 8" with "▁"; only the digit judge's "5" is a byte token.
UNDONE = {
    "plain text": None, "plain text, no bytes": None,
    "GPT-2 bytes as marker": f"{BYTE_LEVEL} in `bytes`", "GPT-2 markers in token and bytes": f"{BYTE_LEVEL} in `bytes`",
    "GPT-2 markers in token, no bytes": f"{BYTE_LEVEL} in `token`",
    "SentencePiece markers in token": f"{SENTENCEPIECE} in `token`", "SentencePiece markers in bytes": f"{SENTENCEPIECE} in `bytes`",
    "SentencePiece byte fallback in token": f"{SENTENCEPIECE} in `token`",
    "SentencePiece byte fallback in bytes": f"{SENTENCEPIECE} in `bytes`",
    "SentencePiece byte fallback in both": f"{SENTENCEPIECE} in `bytes`",
}

# Recorded plain answers. A judge with one token per number (GPT-2/Llama-3 style), and one that
# spells numbers digit by digit (Qwen, Gemma, Llama-2), asked for a 0-9 rating after its probe.
# Candidates that are not numbers ("\n", " Hello", "<") are kept: they weigh nothing but must read.
RECORDED = {
    "whole": {
        "probe": [" 85"],
        "scale_top": 100,
        "top": [(" 80", 0.5), ("90", 0.2), (" 75", 0.1), ("8", 0.05), ("\n", 0.1), (" Hello", 0.05)],
    },
    "digits": {
        "probe": [" 8", "5"],
        "scale_top": 9,
        "top": [("8", 0.45), (" 9", 0.2), ("7", 0.15), (" 6", 0.05), ("1", 0.04), ("\n", 0.06), ("<", 0.05)],
    },
}


def weighted(top, scale_top):
    numbers = [(int(t), p) for t, p in top if t.strip().isdecimal() and int(t) <= scale_top]
    return sum(n * p for n, p in numbers) / sum(p for _, p in numbers) * 100 / scale_top


def entry(spell, text, probability):
    token, raw = spell(text)
    return {"token": token, "logprob": math.log(probability), "bytes": raw}


def spelled(spelling, positions):
    """A chat-completions body in ``spelling``: one ``(chosen text, [(text, probability), ...])`` per position."""
    spell = SPELLINGS[spelling]
    content = [{**entry(spell, chosen, top[0][1]), "top_logprobs": [entry(spell, t, p) for t, p in top]}
               for chosen, top in positions]
    return json.dumps({"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "judge",
                       "choices": [{"index": 0, "finish_reason": "length", "logprobs": {"content": content},
                                    "message": {"role": "assistant", "content": "".join(c for c, _ in positions)}}]}).encode()


def recorded_server(spelling, kind):
    answers = RECORDED[kind]
    probe = spelled(spelling, [(token, [(token, 0.99), ("9", 0.01)]) for token in answers["probe"]])
    score = spelled(spelling, [(answers["top"][0][0], answers["top"])])
    return FakeJudgeServer(scripts={PROBE_PROMPT: [(200, probe)], "score me": [(200, score)]})


def judge(server, tmp_path):
    return OpenAIJudge("judge", api_key="sk-test", base_url=server.base_url, timeout=2.0, max_retries=1,
                       cache=JudgmentCache(tmp_path / "judgments.jsonl"))


@pytest.mark.parametrize("kind", list(RECORDED))
@pytest.mark.parametrize("spelling", list(SPELLINGS))
def test_every_spelling_is_probed_and_scored_as_the_plain_answer(tmp_path, spelling, kind):
    with recorded_server(spelling, kind) as server:
        scorer = judge(server, tmp_path)
        [result] = scorer.score(["score me"])
    answers = RECORDED[kind]
    assert scorer.probe.kind == kind and scorer.probe.tokens == answers["probe"]
    assert result.error is None and result.score == pytest.approx(weighted(answers["top"], answers["scale_top"]),
                                                                  abs=1e-9, rel=0)
    undone = UNDONE[spelling]
    assert (undone in scorer.probe.text_source) if undone else ("undone" not in scorer.probe.text_source)
    if kind == "digits" and "byte fallback" in spelling:
        assert BYTE_FALLBACK in scorer.probe.text_source
    # The account is kept with the cached probe: a second judge reads it back without asking.
    again = judge(server, tmp_path)
    assert again.scale_top() == answers["scale_top"] and again.probe.text_source == scorer.probe.text_source
    assert again.probe_calls == 0


@pytest.mark.parametrize("spelling", list(SPELLINGS))
def test_every_spelling_reads_the_same_text(spelling):
    for kind in RECORDED:
        top = RECORDED[kind]["top"]
        answer = read_answer(json.loads(spelled(spelling, [(top[0][0], top)])))
        assert [(c.text, c.logprob) for c in answer.first.candidates] == [(t, math.log(p)) for t, p in top]


@pytest.mark.parametrize("text", ["é", "ü", "８", "８５", "Ā", "Łódź", "ĠÃ", "Ġæ", "naïve", "٨٥", "½"])
def test_real_non_ascii_text_sent_correctly_is_left_alone(text):
    # A full-width digit, an accented letter or a Latin Extended-A letter (U+0100 would be byte 0 in
    # GPT-2's alphabet) is the text itself, in `token` or in `bytes`; so is a string whose byte-level
    # reading would be a cut UTF-8 character.
    assert undo_markers(text) == (text, TEXT)
    assert read_token(text, utf8(text)).text == text and read_token(text).text == text


def test_marker_spellings_decode_to_their_text():
    assert undo_markers("ĠÃ©tÃ©") == (" été", BYTE_LEVEL)
    assert undo_markers("Ċ") == ("\n", BYTE_LEVEL) and undo_markers(gpt2(" ８５")) == (" ８５", BYTE_LEVEL)
    assert undo_markers("▁85") == (" 85", SENTENCEPIECE)
    assert undo_markers("<0x20>") == (" ", BYTE_FALLBACK) and undo_markers("<0xC3><0xA9>") == ("é", BYTE_FALLBACK)
    # One byte of a longer character has no text of its own, spelled either way.
    assert read_token("<0xE6>", [0xE6]).text == "\ufffd"


def test_when_bytes_and_token_disagree_the_printable_one_wins_and_the_metadata_says_why(tmp_path):
    # A server that put token ids in `bytes`: they decode to control characters, the token is fine.
    reading = read_token("85", [1, 2])
    assert reading.text == "85" and reading.source == "token" and "not printable" in reading.describe()
    body = {"choices": [{"logprobs": {"content": [{"token": "85", "logprob": -0.01, "bytes": [1, 2],
                                                   "top_logprobs": [{"token": "85", "logprob": -0.01, "bytes": [1, 2]}]}]}}]}
    with FakeJudgeServer(scripts={PROBE_PROMPT: [(200, json.dumps(body).encode())]}) as server:
        scorer = judge(server, tmp_path)
        assert scorer.scale_top() == 100
    assert scorer.probe.text_source == "`token` '85', since `bytes` read '\\x01\\x02', which is not printable text"
    # Both printable and still different: `bytes`, the field defined as the token's UTF-8.
    both = read_token("８５", utf8("85"))
    assert both.text == "85" and both.source == "bytes" and "both are printable" in both.describe()


def test_the_probe_refusal_names_the_field_and_the_token_it_could_not_read(tmp_path):
    # Code points instead of bytes, and no token string: neither field is text.
    unreadable = {"choices": [{"logprobs": {"content": [{"token": None, "logprob": -0.01, "bytes": [288, 56, 53],
                                                         "top_logprobs": []}]}}]}
    # A word the judge answered, in GPT-2's spelling in `bytes`.
    word = spelled("GPT-2 bytes as marker", [(" Sure", [(" Sure", 0.9), (" 85", 0.1)])])
    with FakeJudgeServer(scripts={PROBE_PROMPT: [(200, json.dumps(unreadable).encode())]}) as server:
        with pytest.raises(JudgeConfigurationError) as caught:
            judge(server, tmp_path).score(["score me"])
        assert server.calls == 0
    assert "choices[0].logprobs.content[0]" in str(caught.value)
    assert "`token` None or `bytes` [288, 56, 53]" in str(caught.value)
    with FakeJudgeServer(scripts={PROBE_PROMPT: [(200, word)]}) as server:
        with pytest.raises(JudgeConfigurationError) as caught:
            judge(server, tmp_path).score(["score me"])
    message = str(caught.value)
    assert "the first token is not a number (choices[0].logprobs.content[0]: `token` ' Sure' reads ' Sure'" in message
    assert f"`bytes` {utf8(gpt2(' Sure'))!r} read ' Sure'" in message and f"{BYTE_LEVEL} in `bytes`" in message
