"""Generated FHIR artifacts (Questionnaires, Libraries), committed and checked
against a fresh build by the drift test. Regenerate with ``dtr build``.

:mod:`questionnaires.checks` says what every Questionnaire here is beyond
what fhir.resources checks, and walks their items: the builder checks what it
emits with it, the engine and the scorer read items through it."""
