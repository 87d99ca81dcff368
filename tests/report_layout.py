"""How the Snakemake report's opening view lays out in headless Chromium: a copy of the report with a script that
measures the description once it is drawn, read back from the DOM Chromium dumps (`--dump-dom`).

`measure` gives the window's size, every paragraph of the description (its text and the top of its box, in pixels
from the top of the window: negative is above the page, out of reach) and, per table, its right edge, the width of
the description that holds it, the most lines a cell of it wraps to, and the cells whose text spills out of them.
"""

from __future__ import annotations

import html
import json
import re
import subprocess
from pathlib import Path
from typing import Any

WINDOW = (1200, 1600)

SCRIPT = """<script>
const medsrMeasure = () => {
  const doc = document.querySelector('.document');
  if (!doc || !doc.querySelector('table')) { setTimeout(medsrMeasure, 100); return; }
  const lines = cell => {
    const range = document.createRange();
    range.selectNodeContents(cell);
    return Math.round(range.getBoundingClientRect().height / parseFloat(getComputedStyle(cell).lineHeight));
  };
  const out = {
    window: [window.innerWidth, window.innerHeight],
    description_right: doc.getBoundingClientRect().right,
    paragraphs: [...doc.querySelectorAll('p')].map(p => ({text: p.textContent, top: p.getBoundingClientRect().top})),
    tables: [...doc.querySelectorAll('table')].map(t => ({
      right: t.getBoundingClientRect().right,
      max_lines: Math.max(...[...t.querySelectorAll('td')].map(lines)),
      spilling: [...t.querySelectorAll('td, th')].filter(c => c.scrollWidth > c.clientWidth + 1)
                                                 .map(c => c.textContent)})),
  };
  const pre = document.createElement('pre');
  pre.id = 'medsr-layout';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
};
setTimeout(medsrMeasure, 100);
</script>"""


def measure(chromium: str, report: Path, scratch: Path) -> dict[str, Any]:
    """Open a copy of `report` (in `scratch`) in a WINDOW-sized headless Chromium and return its layout."""
    head, _, tail = report.read_text(errors="replace").rpartition("</body>")
    copy = scratch / "measured_report.html"
    copy.write_text(head + SCRIPT + "</body>" + tail)
    run = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                          "--disable-background-networking", "--disable-component-update", "--disable-sync",
                          f"--user-data-dir={scratch / 'measure-profile'}", f"--window-size={WINDOW[0]},{WINDOW[1]}",
                          "--virtual-time-budget=15000", "--dump-dom", copy.as_uri()],
                         capture_output=True, text=True, timeout=120, check=True)
    found = re.search(r'<pre id="medsr-layout">(.*?)</pre>', run.stdout, re.S)
    assert found, "the measuring script found no table in the report's description"
    return json.loads(html.unescape(found.group(1)))
