"""Rebuild ``splice_train.csv.gz`` and ``splice_test.csv.gz``, the primate splice-junction set shipped with
polyformer.bio.

Source: the UCI "Molecular Biology (Splice-junction Gene Sequences)" data (Towell, Noordewier & Shavlik;
GenBank 64.1 primate genes), as the StatLog project encoded it and R's ``mlbench`` package ships it:
Debian package ``r-cran-mlbench`` 2.1-3-1, file ``data/DNA.rda``, 3,186 rows of 60 nucleotides in 180
one-hot columns ``V1..V180`` (three per base: A = 100, C = 010, G = 001, T = 000) and a ``Class`` column
(``ei`` exon/intron boundary, a donor site; ``ie`` intron/exon boundary, an acceptor site; ``n`` neither).
It is read with the PyPI package ``rdata`` (used here only; not a polyformer dependency); R is not needed.

Usage::

    mkdir -p /tmp/splice && cd /tmp/splice
    apt-get update                          # refreshes the package lists only (needs root or sudo)
    apt-get download r-cran-mlbench         # into the current folder; no root needed
    dpkg-deb -x r-cran-mlbench_*.deb pkg    # unpack without installing
    pip install rdata
    cd /work/main   # the polyformer checkout
    python bio/data/make_splice_junctions.py /tmp/splice/pkg

The argument is the unpacked package (``DNA.rda`` is searched for below it) or the ``.rda`` file itself.
It runs in a few seconds and prints the class counts and the consensus check below.

What it does:

* decodes the one-hot columns to bases and checks the decoding against biology: almost every ``ei``
  sequence has the donor consensus ``GT`` right after the boundary (positions 31-32) and almost every
  ``ie`` sequence the acceptor consensus ``AG`` right before it (positions 29-30); the script stops if not;
* drops repeated sequences (the set holds 185 exact repeats; a sequence seen with two classes is dropped
  altogether), so that no test sequence is also a training sequence;
* splits the rest into a fixed test set (25% of each class, chosen with seed 0) and a training set, and
  writes each as a gzipped ``sequence,label`` CSV with labels ``EI``, ``IE``, ``N`` (deterministic output:
  no timestamp in the gzip header).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import random
import sys
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
TRAIN_FILE, TEST_FILE = "splice_train.csv.gz", "splice_test.csv.gz"
ONE_HOT = {(1, 0, 0): "A", (0, 1, 0): "C", (0, 0, 1): "G", (0, 0, 0): "T"}
LABELS = {"ei": "EI", "ie": "IE", "n": "N"}
TEST_FRACTION = 0.25


def read_dna_rda(path: Path) -> list[tuple[str, str]]:
    """(sequence, label) rows of mlbench's ``DNA.rda``, decoded from the one-hot columns."""
    import rdata

    frame = rdata.conversion.convert(rdata.parser.parse_file(path))["DNA"]
    bits = frame.iloc[:, :180].astype(int).to_numpy().reshape(len(frame), 60, 3)
    rows = []
    for number, (row, label) in enumerate(zip(bits, frame["Class"].astype(str)), start=1):
        try:
            sequence = "".join(ONE_HOT[tuple(int(b) for b in base)] for base in row)
        except KeyError as err:
            raise SystemExit(f"{path} row {number}: a base encoded as {err.args[0]} is not A, C, G or T") from None
        rows.append((sequence, LABELS[label]))
    return rows


def check_consensus(rows: list[tuple[str, str]]) -> None:
    """Stop unless donors carry GT after the boundary and acceptors AG before it (the decoding is right)."""
    donors = [s for s, label in rows if label == "EI"]
    acceptors = [s for s, label in rows if label == "IE"]
    gt = sum(s[30:32] == "GT" for s in donors) / len(donors)
    ag = sum(s[28:30] == "AG" for s in acceptors) / len(acceptors)
    print(f"consensus: EI with GT at 31-32: {gt:.1%}; IE with AG at 29-30: {ag:.1%}")
    if gt < 0.95 or ag < 0.95:
        raise SystemExit("the decoded sequences lack the splice-site consensus: the one-hot decoding is wrong")


def unique_rows(rows: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Each sequence once, in first-seen order; sequences seen with two labels are dropped."""
    labels: dict[str, set[str]] = {}
    for sequence, label in rows:
        labels.setdefault(sequence, set()).add(label)
    conflicting = sum(len(found) > 1 for found in labels.values())
    print(f"{len(rows)} rows, {len(labels)} distinct sequences, {conflicting} with two labels (dropped)")
    return [(s, next(iter(found))) for s, found in labels.items() if len(found) == 1]


def split(rows: list[tuple[str, str]], seed: int = 0) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """A stratified train/test split: ``TEST_FRACTION`` of each class, chosen by ``seed``."""
    rng = random.Random(seed)
    train, test = [], []
    for label in sorted({label for _, label in rows}):
        members = [row for row in rows if row[1] == label]
        rng.shuffle(members)
        cut = round(len(members) * TEST_FRACTION)
        test += members[:cut]
        train += members[cut:]
    rng.shuffle(train)
    rng.shuffle(test)
    return train, test


def write_csv(rows: list[tuple[str, str]], path: Path) -> None:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["sequence", "label"])
    writer.writerows(rows)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as handle:
        handle.write(text.getvalue().encode("ascii"))
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="the unpacked r-cran-mlbench package, or DNA.rda")
    parser.add_argument("--output", type=Path, default=HERE, help="folder for the two CSV files")
    args = parser.parse_args(argv)
    found = [args.source] if args.source.is_file() else sorted(args.source.rglob("DNA.rda"))
    if not found:
        raise SystemExit(f"no DNA.rda under {args.source}")
    rows = read_dna_rda(found[0])
    check_consensus(rows)
    train, test = split(unique_rows(rows))
    args.output.mkdir(parents=True, exist_ok=True)
    write_csv(train, args.output / TRAIN_FILE)
    write_csv(test, args.output / TEST_FILE)
    for name, part in (("train", train), ("test", test)):
        counts = Counter(label for _, label in part)
        print(f"{name}: {len(part)} sequences, " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
