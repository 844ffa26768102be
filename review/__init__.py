"""What happens around a determination once the scorer has spoken: the
payer's configuration (deadlines, appeal rights, which outcomes a pharmacist
must decide), the pharmacist's review turning a recommendation into a
decision, and the plan's PA metrics. Pure: no web, no database.
"""
