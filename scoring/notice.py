"""The determination notice a prescriber's office reads, in HTML and plain
text, rendered from jinja2 templates (HTML autoescaped)."""

from __future__ import annotations

from typing import Literal

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from scoring.determination import Determination

HEADLINES = {
    "approved": "Approved",
    "denied": "Denied — criteria not met",
    "investigational": "Denied — investigational use",
    "pended": "Pended — information missing",
    "review": "Pended — referred to a pharmacist for review",
}

_ENV = Environment(
    loader=PackageLoader("scoring", "templates"),
    autoescape=select_autoescape(enabled_extensions=("html.j2",), default=False),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def render_notice(determination: Determination, fmt: Literal["html", "text"] = "text") -> str:
    template = _ENV.get_template("notice.html.j2" if fmt == "html" else "notice.txt.j2")
    return template.render(
        d=determination,
        headline=HEADLINES[
            "review" if determination.pend_reason == "review" else determination.outcome
        ],
        payer=determination.payer,
        drug=determination.drug,
    )
