"""Screenshot an HTML report in headless Chromium for the README (a palette PNG).

Playwright (the ``dev`` extra) drives the system Chromium (``chromium`` on PATH; it
downloads no browser). The picture is the top ``--height`` pixels of the page at
``--width``, written atomically as a 256-colour palette PNG to keep the repository small.

Usage:
    python scripts/screenshot_report.py demo_out/report.html \\
        [-o docs/images/demo_report.png] [--width 1200] [--height 1400]
"""

from __future__ import annotations

import argparse
import io
import logging
import shutil
from pathlib import Path

from PIL import Image

from segshield.utils.imageio import atomic_write_bytes

log = logging.getLogger("screenshot_report")


def screenshot(report: Path, width: int, height: int) -> bytes:
    """PNG bytes of the top ``height`` x ``width`` pixels of ``report`` in Chromium."""
    from playwright.sync_api import sync_playwright

    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        raise FileNotFoundError("chromium: not on PATH; install it (apt-get install chromium)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe)
        page = browser.new_page(viewport={"width": width, "height": height})
        page.goto(report.resolve().as_uri(), wait_until="load")
        png = page.screenshot()
        browser.close()
    return png


def palette_png(png: bytes) -> bytes:
    """``png`` re-encoded as a 256-colour palette PNG."""
    buf = io.BytesIO()
    rgb = Image.open(io.BytesIO(png)).convert("RGB")
    rgb.quantize(256, dither=Image.Dither.NONE).save(buf, "PNG", optimize=True)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", type=Path, help="the report's HTML file")
    parser.add_argument("-o", "--out", type=Path, default=Path("docs/images/demo_report.png"))
    parser.add_argument("--width", type=int, default=1200)
    parser.add_argument("--height", type=int, default=1400)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not args.report.is_file():
        parser.error(f"report: {args.report}: no such file; pass a report.html")
    atomic_write_bytes(args.out, palette_png(screenshot(args.report, args.width, args.height)))
    log.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
