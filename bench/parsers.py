"""Candidate YAML parsers for issue 20, measured against today's loader (libyaml through PyYAML).

    PYTHONPATH=/tmp/parser-cands .venv/bin/python bench/parsers.py [--rounds 5] [--out FILE]

The candidates are not dependencies of the project: install the ones to measure into a directory of
their own (``pip install --no-deps --target /tmp/parser-cands WHEEL...``) and put it on the path;
the ones that do not import are listed as missing. For each it measures:

- agreement: whether the document it builds is the one today's loader builds (same keys in the same
  order, same values of the same types), file by file, for the generated 10,000-manifest corpus
  (``bench/corpus.py``) and the real 48 (``corpus.REAL_CORPUS``);
- speed: CPU time per file to turn decoded text into a document, in rounds, each round timing every
  candidate once in a new random order over the same files, so that a busy minute on this shared
  machine falls on all of them alike; the median round, and the spread over the rounds;
- memory: in a process of its own, the growth of the peak RSS while it parses all 10,000 files,
  keeping the documents (what it builds and what it leaks);
- strictness: in a process of its own each (2 GiB address space, 20 s), what it makes of the inputs
  the loader must refuse or must read as YAML 1.1 does (:data:`PROBES`), and whether its error names
  the line.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import corpus

Load = Callable[[str], Any]
SIZE: Final = 10_000
BOMB: Final = "".join(
    [
        'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n',
        *(
            f"{name}: &{name} [{','.join(['*' + previous] * 9)}]\n"
            for previous, name in zip("abcdefgh", "bcdefghi", strict=True)
        ),
        "metadata: {x: *i}\n",
    ]
)
"""A ~0.9 KiB "billion laughs": 9 to the 9th (387 million) strings once expanded."""
PROBES: Final[dict[str, str | bytes]] = {
    "alias bomb": BOMB,
    "duplicate key": "a: 1\nb: 2\na: 3\n",
    "two documents": "a: 1\n---\nb: 2\n",
    "tab indent": "a:\n\tb: 1\n",
    "invalid UTF-8": b"a: \xff\xfe\n",
    "nested 2,000 deep": "a: " + "[" * 2000 + "]" * 2000 + "\n",
    "syntax error line 3": "a: 1\nb: 2\nc: [1, 2\nd: 4\n",
    "yes/on/no/off/y": "a: yes\nb: on\nc: no\nd: Off\ne: y\n",
    "sexagesimal 1:30": "a: 1:30\n",
    "date / timestamp": "a: 2025-01-02\nb: 2025-01-02 10:00:00\n",
    "octal 017, 0o17": "a: 017\nb: 0o17\n",
    "1_000, 1e3": "a: 1_000\nb: 1e3\n",
    "~, null, empty": "a: ~\nb: Null\nc:\n",
    ".inf, .nan": "a: .inf\nb: .NaN\n",
    "merge key": "x: &x {b: 1}\nc:\n  <<: *x\n  d: 2\n",
    "int key": "1: a\n",
    "!!binary, !!set": "a: !!binary aGk=\nb: !!set {x}\n",
    "unknown tag": "a: !thing 1\n",
}


def today() -> Load:
    """Today's path as ``load_manifest`` takes it: libyaml composes nodes, the builder builds (or
    PyYAML, after counting the values of a document with aliases); the schema is not checked."""
    from gitops_sync.core import loading, yaml_loader  # noqa: PLC0415 - the bench measures the internals

    def load(text: str) -> Any:
        loader = yaml_loader.ManifestLoader(text)
        try:
            root = loader.get_single_node()
            if root is None:
                return None
            try:
                return yaml_loader.Builder(loader).document(root)
            except yaml_loader.Unusual:
                if "*" in text:
                    loading.check_bounds("probe", root)
                return loader.construct_document(root)
        finally:
            loader.dispose()

    return load


def _ryml() -> Load:
    import ryml  # type: ignore[import-not-found]  # noqa: PLC0415

    plain: dict[str, Any] = {"": None, "~": None, "null": None, "true": True, "false": False}
    number = re.compile(r"[-+]?(0|[1-9][0-9]*)(\.[0-9]*)?([eE][-+]?[0-9]+)?$")

    def scalar(text: str, quoted: bool) -> Any:
        if quoted:
            return text
        if text in plain:
            return plain[text]
        if number.match(text):
            return float(text) if "." in text or "e" in text.lower() else int(text)
        return text

    def value(tree: Any, node: int) -> Any:
        if tree.is_map(node):
            return {
                bytes(tree.key(child)).decode(): value(tree, child) for child in ryml.children(tree, node)
            }
        if tree.is_seq(node):
            return [value(tree, child) for child in ryml.children(tree, node)]
        text = tree.val(node)
        return None if text is None else scalar(bytes(text).decode(), tree.is_val_quoted(node))

    def load(text: str) -> Any:
        tree = ryml.parse_in_arena(text.encode())
        return value(tree, tree.root_id())

    return load


def candidates() -> dict[str, Callable[[], Load]]:
    """Name (PyPI name and version) -> a factory of its load function; it raises ImportError when
    the candidate is not installed."""

    def module(name: str) -> Any:
        return __import__(name)

    return {
        "today: PyYAML 6.0 CSafeLoader + builder": today,
        "fastyaml-rs 0.7.0": lambda: module("fast_yaml").safe_load,
        "yaml-rs 0.1.6": lambda: lambda text: module("yaml_rs").loads(text, parse_datetime=False),
        "libfyaml 1.0.0b2 (mode yaml1.1)": lambda: (
            lambda text: module("libfyaml").loads(text, mode="yaml1.1").to_python()
        ),
        "pyrs-yaml 0.18.3 (schema yaml1.1)": lambda: (
            lambda text: module("pyrs_yaml").safe_load(text, schema="yaml1.1")
        ),
        "py-yaml12 0.2.0": lambda: module("yaml12").parse_yaml,
        "oryaml 0.1.0": lambda: module("oryaml").loads,
        "ryaml 0.5.1": lambda: module("ryaml").loads,
        "pyyaml-rs 0.1.0": lambda: module("pyyaml_rs").safe_load,
        "rustyyaml 0.1.7": lambda: module("rustyyaml").safe_load,
        "xoryaml 0.2.0": lambda: module("xoryaml").loads,
        "rs-turboyaml 0.2.1": lambda: lambda text: module("turboyaml").load(text, yaml_1_1_bools=True),
        "rapidyaml 0.15.2 (tree walked in Python)": _ryml,
    }


def texts(directory: Path) -> list[str]:
    return [path.read_text(encoding="utf-8") for path in sorted(directory.glob("*.yaml"))]


def canonical(document: Any) -> str:
    """Keys in order, values with their types: True, 1 and 1.0 differ, as they do in JSON."""
    return json.dumps(document, default=lambda value: f"<{type(value).__name__} {value!r}>")


def agreement(load: Load, files: list[str], expected: list[str]) -> str:
    differing = 0
    failed = 0
    for text, want in zip(files, expected, strict=True):
        try:
            got = canonical(load(text))
        except Exception:
            failed += 1
            continue
        differing += got != want
    if not differing and not failed:
        return "all same"
    return f"{differing} differ, {failed} raise"


def timed_rounds(loads: dict[str, Load], files: list[str], rounds: int) -> dict[str, list[float]]:
    """CPU microseconds per file, one sample per round per candidate, in a new order each round."""
    samples: dict[str, list[float]] = {name: [] for name in loads}
    order = list(loads)
    rng = random.Random(20)  # noqa: S311 - an order, not a secret
    for _ in range(rounds):
        rng.shuffle(order)
        for name in order:
            load = loads[name]
            started = time.process_time()
            for text in files:
                try:
                    load(text)
                except Exception:  # noqa: S112 - a file it refuses still cost its time
                    continue
            samples[name].append((time.process_time() - started) / len(files) * 1e6)
    return samples


def memory(name: str, directory: Path) -> int:
    """KiB the peak RSS grows by while ``name`` parses every file in ``directory``, keeping them."""
    load = candidates()[name]()
    files = texts(directory)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kept = [load(text) for text in files]
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    del kept
    return grown


def probe(name: str, probe_name: str) -> dict[str, Any]:
    """What ``name`` makes of one probe, in this process (run it in one of its own)."""
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
    load = candidates()[name]()
    content = PROBES[probe_name]
    text = content.decode("utf-8", errors="surrogateescape") if isinstance(content, bytes) else content
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    try:
        document = load(content) if isinstance(content, bytes) else load(text)  # type: ignore[arg-type]
        outcome = "accepted"
        shown = canonical(document)
        if len(shown) > 80:
            shown = f"{shown[:60]}... ({len(shown):,} characters)"
    except MemoryError:
        outcome, shown = "MemoryError", ""
    except Exception as exc:
        outcome = "refused"
        shown = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:160]
    return {
        "outcome": outcome,
        "shown": shown,
        "ms": round((time.perf_counter() - started) * 1000, 1),
        "peak_rss_growth_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before,
    }


def in_child(*arguments: str, timeout: float = 20) -> Any:
    try:
        finished = subprocess.run(  # noqa: S603
            [sys.executable, __file__, *arguments],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"outcome": f"still running after {timeout:.0f} s (killed)"}
    if finished.returncode != 0:
        tail = (finished.stderr.strip().splitlines() or ["?"])[-1]
        return {"outcome": f"crashed (exit {finished.returncode}): {tail[:120]}"}
    return json.loads(finished.stdout)


def main() -> int:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--rounds", type=int, default=5)
    options.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "parsers.json")
    options.add_argument("--memory", help=argparse.SUPPRESS)
    options.add_argument("--probe", nargs=2, help=argparse.SUPPRESS)
    options.add_argument("--directory", type=Path, help=argparse.SUPPRESS)
    args = options.parse_args()
    if args.memory:
        print(json.dumps(memory(args.memory, args.directory)))
        return 0
    if args.probe:
        print(json.dumps(probe(*args.probe)))
        return 0

    loads: dict[str, Load] = {}
    missing: dict[str, str] = {}
    for name, factory in candidates().items():
        try:
            loads[name] = factory()
        except ImportError as exc:
            missing[name] = str(exc)
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "load_average_before": os.getloadavg(),
        "missing": missing,
        "candidates": {},
    }
    with tempfile.TemporaryDirectory(prefix="parsers-") as temporary:
        generated_dir = Path(temporary) / "generated"
        corpus.generate(generated_dir, SIZE)
        corpora = {"generated": texts(generated_dir)}
        if corpus.REAL_CORPUS is not None:  # the chora-base corpus, where it is found
            corpora["real"] = texts(corpus.REAL_CORPUS)
        reference = today()
        expected = {which: [canonical(reference(text)) for text in files] for which, files in corpora.items()}
        timings = {which: timed_rounds(loads, files, args.rounds) for which, files in corpora.items()}
        for name, load in loads.items():
            entry: dict[str, Any] = {
                "agreement": {which: agreement(load, corpora[which], expected[which]) for which in corpora},
                "us_per_file": {
                    which: {
                        "median": round(statistics.median(samples[name]), 1),
                        "min": round(min(samples[name]), 1),
                        "max": round(max(samples[name]), 1),
                    }
                    for which, samples in timings.items()
                },
                "rss_growth_10000_kept_kb": in_child("--memory", name, "--directory", str(generated_dir)),
                "probes": {probe_name: in_child("--probe", name, probe_name) for probe_name in PROBES},
            }
            results["candidates"][name] = entry
            print(name, json.dumps(entry["agreement"]), json.dumps(entry["us_per_file"]), flush=True)
    results["load_average_after"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"all numbers: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
