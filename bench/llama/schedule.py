#!/usr/bin/env python3
"""Turns a request trace into the llama harness's schedule of conversation turns.

Input: the Mooncake conversation trace (.jsonl: timestamp ms, input_length,
output_length, hash_ids = 512-token prefix blocks) or the Azure LLM inference trace
(.csv: TIMESTAMP, ContextTokens, GeneratedTokens). Output, one turn per line:

    ARRIVAL_MS SESSION NEW_TOKENS OUTPUT_TOKENS HISTORY_TOKENS

HISTORY_TOKENS: the conversation's tokens before this turn (0 for a first turn); the
driver uses it when it no longer holds the session's KV.

Sessions. Mooncake has no session ids, but a later turn of a conversation repeats the
whole prompt of the earlier turn (and its answer) as its prefix: a request whose
hash_ids start with all the full blocks of an earlier request's prompt (at least two:
the first is a system prompt many share; the last, partial block of a prompt hashes
differently once the prompt grows) continues that request's session, and only its
tokens beyond the earlier prompt and answer are new (3,975 of Mooncake's 12,031
requests continue a session this way). The Azure trace has no prefix information: every request is a
session of one turn (its KV still stays in the engine until evicted).

Scale. The test VM runs llama.cpp under TCG, about two orders of magnitude slower than
a server, so prompt and history token counts are divided by --token-scale (bench/llama/
run.sh passes 64: Mooncake's ~12k-token prompts become ~200 cells), output counts by
--output-scale (default: --token-scale; run.sh passes 4) and capped by --max-output (the
driver computes only the last few prompt tokens, the rest of a prompt's KV arrives by
transfer, so prompts cost little and decodes are what a run does); --seconds keeps the
turns that arrive in the first N seconds of the trace (after --time-scale, which the
driver applies too: pass the same value to both), starting --start-s seconds into the
trace (default 600: sessions begun earlier come back with their history). Called by bench/llama/run.sh on the
host; the traces themselves never enter the repository (see docs/benchmarks.md).
"""

import argparse
import csv
import datetime
import json
import sys

BLOCK_TOKENS = 512  # Mooncake's hash_ids are per 512 prompt tokens


def mooncake(path):
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
                yield float(r["timestamp"]), int(r["input_length"]), int(r["output_length"]), list(r["hash_ids"])
            except (ValueError, KeyError, TypeError) as e:
                sys.exit(f"schedule.py: {path}:{n}: not a Mooncake row ({e})")


def azure(path):
    with open(path, newline="") as f:
        rows = csv.DictReader(f)
        if not rows.fieldnames or "TIMESTAMP" not in rows.fieldnames or "ContextTokens" not in rows.fieldnames:
            sys.exit(f"schedule.py: {path}: no TIMESTAMP,ContextTokens header (Azure trace)")
        t0 = None
        for n, r in enumerate(rows, 2):
            try:
                # "2023-11-16 18:15:46.6805900": seven fractional digits, trimmed to six.
                ts = r["TIMESTAMP"].strip()
                if "." in ts:
                    head, frac = ts.split(".", 1)
                    ts = head + "." + frac[:6]
                t = datetime.datetime.fromisoformat(ts).timestamp() * 1000.0
                ctx, gen = int(r["ContextTokens"]), int(r["GeneratedTokens"])
            except (ValueError, KeyError) as e:
                sys.exit(f"schedule.py: {path}:{n}: bad row ({e})")
            t0 = t if t0 is None else t0
            yield t - t0, ctx, gen, None


def turns(rows, token_scale, max_output, output_scale):
    """Yields (arrival_ms, session, new_tokens, output_tokens, history_tokens), sessions
    by prefix."""
    by_prefix = {}  # full prompt blocks of a request -> (session, its input+output tokens)
    next_session = 0
    for t, inp, out, hashes in rows:
        session, reused = None, 0
        if hashes:
            for n in range(len(hashes) - 1, 1, -1):
                hit = by_prefix.get(tuple(hashes[:n]))
                if hit:
                    session, reused = hit
                    break
        if session is None:
            session, next_session = next_session, next_session + 1
        new = max(1, inp - reused)
        if hashes and inp // BLOCK_TOKENS >= 2:
            by_prefix[tuple(hashes[: inp // BLOCK_TOKENS])] = (session, inp + out)
        scaled_out = max(1, min(max_output, round(out / output_scale)))
        yield t, session, max(1, round(new / token_scale)), scaled_out, round(reused / token_scale)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trace")
    ap.add_argument("--out", required=True)
    ap.add_argument("--token-scale", type=float, default=16.0)
    ap.add_argument("--max-output", type=int, default=32)
    ap.add_argument("--output-scale", type=float, default=0, help="output token counts / X (0: --token-scale)")
    ap.add_argument("--time-scale", type=float, default=1.0, help="the driver's --time-scale")
    ap.add_argument("--seconds", type=float, default=0, help="keep turns arriving in the first N s (0: all)")
    ap.add_argument(
        "--start-s",
        type=float,
        default=600,
        help="begin this far into the trace (earlier turns only name sessions: the server has been up)",
    )
    a = ap.parse_args()
    if a.token_scale <= 0 or a.max_output < 1 or a.time_scale <= 0 or a.output_scale < 0:
        sys.exit("schedule.py: --token-scale and --time-scale must be > 0, --output-scale >= 0, --max-output >= 1")
    rows = mooncake(a.trace) if a.trace.endswith(".jsonl") else azure(a.trace)
    kept = sessions = 0
    seen = set()
    with open(a.out, "w") as f:
        f.write(
            f"# {a.trace} token_scale={a.token_scale} output_scale={a.output_scale or a.token_scale}"
            f" max_output={a.max_output}\n"
        )
        for t, s, new, out, history in turns(rows, a.token_scale, a.max_output, a.output_scale or a.token_scale):
            t -= a.start_s * 1000.0
            if t < 0:
                continue
            if a.seconds and t * a.time_scale > a.seconds * 1000.0:
                break
            f.write(f"{t:.1f} {s} {new} {out} {history}\n")
            kept += 1
            if s not in seen:
                seen.add(s)
                sessions += 1
    if kept == 0:
        sys.exit(f"schedule.py: no turns in the first {a.seconds} s of {a.trace}")
    print(f"schedule.py: {kept} turns, {sessions} sessions -> {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
