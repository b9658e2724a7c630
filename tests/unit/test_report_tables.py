"""The one table writer: markdown (cells with `|` escaped), HTML (escaped), and the judge audit written through it."""

from ssrtune.judges.audit import markdown
from ssrtune.report.tables import Table


def test_table_markdown_and_html_escape_their_cells():
    table = Table(["model", "a|b"], [["x|y", "<1>"]], "Title", "A note.")
    assert table.markdown() == "## Title\n\nA note.\n\n| model | a\\|b |\n|---|---|\n| x\\|y | <1> |\n"
    assert Table(["h"], [["1"]]).markdown() == "| h |\n|---|\n| 1 |\n"  # no title, no note: the table alone
    assert "<td>x|y</td><td>&lt;1&gt;</td>" in table.html() and "<h2>Title</h2>" in table.html()


def test_judge_audit_markdown_is_written_by_the_table_writer():
    confusion = {"accept": {"accept": 3, "reject": 1, "failed": 0}, "reject": {"accept": 0, "reject": 2, "failed": 0},
                 "failed": {"accept": 0, "reject": 0, "failed": 0}}
    result = {"n": 6, "agreement": 5 / 6, "kappa": None, "accept_precision": 1.0, "accept_recall": 0.75,
              "accept_f1": 6 / 7, "audited_accept_rate": 0.5, "reference_accept_rate": 4 / 6, "confusion": confusion,
              "disagreements": [{"id": "q1", "reference": "accept", "audited": "reject", "audited_rationale": "rule",
                                 "gold": "Paris", "candidate": "It is Lyon | or Paris"}]}
    text = markdown("rules", "contains", "labels x.jsonl", result)
    assert ("| agreement | Cohen's kappa | accept precision | accept recall | accept F1 | audited accept rate | "
            "reference accept rate |\n|---|---|---|---|---|---|---|\n| 0.833 | n/a | 1.000 | 0.750 | 0.857 | 0.500 | "
            "0.667 |\n") in text
    assert "| reference \\ audited | accept | reject | failed |\n|---|---|---|---|\n| accept | 3 | 1 | 0 |\n" in text
    assert "Disagreements: 1" in text and "It is Lyon | or Paris" in text
