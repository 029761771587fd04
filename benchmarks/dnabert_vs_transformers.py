"""Training throughput of our DNABERT-shaped model against Hugging Face BERT with the same config and weights.

DNABERT is a BERT over overlapping 6-mers: a 4,101-token vocabulary and 512-token inputs. This runs the
masked-LM training step of ``text_models.py`` (forward, loss over 15% of the tokens, backward; ours as the
engine trains it, projecting only the masked positions onto the vocabulary) with that vocabulary, in fp32
and, where the CPU has native bf16, under bf16 autocast. Both models hold the same random weights
(transformers builds them; ours loads them through the DNABERT loader's converter). The ratio is HF time /
our time: above 1 means ours is faster; the goal is 1.2.

Run: ``python benchmarks/dnabert_vs_transformers.py [--layers 4 --width 512 --batch 8] [--rounds 3]``
(DNABERT-base is ``--layers 12 --width 768``; a few minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse

from polyformer.benchmarks.text_models import bench_bert
from polyformer.benchmarks.timing import prepare
from polyformer.bio import kmer_vocabulary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=6, help="k-mer length: the vocabulary is 4^k + 5 tokens")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    print(prepare(args.threads))
    settings = argparse.Namespace(
        bert_layers=args.layers, bert_width=args.width, bert_batch=args.batch, bert_seq=args.seq,
        bert_vocab=len(kmer_vocabulary(args.k)), rounds=args.rounds,
    )  # fmt: skip
    print(f"DNABERT-{args.k} shape:")
    for line in bench_bert(settings):
        print(line, flush=True)


if __name__ == "__main__":
    main()
