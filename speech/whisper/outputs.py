"""Transcript files as openai/whisper writes them: txt, json, srt, vtt and tsv."""

from __future__ import annotations

import json
from pathlib import Path

from .transcribe import Transcription

__all__ = ["OUTPUT_FORMATS", "format_timestamp", "render", "write_transcript"]

OUTPUT_FORMATS = ("txt", "json", "srt", "vtt", "tsv")


def format_timestamp(seconds: float, decimal: str = ".", always_hours: bool = False) -> str:
    """``HH:MM:SS.mmm`` (hours only when needed unless ``always_hours``)."""
    if seconds < 0:
        raise ValueError(f"a timestamp cannot be negative, got {seconds}")
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    head = f"{hours:02d}:" if always_hours or hours else ""
    return f"{head}{minutes:02d}:{secs:02d}{decimal}{millis:03d}"


def render(result: Transcription, fmt: str) -> str:
    """The transcript in format ``fmt`` (one of :data:`OUTPUT_FORMATS`)."""
    if fmt == "txt":
        return "".join(s.text.strip() + "\n" for s in result.segments)
    if fmt == "json":
        return json.dumps(result.to_dict(), ensure_ascii=False) + "\n"
    if fmt == "srt":
        blocks = [
            f"{i}\n{format_timestamp(s.start, ',', True)} --> {format_timestamp(s.end, ',', True)}\n"
            f"{s.text.strip().replace('-->', '->')}\n"
            for i, s in enumerate(result.segments, start=1)
        ]
        return "\n".join(blocks)
    if fmt == "vtt":
        cues = [
            f"{format_timestamp(s.start)} --> {format_timestamp(s.end)}\n{s.text.strip().replace('-->', '->')}\n"
            for s in result.segments
        ]
        return "WEBVTT\n\n" + "\n".join(cues)
    if fmt == "tsv":  # times in integer milliseconds, as openai/whisper
        rows = [
            f"{round(1000 * s.start)}\t{round(1000 * s.end)}\t{s.text.strip().replace(chr(9), ' ')}\n"
            for s in result.segments
        ]
        return "start\tend\ttext\n" + "".join(rows)
    raise ValueError(f"unknown output format {fmt!r}; choose one of {', '.join(OUTPUT_FORMATS)}")


def write_transcript(result: Transcription, directory: str | Path, stem: str, fmt: str) -> Path:
    """Write ``stem.<fmt>`` in ``directory``; returns the path."""
    path = Path(directory) / f"{stem}.{fmt}"
    path.write_text(render(result, fmt), encoding="utf-8")
    return path
