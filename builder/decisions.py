"""placeholder"""
from builder.policy import Policy


def decision_tables_markdown(policies: list[Policy]) -> str:
    return ""
