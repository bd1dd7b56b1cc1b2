"""A fixtures directory with N SOAR cases, for measurement (d): ``python bench/big_fixtures.py DIR [N]``.

VirusTotal and Chronicle recordings are linked from the bundled ``fixtures/``; ``soar/`` is written by the
project's own generator (``fixtures/make_soar_cases.py``) with ``TOTAL_CASES`` raised, so the same hand-written
cases that mention the fixture indicators are among N - ~20 background cases spread over the year. Point
``IOC_WORKFLOWS_FIXTURES`` at DIR.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def build(out: Path, cases: int) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    for name in ("vt", "chronicle"):
        link = out / name
        if not link.exists():
            link.symlink_to(REPO / "fixtures" / name, target_is_directory=True)
    spec = importlib.util.spec_from_file_location("_bench_make_soar_cases", REPO / "fixtures" / "make_soar_cases.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    module.OUT = out / "soar"
    module.TOTAL_CASES = cases
    module.main()
    return out


if __name__ == "__main__":
    target = Path(sys.argv[1])
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    build(target, count)
    print(target)
