"""README.md's security section is docs/threat-model.md's summary, and the doc's thresholds are
the planner's: neither file can drift from the other, nor from the code.

The summary sits between ``<!-- threat-model:begin -->`` and ``<!-- threat-model:end -->`` in
both files and must be identical; the README section around it holds nothing but a link to the
doc. The doc's threshold table is recomputed with :class:`protocols.rounds.RoundPolicy`, checked
against the rules the doc writes out (with a binomial tail computed here, independently of
:mod:`protocols.graph`), and must be exactly what the doc's own script prints.
"""

from __future__ import annotations

import contextlib
import io
import math
import re
from pathlib import Path
from typing import Final

import pytest

from protocols.graph import corruption_bound
from protocols.rounds import ProtocolName, RoundPolicy

ROOT: Final = Path(__file__).resolve().parents[1]
README: Final = ROOT / "README.md"
DOC: Final = ROOT / "docs" / "threat-model.md"
SECURITY_HEADING: Final = "## Security properties the tests pin down"
BLOCK: Final = ("<!-- threat-model:begin -->", "<!-- threat-model:end -->")
TABLE: Final = ("<!-- thresholds:begin -->", "<!-- thresholds:end -->")
PROTOCOLS: Final[tuple[ProtocolName, ...]] = ("secagg", "secagg+")
SIZES: Final = (5, 10, 26, 50, 100, 1000)
#: The planner's defaults the doc states: dropout and corruption fractions.
DROPOUT: Final = 0.05
CORRUPT: Final = 0.05
#: (protocol, n) -> (k semi-honest, t semi-honest, k active, c active, t active).
Row = tuple[int, int, int, int, int]


def _between(text: str, markers: tuple[str, str], name: str) -> str:
    begin, end = markers
    assert text.count(begin) == 1 and text.count(end) == 1, f"{name}: one {begin} ... {end}"
    return text.split(begin, 1)[1].split(end, 1)[0]


def _security_section() -> str:
    text = README.read_text(encoding="utf-8")
    assert text.count(SECURITY_HEADING + "\n") == 1
    after = text.split(SECURITY_HEADING + "\n", 1)[1]
    return after.split("\n## ", 1)[0]


def _table() -> dict[tuple[str, int], Row]:
    inside = _between(DOC.read_text(encoding="utf-8"), TABLE, "docs/threat-model.md")
    rows: dict[tuple[str, int], Row] = {}
    for line in inside.strip().splitlines()[2:]:  # after the header and the |---| rule
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        assert len(cells) == 7, line
        key = (cells[0], int(cells[1]))
        assert key not in rows, f"{key} is listed twice"
        k_semi, t_semi, k_active, c_active, t_active = map(int, cells[2:])
        rows[key] = (k_semi, t_semi, k_active, c_active, t_active)
    return rows


def _tail(trials: int, p: float, at_least: int) -> float:
    """P[Binomial(trials, p) >= at_least]."""
    return sum(
        math.comb(trials, i) * p**i * (1 - p) ** (trials - i)
        for i in range(max(at_least, 0), trials + 1)
    )


def _rule_threshold(degree: int, n: int, active: bool) -> int | None:
    """The doc's rule for k = ``degree`` neighbours: the smallest secure t, or None."""
    secure = [t for t in range(2, degree + 2) if _tail(degree, CORRUPT, t) <= 2.0**-40 / n]
    if not secure:
        return None
    threshold = secure[0]
    if active:
        corrupt = corruption_bound(degree + 1, n, CORRUPT)
        threshold = max(threshold, (degree + 1 + corrupt) // 2 + 1)
    return threshold if threshold <= degree + 1 else None


def _rule_degree(n: int, active: bool) -> tuple[int, int]:
    """The doc's SecAgg+ rule: the smallest even k < n - 1 that is secure and reachable."""
    for degree in range(2, n - 1, 2):
        threshold = _rule_threshold(degree, n, active)
        reachable = threshold is not None and (
            _tail(degree, DROPOUT, degree - threshold + 2) <= 2.0**-20 / n
        )
        if threshold is not None and reachable:
            return degree, threshold
    return n - 1, _complete_threshold(n, active)


def _complete_threshold(n: int, active: bool) -> int:
    threshold = n // 2 + 1
    if active:
        threshold = max(threshold, (n + math.floor(CORRUPT * n + 1e-9)) // 2 + 1)
    return threshold


def test_readme_security_block_is_the_doc_block() -> None:
    readme = _between(README.read_text(encoding="utf-8"), BLOCK, "README.md")
    doc = _between(DOC.read_text(encoding="utf-8"), BLOCK, "docs/threat-model.md")
    assert readme.strip(), "the block is empty"
    assert readme == doc, "paste docs/threat-model.md's threat-model block into README.md"


def test_readme_security_section_holds_only_the_block_and_a_link() -> None:
    section = _security_section()
    inside = _between(section, BLOCK, "README.md's security section")
    outside = section.replace(BLOCK[0] + inside + BLOCK[1], "")
    lines = [line for line in outside.splitlines() if line.strip()]
    assert len(lines) == 1, f"README's security section says more than the doc: {lines}"
    assert "](docs/threat-model.md)" in lines[0]


def test_readme_drops_the_outdated_security_claims() -> None:
    text = README.read_text(encoding="utf-8")
    for claim in ("half of each neighbourhood", "honest-but-curious server only", "yet, and"):
        assert claim not in text


def test_threshold_table_covers_both_protocols_at_every_documented_size() -> None:
    assert set(_table()) == {(p, n) for p in PROTOCOLS for n in SIZES}


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("n", SIZES)
def test_threshold_table_is_what_the_planner_picks(protocol: ProtocolName, n: int) -> None:
    semi = RoundPolicy(protocol, threat_model="semi-honest")
    active = RoundPolicy(protocol, threat_model="active")
    assert (semi.dropout_fraction, semi.corrupt_fraction) == (DROPOUT, CORRUPT)
    k = active.degree_for(n)
    planned = (
        semi.degree_for(n),
        semi.threshold_for(n),
        k,
        corruption_bound(k + 1, n, active.corrupt_fraction),
        active.threshold_for(n),
    )
    assert _table()[(protocol, n)] == planned


@pytest.mark.parametrize("n", SIZES)
def test_threshold_table_follows_the_documented_rules(n: int) -> None:
    table = _table()
    k_semi, t_semi, k_active, c_active, t_active = table[("secagg", n)]
    assert (k_semi, k_active) == (n - 1, n - 1)
    assert t_semi == n // 2 + 1
    assert c_active == math.floor(CORRUPT * n + 1e-9)
    assert t_active == _complete_threshold(n, active=True)
    k_semi, t_semi, k_active, c_active, t_active = table[("secagg+", n)]
    assert (k_semi, t_semi) == _rule_degree(n, active=False)
    assert (k_active, t_active) == _rule_degree(n, active=True)
    # Active: t > (h + c) / 2 for the h = k + 1 holders, and t never exceeds h.
    assert 2 * t_active > k_active + 1 + c_active and t_active <= k_active + 1
    if c_active < math.floor(CORRUPT * n + 1e-9):  # the tail bound, not the cap, set c
        assert _tail(k_active + 1, CORRUPT, c_active + 1) <= 2.0**-40 / n
        assert _tail(k_active + 1, CORRUPT, c_active) > 2.0**-40 / n


def test_default_corruption_bound_admits_no_colluder_below_20_clients() -> None:
    """The summary's "c = 0 for n < 20" at f = 0.05, for every neighbourhood size."""
    for n in range(2, 20):
        assert {corruption_bound(h, n, CORRUPT) for h in range(2, n + 1)} == {0}
    assert corruption_bound(20, 20, CORRUPT) == 1


def test_threshold_table_is_what_the_docs_script_prints() -> None:
    text = DOC.read_text(encoding="utf-8")
    after = text.split(TABLE[1], 1)[1]
    scripts = re.findall(r"```python\n(.*?)```", after, flags=re.DOTALL)
    assert len(scripts) == 1, "one python script follows the threshold table"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(scripts[0], str(DOC), "exec"), {"__name__": "__doc_script__"})
    rows = _between(text, TABLE, "docs/threat-model.md").strip().splitlines()[2:]
    assert printed.getvalue().splitlines() == rows


def test_threat_model_doc_cites_only_tests_that_exist() -> None:
    cited = set(re.findall(r"`(tests/[\w./-]*)`", DOC.read_text(encoding="utf-8")))
    assert cited, "the doc names no test"
    missing = sorted(path for path in cited if not (ROOT / path).exists())
    assert missing == [], f"docs/threat-model.md cites tests that do not exist: {missing}"
