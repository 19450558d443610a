#!/usr/bin/env python3
"""Python side of `cargo xtask bench render`: Jinja2 configured the way LAVA configures it.

    render_bench.py CASES_DIR TEMPLATES_DIR REPEAT
        render every case (dictionary.jinja2 [+ context.yaml]) REPEAT times with one
        environment and print "seconds: S" (load time excluded) and "cases: N".
    render_bench.py --render TEMPLATES_DIR DICTIONARY [CONTEXT]
        print one rendering (used to compare our renderer with Jinja2 outside the corpus).

The environment: sandboxed, autoescape off, trim_blocks on, default Undefined, a file system
loader over TEMPLATES_DIR, and LAVA's three extra filters.
"""
import shlex
import sys
import time
from pathlib import Path

import jinja2
import jinja2.sandbox
import yaml


def yaml_quote(value):
    """One-line, double-quoted YAML form of value (PyYAML safe dumper)."""
    text = yaml.dump(value, Dumper=yaml.SafeDumper, default_flow_style=True,
                     default_style='"', explicit_start=True, width=2**31 - 1)
    text = text[4:]
    return text[:-1] if text.endswith("\n") else text


def guest_fs_interface(arch, iface):
    if iface:
        return iface
    return "ide" if arch in ("amd64", "x86_64", "i386") else "virtio"


def make_env(templates):
    env = jinja2.sandbox.SandboxedEnvironment(
        loader=jinja2.FileSystemLoader([str(templates)]),
        autoescape=False,
        trim_blocks=True,
    )
    env.filters.update(shlex_quote=shlex.quote, yaml_quote=yaml_quote,
                       qemu_guest_fs_interface=guest_fs_interface)
    return env


def load_context(path):
    if path is None or not Path(path).exists():
        return {}
    return yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}


def main(argv):
    if argv and argv[0] == "--render":
        env = make_env(argv[1])
        source = Path(argv[2]).read_text(encoding="utf-8")
        ctx = load_context(argv[3] if len(argv) > 3 else None)
        sys.stdout.write(env.from_string(source).render(**ctx))
        return 0
    cases_dir, templates, repeat = Path(argv[0]), Path(argv[1]), int(argv[2])
    cases = []
    for case in sorted(p for p in cases_dir.iterdir() if (p / "dictionary.jinja2").exists()):
        source = (case / "dictionary.jinja2").read_text(encoding="utf-8")
        cases.append((source, load_context(case / "context.yaml")))
    env = make_env(templates)
    start = time.perf_counter()
    for _ in range(repeat):
        for source, ctx in cases:
            env.from_string(source).render(**ctx)
    print(f"seconds: {time.perf_counter() - start:.6f}")
    print(f"cases: {len(cases)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
