"""Rebuild ``chlamydia_trachomatis.gbk.gz``, the bacterial genome shipped with polyformer.bio for pretraining.

Source: the complete genome of *Chlamydia trachomatis* serovar D (strain D/UW-3/CX; Stephens et al. 1998,
"Genome Sequence of an Obligate Intracellular Pathogen of Humans", Science 282:754), 1,042,519 bp with its
895 annotated coding sequences, as R's ``seqinr`` package ships it: Debian package ``r-cran-seqinr``
4.2-23-1, file ``sequences/ct.gbk.gz`` (GenBank). Read and written with Biopython.

Usage::

    mkdir -p /tmp/genome && cd /tmp/genome
    apt-get update                          # refreshes the package lists only (needs root or sudo)
    apt-get download r-cran-seqinr          # into the current folder; no root needed
    dpkg-deb -x r-cran-seqinr_*.deb pkg     # unpack without installing
    cd /work/main   # the polyformer checkout, installed (editable) in the Python that runs this script
    python bio/data/make_genome.py /tmp/genome/pkg

The argument is the unpacked package (``ct.gbk.gz`` is searched for below it) or the file itself. It runs in
a few seconds. The output keeps the whole sequence and the gene-level features (``CDS``, ``tRNA``,
``rRNA``, ``misc_RNA``) with their locations, ``gene`` and ``product``; it drops the protein translations,
cross-references and literature, which take most of the source file's size and are not used here. The gzip
header carries no timestamp, so the output is byte-for-byte reproducible.
"""

from __future__ import annotations

import argparse
import gzip
import io
import sys
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
GENOME_FILE = "chlamydia_trachomatis.gbk.gz"
SOURCE_NAME = "ct.gbk.gz"
KEPT_FEATURES = ("CDS", "tRNA", "rRNA", "misc_RNA")
KEPT_QUALIFIERS = ("gene", "product")


def stripped_genome(path: Path):
    """The genome record with only the gene-level features and their name and product."""
    from Bio import SeqIO
    from Bio.SeqFeature import SeqFeature
    from Bio.SeqRecord import SeqRecord

    with io.TextIOWrapper(gzip.open(path), encoding="ascii") as handle:
        (record,) = list(SeqIO.parse(handle, "genbank"))
    features = [
        SeqFeature(f.location, type=f.type, qualifiers={k: v for k, v in f.qualifiers.items() if k in KEPT_QUALIFIERS})
        for f in record.features
        if f.type in KEPT_FEATURES
    ]
    out = SeqRecord(record.seq.upper(), id=record.id, name=record.name, description=record.description)
    out.features = features
    out.annotations = {
        "molecule_type": "DNA", "topology": record.annotations.get("topology", "linear"),
        "data_file_division": "BCT", "date": record.annotations.get("date", "01-JAN-1980"),
        "organism": "Chlamydia trachomatis", "source": "Chlamydia trachomatis D/UW-3/CX",
    }  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    from Bio import SeqIO

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help=f"the unpacked r-cran-seqinr package, or {SOURCE_NAME}")
    parser.add_argument("--output", type=Path, default=HERE / GENOME_FILE)
    args = parser.parse_args(argv)
    found = [args.source] if args.source.is_file() else sorted(args.source.rglob(SOURCE_NAME))
    if not found:
        raise SystemExit(f"no {SOURCE_NAME} under {args.source}")
    record = stripped_genome(found[0])
    text = io.StringIO()
    SeqIO.write(record, text, "genbank")
    tmp = args.output.with_name(args.output.name + ".tmp")
    with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as handle:
        handle.write(text.getvalue().encode("ascii"))
    tmp.replace(args.output)
    counts = Counter(f.type for f in record.features)
    print(f"{record.id}: {len(record.seq):,} bp, features " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    print(f"wrote {args.output} ({args.output.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
