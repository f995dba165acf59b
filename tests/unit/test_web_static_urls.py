"""The pages' static files: content-versioned URLs and the viewer's module list."""
from __future__ import annotations

import os
from pathlib import Path

from asci_core.web.static_urls import StaticUrls, digest_of, module_graph

NOVNC = Path("/usr/share/novnc")


def test_the_module_graph_follows_relative_imports_and_stays_inside_the_root(tmp_path):
    (tmp_path / "core" / "util").mkdir(parents=True)
    (tmp_path / "core" / "rfb.js").write_text('import * as Log from "./util/logging.js";\n'
                                              "import {\n  a,\n  b } from './display.js';\n"
                                              'import x from "../../etc/passwd";\nimport y from "./missing.js";\n')
    (tmp_path / "core" / "util" / "logging.js").write_text("export const x = 1;\n")
    (tmp_path / "core" / "display.js").write_text('import * as Log from "./util/logging.js";\nexport * from "./util/more.js";\n')
    (tmp_path / "core" / "util" / "more.js").write_text("")
    assert module_graph(tmp_path, "core/rfb.js") == ["core/rfb.js", "core/util/logging.js", "core/display.js",
                                                     "core/util/more.js"]


def test_the_digest_changes_with_any_file_and_only_then(tmp_path):
    (tmp_path / "a.js").write_text("one")
    first = digest_of(tmp_path)
    assert digest_of(tmp_path) == first
    (tmp_path / "a.js").write_text("two!")
    assert digest_of(tmp_path) != first
    second = digest_of(tmp_path)
    os.utime(tmp_path / "a.js", ns=(1, 1))
    assert digest_of(tmp_path) != second


def test_debians_novnc_viewer_modules_are_all_named():
    assets = StaticUrls.build(Path(__file__).resolve().parents[2] / "asci_core/web/static", NOVNC)
    assert assets.static.startswith("/web/assets/") and assets.novnc.startswith("/novnc/")
    modules = [m[len(assets.novnc):] for m in assets.viewer_modules if m.startswith(assets.novnc)]
    # What noVNC 1.3's RFB needs (seen in a browser's resource list): ~40 modules, pako's inflate among them.
    assert modules[0] == "core/rfb.js" and len(modules) >= 35
    assert {"core/websock.js", "core/decoders/tight.js", "core/input/keyboard.js"} <= set(modules)
    assert any(m.startswith("vendor/pako/") for m in modules)
    assert all((NOVNC / m).is_file() for m in modules)
