"""What happens around a determination once the scorer has spoken: the
payer's configuration (deadlines, appeal rights, which outcomes a pharmacist
must decide), what a request says of itself (the member, the prescriber, its
priority) and how a member is recognised across requests, the pharmacist's
review turning a recommendation into a decision, the notice the member and
the office read (built from all of these), and the plan's PA metrics. Pure:
no web, no database.
"""
