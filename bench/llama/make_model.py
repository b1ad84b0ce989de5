#!/usr/bin/env python3
"""Writes a Llama-architecture GGUF with random weights for the llama.cpp harness.

No weights can be downloaded on the benchmark machines, and the harness needs llama.cpp's
real compute and real KV cache, not sensible text: the weights are seeded random numbers.
The shape is chosen so the weights are small next to the KV cache: a narrow residual
stream (n_embd 64) with two attention heads 128 wide each (key/value_length 128, not
grouped), so each token's KV (K and V, f16, all layers) is 4 KiB while the weights are
~0.8 MiB. Under TCG every multiply-add is emulated in software, so the weights' cost per
token (~0.4 M multiply-adds) must stay small next to attention's (2 K per cell of
context): the KV reads are what the harness measures. The vocabulary is 260 tokens: the
SentencePiece specials, the 256 byte tokens and one word piece; the driver feeds token
ids directly, so no text is ever tokenized.

Called by bench/llama/build.sh with the venv that has `gguf` (PyPI).
"""

import argparse

import numpy as np
import gguf

N_VOCAB = 260


def vocab():
    tokens = [b"<unk>", b"<s>", b"</s>"] + [b"<0x%02X>" % i for i in range(256)] + ["\u2581".encode()]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    types += [gguf.TokenType.BYTE] * 256 + [gguf.TokenType.NORMAL]
    scores = [0.0] * len(tokens)
    assert len(tokens) == N_VOCAB
    return tokens, scores, types


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--n-embd", type=int, default=64)
    ap.add_argument("--n-head", type=int, default=2)
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--n-ff", type=int, default=128)
    ap.add_argument("--ctx", type=int, default=65536, help="the model's trained context (metadata only)")
    ap.add_argument("--seed", type=int, default=15)
    a = ap.parse_args()

    rng = np.random.default_rng(a.seed)
    head_dim = a.head_dim

    def mat(rows, cols):
        # numpy (rows, cols) is ggml ne = [cols, rows]: cols is the input width.
        return (rng.standard_normal((rows, cols), dtype=np.float32) / np.sqrt(cols)).astype(np.float16)

    w = gguf.GGUFWriter(a.out, "llama")
    w.add_name("tierd-bench random llama")
    w.add_context_length(a.ctx)
    w.add_embedding_length(a.n_embd)
    w.add_block_count(a.n_layer)
    w.add_feed_forward_length(a.n_ff)
    w.add_head_count(a.n_head)
    w.add_head_count_kv(a.n_head)
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_rope_dimension_count(head_dim)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_vocab_size(N_VOCAB)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    tokens, scores, types = vocab()
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)

    ones = np.ones(a.n_embd, dtype=np.float32)
    w.add_tensor("token_embd.weight", mat(N_VOCAB, a.n_embd))
    w.add_tensor("output_norm.weight", ones)
    w.add_tensor("output.weight", mat(N_VOCAB, a.n_embd))
    for i in range(a.n_layer):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", ones)
        w.add_tensor(p + "attn_q.weight", mat(a.n_head * head_dim, a.n_embd))
        w.add_tensor(p + "attn_k.weight", mat(a.n_head * head_dim, a.n_embd))
        w.add_tensor(p + "attn_v.weight", mat(a.n_head * head_dim, a.n_embd))
        w.add_tensor(p + "attn_output.weight", mat(a.n_embd, a.n_head * head_dim))
        w.add_tensor(p + "ffn_norm.weight", ones)
        w.add_tensor(p + "ffn_gate.weight", mat(a.n_ff, a.n_embd))
        w.add_tensor(p + "ffn_up.weight", mat(a.n_ff, a.n_embd))
        w.add_tensor(p + "ffn_down.weight", mat(a.n_embd, a.n_ff))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main()
