"""Report building blocks and their two renderings: one self-contained HTML page (inline CSS, PNGs as
base64, no JavaScript, no external assets) and Markdown with the figures as files under ``figures/``.
Every user string is escaped here (``html.escape`` / ``md_escape``); builders pass plain text.
"""
from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from typing import Any, Union

from .tables import Table, is_numeric, md_escape, to_markdown


@dataclass
class Para:
    """Plain text. kind: ``p`` normal, ``note`` highlighted remark, ``na`` "not available", ``verdict`` the
    report's opening sentence."""

    text: str
    kind: str = "p"


@dataclass
class Fig:
    """A figure; ``name`` is its PNG file name stem under ``figures/``; ``png`` is filled in at render time."""

    name: str
    figure: Any
    caption: str = ""
    png: bytes = b""


@dataclass
class Row:
    """Figures shown side by side."""

    figs: list[Fig]


Block = Union[Para, Table, Fig, Row]


@dataclass
class Section:
    id: str
    title: str
    blocks: list[Block] = field(default_factory=list)


def not_available(why: str) -> Para:
    return Para(f"Not available: {why}.", "na")


def figures_of(sections: list[Section]) -> list[Fig]:
    out = []
    for s in sections:
        for b in s.blocks:
            out += b.figs if isinstance(b, Row) else [b] if isinstance(b, Fig) else []
    return out


CSS = """
:root { --ink:#1d2433; --muted:#5b6475; --line:#d9dee7; --accent:#2b59c3; --hl:#fff3c4; --bad:#b3261e; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
       color:var(--ink); background:#f4f6fa; }
header { background:#1d2433; color:#fff; padding:22px 32px 14px; }
header h1 { margin:0 0 4px; font-size:24px; font-weight:600; }
header .sub { margin:0 0 12px; color:#c5cbe0; font-size:14px; word-break:break-all; }
nav a { color:#dfe6ff; margin-right:16px; text-decoration:none; font-size:14px; }
nav a:hover { text-decoration:underline; }
main { max-width:1180px; margin:0 auto; padding:8px 24px 40px; }
section { background:#fff; border:1px solid var(--line); border-radius:8px; margin:18px 0; padding:6px 22px 18px; }
h2 { font-size:19px; margin:14px 0 10px; padding-bottom:6px; border-bottom:1px solid var(--line); }
table { border-collapse:collapse; margin:10px 0 4px; font-size:13.5px; font-variant-numeric:tabular-nums; }
th, td { border-bottom:1px solid var(--line); padding:4px 10px; text-align:right; vertical-align:top; }
th { background:#eef1f7; font-weight:600; }
th.txt, td.txt { text-align:left; }
td.txt { max-width:520px; overflow-wrap:anywhere; }
th.grp { text-align:center; border-left:2px solid #fff; }
tr.hl td { background:var(--hl); font-weight:600; }
tr:last-child td { border-bottom:none; }
.scroll { overflow-x:auto; }
.caption, figcaption { color:var(--muted); font-size:13px; margin:2px 0 8px; }
p.note { background:var(--hl); border-left:4px solid #e0a800; padding:6px 10px; }
p.na { color:var(--muted); font-style:italic; }
p.verdict { font-size:19px; line-height:1.45; font-weight:600; margin:10px 0 6px; }
figure { margin:12px 0; }
figure img { max-width:100%; height:auto; border:1px solid var(--line); border-radius:4px; background:#fff; }
.row { display:flex; flex-wrap:wrap; gap:16px; }
.row figure { flex:1 1 420px; }
footer { text-align:center; color:var(--muted); font-size:12px; padding:0 0 24px; }
"""


def _e(s: Any) -> str:
    return html.escape(str(s), quote=True)


def _html_table(t: Table) -> str:
    ncol = max([len(t.headers)] + [len(r) for r in t.rows])
    num = [all(is_numeric(r[i]) for r in t.rows if i < len(r)) and i > 0 for i in range(ncol)]
    cls = lambda i: "" if i < ncol and num[i] else ' class="txt"'  # noqa: E731 - text columns align left
    out = ['<div class="scroll"><table>']
    if t.groups and t.sub:
        out.append("<tr>" + "".join(f'<th colspan="{n}" class="grp">{_e(g)}</th>' for g, n in t.groups) + "</tr>")
        heads = t.sub
    else:
        heads = t.headers
    out.append("<tr>" + "".join(f"<th{cls(i)}>{_e(h)}</th>" for i, h in enumerate(heads)) + "</tr>")
    for j, r in enumerate(t.rows):
        hl = ' class="hl"' if j in t.highlight else ""
        out.append(f"<tr{hl}>" + "".join(f"<td{cls(i)}>{_e(c)}</td>" for i, c in enumerate(r)) + "</tr>")
    out.append("</table></div>")
    if t.caption:
        out.append(f'<p class="caption">{_e(t.caption)}</p>')
    return "\n".join(out)


def _html_fig(f: Fig) -> str:
    data = base64.b64encode(f.png).decode("ascii")
    cap = f"<figcaption>{_e(f.caption)}</figcaption>" if f.caption else ""
    return f'<figure><img src="data:image/png;base64,{data}" alt="{_e(f.caption or f.name)}">{cap}</figure>'


def _html_block(b: Block) -> str:
    if isinstance(b, Para):
        return f'<p class="{_e(b.kind)}">{_e(b.text)}</p>'
    if isinstance(b, Table):
        return _html_table(b)
    if isinstance(b, Fig):
        return _html_fig(b)
    return '<div class="row">' + "".join(_html_fig(f) for f in b.figs) + "</div>"


def render_html(title: str, subtitle: str, sections: list[Section], footer: str = "") -> str:
    nav = "".join(f'<a href="#{_e(s.id)}">{_e(s.title)}</a>' for s in sections)
    body = "\n".join(
        f'<section id="{_e(s.id)}">\n<h2>{_e(s.title)}</h2>\n' + "\n".join(_html_block(b) for b in s.blocks)
        + "\n</section>" for s in sections)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>{_e(title)}</title>\n'
            f"<style>{CSS}</style>\n</head>\n<body>\n<header>\n<h1>{_e(title)}</h1>\n"
            f'<p class="sub">{_e(subtitle)}</p>\n<nav>{nav}</nav>\n</header>\n<main>\n{body}\n</main>\n'
            f"<footer>{_e(footer)}</footer>\n</body>\n</html>\n")


def _md_block(b: Block) -> str:
    if isinstance(b, Para):
        return f"*{md_escape(b.text)}*\n" if b.kind == "na" else (
            f"> {md_escape(b.text)}\n" if b.kind == "note" else md_escape(b.text) + "\n")
    if isinstance(b, Table):
        return to_markdown(b)
    figs = b.figs if isinstance(b, Row) else [b]
    return "\n".join(f"![{md_escape(f.caption or f.name)}](figures/{f.name}.png)\n" for f in figs)


def render_markdown(title: str, subtitle: str, sections: list[Section], footer: str = "") -> str:
    out = [f"# {md_escape(title)}", "", md_escape(subtitle), ""]
    out += ["Contents: " + " · ".join(f"[{md_escape(s.title)}](#{s.id})" for s in sections), ""]
    for s in sections:
        out += [f'<a id="{_e(s.id)}"></a>', "", f"## {md_escape(s.title)}", ""]
        out += [_md_block(b) for b in s.blocks]
    if footer:
        out += ["---", md_escape(footer), ""]
    return "\n".join(out)
