"""The navigation keeps every page in sight (issue 28, item 8): app.py groups its pages into sections
and Home's path links every page of the "Labs" section, so a lab added to one is on the other."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _section(name: str) -> list[str]:
    """The page files of one section of app.py's SECTIONS dict, in order."""
    text = (ROOT / "app.py").read_text()
    body = re.search(rf'"{name}": \[(.*?)\n    \],', text, re.S)
    assert body, f"app.py has no {name!r} section"
    return re.findall(r'st\.Page\("(views/\w+\.py)"', body.group(1))


def test_every_lab_page_is_on_homes_path():
    labs = _section("Labs")
    assert len(labs) >= 5, labs
    home = (ROOT / "views" / "home.py").read_text()
    linked = re.findall(r'\("(views/\w+\.py)", "', home)
    assert linked == labs, f"Home's path links {linked}, app.py's Labs section holds {labs}"


def test_no_page_is_left_out_of_a_section():
    """Every views/ page is in some section (the teacher's one only when a key is set)."""
    text = (ROOT / "app.py").read_text()
    listed = set(re.findall(r'st\.Page\("(views/\w+\.py)"', text))
    on_disk = {f"views/{p.name}" for p in (ROOT / "views").glob("*.py") if not p.name.startswith("_")}
    assert on_disk <= listed, f"pages in no section: {sorted(on_disk - listed)}"
    assert "st.navigation(SECTIONS, expanded=True)" in text
