"""axe-core (npm) in the browser tests: the accessibility rules a clinic's
auditor would run, put into pages by Playwright (``prepare`` for a whole
browser context, else evaluated into the page on first use).

One pinned version, checked against the registry's sha512 before it is
unpacked; kept outside the checkout (it is a test tool, never served by the
application). deploy/test.sh fetches it once per machine
(``python -m tests.support.axe fetch``) and exports its path in
GHIMAGING_TEST_AXE_JS; without that variable the same cache is used, and
filled on first use, so a single pytest run works too.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import sys
import tarfile
import urllib.request
from functools import lru_cache
from pathlib import Path

VERSION = "4.10.3"
# `npm view axe-core@4.10.3 dist.integrity`
INTEGRITY = "sha512-Xm7bpRXnDSX2YE2YFfBk2FnF0ep6tmG7xPh8iHee8MIcrgq762Nkce856dYtJYLkuIoYZvGfTs/PbZhideTcEg=="
TARBALL = f"https://registry.npmjs.org/axe-core/-/axe-core-{VERSION}.tgz"
ENV = "GHIMAGING_TEST_AXE_JS"
# WCAG 2.0, 2.1 and 2.2, levels A and AA: what the issue asks the pages to meet.
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
SERIOUS = ("serious", "critical")


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "ghimaging" / f"axe-core-{VERSION}"


def fetch() -> Path:
    """axe.min.js of the pinned version, downloaded and checked once."""
    target = cache_dir() / "axe.min.js"
    if target.is_file():
        return target
    with urllib.request.urlopen(TARBALL, timeout=120) as answer:
        data = answer.read()
    algo, _, want = INTEGRITY.partition("-")
    got = base64.b64encode(hashlib.new(algo, data).digest()).decode()
    if got != want:
        raise RuntimeError(f"{TARBALL}: {algo} {got} is not the pinned {want}")
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        member = tar.extractfile("package/axe.min.js")
        assert member is not None
        script = member.read()
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_suffix(".part")
    part.write_bytes(script)
    part.replace(target)  # never a half-written file under the final name
    return target


def script_path() -> Path:
    """The path deploy/test.sh exported, else the cache (filled if empty)."""
    given = os.environ.get(ENV)
    if given:
        path = Path(given)
        if not path.is_file():
            raise RuntimeError(f"{ENV}={given}: no such file")
        return path
    return fetch()


@lru_cache(maxsize=1)
def _source() -> str:
    return script_path().read_text(encoding="utf-8")


_RUN = """async tags => {
  const out = await axe.run(document, {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']});
  return out.violations.filter(v => v.impact === 'serious' || v.impact === 'critical').map(v => ({
    id: v.id, impact: v.impact, help: v.help,
    targets: v.nodes.map(n => n.target.join(' ') + (n.failureSummary ? ' -- ' + n.failureSummary.split('\\n').slice(1).join(' ').trim() : '')),
  }));
}"""


def prepare(context) -> None:
    """axe in every page the browser context opens, before the page's own
    scripts (an init script, outside the page's Content-Security-Policy):
    cheaper than evaluating it into each page after it loads."""
    context.add_init_script(script=_source())


def violations(page) -> list[str]:
    """Serious and critical WCAG 2 A/AA violations on the page as it is now,
    one line each: page, rule, what axe says, and every element at fault
    (its selector and why), so a failure says what to fix and where."""
    # A click that submits a form returns once the next page is committed,
    # before its stylesheet applies: axe would judge unstyled inputs (seen
    # once in CI: 21 px high fields on the refused sign-in).
    page.wait_for_load_state("load")
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        # Evaluated, not added as a <script>: the app's Content-Security-Policy
        # (script-src 'self') stays in force for the page's own scripts.
        page.evaluate(_source() + "\n;0")
    found = page.evaluate(_RUN, TAGS)
    path = page.url.split("//", 1)[-1].partition("/")[2]
    return [f"/{path} [{v['impact']}] {v['id']} ({v['help']}): " + "; ".join(v["targets"][:8])
            + (f" (+{len(v['targets']) - 8} more)" if len(v["targets"]) > 8 else "")
            for v in found]


if __name__ == "__main__":
    if sys.argv[1:] != ["fetch"]:
        sys.exit("usage: python -m tests.support.axe fetch")
    print(fetch())
