"""Long greedy generation: our KV cache (a buffer that doubles) vs one grown by ``torch.cat`` vs Hugging Face GPT-2.

The same decoder-only model (width 256, 4 layers, 4 heads, vocabulary 512, random weights)
generates ``--new`` tokens after a 16-token prompt, at batch 1 and 8, three ways: with
:class:`polyformer.core.LayerKVCache` (writes each step's keys into spare room; copies only
when it doubles), with a cache that grows by ``torch.cat`` at every step (the previous
implementation, defined here as the baseline), and Hugging Face ``GPT2LMHeadModel.generate``
of the same size (its ``DynamicCache`` also uses ``torch.cat``). Greedy, no EOS, so every run
decodes the same number of tokens. The runs alternate and each one's fastest counts
(``timing.py``). Ratio = other time / our time (above 1 = ours faster).

Run: ``python benchmarks/decoding.py [--new 1024]``.
"""

from __future__ import annotations

import argparse
from functools import partial

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from polyformer.benchmarks.timing import fastest, prepare
from polyformer.core import DecoderOnlyTransformer, KVCache, LayerKVCache, TransformerConfig, greedy_search


class ConcatLayerKVCache(LayerKVCache):
    """The baseline: self-attention keys and values grow by ``torch.cat`` at every step."""

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.buffer_k is None:
            self.buffer_k, self.buffer_v = k, v
        else:
            self.buffer_k = torch.cat([self.buffer_k, k], dim=2)
            self.buffer_v = torch.cat([self.buffer_v, v], dim=2)
        self.length = self.buffer_k.shape[2]
        return self.buffer_k, self.buffer_v


def ours(model: DecoderOnlyTransformer, prompt: torch.Tensor, new: int, layer_cache: type) -> torch.Tensor:
    cache = KVCache([layer_cache() for _ in model.decoder.stack.layers])
    return greedy_search(model, cache, prompt, max_new_tokens=new).sequences


def hf(model: GPT2LMHeadModel, prompt: torch.Tensor, new: int) -> torch.Tensor:
    out = model.generate(prompt, max_new_tokens=new, min_new_tokens=new, do_sample=False, pad_token_id=0)
    return out[:, prompt.shape[1] :]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new", type=int, default=1024, help="tokens generated per run")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(prepare())
    dim, layers, heads, vocab, max_len = 256, 4, 4, 512, args.new + 16
    config = TransformerConfig(
        vocab_size=vocab, d_model=dim, num_heads=heads, decoder_layers=layers, d_ff=4 * dim, dropout=0.0,
        norm_first=True, position="learned", activation="gelu_tanh", max_len=max_len, scale_embeddings=False,
    )  # fmt: skip
    model = DecoderOnlyTransformer(config).eval()
    gpt2_config = GPT2Config(
        vocab_size=vocab, n_embd=dim, n_layer=layers, n_head=heads, n_positions=max_len, bos_token_id=1, eos_token_id=2
    )
    gpt2 = GPT2LMHeadModel(gpt2_config).eval()
    print(f"width {dim}, {layers} layers, {heads} heads; 16-token prompt, {args.new} new tokens, greedy; ms per run")
    print(f"{'batch':>6}{'ours':>10}{'torch.cat':>11}{'ratio':>7}{'HF GPT-2':>10}{'ratio':>7}")
    with torch.inference_mode():
        for batch in args.batches:
            prompt = torch.randint(3, vocab, (batch, 16))
            steps = {
                "ours": partial(ours, model, prompt, args.new, LayerKVCache),
                "cat": partial(ours, model, prompt, args.new, ConcatLayerKVCache),
                "hf": partial(hf, gpt2, prompt, args.new),
            }
            assert torch.equal(steps["ours"](), steps["cat"]())  # same tokens either way
            ms = {name: seconds * 1e3 for name, seconds in fastest(steps, args.rounds, warmup=1).items()}
            print(
                f"{batch:>6}{ms['ours']:>10.0f}{ms['cat']:>11.0f}{ms['cat'] / ms['ours']:>7.2f}"
                f"{ms['hf']:>10.0f}{ms['hf'] / ms['ours']:>7.2f}"
            )


if __name__ == "__main__":
    main()
