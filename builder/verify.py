"""placeholder"""
from builder.policy import Policy


def verify_policy(policy: Policy, source: str) -> list[str]:
    return []
