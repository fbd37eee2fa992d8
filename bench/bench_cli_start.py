"""Benchmark: how fast ``python -m core`` starts, on the demo league (SQLite).

Creates a demo league in a scratch SQLite file (``python -m core demo``), then runs a few
commands that change nothing, each ``--runs`` times in a fresh process, and prints per command
the median and fastest wall time, the number of modules its process imported, and whether it
loaded Alembic, the Stripe SDK or Jinja (the email templates).

    .venv/bin/python bench/bench_cli_start.py [--runs 10] [--repo PATH]

``--repo`` runs another checkout's command line (e.g. an older commit unpacked with
``git archive``) against the same kind of league, to compare before and after.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMMANDS: tuple[tuple[str, ...], ...] = (
    ("balances",),
    ("league",),
    ("balances", "--help"),
    ("--help",),
    ("db", "upgrade"),
)
WATCHED = ("alembic", "stripe", "jinja2")


def run(repo: Path, argv: tuple[str, ...], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "core", *argv],
        cwd=repo, env=env, capture_output=True, text=True, timeout=120, check=True,
    )


def wall_times(repo: Path, argv: tuple[str, ...], env: dict[str, str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        run(repo, argv, env)
        times.append(time.perf_counter() - started)
    return times


# The command line's ``main``, then the names of the modules it imported on the last line of
# stderr (``-X importtime`` does not see a module imported through ``importlib``).
RUN_AND_LIST_MODULES = """
import sys
from cli.main import main
try:
    status = main(sys.argv[1:])
except SystemExit as exit:
    status = exit.code
print(" ".join(sorted(sys.modules)), file=sys.stderr)
sys.exit(status)
"""


def imported_modules(repo: Path, argv: tuple[str, ...], env: dict[str, str]) -> set[str]:
    """The modules one run of ``argv`` imports."""
    result = subprocess.run([sys.executable, "-c", RUN_AND_LIST_MODULES, *argv], cwd=repo, env=env,
                            capture_output=True, text=True, timeout=120, check=True)
    return set(result.stderr.splitlines()[-1].split())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--repo", type=Path, default=REPO, help="the checkout whose command line is measured")
    args = parser.parse_args()
    repo = args.repo.resolve()

    with tempfile.TemporaryDirectory(prefix="bench_cli_start_") as folder:
        env = {**os.environ, "DATABASE_URL": f"sqlite:///{Path(folder) / 'demo.db'}"}
        env.pop("STRIPE_API_KEY", None)
        run(repo, ("demo",), env)
        run(repo, ("balances",), env)  # warm the file cache once
        print(f"python -m core in {repo} on the demo league (SQLite), {args.runs} runs each")
        print(f"{'command':<22} {'median ms':>9} {'fastest':>8} {'modules':>8}  loads")
        for argv in COMMANDS:
            times = wall_times(repo, argv, env, args.runs)
            modules = imported_modules(repo, argv, env)
            loads = ", ".join(name for name in WATCHED if name in modules) or "-"
            print(f"{' '.join(argv):<22} {statistics.median(times) * 1000:>9.0f} {min(times) * 1000:>8.0f} "
                  f"{len(modules):>8}  {loads}")


if __name__ == "__main__":
    main()
