"""Build-time verification: a policy that could decide wrongly is refused
before anything is generated (:mod:`builder.verification.verify`), by
exploring the answer space of each form with the real scorer
(:mod:`builder.verification.explore`), whose findings are also published as
decision tables (:mod:`builder.verification.decisions`)."""
