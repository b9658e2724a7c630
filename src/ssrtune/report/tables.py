"""The one table writer of the package: a table renders itself as markdown, as HTML and on a rich console.

The report and the judge audit both write their tables through it, so escaping and layout live in one place.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table as RichTable


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    title: str = ""
    note: str = ""

    def markdown(self, level: int = 2) -> str:
        lines = [f"{'#' * level} {self.title}", ""] if self.title else []
        lines += [self.note, ""] if self.note else []
        lines += [_markdown_row(self.header), "|" + "---|" * len(self.header)]
        lines += [_markdown_row(row) for row in self.rows]
        return "\n".join(lines) + "\n"

    def html(self) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in self.rows)
        title = f"<h2>{html.escape(self.title)}</h2>" if self.title else ""
        note = f"<p class='note'>{inline_code(self.note)}</p>" if self.note else ""
        return f"{title}{note}<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def print(self, console: Console) -> None:
        table = RichTable(title=self.title or None)
        for i, label in enumerate(self.header):
            table.add_column(label, justify="left" if i == 0 else "right")
        for row in self.rows:
            table.add_row(*row)
        console.print(table)


def inline_code(text: str) -> str:
    """`text` as HTML, its markdown code spans (a column's name in backticks) as <code>, not as literal backticks."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def _markdown_row(cells: list[str]) -> str:
    # a `|` inside a cell would end it
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def wide_console(console: Console | None = None) -> Console:
    """The console to print on; logs and pipes get a wide one, so columns do not wrap at a default 80 characters."""
    console = console or Console()
    return console if console.is_terminal else Console(width=200)
