"""The Da Vinci DTR 2.2.0 questionnaire package, as pure functions.

What a payer's DTR service hands an EHR's DTR client, built from the
catalog of generated Questionnaires and from what the payer knows:

- :mod:`qpackage.catalog` — every released Questionnaire version, compiled
  once from the policies and the archive, and a response received against
  it (found, checked, moved to the version in effect, scored);
- :mod:`qpackage.parameters` — the operations' input Parameters, checked
  (``$questionnaire-package``, ``$log-questionnaire-errors``, ``$expand``);
- :mod:`qpackage.package` — which Questionnaires an order, a canonical or a
  context names, and the output Parameters with one collection Bundle each;
- :mod:`qpackage.draft` — the draft QuestionnaireResponse of each Bundle,
  with the answers the payer fills itself (its own approvals, the earlier
  answers of a pended request);
- :mod:`qpackage.adaptive` — the adaptive form's next question;
- :mod:`qpackage.record` — what an EHR record already shows of a policy
  (Coverage Requirements Discovery): its questions prefilled from a CDS
  client's prefetch, its criteria met, not met or open.

No HTTP and no database here: the service resolves the stored records a
request needs and passes them in. The catalog alone reads files, the
released archive, once when it is made.
"""
