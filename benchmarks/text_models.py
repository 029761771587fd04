"""Text models against Hugging Face transformers with the same weights, in one process: BERT masked-LM training,
GPT-2 generation and Marian beam search.

Each reference model is built by ``transformers`` with random weights, saved, and loaded into ours
through our converters (so both hold exactly the same weights); then the two are called in turn,
call by call, and each one's fastest call counts (``timing.py``). Ratios are reference time / our
time: above 1 means ours is faster.

- ``bert``: one masked-LM training step (forward, loss over 15% masked tokens, backward) of a
  BERT with ``--bert-layers`` x ``--bert-width`` on ``--bert-batch`` x ``--bert-seq`` tokens, in
  fp32 and under bf16 autocast. Ours runs as the engine trains it: the head projects only the
  masked positions onto the vocabulary; transformers' ``BertForMaskedLM`` projects every token.
- ``gpt2``: ``--new`` tokens after a 16-token prompt from a GPT-2-small-shaped model (12 x 768 by default),
  greedy and sampling (top-k 50), batch 1 and 8; greedy tokens are checked to be identical.
- ``marian``: beam search (``--beams``) of a Marian-shaped encoder-decoder (6+6 x 512, 32k tokens) over a
  batch of ``--sentences`` 24-token sources, up to 32 new tokens; outputs are checked identical.

Run: ``python benchmarks/text_models.py [--only bert,gpt2,marian] [--rounds 3]`` (a few minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import tempfile

import torch
import transformers

from polyformer.benchmarks.timing import bf16_rows, cpu_autocast, fastest, prepare
from polyformer.core import token_cross_entropy
from polyformer.core.convert_hf_bert import load_hf_bert
from polyformer.text.gpt import load_hf_gpt2
from polyformer.text.translation import load_hf_seq2seq


def _saved_and_loaded(reference, loader):
    with tempfile.TemporaryDirectory() as tmp:
        reference.save_pretrained(tmp)
        return loader(tmp)


def bench_bert(args) -> list[str]:
    vocab = getattr(args, "bert_vocab", 30522)
    config = transformers.BertConfig(
        vocab_size=vocab, hidden_size=args.bert_width, num_hidden_layers=args.bert_layers,
        num_attention_heads=args.bert_width // 64, intermediate_size=4 * args.bert_width,
        max_position_embeddings=max(512, args.bert_seq), hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    torch.manual_seed(0)
    reference = transformers.BertForMaskedLM(config).train()
    ours = _saved_and_loaded(reference, lambda d: load_hf_bert(d)).train()
    ids = torch.randint(5, vocab, (args.bert_batch, args.bert_seq))
    labels = torch.full_like(ids, -100)
    masked = torch.rand(ids.shape) < 0.15
    labels[masked] = ids[masked]

    def step(model, is_ours: bool, bf16: bool):
        def run():
            model.zero_grad(set_to_none=True)
            with cpu_autocast(bf16):
                if is_ours:  # as the engine's MaskedLMTask: the head projects only the masked positions
                    loss = token_cross_entropy(model(ids, labels=labels), labels[labels.ne(-100)])
                else:
                    loss = model(input_ids=ids, labels=labels).loss
            loss.backward()

        return run

    lines = [f"BERT masked-LM training step: {args.bert_layers} layers x {args.bert_width}, vocabulary {vocab}, batch "
             f"{args.bert_batch} x {args.bert_seq} tokens (forward + loss + backward)"]  # fmt: skip
    for bf16 in (False, True) if bf16_rows(lines.append) else (False,):
        times = fastest(
            {"ours": step(ours, True, bf16), "hf": step(reference, False, bf16)}, rounds=args.rounds, warmup=1
        )
        name = "bf16 autocast" if bf16 else "fp32"
        lines.append(f"  {name:<14} ours {times['ours'] * 1e3:8.1f} ms   HF {times['hf'] * 1e3:8.1f} ms   "
                     f"ratio {times['hf'] / times['ours']:.2f}")  # fmt: skip
    return lines


def _gpt2_rows(reference, ours, batch: int, args) -> list[str]:
    """Greedy and sampling rates of both models at one batch size."""
    prompt = torch.randint(0, 50000, (batch, 16))
    hf_options = dict(max_new_tokens=args.new, eos_token_id=None, pad_token_id=0)
    steps = {
        "ours greedy": lambda: ours.generate(prompt, max_new_tokens=args.new, eos_id=None).sequences,
        "hf greedy": lambda: reference.generate(prompt, do_sample=False, **hf_options)[:, 16:],
        "ours sample": lambda: ours.generate(prompt, max_new_tokens=args.new, strategy="sample", top_k=50, eos_id=None),
        "hf sample": lambda: reference.generate(prompt, do_sample=True, top_k=50, **hf_options),
    }
    with torch.no_grad():
        same = torch.equal(steps["hf greedy"](), steps["ours greedy"]())
        times = fastest(steps, rounds=args.rounds, warmup=1)
    tokens, lines = batch * args.new, []
    for mode in ("greedy", "sample"):
        mine, theirs = tokens / times[f"ours {mode}"], tokens / times[f"hf {mode}"]
        check = f"  identical tokens: {same}" if mode == "greedy" else ""
        rates = f"ours {mine:7.1f}   HF {theirs:7.1f}   ratio {mine / theirs:.2f}"
        lines.append(f"  batch {batch} {mode:<7} {rates}{check}")
    return lines


def bench_gpt2(args) -> list[str]:
    config = transformers.GPT2Config(
        n_layer=args.gpt_layers, n_embd=args.gpt_width, n_head=args.gpt_width // 64, n_positions=1024,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )  # fmt: skip
    torch.manual_seed(0)
    reference = transformers.GPT2LMHeadModel(config).eval()
    ours = _saved_and_loaded(reference, load_hf_gpt2)
    shape = f"{args.gpt_layers} x {args.gpt_width}"
    lines = [f"GPT-2-shaped ({shape}) generation, {args.new} new tokens after 16 prompt tokens, tokens/s"]
    for batch in (1, 8):
        lines += _gpt2_rows(reference, ours, batch, args)
    return lines


def bench_marian(args) -> list[str]:
    config = transformers.MarianConfig(
        vocab_size=args.marian_vocab, d_model=args.marian_width, encoder_layers=args.marian_layers,
        decoder_layers=args.marian_layers, encoder_attention_heads=args.marian_width // 64,
        decoder_attention_heads=args.marian_width // 64, encoder_ffn_dim=4 * args.marian_width,
        decoder_ffn_dim=4 * args.marian_width, max_position_embeddings=512, pad_token_id=args.marian_vocab - 1,
        eos_token_id=0, decoder_start_token_id=args.marian_vocab - 1, scale_embedding=True,
        activation_function="swish", forced_eos_token_id=None, dropout=0.0,
    )  # fmt: skip
    torch.manual_seed(0)
    reference = transformers.MarianMTModel(config).eval()
    ours = _saved_and_loaded(reference, load_hf_seq2seq)
    src = torch.randint(1, args.marian_vocab - 1, (args.sentences, 24))
    mask = torch.ones_like(src)
    options = dict(num_beams=args.beams, max_new_tokens=32)

    def hf():
        return reference.generate(src, attention_mask=mask, early_stopping=True, length_penalty=1.0, **options)[:, 1:]

    def mine():
        return ours.generate(src, mask.bool(), early_stopping=True, length_penalty=1.0, **options).sequences

    with torch.no_grad():
        expected, got = hf(), mine()
        same = torch.equal(got[:, : expected.shape[1]], expected)
        times = fastest({"ours": mine, "hf": hf}, rounds=args.rounds, warmup=1)
    rate_ours, rate_hf = args.sentences / times["ours"], args.sentences / times["hf"]
    return [
        f"Marian-shaped ({args.marian_layers}+{args.marian_layers} x {args.marian_width}, {args.marian_vocab} tokens) "
        f"beam search, beam {args.beams}, {args.sentences} sentences, "
        "up to 32 new tokens, sentences/s",
        f"  ours {rate_ours:.2f}   HF {rate_hf:.2f}   ratio {rate_ours / rate_hf:.2f}   identical output: {same}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="bert,gpt2,marian")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--bert-layers", type=int, default=4)
    parser.add_argument("--bert-width", type=int, default=512)
    parser.add_argument("--bert-batch", type=int, default=8)
    parser.add_argument("--bert-seq", type=int, default=512)
    parser.add_argument("--bert-vocab", type=int, default=30522)
    parser.add_argument("--gpt-layers", type=int, default=12)
    parser.add_argument("--gpt-width", type=int, default=768)
    parser.add_argument("--new", type=int, default=256)
    parser.add_argument("--marian-layers", type=int, default=6)
    parser.add_argument("--marian-width", type=int, default=512)
    parser.add_argument("--marian-vocab", type=int, default=32000)
    parser.add_argument("--beams", type=int, default=4)
    parser.add_argument("--sentences", type=int, default=8)
    args = parser.parse_args()
    print(prepare(args.threads))
    benches = {"bert": bench_bert, "gpt2": bench_gpt2, "marian": bench_marian}
    for name in args.only.split(","):
        for line in benches[name](args):
            print(line, flush=True)


if __name__ == "__main__":
    main()
